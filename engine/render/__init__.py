"""The render stage: OpenGL contexts, ISF effect chains, the text overlay and video files.

Public API (see docs/architecture.md, "Render")::

    headless_context() -> moderngl.Context
    Window(size, title, fullscreen=False, monitor=None, vsync=False)
    Renderer(ctx, input_size, output_size, chain, shader_dir)
    Overlay(ctx)
    VideoWriter(path, size, fps, audio=None), probe(path)
    load_isf(path) -> IsfShader

Importing this package needs moderngl, glfw and PyAV but opens nothing.
"""

from engine.render.context import Window, has_display, headless_context, key_name
from engine.render.isf import IsfShader, load_isf, parse_isf
from engine.render.overlay import Overlay
from engine.render.pipeline import Renderer
from engine.render.record import VideoWriter, probe

__all__ = ["Window", "has_display", "headless_context", "key_name", "IsfShader", "load_isf",
           "parse_isf", "Overlay", "Renderer", "VideoWriter", "probe"]
