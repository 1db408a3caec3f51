"""Every file we read, against what a hostile or confused show folder holds (issue 17, items 2,
3 and 12): ``/dev/zero``, FIFOs, files nested 100,000 deep, loads that hang, and learned
bindings whose addresses hold emoji. Real files, real FIFOs (``os.mkfifo``), the real loaders;
a stuck compile is injected with monkeypatch (a fault injection, not a stand-in for a real part).
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

import engine.session as session_mod
from engine.control import Controls
from engine.control import learn as learn_mod
from engine.control.learn import Bindings, format_bindings, read_bindings, sidecar_path
from engine.cues import load_cue_file
from engine.errors import GeneratorError, LJError, MappingError
from engine.generators.nvlabs_pickle import ModelError
from engine.mapping import load_mapping, parse_mapping
from engine.presets import PresetError, load_preset, read_array
from engine.session import ArrayReader, Session
from engine.show import Show
from engine.showconfig import ConfigError, load_config
from support import SMALL_MAPPING

SIZE = (32, 32)
SR = 22050
DEEP = 100_000
LJ = [sys.executable, "-m", "engine"]
GOOD = "\n" + SMALL_MAPPING


def deep_array(n: int = DEEP) -> str:
    return "[" * n + "]" * n


def deep_table(n: int = DEEP) -> str:
    return "{a = " * n + "1" + "}" * n


@pytest.fixture
def fifo(tmp_path):
    """A real FIFO with no writer: opening it to read blocks for ever (unless non-blocking)."""
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    yield path
    unblock(path)


def unblock(path: Path) -> None:
    """Free any reader the unfixed code left blocked opening the FIFO ``path`` (no-op else)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def within(fn, seconds: float = 20.0):
    """``fn()``'s result or exception, failing (not hanging) if it takes longer than ``seconds``:
    a bound only a real block exceeds (the loaders answer in milliseconds)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn} still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def lj(*args, timeout: float = 120.0):
    """Run ``lj`` with its data segment capped at 3 GiB, so that a reader without a bound ends in
    MemoryError instead of taking the machine (what the unfixed code did)."""
    def cap():
        resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([*LJ, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=cap)


def one_line_error(result, *needles):
    assert result.returncode != 0
    err = result.stderr.strip()
    assert "Traceback" not in err and "unexpected" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("lj: error:")]
    assert len(lines) == 1 and len(err.splitlines()) <= 3, err[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- item 2: bounded reads, no blocking ---------------------------------------------------------


def test_lj_check_refuses_dev_zero_and_a_fifo_with_one_line(fifo):
    one_line_error(lj("check", "/dev/zero"), "/dev/zero", "not a regular file")
    one_line_error(lj("check", str(fifo), timeout=60), "pipe.toml", "not a regular file")


def test_every_loader_refuses_a_fifo_and_dev_zero_at_once(fifo, tmp_path):
    """No reader of ours blocks on a FIFO or reads /dev/zero: each gives its own one-line error."""
    folder = tmp_path / "presets"
    folder.mkdir()
    os.mkfifo(folder / "p.toml")
    (folder / "z.toml").symlink_to("/dev/zero")
    try:
        for path in (fifo, Path("/dev/zero")):
            with pytest.raises(MappingError, match="not a regular file"):
                within(lambda: load_mapping(path))
            with pytest.raises(MappingError, match="not a regular file"):
                within(lambda: load_cue_file(path))
            with pytest.raises(ConfigError, match="not a regular file"):
                within(lambda: load_config(path))
            with pytest.raises(PresetError, match="not a regular file"):
                within(lambda: read_array(path))
            assert within(lambda: read_bindings(path)) == {}
        for name in ("p", "z"):
            with pytest.raises(PresetError, match="not a regular file"):
                within(lambda: load_preset(folder, name))
    finally:
        unblock(folder / "p.toml")


def test_a_model_path_that_is_a_fifo_is_refused_not_waited_for(tmp_path):
    """A FIFO named as a safetensors or TorchScript model: refused at once. The libraries would
    wait for a writer for ever (torch's reader even holding the GIL), so the loaders run in a
    child process with a bound."""
    st = tmp_path / "m.safetensors"
    ts = tmp_path / "m.ts"
    for p in (st, ts):
        os.mkfifo(p)
    st.with_suffix(".json").write_text('{"latent_jockey_model": 1, "family": "stylegan2", '
                                       '"init_kwargs": {}}')
    code = ("import sys\n"
            "from engine.generators.export import load_safetensors\n"
            "from engine.generators.torchscript import load_torchscript\n"
            "for load in (lambda p: load_safetensors(p, memory_limit=1 << 40), load_torchscript):\n"
            "    try:\n        load(sys.argv.pop(1))\n    except Exception as e:\n"
            "        print(type(e).__name__, e, flush=True)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(st), str(ts)], capture_output=True,
                             text=True, timeout=90).stdout.splitlines()
    except subprocess.TimeoutExpired:
        pytest.fail("a model loader blocked on a FIFO")
    finally:
        unblock(st)
        unblock(ts)
    assert len(out) == 2, out
    for line, name in zip(out, ("m.safetensors", "m.ts")):
        assert line.startswith("ModelError") and name in line and "not a regular file" in line


def wait_applied(s: Session, name: str, seconds: float = 20.0) -> list[str]:
    """Call apply_reload between 'frames' until the mapping named ``name`` is in; the errors
    reported on the way."""
    errors = []
    deadline = time.monotonic() + seconds
    while s.mapping.name != name and time.monotonic() < deadline:
        s.apply_reload()
        if s.last_error and s.last_error not in errors:
            errors.append(s.last_error)
        time.sleep(0.01)
    assert s.mapping.name == name, f"{name} never applied; errors: {errors}"
    return errors


def test_a_fifo_or_dev_zero_mapping_does_not_block_the_next_load(tmp_path, fifo):
    good = tmp_path / "good.toml"
    good.write_text(GOOD.format(name="good"))
    later = tmp_path / "later.toml"
    later.write_text(GOOD.format(name="later"))
    s = Session(SR, good, size=SIZE, threaded=False)
    try:
        s.request_reload(fifo)
        s.request_reload(later)  # arrives while the FIFO load runs (or has run)
        errors = wait_applied(s, "later")
        assert any("pipe.toml" in e and "not a regular file" in e for e in errors), errors
        s.request_reload("/dev/zero")
        s.request_reload(good)
        errors = wait_applied(s, "good")
        assert any("/dev/zero" in e for e in errors), errors
    finally:
        s.close()


# -- item 2: loader timeouts ---------------------------------------------------------------------


def test_a_load_that_hangs_is_abandoned_and_the_latest_request_applies(tmp_path, monkeypatch):
    """A compile that never ends (injected) is reported as timed out; the latest request queued
    behind it starts at once and applies; the stuck one's late result is dropped."""
    monkeypatch.setattr(session_mod, "RELOAD_TIMEOUT_S", 0.5, raising=False)
    paths = {}
    for name in ("start", "stuck", "a", "b"):
        paths[name] = tmp_path / f"{name}.toml"
        paths[name].write_text(GOOD.format(name=name))
    release = threading.Event()
    real = session_mod.compile_file

    def compile_file(path, *args, **kw):
        if Path(path).name == "stuck.toml":
            release.wait(60)  # a stuck load; the test frees it at the end
        return real(path, *args, **kw)

    monkeypatch.setattr(session_mod, "compile_file", compile_file)
    s = Session(SR, paths["start"], size=SIZE, threaded=False)
    try:
        t0 = time.monotonic()
        s.request_reload(paths["stuck"])
        s.request_reload(paths["a"])
        s.request_reload(paths["b"])  # the latest request wins over "a"
        errors = wait_applied(s, "b", seconds=30)
        assert time.monotonic() - t0 < 30
        assert any("stuck.toml" in e and "timed out" in e for e in errors), errors
        release.set()
        deadline = time.monotonic() + 10
        while any(t.name == "lj-mapping-loader" and t.is_alive() for t in threading.enumerate()) \
                and time.monotonic() < deadline:
            s.apply_reload()
            time.sleep(0.01)
        for _ in range(5):
            s.apply_reload()
        assert s.mapping.name == "b", "the abandoned load's late result must be dropped"
        assert str(s.mapping_path).endswith("b.toml")
    finally:
        release.set()
        s.close()


def test_a_generator_load_that_hangs_does_not_block_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(session_mod, "GENERATOR_TIMEOUT_S", 0.5, raising=False)
    mapping = tmp_path / "m.toml"
    mapping.write_text(GOOD.format(name="m"))
    release = threading.Event()
    real = session_mod.load_generator

    def load_generator(spec, size):
        if spec == "builtin:cppn":
            release.wait(60)
        return real(spec, size)

    s = Session(SR, mapping, generator="builtin:flow", size=SIZE, threaded=False)
    monkeypatch.setattr(session_mod, "load_generator", load_generator)
    try:
        s.request_generator("builtin:cppn")   # hangs
        s.request_generator("builtin:flow")  # must not wait for it
        errors = []
        deadline = time.monotonic() + 30
        swapped = False
        while not swapped and time.monotonic() < deadline:
            swapped = s.apply_generator()
            if s.last_error and s.last_error not in errors:
                errors.append(s.last_error)
            time.sleep(0.01)
        assert swapped, errors
        assert any("builtin:cppn" in e and "timed out" in e for e in errors), errors
        release.set()
        time.sleep(0.5)
        for _ in range(5):
            assert not s.apply_generator()
        assert s.generator_spec == "builtin:flow"
    finally:
        release.set()
        s.close()


# -- item 3: deep nesting ----------------------------------------------------------------------


@pytest.mark.parametrize("deep", [deep_array, deep_table], ids=["arrays", "inline-tables"])
def test_a_deeply_nested_mapping_is_one_mapping_error(tmp_path, deep):
    path = tmp_path / "deep.toml"
    path.write_text(f"[params]\nx = {deep()}\n")
    with pytest.raises(MappingError, match="too deep") as err:
        load_mapping(path)
    assert "deep.toml" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MappingError, match="too deep"):
        parse_mapping(f"[[route]]\nfrom = {deep()}\n")


@pytest.fixture
def show(tmp_path):
    mapping = tmp_path / "show.toml"
    mapping.write_text(GOOD.format(name="show"))
    session = Session(SR, mapping, size=SIZE, threaded=False)
    controls = Controls(smoothing=0.0)
    yield session, Show(session, controls, presets_dir=tmp_path / "presets"), tmp_path
    session.close()


def test_a_nested_preset_is_reported_and_the_show_goes_on(show):
    """``/lj/preset/load deep`` used to raise RecursionError out of the frame loop."""
    session, sh, tmp_path = show
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "deep.toml").write_text(
        f'[preset]\nmapping = "x.toml"\n[params]\nx = {deep_array()}\n')
    sh.command("/lj/preset/load", "deep")
    assert "deep.toml" in session.last_error and "too deep" in session.last_error
    assert session.mapping.name == "show"
    reader = ArrayReader(np.zeros(SR, np.float32))
    assert session.params_at(reader, SR // 2) is not None   # the show renders on


def test_a_nested_bindings_sidecar_is_a_warning_not_a_crash(tmp_path, caplog):
    mapping = tmp_path / "show.toml"
    sidecar_path(mapping).write_text(f'[bindings]\n"/a" = {deep_table()}\n')
    b = Controls(smoothing=0.0).bindings
    with caplog.at_level(logging.WARNING, logger="lj.learn"):
        b.attach(mapping, {"/2": "noise"})
    assert b.table == {"/2": "/lj/noise"}
    assert "show.bindings.toml" in caplog.text and "too deep" in caplog.text


def test_lj_run_with_a_nested_config_is_one_line(tmp_path):
    config = tmp_path / "show.toml"
    config.write_text(f"osc-port = {deep_array()}\n")
    line = one_line_error(lj("run", "--config", str(config), "--headless", "--frames", "1",
                             "--no-osc"), "show.toml", "too deep")
    assert len(line) < 300


def test_a_nested_cue_file_is_one_mapping_error(tmp_path):
    path = tmp_path / "cues.toml"
    path.write_text(f"[cues]\nloop = {deep_array()}\n[[cue]]\nat = 0\nscene = \"a\"\n")
    with pytest.raises(MappingError, match="too deep") as err:
        load_cue_file(path)
    assert "cues.toml" in str(err.value)


def test_nested_model_metadata_is_one_model_error(tmp_path):
    """The JSON beside a safetensors file, and the safetensors file's own JSON header."""
    from safetensors.numpy import save_file

    from engine.generators.export import MAX_HEADER, check_header, load_safetensors

    model = tmp_path / "m.safetensors"
    save_file({"w": np.zeros(4, np.float32)}, str(model))
    model.with_suffix(".json").write_text('{"latent_jockey_model": 1, "x": '
                                          + deep_array() + "}")
    with pytest.raises(ModelError, match="too deep") as err:
        load_safetensors(model, memory_limit=1 << 40)
    assert "m.json" in str(err.value)
    check_header(model)  # a real header passes
    header = ('{"__metadata__": {"a": "' + "x" * 10 + '"}, "deep": ' + deep_array() + "}").encode()
    bad = tmp_path / "deep.safetensors"
    bad.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(ModelError, match="too deep"):
        check_header(bad)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((MAX_HEADER + 1).to_bytes(8, "little") + b"{}")
    with pytest.raises(ModelError, match="header length"):
        check_header(huge)


def test_a_npy_header_claiming_terabytes_is_refused_before_allocating(tmp_path):
    path = tmp_path / "k.npy"
    np.save(path, np.ones((3, 4), np.float32))
    data = path.read_bytes()
    i = data.index(b"(3, 4)")
    path.write_bytes(data[:i] + b"(99999999999, 4)" + data[i + 6:])
    with pytest.raises(PresetError, match="header says"):
        read_array(path)


# -- item 12: learned bindings survive any address ---------------------------------------------


@pytest.fixture
def controls(tmp_path, monkeypatch):
    monkeypatch.setattr(learn_mod, "CONFIG_DIR", tmp_path / "config")
    c = Controls(smoothing=0)
    c.declare_param("speed", 1.0, 0.0, 4.0)
    c.declare_trigger("flash")
    return c


EMOJI = ["/pad/😀", "/🎛/fader\U0001F39A", "/𝄞/clef", "/日本/フェーダー"]
#: Not printable: never a learned source, but the writer still writes valid TOML for them.
ODD = ["/a\u200bb", "/x\U000E0041y", "/ctl\x01\x7f\x85"]


def test_learned_emoji_addresses_survive_a_restart(controls, tmp_path):
    """The real learn flow: learn, move a control whose address holds an emoji, then a new
    Bindings (the next start) reads them all back from the sidecar."""
    mapping = tmp_path / "show.toml"
    mapping.write_text("")
    b = controls.bindings
    b.attach(mapping, {})
    targets = ["param.speed", "trigger.flash", "noise", "truncation"]
    for source, target in zip(EMOJI, targets):
        assert b.learn(target)
        assert b.feed(source, 0.5), source
    text = sidecar_path(mapping).read_text(encoding="utf-8")
    assert set(tomllib.loads(text)["bindings"]) == set(EMOJI)
    again = Bindings(Controls(smoothing=0))
    again.attach(mapping, {})
    assert again.table == b.table and len(again.table) == 4


def test_a_surrogate_escape_line_costs_only_that_entry(tmp_path, caplog):
    """A sidecar written by the old code (json.dumps: "\\ud83d\\ude00") and a hand-edited bad line:
    the other entries still load."""
    path = tmp_path / "show.bindings.toml"
    path.write_text('[bindings]\n"/1/fader1" = "param.speed"\n"/pad/\\ud83d\\ude00" = "noise"\n'
                    '"/2/knob" = truncation\n"midi:cc:1:7" = "trigger.flash"\n')
    with caplog.at_level(logging.WARNING, logger="lj.learn"):
        table = read_bindings(path)
    assert table == {"/1/fader1": "/lj/param/speed", "midi:cc:1:7": "/lj/trigger/flash"}
    assert "show.bindings.toml:3" in caplog.text and "show.bindings.toml:4" in caplog.text


def test_a_new_sidecar_that_would_not_load_keeps_the_previous_file(controls, tmp_path,
                                                                     monkeypatch):
    mapping = tmp_path / "show.toml"
    b = controls.bindings
    b.attach(mapping, {})
    b.bind("/1/fader1", "param.speed")
    side = sidecar_path(mapping)
    before = side.read_bytes()
    # fault injection: a writer that produces text TOML refuses
    monkeypatch.setattr(learn_mod, "format_bindings",
                        lambda table, name="": format_bindings(table, name) + '"/x" = \n')
    b.bind("/2/knob", "noise")
    assert side.read_bytes() == before
    assert read_bindings(side) == {"/1/fader1": "/lj/param/speed"}
    assert "/2/knob" in b.table  # still active for this run


def test_format_refuses_lone_surrogates_and_round_trips_every_other_code_point(tmp_path):
    table = {s: "/lj/noise" for s in EMOJI + ODD + ['/q"\\']}
    path = tmp_path / "b.toml"
    path.write_text(format_bindings({**table, "/lone\ud83d": "/lj/noise"}, "m.toml"),
                    encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8"))["bindings"].keys() == table.keys()
