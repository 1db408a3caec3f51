"""OSC 1.0 address pattern matching (``?``, ``*``, ``[abc]``, ``[!a-z]``, ``{foo,bar}``).

A pattern is translated once into a regular expression (cached, bounded) and matched against the
known address space. As in OSC 1.0, no wildcard crosses a ``/``: ``/lj/*`` matches ``/lj/list``
but not ``/lj/param/speed``. Written from the OSC 1.0 specification.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

#: Characters that make an address a pattern rather than a literal address.
PATTERN_CHARS = frozenset("?*[]{}")
#: Longest pattern accepted (characters); longer ones are treated as malformed.
MAX_PATTERN_LEN = 256


class PatternError(ValueError):
    """The pattern is malformed (an unclosed ``[`` or ``{``, a stray ``]`` or ``}``, too long)."""


def is_pattern(address: str) -> bool:
    """True if ``address`` contains any OSC pattern character."""
    return not PATTERN_CHARS.isdisjoint(address)


def _bracket(pattern: str, i: int) -> tuple[str, int]:
    """Translate the ``[...]`` starting at ``pattern[i]``; returns (regex, index after ``]``)."""
    end = pattern.find("]", i + 1)
    if end < 0:
        raise PatternError("unclosed '['")
    body = pattern[i + 1:end]
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    if not body or "/" in body:
        raise PatternError("empty or bad '[...]'")
    out = []
    for k, ch in enumerate(body):
        # A '-' between two characters is a range; anywhere else it is literal.
        if ch == "-" and 0 < k < len(body) - 1:
            out.append("-")
        else:
            out.append(re.escape(ch))
    cls = "".join(out)
    return (f"[^/{cls}]" if negate else f"[{cls}]"), end + 1


def _braces(pattern: str, i: int) -> tuple[str, int]:
    """Translate the ``{a,b}`` starting at ``pattern[i]``; returns (regex, index after ``}``)."""
    end = pattern.find("}", i + 1)
    if end < 0:
        raise PatternError("unclosed '{'")
    words = pattern[i + 1:end].split(",")
    if any(is_pattern(w) or "/" in w for w in words):
        raise PatternError("nested pattern in '{...}'")
    return "(?:" + "|".join(re.escape(w) for w in words) + ")", end + 1


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled regex for an OSC address pattern; PatternError if malformed."""
    if len(pattern) > MAX_PATTERN_LEN or not pattern.startswith("/"):
        raise PatternError("pattern too long or not starting with '/'")
    parts = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "?":
            parts.append("[^/]")
            i += 1
        elif ch == "*":
            parts.append("[^/]*")
            i += 1
        elif ch == "[":
            regex, i = _bracket(pattern, i)
            parts.append(regex)
        elif ch == "{":
            regex, i = _braces(pattern, i)
            parts.append(regex)
        elif ch in "]}":
            raise PatternError(f"stray {ch!r}")
        else:
            parts.append(re.escape(ch))
            i += 1
    try:
        return re.compile("".join(parts))
    except re.error as exc:  # e.g. a reversed range "[z-a]"
        raise PatternError(str(exc)) from None


def match(pattern: str, addresses: Iterable[str]) -> list[str]:
    """The addresses (in the given order) that the OSC ``pattern`` matches in full.

    A literal address (no pattern characters) matches only itself. PatternError if malformed.
    """
    if not is_pattern(pattern):
        return [a for a in addresses if a == pattern]
    regex = compile_pattern(pattern)
    return [a for a in addresses if regex.fullmatch(a)]
