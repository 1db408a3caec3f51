"""On/off hours for an unattended installation: a pure function of the clock.

A schedule is a list of entries, each a set of weekdays and one or more time ranges::

    10:00-18:00                              every day
    mon-fri 10:00-13:00 14:00-18:00          two ranges on weekdays
    mon-fri 10:00-18:00; sat,sun 12:00-20:00 several entries, separated by ';'
    fri,sat 20:00-02:00                      past midnight: on from Friday 20:00 to Saturday 02:00
    00:00-24:00                              always on

Days are ``mon tue wed thu fri sat sun`` (or ``daily``), alone, as a range (``mon-fri``, also
wrapping: ``fri-mon``) or a comma list. A range belongs to the day it starts on. Times are the
machine's local wall clock (``datetime.now()``); nothing here sleeps or reads the clock itself:
:meth:`Schedule.is_on` and :meth:`Schedule.next_change` take the time as an argument, so every
rule is tested with given dates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.errors import LJError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class ScheduleError(LJError):
    """A schedule that cannot be read (one line, says what was expected)."""


@dataclass(frozen=True)
class Span:
    """On from ``start`` to ``end`` minutes after midnight of a weekday (``end`` may pass 1440)."""

    day: int      # 0 = Monday
    start: int    # minutes
    end: int      # minutes, > start; up to 2 * 1440 - 1 for a range past midnight


def _day_spec(token: str) -> list[int]:
    days: list[int] = []
    for part in token.split(","):
        if not part:
            continue
        if part in ("daily", "every", "everyday", "all"):
            days.extend(range(7))
            continue
        lo, sep, hi = part.partition("-")
        if lo[:3] not in DAYS or (sep and hi[:3] not in DAYS):
            raise ScheduleError(f"schedule: '{part}' is not a day (expected mon..sun, a range "
                                "like mon-fri, or daily)")
        a = DAYS.index(lo[:3])
        b = DAYS.index(hi[:3]) if sep else a
        days.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
    return days


def _range(token: str) -> tuple[int, int]:
    m = _TIME.match(token)
    if not m:
        raise ScheduleError(f"schedule: '{token}' is not a time range (expected HH:MM-HH:MM, "
                            "e.g. 10:00-18:00)")
    h0, m0, h1, m1 = (int(g) for g in m.groups())
    if h0 > 23 or m0 > 59 or h1 > 24 or m1 > 59 or (h1 == 24 and m1):
        raise ScheduleError(f"schedule: '{token}' is not a valid time of day")
    start, end = h0 * 60 + m0, h1 * 60 + m1
    if end == start:
        raise ScheduleError(f"schedule: '{token}' is empty (use 00:00-24:00 for all day)")
    if end < start:
        end += 1440  # past midnight: ends the next day
    return start, end


class Schedule:
    """Parsed on/off hours (see the module docstring for the syntax).

    ``Schedule("mon-fri 10:00-18:00").is_on(datetime(2026, 11, 23, 12, 0))`` is True (a Monday).
    """

    def __init__(self, text: str | list[str]):
        entries = [text] if isinstance(text, str) else list(text)
        self.text = "; ".join(e.strip() for e in entries)
        spans: list[Span] = []
        for entry in ";".join(entries).split(";"):
            tokens = [t for t in re.split(r"[\s]+", entry.strip().lower()) if t]
            if not tokens:
                continue
            days: list[int] = []
            ranges: list[tuple[int, int]] = []
            for token in tokens:
                if token[0].isdigit():
                    ranges.extend(_range(t) for t in token.split(",") if t)
                else:
                    if ranges:
                        raise ScheduleError(f"schedule: days must come before the hours in "
                                            f"'{entry.strip()}' (separate entries with ';')")
                    days.extend(_day_spec(token))
            if not ranges:
                raise ScheduleError(f"schedule: '{entry.strip()}' has no hours (expected e.g. "
                                    "mon-fri 10:00-18:00)")
            for day in sorted(set(days) if days else range(7)):
                spans.extend(Span(day, a, b) for a, b in ranges)
        if not spans:
            raise ScheduleError("schedule: empty (expected e.g. 10:00-18:00)")
        self.spans = tuple(spans)

    def __repr__(self) -> str:
        return f"Schedule({self.text!r})"

    def _week_minute(self, now: datetime) -> int:
        return now.weekday() * 1440 + now.hour * 60 + now.minute

    def is_on(self, now: datetime) -> bool:
        """Whether the show should be running at ``now`` (a naive local datetime)."""
        m = self._week_minute(now)
        week = 7 * 1440
        for s in self.spans:
            start = s.day * 1440 + s.start
            # the span, and its copy one week earlier (a Sunday range past midnight)
            for offset in (0, -week):
                if start + offset <= m < s.day * 1440 + s.end + offset:
                    return True
        return False

    def next_change(self, now: datetime) -> datetime | None:
        """The first minute boundary after ``now`` at which :meth:`is_on` changes, or None if it
        never does (always on)."""
        state = self.is_on(now)
        base = now.replace(second=0, microsecond=0)
        # The only instants where the answer can change are span starts and ends.
        edges = set()
        for s in self.spans:
            edges.add((s.day * 1440 + s.start) % (7 * 1440))
            edges.add((s.day * 1440 + s.end) % (7 * 1440))
        m = self._week_minute(now)
        for ahead in sorted(((e - m) % (7 * 1440)) or 7 * 1440 for e in edges):
            when = base + timedelta(minutes=ahead)
            if self.is_on(when) != state:
                return when
        return None

    def seconds_to_change(self, now: datetime) -> float | None:
        """Seconds from ``now`` to :meth:`next_change` (None if it never changes)."""
        nxt = self.next_change(now)
        return None if nxt is None else max(0.0, (nxt - now).total_seconds())
