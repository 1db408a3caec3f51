"""Hand generator frames to OpenGL: CUDA-GL interop, pinned memory + PBO ping-pong, or plain.

Three paths, picked once by :func:`make_uploader` (the render stage calls
``uploader.upload(frame, input_texture)`` every frame and samples the texture it returns):

* **CUDA-GL interop** (CUDA, and the optional ``cuda-python`` binding importable): an RGBA8
  texture is registered with CUDA once; each frame the runner's device slot (a
  :class:`~engine.generators.runner.DeviceFrame`, rows already bottom-up) is copied into it
  device-to-device on an upload stream that first waits, on the GPU, for the frame's *ready*
  event; the copy records the slot's *consumed* event so the runner can reuse the slot. No pixel
  crosses to the host. Map/unmap of the resource are the GL/CUDA synchronisation points.
* **Pinned buffer + PBO ping-pong** (CUDA without interop, or asked for): the runner copies the
  frame into a pinned host buffer, rows bottom-up; here it goes into one of two pixel-unpack
  buffers (the other may still feed the texture upload of the previous frame) and the texture is
  updated from it, which the driver may do asynchronously.
* **Plain** (CPU): the numpy frame is written into the texture (rows flipped on the way).

Frames may be smaller than the renderer's input texture (the resolution budget): a texture of the
frame's own size is kept for them, and the render stage's first pass upscales it (normalised
coordinates, linear filtering). Every failure of the interop path falls back to the PBO path with
one log line; a running show does not stop for it.
"""

from __future__ import annotations

import logging

import moderngl
import numpy as np

from engine.errors import RenderError

__all__ = ["FrameUpload", "PlainUpload", "PboUpload", "CudaGLUpload", "make_uploader"]

log = logging.getLogger("lj.render")

GL_TEXTURE_2D = 0x0DE1


def _texture(ctx: moderngl.Context, size: tuple[int, int], components: int) -> moderngl.Texture:
    tex = ctx.texture(size, components)
    tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
    tex.repeat_x = tex.repeat_y = False
    return tex


def _check_host(frame) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 \
            or frame.dtype != np.uint8 or 0 in frame.shape:
        what = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise RenderError(f"render input must be uint8 [h, w, 3], got {what}")
    return frame


class PlainUpload:
    """numpy ``uint8 [h, w, 3]`` (top row first) -> an RGB8 texture, rows flipped on the way.

    A frame of the input texture's size goes into that texture; another size into one of this
    uploader's own, made when the size changes (not per frame). A frame handed over as a flipped
    view of a bottom-up buffer (what the CUDA runner hands out) is written without a copy.
    """

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self._tex: moderngl.Texture | None = None
        self._staging: np.ndarray | None = None

    def _target(self, default: moderngl.Texture, size: tuple[int, int]) -> moderngl.Texture:
        if default is not None and tuple(default.size) == size and default.components == 3:
            return default
        if self._tex is None or tuple(self._tex.size) != size:
            if self._tex is not None:
                self._tex.release()
            self._tex = _texture(self.ctx, size, 3)
        return self._tex

    def _gl_rows(self, frame: np.ndarray) -> np.ndarray:
        """The frame bottom row first, contiguous: a view when it can be, else one copy into a
        buffer kept from frame to frame."""
        rows = frame[::-1]
        if rows.flags.c_contiguous:
            return rows
        if self._staging is None or self._staging.shape != frame.shape:
            self._staging = np.empty(frame.shape, np.uint8)
        np.copyto(self._staging, rows)
        return self._staging

    def upload(self, frame, default: moderngl.Texture) -> moderngl.Texture:
        frame = _check_host(frame)
        h, w = frame.shape[:2]
        tex = self._target(default, (w, h))
        tex.write(self._gl_rows(frame))
        return tex

    def release(self) -> None:
        if self._tex is not None:
            self._tex.release()
            self._tex = None


class PboUpload(PlainUpload):
    """Like :class:`PlainUpload`, through two pixel-unpack buffers used in turn: frame N's
    bytes go into one buffer while the texture upload of frame N-1 may still read the other."""

    def __init__(self, ctx: moderngl.Context):
        super().__init__(ctx)
        self._pbos: list[moderngl.Buffer] = []
        self._next = 0
        self.uploads = 0

    def _buffers(self, nbytes: int) -> list[moderngl.Buffer]:
        if not self._pbos or self._pbos[0].size != nbytes:
            for b in self._pbos:
                b.release()
            self._pbos = [self.ctx.buffer(reserve=nbytes, dynamic=True) for _ in range(2)]
            self._next = 0
        return self._pbos

    def upload(self, frame, default: moderngl.Texture) -> moderngl.Texture:
        frame = _check_host(frame)
        h, w = frame.shape[:2]
        tex = self._target(default, (w, h))
        pbo = self._buffers(frame.nbytes)[self._next]
        self._next ^= 1
        pbo.write(self._gl_rows(frame))
        tex.write(pbo)  # glTexSubImage2D from the bound unpack buffer: no client memory read
        self.uploads += 1
        return tex

    def release(self) -> None:
        super().release()
        for b in self._pbos:
            b.release()
        self._pbos = []


def _import_cudart():
    """The CUDA runtime binding of ``cuda-python`` (optional extra ``cuda``)."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class CudaGLUpload:
    """CUDA-GL interop: :class:`DeviceFrame` (``uint8 [h, w, 4]``, rows bottom-up, on the GPU)
    -> an RGBA8 texture registered with CUDA, copied device-to-device.

    Built on the thread that owns the GL context, with that context current (so is every
    :meth:`upload`). Raises on construction if interop cannot work here (no binding, GL not on
    the CUDA device); :func:`make_uploader` then takes the PBO path.
    """

    def __init__(self, ctx: moderngl.Context, device, cudart=None):
        import torch

        self.ctx = ctx
        self.cudart = cudart or _import_cudart()
        self.torch = torch
        self.stream = torch.cuda.Stream(device)
        self._tex: moderngl.Texture | None = None
        self._res = None
        self.size: tuple[int, int] | None = None
        self._register((8, 8))  # fail here, at start, rather than on the first frame

    def _call(self, name: str, *args):
        out = getattr(self.cudart, name)(*args)
        err = out[0] if isinstance(out, tuple) else out
        if int(err) != 0:
            raise RuntimeError(f"{name} failed: {err}")
        return out[1] if isinstance(out, tuple) and len(out) > 1 else None

    def _register(self, size: tuple[int, int]) -> None:
        self._unregister()
        self._tex = _texture(self.ctx, size, 4)
        flags = self.cudart.cudaGraphicsRegisterFlags.cudaGraphicsRegisterFlagsWriteDiscard
        self._res = self._call("cudaGraphicsGLRegisterImage", self._tex.glo, GL_TEXTURE_2D, flags)
        self.size = size

    def _unregister(self) -> None:
        if self._res is not None:
            self._call("cudaGraphicsUnregisterResource", self._res)
            self._res = None
        if self._tex is not None:
            self._tex.release()
            self._tex = None

    def upload(self, frame, default=None) -> moderngl.Texture:
        t = frame.tensor
        h, w = int(t.shape[0]), int(t.shape[1])
        if (w, h) != self.size:
            self._register((w, h))  # only when the resolution budget changes the size
        s = self.stream
        frame.ready.wait(s)  # on the GPU: the copy starts once the frame is written
        handle = s.cuda_stream
        self._call("cudaGraphicsMapResources", 1, self._res, handle)
        try:
            array = self._call("cudaGraphicsSubResourceGetMappedArray", self._res, 0, 0)
            self._call("cudaMemcpy2DToArrayAsync", array, 0, 0, t.data_ptr(), w * 4, w * 4, h,
                       self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice, handle)
            frame.consumed.record(s)  # the runner may write this slot again after the copy
            t.record_stream(s)        # and the allocator keeps it alive until then
        finally:
            self._call("cudaGraphicsUnmapResources", 1, self._res, handle)  # GL waits for it
        return self._tex

    def release(self) -> None:
        try:
            self._unregister()
        except Exception:  # at shutdown: nothing to save
            pass


class FrameUpload:
    """What the render stage calls: picks the path per frame (device frames to interop, host
    frames to PBOs or plain writes) and falls back from interop to the host path on failure."""

    def __init__(self, host: PlainUpload, interop: CudaGLUpload | None = None, runner=None):
        self.host = host
        self.interop = interop
        self.runner = runner
        self.path = "cuda-gl" if interop is not None else ("pbo" if isinstance(host, PboUpload) else "plain")

    def upload(self, frame, default: moderngl.Texture) -> moderngl.Texture:
        if self.interop is not None and not isinstance(frame, np.ndarray):
            try:
                return self.interop.upload(frame, default)
            except Exception as exc:
                log.warning("CUDA-GL interop failed, frames go through pinned memory and PBOs "
                            "from now on: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self.interop.release()
                self.interop, self.path = None, "pbo"
                if self.runner is not None:
                    self.runner.set_handoff("host")
        if not isinstance(frame, np.ndarray):  # a device frame with no interop: this once, slowly
            frame.ready.synchronize()
            frame = frame.tensor[..., :3].flip(0).cpu().numpy()
        return self.host.upload(frame, default)

    def release(self) -> None:
        self.host.release()
        if self.interop is not None:
            self.interop.release()


def make_uploader(ctx: moderngl.Context, runner=None, mode: str = "auto") -> FrameUpload:
    """The upload path for ``runner``'s frames on ``ctx``.

    ``mode``: ``"auto"`` (CUDA: interop if it works here, else PBOs; CPU: plain), ``"pbo"``,
    ``"plain"``. With interop the runner is switched to device hand-off. Logs the path chosen.
    """
    on_cuda = runner is not None and getattr(runner, "ops", None) is not None \
        and getattr(runner.device, "type", "cpu") == "cuda"
    if mode == "plain" or (mode == "auto" and not on_cuda):
        return FrameUpload(PlainUpload(ctx))
    if mode == "auto":
        try:
            interop = CudaGLUpload(ctx, runner.device)
        except Exception as exc:  # no binding, GL on another device, a driver refusing
            log.info("CUDA-GL interop not available (%s); frames go through pinned memory and PBOs",
                     str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        else:
            runner.set_handoff("device")
            log.info("frames go from CUDA to OpenGL device-to-device (CUDA-GL interop)")
            return FrameUpload(PboUpload(ctx), interop, runner)
    return FrameUpload(PboUpload(ctx))
