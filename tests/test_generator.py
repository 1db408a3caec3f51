"""The built-in generator and the runner: shapes, determinism, smoothness, failure handling."""

import numpy as np
import pytest
import torch

from engine.errors import GeneratorError
from engine.frame import FrameParams
from engine.generators.base import z_from_seed
from engine.generators.cppn import CPPNGenerator
from engine.generators.flow import FlowGenerator
from engine.generators.runner import GeneratorRunner, load_generator, to_rgb8_, truncate_


@pytest.fixture(scope="module")
def gen():
    return CPPNGenerator((48, 64))


def w_plus_for(gen, seed):
    return np.repeat(gen.latent_space().seed_to_w(seed)[None], gen.num_layers, 0)


def synth(gen, w_plus, noise=0.0):
    with torch.inference_mode():
        return gen.synthesize(torch.from_numpy(w_plus)[None], noise)[0].clone()


def test_protocol_shapes_and_range(gen):
    assert (gen.latent_dim, gen.w_dim, gen.num_layers) == (64, 64, 6)
    img = synth(gen, w_plus_for(gen, 3))
    assert img.shape == (3, 48, 64)
    assert img.min() >= -1 and img.max() <= 1
    assert img.std() > 0.1, "a flat image is not a picture"
    groups = gen.layer_groups()
    assert list(groups["coarse"]) == [0, 1] and list(groups["fine"]) == [4, 5]


def test_same_seed_same_picture_on_a_fresh_instance(gen):
    a = synth(gen, w_plus_for(gen, 14))
    b = synth(CPPNGenerator((48, 64)), w_plus_for(gen, 14))
    assert torch.equal(a, b)
    c = synth(gen, w_plus_for(gen, 15))
    assert (a - c).abs().mean() > 0.05, "different seeds must look different"


def test_small_latent_steps_give_small_image_changes(gen):
    """Smooth in w: a step 10x smaller changes the image roughly 10x less."""
    w0, w1 = w_plus_for(gen, 3), w_plus_for(gen, 92)
    base = synth(gen, w0)
    big = (synth(gen, w0 + 0.1 * (w1 - w0)) - base).abs().mean().item()
    small = (synth(gen, w0 + 0.01 * (w1 - w0)) - base).abs().mean().item()
    assert 0 < small < big * 0.25


@pytest.mark.parametrize("group", ["coarse", "middle", "fine"])
def test_every_layer_group_changes_the_picture(gen, group):
    w = w_plus_for(gen, 3)
    other = w_plus_for(gen, 65)
    moved = w.copy()
    rows = list(gen.layer_groups()[group])
    moved[rows] = other[rows]
    assert (synth(gen, moved) - synth(gen, w)).abs().mean() > 0.02


def test_noise_strength_adds_grain(gen):
    w = w_plus_for(gen, 3)
    assert not torch.equal(synth(gen, w, 0.0), synth(gen, w, 0.5))


def test_no_colour_dominates_across_seeds(gen):
    """Each channel is the brightest on average for some seeds, and none for most of them."""
    brightest = [int(synth(gen, w_plus_for(gen, seed)).mean((1, 2)).argmax()) for seed in range(24)]
    counts = np.bincount(brightest, minlength=3)
    assert counts.min() >= 3 and counts.max() <= 14, counts


def test_pictures_are_neither_flat_nor_blown_out(gen):
    for seed in (1, 2, 3, 42):
        img = synth(gen, w_plus_for(gen, seed))
        assert img.std() > 0.2
        assert (img.abs() > 0.99).float().mean() < 0.5, "mostly clipped is not a picture"


@pytest.mark.parametrize("size", [(17, 31), (1, 5), (64, 64)])
def test_any_size_and_the_workspace_is_reused(size):
    g = CPPNGenerator(size)
    w = torch.from_numpy(w_plus_for(g, 5))[None]
    with torch.inference_mode():
        a = g.synthesize(w, 0.2)
        ptr = a.data_ptr()
        b = g.synthesize(w, 0.2)
    assert a.shape == (1, 3, *size) and torch.isfinite(b).all()
    assert -1 <= b.min() and b.max() <= 1
    assert b.data_ptr() == ptr, "a frame writes into the same workspace"


def test_truncation_and_rgb8_helpers():
    w = torch.tensor([[2.0, 4.0]])
    avg = torch.tensor([0.0, 2.0])
    truncate_(w, avg, torch.tensor(0.5))
    assert torch.allclose(w, torch.tensor([[1.0, 3.0]]))
    img = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 2, 2)
    out = torch.empty(2, 2, 3, dtype=torch.uint8)
    to_rgb8_(img, out)
    assert out[0, 0].tolist() == [0, 128, 255]


def params_for(gen, seed, psi=1.0):
    return FrameParams(t=0.0, w_plus=w_plus_for(gen, seed), truncation=psi)


@pytest.mark.parametrize("threaded", [False, True])
def test_runner_matches_the_generator_and_truncates(gen, threaded):
    runner = GeneratorRunner(gen, device="cpu", threaded=threaded)
    try:
        runner.submit(params_for(gen, 3))
        frame = runner.result().copy()
        expect = torch.empty(48, 64, 3, dtype=torch.uint8)
        # the runner truncates even at psi = 1, which moves w by an ulp: do the same here
        w = truncate_(torch.from_numpy(w_plus_for(gen, 3)), gen.w_avg, torch.tensor(1.0))
        to_rgb8_(synth(gen, w.numpy()), expect)
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert np.array_equal(frame, expect.numpy())
        # psi = 0 collapses every seed onto the average picture
        runner.submit(params_for(gen, 3, psi=0.0))
        a = runner.result().copy()
        runner.submit(params_for(gen, 92, psi=0.0))
        b = runner.result().copy()
        assert np.array_equal(a, b)
    finally:
        runner.close()


def test_runner_double_buffers(gen):
    runner = GeneratorRunner(gen, device="cpu")
    try:
        runner.submit(params_for(gen, 3))
        first = runner.result()
        kept = first.copy()
        runner.submit(params_for(gen, 92))
        second = runner.result()
        assert second is not first
        assert np.array_equal(first, kept), "the frame being drawn must not be overwritten"
    finally:
        runner.close()


class Exploding(CPPNGenerator):
    def __init__(self):
        super().__init__((16, 16))
        self.fail = False

    def synthesize(self, w_plus, noise_strength=0.0, params=None):
        if self.fail:
            raise RuntimeError("boom")
        return super().synthesize(w_plus, noise_strength, params)


def test_runner_holds_the_last_good_frame_and_logs_once(caplog):
    gen = Exploding()
    runner = GeneratorRunner(gen, device="cpu")
    try:
        runner.submit(params_for(gen, 3))
        good = runner.result().copy()
        gen.fail = True
        for seed in range(5):
            runner.submit(params_for(gen, seed))
            assert np.array_equal(runner.result(), good)
        nan = params_for(gen, 3)
        nan.w_plus[0, 0] = np.nan
        gen.fail = False
        runner.submit(nan)
        assert np.array_equal(runner.result(), good)
        assert runner.error_count == 6
        assert sum("boom" in r.getMessage() for r in caplog.records) == 1
        runner.submit(params_for(gen, 92))
        assert not np.array_equal(runner.result(), good), "recovers when the generator does"
    finally:
        runner.close()


def test_unknown_generator_is_a_clear_error():
    with pytest.raises(GeneratorError, match="unknown generator 'nope'"):
        load_generator("nope", (32, 32))
    assert z_from_seed(7, 4).tolist() == z_from_seed(7, 4).tolist()


def low_frequency_share(diff: np.ndarray, cutoff: int = 6) -> float:
    """Share of the luminance difference's spectral energy within ``cutoff`` cycles per picture."""
    lum = diff.mean(0)
    power = np.abs(np.fft.fft2(lum)) ** 2
    fy = np.fft.fftfreq(lum.shape[0]) * lum.shape[0]
    fx = np.fft.fftfreq(lum.shape[1]) * lum.shape[1]
    low = np.hypot(fy[:, None], fx[None]) <= cutoff
    return float(power[low].sum() / power.sum())


@pytest.mark.parametrize("family", [CPPNGenerator, FlowGenerator])
def test_coarse_styles_move_structure_fine_styles_texture(family):
    """The same step in w, applied to the coarse rows or to the fine rows: the coarse change
    puts clearly more of its energy into low spatial frequencies (measured on the image)."""
    g = family((96, 96))
    groups = g.layer_groups()
    shares = {"coarse": [], "fine": []}
    for seed in range(6):
        w, other = w_plus_for(g, seed), w_plus_for(g, 100 + seed)
        base = synth(g, w).numpy()
        for name in shares:
            moved = w.copy()
            rows = list(groups[name])
            moved[rows] += 0.3 * (other[rows] - w[rows])
            shares[name].append(low_frequency_share(synth(g, moved).numpy() - base))
    coarse, fine = np.mean(shares["coarse"]), np.mean(shares["fine"])
    assert coarse > fine + 0.1, (coarse, fine)


@pytest.mark.parametrize("family", [CPPNGenerator, FlowGenerator])
def test_noise_is_per_layer_and_graded(family):
    """Each layer's noise input changes the picture on its own; coarse noise (layer 0) moves
    low frequencies, the fine grain (layer 5) high ones."""
    g = family((96, 96))
    w = w_plus_for(g, 3)
    base = synth(g, w).numpy()
    shares = []
    for layer in range(6):
        strength = torch.zeros(6)
        strength[layer] = 0.6
        diff = synth(g, w, strength).numpy() - base
        assert np.abs(diff).mean() > 0.003, f"noise of layer {layer} does nothing"
        shares.append(low_frequency_share(diff))
    assert shares[0] > 0.5 > shares[5], shares
    # a float and a 0-d tensor mean the same for every layer
    assert torch.equal(synth(g, w, 0.3), synth(g, w, torch.tensor(0.3)))
    assert torch.equal(synth(g, w, 0.3), synth(g, w, torch.full((6,), 0.3)))


def test_resizable_and_protocol_attributes():
    g = CPPNGenerator((32, 32))
    assert g.resizable and g.supports_half and g.has_noise
    assert g.param_names == () and g.default_params().shape == (0,)
    space = g.latent_space()
    assert space.param_ranges == {} and space.has_noise
    g.set_resolution((16, 24))
    assert synth(g, w_plus_for(g, 1)).shape == (3, 16, 24)


# -- the second family: builtin:flow ----------------------------------------------------------------
def test_flow_is_a_picture_deterministic_and_any_size():
    g = FlowGenerator((48, 64))
    assert load_generator("builtin:flow", (48, 64)).resolution == (48, 64)
    a = synth(g, w_plus_for(g, 3))
    assert a.shape == (3, 48, 64) and -1 <= a.min() and a.max() <= 1 and a.std() > 0.2
    assert torch.equal(a, synth(FlowGenerator((48, 64)), w_plus_for(g, 3)))
    assert (a - synth(g, w_plus_for(g, 4))).abs().mean() > 0.05
    brightest = [int(synth(g, w_plus_for(g, seed)).mean((1, 2)).argmax()) for seed in range(24)]
    counts = np.bincount(brightest, minlength=3)
    assert counts.min() >= 3 and counts.max() <= 14, counts
    g.set_resolution((17, 31))
    assert synth(g, w_plus_for(g, 3)).shape == (3, 17, 31)


def test_flow_params_zoom_and_swirl():
    g = FlowGenerator((48, 48))
    w = torch.from_numpy(w_plus_for(g, 5))[None]
    assert g.param_names == ("zoom", "swirl")
    assert g.latent_space().param_ranges == {"zoom": (1.0, 0.25, 4.0), "swirl": (0.0, -3.0, 3.0)}
    with torch.inference_mode():
        plain = g.synthesize(w, 0.0)[0].clone()
        assert torch.equal(plain, g.synthesize(w, 0.0, g.default_params())[0])
        zoomed = g.synthesize(w, 0.0, torch.tensor([2.0, 0.0]))[0].clone()
        swirled = g.synthesize(w, 0.0, torch.tensor([1.0, 2.0]))[0].clone()
    # both act about the centre: the middle of the picture moves much less than the whole
    for changed in (zoomed, swirled):
        whole = (changed - plain).abs().mean()
        centre = (changed[:, 22:26, 22:26] - plain[:, 22:26, 22:26]).abs().mean()
        assert whole > 0.05 and centre < 0.5 * whole, (whole, centre)


def test_runner_feeds_flow_its_params_from_frame_params():
    g = FlowGenerator((32, 32))
    runner = GeneratorRunner(g, device="cpu", threaded=False)
    p = params_for(g, 3)
    runner.submit(p)
    plain = runner.result().copy()
    p.generator = {"swirl": 2.5}
    runner.submit(p)
    swirled = runner.result().copy()
    p.generator = {"swirl": 99.0}  # clamped to the range's 3.0
    runner.submit(p)
    clamped = runner.result().copy()
    p.generator = {"swirl": 3.0}
    runner.submit(p)
    assert np.abs(swirled.astype(int) - plain).mean() > 5
    assert np.array_equal(clamped, runner.result())
