"""Typed converters for ``lj``'s options (argparse ``type=``).

Every number an option takes is finite and inside a documented range, every output file's folder
exists and every output folder is a folder, so a bad value ends as one argparse error line
(``lj: error: --fps must be a whole number between 1 and 240, not 0``) before anything starts,
instead of a crash minutes later or a run that silently does something else (``--frames -1``
stopping at once, ``--osc-smoothing nan``).
``lj run --config`` applies the same converters to a config file's values.

The messages are written to follow the option's name: :class:`engine.cli.Parser` prints
``--NAME must be ...`` (or ``--NAME: ...`` for messages that do not start with "must").
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def _shown(text: str) -> str:
    """The offending value for a message: quoted, and short (a 10 kB argument is not echoed)."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def whole(lo: int, hi: int):
    """A converter for whole numbers ``lo <= n <= hi``."""
    def convert(text: str) -> int:
        try:
            value = int(str(text).strip(), 10)
        except ValueError:
            raise _bad(f"must be a whole number between {lo} and {hi}, not {_shown(str(text))}") from None
        if not lo <= value <= hi:
            raise _bad(f"must be a whole number between {lo} and {hi}, not {value}")
        return value

    convert.__name__ = "whole number"
    return convert


def number(lo: float, hi: float, *, above: bool = False):
    """A converter for finite numbers in ``[lo, hi]`` (``(lo, hi]`` with ``above=True``;
    ``hi=math.inf``: no upper bound but finiteness): ``nan``, ``inf`` and ``1e999`` are refused
    like any other out-of-range value."""
    if math.isinf(hi):
        span = f"a finite number {'above' if above else 'at least'} {lo:g}"
    else:
        span = f"above {lo:g} and at most {hi:g}" if above else f"between {lo:g} and {hi:g}"

    def convert(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > lo if above else value >= lo) and value <= hi):
            raise _bad(f"must be {span}, not {_shown(str(text))}")
        return value

    convert.__name__ = "number"
    return convert


def folder(text: str) -> str:
    """A folder the command writes into (made when first needed): refused when the path is
    already something other than a folder, so files are not lost later to 'Not a directory'."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise _bad(f"must be a folder, but {_shown(text)} is a file")
    return text


def new_file(text: str) -> str:
    """A file the command writes: not a folder, and its folder must exist (checked here, before
    minutes of work end in 'Parent directory does not exist')."""
    if not text.strip():
        raise _bad("must be a file name, not empty")
    path = Path(text).expanduser()
    if path.is_dir():
        raise _bad(f"must be a file name, but {_shown(text)} is a folder")
    parent = path.parent
    if not parent.exists():
        raise _bad(f"the folder {_shown(str(parent))} does not exist")
    if not parent.is_dir():
        raise _bad(f"{_shown(str(parent))} is not a folder")
    return text
