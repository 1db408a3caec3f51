"""Mapping files: TOML text -> a typed, validated :class:`MappingSpec`.

Every problem becomes a :class:`~engine.errors.MappingError` naming the file and the line of the
offending key. ``tomllib`` reports positions only for syntax errors, so :class:`LineIndex` scans
the text itself and records the line of each table header (``[latent]``, the i-th ``[[route]]``)
and of each ``key =`` inside it. The reference for the file format is ``docs/mapping.md``.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Union

from engine import safeio
from engine.errors import MappingError
from engine.audio import features as audio_features
from engine.mapping import expr as ex

# ---------------------------------------------------------------------------------------------
# Vocabulary

#: Scalar audio features: the analyser's own list, so a new feature is a mapping source at once
#: (see docs/features.md for their ranges; ``beat``/``downbeat`` are 0/1 events).
SCALAR_FEATURES = audio_features.SCALAR_FEATURES
#: Vector audio features and their lengths.
VECTOR_FEATURES = {"chroma": 12}
#: Sources that exist only when ``[clock] bpm`` is set (``beat_phase``/``bar_phase`` are then
#: the clock's, following the live tracker once it reports a tempo).
CLOCK_SOURCES = ("beats",)
#: Features a live tempo tracker may send; when present they replace the clock's own beat.
TEMPO_FEATURES = ("bpm", "beat_phase")
#: Always-present sources that are not features.
TIME_SOURCES = ("time",)

LAYER_GROUPS = ("coarse", "middle", "fine", "all")
INTERPOLATIONS = ("linear", "slerp", "spline")
LFO_SHAPES = ("sine", "triangle", "saw", "square", "random")
CURVES = ("linear", "exp", "smoothstep")
BOUNDS = ("clamp", "bounce", "wrap")
TARGETS = ("latent.push", "latent.blend", "latent.pull", "latent.motion", "latent.speed",
           "truncation", "noise", "shader.<effect>.<input>", "generator.<param>")
#: How a latent contribution combines with the rows it targets (see docs/mapping.md).
MODES = ("average", "add", "overwrite")
#: The mode of each latent contribution when the file gives none.
DEFAULT_MODES = {"push": "add", "pull": "average", "blend": "average", "motion": "add",
                 "noise": "overwrite"}
#: Most keyframes a mapping may have.
MAX_KEYS = 256
#: Largest mapping text (characters) the parser reads; files are read with a bound of
#: ``safeio.LIMITS["mapping"]`` bytes (1 MiB), so an endless file costs nothing.
MAX_TEXT = 1_000_000
#: Deepest nesting of arrays / inline tables in a mapping file (checked before parsing).
MAX_DEPTH = safeio.MAX_DEPTH

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_EFFECT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")


# ---------------------------------------------------------------------------------------------
# Typed spec


@dataclass
class ParamSpec:
    """A named live control: ``param.<name>`` in expressions, OSC ``/lj/param/<name>``."""

    name: str
    default: float
    min: float = 0.0
    max: float = 1.0
    line: int | None = None


@dataclass
class WalkSpec:
    """How fast the walk moves from one keyframe to the next."""

    unit: str = "seconds"          # "seconds" | "beats" | "bars"
    per_key: float = 8.0           # that many units from one keyframe to the next
    interp: str = "slerp"          # "linear" | "slerp"
    layers: Union[str, tuple[int, int]] = "all"   # rows the walk drives; others hold key 0
    line: int | None = None


@dataclass
class LfoSpec:
    """``[lfo] <name> = { shape, hz | beats | bars, phase, seed }``: the source ``lfo.<name>``,
    0..1. ``rate`` is cycles per second (``unit == "hz"``) or the cycle length in beats/bars."""

    name: str
    shape: str = "sine"
    unit: str = "hz"               # "hz" | "beats" | "bars"
    rate: float = 1.0
    phase: float = 0.0             # 0..1, added to the cycle position
    seed: int = 0                  # random: which sequence of held values
    line: int | None = None


@dataclass
class MotionSpec:
    """``[latent] motion``: a bounded random drift of w, one direction per dimension.

    ``speed``: typical spreads (see ``latent_spread``) per second at motion 1; ``jitter`` 0..1:
    per-hop random variation of each dimension's step; ``bound``: how far (in spreads, per
    dimension) w may drift from the walk before that dimension turns back."""

    speed: float = 0.25
    jitter: float = 0.5
    bound: float = 1.0
    seed: int = 0
    layers: Union[str, tuple[int, int]] = "all"
    mode: str = "add"
    line: int | None = None


@dataclass
class LatentSpec:
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    walk: WalkSpec = field(default_factory=WalkSpec)
    truncation: float = 1.0
    noise: float = 0.0
    #: keyframes in order: an int is a seed, a str an absolute path to a ``.npy`` file
    keys: list[Union[int, str]] = field(default_factory=list)
    keys_line: int | None = None
    motion: MotionSpec | None = None

    def key_list(self) -> list[Union[int, str]]:
        """The keyframes in order (seeds as ints, files as paths)."""
        return list(self.keys) if self.keys else list(self.seeds)


@dataclass
class TimeShape:
    """``smooth`` or ``envelope`` times in milliseconds (>= 0)."""

    attack_ms: float = 0.0
    release_ms: float = 0.0


@dataclass
class RouteSpec:
    """One ``[[route]]``: a source expression, a target and its conditioning."""

    index: int                      # 0-based position among the routes
    line: int | None                # line of its [[route]] header
    source: str                     # the ``from`` text
    expr: ex.Node | None            # scalar expression tree (None for a vector source)
    vector: str | None              # bare vector source name (e.g. "chroma"), else None
    width: int                      # 1 for scalar routes, the vector length otherwise
    to: str                         # the ``to`` text
    kind: str                       # push | blend | speed | truncation | noise | uniform | generator
    uniform: str | None = None      # "<effect>.<input>" for shader targets, "<param>" for generator
    mode: str | None = None         # average | add | overwrite (None: the kind's default)
    direction_seed: int | None = None
    direction_file: str | None = None   # latent.push: a saved direction (``latents/<name>.npy``)
    layers: Union[str, tuple[int, int]] = "all"
    amount: ex.Node = field(default_factory=lambda: ex.Num(1.0))
    amount_text: str = "1.0"
    gain: float = 1.0
    gain_expr: ex.Node | None = None   # set when gain is an expression (evaluated every hop)
    offset: float = 0.0
    power: float = 1.0
    range: tuple[float, float] | None = None
    clamp: tuple[float, float] | None = None
    smooth: TimeShape | None = None
    envelope: TimeShape | None = None
    threshold: float | None = None
    gate: ex.Node | None = None        # the value is 0 while this is <= 0.5
    hold: ex.Node | None = None        # sample-and-hold: latch on a rising edge through 0.5
    normalize_s: float | None = None   # running min/max window (seconds)
    quantize_beats: float | None = None  # latch once every that many beats
    curve: str = "linear"              # linear | exp | smoothstep
    curve_k: float = 4.0               # steepness of the exp curve
    integrate: tuple[float, float, str] | None = None   # (lo, hi, clamp|bounce|wrap)
    key: int | None = None             # latent.pull: the keyframe index
    key_lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, key: str) -> int | None:
        """Line of ``key`` inside this route (the header line if the key is absent)."""
        return self.key_lines.get(key, self.line)


@dataclass
class MappingSpec:
    """A parsed and validated mapping file (not yet tied to a latent space)."""

    path: str
    name: str
    generator: str = "builtin:cppn"
    description: str = ""
    params: dict[str, ParamSpec] = field(default_factory=dict)
    bpm: float | None = None
    beats_per_bar: int = 4
    beat_offset: float = 0.0        # seconds: where beat 0 falls on the audio clock
    latent: LatentSpec = field(default_factory=LatentSpec)
    lfos: dict[str, LfoSpec] = field(default_factory=dict)
    shader_chain: list[str] = field(default_factory=list)
    routes: list[RouteSpec] = field(default_factory=list)
    #: ``[bindings]``: OSC address / MIDI control -> target, kept as written (the control
    #: branch interprets it)
    bindings: dict[str, str] = field(default_factory=dict)
    #: extra expressions whose sources the compiled mapping must read (scene switch triggers)
    watch: list = field(default_factory=list)
    #: scenes (``[[scene]]``): each a full MappingSpec; empty for a plain mapping
    scenes: list = field(default_factory=list)
    #: ``[scenes]`` settings and ``[[cue]]`` entries of a scene file (see engine.mapping.scenes)
    scene_options: Any = None
    lines: "LineIndex | None" = None

    def error(self, message: str, line: int | None = None) -> MappingError:
        """A :class:`MappingError` for this file (for callers that validate later, e.g. shader
        inputs against ``Mapping.uniform_targets``)."""
        return MappingError(message, self.path, line)


@dataclass
class Crossfade:
    """How a scene change blends: ``length`` in ``unit`` (seconds or beats), w by ``interp``."""

    length: float = 2.0
    unit: str = "seconds"
    interp: str = "slerp"


@dataclass
class SceneEntry:
    name: str
    crossfade: Crossfade
    switch_on: ex.Node | None = None   # rising edge through 0.5 -> go to ``next``
    next: Any = None                   # scene index after parsing
    line: int | None = None


@dataclass
class CueEntry:
    at: float                          # seconds from the start (of each loop)
    kind: str                          # "scene" | "preset"
    value: Any                         # scene index, scene name/number text, or preset name
    line: int | None = None


@dataclass
class CueSpec:
    cues: list[CueEntry] = field(default_factory=list)
    loop: float | None = None          # seconds; None: play once
    clock: str = "audio"               # "audio" | "wall"
    autostart: bool = True


@dataclass
class SceneOptions:
    crossfade: Crossfade = field(default_factory=Crossfade)
    scenes: list[SceneEntry] = field(default_factory=list)
    start: int = 0
    cues: CueSpec = field(default_factory=CueSpec)


# ---------------------------------------------------------------------------------------------
# Line locator

_BARE = r"[A-Za-z0-9_-]+"
_BASIC = r'"(?:[^"\\]|\\.)*"'
_LITERAL = r"'[^']*'"
_PART = rf"(?:{_BARE}|{_BASIC}|{_LITERAL})"
_KEYPATH = rf"{_PART}(?:\s*\.\s*{_PART})*"
_AOT_RE = re.compile(rf"\s*\[\[\s*({_KEYPATH})\s*\]\]")
_TABLE_RE = re.compile(rf"\s*\[\s*({_KEYPATH})\s*\]")
_KEY_RE = re.compile(rf"\s*({_KEYPATH})\s*=")
_PART_RE = re.compile(_PART)

PathKey = tuple  # tuple[str | int, ...]


def _split_keypath(text: str) -> tuple[str, ...]:
    parts = []
    for p in _PART_RE.findall(text):
        if p[0] in "\"'":
            p = p[1:-1]
        parts.append(p)
    return tuple(parts)


class LineIndex:
    """Lines (1-based) of table headers and keys in TOML text.

    Paths are tuples; the i-th ``[[route]]`` is ``("route", i)`` and its key ``from`` is
    ``("route", i, "from")``. Nested keys inside inline tables are not indexed: a lookup falls
    back to the longest known prefix (the line of ``direction`` for ``direction.seed``).
    """

    def __init__(self, text: str):
        self._lines: dict[PathKey, int] = {}
        self.count = text.count("\n") + 1
        self._scan(text)

    def line(self, *path: Any) -> int | None:
        p = tuple(path)
        while p:
            if p in self._lines:
                return self._lines[p]
            p = p[:-1]
        return None

    def _record(self, path: PathKey, lineno: int) -> None:
        self._lines.setdefault(path, lineno)

    def _scan(self, text: str) -> None:
        aot: dict[tuple[str, ...], int] = {}
        table: PathKey = ()
        depth = 0               # open [ / { of a value spanning lines
        in_str: str | None = None  # open multi-line string delimiter
        for lineno, line in enumerate(text.split("\n"), start=1):
            start = 0
            if in_str is None and depth == 0:
                m = _AOT_RE.match(line)
                if m:
                    parts = _split_keypath(m.group(1))
                    for k in [k for k in aot if len(k) > len(parts) and k[:len(parts)] == parts]:
                        del aot[k]    # [[scene.route]] counts restart in each [[scene]]
                    aot[parts] = aot.get(parts, 0) + 1
                    table = self._resolve(parts, aot, last_is_aot=True)
                    self._record(table, lineno)
                    start = m.end()
                else:
                    m = _TABLE_RE.match(line)
                    if m:
                        table = self._resolve(_split_keypath(m.group(1)), aot, last_is_aot=False)
                        self._record(table, lineno)
                        start = m.end()
                    else:
                        m = _KEY_RE.match(line)
                        if m:
                            self._record(table + _split_keypath(m.group(1)), lineno)
                            start = m.end()
            depth, in_str = self._skip_value(line, start, depth, in_str)

    @staticmethod
    def _resolve(parts: tuple[str, ...], aot: dict, last_is_aot: bool) -> PathKey:
        out: list = []
        for i in range(1, len(parts) + 1):
            out.append(parts[i - 1])
            prefix = parts[:i]
            if prefix in aot and (i < len(parts) or last_is_aot):
                out.append(aot[prefix] - 1)
        return tuple(out)

    @staticmethod
    def _skip_value(line: str, i: int, depth: int, in_str: str | None) -> tuple[int, str | None]:
        """Track brackets and strings over the rest of a line; stop at a comment."""
        n = len(line)
        while i < n:
            if in_str is not None:
                if in_str == '"' or in_str == '"""':
                    if line[i] == "\\":
                        i += 2
                        continue
                if line.startswith(in_str, i):
                    i += len(in_str)
                    in_str = None
                    continue
                i += 1
                continue
            c = line[i]
            if c == "#":
                break
            if c in "\"'":
                triple = c * 3
                if line.startswith(triple, i):
                    in_str = triple
                    i += 3
                else:
                    in_str = c
                    i += 1
                continue
            if c in "[{":
                depth += 1
            elif c in "]}":
                depth = max(0, depth - 1)
            i += 1
        if in_str in ('"', "'"):  # single-line strings cannot span lines
            in_str = None
        return depth, in_str


class _SceneLines:
    """Line lookups for one scene's merged body: keys the scene gives are looked up under
    ``("scene", i)``, the rest (shared defaults) at the top level; merged routes after the
    ``n_top`` shared ones are the scene's own ``[[scene.route]]``."""

    def __init__(self, top: LineIndex, i: int, table: dict, n_top: int):
        self.top, self.i, self.table, self.n_top = top, i, table, n_top
        self.count = top.count

    def line(self, *path: Any) -> int | None:
        if not path:
            return self.top.line("scene", self.i)
        head = path[0]
        if head == "route" and len(path) > 1 and isinstance(path[1], int):
            if path[1] >= self.n_top:
                return self.top.line("scene", self.i, "route", path[1] - self.n_top, *path[2:])
            return self.top.line(*path)
        own = self.table.get(head)
        if isinstance(own, dict) and (len(path) == 1 or head == "latent" or path[1] in own):
            return self.top.line("scene", self.i, *path)
        if head in self.table and not isinstance(own, dict):
            return self.top.line("scene", self.i, *path)
        return self.top.line(*path)


# ---------------------------------------------------------------------------------------------
# Loading


def load_mapping(path: str | Path) -> MappingSpec:
    """Read and parse a mapping file; a missing or unreadable file is a MappingError too.

    Only a regular file of at most ``safeio.LIMITS["mapping"]`` bytes is read (a FIFO, a device
    or ``/dev/zero`` is refused at once, without blocking or reading it)."""
    p = Path(path)
    try:
        text = safeio.read_text(p, safeio.LIMITS["mapping"], "mapping file")
    except FileNotFoundError:
        raise MappingError("mapping file not found", p) from None
    except safeio.FileRefused as e:
        raise MappingError(e.reason, p) from None
    return parse_mapping(text, p)


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def parse_mapping(text: str, path: str | Path = "<string>") -> MappingSpec:
    """Parse mapping TOML text into a validated :class:`MappingSpec`."""
    path = str(path)
    if len(text) > MAX_TEXT:
        raise MappingError(f"mapping file is too large ({len(text)} characters; at most "
                           f"{MAX_TEXT})", path)
    try:
        data = safeio.toml_loads(text, path, MAX_DEPTH)
    except safeio.FileRefused as e:  # too deep, or RecursionError / MemoryError while parsing
        raise MappingError(e.reason, path) from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e).splitlines()[0] if str(e) else "invalid TOML"
        line = getattr(e, "lineno", None)
        col = getattr(e, "colno", None)
        m = _TOML_POS.search(msg)
        if m:
            line, col = int(m.group(1)), int(m.group(2))
            msg = msg[: m.start()]
        elif _TOML_END.search(msg):
            msg = msg[: _TOML_END.search(msg).start()]
            line = line or (text.count("\n") + 1)
        if hasattr(e, "msg") and getattr(e, "msg", None):
            msg = e.msg
        where = f" (column {col})" if col else ""
        raise MappingError(f"TOML syntax error: {msg}{where}", path, line) from None
    try:
        return _SpecParser(text, path, data).parse()
    except (RecursionError, MemoryError):  # a bound above was not enough: still one line
        raise MappingError("mapping is too deep or too large to check", path) from None


# ---------------------------------------------------------------------------------------------
# Validation

_TOP_KEYS = ("meta", "params", "clock", "lfo", "latent", "shaders", "route", "bindings", "scene",
             "scenes", "cue", "cues")
_AOT_KEYS = ("route", "scene", "cue")
#: Keys of one [[scene]]: its own settings and the mapping tables it may give.
_SCENE_KEYS = ("name", "crossfade", "switch_on", "next", "params", "lfo", "latent", "route")
_SCENES_KEYS = ("crossfade", "switch_on", "start")
_CROSSFADE_KEYS = ("seconds", "beats", "interp")
_CUE_KEYS = ("at", "bar", "scene", "preset")
_CUES_KEYS = ("loop", "clock", "start")
#: Most scenes in one file, and most cues in one list.
MAX_SCENES = 64
MAX_CUES = 1024
_META_KEYS = ("name", "generator", "description", "author")
_CLOCK_KEYS = ("bpm", "beats_per_bar", "offset")
_LATENT_KEYS = ("keyframes", "walk", "truncation", "noise", "motion")
_KEYFRAME_KEYS = ("seeds", "files", "latents")
#: Saved latents (``/lj/latent/save``) live in this folder beside the mapping file.
LATENT_DIR = "latents"
_LFO_KEYS = ("shape", "hz", "beats", "bars", "phase", "seed")
_MOTION_KEYS = ("speed", "jitter", "bound", "seed", "layers", "mode")
_INTEGRATE_KEYS = ("min", "max", "bounds")
_WALK_KEYS = ("seconds_per_key", "beats_per_key", "bars_per_key", "interp", "layers")
_SHADER_KEYS = ("chain",)
_PARAM_KEYS = ("default", "min", "max")
_ROUTE_KEYS = ("from", "to", "direction", "layers", "mode", "amount", "key", "gain", "offset",
               "power",
               "curve", "range", "clamp", "smooth", "envelope", "threshold", "gate", "hold",
               "normalize", "quantize", "integrate")
_TIME_KEYS = ("attack_ms", "release_ms")
_MAX_MS = 60_000.0


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return "a date/time"


def suggest(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _SpecParser:
    def __init__(self, text: str, path: str, data: dict):
        self.path = path
        self.data = data
        self.lines = LineIndex(text)

    # -- error helpers -----------------------------------------------------------------------
    def fail(self, message: str, *where: Any) -> MappingError:
        return MappingError(message, self.path, self.lines.line(*where) if where else None)

    def keys(self, table: dict, allowed: tuple[str, ...], what: str, *where: Any) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} in {what}{suggest(key, allowed)}"
                                f" (allowed: {', '.join(allowed)})", *where, key)

    def table(self, value: Any, what: str, *where: Any) -> dict:
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be a table, not {_type_name(value)}", *where)
        return value

    def number(self, value: Any, what: str, *where: Any, lo: float | None = None,
               hi: float | None = None, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"{what} must be a number, not {_type_name(value)}", *where)
        x = float(value)
        if not math.isfinite(x):
            raise self.fail(f"{what} must be a finite number", *where)
        if positive and x <= 0:
            raise self.fail(f"{what} must be greater than 0, got {value}", *where)
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            rng = f"{lo:g}..{hi:g}" if lo is not None and hi is not None else (
                f">= {lo:g}" if lo is not None else f"<= {hi:g}")
            raise self.fail(f"{what} must be {rng}, got {value}", *where)
        return x

    def integer(self, value: Any, what: str, *where: Any, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{what} must be an integer, not {_type_name(value)}", *where)
        if not lo <= value <= hi:
            raise self.fail(f"{what} must be {lo}..{hi}, got {value}", *where)
        return value

    def string(self, value: Any, what: str, *where: Any, choices: tuple[str, ...] = ()) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{what} must be a string, not {_type_name(value)}", *where)
        if choices and value not in choices:
            raise self.fail(f"{what} must be one of {', '.join(choices)}, got {value!r}"
                            f"{suggest(value, choices)}", *where)
        return value

    def pair(self, value: Any, what: str, *where: Any) -> tuple[float, float]:
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(f"{what} must be an array of two numbers [lo, hi]", *where)
        return (self.number(value[0], what, *where), self.number(value[1], what, *where))

    # -- top level ---------------------------------------------------------------------------
    def parse(self) -> MappingSpec:
        d = self.data
        for key, value in d.items():
            if key not in _TOP_KEYS:
                raise self.fail(f"unknown table [{key}]{suggest(key, _TOP_KEYS)}"
                                f" (allowed: {', '.join(_TOP_KEYS)})", key)
            if key in _AOT_KEYS:
                if isinstance(value, dict):
                    raise self.fail(f"{key}s are written [[{key}]] (double brackets), one per "
                                    f"{key}", key)
                if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
                    raise self.fail(f"{key} must be [[{key}]] tables", key)
            else:
                self.table(value, f"[{key}]", key)
        if "scene" not in d:
            for key in ("scenes", "cue", "cues"):
                if key in d:
                    raise self.fail(f"[{key}] needs scenes: add [[scene]] tables", key)
            return self.body(d)
        base = {k: v for k, v in d.items() if k not in ("scene", "scenes", "cue", "cues")}
        spec = self.body(base)
        self.scenes(d, spec)
        return spec

    def body(self, d: dict) -> MappingSpec:
        """One mapping body (a plain file, or the merged tables of one scene)."""
        spec = MappingSpec(path=self.path, name=Path(self.path).stem, lines=self.lines)
        self.meta(d.get("meta", {}), spec)
        self.clock(d.get("clock", {}), spec)
        spec.params = self.params(d.get("params", {}))
        spec.lfos = self.lfos(d.get("lfo", {}), spec)
        spec.latent = self.latent(d.get("latent", {}), spec)
        spec.shader_chain = self.shaders(d.get("shaders", {}))
        spec.routes = [self.route(i, r, spec) for i, r in enumerate(d.get("route", []))]
        spec.bindings = self.bindings(d.get("bindings", {}))
        return spec

    # -- scenes and cues ---------------------------------------------------------------------
    def scenes(self, d: dict, spec: MappingSpec) -> None:
        """``[[scene]]`` tables (each a mapping body over the top-level defaults), ``[scenes]``
        settings and ``[[cue]]`` times. Fills ``spec.scenes`` and ``spec.scene_options``."""
        raw = d["scene"]
        if len(raw) > MAX_SCENES:
            raise self.fail(f"at most {MAX_SCENES} scenes", "scene")
        opts = SceneOptions()
        st = d.get("scenes", {})
        self.keys(st, _SCENES_KEYS, "[scenes]", "scenes")
        if "crossfade" in st:
            opts.crossfade = self.crossfade(st["crossfade"], spec, "scenes", "crossfade")
        n_top = len(d.get("route", []))
        names: list[str] = []
        for i, t in enumerate(raw):
            where = ("scene", i)
            self.keys(t, _SCENE_KEYS, f"scene #{i + 1}", *where)
            name = self.string(t.get("name", f"scene{i + 1}"), "scene name", *where, "name")
            if not _IDENT.match(name):
                raise self.fail(f"scene name {name!r} must be letters, digits and _", *where,
                                "name")
            if name in names:
                raise self.fail(f"scene name {name!r} is used twice", *where, "name")
            names.append(name)
            merged = {k: v for k, v in d.items() if k not in ("scene", "scenes", "cue", "cues")}
            for key in ("params", "lfo"):
                if key in t:
                    merged[key] = dict(d.get(key, {}), **self.table(t[key], f"[scene.{key}]",
                                                                    *where, key))
            if "latent" in t:
                merged["latent"] = self.table(t["latent"], "[scene.latent]", *where, "latent")
            if "route" in t:
                if not isinstance(t["route"], list) or not all(isinstance(r, dict)
                                                               for r in t["route"]):
                    raise self.fail("scene routes are written [[scene.route]]", *where, "route")
                merged["route"] = list(d.get("route", [])) + list(t["route"])
            top_lines = self.lines
            self.lines = _SceneLines(top_lines, i, t, n_top)
            try:
                sc = self.body(merged)
                sc.name = name
                sc.lines = top_lines
                crossfade = opts.crossfade
                if "crossfade" in t:
                    crossfade = self.crossfade(t["crossfade"], sc, "crossfade")
                switch = None
                if "switch_on" in t or "switch_on" in st:
                    src = t["switch_on"] if "switch_on" in t else st["switch_on"]
                    w = ("switch_on",) if "switch_on" in t else ("scenes", "switch_on")
                    text = self.string(src, "switch_on (an expression)", *w)
                    switch = self.expression(text, "switch_on", w)
                    self.check_sources(switch, sc, "switch_on", w)
                    sc.watch = [switch]
            finally:
                self.lines = top_lines
            opts.scenes.append(SceneEntry(name, crossfade, switch, t.get("next"),
                                          self.lines.line(*where)))
            spec.scenes.append(sc)
        for i, (entry, t) in enumerate(zip(opts.scenes, raw)):
            if entry.next is not None:
                nxt = self.string(entry.next, "scene next", "scene", i, "next")
                if nxt not in names:
                    raise self.fail(f"scene next = {nxt!r} is not a scene{suggest(nxt, names)} "
                                    f"(scenes: {', '.join(names)})", "scene", i, "next")
                entry.next = names.index(nxt)
            else:
                entry.next = (i + 1) % len(names)
        if "start" in st:
            opts.start = self.scene_ref(st["start"], names, "scenes", "start")
        opts.cues = self.cues(d.get("cue", []), d.get("cues", {}), spec, names, presets=False)
        spec.scene_options = opts
        # the file's parameters are every scene's (OSC declares them all)
        for sc in spec.scenes:
            for name, p in sc.params.items():
                spec.params.setdefault(name, p)

    def scene_ref(self, value: Any, names: list[str], *where: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return self.integer(value, "scene number", *where, lo=1, hi=len(names)) - 1
        name = self.string(value, "scene (a name or a number from 1)", *where)
        if name not in names:
            raise self.fail(f"unknown scene {name!r}{suggest(name, names)} (scenes: "
                            f"{', '.join(names)})", *where)
        return names.index(name)

    def crossfade(self, value: Any, spec: MappingSpec, *where: Any) -> "Crossfade":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Crossfade(self.number(value, "crossfade (seconds)", *where, lo=0.0, hi=3600.0))
        t = self.table(value, "crossfade ({ seconds = 2 } or { beats = 8 })", *where)
        self.keys(t, _CROSSFADE_KEYS, "crossfade", *where)
        units = [k for k in ("seconds", "beats") if k in t]
        if len(units) > 1:
            raise self.fail("crossfade: give seconds or beats, not both", *where)
        cf = Crossfade()
        if units:
            cf.unit = units[0]
            cf.length = self.number(t[cf.unit], f"crossfade.{cf.unit}", *where, lo=0.0, hi=3600.0)
            if cf.unit == "beats" and spec.bpm is None:
                raise self.fail("crossfade.beats needs [clock] bpm", *where)
        if "interp" in t:
            cf.interp = self.string(t["interp"], "crossfade.interp", *where,
                                    choices=("slerp", "linear"))
        return cf

    def cues(self, raw: list, t: dict, spec: MappingSpec | None, scenes: list[str] | None,
             presets: bool) -> "CueSpec":
        """``[[cue]]`` entries and ``[cues]`` settings (in a scene file or a cue file)."""
        self.keys(t, _CUES_KEYS, "[cues]", "cues")
        out = CueSpec()
        if "loop" in t:
            out.loop = self.number(t["loop"], "cues.loop (seconds)", "cues", "loop",
                                   positive=True, hi=1e7)
        if "clock" in t:
            out.clock = self.string(t["clock"], "cues.clock", "cues", "clock",
                                    choices=("audio", "wall") if presets else ("audio",))
        if "start" in t:
            if not isinstance(t["start"], bool):
                raise self.fail("cues.start must be true or false", "cues", "start")
            out.autostart = t["start"]
        if len(raw) > MAX_CUES:
            raise self.fail(f"at most {MAX_CUES} cues", "cue")
        bpm = spec.bpm if spec is not None else None
        for i, c in enumerate(raw):
            where = ("cue", i)
            self.keys(c, _CUE_KEYS if presets else ("at", "bar", "scene"), f"cue #{i + 1}",
                      *where)
            has = [k for k in ("at", "bar") if k in c]
            if len(has) != 1:
                raise self.fail(f"cue #{i + 1} needs exactly one of at (seconds), bar", *where)
            if has[0] == "at":
                at = self.number(c["at"], f"cue #{i + 1} at (seconds)", *where, "at", lo=0.0,
                                 hi=1e7)
            else:
                if bpm is None:
                    raise self.fail(f"cue #{i + 1} bar needs [clock] bpm", *where, "bar")
                bar = self.number(c["bar"], f"cue #{i + 1} bar", *where, "bar", lo=0.0, hi=1e6)
                at = spec.beat_offset + bar * spec.beats_per_bar * 60.0 / bpm
            targets = [k for k in ("scene", "preset") if k in c]
            if len(targets) != 1:
                raise self.fail(f"cue #{i + 1} needs one of "
                                f"{'scene, preset' if presets else 'scene'}", *where)
            kind = targets[0]
            if kind == "scene" and scenes is not None:
                value: Any = self.scene_ref(c["scene"], scenes, *where, "scene")
            else:
                value = self.string(c[kind], f"cue #{i + 1} {kind}", *where, kind)
                if not _EFFECT.match(value):
                    raise self.fail(f"cue #{i + 1} {kind} {value!r} must be a name (letters, "
                                    "digits, _ and -)" if kind == "preset" else
                                    f"cue #{i + 1} scene {value!r} must be a name or number",
                                    *where, kind)
            out.cues.append(CueEntry(at, kind, value, self.lines.line(*where)))
        out.cues.sort(key=lambda c: c.at)
        if out.loop is not None and out.cues and out.cues[-1].at >= out.loop:
            raise self.fail(f"cues.loop ({out.loop:g} s) must be longer than the last cue "
                            f"({out.cues[-1].at:g} s)", "cues", "loop")
        return out

    def bindings(self, t: dict) -> dict[str, str]:
        """``[bindings]``: string keys to string values, otherwise passed through untouched."""
        out = {}
        for key, value in t.items():
            if not isinstance(value, str):
                raise self.fail(f"bindings.{key!r} must be a string (a target such as "
                                f"\"param.speed\"), not {_type_name(value)}", "bindings", key)
            if not key or len(key) > 256 or len(value) > 256:
                raise self.fail("a binding's address and target must be 1..256 characters",
                                "bindings", key)
            out[key] = value
        return out

    def meta(self, t: dict, spec: MappingSpec) -> None:
        self.keys(t, _META_KEYS, "[meta]", "meta")
        if "name" in t:
            spec.name = self.string(t["name"], "meta.name", "meta", "name")
        if "generator" in t:
            spec.generator = self.string(t["generator"], "meta.generator", "meta", "generator")
            if not spec.generator.strip():
                raise self.fail("meta.generator must not be empty", "meta", "generator")
        if "description" in t:
            spec.description = self.string(t["description"], "meta.description", "meta",
                                           "description")
        if "author" in t:
            self.string(t["author"], "meta.author", "meta", "author")

    def clock(self, t: dict, spec: MappingSpec) -> None:
        self.keys(t, _CLOCK_KEYS, "[clock]", "clock")
        if "bpm" in t:
            spec.bpm = self.number(t["bpm"], "clock.bpm", "clock", "bpm", lo=1.0, hi=1000.0)
        if "beats_per_bar" in t:
            spec.beats_per_bar = self.integer(t["beats_per_bar"], "clock.beats_per_bar", "clock",
                                              "beats_per_bar", lo=1, hi=64)
        if "offset" in t:
            spec.beat_offset = self.number(t["offset"], "clock.offset (seconds)", "clock",
                                           "offset")
        if spec.bpm is None:
            for key in ("beats_per_bar", "offset"):
                if key in t:
                    raise self.fail(f"clock.{key} needs clock.bpm", "clock", key)

    def params(self, t: dict) -> dict[str, ParamSpec]:
        out: dict[str, ParamSpec] = {}
        for name, value in t.items():
            where = ("params", name)
            if not _IDENT.match(name):
                raise self.fail(f"parameter name {name!r} must be letters, digits and _ "
                                "(not starting with a digit)", *where)
            what = f"params.{name}"
            if isinstance(value, dict):
                self.keys(value, _PARAM_KEYS, what, *where)
                lo = self.number(value.get("min", 0.0), f"{what}.min", *where)
                hi = self.number(value.get("max", 1.0), f"{what}.max", *where)
                if not lo < hi:
                    raise self.fail(f"{what}: min ({lo:g}) must be below max ({hi:g})", *where)
                default = self.number(value.get("default", lo), f"{what}.default", *where,
                                      lo=lo, hi=hi)
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise self.fail(f"{what} must be a number (its default, range 0..1) or a "
                                    f"table {{ default, min, max }}, not {_type_name(value)}",
                                    *where)
                lo, hi = 0.0, 1.0
                default = self.number(value, what, *where)
                if not lo <= default <= hi:
                    raise self.fail(f"{what} = {value} is outside the default range 0..1; write "
                                    f"{name} = {{ default = {value}, min = ..., max = ... }}",
                                    *where)
            out[name] = ParamSpec(name, default, lo, hi, self.lines.line(*where))
        return out

    def lfos(self, t: dict, spec: MappingSpec) -> dict[str, LfoSpec]:
        out: dict[str, LfoSpec] = {}
        for name, value in t.items():
            where = ("lfo", name)
            what = f"lfo.{name}"
            if not _IDENT.match(name):
                raise self.fail(f"lfo name {name!r} must be letters, digits and _ "
                                "(not starting with a digit)", *where)
            v = self.table(value, f"{what} (e.g. {{ shape = \"sine\", hz = 0.25 }})", *where)
            self.keys(v, _LFO_KEYS, what, *where)
            lfo = LfoSpec(name, line=self.lines.line(*where))
            if "shape" in v:
                lfo.shape = self.string(v["shape"], f"{what}.shape", *where, choices=LFO_SHAPES)
            units = [k for k in ("hz", "beats", "bars") if k in v]
            if len(units) != 1:
                raise self.fail(f"{what} needs exactly one of hz, beats, bars"
                                + (f" (got {', '.join(units)})" if units else ""), *where)
            lfo.unit = units[0]
            lfo.rate = self.number(v[lfo.unit], f"{what}.{lfo.unit}", *where, positive=True,
                                   hi=1e6)
            if lfo.unit != "hz" and spec.bpm is None:
                raise self.fail(f"{what}.{lfo.unit} needs [clock] bpm", *where)
            if "phase" in v:
                lfo.phase = self.number(v["phase"], f"{what}.phase", *where, lo=0.0, hi=1.0)
            if "seed" in v:
                lfo.seed = self.integer(v["seed"], f"{what}.seed", *where, lo=0, hi=2**32 - 1)
            out[name] = lfo
        return out

    def layers(self, lv: Any, what: str, *where: Any) -> Union[str, tuple[int, int]]:
        if isinstance(lv, list):
            if len(lv) != 2:
                raise self.fail("layers must be a group name or [first, last]", *where)
            a = self.integer(lv[0], "layers first", *where, lo=0, hi=4096)
            b = self.integer(lv[1], "layers last", *where, lo=0, hi=4096)
            if a > b:
                raise self.fail(f"layers [{a}, {b}]: first must not exceed last", *where)
            return (a, b)
        return self.string(lv, f"{what} 'layers'", *where, choices=LAYER_GROUPS)

    def keyframe_file(self, f: Any, *where: Any) -> str:
        self.string(f, "each keyframe file", *where)
        if not f.endswith(".npy"):
            raise self.fail(f"keyframe file {f!r} must be a .npy file", *where)
        base = Path(self.path).parent if self.path != "<string>" else Path(".")
        return str((base / f).resolve())

    def keyframes(self, value: Any, lat: LatentSpec) -> None:
        where = ("latent", "keyframes")
        lat.keys_line = self.lines.line(*where)
        hint = "{ seeds = [1, 2, 3] }, { files = [\"a.npy\"] } or [1, \"a.npy\", 2]"
        keys: list[Union[int, str]] = []
        if isinstance(value, list):
            for k in value:
                if isinstance(k, str):
                    keys.append(self.keyframe_file(k, *where))
                elif isinstance(k, int) and not isinstance(k, bool):
                    keys.append(self.integer(k, "each keyframe seed", *where, lo=0, hi=2**32 - 1))
                else:
                    raise self.fail(f"each keyframe must be a seed (integer) or a .npy file name "
                                    f"(string), not {_type_name(k)}", *where)
        else:
            kf = self.table(value, f"latent.keyframes (e.g. {hint})", *where)
            self.keys(kf, _KEYFRAME_KEYS, "latent.keyframes", *where)
            if not kf:
                raise self.fail(f"latent.keyframes is empty (e.g. {hint})", *where)
            seeds = kf.get("seeds", [])
            if not isinstance(seeds, list) or ("seeds" in kf and not seeds):
                raise self.fail("latent.keyframes.seeds must be a non-empty array of integers",
                                *where)
            files = kf.get("files", [])
            if not isinstance(files, list) or ("files" in kf and not files):
                raise self.fail("latent.keyframes.files must be a non-empty array of .npy file "
                                "names", *where)
            if len(seeds) + len(files) > MAX_KEYS:
                raise self.fail(f"latent.keyframes: at most {MAX_KEYS} keyframes", *where)
            keys = [self.integer(s, "each keyframe seed", *where, lo=0, hi=2**32 - 1)
                    for s in seeds]
            keys += [self.keyframe_file(f, *where) for f in files]
            latents = kf.get("latents", [])
            if not isinstance(latents, list) or ("latents" in kf and not latents):
                raise self.fail("latent.keyframes.latents must be a non-empty array of saved "
                                "latent names", *where)
            if len(keys) + len(latents) > MAX_KEYS:
                raise self.fail(f"latent.keyframes: at most {MAX_KEYS} keyframes", *where)
            for name in latents:
                self.string(name, "each saved latent name", *where)
                if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", name):
                    raise self.fail(f"saved latent name {name!r} must be letters, digits, _ "
                                    "and -", *where)
                keys.append(self.keyframe_file(f"{LATENT_DIR}/{name}.npy", *where))
        if not keys:
            raise self.fail("latent.keyframes must name at least one keyframe", *where)
        if len(keys) > MAX_KEYS:
            raise self.fail(f"latent.keyframes: at most {MAX_KEYS} keyframes", *where)
        if all(isinstance(k, int) for k in keys):
            lat.seeds = list(keys)          # the v1 form, kept for callers that read seeds
        else:
            lat.keys = keys

    def motion(self, value: Any) -> MotionSpec:
        where = ("latent", "motion")
        what = "latent.motion"
        m = self.table(value, f"{what} (e.g. {{ speed = 0.3, jitter = 0.5, bound = 1 }})", *where)
        self.keys(m, _MOTION_KEYS, what, *where)
        ms = MotionSpec(line=self.lines.line(*where))
        if "speed" in m:
            ms.speed = self.number(m["speed"], f"{what}.speed", *where, lo=0.0, hi=100.0)
        if "jitter" in m:
            ms.jitter = self.number(m["jitter"], f"{what}.jitter", *where, lo=0.0, hi=1.0)
        if "bound" in m:
            ms.bound = self.number(m["bound"], f"{what}.bound", *where, positive=True, hi=100.0)
        if "seed" in m:
            ms.seed = self.integer(m["seed"], f"{what}.seed", *where, lo=0, hi=2**32 - 1)
        if "layers" in m:
            ms.layers = self.layers(m["layers"], what, *where)
        if "mode" in m:
            ms.mode = self.string(m["mode"], f"{what}.mode", *where, choices=MODES)
        return ms

    def latent(self, t: dict, spec: MappingSpec) -> LatentSpec:
        self.keys(t, _LATENT_KEYS, "[latent]", "latent")
        lat = LatentSpec()
        if "keyframes" in t:
            self.keyframes(t["keyframes"], lat)
        if "motion" in t:
            lat.motion = self.motion(t["motion"])
        walk = WalkSpec(line=self.lines.line("latent"))
        if "walk" in t:
            where = ("latent", "walk")
            w = self.table(t["walk"], "latent.walk (e.g. { seconds_per_key = 4 })", *where)
            self.keys(w, _WALK_KEYS, "latent.walk", *where)
            walk.line = self.lines.line(*where)
            units = [k for k in ("seconds_per_key", "beats_per_key", "bars_per_key") if k in w]
            if len(units) > 1:
                raise self.fail(f"latent.walk: give only one of {', '.join(units)}", *where)
            if units:
                key = units[0]
                walk.unit = key.split("_")[0]
                walk.per_key = self.number(w[key], f"latent.walk.{key}", *where, positive=True)
                if walk.unit != "seconds" and spec.bpm is None:
                    raise self.fail(f"latent.walk.{key} needs [clock] bpm", *where)
            if "interp" in w:
                walk.interp = self.string(w["interp"], "latent.walk.interp", *where,
                                          choices=INTERPOLATIONS)
            if "layers" in w:
                walk.layers = self.layers(w["layers"], "latent.walk", *where)
        lat.walk = walk
        if "truncation" in t:
            lat.truncation = self.number(t["truncation"], "latent.truncation", "latent",
                                         "truncation", lo=-4.0, hi=4.0)
        if "noise" in t:
            lat.noise = self.number(t["noise"], "latent.noise", "latent", "noise", lo=0.0)
        return lat

    def shaders(self, t: dict) -> list[str]:
        self.keys(t, _SHADER_KEYS, "[shaders]", "shaders")
        chain = t.get("chain", [])
        where = ("shaders", "chain")
        if not isinstance(chain, list):
            raise self.fail(f"shaders.chain must be an array of effect names, not "
                            f"{_type_name(chain)}", *where)
        out: list[str] = []
        for name in chain:
            self.string(name, "each shaders.chain entry", *where)
            if not _EFFECT.match(name):
                raise self.fail(f"shader effect name {name!r} must be letters, digits, _ and -",
                                *where)
            if name in out:
                raise self.fail(f"shader effect {name!r} appears twice in shaders.chain", *where)
            out.append(name)
        return out

    # -- routes ------------------------------------------------------------------------------
    def route(self, i: int, t: dict, spec: MappingSpec) -> RouteSpec:
        def at(key: str | None = None) -> tuple:
            return ("route", i) if key is None else ("route", i, key)

        what = f"route #{i + 1}"
        self.keys(t, _ROUTE_KEYS, what, *at())
        for key in ("from", "to"):
            if key not in t:
                raise self.fail(f"{what} needs '{key}'", *at())
        to = self.string(t["to"], f"{what} 'to'", *at("to"))
        kind, uniform = self.target(to, spec, at("to"))

        raw = t["from"]
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            source = repr(float(raw))
        else:
            source = self.string(raw, f"{what} 'from'", *at("from"))
        node = self.expression(source, f"{what} 'from'", at("from"))
        vector = None
        width = 1
        if isinstance(node, ex.Name) and node.name in VECTOR_FEATURES:
            vector = node.name
            width = VECTOR_FEATURES[vector]
            if kind != "blend":
                raise self.fail(f"{what}: {vector!r} is a vector ({width} values) and "
                                f"{to!r} takes one number; pick one value with {vector}[i] or "
                                "route it to latent.blend", *at("from"))
        else:
            self.check_sources(node, spec, f"{what} 'from'", at("from"))
            if kind == "blend":
                raise self.fail(f"{what}: latent.blend needs a vector source such as "
                                f"'chroma' (its weights over the keyframes)", *at("from"))

        r = RouteSpec(index=i, line=self.lines.line(*at()), source=source,
                      expr=None if vector else node, vector=vector, width=width, to=to,
                      kind=kind, uniform=uniform)
        r.key_lines = {k: self.lines.line(*at(k)) for k in t}

        # target-specific keys
        latent_kinds = ("push", "pull", "blend", "noise")
        only = {"direction": ("push",), "layers": latent_kinds, "mode": latent_kinds,
                "amount": ("blend",), "key": ("pull",)}
        for key, needs in only.items():
            if key in t and kind not in needs:
                names = [n if n == "noise" else "latent." + n for n in needs]
                raise self.fail(f"{what}: '{key}' only applies to {', '.join(names)}",
                                *at(key))
        if "mode" in t:
            choices = ("add", "overwrite") if kind == "noise" else MODES
            r.mode = self.string(t["mode"], f"{what} 'mode'", *at("mode"), choices=choices)
        if kind == "push":
            if "direction" not in t:
                raise self.fail(f"{what}: latent.push needs direction = {{ seed = N }}", *at())
            d = self.table(t["direction"], f"{what} 'direction' (e.g. {{ seed = 7 }})",
                           *at("direction"))
            self.keys(d, ("seed", "latent"), f"{what} 'direction'", *at("direction"))
            if ("seed" in d) == ("latent" in d):
                raise self.fail(f"{what}: direction needs a seed or a saved latent, e.g. "
                                f"{{ seed = 7 }} or {{ latent = \"bank-pc0\" }}", *at("direction"))
            if "latent" in d:   # a saved direction (lj explore --pick-directions)
                name = self.string(d["latent"], "direction.latent", *at("direction"))
                if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", name):
                    raise self.fail(f"saved latent name {name!r} must be letters, digits, _ "
                                    "and -", *at("direction"))
                r.direction_file = self.keyframe_file(f"{LATENT_DIR}/{name}.npy", *at("direction"))
            else:
                r.direction_seed = self.integer(d["seed"], "direction.seed", *at("direction"),
                                                lo=0, hi=2**32 - 1)
        if "layers" in t:
            r.layers = self.layers(t["layers"], what, *at("layers"))
        if kind == "pull":
            if "key" not in t:
                raise self.fail(f"{what}: latent.pull needs key = N (a keyframe index, from 0)",
                                *at())
            n = len(spec.latent.key_list())
            r.key = self.integer(t["key"], f"{what} 'key'", *at("key"), lo=0, hi=n - 1)
        if "amount" in t:
            a = t["amount"]
            if isinstance(a, str):
                r.amount = self.expression(a, f"{what} 'amount'", at("amount"))
                self.check_sources(r.amount, spec, f"{what} 'amount'", at("amount"))
                r.amount_text = a
            else:
                r.amount = ex.Num(self.number(a, f"{what} 'amount'", *at("amount"),
                                              lo=0.0, hi=1.0))
                r.amount_text = repr(float(a))

        # conditioning
        if "gain" in t:
            if isinstance(t["gain"], str):
                r.gain_expr = self.expression(t["gain"], f"{what} 'gain'", at("gain"))
                self.check_sources(r.gain_expr, spec, f"{what} 'gain'", at("gain"))
            else:
                r.gain = self.number(t["gain"], f"{what} 'gain'", *at("gain"))
        if "offset" in t:
            r.offset = self.number(t["offset"], f"{what} 'offset'", *at("offset"))
        if "power" in t:
            r.power = self.number(t["power"], f"{what} 'power'", *at("power"), positive=True)
        if "threshold" in t:
            r.threshold = self.number(t["threshold"], f"{what} 'threshold'", *at("threshold"))
        if "range" in t:
            r.range = self.pair(t["range"], f"{what} 'range'", *at("range"))
        if "clamp" in t:
            r.clamp = self.pair(t["clamp"], f"{what} 'clamp'", *at("clamp"))
            if r.clamp[0] > r.clamp[1]:
                raise self.fail(f"{what} 'clamp': lo must not exceed hi", *at("clamp"))
        if "smooth" in t:
            r.smooth = self.time_shape(t["smooth"], f"{what} 'smooth'", at("smooth"),
                                       shorthand=True)
        if "envelope" in t:
            r.envelope = self.time_shape(t["envelope"], f"{what} 'envelope'", at("envelope"),
                                         shorthand=False, default_release=250.0)
        for key in ("gate", "hold"):
            if key in t:
                text = self.string(t[key], f"{what} '{key}' (an expression)", *at(key))
                node = self.expression(text, f"{what} '{key}'", at(key))
                self.check_sources(node, spec, f"{what} '{key}'", at(key))
                setattr(r, key, node)
        if "normalize" in t:
            n = self.table(t["normalize"], f"{what} 'normalize' (e.g. {{ window_s = 10 }})",
                           *at("normalize"))
            self.keys(n, ("window_s",), f"{what} 'normalize'", *at("normalize"))
            r.normalize_s = self.number(n.get("window_s", 10.0), f"{what} normalize.window_s",
                                        *at("normalize"), positive=True, hi=3600.0)
        if "quantize" in t:
            if spec.bpm is None:
                raise self.fail(f"{what} 'quantize' needs [clock] bpm", *at("quantize"))
            q = t["quantize"]
            if isinstance(q, dict):
                self.keys(q, ("beats",), f"{what} 'quantize'", *at("quantize"))
                q = q.get("beats", 1)
            r.quantize_beats = self.number(q, f"{what} 'quantize' (beats)", *at("quantize"),
                                           positive=True, hi=1e4)
        if "curve" in t:
            c = t["curve"]
            if isinstance(c, dict):
                self.keys(c, ("exp",), f"{what} 'curve'", *at("curve"))
                if "exp" not in c:
                    raise self.fail(f"{what} 'curve' table needs exp = k", *at("curve"))
                r.curve = "exp"
                r.curve_k = self.number(c["exp"], f"{what} curve.exp", *at("curve"),
                                        lo=-50.0, hi=50.0)
                if r.curve_k == 0.0:
                    r.curve = "linear"
            else:
                r.curve = self.string(c, f"{what} 'curve'", *at("curve"), choices=CURVES)
        if "integrate" in t:
            g = t["integrate"]
            if g is True:
                g = {}
            g = self.table(g, f"{what} 'integrate' (e.g. {{ min = 0, max = 1, bounds = "
                              f"\"bounce\" }})", *at("integrate"))
            self.keys(g, _INTEGRATE_KEYS, f"{what} 'integrate'", *at("integrate"))
            lo = self.number(g.get("min", 0.0), f"{what} integrate.min", *at("integrate"))
            hi = self.number(g.get("max", 1.0), f"{what} integrate.max", *at("integrate"))
            if not lo < hi:
                raise self.fail(f"{what} integrate: min must be below max", *at("integrate"))
            mode = self.string(g.get("bounds", "clamp"), f"{what} integrate.bounds",
                               *at("integrate"), choices=BOUNDS)
            r.integrate = (lo, hi, mode)
        if r.vector is not None and (r.integrate or r.quantize_beats or r.normalize_s):
            raise self.fail(f"{what}: integrate, quantize and normalize apply to scalar routes "
                            "only", *at())
        return r

    def time_shape(self, value: Any, what: str, where: tuple, shorthand: bool,
                   default_release: float = 0.0) -> TimeShape:
        if shorthand and not isinstance(value, (dict, bool)) and isinstance(value, (int, float)):
            ms = self.number(value, f"{what} (milliseconds)", *where, lo=0.0, hi=_MAX_MS)
            return TimeShape(ms, ms)
        hint = "{ attack_ms = 10, release_ms = 200 }" + (" or a number of ms" if shorthand else "")
        t = self.table(value, f"{what} ({hint})", *where)
        self.keys(t, _TIME_KEYS, what, *where)
        return TimeShape(
            self.number(t.get("attack_ms", 0.0), f"{what} attack_ms", *where, lo=0.0, hi=_MAX_MS),
            self.number(t.get("release_ms", default_release), f"{what} release_ms", *where,
                        lo=0.0, hi=_MAX_MS),
        )

    def target(self, to: str, spec: MappingSpec, where: tuple) -> tuple[str, str | None]:
        fixed = {"latent.push": "push", "latent.blend": "blend", "latent.speed": "speed",
                 "latent.pull": "pull", "latent.motion": "motion",
                 "truncation": "truncation", "noise": "noise"}
        if to in fixed:
            return fixed[to], None
        if to.startswith("shader."):
            parts = to.split(".")
            if len(parts) != 3 or not all(parts[1:]):
                raise self.fail(f"shader targets are written shader.<effect>.<input>, got {to!r}",
                                *where)
            effect, inp = parts[1], parts[2]
            if effect not in spec.shader_chain:
                chain = ", ".join(spec.shader_chain) or "empty"
                raise self.fail(f"shader effect {effect!r} is not in [shaders] chain ({chain})"
                                f"{suggest(effect, spec.shader_chain)}", *where)
            if not _IDENT.match(inp):
                raise self.fail(f"shader input name {inp!r} is not a valid name", *where)
            return "uniform", f"{effect}.{inp}"
        if to.startswith("generator."):
            name = to[len("generator."):]
            if not _IDENT.match(name):
                raise self.fail(f"generator targets are written generator.<param>, got {to!r}",
                                *where)
            return "generator", name
        raise self.fail(f"unknown target {to!r}{suggest(to, TARGETS)} (targets: "
                        f"{', '.join(TARGETS)})", *where)

    def expression(self, text: str, what: str, where: tuple) -> ex.Node:
        try:
            return ex.parse(text)
        except ex.ExprError as e:
            col = f" at column {e.column}" if e.column else ""
            raise self.fail(f"{what}: {e.message}{col}: {text.strip()[:80]!r}", *where) from None

    def check_sources(self, node: ex.Node, spec: MappingSpec, what: str, where: tuple) -> None:
        known = source_names(spec)
        for ref in ex.references(node):
            name = ref.name
            if isinstance(ref, ex.Index):
                if name not in VECTOR_FEATURES:
                    if name in known:
                        raise self.fail(f"{what}: {name!r} is a single number and cannot be "
                                        "indexed", *where)
                    raise self.fail(f"{what}: unknown vector source {name!r}"
                                    f"{suggest(name, VECTOR_FEATURES)}", *where)
                n = VECTOR_FEATURES[name]
                if ref.index >= n:
                    raise self.fail(f"{what}: {name}[{ref.index}] is out of range "
                                    f"({name} has {n} values, 0..{n - 1})", *where)
                continue
            if name in VECTOR_FEATURES:
                raise self.fail(f"{what}: {name!r} is a vector ({VECTOR_FEATURES[name]} values) "
                                f"and cannot be used in an expression; pick one value with "
                                f"{name}[i]", *where)
            if name in known:
                continue
            if name in CLOCK_SOURCES:
                raise self.fail(f"{what}: source {name!r} needs [clock] bpm", *where)
            if name.startswith("lfo."):
                declared = [f"lfo.{p}" for p in spec.lfos]
                raise self.fail(f"{what}: unknown lfo {name!r} (declare it in [lfo])"
                                f"{suggest(name, declared)}", *where)
            if name.startswith("param."):
                declared = [f"param.{p}" for p in spec.params]
                raise self.fail(f"{what}: unknown parameter {name!r} (declare it in [params])"
                                f"{suggest(name, declared)}", *where)
            raise self.fail(f"{what}: unknown source {name!r}{suggest(name, known)}", *where)


def source_names(spec: MappingSpec) -> list[str]:
    """Every scalar source name valid in ``spec``'s expressions (features, params, clock)."""
    names = list(SCALAR_FEATURES) + list(TIME_SOURCES)
    if spec.bpm is not None:
        names += list(CLOCK_SOURCES)
    names += [f"param.{p}" for p in spec.params]
    names += [f"lfo.{p}" for p in spec.lfos]
    return names
