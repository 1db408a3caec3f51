"""Shader files going wrong under a running chain (issue 8), each against the real Renderer on
EGL with the picture read back: saved broken, half-written, deleted, replaced by a directory,
not text at all, edited ten times a second. The chain keeps running (without the effect, or with
its last good version) and the good version is picked up when it comes back."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time

import numpy as np
import pytest

from engine.render.context import headless_context
from engine.render.pipeline import Renderer

IMG = np.full((16, 16, 3), 50, np.uint8)


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def tint(r, g, b):
    return f"""/*{{"DESCRIPTION": "tint", "INPUTS": [{{"NAME": "inputImage", "TYPE": "image"}},
    {{"NAME": "gain", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 1.0}}]}}*/
void main() {{
    vec3 c = vec3({r}, {g}, {b}) * gain;
    gl_FragColor = vec4(c, 1.0);
}}
"""


BROKEN = """/*{"DESCRIPTION": "broken", "INPUTS": [{"NAME": "inputImage", "TYPE": "image"}]}*/
void main() {
    vec3 c = IMG_THIS_PIXEL(inputImage).rgb;

    gl_FragColor = vec4(c * not_declared, 1.0);
}
"""


def save(path, text):
    """Write like an editor that saves in place, and let the change settle (older than
    the renderer's settle time) so the next reload_changed looks at it once."""
    path.write_text(text)
    past = time.time_ns() - 1_000_000_000
    os.utime(path, ns=(past, past))


def colour(r):
    r.render(IMG)
    return tuple(int(v) for v in r.read()[8, 8])


@pytest.fixture
def chain(ctx, tmp_path):
    """A chain 'tint' (red) followed by the shipped grade effect (neutral by default)."""
    path = tmp_path / "tint.fs"
    save(path, tint(1.0, 0.0, 0.0))
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "shaders", "grade.fs"),
                tmp_path / "grade.fs")
    r = Renderer(ctx, (16, 16), (16, 16), ["tint", "grade"], tmp_path)
    assert r.errors == [] and r.chain == ["tint", "grade"]
    assert colour(r)[0] > 200 and colour(r)[1] < 30
    yield r, path
    r.release()


def test_saved_broken_reports_file_line_and_glsl_log(chain, caplog):
    r, path = chain
    red = colour(r)
    with caplog.at_level(logging.WARNING, logger="lj.render"):
        save(path, BROKEN)
        assert r.reload_changed() == []
    assert len(r.errors) == 1 and r.errors[0].startswith(f"{path}:5:")
    assert "not_declared" in r.errors[0]
    # the log carries the GLSL compiler's own log, with the file's line numbers
    assert f"{path}:5:" in caplog.text and "not_declared" in caplog.text
    assert colour(r) == red and r.chain == ["tint", "grade"]   # last good version runs
    save(path, tint(0.0, 1.0, 0.0))
    assert r.reload_changed() == ["tint"] and r.errors == []
    assert colour(r)[1] > 200


def test_half_written_file(chain):
    r, path = chain
    red = colour(r)
    good = tint(0.0, 0.0, 1.0)
    for cut in (len(good) // 5, len(good) // 2, len(good) - 10):   # header, body, last brace
        save(path, good[:cut])
        assert r.reload_changed() == []
        assert len(r.errors) == 1 and str(path) in r.errors[0]
        assert colour(r) == red
    save(path, good)                                            # the editor finishes the save
    assert r.reload_changed() == ["tint"] and r.errors == []
    assert colour(r)[2] > 200


def test_deleted_then_back(chain, caplog):
    r, path = chain
    red = colour(r)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="lj.render"):
        assert r.reload_changed() == []
    assert "gone" in caplog.text
    for _ in range(3):
        assert colour(r) == red
        assert r.reload_changed() == []
    save(path, tint(1.0, 1.0, 0.0))
    assert r.reload_changed() == ["tint"]
    assert colour(r)[:2] > (200, 200)


def test_replaced_by_a_directory_then_back(chain):
    r, path = chain
    red = colour(r)
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("not a shader")
    assert r.reload_changed() == []
    assert len(r.errors) == 1 and "directory" in r.errors[0].lower()
    assert colour(r) == red and r.chain == ["tint", "grade"]
    assert r.reload_changed() == [] and len(r.errors) == 1      # reported once
    shutil.rmtree(path)
    save(path, tint(0.0, 1.0, 1.0))
    assert r.reload_changed() == ["tint"] and r.errors == []
    assert colour(r)[1:] > (200, 200)


def test_binary_garbage(chain):
    r, path = chain
    red = colour(r)
    path.write_bytes(bytes(range(256)) * 4)
    assert r.reload_changed() == []
    assert len(r.errors) == 1 and str(path) in r.errors[0]
    assert colour(r) == red


def test_broken_from_the_start_runs_without_it_until_fixed(ctx, tmp_path):
    path = tmp_path / "tint.fs"
    save(path, BROKEN)
    r = Renderer(ctx, (16, 16), (16, 16), ["tint"], tmp_path)
    assert r.chain == [] and len(r.errors) == 1
    assert colour(r) == (50, 50, 50)                            # the chain runs without it
    save(path, tint(1.0, 0.0, 1.0))
    assert r.reload_changed() == ["tint"]
    assert colour(r) == (255, 0, 255)
    r.release()


def test_edited_ten_times_a_second(ctx, tmp_path):
    """A writer thread saves the file ten times a second for 3 s, in place, alternating a good
    version, a broken one and half-written ones, with no mtime tricks; the renderer polls and
    draws at ~30 fps meanwhile. Nothing raises, every frame is either a good version or the last
    good one, and the final good version is what runs at the end."""
    path = tmp_path / "tint.fs"
    path.write_text(tint(1.0, 0.0, 0.0))
    r = Renderer(ctx, (16, 16), (16, 16), ["tint"], tmp_path)
    versions = [tint(1.0, 0.0, 0.0), BROKEN, tint(0.0, 1.0, 0.0)[:120], tint(0.0, 0.0, 1.0),
                tint(0.0, 1.0, 0.0)[:-20], tint(1.0, 1.0, 1.0)]
    allowed = {(255, 0, 0), (0, 0, 255), (255, 255, 255)}
    done = threading.Event()

    def writer():
        for i in range(30):
            with open(path, "w") as f:           # truncate + write in two chunks, like editors
                text = versions[i % len(versions)]
                f.write(text[: len(text) // 2])
                f.flush()
                f.write(text[len(text) // 2:])
            time.sleep(0.1)
        path.write_text(tint(0.0, 0.0, 1.0))     # the final, good save
        done.set()

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    seen = set()
    while not done.is_set():
        r.reload_changed()
        c = colour(r)
        seen.add(c)
        assert c in allowed, c
        time.sleep(1 / 30)
    th.join(5)
    deadline = time.monotonic() + 5
    while colour(r) != (0, 0, 255) and time.monotonic() < deadline:  # settles, then picked up
        r.reload_changed()
        time.sleep(0.05)
    assert colour(r) == (0, 0, 255)
    assert r.chain == ["tint"]
    assert len(seen) >= 2                        # it really did reload while being edited
    r.release()
