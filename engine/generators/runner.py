"""Runs a generator at frame rate: static inputs, a worker thread, the last good frame on failure.

The runner owns everything device-side. Each frame it copies the mapping's values into
preallocated input tensors (``w_plus`` ``[1, L, w_dim]``, truncation ``[]``, noise strength
``[L]``, generator parameters ``[P]``), applies truncation on the device, runs the synthesis
network and converts to ``uint8`` in a preallocated output slot. Python numbers never enter the
computation (they travel in those static tensors), so on CUDA the whole device step -- truncation,
synthesis, conversion -- is captured once per output slot as a CUDA graph after a warm-up and
replayed every frame.

On CUDA (float16 where the generator says it allows it, channels-last weights):

* the host inputs live in pinned memory and go up with ``non_blocking`` copies, on the runner's
  own stream, before the graph replays; an event marks when they have been read, and the next
  frame waits for it before rewriting them (normally long done);
* two output slots alternate, each with a *ready* event (recorded after the frame is written) and
  a *consumed* event (recorded by the display after it copied the frame out); a slot is written
  only after its consumed event, by a wait on the GPU, never on the host;
* ``handoff="device"``: :meth:`GeneratorRunner.result` returns a :class:`DeviceFrame` (the device
  slot plus its events) for CUDA-GL interop (:mod:`engine.render.gpu_upload`); nothing waits on
  the host. ``handoff="host"``: the slot is copied to a pinned host buffer (rows bottom-up, as GL
  wants them, so the upload needs no flip) and the worker waits for that copy: the one host sync
  of the frame, which the display needs.

Every CUDA-only step fails over cleanly: a graph that cannot be captured (a generator that reads a
tensor's value on the host, say) runs eagerly; a CUDA error at start-up runs on the CPU. Each says
so in one log line.

Frames are generated on a worker thread so frame N+1 is computed while the main thread draws
frame N (torch releases the GIL while it works). The frame the renderer is reading is never the
one being written.

If the generator raises, or returns NaN/inf, :meth:`GeneratorRunner.result` returns the last good
frame and the error is logged once per kind, not once per frame.

With a :class:`~engine.generators.budget.ResolutionBudget` attached (:meth:`enable_budget`), a
generator that cannot hold the target frame rate renders at a smaller internal size (if it is
``resizable``; else the budget reports it once). Frames then come out smaller; the render stage
upscales them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from engine.errors import GeneratorError
from engine.frame import FrameParams
from engine.generators.base import Generator
from engine.generators.budget import ResolutionBudget

log = logging.getLogger("lj.generator")


def truncate_(w_plus: torch.Tensor, w_avg: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """In place: ``w_avg + psi * (w_plus - w_avg)`` (psi a 0-d tensor, so graphs stay valid)."""
    return w_plus.sub_(w_avg).mul_(psi).add_(w_avg)


def to_rgb8_(image: torch.Tensor, out: torch.Tensor, work: torch.Tensor | None = None,
             rows: torch.Tensor | None = None) -> torch.Tensor:
    """``image`` ``[3, h, w]`` in [-1, 1] -> ``out`` ``uint8 [h, w, 3]`` (or ``[h, w, 4]``: the
    first three channels are written, alpha is left as it is), in place.

    ``work`` is an optional float ``[h, w, 3]`` scratch tensor (same dtype and device as
    ``image``) so the conversion allocates nothing. ``rows`` (int64 ``[h]``) picks the source row
    of every output row: ``arange(h - 1, -1, -1)`` writes the picture bottom row first, the order
    OpenGL uploads it in.
    """
    hwc = image.permute(1, 2, 0)
    if work is None:
        work = torch.empty(hwc.shape, dtype=image.dtype, device=image.device)
    if rows is None:
        torch.mul(hwc, 127.5, out=work)
    else:
        torch.index_select(hwc, 0, rows, out=work).mul_(127.5)
    work.add_(128.0).clamp_(0.0, 255.0)
    (out if out.shape[-1] == 3 else out[..., :3]).copy_(work)
    return out


def fill_inputs(params: FrameParams, w: np.ndarray, psi: np.ndarray, noise: np.ndarray,
                gparams: np.ndarray, names: tuple[str, ...], ranges: dict) -> None:
    """Write one frame's values into the runner's host input arrays, in place (pure, no torch).

    ``w`` ``[L, w_dim]``, ``psi`` ``[]``, ``noise`` ``[L]``, ``gparams`` ``[P]`` (float32).
    ``params.noise`` is a float (every layer) or an array ``[L]``; ``params.generator`` (if the
    object has it) maps parameter names to values: a missing or non-finite one takes its default,
    every one is clamped to its range.
    """
    w[...] = params.w_plus
    psi[...] = params.truncation
    noise[...] = params.noise
    values = getattr(params, "generator", None) or {}
    for i, name in enumerate(names):
        default, lo, hi = ranges[name]
        v = values.get(name, default)
        try:
            v = float(v)
        except (TypeError, ValueError):
            v = default
        gparams[i] = min(max(v, lo), hi) if np.isfinite(v) else default


@dataclass
class DeviceFrame:
    """A frame left on the GPU (``handoff="device"``): ``tensor`` is ``uint8 [h, w, 4]``, rows
    bottom-up. Copy it out on a stream that waited for ``ready``, then record ``consumed`` on that
    stream; the runner writes the slot again only after ``consumed``."""

    tensor: torch.Tensor
    ready: object
    consumed: object
    slot: int

    @property
    def shape(self) -> tuple[int, int, int]:
        h, w = self.tensor.shape[:2]
        return (h, w, 3)


class CudaOps:
    """The CUDA calls the runner makes, in one place (tests substitute a fake where no CUDA is)."""

    def __init__(self, device: torch.device):
        self.device = device

    def stream(self):
        return torch.cuda.Stream(self.device)

    def use(self, stream):
        return torch.cuda.stream(stream)

    def event(self, timing: bool = False):
        return torch.cuda.Event(enable_timing=timing)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def host_empty(self, shape, dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype, pin_memory=True)

    def capture(self, fn, stream):
        """Record ``fn``'s kernels as a CUDA graph; returns the graph's replay function."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            fn()
        return graph.replay


def _first_line(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0][:200]


class GeneratorRunner:
    """Generate frames from :class:`FrameParams` on a worker thread.

    Parameters
    ----------
    generator:
        Any :class:`Generator`.
    device:
        ``"cpu"``, ``"cuda"``, or ``None`` for CUDA when available, else CPU.
    half:
        Run in float16. ``None``: on CUDA when the generator's ``supports_half`` says so. Never
        on the CPU (slower there).
    cuda_graph:
        Capture the device step (truncation, synthesis, RGB8 conversion) as a CUDA graph after a
        warm-up. ``None``: on CUDA. Ignored on the CPU.
    threaded:
        Generate on a worker thread (``submit`` returns at once). With ``False``, ``submit``
        generates before returning; useful for measuring the bare generator.
    handoff:
        ``"host"``: :meth:`result` returns ``uint8 [h, w, 3]`` numpy arrays (top row first).
        ``"device"`` (CUDA only; falls back to ``"host"`` elsewhere): :meth:`result` returns
        :class:`DeviceFrame` objects for CUDA-GL interop.
    ops:
        The CUDA calls (:class:`CudaOps`); tests pass a fake to exercise the CUDA control flow on
        the CPU. ``None``: real CUDA when ``device`` is CUDA.
    """

    def __init__(self, generator: Generator, device: str | None = None, half: bool | None = None,
                 cuda_graph: bool | None = None, threaded: bool = True, handoff: str = "host",
                 ops: CudaOps | None = None):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if ops is None and self.device.type == "cuda":
            ops = CudaOps(self.device)
        self.ops = ops
        self.name = getattr(generator, "name", None) or type(generator).__name__
        self.model_resolution = tuple(generator.resolution)
        self.budget: ResolutionBudget | None = None
        try:
            self._setup(generator, half, cuda_graph, handoff)
        except Exception as exc:
            if self.ops is None:
                raise
            log.warning("CUDA start-up failed, generating on the CPU instead: %s", _first_line(exc))
            self.device, self.ops = torch.device("cpu"), None
            self._setup(generator, False, False, "host")

        self._shown = 1  # the slot whose frame was handed out last; generate() writes the other
        self._last_good: np.ndarray | None = None
        self._errors_seen: set[str] = set()
        self.error_count = 0
        self.last_error = ""      # the last failure, one line
        self.last_failed = False  # whether the last generated frame failed
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)  # output all finite
        self._finite_host = (self.ops.host_empty((), torch.bool).fill_(True) if self.ops is not None
                             else self._finite)  # pinned on CUDA: the verdict's copy is async
        self.last_gen_s = 0.0  # wall time of the last generate() call, seconds
        self.device_s = 0.0    # device time of the last frame whose events completed (CUDA)
        self.cpu_s = 0.0       # CPU time of the generating thread for the last frame
        self.late_frames = 0   # result() calls that timed out and held the last good frame
        self._done_seq = 0     # jobs finished
        self._taken_seq = 0    # jobs whose result was handed out
        self._done_slot = 0
        self._gen_slot = 0

        self.threaded = threaded
        self._job = threading.Condition()
        self._pending: FrameParams | None = None
        self._busy = False
        self._done = None
        self._stop = False
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._work, name="lj-generator", daemon=True)
            self._thread.start()

    # -- set-up (once, and again when the budget changes the size) ------------------------------
    def _setup(self, generator: Generator, half: bool | None, cuda_graph: bool | None,
               handoff: str) -> None:
        accel = self.ops is not None
        if half is None:
            half = bool(getattr(generator, "supports_half", False))
        self.half = bool(half and accel)
        self.dtype = torch.float16 if self.half else torch.float32
        # Module.to() works in place: the conversion to float16 comes last, once nothing else can
        # fail, so a fail-over to the CPU gets the float32 weights back unharmed.
        g = generator.eval().requires_grad_(False).to(self.device)
        if accel and self.device.type == "cuda":
            g = g.to(memory_format=torch.channels_last)  # conv weights NHWC: tensor-core friendly
        self.generator = g
        self.handoff = handoff if (accel and handoff == "device") else "host"
        self._want_graph = bool(accel and (cuda_graph is None or cuda_graph))
        layers, wd = g.num_layers, g.w_dim
        self._names = tuple(getattr(g, "param_names", ()))
        self._ranges = dict(getattr(g, "param_ranges", {}) or {})
        p = len(self._names)

        # Static inputs: host side (pinned on CUDA) written every frame, device side copied from
        # it; neither is ever reallocated.
        host = self.ops.host_empty if accel else (lambda shape, dtype: torch.zeros(shape, dtype=dtype))
        f32 = torch.float32
        self._w_host, self._psi_host = host((1, layers, wd), f32), host((), f32)
        self._noise_host, self._params_host = host((layers,), f32), host((p,), f32)
        self._w_np, self._psi_np = self._w_host.numpy()[0], self._psi_host.numpy()
        self._noise_np, self._params_np = self._noise_host.numpy(), self._params_host.numpy()
        if p:
            self._params_np[:] = [self._ranges[n][0] for n in self._names]
        dev = dict(device=self.device, dtype=self.dtype)
        self._w = torch.zeros(1, layers, wd, **dev)
        self._psi = torch.ones((), **dev)
        self._noise = torch.zeros(layers, **dev)
        self._params = torch.zeros(p, **dev) if p else None
        self._w_avg = g.w_avg.to(**dev).clone()

        self._stream = self.ops.stream() if accel else None
        if accel:
            ev = self.ops.event
            self._inputs_free = ev()
            self._start = [ev(timing=True), ev(timing=True)]
            self._ready = [ev(timing=True), ev(timing=True)]
            self._copied = [ev(), ev()]
            self._consumed = [ev(), ev()]
            self._timed = [False, False]
        self._alloc_outputs(tuple(g.resolution))
        if self.half:
            g.to(self.dtype)

    def _alloc_outputs(self, size: tuple[int, int]) -> None:
        """Output slots for frames of ``size`` ``(h, w)``; drops any captured graphs."""
        h, w = size
        self.resolution = (h, w)
        accel = self.ops is not None
        if not accel:
            self._out_dev = [torch.zeros(h, w, 3, dtype=torch.uint8) for _ in range(2)]
            self._out_np = [t.numpy() for t in self._out_dev]
            self._rows = None
        else:
            channels = 4 if self.handoff == "device" else 3
            self._out_dev = [torch.full((h, w, channels), 255, dtype=torch.uint8, device=self.device)
                             for _ in range(2)]
            # GL wants rows bottom-up: the conversion writes them so, the host view flips back.
            self._rows = torch.arange(h - 1, -1, -1, device=self.device)
            if self.handoff == "host":
                self._out_host = [self.ops.host_empty((h, w, 3), torch.uint8) for _ in range(2)]
                self._out_np = [t.numpy()[::-1] for t in self._out_host]
            else:
                self._out_host, self._out_np = [], []
        self._work_rgb = torch.empty(h, w, 3, device=self.device, dtype=self.dtype)
        self._graphs = None

    # -- one step ------------------------------------------------------------------------------
    def _upload_inputs(self) -> None:
        """Host inputs -> static device inputs (on the current stream; before a graph replays)."""
        self._w.copy_(self._w_host, non_blocking=True)
        self._psi.copy_(self._psi_host, non_blocking=True)
        self._noise.copy_(self._noise_host, non_blocking=True)
        if self._params is not None:
            self._params.copy_(self._params_host, non_blocking=True)

    def _step_device(self, slot: int) -> None:
        """Everything that runs on the device for one frame (the part a CUDA graph captures)."""
        w = truncate_(self._w, self._w_avg, self._psi)
        if self._params is None:  # no generator parameters: the two-argument call of old
            image = self.generator.synthesize(w, self._noise)
        else:
            image = self.generator.synthesize(w, self._noise, self._params)
        torch.all(torch.isfinite(image[0]), out=self._finite)  # NaN/inf out: hold the last frame
        if self._work_rgb.dtype != image.dtype:  # a generator answering in another dtype: once,
            self._work_rgb = torch.empty(self._work_rgb.shape, dtype=image.dtype,  # in warm-up
                                         device=self._work_rgb.device)
        to_rgb8_(image[0], self._out_dev[slot], self._work_rgb, self._rows)

    def _capture(self) -> None:
        """Warm up on the runner's stream, then capture one graph per output slot. On failure
        the runner goes on eagerly (one log line)."""
        ops = self.ops
        try:
            ops.synchronize()
            with ops.use(self._stream):
                for _ in range(3):  # workspaces, allocator, cuDNN/cuBLAS autotuning
                    self._upload_inputs()
                    self._step_device(0)
            ops.synchronize()
            self._graphs = [ops.capture(lambda s=slot: self._step_device(s), self._stream)
                            for slot in range(2)]
        except Exception as exc:
            self._graphs, self._want_graph = None, False
            log.warning("CUDA graph capture failed for %s, running it eagerly: %s",
                        self.name, _first_line(exc))
            with contextlib.suppress(Exception):
                ops.synchronize()

    def generate(self, params: FrameParams):
        """Generate one frame now, on the calling thread.

        Returns ``uint8 [h, w, 3]`` (top row first; on CUDA a flipped view of a pinned buffer), or
        a :class:`DeviceFrame` with ``handoff="device"``. It is one of two output slots:
        generate() always writes the one that was not handed out last by :meth:`result`, so the
        frame being shown is never overwritten.
        """
        slot = 1 - self._shown
        self._gen_slot = slot
        ops = self.ops
        if ops is not None:
            self._inputs_free.synchronize()  # last frame's inputs have gone up (normally long ago)
            self._read_timing(slot)
        fill_inputs(params, self._w_np, self._psi_np, self._noise_np, self._params_np,
                    self._names, self._ranges)
        with torch.inference_mode():
            if ops is None:
                self._upload_inputs()
                self._step_device(slot)
                return self._out_np[slot]
            if self._want_graph and self._graphs is None:
                self._capture()
            stream = self._stream
            with ops.use(stream):
                self._consumed[slot].wait(stream)  # the display has copied this slot out
                self._upload_inputs()
                self._inputs_free.record(stream)
                self._start[slot].record(stream)
                if self._graphs is not None:
                    self._graphs[slot]()
                else:
                    self._step_device(slot)
                self._ready[slot].record(stream)
                self._timed[slot] = True
                if self.handoff == "device":
                    return DeviceFrame(self._out_dev[slot], self._ready[slot],
                                       self._consumed[slot], slot)
                self._out_host[slot].copy_(self._out_dev[slot], non_blocking=True)
                # the NaN/inf verdict rides along with the pixels (read after the same sync)
                self._finite_host.copy_(self._finite, non_blocking=True)
                self._copied[slot].record(stream)
            # The display needs the pixels on the host: the one host sync of the frame.
            self._copied[slot].synchronize()
            self._read_timing(slot)
            return self._out_np[slot]

    def _read_timing(self, slot: int) -> None:
        """Device time of the slot's last frame, once its events have completed (no waiting)."""
        if self._timed[slot] and self._ready[slot].query():
            self.device_s = self._start[slot].elapsed_time(self._ready[slot]) * 1e-3
            self._timed[slot] = False

    def _checked(self, params: FrameParams):
        """Generate, or report the failure (once per kind) and return None."""
        try:
            if not np.isfinite(params.w_plus).all():
                raise FloatingPointError("latent contains NaN or inf")
            t0, c0 = time.perf_counter(), time.thread_time()
            frame = self.generate(params)
            self.last_gen_s = time.perf_counter() - t0
            self.cpu_s = time.thread_time() - c0
            # NaN/inf out: hold the last frame. With the device hand-off the verdict would need
            # a host sync, so there the display shows what the generator made.
            finite = self._finite_host if self.ops is not None else self._finite
            if self.handoff != "device" and not bool(finite):
                raise FloatingPointError("generator returned NaN or inf")
            self.last_failed = False
        except Exception as exc:  # a failing generator must not stop the show
            self.error_count += 1
            self.last_failed = True
            kind = _first_line(exc)
            self.last_error = kind
            if kind not in self._errors_seen:
                self._errors_seen.add(kind)
                log.error("generator failed (holding the last good frame): %s", kind)
            return None
        if self.budget is not None:
            # What the generator costs, not what it waited for: GPU time on CUDA; on the CPU
            # this thread's CPU time (wall time would count the GIL held by GL calls on the
            # main thread, and other processes).
            cost = self.device_s if self.ops is not None else self.cpu_s
            size = self.budget.update(cost)
            if size is not None:
                self._resize(size)
        return frame

    def set_handoff(self, mode: str) -> None:
        """Switch between ``"host"`` and ``"device"`` hand-off (see the class). Waits for the frame
        in progress; ``"device"`` needs CUDA (elsewhere it stays ``"host"``)."""
        with self._job:
            while self._busy:
                self._job.wait()
            mode = mode if (self.ops is not None and mode == "device") else "host"
            if mode != self.handoff:
                self.handoff = mode
                if self.ops is not None:
                    self.ops.synchronize()
                self._alloc_outputs(self.resolution)

    # -- resolution budget ---------------------------------------------------------------------
    def enable_budget(self, target_fps: float = 60.0) -> ResolutionBudget:
        """Watch generation time against ``1 / target_fps`` and render smaller when it does not
        fit (see :mod:`engine.generators.budget`). Frames may then come out smaller than the
        model's resolution: only for a display that scales its input (the live loop)."""
        self.budget = ResolutionBudget(self.model_resolution, float(target_fps),
                                       resizable=bool(getattr(self.generator, "resizable", False)),
                                       name=self.name)
        return self.budget

    @property
    def budget_note(self) -> str | None:
        """The resolution budget's one-line report (for the overlay), if it made one."""
        return self.budget.note if self.budget is not None else None

    def _resize(self, size: tuple[int, int]) -> None:
        """Render at ``size`` from the next frame on (worker thread, between frames). Frames
        already handed out keep their own buffers, so nothing on screen is overwritten."""
        try:
            if self.ops is not None:
                self.ops.synchronize()
            self.generator.set_resolution(size)
            self._alloc_outputs(tuple(self.generator.resolution))  # graphs captured anew
        except Exception as exc:
            log.warning("cannot change %s's resolution, keeping %s: %s", self.name,
                        self.resolution, _first_line(exc))
            self.budget.resizable = False

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

    def _finish(self, frame) -> None:
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

    def result(self, timeout: float | None = None):
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
        if isinstance(self._last_good, DeviceFrame):
            self._last_good = self._last_good_host(self._last_good)
        elif self._last_good is not None and any(self._last_good is a for a in self._out_np):
            self._last_good = self._last_good.copy()
        return self._hold()

    @staticmethod
    def _last_good_host(frame: DeviceFrame) -> np.ndarray:
        frame.ready.synchronize()
        return frame.tensor[..., :3].flip(0).cpu().numpy()  # only on failure, never per frame

    def _hold(self):
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
    """Build a generator from a name: ``builtin:cppn`` (the default), ``builtin:flow``.
    Unknown -> GeneratorError."""
    name = (spec or "builtin:cppn").strip()
    if name in ("builtin:cppn", "cppn", "builtin"):
        from engine.generators.cppn import CPPNGenerator

        return CPPNGenerator(resolution)
    if name in ("builtin:flow", "flow"):
        from engine.generators.flow import FlowGenerator

        return FlowGenerator(resolution)
    raise GeneratorError(
        f"unknown generator '{name}' (built-ins: builtin:cppn, builtin:flow)")
