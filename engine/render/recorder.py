"""Live recording: the output as shown (effects included) and the audio it was made from, to a
video file, without ever holding up the show.

:class:`LiveRecorder` takes frames with :meth:`~LiveRecorder.offer`, which never blocks: the
frame is read back from the renderer into one of ``queue_frames`` preallocated buffers and handed
to an encoder thread (H.264 + AAC through PyAV). When every buffer is still waiting for the
encoder, the frame is not recorded and :attr:`~LiveRecorder.dropped` counts it; the live frame
is shown all the same. Each frame is stamped with its audio time, so the video stays in sync with
the sound whatever the live frame rate (frames land on a ``fps`` grid; two frames in one slot
keep the first; a slow stretch leaves gaps, which players show as a held frame).

The audio is read by the encoder thread itself from the source's ring buffer (the samples the
show heard, from the first recorded frame's time on), so the frame loop does no audio work.

A write error (disk full, file too large, a vanished directory) ends the recording with one
message in :attr:`~LiveRecorder.error`; :class:`Recording`, the live loop's switch, logs it once
and the show goes on. :meth:`~LiveRecorder.close` (also on SIGINT/SIGTERM through the live
loop's ``finally``) encodes what is queued and finalises the file so it plays.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.errors import RenderError
from engine.render.frames import FramePool
from engine.render.record import _FORMATS, _one_line

__all__ = ["LiveRecorder", "Recording"]

log = logging.getLogger("lj.record")

AUDIO_CHUNK = 4096


class LiveRecorder:
    """Record frames of ``size`` (w, h) at up to ``fps`` to ``path`` (.mp4, .mkv, .mov).

    ``audio``: ``(ring, sample_rate)`` — a :class:`~engine.audio.ring.RingBuffer` (mono) whose
    sample positions are the frames' audio clock — or None for video only.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float = 30.0,
                 audio: tuple | None = None, queue_frames: int = 8, crf: int = 20,
                 preset: str = "ultrafast"):
        self.path = str(path)
        w, h = self.size = (int(size[0]), int(size[1]))
        self.fps = Fraction(fps).limit_denominator(1001)
        if w < 1 or h < 1 or self.fps <= 0:
            raise RenderError(f"cannot record to {self.path}: bad size {w}x{h} or fps {fps}")
        fmt = _FORMATS.get(Path(self.path).suffix.lower())
        if fmt is None:
            raise RenderError(f"cannot record to {self.path}: unknown extension "
                              f"{Path(self.path).suffix or '(none)'} (use .mp4, .mkv or .mov)")
        try:
            # FFmpeg's own file writer only reports a write error when the file is closed; through
            # a Python file a full disk raises at the next mux, so the recording stops at once.
            self._file = open(self.path, "wb", buffering=0)
        except OSError as exc:
            raise RenderError(f"cannot record to {self.path}: {_one_line(exc)}") from None
        try:
            self._container = av.open(self._file, mode="w", format=fmt)
        except (OSError, av.FFmpegError) as exc:
            self._file.close()
            raise RenderError(f"cannot record to {self.path}: {_one_line(exc)}") from None
        try:
            pw, ph = w + (w & 1), h + (h & 1)
            vs = self._container.add_stream("libx264", rate=self.fps)
            vs.width, vs.height, vs.pix_fmt = pw, ph, "yuv420p"
            self._vtb = 1 / self.fps    # frame pts unit (the muxer may change the stream's)
            vs.time_base = self._vtb
            vs.options = {"crf": str(int(crf)), "preset": str(preset), "tune": "zerolatency"}
            self._video = vs
            self._ring, self._sr, self._audio = None, 0, None
            if audio is not None:
                self._ring, self._sr = audio[0], int(audio[1])
                a = self._container.add_stream("aac", rate=self._sr, layout="mono")
                a.time_base = Fraction(1, self._sr)
                self._audio = a
        except (av.FFmpegError, ValueError, TypeError) as exc:
            self._container.close()
            self._file.close()
            raise RenderError(f"cannot record to {self.path}: {_one_line(exc)}") from None
        self._pad = np.zeros((ph, pw, 3), np.uint8) if (pw, ph) != (w, h) else None
        self._chunk = np.zeros((1, AUDIO_CHUNK), np.float32)
        self._free = FramePool((w, h), queue_frames)
        self._work: queue.Queue = queue.Queue()
        self._t0: float | None = None     # audio time of the first frame
        self._last_pts = -1
        self._audio_pos = 0               # next sample to encode (ring position)
        self._audio_end = 0               # samples up to here may be encoded
        self.frames = 0                   # frames handed to the encoder
        self.encoded = 0                  # frames encoded (writer thread)
        self.dropped = 0                  # frames not recorded because the encoder was behind
        self.audio_lost = 0               # samples the ring had overwritten before encoding
        self.error: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lj-recorder", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def offer(self, frame, t: float, audio_pos: int | None = None) -> bool:
        """Record the frame on show at audio time ``t`` (seconds): ``frame`` is a
        :class:`~engine.render.pipeline.Renderer` (read back here, on the GL thread) or an
        ``[h, w, 3]`` uint8 array. ``audio_pos``: the ring position the audio may be encoded up
        to (default: the frame's time). Never blocks; False when the frame was not recorded
        (encoder behind: counted in :attr:`dropped`; same slot as the last frame; failed)."""
        if self._closed or self.error is not None:
            return False
        if self._t0 is None:
            self._t0 = float(t)
            self._audio_pos = self._audio_end = int(round(self._t0 * self._sr))
        pts = math.floor((float(t) - self._t0) * float(self.fps) + 1e-6)  # the frame's slot
        if pts <= self._last_pts:
            return False
        buf = self._free.take(frame)
        if buf is None:
            self.dropped += 1
            return False
        end = int(round(float(t) * self._sr)) if audio_pos is None else int(audio_pos)
        self._work.put((buf, pts, end))
        self._last_pts = pts
        self.frames += 1
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Encode what is queued, flush and finalise the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._work.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive() and self.error is None:
            self.error = f"{self.path}: the encoder did not finish within {timeout:.0f} s"

    # -- encoder thread ------------------------------------------------------------------------
    def _run(self) -> None:
        container = self._container
        try:
            while True:
                item = self._work.get()
                if item is None:
                    break
                buf, pts, end = item
                try:
                    if self.error is None:
                        self._encode(buf, pts)
                        self._encode_audio(end)
                finally:
                    self._free.give(buf)
            if self.error is None:
                self._mux(self._video.encode(None))
                if self._audio is not None:
                    self._mux(self._audio.encode(None))
        except BaseException as exc:
            self.error = f"{self.path}: {_one_line(exc)}"
            while True:  # give the buffers back until close()
                item = self._work.get()
                if item is None:
                    break
                self._free.give(item[0])
        finally:
            try:
                container.close()
            except BaseException as exc:
                if self.error is None:
                    self.error = f"{self.path}: {_one_line(exc)}"
            try:
                self._file.close()
            except OSError as exc:
                if self.error is None:
                    self.error = f"{self.path}: {_one_line(exc)}"

    def _mux(self, packets) -> None:
        for p in packets:
            self._container.mux(p)

    def _encode(self, buf: np.ndarray, pts: int) -> None:
        src = buf
        if self._pad is not None:
            h, w = buf.shape[:2]
            pad = self._pad
            pad[:h, :w] = buf
            pad[h:, :w] = buf[h - 1:h]
            pad[:, w:] = pad[:, w - 1:w]
            src = pad
        frame = av.VideoFrame.from_ndarray(src, format="rgb24")
        frame.pts = pts
        frame.time_base = self._vtb
        self._mux(self._video.encode(frame))
        self.encoded += 1

    def _encode_audio(self, end: int) -> None:
        if self._audio is None:
            return
        ring = self._ring
        end = min(end, ring.total_written)
        while self._audio_pos < end:
            n = min(AUDIO_CHUNK, end - self._audio_pos)
            chunk = self._chunk[:, :n]
            if self._audio_pos < 0:
                n = min(n, -self._audio_pos)
                chunk = self._chunk[:, :n]
                chunk[:] = 0.0
            elif not ring.read(self._audio_pos, chunk[0]):
                chunk[:] = 0.0              # overwritten already: silence keeps the sync
                self.audio_lost += n
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp",
                                            layout="mono")
            af.sample_rate = self._sr
            af.pts = self._audio_pos - int(round(self._t0 * self._sr))
            af.time_base = Fraction(1, self._sr)
            self._mux(self._audio.encode(af))
            self._audio_pos += n


class Recording:
    """The live loop's record switch (``--record``, key ``r``, ``/lj/record/start|stop``).

    Starting never raises into the show unless ``required`` (``--record`` at start-up, where a
    bad path should stop ``lj run`` with one line); a recording that fails later is logged once
    and dropped while the show goes on.
    """

    def __init__(self, folder: str | Path = "recordings", fps: float = 30.0):
        self.folder = Path(folder)
        self.fps = fps
        self.recorder: LiveRecorder | None = None
        self.last_error = ""

    @property
    def active(self) -> bool:
        return self.recorder is not None

    def default_path(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        n = 0
        while (self.folder / f"lj-{stamp}-{n}.mp4").exists():
            n += 1
        return self.folder / f"lj-{stamp}-{n}.mp4"

    def start(self, path, renderer, source, required: bool = False) -> bool:
        """Start recording ``renderer``'s output and ``source``'s audio to ``path`` (None: a new
        file in :attr:`folder`). A running recording is finished first."""
        self.stop()
        try:
            if path is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                path = self.default_path()
            ring = getattr(source, "ring", None)
            audio = (ring, source.sample_rate) if ring is not None else None
            self.recorder = LiveRecorder(path, renderer.output_size, self.fps, audio=audio)
        except (RenderError, OSError) as exc:
            if required:
                raise RenderError(str(exc)) from None
            self.last_error = str(exc)
            log.error("recording not started: %s", exc)
            return False
        self.last_error = ""
        log.info("recording to %s", path)
        return True

    def stop(self) -> str | None:
        """Finish the file; returns its path (None when nothing was recording)."""
        rec, self.recorder = self.recorder, None
        if rec is None:
            return None
        rec.close()
        if rec.error is not None:
            self.last_error = rec.error
            log.error("recording %s may be incomplete: %s", rec.path, rec.error)
        else:
            log.info("recording saved: %s (%d frames, %d not recorded because the encoder was "
                     "behind)", rec.path, rec.encoded, rec.dropped)
        return rec.path

    def toggle(self, renderer, source) -> None:
        if self.active:
            self.stop()
        else:
            self.start(None, renderer, source)

    def frame(self, renderer, t: float, source) -> None:
        """After the frame at audio time ``t`` was drawn: record it (never blocks)."""
        rec = self.recorder
        if rec is None:
            return
        if rec.failed:
            self.recorder = None
            self.last_error = rec.error
            log.error("recording stopped: %s; the show goes on", rec.error)
            rec.close(timeout=5.0)
            return
        rec.offer(renderer, t, getattr(source, "position", None))

    def state(self) -> dict:
        rec = self.recorder
        return {"recording": rec.path if rec is not None else "",
                "record_dropped": rec.dropped if rec is not None else 0,
                "record_error": self.last_error}
