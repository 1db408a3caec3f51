"""Video files: :class:`VideoWriter` (H.264 + AAC through PyAV, encoded on its own thread) and
:func:`probe` (what a written file really holds, found by decoding it).

The container follows the file extension (.mp4, .mkv, .mov). Video is H.264 yuv420p; odd sizes
are padded to even by repeating the last column/row. Audio, when given, is AAC at the source
sample rate when AAC supports it (:data:`AAC_RATES`, 7.35-96 kHz), else resampled to
:func:`aac_rate` (48 or 44.1 kHz) with a polyphase filter (:func:`resample`): for frame ``i`` the audio up to time ``(i + 1) / fps`` is encoded right after the
frame, so the two streams stay interleaved; :meth:`VideoWriter.close` flushes the audio up to the
end of the last frame (a render cut short gets audio as long as its video).
"""

from __future__ import annotations

import math
import queue
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.errors import RenderError

__all__ = ["AAC_RATES", "VideoWriter", "aac_rate", "probe", "resample"]

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov"}

#: The sample rates FFmpeg's AAC encoder opens at (any other fails with EINVAL).
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
             7350)


def aac_rate(sr: int) -> int:
    """The rate AAC encodes audio of ``sr`` Hz at: ``sr`` itself when AAC supports it, else
    48000 or 44100, whichever is the simpler ratio to ``sr`` (192 kHz -> 48 kHz, 176.4 -> 44.1,
    1 kHz -> 48 kHz), so the resampling filter stays short."""
    sr = int(sr)
    if sr in AAC_RATES:
        return sr

    def cost(to: int) -> int:
        g = math.gcd(to, sr)
        return to // g + sr // g

    return min((48000, 44100), key=cost)


def resample(samples: np.ndarray, sr: int, to: int) -> np.ndarray:
    """``samples`` [n, channels] (or [n]) at ``sr`` Hz as float32 at ``to`` Hz: polyphase
    resampling with scipy's anti-aliasing FIR (``resample_poly``), the length scaled exactly."""
    from scipy.signal import resample_poly

    g = math.gcd(int(to), int(sr))
    out = resample_poly(np.asarray(samples, np.float32), int(to) // g, int(sr) // g, axis=0)
    return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return " ".join(str(exc.strerror).split())
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class VideoWriter:
    """Write RGB frames (and optional audio) to ``path``.

    ``size`` is (w, h) in pixels; ``fps`` frames per second (float or Fraction); ``audio`` is
    ``(samples float32 [n, channels] in -1..1, sample_rate)`` or None; ``crf`` is x264's constant
    rate factor (0 lossless .. 51 worst, 18 ≈ visually lossless); ``preset`` x264's speed preset.
    ``queue_size`` frames may wait for the encoder; :meth:`write` blocks only when they all do.
    Errors are :class:`RenderError` naming the file; an encoder error surfaces at the next
    :meth:`write` or at :meth:`close`.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float,
                 audio: tuple[np.ndarray, int] | None = None, crf: int = 18,
                 preset: str = "veryfast", queue_size: int = 8):
        self.path = str(path)
        self.size = (int(size[0]), int(size[1]))
        w, h = self.size
        if w < 1 or h < 1:
            raise RenderError(f"cannot write video {self.path}: bad size {w}x{h}")
        rate = Fraction(fps).limit_denominator(1001)
        if rate <= 0:
            raise RenderError(f"cannot write video {self.path}: fps must be positive")
        self.fps = rate
        ext = Path(self.path).suffix.lower()
        fmt = _FORMATS.get(ext)
        if fmt is None:
            raise RenderError(f"cannot write video {self.path}: unknown extension {ext or '(none)'}"
                              " (use .mp4, .mkv or .mov)")
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise RenderError(f"cannot write video {self.path}: directory {parent} does not exist")
        try:
            open(self.path, "wb").close()  # PyAV opens the file lazily: fail here, not later
            self._container = av.open(self.path, mode="w", format=fmt)
        except (OSError, av.FFmpegError) as exc:
            raise RenderError(f"cannot write video {self.path}: {_one_line(exc)}") from None

        try:
            pw, ph = w + (w & 1), h + (h & 1)
            vs = self._container.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = pw, ph, "yuv420p"
            self._vtb = 1 / rate  # frame pts unit (the muxer may change the stream's own)
            vs.time_base = self._vtb
            vs.options = {"crf": str(int(crf)), "preset": str(preset)}
            self._video = vs
            self._audio = None
            if audio is not None:
                samples, sr = audio
                samples = np.asarray(samples, dtype=np.float32)
                if samples.ndim == 1:
                    samples = samples[:, None]
                samples = samples[:, :2]
                sr = int(sr)
                if sr < 1:
                    raise ValueError(f"bad audio sample rate {sr}")
                if aac_rate(sr) != sr:   # e.g. 192 kHz or 1 kHz: AAC cannot open at that rate
                    samples, sr = resample(samples, sr, aac_rate(sr)), aac_rate(sr)
                layout = "mono" if samples.shape[1] == 1 else "stereo"
                # planar float (channels, n), the layout AAC encodes from
                self._samples = np.ascontiguousarray(samples.T)
                self._sr = int(sr)
                self._layout = layout
                a = self._container.add_stream("aac", rate=self._sr, layout=layout)
                a.time_base = Fraction(1, self._sr)
                self._audio = a
        except (av.FFmpegError, ValueError, TypeError) as exc:
            self._container.close()
            raise RenderError(f"cannot write video {self.path}: {_one_line(exc)}") from None

        self._audio_pos = 0         # samples encoded so far
        self._frames = 0            # frames encoded so far (writer thread)
        self._written = 0           # frames accepted by write()
        self._pad = np.empty((ph, pw, 3), np.uint8)
        self._free: queue.Queue = queue.Queue()
        for _ in range(max(1, int(queue_size))):
            self._free.put(np.empty((h, w, 3), np.uint8))
        self._work: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lj-video-writer", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------------
    @property
    def frames_written(self) -> int:
        """Frames accepted by :meth:`write` so far."""
        return self._written

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RenderError(f"video {self.path}: encoding failed: {_one_line(self._error)}") \
                from None

    def write(self, frame_u8: np.ndarray) -> None:
        """Queue one [h, w, 3] uint8 frame (top row first); copies it, so the caller may reuse
        its buffer at once. Blocks only while ``queue_size`` frames wait for the encoder."""
        if self._closed:
            raise RenderError(f"video {self.path}: write after close")
        self._raise_if_failed()
        w, h = self.size
        if frame_u8.shape != (h, w, 3):
            raise RenderError(f"video {self.path}: frame must be [{h}, {w}, 3], got "
                              f"{list(frame_u8.shape)}")
        while True:
            try:
                buf = self._free.get(timeout=0.1)
                break
            except queue.Empty:
                self._raise_if_failed()
                if not self._thread.is_alive():
                    raise RenderError(f"video {self.path}: the encoder thread stopped") from None
        np.copyto(buf, frame_u8, casting="unsafe")
        self._work.put(buf)
        self._written += 1

    def close(self) -> None:
        """Encode what is queued, flush the encoders and finish the file (idempotent)."""
        if not self._closed:
            self._closed = True
            self._work.put(None)
            self._thread.join()
        self._raise_if_failed()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        container = self._container
        try:
            while True:
                buf = self._work.get()
                if buf is None:
                    break
                if self._error is None:
                    self._encode_frame(buf)
                self._free.put(buf)
            if self._error is None:
                self._encode_audio_until(self._frames)
                self._mux(self._video.encode(None))
                if self._audio is not None:
                    self._mux(self._audio.encode(None))
        except BaseException as exc:  # reported to the caller at its next write/close
            if self._error is None:
                self._error = exc
            while self._work.get() is not None:  # unblock the caller until close()
                pass
        finally:
            try:
                container.close()
            except BaseException as exc:
                if self._error is None:
                    self._error = exc

    def _mux(self, packets) -> None:
        for p in packets:
            self._container.mux(p)

    def _encode_frame(self, buf: np.ndarray) -> None:
        h, w = buf.shape[:2]
        pad = self._pad
        if pad.shape[:2] == (h, w):
            src = buf
        else:
            pad[:h, :w] = buf
            pad[h:, :w] = buf[h - 1:h]
            pad[:, w:] = pad[:, w - 1:w]
            src = pad
        frame = av.VideoFrame.from_ndarray(src, format="rgb24")
        frame.pts = self._frames
        frame.time_base = self._vtb
        self._mux(self._video.encode(frame))
        self._frames += 1
        self._encode_audio_until(self._frames)

    def _encode_audio_until(self, frames: int) -> None:
        """Encode the audio up to the end of video frame ``frames`` - 1."""
        if self._audio is None:
            return
        end = min(int(frames * self._sr / self.fps), self._samples.shape[1])
        if end <= self._audio_pos:
            return
        chunk = self._samples[:, self._audio_pos:end]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                        layout=self._layout)
        af.sample_rate = self._sr
        af.pts = self._audio_pos
        af.time_base = Fraction(1, self._sr)
        self._mux(self._audio.encode(af))
        self._audio_pos = end


def probe(path: str | Path) -> dict:
    """Decode ``path`` and report what it holds.

    Returns ``{"frames": int (decoded video frames), "width", "height": int pixels as stored
    (odd sizes written by :class:`VideoWriter` come back padded to even),
    "duration": float seconds of video, "fps": float, "has_audio": bool,
    "audio_duration": float seconds of decoded audio (0.0 without audio)}``.
    """
    p = str(path)
    try:
        container = av.open(p, mode="r")
    except (OSError, av.FFmpegError) as exc:
        raise RenderError(f"cannot read video {p}: {_one_line(exc)}") from None
    try:
        if not container.streams.video:
            raise RenderError(f"cannot read video {p}: no video stream")
        vs = container.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else 0.0
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = width = height = 0
        samples, sr = 0, (audio.rate if audio is not None else 0) or 1
        for frame in container.decode(*([vs, audio] if audio is not None else [vs])):
            if isinstance(frame, av.VideoFrame):
                frames += 1
                width, height = frame.width, frame.height
            else:
                samples += frame.samples
                sr = frame.sample_rate or sr
        duration = frames / fps if fps else 0.0
        has_audio = audio is not None
        audio_duration = samples / sr if has_audio else 0.0
    except av.FFmpegError as exc:
        raise RenderError(f"cannot read video {p}: {_one_line(exc)}") from None
    finally:
        container.close()
    return {"frames": frames, "width": width, "height": height, "duration": duration,
            "fps": fps, "has_audio": has_audio, "audio_duration": audio_duration}
