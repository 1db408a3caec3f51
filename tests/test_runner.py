"""The generator runner: static inputs from FrameParams, the CUDA control flow (on a fake device:
this machine has no GPU), double-buffered slots, fail-over, and the resolution budget."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from engine.frame import FrameParams
from engine.generators.base import Generator, per_layer
from engine.generators.budget import HIGH, LOW, SCALES, ResolutionBudget, choose_scale, scaled_size
from engine.generators.cppn import CPPNGenerator
from engine.generators.runner import DeviceFrame, GeneratorRunner, fill_inputs


# -- a slow generator: the live loop's non-blocking path ------------------------------------------
class Sluggish(CPPNGenerator):
    """A generator whose frames take as long as a test says (waits on an event)."""

    def __init__(self):
        super().__init__((16, 16))
        self.gate = threading.Event()
        self.gate.set()

    def synthesize(self, w_plus, noise_strength=0.0):
        self.gate.wait(10)
        return super().synthesize(w_plus, noise_strength)


def params(gen, seed):
    w = gen.latent_space().seed_to_w(seed)
    return FrameParams(t=0.0, w_plus=np.repeat(w[None], gen.num_layers, 0))


def test_a_late_frame_holds_the_shown_picture_without_blocking():
    gen = Sluggish()
    runner = GeneratorRunner(gen, device="cpu")
    try:
        runner.submit(params(gen, 1))
        shown = runner.result()
        kept = shown.copy()
        gen.gate.clear()                       # the next frames are "ten times slower"
        runner.submit(params(gen, 2))
        t0 = time.monotonic()
        held = runner.result(timeout=0.02)
        assert held is shown and runner.late_frames == 1
        assert time.monotonic() - t0 < 5, "result(timeout) must not wait for the generator"
        assert not runner.idle
        gen.gate.set()                         # the slow frame completes, uncollected...
        deadline = time.monotonic() + 10
        while not runner.idle and time.monotonic() < deadline:
            time.sleep(0.005)
        runner.submit(params(gen, 3))          # ...and the next job starts before it is taken
        runner.result()
        np.testing.assert_array_equal(kept, shown)  # never written while it was on screen
    finally:
        gen.gate.set()
        runner.close()


def test_fresh_frames_alternate_between_the_two_buffers():
    gen = CPPNGenerator((16, 16))
    runner = GeneratorRunner(gen, device="cpu", threaded=False)
    seen = []
    for seed in range(4):
        runner.submit(params(gen, seed))
        frame = runner.result()
        seen.append(frame)
        assert frame is not (seen[-2] if len(seen) > 1 else None)
    assert seen[0] is seen[2] and seen[1] is seen[3]
    assert runner.result() is seen[-1], "no new job: the shown frame again"
    runner.close()


# -- a fake CUDA: CPU tensors, events that log, graphs whose capture forbids host reads ----------
class HostRead(RuntimeError):
    pass


class NoHostReads(TorchFunctionMode):
    """What a real capture enforces: reading a tensor's value on the host is an error (on CUDA,
    'operation not permitted when stream is capturing'); a value read here would be frozen into
    the graph."""

    BAD = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__bool__,
           torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.cpu}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.BAD:
            raise HostRead(f"{func.__name__} during capture")
        return func(*args, **(kwargs or {}))


class FakeEvent:
    def __init__(self, ops, name):
        self.ops, self.name, self.recorded = ops, name, False

    def record(self, stream=None):
        self.recorded = True
        self.ops.log.append(("record", self.name))

    def wait(self, stream=None):
        self.ops.log.append(("wait", self.name))

    def synchronize(self):
        self.ops.log.append(("sync", self.name))

    def query(self):
        return self.recorded

    def elapsed_time(self, other):
        return 2.0  # ms


class FakeOps:
    def __init__(self, fail_setup=False):
        self.log, self.captures, self.replays, self.fail_setup = [], 0, 0, fail_setup
        self._n = 0

    def stream(self):
        return "stream"

    def use(self, stream):
        import contextlib
        return contextlib.nullcontext()

    def event(self, timing=False):
        self._n += 1
        return FakeEvent(self, self._n)

    def synchronize(self):
        self.log.append(("device-sync",))

    def host_empty(self, shape, dtype):
        if self.fail_setup:
            raise RuntimeError("CUDA error: no CUDA-capable device is detected")
        return torch.zeros(shape, dtype=dtype)

    def capture(self, fn, stream):
        with NoHostReads():
            fn()
        self.captures += 1
        self.log.append(("capture",))

        def replay():
            self.replays += 1
            self.log.append(("replay",))
            with NoHostReads():
                fn()
        return replay


def names(runner, log):
    """Event numbers -> readable names, for the runner's events."""
    n = {runner._inputs_free.name: "inputs_free"}
    for kind in ("start", "ready", "copied", "consumed"):
        for slot, ev in enumerate(getattr(runner, f"_{kind}")):
            n[ev.name] = f"{kind}{slot}"
    return [(e[0], n.get(e[1], e[1])) if len(e) > 1 else e for e in log]


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def space():
    return CPPNGenerator((24, 32)).latent_space()


def params_for(space, seed, psi=1.0, noise=0.0, **gen):
    w = np.repeat(space.seed_to_w(seed)[None], space.num_layers, 0)
    p = FrameParams(t=0.0, w_plus=w, truncation=psi, noise=noise)
    p.generator = gen
    return p


def frames(runner, plist):
    out = []
    for p in plist:
        runner.submit(p)
        f = runner.result()
        out.append(f.copy() if isinstance(f, np.ndarray) else f)
    return out


SEQUENCE = [dict(seed=3), dict(seed=3, psi=0.5), dict(seed=9, noise=0.4),
            dict(seed=9, noise=np.linspace(0, 1, 6).astype(np.float32)), dict(seed=12, psi=0.0)]


# -- inputs ----------------------------------------------------------------------------------------
def test_fill_inputs_broadcasts_noise_and_defaults_clamps_generator_params():
    w, psi = np.zeros((3, 4), np.float32), np.zeros((), np.float32)
    noise, gp = np.zeros(3, np.float32), np.zeros(3, np.float32)
    ranges = {"blend": (0.5, 0.0, 1.0), "hue": (0.0, -1.0, 1.0), "amp": (2.0, 0.0, 4.0)}
    p = FrameParams(t=0, w_plus=np.ones((3, 4), np.float32), truncation=0.7, noise=0.25)
    p.generator = {"hue": 5.0, "amp": float("nan")}
    fill_inputs(p, w, psi, noise, gp, ("blend", "hue", "amp"), ranges)
    assert w.sum() == 12 and psi == np.float32(0.7)
    assert noise.tolist() == [0.25] * 3
    assert gp.tolist() == [0.5, 1.0, 2.0]  # missing -> default, 5 -> clamped, NaN -> default
    p.noise = np.array([0.0, 0.5, 1.0], np.float32)
    del p.generator  # FrameParams of a branch without the field
    fill_inputs(p, w, psi, noise, gp, ("blend", "hue", "amp"), ranges)
    assert noise.tolist() == [0.0, 0.5, 1.0] and gp.tolist() == [0.5, 0.0, 2.0]


def test_per_layer_accepts_float_0d_and_vector():
    like = torch.zeros(2)
    assert per_layer(0.5, 3, like).tolist() == [0.5] * 3
    t = torch.tensor(0.25)
    assert per_layer(t, 3, like).tolist() == [0.25] * 3
    v = torch.tensor([0.0, 1.0, 2.0])
    assert per_layer(v, 3, like) is v
    with pytest.raises(ValueError, match=r"\[3\]"):
        per_layer(torch.zeros(4), 3, like)


class Probe(Generator):
    """Records the tensors the runner passes; the image shows the params and the noise."""

    latent_dim = w_dim = 4
    num_layers = 3
    resolution = (4, 6)
    has_noise = True
    param_names = ("blend", "hue")
    param_ranges = {"blend": (0.5, 0.0, 1.0), "hue": (0.0, -1.0, 1.0)}

    def __init__(self):
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(4))
        self.seen = []

    def mapping(self, z):
        return z

    def synthesize(self, w_plus, noise_strength=0.0, params=None):
        self.seen.append((noise_strength, params, noise_strength.clone(), params.clone()))
        img = torch.empty(1, 3, 4, 6, dtype=w_plus.dtype)
        img[:, 0] = params[0] * 2 - 1
        img[:, 1] = params[1]
        img[:, 2] = noise_strength[2] * 2 - 1
        return img


def test_runner_passes_static_noise_and_params_tensors_every_frame():
    g = Probe()
    runner = GeneratorRunner(g, device="cpu", threaded=False)
    seq = [FrameParams(t=0, w_plus=np.zeros((3, 4), np.float32), noise=0.5),
           FrameParams(t=0, w_plus=np.zeros((3, 4), np.float32), noise=np.array([0, 0.5, 1], np.float32))]
    seq[0].generator = {}
    seq[1].generator = {"blend": 1.0, "hue": -0.5}
    out = frames(runner, seq)
    (n0, p0, v0, q0), (n1, p1, v1, q1) = g.seen
    assert n0 is n1 and p0 is p1, "the same static tensors every frame"
    assert n0.shape == (3,) and p0.shape == (2,)
    assert v0.tolist() == [0.5] * 3 and q0.tolist() == [0.5, 0.0]  # defaults from param_ranges
    assert v1.tolist() == [0.0, 0.5, 1.0] and q1.tolist() == [1.0, -0.5]
    assert out[1][0, 0].tolist() == [255, 64, 255]


# -- the CUDA path, on the fake device --------------------------------------------------------------
def cpu_reference(space):
    runner = GeneratorRunner(CPPNGenerator((24, 32)), device="cpu", threaded=False)
    return frames(runner, [params_for(space, **kw) for kw in SEQUENCE])


def test_fake_cuda_graph_replays_track_every_input(space):
    """Captured once per slot after a warm-up, then replayed: frames equal the eager CPU runner's
    for changing truncation, scalar and per-layer noise (nothing was frozen at capture)."""
    ops = FakeOps()
    runner = GeneratorRunner(CPPNGenerator((24, 32)), device="cpu", ops=ops, half=False, threaded=False)
    got = frames(runner, [params_for(space, **kw) for kw in SEQUENCE])
    for a, b in zip(got, cpu_reference(space)):
        assert np.array_equal(a, b)
    assert ops.captures == 2 and ops.replays == len(SEQUENCE)
    first_capture = ops.log.index(("capture",))
    assert ops.log[:first_capture].count(("device-sync",)) == 2, "warm-up is fenced before capture"
    assert runner._out_np[0].strides[0] < 0, "host frames are flipped views of bottom-up buffers"


def test_fake_cuda_event_protocol_per_frame(space):
    ops = FakeOps()
    runner = GeneratorRunner(CPPNGenerator((24, 32)), device="cpu", ops=ops, half=False, threaded=False)
    frames(runner, [params_for(space, 1)])
    ops.log.clear()
    frames(runner, [params_for(space, 2)])
    log = names(runner, ops.log)
    # slot 1 now (slot 0 is on screen): wait for the display to release it, inputs up, replay,
    # ready, copy down, and the one host sync the display needs.
    assert log == [("sync", "inputs_free"), ("wait", "consumed1"), ("record", "inputs_free"),
                   ("record", "start1"), ("replay",), ("record", "ready1"), ("record", "copied1"),
                   ("sync", "copied1")]
    assert runner.device_s == pytest.approx(2e-3)


def test_fake_cuda_device_handoff_alternates_slots_and_never_syncs_the_host(space):
    ops = FakeOps()
    runner = GeneratorRunner(CPPNGenerator((24, 32)), device="cpu", ops=ops, half=False,
                             threaded=False, handoff="device")
    ref = cpu_reference(space)
    got = frames(runner, [params_for(space, **kw) for kw in SEQUENCE])
    assert all(isinstance(f, DeviceFrame) for f in got)
    assert [f.slot for f in got] == [0, 1, 0, 1, 0]
    f = got[-1]
    assert f.tensor.shape == (24, 32, 4) and (f.tensor[..., 3] == 255).all()
    assert np.array_equal(f.tensor[..., :3].flip(0).numpy(), ref[-1]), "rows bottom-up, RGB first"
    assert not [e for e in names(runner, ops.log) if e[0] == "sync" and e[1] != "inputs_free"]


def test_host_reads_in_a_generator_fail_capture_over_to_eager_with_one_line(space, caplog):
    class Branchy(CPPNGenerator):
        def synthesize(self, w_plus, noise_strength=0.0, params=None):
            if float(noise_strength.max()) == 0.0:  # a Python branch on a tensor's value
                noise_strength = 0.0
            return super().synthesize(w_plus, noise_strength, params)

    ops = FakeOps()
    runner = GeneratorRunner(Branchy((24, 32)), device="cpu", ops=ops, half=False, threaded=False)
    with caplog.at_level(logging.WARNING, "lj.generator"):
        got = frames(runner, [params_for(space, **kw) for kw in SEQUENCE])
    assert runner._graphs is None and ops.replays == 0
    assert sum("CUDA graph capture failed" in r.getMessage() for r in caplog.records) == 1
    for a, b in zip(got, cpu_reference(space)):
        assert np.array_equal(a, b)


def test_static_tensors_are_never_reallocated(space):
    ops = FakeOps()
    runner = GeneratorRunner(CPPNGenerator((24, 32)), device="cpu", ops=ops, half=False, threaded=False)
    frames(runner, [params_for(space, 1)])
    tensors = [runner._w, runner._psi, runner._noise, runner._w_host, runner._noise_host,
               *runner._out_dev, *runner._out_host, runner._work_rgb]
    ptrs = [t.data_ptr() for t in tensors]
    frames(runner, [params_for(space, **kw) for kw in SEQUENCE])
    assert [t.data_ptr() for t in tensors] == ptrs


def test_fp16_on_the_accelerated_path_stays_close(space):
    runner = GeneratorRunner(CPPNGenerator((24, 32)), device="cpu", ops=FakeOps(), threaded=False)
    assert runner.half and runner.dtype == torch.float16  # CPPN says supports_half
    got = frames(runner, [params_for(space, 3)])[0].astype(float)
    ref = cpu_reference(space)[0].astype(float)
    assert np.abs(got - ref).mean() < 4.0


def test_cuda_start_up_failure_runs_on_the_cpu_with_one_line(space, caplog):
    with caplog.at_level(logging.WARNING, "lj.generator"):
        runner = GeneratorRunner(CPPNGenerator((24, 32)), device="cpu", ops=FakeOps(fail_setup=True),
                                 threaded=False)
    assert runner.ops is None and runner.dtype == torch.float32
    assert [r.getMessage() for r in caplog.records if "CUDA start-up failed" in r.getMessage()] \
        == ["CUDA start-up failed, generating on the CPU instead: "
            "RuntimeError: CUDA error: no CUDA-capable device is detected"]
    assert np.array_equal(frames(runner, [params_for(space, 3)])[0], cpu_reference(space)[0])


# -- double buffering --------------------------------------------------------------------------------
def test_the_frame_on_screen_is_never_written(space):
    runner = GeneratorRunner(CPPNGenerator((24, 32)), device="cpu", ops=FakeOps(), half=False)
    try:
        runner.submit(params_for(space, 3))
        shown = runner.result()
        kept = shown.copy()
        for seed in (4, 5, 6):  # frames finishing unseen (no result() taken) must not touch it
            runner.submit(params_for(space, seed))
            runner._job.acquire()
            while runner._busy:
                runner._job.wait()
            runner._job.release()
            assert np.array_equal(shown, kept)
        assert not np.array_equal(runner.result(), kept)
    finally:
        runner.close()


# -- the resolution budget ---------------------------------------------------------------------------
def test_choose_scale_goes_down_to_fit_and_up_with_hysteresis():
    budget = 1 / 60
    assert choose_scale(0.5 * budget, 1.0, budget) == 1.0
    # twice too slow: cost ~ scale^2, so about 0.59 fits in TARGET -> the largest scale under it
    assert choose_scale(2 * budget, 1.0, budget) == 0.5
    assert choose_scale(100 * budget, 1.0, budget) == SCALES[-1]
    assert choose_scale(HIGH * budget * 1.01, 1.0, budget) == 0.875
    # going up only when the next step is predicted well under budget
    s = 0.5
    up = 0.625
    assert choose_scale(LOW * budget * (s / up) ** 2 * 0.99, s, budget) == up
    assert choose_scale(LOW * budget * (s / up) ** 2 * 1.01, s, budget) == s
    assert choose_scale(0.0, 0.5, budget) == 0.5
    assert scaled_size((512, 512), 0.5) == (256, 256) and scaled_size((100, 60), 1.0) == (100, 60)
    assert scaled_size((512, 384), 0.375) == (192, 144)


def run_budget(b, times):  # noqa: D103
    changes = []
    for t in times:
        size = b.update(t)
        if size is not None:
            changes.append(size)
    return changes


def simulate(b, full_cost_s, frames_):
    """Frames whose cost is ``full_cost_s`` at the model's size, scaled by the pixel count."""
    changes = []
    for _ in range(frames_):
        size = b.update(full_cost_s * b.scale ** 2)
        if size is not None:
            changes.append(size)
    return changes


def test_budget_controller_steps_down_settles_and_steps_back_up():
    b = ResolutionBudget((512, 512), 60.0, resizable=True, name="cppn")
    budget = 1 / 60
    changes = simulate(b, 2 * budget, 600)  # twice too slow at 512²
    assert changes[0] == (256, 256) and "cppn at 256x256" in b.note
    assert len(changes) <= 3, f"settles instead of flickering: {changes}"
    assert 2 * b.scale ** 2 <= HIGH, "ends at a size that holds the rate"
    assert 2 * scaled_size((512, 512), SCALES[SCALES.index(b.scale) - 1])[0] ** 2 / 512 ** 2 > LOW, \
        "and as large as the hysteresis allows"
    changes = simulate(b, 0.3 * budget, 600)  # the load goes away: back up, step by step
    assert changes and changes[-1] == (512, 512) and b.note is None
    assert all(x[0] < y[0] for x, y in zip(changes, changes[1:]))


def test_budget_reports_a_fixed_size_model_once(caplog):
    b = ResolutionBudget((512, 512), 60.0, resizable=False, name="model.pkl")
    with caplog.at_level(logging.WARNING, "lj.generator"):
        assert run_budget(b, [1 / 30] * 200) == []
    assert b.note == "model.pkl holds 30 fps at 512x512, target 60"
    assert sum("holds 30 fps" in r.getMessage() for r in caplog.records) == 1


def test_runner_renders_smaller_when_the_budget_says_so(space):
    runner = GeneratorRunner(CPPNGenerator((48, 64)), device="cpu", ops=FakeOps(), half=False,
                             threaded=False)
    b = runner.enable_budget(60.0)
    first = frames(runner, [params_for(space, 3)])[0]
    shown = runner.result()
    kept = shown.copy()
    b.update = lambda s: (24, 32)  # the policy decided (tested above): apply it
    frames(runner, [params_for(space, 4)])
    b.update = lambda s: None
    small = frames(runner, [params_for(space, 5), params_for(space, 6)])
    assert first.shape == (48, 64, 3) and small[-1].shape == (24, 32, 3)
    assert np.array_equal(shown, kept), "a frame handed out before the change is left alone"
    assert runner.ops.captures == 4, "graphs captured again for the new size"
    assert runner.generator.resolution == (24, 32) and runner.model_resolution == (48, 64)


def test_budget_on_a_fixed_size_generator_never_resizes():
    runner = GeneratorRunner(Probe(), device="cpu", threaded=False)
    b = runner.enable_budget(1000.0)
    assert not b.resizable
    p = FrameParams(t=0, w_plus=np.zeros((3, 4), np.float32))
    for _ in range(60):
        runner.submit(p)
        assert runner.result().shape == (4, 6, 3)


def test_the_budget_note_reaches_the_h_overlay():
    from types import SimpleNamespace

    from engine.live import overlay_lines
    from engine.session import FrameStats

    runner = GeneratorRunner(Probe(), device="cpu", threaded=False)
    session = SimpleNamespace(analysis=SimpleNamespace(features={}), runner=runner, last_error=None,
                              mapping=SimpleNamespace(name="m"), mapping_path=None)
    assert not any("holds" in line for line in overlay_lines(FrameStats(), session, 1.0))
    runner.enable_budget(60.0).note = "Probe holds 30 fps at 6x4, target 60"
    assert overlay_lines(FrameStats(), session, 1.0)[-1] == "Probe holds 30 fps at 6x4, target 60"


def test_a_step_down_that_does_not_pay_is_undone_and_reported_once(caplog):
    """A generator whose time does not fall with its size (bound by something else) gets its
    size back, keeps it, and is reported once."""
    b = ResolutionBudget((512, 512), 60.0, resizable=True, name="cppn")
    with caplog.at_level(logging.INFO, "lj.generator"):
        changes = run_budget(b, [2.0 / 60] * 400)  # the same time at every size
    assert changes == [(256, 256), (512, 512)]
    assert b.note == "cppn holds 30 fps at 512x512, target 60"
    assert sum("no faster" in r.getMessage() for r in caplog.records) == 1
    assert sum("holds 30 fps" in r.getMessage() for r in caplog.records) == 1


def test_flow_is_capturable_with_its_params():
    """builtin:flow reads neither its noise nor its params on the host, so it captures; frames
    from the replays follow zoom and swirl like the eager CPU runner's."""
    from engine.generators.flow import FlowGenerator

    fs = FlowGenerator((24, 32)).latent_space()
    seq = [params_for(fs, 3), params_for(fs, 3, swirl=1.5), params_for(fs, 4, zoom=0.5, noise=0.3)]
    ops = FakeOps()
    fake = GeneratorRunner(FlowGenerator((24, 32)), device="cpu", ops=ops, half=False, threaded=False)
    cpu = GeneratorRunner(FlowGenerator((24, 32)), device="cpu", threaded=False)
    got, ref = frames(fake, seq), frames(cpu, seq)
    assert ops.captures == 2 and ops.replays == 3
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))
    assert not np.array_equal(ref[0], ref[1])
