"""The studio: lj explore (sheets, directions, banks used by a mapping), lj train / finetune /
uncanny (real steps on a small generated data set, bit-exact resume, results the engine loads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.generators import load_generator
from engine.generators.base import z_from_seed
from engine.mapping import compile_mapping, load_mapping
from engine.errors import MappingError
from engine.session import HOP
from engine.studio.augment import augment, cutout, parse_policy, translation
from engine.studio.config import StudioError, TrainConfig
from engine.studio.discriminator import Discriminator
from engine.studio.explore import Explorer, explore, parse_seeds, slerp
from engine.studio.sheets import GAP
from engine.studio.train import Trainer, load_images, load_run_networks, train

SMALL = dict(resolution=32, z_dim=32, w_dim=32, channels=16, batch=4, sample_every=0,
             checkpoint_every=0, r1_every=2)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """16 procedurally drawn 32x32 pictures: a bright disc on a dark ground."""
    folder = tmp_path_factory.mktemp("discs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    for i in range(16):
        cx, cy = rng.uniform(8, 24, 2)
        r = rng.uniform(4, 10)
        img = np.zeros((32, 32, 3), np.uint8)
        img[:] = rng.integers(0, 80, 3)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(150, 255, 3)
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stripes")
    for i in range(6):
        img = np.zeros((40, 56, 3), np.uint8)   # not square: centre-cropped
        img[i % 4::4] = 255
        Image.fromarray(img).save(folder / f"{i}.jpg")
    return folder


@pytest.fixture(scope="module")
def base_run(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "base"
    summary = train(TrainConfig(images=str(images), steps=4, **SMALL), out, progress=False,
                    log=lambda m: None)
    return out, summary


# ------------------------------------------------------------------------------- explore

def test_parse_seeds_and_slerp():
    assert parse_seeds("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    for bad in ("", "a", "5-2", "-1"):
        with pytest.raises(StudioError):
            parse_seeds(bad)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    m = slerp(a, b, 0.5)
    assert np.isclose(np.linalg.norm(m), 1.0) and np.allclose(m, [0.7071, 0.7071], atol=1e-4)


def test_explore_sheets_match_the_generator_and_bank_feeds_a_mapping(tmp_path):
    out, lat = tmp_path / "ex", tmp_path / "show" / "latents"
    summary = explore("builtin:cppn", out, seeds="0-5", size=32, samples=256, components=4,
                      steps=5, knob_dims=3, interp="2,4,1", mix="0,1,2", pick="3,4",
                      pick_directions="0,2", bank="night", latents=lat, log=lambda m: None)
    assert summary["sheets"] == ["seeds", "knobs", "extremes", "interp", "truncation",
                                 "mix-coarse", "mix-middle", "directions"]
    gen = load_generator("builtin:cppn", (32, 32))
    # the seed grid's cell for seed 4 is that seed's picture (2 rows x 3 columns, cell 32 px)
    sheet = np.asarray(Image.open(out / "seeds.png"))
    assert sheet.shape == (2 * (32 + GAP) + GAP, 3 * (32 + GAP) + GAP, 3)
    with torch.inference_mode():
        w = gen.mapping(torch.from_numpy(z_from_seed(4, gen.latent_dim))[None])
        img = gen.synthesize(w[:, None].expand(-1, gen.num_layers, -1), 1.0)   # trained noise
    want = ((img[0].clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    y, x = GAP + 1 * (32 + GAP), GAP + 1 * (32 + GAP)
    assert np.abs(sheet[y:y + 32, x:x + 32].astype(int) - want).max() <= 1
    interp = np.asarray(Image.open(out / "interp.png"))
    assert interp.shape[0] == 4 * (32 + GAP) + GAP       # 2 pairs x (linear, slerp)
    page = (out / "index.html").read_text()
    assert "seed 4" in page and "2-&gt;4 slerp z" in page and "mix-coarse.png" in page
    # principal directions: ordered by spread, orthogonal
    dirs = np.load(out / "directions.npy")
    meta = json.loads((out / "directions.json").read_text())
    assert dirs.shape == (4, gen.w_dim) and meta["std"] == sorted(meta["std"], reverse=True)
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    assert np.allclose(unit @ unit.T, np.eye(4), atol=1e-4)
    # the bank
    bank = json.loads((lat / "night.json").read_text())
    assert [i["name"] for i in bank["items"]] == ["night-s3", "night-s4", "night-pc0", "night-pc2"]
    np.testing.assert_allclose(np.load(lat / "night-pc2.npy"), dirs[2])
    # ... used by a mapping file: keyframes by name, a push along a saved direction
    mp = lat.parent / "show.toml"
    mp.write_text('[latent]\nkeyframes = { latents = ["night-s3", "night-s4"] }\n\n'
                  '[[route]]\nfrom = "rms"\nto = "latent.push"\n'
                  'direction = { latent = "night-pc0" }\nlayers = "coarse"\n')
    m = compile_mapping(load_mapping(mp), gen.latent_space(), 44100, HOP)
    keys = m.keyframes.reshape(2, gen.num_layers, gen.w_dim)
    np.testing.assert_allclose(keys[1], np.repeat(w.numpy(), gen.num_layers, 0), atol=1e-5)
    np.testing.assert_allclose(m._pushes[0].d, dirs[0])
    mp.write_text('[[route]]\nfrom = "rms"\nto = "latent.push"\ndirection = { latent = "nope" }\n')
    with pytest.raises(MappingError, match=r"show.toml:4: direction file .*nope.npy not found"):
        compile_mapping(load_mapping(mp), gen.latent_space(), 44100, HOP)


def test_explorer_batches_generator_calls():
    gen = load_generator("builtin:cppn", (16, 16))
    calls = []
    real = gen.synthesize
    gen.synthesize = lambda *a, **k: calls.append(len(a[0])) or real(*a, **k)
    ex = Explorer(gen, batch=8)
    cells = ex.render(ex.w_of(range(20)))
    assert cells.shape == (20, 16, 16, 3) and calls == [8, 8, 4]


def test_explore_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["explore", "builtin:cppn", "-o", str(tmp_path), "--seeds", "9-2"]) == 2
    assert capsys.readouterr().err.strip() == "lj: error: --seeds: bad seed range '9-2'"
    assert main(["explore", "builtin:cppn", "-o", str(tmp_path), "--sheets", "seeds,foo",
                 "--size", "16", "--samples", "16"]) == 2
    assert "unknown sheet 'foo'" in capsys.readouterr().err
    assert main(["explore", "nosuch.pkl", "-o", str(tmp_path)]) == 2
    assert "no such model file" in capsys.readouterr().err


# ------------------------------------------------------------------------------- training

def test_augmentations_are_differentiable_and_do_what_they_say():
    torch.manual_seed(0)
    x = torch.ones(8, 3, 16, 16, requires_grad=True)
    holes = (cutout(x)[:, 0] == 0).sum(dim=(1, 2))
    assert (holes > 0).all() and (holes <= 64).all() and (holes == 64).any()
    moved = translation(x)
    assert moved.shape == x.shape and ((moved[:, 0] == 0).sum(dim=(1, 2)) > 0).any()
    augment(x, parse_policy("color,translation,cutout")).square().sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        parse_policy("color,blur")
    assert Discriminator(32, channel_base=256, channel_max=16)(torch.randn(4, 3, 32, 32)).shape == (4,)


def test_load_images_crops_and_mirrors(stripes):
    x = load_images(stripes, 16, mirror=True)
    assert x.shape == (12, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[6:], x[:6].flip(3))


def test_train_moves_the_losses_and_the_result_loads(base_run):
    out, summary = base_run
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["step"] == 4 and summary["images_per_second"] > 0
    assert all(np.isfinite(v) for v in summary["losses"].values())
    gen = load_generator(str(out / "model.safetensors"))
    assert gen.resolution == (32, 32)
    with torch.inference_mode():
        w = gen.mapping(torch.randn(2, gen.latent_dim))
        img = gen.synthesize(w[:, None].expand(-1, gen.num_layers, -1), 1.0)
    assert img.shape == (2, 3, 32, 32) and img.std() > 0.01
    assert (out / "checkpoint.json").exists() and not list(out.glob("*.pkl"))


def test_losses_move_and_resume_is_bit_exact(images, tmp_path):
    # with every regulariser on (style mixing, path length at steps 0 and 2, R1) and ADA moving p
    # (a target below any r_t: p rises by 0.1 every step)
    cfg = dict(images=str(images), **SMALL, pl_every=2, ada=True, ada_interval=1, ada_kimg=0.04,
               ada_target=-2.0)
    straight = Trainer.new(TrainConfig(steps=4, **cfg), tmp_path / "a")
    d0 = [p.detach().clone() for p in straight.D.parameters()]
    losses = [straight.train_step() for _ in range(4)]
    assert len({round(s["D"], 6) for s in losses}) > 1 and len({round(s["G"], 6) for s in losses}) > 1
    assert any(not torch.equal(a, b) for a, b in zip(d0, straight.D.parameters()))
    straight.save_checkpoint()
    train(TrainConfig(steps=2, **cfg), tmp_path / "b", progress=False, log=lambda m: None)
    train(TrainConfig(steps=4, **cfg), tmp_path / "b", resume=True, progress=False, log=lambda m: None)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert set(a) == set(b) and any(k.startswith("optD.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert "pl_mean" in a and float(a["pl_mean"]) > 0
    ada_a = json.loads((tmp_path / "a" / "checkpoint.json").read_text())["ada"]
    ada_b = json.loads((tmp_path / "b" / "checkpoint.json").read_text())["ada"]
    assert ada_a == ada_b and ada_a["p"] == pytest.approx(0.4) == losses[-1]["p"]
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "b" / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]   # one record line per step, across the resume
    with pytest.raises(StudioError, match="already holds a run"):
        Trainer.new(TrainConfig(steps=1, **cfg), tmp_path / "b")


def test_finetune_with_mix_snapshots_make_a_blend(base_run, stripes, tmp_path, capsys):
    out, _ = base_run
    run = tmp_path / "ft"
    discs = json.loads((out / "checkpoint.json").read_text())["config"]["images"]
    assert main(["finetune", str(out / "model.safetensors"), discs,
                 "--mix", str(stripes), "--ratio", "0.5", "-o", str(run), "--steps", "2",
                 "--batch", "4", "--channels", "16", "--snapshot-every", "1",
                 "--sample-every", "2"]) == 0
    said = capsys.readouterr().out
    assert "finetune step 2/2" in said and "img/s" in said
    assert (run / "samples" / "step-000002.png").exists()
    spec = f"blend:{run / 'snapshots' / 'step-000001.safetensors'}|{run / 'snapshots' / 'step-000002.safetensors'}"
    gen = load_generator(spec)
    with torch.inference_mode():
        img = gen.synthesize(gen.w_avg.expand(1, gen.num_layers, -1).contiguous(), 0.0,
                             gen.default_params())
    assert img.shape == (1, 3, 32, 32)


MODELS = __import__("pathlib").Path(__file__).parent / "data" / "models"


def test_finetune_from_an_nvlabs_pickle_and_explore_a_stylegan(images, tmp_path):
    """The NVlabs-format fixture (16 px, read by the restricted reader) fine-tunes; the result
    loads and differs from the start; explore's mixing grids use StyleGAN's layer groups."""
    cfg = TrainConfig(mode="finetune", base_model=str(MODELS / "sg2_orig16.pkl"),
                      images=str(images), steps=2, batch=4, channels=16, sample_every=0,
                      checkpoint_every=0)
    summary = train(cfg, tmp_path / "ft", progress=False, log=lambda m: None)
    before, after = load_generator(str(MODELS / "sg2_orig16.pkl")), load_generator(summary["model"])
    assert after.resolution == before.resolution == (16, 16)
    changed = [k for k, v in after.net.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before.net.state_dict()[k])]
    assert any(k.startswith("synthesis.") for k in changed)
    with pytest.raises(StudioError, match="conditional model"):
        Trainer.new(TrainConfig(mode="finetune", base_model=str(MODELS / "sg2_cond_resnet.safetensors"),
                                images=str(images), steps=1), tmp_path / "c")
    ex = explore(str(MODELS / "sg2_skip.safetensors"), tmp_path / "ex", seeds="0-3",
                 sheets=("mix",), mix="1,2", samples=64, log=lambda m: None)
    assert ex["sheets"] == ["mix-coarse", "mix-middle"] and ex["images"] == 8


def test_uncanny_moves_g_towards_what_d_calls_fake(base_run, tmp_path):
    out, _ = base_run
    G, D = load_run_networks(out)
    z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = D(G(z, None, noise_mode="const")).mean()
    t = Trainer.new(TrainConfig(mode="uncanny", base_model=str(out), steps=8, batch=4,
                                sample_every=0, checkpoint_every=0, snapshot_every=4), tmp_path / "u")
    d_before = {k: v.clone() for k, v in t.D.state_dict().items()}
    t.run(progress=False)
    with torch.no_grad():
        after = D(t.G(z, None, noise_mode="const")).mean()
    assert after < before - 0.05
    assert all(torch.equal(v, t.D.state_dict()[k]) for k, v in d_before.items())   # D frozen
    assert (tmp_path / "u" / "snapshots" / "step-000004.safetensors").exists()
    load_generator(str(tmp_path / "u" / "snapshots" / "step-000008.safetensors"))


def test_resume_from_the_command_line(base_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(base_run[0], run)
    assert main(["train", "-o", str(run), "--resume"]) == 0          # already at its 4 steps
    assert "already at step 4" in capsys.readouterr().out
    assert main(["train", "-o", str(run), "--resume", "--steps", "5", "--sample-every", "0"]) == 0
    assert json.loads((run / "checkpoint.json").read_text())["step"] == 5
    assert "train step 5/5" in capsys.readouterr().out


def test_train_cli_errors_are_one_line(tmp_path, capsys, images):
    assert main(["train", "-o", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == "lj: error: lj train needs IMAGES (or --resume)"
    assert main(["train", str(tmp_path / "none"), "-o", str(tmp_path / "r")]) == 2
    assert "no such folder of images" in capsys.readouterr().err
    assert main(["train", str(images), "-o", str(tmp_path / "r"), "--resolution", "48"]) == 2
    assert "power of two" in capsys.readouterr().err
    assert main(["train", str(images), "-o", str(tmp_path / "r"), "--size", "65x64"]) == 2
    assert "common power-of-two factor" in capsys.readouterr().err
    assert main(["train", str(images), "-o", str(tmp_path / "r"), "--ada", "--augment", "none"]) == 2
    assert "--ada adapts the probability" in capsys.readouterr().err
    assert main(["uncanny", str(tmp_path), "-o", str(tmp_path / "u"), "--ada"]) == 2
    assert "lj uncanny has none (D is frozen)" in capsys.readouterr().err
    assert main(["train", str(images), "-o", str(tmp_path / "r"), "--style-mixing", "2"]) == 2
    assert "--style-mixing must be between 0 and 1" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / "checkpoint.json").write_text('{"latent_jockey_checkpoint": 1}')
    assert main(["train", "-o", str(old), "--resume"]) == 2
    assert "older Latent Jockey (format 1" in capsys.readouterr().err
    assert main(["train", "-o", str(tmp_path / "r"), "--resume"]) == 2
    assert "no checkpoint to resume" in capsys.readouterr().err
    assert main(["uncanny", str(tmp_path), "-o", str(tmp_path / "u")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["finetune", "builtin:cppn", str(images), "-o", str(tmp_path / "f")]) == 2
    assert "only StyleGAN2 models" in capsys.readouterr().err


# ------------------------------------------------------------------------------- rectangular

def test_load_images_crops_to_the_aspect(tmp_path):
    img = np.zeros((20, 60, 3), np.uint8)     # 60 wide, 20 high, a green band at the left
    img[:, :10, 1] = 255
    Image.fromarray(img).save(tmp_path / "wide.png")
    square, wide = load_images(tmp_path, 16), load_images(tmp_path, (16, 48))
    assert square.shape == (1, 3, 16, 16) and wide.shape == (1, 3, 16, 48)
    assert square[0, 1].max() < -0.9                  # the centre square holds no green
    assert wide[0, 1, :, :4].min() > 0.9              # the whole width: green on the left


def test_a_rectangular_run_trains_renders_and_explores(images, tmp_path, capsys):
    """lj train --size 32x16 -> a 16x32 (h x w) model: samples, export, load_generator, a
    session's frames and explore sheets are all 2:1."""
    from engine.offline import ArrayReader
    from engine.session import Session

    run = tmp_path / "wide"
    assert main(["train", str(images), "-o", str(run), "--size", "32x16", "--steps", "2",
                 "--batch", "4", "--channels", "16", "--z-dim", "16", "--mapping-layers", "1",
                 "--sample-every", "2", "--checkpoint-every", "0", "--ada"]) == 0
    assert " p 0.000" in capsys.readouterr().out                  # ADA's p in the progress line
    grid = np.asarray(Image.open(run / "samples" / "step-000002.png"))
    assert grid.shape == (4 * (16 + GAP) + GAP, 4 * (32 + GAP) + GAP, 3)
    meta = json.loads((run / "model.json").read_text())
    assert meta["init_kwargs"]["synthesis_kwargs"]["init_res"] == [4, 8]
    gen = load_generator(str(run / "model.safetensors"))
    assert gen.resolution == (16, 32)
    with torch.inference_mode():
        img = gen.synthesize(gen.w_avg.expand(2, gen.num_layers, -1).contiguous(), 1.0)
    assert img.shape == (2, 3, 16, 32)
    s = Session(44100, generator=str(run / "model.safetensors"), size=(64, 64), threaded=False)
    try:
        assert s.size == (16, 32)
        s.runner.submit(s.params_at(ArrayReader(np.zeros(44100, np.float32)), 4410))
        frame = s.runner.result()
        assert tuple(frame.shape) == (16, 32, 3)       # h x w RGB, as rendered
    finally:
        s.close()
    ex = explore(str(run / "model.safetensors"), tmp_path / "ex", seeds="0-5", sheets=("seeds",),
                 samples=16, log=lambda m: None)
    assert ex["sheets"] == ["seeds"]
    assert np.asarray(Image.open(tmp_path / "ex" / "seeds.png")).shape == (
        2 * (16 + GAP) + GAP, 3 * (32 + GAP) + GAP, 3)
    # lj finetune keeps the shape (D and the images follow the model's init_res)
    ft = Trainer.new(TrainConfig(mode="finetune", base_model=str(run / "model.safetensors"),
                                 images=str(images), steps=1, batch=4, channels=16,
                                 sample_every=0, checkpoint_every=0), tmp_path / "ft")
    assert ft.cfg.init_res == [4, 8] and ft.reals.shape[1:] == (3, 16, 32)
    ft.run(progress=False)
    assert load_generator(str(tmp_path / "ft" / "model.safetensors")).resolution == (16, 32)


# ------------------------------------------------------------------------------- ADA, regularisers

TINY = dict(SMALL, resolution=16)


class Says(torch.nn.Module):
    """A discriminator whose every logit is ``value`` (the wrapped D's graph kept, so D's step
    and R1 run as usual)."""

    def __init__(self, D, value):
        super().__init__()
        self.D, self.value = D, value

    def forward(self, img, c=None):
        return self.D(img) * 0 + self.value


def test_ada_p_rises_when_d_is_sure_of_the_reals_and_falls_when_not(images, tmp_path):
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16)
    policy = parse_policy("color,translation,cutout")
    assert torch.equal(augment(x, policy, 0.0), x)        # p = 0: the images as they are
    torch.manual_seed(1)
    half = augment(x, policy, 0.5)
    changed = (half != x).flatten(1).any(1)
    assert changed.any() and not changed.all()             # per image, with probability p
    t = Trainer.new(TrainConfig(images=str(images), steps=12, **TINY, ada=True, ada_interval=2,
                                ada_kimg=0.08, style_mixing=0, pl_weight=0), tmp_path / "ada")
    t.D = Says(t.D, 3.0)                                   # "real" for everything: overfitting
    ps = [t.train_step()["p"] for _ in range(6)]
    assert ps == sorted(ps) and ps[-1] == pytest.approx(0.3) and t.last["rt"] == 1.0
    t.D.value = -3.0                                       # "fake" for the reals: p must fall
    ps = [t.train_step()["p"] for _ in range(6)]
    assert ps == sorted(ps, reverse=True) and ps[-1] == pytest.approx(0.0)
    t.save_checkpoint()
    assert json.loads((tmp_path / "ada" / "checkpoint.json").read_text())["ada"]["p"] == t.ada.p
    record = [json.loads(ln) for ln in (tmp_path / "ada" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in record] == list(range(1, 13)) and max(r["p"] for r in record) > 0.2


def test_style_mixing_and_path_length_change_the_generator_gradient(images, tmp_path):
    """Same seed, same random draws (a regulariser 'off' here is on with a vanishing
    probability / weight): any difference is the regulariser's own."""
    def first_step(name, **kw):
        t = Trainer.new(TrainConfig(images=str(images), steps=1, **TINY, **kw), tmp_path / name)
        stats = t.train_step()
        return t, stats, torch.cat([p.grad.flatten() for p in t.G.parameters() if p.grad is not None])

    _, base, g_base = first_step("base", style_mixing=1e-9, pl_weight=1e-12)
    _, mixed, g_mixed = first_step("mix", style_mixing=1.0, pl_weight=1e-12)
    t, pl, g_pl = first_step("pl", style_mixing=1e-9, pl_weight=2.0)
    assert mixed["G"] != base["G"] and not torch.allclose(g_mixed, g_base)
    assert pl["G"] == base["G"] and pl["PL"] == base["PL"]   # the same images and penalty ...
    assert (g_pl - g_base).abs().max() > 1e-4                # ... weighted into G's gradient
    assert float(t.pl_mean) > 0
