"""OSC out (:class:`OscSender`): the feature stream, beats and tempo, and show state, to N targets.

Per frame, one bundle (one UDP datagram) per target holds every feature, ``/lj/time``, ``/lj/tempo``
when a ``bpm`` feature exists and ``/lj/beat`` when a beat fired since the previous frame.
:meth:`OscSender.send_state` sends ``/lj/state/<key>`` values (mapping name, fps, ...) as another
bundle. The socket is non-blocking; send errors are counted, never raised.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterable, Mapping

import numpy as np
from pythonosc.parsing import osc_types

from engine.control.space import NAME_RE, STATE_PREFIX
from engine.control.wire import BUNDLE_PREFIX, FLOAT, IMMEDIATELY, INT, encode_bundle, encode_message
from engine.errors import ControlError

#: At most this many output targets.
MAX_TARGETS = 16


def _resolve(host: str, port: int) -> tuple[int, tuple]:
    try:
        info = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError, ValueError, OverflowError) as exc:
        raise ControlError(f"OSC output {host}:{port} cannot be resolved ({exc}); check --osc-out") from None
    return info[0], info[4]


class OscSender:
    """Send OSC to one or more ``host:port`` targets over UDP.

    ``OscSender(host, port)`` sends to one target; ``OscSender(targets=[(host, port), ...])`` to
    several (each gets the same datagrams). Encoded headers are cached per feature name, so a
    frame costs a few struct packs and one ``sendto`` per target.

    ``stats``: ``sent`` (datagrams that left), ``send_errors`` (per target and datagram),
    ``skipped`` (values that could not be sent), ``beats`` (beat events sent).
    """

    def __init__(self, host: str | None = None, port: int | None = None, *,
                 targets: Iterable[tuple[str, int]] | None = None):
        wanted = list(targets or [])
        if host is not None:
            wanted.insert(0, (host, port))
        if not wanted:
            raise ControlError("OSC output needs at least one host:port")
        if len(wanted) > MAX_TARGETS:
            raise ControlError(f"at most {MAX_TARGETS} OSC outputs")
        resolved = [(h, int(p), *_resolve(h, p)) for h, p in wanted]
        self.targets = [(h, p) for h, p, _, _ in resolved]
        self.host, self.port = self.targets[0]
        self._addrs = [addr for _, _, _, addr in resolved]
        self._socks: dict[int, socket.socket] = {}
        self._sock_for = []
        for _, _, family, _ in resolved:
            if family not in self._socks:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._socks[family] = sock
            self._sock_for.append(self._socks[family])
        # name -> element prefix (size + address + type tags) for a scalar; (name, n) for vectors.
        self._scalar_heads: dict[str, bytes | None] = {}
        self._vector_heads: dict[tuple[str, int], bytes | None] = {}
        self._time_head = self._head("/lj/time", 1)
        self._tempo_head = self._head("/lj/tempo", 1)
        self._beat_head = self._head("/lj/beat", 1, "i")
        self._last_phase: float | None = None
        self.stats: dict[str, int] = {"sent": 0, "send_errors": 0, "skipped": 0, "beats": 0}

    @staticmethod
    def _head(address: str, n: int, tag: str = "f") -> bytes:
        body = osc_types.write_string(address) + osc_types.write_string("," + tag * n)
        return INT.pack(len(body) + 4 * n) + body

    def _scalar_head(self, name: str) -> bytes | None:
        head = self._scalar_heads.get(name, False)
        if head is False:
            head = self._head("/lj/feature/" + name, 1) if NAME_RE.fullmatch(name) else None
            self._scalar_heads[name] = head
        return head

    def _vector_head(self, name: str, n: int) -> bytes | None:
        key = (name, n)
        head = self._vector_heads.get(key, False)
        if head is False:
            head = self._head("/lj/feature/" + name, n) if NAME_RE.fullmatch(name) else None
            self._vector_heads[key] = head
        return head

    @staticmethod
    def _scalar(value: object) -> float | None:
        if isinstance(value, (str, bytes)):
            return None
        try:
            x = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return x if math.isfinite(x) and abs(x) <= 3.4e38 else 0.0

    def _beat(self, features: Mapping[str, object]) -> int | None:
        """The beat in the bar (1-4) if a beat fired since the previous call, else None.

        A beat fires when the ``beat`` feature is set, or when ``beat_phase`` wrapped around
        since the previous call (the frame loop may drain several hops per frame, and the ``beat``
        feature is only set on the one hop where the beat falls).
        """
        phase = self._scalar(features.get("beat_phase")) if "beat_phase" in features else None
        beat = self._scalar(features.get("beat")) if "beat" in features else None
        wrapped = phase is not None and self._last_phase is not None and phase < self._last_phase - 0.5
        self._last_phase = phase
        if not (beat or wrapped):
            return None
        bar = self._scalar(features.get("bar_phase")) if "bar_phase" in features else None
        return int(round((bar or 0.0) * 4.0)) % 4 + 1

    def encode(self, features: Mapping[str, object], t: float) -> bytes:
        """The bundle :meth:`send_features` would send (non-finite values are sent as 0.0)."""
        parts = [BUNDLE_PREFIX, IMMEDIATELY]
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
                x = self._scalar(value)
                head = self._scalar_head(name) if x is not None else None
                if head is None:
                    skipped += 1
                    continue
                parts.append(head)
                parts.append(FLOAT.pack(x))
        parts.append(self._time_head)
        parts.append(FLOAT.pack(self._scalar(t) or 0.0))
        if "bpm" in features:
            parts.append(self._tempo_head)
            parts.append(FLOAT.pack(self._scalar(features["bpm"]) or 0.0))
        beat = self._beat(features)
        if beat is not None:
            parts.append(self._beat_head)
            parts.append(INT.pack(beat))
            self.stats["beats"] += 1
        if skipped:
            self.stats["skipped"] += skipped
        return b"".join(parts)

    def send_features(self, features: Mapping[str, object], t: float) -> bool:
        """Send ``features``, ``/lj/time t``, tempo and beat as one bundle; True if it reached every target.

        Values that are neither numbers nor numeric arrays, and names that cannot be an OSC
        address segment, are skipped (counted in ``stats["skipped"]``).
        """
        return self.send_datagram(self.encode(features, t))

    def encode_state(self, state: Mapping[str, object]) -> bytes:
        """The bundle :meth:`send_state` would send: ``/lj/state/<key> f`` (numbers) or ``s`` (text)."""
        messages = []
        for key, value in state.items():
            if not isinstance(key, str) or not NAME_RE.fullmatch(key):
                self.stats["skipped"] += 1
                continue
            if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
                arg: object = self._scalar(value) or 0.0
            else:
                arg = str(value)[:256]
            messages.append(encode_message(STATE_PREFIX + key, [arg]))
        return encode_bundle(messages)

    def send_state(self, state: Mapping[str, object]) -> bool:
        """Send show state, e.g. ``{"mapping": "ambient", "fps": 59.8}``, as one bundle."""
        return self.send_datagram(self.encode_state(state))

    def send_datagram(self, data: bytes) -> bool:
        """Send one datagram to every target; True if it left for all of them."""
        ok = True
        for sock, addr in zip(self._sock_for, self._addrs):
            try:
                sock.sendto(data, addr)
            except OSError:
                self.stats["send_errors"] += 1
                ok = False
            else:
                self.stats["sent"] += 1
        return ok

    def close(self) -> None:
        """Close the sockets; later sends are counted as errors."""
        for sock in self._socks.values():
            sock.close()

    def __enter__(self) -> "OscSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
