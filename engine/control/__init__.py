"""Control stage: outside input (OSC, keys) -> :class:`Controls` -> one snapshot per frame.

``OscServer`` writes what arrives over OSC into a :class:`Controls` (patterns, time-tagged
bundles, queries); ``OscSender`` streams features, beats, tempo and state out; ``OscQueryServer``
serves the address space as OSCQuery JSON over HTTP. See ``docs/osc.md`` for the address space.
"""

from engine.control.osc import OscServer
from engine.control.oscquery import OscQueryServer
from engine.control.sender import OscSender
from engine.control.state import ControlSnapshot, Controls

__all__ = ["ControlSnapshot", "Controls", "OscQueryServer", "OscSender", "OscServer"]
