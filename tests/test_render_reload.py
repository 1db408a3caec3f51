"""Shader hot reload (Renderer.reload_changed) and still capture (Renderer.save_png) on a real EGL
context: shader files are edited on disk between frames and the picture is read back."""

from __future__ import annotations

import itertools
import logging
import os

import numpy as np
import pytest
from PIL import Image

from engine.errors import RenderError
from engine.render.context import headless_context
from engine.render.pipeline import Renderer


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


_bump = itertools.count(1)


def write(path, text):
    """Write a shader and move its mtime forward, so the edit is seen whatever the file
    system's timestamp granularity."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + next(_bump) * 1_000_000_000))


def tint(r, g, b):
    return f"""/*{{"DESCRIPTION": "test tint", "INPUTS": [{{"NAME": "inputImage", "TYPE": "image"}}]}}*/
void main() {{
    gl_FragColor = vec4({r}, {g}, {b}, 1.0);
}}
"""


BROKEN = """/*{"DESCRIPTION": "broken", "INPUTS": [{"NAME": "inputImage", "TYPE": "image"}]}*/
void main() {
    vec3 c = IMG_THIS_PIXEL(inputImage).rgb;
    gl_FragColor = vec4(c * undefined_thing, 1.0);
}
"""

COUNTER = """/*{{"DESCRIPTION": "adds {step} to a persistent buffer each frame",
    "INPUTS": [{{"NAME": "inputImage", "TYPE": "image"}}],
    "PASSES": [{{"TARGET": "acc", "PERSISTENT": true, "FLOAT": true{size}}}, {{}}]}}*/
void main() {{
    if (PASSINDEX == 0) {{
        gl_FragColor = vec4(IMG_THIS_PIXEL(acc).rgb + {step}, 1.0);
    }} else {{
        gl_FragColor = vec4(IMG_THIS_PIXEL(acc).rgb, 1.0);
    }}
}}
"""

IMG = np.full((16, 16, 3), 50, np.uint8)


def colour(r):
    r.render(IMG)
    return tuple(int(v) for v in r.read()[8, 8])


def test_unchanged_files_are_not_reloaded(ctx, tmp_path):
    write(tmp_path / "tint.fs", tint(1.0, 0.0, 0.0))
    r = Renderer(ctx, (16, 16), (16, 16), ["tint"], tmp_path)
    assert r.reload_changed() == [] and r.reload_changed() == []
    assert colour(r) == (255, 0, 0)
    r.release()


def test_good_broken_good(ctx, tmp_path, caplog):
    path = tmp_path / "tint.fs"
    write(path, tint(1.0, 0.0, 0.0))
    r = Renderer(ctx, (16, 16), (16, 16), ["tint"], tmp_path)
    assert colour(r) == (255, 0, 0)

    write(path, tint(0.0, 1.0, 0.0))
    assert r.reload_changed() == ["tint"]
    assert colour(r) == (0, 255, 0)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lj.render"):
        write(path, BROKEN)
        assert r.reload_changed() == []
    assert len(r.errors) == 1
    assert r.errors[0].startswith(f"{path}:4:")                  # file and line of the error
    assert "undefined_thing" in r.errors[0]                      # the compiler's message
    assert "\n" not in r.errors[0]
    assert f"{path}:4:" in caplog.text
    assert colour(r) == (0, 255, 0)                              # the old version keeps running
    assert r.chain == ["tint"]
    assert r.reload_changed() == [] and len(r.errors) == 1      # reported once per change

    write(path, tint(0.0, 0.0, 1.0))
    assert r.reload_changed() == ["tint"]
    assert colour(r) == (0, 0, 255)
    assert r.errors == []                                        # the fixed file's error is gone
    r.release()


def test_deleted_file_keeps_the_effect(ctx, tmp_path, caplog):
    path = tmp_path / "tint.fs"
    write(path, tint(1.0, 1.0, 0.0))
    r = Renderer(ctx, (16, 16), (16, 16), ["tint"], tmp_path)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="lj.render"):
        assert r.reload_changed() == []
    assert "gone" in caplog.text
    assert colour(r) == (255, 255, 0) and r.chain == ["tint"]
    write(path, tint(1.0, 0.0, 1.0))                             # it comes back: reloaded
    assert r.reload_changed() == ["tint"]
    assert colour(r) == (255, 0, 255)
    r.release()


def test_an_effect_that_never_loaded_is_loaded_once_fixed(ctx, tmp_path):
    path = tmp_path / "tint.fs"
    write(path, BROKEN)
    r = Renderer(ctx, (16, 16), (16, 16), ["grade_missing", "tint"], tmp_path)
    assert r.chain == [] and len(r.errors) == 2
    assert colour(r) == (50, 50, 50)
    write(path, tint(0.0, 1.0, 1.0))
    assert r.reload_changed() == ["tint"]
    assert r.chain == ["tint"] and colour(r) == (0, 255, 255)
    assert len(r.errors) == 1 and "grade_missing" in r.errors[0]
    r.release()


def test_persistent_buffers_survive_a_reload_when_sizes_match(ctx, tmp_path):
    path = tmp_path / "count.fs"
    write(path, COUNTER.format(step="0.1", size=""))
    r = Renderer(ctx, (16, 16), (16, 16), ["count"], tmp_path)
    for _ in range(3):
        colour(r)
    assert abs(colour(r)[0] - 102) <= 2                          # 4 frames of 0.1
    write(path, COUNTER.format(step="0.2", size=""))
    assert r.reload_changed() == ["count"]
    assert abs(colour(r)[0] - 153) <= 2                          # 0.4 kept, + 0.2
    write(path, COUNTER.format(step="0.2", size=', "WIDTH": "$WIDTH/2"'))
    assert r.reload_changed() == ["count"]
    assert abs(colour(r)[0] - 51) <= 2                           # new size: a fresh buffer
    r.release()


def test_save_png_writes_the_output_as_shown(ctx, tmp_path):
    from pathlib import Path
    shaders = Path(__file__).resolve().parent.parent / "shaders"
    img = np.zeros((24, 32, 3), np.uint8)
    img[:12] = (200, 40, 10)
    r = Renderer(ctx, (32, 24), (64, 48), ["grade"], shaders)
    with pytest.raises(RenderError, match="no frame rendered yet"):
        r.save_png(tmp_path / "early.png")
    r.render(img, {"grade.saturation": 0.0})
    out = tmp_path / "still.png"
    assert r.save_png(out) == out
    saved = np.asarray(Image.open(out))
    assert saved.shape == (48, 64, 3)                            # output size, top row first
    assert np.array_equal(saved, r.read())
    assert np.ptp(saved[5, 5]) <= 1 and saved[5, 5, 0] > 40     # the grade applied (grey)
    assert saved[40, 5].max() <= 1
    r.release()


def test_save_png_unwritable_path_is_one_line(ctx, tmp_path):
    r = Renderer(ctx, (8, 8), (8, 8), [], tmp_path)
    r.render(np.zeros((8, 8, 3), np.uint8))
    bad = tmp_path / "no_such_dir" / "still.png"
    with pytest.raises(RenderError) as exc:
        r.save_png(bad)
    msg = str(exc.value)
    assert "\n" not in msg and str(bad) in msg and "cannot save still" in msg
    assert not bad.exists()
    r.release()
