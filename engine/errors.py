"""Errors a user can act on.

Every error that reaches the command line or a running show's log is an :class:`LJError`: its
``str()`` is one line that names the problem (and the file and line where there is one). The CLI
prints it as ``lj: error: ...`` and exits non-zero; a running show logs it and keeps its last good
state. Anything else escaping is a bug.
"""

from __future__ import annotations

from pathlib import Path


class LJError(Exception):
    """A problem the user can fix. ``str(err)`` is a single line."""


class MappingError(LJError):
    """A mapping file that cannot be parsed or compiled.

    ``path`` and ``line`` (1-based) point at the offending place when known.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.path or "<mapping>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"


class AudioError(LJError):
    """An audio file, device or stream problem."""


class RenderError(LJError):
    """An OpenGL context, window, shader or video output problem."""


class ShaderError(RenderError):
    """A shader that failed to load or compile (file, line and GLSL log in the message)."""


class GeneratorError(LJError):
    """A generator that cannot be loaded or run."""


class ControlError(LJError):
    """An OSC/MIDI control problem (busy port, bad address)."""
