"""`Controls`: the one place that input from outside the audio path (OSC, keys) writes to.

Writers (the OSC thread, the key handler) call :meth:`Controls.set_param`,
:meth:`Controls.trigger` and :meth:`Controls.request_mapping`; the frame loop takes one
:meth:`Controls.snapshot` per frame. Everything is guarded by one small lock that is held only for
a few dictionary operations, so a writer never stalls the frame loop. Nothing received is ever
executed: names and paths are stored as plain strings, values as floats.

Controls also knows the address space: the session declares the mapping's parameters (with their
default and range) and triggers, and publishes read-only state (mapping name, fps). Parameter
values are smoothed (see :mod:`engine.control.smooth`): a new value is approached exponentially
with a time constant per parameter, evaluated at snapshot time from the elapsed time.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from numbers import Real

from engine.control.smooth import Smoothed
from engine.control.space import (FIXED, PARAM_PREFIX, READ, READ_WRITE, STATE_PREFIX, TRIGGER_PREFIX,
                                  WRITE, AddressInfo)

#: Counters every :class:`Controls` keeps (see :attr:`Controls.stats`).
STAT_NAMES = (
    "messages",  # OSC messages handled (good or bad) by the server
    "bad_packets",  # datagrams that could not be parsed as OSC
    "bad_values",  # well-formed messages whose arguments were rejected (NaN, a string for a param, ...)
    "unknown_addresses",  # well-formed messages to an address outside the /lj/ space (or matching nothing)
    "rejected_senders",  # datagrams from an address not in the server's allow list
    "dropped_triggers",  # triggers pushed out of a full queue (the frame loop fell far behind)
    "scheduled",  # messages from bundles time-tagged in the future, applied at their time
    "dropped_scheduled",  # future messages refused because the schedule was full
    "replies",  # reply datagrams sent (/lj/get, /lj/list)
    "dropped_replies",  # replies not sent (reply budget spent, or a send error)
)

#: At most this many triggers wait between two snapshots; older ones are dropped first.
MAX_PENDING_TRIGGERS = 256
#: At most this many distinct parameter names (and, separately, declared triggers) are kept.
MAX_PARAMS = 1024
#: At most this many state values.
MAX_STATE = 64
#: Longest accepted parameter/trigger name and mapping path (characters).
MAX_NAME_LEN = 64
MAX_PATH_LEN = 4096
MAX_STATE_TEXT = 256
#: Default smoothing time constant for parameter values (seconds); 0 turns smoothing off.
DEFAULT_SMOOTHING = 0.06


@dataclass(frozen=True)
class ControlSnapshot:
    """What the controls held at one instant, as taken once per frame.

    ``params`` holds the (smoothed) value of every parameter at the snapshot's time; ``triggers``
    are the triggers fired since the previous snapshot, oldest first (each delivered exactly once);
    ``mapping`` is the mapping path requested since the previous snapshot (latest wins), or None.
    """

    params: dict[str, float] = field(default_factory=dict)
    triggers: list[str] = field(default_factory=list)
    mapping: str | None = None


@dataclass(frozen=True)
class ParamDecl:
    """A declared parameter: default, range and smoothing time constant (None: the default)."""

    default: float
    lo: float
    hi: float
    smooth: float | None = None


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME_LEN and name.isprintable()


def _finite(value: object) -> float | None:
    if not isinstance(value, Real):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


class Controls:
    """Thread-safe store of live parameters, pending triggers and a pending mapping reload.

    ``smoothing`` is the default time constant (seconds) of parameter smoothing; 0 turns it off.
    ``clock`` is the time base of smoothing (``time.monotonic``; a test may pass its own).
    Bad input is never raised to the writer (the OSC thread must not die): it is rejected, counted
    in :attr:`stats` and reported by a False return value.
    """

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.smoothing = max(0.0, float(smoothing))
        self._params: dict[str, Smoothed] = {}
        self._declared: dict[str, ParamDecl] = {}
        self._declared_triggers: dict[str, None] = {}
        self._state: dict[str, float | str] = {}
        self._triggers: deque[str] = deque(maxlen=MAX_PENDING_TRIGGERS)
        self._mapping: str | None = None
        self._tempo: deque[tuple[str, float | None, float]] = deque(maxlen=MAX_PENDING_TRIGGERS)
        self._stats: dict[str, int] = {k: 0 for k in STAT_NAMES}
        self._version = 0  # bumped whenever an address is added (see :attr:`version`)

    # -- the address space --------------------------------------------------------------------

    def declare_param(self, name: str, default: float, lo: float = 0.0, hi: float = 1.0,
                      smooth: float | None = None) -> bool:
        """Make parameter ``name`` part of the address space, with its default and range.

        A parameter that has no value yet takes ``default``; one that has keeps its value.
        Declaring again updates the default, range and smoothing. ``smooth`` is this parameter's
        time constant in seconds (0: off; None: the controls' default). True if accepted.
        """
        default, lo, hi = _finite(default), _finite(lo), _finite(hi)
        tau = None if smooth is None else _finite(smooth)
        if not _valid_name(name) or None in (default, lo, hi) or (smooth is not None and tau is None):
            return False
        decl = ParamDecl(default, min(lo, hi), max(lo, hi), None if tau is None else max(0.0, tau))
        with self._lock:
            if name not in self._params and len(self._params) >= MAX_PARAMS:
                return False
            self._declared[name] = decl
            entry = self._params.get(name)
            if entry is None:
                self._params[name] = Smoothed(default, default, self._clock(), self._tau(name))
                self._version += 1
            else:
                entry.tau = self._tau(name)
            return True

    def declare_trigger(self, name: str) -> bool:
        """Make trigger ``name`` part of the address space (so patterns and OSCQuery see it)."""
        with self._lock:
            if not _valid_name(name) or (name not in self._declared_triggers
                                         and len(self._declared_triggers) >= MAX_PARAMS):
                return False
            if name not in self._declared_triggers:
                self._version += 1
            self._declared_triggers[name] = None
            return True

    def set_state(self, values: Mapping[str, object]) -> None:
        """Publish read-only state (``/lj/state/<key>``), e.g. ``{"mapping": "ambient", "fps": 60.0}``.

        Numbers are stored as floats, anything else as text (at most 256 characters); keys that
        are not valid names, and new keys beyond :data:`MAX_STATE`, are ignored.
        """
        with self._lock:
            for key, value in values.items():
                if not _valid_name(key) or (key not in self._state and len(self._state) >= MAX_STATE):
                    continue
                if key not in self._state:
                    self._version += 1
                number = _finite(value) if not isinstance(value, bool) else float(value)
                self._state[key] = number if number is not None else str(value)[:MAX_STATE_TEXT]

    def _tau(self, name: str) -> float:
        decl = self._declared.get(name)
        return self.smoothing if decl is None or decl.smooth is None else decl.smooth

    def param_names(self) -> list[str]:
        """Every parameter that is declared or has been set, in the order first seen."""
        with self._lock:
            return list(self._params)

    def trigger_names(self) -> list[str]:
        """Every declared trigger."""
        with self._lock:
            return list(self._declared_triggers)

    @property
    def version(self) -> int:
        """A number that changes whenever an address is added to the space (for caches)."""
        return self._version

    def addresses(self) -> list[str]:
        """Every address of the space: fixed ones, params, declared triggers, state."""
        return [info.address for info in self.describe()]

    def describe(self) -> list[AddressInfo]:
        """The whole address space with current values (params: the value last set, unsmoothed)."""
        with self._lock:
            params = [(n, e.target, self._declared.get(n)) for n, e in self._params.items()]
            triggers = list(self._declared_triggers)
            state = list(self._state.items())
        out = list(FIXED)
        for name, value, decl in params:
            out.append(AddressInfo(PARAM_PREFIX + name, "f", READ_WRITE, "live parameter",
                                   value, (decl.lo, decl.hi) if decl else None))
        for name in triggers:
            out.append(AddressInfo(TRIGGER_PREFIX + name, "N", WRITE, "one-shot trigger"))
        for key, value in state:
            out.append(AddressInfo(STATE_PREFIX + key, "s" if isinstance(value, str) else "f", READ,
                                   "show state", value))
        return out

    def value(self, address: str) -> float | str | None:
        """The current value at ``address`` (a param's value last set, or a state value), else None."""
        with self._lock:
            if address.startswith(PARAM_PREFIX):
                entry = self._params.get(address[len(PARAM_PREFIX):])
                return None if entry is None else entry.target
            if address.startswith(STATE_PREFIX):
                return self._state.get(address[len(STATE_PREFIX):])
        return None

    # -- writers ------------------------------------------------------------------------------

    def set_param(self, name: str, value: float, smooth: bool = True) -> bool:
        """Set parameter ``name`` to ``value``; True if accepted.

        The value is approached smoothly (time constant of the parameter) unless ``smooth`` is
        False or this is the first value of an undeclared parameter. Accepts real numbers (bools
        become 1.0/0.0) that are finite as floats. Anything else (NaN, inf, strings, None, a bad
        name, a new name beyond :data:`MAX_PARAMS`) is rejected and counted in
        ``stats["bad_values"]``.
        """
        number = _finite(value) if _valid_name(name) else None
        with self._lock:
            entry = self._params.get(name) if number is not None else None
            if number is None or (entry is None and len(self._params) >= MAX_PARAMS):
                self._stats["bad_values"] += 1
                return False
            now = self._clock()
            if entry is None:
                self._params[name] = Smoothed(number, number, now, self._tau(name))
                self._version += 1
            elif smooth:
                entry.retarget(number, now)
            else:
                entry.jump(number, now)
            return True

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

    def request_tempo(self, command: str, value: float | None = None) -> bool:
        """Queue a tempo command (``tap``, ``set``, ``reset``, ``lock``, ``link``) for the frame
        loop, stamped with the time it arrived (``engine.audio.steer.apply_tempo_commands``)."""
        number = None if value is None else _finite(value)
        with self._lock:
            if not _valid_name(command) or (value is not None and number is None):
                self._stats["bad_values"] += 1
                return False
            self._tempo.append((command, number, time.monotonic()))
            return True

    def take_tempo(self) -> list[tuple[str, float | None, float]]:
        """The tempo commands queued since the last call, oldest first: (name, value, received)."""
        with self._lock:
            commands = list(self._tempo)
            self._tempo.clear()
        return commands

    def count(self, stat: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``stat`` (one of :data:`STAT_NAMES`, or a new one)."""
        with self._lock:
            self._stats[stat] = self._stats.get(stat, 0) + n

    # -- readers ------------------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> ControlSnapshot:
        """Params (smoothed, at ``now``: default the clock) and the drained triggers and mapping request.

        One short lock: a dict copy plus one exponential per parameter still moving.
        """
        with self._lock:
            if now is None:
                now = self._clock()
            params = {name: entry.value(now) for name, entry in self._params.items()}
            triggers = list(self._triggers)
            self._triggers.clear()
            mapping, self._mapping = self._mapping, None
        return ControlSnapshot(params=params, triggers=triggers, mapping=mapping)

    @property
    def stats(self) -> dict[str, int]:
        """A copy of the counters (a fresh dict each call, so it is safe to read anywhere)."""
        with self._lock:
            return dict(self._stats)
