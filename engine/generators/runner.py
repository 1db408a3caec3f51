"""Runs a generator at frame rate: static inputs, a worker thread, the last good frame on failure.

The runner owns everything device-side. Each frame it copies the mapping's ``w_plus`` (numpy) into
a preallocated input tensor, applies truncation on the device, runs the synthesis network and
converts to ``uint8`` ``[h, w, 3]`` in a preallocated output. Nothing is allocated, moved or
synchronised per frame beyond that; Python scalars never get baked into the computation (truncation
and noise strength travel in static tensors), so the same step can be captured as a CUDA graph.

Frames are generated on a worker thread so frame N+1 is computed while the main thread draws
frame N (torch releases the GIL while it works). Two output buffers alternate, so the frame the
renderer is reading is never the one being written.

If the generator raises, or returns NaN/inf, :meth:`GeneratorRunner.result` returns the last good
frame and the error is logged once per kind, not once per frame.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import torch

from engine.errors import GeneratorError
from engine.frame import FrameParams
from engine.generators.base import Generator

log = logging.getLogger("lj.generator")


def truncate_(w_plus: torch.Tensor, w_avg: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """In place: ``w_avg + psi * (w_plus - w_avg)`` (psi a 0-d tensor, so graphs stay valid)."""
    return w_plus.sub_(w_avg).mul_(psi).add_(w_avg)


def to_rgb8_(image: torch.Tensor, out: torch.Tensor, work: torch.Tensor | None = None) -> torch.Tensor:
    """``image`` ``[3, h, w]`` in [-1, 1] -> ``out`` ``uint8 [h, w, 3]``, written in place.

    ``work`` is an optional float ``[h, w, 3]`` scratch tensor (same dtype and device as
    ``image``) so the conversion allocates nothing: one pass scales into it, one clamps, one
    converts.
    """
    hwc = image.permute(1, 2, 0)
    if work is None:
        work = torch.empty(hwc.shape, dtype=image.dtype, device=image.device)
    torch.mul(hwc, 127.5, out=work)
    work.add_(128.0).clamp_(0.0, 255.0)
    out.copy_(work)
    return out


class GeneratorRunner:
    """Generate frames from :class:`FrameParams` on a worker thread.

    Parameters
    ----------
    generator:
        Any :class:`Generator`.
    device:
        ``"cpu"``, ``"cuda"``, or ``None`` for CUDA when available, else CPU.
    half:
        Run in float16 (CUDA only; ignored on CPU where it is slower).
    cuda_graph:
        Capture the whole step (truncation, synthesis, RGB8 conversion) as a CUDA graph after a
        warm-up. CUDA only.
    threaded:
        Generate on a worker thread (``submit`` returns at once). With ``False``, ``submit``
        generates before returning; useful for measuring the bare generator.
    """

    def __init__(self, generator: Generator, device: str | None = None, half: bool = False,
                 cuda_graph: bool = False, threaded: bool = True):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        is_cuda = self.device.type == "cuda"
        self.dtype = torch.float16 if (half and is_cuda) else torch.float32
        self.generator = generator.eval().requires_grad_(False).to(self.device, self.dtype)
        h, w = generator.resolution
        self.resolution = (h, w)
        layers, wd = generator.num_layers, generator.w_dim

        # Static inputs: written every frame, never reallocated.
        self._w_host = torch.zeros(1, layers, wd, dtype=torch.float32,
                                   pin_memory=is_cuda)
        self._psi_host = torch.ones((), dtype=torch.float32, pin_memory=is_cuda)
        self._noise_host = torch.zeros((), dtype=torch.float32, pin_memory=is_cuda)
        self._w = torch.zeros(1, layers, wd, device=self.device, dtype=self.dtype)
        self._psi = torch.ones((), device=self.device, dtype=self.dtype)
        self._noise = torch.zeros((), device=self.device, dtype=self.dtype)
        self._w_avg = self.generator.w_avg.to(self.device, self.dtype)
        # Double-buffered outputs: device side, and the host side the renderer reads.
        self._out_dev = [torch.zeros(h, w, 3, dtype=torch.uint8, device=self.device) for _ in range(2)]
        self._out_host = ([torch.zeros(h, w, 3, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
                          if is_cuda else self._out_dev)
        self._rgb_work = torch.empty(h, w, 3, device=self.device, dtype=self.dtype)
        self._out_np = [t.numpy() for t in self._out_host]  # host views handed to the renderer
        self._shown = 1  # the slot whose frame was handed out last; generate() writes the other
        self._last_good: np.ndarray | None = None
        self._errors_seen: set[str] = set()
        self.error_count = 0
        self.last_error = ""      # the last failure, one line
        self.last_failed = False  # whether the last generated frame failed
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)  # output all finite
        self._finite_host = torch.ones((), dtype=torch.bool, pin_memory=is_cuda)
        self.last_gen_s = 0.0  # wall time of the last generate() call, seconds
        self.late_frames = 0   # result() calls that timed out and held the last good frame
        self._done_seq = 0     # jobs finished
        self._taken_seq = 0    # jobs whose result was handed out
        self._done_slot = 0
        self._gen_slot = 0

        self._graph = None
        self._use_graph = bool(cuda_graph and is_cuda)
        self._stream = torch.cuda.Stream(self.device) if is_cuda else None

        self.threaded = threaded
        self._job = threading.Condition()
        self._pending: FrameParams | None = None
        self._busy = False
        self._done: np.ndarray | None = None
        self._stop = False
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._work, name="lj-generator", daemon=True)
            self._thread.start()

    # -- one step ------------------------------------------------------------------------------
    def _step_device(self, slot: int) -> None:
        """Everything that runs on the device for one frame (the part a CUDA graph captures)."""
        self._w.copy_(self._w_host, non_blocking=True)
        self._psi.copy_(self._psi_host, non_blocking=True)
        self._noise.copy_(self._noise_host, non_blocking=True)
        w = truncate_(self._w, self._w_avg, self._psi)
        image = self.generator.synthesize(w, self._noise)
        torch.all(torch.isfinite(image[0]), out=self._finite)  # NaN/inf out: hold the last frame
        to_rgb8_(image[0], self._out_dev[slot], self._rgb_work)

    def _capture(self) -> None:
        """Warm up, then capture one graph per output slot (CUDA only)."""
        torch.cuda.synchronize(self.device)
        with torch.cuda.stream(self._stream):
            for _ in range(3):
                self._step_device(0)
        torch.cuda.synchronize(self.device)
        self._graph = []
        for slot in range(2):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=self._stream):
                self._step_device(slot)
            self._graph.append(g)

    def generate(self, params: FrameParams) -> np.ndarray:
        """Generate one frame now, on the calling thread. Returns ``uint8 [h, w, 3]``.

        The array is one of two output buffers: generate() always writes the one that was not
        handed out last by :meth:`result`, so the frame being shown is never overwritten.
        """
        slot = 1 - self._shown
        self._gen_slot = slot
        self._w_host.numpy()[0] = params.w_plus
        self._psi_host.fill_(float(params.truncation))
        self._noise_host.fill_(float(params.noise))
        with torch.inference_mode():
            if self._stream is None:
                self._step_device(slot)
                return self._out_np[slot]
            with torch.cuda.stream(self._stream):
                if self._use_graph and self._graph is None:
                    self._capture()
                if self._graph is not None:
                    self._graph[slot].replay()
                else:
                    self._step_device(slot)
                # The display needs the pixels on the host: the one sync of the frame.
                self._out_host[slot].copy_(self._out_dev[slot], non_blocking=True)
                self._finite_host.copy_(self._finite, non_blocking=True)
            self._stream.synchronize()
            return self._out_np[slot]

    def _checked(self, params: FrameParams) -> np.ndarray | None:
        """Generate, or report the failure (once per kind) and return None."""
        try:
            if not np.isfinite(params.w_plus).all():
                raise FloatingPointError("latent contains NaN or inf")
            t0 = time.perf_counter()
            frame = self.generate(params)
            self.last_gen_s = time.perf_counter() - t0
            finite = self._finite_host if self._stream is not None else self._finite
            if not bool(finite):
                raise FloatingPointError("generator returned NaN or inf")
            self.last_failed = False
            return frame
        except Exception as exc:  # a failing generator must not stop the show
            self.error_count += 1
            self.last_failed = True
            kind = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            self.last_error = kind
            if kind not in self._errors_seen:
                self._errors_seen.add(kind)
                log.error("generator failed (holding the last good frame): %s", kind)
            return None

    # -- pipelining ----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._job:
                while self._pending is None and not self._stop:
                    self._job.wait()
                if self._stop:
                    return
                params, self._pending = self._pending, None
            frame = self._checked(params)
            with self._job:
                self._finish(frame)
                self._busy = False
                self._job.notify_all()

    def _finish(self, frame: np.ndarray | None) -> None:
        self._done = frame
        self._done_slot = self._gen_slot
        self._done_seq += 1

    @property
    def idle(self) -> bool:
        """True when no frame is being generated (a :meth:`submit` would start at once)."""
        return not self._busy

    def submit(self, params: FrameParams) -> None:
        """Start generating ``params`` (waiting for the frame in progress, if any); collect the
        result with :meth:`result`."""
        if not self.threaded:
            self._finish(self._checked(params))
            return
        with self._job:
            while self._busy:
                self._job.wait()
            self._busy = True
            self._pending = params
            self._job.notify_all()

    def result(self, timeout: float | None = None) -> np.ndarray:
        """The frame submitted last, waiting for it (at most ``timeout`` seconds if given).

        Returns the last good frame (black before the first) when the generator failed on that
        frame, or when it is still working after ``timeout`` (counted in ``late_frames``): a slow
        generator then holds the picture instead of stalling the loop, and its frame is returned
        by a later call once it is done.
        """
        if self.threaded:
            with self._job:
                if timeout is None:
                    while self._busy:
                        self._job.wait()
                else:
                    deadline = time.monotonic() + timeout
                    while self._busy:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            self.late_frames += 1
                            return self._hold()
                        self._job.wait(left)
        if self._done_seq == self._taken_seq:
            return self._hold()
        self._taken_seq = self._done_seq
        frame = self._done
        if frame is not None:
            self._shown = self._done_slot
            self._last_good = frame
            return frame
        # The generator failed. The last good frame lives in an output slot the next frames may
        # overwrite: keep a copy of it while the failures last (allocates only on failure).
        if self._last_good is not None and any(self._last_good is a for a in self._out_np):
            self._last_good = self._last_good.copy()
        return self._hold()

    def _hold(self) -> np.ndarray:
        if self._last_good is None:
            h, w = self.resolution
            self._last_good = np.zeros((h, w, 3), np.uint8)
        return self._last_good

    def close(self) -> None:
        if self._thread is not None:
            with self._job:
                self._stop = True
                self._job.notify_all()
            self._thread.join(timeout=5)
            self._thread = None


def load_generator(spec: str, resolution: tuple[int, int]) -> Generator:
    """Build a generator from a name: ``builtin:cppn`` (the default). Unknown -> GeneratorError."""
    name = (spec or "builtin:cppn").strip()
    if name in ("builtin:cppn", "cppn", "builtin"):
        from engine.generators.cppn import CPPNGenerator

        return CPPNGenerator(resolution)
    raise GeneratorError(
        f"unknown generator '{name}' (available: builtin:cppn; StyleGAN .pkl and TorchScript .pt "
        "files are not supported yet)")
