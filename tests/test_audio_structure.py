"""The newer features on signals built for them: eight log bands, the causal harmonic/percussive
split, and the structure cues (novelty, build-up, drop)."""

import numpy as np
import pytest

from engine.audio.features import FeatureExtractor, SCALAR_FEATURES

SR = 44100
HOP = 512


def run(x, names):
    """Feed ``x`` hop by hop; return hop end times and an array [hops, len(names)]."""
    fe = FeatureExtractor(SR, HOP)
    n = len(x) // HOP
    out = np.zeros((n, len(names)))
    for i in range(n):
        f = fe.process_hop(x[i * HOP:(i + 1) * HOP])
        out[i] = [f[k] for k in names]
    return (np.arange(n) + 1) * HOP / SR, out


def test_new_features_are_published_scalars():
    for name in [f"band{i}" for i in range(8)] + ["harmonic", "percussive", "novelty", "buildup",
                                                  "drop"]:
        assert name in SCALAR_FEATURES


# --- log bands ----------------------------------------------------------------------------------

@pytest.mark.parametrize("band, freq", [(0, 45.0), (2, 220.0), (4, 1000.0), (6, 5000.0),
                                        (7, 12000.0)])
def test_a_tone_lights_its_own_log_band(band, freq):
    """A tone alternating with silence: its band tracks it (auto-gained near 1 while it sounds),
    bands an octave or more away stay dark."""
    t = np.arange(int(4 * SR)) / SR
    gate = (np.floor(t / 0.5) % 2 == 0)
    x = (0.5 * np.sin(2 * np.pi * freq * t) * gate).astype(np.float32)
    names = [f"band{i}" for i in range(8)]
    times, v = run(x, names)
    on = (times % 1.0 > 0.2) & (times % 1.0 < 0.45) & (times > 1.0)
    assert v[on, band].mean() > 0.8
    for other in range(8):
        if abs(other - band) >= 2:
            assert v[on, other].mean() < 0.3, (other, v[on, other].mean())


def test_log_bands_are_zero_in_silence_and_finite():
    times, v = run(np.zeros(SR, np.float32), [f"band{i}" for i in range(8)])
    assert np.all(v == 0.0)


# --- harmonic / percussive ----------------------------------------------------------------------

def chord(seconds=4.0):
    """A sustained A minor triad (A3 C4 E4), three partials per note."""
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for f0 in (220.0, 261.63, 329.63):
        for k, a in ((1, 1.0), (2, 0.5), (3, 0.25)):
            x += a * np.sin(2 * np.pi * f0 * k * t)
    return (0.15 * x).astype(np.float32)


def clicks(seconds=4.0, period=0.25):
    x = np.zeros(int(seconds * SR), np.float32)
    for s in np.arange(0.1, seconds, period):
        i = int(s * SR)
        x[i:i + 32] = np.hanning(32) * 0.8   # a 0.7 ms click: flat spectrum up to ~10 kHz
    return x


def test_sustained_chord_is_harmonic():
    times, v = run(chord(), ["harmonic", "percussive"])
    later = times > 1.0
    h, p = v[later, 0].mean(), v[later, 1].mean()
    assert h > 0.5 and h > 5 * p, (h, p)


def test_clicks_are_percussive():
    times, v = run(clicks(), ["harmonic", "percussive", "onset"])
    later = times > 1.0
    p, h = v[later, 1], v[later, 0]
    sounding = later & (v[:, 0] + v[:, 1] > 0.05)
    assert sounding.sum() > 20
    assert p[sounding[later]].mean() > 3 * h[sounding[later]].mean(), (p.mean(), h.mean())


def test_chord_plus_clicks_lifts_percussive_on_the_clicks():
    x = chord() + clicks()
    times, v = run(x, ["harmonic", "percussive"])
    starts = np.arange(0.1, 4.0, 0.25)
    on_click = np.array([np.any((s <= times) & (times <= s + 0.03)) for s in starts])
    assert on_click.all()
    at = np.array([np.argmax(times >= s) for s in starts[starts > 1.0]])
    between = np.array([np.argmax(times >= s + 0.125) for s in starts[starts > 1.0]])
    assert v[at, 1].mean() > 2 * v[between, 1].mean()


# --- structure ----------------------------------------------------------------------------------

def drum_loop(seconds, bpm=128.0, seed=0):
    """Kick on the beat and an offbeat noise hat, with a bass note: the 'steady section'."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n)
    beat = 60.0 / bpm
    tk = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 * tk + 60 * (1 - np.exp(-tk / 0.03)) * 0.03)) * np.exp(-tk / 0.12)
    hat = np.diff(rng.standard_normal(int(0.05 * SR) + 1)) * np.exp(-np.arange(int(0.05 * SR)) / SR / 0.01)
    for s in np.arange(0.0, seconds, beat):
        i = int(s * SR)
        x[i:i + kick.size] += 0.7 * kick[:n - i]
        j = int((s + beat / 2) * SR)
        if j < n:
            x[j:j + hat.size] += 0.15 * hat[:n - j]
    t = np.arange(n) / SR
    x += 0.25 * np.sin(2 * np.pi * 55 * t)
    return x


def pad(seconds, seed=1):
    t = np.arange(int(seconds * SR)) / SR
    return 0.08 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63, 440.0))


def riser(seconds, seed=2):
    """The build-up: the drums and bass gone, a noise riser growing 24 dB with a rising band-pass
    (the 'filter sweep') over the pad."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    noise = rng.standard_normal(n)
    # Filter sweep in blocks: a one-pole high-pass whose cutoff rises from 300 Hz to 8 kHz.
    out = np.zeros(n)
    block = 1024
    prev_x = prev_y = 0.0
    for b in range(0, n, block):
        frac = b / n
        fc = 300.0 * (8000.0 / 300.0) ** frac
        a = 1.0 / (1.0 + 2 * np.pi * fc / SR)
        seg = noise[b:b + block]
        y = np.empty_like(seg)
        for k, v in enumerate(seg):
            prev_y = a * (prev_y + v - prev_x)
            prev_x = v
            y[k] = prev_y
        out[b:b + block] = y
    gain = 10 ** ((-30 + 24 * np.arange(n) / n) / 20)
    return out * gain + pad(seconds)


def song():
    """16 s steady, 8 s build-up (drums removed), drop at 24 s: full band for 16 s."""
    steady = drum_loop(16.0) + pad(16.0)
    build = riser(8.0)
    drop = 1.4 * drum_loop(16.0, seed=3) + pad(16.0) + 0.05 * np.random.default_rng(4).standard_normal(int(16 * SR))
    return np.concatenate([steady, build, drop]).astype(np.float32) * 0.7, 24.0


@pytest.fixture(scope="module")
def song_features():
    x, drop_at = song()
    times, v = run(x, ["buildup", "drop", "novelty"])
    return times, v, drop_at


def test_drop_fires_once_near_the_drop(song_features):
    times, v, drop_at = song_features
    drops = times[v[:, 1] == 1.0]
    assert len(drops) == 1, drops
    assert drop_at <= drops[0] <= drop_at + 0.3


def test_buildup_rises_through_the_build_and_stays_low_when_steady(song_features):
    times, v, drop_at = song_features
    steady = (times > 4.0) & (times < 16.0)
    late_build = (times > drop_at - 3.0) & (times < drop_at)
    after = times > drop_at + 4.0
    assert v[steady, 0].max() < 0.3
    assert v[late_build, 0].mean() > 0.6
    assert v[after, 0].max() < 0.3


def test_novelty_marks_section_changes_not_steady_music(song_features):
    times, v, drop_at = song_features
    steady = (times > 6.0) & (times < 16.0)
    settled = times > drop_at + 6.0
    assert v[steady, 2].mean() < 0.1 and v[settled, 2].mean() < 0.1
    assert v[(times > 16.0) & (times < 17.5), 2].max() > 0.5      # drums stop
    assert v[(times > drop_at) & (times < drop_at + 1.5), 2].max() > 0.5  # the drop


def test_a_loudness_step_is_not_a_build_up():
    """A quiet section followed by a loud one (a 12 dB step, no ramp) gives no build-up, no drop."""
    x = np.concatenate([0.25 * drum_loop(10.0), drum_loop(10.0, seed=5)]).astype(np.float32) * 0.7
    times, v = run(x, ["buildup", "drop"])
    assert v[:, 0].max() < 0.4
    assert v[:, 1].sum() == 0


def test_silence_gives_no_structure_events():
    times, v = run(np.zeros(5 * SR, np.float32), ["buildup", "drop", "novelty"])
    assert np.all(v == 0.0)


def test_demo_song_drop_is_found_after_its_build_up():
    """The demo song's first build-up (a filter sweep and riser over the beat) ends in a drop at
    bar 8; that is the only drop in its first 30 s (the breakdown-to-drop step is not one)."""
    from engine.audio.demo import demo_sections, demo_song

    y, sr, _ = demo_song(seconds=30.0, sr=SR)
    times, v = run(np.ascontiguousarray(y.mean(axis=1), dtype=np.float32), ["drop", "buildup"])
    drop_at = [s for name, s, _ in demo_sections(30.0) if name == "drop"][0]
    drops = times[v[:, 0] == 1.0]
    assert len(drops) == 1 and drop_at <= drops[0] <= drop_at + 0.3, drops
