"""Renderer on a real EGL context: upload, effect chain, persistent buffers, read-back, present."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.render.context import headless_context
from engine.render.pipeline import Renderer

SHADERS = Path(__file__).resolve().parent.parent / "shaders"


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def solid(w, h, rgb):
    return np.full((h, w, 3), rgb, np.uint8)


def quadrants(w, h):
    """Top-left red, top-right green, bottom-left blue, bottom-right white (top row first)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2:] = (0, 255, 0)
    img[h // 2:, : w // 2] = (0, 0, 255)
    img[h // 2:, w // 2:] = (255, 255, 255)
    return img


def test_empty_chain_is_identity(ctx):
    img = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    r = Renderer(ctx, (64, 48), (64, 48), [], SHADERS)
    r.render(img)
    out = r.read()
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).max() <= 1
    r.release()


def test_empty_chain_scales_and_keeps_row_order(ctx):
    r = Renderer(ctx, (32, 24), (128, 96), [], SHADERS)
    r.render(quadrants(32, 24))
    out = r.read()
    assert out.shape == (96, 128, 3)
    assert tuple(out[10, 10]) == (255, 0, 0)       # top-left stays top-left
    assert tuple(out[10, 118]) == (0, 255, 0)
    assert tuple(out[86, 10]) == (0, 0, 255)
    assert tuple(out[86, 118]) == (255, 255, 255)
    r.release()


def test_read_into_preallocated(ctx):
    r = Renderer(ctx, (16, 16), (16, 16), [], SHADERS)
    r.render(solid(16, 16, (10, 20, 30)))
    buf = np.zeros((16, 16, 3), np.uint8)
    assert r.read(out=buf) is buf
    assert np.abs(buf.astype(int) - (10, 20, 30)).max() <= 1
    r.release()


def test_grade_neutral_by_default_and_grey_at_zero_saturation(ctx):
    img = solid(32, 32, (200, 60, 30))
    r = Renderer(ctx, (32, 32), (32, 32), ["grade"], SHADERS)
    assert r.errors == []
    r.render(img)
    assert np.abs(r.read().astype(int) - img).max() <= 2
    r.render(img, {"grade.saturation": 0.0})
    out = r.read().astype(int)
    assert np.ptp(out[16, 16]) <= 1, out[16, 16]          # R == G == B
    assert 40 < out[16, 16, 0] < 160                       # a mid grey, not black or white
    r.release()


def test_uniforms_clamped_to_min_max(ctx):
    img = solid(16, 16, (100, 100, 100))
    r = Renderer(ctx, (16, 16), (16, 16), ["grade"], SHADERS)
    assert r.inputs["grade.brightness"] == (1.0, 0.0, 2.0)
    r.render(img, {"grade.brightness": 2.0})
    at_max = r.read()
    r.render(img, {"grade.brightness": 50.0})
    assert np.array_equal(r.read(), at_max)
    assert at_max[8, 8, 0] >= 198
    r.render(img, {"grade.brightness": -3.0})
    assert r.read().max() == 0                             # clamped to 0, not negative
    r.release()


def _trail(ctx, amount, frames=6):
    r = Renderer(ctx, (32, 32), (32, 32), ["feedback"], SHADERS)
    u = {"feedback.amount": amount, "feedback.zoom": 0.0, "feedback.rotate": 0.0}
    r.render(solid(32, 32, (255, 255, 255)), u, time=0.0)
    values = []
    for i in range(1, frames + 1):
        r.render(solid(32, 32, (0, 0, 0)), u, time=i / 60)
        values.append(int(r.read()[16, 16, 0]))
    r.release()
    return values


def test_feedback_trails_decay_but_persist(ctx):
    values = _trail(ctx, 0.8)
    assert all(a > b for a, b in zip(values, values[1:])), values   # decays every frame
    assert values[-1] > 0, values                                   # ...but is still there
    assert abs(values[0] - 0.8 * 255) <= 3, values                  # 0.8 per 1/60 s
    assert abs(values[-1] - 0.8 ** 6 * 255) <= 3, values


def test_feedback_amount_zero_leaves_no_trail(ctx):
    assert _trail(ctx, 0.0, frames=3) == [0, 0, 0]


def test_chain_of_all_effects_renders(ctx):
    r = Renderer(ctx, (64, 48), (96, 72), ["feedback", "rgb_shift", "grade", "vignette"],
                 SHADERS)
    assert r.errors == [] and r.chain == ["feedback", "rgb_shift", "grade", "vignette"]
    img = quadrants(64, 48)
    for i in range(3):
        r.render(img, {"vignette.amount": 1.0}, time=i / 30)
    out = r.read().astype(int)
    assert out[0, 0].sum() < out[18, 24].sum()    # vignette darkens the corner
    r.release()


def test_broken_effect_skipped_rest_runs(ctx, tmp_path, caplog):
    shutil.copy(SHADERS / "grade.fs", tmp_path / "grade.fs")
    (tmp_path / "broken.fs").write_text(
        '/*{"INPUTS": [{"NAME": "inputImage", "TYPE": "image"}]}*/\n'
        "void main() {\n"
        "    vec4 c = IMG_THIS_PIXEL(inputImage);\n"
        "    gl_FragColor = c * nope_undeclared;\n"
        "}\n")
    with caplog.at_level("WARNING", logger="lj.render"):
        r = Renderer(ctx, (16, 16), (16, 16), ["broken", "grade", "missing"], tmp_path)
    assert r.chain == ["grade"]
    assert len(r.errors) == 2
    assert f"{tmp_path / 'broken.fs'}:4:" in r.errors[0]
    assert "missing.fs" in r.errors[1]
    assert all("\n" not in e for e in r.errors)
    assert "broken.fs:4" in caplog.text
    r.render(solid(16, 16, (200, 60, 30)), {"grade.saturation": 0.0})
    assert np.ptp(r.read()[8, 8].astype(int)) <= 1          # grade still ran
    r.set_chain([])
    assert r.errors == [] and r.chain == []
    r.release()


def test_audio_uniform_fed_when_declared(ctx, tmp_path):
    (tmp_path / "pulse.fs").write_text(
        '/*{"INPUTS": []}*/\n'
        "uniform float lj_bass;\n"
        "void main() { gl_FragColor = vec4(lj_bass, 0.0, 0.0, 1.0); }\n")
    r = Renderer(ctx, (8, 8), (8, 8), ["pulse"], tmp_path)
    r.render(solid(8, 8, (0, 0, 0)), {}, 0.0, {"bass": 0.5})
    assert abs(int(r.read()[4, 4, 0]) - 128) <= 1
    r.render(solid(8, 8, (0, 0, 0)), {}, 0.0, {})
    assert r.read()[4, 4, 0] == 0                            # missing feature -> 0
    r.release()


def test_present_letterboxes(ctx):
    r = Renderer(ctx, (16, 16), (64, 48), [], SHADERS, fit="stretch")  # 4:3 into a wide target
    r.render(solid(16, 16, (0, 200, 0)))
    target = ctx.simple_framebuffer((120, 48))
    target.use()
    target.clear(1.0, 0.0, 1.0, 1.0)
    r.present(target, (120, 48), fit="letterbox")
    px = np.frombuffer(target.read(components=3), np.uint8).reshape(48, 120, 3)
    assert tuple(px[24, 60]) == (0, 200, 0)                 # picture in the middle
    assert tuple(px[24, 2]) == (0, 0, 0)                    # black bars at the sides
    assert tuple(px[24, 117]) == (0, 0, 0)
    assert (px[:, 28:92] == (0, 200, 0)).all()              # 64 px wide, centred
    target.release()
    r.release()


def test_set_chain_reuses_unchanged_effect(ctx):
    r = Renderer(ctx, (16, 16), (16, 16), ["feedback"], SHADERS)
    first = r._effects[0]
    r.set_chain(["feedback", "grade"])
    assert r._effects[0] is first and r.chain == ["feedback", "grade"]
    r.release()
