"""GLFW window on a real Xvfb display: present a frame, read the default framebuffer back,
toggle fullscreen, keys; and the failure without a display."""

from __future__ import annotations

import glfw
import numpy as np
import pytest

from engine.errors import RenderError
from engine.render.context import Window, has_display, key_name
from engine.render.pipeline import Renderer


def test_key_names():
    assert key_name(glfw.KEY_ESCAPE) == "escape"
    assert key_name(glfw.KEY_Q) == "q" and key_name(glfw.KEY_A) == "a" and key_name(glfw.KEY_Z) == "z"
    assert key_name(glfw.KEY_F) == "f" and key_name(glfw.KEY_H) == "h"
    assert key_name(glfw.KEY_SPACE) == "space"
    assert key_name(glfw.KEY_0) == "0" and key_name(glfw.KEY_9) == "9"
    assert key_name(glfw.KEY_KP_3) == "3"
    assert key_name(glfw.KEY_F1) == "f1" and key_name(glfw.KEY_F12) == "f12"
    assert key_name(glfw.KEY_LEFT_SHIFT) is None


def test_no_display_is_one_line_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert has_display() is False
    with pytest.raises(RenderError) as e:
        Window((64, 48))
    assert str(e.value) == "cannot open a window: no display (DISPLAY is not set)"


def _screen(win):
    w, h = win.framebuffer_size
    return np.frombuffer(win.ctx.screen.read(viewport=(0, 0, w, h), components=3),
                         np.uint8).reshape(h, w, 3)


def test_window_presents_frame(xvfb_display):
    assert has_display()
    win = Window((200, 100), title="lj test")
    try:
        assert win.framebuffer_size == (200, 100)
        assert not win.should_close
        r = Renderer(win.ctx, (8, 8), (64, 48), [], "shaders")
        r.render(np.full((8, 8, 3), (30, 160, 220), np.uint8))
        win.ctx.screen.use()
        win.ctx.screen.clear(1.0, 0.0, 0.0, 1.0)
        r.present(win.ctx.screen, win.framebuffer_size)
        px = _screen(win)
        assert tuple(px[50, 100]) == (30, 160, 220)     # picture in the middle
        assert tuple(px[50, 5]) == (0, 0, 0)            # pillarbox bars, not the red clear
        assert tuple(px[50, 195]) == (0, 0, 0)
        win.swap()
        assert win.poll() == []
        r.release()
    finally:
        win.close()
    assert win.should_close
    win.close()  # idempotent


def test_keys_queue_and_fullscreen_toggle(xvfb_display):
    win = Window((160, 120))
    try:
        # the key callback GLFW calls: presses are queued as names, releases ignored
        win._on_key(None, glfw.KEY_H, 0, glfw.PRESS, 0)
        win._on_key(None, glfw.KEY_H, 0, glfw.RELEASE, 0)
        win._on_key(None, glfw.KEY_ESCAPE, 0, glfw.PRESS, 0)
        assert win.poll() == ["h", "escape"]
        assert win.poll() == []
        win.toggle_fullscreen()
        assert win.fullscreen
        for _ in range(20):
            win.poll()
            if win.framebuffer_size == (1280, 720):
                break
        assert win.framebuffer_size == (1280, 720)      # the Xvfb screen
        win.ctx.screen.use()
        win.ctx.screen.clear(0.0, 1.0, 0.0, 1.0)
        win.swap()
        win.toggle_fullscreen()
        assert not win.fullscreen
        for _ in range(20):
            win.poll()
            if win.framebuffer_size == (160, 120):
                break
        assert win.framebuffer_size == (160, 120)
    finally:
        win.close()


def test_headless_and_window_contexts_in_one_process(xvfb_display):
    from engine.render.context import headless_context
    egl = headless_context()                 # EGL current on this thread...
    win = Window((64, 48))                   # ...must not break GLX (libglvnd: one API at a time)
    try:
        win.ctx.screen.use()
        win.ctx.clear(0.0, 1.0, 0.0, 1.0)
        assert tuple(_screen(win)[10, 10]) == (0, 255, 0)
        egl2 = headless_context()            # and back to EGL while the window is open
        fb = egl2.simple_framebuffer((4, 4))
        fb.use()
        egl2.clear(0.0, 0.0, 1.0, 1.0)
        assert fb.read(components=3)[:3] == b"\x00\x00\xff"
        egl2.release()
        win.make_current()
        win.ctx.screen.use()
        win.ctx.clear(1.0, 0.0, 0.0, 1.0)
        assert tuple(_screen(win)[10, 10]) == (255, 0, 0)
    finally:
        win.close()
        egl.release()
