"""The CUDA path on a real GPU: runner (static inputs, CUDA graphs, fp16, slots, NaN hold, resize),
CUDA-GL interop on EGL, StyleGAN2/3 on the device against the CPU, and studio training steps.

Every test here skips where torch sees no CUDA device (CI, and the project's own machines); the
same control flow is covered on the CPU by ``test_runner.py``'s fake device. On a GPU machine:

    python -m pytest -q tests/test_cuda.py

(``benchmarks/gpu_run.sh`` runs it first, before the GPU benchmarks.)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.generators import load_generator
from engine.generators.runner import DeviceFrame, GeneratorRunner
from test_runner import frames, params_for

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MODELS = Path(__file__).parent / "data" / "models"
SHADERS = Path(__file__).resolve().parent.parent / "shaders"


def _params(gen, seed, psi=0.8, **moves):
    return params_for(gen.latent_space(), seed, psi, 0.0, **moves)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


SPECS = ["builtin:cppn", "builtin:flow", str(MODELS / "sg2_skip.safetensors"),
         str(MODELS / "sg3_cond32.pkl")]


@pytest.mark.parametrize("spec", SPECS)
def test_cuda_graph_frames_match_the_cpu(spec, caplog):
    """fp32 on CUDA with graph capture: the frames the CPU makes (within rounding), every input
    tracked by the replays, no fail-over."""
    caplog.set_level(logging.WARNING)
    cpu = GeneratorRunner(load_generator(spec, (96, 128)), device="cpu", threaded=False)
    gpu = GeneratorRunner(load_generator(spec, (96, 128)), device="cuda", half=False,
                          cuda_graph=True)
    gen = cpu.generator
    moves = {n: lo + 0.3 * (hi - lo) for n, (_, lo, hi) in gen.param_ranges.items()} \
        if getattr(gen, "param_ranges", None) else {}
    plist = [_params(gen, 3), _params(gen, 3, psi=0.4), _params(gen, 11, **moves), _params(gen, 3)]
    try:
        a, b = frames(cpu, plist), frames(gpu, plist)
        assert gpu._graphs is not None, "the CUDA graph was not captured"
        assert not _warnings(caplog), _warnings(caplog)
        for x, y in zip(a, b):
            diff = np.abs(x.astype(int) - y.astype(int))
            assert diff.max() <= 3 and diff.mean() < 0.1, (diff.max(), diff.mean())
        assert not np.array_equal(b[0], b[1]) and not np.array_equal(b[0], b[2])
        # the same inputs again give the same frame (within rounding: cuDNN may pick
        # non-deterministic algorithms for transposed convolutions, as StyleGAN3 has)
        again = np.abs(b[0].astype(int) - b[3].astype(int))
        assert again.max() <= 2 and again.mean() < 0.05, (again.max(), again.mean())
        assert gpu.device_s > 0.0
    finally:
        cpu.close()
        gpu.close()


@pytest.mark.parametrize("spec", ["builtin:cppn", str(MODELS / "sg2_skip.safetensors")])
def test_fp16_graph_stays_close_to_fp32(spec):
    ref = GeneratorRunner(load_generator(spec, (128, 128)), device="cuda", half=False)
    half = GeneratorRunner(load_generator(spec, (128, 128)), device="cuda", half=True)
    plist = [_params(ref.generator, s) for s in (1, 2, 5)]
    try:
        assert half.half and half.dtype == torch.float16
        for x, y in zip(frames(ref, plist), frames(half, plist)):
            diff = np.abs(x.astype(int) - y.astype(int))
            assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 8, (diff.mean(), diff.max())
        assert half._graphs is not None
    finally:
        ref.close()
        half.close()


def test_nan_output_holds_the_last_good_frame_on_cuda(caplog):
    gen = load_generator("builtin:cppn", (64, 64))
    inner = gen.synthesize

    def synthesize(w_plus, noise_strength=0.0):
        img = inner(w_plus, noise_strength)
        # w's first value above 50 poisons the frame: a device-side condition, graph-safe
        return torch.where(w_plus[:, :1, :1, None] > 50, torch.nan, img)

    gen.synthesize = synthesize
    runner = GeneratorRunner(gen, device="cuda", half=False)
    try:
        good = _params(gen, 4)
        bad = _params(gen, 4)
        bad.w_plus = bad.w_plus.copy()
        bad.w_plus[0, 0] = 100.0
        first = frames(runner, [good])[0]
        with caplog.at_level(logging.ERROR, logger="lj.generator"):
            held = frames(runner, [bad, bad])
        assert runner._graphs is not None
        assert all(np.array_equal(h, first) for h in held)
        assert runner.error_count == 2
        assert sum("NaN" in r.getMessage() for r in caplog.records) == 1
        again = frames(runner, [_params(gen, 7)])[0]
        assert not np.array_equal(again, first)
    finally:
        runner.close()


def test_resize_recaptures_and_keeps_the_shown_frame():
    gen = load_generator("builtin:cppn", (128, 128))
    runner = GeneratorRunner(gen, device="cuda", half=False, threaded=False)
    try:
        runner.submit(_params(gen, 2))
        shown = runner.result()
        kept = np.array(shown)
        runner._resize((64, 64))
        runner.submit(_params(gen, 5))
        small = runner.result()
        assert small.shape == (64, 64, 3) and runner._graphs is not None
        assert np.array_equal(shown, kept), "a resize must not write the frame on screen"
    finally:
        runner.close()


def test_device_handoff_through_cuda_gl_interop_reads_back_the_frame():
    """handoff="device" + CudaGLUpload on an EGL context of the same GPU: the texture holds the
    pixels the host path gives, and nothing crossed to the host on the way."""
    from engine.render.context import headless_context
    from engine.render.gpu_upload import make_uploader
    from engine.render.pipeline import Renderer

    try:
        ctx = headless_context()
    except Exception as exc:
        pytest.skip(f"no EGL context here: {exc}")
    gen = load_generator("builtin:cppn", (96, 128))
    host = GeneratorRunner(load_generator("builtin:cppn", (96, 128)), device="cuda", half=False,
                           threaded=False)
    runner = GeneratorRunner(gen, device="cuda", half=False, threaded=False)
    renderer = Renderer(ctx, (128, 96), (128, 96), [], SHADERS)
    try:
        renderer.uploader = make_uploader(ctx, runner)
        if renderer.uploader.path != "cuda-gl":
            pytest.skip("CUDA-GL interop is not available here (see the log line)")
        assert runner.handoff == "device"
        for seed in (3, 8, 3):
            p = _params(gen, seed)
            runner.submit(p)
            frame = runner.result()
            assert isinstance(frame, DeviceFrame)
            renderer.render(frame, {}, 0.0, {})
            host.submit(p)
            want = host.result()
            got = renderer.read()
            diff = np.abs(got.astype(int) - want.astype(int))
            assert diff.max() <= 1, diff.max()
        assert renderer.uploader.path == "cuda-gl", "interop fell back to the host path"
    finally:
        renderer.release()
        runner.close()
        host.close()
        ctx.release()


@pytest.fixture
def no_tf32():
    """fp32 means fp32 here (TF32 off), restored afterwards."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_stylegan3_on_cuda_matches_nvlabs_reference(no_tf32):
    """The committed NVlabs reference numbers, reproduced on the GPU in fp32 (TF32 off)."""
    from test_stylegan3 import Fixture
    from model_fixtures import write_stylegan3_pickle

    fx = Fixture("t")
    with tempfile.TemporaryDirectory() as tmp:
        gen = load_generator(str(write_stylegan3_pickle("t", Path(tmp) / "t.pkl"))).to("cuda")
    ref = np.clip(fx.ref["synthesis"], -1, 1)
    ws = torch.as_tensor(fx.ws).cuda()
    with torch.no_grad():
        gen.force_fp32 = True   # the reference is NVlabs' float32 path
        exact = gen.synthesize(ws, 0.0).cpu().numpy()
        gen.force_fp32 = False  # lj run's default on CUDA: the model's float16 layers in float16
        mixed = gen.synthesize(ws, 0.0).cpu().numpy()
    assert np.abs(exact - ref).max() <= 1e-3
    assert np.abs(mixed - ref).max() <= 0.05 and np.abs(mixed - ref).mean() <= 5e-3


def test_training_steps_on_cuda_move_the_losses_and_the_result_loads(tmp_path):
    from PIL import Image

    from engine.studio.config import TrainConfig
    from engine.studio.train import Trainer

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        img = np.zeros((32, 32, 3), np.uint8)
        img[:, : 8 + i] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(images / f"{i}.png")
    cfg = TrainConfig(images=str(images), resolution=32, z_dim=32, w_dim=32, channels=16, batch=4,
                      steps=12, sample_every=6, checkpoint_every=6, ada=True)
    t = Trainer.new(cfg, tmp_path / "run", device="cuda", log=lambda m: None)
    assert next(t.G.parameters()).is_cuda
    before = [p.detach().clone() for p in t.G.parameters()]
    stats = [t.train_step() for _ in range(12)]
    assert all(np.isfinite(float(v)) for s in stats for v in s.values() if np.isscalar(v))
    assert any(not torch.equal(a, b) for a, b in zip(before, t.G.parameters()))
    assert (t.save_checkpoint()).exists() and t.save_samples().exists()
    gen = load_generator(str(t.export(tmp_path / "run" / "model.safetensors")))
    frame = GeneratorRunner(gen, device="cuda", threaded=False)
    try:
        frame.submit(_params(gen, 1))
        assert frame.result().std() > 0
    finally:
        frame.close()
