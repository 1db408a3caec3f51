"""The screen: output size independent of the generator's (bicubic upscale), letterbox / crop /
stretch, monitors and vsync, on a real GLFW window under Xvfb with the framebuffer read back,
plus the same scaling on EGL."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import RenderError
from engine.live import LiveOptions, StopFlag, run_live
from engine.render.context import Window, describe_monitors, headless_context, list_monitors
from engine.render.pipeline import FIT_MODES, Renderer, fit_scale
from support import PacedSource

SHADERS = "shaders"


def bands():
    """8x8: top quarter blue, bottom quarter green, a grey middle (top row first)."""
    img = np.full((8, 8, 3), 128, np.uint8)
    img[:2] = (0, 0, 255)
    img[6:] = (0, 255, 0)
    return img


def screen(win):
    """The window's framebuffer, top row first."""
    w, h = win.framebuffer_size
    px = np.frombuffer(win.ctx.screen.read(viewport=(0, 0, w, h), components=3), np.uint8)
    return px.reshape(h, w, 3)[::-1]


def test_fit_scale():
    assert fit_scale((100, 100), (200, 100), "stretch") == (1.0, 1.0)
    assert fit_scale((100, 100), (100, 100), "crop") == (1.0, 1.0)
    # a square into a 2:1 frame: letterbox shows twice the source width (bars left and right);
    # crop shows half its height
    assert fit_scale((100, 100), (200, 100), "letterbox") == (2.0, 1.0)
    assert fit_scale((100, 100), (200, 100), "crop") == (1.0, 0.5)
    assert fit_scale((200, 100), (100, 100), "letterbox") == (1.0, 2.0)
    assert fit_scale((200, 100), (100, 100), "crop") == (0.5, 1.0)
    with pytest.raises(RenderError, match="letterbox, crop, stretch"):
        fit_scale((1, 1), (1, 1), "zoom")
    assert FIT_MODES == ("letterbox", "crop", "stretch")


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def test_bicubic_upscale_keeps_ramps_and_sharpens_edges(ctx):
    ramp = np.zeros((4, 8, 3), np.uint8)
    ramp[:] = (np.arange(8) * 30 + 10)[None, :, None]
    r = Renderer(ctx, (8, 4), (64, 32), [], SHADERS, fit="stretch")
    r.render(ramp)
    row = r.read()[16, :, 0].astype(float)
    centres = np.arange(8) * 8 + 4            # output pixel at each source texel's centre
    assert np.abs(row[centres[1:-1]] - (np.arange(1, 7) * 30 + 10)).max() <= 2
    assert np.abs(np.diff(row[12:52]) - 30 / 8).max() < 1.0  # a linear ramp stays linear
    step = np.full((4, 8, 3), 50, np.uint8)
    step[:, 4:] = 200
    r.render(step)
    cubic = r.read()[16, :, 0].astype(int)
    r.release()
    lin = Renderer(ctx, (8, 4), (64, 32), [], SHADERS, fit="stretch", bicubic=False)
    lin.render(step)
    linear = lin.read()[16, :, 0].astype(int)
    lin.release()
    # Catmull-Rom rings a little at an edge (the sharpness) and is steeper; bilinear never leaves
    # the range and ramps over a whole texel
    assert cubic.min() < 50 - 5 and cubic.max() > 200 + 5
    assert linear.min() == 50 and linear.max() == 200
    assert np.abs(np.diff(cubic)).max() > np.abs(np.diff(linear)).max()


@pytest.mark.parametrize("fit", FIT_MODES)
def test_generator_to_output_fit(ctx, fit):
    """A square generator frame into a 2:1 output."""
    r = Renderer(ctx, (8, 8), (64, 32), ["vignette"], SHADERS, fit=fit)
    r.render(bands(), {"vignette.amount": 0.0})
    out = r.read().astype(int)
    r.release()
    left, top = out[16, 2], out[1, 32]
    if fit == "letterbox":
        assert tuple(left) == (0, 0, 0) and top[2] > 200          # bars at the sides
    elif fit == "crop":
        assert left[0] > 100 and abs(top[2] - 128) < 40           # filled; top quarter cut off
    else:
        assert left[0] > 100 and top[2] > 200                     # filled; all of it, squashed


@pytest.mark.parametrize("fit", FIT_MODES)
def test_window_fit_modes_read_back(xvfb_display, fit):
    win = Window((200, 100), title=f"lj fit {fit}", vsync=False)
    try:
        r = Renderer(win.ctx, (8, 8), (64, 64), [], SHADERS, fit=fit)
        r.render(bands())
        win.ctx.screen.use()
        win.ctx.screen.clear(1.0, 0.0, 1.0, 1.0)   # magenta: anything not drawn shows
        r.present(win.ctx.screen, win.framebuffer_size)
        px = screen(win).astype(int)
        win.swap()
        r.release()
    finally:
        win.close()
    assert not ((px[..., 0] == 255) & (px[..., 2] == 255) & (px[..., 1] == 0)).any()
    if fit == "letterbox":
        assert tuple(px[50, 10]) == (0, 0, 0) and tuple(px[50, 190]) == (0, 0, 0)
        assert px[3, 100, 2] > 200 and px[96, 100, 1] > 200      # whole picture, top to bottom
        assert abs(int((px[50, :, 0] > 0).sum()) - 100) <= 2       # 100 px wide: aspect kept
    elif fit == "crop":
        assert px[50, 5, 0] > 100 and px[50, 195, 0] > 100         # no bars
        assert px[3, 100, 2] < 200                                 # the blue top quarter is cut
    else:
        assert px[50, 5, 0] > 100 and px[3, 100, 2] > 200 and px[96, 100, 1] > 200


def test_monitors_are_listed_and_a_wrong_one_is_one_line(xvfb_display):
    mons = list_monitors()
    assert len(mons) >= 1
    assert (mons[0]["width"], mons[0]["height"]) == (1280, 720)   # the Xvfb screen
    assert "0: " in describe_monitors(mons) and "1280x720" in describe_monitors(mons)
    with pytest.raises(RenderError, match=r"no monitor 7 \(this display has 1"):
        Window((64, 64), monitor=7)
    win = Window((64, 64), monitor=0, vsync=True)     # windowed on monitor 0, vsync on
    try:
        win.toggle_fullscreen()
        assert win.fullscreen and win.framebuffer_size == (1280, 720)
    finally:
        win.close()


def test_live_loop_output_size_and_fit(xvfb_display):
    sr = 44100
    src = PacedSource(np.zeros((sr * 2, 2), np.float32), sr)
    opts = LiveOptions(size=32, output_size=(96, 54), fit="crop", osc_port=None, max_frames=4,
                       vsync=False, watch=False)
    stats = run_live(src, opts, StopFlag())
    r = stats.session.renderer
    assert stats.frames == 4
    assert r.input_size == (32, 32) and r.output_size == (96, 54) and r.fit == "crop"


def test_cli_rejects_bad_sizes_and_fits(capsys):
    from engine.cli import build_parser

    p = build_parser()
    args = p.parse_args(["run", "--output-size", "1920x1080", "--fit", "crop"])
    assert args.output_size == (1920, 1080) and args.fit == "crop"
    for bad in (["run", "--output-size", "big"], ["run", "--fit", "zoom"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)
