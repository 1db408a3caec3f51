"""Our StyleGAN3 generator against numbers produced by NVlabs' reference implementation.

Fixtures (tests/data/models/stylegan3/<model>/), all plain float32 arrays (one ``.npy`` blob per
file plus a JSON index; loaded with ``allow_pickle=False``):

- ``kwargs.json``: the init kwargs (NVlabs' ``training.networks_stylegan3.Generator`` signature);
- ``weights``: a state dict generated at random by OUR code (``engine.generators.stylegan3``);
- ``inputs``: fixed z, c, ws and the truncation / transform settings;
- ``reference``: what NVlabs' code (stylegan3 commit c233a91, its CPU reference ops) computed
  after loading ``weights`` with ``strict=True``: mapping, synthesis, the full z -> image path, a
  synthesis with the input transform set the way their visualizer sets it, the filters their code
  designs for the same kwargs, and their state-dict keys and shapes.

Models: ``t`` (StyleGAN3-T, 64x64, default 14 layers), ``r`` (StyleGAN3-R: 1x1 convs, radial
filters, a small conv_clamp so the clamp is exercised) and ``cond`` (conditional, 4 classes,
32x32, 10 layers, margin 8, no clamp and no fp16 layers as in their --fp32 pickles).

No NVlabs code or pickle is in this repository: the references were made outside it, on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.generators.stylegan3 import TRANSFORM_PARAMS, Generator, input_transform

DATA = Path(__file__).parent / "data" / "models" / "stylegan3"
MODELS = ("t", "r", "cond")
TOL = 1e-3


def load_arrays(prefix: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays saved as one flat float32 ``.npy`` blob plus a ``.json`` index."""
    blob = np.load(prefix.with_suffix(".npy"), allow_pickle=False)
    meta = json.loads(prefix.with_suffix(".json").read_text())
    arrays = {}
    for key, entry in meta["tensors"].items():
        size = int(np.prod(entry["shape"], dtype=np.int64))
        arrays[key] = blob[entry["offset"]:entry["offset"] + size].reshape(entry["shape"])
    return arrays, meta


class Fixture:
    def __init__(self, name: str):
        folder = DATA / name
        self.kwargs = json.loads((folder / "kwargs.json").read_text())
        self.weights, _ = load_arrays(folder / "weights")
        inputs, self.settings = load_arrays(folder / "inputs")
        self.z, self.c, self.ws = (torch.from_numpy(inputs[k].copy()) for k in ("z", "c", "ws"))
        self.ref, self.ref_meta = load_arrays(folder / "reference")

    def generator(self) -> Generator:
        G = Generator(**self.kwargs).eval()
        G.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.weights.items()}, strict=True)
        return G


_cache: dict[str, Fixture] = {}


@pytest.fixture(params=MODELS)
def fx(request) -> Fixture:
    if request.param not in _cache:
        _cache[request.param] = Fixture(request.param)
    return _cache[request.param]


def assert_close(ours: torch.Tensor, ref: np.ndarray, tol: float = TOL) -> None:
    ours = ours.detach().numpy()
    assert ours.shape == ref.shape
    diff = float(np.abs(ours - ref).max())
    assert diff <= tol, f"max abs diff {diff:.3g} > {tol}"


def test_state_dict_layout_is_nvlabs(fx):
    """Same keys, order and shapes as NVlabs' network built from the same kwargs."""
    ours = Generator(**fx.kwargs).state_dict()
    assert [[k, list(v.shape)] for k, v in ours.items()] == fx.ref_meta["state_dict_keys"]


def test_designed_filters_match_nvlabs(fx):
    """Our Kaiser (and, for -R, radial jinc-Kaiser) filters equal the ones their code designs."""
    ours = Generator(**fx.kwargs).state_dict()
    filters = {k[len("filter/"):]: v for k, v in fx.ref.items() if k.startswith("filter/")}
    assert filters, "the reference holds the designed filters"
    for key, ref in filters.items():
        np.testing.assert_allclose(ours[key].numpy(), ref, rtol=0, atol=1e-7, err_msg=key)
    if fx.kwargs.get("use_radial_filters"):
        assert any(v.ndim == 2 for v in filters.values())


def test_mapping_matches_reference(fx):
    G = fx.generator()
    s = fx.settings
    with torch.no_grad():
        assert_close(G.mapping(fx.z, fx.c, truncation_psi=s["psi"]), fx.ref["mapping"])
        cut = G.mapping(fx.z, fx.c, truncation_psi=s["psi_cut"], truncation_cutoff=s["cutoff"])
        assert_close(cut, fx.ref["mapping_cut"])
        # psi given as a tensor (what a CUDA-graph runner passes) gives the same result
        assert_close(G.mapping(fx.z, fx.c, truncation_psi=torch.tensor(s["psi"])), fx.ref["mapping"])


def test_synthesis_matches_reference(fx):
    G = fx.generator()
    with torch.no_grad():
        img = G.synthesis(fx.ws, noise_mode="const", force_fp32=True)
    assert img.shape == (fx.ws.shape[0], G.img_channels, G.img_resolution, G.img_resolution)
    assert float(img.std()) > 0.01, "a flat image would prove nothing"
    assert_close(img, fx.ref["synthesis"])


def test_full_path_z_to_image_matches_reference(fx):
    G = fx.generator()
    c = fx.c if G.c_dim else None
    with torch.no_grad():
        assert_close(G(fx.z, c, truncation_psi=fx.settings["psi"]), fx.ref["image"])


def test_input_transform_matches_visualizer(fx):
    """set_transform() writes what NVlabs' visualizer writes, and the picture follows."""
    G = fx.generator()
    t = fx.settings["transform"]
    G.set_transform(**t)
    np.testing.assert_allclose(G.synthesis.input.transform.numpy(), fx.ref["transform_matrix"], atol=1e-6)
    with torch.no_grad():
        moved = G.synthesis(fx.ws)
    assert_close(moved, fx.ref["synthesis_transformed"])
    assert np.abs(fx.ref["synthesis_transformed"] - fx.ref["synthesis"]).max() > 2 * TOL


def test_conditional_model_depends_on_the_label():
    fx = Fixture("cond")
    G = fx.generator()
    with torch.no_grad():
        a = G(fx.z, fx.c)
        b = G(fx.z, fx.c.flip(0))
    assert (a - b).abs().max() > 0.01
    with pytest.raises(ValueError, match="conditional"):
        G(fx.z, None)


def _loaded(name: str) -> tuple[Generator, torch.Tensor]:
    fx = Fixture(name)
    return fx.generator(), fx.ws


def test_translation_moves_the_picture_by_whole_pixels_for_T():
    """StyleGAN3-T is translation equivariant: translate_x = k / res shifts the image k pixels right."""
    G, ws = _loaded("t")
    res, k, m = G.img_resolution, 3, 8  # m: border left out (the critically sampled layers have no margin)
    with torch.no_grad():
        base = G.synthesis(ws)
        G.set_transform(translate_x=k / res)
        right = G.synthesis(ws)
        G.set_transform(translate_y=k / res)
        down = G.synthesis(ws)
    inner = (slice(None), slice(None), slice(m, res - m - k), slice(m, res - m - k))
    def region(img, dy, dx):
        return img[:, :, m + dy:res - m - k + dy, m + dx:res - m - k + dx]
    err_x = (region(right, 0, k) - base[inner]).abs()
    err_y = (region(down, k, 0) - base[inner]).abs()
    unmoved = (right[inner] - base[inner]).abs().mean()
    wrong_way = (region(right, 0, 0) - region(base, 0, k)).abs().mean()
    span = float(base.max() - base.min())  # equivariant to about 1e-3 of the range (alias-free, not exact)
    assert err_x.max() < 0.005 * span and err_y.max() < 0.005 * span
    assert err_x.mean() < 0.05 * unmoved and err_y.mean() < 0.05 * unmoved
    assert err_x.mean() < 0.05 * wrong_way


def test_rotation_turns_the_picture_counter_clockwise_for_R():
    """StyleGAN3-R: rotate=90 gives the picture turned a quarter counter-clockwise (inside the disc)."""
    G, ws = _loaded("r")
    res = G.img_resolution
    yy, xx = torch.meshgrid(torch.arange(res) - (res - 1) / 2, torch.arange(res) - (res - 1) / 2, indexing="ij")
    disc = yy ** 2 + xx ** 2 < (0.4 * res) ** 2
    with torch.no_grad():
        base = G.synthesis(ws)
        G.set_transform(rotate=90.0)
        turned = G.synthesis(ws)
    ccw = (turned - torch.rot90(base, 1, dims=(2, 3))).abs()[..., disc]
    cw = (turned - torch.rot90(base, -1, dims=(2, 3))).abs()[..., disc]
    assert ccw.max() < TOL
    assert ccw.mean() < 0.05 * cw.mean()


def test_set_transform_accepts_tensors_and_resets():
    G, ws = _loaded("t")
    G.set_transform(torch.tensor(0.25), torch.tensor(-0.5), torch.tensor(30.0))
    np.testing.assert_allclose(G.synthesis.input.transform.numpy(), input_transform(0.25, -0.5, 30.0).numpy())
    # the buffer is the inverse of the visualizer's image transform
    a = np.deg2rad(30.0)
    image_transform = np.array([[np.cos(a), np.sin(a), 0.25], [-np.sin(a), np.cos(a), -0.5], [0, 0, 1]])
    np.testing.assert_allclose(G.synthesis.input.transform.numpy() @ image_transform, np.eye(3), atol=1e-6)
    G.set_transform()
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))
    assert set(TRANSFORM_PARAMS) == {"translate_x", "translate_y", "rotate"}
    for default, lo, hi in TRANSFORM_PARAMS.values():
        assert lo < default < hi


def test_attributes_and_bad_input():
    fx = Fixture("t")
    G = fx.generator()
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (16, 0, 32, 64, 3)
    assert G.num_ws == G.synthesis.num_ws == G.mapping.num_ws == fx.ws.shape[1]
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(fx.ws[:, :-1])
    with pytest.raises(ValueError, match="z must be"):
        G.mapping(torch.zeros(1, 3), None)
    with pytest.raises(TypeError):
        Generator(**fx.kwargs, not_a_stylegan3_kwarg=1)


def test_update_emas_moves_the_running_averages():
    """Training-time bookkeeping works like NVlabs' (w_avg and magnitude_ema are EMAs)."""
    fx = Fixture("cond")
    G = fx.generator()
    w_avg = G.mapping.w_avg.clone()
    layer = getattr(G.synthesis, G.synthesis.layer_names[0])
    ema = layer.magnitude_ema.clone()
    with torch.no_grad():
        G(fx.z, fx.c, update_emas=True)
    assert not torch.equal(G.mapping.w_avg, w_avg)
    assert not torch.equal(layer.magnitude_ema, ema)


def test_polyphase_upsampling_equals_the_depthwise_transposed_convolution():
    """The per-phase form of zero-stuffing + filtering gives the strided transposed convolution's
    result for every factor and filter length the networks use (and a few they do not)."""
    import torch.nn.functional as F

    from engine.generators import stylegan3 as s3

    torch.manual_seed(0)
    for up, taps, (c, h, w) in [(1, 6, (3, 5, 7)), (2, 6, (8, 16, 16)), (4, 6, (4, 9, 12)),
                                (2, 1, (2, 4, 4)), (4, 3, (3, 6, 5))]:
        x, f = torch.randn(2, c, h, w), torch.randn(taps * up)
        got = s3._upsample_polyphase(s3._upsample_polyphase(x, f * up, up, 3), f * up, up, 2)
        want = F.conv_transpose2d(x, s3._depthwise(f * up, c, "x", x.dtype), stride=(1, up), groups=c)
        want = F.conv_transpose2d(want, s3._depthwise(f * up, c, "y", x.dtype), stride=(up, 1), groups=c)
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()


@pytest.mark.parametrize("name", ["t", "r"])
def test_matmul_resampling_equals_the_convolutions_layer_by_layer(name):
    """filtered_lrelu_matmul (the CUDA path) against filtered_lrelu (the CPU path) for every
    layer of the T and R fixtures, on random inputs; R's radial down filters stay on the
    convolution path (no matrices)."""
    from engine.generators import stylegan3 as s3

    fx = Fixture(name)
    net = fx.generator()
    torch.manual_seed(1)
    radial = 0
    for lname in net.synthesis.layer_names:
        layer = getattr(net.synthesis, lname)
        x = torch.randn(2, layer.out_channels, layer.in_size + layer.conv_kernel - 1,
                        layer.in_size + layer.conv_kernel - 1) * 3
        act = layer.act
        b = torch.randn(layer.out_channels)
        want = s3.filtered_lrelu(x, layer.up_filter, layer.down_filter, b, up=layer.up_factor,
                                 down=layer.down_factor, padding=layer.padding, **act)
        mats = s3.resampling_matrices(layer.up_filter, layer.down_filter, layer.up_factor,
                                      layer.down_factor, layer.padding, tuple(x.shape[2:]))
        if mats is None:
            radial += 1
            assert layer.down_filter.ndim == 2
            continue
        got = s3.filtered_lrelu_matmul(x, tuple(m.float() for m in mats), b, **act)
        assert got.shape == want.shape
        assert (got - want).abs().max() <= 1e-4 * want.abs().max(), lname
    assert (radial > 0) == (name == "r")


def test_the_whole_network_on_the_matmul_path_matches_nvlabs():
    fx = Fixture("t")
    net = fx.generator()
    for lname in net.synthesis.layer_names:
        getattr(net.synthesis, lname).resample = "matmul"
    with torch.no_grad():
        img = net.synthesis(fx.ws, noise_mode="const", force_fp32=True)
    assert np.abs(img.numpy() - fx.ref["synthesis"]).max() <= 1e-3
