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
from model_fixtures import (CANARY_SRC, D_FIXTURES, d_network, discriminator_record, orig16_generator_record,
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


# ------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def images16(tmp_path_factory):
    """8 procedurally drawn 16x16 pictures (a bright square on a dark ground)."""
    folder = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(1)
    for i in range(8):
        img = np.zeros((16, 16, 3), np.uint8)
        img[:] = rng.integers(0, 80, 3)
        x, y = rng.integers(2, 9, 2)
        img[y:y + 6, x:x + 6] = rng.integers(150, 255, 3)
        Image.fromarray(img).save(folder / f"{i}.png")
    return folder


FAST = ["--steps", "2", "--batch", "4", "--sample-every", "0", "--checkpoint-every", "0",
        "--pl-weight", "0"]


def _pickle_d():
    return read_pickle(PKL)["D"].state_dict()


def test_finetune_a_pickle_trains_its_own_discriminator(images16, tmp_path, capsys):
    from engine.studio.train import Trainer, load_run_networks

    t = Trainer.new(TrainConfig(mode="finetune", base_model=str(PKL), images=str(images16), steps=2,
                                batch=4, sample_every=0, checkpoint_every=0), tmp_path / "t",
                    log=lambda m: None)
    want = _pickle_d()
    assert isinstance(t.D, NVlabsDiscriminator) and t.cfg.d_kind == "nvlabs"
    assert all(torch.equal(v, want[k]) for k, v in t.D.state_dict().items())   # starts as the pickle's
    run = tmp_path / "run"
    assert main(["finetune", str(PKL), str(images16), "-o", str(run), *FAST]) == 0
    assert "fine-tuning its discriminator too" in capsys.readouterr().out
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["config"]["d_kind"] == "nvlabs"
    assert meta["config"]["d_kwargs"]["architecture"] == "resnet"
    _, D = load_run_networks(run)
    assert isinstance(D, NVlabsDiscriminator)
    moved = [k for k, v in D.state_dict().items() if not torch.equal(v, want[k])]
    assert any(k.endswith("weight") for k in moved)                             # ... then moves
    assert not any(k.endswith("resample_filter") for k in moved)


def test_a_nvlabs_d_run_resumes_bit_exactly(images16, tmp_path):
    from safetensors.torch import load_file

    from engine.studio.train import train

    cfg = dict(mode="finetune", base_model=str(PKL), images=str(images16), batch=4, sample_every=0,
               checkpoint_every=0, r1_every=2, pl_every=2)
    quiet = dict(progress=False, log=lambda m: None)
    train(TrainConfig(steps=3, **cfg), tmp_path / "a", **quiet)
    train(TrainConfig(steps=1, **cfg), tmp_path / "b", **quiet)
    train(TrainConfig(steps=3, **cfg), tmp_path / "b", resume=True, **quiet)
    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert set(a) == set(b) and "D.b16.skip.weight" in a and any(k.startswith("optD.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_uncanny_from_a_pickle_freezes_its_discriminator(tmp_path):
    from engine.generators import load_generator

    run = tmp_path / "u"
    assert main(["uncanny", str(PKL), "-o", str(run), *FAST, "--snapshot-every", "1"]) == 0
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["config"]["d_kind"] == "nvlabs" and meta["step"] == 2
    from safetensors.torch import load_file

    saved = load_file(str(run / "checkpoint.safetensors"))
    want = _pickle_d()
    assert all(torch.equal(saved[f"D.{k}"], v) for k, v in want.items())         # D frozen
    before, after = load_generator(str(PKL)), load_generator(str(run / "model.safetensors"))
    assert any(not torch.equal(v, before.net.state_dict()[k])
               for k, v in after.net.state_dict().items() if v.is_floating_point())
    assert (run / "snapshots" / "step-000001.safetensors").exists()


def test_models_without_a_discriminator_are_refused_in_one_line(tmp_path, capsys):
    g_only = write_pickle(tmp_path / "g-only.pkl", orig16_generator_record())
    assert main(["uncanny", str(g_only), "-o", str(tmp_path / "u1")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lj: error: {g_only}: the pickle holds no discriminator (D)") and "\n" not in err
    export = MODELS / "sg2_skip.safetensors"
    assert main(["uncanny", str(export), "-o", str(tmp_path / "u2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "a model file with no discriminator" in err and "\n" not in err
    bad = write_pickle(tmp_path / "bad-d.pkl", orig16_generator_record(), tiny_discriminator())
    assert main(["uncanny", str(bad), "-o", str(tmp_path / "u3")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bad}: the discriminator's weights do not match" in err and "\n" not in err
    assert main(["finetune", str(bad), str(tmp_path), "-o", str(tmp_path / "f")]) == 2
    assert "the discriminator's weights do not match" in capsys.readouterr().err


def test_g_only_pickle_finetunes_with_a_fresh_discriminator(images16, tmp_path):
    from engine.studio.discriminator import Discriminator
    from engine.studio.train import Trainer

    g_only = write_pickle(tmp_path / "g-only.pkl", orig16_generator_record())
    t = Trainer.new(TrainConfig(mode="finetune", base_model=str(g_only), images=str(images16),
                                steps=1, channels=16), tmp_path / "t")
    assert isinstance(t.D, Discriminator) and t.cfg.d_kind == "ours"


def test_conditional_and_rectangular_pairs_are_refused(tmp_path):
    from engine.generators.stylegan2 import Generator
    from engine.studio.train import load_base_discriminator

    g = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8, "init_res": [4, 8]})
    with pytest.raises(StudioError, match="square and this generator is rectangular"):
        load_base_discriminator(str(PKL), g)
    square = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
                       synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    with pytest.raises(StudioError, match="takes 3x16px images, its generator makes 3x32px"):
        load_base_discriminator(str(PKL), square)
    cond = write_pickle(tmp_path / "cond-d.pkl", orig16_generator_record(),
                        discriminator_record(d_network("cond_resnet16"), D_FIXTURES["cond_resnet16"]))
    with pytest.raises(StudioError, match="cond-d.pkl: a conditional discriminator"):
        load_base_discriminator(str(cond), square)


def test_stylegan3_pickles_get_their_code_defaults(tmp_path, monkeypatch):
    """stylegan3's networks_stylegan2 defaults conv_clamp to 256 and num_fp16_res to 4 (an
    argument its train.py leaves out); stylegan2-ada-pytorch's to None and 0. The record's source
    text tells them apart; it is never run (the canary stays unwritten)."""
    from engine.studio.nvlabs_discriminator import record_kwargs

    canary = tmp_path / "canary"
    monkeypatch.setenv("LJ_PICKLE_CANARY", str(canary))
    kwargs = {k: v for k, v in D_FIXTURES["resnet16"].items() if k not in ("conv_clamp", "num_fp16_res")}
    net = d_network("resnet16")
    sg3_src = CANARY_SRC + "    def forward(self, img, c, update_emas=False, **block_kwargs):\n        pass\n"
    for src, clamp in ((CANARY_SRC, None), (sg3_src, 256)):
        path = write_pickle(tmp_path / "d.pkl", orig16_generator_record(),
                            discriminator_record(net, kwargs, module_src=src))
        rec = read_pickle(path)["D"]
        assert record_kwargs(rec).get("conv_clamp") == clamp
        assert discriminator_from_record(rec, path).init_kwargs["conv_clamp"] == clamp
    assert not canary.exists()


def test_a_conditional_pickle_is_refused_in_one_line(tmp_path, capsys):
    from safetensors.torch import load_file

    from engine.generators.stylegan2 import Generator
    from model_fixtures import generator_record

    meta = json.loads((MODELS / "sg2_cond_resnet.json").read_text())
    g = Generator(**meta["init_kwargs"])
    g.load_state_dict(load_file(str(MODELS / "sg2_cond_resnet.safetensors")), strict=True)
    path = write_pickle(tmp_path / "cond.pkl", generator_record(g, meta["init_kwargs"]),
                        discriminator_record(d_network("cond_resnet16"), D_FIXTURES["cond_resnet16"]))
    for argv in (["uncanny", str(path)], ["finetune", str(path), str(tmp_path)]):
        assert main([*argv, "-o", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip()
        assert "conditional model" in err and "\n" not in err
