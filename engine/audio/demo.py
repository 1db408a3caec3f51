"""The demo music: a short electronic track synthesised at run time.

Nothing recorded or copyrighted ships with Latent Jockey; :func:`demo_song` writes a 124 BPM, 4/4
track from scratch: a pitch-swept kick on every beat, claps on 2 and 4, closed and open hats, a
bassline and a chord pad over an Am - F - C - G progression (one chord per bar, so chroma moves
every bar), a plucked arpeggio with ping-pong echo, and a riser with a snare roll into each drop.
The arrangement runs intro -> build-up -> drop -> breakdown -> drop ... (see :func:`demo_sections`).

Everything is vectorised numpy: one-shots are rendered once and mixed in at their step positions;
tonal parts are read from small band-limited wavetables, one bar at a time, and cached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BPM = 124.0
STEPS_PER_BAR = 16

# (section, bars). The first 14 bars are played once, then the cycle repeats as long as needed.
_OPENING = [("intro", 4), ("build", 4), ("drop", 4), ("breakdown", 2)]
_CYCLE = [("drop", 8), ("breakdown", 4), ("build", 4)]

# Am - F - C - G: pad voicings and bass roots as MIDI notes.
_CHORDS = [(57, 60, 64), (53, 57, 60), (55, 60, 64), (55, 59, 62)]
_ROOTS = [45, 41, 48, 43]
_TABLE_BITS = 12
_TABLE_SIZE = 1 << _TABLE_BITS


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _section_list(n_bars: int) -> list[str]:
    names: list[str] = []
    for name, bars in _OPENING:
        names += [name] * bars
    while len(names) < n_bars:
        for name, bars in _CYCLE:
            names += [name] * bars
    return names[:n_bars]


def demo_sections(seconds: float = 30.0, bpm: float = BPM) -> list[tuple[str, float, float]]:
    """The arrangement of a demo song of ``seconds``: ``[(name, start_s, end_s), ...]``.

    Names are ``"intro"``, ``"build"``, ``"drop"`` and ``"breakdown"``; the kick plays on every
    beat of every section except ``"breakdown"``.
    """
    bar_s = 4 * 60.0 / bpm
    n_bars = int(np.ceil(seconds / bar_s))
    out: list[tuple[str, float, float]] = []
    for i, name in enumerate(_section_list(n_bars)):
        start, end = i * bar_s, min((i + 1) * bar_s, seconds)
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1], end)
        else:
            out.append((name, start, end))
    return out


# --- sound sources -----------------------------------------------------------------------------

def _wavetable(harmonics: int, rolloff: float, odd_only: bool = False) -> np.ndarray:
    """One period of a band-limited saw (or square with ``odd_only``), peak-normalised."""
    x = np.arange(_TABLE_SIZE) / _TABLE_SIZE
    out = np.zeros(_TABLE_SIZE)
    for k in range(1, harmonics + 1):
        if odd_only and k % 2 == 0:
            continue
        out += np.sin(2 * np.pi * k * x) / k * np.exp(-(k - 1) / rolloff)
    return (out / np.abs(out).max()).astype(np.float32)


def _osc(table: np.ndarray, freq: float, n: int, sr: int, phase: float = 0.0) -> np.ndarray:
    """``n`` samples of ``table`` played at ``freq`` Hz (truncating lookup; tables are smooth).

    The phase is a 32-bit fixed-point accumulator, so it wraps by itself.
    """
    inc = np.uint32(int(round(freq / sr * 2.0 ** 32)) & 0xFFFFFFFF)
    start = np.uint32(int(phase % 1.0 * 2.0 ** 32) & 0xFFFFFFFF)
    pos = np.arange(n, dtype=np.uint32)
    pos *= inc
    pos += start
    pos >>= np.uint32(32 - _TABLE_BITS)
    return table[pos]


def _shape_spectrum(x: np.ndarray, sr: int, lo: float, hi: float) -> np.ndarray:
    """Band-pass ``x`` between ``lo`` and ``hi`` Hz with soft (Gaussian in octaves) edges."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1.0 / sr)
    f[0] = 1.0
    octs = np.log2(f)
    gain = np.ones_like(f)
    below, above = octs < np.log2(lo), octs > np.log2(hi)
    gain[below] = np.exp(-0.5 * ((octs[below] - np.log2(lo)) / 0.35) ** 2)
    gain[above] = np.exp(-0.5 * ((octs[above] - np.log2(hi)) / 0.35) ** 2)
    return np.fft.irfft(spec * gain, n=x.size)


def _one_shots(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def t(seconds):
        return np.arange(int(seconds * sr)) / sr

    shots = {}
    tk = t(0.45)
    freq = 48.0 + 120.0 * np.exp(-tk / 0.035)
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-tk / 0.2)
    click = _shape_spectrum(rng.standard_normal(tk.size), sr, 1500, 6000) * np.exp(-tk / 0.003)
    kick = np.tanh(1.6 * (body + 0.25 * click)) / np.tanh(1.6)
    kick[-200:] *= np.linspace(1, 0, 200)
    shots["kick"] = kick

    tc = t(0.35)
    env = np.zeros_like(tc)
    for delay in (0.0, 0.011, 0.022):
        d = tc - delay
        env += np.where(d >= 0, np.exp(-np.maximum(d, 0) / 0.005), 0.0)
    env += np.where(tc >= 0.022, 0.6 * np.exp(-np.maximum(tc - 0.022, 0) / 0.07), 0.0)
    clap = _shape_spectrum(rng.standard_normal(tc.size), sr, 900, 3200) * env
    shots["clap"] = clap / np.abs(clap).max()

    ts = t(0.25)
    snare = (0.6 * np.sin(2 * np.pi * 185 * ts) * np.exp(-ts / 0.04)
             + _shape_spectrum(rng.standard_normal(ts.size), sr, 1800, 9000) * np.exp(-ts / 0.06))
    shots["snare"] = snare / np.abs(snare).max()

    for name, length, decay in (("hat", 0.08, 0.018), ("open_hat", 0.35, 0.11)):
        th = t(length)
        metal = sum(np.sign(np.sin(2 * np.pi * f * th)) for f in (3130.0, 4177.0, 5241.0, 6729.0))
        noise = rng.standard_normal(th.size) + 0.25 * metal
        hat = _shape_spectrum(noise, sr, 7500, 14000) * np.exp(-th / decay)
        hat[-64:] *= np.linspace(1, 0, 64)
        shots[name] = hat / np.abs(hat).max()
    return {k: v.astype(np.float32) for k, v in shots.items()}


def _adsr(n: int, sr: int, attack: float, release_at: int, release: float) -> np.ndarray:
    """Linear attack, sustain, exponential release from sample ``release_at``."""
    i = np.arange(n)
    env = np.minimum(1.0, i / max(1.0, attack * sr))
    rel = np.maximum(0, i - release_at) / (release * sr)
    return (env * np.exp(-4.0 * rel)).astype(np.float32)


def _add(out: np.ndarray, start: int, sig: np.ndarray, gain_l: float, gain_r: float) -> None:
    """Mix a mono ``sig`` into stereo ``out`` at ``start`` (clipped at the ends)."""
    end = min(out.shape[0], start + sig.shape[0])
    if end <= start:
        return
    out[start:end, 0] += gain_l * sig[:end - start]
    out[start:end, 1] += gain_r * sig[:end - start]


# --- the song ------------------------------------------------------------------------------------

def demo_song(seconds: float = 30.0, sr: int = 44100, seed: int = 0):
    """Synthesise the demo track.

    Parameters
    ----------
    seconds : float
        Length in seconds (> 0).
    sr : int
        Sample rate in Hz.
    seed : int
        Seed for the noise sources, hat velocities and arpeggio order; the same seed always gives
        the identical array.

    Returns
    -------
    samples : numpy.ndarray
        float32 ``[round(seconds * sr), 2]``, peak 0.9.
    sr : int
        The sample rate.
    bpm : float
        Tempo in beats per minute (124.0); beat ``k`` starts at ``k * 60 / bpm`` seconds.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    sr = int(sr)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    step = 60.0 / BPM / 4 * sr            # samples per 16th note (float)
    bar = step * STEPS_PER_BAR
    n_bars = int(np.ceil(n / bar))
    sections = _section_list(n_bars)
    tail = int(0.6 * sr)
    out = np.zeros((n + tail, 2), dtype=np.float32)   # drums, arp, riser
    tonal = np.zeros((n + tail, 2), dtype=np.float32)  # bass and pad: side-chained to the kick

    shots = _one_shots(sr, rng)
    pad_tables = [_wavetable(28, r) for r in (2.0, 4.0, 7.0, 12.0)]
    bass_bright, bass_dark = _wavetable(24, 6.0), _wavetable(6, 1.5)
    pluck = _wavetable(21, 5.0, odd_only=True)
    arp_order = rng.permutation([0, 1, 2, 3])
    pad_cache: dict = {}
    bass_cache: dict = {}
    pluck_cache: dict = {}
    bar_len = int(np.ceil(bar))

    def pad_bar(chord: int, bright: int) -> np.ndarray:
        key = (chord, bright)
        if key not in pad_cache:
            length = bar_len + int(0.3 * sr)
            env = _adsr(length, sr, 0.06, bar_len, 0.3)
            st = np.zeros((length, 2), dtype=np.float32)
            for j, note in enumerate(_CHORDS[chord]):
                for side, cents in ((0, -7.0), (1, 7.0)):
                    f = _midi_hz(note + cents / 100.0)
                    st[:, side] += _osc(pad_tables[bright], f, length, sr, phase=0.13 * j + side * 0.5)
            st *= env[:, None]
            pad_cache[key] = st
        return pad_cache[key]

    def bass_note(note: int, length: int) -> np.ndarray:
        key = (note, length)
        if key not in bass_cache:
            f = _midi_hz(note)
            i = np.arange(length)
            filt = np.exp(-i / (0.045 * sr)).astype(np.float32)
            x = _osc(bass_dark, f, length, sr) + filt * (_osc(bass_bright, f, length, sr)
                                                          - _osc(bass_dark, f, length, sr))
            x += 0.5 * np.sin(2 * np.pi * f * i / sr).astype(np.float32)  # solid fundamental
            env = _adsr(length, sr, 0.004, int(length * 0.7), 0.02)
            bass_cache[key] = (x * env).astype(np.float32)
        return bass_cache[key]

    for b, name in enumerate(sections):
        chord = b % 4
        b0 = int(round(b * bar))
        pos_in_section = 0
        while b - pos_in_section - 1 >= 0 and sections[b - pos_in_section - 1] == name:
            pos_in_section += 1
        last_bar_of_section = b + 1 >= n_bars or sections[b + 1] != name

        def at(s: float) -> int:
            return int(round(b * bar + s * step))

        # Pad: darker in the intro, opening up through the build.
        bright = {"intro": 0, "build": 1 + min(1, pos_in_section // 2), "drop": 3,
                  "breakdown": 3}[name]
        pad_gain = {"intro": 0.09, "build": 0.1, "drop": 0.1, "breakdown": 0.15}[name]
        p = pad_bar(chord, bright)
        end = min(tonal.shape[0], b0 + p.shape[0])
        tonal[b0:end] += pad_gain * p[:end - b0]

        # Drums.
        if name != "breakdown":
            for s in range(0, 16, 4):
                _add(out, at(s), shots["kick"], 0.95, 0.95)
        if name in ("build", "drop"):
            for s in (4, 12):
                _add(out, at(s), shots["clap"], 0.42, 0.38)
        elif name == "breakdown" and last_bar_of_section:
            _add(out, at(12), shots["clap"], 0.3, 0.3)
        for s in range(16):
            vel = 0.75 + 0.25 * rng.random()
            if name == "intro" and s % 4 == 2:
                _add(out, at(s), shots["hat"], 0.12 * vel, 0.16 * vel)
            elif name == "build" and (s % 2 == 0 or pos_in_section >= 2):
                g = 0.16 if s % 4 == 2 else 0.09
                _add(out, at(s), shots["hat"], g * vel, g * 1.3 * vel)
            elif name == "drop":
                if s % 4 == 2:
                    _add(out, at(s), shots["open_hat"], 0.13 * vel, 0.17 * vel)
                else:
                    _add(out, at(s), shots["hat"], 0.08 * vel, 0.11 * vel)
            elif name == "breakdown" and s % 4 == 2:
                _add(out, at(s), shots["hat"], 0.06 * vel, 0.08 * vel)

        # Snare roll and riser into the drop.
        if name == "build" and last_bar_of_section:
            for s in range(16):
                hits = 1 if s < 8 else (2 if s < 12 else 4)
                for h in range(hits):
                    g = 0.12 + 0.25 * (s + h / hits) / 16
                    _add(out, at(s + h / hits), shots["snare"], g, g)
        if name == "build":
            n_build = 1
            while b + n_build < n_bars and sections[b + n_build] == "build":
                n_build += 1
            total = pos_in_section + n_build
            length = int(np.ceil(bar))
            i = np.arange(length)
            ramp = (pos_in_section + i / length) / total
            noise = rng.standard_normal(length).astype(np.float32)
            smooth = np.cumsum(noise)
            smooth = (smooth - np.convolve(smooth, np.ones(64) / 64, mode="same")) * 0.12
            riser = (1 - ramp) * smooth + ramp * noise
            _add(out, b0, (riser * ramp ** 2).astype(np.float32), 0.09, 0.09)

        # Bass: off-beats in the build, rolling 16ths in the drop.
        if name in ("build", "drop"):
            steps = [s for s in range(16) if s % 4 == 2] if name == "build" else \
                [s for s in range(16) if s % 4 != 0]
            for s in steps:
                note = _ROOTS[chord] + (12 if name == "drop" and s % 4 == 3 else 0)
                length = int(step * (1.8 if name == "build" else 0.9))
                _add(tonal, at(s), bass_note(note, length), 0.3, 0.3)

        # Arpeggio with a ping-pong echo.
        if name in ("drop", "breakdown"):
            notes = list(_CHORDS[chord]) + [_CHORDS[chord][0] + 12]
            plen = int(0.25 * sr)
            env = np.exp(-np.arange(plen) / (0.07 * sr)).astype(np.float32)
            env[:32] *= np.linspace(0, 1, 32, dtype=np.float32)
            echo = int(round(3 * step))
            for s in range(16):
                note = notes[arp_order[s % 4]] + 12
                if note not in pluck_cache:
                    pluck_cache[note] = _osc(pluck, _midi_hz(note), plen, sr) * env
                x = pluck_cache[note]
                g = 0.07 if name == "drop" else 0.1
                pan = 0.35 if s % 2 else -0.35
                _add(out, at(s), x, g * (1 - pan), g * (1 + pan))
                _add(out, at(s) + echo, x, 0.45 * g, 0.1 * g)
                _add(out, at(s) + 2 * echo, x, 0.08 * g, 0.3 * g)

    # Side-chain pump: bass and pad duck after every kick.
    t = np.arange(n + tail)
    beat = 4 * step
    phase = (t % beat) / sr
    duck = (1.0 - 0.65 * np.exp(-phase / 0.1) * np.minimum(1.0, phase / 0.003)).astype(np.float32)
    bar_idx = np.minimum((t / bar).astype(np.int64), n_bars - 1)
    kick_bars = np.array([s != "breakdown" for s in sections])
    duck = np.where(kick_bars[bar_idx], duck, np.float32(1.0))
    out += tonal * duck[:, None]

    song = out[:n]
    np.tanh(song * 0.8, out=song)  # gentle soft clip on the kick peaks
    fade = min(n, int(0.05 * sr))
    song[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    peak = float(np.abs(song).max())
    if peak > 0:
        song *= 0.9 / peak
    return np.ascontiguousarray(song, dtype=np.float32), sr, BPM


def write_demo_wav(path, seconds: float = 30.0, sr: int = 44100, seed: int = 0) -> Path:
    """Write :func:`demo_song` to a 16-bit stereo WAV file at ``path``; returns the path."""
    import soundfile as sf

    samples, sr, _ = demo_song(seconds, sr, seed)
    path = Path(path)
    sf.write(str(path), samples, sr, subtype="PCM_16")
    return path


def drum_track(bpm: float, seconds: float = 20.0, sr: int = 44100, seed: int = 0,
               first: float = 0.1, jitter: float = 0.0, hats: bool = True):
    """A plain drum pattern with known beat times, for testing and measuring beat tracking.

    Kick on every beat, snare on 2 and 4, hats on eighths (``hats=False`` leaves them out).
    ``jitter`` > 0 humanises it: each hit moves by up to +-``jitter`` seconds and kicks vary in
    velocity. Returns ``(mono float32 [n], beat times in seconds)``.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = np.zeros(n, np.float32)
    t = np.arange(int(0.3 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-t / 0.03)) / sr) * np.exp(-t / 0.12)
    snare = rng.standard_normal(t.size) * np.exp(-t / 0.06) * 0.5
    hat = np.diff(rng.standard_normal(t.size + 1)) * np.exp(-t / 0.015) * 0.15
    beat = 60.0 / bpm
    beats = np.arange(first, seconds - 0.3, beat)

    def add(at, sig, gain):
        if jitter:
            at += rng.uniform(-jitter, jitter)
        i = max(0, int(round(at * sr)))
        m = min(sig.size, n - i)
        x[i:i + m] += gain * sig[:m]

    for k, b in enumerate(beats):
        add(b, kick, 0.8 * rng.uniform(0.8, 1.0) if jitter else 0.8)
        if k % 2 == 1:
            add(b, snare, 0.6)
        if hats:
            add(b, hat, 1.0)
            add(b + beat / 2, hat, 0.7)
    return x, beats

