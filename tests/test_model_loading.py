"""Loading artists' models safely: NVlabs pickles, our export, TorchScript, blends, bad files,
the command line and a running show's /lj/generator."""

import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import GeneratorError
from engine.generators import load_generator
from engine.generators.nvlabs_pickle import ModelError, PersistentRecord, read_pickle
from model_fixtures import CANARY_SRC, Record, generator_record, module_state, write_pickle

MODELS = Path(__file__).parent / "data" / "models"
PKL = MODELS / "sg2_orig16.pkl"
TOL = 1e-3
LJ = [sys.executable, "-m", "engine"]


@pytest.fixture
def canary(tmp_path, monkeypatch):
    path = tmp_path / "canary"
    monkeypatch.setenv("LJ_PICKLE_CANARY", str(path))
    return path


def _w_plus(gen, seed=4):
    w = torch.from_numpy(gen.latent_space().seed_to_w(seed))
    return w[None, None].expand(1, gen.num_layers, gen.w_dim).contiguous()


def _frame(gen, noise=1.0, seed=4):
    with torch.no_grad():
        return gen.synthesize(_w_plus(gen, seed), noise)


# -- the NVlabs record format -----------------------------------------------------------------

def test_fixture_pickle_loads_without_running_its_source(canary):
    ref = np.load(MODELS / "sg2_orig16.ref.npz")
    gen = load_generator(str(PKL))
    with torch.no_grad():
        img = gen.net.synthesis(torch.from_numpy(ref["ws_mixed"]), noise_mode="const")
    assert np.abs(img.numpy() - ref["img_const"]).max() <= TOL
    assert not canary.exists(), "the embedded module source must never run"
    # the canary is real: running the record's source (here, on purpose) does create the file
    records = read_pickle(PKL)
    assert records["G_ema"].module_src == CANARY_SRC
    exec(compile(records["G_ema"].module_src, "<canary>", "exec"), {})
    assert canary.read_text() == "executed"


def test_discriminator_record_is_kept_unbuilt():
    from engine.generators.nvlabs_pickle import load_nvlabs_pickle

    loaded = load_nvlabs_pickle(PKL)
    d = loaded.discriminator
    assert isinstance(d, PersistentRecord) and d.class_name == "Discriminator"
    assert d.init_kwargs["img_resolution"] == 16
    assert d.init_kwargs["architecture"] == "resnet"
    assert d.state_dict()["b16.fromrgb.weight"].shape == (16, 3, 1, 1) and "b4.out.bias" in d.state_dict()
    assert loaded.records["training_set_kwargs"] == {"resolution": 16}


def test_pickle_with_positional_init_args_and_g_only(tmp_path):
    from engine.generators.stylegan2 import Generator

    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                  mapping_kwargs={"num_layers": 1}, synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    net = Generator(**kwargs)
    state = module_state(net, {"mapping_kwargs": kwargs["mapping_kwargs"],
                               "synthesis_kwargs": kwargs["synthesis_kwargs"]}, init_args=(8, 0, 8, 8, 3))
    path = tmp_path / "g_only.pkl"
    from model_fixtures import _Writer
    import io

    buf = io.BytesIO()
    _Writer(buf, protocol=3).dump({"G": Record("Generator", state)})
    path.write_bytes(buf.getvalue())
    gen = load_generator(str(path))
    assert gen.resolution == (8, 8) and gen.num_layers == 4
    with torch.no_grad():
        expect = net.synthesis(_w_plus(gen), noise_mode="none").clamp(-1, 1)
    assert torch.allclose(_frame(gen, 0.0), expect, atol=1e-6)


# -- bad input --------------------------------------------------------------------------------

def _assert_model_error(path, *needles, **kw):
    with pytest.raises(GeneratorError) as info:
        load_generator(str(path), **kw)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_truncated_pickle(tmp_path):
    data = PKL.read_bytes()
    for cut in (len(data) // 2, 200, len(data) - 3):
        bad = tmp_path / f"cut{cut}.pkl"
        bad.write_bytes(data[:cut])
        _assert_model_error(bad, "truncated")


def test_corrupt_pickles(tmp_path):
    data = bytearray(PKL.read_bytes())
    rng = np.random.default_rng(0)
    seen = 0
    for start in (40, 700, len(data) // 3, len(data) - 400):
        bad = bytearray(data)
        bad[start:start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        path = tmp_path / f"corrupt{start}.pkl"
        path.write_bytes(bytes(bad))
        try:
            load_generator(str(path))
        except GeneratorError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            seen += 1
    assert seen >= 3  # random bytes inside raw tensor data may still load (as other numbers)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle at all")
    _assert_model_error(garbage, "not a pickle")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    _assert_model_error(empty, "empty")
    _assert_model_error(tmp_path / "missing.pkl", "no such model file")


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.mark.parametrize("how", ["os.system", "builtins.eval", "builtins.exec", "inside_a_record"])
def test_foreign_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').write('x')"
    if how == "os.system":
        payload, name = {"G_ema": _Evil(os.system, cmd)}, "system"
    elif how == "builtins.eval":
        payload, name = {"G_ema": _Evil(eval, code)}, "builtins.eval"
    elif how == "builtins.exec":
        payload, name = _Evil(exec, code), "builtins.exec"
    else:  # a valid-looking record whose state smuggles a call
        payload, name = {"G_ema": Record("Generator", {"_init_kwargs": _Evil(eval, code)})}, "builtins.eval"
    path = tmp_path / "evil.pkl"
    if how == "inside_a_record":
        write_pickle(path, payload["G_ema"])
    else:
        path.write_bytes(pickle.dumps(payload))
    msg = _assert_model_error(path, "refused", name)
    assert not marker.exists()


def test_model_too_big_for_memory_is_refused_before_allocating(tmp_path):
    from engine.generators.stylegan2 import Generator

    small = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                 mapping_kwargs={"num_layers": 1}, synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    net = Generator(**small)
    huge = dict(small, w_dim=8, img_resolution=8192,
                synthesis_kwargs={"channel_base": 1 << 30, "channel_max": 1 << 15})
    path = tmp_path / "huge.pkl"
    write_pickle(path, generator_record(net, huge))
    msg = _assert_model_error(path, "needs", "GB", "memory")
    # the tensors of a real file are counted as they are read, against the memory available
    _assert_model_error(PKL, "do not fit in the memory", memory_limit=PKL.stat().st_size + 1000)
    _assert_model_error(PKL, "larger than the memory", memory_limit=1000)


def test_weights_that_do_not_match_the_architecture(tmp_path):
    from engine.generators.stylegan2 import Generator

    kw = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
              mapping_kwargs={"num_layers": 1}, synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    net = Generator(**kw)
    other = dict(kw, mapping_kwargs={"num_layers": 2})
    path = tmp_path / "mismatch.pkl"
    write_pickle(path, generator_record(net, other))
    _assert_model_error(path, "do not match", "mapping.fc1")


# -- our export and TorchScript ---------------------------------------------------------------

def test_export_round_trips(tmp_path):
    from engine.cli import main

    src = load_generator(str(PKL))
    ts, st = tmp_path / "m.ts", tmp_path / "m.safetensors"
    assert main(["export", str(PKL), "-o", str(ts)]) == 0
    assert main(["export", str(PKL), "-o", str(st)]) == 0
    assert (tmp_path / "m.json").exists()
    a = _frame(src, 1.0)
    for path in (ts, st):
        gen = load_generator(str(path))
        assert (gen.num_layers, gen.w_dim, gen.resolution) == (src.num_layers, src.w_dim, src.resolution)
        assert gen.layer_groups()["fine"] == src.layer_groups()["fine"]
        assert torch.allclose(gen.w_avg, src.w_avg)
        assert (_frame(gen, 1.0) - a).abs().max() <= 1e-5, path
        assert (_frame(gen, 0.0) - _frame(src, 0.0)).abs().max() <= 1e-5, path
    # the safetensors form never needs pickle: the file is tensors only
    assert not st.read_bytes().startswith(b"\x80")


def test_export_of_the_builtin_generator_as_torchscript(tmp_path):
    from engine.generators.export import export

    export("builtin:cppn", tmp_path / "cppn.ts", (48, 48))
    gen = load_generator(str(tmp_path / "cppn.ts"))
    src = load_generator("builtin:cppn", (48, 48))
    assert gen.resolution == (48, 48)
    assert (_frame(gen, 0.0) - _frame(src, 0.0)).abs().max() < 1e-4
    with pytest.raises(GeneratorError, match="only StyleGAN models"):
        export("builtin:cppn", tmp_path / "cppn.safetensors", (48, 48))


def test_torchscript_with_the_wrong_signature(tmp_path):
    class OneArg(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.latent_dim, self.w_dim, self.num_layers = 4, 4, 2
            self.resolution = [8, 8]
            self.register_buffer("w_avg", torch.zeros(4))

        def forward(self, x):
            return x

        @torch.jit.export
        def mapping(self, z):
            return z

        @torch.jit.export
        def synthesize(self, w_plus):
            return torch.zeros(1, 3, 8, 8)

    path = tmp_path / "one_arg.ts"
    torch.jit.save(torch.jit.script(OneArg()), str(path))
    _assert_model_error(path, "wrong signature", "synthesize", "1 arguments")

    class WrongShape(OneArg):
        @torch.jit.export
        def synthesize(self, w_plus, noise_strength):
            return torch.zeros(1, 3, 4, 4)

    path = tmp_path / "wrong_shape.ts"
    torch.jit.save(torch.jit.script(WrongShape()), str(path))
    _assert_model_error(path, "returned [1, 3, 4, 4]")

    class Good(OneArg):
        @torch.jit.export
        def synthesize(self, w_plus, noise_strength):
            return torch.tanh(w_plus.mean()) * torch.ones(1, 3, 8, 8)

    path = tmp_path / "good.ts"
    torch.jit.save(torch.jit.script(Good()), str(path))
    gen = load_generator(str(path))
    assert gen.resolution == (8, 8) and _frame(gen).shape == (1, 3, 8, 8)

    not_ts = tmp_path / "not.ts"
    not_ts.write_bytes(b"PK\x03\x04 nonsense")
    _assert_model_error(not_ts, "not a TorchScript file")


def test_safetensors_without_its_json(tmp_path):
    import shutil

    path = tmp_path / "alone.safetensors"
    shutil.copy(MODELS / "sg2_skip.safetensors", path)
    _assert_model_error(path, "alone.json", "missing")


# -- blend ------------------------------------------------------------------------------------

def _variant(tmp_path, name="b", scale=1.5):
    """A "fine-tune" of sg2_skip: same architecture, perturbed weights."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    state = load_file(str(MODELS / "sg2_skip.safetensors"))
    g = torch.Generator().manual_seed(5)
    state = {k: (v + 0.3 * torch.randn(v.shape, generator=g) if k.endswith("weight") else v)
             for k, v in state.items()}
    out = tmp_path / f"{name}.safetensors"
    save_file(state, str(out))
    shutil.copy(MODELS / "sg2_skip.json", out.with_suffix(".json"))
    return out


def test_blend_weights_and_layer_swap(tmp_path):
    from engine.generators.blend import BlendGenerator, parse_blend

    a_path, b_path = MODELS / "sg2_skip.safetensors", _variant(tmp_path)
    a, b = load_generator(str(a_path)), load_generator(str(b_path))
    blend = load_generator(f"blend:{a_path}|{b_path}")
    assert isinstance(blend, BlendGenerator)
    assert blend.param_names == ("blend",) and blend.param_ranges["blend"] == (0.0, 0.0, 1.0)
    w = _w_plus(a)

    def run(g, t=None):
        with torch.no_grad():
            return g.synthesize(w, 1.0, None if t is None else torch.tensor([t]))

    fa, fb = run(a), run(b)
    assert (fa - fb).abs().max() > 0.05
    assert torch.allclose(run(blend, 0.0), fa, atol=1e-5)
    assert torch.allclose(run(blend, 1.0), fb, atol=1e-5)
    mid = run(blend, 0.5)
    assert (mid - fa).abs().max() > 1e-3 and (mid - fb).abs().max() > 1e-3
    assert torch.allclose(run(blend), fa, atol=1e-5)  # no params: the default, A

    swap = load_generator(f"blend:{a_path}|{b_path}@16")
    run(swap, 1.0)
    live = swap.live.net.state_dict()
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert torch.equal(live["synthesis.b8.conv1.weight"], sa["synthesis.b8.conv1.weight"])
    assert torch.equal(live["mapping.fc0.weight"], sa["mapping.fc0.weight"])
    assert torch.allclose(live["synthesis.b16.conv1.weight"], sb["synthesis.b16.conv1.weight"])
    assert torch.allclose(live["synthesis.b32.torgb.weight"], sb["synthesis.b32.torgb.weight"])
    assert parse_blend("blend:x.pkl|y.pkl@fine") == ("x.pkl", "y.pkl", "fine")
    with pytest.raises(GeneratorError, match="different architectures"):
        load_generator(f"blend:{a_path}|{MODELS / 'sg2_orig16.safetensors'}")
    with pytest.raises(GeneratorError, match="unknown layer range"):
        load_generator(f"blend:{a_path}|{b_path}@sideways")
    with pytest.raises(GeneratorError, match="two models"):
        load_generator(f"blend:{a_path}")


# -- the command line and a running show ------------------------------------------------------

def _lj(*args, timeout=300):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return subprocess.run([*LJ, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_lj_render_with_a_model_and_one_line_errors(tmp_path):
    from engine.audio.demo import write_demo_wav
    from engine.render.record import probe

    song = write_demo_wav(tmp_path / "song.wav", seconds=1.0)
    out = tmp_path / "out.mp4"
    r = _lj("render", str(song), "-o", str(out), "--size", "64", "--fps", "10",
            "--generator", str(MODELS / "sg2_cond_resnet.safetensors"), "--class", "2")
    assert r.returncode == 0, r.stderr
    info = probe(out)
    assert (info["width"], info["height"], info["frames"]) == (64, 64, 10)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(PKL.read_bytes()[:300])
    for args, needle in ((["--generator", str(bad)], "truncated"),
                         (["--generator", str(MODELS / "sg2_cond_resnet.safetensors"), "--class", "9"],
                          "out of range")):
        r = _lj("render", str(song), "-o", str(tmp_path / "x.mp4"), "--size", "32", *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("lj: error:")]
        assert len(lines) == 1 and needle in lines[0], r.stderr
    r = _lj("export", str(bad), "-o", str(tmp_path / "x.ts"))
    assert r.returncode == 2 and "truncated" in r.stderr and str(bad) in r.stderr


def test_lj_run_with_a_model(tmp_path):
    from engine.audio.demo import write_demo_wav

    song = write_demo_wav(tmp_path / "song.wav", seconds=3.0)
    r = _lj("run", "--audio", str(song), "--headless", "--no-osc", "--frames", "12", "--size", "64",
            "--generator", str(PKL))
    assert r.returncode == 0, r.stderr
    assert "generator 16x16" in r.stderr and "12 frames" in r.stdout
    assert "ERROR" not in r.stderr


def test_lj_generator_over_osc_keeps_the_show_on_a_bad_file(tmp_path, caplog):
    from pythonosc.udp_client import SimpleUDPClient

    from engine.audio.demo import demo_song
    from engine.live import LiveOptions, StopFlag, run_live
    from support import PacedSource, free_port, wait_for

    caplog.set_level("INFO", logger="lj.session")
    samples, sr, _ = demo_song(seconds=60.0)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    port = free_port()
    opts = LiveOptions(size=32, headless=True, osc_port=port, oscquery_port=None, max_seconds=50,
                       stills_dir=str(tmp_path / "stills"),
                       show_dirs=[str(tmp_path), str(MODELS)])  # where /lj/generator may load from
    stop = StopFlag()
    result = {}
    holder = {}

    class Source(PacedSource):
        def start(self):
            holder["started"] = True
            super().start()

    source = Source(samples, sr)
    thread = threading.Thread(target=lambda: result.setdefault("stats", run_live(source, opts, stop)),
                              daemon=True)
    thread.start()
    try:
        wait_for(lambda: holder.get("started"), "the show to start", timeout=60)
        client = SimpleUDPClient("127.0.0.1", port)
        client.send_message("/lj/generator", str(bad))
        wait_for(lambda: any(str(bad) in r.getMessage() for r in caplog.records),
                 "the failed load to be logged", timeout=60)
        msg = next(r.getMessage() for r in caplog.records if str(bad) in r.getMessage())
        assert "keeping the current one" in msg and "truncated or corrupt" in msg
        client.send_message("/lj/generator", str(PKL))
        wait_for(lambda: any("generator loaded" in r.getMessage() for r in caplog.records),
                 "the good model to be swapped in", timeout=90)
    finally:
        time.sleep(0.5)
        stop()
        thread.join(60)
    stats = result["stats"]
    session = stats.session
    assert session.generator_spec == str(PKL)
    assert session.size == (16, 16) and session.generator.num_layers == 6
    assert stats.last_params.w_plus.shape == (6, 16)
    assert session.runner.error_count == 0


def test_numpy_values_in_records_and_stylegan3_dispatch(tmp_path):
    """StyleGAN3 layers keep numpy arrays and numpy floats as attributes: they are read as plain
    numbers (nothing else from numpy is allowed), and the record goes to the StyleGAN3 module."""
    from collections import OrderedDict

    layer = Record("SynthesisLayer", {
        "_parameters": OrderedDict(weight=torch.ones(2, 2)), "_buffers": OrderedDict(), "_modules": OrderedDict(),
        "in_size": np.array([36, 36]), "gain": np.float64(0.25), "half": np.float16(1.5)})
    inp = Record("SynthesisInput", {"_parameters": OrderedDict(), "_modules": OrderedDict(),
                                    "_buffers": OrderedDict(transform=torch.eye(3))})
    syn = Record("SynthesisNetwork", {"_parameters": OrderedDict(), "_buffers": OrderedDict(),
                                      "_modules": OrderedDict(input=inp, L0_36_8=layer)})
    g = Record("Generator", {"_parameters": OrderedDict(), "_buffers": OrderedDict(),
                             "_modules": OrderedDict(synthesis=syn),
                             "_init_kwargs": {"z_dim": 4, "c_dim": 0, "w_dim": 4, "img_resolution": 16,
                                              "img_channels": 3, "sizes": np.array([4, 8])}})
    path = tmp_path / "sg3_like.pkl"
    write_pickle(path, g)
    rec = read_pickle(path)["G_ema"]
    assert rec.init_kwargs["sizes"].tolist() == [4, 8]
    lay = rec.children()["synthesis"].children()["L0_36_8"]
    from engine.generators.nvlabs_pickle import _plain

    assert _plain(lay.state["in_size"]).tolist() == [36, 36]
    assert lay.state["gain"] == 0.25 and lay.state["half"] == 1.5
    assert set(rec.state_dict()) == {"synthesis.input.transform", "synthesis.L0_36_8.weight"}
    try:
        import engine.generators.stylegan3  # noqa: F401
    except ImportError:
        _assert_model_error(path, "StyleGAN3", "missing")
    else:  # once the StyleGAN3 network exists this record is simply incomplete for it
        with pytest.raises(GeneratorError):
            load_generator(str(path))
    # numpy object arrays (which can carry callables) are refused
    obj = tmp_path / "object_array.pkl"
    obj.write_bytes(pickle.dumps({"G_ema": np.array([print], dtype=object)}))
    _assert_model_error(obj, "not a plain number type")


def test_unknown_specs_and_options(tmp_path):
    with pytest.raises(GeneratorError, match="unknown generator 'nonsense'"):
        load_generator("nonsense")
    txt = tmp_path / "model.txt"
    txt.write_text("hello")
    with pytest.raises(GeneratorError, match="unknown model format '.txt'"):
        load_generator(str(txt))
    with pytest.raises(GeneratorError, match="unknown generator option 'klass'"):
        load_generator(f"{PKL}#klass=2")
    with pytest.raises(GeneratorError, match="whole number"):
        load_generator(f"{MODELS / 'sg2_cond_resnet.safetensors'}#class=two")
    with pytest.raises(GeneratorError, match="out of range"):
        load_generator(f"{MODELS / 'sg2_cond_resnet.safetensors'}#class=4")
    assert load_generator("builtin:cppn", (32, 32)).resolution == (32, 32)
