"""Read ISF (Interactive Shader Format) fragment shaders and translate them to GLSL 330 core.

An ISF file is a GLSL fragment shader whose first ``/* ... */`` comment holds a JSON header::

    /*{ "DESCRIPTION": "...", "CATEGORIES": ["..."],
        "INPUTS": [ {"NAME": "amount", "TYPE": "float", "DEFAULT": 0.5, "MIN": 0, "MAX": 1} ],
        "PASSES": [ {"TARGET": "buf", "PERSISTENT": true, "FLOAT": true}, {} ] }*/

The header is parsed with :func:`engine.safeio.json_loads` only (nesting checked before parsing);
nothing from the file is executed as Python.
The body is kept line for line (the header comment becomes blank lines) after a preamble that
declares ``#version 330``, a uniform per input, the ISF built-ins (``TIME`` seconds,
``TIMEDELTA`` seconds, ``FRAMEINDEX``, ``RENDERSIZE`` pixels, ``PASSINDEX``, ``DATE`` =
(year, month, day, seconds since midnight)), ``isf_FragNormCoord`` (0..1, origin bottom-left),
one ``sampler2D`` per pass ``TARGET`` and the ``IMG_*`` macros. GLSL 1.x spellings
(``gl_FragColor``, ``texture2D``, ``varying``) are rewritten in place. Because the body keeps its
lines, a compiler log line ``0:N(..)`` maps to file line ``N - preamble_lines``.

Engine audio features reach a shader that declares them itself, e.g. ``uniform float lj_bass;``
(see :class:`engine.render.pipeline.Renderer`).

Limits, checked before the work they guard (a file breaking one is refused with a one-line
:class:`~engine.errors.ShaderError` naming it; a running show keeps the previous version):

=================  ===========================================================================
file size          :data:`MAX_FILE_BYTES` (``safeio.LIMITS["shader"]``, 1 MiB), regular files only
header nesting     ``safeio.MAX_DEPTH`` (64) levels of JSON arrays/objects
INPUTS / PASSES    at most :data:`MAX_INPUTS` / :data:`MAX_PASSES` entries; a ``long`` input's
                   VALUES at most :data:`MAX_VALUES`
numbers            finite (no NaN / Infinity); PASS sizes positive, a fixed size at most
                   :data:`MAX_PASS_SIDE`, a ``$WIDTH*n`` / ``$WIDTH/n`` factor positive
pass buffer sizes  checked against the output size, ``GL_MAX_TEXTURE_SIZE`` and the chain's
                   texture budget by :class:`engine.render.pipeline.Renderer`
=================  ===========================================================================
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import moderngl

from engine import safeio
from engine.errors import ShaderError

__all__ = ["IsfInput", "IsfPass", "IsfShader", "load_isf", "parse_isf", "VERTEX_SHADER"]

#: Full-screen triangle from gl_VertexID (no vertex buffer); isf_FragNormCoord is 0..1.
VERTEX_SHADER = """#version 330
out vec2 isf_FragNormCoord;
void main() {
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    isf_FragNormCoord = p;
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
"""

_GLSL_TYPES = {
    "float": "float", "bool": "bool", "event": "bool", "long": "int",
    "color": "vec4", "point2D": "vec2", "image": "sampler2D",
    "audio": "sampler2D", "audioFFT": "sampler2D",
}
_SIZES = {"float": 1, "bool": 1, "event": 1, "long": 1, "color": 4, "point2D": 2}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE_EXPR = re.compile(r"^\s*\$?(WIDTH|HEIGHT)\s*(?:([*/])\s*([0-9]*\.?[0-9]+)\s*)?$")
#: Bounds on a header (see the module docstring).
MAX_FILE_BYTES = safeio.LIMITS["shader"]
MAX_INPUTS = 256
MAX_PASSES = 32
MAX_VALUES = 4096
#: The largest fixed PASS WIDTH/HEIGHT accepted when parsing (the renderer's cap is lower).
MAX_PASS_SIDE = 1 << 16
_MAX_SIZE_TEXT = 64   # a PASS size string longer than this is refused before any regex sees it
_RESERVED = {"TIME", "TIMEDELTA", "FRAMEINDEX", "RENDERSIZE", "PASSINDEX", "DATE",
             "isf_FragNormCoord", "isf_FragColor"}

_PREAMBLE_HEAD = """#version 330
#define ISF_LJ 1
uniform float TIME;
uniform float TIMEDELTA;
uniform int FRAMEINDEX;
uniform vec2 RENDERSIZE;
uniform int PASSINDEX;
uniform vec4 DATE;
in vec2 isf_FragNormCoord;
out vec4 isf_FragColor;
#define vv_FragNormCoord isf_FragNormCoord
#define IMG_NORM_PIXEL(img, c) texture(img, c)
#define IMG_PIXEL(img, c) texture(img, (c) / vec2(textureSize(img, 0)))
#define IMG_THIS_PIXEL(img) texture(img, isf_FragNormCoord)
#define IMG_THIS_NORM_PIXEL(img) texture(img, isf_FragNormCoord)
#define IMG_SIZE(img) vec2(textureSize(img, 0))
"""

# In-place rewrites of GLSL 1.x / ISF v1 spellings (word-bounded; line count unchanged).
_REWRITES = [
    (re.compile(r"\bgl_FragColor\b"), "isf_FragColor"),
    (re.compile(r"\bgl_FragData\s*\[\s*0\s*\]"), "isf_FragColor"),
    (re.compile(r"\btexture2DRect\b"), "texture"),
    (re.compile(r"\btexture2D\b"), "texture"),
    (re.compile(r"\bvarying\b"), "in"),
    (re.compile(r"^[ \t]*#[ \t]*version\b.*$", re.M), ""),
]

# Compiler log formats: Mesa "0:12(5): error: ...", NVIDIA "0(12) : error C...: ...",
# AMD/others "ERROR: 0:12: ...".
_LOG_LINE = re.compile(
    r"^(?:ERROR:\s*)?(?:\d+:(?P<a>\d+)\(\d+\)|\d+\((?P<b>\d+)\)|\d+:(?P<c>\d+))\s*:\s*(?P<msg>.*)$")


@dataclass
class IsfInput:
    """One header INPUT. ``default``/``min``/``max`` are floats (or tuples for color/point2D),
    ``None`` where the header gives none."""

    name: str
    type: str
    default: Any = None
    min: Any = None
    max: Any = None
    label: str = ""
    values: list | None = None  # "long" inputs: the allowed values (VALUES)

    @property
    def glsl_type(self) -> str:
        return _GLSL_TYPES[self.type]


@dataclass
class IsfPass:
    """One header PASS. ``target`` None = render into the effect's output. ``width``/``height``
    are ``(base, op, number)`` with base "WIDTH"/"HEIGHT", or None = the render size."""

    target: str | None = None
    persistent: bool = False
    float: bool = False
    width: tuple | None = None
    height: tuple | None = None

    def size(self, render_size: tuple[int, int]) -> tuple[int, int]:
        """Pixel size of this pass's target for an output of ``render_size`` (w, h)."""
        def ev(spec, default):
            if spec is None:
                return default
            base, op, num = spec
            v = float(render_size[0] if base == "WIDTH" else render_size[1])
            if op == "*":
                v *= num
            elif op == "/":
                v /= num
            elif base is None:
                v = num
            if not math.isfinite(v) or v > 1 << 31:   # huge factors: far above any cap
                return 1 << 31
            return max(1, int(v))
        return ev(self.width, render_size[0]), ev(self.height, render_size[1])


@dataclass
class IsfShader:
    """A parsed and translated ISF shader."""

    path: str
    description: str
    categories: list[str]
    inputs: list[IsfInput]
    passes: list[IsfPass]
    source: str                 # GLSL 330 fragment shader
    preamble_lines: int         # GLSL line N is file line N - preamble_lines
    header_line: int = 1        # file line of the JSON header
    raw: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def file_line(self, glsl_line: int) -> int:
        """File line of a line of :attr:`source` (the header line for preamble lines)."""
        line = glsl_line - self.preamble_lines
        return line if line >= 1 else self.header_line

    def error_from_log(self, log: str) -> ShaderError:
        """A one-line ShaderError "path:line: message" from a GLSL compiler/linker log; the
        whole log, with its line numbers mapped to the file's, is kept as ``.glsl_log``."""
        def mapped(m):
            n = int(m.group("a") or m.group("b") or m.group("c"))
            return f"{self.path}:{self.file_line(n)}: {m.group('msg')}"

        err = self._error_from_log(log)
        err.glsl_log = "\n".join(_LOG_LINE.sub(mapped, ln.strip())
                                  for ln in log.splitlines() if ln.strip())
        return err

    def _error_from_log(self, log: str) -> ShaderError:
        for raw in log.splitlines():
            m = _LOG_LINE.match(raw.strip())
            if m and "error" in raw.lower():
                n = int(m.group("a") or m.group("b") or m.group("c"))
                msg = " ".join(m.group("msg").split())
                return ShaderError(f"{self.path}:{self.file_line(n)}: {msg}")
        lines = [ln.strip() for ln in log.splitlines()
                 if ln.strip() and not set(ln.strip()) <= {"="}
                 and ln.strip() not in ("GLSL Compiler failed", "fragment_shader",
                                         "vertex_shader", "GLSL Linker failed")]
        detail = "; ".join(lines)[:300] or "compile failed"
        return ShaderError(f"{self.path}: {detail}")

    def compile(self, ctx: moderngl.Context) -> moderngl.Program:
        """Compile with :data:`VERTEX_SHADER`; ShaderError (file line) on failure."""
        try:
            return ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=self.source)
        except moderngl.Error as exc:
            raise self.error_from_log(str(exc)) from None


def _err(path: str, line: int, msg: str) -> ShaderError:
    return ShaderError(f"{path}:{line}: {msg}")


def _shown(v) -> str:
    """A short rendering of a header value for a message (never the whole of a huge one)."""
    if isinstance(v, (list, dict)):
        return "a list" if isinstance(v, list) else "an object"
    if isinstance(v, str):
        v = v[:40]
    return (json.dumps(v) if isinstance(v, (str, int, float, bool)) or v is None else repr(v))[:40]


def _num(path, line, v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _err(path, line, f"{what} must be a number, got {_shown(v)}")
    try:
        x = float(v)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise _err(path, line, f"{what} must be a finite number, got {_shown(v)}")
    return x


def _vec(path, line, v, n, what):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (float(v),) * n
    if not isinstance(v, list) or len(v) < n:
        raise _err(path, line, f"{what} must be a list of {n} numbers")
    return tuple(_num(path, line, x, what) for x in v[:n])


def _parse_input(path: str, line: int, d: Any) -> IsfInput:
    if not isinstance(d, dict):
        raise _err(path, line, "each INPUTS entry must be an object")
    name, typ = d.get("NAME"), d.get("TYPE")
    if not isinstance(name, str) or not _IDENT.match(name) or name in _RESERVED \
            or name.startswith(("gl_", "isf_")):
        raise _err(path, line, f"INPUT NAME {_shown(name)} is not a usable GLSL identifier")
    if not isinstance(typ, str) or typ not in _GLSL_TYPES:
        raise _err(path, line, f"INPUT {name}: unknown TYPE {_shown(typ)}")
    inp = IsfInput(name=name, type=typ, label=str(d.get("LABEL", name)))
    n = _SIZES.get(typ)
    if typ in ("audio", "audioFFT") and d.get("MAX") is not None:
        # ISF: MAX asks the host for this many samples (audio) or bins (audioFFT)
        inp.max = _num(path, line, d["MAX"], f"INPUT {name} MAX")
    if n is None:
        return inp  # image / audio inputs carry no values
    conv = (lambda v, w: _num(path, line, v, f"INPUT {name} {w}")) if n == 1 else \
        (lambda v, w: _vec(path, line, v, n, f"INPUT {name} {w}"))
    if typ in ("bool", "event"):
        inp.default = 1.0 if d.get("DEFAULT") else 0.0
        inp.min, inp.max = 0.0, 1.0
        return inp
    for key, attr in (("DEFAULT", "default"), ("MIN", "min"), ("MAX", "max")):
        if d.get(key) is not None:
            setattr(inp, attr, conv(d[key], key))
    if typ == "long" and isinstance(d.get("VALUES"), list) and d["VALUES"]:
        if len(d["VALUES"]) > MAX_VALUES:
            raise _err(path, line, f"INPUT {name}: {len(d['VALUES'])} VALUES (at most {MAX_VALUES})")
        inp.values = [_num(path, line, v, f"INPUT {name} VALUES") for v in d["VALUES"]]
        inp.min = min(inp.values) if inp.min is None else inp.min
        inp.max = max(inp.values) if inp.max is None else inp.max
    if inp.default is None:
        zero = 0.0 if n == 1 else (0.0,) * n
        inp.default = inp.min if inp.min is not None else zero
    return inp


def _parse_size(path: str, line: int, v: Any, what: str) -> tuple | None:
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        x = _num(path, line, v, what)
        if not 1 <= x <= MAX_PASS_SIDE:
            raise _err(path, line, f"{what} {_shown(v)} out of range (1 to {MAX_PASS_SIDE} pixels)")
        return (None, None, x)
    m = _SIZE_EXPR.match(v) if isinstance(v, str) and len(v) <= _MAX_SIZE_TEXT else None
    if not m:
        raise _err(path, line, f"{what} {_shown(v)} not understood "
                               "(use a number, $WIDTH, $HEIGHT, or $WIDTH/n, $WIDTH*n)")
    num = float(m.group(3)) if m.group(3) else None
    if num is not None and not (math.isfinite(num) and num > 0):
        raise _err(path, line, f"{what} {_shown(v)}: the factor must be a positive number")
    return (m.group(1), m.group(2), num)


def _parse_pass(path: str, line: int, index: int, d: Any) -> IsfPass:
    if not isinstance(d, dict):
        raise _err(path, line, "each PASSES entry must be an object")
    target = d.get("TARGET")
    if target is not None and (not isinstance(target, str) or not _IDENT.match(target)
                               or target in _RESERVED or target.startswith(("gl_", "isf_"))):
        raise _err(path, line, f"PASS TARGET {_shown(target)} is not a usable GLSL identifier")
    what = f"PASS {index}" + (f" ({target})" if target else "")
    return IsfPass(target=target or None, persistent=bool(d.get("PERSISTENT", False)),
                   float=bool(d.get("FLOAT", False)),
                   width=_parse_size(path, line, d.get("WIDTH"), f"{what} WIDTH"),
                   height=_parse_size(path, line, d.get("HEIGHT"), f"{what} HEIGHT"))


def parse_isf(text: str, path: str = "<isf>") -> IsfShader:
    """Parse ISF ``text`` (from file ``path``, used in messages) and translate it to GLSL 330.

    ShaderError (one line, ``path:line: ...``) for anything wrong, including text over the
    limits and a RecursionError or MemoryError from anything on the way."""
    if len(text) > MAX_FILE_BYTES:
        raise _err(path, 1, f"shader is too large ({len(text)} characters; at most {MAX_FILE_BYTES})")
    try:
        return _parse_isf(text, path)
    except (RecursionError, MemoryError) as exc:
        raise _err(path, 1, f"shader is too deep or too large to read ({type(exc).__name__})") from None


def _parse_header(text: str, path: str) -> tuple[re.Match, int, int, dict]:
    """The header comment's match, end offset, first line and parsed JSON object."""
    m = re.match(r"\s*/\*", text)
    if not m:
        raise _err(path, 1, "no ISF JSON header (the file must start with a /*{ ... }*/ comment)")
    start = m.end()
    end = text.find("*/", start)
    header_line = text.count("\n", 0, m.start() + len(m.group(0))) + 1
    if end < 0:
        raise _err(path, header_line, "unterminated ISF header comment")
    try:
        header = safeio.json_loads(text[start:end], path)
    except json.JSONDecodeError as exc:
        raise _err(path, header_line + exc.lineno - 1, f"bad ISF JSON header: {exc.msg}") from None
    except safeio.FileRefused as exc:
        raise _err(path, header_line, f"bad ISF JSON header: {exc.reason}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise _err(path, header_line, f"bad ISF JSON header: {str(exc)[:120]}") from None
    if not isinstance(header, dict):
        raise _err(path, header_line, "the ISF JSON header must be an object")
    return m, end, header_line, header


def _parse_isf(text: str, path: str) -> IsfShader:
    m, end, header_line, header = _parse_header(text, path)
    raw_inputs = header.get("INPUTS", [])
    raw_passes = header.get("PASSES", [])
    if not isinstance(raw_inputs, list) or not isinstance(raw_passes, list):
        raise _err(path, header_line, "INPUTS and PASSES must be lists")
    for what, items, most in (("INPUTS", raw_inputs, MAX_INPUTS), ("PASSES", raw_passes, MAX_PASSES)):
        if len(items) > most:
            raise _err(path, header_line, f"{len(items)} {what} entries (at most {most})")
    inputs = [_parse_input(path, header_line, d) for d in raw_inputs]
    passes = [_parse_pass(path, header_line, k, d) for k, d in enumerate(raw_passes)] or [IsfPass()]
    names = [i.name for i in inputs]
    clash = {n for n, k in Counter(names).items() if k > 1} | ({p.target for p in passes} & set(names))
    if clash:
        raise _err(path, header_line, f"name {sorted(clash)[0]} is used twice in the header")

    decl = [f"uniform {i.glsl_type} {i.name};" for i in inputs]
    seen = set()
    for p in passes:
        if p.target and p.target not in seen:
            seen.add(p.target)
            decl.append(f"uniform sampler2D {p.target};")
    preamble = _PREAMBLE_HEAD + "\n".join(decl) + "\n"
    body = text[:m.start()] + "\n" * text.count("\n", m.start(), end + 2) + text[end + 2:]
    for pattern, repl in _REWRITES:
        body = pattern.sub(repl, body)
    cats = header.get("CATEGORIES", [])
    return IsfShader(
        path=path, description=str(header.get("DESCRIPTION", "")),
        categories=[str(c) for c in cats] if isinstance(cats, list) else [],
        inputs=inputs, passes=passes, source=preamble + body,
        preamble_lines=preamble.count("\n"), header_line=header_line, raw=header)


def value_inputs(effect: str, shader: IsfShader) -> dict[str, tuple]:
    """``{"<effect>.<input>": (default, min, max)}`` for every non-image input of ``shader``:
    the names a mapping's ``shader.<effect>.<input>`` targets and OSC use."""
    return {f"{effect}.{inp.name}": (inp.default, inp.min, inp.max)
            for inp in shader.inputs if inp.glsl_type != "sampler2D"}


def load_isf(path: str | Path) -> IsfShader:
    """Read and translate the ISF file at ``path``; ShaderError (one line) on any problem."""
    p = str(path)
    try:
        text = safeio.read_text(path, MAX_FILE_BYTES, "shader")
    except safeio.FileRefused as exc:
        raise ShaderError(f"{p}: {exc.reason}") from None
    except OSError as exc:
        raise ShaderError(f"{p}: cannot read shader: {exc.strerror or exc}") from None
    return parse_isf(text, p)
