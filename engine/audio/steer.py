"""Steering the tempo tracker from outside: OSC commands and an Ableton Link session.

The frame loop owns the :class:`~engine.audio.beat.BeatTracker` (it runs on the frame loop's thread,
inside the feature extractor), so other threads never call it. They queue commands instead
(:meth:`engine.control.state.Controls.request_tempo`, filled by the OSC server from
``/lj/tempo/*``), and once per frame, before the new hops are analysed, the loop hands the queued
commands to :func:`apply_tempo_commands`.

:class:`LinkFollower` makes the tracker follow an Ableton Link session (``aalink``, an optional
extra: ``pip install 'latent-jockey[link]'``): every frame it reads the session's tempo and beat
position and sets the tracker's tempo and phase to them (the tracker stays locked while Link is on,
so its own estimate does not fight the DJ's clock). The Link library runs its own network thread;
reading its clock does not block. If ``aalink`` is missing or fails to start, :func:`open_link`
logs one line and returns None, and the internal tracker keeps running.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable

log = logging.getLogger("lj.tempo")

#: Commands :func:`apply_tempo_commands` understands (the last segment of ``/lj/tempo/<name>``).
TEMPO_COMMANDS = ("tap", "set", "reset", "lock", "link")


def apply_tempo_commands(tracker, commands: Iterable[tuple[str, float | None, float]],
                         now: float | None = None, link: "LinkFollower | None" = None) -> None:
    """Apply queued tempo commands, oldest first.

    Parameters
    ----------
    tracker : BeatTracker
        The tracker to steer (``FeatureExtractor.beat``).
    commands : iterable of (name, value, received)
        ``name`` from :data:`TEMPO_COMMANDS`; ``value`` its number (BPM for ``set``, 0/1 for
        ``lock`` and ``link``) or None; ``received`` the ``time.monotonic()`` of its arrival,
        which places taps and phase resets on the audio clock where they happened rather than
        when the frame loop got to them.
    now : float, optional
        ``time.monotonic()`` now (a test may pass its own).
    link : LinkFollower, optional
        Switched on and off by ``link`` commands.
    """
    if now is None:
        now = time.monotonic()
    for name, value, received in commands:
        audio_t = tracker.now() - max(0.0, now - received)
        try:
            if name == "tap":
                tracker.tap(audio_t)
            elif name == "set" and value is not None:
                tracker.set_tempo(value)
            elif name == "reset":
                tracker.reset_phase(audio_t)
            elif name == "lock" and value is not None:
                tracker.lock(bool(value))
            elif name == "link" and value is not None and link is not None:
                link.enabled = bool(value)
        except ValueError as exc:  # e.g. a tempo of 0: reported, nothing changes
            log.warning("tempo command %s ignored: %s", name, exc)


class LinkFollower:
    """Follow an Ableton Link session's tempo and beat phase (see the module docstring).

    ``link`` is an object with ``tempo`` (BPM), ``beat`` (beats on the session timeline, float),
    ``num_peers`` and ``enabled`` attributes: an ``aalink.Link`` (:func:`open_link` makes one), or
    any object that behaves like one (the tests use a plain one for the pure logic).
    """

    def __init__(self, link, quantum: float = 4.0):
        self.link = link
        self.quantum = float(quantum)
        self.following = False
        self._enabled = True

    @property
    def enabled(self) -> bool:
        """Whether the tracker follows Link (``/lj/tempo/link i``); off: the tracker is released."""
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self._enabled = bool(on)
        try:
            self.link.enabled = self._enabled
        except Exception as exc:  # noqa: BLE001 - a failing Link never stops the show
            log.warning("Ableton Link: cannot switch %s: %s", "on" if on else "off", exc)

    def peers(self) -> int:
        try:
            return int(self.link.num_peers)
        except Exception:  # noqa: BLE001
            return 0

    def apply(self, tracker) -> bool:
        """Set ``tracker``'s tempo and phase from the Link session; True while following.

        Follows only while enabled and at least one other peer is in the session (alone, Link's
        clock is just our own default tempo, and the tracker knows better). When following stops
        the tracker is released to automatic tracking.
        """
        follow = self._enabled and self.peers() > 0
        if follow:
            try:
                bpm = float(self.link.tempo)
                beat = float(self.link.beat)
            except Exception as exc:  # noqa: BLE001
                log.warning("Ableton Link: cannot read the session clock: %s", exc)
                follow = False
            else:
                if not (math.isfinite(bpm) and bpm > 0 and math.isfinite(beat)):
                    follow = False
        if follow:
            if abs(tracker.bpm - bpm) > 1e-6 * bpm:
                tracker.set_tempo(bpm)
            bar_beat = int(math.floor(beat)) % int(self.quantum)
            tracker.set_phase(beat - math.floor(beat), bar_beat=bar_beat)
            tracker.lock(True)
        elif self.following:
            tracker.release()
        self.following = follow
        return follow


def open_link(bpm: float = 120.0, quantum: float = 4.0) -> LinkFollower | None:
    """Join the local network's Ableton Link session; None (and one log line) when impossible."""
    try:
        import aalink
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken binary
        log.warning("Ableton Link unavailable (%s); install the 'link' extra (pip install aalink). "
                    "The internal tempo tracker keeps running.", exc)
        return None
    try:
        link = _make_link(aalink, bpm)
        link.quantum = quantum
        link.enabled = True
    except Exception as exc:  # noqa: BLE001
        log.warning("Ableton Link failed to start (%s); the internal tempo tracker keeps running.",
                    exc)
        return None
    log.info("Ableton Link on (quantum %g); following the session's tempo when peers join", quantum)
    return LinkFollower(link, quantum)


def _make_link(aalink, bpm: float):
    """An ``aalink.Link``, made on a private asyncio loop running in a daemon thread (aalink binds
    each Link to the running loop for its ``sync`` coroutines and callbacks; none are used here:
    the clock is read once per frame, which does not block)."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="lj-link", daemon=True).start()

    async def make():
        return aalink.Link(bpm)

    return asyncio.run_coroutine_threadsafe(make(), loop).result(timeout=10)


class TempoSteering:
    """What the frame loop holds: queued OSC tempo commands and, optionally, Ableton Link.

    ``link=True`` (``lj run --link``) joins the Link session at once; ``/lj/tempo/link 1`` joins it
    later (``0`` stops following). Call :meth:`step` once per frame before the new hops are analysed.
    """

    def __init__(self, link: bool = False, opener=open_link):
        self._opener = opener
        self._tried = False
        self.link: LinkFollower | None = None
        if link:
            self._open()

    def _open(self) -> None:
        if not self._tried:   # one attempt (and one log line) per show
            self._tried = True
            self.link = self._opener()

    def step(self, tracker, commands, now: float | None = None) -> None:
        """Apply ``commands`` (``Controls.take_tempo()``), then follow Link if it is on."""
        for name, value, _ in commands:
            if name == "link" and value and self.link is None:
                self._open()
        if commands:
            apply_tempo_commands(tracker, commands, now, self.link)
        if self.link is not None:
            self.link.apply(tracker)

    def close(self) -> None:
        """Leave the Link session."""
        if self.link is not None:
            self.link.enabled = False
            self.link = None
