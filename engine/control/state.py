"""`Controls`: the one place that input from outside the audio path (OSC, keys) writes to.

Writers (the OSC thread, the key handler) call :meth:`Controls.set_param`,
:meth:`Controls.trigger` and :meth:`Controls.request_mapping`; the frame loop takes one
:meth:`Controls.snapshot` per frame. Everything is guarded by one small lock that is held only for
a few dictionary operations, so a writer never stalls the frame loop. Nothing received is ever
executed: names and paths are stored as plain strings, values as floats.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from numbers import Real

#: Counters every :class:`Controls` keeps (see :attr:`Controls.stats`).
STAT_NAMES = (
    "messages",  # OSC messages handled (good or bad) by the server
    "bad_packets",  # datagrams that could not be parsed as OSC
    "bad_values",  # well-formed messages whose arguments were rejected (NaN, a string for a param, ...)
    "unknown_addresses",  # well-formed messages to an address outside the /lj/ space
    "rejected_senders",  # datagrams from an address not in the server's allow list
    "dropped_triggers",  # triggers pushed out of a full queue (the frame loop fell far behind)
)

#: At most this many triggers wait between two snapshots; older ones are dropped first.
MAX_PENDING_TRIGGERS = 256
#: At most this many distinct parameter names are kept; a flood of new names is rejected.
MAX_PARAMS = 1024
#: Longest accepted parameter/trigger name and mapping path (characters).
MAX_NAME_LEN = 64
MAX_PATH_LEN = 4096


@dataclass(frozen=True)
class ControlSnapshot:
    """What the controls held at one instant, as taken once per frame.

    ``params`` is a copy of the latest value of every parameter ever set; ``triggers`` are the
    triggers fired since the previous snapshot, oldest first (each delivered exactly once);
    ``mapping`` is the mapping path requested since the previous snapshot (latest wins), or None.
    """

    params: dict[str, float] = field(default_factory=dict)
    triggers: list[str] = field(default_factory=list)
    mapping: str | None = None


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME_LEN and name.isprintable()


class Controls:
    """Thread-safe store of live parameters, pending triggers and a pending mapping reload.

    Bad input is never raised to the writer (the OSC thread must not die): it is rejected, counted
    in :attr:`stats` and reported by a False return value.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._params: dict[str, float] = {}
        self._triggers: deque[str] = deque(maxlen=MAX_PENDING_TRIGGERS)
        self._mapping: str | None = None
        self._stats: dict[str, int] = {k: 0 for k in STAT_NAMES}

    # -- writers ------------------------------------------------------------------------------

    def set_param(self, name: str, value: float) -> bool:
        """Set parameter ``name`` to ``value``; True if accepted.

        Accepts real numbers (bools become 1.0/0.0) that are finite as floats. Anything else
        (NaN, inf, strings, None, a bad name, a new name beyond :data:`MAX_PARAMS`) is rejected and
        counted in ``stats["bad_values"]``.
        """
        ok = _valid_name(name) and isinstance(value, Real)
        if ok:
            try:
                value = float(value)
            except (TypeError, ValueError, OverflowError):
                ok = False
            else:
                ok = math.isfinite(value)
        with self._lock:
            if ok and (name in self._params or len(self._params) < MAX_PARAMS):
                self._params[name] = value
                return True
            self._stats["bad_values"] += 1
            return False

    def trigger(self, name: str) -> bool:
        """Queue the one-shot trigger ``name`` for the next snapshot; True if accepted."""
        with self._lock:
            if not _valid_name(name):
                self._stats["bad_values"] += 1
                return False
            if len(self._triggers) == self._triggers.maxlen:
                self._stats["dropped_triggers"] += 1
            self._triggers.append(name)
            return True

    def request_mapping(self, path: str) -> bool:
        """Ask the frame loop to load the mapping at ``path``; the latest request wins.

        The path is only stored; loading (and validating) it is the session's job.
        """
        ok = isinstance(path, str) and 0 < len(path) <= MAX_PATH_LEN and "\0" not in path
        with self._lock:
            if not ok:
                self._stats["bad_values"] += 1
                return False
            self._mapping = path
            return True

    def count(self, stat: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``stat`` (one of :data:`STAT_NAMES`, or a new one)."""
        with self._lock:
            self._stats[stat] = self._stats.get(stat, 0) + n

    # -- readers ------------------------------------------------------------------------------

    def snapshot(self) -> ControlSnapshot:
        """Copy the params and drain the triggers and the mapping request (one short lock)."""
        with self._lock:
            params = dict(self._params)
            triggers = list(self._triggers)
            self._triggers.clear()
            mapping, self._mapping = self._mapping, None
        return ControlSnapshot(params=params, triggers=triggers, mapping=mapping)

    @property
    def stats(self) -> dict[str, int]:
        """A copy of the counters (a fresh dict each call, so it is safe to read anywhere)."""
        with self._lock:
            return dict(self._stats)
