"""Who may talk to the show: the sender allow-list shared by OSC (UDP) and HTTP (OSCQuery, /health).

``--osc-allow`` takes IP addresses and networks (``192.168.1.20``, ``10.0.0.0/24``, ``::1``);
anything else is refused when the option is parsed, never silently accepted. Loopback senders
(``127.0.0.0/8``, ``::1``) are always allowed: they are this machine. A UDP sender address can be
forged on a LAN, so the list is a filter against confused or stray senders, not authentication:
docs/osc.md says what a LAN peer may do and what needs the operator's opt-in.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from engine.errors import ControlError

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> _Net:
    """One allow-list entry as a network (a bare address is a /32 or /128); ControlError if bad."""
    entry = str(text).strip()
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ControlError(f"--osc-allow {entry[:60]!r} is not an IP address or network "
                           "(e.g. 192.168.1.20 or 192.168.1.0/24)") from None


def _address(ip: str):
    try:
        addr = ipaddress.ip_address(str(ip).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:1.2.3.4 from a dual-stack socket
    return addr


def is_loopback(ip: str) -> bool:
    """True for a sender on this machine (127.0.0.0/8, ::1, and their IPv4-mapped forms)."""
    addr = _address(ip)
    return addr is not None and addr.is_loopback


class AllowList:
    """Sender addresses accepted by the show's ports.

    ``AllowList(None)`` accepts every sender (the listening address alone decides, as with
    ``--osc-listen 0.0.0.0`` and no ``--osc-allow``); ``AllowList(["10.0.0.0/24"])`` accepts
    loopback and that network only. Entries are checked when the list is made (ControlError).
    """

    def __init__(self, entries: Iterable[str] | None = None):
        self.networks: tuple[_Net, ...] | None = (
            None if entries is None else tuple(parse_network(e) for e in entries))

    @property
    def open(self) -> bool:
        """True when no list was given (every sender is accepted)."""
        return self.networks is None

    def permits(self, ip: str) -> bool:
        """True if a datagram or connection from ``ip`` may be handled."""
        if self.networks is None:
            return True
        addr = _address(ip)
        if addr is None:
            return False
        if addr.is_loopback:
            return True
        return any(addr.version == net.version and addr in net for net in self.networks)

    def __repr__(self) -> str:
        nets = "all" if self.networks is None else ", ".join(map(str, self.networks)) or "loopback"
        return f"AllowList({nets})"


# -- what a remote request may name: paths inside the show's folders ----------------------------

#: Commands only loopback senders may send, unless the operator passed ``--osc-lan-admin``:
#: they load files by path, swap the model or start recordings (docs/osc.md, "Security and the LAN").
LAN_ADMIN_ONLY = frozenset(("/lj/mapping/load", "/lj/generator", "/lj/record/start", "/lj/record/stop"))

#: Characters a checked path may not contain when it goes back into a generator spec
#: (``blend:A|B@fine``, ``model.pkl#class=3``): they would change what the spec means.
_SPEC_CHARS = frozenset("|@#")
#: Longest path a remote request may name (characters).
MAX_PATH_CHARS = 4096


class ShowFolders:
    """The folders a remote request may name files in, and the check that keeps it there.

    ``roots`` are the show's folders (the starting mapping's folder, the shipped mappings, any
    ``--show-dir``), resolved once with symlinks followed; ``base`` is where relative paths start
    (the starting mapping's folder). :meth:`mapping` and :meth:`generator` return the checked,
    absolute form of a request, or None when it leaves the folders: then nothing was opened or
    read (only ``resolve`` ran, which follows symlinks), and the caller reports just "refused".
    """

    def __init__(self, roots: Iterable[str | os.PathLike], base: str | os.PathLike | None = None):
        self.roots = tuple(dict.fromkeys(r for r in map(_real, roots) if r is not None))
        real_base = _real(base) if base is not None else None
        self.base = real_base or (self.roots[0] if self.roots else Path.cwd())

    @classmethod
    def for_show(cls, mapping_path: str | os.PathLike, extra: Iterable = ()) -> "ShowFolders":
        """A running show's folders: its starting mapping's (also the base of relative paths),
        the shipped mappings, and the operator's ``--show-dir`` folders."""
        from engine.paths import MAPPING_DIR

        base = Path(mapping_path).resolve().parent
        return cls([base, MAPPING_DIR, *extra], base=base)

    def inside(self, path: str | os.PathLike) -> Path | None:
        """``path`` (relative ones from :attr:`base`) resolved, if it lies inside a root."""
        text = os.fspath(path)
        if not text or "\0" in text or len(text) > MAX_PATH_CHARS:
            return None
        try:
            given = Path(text).expanduser()  # "~/show/a.toml" as the loaders read it
        except RuntimeError:  # "~nobody/..." names no home folder
            return None
        real = _real(self.base / given)
        if real is None or not any(real == r or real.is_relative_to(r) for r in self.roots):
            return None
        return real

    def mapping(self, text: str) -> str | None:
        """A ``/lj/mapping/load`` argument (a path, or a shipped mapping's name) checked."""
        from engine.paths import MAPPING_DIR

        if "/" not in text and not Path(text).suffix and not _exists(self.base / text):
            text = str(MAPPING_DIR / f"{text}.toml")  # a shipped mapping by name, as find_mapping
        real = self.inside(text)
        return None if real is None else str(real)

    def generator(self, spec: str) -> str | None:
        """A ``/lj/generator`` spec with every model path in it checked (built-ins pass as they are)."""
        name = spec.strip()
        if name.startswith("builtin") or name == "cppn":
            return name
        if name.startswith("blend:"):
            body = name[len("blend:"):]
            body, at, where = body.rpartition("@") if "@" in body else (body, "", "")
            parts = body.split("|")
            if len(parts) != 2:
                return None
            checked = [self._model(p) for p in parts]
            if None in checked:
                return None
            return "blend:" + "|".join(checked) + (at + where)
        return self._model(name)

    def _model(self, spec: str) -> str | None:
        path, sep, options = spec.strip().partition("#")
        real = self.inside(path.strip()) if path.strip() else None
        if real is None or not _SPEC_CHARS.isdisjoint(str(real)):
            return None
        return str(real) + sep + options


def _real(path) -> Path | None:
    """``path`` made absolute with symlinks followed, or None if that fails (a loop, a name too
    long, an unknown user's ``~``)."""
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False
