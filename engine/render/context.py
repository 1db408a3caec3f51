"""OpenGL contexts: a headless EGL context (render, tests) or a GLFW window (live show).

Both give a :class:`moderngl.Context` with at least OpenGL 3.3 core. Every failure is a
:class:`~engine.errors.RenderError` whose ``str()`` is one line.

GLFW is initialised lazily and terminated again when the last :class:`Window` closes, so a
process can open a window, close it and open another (on another display) later. All GLFW calls
must come from the main thread.
"""

from __future__ import annotations

import ctypes
import os
from collections import deque

import glfw
import moderngl

from engine.errors import RenderError

__all__ = ["headless_context", "has_display", "key_name", "list_monitors", "Window"]

_open_windows = 0  # Windows alive; GLFW is terminated when this drops to 0.


def _release_egl_thread() -> None:
    """Drop this thread's current EGL context, if libEGL is loaded at all.

    libglvnd lets a thread have a current context of one window-system API only: after an EGL
    context was made current, glXMakeCurrent fails with X BadAccess (which kills the process).
    """
    try:
        lib = ctypes.CDLL("libEGL.so.1", mode=os.RTLD_NOLOAD)
    except OSError:
        return  # EGL never loaded: nothing can be current
    lib.eglReleaseThread()


def _release_glx_thread() -> None:
    """Make no GLFW window context current (the EGL twin of :func:`_release_egl_thread`)."""
    if _open_windows > 0:
        glfw.make_context_current(None)


def headless_context() -> moderngl.Context:
    """A standalone OpenGL 3.3+ core context through EGL (no display needed).

    It is current on the calling thread afterwards; an open :class:`Window`'s context no longer
    is (call :meth:`Window.make_current` to draw into the window again)."""
    _release_glx_thread()
    try:
        return moderngl.create_context(standalone=True, backend="egl", require=330)
    except Exception as exc:  # moderngl raises plain Exception subclasses from its loaders
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RenderError(f"cannot create a headless OpenGL context (EGL): {reason}") from None


def _display_reason() -> str | None:
    """Why no window can be opened (None when a display variable is set)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set)"
    return None


def _glfw_init() -> None:
    """Initialise GLFW or raise RenderError naming the display problem."""
    reason = _display_reason()
    if reason is not None:
        raise RenderError(f"cannot open a window: {reason}")
    errors: list[str] = []
    glfw.set_error_callback(lambda _code, desc: errors.append(
        desc.decode("utf-8", "replace") if isinstance(desc, bytes) else str(desc)))
    try:
        ok = glfw.init()
    except Exception as exc:  # glfw may raise GLFWError depending on its ERROR_REPORTING
        ok = False
        errors.append(str(exc))
    finally:
        glfw.set_error_callback(None)
    detail = " ".join(" ".join(errors[-1:]).split())
    if not ok:
        where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        msg = f"cannot open a window: GLFW could not initialise on display {where!r}"
        raise RenderError(f"{msg} ({detail})" if detail else msg)


def has_display() -> bool:
    """True when DISPLAY or WAYLAND_DISPLAY is set and GLFW can initialise on it."""
    if _display_reason() is not None:
        return False
    try:
        _glfw_init()
    except RenderError:
        return False
    if _open_windows == 0:
        glfw.terminate()
    return True


def list_monitors() -> list[dict]:
    """The monitors GLFW sees, in ``--monitor`` order (0 = the primary one): dicts with
    ``index``, ``name``, ``width``, ``height`` (current video mode, pixels), ``refresh`` (Hz),
    ``x``, ``y`` (position on the virtual desktop). RenderError if there is no display."""
    _glfw_init()
    try:
        out = []
        for i, mon in enumerate(glfw.get_monitors() or []):
            mode = glfw.get_video_mode(mon)
            x, y = glfw.get_monitor_pos(mon)
            name = glfw.get_monitor_name(mon)
            out.append({"index": i, "name": name.decode("utf-8", "replace")
                        if isinstance(name, bytes) else str(name or f"monitor {i}"),
                        "width": mode.size.width, "height": mode.size.height,
                        "refresh": mode.refresh_rate, "x": x, "y": y})
        return out
    finally:
        if _open_windows == 0:
            glfw.terminate()


def describe_monitors(monitors: list[dict]) -> str:
    """One line per monitor, as ``lj devices`` prints them."""
    return "\n".join(f"{m['index']}: {m['name']} {m['width']}x{m['height']} @ {m['refresh']} Hz"
                     f" at ({m['x']}, {m['y']})" for m in monitors) or "(no monitors)"


_NAMED_KEYS = {
    glfw.KEY_ESCAPE: "escape", glfw.KEY_SPACE: "space", glfw.KEY_ENTER: "enter",
    glfw.KEY_KP_ENTER: "enter", glfw.KEY_TAB: "tab", glfw.KEY_BACKSPACE: "backspace",
    glfw.KEY_UP: "up", glfw.KEY_DOWN: "down", glfw.KEY_LEFT: "left", glfw.KEY_RIGHT: "right",
    glfw.KEY_PAGE_UP: "pageup", glfw.KEY_PAGE_DOWN: "pagedown", glfw.KEY_HOME: "home",
    glfw.KEY_END: "end", glfw.KEY_MINUS: "minus", glfw.KEY_EQUAL: "equal",
    glfw.KEY_KP_SUBTRACT: "minus", glfw.KEY_KP_ADD: "plus", glfw.KEY_COMMA: "comma",
    glfw.KEY_PERIOD: "period", glfw.KEY_SLASH: "slash",
    glfw.KEY_LEFT_BRACKET: "bracketleft", glfw.KEY_RIGHT_BRACKET: "bracketright",
}


def key_name(key: int) -> str | None:
    """Name of a GLFW key code: "a".."z", "0".."9" (top row and keypad), "f1".."f12",
    "escape", "space", "enter", arrows ("up", ...) and a few punctuation names; None otherwise.

    Names follow the US layout position of the key (GLFW key codes are layout-independent).
    """
    if glfw.KEY_A <= key <= glfw.KEY_Z:
        return chr(ord("a") + key - glfw.KEY_A)
    if glfw.KEY_0 <= key <= glfw.KEY_9:
        return chr(ord("0") + key - glfw.KEY_0)
    if glfw.KEY_KP_0 <= key <= glfw.KEY_KP_9:
        return chr(ord("0") + key - glfw.KEY_KP_0)
    if glfw.KEY_F1 <= key <= glfw.KEY_F12:
        return f"f{key - glfw.KEY_F1 + 1}"
    return _NAMED_KEYS.get(key)


class Window:
    """A GLFW window with an OpenGL 3.3 core (forward-compatible) context attached to moderngl.

    ``size`` is the windowed size in screen coordinates (w, h); ``monitor`` is the index into
    ``glfw.get_monitors()`` used for fullscreen (None = the primary monitor); ``vsync`` sets the
    swap interval to 1 (wait for vertical blank) or 0.
    """

    def __init__(self, size: tuple[int, int] = (1280, 720), title: str = "Latent Jockey",
                 fullscreen: bool = False, monitor: int | None = None, vsync: bool = False):
        global _open_windows
        _glfw_init()
        glfw.default_window_hints()
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        w, h = int(size[0]), int(size[1])
        monitors = glfw.get_monitors() or []
        if monitor is not None and not 0 <= monitor < len(monitors):
            listed = "; ".join(f"{i}: {glfw.get_monitor_name(m).decode('utf-8', 'replace')}"
                               for i, m in enumerate(monitors)) or "none"
            if _open_windows == 0:
                glfw.terminate()
            raise RenderError(f"no monitor {monitor} (this display has {len(monitors)}: {listed})")
        _release_egl_thread()  # GLFW makes the new context current while creating it
        try:
            handle = glfw.create_window(w, h, title, None, None)
        except Exception as exc:
            handle = None
            detail = " ".join(str(exc).split())
        else:
            detail = ""
        if not handle:
            if _open_windows == 0:
                glfw.terminate()
            msg = "cannot open a window: no OpenGL 3.3 core context on this display"
            raise RenderError(f"{msg} ({detail})" if detail else msg)
        _open_windows += 1
        self._win = handle
        self._monitor_index = monitor
        if monitor is not None and not fullscreen:  # windowed, but on the chosen monitor
            mx, my = glfw.get_monitor_pos(monitors[monitor])
            glfw.set_window_pos(handle, mx + 40, my + 40)
        self._windowed = (*glfw.get_window_pos(handle), w, h)  # x, y, w, h to return to
        self._fullscreen = False
        self._keys: deque[str] = deque(maxlen=256)
        glfw.make_context_current(handle)
        glfw.swap_interval(1 if vsync else 0)
        glfw.set_key_callback(handle, self._on_key)
        # The framebuffer size is asked for every frame: keep it from GLFW's resize callback
        # instead of a round trip to the display server each time.
        self._fb_size = tuple(glfw.get_framebuffer_size(handle))
        glfw.set_framebuffer_size_callback(handle, self._on_resize)
        try:
            self.ctx = moderngl.create_context(require=330)
        except Exception as exc:
            self.close()
            raise RenderError(f"cannot attach OpenGL to the window: {' '.join(str(exc).split())}") \
                from None
        if fullscreen:
            self.toggle_fullscreen()

    # -- input ---------------------------------------------------------------------------------
    def _on_key(self, _win, key: int, _scancode: int, action: int, _mods: int) -> None:
        if action != glfw.PRESS:
            return
        name = key_name(key)
        if name is not None:
            self._keys.append(name)

    def _on_resize(self, _win, width: int, height: int) -> None:
        self._fb_size = (int(width), int(height))

    def poll(self) -> list[str]:
        """Process window events; returns the names of keys pressed since the last poll."""
        glfw.poll_events()
        keys = list(self._keys)
        self._keys.clear()
        return keys

    @property
    def should_close(self) -> bool:
        """True once the user asked to close the window (or after :meth:`close`)."""
        return self._win is None or bool(glfw.window_should_close(self._win))

    # -- geometry ------------------------------------------------------------------------------
    @property
    def framebuffer_size(self) -> tuple[int, int]:
        """Size of the default framebuffer in pixels (w, h); differs from the window size on
        high-DPI screens. Kept up to date by a resize callback (no display round trip)."""
        return self._fb_size

    @property
    def fullscreen(self) -> bool:
        return self._fullscreen

    def _monitor(self):
        monitors = glfw.get_monitors() or []
        if not monitors:
            return None
        idx = self._monitor_index or 0
        return monitors[idx] if 0 <= idx < len(monitors) else monitors[0]

    def toggle_fullscreen(self) -> None:
        """Switch between borderless fullscreen on the chosen monitor (at its current video
        mode) and the previous windowed position and size."""
        if self._fullscreen:
            x, y, w, h = self._windowed
            glfw.set_window_monitor(self._win, None, x, y, w, h, 0)
            self._fullscreen = False
            self._fb_size = tuple(glfw.get_framebuffer_size(self._win))
            return
        mon = self._monitor()
        if mon is None:
            return  # no monitor to go fullscreen on; stay windowed
        self._windowed = (*glfw.get_window_pos(self._win), *glfw.get_window_size(self._win))
        mode = glfw.get_video_mode(mon)
        glfw.set_window_monitor(self._win, mon, 0, 0, mode.size.width, mode.size.height,
                                mode.refresh_rate)
        self._fullscreen = True
        self._fb_size = tuple(glfw.get_framebuffer_size(self._win))

    def hide_cursor(self, hidden: bool = True) -> None:
        """Hide the mouse cursor over the window (installations, projection)."""
        glfw.set_input_mode(self._win, glfw.CURSOR,
                            glfw.CURSOR_HIDDEN if hidden else glfw.CURSOR_NORMAL)

    # -- frame ---------------------------------------------------------------------------------
    def make_current(self) -> None:
        """Make this window's context current on the calling thread again (after a headless
        context was used in between)."""
        _release_egl_thread()
        glfw.make_context_current(self._win)

    def swap(self) -> None:
        """Show the frame drawn into ``ctx.screen``."""
        glfw.swap_buffers(self._win)

    def close(self) -> None:
        """Destroy the window (idempotent); terminates GLFW when it was the last one."""
        global _open_windows
        if self._win is None:
            return
        ctx = getattr(self, "ctx", None)
        if ctx is not None:
            ctx.release()
            self.ctx = None
        glfw.destroy_window(self._win)
        self._win = None
        _open_windows -= 1
        if _open_windows == 0:
            glfw.terminate()

    def __enter__(self) -> "Window":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
