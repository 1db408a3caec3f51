"""OSC in: :class:`OscServer` receives UDP and writes into :class:`~engine.control.state.Controls`.

Address space v1 (see ``docs/osc.md``)::

    in   /lj/param/<name>   f | i | d | h | T | F   set a live parameter (finite numbers only)
         /lj/trigger/<name> [value]                 fire a one-shot trigger (a 0/False value is ignored)
         /lj/mapping/load   s                       ask the show to load another mapping file
         /lj/generator      s                       ask the show to load another generator
         /lj/tempo/tap | reset [i]                  tap tempo / beat one now (0 = release: ignored)
         /lj/tempo/set f, /lj/tempo/lock i, /lj/tempo/link i   tempo, hold, Ableton Link
         /lj/get            s                       reply "<address> <value>" for every match
         /lj/list                                   reply "/lj/list s s ..." (the address space)
         /lj/fx/<effect>/<input>, /lj/truncation, /lj/noise   f (0-1)   direct override
         /lj/release        [s]                     give direct targets back to the mapping

Addresses may be OSC 1.0 patterns (``/lj/param/*``, ``/lj/param/{speed,glow}``), matched against
the known address space (:meth:`Controls.addresses`). Bundles time-tagged in the future are held in
a bounded schedule and applied at their time by the server thread. Replies go back to the sender's
address and port from the server's own socket, within a byte budget per second.

The server owns one UDP socket and one daemon thread. Every datagram is checked and parsed inside a
``try``; anything malformed is counted, logged (rate-limited, logger ``lj.osc``) and dropped, and
nothing ever escapes the thread. Nothing received is executed: values become floats, names and
paths plain strings.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import math
import socket
import threading
import time
from collections.abc import Iterable

from engine.control.access import LAN_ADMIN_ONLY, AllowList, ShowFolders, is_loopback
from engine.control.pattern import Budget, PatternError, TooCostly, is_pattern, match
from engine.control.sender import OscSender
from engine.control.space import (COMMANDS, GENERATOR_LOAD, GET, LIST, MAPPING_LOAD, NAME_RE, PARAM_PREFIX,
                                  READ, RELEASE, TEMPO_PREFIX, TRIGGER_PREFIX, WRITE)
from engine.control.learn import LEARN, LEARN_CANCEL, LEARN_FORGET, LEARN_PREFIX, osc_value
from engine.control.state import Controls
from engine.control.wire import check_packet, encode_message, flatten, pack_datagrams, parse_simple
from engine.errors import ControlError

__all__ = ["OscServer", "OscSender"]

RECORD_START = "/lj/record/start"   # [s path]: record the output (engine/render/recorder.py)
RECORD_STOP = "/lj/record/stop"

log = logging.getLogger("lj.osc")

#: How long the receive thread waits in ``recvfrom`` before checking whether to stop (seconds).
POLL_INTERVAL = 0.05
#: At most this many messages wait in the schedule (future time tags). When it is full, a message
#: due earlier than the latest one waiting takes that one's place; a later one is dropped.
MAX_SCHEDULED = 1024
#: Time tags further ahead than this (seconds) are refused: far-future bundles must not crowd
#: out near ones.
MAX_SCHEDULE_AHEAD = 60.0
#: Elementary pattern-matching steps one datagram (or one batch of due messages) may cost in all;
#: beyond it the remaining pattern messages are ignored (see engine.control.pattern.Budget).
MAX_DATAGRAM_MATCH_STEPS = 400_000
#: What applying a pattern to one target, or answering one address, costs from that budget: so a
#: datagram of 2,000 ``/lj/param/*`` against 1,000 parameters cannot keep the thread for seconds.
TARGET_STEPS = 50
#: Replies may use at most this many bytes per second (a burst of as much is allowed).
REPLY_BYTES_PER_S = 256 * 1024
#: Pattern match results kept (per version of the address space).
MAX_CACHED_PATTERNS = 256
#: Learn requests accepted per second (each learned binding rewrites the bindings file).
LEARN_PER_S = 5.0
#: Addresses per ``/lj/list`` reply message.
LIST_CHUNK = 64


class _RateLimitedLog:
    """Log a warning at most once per ``interval`` seconds, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0):
        self._log = logger
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def warning(self, msg: str, *args: object, **kw: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += " (%d similar suppressed)"
            args = (*args, self._suppressed)
        self._log.warning(msg, *args, **kw)
        self._suppressed = 0
        self._next = now + self._interval


def _param_value(args: list) -> float | None:
    """The one numeric argument of a ``/lj/param`` message as a float, or None if unusable."""
    if len(args) != 1:
        return None
    value = args[0]
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


#: Commands a pattern never reaches (``/lj/*`` must not fire queries or learn mode).
_NOT_BY_PATTERN = frozenset((GET, LIST, RELEASE, LEARN, LEARN_CANCEL, LEARN_FORGET))


def _press(args: list, act) -> str:
    """Run ``act`` for a button press: no argument or a non-zero number (a release, 0, is ignored)."""
    if not args or (isinstance(args[0], (int, float)) and args[0]):
        result = act()
        return result if isinstance(result, str) else "ok"
    return "ok" if isinstance(args[0], (int, float)) else "bad"


def _one_string(args: list, take) -> str:
    """Hand the one string argument of a command to ``take``: "ok", or "bad" for other arguments."""
    if len(args) == 1 and isinstance(args[0], str):
        take(args[0])  # a value it refuses is counted there
        return "ok"
    return "bad"


class _ReplyBudget:
    """A token bucket of bytes: replies stop when a flood of queries would amplify traffic."""

    def __init__(self, rate: float):
        self.rate = rate
        self._tokens = rate
        self._last = time.monotonic()

    def take(self, n: int) -> bool:
        now = time.monotonic()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if n > self._tokens:
            return False
        self._tokens -= n
        return True


class OscServer:
    """Receive OSC on ``host:port`` (UDP) and write what arrives into ``controls``.

    ``port=0`` binds an ephemeral port (see :attr:`port`). ``allow`` is a list of sender IP
    addresses and networks to accept (None accepts all; loopback is always accepted; a bad entry
    is a ControlError here); datagrams from others are counted as ``rejected_senders`` and dropped.

    Senders on this machine (loopback) may send everything. Other senders (LAN peers) may play
    the show but not send :data:`~engine.control.access.LAN_ADMIN_ONLY` commands (load files by
    path, swap the model, record) unless ``lan_admin`` is True. Paths in remote commands must lie
    inside ``folders`` (default: the shipped mappings folder) whoever sends them. Refusals are
    counted (``refused_commands``), logged (rate-limited) and never applied.
    Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(self, controls: Controls, host: str = "127.0.0.1", port: int = 9000,
                 allow: Iterable[str] | AllowList | None = None, lan_admin: bool = False,
                 folders: ShowFolders | None = None):
        from engine.paths import MAPPING_DIR

        self.controls = controls
        self.host = host
        self._requested_port = int(port)
        self.allow = allow if isinstance(allow, AllowList) else AllowList(allow)
        self.lan_admin = bool(lan_admin)
        #: Where paths in remote commands may point (live.py sets the show's folders).
        self.folders = folders if folders is not None else ShowFolders([MAPPING_DIR])
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._warn = _RateLimitedLog(log)
        # (due on the monotonic clock, sequence, address, args, reply address, sender ip, admin)
        self._schedule: list[tuple[float, int, str, list, tuple | None, str, bool]] = []
        self._schedule_lock = threading.Lock()
        self._seq = itertools.count()
        self._budget = _ReplyBudget(REPLY_BYTES_PER_S)
        self._learn_rate = _ReplyBudget(LEARN_PER_S)  # a token bucket of learn requests
        # Pattern matches, valid for one version of the address space (server thread only).
        self._match_version = -1
        self._matches: dict[str, list[str]] = {}
        self._writable: list[str] = []
        self._readable: tuple[int, list[str]] = (-1, [])
        self._direct_version = -1
        self._direct_cache: frozenset = frozenset()
        self._command_table = self._commands()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket and start the receive thread. ControlError (one line) if it cannot bind."""
        if self._thread is not None:
            return
        self._sock = self._bind()
        self.controls.bindings.dispatch = self._dispatch_bound  # bound values reach every address
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lj-osc-in", daemon=True)
        self._thread.start()
        log.info("OSC listening on %s", self.address)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (returns within about :data:`POLL_INTERVAL`) and close the socket.

        Messages still waiting in the schedule are dropped.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        with self._schedule_lock:
            self._schedule.clear()

    def __enter__(self) -> "OscServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the receive thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def port(self) -> int:
        """The bound port once started (so ``port=0`` works), else the requested one."""
        if self._sock is not None:
            return self._sock.getsockname()[1]
        return self._requested_port

    @property
    def address(self) -> str:
        """``"host:port"`` for logs and messages (the bound port once started)."""
        return f"{self.host}:{self.port}"

    @property
    def stats(self) -> dict[str, int]:
        """The counters of :attr:`controls` (a copy; see :attr:`Controls.stats`)."""
        return self.controls.stats

    @property
    def pending(self) -> int:
        """How many messages wait in the schedule for their time tag."""
        with self._schedule_lock:
            return len(self._schedule)

    def _bind(self) -> socket.socket:
        port = self._requested_port
        if not 0 <= port <= 65535:
            raise ControlError(f"OSC port {port} is out of range (0-65535); choose another with --osc-port")
        try:
            family = socket.getaddrinfo(self.host, port, type=socket.SOCK_DGRAM)[0][0]
        except (socket.gaierror, UnicodeError) as exc:
            raise ControlError(f"OSC host {self.host!r} cannot be resolved ({exc}); check --osc-listen") from None
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EPERM):
                raise ControlError(
                    f"OSC port {port} on {self.host} is busy (is another lj or app using it?); "
                    "choose another with --osc-port"
                ) from None
            reason = exc.strerror or str(exc)
            raise ControlError(f"OSC cannot listen on {self.host}:{port} ({reason})") from None
        sock.settimeout(POLL_INTERVAL)
        return sock

    # -- receive thread -----------------------------------------------------------------------

    def _run(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            self.run_due()
            try:
                sock.settimeout(self._wait())
                dgram, sender = sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError as exc:  # closed under us, or an ICMP error surfacing (Windows)
                if self._stop.is_set():
                    break
                self._warn.warning("OSC receive error: %s", exc)
                self._stop.wait(POLL_INTERVAL)
                continue
            try:
                self.handle_datagram(dgram, sender)
            except Exception:  # a bug in handling must not kill the thread
                self.controls.count("bad_packets")
                self._warn.warning("OSC packet from %s could not be handled", sender[0], exc_info=True)

    def _wait(self) -> float:
        """How long ``recvfrom`` may wait: until the next scheduled message, at most the poll interval."""
        with self._schedule_lock:
            due = self._schedule[0][0] if self._schedule else None
        if due is None:
            return POLL_INTERVAL
        return min(POLL_INTERVAL, max(1e-4, due - time.monotonic()))

    def run_due(self, now: float | None = None) -> int:
        """Apply every scheduled message whose time has come; how many were applied."""
        now = time.monotonic() if now is None else now
        due = []
        with self._schedule_lock:
            while self._schedule and self._schedule[0][0] <= now:
                due.append(heapq.heappop(self._schedule))
        budget = Budget(MAX_DATAGRAM_MATCH_STEPS)  # one batch costs at most one datagram's work
        for _, _, address, args, reply_to, ip, admin in due:
            try:
                self._apply(address, args, reply_to, ip, admin, budget)
            except Exception:
                self._warn.warning("scheduled OSC %s could not be handled", address[:200], exc_info=True)
        return len(due)

    def handle_datagram(self, dgram: bytes, sender: str | tuple = "127.0.0.1") -> None:
        """Check, parse and apply (or schedule) one datagram (what the thread does; public for reuse).

        ``sender`` is the sender's ``(ip, port)`` (replies go there) or just its IP (no replies).
        """
        ip, reply_to = (sender, None) if isinstance(sender, str) else (sender[0], tuple(sender[:2]))
        if not self.allow.permits(ip):
            self.controls.count("rejected_senders")
            self._warn.warning("OSC packet from %s ignored (not in the allow list)", ip)
            return
        admin = self.lan_admin or is_loopback(ip)
        budget = Budget(MAX_DATAGRAM_MATCH_STEPS)
        simple = parse_simple(dgram)
        if simple is not None:  # one fader value: no python-osc round trip
            self._apply(simple[0], simple[1], reply_to, ip, admin, budget)
            return
        try:
            why = check_packet(dgram)
            messages = flatten(dgram) if why is None else None
        except Exception as exc:  # python-osc raises ParseError, and UnicodeDecodeError on bad text
            why = f"{type(exc).__name__}: {exc}"
            messages = None
        if messages is None:
            self.controls.count("bad_packets")
            self._warn.warning("malformed OSC packet from %s ignored (%d bytes): %s", ip, len(dgram), why)
            return
        wall, mono = time.time(), time.monotonic()
        for when, message in messages:
            if when is None or when <= wall:
                self._apply(message.address, message.params, reply_to, ip, admin, budget)
            elif when - wall > MAX_SCHEDULE_AHEAD:
                self.controls.count("dropped_scheduled")
                self._warn.warning("OSC message %s time-tagged %.0f s ahead dropped (at most %.0f s)",
                                   message.address[:200], min(when - wall, 1e12), MAX_SCHEDULE_AHEAD)
            else:
                self._schedule_message((mono + (when - wall), next(self._seq), message.address,
                                        message.params, reply_to, ip, admin))

    def _schedule_message(self, entry: tuple) -> None:
        """Hold ``entry`` (due first) for its time; when full, the latest-due entry gives way to
        an earlier newcomer, so near bundles are never crowded out by later ones."""
        dropped = None
        with self._schedule_lock:
            if len(self._schedule) < MAX_SCHEDULED:
                heapq.heappush(self._schedule, entry)
            else:
                latest = max(range(len(self._schedule)), key=lambda i: self._schedule[i][:2])
                if self._schedule[latest][:2] > entry[:2]:
                    dropped = self._schedule[latest]
                    self._schedule[latest] = entry
                    heapq.heapify(self._schedule)
                else:
                    dropped = entry
        if dropped is not entry:
            self.controls.count("scheduled")
        if dropped is not None:
            self.controls.count("dropped_scheduled")
            self._warn.warning("OSC schedule full (%d waiting): future message %s dropped",
                               MAX_SCHEDULED, dropped[2][:200])

    # -- applying messages --------------------------------------------------------------------

    def _commands(self) -> dict:
        """Exact command addresses -> handler(args) returning "ok" / "bad" / "unknown".

        One line per address: other stages add theirs here (queue the work in ``Controls``,
        never do it on this thread).
        """
        c = self.controls
        b = c.bindings
        return {
            MAPPING_LOAD: lambda a: self._path_request(MAPPING_LOAD, a, self.folders.mapping,
                                                       c.request_mapping),
            LEARN_CANCEL: lambda a: _press(a, b.cancel),
            LEARN_FORGET: lambda a: _one_string(a, b.forget),
            GENERATOR_LOAD: lambda a: self._path_request(GENERATOR_LOAD, a, self.folders.generator,
                                                         c.request_generator),
            RECORD_START: self._record_start,
            RECORD_STOP: lambda a: _press(a, lambda: c.request_command(RECORD_STOP) and "ok" or "bad"),
            # scenes, presets, cues, latents (engine/show.py): checked and queued for the frame loop
            **{address: (lambda a, address=address: "ok" if c.command(address, a) else "bad")
               for address in COMMANDS},
            # tempo steering (engine/audio/steer.py): queued with the time it arrived
            **{TEMPO_PREFIX + name: (lambda a, name=name: self._tempo(name, a))
               for name in ("tap", "reset", "set", "lock", "link")},
        }

    def _path_request(self, address: str, args: list, check, take) -> str:
        """A command naming a file: checked against the show's folders before it is queued, so
        the session never sees a path outside them; outside, "outside" (reported as "refused")."""
        if len(args) != 1 or not isinstance(args[0], str):
            return "bad"
        checked = check(args[0])
        if checked is None:
            self.controls.note_refused(address)
            return "outside"
        take(checked)  # a value it refuses is counted there
        return "ok"

    def _tempo(self, name: str, args: list) -> str:
        if name in ("tap", "reset"):
            if args and isinstance(args[0], (int, float)) and not args[0]:
                return "ok"  # a button's release
            return "ok" if self.controls.request_tempo(name) else "bad"
        value = _param_value(args)
        return "ok" if value is not None and self.controls.request_tempo(name, value) else "bad"

    def _record_start(self, args: list) -> str:
        """``/lj/record/start [path]``: a path, or a button press (no argument or a non-zero number)."""
        if len(args) == 1 and isinstance(args[0], str):
            return "ok" if self.controls.request_command(RECORD_START, args[0]) else "bad"
        return _press(args, lambda: self.controls.request_command(RECORD_START) and "ok" or "bad")

    def _apply(self, address: str, args: list, reply_to: tuple | None, ip: str = "127.0.0.1",
               admin: bool = True, budget: Budget | None = None) -> None:
        """Apply one message from ``ip``; ``admin``: it may send LAN_ADMIN_ONLY commands;
        ``budget``: the pattern-matching work its datagram may still spend."""
        controls = self.controls
        controls.count("messages")
        budget = budget if budget is not None else Budget(MAX_DATAGRAM_MATCH_STEPS)
        if address == GET:
            self._answer_get(args, reply_to, budget)
            return
        if address == LIST:
            if self._charge(budget, len(self._readable[1]) or 64, address):
                self._answer_list(reply_to)
            return
        if not address.startswith("/lj/"):
            results = [self._apply_bound(address, args)]
        elif not is_pattern(address):
            results = [self._apply_one(address, args, admin, budget)]
        else:
            targets = self._match_writable(address, budget)
            if not self._charge(budget, len(targets), address):
                return
            results = [self._apply_one(a, args, admin) for a in targets]
        refused = [r for r in results if r in ("refused", "outside")]
        if refused:  # never applied; "outside" ones were counted by Controls.note_refused
            controls.count("refused_commands", refused.count("refused"))
            self._warn.warning("OSC %s from %s refused: %s", address[:200], ip,
                               "outside the show's folders" if "outside" in refused else
                               "a LAN peer needs the operator's --osc-lan-admin for this")
        results = [r for r in results if r not in refused]
        if len(results) == 1:  # a literal address, or a pattern that reached one target
            result = results[0]
        else:  # a pattern: "ok" when it reached anything (refused targets were reported above)
            result = "bad" if "bad" in results else "ok" if results or refused else "unknown"
        if result == "bad":
            controls.count("bad_values")
            self._warn.warning("OSC %s ignored: unusable arguments %r", address[:200], args[:4])
        elif result == "unknown":
            controls.count("unknown_addresses")
            self._warn.warning("OSC address %s is not in the /lj/ address space; ignored", address[:200])

    def _charge(self, budget: Budget, targets: int, address: str) -> bool:
        """Take ``targets`` x TARGET_STEPS from ``budget``; False (counted, logged) if spent."""
        try:
            budget.spend(targets * TARGET_STEPS)
            return True
        except TooCostly:
            self.controls.count("over_budget")
            self._warn.warning("OSC %s ignored: its datagram has spent its work budget", address[:200])
            return False

    def _match_writable(self, pattern: str, budget: Budget) -> list[str]:
        """The addresses a pattern sets (params, declared triggers, the mapping load), cached.

        The cache holds at most :data:`MAX_CACHED_PATTERNS` patterns and is emptied whenever the
        address space changes (:attr:`Controls.version`). A pattern that is malformed or too
        costly for ``budget`` matches nothing (and is remembered as such).
        """
        version = self.controls.version
        if version != self._match_version:
            self._writable = [i.address for i in self.controls.describe()
                              if i.access & WRITE and i.address not in _NOT_BY_PATTERN]
            self._matches.clear()
            self._match_version = version
        elif len(self._matches) >= MAX_CACHED_PATTERNS:
            self._matches.clear()
        targets = self._matches.get(pattern)
        if targets is None:
            full = budget.left >= MAX_DATAGRAM_MATCH_STEPS
            try:
                targets = match(pattern, self._writable, budget)
            except PatternError as exc:
                self._warn.warning("OSC pattern %s ignored (%s)", pattern[:200], exc)
                if isinstance(exc, TooCostly) and not full:
                    return []  # this datagram's budget ran out: the pattern may be fine alone
                targets = []
            self._matches[pattern] = targets
        return targets

    def _apply_one(self, address: str, args: list, admin: bool = True,
                   budget: Budget | None = None) -> str:
        """Apply one literal address: "ok", "bad" (unusable arguments), "unknown", "refused"
        (a LAN peer without ``admin``) or "outside" (a path outside the show's folders)."""
        controls = self.controls
        if address in LAN_ADMIN_ONLY and not admin:
            return "refused"
        if address.startswith(PARAM_PREFIX):
            name = address[len(PARAM_PREFIX):]
            if NAME_RE.fullmatch(name):
                value = _param_value(args)
                if value is None:
                    return "bad"
                controls.set_param(name, value)
                return "ok"
        elif address.startswith(TRIGGER_PREFIX):
            name = address[len(TRIGGER_PREFIX):]
            if NAME_RE.fullmatch(name):
                # A button sends 1 on press and 0 on release: only the press fires.
                if not args or (isinstance(args[0], (int, float)) and args[0]):
                    controls.trigger(name)
                elif not isinstance(args[0], (int, float)):
                    return "bad"
                return "ok"
        else:
            handler = self._command_table.get(address)
            if handler is not None:
                return handler(args)
            if address == RELEASE:
                return self._release(args, budget or Budget(MAX_DATAGRAM_MATCH_STEPS))
            if address == LEARN:
                return self._learn(args[0], admin) if len(args) == 1 and isinstance(args[0], str) \
                    else "bad"
            if address.startswith(LEARN_PREFIX):
                return _press(args, lambda: self._learn("/lj/" + address[len(LEARN_PREFIX):], admin))
            if address in self._direct_set:
                value = _param_value(args)
                if value is None:
                    return "bad"
                controls.set_direct(address, value)
                return "ok"
        return "unknown"

    @property
    def _direct_set(self) -> frozenset:
        """The declared direct addresses (cached per version of the address space)."""
        version = self.controls.version
        if self._direct_version != version:
            self._direct_cache = frozenset(self.controls.direct_names())
            self._direct_version = version
        return self._direct_cache

    def _apply_bound(self, address: str, args: list) -> str:
        """A message from outside the /lj/ space: learned, applied through a binding, or unknown."""
        bindings = self.controls.bindings
        if bindings.learning is None and address not in bindings.table:
            return "unknown"
        value = osc_value(args)
        if value is None:
            return "bad"
        return "ok" if bindings.feed(address, value) else "unknown"

    def _learn(self, target: str, admin: bool = True) -> str:
        """Learn mode for ``target`` (an address of the space, or a name like param.speed).

        Only a sender that may send a LAN_ADMIN_ONLY command may bind a control to it."""
        from engine.control.learn import target_address

        address = target_address(target)
        writable = {i.address for i in self.controls.describe() if i.access & WRITE}
        if address is None or address not in writable or address in _NOT_BY_PATTERN \
                or address == MAPPING_LOAD:
            return "bad"
        if address in LAN_ADMIN_ONLY and not admin:
            return "refused"
        if not self._learn_rate.take(1):
            self.controls.count("over_budget")  # a flood of learn requests: each would save a file
            return "ok"
        self.controls.bindings.learn(address)
        return "ok"

    def _dispatch_bound(self, address: str, args: list) -> None:
        """How a bound value reaches its target: as if the message had arrived at that address."""
        if self._apply_one(address, args) != "ok":
            self.controls.count("bad_values")

    def _release(self, args: list, budget: Budget) -> str:
        if not args or isinstance(args[0], (int, float)):  # everything (a button: on press)
            return _press(args, self.controls.release_direct)
        if len(args) != 1 or not isinstance(args[0], str):
            return "bad"
        try:
            targets = match(args[0], self.controls.held_direct(), budget)
        except PatternError:
            return "bad"
        self.controls.release_direct(targets)
        return "ok"

    # -- queries ------------------------------------------------------------------------------

    def _answer_get(self, args: list, reply_to: tuple | None, budget: Budget) -> None:
        if len(args) != 1 or not isinstance(args[0], str):
            self.controls.count("bad_values")
            self._warn.warning("OSC %s ignored: needs one string (an address or pattern), got %r", GET, args[:4])
            return
        version = self.controls.version
        if self._readable[0] != version:  # the readable addresses change only with the space
            self._readable = (version, [i.address for i in self.controls.describe()
                                        if i.access & READ])
        try:
            targets = match(args[0], self._readable[1], budget)
        except PatternError:
            targets = []
        if not self._charge(budget, len(targets), GET):
            return
        replies = []
        for address in targets:
            value = self.controls.value(address)
            if value is not None:
                replies.append(encode_message(address, [value]))
        if not replies:
            self.controls.count("unknown_addresses")
            self._warn.warning("OSC %s %s matches no readable address", GET, args[0][:200])
            return
        self._reply(replies, reply_to)

    def _answer_list(self, reply_to: tuple | None) -> None:
        addresses = self.controls.addresses()
        chunks = [addresses[i:i + LIST_CHUNK] for i in range(0, len(addresses), LIST_CHUNK)]
        self._reply([encode_message(LIST, chunk) for chunk in chunks], reply_to)

    def _reply(self, messages: list[bytes], reply_to: tuple | None) -> None:
        """Send ``messages`` (encoded) back to ``reply_to`` from the server's socket."""
        sock = self._sock
        for dgram in pack_datagrams(messages):
            if sock is None or reply_to is None or not self._budget.take(len(dgram)):
                self.controls.count("dropped_replies")
                continue
            try:
                sock.sendto(dgram, reply_to)
            except OSError:
                self.controls.count("dropped_replies")
            else:
                self.controls.count("replies")
