"""Our StyleGAN2 network against NVlabs' reference outputs.

The fixtures in tests/data/models were made without shipping any NVlabs code: weights generated
by *our* code (``<name>.safetensors`` + ``<name>.json``) were loaded into NVlabs' own networks
(stylegan2-ada-pytorch ``training.networks`` for ``sg2_skip`` and ``sg2_orig16``, stylegan3's
``training.networks_stylegan2`` for the conditional ``sg2_cond_resnet``), run on the CPU in
float32, and their outputs saved (``<name>.ref.npz``): the mapping for fixed z (and class labels)
with truncation 0.7, and the synthesis of a fixed w+ with noise_mode 'const' and 'none'.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.generators import load_generator
from engine.generators.stylegan2 import Generator, fir_filter, make_filter, upsample2d

MODELS = Path(__file__).parent / "data" / "models"
TOL = 1e-3
FIXTURES = ["sg2_skip", "sg2_cond_resnet", "sg2_orig16"]


def _load(name):
    return load_generator(str(MODELS / f"{name}.safetensors")), np.load(MODELS / f"{name}.ref.npz")


@pytest.mark.parametrize("name", FIXTURES)
def test_matches_nvlabs_reference(name):
    gen, ref = _load(name)
    net = gen.net
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]) if "c" in ref else None
    ws_mixed = torch.from_numpy(ref["ws_mixed"])
    with torch.no_grad():
        ws = net.mapping(z, c, truncation_psi=0.7)
        img_const = net.synthesis(ws_mixed, noise_mode="const")
        img_none = net.synthesis(ws_mixed, noise_mode="none")
        whole = net(z, c, truncation_psi=0.7, noise_mode="const")
        whole_ref = net.synthesis(torch.from_numpy(ref["ws"]), noise_mode="const")
    assert np.abs(ws.numpy() - ref["ws"]).max() <= TOL
    assert np.abs(img_const.numpy() - ref["img_const"]).max() <= TOL
    assert np.abs(img_none.numpy() - ref["img_none"]).max() <= TOL
    assert torch.allclose(whole, whole_ref, atol=TOL)
    # the reference is not trivial: noise, classes and the w+ all change the picture
    assert np.abs(ref["img_const"] - ref["img_none"]).max() > 0.01
    assert np.abs(ref["img_const"][0] - ref["img_const"][1]).max() > 0.1


def test_conditional_model_uses_its_class_label():
    gen, ref = _load("sg2_cond_resnet")
    assert gen.c_dim == 4 and gen.class_index == 0
    z = torch.from_numpy(ref["z"][:1])
    other = load_generator(str(MODELS / "sg2_cond_resnet.safetensors") + "#class=3")
    with torch.no_grad():
        w0, w3 = gen.mapping(z), other.mapping(z)
        c3 = torch.nn.functional.one_hot(torch.tensor([3]), 4).float()
        expect = gen.net.mapping(z, c3)[:, 0]
    assert other.class_index == 3
    assert torch.allclose(w3, expect, atol=1e-6)
    assert (w0 - w3).abs().max() > 1e-3


def test_engine_protocol_shapes_noise_and_range():
    gen, ref = _load("sg2_skip")
    assert (gen.latent_dim, gen.w_dim, gen.num_layers, gen.resolution) == (32, 32, 8, (32, 32))
    assert gen.has_noise
    ws = torch.from_numpy(ref["ws_mixed"][:1])
    with torch.no_grad():
        none = gen.synthesize(ws, 0.0)
        full = gen.synthesize(ws, torch.ones(gen.num_layers))
        scalar = gen.synthesize(ws, torch.tensor(1.0))
        only_first = gen.synthesize(ws, torch.tensor([1.0] + [0.0] * 7))
    assert none.shape == (1, 3, 32, 32) and none.min() >= -1 and none.max() <= 1
    # noise 0 is NVlabs' noise_mode='none', noise 1 on every layer is noise_mode='const'
    assert np.abs(none.numpy() - np.clip(ref["img_none"][:1], -1, 1)).max() <= TOL
    assert np.abs(full.numpy() - np.clip(ref["img_const"][:1], -1, 1)).max() <= TOL
    assert torch.equal(full, scalar)
    assert 0 < (only_first - none).abs().max() and not torch.equal(only_first, full)


def test_layer_groups_follow_resolution():
    net = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=256, img_channels=3,
                    mapping_kwargs={"num_layers": 1}, synthesis_kwargs={"channel_base": 1024, "channel_max": 4})
    from engine.generators.stylegan import StyleGANGenerator

    gen = StyleGANGenerator(net)
    # 256 px: 14 style rows; rows 0-2 drive 4-8 px, 3-6 drive 16-32 px, 7-13 drive 64-256 px
    assert net.synthesis.layer_resolutions() == [4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 256]
    groups = gen.layer_groups()
    assert groups["coarse"] == range(0, 3)
    assert groups["middle"] == range(3, 7)
    assert groups["fine"] == range(7, 14)
    assert groups["all"] == range(0, 14)


def test_state_dict_keys_are_nvlabs_keys():
    gen, _ = _load("sg2_skip")
    keys = set(gen.net.state_dict())
    for k in ("mapping.w_avg", "mapping.fc0.weight", "synthesis.b4.const", "synthesis.b4.resample_filter",
              "synthesis.b8.conv0.noise_const", "synthesis.b8.conv0.noise_strength",
              "synthesis.b32.torgb.affine.bias", "synthesis.b16.conv1.affine.weight"):
        assert k in keys


def test_fir_upsample_keeps_a_constant_and_matches_nearest_plus_blur():
    f = make_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and torch.isclose(f.sum(), torch.tensor(1.0))
    x = torch.full((1, 2, 6, 6), 0.5)
    y = upsample2d(x, f)
    assert y.shape == (1, 2, 12, 12)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 0.5), atol=1e-6)
    # separable taps give the same result as their outer product
    sep = torch.tensor([1.0, 3, 3, 1]) / 8
    x = torch.randn(1, 1, 5, 5)
    assert torch.allclose(fir_filter(x, sep, pad=(1, 2, 1, 2)), fir_filter(x, torch.outer(sep, sep), pad=(1, 2, 1, 2)),
                          atol=1e-6)


def test_float16_path_runs_and_stays_close():
    gen, ref = _load("sg2_orig16")
    ws = torch.from_numpy(ref["ws_mixed"][:1])
    with torch.no_grad():
        full = gen.synthesize(ws, 0.0)
        half = gen.to(torch.float16)
        try:
            out = half.synthesize(ws.half(), 0.0)
        except RuntimeError as exc:  # some CPU builds lack float16 convolutions
            pytest.skip(f"float16 convolution not available on this CPU build: {exc}")
    assert out.dtype == torch.float16
    assert (out.float() - full).abs().max() < 0.05
