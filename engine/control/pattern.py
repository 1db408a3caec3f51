"""OSC 1.0 address pattern matching (``?``, ``*``, ``[abc]``, ``[!a-z]``, ``{foo,bar}``).

Why not regular expressions: a pattern like ``/lj/param/***...*Z`` made Python's backtracking
``re`` take minutes, holding the GIL, so one datagram froze the frame loop. Here a pattern is split
at ``/`` (so, as in OSC 1.0, no wildcard ever crosses a ``/``) and each segment becomes a small
non-deterministic automaton that is simulated, never backtracked: a state set (a Python int used
as a bit set) advances one character at a time. Matching one address costs at most
O(address length x pattern length); transitions are cached per segment (a lazy DFA), so matching
a pattern against a large address space costs about one dictionary look-up per character.

Work is bounded before and during matching: a pattern longer than :data:`MAX_PATTERN_LEN` is
malformed, and :func:`match` takes a :class:`Budget` of elementary steps; when it runs out the
match stops with :class:`PatternError` (the message is ignored and counted), whatever the pattern
and the size of the address space. Written from the OSC 1.0 specification.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

#: Characters that make an address a pattern rather than a literal address.
PATTERN_CHARS = frozenset("?*[]{}")
#: Longest pattern accepted (characters); longer ones are treated as malformed.
MAX_PATTERN_LEN = 256
#: Elementary steps one :func:`match` may take by default (about 0.1-0.3 s of Python at worst).
MAX_MATCH_STEPS = 400_000
#: Cached transitions per compiled pattern, all its segments together (the lazy DFA); beyond it,
#: steps are computed afresh. With :data:`MAX_COMPILED` patterns kept, the caches hold at most
#: about 130k entries (tens of MB) whatever a flood of distinct patterns does.
MAX_CACHED_TRANSITIONS = 1024
#: Compiled patterns kept (least recently used dropped first).
MAX_COMPILED = 128


class PatternError(ValueError):
    """The pattern is malformed (an unclosed ``[`` or ``{``, a stray ``]`` or ``}``, too long),
    or matching it would cost more than its budget."""


class TooCostly(PatternError):
    """Matching ran out of its :class:`Budget` (the pattern, or the datagram, costs too much)."""


class Budget:
    """A count of elementary matching steps left; shared by every match of one datagram."""

    __slots__ = ("left",)

    def __init__(self, steps: int = MAX_MATCH_STEPS):
        self.left = int(steps)

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise TooCostly("pattern too costly to match")


def is_pattern(address: str) -> bool:
    """True if ``address`` contains any OSC pattern character."""
    return not PATTERN_CHARS.isdisjoint(address)


# -- one segment: parsing into character tests ------------------------------------------------

# A character test is ("c", char) | ("?",) | ("set", negate, chars, ranges).

def _bracket(seg: str, i: int) -> tuple[tuple, int]:
    """The test of the ``[...]`` starting at ``seg[i]``; returns (test, index after ``]``)."""
    end = seg.find("]", i + 1)
    if end < 0:
        raise PatternError("unclosed '['")
    body = seg[i + 1:end]
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    if not body:
        raise PatternError("empty '[...]'")
    chars, ranges = set(), []
    k = 0
    while k < len(body):
        # A '-' between two characters is a range; anywhere else it is literal.
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            if lo > hi:
                raise PatternError(f"reversed range '{lo}-{hi}'")
            ranges.append((lo, hi))
            k += 3
        else:
            chars.add(body[k])
            k += 1
    return ("set", negate, frozenset(chars), tuple(ranges)), end + 1


def _passes(test: tuple, ch: str) -> bool:
    kind = test[0]
    if kind == "c":
        return ch == test[1]
    if kind == "?":
        return True
    _, negate, chars, ranges = test
    hit = ch in chars or any(lo <= ch <= hi for lo, hi in ranges)
    return hit != negate


class Segment:
    """One pattern segment as an automaton: states 0..n, each with at most one character test
    (``tests[s] = (test, next state)``) and epsilon moves folded into ``closure[s]`` (bit sets).

    ``*`` is a state whose test (any character) loops back to itself and which may be skipped;
    ``{a,b}`` fans out to one chain of literal states per word, all joining one state after it.
    """

    def __init__(self, text: str):
        self.text = text
        self.tests: list[tuple | None] = []
        eps: list[list[int]] = []

        def new() -> int:
            self.tests.append(None)
            eps.append([])
            return len(self.tests) - 1

        cur = new()
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "*":
                if i and text[i - 1] == "*":  # "**" is "*"
                    i += 1
                    continue
                nxt = new()
                self.tests[cur] = (("?",), cur)
                eps[cur].append(nxt)
                cur, i = nxt, i + 1
            elif ch == "{":
                end = text.find("}", i + 1)
                if end < 0:
                    raise PatternError("unclosed '{'")
                words = text[i + 1:end].split(",")
                if any(is_pattern(w) for w in words):
                    raise PatternError("nested pattern in '{...}'")
                ends = []
                for word in words:  # a chain of literal states per word, from cur to join
                    at = new()
                    eps[cur].append(at)
                    for c in word:
                        nxt = new()
                        self.tests[at] = (("c", c), nxt)
                        at = nxt
                    ends.append(at)
                join = new()
                for at in ends:
                    eps[at].append(join)
                cur, i = join, end + 1
            elif ch in "]}":
                raise PatternError(f"stray {ch!r}")
            else:
                if ch == "[":
                    test, i = _bracket(text, i)
                else:
                    test, i = (("?",) if ch == "?" else ("c", ch)), i + 1
                nxt = new()
                self.tests[cur] = (test, nxt)
                cur = nxt
        self.accept = 1 << cur
        # Every epsilon move goes to a later state, so closures build back to front in one pass.
        self.closure = [0] * len(self.tests)
        for s in range(len(self.tests) - 1, -1, -1):
            bits = 1 << s
            for t in eps[s]:
                bits |= self.closure[t]
            self.closure[s] = bits
        self.start = self.closure[0]
        # The pattern's shared transition cache; a lone segment gets its own.
        self._cache: dict[tuple[int, int, str], int] = {}

    def _step(self, states: int, ch: str) -> int:
        out = 0
        while states:
            low = states & -states
            states ^= low
            entry = self.tests[low.bit_length() - 1]
            if entry is not None and _passes(entry[0], ch):
                out |= self.closure[entry[1]]
        return out

    def matches(self, word: str, budget: Budget) -> bool:
        """True if ``word`` (one address segment) matches this segment in full."""
        states = self.start
        cache = self._cache
        cost = 0
        for ch in word:
            key = (id(self), states, ch)
            nxt = cache.get(key)
            if nxt is None:
                cost += states.bit_count()
                nxt = self._step(states, ch)
                if len(cache) < MAX_CACHED_TRANSITIONS:
                    cache[key] = nxt
            cost += 1
            states = nxt
            if not states:
                break
        budget.spend(cost + 1)
        return bool(states & self.accept)


class Pattern:
    """A compiled OSC address pattern: one :class:`Segment` (or literal string) per segment."""

    def __init__(self, pattern: str):
        self.text = pattern
        self.parts: tuple[str | Segment, ...] = tuple(
            Segment(seg) if is_pattern(seg) else seg for seg in pattern.split("/"))
        shared: dict = {}  # one bounded cache for every segment of the pattern
        for part in self.parts:
            if isinstance(part, Segment):
                part._cache = shared

    def fullmatch(self, address: str, budget: Budget | None = None) -> bool:
        """True if the whole ``address`` matches (segment by segment)."""
        budget = budget if budget is not None else Budget()
        words = address.split("/")
        if len(words) != len(self.parts):
            budget.spend(1)
            return False
        for part, word in zip(self.parts, words):
            if isinstance(part, str):
                if part != word:
                    budget.spend(1)
                    return False
            elif not part.matches(word, budget):
                return False
        return True


@lru_cache(maxsize=MAX_COMPILED)
def compile_pattern(pattern: str) -> Pattern:
    """The compiled form of an OSC address pattern; PatternError if malformed."""
    if len(pattern) > MAX_PATTERN_LEN or not pattern.startswith("/"):
        raise PatternError("pattern too long or not starting with '/'")
    return Pattern(pattern)


def match(pattern: str, addresses: Iterable[str], budget: Budget | None = None) -> list[str]:
    """The addresses (in the given order) that the OSC ``pattern`` matches in full.

    A literal address (no pattern characters) matches only itself. PatternError if malformed,
    or if matching would take more than ``budget`` (default: a fresh :data:`MAX_MATCH_STEPS`).
    """
    if not is_pattern(pattern):
        return [a for a in addresses if a == pattern]
    budget = budget if budget is not None else Budget()
    if budget.left <= 0:
        raise TooCostly("no matching budget left for this datagram")
    budget.spend(len(pattern))  # compiling is linear in the pattern (cached after the first time)
    compiled = compile_pattern(pattern)
    return [a for a in addresses if compiled.fullmatch(a, budget)]
