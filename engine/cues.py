"""Cue lists: a timed sequence of scene and preset changes that may loop (installations).

A cue list is TOML: a ``[cues]`` table (``loop`` seconds, ``clock = "audio" | "wall"``,
``start``) and ``[[cue]]`` entries (``at`` seconds or ``bar``, and ``scene`` or ``preset``). The
same tables inside a scene file drive that file's scenes on the audio clock
(:class:`engine.mapping.scenes.SceneSet`); a separate cue file (``lj run --cues FILE``,
``/lj/cue/start``, ``/lj/cue/stop``) may also recall presets and run on the wall clock.

:class:`CueTimer` is the pure part: given the time now, which cues have come due since the last
call. It never looks at a clock itself.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from engine import safeio
from engine.errors import MappingError
from engine.mapping.spec import CueEntry, CueSpec, LineIndex, MAX_TEXT, _SpecParser

_CUE_FILE_KEYS = ("cues", "cue")


class CueTimer:
    """Cues of ``spec`` that fall in ``(previous t, t]``, looping every ``spec.loop`` seconds.

    ``start(t0)`` makes ``t0`` the list's time zero; a cue at 0 fires on the first
    :meth:`due` call after the start (and at the start of each loop).
    """

    def __init__(self, spec: CueSpec):
        self.spec = spec
        self.running = False
        self._t0 = 0.0
        self._prev = -1.0

    def start(self, t0: float) -> None:
        self._t0 = float(t0)
        self._prev = -1e-9
        self.running = bool(self.spec.cues)

    def stop(self) -> None:
        self.running = False

    def elapsed(self, t: float) -> float:
        return t - self._t0

    def due(self, t: float) -> list[CueEntry]:
        """The cues due since the last call (in order); empty while stopped."""
        if not self.running:
            return []
        now = t - self._t0
        prev, self._prev = self._prev, now
        if now <= prev:
            return []
        cues = self.spec.cues
        loop = self.spec.loop
        if loop is None:
            if prev >= cues[-1].at:
                self.running = False
            return [c for c in cues if prev < c.at <= now]
        fired = []
        for c in cues:
            k = math.floor((prev - c.at) / loop)
            if math.floor((now - c.at) / loop) > k:
                fired.append((c.at + loop * (k + 1), c))
        fired.sort(key=lambda fc: fc[0])
        return [c for _, c in fired]


def parse_cue_file(text: str, path: str | Path = "<string>") -> CueSpec:
    """A cue file's text -> :class:`CueSpec` (``MappingError`` with file:line when bad).

    Scene cues name a scene of whatever mapping is running (a name, or a number from 1, as
    text); they are resolved when they fire, and an unknown one is reported then."""
    path = str(path)
    if len(text) > MAX_TEXT:
        raise MappingError("cue file is too large", path)
    try:
        data = safeio.toml_loads(text, path)
    except safeio.FileRefused as e:  # nested too deep (checked before parsing)
        raise MappingError(e.reason, path) from None
    except tomllib.TOMLDecodeError as e:
        raise MappingError(f"TOML syntax error: {getattr(e, 'msg', e)}", path,
                           getattr(e, "lineno", None)) from None
    p = _SpecParser.__new__(_SpecParser)
    p.path, p.data, p.lines = path, data, LineIndex(text)
    for key in data:
        if key not in _CUE_FILE_KEYS:
            raise p.fail(f"unknown table [{key}] in a cue file (allowed: cues, cue)", key)
    raw = data.get("cue", [])
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw) or not raw:
        raise p.fail("a cue file needs [[cue]] tables, e.g. [[cue]] at = 0 scene = \"intro\"",
                     "cue")
    cues = p.table(data.get("cues", {}), "[cues]", "cues")
    for c in raw:   # a scene number is kept as text and resolved when it fires
        if isinstance(c.get("scene"), int) and not isinstance(c.get("scene"), bool):
            c["scene"] = str(c["scene"])
    return p.cues(raw, cues, None, None, presets=True)


def load_cue_file(path: str | Path) -> CueSpec:
    """Read a cue file: a regular file of at most ``safeio.LIMITS["cues"]`` bytes."""
    p = Path(path)
    try:
        text = safeio.read_text(p, safeio.LIMITS["cues"], "cue file")
    except FileNotFoundError:
        raise MappingError("cue file not found", p) from None
    except safeio.FileRefused as e:
        raise MappingError(e.reason, p) from None
    try:
        return parse_cue_file(text, p)
    except (RecursionError, MemoryError):
        raise MappingError("cue file is too deep or too large to check", p) from None
