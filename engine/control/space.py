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
GENERATOR_LOAD = "/lj/generator"
TEMPO_PREFIX = "/lj/tempo/"
GET = "/lj/get"
LIST = "/lj/list"
RELEASE = "/lj/release"

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
    clip: str | None = None  # OSCQuery CLIPMODE of the one argument: "none", "low", "high", "both"
    extended: str | None = None  # OSCQuery EXTENDED_TYPE of the one argument, e.g. "filepath"


#: Show commands queued for the frame loop (mapping branch: scenes, presets, cues, latents):
#: address -> (argument types: "" none, "s" a name, "is" a number or a name; description).
COMMANDS = {
    "/lj/scene": ("is", "switch scene: its number from 1 or its name (crossfade as the file says)"),
    "/lj/scene/next": ("", "next scene"),
    "/lj/scene/prev": ("", "previous scene"),
    "/lj/preset/save": ("s", "save the current state as a named preset"),
    "/lj/preset/load": ("s", "recall a named preset (with its crossfade)"),
    "/lj/cue/start": ("", "start the cue list from its beginning"),
    "/lj/cue/stop": ("", "stop the cue list"),
    "/lj/latent/save": ("s", "save the current w_plus as a named latent"),
    "/lj/latent/recall": ("s", "fade to a saved latent and hold it (empty name: let go)"),
}

#: Addresses that are always there, whatever the mapping.
FIXED = (
    AddressInfo(MAPPING_LOAD, "s", WRITE, "load the mapping file at this path", extended="filepath"),
    AddressInfo(GENERATOR_LOAD, "s", WRITE, "load this generator (a model file, builtin:cppn, blend:A|B); a failing load keeps the current one"),
    AddressInfo(GET, "s", WRITE, "reply with the current value of every address the argument matches"),
    AddressInfo(LIST, "", WRITE, "reply with every address of this space"),
    AddressInfo("/lj/learn", "s", WRITE, "learn: the next control that moves (an OSC address "
                "outside /lj/, a MIDI CC or note) is bound to this target (e.g. /lj/param/speed)"),
    AddressInfo("/lj/learn/cancel", "N", WRITE, "leave learn mode"),
    AddressInfo("/lj/learn/forget", "s", WRITE, "remove the bindings of this source or target"),
    AddressInfo(RELEASE, "s", WRITE, "give the direct targets matching this address or pattern "
                "(none: all) back to the mapping"),
    AddressInfo("/lj/record/start", "s", WRITE, "record the output as shown, with the audio "
                "(optional path; none: ./recordings/lj-<date>-<time>-<n>.mp4)", extended="filepath"),
    AddressInfo("/lj/record/stop", "N", WRITE, "finish the recording"),
    AddressInfo(TEMPO_PREFIX + "tap", "N", WRITE, "tap tempo (one tap per beat)"),
    AddressInfo(TEMPO_PREFIX + "reset", "N", WRITE, "beat one is now (phase reset)"),
    AddressInfo(TEMPO_PREFIX + "set", "f", WRITE, "set the tempo in BPM", range=(30.0, 300.0)),
    AddressInfo(TEMPO_PREFIX + "lock", "i", WRITE, "1: hold the tempo, 0: let the tracker follow"),
    AddressInfo(TEMPO_PREFIX + "link", "i", WRITE, "1: follow Ableton Link, 0: the internal tracker"),
) + tuple(AddressInfo(address, {"": "N", "s": "s", "is": "s"}[types], WRITE, description)
          for address, (types, description) in COMMANDS.items())
