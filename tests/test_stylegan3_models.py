"""StyleGAN3 models end to end: NVlabs-format pickles through the restricted reader, the adapter
(layer groups, no noise, the translate/rotate generator parameters driven by a mapping), the
command line (run, render, export) and blends of two StyleGAN3 models.

The pickles here are written by our own code (tests/model_fixtures.py) from the weights committed
under tests/data/models/stylegan3/, whose reference outputs NVlabs' code computed (see
tests/test_stylegan3.py); ``sg3_cond32.pkl`` is the committed one.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import GeneratorError
from engine.generators import load_generator
from engine.generators.nvlabs_pickle import read_pickle
from model_fixtures import CANARY_SRC, generator_record, stylegan3_network, write_pickle, write_stylegan3_pickle
from test_stylegan3 import Fixture

MODELS = Path(__file__).parent / "data" / "models"
PKL = MODELS / "sg3_cond32.pkl"
TOL = 1e-3
LJ = [sys.executable, "-m", "engine"]


@pytest.fixture
def canary(tmp_path, monkeypatch):
    path = tmp_path / "canary"
    monkeypatch.setenv("LJ_PICKLE_CANARY", str(path))
    return path


def _synth(gen, ws, params=None, noise=0.0):
    with torch.no_grad():
        return gen.synthesize(ws, noise, params)


def _w_plus(gen, seed=4):
    w = torch.from_numpy(gen.latent_space().seed_to_w(seed))
    return w[None, None].expand(1, gen.num_layers, gen.w_dim).contiguous()


# -- loading ------------------------------------------------------------------------------------

def test_committed_pickle_loads_without_running_its_source_and_matches_nvlabs(canary):
    fx = Fixture("cond")
    records = read_pickle(PKL)
    assert records["G_ema"].module_src == CANARY_SRC
    for row in range(fx.z.shape[0]):
        label = int(fx.c[row].argmax())
        gen = load_generator(f"{PKL}#class={label}")
        assert gen.family == "stylegan3" and gen.c_dim == 4 and gen.class_index == label
        # mapping with this row's class, truncated as the reference was
        w = gen.mapping(fx.z[row:row + 1])
        w = gen.w_avg + fx.settings["psi"] * (w - gen.w_avg)
        assert np.abs(w[0].numpy() - fx.ref["mapping"][row, 0]).max() <= TOL
    # synthesis through the adapter (clamped to [-1, 1], as the engine shows it)
    img = _synth(gen, fx.ws)
    assert float(img.std()) > 0.01
    assert np.abs(img.numpy() - np.clip(fx.ref["synthesis"], -1, 1)).max() <= TOL
    assert not canary.exists(), "the embedded module source must never run"
    exec(compile(records["G_ema"].module_src, "<canary>", "exec"), {})  # the canary is real
    assert canary.read_text() == "executed"


@pytest.mark.parametrize("name", ["t", "r"])
def test_T_and_R_pickles_in_the_record_format_match_nvlabs(tmp_path, name):
    fx = Fixture(name)
    path = write_stylegan3_pickle(name, tmp_path / f"{name}.pkl")
    gen = load_generator(str(path))
    assert gen.resolution == (64, 64) and gen.num_layers == fx.ws.shape[1]
    assert gen.init_kwargs == fx.kwargs
    img = _synth(gen, fx.ws)
    assert np.abs(img.numpy() - np.clip(fx.ref["synthesis"], -1, 1)).max() <= TOL
    t = fx.settings["transform"]  # the visualizer's transform, as generator parameters
    moved = _synth(gen, fx.ws, torch.tensor([t["translate_x"], t["translate_y"], t["rotate"]]))
    assert np.abs(moved.numpy() - np.clip(fx.ref["synthesis_transformed"], -1, 1)).max() <= TOL
    assert np.abs(moved.numpy() - img.numpy()).max() > 10 * TOL


def test_unknown_init_kwargs_and_missing_state_are_one_line_naming_the_file(tmp_path):
    bad = write_stylegan3_pickle("cond", tmp_path / "newer.pkl", fancy_new_option=1)
    with pytest.raises(GeneratorError) as info:
        load_generator(str(bad))
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg and "fancy_new_option" in msg and "StyleGAN3" in msg

    net, kwargs = stylegan3_network("cond")
    rec = generator_record(net, kwargs)
    rec.meta["state"]["_modules"]["mapping"].meta["state"]["_buffers"].pop("w_avg")
    layer = rec.meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["L3_32_16"]
    layer.meta["state"]["_parameters"].pop("weight")
    missing = write_pickle(tmp_path / "missing.pkl", rec)
    with pytest.raises(GeneratorError) as info:
        load_generator(str(missing))
    msg = str(info.value)
    assert "\n" not in msg and str(missing) in msg
    assert "missing" in msg and "mapping.w_avg" in msg and "synthesis.L3_32_16.weight" in msg


# -- the adapter --------------------------------------------------------------------------------

def test_adapter_params_groups_and_no_noise():
    gen = load_generator(str(PKL))
    assert gen.has_noise is False
    assert gen.param_names == ("translate_x", "translate_y", "rotate")
    assert gen.param_ranges["rotate"] == (0.0, -180.0, 180.0)
    space = gen.latent_space()
    assert space.has_noise is False and set(space.param_ranges) == set(gen.param_names)
    groups = gen.layer_groups()
    assert groups["coarse"].start == 0 and groups["coarse"].stop <= groups["middle"].start
    assert groups["all"] == range(gen.num_layers)
    res = gen.layer_resolutions()
    assert res == sorted(res) and len(res) == gen.num_layers
    assert all(res[i] <= 8 for i in groups["coarse"]) and all(res[i] > 8 for i in groups["middle"])
    w = _w_plus(gen)
    base = _synth(gen, w)
    # noise is accepted (a float or per layer) and ignored: StyleGAN3 has no noise inputs
    assert torch.equal(_synth(gen, w, noise=1.0), base)
    assert torch.equal(_synth(gen, w, noise=torch.linspace(0, 2, gen.num_layers)), base)
    # the defaults are no transform; parameters set one, and the next call resets it
    assert torch.equal(_synth(gen, w, gen.default_params()), base)
    turned = _synth(gen, w, torch.tensor([0.0, 0.0, 45.0]))
    assert (turned - base).abs().max() > 0.01
    assert torch.equal(_synth(gen, w), base)


MAPPING = """[meta]
name = "sg3 shift"
[latent]
keyframes = {{ seeds = [1, 2] }}
[params]
shift = {{ default = 0.0, min = -1.0, max = 1.0 }}
[[route]]
from = "param.shift"
to = "generator.{target}"
"""


def test_mapping_route_to_translate_x_moves_the_picture_through_the_runner(tmp_path):
    """A fader routed to generator.translate_x, through Session and runner: 3/64 moves 3 pixels right."""
    from engine.audio.demo import demo_song
    from engine.session import ArrayReader, Session, to_mono

    model = write_stylegan3_pickle("t", tmp_path / "t.pkl")
    path = tmp_path / "m.toml"
    path.write_text(MAPPING.format(target="translate_x"))
    samples, sr, _ = demo_song(seconds=1.0)
    reader = ArrayReader(to_mono(samples))
    frames = []
    for shift in (0.0, 3 / 64):
        s = Session(sr, path, generator=str(model), threaded=False)
        try:
            assert s.size == (64, 64)
            params = s.params_at(reader, sr // 2, {"shift": shift})
            assert params.generator.get("translate_x", 0.0) == pytest.approx(shift)
            frames.append(np.asarray(s.runner.generate(params), dtype=np.float32).copy())
        finally:
            s.close()
    base, right = frames
    k, m, res = 3, 8, 64
    inner = base[m:res - m - k, m:res - m - k]
    moved = right[m:res - m - k, m + k:res - m]
    unmoved = np.abs(right[m:res - m - k, m:res - m - k] - inner).mean()
    assert unmoved > 2.0, "the picture must have changed where it was"
    assert np.abs(moved - inner).mean() < 0.1 * unmoved
    assert np.abs(moved - inner).max() <= 4  # uint8 levels: rounding + equivariance error
    path.write_text(MAPPING.format(target="translate"))
    from engine.errors import MappingError

    with pytest.raises(MappingError, match="translate_x"):  # the message lists what there is
        Session(sr, path, generator=str(model), threaded=False)


# -- export and blend ---------------------------------------------------------------------------

def test_export_to_safetensors_and_torchscript_round_trips(tmp_path):
    from engine.cli import main

    st, ts = tmp_path / "sg3.safetensors", tmp_path / "sg3.ts"
    spec = f"{PKL}#class=2"
    assert main(["export", spec, "-o", str(st)]) == 0
    assert main(["export", spec, "-o", str(ts)]) == 0
    orig, from_st, from_ts = (load_generator(s) for s in (spec, str(st), str(ts)))
    assert from_st.family == "stylegan3" and from_st.class_index == 2
    assert from_ts.param_names == orig.param_names and from_ts.has_noise is False
    assert {k: list(v) for k, v in from_ts.layer_groups().items()} == \
        {k: list(v) for k, v in orig.layer_groups().items()}
    w = _w_plus(orig)
    assert torch.equal(orig.mapping(torch.ones(1, 16)), from_ts.mapping(torch.ones(1, 16)))
    for p in (None, torch.tensor([0.1, -0.2, 30.0])):
        a = _synth(orig, w, p)
        assert torch.equal(_synth(from_st, w, p), a)
        assert torch.allclose(_synth(from_ts, w, p), a, atol=1e-6)
    assert (_synth(from_ts, w, torch.tensor([0.1, -0.2, 30.0])) - _synth(from_ts, w)).abs().max() > 0.01


def _variant(tmp_path) -> Path:
    """The cond model with its synthesis weights changed (a 'fine-tune' of the same shape)."""
    net, kwargs = stylegan3_network("cond")
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("synthesis.") and name.endswith(".weight"):
                p.mul_(1 + 0.5 * torch.randn(p.shape, generator=g))
    return write_pickle(tmp_path / "variant.pkl", generator_record(net, kwargs))


def test_blend_of_two_stylegan3_models(tmp_path):
    from engine.generators.blend import BlendGenerator

    b_path = _variant(tmp_path)
    a, b = load_generator(str(PKL)), load_generator(str(b_path))
    blend = load_generator(f"blend:{PKL}|{b_path}")
    assert isinstance(blend, BlendGenerator)
    assert blend.param_names == ("blend", "translate_x", "translate_y", "rotate")
    w = _w_plus(a)
    fa, fb = _synth(a, w), _synth(b, w)
    assert (fa - fb).abs().max() > 0.05
    assert torch.allclose(_synth(blend, w, torch.tensor([0.0, 0, 0, 0])), fa, atol=1e-5)
    assert torch.allclose(_synth(blend, w, torch.tensor([1.0, 0, 0, 0])), fb, atol=1e-5)
    assert torch.allclose(_synth(blend, w), fa, atol=1e-5)
    turned = torch.tensor([1.0, 0.0, 0.0, 30.0])
    assert torch.allclose(_synth(blend, w, turned), _synth(b, w, turned[1:]), atol=1e-5)
    # layer swap by group: the fine layers from B, the rest (and the mapping) stay A's
    swap = load_generator(f"blend:{PKL}|{b_path}@middle")
    _synth(swap, w, torch.tensor([1.0, 0, 0, 0]))
    live, sa, sb = swap.live.net.state_dict(), a.net.state_dict(), b.net.state_dict()
    groups, res = a.layer_groups(), a.layer_resolutions()
    names = a.net.synthesis.layer_names
    for i, name in enumerate(names):
        key = f"synthesis.{name}.weight"
        src = sb if 8 < res[i + 1] <= 32 else sa
        assert torch.allclose(live[key], src[key]), key
    assert any(8 < r for r in res) and any(r <= 8 for r in res[1:])
    assert torch.equal(live["mapping.fc0.weight"], sa["mapping.fc0.weight"])


# -- the command line ---------------------------------------------------------------------------

def _lj(*args, timeout=300):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return subprocess.run([*LJ, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_lj_run_and_render_with_a_stylegan3_pickle(tmp_path):
    from engine.audio.demo import write_demo_wav
    from engine.render.record import probe

    song = write_demo_wav(tmp_path / "song.wav", seconds=1.0)
    r = _lj("run", "--audio", str(song), "--headless", "--no-osc", "--frames", "6", "--size", "32",
            "--generator", str(PKL))
    assert r.returncode == 0, r.stderr
    assert "generator 32x32" in r.stderr and "6 frames" in r.stdout and "ERROR" not in r.stderr
    out = tmp_path / "out.mp4"
    r = _lj("render", str(song), "-o", str(out), "--size", "32", "--fps", "6",
            "--generator", str(PKL), "--class", "1")
    assert r.returncode == 0, r.stderr
    info = probe(out)
    assert (info["width"], info["height"], info["frames"]) == (32, 32, 6)


def test_a_half_precision_module_renders_close_to_float32():
    """The runner's ``half`` casts the whole module to float16; the Fourier input (transform,
    frequencies, phases) and the demodulation sums still compute in float32."""
    gen = load_generator(str(PKL))
    w = gen.mapping(torch.randn(2, gen.latent_dim))[:, None].expand(-1, gen.num_layers, -1).contiguous()
    with torch.no_grad():
        want = gen.synthesize(w)
        gen.half()
        got = gen.synthesize(w, 0.0, torch.tensor([0.1, 0.0, 30.0]).half())
        moved = gen.synthesize(w)
    assert got.dtype == moved.dtype == torch.float32
    assert (moved - want).abs().max() <= 0.02 and (got - moved).abs().max() > 0.1
