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
show heard, from the first recorded frame's time on), so the frame loop does no audio work. A
rate AAC cannot encode (192 kHz, 1 kHz...) is resampled there to
:func:`~engine.render.record.aac_rate` by FFmpeg's streaming resampler (libswresample).

A recording never replaces a file: :class:`LiveRecorder` creates its file exclusively, and
:class:`Recording` takes what ``/lj/record/start`` sends as a file *name* inside its folder
(``--record-dir``; a name with a folder part or ``..`` is refused), picks ``take-2.mp4`` when
``take.mp4`` exists, and bounds how many recordings a show starts (a
:class:`~engine.writegate.WriteGate`).

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

from engine.errors import LJError, RenderError
from engine.render.frames import FramePool
from engine.render.record import _FORMATS, _one_line, aac_rate
from engine.safeio import FileRefused, check_name, child_path, unique_path
from engine.writegate import WriteGate, check_folder

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
            # "x": a new file only; an existing one (or a link placed there) is never written
            self._file = open(self.path, "xb", buffering=0)
        except FileExistsError:
            raise RenderError(f"cannot record to {self.path}: the file exists (not "
                              "replaced)") from None
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
            self._enc_sr, self._resampler, self._enc_pos = 0, None, 0
            if audio is not None:
                self._ring, self._sr = audio[0], int(audio[1])
                if self._sr < 1:
                    raise ValueError(f"bad audio sample rate {self._sr}")
                self._enc_sr = aac_rate(self._sr)
                if self._enc_sr != self._sr:   # AAC cannot open at this rate: resample
                    self._resampler = av.AudioResampler(format="fltp", layout="mono",
                                                        rate=self._enc_sr)
                a = self._container.add_stream("aac", rate=self._enc_sr, layout="mono")
                a.time_base = Fraction(1, self._enc_sr)
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
                    if self._resampler is not None:
                        self._encode_resampled(None)
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
            if self._resampler is not None:
                self._encode_resampled(af)
            else:
                self._mux(self._audio.encode(af))
            self._audio_pos += n

    def _encode_resampled(self, af) -> None:
        """Through the streaming resampler (None: flush it) to the encoder; the output's pts
        count its own samples from 0, so the audio stays on the video's clock."""
        for out in self._resampler.resample(af):
            out.pts = self._enc_pos
            out.time_base = Fraction(1, self._enc_sr)
            self._enc_pos += out.samples
            self._mux(self._audio.encode(out))


class Recording:
    """The live loop's record switch (``--record``, key ``r``, ``/lj/record/start|stop``).

    Files go into :attr:`folder` (``--record-dir``; LJError at once if that names a file): key
    ``r`` and ``/lj/record/start`` without an argument pick a new ``lj-<date>-<time>-N.mp4``;
    ``/lj/record/start NAME`` records to ``NAME`` there (``.mp4`` added when it has no
    extension; a name with a folder part, ``..`` or an unknown extension is refused), or to
    ``NAME-2.mp4``... when that exists. Starts go through a :class:`WriteGate` (rate and count
    per show). :meth:`start_file` is ``--record FILE``, the operator's own path. Starting never
    raises into the show except there; a recording that fails later is logged once and
    dropped while the show goes on.
    """

    def __init__(self, folder: str | Path = "recordings", fps: float = 30.0,
                 gate: WriteGate | None = None):
        self.folder = check_folder(folder, "--record-dir")
        self.fps = fps
        self.gate = gate if gate is not None else WriteGate("recording")
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

    def target(self, name) -> Path:
        """Where a remote ``/lj/record/start name`` records: a new file in :attr:`folder`
        (FileRefused for a name that is not one plain file name with a video extension)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if name is None or name == "":
            return self.default_path()
        name = check_name(str(name), "recording name")
        ext = Path(name).suffix.lower()
        if not ext:
            name, ext = name + ".mp4", ".mp4"
        elif ext not in _FORMATS:
            raise FileRefused(f"recording name {name!r}: unknown extension {ext} (use .mp4, "
                              ".mkv or .mov)")
        path = child_path(self.folder, name, what="recording name")
        if path.exists() or path.is_symlink():
            fresh = unique_path(self.folder, path.stem, path.suffix)
            log.info("%s exists; recording to %s instead", path.name, fresh.name)
            path = fresh
        return path

    def start(self, name, renderer, source, required: bool = False) -> bool:
        """Start recording ``renderer``'s output and ``source``'s audio to the file ``name``
        inside :attr:`folder` (None: a new default name). A running recording is finished
        first. False (logged, counted) when refused or the file cannot be opened."""
        if not self.gate.admit():
            self.last_error = f"recording not started: {self.gate.last_refusal}"
            return False
        try:
            path = self.target(name)
        except (LJError, OSError) as exc:
            self.last_error = f"recording not started: {exc}"
            self.gate.refuse(str(exc))
            return False
        return self._open(path, renderer, source, required)

    def start_file(self, path, renderer, source) -> bool:
        """``--record FILE``: record to the operator's ``path`` (any folder), or to a fresh
        ``FILE-2.mp4``... beside it when it exists (a restarted show never truncates the earlier
        take). RenderError (one line) when it cannot be opened."""
        path = Path(path)
        if path.exists() or path.is_symlink():
            fresh = unique_path(path.parent, path.stem, path.suffix)
            log.info("%s exists; recording to %s instead", path, fresh)
            path = fresh
        return self._open(path, renderer, source, required=True)

    def _open(self, path: Path, renderer, source, required: bool) -> bool:
        self.stop()
        try:
            ring = getattr(source, "ring", None)
            audio = (ring, source.sample_rate) if ring is not None else None
            self.recorder = LiveRecorder(path, renderer.output_size, self.fps, audio=audio)
        except (RenderError, OSError) as exc:
            if required:
                raise RenderError(str(exc)) from None
            self.last_error = str(exc)
            log.error("recording not started: %s", exc)
            return False
        self.gate.wrote()
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
                "record_error": self.last_error, "record_refused": self.gate.refused}
