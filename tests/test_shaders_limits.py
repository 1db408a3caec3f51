"""Hostile shader files (issue 17, items 3 and 10): deep JSON headers, huge lists, absurd PASS
sizes, oversize and non-regular files. Each is refused with a one-line ShaderError naming the
file, before the work it would cost; under a running chain (the real Renderer on EGL) and a
running show (the real live loop, headless) the previous version keeps rendering."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time

import numpy as np
import pytest

from engine.errors import ShaderError
from engine.render import isf
from engine.render.context import headless_context
from engine.render.isf import load_isf, parse_isf
from engine.render import pipeline
from engine.render.pipeline import Renderer

IMG = np.full((16, 16, 3), 50, np.uint8)


def tint(r, g, b, passes=""):
    return f"""/*{{"DESCRIPTION": "tint", "INPUTS": [{{"NAME": "inputImage", "TYPE": "image"}}]{passes}}}*/
void main() {{
    gl_FragColor = vec4({r}, {g}, {b}, 1.0);
}}
"""


def deep(n=100_000):
    return "/*{\"INPUTS\": " + "[" * n + "]" * n + "}*/\nvoid main() { gl_FragColor = vec4(1.0); }\n"


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def save(path, text):
    """Write and date the file a second back, so the renderer looks at it once, settled."""
    path.write_text(text)
    past = time.time_ns() - 1_000_000_000
    os.utime(path, ns=(past, past))


def colour(r):
    r.render(IMG)
    return tuple(int(v) for v in r.read()[8, 8])


# -- the parser alone (no GL) -----------------------------------------------------------------


def test_deep_header_is_one_line_with_file_and_line():
    text = "\n" + deep()   # the header starts on line 2
    t0 = time.perf_counter()
    with pytest.raises(ShaderError) as e:
        parse_isf(text, "deep.fs")
    elapsed = time.perf_counter() - t0
    assert one_line(e.value).startswith("deep.fs:2:") and "deep" in str(e.value)
    assert elapsed < 5.0  # a linear scan of 200 kB; the bug was a RecursionError crash


@pytest.mark.parametrize("passes, expect", [
    (', "PASSES": [' + ", ".join(["{}"] * 100_000) + "]", "100000 PASSES entries"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": NaN}]', "finite"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": Infinity}]', "finite"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": 1e999}]', "finite"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": -5}]', "out of range"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": 0}]', "out of range"),
    (', "PASSES": [{"TARGET": "a", "HEIGHT": 1e12}]', "out of range"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": "$WIDTH/0"}]', "positive"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": "$WIDTH*' + "9" * 400 + '"}]', "not understood"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": "$WIDTH*' + "1" * 60_000 + 'x"}]', "not understood"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": ' + "7" * 5000 + "}]", "bad ISF JSON header"),
    (', "PASSES": [{"TARGET": "a", "WIDTH": {"x": 1}}]', "not understood"),
])
def test_hostile_passes_refused(passes, expect):
    t0 = time.perf_counter()
    with pytest.raises(ShaderError) as e:
        parse_isf(tint(1, 0, 0, passes), "p.fs")
    assert expect in one_line(e.value) and str(e.value).startswith("p.fs:1:")
    assert time.perf_counter() - t0 < 5.0


def test_hostile_inputs_refused():
    many = ", ".join(f'{{"NAME": "v{k}", "TYPE": "float"}}' for k in range(isf.MAX_INPUTS + 1))
    text = '/*{"INPUTS": [' + many + ']}*/\nvoid main() {}\n'
    with pytest.raises(ShaderError, match=f"{isf.MAX_INPUTS + 1} INPUTS entries"):
        parse_isf(text, "i.fs")
    values = ", ".join(["1"] * (isf.MAX_VALUES + 1))
    text = '/*{"INPUTS": [{"NAME": "m", "TYPE": "long", "VALUES": [' + values + ']}]}*/\n'
    with pytest.raises(ShaderError, match="VALUES"):
        parse_isf(text, "v.fs")
    text = '/*{"INPUTS": [{"NAME": "g", "TYPE": "float", "DEFAULT": NaN}]}*/\n'
    with pytest.raises(ShaderError, match="finite"):
        parse_isf(text, "n.fs")


def test_oversize_and_non_regular_files_refused(tmp_path):
    big = tmp_path / "big.fs"
    big.write_text(tint(1, 0, 0) + "// padding\n" * (isf.MAX_FILE_BYTES // 10))
    with pytest.raises(ShaderError, match="too large") as e:
        load_isf(big)
    assert one_line(e.value).startswith(str(big))
    fifo = tmp_path / "fifo.fs"
    os.mkfifo(fifo)
    done = {}
    t = threading.Thread(target=lambda: done.setdefault("err", _refusal(fifo)), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO shader blocked"
    assert "regular file" in done["err"]


def _refusal(path):
    try:
        load_isf(path)
    except ShaderError as exc:
        return str(exc)
    return "loaded"


# -- the renderer (EGL) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def test_pass_sizes_are_capped_before_any_buffer(ctx, tmp_path):
    save(tmp_path / "huge.fs", tint(1, 0, 0, ', "PASSES": [{"TARGET": "buf", "FLOAT": true, '
                                              '"WIDTH": "$WIDTH*100", "HEIGHT": "$HEIGHT*100"}, {}]'))
    r = Renderer(ctx, (16, 16), (64, 64), ["huge"], tmp_path)
    assert r.chain == [] and len(r.errors) == 1
    msg = one_line(ShaderError(r.errors[0]))
    assert msg.startswith(f"{tmp_path / 'huge.fs'}:1:") and "PASS 0 (buf)" in msg and "6400x6400" in msg
    r.release()


def test_chain_texture_budget(ctx, tmp_path):
    passes = ', "PASSES": [{"TARGET": "acc", "PERSISTENT": true, "FLOAT": true, "WIDTH": 256, "HEIGHT": 256}, {}]'
    for name in ("a", "b"):
        save(tmp_path / f"{name}.fs", tint(0, 1, 0, passes))
    budget = 2 * 256 * 256 * 8   # exactly one FLOAT 256x256 target (two textures)
    r = Renderer(ctx, (16, 16), (16, 16), ["a", "b"], tmp_path, texture_budget=budget)
    assert r.chain == ["a"]
    assert "b.fs:1:" in r.errors[0] and "MiB" in r.errors[0] and "acc 256x256 FLOAT" in r.errors[0]
    # reloading a within its own share of the budget is fine; growing it past the budget is not
    save(tmp_path / "a.fs", tint(0, 0, 1, passes))
    assert r.reload_changed() == ["a"] and colour(r)[2] > 200
    save(tmp_path / "a.fs", tint(1, 0, 0, passes.replace("256, \"HEIGHT\": 256", "512, \"HEIGHT\": 512")))
    assert r.reload_changed() == [] and colour(r)[2] > 200
    r.release()
    with pytest.raises(ShaderError, match="PASS 1"):
        pipeline.plan_targets(parse_isf(tint(0, 0, 0, ', "PASSES": [{}, {"WIDTH": 20000}]'), "x.fs"),
                     (64, 64), 16384, 1 << 30)


@pytest.mark.parametrize("bad", ["deep", "huge_pass", "many_passes"])
def test_hot_reload_of_a_hostile_file_keeps_the_previous_version(ctx, tmp_path, caplog, bad):
    path = tmp_path / "fx.fs"
    save(path, tint(1, 0, 0))
    r = Renderer(ctx, (16, 16), (16, 16), ["fx"], tmp_path)
    assert colour(r) == (255, 0, 0)
    text = {"deep": deep(),
            "huge_pass": tint(0, 1, 0, ', "PASSES": [{"TARGET": "b", "FLOAT": true, "WIDTH": "$WIDTH*1000"}]'),
            "many_passes": tint(0, 1, 0, ', "PASSES": [' + ", ".join(["{}"] * 100_000) + "]")}[bad]
    save(path, text)
    with caplog.at_level(logging.WARNING, logger="lj.render"):
        assert r.reload_changed() == []
    assert colour(r) == (255, 0, 0), "the previous version keeps running"
    assert len(r.errors) == 1 and r.errors[0].startswith(f"{path}:1:")
    assert any("previous version keeps running" in rec.getMessage() for rec in caplog.records)
    save(path, tint(0, 0, 1))
    assert r.reload_changed() == ["fx"] and colour(r) == (0, 0, 255) and r.errors == []
    r.release()


def test_reload_off_the_frame_loop(ctx, tmp_path):
    """wait=False: the file is read and checked on a thread; a later call compiles it."""
    path = tmp_path / "fx.fs"
    save(path, tint(1, 0, 0))
    r = Renderer(ctx, (16, 16), (16, 16), ["fx"], tmp_path)
    save(path, tint(0, 1, 0))
    assert r.reload_changed(wait=False) == []
    assert colour(r) == (255, 0, 0)
    for _ in range(500):
        if r.reload_changed(wait=False) == ["fx"]:
            break
        time.sleep(0.01)
    assert colour(r) == (0, 255, 0)
    save(path, deep())
    for _ in range(500):
        r.reload_changed(wait=False)
        if r.errors:
            break
        time.sleep(0.01)
    assert r.errors and "deep" in r.errors[0] and colour(r) == (0, 255, 0)
    r.release()


# -- the real show --------------------------------------------------------------------------


def test_deep_header_saved_during_a_show_keeps_it_rendering(tmp_path, monkeypatch, caplog):
    """The live loop (headless EGL, supervised as under --installation) renders a chain whose
    file is replaced by a 100k-deep header mid-show: no crash, no restart, the loop runs on to
    its time limit, the error reported with file:line, the previous version still in the chain."""
    import engine.session
    from engine.audio.demo import demo_song
    from engine.live import LiveOptions, StopFlag, supervise
    from support import PacedSource

    shaders = tmp_path / "shaders"
    shaders.mkdir()
    fx = shaders / "fx.fs"
    save(fx, tint(1, 0, 0))
    monkeypatch.setattr(engine.session, "SHADER_DIR", shaders)
    mapping = tmp_path / "show.toml"
    mapping.write_text('[meta]\nname = "deep"\n[shaders]\nchain = ["fx"]\n')
    samples, sr, _ = demo_song(seconds=30.0)
    stop = StopFlag()
    opts = LiveOptions(mapping=str(mapping), size=32, headless=True, osc_port=None,
                       max_seconds=6)
    timer = threading.Timer(1.0, lambda: save(fx, deep()))   # once the loop is running

    class OnRunning(logging.Handler):
        started = False

        def emit(self, record):
            if record.getMessage().startswith("running:") and not self.started:
                self.started = True
                timer.start()

    handler = OnRunning()
    logging.getLogger("lj").addHandler(handler)
    watchdog = threading.Timer(90, stop)
    watchdog.start()
    try:
        with caplog.at_level(logging.INFO):
            stats = supervise(lambda: PacedSource(samples, sr), opts, stop, delay=0.2)
        ended = time.time()
    finally:
        logging.getLogger("lj").removeHandler(handler)
        timer.cancel()
        watchdog.cancel()
    assert timer.finished.is_set(), "the deep header was saved while the show ran"
    assert stats is not None and stats.frames > 20
    assert stats.controls.value("/lj/state/restarts") in (0, None)
    assert not any("restarting" in rec.getMessage() for rec in caplog.records)
    warned = [rec.getMessage() for rec in caplog.records if "keeps running" in rec.getMessage()]
    assert warned and f"{fx}:1:" in warned[0]
    seen = next(rec.created for rec in caplog.records if "keeps running" in rec.getMessage())
    assert ended - seen > 1.0, "the show went on rendering after the refusal"
    assert stats.session.renderer.chain == ["fx"]
