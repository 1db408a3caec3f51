"""OSC on the wire: strict datagram checks, bundle flattening with time tags, and encoding.

python-osc parses leniently (it pads truncated numbers with zeros and skips unknown type tags), so
every datagram is first checked here; bundles are then flattened with their time tags (a nested
bundle never runs before the one around it). Encoding helpers build messages and bundles for
replies and the outgoing streams.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.parsing import osc_types

#: Bundles nested deeper than this are treated as malformed.
MAX_BUNDLE_DEPTH = 8
#: A datagram holding more messages than this (bundles nested or not) is treated as malformed:
#: parsing and applying it would keep the OSC thread (and, through the GIL, the frame loop) busy.
MAX_BUNDLE_MESSAGES = 1024
#: Largest datagram the replies and streams build on purpose (bytes); well below UDP's 65507.
MAX_REPLY_DATAGRAM = 8192

BUNDLE_PREFIX = b"#bundle\x00"
IMMEDIATELY = struct.pack(">Q", 1)
INT = struct.Struct(">i")
FLOAT = struct.Struct(">f")
# Argument sizes (bytes) of the fixed-size OSC types; strings and blobs are walked separately.
_FIXED_SIZES = {"i": 4, "f": 4, "r": 4, "m": 4, "c": 4, "d": 8, "h": 8, "t": 8,
                "T": 0, "F": 0, "N": 0, "I": 0, "[": 0, "]": 0}


def check_message(dgram: bytes) -> str | None:
    """Why ``dgram`` is not a well-formed OSC message, or None if it is (never raises)."""
    try:
        return _check_message(dgram)
    except (osc_types.ParseError, UnicodeDecodeError, IndexError, ValueError) as exc:
        return f"unreadable message ({type(exc).__name__})"


def _string(dgram: bytes, index: int) -> tuple[str, int]:
    """The OSC string at ``index`` and the index after it: NUL-terminated, UTF-8, zero-padded
    to a multiple of 4 (python-osc accepts any padding, which lets a string's tail be misread
    as the next argument); ValueError if it is not exactly that."""
    nul = dgram.find(b"\0", index)
    if nul < 0:
        raise ValueError("unterminated string")
    end = index + ((nul - index) // 4 + 1) * 4
    if end > len(dgram) or dgram[nul:end].strip(b"\0"):
        raise ValueError("string padding is not zeros")
    return dgram[index:nul].decode("utf-8"), end


def _check_message(dgram: bytes) -> str | None:
    address, index = _string(dgram, 0)
    if not address.startswith("/"):
        return "address does not start with '/'"
    if index == len(dgram):
        return None  # no type tag string: a message without arguments
    tags, index = _string(dgram, index)
    if not tags.startswith(","):
        return "type tag string does not start with ','"
    for tag in tags[1:]:
        size = _FIXED_SIZES.get(tag)
        if size is not None:
            index += size
        elif tag == "s" or tag == "S":
            _, index = _string(dgram, index)
        elif tag == "b":
            _, index = osc_types.get_blob(dgram, index)
        else:
            return f"unknown type tag {tag!r}"
        if index > len(dgram):
            return "truncated arguments"
    if index != len(dgram):
        return "trailing bytes after the arguments"
    return None


_SIMPLE_TAGS = {b",f": FLOAT, b",i": INT, b",d": struct.Struct(">d"), b",h": struct.Struct(">q")}
_BOOL_TAGS = {b",T": True, b",F": False}


def parse_simple(dgram: bytes) -> tuple[str, list] | None:
    """``(address, args)`` of the commonest message — one ``f``/``i``/``d``/``h``/``T``/``F``
    argument or none — read directly (a fader sends nothing else), or None for anything else
    (bundles, strings, several arguments, or a message with any irregularity), which then goes
    through :func:`check_packet` and python-osc. Exactly as strict: zero padding, exact length.
    """
    end = dgram.find(b"\0")
    if end < 1 or dgram[0] != 0x2F:
        return None
    tag_at = (end + 4) & ~3
    if dgram[end:tag_at].strip(b"\0") or len(dgram) < tag_at:
        return None
    try:
        address = dgram[:end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(dgram) == tag_at:
        return address, []
    tags = dgram[tag_at:tag_at + 4]
    if len(tags) < 4 or tags[2:] != b"\0\0":
        return None
    tags = tags[:2]
    if tags in _BOOL_TAGS or tags == b",\0":
        return (address, [_BOOL_TAGS[tags]] if tags in _BOOL_TAGS else []) \
            if len(dgram) == tag_at + 4 else None
    fmt = _SIMPLE_TAGS.get(tags)
    if fmt is None or len(dgram) != tag_at + 4 + fmt.size:
        return None
    return address, [fmt.unpack_from(dgram, tag_at + 4)[0]]


def check_packet(dgram: bytes, depth: int = 0, _seen: list | None = None) -> str | None:
    """Why ``dgram`` is not a well-formed OSC message or bundle, or None if it is (at most
    :data:`MAX_BUNDLE_MESSAGES` messages, :data:`MAX_BUNDLE_DEPTH` levels of bundles)."""
    seen = [0] if _seen is None else _seen
    if dgram.startswith(b"/"):
        seen[0] += 1
        if seen[0] > MAX_BUNDLE_MESSAGES:
            return f"more than {MAX_BUNDLE_MESSAGES} messages in one datagram"
        return check_message(dgram)
    if not dgram.startswith(BUNDLE_PREFIX):
        return "neither an OSC message nor a bundle"
    if depth >= MAX_BUNDLE_DEPTH:
        return "bundles nested too deep"
    index = len(BUNDLE_PREFIX) + 8  # the time tag
    if index > len(dgram):
        return "truncated bundle header"
    while index < len(dgram):
        if index + 4 > len(dgram):
            return "truncated bundle element size"
        (size,) = INT.unpack_from(dgram, index)
        index += 4
        if size <= 0 or size % 4 or index + size > len(dgram):
            return "bad bundle element size"
        why = check_packet(dgram[index:index + size], depth + 1, seen)
        if why is not None:
            return why
        index += size
    return None


def flatten(dgram: bytes) -> list[tuple[float | None, OscMessage]]:
    """The messages of a checked packet, in order, each with its time (Unix seconds) or None.

    None means "immediately" (a plain message, or a bundle tagged immediately). A nested bundle's
    time is never earlier than its enclosing bundle's (OSC 1.0).
    """
    if dgram.startswith(b"/"):
        return [(None, OscMessage(dgram))]
    out: list[tuple[float | None, OscMessage]] = []
    _walk(OscBundle(dgram), None, out)
    return out


def _walk(bundle: OscBundle, outer: float | None, out: list) -> None:
    tag = bundle.timestamp
    when = None if tag == osc_types.IMMEDIATELY else float(tag)
    if outer is not None and (when is None or when < outer):
        when = outer
    for content in bundle:
        if isinstance(content, OscBundle):
            _walk(content, when, out)
        else:
            out.append((when, content))


def encode_message(address: str, args: Iterable[object] = ()) -> bytes:
    """One OSC message: floats as ``f``, ints as ``i``, bools as ``T``/``F``, text as ``s``."""
    tags = [","]
    data = []
    for arg in args:
        if isinstance(arg, bool):
            tags.append("T" if arg else "F")
        elif isinstance(arg, int):
            tags.append("i")
            data.append(INT.pack(arg))
        elif isinstance(arg, float):
            tags.append("f")
            data.append(FLOAT.pack(arg))
        else:
            tags.append("s")
            data.append(osc_types.write_string(str(arg)))
    return osc_types.write_string(address) + osc_types.write_string("".join(tags)) + b"".join(data)


def encode_bundle(messages: Iterable[bytes]) -> bytes:
    """A bundle (time tag "immediately") holding the encoded ``messages``."""
    parts = [BUNDLE_PREFIX, IMMEDIATELY]
    for m in messages:
        parts.append(INT.pack(len(m)))
        parts.append(m)
    return b"".join(parts)


def pack_datagrams(messages: list[bytes], limit: int = MAX_REPLY_DATAGRAM) -> list[bytes]:
    """Group encoded messages into as few datagrams as fit under ``limit`` bytes each.

    One message goes out as itself; several go out as bundles.
    """
    if len(messages) == 1:
        return list(messages)
    out: list[bytes] = []
    group: list[bytes] = []
    size = 16
    for m in messages:
        if group and size + 4 + len(m) > limit:
            out.append(encode_bundle(group))
            group, size = [], 16
        group.append(m)
        size += 4 + len(m)
    if group:
        out.append(encode_bundle(group))
    return out
