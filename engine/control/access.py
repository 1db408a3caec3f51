"""Who may talk to the show: the sender allow-list shared by OSC (UDP) and HTTP (OSCQuery, /health).

``--osc-allow`` takes IP addresses and networks (``192.168.1.20``, ``10.0.0.0/24``, ``::1``);
anything else is refused when the option is parsed, never silently accepted. Loopback senders
(``127.0.0.0/8``, ``::1``) are always allowed: they are this machine. A UDP sender address can be
forged on a LAN, so the list is a filter against confused or stray senders, not authentication:
docs/osc.md says what a LAN peer may do and what needs the operator's opt-in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

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
