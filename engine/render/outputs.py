"""Frames out to other programs: NDI (any platform, optional extra ``ndi``), a Linux virtual
camera through v4l2loopback, and Syphon (macOS) / Spout (Windows), which are not built yet and
say so.

``lj run --output ndi:NAME --output v4l2:/dev/video10`` (repeatable). Each output runs like the
recorder: :meth:`FrameSink.send` reads the frame back on the GL thread into one of two
preallocated buffers and hands it to the output's own thread; when both are still busy the frame
is skipped for that output and counted (:attr:`FrameSink.dropped`); the show never waits for a
receiver. A failure while running ends that output with one logged message.

:func:`open_output` raises :class:`OutputError` (one line) when the platform or library is
missing, e.g. ``NDI output needs cyndilib: pip install 'latent-jockey[ndi]'``.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import queue
import stat
import struct
import sys
import threading
from fractions import Fraction

import numpy as np

from engine.errors import RenderError
from engine.render.frames import FramePool

__all__ = ["OutputError", "FrameSink", "NdiOutput", "V4l2Output", "YuyvWriter", "open_output",
           "parse_output", "rgb_to_yuyv", "yuyv_to_rgb", "KINDS"]

log = logging.getLogger("lj.output")

KINDS = ("ndi", "v4l2", "syphon", "spout")


class OutputError(RenderError):
    """An output that cannot be opened: missing library, platform or device (one line)."""


def parse_output(spec: str) -> tuple[str, str]:
    """``"ndi:Name"`` → ``("ndi", "Name")``; OutputError for anything else."""
    kind, sep, target = str(spec).partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS or not target.strip():
        raise OutputError(f"output {spec!r} not understood: use ndi:NAME, v4l2:/dev/videoN, "
                          "syphon:NAME or spout:NAME")
    return kind, target.strip()


class FrameSink:
    """Base of the outputs: a bounded hand-over from the frame loop to a sending thread."""

    kind = "output"

    def __init__(self, size: tuple[int, int], buffers: int = 2):
        w, h = self.size = (int(size[0]), int(size[1]))
        self._free = FramePool(self.size, buffers)
        self._work: queue.Queue = queue.Queue()
        self.sent = 0
        self.dropped = 0
        self.error: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"lj-{self.kind}", daemon=True)

    def _start(self) -> None:
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def send(self, frame) -> bool:
        """Hand over the frame on show: a Renderer (read back here) or an [h, w, 3] uint8 array.
        Never blocks; False when skipped (the output is busy: counted) or failed."""
        if self._closed or self.error is not None:
            return False
        buf = self._free.take(frame)
        if buf is None:
            self.dropped += 1
            return False
        self._work.put(buf)
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._work.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._release()

    def _run(self) -> None:
        while True:
            buf = self._work.get()
            if buf is None:
                return
            try:
                if self.error is None:
                    self._emit(buf)
                    self.sent += 1
            except Exception as exc:  # reported by the live loop, once
                self.error = f"{self.describe()}: {' '.join(str(exc).split()) or type(exc).__name__}"
            finally:
                self._free.give(buf)

    # subclasses
    def _emit(self, rgb: np.ndarray) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        pass

    def describe(self) -> str:
        return self.kind


# -- NDI ---------------------------------------------------------------------------------------

class NdiOutput(FrameSink):
    """An NDI source called ``name`` on the network (RGBX video at ``fps``), through cyndilib
    (which carries NDI's runtime library). Receivers find it by mDNS, or by NDI's "extra IPs"
    (``NDI_CONFIG_DIR`` with an ``ndi-config.v1.json``) where multicast is not available."""

    kind = "ndi"

    def __init__(self, name: str, size: tuple[int, int], fps: float = 60.0):
        try:
            from cyndilib.sender import Sender
            from cyndilib.video_frame import VideoSendFrame
            from cyndilib.wrapper.ndi_structs import FourCC
        except ImportError as exc:
            raise OutputError("NDI output needs cyndilib (with NDI's runtime): "
                              f"pip install 'latent-jockey[ndi]' ({exc})") from None
        super().__init__(size)
        self.name = name
        w, h = self.size
        try:
            self._sender = Sender(name, clock_video=False)
            vf = VideoSendFrame()
            vf.set_resolution(w, h)
            vf.set_fourcc(FourCC.RGBX)
            vf.set_frame_rate(Fraction(fps).limit_denominator(1001))
            self._sender.set_video_frame(vf)
            self._sender.open()
        except Exception as exc:
            raise OutputError(f"cannot open NDI output {name!r}: {exc}") from None
        self._rgbx = np.full((h, w, 4), 255, np.uint8)
        self._start()

    def _emit(self, rgb: np.ndarray) -> None:
        self._rgbx[..., :3] = rgb
        if not self._sender.write_video(self._rgbx.reshape(-1)):
            raise RenderError("NDI send failed")

    def connections(self, timeout: float = 0.0) -> int:
        return int(self._sender.get_num_connections(timeout))

    def _release(self) -> None:
        try:
            self._sender.close()
        except Exception:
            pass

    def describe(self) -> str:
        return f"ndi:{self.name}"


# -- Linux virtual camera (v4l2loopback) ---------------------------------------------------------

def rgb_to_yuyv(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[h, w, 3] uint8 RGB (w even) → [h, w * 2] uint8 YUYV 4:2:2, BT.601 limited range (what
    webcams send and browsers, OBS and video-call apps expect)."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 0.2568 * r + 0.5041 * g + 0.0979 * b
    u = 128.0 - 0.1482 * r - 0.2910 * g + 0.4392 * b
    v = 128.0 + 0.4392 * r - 0.3678 * g - 0.0714 * b
    h, w = rgb.shape[:2]
    out = np.empty((h, w * 2), np.uint8) if out is None else out
    q = out.reshape(h, w // 2, 4)
    q[..., 0] = np.clip(y[:, 0::2] + 0.5, 0, 255)
    q[..., 2] = np.clip(y[:, 1::2] + 0.5, 0, 255)
    q[..., 1] = np.clip((u[:, 0::2] + u[:, 1::2]) * 0.5 + 0.5, 0, 255)
    q[..., 3] = np.clip((v[:, 0::2] + v[:, 1::2]) * 0.5 + 0.5, 0, 255)
    return out


def yuyv_to_rgb(yuyv: np.ndarray, w: int, h: int) -> np.ndarray:
    """The inverse of :func:`rgb_to_yuyv` (for checking what a camera app would see)."""
    q = np.frombuffer(bytes(yuyv), np.uint8).reshape(h, w // 2, 4).astype(np.float32)
    y = np.empty((h, w), np.float32)
    y[:, 0::2], y[:, 1::2] = q[..., 0], q[..., 2]
    u = np.repeat(q[..., 1], 2, axis=1) - 128.0
    v = np.repeat(q[..., 3], 2, axis=1) - 128.0
    c = 1.1644 * (y - 16.0)
    rgb = np.stack([c + 1.5960 * v, c - 0.3918 * u - 0.8130 * v, c + 2.0172 * u], -1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


class YuyvWriter(FrameSink):
    """Writes each frame as one YUYV image to a file descriptor (a v4l2loopback device after
    :class:`V4l2Output` has set its format, or any fd: a pipe in the tests). Odd widths are cut
    to even."""

    kind = "v4l2"

    def __init__(self, fd: int, size: tuple[int, int], name: str = "fd"):
        super().__init__(size)
        self.fd, self.name = fd, name
        w, h = self.size
        self._even = w - (w & 1)
        self._yuyv = np.empty((h, self._even * 2), np.uint8)
        self._start()

    def _emit(self, rgb: np.ndarray) -> None:
        rgb_to_yuyv(rgb[:, : self._even], self._yuyv)
        data = memoryview(self._yuyv).cast("B")
        while len(data):
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                return  # nobody reading and the device is full: skip this frame
            data = data[n:]

    def describe(self) -> str:
        return f"v4l2:{self.name}"


# linux/videodev2.h
_V4L2_CAP_VIDEO_OUTPUT = 0x00000002
_V4L2_BUF_TYPE_VIDEO_OUTPUT = 2
_V4L2_FIELD_NONE = 1
_V4L2_COLORSPACE_SRGB = 8
_V4L2_PIX_FMT_YUYV = int.from_bytes(b"YUYV", "little")
_VIDIOC_QUERYCAP = 0x80685600          # _IOR('V', 0, struct v4l2_capability), 104 bytes
_VIDIOC_S_FMT = 0xC0D05605             # _IOWR('V', 5, struct v4l2_format), 208 bytes on 64-bit
_MODPROBE = "sudo modprobe v4l2loopback devices=1 video_nr=10 exclusive_caps=1"


class V4l2Output(YuyvWriter):
    """A v4l2loopback device (``/dev/videoN``) as a webcam for other apps: sets the device's
    output format to YUYV at the frame size, then writes frames to it."""

    def __init__(self, path: str, size: tuple[int, int]):
        if not sys.platform.startswith("linux"):
            raise OutputError(f"v4l2 output is Linux only (this is {sys.platform}); "
                              "use ndi:NAME" + (" or syphon:NAME" if sys.platform == "darwin"
                                                else " or spout:NAME"))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            hint = f" (load v4l2loopback: {_MODPROBE})" if exc.errno == errno.ENOENT else ""
            raise OutputError(f"cannot open virtual camera {path}: {exc.strerror}{hint}") from None
        try:
            if not stat.S_ISCHR(os.fstat(fd).st_mode):
                raise OutputError(f"{path} is not a video device (expected a v4l2loopback "
                                  f"device such as /dev/video10: {_MODPROBE})")
            cap = bytearray(104)
            try:
                fcntl.ioctl(fd, _VIDIOC_QUERYCAP, cap)
            except OSError as exc:
                raise OutputError(f"{path} is not a V4L2 device ({exc.strerror}); "
                                  f"a virtual camera comes from v4l2loopback: {_MODPROBE}") from None
            caps, device_caps = struct.unpack_from("<II", cap, 84)
            if not (device_caps or caps) & _V4L2_CAP_VIDEO_OUTPUT:
                raise OutputError(f"{path} is a capture device, not a v4l2loopback output")
            w, h = int(size[0]) - (int(size[0]) & 1), int(size[1])
            fmt = bytearray(208)
            struct.pack_into("<I", fmt, 0, _V4L2_BUF_TYPE_VIDEO_OUTPUT)
            struct.pack_into("<8I", fmt, 8, w, h, _V4L2_PIX_FMT_YUYV, _V4L2_FIELD_NONE, w * 2,
                             w * h * 2, _V4L2_COLORSPACE_SRGB, 0)
            try:
                fcntl.ioctl(fd, _VIDIOC_S_FMT, fmt)
            except OSError as exc:
                raise OutputError(f"{path}: cannot set YUYV {w}x{h}: {exc.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        super().__init__(fd, size, name=path)

    def _release(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def open_output(spec: str, size: tuple[int, int], fps: float = 60.0) -> FrameSink:
    """Open the output ``spec`` (``ndi:NAME``, ``v4l2:/dev/videoN``, ``syphon:NAME``,
    ``spout:NAME``) for frames of ``size`` (w, h). OutputError (one line) if it cannot run
    here, saying what is missing."""
    kind, target = parse_output(spec)
    if kind == "ndi":
        return NdiOutput(target, size, fps)
    if kind == "v4l2":
        return V4l2Output(target, size)
    if kind == "syphon":
        if sys.platform != "darwin":
            raise OutputError(f"Syphon is macOS only (this is {sys.platform}); use ndi:{target}"
                              + (" or v4l2:/dev/video10" if sys.platform.startswith("linux")
                                 else ""))
        raise OutputError("Syphon output is not built yet; use ndi:NAME (NDI Syphon bridges "
                          "exist)")
    if sys.platform != "win32":
        raise OutputError(f"Spout is Windows only (this is {sys.platform}); use ndi:{target}"
                          + (" or v4l2:/dev/video10" if sys.platform.startswith("linux") else ""))
    raise OutputError("Spout output is not built yet; use ndi:NAME")


class Outputs:
    """The live loop's outputs: opened at start (a failure is the user's to fix: OutputError),
    fed once per frame, dropped with one message if one fails later, closed at the end."""

    def __init__(self, specs, size: tuple[int, int], fps: float = 60.0):
        self.sinks: list[FrameSink] = []
        try:
            for spec in specs or ():
                self.sinks.append(open_output(spec, size, fps))
                log.info("output %s open", self.sinks[-1].describe())
        except BaseException:
            self.close()
            raise

    def frame(self, renderer) -> None:
        for sink in list(self.sinks):
            if sink.failed:
                log.error("output stopped: %s; the show goes on", sink.error)
                self.sinks.remove(sink)
                sink.close()
            else:
                sink.send(renderer)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []
