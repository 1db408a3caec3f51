"""Files in and out, with bounds: the one place the engine reads or writes a file someone else named.

Everything that reads a file the artist, a show folder or a remote peer names (mapping, preset,
bindings, config, cue list, shader header, model metadata) goes through :func:`read_bytes` /
:func:`read_text`, and every structured text through :func:`toml_loads` / :func:`json_loads`.
Every file the engine writes on a remote request goes through :func:`child_path` and
:func:`write_new` / :func:`write_atomic`. The limits are checked *before* the work starts:

============  ================================================================================
size          at most ``limit`` bytes are ever read: the file's size is checked first and the read
              stops at ``limit + 1`` bytes, so ``/dev/zero`` or a growing file costs nothing
kind          only regular files: a FIFO, a device or a socket is refused without blocking (the
              file is opened non-blocking and checked with ``fstat``)
depth         TOML and JSON nesting (arrays, tables, objects) is counted by a linear scan before
              parsing; deeper than :data:`MAX_DEPTH` is refused, so no parser can recurse away
names         a name for a file the engine writes is one plain path component (no ``/``, ``\\``,
              ``..``, NUL or control characters, no leading ``.``), at most :data:`MAX_NAME` long
overwrite     :func:`write_new` never replaces an existing file (``O_EXCL``-style via ``link``);
              both writers go through a temporary file in the same folder and appear whole or not
              at all
============  ================================================================================

Errors are :class:`FileRefused` (an :class:`~engine.errors.LJError`: one line, naming the file).
``RecursionError`` and ``MemoryError`` from a parser become a ``FileRefused`` too.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tomllib
from pathlib import Path

from engine.errors import LJError

#: The deepest nesting of arrays/tables/objects accepted in any TOML or JSON file we read.
MAX_DEPTH = 64
#: The longest name of a file written on request (without its folder).
MAX_NAME = 100
#: Default size limits (bytes) by kind of file; callers may pass their own.
LIMITS = {
    "mapping": 1 << 20,      # 1 MiB of TOML
    "preset": 1 << 20,
    "bindings": 1 << 20,
    "config": 1 << 20,
    "cues": 1 << 20,
    "shader": 1 << 20,       # an ISF .fs/.vs file
    "json": 16 << 20,        # model metadata beside a safetensors file
}


class FileRefused(LJError):
    """A file that was not read or written: too large, not a regular file, too deep, a bad name.

    ``path`` is the file concerned (or None); ``str()`` is one line.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(f"{path}: {message}" if path is not None else message)


# -- reading ----------------------------------------------------------------------------------


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; FileRefused otherwise.

    Never blocks on a FIFO or device and never reads more than ``limit + 1`` bytes, whatever the
    file claims or does while it is read. Missing files raise :class:`FileNotFoundError` (callers
    word that themselves); other OS errors raise FileRefused.
    """
    p = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise FileRefused(f"is a directory, not a {what}", p) from None
    except OSError as e:
        raise FileRefused(f"cannot read the {what}: {e.strerror or e}", p) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileRefused(f"is a directory, not a {what}", p)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"is not a regular file (a FIFO, device or socket); not read as a {what}", p)
        if st.st_size > limit:
            raise FileRefused(f"{what} is too large ({st.st_size} bytes; at most {limit})", p)
        chunks, total = [], 0
        while total <= limit:
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            except BlockingIOError:  # cannot happen for a regular file; never wait for one
                raise FileRefused(f"the {what} would block; not read", p) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise FileRefused(f"{what} is too large (grew past {limit} bytes while read)", p)
        return b"".join(chunks)
    except OSError as e:
        raise FileRefused(f"cannot read the {what}: {e.strerror or e}", p) from None
    finally:
        os.close(fd)


def read_text(path: str | Path, limit: int, what: str = "file") -> str:
    """:func:`read_bytes` decoded as UTF-8 (FileRefused if it is not UTF-8)."""
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused(f"{what} is not UTF-8 text", path) from None


# -- parsing with a depth bound ---------------------------------------------------------------


def toml_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in TOML ``text`` outside strings and comments (linear).

    Table headers count too (``[[a]]`` is 2), so the figure is an upper bound of what the
    parser will recurse through.
    """
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if ch in "\"'":
            triple = text.startswith(ch * 3, i)
            quote = ch * 3 if triple else ch
            i += len(quote)
            while i < n:
                c = text[i]
                if c == "\\" and ch == '"':
                    i += 2
                    continue
                if text.startswith(quote, i):
                    i += len(quote)
                    # a multi-line string may end with up to two more quote characters
                    while triple and i < n and text[i] == ch:
                        i += 1
                    break
                if c == "\n" and not triple:
                    break
                i += 1
            continue
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``text`` outside strings (linear)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def toml_loads(text: str, path: str | Path | None = None, max_depth: int = MAX_DEPTH) -> dict:
    """``tomllib.loads`` after a depth check; TOMLDecodeError passes through (callers have the line).

    FileRefused for nesting deeper than ``max_depth`` and for RecursionError / MemoryError.
    """
    if toml_depth(text) > max_depth:
        raise FileRefused(f"TOML nesting is too deep (more than {max_depth} levels)", path)
    try:
        return tomllib.loads(text)
    except (RecursionError, MemoryError):
        raise FileRefused("TOML is too deep or too large to parse", path) from None


def json_loads(text: str, path: str | Path | None = None, max_depth: int = MAX_DEPTH):
    """``json.loads`` after a depth check; ValueError (JSONDecodeError) passes through.

    FileRefused for nesting deeper than ``max_depth`` and for RecursionError / MemoryError.
    """
    if json_depth(text) > max_depth:
        raise FileRefused(f"JSON nesting is too deep (more than {max_depth} levels)", path)
    try:
        return json.loads(text)
    except (RecursionError, MemoryError):
        raise FileRefused("JSON is too deep or too large to parse", path) from None


# -- writing ----------------------------------------------------------------------------------


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is one plain, printable path component; FileRefused otherwise."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise FileRefused(f"bad {what} (1-{MAX_NAME} characters)")
    if name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\:\0") \
            or not name.isprintable() or name != name.strip():
        shown = name[:40].encode("unicode_escape").decode("ascii")
        raise FileRefused(f"bad {what} {shown!r} (one plain file name: no '/', '\\', '..', "
                          "control characters or leading '.')")
    return name


def child_path(folder: str | Path, name: str, suffix: str = "", what: str = "name") -> Path:
    """``folder/name`` (``suffix`` added unless ``name`` ends with it), never outside ``folder``.

    ``name`` must pass :func:`check_name`. The folder's resolved path is compared with the
    result's, so a symbolic link inside the folder that points out of it is refused too.
    """
    check_name(name, what)
    if suffix and not name.lower().endswith(suffix.lower()):
        name += suffix
        check_name(name, what)
    base = Path(folder).resolve()
    out = (base / name).resolve()
    if out.parent != base:
        raise FileRefused(f"{what} {name!r} leaves the folder {base}")
    return base / name


def _write_exclusive(path: Path, data: bytes) -> Path:
    """Create ``path`` with ``O_EXCL`` and write ``data``; a failed write leaves no file behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def _write_tmp(path: Path, data: bytes) -> Path:
    """``data`` in a fresh temporary file beside ``path`` (hidden, named by process and data)."""
    return _write_exclusive(path.with_name(f".{path.name}.{os.getpid()}.{id(data):x}.tmp"), data)


def write_new(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole, only if no file of that name exists (FileExistsError else).

    The bytes go to a temporary file beside it first; ``os.link`` then gives it its name
    atomically and fails if the name is taken, so a file is never replaced or seen half-written.
    """
    path = Path(path)
    tmp = _write_tmp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as e:  # no hard links here (FAT/exFAT USB sticks, some network shares)
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        _write_exclusive(path, data)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole, replacing what was there only once it is all written."""
    path = Path(path)
    tmp = _write_tmp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def unique_path(folder: str | Path, stem: str, suffix: str) -> Path:
    """A path ``folder/stem{suffix}`` that does not exist yet (``stem-2``, ``stem-3``… if taken)."""
    folder = Path(folder)
    p = folder / f"{stem}{suffix}"
    k = 2
    while p.exists() or p.is_symlink():
        p = folder / f"{stem}-{k}{suffix}"
        k += 1
    return p
