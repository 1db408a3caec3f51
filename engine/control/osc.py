"""OSC in (:class:`OscServer` -> :class:`~engine.control.state.Controls`) and out (:class:`OscSender`).

Address space v1 (see ``docs/osc.md``)::

    in   /lj/param/<name>   f | i | d | h | T | F   set a live parameter (finite numbers only)
         /lj/trigger/<name> [value]                 fire a one-shot trigger (a 0/False value is ignored)
         /lj/mapping/load   s                       ask the show to load another mapping file
    out  /lj/feature/<name> f            one scalar feature
         /lj/feature/<name> f f f ...    one vector feature (e.g. chroma, 12 floats)
         /lj/time           f            the frame's time on the audio clock (seconds)

The server owns one UDP socket and one daemon thread. Every datagram is checked and parsed inside a
``try``; anything malformed is counted, logged (rate-limited, logger ``lj.osc``) and dropped, and
nothing ever escapes the thread. Nothing received is executed: values become floats, names and
paths plain strings.
"""

from __future__ import annotations

import errno
import logging
import math
import re
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping

import numpy as np
from pythonosc.osc_packet import OscPacket
from pythonosc.parsing import osc_types

from engine.control.state import Controls
from engine.errors import ControlError

log = logging.getLogger("lj.osc")

#: How long the receive thread waits in ``recvfrom`` before checking whether to stop (seconds).
POLL_INTERVAL = 0.05
#: Bundles nested deeper than this are treated as malformed.
MAX_BUNDLE_DEPTH = 8

_PARAM_PREFIX = "/lj/param/"
_TRIGGER_PREFIX = "/lj/trigger/"
_MAPPING_LOAD = "/lj/mapping/load"
# A name is one address segment: no '/', no OSC pattern characters, no spaces.
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

_BUNDLE_PREFIX = b"#bundle\x00"
_IMMEDIATELY = struct.pack(">Q", 1)
_INT = struct.Struct(">i")
_FLOAT = struct.Struct(">f")
# Argument sizes (bytes) of the fixed-size OSC types; strings and blobs are walked separately.
_FIXED_SIZES = {"i": 4, "f": 4, "r": 4, "m": 4, "c": 4, "d": 8, "h": 8, "t": 8,
                "T": 0, "F": 0, "N": 0, "I": 0, "[": 0, "]": 0}


class _RateLimitedLog:
    """Log a warning at most once per ``interval`` seconds, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0):
        self._log = logger
        self._interval = interval
        self._next = 0.0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += " (%d similar suppressed)"
            args = (*args, self._suppressed)
        self._log.warning(msg, *args)
        self._suppressed = 0
        self._next = now + self._interval


def _check_message(dgram: bytes) -> str | None:
    """Why ``dgram`` is not a well-formed OSC message, or None if it is.

    Stricter than python-osc, which pads truncated numbers with zeros and skips unknown type tags.
    """
    address, index = osc_types.get_string(dgram, 0)
    if not address.startswith("/"):
        return "address does not start with '/'"
    if index == len(dgram):
        return None  # no type tag string: a message without arguments
    tags, index = osc_types.get_string(dgram, index)
    if not tags.startswith(","):
        return "type tag string does not start with ','"
    for tag in tags[1:]:
        size = _FIXED_SIZES.get(tag)
        if size is not None:
            index += size
        elif tag == "s" or tag == "S":
            _, index = osc_types.get_string(dgram, index)
        elif tag == "b":
            _, index = osc_types.get_blob(dgram, index)
        else:
            return f"unknown type tag {tag!r}"
        if index > len(dgram):
            return "truncated arguments"
    if index != len(dgram):
        return "trailing bytes after the arguments"
    return None


def _check_packet(dgram: bytes, depth: int = 0) -> str | None:
    """Why ``dgram`` is not a well-formed OSC message or bundle, or None if it is."""
    if dgram.startswith(b"/"):
        return _check_message(dgram)
    if not dgram.startswith(_BUNDLE_PREFIX):
        return "neither an OSC message nor a bundle"
    if depth >= MAX_BUNDLE_DEPTH:
        return "bundles nested too deep"
    index = len(_BUNDLE_PREFIX) + 8  # the time tag
    if index > len(dgram):
        return "truncated bundle header"
    while index < len(dgram):
        if index + 4 > len(dgram):
            return "truncated bundle element size"
        (size,) = _INT.unpack_from(dgram, index)
        index += 4
        if size <= 0 or size % 4 or index + size > len(dgram):
            return "bad bundle element size"
        why = _check_packet(dgram[index:index + size], depth + 1)
        if why is not None:
            return why
        index += size
    return None


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


class OscServer:
    """Receive OSC on ``host:port`` (UDP) and write what arrives into ``controls``.

    ``port=0`` binds an ephemeral port (see :attr:`port`). ``allow`` is a list of sender IP
    addresses to accept (None accepts all); datagrams from others are counted as
    ``rejected_senders`` and dropped. Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(self, controls: Controls, host: str = "127.0.0.1", port: int = 9000,
                 allow: Iterable[str] | None = None):
        self.controls = controls
        self.host = host
        self._requested_port = int(port)
        self.allow = None if allow is None else frozenset(allow)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._warn = _RateLimitedLog(log)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket and start the receive thread. ControlError (one line) if it cannot bind."""
        if self._thread is not None:
            return
        self._sock = self._bind()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lj-osc-in", daemon=True)
        self._thread.start()
        log.info("OSC listening on %s", self.address)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (returns within about :data:`POLL_INTERVAL`) and close the socket."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

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

    def _bind(self) -> socket.socket:
        port = self._requested_port
        if not 0 <= port <= 65535:
            raise ControlError(f"OSC port {port} is out of range (0-65535); choose another with --osc-port")
        try:
            family = socket.getaddrinfo(self.host, port, type=socket.SOCK_DGRAM)[0][0]
        except (socket.gaierror, UnicodeError) as exc:
            raise ControlError(f"OSC host {self.host!r} cannot be resolved ({exc}); check --osc-host") from None
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
            try:
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
                self.handle_datagram(dgram, sender[0])
            except Exception:  # a bug in handling must not kill the thread
                self.controls.count("bad_packets")
                self._warn.warning("OSC packet from %s could not be handled", sender[0], exc_info=True)

    def handle_datagram(self, dgram: bytes, sender: str = "127.0.0.1") -> None:
        """Check, parse and apply one datagram (what the thread does; public for reuse)."""
        if self.allow is not None and sender not in self.allow:
            self.controls.count("rejected_senders")
            self._warn.warning("OSC packet from %s ignored (not in the allow list)", sender)
            return
        try:
            why = _check_packet(dgram)
            messages = OscPacket(dgram).messages if why is None else None
        except Exception as exc:  # python-osc raises ParseError, and UnicodeDecodeError on bad text
            why = f"{type(exc).__name__}: {exc}"
            messages = None
        if messages is None:
            self.controls.count("bad_packets")
            self._warn.warning("malformed OSC packet from %s ignored (%d bytes): %s", sender, len(dgram), why)
            return
        # Bundles arrive flattened; time tags are ignored (everything applies on arrival).
        for timed in messages:
            self._apply(timed.message.address, timed.message.params)

    def _apply(self, address: str, args: list) -> None:
        controls = self.controls
        controls.count("messages")
        if address.startswith(_PARAM_PREFIX):
            name = address[len(_PARAM_PREFIX):]
            if _NAME_RE.fullmatch(name):
                value = _param_value(args)
                if value is None:
                    controls.count("bad_values")
                    self._warn.warning("OSC %s ignored: needs one finite number, got %r", address, args[:4])
                else:
                    controls.set_param(name, value)
                return
        elif address.startswith(_TRIGGER_PREFIX):
            name = address[len(_TRIGGER_PREFIX):]
            if _NAME_RE.fullmatch(name):
                # A button sends 1 on press and 0 on release: only the press fires.
                if not args or (isinstance(args[0], (int, float)) and args[0]):
                    controls.trigger(name)
                elif not isinstance(args[0], (int, float)):
                    controls.count("bad_values")
                    self._warn.warning("OSC %s ignored: bad argument %r", address, args[:4])
                return
        elif address == _MAPPING_LOAD:
            if len(args) == 1 and isinstance(args[0], str):
                controls.request_mapping(args[0])
            else:
                controls.count("bad_values")
                self._warn.warning("OSC %s ignored: needs one string (a path), got %r", address, args[:4])
            return
        controls.count("unknown_addresses")
        self._warn.warning("OSC address %s is not in the /lj/ address space; ignored", address[:200])


class OscSender:
    """Stream features out as OSC: one bundle (one UDP datagram) per :meth:`send_features` call.

    The socket is non-blocking and send errors (no route, buffer full, no listener) are counted in
    :attr:`stats` (``send_errors``), never raised. Encoded headers are cached per feature name, so
    a frame costs a few struct packs and one ``sendto``.
    """

    def __init__(self, host: str, port: int):
        try:
            info = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError, ValueError, OverflowError) as exc:
            raise ControlError(f"OSC output {host}:{port} cannot be resolved ({exc}); check --osc-out") from None
        self.host = host
        self.port = int(port)
        self._target = info[4]
        self._sock = socket.socket(info[0], socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        # name -> element prefix (size + address + type tags) for a scalar; (name, n) for vectors.
        self._scalar_heads: dict[str, bytes | None] = {}
        self._vector_heads: dict[tuple[str, int], bytes | None] = {}
        self._time_head = self._head("/lj/time", 1)
        self.stats: dict[str, int] = {"sent": 0, "send_errors": 0, "skipped": 0}

    @staticmethod
    def _head(address: str, n_floats: int) -> bytes:
        body = osc_types.write_string(address) + osc_types.write_string("," + "f" * n_floats)
        return _INT.pack(len(body) + 4 * n_floats) + body

    def _scalar_head(self, name: str) -> bytes | None:
        head = self._scalar_heads.get(name, False)
        if head is False:
            head = self._head("/lj/feature/" + name, 1) if _NAME_RE.fullmatch(name) else None
            self._scalar_heads[name] = head
        return head

    def _vector_head(self, name: str, n: int) -> bytes | None:
        key = (name, n)
        head = self._vector_heads.get(key, False)
        if head is False:
            head = self._head("/lj/feature/" + name, n) if _NAME_RE.fullmatch(name) else None
            self._vector_heads[key] = head
        return head

    def encode(self, features: Mapping[str, object], t: float) -> bytes:
        """The bundle :meth:`send_features` would send (non-finite values are sent as 0.0)."""
        parts = [_BUNDLE_PREFIX, _IMMEDIATELY]
        skipped = 0
        for name, value in features.items():
            if isinstance(value, np.ndarray) and value.ndim > 0 or isinstance(value, (list, tuple)):
                try:
                    arr = np.asarray(value, dtype=">f4").ravel()
                except (TypeError, ValueError):
                    skipped += 1
                    continue
                head = self._vector_head(name, arr.size)
                if head is None:
                    skipped += 1
                    continue
                if not np.isfinite(arr).all():
                    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
                parts.append(head)
                parts.append(arr.tobytes())
            else:
                head = self._scalar_head(name)
                try:
                    x = float(value) if not isinstance(value, (str, bytes)) else None
                except (TypeError, ValueError):
                    x = None
                if x is None:
                    head = None
                if head is None:
                    skipped += 1
                    continue
                if not math.isfinite(x) or abs(x) > 3.4e38:
                    x = 0.0
                parts.append(head)
                parts.append(_FLOAT.pack(x))
        parts.append(self._time_head)
        t = float(t)
        parts.append(_FLOAT.pack(t if math.isfinite(t) and abs(t) < 3.4e38 else 0.0))
        if skipped:
            self.stats["skipped"] += skipped
        return b"".join(parts)

    def send_features(self, features: Mapping[str, object], t: float) -> bool:
        """Send ``features`` and ``/lj/time t`` as one bundle; True if the datagram left.

        Values that are neither numbers nor numeric arrays, and names that cannot be an OSC
        address segment, are skipped (counted in ``stats["skipped"]``).
        """
        try:
            self._sock.sendto(self.encode(features, t), self._target)
        except OSError:
            self.stats["send_errors"] += 1
            return False
        self.stats["sent"] += 1
        return True

    def close(self) -> None:
        """Close the socket; later sends are counted as errors."""
        self._sock.close()

    def __enter__(self) -> "OscSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
