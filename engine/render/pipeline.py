"""The render stage: upload a generator frame, run the ISF effect chain, read back or present.

Data flow per :meth:`Renderer.render`::

    image_u8 [h, w, 3] ──write──▶ input texture (RGB8, input_size, linear)
        ──copy/scale pass (flips rows to GL's bottom-up order)──▶ chain texture A (output_size)
        ──effect 1──▶ B ──effect 2──▶ A ... (ping-pong; RGBA8, output_size)

Each effect is an ISF shader (``shader_dir/<name>.fs``, see :mod:`engine.render.isf`); its passes
draw one full-screen triangle each. A pass with a ``TARGET`` draws into that buffer (two textures
swapped after each write, so a pass may read its own previous contents; ``PERSISTENT`` buffers
keep them across frames, ``FLOAT`` buffers are half-float 'f2'); the last pass draws into the
next chain texture. Every GL object is created in ``__init__``/:meth:`set_chain`/
:meth:`reload_changed`; a frame only writes textures and uniforms that exist.

Hot reload: :meth:`Renderer.reload_changed` stats the chain's files (one ``stat`` each) and
recompiles the ones whose modification time or size changed. A file that no longer compiles is
reported and the previously compiled version keeps running; so does a deleted file. A reloaded
effect takes over its predecessor's pass buffers where name, size and format match, so feedback
trails survive an edit. With ``wait=False`` (the live loop) a changed file is read, parsed,
translated and checked against the limits on a loader thread; the GL thread only compiles it
(and creates its buffers) once that is done, and only files within the limits get that far.
(A shared GL context to compile on a worker thread too is not available here: glcontext's EGL
``share`` mode needs a current surface and our headless context is surfaceless.)

Pass buffers are bounded before any is created (:func:`plan_targets`): each side at most
``max(PASS_SIDE_FACTOR x the output's side, PASS_SIDE_FLOOR)`` and at most
``GL_MAX_TEXTURE_SIZE``, and all pass buffers of a chain together (two textures per ``TARGET``,
4 bytes a texel, 8 for ``FLOAT``) within :data:`TEXTURE_BUDGET`. An effect over a bound is refused
with a one-line ShaderError naming the file, the PASS and the size.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time as _time
from pathlib import Path
from typing import Mapping, Sequence

import moderngl
import numpy as np

from engine.errors import RenderError, ShaderError
from engine.render.isf import VERTEX_SHADER, IsfInput, IsfShader, load_isf, value_inputs

__all__ = ["Renderer"]

log = logging.getLogger("lj.render")

_COPY_FS = """#version 330
in vec2 isf_FragNormCoord;
out vec4 color;
uniform sampler2D src;
uniform float flip_y;   // 1.0: sample rows top-down (uploaded numpy image), 0.0: as is
void main() {
    vec2 uv = vec2(isf_FragNormCoord.x, mix(isf_FragNormCoord.y, 1.0 - isf_FragNormCoord.y, flip_y));
    color = vec4(texture(src, uv).rgb, 1.0);
}
"""
# Scale a picture into a frame of another size: ``k`` maps the destination's centred coordinates
# to the source's (letterbox: parts outside the source are black; crop: k < 1 on one axis), and
# upscaling uses Catmull-Rom bicubic in 9 bilinear taps (sharper than bilinear, no blocks).
_SCALE_FS = """#version 330
#define BICUBIC %d
in vec2 isf_FragNormCoord;
out vec4 color;
uniform sampler2D src;
uniform vec2 k;
vec3 catmull_rom(vec2 uv) {
    vec2 size = vec2(textureSize(src, 0));
    vec2 p = uv * size - 0.5;
    vec2 f = fract(p);
    vec2 base = floor(p) - 0.5;   // centre of the 4x4 block's first texel, in texels
    vec2 f2 = f * f, f3 = f2 * f;
    vec2 w0 = -0.5 * f3 + f2 - 0.5 * f;
    vec2 w1 = 1.5 * f3 - 2.5 * f2 + 1.0;
    vec2 w2 = -1.5 * f3 + 2.0 * f2 + 0.5 * f;
    vec2 w3 = 0.5 * f3 - 0.5 * f2;
    vec2 w12 = w1 + w2;
    vec2 o12 = w2 / w12;          // one bilinear tap covers texels 1 and 2
    vec2 t0 = base / size, t3 = (base + 3.0) / size, t12 = (base + 1.0 + o12) / size;
    vec3 c = vec3(0.0);
    c += (texture(src, vec2(t0.x, t0.y)).rgb * w0.x + texture(src, vec2(t12.x, t0.y)).rgb * w12.x
          + texture(src, vec2(t3.x, t0.y)).rgb * w3.x) * w0.y;
    c += (texture(src, vec2(t0.x, t12.y)).rgb * w0.x + texture(src, vec2(t12.x, t12.y)).rgb * w12.x
          + texture(src, vec2(t3.x, t12.y)).rgb * w3.x) * w12.y;
    c += (texture(src, vec2(t0.x, t3.y)).rgb * w0.x + texture(src, vec2(t12.x, t3.y)).rgb * w12.x
          + texture(src, vec2(t3.x, t3.y)).rgb * w3.x) * w3.y;
    return c;
}
void main() {
    vec2 uv = (isf_FragNormCoord - 0.5) * k + 0.5;
    if (any(lessThan(uv, vec2(0.0))) || any(greaterThan(uv, vec2(1.0)))) {
        color = vec4(0.0, 0.0, 0.0, 1.0);
        return;
    }
#if BICUBIC
    vec3 c = catmull_rom(uv);   // (two programs, not a branch: a software rasteriser runs both)
#else
    vec3 c = texture(src, uv).rgb;
#endif
    color = vec4(clamp(c, 0.0, 1.0), 1.0);
}
"""

#: How a picture is fitted into a frame of another shape (``--fit``).
FIT_MODES = ("letterbox", "crop", "stretch")


def fit_scale(src: tuple[int, int], dst: tuple[int, int], fit: str) -> tuple[float, float]:
    """``k`` such that destination coordinate ``u`` (0..1, centred at 0.5) shows source
    coordinate ``(u - 0.5) * k + 0.5``: letterbox keeps the whole source with black bars,
    crop fills the frame and cuts the overflow, stretch fills it and distorts."""
    if fit not in FIT_MODES:
        raise RenderError(f"fit must be one of {', '.join(FIT_MODES)}, not {fit!r}")
    a_src = src[0] / src[1]
    a_dst = dst[0] / dst[1]
    if fit == "stretch" or abs(a_src - a_dst) < 1e-9:
        return (1.0, 1.0)
    r = a_src / a_dst       # > 1: the source is wider than the frame
    if fit == "letterbox":
        return (1.0, r) if r > 1 else (1.0 / r, 1.0)
    return (1.0 / r, 1.0) if r > 1 else (1.0, r)


#: Each side of a pass buffer at most max(PASS_SIDE_FACTOR x the output's side, PASS_SIDE_FLOOR)
#: pixels (and never above the driver's GL_MAX_TEXTURE_SIZE).
PASS_SIDE_FACTOR = 4
PASS_SIDE_FLOOR = 4096
#: Bytes all pass buffers of one chain may take together (both textures of every TARGET).
TEXTURE_BUDGET = 512 << 20


def target_bytes(size: tuple[int, int], float_: bool) -> int:
    """GPU bytes of one pass TARGET: two RGBA textures, 8-bit or half-float."""
    return 2 * size[0] * size[1] * 4 * (2 if float_ else 1)


def plan_targets(shader: IsfShader, output_size: tuple[int, int], max_texture: int,
                 budget: int) -> dict[str, tuple[tuple[int, int], bool]]:
    """``{target: (size, float)}`` for ``shader``'s pass buffers at ``output_size``, or a one-line
    ShaderError (file, PASS, size) when a side exceeds the cap or the buffers exceed ``budget``
    bytes. Pure arithmetic: runs on the loader thread before any GL object exists."""
    caps = [min(max(PASS_SIDE_FACTOR * s, PASS_SIDE_FLOOR), max_texture) for s in output_size]
    where = f"{shader.path}:{shader.header_line}"
    plan: dict[str, tuple[tuple[int, int], bool]] = {}
    for k, p in enumerate(shader.passes):
        size = p.size(output_size)
        what = f"PASS {k}" + (f" ({p.target})" if p.target else "")
        if size[0] > caps[0] or size[1] > caps[1]:
            raise ShaderError(f"{where}: {what} would be {size[0]}x{size[1]} pixels; at most "
                              f"{caps[0]}x{caps[1]} for a {output_size[0]}x{output_size[1]} output")
        if p.target and p.target not in plan:
            plan[p.target] = (size, bool(p.float))
    total = sum(target_bytes(sz, f) for sz, f in plan.values())
    if total > budget:
        sizes = ", ".join(f"{t} {sz[0]}x{sz[1]}{' FLOAT' if f else ''}" for t, (sz, f) in plan.items())
        raise ShaderError(f"{where}: its pass buffers ({sizes}) need {total / 2**20:.0f} MiB; the "
                          f"chain has {max(0, budget) / 2**20:.0f} MiB of its texture budget left")
    return plan


_EFFECT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _texture(ctx: moderngl.Context, size, components: int, dtype: str = "f1"):
    tex = ctx.texture(tuple(size), components, dtype=dtype)
    tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
    tex.repeat_x = tex.repeat_y = False
    return tex


class _Target:
    """A pass TARGET: two same-size textures; passes read ``tex`` and write ``fbo`` (the other)."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], float_: bool):
        dtype = "f2" if float_ else "f1"
        self.size = tuple(size)
        self.float = bool(float_)
        self.texs = [_texture(ctx, size, 4, dtype) for _ in range(2)]
        self.fbos = [ctx.framebuffer(color_attachments=[t]) for t in self.texs]
        for f in self.fbos:
            f.clear(0.0, 0.0, 0.0, 0.0)
        self.cur = 0  # index of the texture holding the latest contents

    @property
    def tex(self):
        return self.texs[self.cur]

    @property
    def fbo(self):
        """The framebuffer of :attr:`tex` (the latest contents)."""
        return self.fbos[self.cur]

    @property
    def write_fbo(self):
        return self.fbos[1 - self.cur]

    def swap(self) -> None:
        self.cur = 1 - self.cur

    def release(self) -> None:
        for o in (*self.fbos, *self.texs):
            o.release()


class _Effect:
    """One compiled ISF effect in the chain, with its buffers and uniform handles."""

    def __init__(self, ctx: moderngl.Context, name: str, path: Path, shader: IsfShader,
                 output_size: tuple[int, int], blank: moderngl.Texture,
                 adopt: Mapping[str, _Target] | None = None, sig: tuple | None = None,
                 plan: Mapping[str, tuple] | None = None):
        """``adopt``: buffers of a previous version of this effect, taken over (not copied)
        where name, size and format match; the caller then drops them from the old effect.
        ``plan``: the checked buffer sizes (:func:`plan_targets`); by default the uncapped ones."""
        self.name, self.path, self.shader = name, path, shader
        self.sig = sig if sig is not None else _signature(path)
        if plan is None:
            plan = plan_targets(shader, output_size, 1 << 31, 1 << 62)
        self.program = shader.compile(ctx)
        self.targets: dict[str, _Target] = {}
        try:
            self.vao = ctx.vertex_array(self.program, [])
            adopt = adopt or {}
            for target, (size, float_) in plan.items():
                old = adopt.get(target)
                if old is not None and old.size == size and old.float == float_:
                    self.targets[target] = old
                else:
                    self.targets[target] = _Target(ctx, size, float_)
        except BaseException:   # e.g. GL out of memory: free what was made, keep adopted buffers
            for t in self.targets.values():
                if t not in (adopt or {}).values():
                    t.release()
            self.program.release()
            raise
        self.pass_sizes = [p.size(output_size) for p in shader.passes]
        self.output_size = tuple(output_size)
        prog = self.program

        def uni(n):
            u = prog.get(n, None)
            return u if isinstance(u, moderngl.Uniform) else None

        # Samplers: unit 0 = the chain input, 1.. = targets, then the other image inputs (fed
        # per frame by the renderer: a named source, the audio textures, or a blank texture).
        self.input_uniform = None
        self.target_units: list[tuple[int, _Target]] = []
        self.image_units: list[tuple[int, IsfInput]] = []
        unit = 1
        for tname, tgt in self.targets.items():
            u = uni(tname)
            if u is not None:
                u.value = unit
                self.target_units.append((unit, tgt))
                unit += 1
        self.blank = blank
        self.values: list[tuple[str, IsfInput, moderngl.Uniform]] = []
        names = {i.name for i in shader.inputs}
        # ISF transitions have no inputImage: the chain's picture is their endImage.
        chain_in = "inputImage" if "inputImage" in names or "endImage" not in names else "endImage"
        for inp in shader.inputs:
            u = uni(inp.name)
            if u is None:
                continue
            if inp.glsl_type == "sampler2D":
                if inp.name == chain_in and inp.type == "image":
                    u.value = 0
                    self.input_uniform = u
                else:
                    u.value = unit
                    self.image_units.append((unit, inp))
                    unit += 1
            else:
                self.values.append((f"{name}.{inp.name}", inp, u))
        self.u_time, self.u_delta = uni("TIME"), uni("TIMEDELTA")
        self.u_frame, self.u_size = uni("FRAMEINDEX"), uni("RENDERSIZE")
        self.u_pass, self.u_date = uni("PASSINDEX"), uni("DATE")
        self.audio = [(n[3:], prog[n]) for n in prog
                      if n.startswith("lj_") and isinstance(prog[n], moderngl.Uniform)
                      and prog[n].gl_type == 0x1406 and prog[n].array_length == 1]

    def set_values(self, uniforms: Mapping[str, float], audio: Mapping[str, float],
                   time: float, delta: float, frame: int) -> None:
        for key, inp, u in self.values:
            v = uniforms.get(key)
            u.value = _clamp(inp, inp.default if v is None else v)
        for feature, u in self.audio:
            v = audio.get(feature, 0.0)
            if isinstance(v, (int, float, np.floating, np.integer)):
                u.value = float(v)
        if self.u_time is not None:
            self.u_time.value = time
        if self.u_delta is not None:
            self.u_delta.value = delta
        if self.u_frame is not None:
            self.u_frame.value = frame
        if self.u_date is not None:
            t = _time.localtime()
            self.u_date.value = (t.tm_year, t.tm_mon, t.tm_mday,
                                 t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec)

    def draw(self, src: moderngl.Texture, dst: moderngl.Framebuffer, copy, feed=None):
        """Run every pass: ``src`` is ``inputImage``; ``feed(input, src)`` gives the texture
        of any other image input (None: a blank one). Returns ``(texture, framebuffer)`` holding
        the result: ``dst``'s, or, when the last pass writes an 8-bit buffer at output size (a
        feedback effect), that buffer itself, so no pass is spent copying it out."""
        src.use(0)
        for unit, inp in self.image_units:
            tex = feed(inp, src) if feed is not None else None
            (tex if tex is not None else self.blank).use(unit)
        passes = self.shader.passes
        last = len(passes) - 1
        for i, p in enumerate(passes):
            for unit, tgt in self.target_units:
                tgt.tex.use(unit)
            if self.u_pass is not None:
                self.u_pass.value = i
            if self.u_size is not None:
                self.u_size.value = self.pass_sizes[i]
            if p.target:
                tgt = self.targets[p.target]
                tgt.write_fbo.use()
                self.vao.render(moderngl.TRIANGLES, vertices=3)
                tgt.swap()
                if i == last:
                    if tgt.size == self.output_size and not tgt.float:
                        return tgt.tex, tgt.fbo
                    copy(tgt.tex, dst)
                    src.use(0)
            else:
                dst.use()
                self.vao.render(moderngl.TRIANGLES, vertices=3)
        return dst.color_attachments[0], dst

    @property
    def bytes(self) -> int:
        """GPU bytes of this effect's pass buffers (counted against the chain's budget)."""
        return sum(target_bytes(t.size, t.float) for t in self.targets.values())

    def release(self) -> None:
        for t in self.targets.values():
            t.release()
        self.vao.release()
        self.program.release()


#: A file modified less than this long ago may still be being written (or be rewritten within
#: the file system's timestamp granularity with the same size): it is looked at again next time.
SETTLE_NS = 100_000_000


def _signature(path: Path) -> tuple | None:
    """(mtime in ns, size, inode, ctime in ns) of a file, None if it cannot be stat'ed: one
    cheap system call. A replaced file (new inode) or a rewrite changes it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _settled(sig: tuple | None) -> bool:
    """False while a file's last change is too recent to trust its signature."""
    if sig is None:
        return True
    age = _time.time_ns() - sig[0]
    return not (-10_000_000 < age < SETTLE_NS)


def _one_line(path: Path, exc: BaseException) -> str:
    """``path: reason`` on one line for an error that is not a ShaderError."""
    reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or ""
    first = reason.strip().split("\n")[0][:200]
    return f"{path}: {first or type(exc).__name__}"


def _prepare(path: Path, check) -> IsfShader | BaseException:
    """Read, parse, translate and check a shader file (no GL): the shader, or the error."""
    try:
        shader = load_isf(path)
        check(shader)
        return shader
    except ShaderError as exc:
        return exc
    except Exception as exc:   # nothing a file holds may escape as anything but one line
        return ShaderError(_one_line(path, exc))


class _LoadJob:
    """A changed shader file read, parsed and checked on a daemon thread (:func:`_prepare`)."""

    def __init__(self, path: Path, sig, check):
        self.path, self.sig = path, sig
        self.result: IsfShader | BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(check,), daemon=True,
                                        name="lj-shader-loader")
        self._thread.start()

    def _run(self, check) -> None:
        self.result = _prepare(self.path, check)

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def _glsl_log(exc) -> str:
    log = getattr(exc, "glsl_log", "")
    return ("\n    " + log.replace("\n", "\n    ")) if log else ""


def _clamp(inp: IsfInput, v):
    """``v`` limited to the input's MIN/MAX (componentwise for vectors); ints for long/bool."""
    lo, hi = inp.min, inp.max
    if isinstance(inp.default, tuple):
        n = len(inp.default)
        vals = tuple(float(x) for x in v)[:n] if isinstance(v, (Sequence, np.ndarray)) \
            else (float(v),) * n
        if len(vals) < n:
            vals = vals + inp.default[len(vals):]
        if lo is not None:
            vals = tuple(max(a, b) for a, b in zip(vals, lo))
        if hi is not None:
            vals = tuple(min(a, b) for a, b in zip(vals, hi))
        return vals
    x = float(v)
    if math.isnan(x):
        x = float(inp.default)
    if lo is not None and x < lo:
        x = lo
    if hi is not None and x > hi:
        x = hi
    if inp.type in ("bool", "event"):
        return x >= 0.5
    if inp.type == "long":
        return int(round(x))
    return x


class Renderer:
    """Runs a chain of ISF effects over generator frames.

    ``input_size`` and ``output_size`` are (w, h) in pixels and independent: the input is sampled
    with normalised coordinates and linear filtering. ``chain`` names effects, i.e. files
    ``shader_dir/<name>.fs``. An effect that fails to load or compile is skipped: the one-line
    message goes to the ``lj.render`` logger and :attr:`errors`, the rest of the chain runs.
    """

    def __init__(self, ctx: moderngl.Context, input_size: tuple[int, int],
                 output_size: tuple[int, int], chain: Sequence[str] = (),
                 shader_dir: str | Path = "shaders", fit: str = "letterbox",
                 bicubic: bool = True, texture_budget: int = TEXTURE_BUDGET):
        self.ctx = ctx
        self.texture_budget = int(texture_budget)
        self.max_texture = int(ctx.info.get("GL_MAX_TEXTURE_SIZE") or 4096)
        self._jobs: dict[int, _LoadJob] = {}   # slot -> a changed file being read on a thread
        fit_scale((1, 1), (1, 1), fit)  # checks the name
        self.fit = fit
        self.bicubic = bool(bicubic)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.output_size = (int(output_size[0]), int(output_size[1]))
        if min(self.input_size) < 1 or min(self.output_size) < 1:
            raise RenderError(f"render sizes must be positive, got input {self.input_size} "
                              f"and output {self.output_size}")
        self.shader_dir = Path(shader_dir)
        self.errors: list[str] = []
        self._effects: list[_Effect] = []
        self._names: list[str | None] = []           # the chain as asked for (None: bad name)
        self._slots: list[_Effect | None] = []       # per name: the running effect, if any
        self._seen: list[tuple | None] = []          # per name: the file signature last looked at
        self._input = _texture(ctx, self.input_size, 3)
        self._chain = [_texture(ctx, self.output_size, 4) for _ in range(2)]
        self._fbos = [ctx.framebuffer(color_attachments=[t]) for t in self._chain]
        self._blank = _texture(ctx, (1, 1), 4)
        self._blank.write(bytes(4))
        self._copy = ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=_COPY_FS)
        self._copy["src"].value = 0
        self._copy_flip = self._copy["flip_y"]
        self._copy_vao = ctx.vertex_array(self._copy, [])
        self._scale = [ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=_SCALE_FS % b)
                       for b in (0, 1)]             # [linear, bicubic]
        for prog in self._scale:
            prog["src"].value = 0
        self._scale_vao = [ctx.vertex_array(prog, []) for prog in self._scale]
        w, h = self.output_size
        self._readback = np.empty((h, w, 3), np.uint8)
        iw, ih = self.input_size
        self._upload = np.empty((ih, iw, 3), np.uint8)  # the frame in GL row order
        self._result_tex, self._result_fbo = self._chain[0], self._fbos[0]
        self._frame = 0
        self._last_time: float | None = None
        self._sources: dict[str, moderngl.Texture] = {}   # named image inputs (set_image, hold)
        self._held: set[str] = set()                       # ... of which held frames
        self._source_fbos: dict[str, moderngl.Framebuffer] = {}
        self._audio_tex: dict[tuple, moderngl.Texture] = {}  # (ISF type, width) -> texture
        self._audio_rows: dict[tuple, np.ndarray] = {}       # ... its [width, 4] float32 texels
        self._audiotex = None                                # AudioTextures, when needed
        # Optional frame uploader (engine.render.gpu_upload: CUDA-GL interop, PBOs, any size).
        self.uploader = None
        for f in self._fbos:
            f.clear(0.0, 0.0, 0.0, 1.0)
        self.set_chain(chain)

    # -- chain ---------------------------------------------------------------------------------
    @property
    def chain(self) -> list[str]:
        """Names of the effects that loaded and run, in order."""
        return [e.name for e in self._effects]

    def set_chain(self, names: Sequence[str]) -> None:
        """Load a new chain. Effects already loaded from an unchanged file are reused (their
        persistent buffers survive); :attr:`errors` is replaced by this chain's errors."""
        old = {}
        for e in self._effects:
            old.setdefault(e.name, []).append(e)
        self._jobs = {}   # loads in flight were for the old chain's slots: their results are dropped
        slots, seen, errors = [], [], []
        used = 0
        for name in names:
            effect, sig = None, None
            try:
                if not isinstance(name, str) or not _EFFECT_NAME.match(name):
                    raise ShaderError(f"bad effect name {name!r} (use the file name without .fs)")
                path = self.shader_dir / f"{name}.fs"
                sig = _signature(path)
                reuse = old.get(name)
                if reuse and sig is not None and reuse[0].sig == sig \
                        and used + reuse[0].bytes <= self.texture_budget:
                    effect = reuse.pop(0)
                else:
                    effect = self._build(name, path, sig, load_isf(path), self.texture_budget - used)
                used += effect.bytes
            except ShaderError as exc:
                errors.append(str(exc))
                log.warning("effect %s skipped: %s%s", name, exc, _glsl_log(exc))
            except Exception as exc:  # never let one file stop the chain (GL errors included)
                msg = _one_line(self.shader_dir / f"{name}.fs", exc)
                errors.append(msg)
                log.warning("effect %s skipped: %s", name, msg)
            slots.append(effect)
            seen.append(sig)
        for rest in old.values():
            for e in rest:
                e.release()
        self._names = [n if isinstance(n, str) and _EFFECT_NAME.match(n) else None
                       for n in names]
        self._slots, self._seen = slots, seen
        self._effects = [e for e in slots if e is not None]
        self.errors = errors

    def _build(self, name: str, path: Path, sig, shader: IsfShader, budget: int,
               adopt: Mapping[str, _Target] | None = None) -> _Effect:
        """Check ``shader``'s buffers against the caps and ``budget`` bytes, then compile it."""
        plan = plan_targets(shader, self.output_size, self.max_texture, budget)
        return _Effect(self.ctx, name, path, shader, self.output_size, self._blank,
                       adopt=adopt, sig=sig, plan=plan)

    def _budget_for(self, slot: int) -> int:
        """Texture bytes left for slot ``slot`` (everything but its current effect counted)."""
        return self.texture_budget - sum(e.bytes for k, e in enumerate(self._slots)
                                         if e is not None and k != slot)

    def reload_changed(self, wait: bool = True) -> list[str]:
        """Recompile the chain's effects whose files changed since they were last looked at
        (one ``stat`` per effect: cheap enough to call every few frames). Returns the names
        reloaded. A file that fails to load or compile is reported once per change (the
        ShaderError's one line, with file, line and the GLSL message, is appended to
        :attr:`errors` and logged on ``lj.render``) and the previous version keeps running; a
        deleted file keeps the loaded effect too. An effect that failed before is loaded once
        its file is fixed. A successful reload takes over the old version's pass buffers where
        sizes match, and drops that file's entries from :attr:`errors`.

        ``wait=False``: a changed file is read, parsed and checked on a loader thread, and a
        later call compiles it here once that is done (this call returns at once)."""
        reloaded = []
        for i, name in enumerate(self._names):
            if name is None:  # a bad name, reported by set_chain
                continue
            path = self.shader_dir / f"{name}.fs"
            job = self._jobs.get(i)
            if job is not None:
                if job.is_alive():
                    continue
                del self._jobs[i]
                if self._install(i, name, path, job.sig, job.result):
                    reloaded.append(name)
                continue
            sig = _signature(path)
            if sig == self._seen[i]:
                continue
            # a file still being written is compiled now and looked at again next time
            self._seen[i] = sig if _settled(sig) else ("unsettled",)
            if sig is None:
                if self._slots[i] is not None:
                    log.warning("%s: shader file gone; effect %s keeps running", path, name)
                continue
            if wait:
                if self._install(i, name, path, sig, _prepare(path, self._checker(i))):
                    reloaded.append(name)
            else:
                self._jobs[i] = _LoadJob(path, sig, self._checker(i))
        if reloaded:
            self._effects = [e for e in self._slots if e is not None]
        return reloaded

    def _checker(self, slot: int):
        """The buffer check a loader thread runs on a parsed shader for ``slot`` (pure)."""
        size, cap, budget = self.output_size, self.max_texture, self._budget_for(slot)
        return lambda shader: plan_targets(shader, size, cap, budget)

    def _install(self, i: int, name: str, path: Path, sig, loaded) -> bool:
        """Compile a loaded shader (or report its error) into slot ``i``; True if it runs now."""
        old = self._slots[i]
        prefix = f"{path}:"
        try:
            if isinstance(loaded, BaseException):
                raise loaded
            new = self._build(name, path, sig, loaded, self._budget_for(i),
                              adopt=old.targets if old is not None else None)
        except Exception as exc:  # ShaderError, moderngl.Error, anything: never the loop's end
            msg = str(exc) if isinstance(exc, ShaderError) else _one_line(path, exc)
            self.errors = [e for e in self.errors if not e.startswith(prefix)] + [msg]
            if old is not None:
                log.warning("effect %s not reloaded, the previous version keeps running: %s%s",
                            name, msg, _glsl_log(exc))
            else:
                log.warning("effect %s still not loaded: %s%s", name, msg, _glsl_log(exc))
            return False
        if old is not None:
            for key, tgt in new.targets.items():
                if old.targets.get(key) is tgt:
                    del old.targets[key]
            old.release()
        self._slots[i] = new
        self.errors = [e for e in self.errors if not e.startswith(prefix)]
        log.info("effect %s reloaded from %s", name, path)
        return True

    @property
    def inputs(self) -> dict[str, tuple]:
        """``{"<effect>.<input>": (default, min, max)}`` for every value input of the chain
        (min/max None where the shader gives none)."""
        out = {}
        for e in self._effects:  # from the headers: inputs the compiler optimised away show too
            out.update(value_inputs(e.name, e.shader))
        return out

    # -- image inputs --------------------------------------------------------------------------
    def set_image(self, name: str, image_u8: np.ndarray | None) -> None:
        """Feed every image input called ``name`` (other than the chain's picture) with
        ``image_u8`` ([h, w, 3 or 4] uint8, top row first; any size, sampled normalised), or
        stop feeding it (None: the input reads black again). A texture is created only when
        the size changes."""
        if image_u8 is None:
            tex = self._sources.pop(name, None)
            fbo = self._source_fbos.pop(name, None)
            self._held.discard(name)
            for o in (fbo, tex):
                if o is not None:
                    o.release()
            return
        img = np.asarray(image_u8)
        if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
            raise RenderError(f"image input {name}: expected uint8 [h, w, 3|4], got "
                              f"{img.dtype} {list(img.shape)}")
        h, w, c = img.shape
        tex = self._sources.get(name)
        if tex is None or tex.size != (w, h) or tex.components != c or name in self._held:
            self.set_image(name, None)
            tex = self._sources[name] = _texture(self.ctx, (w, h), c)
        tex.write(np.ascontiguousarray(img[::-1]))

    def hold(self, name: str = "startImage") -> None:
        """Keep the frame as shown now (every effect applied) as image input ``name``: the
        "from" picture of a transition (``shaders/transition.fs`` mixes it with the live one
        as its ``progress`` goes 0 → 1). Costs one copy pass; no allocation after the first."""
        tex = self._sources.get(name)
        if tex is None or name not in self._held or tex.size != self.output_size:
            self.set_image(name, None)
            tex = self._sources[name] = _texture(self.ctx, self.output_size, 4)
            self._source_fbos[name] = self.ctx.framebuffer(color_attachments=[tex])
            self._held.add(name)
        if self._frame == 0:
            self._source_fbos[name].clear(0.0, 0.0, 0.0, 1.0)
            return
        self._copy_to(self._result_tex, self._source_fbos[name])

    @property
    def audio_needs(self) -> set[tuple[str, int]]:
        """The ISF audio images the chain reads: ``{("audio" | "audioFFT", width)}``."""
        from engine.render.audiotex import AudioTextures

        return {(inp.type, AudioTextures.size(inp.max)) for e in self._effects
                for _unit, inp in e.image_units if inp.type in ("audio", "audioFFT")}

    def feed_audio(self, window: np.ndarray, sr: int) -> bool:
        """Update the chain's ``audio`` (waveform) and ``audioFFT`` (log spectrum) images from
        the newest mono samples ``window`` (see :mod:`engine.render.audiotex`). Does nothing
        (returns False) when no effect declares such an input."""
        from engine.render.audiotex import AudioTextures

        needs = self.audio_needs
        if not needs:
            return False
        at = self._audiotex
        if at is None or at.sr != int(sr):
            at = self._audiotex = AudioTextures(sr)
        at.update(window)
        for key in needs:
            typ, n = key
            tex = self._audio_tex.get(key)
            if tex is None:
                tex = self._audio_tex[key] = _texture(self.ctx, (n, 1), 4, "f4")
                self._audio_rows[key] = np.ones((n, 4), np.float32)
            rows = self._audio_rows[key]
            rows[:, :3] = (at.waveform(n) if typ == "audio" else at.spectrum(n))[:, None]
            tex.write(rows)
        return True

    def _feed(self, inp: IsfInput, src: moderngl.Texture):
        """The texture for image input ``inp`` of an effect whose chain input is ``src``."""
        if inp.type != "image":
            from engine.render.audiotex import AudioTextures

            return self._audio_tex.get((inp.type, AudioTextures.size(inp.max)))
        tex = self._sources.get(inp.name)
        if tex is None and inp.name == "startImage":
            return src  # a transition with nothing held yet shows the live picture
        return tex

    # -- frame ---------------------------------------------------------------------------------
    def _scale_to(self, src: moderngl.Texture, dst: moderngl.Framebuffer,
                  dst_size: tuple[int, int], fit: str) -> None:
        """Draw ``src`` into ``dst`` (``dst_size`` pixels), fitted (``fit``) and, when it is
        enlarged and :attr:`bicubic` is on, with the bicubic filter."""
        kx, ky = fit_scale(src.size, dst_size, fit)
        up = dst_size[0] / kx > src.size[0] or dst_size[1] / ky > src.size[1]
        i = 1 if (self.bicubic and up) else 0
        self._scale[i]["k"].value = (kx, ky)
        src.use(0)
        dst.use()
        self._scale_vao[i].render(moderngl.TRIANGLES, vertices=3)

    def _copy_to(self, src: moderngl.Texture, dst: moderngl.Framebuffer, flip: bool = False):
        src.use(0)
        self._copy_flip.value = 1.0 if flip else 0.0
        dst.use()
        self._copy_vao.render(moderngl.TRIANGLES, vertices=3)

    def render(self, image_u8: np.ndarray, uniforms: Mapping[str, float] | None = None,
               time: float = 0.0, audio: Mapping[str, float] | None = None) -> None:
        """Draw one frame. ``image_u8`` is [h, w, 3] uint8 at ``input_size`` (top row first);
        ``uniforms`` is keyed "<effect>.<input>" (missing -> DEFAULT, clamped to MIN..MAX);
        ``time`` is the frame time in seconds (TIME; TIMEDELTA is the difference to the last
        call, 0 on the first); ``audio`` feeds ``uniform float lj_<feature>`` declarations."""
        w, h = self.input_size
        if self.uploader is None and (image_u8.shape != (h, w, 3) or image_u8.dtype != np.uint8):
            raise RenderError(f"render input must be uint8 [{h}, {w}, 3], got "
                              f"{image_u8.dtype} {list(image_u8.shape)}")
        uniforms = uniforms if uniforms is not None else {}
        audio = audio if audio is not None else {}
        time = float(time)
        delta = 0.0 if self._last_time is None else max(0.0, time - self._last_time)
        self._last_time = time

        ctx = self.ctx
        ctx.disable(moderngl.BLEND)
        # Upload bottom row first (GL's order): a cheap CPU copy instead of a flipping pass, so
        # the first effect samples the generator's frame directly, at any size.
        if self.uploader is not None:  # returns the texture holding the frame, GL row order
            src_in = self.uploader.upload(image_u8, self._input)
        else:
            np.copyto(self._upload, image_u8[::-1])
            self._input.write(self._upload)
            src_in = self._input
        # The generator's frame is fitted into the output once (bicubic when enlarged); a frame
        # of the output's size goes to the first effect as it is. (A frame the resolution budget
        # made smaller is scaled up here too.)
        scaled = tuple(src_in.size) != tuple(self.output_size)
        if scaled:
            self._scale_to(src_in, self._fbos[0], self.output_size, self.fit)
        if not self._effects:
            if not scaled:
                self._copy_to(src_in, self._fbos[0])
            self._result_tex, self._result_fbo = self._chain[0], self._fbos[0]
        else:
            src = self._chain[0] if scaled else src_in
            for e in self._effects:
                e.set_values(uniforms, audio, time, delta, self._frame)
                dst = self._fbos[1] if src is self._chain[0] else self._fbos[0]
                src, fbo = e.draw(src, dst, self._copy_to, self._feed)
            self._result_tex, self._result_fbo = src, fbo
        self._frame += 1

    @property
    def texture(self) -> moderngl.Texture:
        """The texture holding the last rendered frame (RGBA8, output_size, GL row order)."""
        return self._result_tex

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """The last frame as [H, W, 3] uint8, top row first (into ``out`` when given)."""
        self._result_fbo.read_into(self._readback, components=3, alignment=1)
        flipped = self._readback[::-1]
        if out is None:
            return flipped.copy()
        np.copyto(out, flipped)
        return out

    def save_png(self, path: str | Path) -> Path:
        """Write the last frame as shown (output size, every effect applied) to ``path`` as a
        PNG. RenderError (one line) if nothing was rendered yet or the file cannot be written."""
        from PIL import Image

        path = Path(path)
        if self._frame == 0:
            raise RenderError(f"cannot save still {path}: no frame rendered yet")
        try:
            Image.fromarray(self.read(), "RGB").save(path, format="PNG")
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise RenderError(f"cannot save still {path}: {reason}") from None
        log.info("still saved: %s", path)
        return path

    def present(self, fbo: moderngl.Framebuffer, size: tuple[int, int],
                fit: str | None = None) -> None:
        """Draw the last frame into ``fbo`` (e.g. ``window.ctx.screen``) of ``size`` (w, h)
        pixels, fitted by ``fit`` (default :attr:`fit`: letterbox = aspect kept with black
        bars, crop = aspect kept filling the screen, stretch), bicubic when enlarged."""
        fw, fh = int(size[0]), int(size[1])
        if fw < 1 or fh < 1:
            return
        fbo.use()
        fbo.viewport = (0, 0, fw, fh)
        self._scale_to(self._result_tex, fbo, (fw, fh), fit or self.fit)

    def release(self) -> None:
        """Free every GL object (the renderer is unusable afterwards)."""
        for e in self._effects:
            e.release()
        self._effects = []
        for name in list(self._sources):
            self.set_image(name, None)
        for o in (*self._audio_tex.values(), *self._fbos, *self._chain, self._input,
                  self._blank, self._copy_vao, self._copy, *self._scale_vao, *self._scale):
            o.release()
