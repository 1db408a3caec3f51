"""The ``h`` overlay: a few lines of text (fps, frame time, live feature values) drawn over the
top-left corner of the picture on a semi-transparent dark backdrop.

Text is rasterised with Pillow's default font only when the lines change, into one RGBA texture
that is reused while the text fits (it grows in 64-pixel steps when it does not).
"""

from __future__ import annotations

from typing import Sequence

import moderngl
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.render.isf import VERTEX_SHADER

__all__ = ["Overlay"]

_FS = """#version 330
in vec2 isf_FragNormCoord;
out vec4 color;
uniform sampler2D text;
uniform vec2 uv_scale;  // used part of the texture (0..1 per axis)
void main() {
    vec2 uv = vec2(isf_FragNormCoord.x, 1.0 - isf_FragNormCoord.y) * uv_scale;  // rows top-down
    color = texture(text, uv);
}
"""

_PAD = 6          # pixels of backdrop around the text
_MARGIN = 8       # pixels from the framebuffer's top-left corner
_BACKDROP = (0, 0, 0, 160)
_INK = (255, 255, 255, 255)


class Overlay:
    """Text box drawn into the current framebuffer of ``ctx`` (see :meth:`draw`)."""

    def __init__(self, ctx: moderngl.Context, font_size: int = 13):
        self.ctx = ctx
        try:
            self._font = ImageFont.load_default(size=font_size)
        except TypeError:  # Pillow without FreeType sizing: the fixed bitmap font
            self._font = ImageFont.load_default()
        self._prog = ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=_FS)
        self._prog["text"].value = 0
        self._uv = self._prog["uv_scale"]
        self._vao = ctx.vertex_array(self._prog, [])
        self._tex: moderngl.Texture | None = None
        self._lines: list[str] | None = None
        self._size = (0, 0)  # pixel size of the current text image (w, h)

    @property
    def size(self) -> tuple[int, int]:
        """Pixel size (w, h) of the box drawn, (0, 0) when there is no text."""
        return self._size

    def set_lines(self, lines: Sequence[str]) -> None:
        """Set the text, one string per line; re-rasterises only when it differs."""
        lines = [str(s) for s in lines]
        if lines == self._lines:
            return
        self._lines = lines
        if not lines:
            self._size = (0, 0)
            return
        text = "\n".join(lines)
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=self._font,
                                                            spacing=3)
        w = int(right - min(left, 0)) + 2 * _PAD
        h = int(bottom - min(top, 0)) + 2 * _PAD
        img = Image.new("RGBA", (w, h), _BACKDROP)
        ImageDraw.Draw(img).multiline_text((_PAD - min(left, 0), _PAD - min(top, 0)), text,
                                           font=self._font, fill=_INK, spacing=3)
        if self._tex is None or self._tex.width < w or self._tex.height < h:
            if self._tex is not None:
                self._tex.release()
            tw, th = -(-w // 64) * 64, -(-h // 64) * 64
            self._tex = self.ctx.texture((tw, th), 4)
            self._tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._tex.write(np.asarray(img), viewport=(0, 0, w, h))
        self._size = (w, h)

    def draw(self, fbo_size: tuple[int, int]) -> None:
        """Alpha-blend the text box into the top-left of the currently bound framebuffer of
        ``fbo_size`` (w, h) pixels; leaves blending off and the viewport full size."""
        w, h = self._size
        if w == 0 or self._tex is None:
            return
        fw, fh = int(fbo_size[0]), int(fbo_size[1])
        ctx = self.ctx
        ctx.viewport = (_MARGIN, fh - _MARGIN - h, w, h)
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self._uv.value = (w / self._tex.width, h / self._tex.height)
        self._tex.use(0)
        self._vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.disable(moderngl.BLEND)
        ctx.viewport = (0, 0, fw, fh)

    def release(self) -> None:
        if self._tex is not None:
            self._tex.release()
            self._tex = None
        self._vao.release()
        self._prog.release()
