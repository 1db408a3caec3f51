"""Learned control bindings: an outside control (an OSC address, a MIDI CC or note) drives a target.

A **source** is an OSC address outside ``/lj/`` (``/1/fader1`` from TouchOSC), or a MIDI control
written ``midi:cc:<channel>:<number>`` / ``midi:note:<channel>:<number>`` (channels 1–16). A
**target** is an address of the ``/lj/`` space; files may also name it the way a mapping does
(``param.speed``, ``trigger.flash``, ``shader.kaleido.segments``, ``truncation``, ``noise``).

Values from a source are taken as **0–1** (a fader; MIDI CC 0–127 is divided by 127) and land on
the target's range: a parameter's declared ``min``..``max``, a direct target's real range, a
trigger fires on any non-zero value (a button's press, not its release).

Learn: :meth:`Bindings.learn` puts a target in learn mode; the next value that arrives from a
source that is not an ``/lj/`` address is bound to it (re-learning a target replaces its old
source), applied at once, and saved. Where bindings live (contract C6):

- a mapping's own ``[bindings]`` table (``mapping.bindings``: source -> target), then
- the sidecar ``<mapping stem>.bindings.toml`` next to the mapping file (or, when that folder is
  not writable, ``~/.config/latent-jockey/bindings/``), which wins over the mapping's table.

:meth:`Bindings.attach` is called on start and after every mapping or preset reload, so learned
bindings survive reloads. Nothing read is executed: the sidecar is TOML read with ``tomllib``,
sources and targets are plain strings.

The sidecar is read with bounds (a regular file of at most ``safeio.LIMITS["bindings"]`` bytes,
nested at most :data:`engine.safeio.MAX_DEPTH` deep). It is written as valid TOML whatever the
address holds (an emoji, any code point; see :func:`toml_string`), read back before it replaces
the old file, and written atomically: a new text that would not load keeps the previous file.
A bad entry costs that entry only (one warning), never the rest of the file.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

from engine import safeio
from engine.control.direct import FX_PREFIX, NOISE, TRUNCATION
from engine.control.space import NAME_RE, PARAM_PREFIX, TRIGGER_PREFIX

log = logging.getLogger("lj.learn")

LEARN = "/lj/learn"
LEARN_PREFIX = "/lj/learn/"
LEARN_CANCEL = "/lj/learn/cancel"
LEARN_FORGET = "/lj/learn/forget"
#: At most this many bindings (a file with more keeps the first ones).
MAX_BINDINGS = 512
MAX_SOURCE_LEN = 200
MIDI_SOURCE = re.compile(r"midi:(cc|note):([1-9]|1[0-6]):([0-9]|[1-9][0-9]|1[01][0-9]|12[0-7])")
CONFIG_DIR = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "latent-jockey" / "bindings"


def target_address(target: str) -> str | None:
    """A binding target as an ``/lj/`` address, or None if it is not one.

    ``param.speed`` -> ``/lj/param/speed``; ``trigger.flash`` -> ``/lj/trigger/flash``;
    ``shader.kaleido.segments`` or ``fx.kaleido.segments`` -> ``/lj/fx/kaleido/segments``;
    ``truncation`` / ``latent.truncation`` -> ``/lj/truncation`` (``noise`` likewise); an
    ``/lj/...`` address as it is.
    """
    if not isinstance(target, str) or not 0 < len(target) <= MAX_SOURCE_LEN:
        return None
    if target.startswith("/lj/"):
        parts = target[4:].split("/")
        return target if all(NAME_RE.fullmatch(p) for p in parts) else None
    if target in ("truncation", "latent.truncation"):
        return TRUNCATION
    if target in ("noise", "latent.noise"):
        return NOISE
    kind, _, rest = target.partition(".")
    if kind in ("param", "trigger") and NAME_RE.fullmatch(rest):
        return (PARAM_PREFIX if kind == "param" else TRIGGER_PREFIX) + rest
    if kind in ("shader", "fx"):
        effect, _, name = rest.partition(".")
        if NAME_RE.fullmatch(effect) and name and NAME_RE.fullmatch(name) and "." not in name:
            return f"{FX_PREFIX}{effect}/{name}"
    return None


def target_name(address: str) -> str:
    """The form a file uses for a target address (the inverse of :func:`target_address`)."""
    if address.startswith(PARAM_PREFIX):
        return "param." + address[len(PARAM_PREFIX):]
    if address.startswith(TRIGGER_PREFIX):
        return "trigger." + address[len(TRIGGER_PREFIX):]
    if address.startswith(FX_PREFIX):
        return "shader." + address[len(FX_PREFIX):].replace("/", ".")
    if address in (TRUNCATION, NOISE):
        return address[4:]
    return address


def valid_source(source: object) -> bool:
    """An OSC address outside ``/lj/``, or a ``midi:cc|note:<channel>:<number>`` control."""
    if not isinstance(source, str) or not 0 < len(source) <= MAX_SOURCE_LEN or not source.isprintable():
        return False
    if source.startswith("midi:"):
        return MIDI_SOURCE.fullmatch(source) is not None
    return source.startswith("/") and not source.startswith("/lj/") and " " not in source


def sidecar_path(mapping_path: str | Path) -> Path:
    """``show.toml`` -> ``show.bindings.toml`` beside it."""
    p = Path(mapping_path)
    return p.with_name(p.stem + ".bindings.toml")


def fallback_path(mapping_path: str | Path) -> Path:
    """Where the sidecar goes when the mapping's folder is not writable (one file per mapping)."""
    p = Path(mapping_path).resolve()
    digest = hashlib.sha1(str(p).encode()).hexdigest()[:8]
    return CONFIG_DIR / f"{p.stem}-{digest}.bindings.toml"


def osc_value(args: list) -> float | None:
    """The value an OSC message carries for a binding: its first number (T/F = 1/0), 1.0 with no
    arguments (a button that sends a bare address), None if unusable."""
    if not args:
        return 1.0
    v = args[0]
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    return None


def read_bindings(path: Path) -> dict[str, str]:
    """The ``[bindings]`` table of a TOML file (missing file: empty). Bad entries are skipped with
    a warning naming the file; a file that cannot be read (too large, not a regular file, too
    deep) is one warning and an empty table. A file whose TOML does not parse as a whole is read
    entry by entry (:func:`_salvage`), so one bad line loses that line only."""
    try:
        text = safeio.read_text(path, safeio.LIMITS["bindings"], "bindings file")
    except FileNotFoundError:
        return {}
    except safeio.FileRefused as exc:
        log.warning("bindings file not read: %s", exc)
        return {}
    try:
        data = safeio.toml_loads(text, path)
    except safeio.FileRefused as exc:
        log.warning("bindings file not used: %s", exc)
        return {}
    except tomllib.TOMLDecodeError as exc:
        log.warning("bindings file %s is not valid TOML (%s); reading it entry by entry",
                    path, str(exc).splitlines()[0])
        return clean_bindings(_salvage(text, str(path)), str(path))
    return clean_bindings(data.get("bindings", {}), str(path))


def _salvage(text: str, where: str) -> dict:
    """The ``"source" = "target"`` lines of a ``[bindings]`` table, each parsed on its own (the
    form :func:`format_bindings` writes); a line that does not parse is skipped with a warning."""
    table: dict = {}
    inside = False
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            inside = stripped.replace(" ", "") == "[bindings]"
            continue
        if not inside:
            continue
        try:
            entry = tomllib.loads(line) if len(line) <= 4 * MAX_SOURCE_LEN else None
        except tomllib.TOMLDecodeError:
            entry = None
        if not entry or len(entry) != 1 or isinstance(next(iter(entry.values())), dict):
            log.warning("%s:%d: binding line ignored (not \"source\" = \"target\")", where, n)
            continue
        table.update(entry)
        if len(table) > MAX_BINDINGS:
            break
    return table


def clean_bindings(table: object, where: str = "mapping") -> dict[str, str]:
    """``{source: target}`` with sources checked and targets as ``/lj/`` addresses."""
    out: dict[str, str] = {}
    if not isinstance(table, Mapping):
        log.warning("%s: [bindings] must be a table of \"source\" = \"target\"", where)
        return out
    for source, target in table.items():
        address = target_address(target) if isinstance(target, str) else None
        if not valid_source(source) or address is None:
            log.warning("%s: binding %r = %r ignored (a source is an OSC address outside /lj/ or "
                        "midi:cc:<ch>:<n> / midi:note:<ch>:<n>; a target is like param.speed)",
                        where, source, target)
            continue
        if len(out) >= MAX_BINDINGS:
            log.warning("%s: more than %d bindings; the rest are ignored", where, MAX_BINDINGS)
            break
        out[source] = address
    return out


_NO_CONTROLS = {c: "?" for c in [*range(32), 127]}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: ``"`` and ``\\`` escaped, control characters as
    ``\\uXXXX``, other non-printable code points as ``\\uXXXX`` / ``\\UXXXXXXXX``, printable
    ones (an emoji) as they are. ValueError for a lone surrogate, which no TOML (nor UTF-8) can
    hold; :func:`json.dumps` would write one as ``\\ud83d\\ude00``, which TOML refuses."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"lone surrogate U+{code:04X} cannot be written as TOML")
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def format_bindings(table: Mapping[str, str], mapping_name: str = "") -> str:
    """The sidecar file's text (TOML). A source that cannot be written (a lone surrogate) is left
    out with a warning; every other one is written so that TOML reads back the same string."""
    shown = (mapping_name or "a mapping").encode("ascii", "backslashreplace").decode("ascii")
    lines = [f"# Control bindings for {shown.translate(_NO_CONTROLS)}, written by lj when you "
             "learn.",
             "# \"source\" = \"target\": an OSC address or midi:cc:<channel>:<number> / "
             "midi:note:<channel>:<number>,", "# bound to param.<name>, trigger.<name>, "
             "shader.<effect>.<input>, truncation or noise. Edit freely.", "[bindings]"]
    for source, address in table.items():
        try:
            lines.append(f"{toml_string(source)} = {toml_string(target_name(address))}")
        except ValueError as exc:
            log.warning("binding %r -> %s not saved: %s", source, address, exc)
    return "\n".join(lines) + "\n"


class Bindings:
    """The binding table and learn mode, shared by the OSC thread, the MIDI thread and the keys.

    ``controls`` is the :class:`~engine.control.state.Controls` the bound values go to;
    ``dispatch(address, args)`` applies a message to an ``/lj/`` address (the OSC server installs
    its own, so a binding can reach every address it routes); by default parameters, triggers and
    direct targets are handled here.
    """

    def __init__(self, controls):
        self.controls = controls
        self.dispatch: Callable[[str, list], object] = self._dispatch
        self._lock = threading.Lock()
        self._table: dict[str, str] = {}
        self._learned: dict[str, str] = {}  # learned in this run for the attached mapping
        self._learning: str | None = None
        self.path: Path | None = None  # the sidecar in use (None: nothing attached)
        self.mapping_path: Path | None = None
        self.learned_count = 0

    # -- the table ----------------------------------------------------------------------------

    @property
    def table(self) -> dict[str, str]:
        """A copy of ``{source: target address}``."""
        with self._lock:
            return dict(self._table)

    @property
    def learning(self) -> str | None:
        """The target address waiting for a control, or None."""
        return self._learning

    def attach(self, mapping_path: str | Path | None, mapping_bindings: Mapping | None = None) -> None:
        """Load the bindings of a mapping: its ``[bindings]`` table, then its sidecar (which wins),
        then whatever was learned for it in this run (if the sidecar could not be written)."""
        table = clean_bindings(mapping_bindings or {}, str(mapping_path or "mapping"))
        path = None
        if mapping_path is not None:
            mapping_path = Path(mapping_path)
            near, far = sidecar_path(mapping_path), fallback_path(mapping_path)
            path = near if near.exists() or not far.exists() else far
            table.update(read_bindings(path))
        with self._lock:
            if mapping_path != self.mapping_path and self.mapping_path is not None:
                self._learned = {}  # another mapping: its own bindings
            for source, target in self._learned.items():
                self._drop_target(table, target)
                table[source] = target
            self._table = table
            self.path = path
            first = self.mapping_path is None
            self.mapping_path = mapping_path
        if first and self._learned:
            self.save()  # learned before a mapping was known
        if table:
            log.info("%d control binding%s active%s", len(table), "" if len(table) == 1 else "s",
                     f" ({path})" if path and path.exists() else "")

    def bind(self, source: str, target: str, save: bool = True) -> bool:
        """Bind ``source`` to ``target`` (replacing the target's other sources); True if valid."""
        address = target_address(target)
        if address is None or not valid_source(source):
            return False
        with self._lock:
            if source not in self._table and len(self._table) >= MAX_BINDINGS:
                return False
            self._drop_target(self._table, address)
            self._drop_target(self._learned, address)
            self._table[source] = address
            self._learned[source] = address
        if save:
            self.save()
        return True

    @staticmethod
    def _drop_target(table: dict[str, str], address: str) -> None:
        for source in [s for s, t in table.items() if t == address]:
            del table[source]

    def forget(self, what: str) -> int:
        """Remove the bindings whose source is ``what`` or whose target is ``what``; how many."""
        address = target_address(what) if isinstance(what, str) else None
        with self._lock:
            gone = [s for s, t in self._table.items() if s == what or t == address]
            for s in gone:
                del self._table[s]
                self._learned.pop(s, None)
        if gone:
            self.save()
        return len(gone)

    def save(self) -> Path | None:
        """Write the table to the sidecar (or the fallback folder); the path, or None if neither
        could be written (one warning; the bindings stay active for this run)."""
        if self.mapping_path is None:
            return None
        table = self.table
        text = format_bindings(table, self.mapping_path.name)
        try:  # what is written must read back as what we have, or the old file stays
            back = tomllib.loads(text).get("bindings", {})
        except tomllib.TOMLDecodeError as exc:
            back = exc
        if not isinstance(back, dict) or any(back.get(s) != target_name(a)
                                             for s, a in table.items() if s in back):
            log.warning("bindings not saved: the new file would not read back (%s); the previous "
                        "file is kept", back if isinstance(back, Exception) else "entries differ")
            return None
        data = text.encode("utf-8")
        for path in (sidecar_path(self.mapping_path), fallback_path(self.mapping_path)):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                safeio.write_atomic(path, data)
            except OSError as exc:
                log.debug("bindings not written to %s: %s", path, exc)
                continue
            self.path = path
            return path
        log.warning("learned bindings could not be saved (neither %s nor %s is writable); they "
                    "last until lj stops", sidecar_path(self.mapping_path).parent, CONFIG_DIR)
        return None

    # -- learn --------------------------------------------------------------------------------

    def learn(self, target: str) -> bool:
        """Wait for the next control to bind to ``target``; False if it is not a valid target."""
        address = target_address(target)
        if address is None:
            return False
        self._learning = address
        self.controls.set_state({"learning": address})
        log.info("learn: move a control to bind it to %s", address)
        return True

    def cancel(self) -> None:
        """Leave learn mode without binding anything."""
        if self._learning is not None:
            log.info("learn cancelled")
        self._learning = None
        self.controls.set_state({"learning": ""})

    # -- values from sources ------------------------------------------------------------------

    def feed(self, source: str, value: float) -> bool:
        """A value (0..1) from ``source``: bind it if learning, apply it if bound. True if used."""
        learning = self._learning
        if learning is not None and valid_source(source):
            self._learning = None
            if self.bind(source, learning):
                self.learned_count += 1
                self.controls.set_state({"learning": "", "learned": f"{source} -> {learning}"})
                log.info("learned: %s -> %s", source, learning)
        with self._lock:
            address = self._table.get(source)
        if address is None:
            return False
        self.apply(address, value)
        return True

    def apply(self, address: str, value: float) -> None:
        """Send a 0..1 ``value`` to ``address``: scaled onto a parameter's range, as is otherwise."""
        if address.startswith(PARAM_PREFIX):
            lo, hi = self.controls.param_range(address[len(PARAM_PREFIX):])
            value = lo + (hi - lo) * (0.0 if value < 0.0 else 1.0 if value > 1.0 else value)
        self.dispatch(address, [value])

    def _dispatch(self, address: str, args: list) -> None:
        c = self.controls
        value = args[0] if args else 1.0
        if address.startswith(PARAM_PREFIX):
            c.set_param(address[len(PARAM_PREFIX):], value)
        elif address.startswith(TRIGGER_PREFIX):
            if value:
                c.trigger(address[len(TRIGGER_PREFIX):])
        else:
            c.set_direct(address, value)
