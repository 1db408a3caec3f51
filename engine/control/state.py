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

from engine.control.direct import to_norm, to_real
from engine.control.learn import Bindings
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
    "refused_commands",  # commands a LAN peer may not send (docs/osc.md), or paths outside the show
    "over_budget",  # messages ignored because their datagram spent its work budget (osc.py)
    "dropped_params",  # undeclared parameter names pushed out by newer ones (MAX_UNDECLARED)
    "dropped_triggers",  # triggers pushed out of a full queue (the frame loop fell far behind)
    "scheduled",  # messages from bundles time-tagged in the future, applied at their time
    "dropped_scheduled",  # future messages refused because the schedule was full
    "replies",  # reply datagrams sent (/lj/get, /lj/list)
    "dropped_replies",  # replies not sent (reply budget spent, or a send error)
)

#: At most this many triggers wait between two snapshots; older ones are dropped first.
MAX_PENDING_TRIGGERS = 256
#: At most this many declared parameters (and, separately, declared triggers) are kept.
MAX_PARAMS = 1024
#: At most this many parameters that no mapping declared (set by name over OSC) are kept, apart
#: from the declared ones: when full, the one set least recently is forgotten, so a flood of
#: unknown names can neither fill the table for good nor push out a declared parameter.
MAX_UNDECLARED = 128
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
    ``direct`` holds the direct overrides in effect (``/lj/fx/...``, ``/lj/truncation``,
    ``/lj/noise``: address -> smoothed value in the target's real units; see
    :mod:`engine.control.direct`). ``commands`` are queued one-shot commands for the frame loop
    (e.g. ``("tempo", 128.0)`` from MIDI clock), oldest first.
    """

    params: dict[str, float] = field(default_factory=dict)
    triggers: list[str] = field(default_factory=list)
    mapping: str | None = None
    generator: str | None = None  # a generator spec requested since the previous snapshot
    direct: dict[str, float] = field(default_factory=dict)
    #: queued commands since the previous snapshot, oldest first: tuples whose first item names
    #: the command, e.g. ``("/lj/scene", 2)``, ``("/lj/record/start", "take1.mp4")`` or
    #: ``("tempo", 128.0)`` (MIDI clock)
    commands: list = field(default_factory=list)


@dataclass(frozen=True)
class DirectDecl:
    """A direct target: its real default and range (values arrive as 0..1) and a description."""

    default: float
    lo: float
    hi: float
    description: str = ""


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
        self._undeclared: dict[str, None] = {}  # names set but never declared, least recent first
        self._error_note: tuple[str, object] | None = None  # (refusal, "error" it overrides)
        self._declared_triggers: dict[str, None] = {}
        self._state: dict[str, float | str] = {}
        self._triggers: deque[str] = deque(maxlen=MAX_PENDING_TRIGGERS)
        self._mapping: str | None = None
        self._generator: str | None = None
        self._direct_decl: dict[str, DirectDecl] = {}
        self._direct: dict[str, Smoothed] = {}  # held overrides, normalised 0..1
        self._direct_now: dict[str, float] = {}  # values in effect last frame (real units)
        self._commands: deque = deque(maxlen=MAX_PENDING_TRIGGERS)
        self._tempo: deque[tuple[str, float | None, float]] = deque(maxlen=MAX_PENDING_TRIGGERS)
        self._stats: dict[str, int] = {k: 0 for k in STAT_NAMES}
        self._version = 0
        #: Learned/declared control bindings (OSC addresses and MIDI controls -> targets).
        self.bindings = Bindings(self)  # bumped whenever an address is added (see :attr:`version`)

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
            if name not in self._declared and len(self._declared) >= MAX_PARAMS:
                return False
            self._declared[name] = decl
            self._undeclared.pop(name, None)
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
                text = number if number is not None else str(value)[:MAX_STATE_TEXT]
                if key == "error" and self._error_note is not None:
                    if text == self._error_note[1]:
                        continue  # the show's error has not changed since the refusal: keep it
                    self._error_note = None
                self._state[key] = text

    def note_refused(self, address: str) -> None:
        """Show ``refused <address>`` as ``/lj/state/error`` (a remote request was refused).

        It stays until the show publishes an error other than the one it had at the refusal, so
        the once-a-second state update does not hide it. Nothing else about the request is shown.
        """
        text = f"refused {address[:200]}"
        with self._lock:
            if "error" not in self._state:
                self._version += 1
            previous = self._state.get("error", "")
            if self._error_note is not None:
                previous = self._error_note[1]
            self._error_note = (text, previous)
            self._state["error"] = text
            self._stats["refused_commands"] += 1

    def _tau(self, name: str) -> float:
        decl = self._declared.get(name)
        return self.smoothing if decl is None or decl.smooth is None else decl.smooth

    def param_range(self, name: str) -> tuple[float, float]:
        """The declared ``(min, max)`` of parameter ``name`` (0..1 when undeclared)."""
        with self._lock:
            decl = self._declared.get(name)
        return (decl.lo, decl.hi) if decl is not None else (0.0, 1.0)

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
            direct = [(a, d, self._direct_value(a, d)) for a, d in self._direct_decl.items()]
        out = list(FIXED)
        for address, decl, value in direct:
            out.append(AddressInfo(address, "f", READ_WRITE, decl.description, value, (0.0, 1.0),
                                   clip="both"))
        for name, value, decl in params:
            out.append(AddressInfo(PARAM_PREFIX + name, "f", READ_WRITE, "live parameter",
                                   value, (decl.lo, decl.hi) if decl else None,
                                   clip="both" if decl else None))
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
            decl = self._direct_decl.get(address)
            if decl is not None:
                return self._direct_value(address, decl)
        return None

    def _direct_value(self, address: str, decl: DirectDecl) -> float:
        """A direct target's value as 0..1: the held override's target, else the value in effect."""
        held = self._direct.get(address)
        if held is not None:
            return held.target
        return to_norm(self._direct_now.get(address, decl.default), decl.lo, decl.hi)

    # -- direct targets (see engine.control.direct) -----------------------------------------------

    def declare_direct(self, address: str, default: float, lo: float, hi: float,
                       description: str = "") -> bool:
        """Make ``address`` a direct target whose 0..1 values map onto ``lo..hi`` (real units)."""
        default, lo, hi = _finite(default), _finite(lo), _finite(hi)
        if None in (default, lo, hi) or not isinstance(address, str) or len(address) > 256:
            return False
        with self._lock:
            if address not in self._direct_decl:
                if len(self._direct_decl) >= MAX_PARAMS:
                    return False
                self._version += 1
            self._direct_decl[address] = DirectDecl(default, min(lo, hi), max(lo, hi), description)
            return True

    def retire_direct(self, addresses) -> None:
        """Remove direct targets that no longer exist (an effect left the chain)."""
        with self._lock:
            for address in addresses:
                if self._direct_decl.pop(address, None) is not None:
                    self._version += 1
                self._direct.pop(address, None)
                self._direct_now.pop(address, None)

    def direct_names(self) -> list[str]:
        """Every declared direct address."""
        with self._lock:
            return list(self._direct_decl)

    def set_direct(self, address: str, value: float, smooth: bool = True) -> bool:
        """Hold ``address`` at ``value`` (0..1, clamped) until released; True if accepted.

        The held value glides (the default smoothing time) from the value in effect when it was
        grabbed. Unknown addresses and non-finite values are rejected (``bad_values``).
        """
        number = _finite(value)
        with self._lock:
            decl = self._direct_decl.get(address)
            if number is None or decl is None:
                self._stats["bad_values"] += 1
                return False
            number = 0.0 if number < 0.0 else (1.0 if number > 1.0 else number)
            now = self._clock()
            entry = self._direct.get(address)
            if entry is None:
                start = to_norm(self._direct_now.get(address, decl.default), decl.lo, decl.hi)
                self._direct[address] = Smoothed(number, start if smooth else number, now,
                                                 self.smoothing)
            elif smooth:
                entry.retarget(number, now)
            else:
                entry.jump(number, now)
            return True

    def release_direct(self, addresses=None) -> int:
        """Give targets back to the mapping (all held ones when ``addresses`` is None); how many."""
        with self._lock:
            if addresses is None:
                n = len(self._direct)
                self._direct.clear()
                return n
            return sum(self._direct.pop(a, None) is not None for a in addresses)

    def held_direct(self) -> list[str]:
        """The direct addresses currently overridden."""
        with self._lock:
            return list(self._direct)

    def publish_direct(self, values: Mapping[str, float]) -> None:
        """The frame loop reports the values in effect (real units), for queries and glides."""
        with self._lock:
            self._direct_now.update(values)

    def in_effect(self) -> dict[str, float]:
        """The direct targets' values in effect last frame, in real units (a copy)."""
        with self._lock:
            return dict(self._direct_now)

    def queue(self, *cmd) -> None:
        """Queue a one-shot command for the frame loop, e.g. ``queue("tempo", 128.0)``."""
        with self._lock:
            self._commands.append(cmd)

    # -- writers ------------------------------------------------------------------------------

    def set_param(self, name: str, value: float, smooth: bool = True) -> bool:
        """Set parameter ``name`` to ``value``; True if accepted.

        The value is approached smoothly (time constant of the parameter) unless ``smooth`` is
        False or this is the first value of an undeclared parameter. Accepts real numbers (bools
        become 1.0/0.0) that are finite as floats. Anything else (NaN, inf, strings, None, a bad
        name) is rejected and counted in ``stats["bad_values"]``. An undeclared name is kept
        among at most :data:`MAX_UNDECLARED` others (the least recently set is forgotten first).
        """
        number = _finite(value) if _valid_name(name) else None
        with self._lock:
            entry = self._params.get(name) if number is not None else None
            if number is None:
                self._stats["bad_values"] += 1
                return False
            now = self._clock()
            if name in self._undeclared:  # most recently set goes last
                self._undeclared[name] = self._undeclared.pop(name)
            if entry is None:
                self._forget_undeclared(MAX_UNDECLARED - 1)
                self._undeclared[name] = None
                self._params[name] = Smoothed(number, number, now, self._tau(name))
                self._version += 1
            elif smooth:
                entry.retarget(number, now)
            else:
                entry.jump(number, now)
            return True

    def _forget_undeclared(self, keep: int) -> None:
        """Drop the least recently set undeclared parameters until at most ``keep`` are left."""
        while len(self._undeclared) > keep:
            old = next(iter(self._undeclared))
            del self._undeclared[old]
            self._params.pop(old, None)
            self._stats["dropped_params"] += 1
            self._version += 1

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

    def request_generator(self, spec: str) -> bool:
        """Ask the frame loop to load generator ``spec`` (stored only; the latest request wins)."""
        ok = isinstance(spec, str) and 0 < len(spec) <= MAX_PATH_LEN and "\0" not in spec
        with self._lock:
            if not ok:
                self._stats["bad_values"] += 1
                return False
            self._generator = spec
            return True

    def command(self, address: str, args: list) -> bool:
        """Queue a show command (``space.COMMANDS``: scenes, presets, cues, latents) for the
        frame loop; False if its arguments do not fit. A command
        without arguments, like a trigger, fires on a press (no argument or a non-zero one)."""
        from engine.control.space import COMMANDS

        types = COMMANDS.get(address, (None,))[0]
        arg: object = None
        ok = types is not None
        if ok and types == "":
            ok = not args or isinstance(args[0], (int, float))
            if ok and args and not args[0]:
                return True               # a button's release
        elif ok:
            ok = len(args) == 1
            a = args[0] if ok else None
            if isinstance(a, str) and len(a) <= MAX_NAME_LEN:
                arg = a
            elif "i" in types and isinstance(a, (int, float)) and not isinstance(a, bool) \
                    and math.isfinite(a) and float(a) == int(a):
                arg = int(a)
            else:
                ok = False
        if not ok:
            return False                  # the OSC server counts and logs it
        with self._lock:
            self._commands.append((address, arg))
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
            generator, self._generator = self._generator, None
            direct = {}
            for address, entry in self._direct.items():
                decl = self._direct_decl[address]
                direct[address] = to_real(entry.value(now), decl.lo, decl.hi)
            commands = list(self._commands)
            self._commands.clear()
        return ControlSnapshot(params=params, triggers=triggers, mapping=mapping,
                               generator=generator, direct=direct, commands=commands)

    def request_command(self, name: str, arg: str | None = None) -> bool:
        """Queue a command for the frame loop (e.g. ``/lj/record/start`` with a path); only
        stored, never executed here. Shares the queue of :meth:`command`; the oldest go first."""
        ok = isinstance(name, str) and (arg is None or (
            isinstance(arg, str) and len(arg) <= MAX_PATH_LEN and "\0" not in arg))
        with self._lock:
            if not ok:
                self._stats["bad_values"] += 1
                return False
            self._commands.append((name, arg))
            return True

    @property
    def stats(self) -> dict[str, int]:
        """A copy of the counters (a fresh dict each call, so it is safe to read anywhere)."""
        with self._lock:
            return dict(self._stats)
