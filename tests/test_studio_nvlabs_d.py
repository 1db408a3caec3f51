"""The NVlabs-form discriminator (engine/studio/nvlabs_discriminator.py) and what uses it: an
NVlabs pickle's D fine-tuned by ``lj finetune`` and frozen by ``lj uncanny``.

The reference numbers ``tests/data/models/sg2d_<name>.ref.npz`` were computed by NVlabs' own
``training.networks.Discriminator`` (stylegan2-ada-pytorch, a checkout outside this repository,
on the CPU in float32) with the committed weights ``sg2d_<name>.safetensors`` drawn by our code::

    python -m tests.model_fixtures --d-weights
    python -m tests.model_fixtures --d-reference /tmp/nvsg2      # git archive of NVlabs' repo

(the same weights in stylegan3's ``training.networks_stylegan2.Discriminator`` give the same
numbers). They hold 4 images, the labels of the conditional one, the logits and the gradient of
the logits' sum with respect to the images (what R1 uses).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.generators.nvlabs_pickle import ModelError, read_pickle
from engine.studio.config import StudioError, TrainConfig
from engine.studio.nvlabs_discriminator import NVlabsDiscriminator, discriminator_from_record
from model_fixtures import (D_FIXTURES, d_network, discriminator_record, orig16_generator_record,
                            tiny_discriminator, write_pickle)

MODELS = Path(__file__).parent / "data" / "models"
PKL = MODELS / "sg2_orig16.pkl"
TOL = 1e-5


@pytest.mark.parametrize("name", sorted(D_FIXTURES))
def test_matches_nvlabs_reference(name):
    ref = np.load(MODELS / f"sg2d_{name}.ref.npz")
    net = d_network(name)
    img = torch.from_numpy(ref["img"]).requires_grad_(True)
    c = torch.from_numpy(ref["c"]) if "c" in ref else None
    logits = net(img, c)
    grad, = torch.autograd.grad(logits.sum(), img)
    assert logits.shape == (4, 1)
    assert np.abs(logits.detach().numpy() - ref["logits"]).max() <= TOL
    assert np.abs(grad.numpy() - ref["grad"]).max() <= TOL * np.abs(ref["grad"]).max()
    # the reference is not trivial: the images get different logits
    assert np.ptp(ref["logits"]) > 0.02 and np.abs(ref["grad"]).max() > 1e-3


def test_architectures_clamp_labels_and_frozen_layers_matter():
    """Each option of the fixtures changes the numbers (so the reference checks them)."""
    ref = np.load(MODELS / "sg2d_orig16.ref.npz")
    state = d_network("orig16").state_dict()
    free = NVlabsDiscriminator(**dict(D_FIXTURES["orig16"], conv_clamp=None))
    free.load_state_dict(state, strict=True)
    with torch.no_grad():
        assert np.abs(free(torch.from_numpy(ref["img"])).numpy() - ref["logits"]).max() > 1e-3
    frozen = d_network("orig16")
    assert "b16.fromrgb.weight" in dict(frozen.named_buffers())       # Freeze-D: first 2 layers
    assert "b16.conv1.weight" in dict(frozen.named_parameters())
    cond = np.load(MODELS / "sg2d_cond_resnet16.ref.npz")
    net = d_network("cond_resnet16")
    with torch.no_grad():
        other = net(torch.from_numpy(cond["img"]), torch.from_numpy(cond["c"]).roll(1, 1))
    assert np.abs(other.numpy() - cond["logits"]).max() > 1e-3
    with pytest.raises(ValueError, match="conditional"):
        net(torch.from_numpy(cond["img"]))


def test_state_dict_keys_are_nvlabs_keys():
    keys = list(d_network("resnet16").state_dict())
    assert keys[:4] == ["b16.resample_filter", "b16.fromrgb.weight", "b16.fromrgb.bias",
                        "b16.fromrgb.resample_filter"]
    assert {"b16.skip.weight", "b8.conv1.resample_filter", "b4.conv.weight", "b4.fc.weight",
            "b4.out.bias"} <= set(keys) and "b8.fromrgb.weight" not in keys
    skip = set(d_network("skip32").state_dict())
    assert {"b16.fromrgb.weight", "b4.fromrgb.weight"} <= skip and "b16.skip.weight" not in skip
    assert {"mapping.embed.weight", "mapping.fc1.bias"} <= set(d_network("cond_resnet16").state_dict())


def test_the_fixture_pickle_d_loads_strictly():
    records = read_pickle(PKL)
    net = discriminator_from_record(records["D"], PKL)
    want = records["D"].state_dict()
    got = net.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert net.init_kwargs["architecture"] == "resnet" and net.img_resolution == 16


def test_a_mismatched_d_record_names_the_file(tmp_path):
    g = orig16_generator_record()
    bad = write_pickle(tmp_path / "bad-d.pkl", g, tiny_discriminator())
    with pytest.raises(ModelError, match="bad-d.pkl: the discriminator's weights do not match") as e:
        discriminator_from_record(read_pickle(bad)["D"], bad)
    assert "\n" not in str(e.value)
    net = d_network("resnet16")
    wrong = write_pickle(tmp_path / "wrong-d.pkl", g,
                         discriminator_record(net, dict(D_FIXTURES["resnet16"], channel_max=8)))
    with pytest.raises(ModelError, match=r"wrong-d.pkl: .*b16.fromrgb.weight \[16, 3, 1, 1\] vs \[8, 3, 1, 1\]"):
        discriminator_from_record(read_pickle(wrong)["D"], wrong)
    odd = write_pickle(tmp_path / "odd-d.pkl", g,
                       discriminator_record(net, dict(D_FIXTURES["resnet16"], architecture="fancy")))
    with pytest.raises(ModelError, match="odd-d.pkl: the discriminator's architecture arguments"):
        discriminator_from_record(read_pickle(odd)["D"], odd)
