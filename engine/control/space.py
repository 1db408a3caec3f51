"""The OSC address space (version 1): prefixes, fixed addresses and how one address is described.

:class:`~engine.control.state.Controls` lists its parameters, triggers and state values as
:class:`AddressInfo` records; the OSC server matches patterns against them, answers ``/lj/list`` and
``/lj/get`` from them, and the OSCQuery server turns them into its JSON tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PARAM_PREFIX = "/lj/param/"
TRIGGER_PREFIX = "/lj/trigger/"
STATE_PREFIX = "/lj/state/"
MAPPING_LOAD = "/lj/mapping/load"
TEMPO_PREFIX = "/lj/tempo/"
GET = "/lj/get"
LIST = "/lj/list"

#: A name is one address segment: no '/', no OSC pattern characters, no spaces.
NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

#: OSCQuery ACCESS values.
NO_ACCESS, READ, WRITE, READ_WRITE = 0, 1, 2, 3


@dataclass(frozen=True)
class AddressInfo:
    """One OSC method: its address, OSC type tags, access, range, current value and description.

    ``type`` is an OSC type tag string (``"f"``, ``"s"``, ``"N"`` for "no argument" / a trigger,
    ``""`` for a message without arguments). ``value`` is None when the address has none to read.
    """

    address: str
    type: str
    access: int
    description: str = ""
    value: float | str | None = None
    range: tuple[float, float] | None = None


#: Addresses that are always there, whatever the mapping.
FIXED = (
    AddressInfo(MAPPING_LOAD, "s", WRITE, "load the mapping file at this path"),
    AddressInfo(GET, "s", WRITE, "reply with the current value of every address the argument matches"),
    AddressInfo(LIST, "", WRITE, "reply with every address of this space"),
)
