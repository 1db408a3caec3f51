"""How a running show is doing: a snapshot the live loop publishes, served as ``GET /health``.

The live loop calls :meth:`Health.publish` about once a second with its state (the same values it
puts under ``/lj/state/*``); :class:`Health` adds what outlives one run of the loop (the process
uptime, the supervisor's restarts) and judges the state *when it is asked*, on the HTTP thread,
so a loop that is stuck cannot leave an old "ok" behind. :class:`HealthServer` answers
``GET /health`` (and ``HEAD``) with that snapshot as JSON on its own threads, on 127.0.0.1 unless
told otherwise, so a monitoring system (or ``curl -f``) can watch an installation::

    $ curl -s http://127.0.0.1:9100/health
    {"status": "ok", "reason": "", "fps": 59.8, "target_fps": 60.0, "uptime": 86400.2,
     "frames": 5163012, "restarts": 0, "audio_lost": 0, "errors": {...}, "last_error": "", ...}

``status``, first match wins (``reason`` says why in one sentence, ``""`` when ok):

- ``crashloop``: the supervisor restarted the loop more than :data:`CRASHLOOP_RESTARTS` times in
  the last :data:`CRASHLOOP_WINDOW_S` seconds;
- ``restarting``: the loop failed and has not published since the supervisor restarted it;
- ``starting``: nothing published yet;
- ``stalled``: the last publication is older than :data:`STALL_S` seconds (the loop publishes
  once a second, so it is stuck);
- ``sleeping``: outside the schedule's hours, as asked;
- ``degraded``: the audio input is lost, the last frame is held because the generator fails, or
  fps stayed below :data:`LOW_FPS_FRACTION` of the target for :data:`LOW_FPS_S` seconds or more;
- ``ok``.

HTTP status 200 for ``ok`` and ``sleeping`` (:data:`HEALTHY`), 503 for all the others, so
``curl -f``, systemd and uptime checkers see trouble without parsing JSON. Only JSON is ever
sent; nothing received is executed.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from http import HTTPStatus

from engine.control.http import HttpService, Request, Response, json_response

log = logging.getLogger("lj.health")

#: Statuses answered 200; anything else is 503.
HEALTHY = ("ok", "sleeping")
#: fps below this fraction of the target ...
LOW_FPS_FRACTION = 0.5
#: ... for this many seconds (publications in a row) is "degraded".
LOW_FPS_S = 5.0
#: A publication older than this (seconds) means the loop is stuck ("stalled").
STALL_S = 3.0
#: More than this many restarts in the window is a crash loop.
CRASHLOOP_RESTARTS = 3
CRASHLOOP_WINDOW_S = 60.0


class Health:
    """The latest published state of a show, safe to read from any thread.

    ``target_fps`` is the rate the show aims for (``lj run --target-fps``; the live loop sets it);
    ``clock`` is ``time.monotonic`` (a test may pass its own).
    """

    def __init__(self, target_fps: float | None = None, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._started = clock()
        self._state: dict = {}
        self._published: float | None = None
        self._low_since: float | None = None
        self._restart_times: collections.deque = collections.deque(maxlen=CRASHLOOP_RESTARTS + 1)
        self._restarting = False
        self.target_fps = target_fps
        self.restarts = 0

    def publish(self, state: dict) -> None:
        """Replace the published state (called by the live loop about once a second)."""
        clean = {k: (0.0 if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in state.items()}
        now = self._clock()
        with self._lock:
            self._state = clean
            self._published = now
            self._restarting = False
            if self._fps_low(clean):
                self._low_since = now if self._low_since is None else self._low_since
            else:
                self._low_since = None

    def note_restart(self) -> None:
        """The supervisor is restarting the loop after a failure (counted, and timed)."""
        with self._lock:
            self.restarts += 1
            self._restart_times.append(self._clock())
            self._restarting = True

    def _fps_low(self, state: dict) -> bool:
        target = self.target_fps
        fps = state.get("fps")
        if not target or state.get("sleeping") or not isinstance(fps, (int, float)):
            return False
        return fps < LOW_FPS_FRACTION * target

    def _verdict(self, state: dict, now: float) -> tuple[str, str]:
        """(status, reason) of ``state`` at ``now`` (the lock is held)."""
        recent = [t for t in self._restart_times if now - t <= CRASHLOOP_WINDOW_S]
        if len(recent) > CRASHLOOP_RESTARTS:
            return "crashloop", (f"{len(recent)} restarts in the last {CRASHLOOP_WINDOW_S:.0f} s; "
                                 f"last error: {state.get('last_error') or 'see the log'}")
        if self._restarting:
            return "restarting", "the show failed and is being restarted"
        if self._published is None:
            return "starting", "no state published yet"
        age = now - self._published
        if age > STALL_S:
            return "stalled", f"no state published for {age:.1f} s: the loop is stuck"
        if state.get("sleeping"):
            return "sleeping", ""
        if state.get("audio_lost"):
            return "degraded", "the audio input is lost"
        if state.get("holding"):
            return "degraded", "the generator is failing; the last good frame is held"
        if self._low_since is not None and self._published - self._low_since >= LOW_FPS_S:
            return "degraded", (f"{state.get('fps', 0.0)} fps, below {LOW_FPS_FRACTION:g} of the "
                                f"{self.target_fps:g} fps target for "
                                f"{self._published - self._low_since:.0f} s")
        return "ok", ""

    def snapshot(self) -> dict:
        """The state as ``GET /health`` answers it, judged now."""
        now = self._clock()
        with self._lock:
            state = dict(self._state)
            status, reason = self._verdict(state, now)
            published = self._published
        state["status"] = status
        state["reason"] = reason
        state["target_fps"] = self.target_fps
        state["state_age"] = None if published is None else round(now - published, 1)
        state["process_uptime"] = round(now - self._started, 1)
        state["restarts"] = self.restarts
        return state


class HealthServer(HttpService):
    """Serve ``health`` as JSON on ``http://host:port/health``; ``port=0`` picks a free port.

    ``allow``: an :class:`~engine.control.access.AllowList` (None: every peer).
    """

    what = "health endpoint"
    thread_name = "lj-health"
    server_version = "LatentJockey-Health"

    def __init__(self, health: Health, host: str = "127.0.0.1", port: int = 0, allow=None):
        self.health = health
        super().__init__(host, port, allow)

    def respond(self, request: Request) -> Response:
        if request.path.rstrip("/") not in ("/health", ""):
            return json_response(HTTPStatus.NOT_FOUND, {"error": "not found; try /health"})
        snap = self.health.snapshot()
        code = HTTPStatus.OK if snap["status"] in HEALTHY else HTTPStatus.SERVICE_UNAVAILABLE
        return json_response(code, snap, (("Cache-Control", "no-store"),))

    def start(self) -> None:
        """Bind and serve; ControlError (one line) if the port is busy."""
        started = self._thread is None
        super().start()
        if started:
            log.info("health on http://%s:%d/health", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/health"
