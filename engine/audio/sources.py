"""Where samples come from: audio files, the sound card's output (playback) and its input.

Both live sources feed a :class:`~engine.audio.ring.RingBuffer` from their audio callback and do
nothing else there; their ``position`` (samples written to the ring) is the clock the frame loop
follows.

``sounddevice`` is imported lazily, inside the functions that need it: on a machine without the
PortAudio library, files still load, :class:`FilePlayer` still runs (paced by the wall clock) and
only live input and device listing fail, with an :class:`~engine.errors.AudioError` that says
what to install.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from engine.audio.ring import RingBuffer
from engine.errors import AudioError

log = logging.getLogger("lj.audio")

RING_SECONDS = 10.0  # how much audio the live sources keep for the frame loop
LOST_AFTER_S = 1.0     # a delivering live input silent (no callback) this long is gone
FIRST_BLOCK_S = 3.0    # a freshly opened stream may take this long to deliver its first block
                       # (through PulseAudio's ALSA plugin it often takes about a second)
RETRY_EVERY_S = 1.0    # how often a lost input is reopened
SILENT_REOPEN_S = 5.0  # exact digital silence this long: reopen (PulseAudio moves a stream whose
                       # source vanished to another source and never moves it back)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


class PortAudioMissing(AudioError):
    """The sounddevice module or the PortAudio library it needs is not installed."""


def _sounddevice():
    """Import sounddevice, or raise :class:`PortAudioMissing` (an AudioError)."""
    try:
        import sounddevice
    except OSError as err:  # sounddevice raises OSError("PortAudio library not found")
        raise PortAudioMissing("PortAudio is not installed (apt-get install libportaudio2)") \
            from err
    except ImportError as err:
        raise PortAudioMissing("the sounddevice module is not installed "
                               "(pip install sounddevice)") from err
    return sounddevice


def _resolve_device(sd, device, kind: str):
    """Turn ``device`` (None, an index, or a case-insensitive name substring) into an index.

    ``kind`` is ``"input"`` or ``"output"``; a device must have at least one channel of that kind.
    Returns None for the default device (after checking that there is one).
    """
    key = f"max_{kind}_channels"
    try:
        devices = list(sd.query_devices())
    except Exception as err:
        raise AudioError(f"cannot list audio devices: {_one_line(err)}") from err
    if device is None:
        default = sd.default.device[0 if kind == "input" else 1]
        if isinstance(default, str):
            return _resolve_device(sd, default, kind)
        if default is None or default < 0 or default >= len(devices):
            raise AudioError(f"there is no default audio {kind} device "
                             "(run `lj devices` to list them)")
        return None
    if isinstance(device, (int, np.integer)) or (isinstance(device, str) and device.isdigit()):
        index = int(device)
        if not 0 <= index < len(devices):
            raise AudioError(f"there is no audio device {index} (run `lj devices` to list them)")
        if devices[index][key] < 1:
            raise AudioError(f"audio device {index} ('{devices[index]['name']}') has no "
                             f"{kind} channels (run `lj devices` to list them)")
        return index
    wanted = str(device).strip().lower()
    candidates = [i for i, d in enumerate(devices) if d[key] > 0]
    for i in candidates:  # an exact name wins over a substring
        if devices[i]["name"].lower() == wanted:
            return i
    for i in candidates:
        if wanted in devices[i]["name"].lower():
            return i
    raise AudioError(f"no audio {kind} device matches '{device}' (run `lj devices` to list them)")


# --- files ---------------------------------------------------------------------------------------

def load_audio(path) -> tuple[np.ndarray, int]:
    """Read an audio file.

    Parameters
    ----------
    path : str or pathlib.Path
        Any format libsndfile reads (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1); other formats
        (e.g. some MP3/M4A files) go through ``librosa.load``.

    Returns
    -------
    samples : numpy.ndarray
        float32 ``[n, channels]``, nominally in -1..1.
    sr : int
        Sample rate in Hz.

    Raises
    ------
    AudioError
        The file is missing, unreadable or holds no samples (one line naming the file).
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"cannot read audio file {p}: no such file")
    if p.is_dir():
        raise AudioError(f"cannot read audio file {p}: it is a directory")
    import soundfile as sf

    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as sf_err:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import librosa

                y, sr = librosa.load(str(p), sr=None, mono=False)
        except Exception as err:
            raise AudioError(f"cannot read audio file {p}: {_one_line(sf_err)}") from err
        data = y[:, None] if y.ndim == 1 else y.T
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"cannot read audio file {p}: it contains no audio samples")
    return np.ascontiguousarray(data, dtype=np.float32), int(sr)


# --- playback ------------------------------------------------------------------------------------

def _close_quietly(stream) -> None:
    """Close a stream that may already be broken; errors are expected and ignored."""
    try:
        _close_stream(stream)
    except Exception as err:
        log.debug("closing a broken audio stream: %s", _one_line(err))


def _close_stream(stream) -> None:
    """Stop and close a sounddevice stream (None is fine); close even if stopping fails."""
    if stream is None:
        return
    try:
        stream.stop()
    finally:
        stream.close()


class FilePlayer:
    """Plays samples out loud and feeds their mono mix into :attr:`ring`, block by block.

    The audio callback copies the next block to the sound card and the same block's mono mix
    into the ring, so the analysis runs in step with what is heard. Without a usable output
    device (no PortAudio, no default device, the device fails to open) a background thread writes
    the blocks into the ring paced by ``time.monotonic`` instead, and a warning is logged: the
    visuals keep time, silently.

    Parameters
    ----------
    samples : numpy.ndarray
        ``[n]`` or ``[n, channels]`` samples, nominally in -1..1 (converted to float32).
    sr : int
        Sample rate in Hz (the stream is opened at this rate).
    device : int or str, optional
        Output device index or case-insensitive name substring; default: the system default.
        A name that matches no device raises :class:`AudioError`.
    blocksize : int
        Samples per callback (512 = 11.6 ms at 44.1 kHz).
    loop : bool
        Start again from the beginning at the end instead of finishing.

    Attributes
    ----------
    ring : RingBuffer
        Mono mix of everything played so far (the last ``RING_SECONDS``).
    fallback : bool
        True while paced by the wall clock instead of a sound card.
    xruns : int
        Output underflows reported by the sound card.
    """

    def __init__(self, samples, sr: int, device=None, blocksize: int = 512, loop: bool = False):
        data = np.asarray(samples, dtype=np.float32)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
            raise AudioError(f"cannot play audio of shape {np.shape(samples)}: "
                             "need [n] or [n, channels] with n > 0")
        self._samples = np.ascontiguousarray(data)
        self._mono = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
        self._out = self._samples
        self._n = data.shape[0]
        self.sample_rate = int(sr)
        self.channels = data.shape[1]
        self.device = device
        self.blocksize = int(blocksize)
        self.loop = bool(loop)
        self.ring = RingBuffer(max(int(RING_SECONDS * self.sample_rate), 8 * self.blocksize))
        self.finished = False
        self.fallback = False
        self.xruns = 0
        self._pos = 0  # next sample of the file to play
        self._stream = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def position(self) -> int:
        """Samples played so far (= ``ring.total_written``; keeps counting across loops)."""
        return self.ring.total_written

    @property
    def duration(self) -> float:
        """Length of the samples in seconds."""
        return self._n / self.sample_rate

    @property
    def latency(self) -> float:
        """Output latency of the open stream in seconds (0.0 when paced by the wall clock)."""
        return float(self._stream.latency) if self._stream is not None else 0.0

    def _advance(self, frames: int, outdata) -> None:
        """Move ``frames`` samples on: copy them to ``outdata`` (if any) and into the ring."""
        done = 0
        n = self._n
        while done < frames and not self.finished:
            take = min(frames - done, n - self._pos)
            if outdata is not None:
                outdata[done:done + take] = self._out[self._pos:self._pos + take]
            self.ring.write(self._mono[self._pos:self._pos + take])
            self._pos += take
            done += take
            if self._pos >= n:
                if self.loop:
                    self._pos = 0
                else:
                    self.finished = True
        if outdata is not None and done < frames:
            outdata[done:] = 0.0

    def _callback(self, outdata, frames, time_info, status) -> None:
        if status.output_underflow:
            self.xruns += 1
        self._advance(frames, outdata)

    def _pace(self) -> None:
        sr, block = self.sample_rate, self.blocksize
        t0 = time.monotonic()
        base = self.ring.total_written
        while not self._stop.is_set() and not self.finished:
            due = int((time.monotonic() - t0) * sr)
            while self.ring.total_written - base < due and not self.finished:
                self._advance(block, None)
            self._stop.wait(block / sr / 2)

    def _open_stream(self):
        sd = _sounddevice()
        index = _resolve_device(sd, self.device, "output")
        info = sd.query_devices(index if index is not None else sd.default.device[1])
        out_ch = max(1, min(self.channels, int(info["max_output_channels"])))
        if out_ch == self.channels:
            self._out = self._samples
        elif out_ch == 1:
            self._out = self._mono[:, None]
        else:
            self._out = np.ascontiguousarray(self._samples[:, :out_ch])
        stream = sd.OutputStream(samplerate=self.sample_rate, blocksize=self.blocksize,
                                 device=index, channels=out_ch, dtype="float32",
                                 callback=self._callback)
        stream.start()
        return stream

    def start(self) -> None:
        """Start (or resume) playback. Falls back to wall-clock pacing without a sound card."""
        if self._stream is not None or (self._thread is not None and self._thread.is_alive()):
            return
        try:
            self._stream = self._open_stream()
            self.fallback = False
            return
        except AudioError as err:
            if self.device is not None and not isinstance(err, PortAudioMissing):
                raise  # the user named a device that does not exist
            reason = str(err)
        except Exception as err:  # PortAudioError, ValueError from a device that says no
            if self._stream is not None:
                self._stream.close()
            self._stream = None
            reason = _one_line(err)
        log.warning("no audio output (%s); playing silently, paced by the wall clock", reason)
        self.fallback = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._pace, name="lj-audio-pace", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop playback (``start()`` resumes where it stopped)."""
        _close_stream(self._stream)
        self._stream = None
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(5.0)

    def __enter__(self) -> "FilePlayer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- capture -------------------------------------------------------------------------------------

class LiveInput:
    """Captures a sound card input, mixes the chosen channels to mono and feeds :attr:`ring`.

    Parameters
    ----------
    device : int or str, optional
        Input device index or case-insensitive name substring (e.g. ``"scarlett"``); default:
        the system default input.
    channels : list of int, optional
        1-based input channel numbers to mix, e.g. ``[3, 4]``. Default: ``[1, 2]`` (``[1]`` on a
        mono device).
    sr : int, optional
        Sample rate in Hz; default: the device's default rate.
    blocksize : int
        Samples per callback.

    Raises
    ------
    AudioError
        PortAudio is missing, no device matches, a channel does not exist (one line each).

    Attributes
    ----------
    ring : RingBuffer
        Mono mix of the captured audio (the last ``RING_SECONDS``).
    device_name : str
        Name of the device that was opened.
    overflows : int
        Input overflows reported by the sound card (samples lost).
    """

    def __init__(self, device=None, channels=None, sr=None, blocksize: int = 512):
        sd = _sounddevice()
        self._sd = sd
        self._index = _resolve_device(sd, device, "input")
        try:
            info = sd.query_devices(self._index if self._index is not None else None, "input")
        except Exception as err:
            raise AudioError(f"cannot query audio input device: {_one_line(err)}") from err
        self.device_name = str(info["name"])
        max_in = int(info["max_input_channels"])
        if channels is None:
            channels = [1, 2] if max_in >= 2 else [1]
        channels = [int(c) for c in channels]
        if not channels:
            raise AudioError("no input channels selected (channels are numbered from 1)")
        bad = [c for c in channels if not 1 <= c <= max_in]
        if bad:
            raise AudioError(f"audio input '{self.device_name}' has channels 1..{max_in}, "
                             f"not {bad[0]}")
        self.channels = channels
        self.sample_rate = int(sr) if sr else int(round(info["default_samplerate"]))
        self.blocksize = int(blocksize)
        self.ring = RingBuffer(max(int(RING_SECONDS * self.sample_rate), 8 * self.blocksize))
        self.overflows = 0
        self._sel = [c - 1 for c in channels]
        self._open_channels = max(channels)
        self._gain = np.float32(1.0 / len(channels))
        self._scratch = np.zeros(max(self.blocksize, 4096), dtype=np.float32)
        self._stream = None
        self._spec = device            # re-resolved on reopen: indices change when PortAudio rescans
        self.lost = False              # True while the device is gone (silence is fed meanwhile)
        self.reopens = 0               # successful reopens after a loss or a long silence
        self._silence_logged = False   # "exactly silent, reopening" said once per silent stretch
        self._quiet_mark = 0.0         # _heard when a reopen handed over (not a sound heard)
        self._feeding = False          # the watchdog is writing silence; the callback stands back
        self._last_cb = 0.0            # time.monotonic() of the latest callback
        self._heard = 0.0              # ... of the latest block that was not all zeros
        self._halt = threading.Event()
        self._watchdog: threading.Thread | None = None

    @property
    def position(self) -> int:
        """Samples captured so far, silence fed during a loss included (``ring.total_written``)."""
        return self.ring.total_written

    def _callback(self, indata, frames, time_info, status) -> None:
        now = time.monotonic()
        self._last_cb = now
        if status.input_overflow:
            self.overflows += 1
        sel = self._sel
        if indata[:, sel[0]].any():
            self._heard = now
        if self._feeding:  # the watchdog owns the ring until it sees this stream deliver
            return
        if len(sel) == 1:
            self.ring.write(indata[:, sel[0]])
            return
        step = self._scratch.shape[0]
        for a in range(0, frames, step):
            b = min(frames, a + step)
            s = self._scratch[:b - a]
            np.copyto(s, indata[a:b, sel[0]])
            for c in sel[1:]:
                np.add(s, indata[a:b, c], out=s)
            s *= self._gain
            self.ring.write(s)

    def _open(self, rescan: bool = False):
        """Open and start a stream on the device (found again by its name or index)."""
        sd = self._sd
        if rescan:  # a device that vanished and came back is only seen after a rescan
            sd._terminate()
            sd._initialize()
            self._index = _resolve_device(sd, self._spec, "input")
        stream = None
        try:
            stream = sd.InputStream(samplerate=self.sample_rate, blocksize=self.blocksize,
                                    device=self._index, channels=self._open_channels,
                                    dtype="float32", callback=self._callback)
            stream.start()
        except Exception:
            if stream is not None:
                stream.close()
            raise
        return stream

    def start(self) -> None:
        """Open the input stream and start capturing (and watching over the device)."""
        if self._stream is not None:
            return
        try:
            self._stream = self._open()
        except Exception as err:
            raise AudioError(f"cannot open audio input '{self.device_name}': "
                             f"{_one_line(err)}") from err
        self._last_cb = 0.0
        self._heard = time.monotonic()
        self._halt.clear()
        self._watchdog = threading.Thread(target=self._watch, name="lj-audio-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        """Notice a dead or stranded stream; feed silence in real time and reopen until it is back.

        While feeding, this thread is the ring's only writer (the callback stands back); it
        hands the ring back once the new stream has delivered a block.
        """
        silence = np.zeros(self.blocksize, np.float32)
        opened_at = time.monotonic()
        fed = 0
        fed_since = next_try = 0.0
        rescan = False
        while not self._halt.wait(0.05):
            now = time.monotonic()
            if not self._feeding:
                stream = self._stream
                if self._last_cb > opened_at:  # it has delivered: it must keep delivering
                    stalled = now - self._last_cb > LOST_AFTER_S
                else:                          # still starting
                    stalled = now - opened_at > FIRST_BLOCK_S
                dead = stream is None or not stream.active or stalled
                stranded = now - self._heard > SILENT_REOPEN_S
                if not (dead or stranded):
                    if self._heard > self._quiet_mark:  # real sound since: a new stretch may log
                        self._silence_logged = False
                    continue
                if dead:
                    self.lost = True
                    log.warning("audio input '%s' lost; the visuals go on in silence while it is "
                                "reopened every %.0f s", self.device_name, RETRY_EVERY_S)
                elif not self._silence_logged:
                    self._silence_logged = True
                    log.warning("audio input '%s' has been exactly silent for %.0f s; reopening "
                                "it (its source may have gone)", self.device_name, SILENT_REOPEN_S)
                self._feeding, rescan = True, dead
                # Silence starts where the audio stopped (at most 2 s back), so the clock has
                # no hole; a stranded stream was still delivering until now.
                fed_since = max(self._last_cb, now - 2.0) if dead and self._last_cb else now
                fed, next_try = 0, now + (RETRY_EVERY_S if dead else 0.0)
                _close_quietly(stream)
                self._stream = None
            # Silence, paced by the wall clock, so the audio clock (and the show) keeps moving.
            due = int((now - fed_since) * self.sample_rate) - fed
            while due >= self.blocksize:
                self.ring.write(silence)
                fed += self.blocksize
                due -= self.blocksize
            if self._stream is None and now >= next_try:
                next_try = now + RETRY_EVERY_S
                try:
                    self._stream = self._open(rescan=rescan)
                    opened_at = now
                except Exception as err:
                    log.debug("audio input reopen failed: %s", _one_line(err))
            elif self._stream is not None and self._last_cb > opened_at:
                self._feeding = False  # the new stream delivers: give the ring back
                self._heard = max(self._heard, now)
                self._quiet_mark = self._heard
                self.reopens += 1
                if self.lost:
                    self.lost = False
                    log.warning("audio input '%s' is back", self.device_name)
            elif self._stream is not None and now - opened_at > FIRST_BLOCK_S:
                _close_quietly(self._stream)  # opened but silent: try again
                self._stream = None

    def stop(self) -> None:
        """Stop capturing and close the stream."""
        self._halt.set()
        if self._watchdog is not None:
            self._watchdog.join(5.0)
            self._watchdog = None
        _close_stream(self._stream)
        self._stream = None
        self._feeding = False

    def __enter__(self) -> "LiveInput":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def list_devices() -> str:
    """A table of the audio devices: index, name, input/output channels, default rate, host API.

    ``>`` marks the default input, ``<`` the default output, ``*`` a device that is both.
    """
    sd = _sounddevice()
    try:
        devices = list(sd.query_devices())
        hostapis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except Exception as err:
        raise AudioError(f"cannot list audio devices: {_one_line(err)}") from err
    if not devices:
        return "no audio devices found"
    lines = [f"    {'#':>3}  {'name':<40} {'in':>4} {'out':>4} {'rate':>7}  host",
             f"    {'-' * 3}  {'-' * 40} {'-' * 4} {'-' * 4} {'-' * 7}  {'-' * 8}"]
    for i, d in enumerate(devices):
        is_in, is_out = i == default_in, i == default_out
        mark = "*" if is_in and is_out else (">" if is_in else ("<" if is_out else " "))
        host = hostapis[d["hostapi"]]["name"] if 0 <= d["hostapi"] < len(hostapis) else "?"
        lines.append(f"  {mark} {i:>3}  {d['name'][:40]:<40} {d['max_input_channels']:>4} "
                     f"{d['max_output_channels']:>4} {d['default_samplerate']:>7.0f}  {host}")
    lines.append("  (> default input, < default output, * both)")
    return "\n".join(lines)
