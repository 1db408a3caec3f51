"""Control stage: outside input (OSC, keys) -> :class:`Controls` -> one snapshot per frame.

``OscServer`` writes what arrives over OSC into a :class:`Controls`; ``OscSender`` streams the
audio features out. See ``docs/osc.md`` for the address space.
"""

from engine.control.osc import OscSender, OscServer
from engine.control.state import ControlSnapshot, Controls

__all__ = ["ControlSnapshot", "Controls", "OscSender", "OscServer"]
