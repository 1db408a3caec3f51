"""shaders/transition.fs through the real Renderer on EGL: a held picture (Renderer.hold) or a fed
one (Renderer.set_image) mixed with the live picture by crossfade, wipe, luma key and dissolve."""

from __future__ import annotations

import numpy as np
import pytest

from engine.render.context import headless_context
from engine.render.isf import load_isf
from engine.render.pipeline import Renderer
from engine.session import chain_inputs
from engine.paths import SHADER_DIR

W, H = 32, 16
A = np.full((H, W, 3), 200, np.uint8)
B = np.full((H, W, 3), 20, np.uint8)


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


@pytest.fixture
def held(ctx):
    r = Renderer(ctx, (W, H), (W, H), ["transition"], SHADER_DIR)
    assert r.errors == [] and r.chain == ["transition"]
    r.render(A)
    r.hold()          # A, as shown, becomes startImage
    yield r
    r.release()


def frame(r, progress, mode, softness=0.0, angle=0.0, image=B):
    r.render(image, {"transition.progress": progress, "transition.mode": mode,
                     "transition.softness": softness, "transition.angle": angle})
    return r.read()[..., 0].astype(int)


def test_is_an_isf_transition_with_mappable_inputs():
    shader = load_isf(SHADER_DIR / "transition.fs")
    assert "Transition" in shader.categories
    images = [i.name for i in shader.inputs if i.type == "image"]
    assert images == ["startImage", "endImage"]   # the ISF transition convention
    names = chain_inputs(["transition"], SHADER_DIR)
    assert {"transition.progress", "transition.mode", "transition.angle",
            "transition.softness"} <= set(names)
    assert names["transition.progress"] == (1.0, 0.0, 1.0)


def test_default_passes_the_live_picture_through(ctx):
    r = Renderer(ctx, (W, H), (W, H), ["transition"], SHADER_DIR)
    img = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    r.render(img)                      # nothing held, default progress 1
    assert np.abs(r.read().astype(int) - img).max() <= 1
    r.render(img, {"transition.progress": 0.0})  # nothing held: start = the live picture too
    assert np.abs(r.read().astype(int) - img).max() <= 1
    r.release()


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_every_mode_goes_from_start_to_end(held, mode):
    assert (frame(held, 0.0, mode) == 200).all()
    assert (frame(held, 1.0, mode) == 20).all()


def test_crossfade_is_linear(held):
    assert np.abs(frame(held, 0.25, 0) - (200 + 0.25 * (20 - 200))).max() <= 1
    assert np.abs(frame(held, 0.5, 0) - 110).max() <= 1


def test_wipe_follows_its_angle(held):
    half = frame(held, 0.5, 1)                      # angle 0: from the left edge
    assert (half[:, : W // 2 - 1] == 20).all() and (half[:, W // 2 + 1:] == 200).all()
    half = frame(held, 0.5, 1, angle=0.5)           # half a turn: from the right edge
    assert (half[:, : W // 2 - 1] == 200).all() and (half[:, W // 2 + 1:] == 20).all()
    # a soft edge has intermediate values, a hard one none
    soft = frame(held, 0.5, 1, softness=0.5)
    assert ((soft > 25) & (soft < 195)).any()


def test_luma_key_reveals_dark_parts_of_the_start_picture_first(ctx):
    r = Renderer(ctx, (W, H), (W, H), ["transition"], SHADER_DIR)
    start = np.zeros((H, W, 3), np.uint8)
    start[:, W // 2:] = 230                          # dark left half, bright right half
    r.set_image("startImage", start)
    out = frame(r, 0.5, 2, image=np.full((H, W, 3), 90, np.uint8))
    assert (out[:, : W // 2] == 90).all()            # dark: already the live picture
    assert (out[:, W // 2:] == 230).all()            # bright: still the start picture
    r.set_image("startImage", None)
    r.release()


def test_dissolve_mixes_pixels_in_proportion(held):
    out = frame(held, 0.3, 3)
    share = (out == 20).mean()
    assert set(np.unique(out)) <= {20, 200}
    assert 0.15 < share < 0.45
    assert (frame(held, 0.7, 3) == 20).mean() > share   # more of the end picture later


def test_hold_follows_the_chain_output_after_effects(ctx):
    r = Renderer(ctx, (W, H), (W, H), ["grade", "transition"], SHADER_DIR)
    r.render(A, {"grade.saturation": 1.0})
    shown = r.read().copy()
    r.hold()
    r.render(B, {"transition.progress": 0.0})
    assert np.abs(r.read().astype(int) - shown).max() <= 1
    r.release()


def test_set_image_rejects_bad_arrays(ctx):
    from engine.errors import RenderError

    r = Renderer(ctx, (W, H), (W, H), ["transition"], SHADER_DIR)
    with pytest.raises(RenderError, match="startImage"):
        r.set_image("startImage", np.zeros((4, 4), np.float32))
    r.release()
