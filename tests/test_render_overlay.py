"""The h overlay on a real EGL context: text box top-left, blended, re-rasterised on change."""

from __future__ import annotations

import numpy as np
import pytest

from engine.render.context import headless_context
from engine.render.overlay import Overlay


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def test_overlay_draws_text_box_top_left(ctx):
    fbo = ctx.simple_framebuffer((320, 200))
    ov = Overlay(ctx)
    ov.set_lines(["fps 60.0", "frame 16.7 ms", "bass 0.42"])
    w, h = ov.size
    assert 30 < w < 300 and 20 < h < 190
    fbo.use()
    fbo.clear(0.5, 0.5, 0.5, 1.0)
    ov.draw((320, 200))
    px = np.frombuffer(fbo.read(components=3), np.uint8).reshape(200, 320, 3)[::-1]  # top first
    box = px[8:8 + h, 8:8 + w].astype(int)
    assert (box.min(axis=2) < 100).mean() > 0.5          # dark backdrop over mid grey
    assert (box.min(axis=2) > 200).any()                 # white text
    assert (px[190:, 300:] == 127).all() or (px[190:, 300:] == 128).all()   # rest untouched
    assert (px[2, 2].astype(int) >= 126).all()           # margin untouched
    tex = ov._tex
    ov.set_lines(["fps 59.9", "frame 16.7 ms", "bass 0.40"])   # same size class: reused
    assert ov._tex is tex
    ov.set_lines([])
    fbo.clear(0.5, 0.5, 0.5, 1.0)
    ov.draw((320, 200))
    assert np.ptp(np.frombuffer(fbo.read(components=3), np.uint8)) == 0
    ov.release()
    fbo.release()
