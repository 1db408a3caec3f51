"""How a running show is doing: a snapshot the live loop publishes, served as ``GET /health``.

The live loop calls :meth:`Health.publish` about once a second with its state (the same values it
puts under ``/lj/state/*``); :class:`Health` adds what outlives one run of the loop (the process
uptime, the supervisor's restarts). :class:`HealthServer` answers ``GET /health`` (and ``HEAD``)
with that snapshot as JSON on its own daemon thread, on 127.0.0.1 unless told otherwise, so a
monitoring system (or ``curl``) can watch an installation without speaking OSC::

    $ curl -s http://127.0.0.1:9100/health
    {"status": "ok", "fps": 59.8, "uptime": 86400.2, "frames": 5163012, "restarts": 0,
     "audio_lost": 0, "errors": {"generator": 0, "mapping": 1, ...}, "last_error": "...", ...}

``status`` is ``"ok"``, ``"sleeping"`` (outside the schedule's hours), ``"degraded"`` (the audio
input is lost, or the last frames were held because the generator failed) or ``"starting"``
(no state published yet). The answer is 200 in every case: a show that answers is up; read
``status`` for the rest. Only JSON is ever sent; nothing received is executed.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

from engine.control.http import HttpService

log = logging.getLogger("lj.health")


class Health:
    """The latest published state of a show, safe to read from any thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._state: dict = {}
        self.restarts = 0

    def publish(self, state: dict) -> None:
        """Replace the published state (called by the live loop about once a second)."""
        clean = {k: (0.0 if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in state.items()}
        with self._lock:
            self._state = clean

    def snapshot(self) -> dict:
        """The state as ``GET /health`` answers it."""
        with self._lock:
            state = dict(self._state)
        if not state:
            status = "starting"
        elif state.get("sleeping"):
            status = "sleeping"
        elif state.get("audio_lost") or state.get("holding"):
            status = "degraded"
        else:
            status = "ok"
        state["status"] = status
        state["process_uptime"] = round(time.monotonic() - self._started, 1)
        state["restarts"] = self.restarts
        return state


class _Handler(BaseHTTPRequestHandler):
    timeout = 2.0
    server_version = "LatentJockey-Health"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def _answer(self, body: bool) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/health", ""):
            self._send(HTTPStatus.NOT_FOUND, {"error": "not found; try /health"}, body)
            return
        self._send(HTTPStatus.OK, self.server.service.health.snapshot(), body)  # type: ignore[attr-defined]

    def _send(self, status: HTTPStatus, payload: dict, body: bool) -> None:
        data = json.dumps(payload, allow_nan=False, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s " + format, self.client_address[0], *args)


class HealthServer(HttpService):
    """Serve ``health`` as JSON on ``http://host:port/health``; ``port=0`` picks a free port."""

    def __init__(self, health: Health, host: str = "127.0.0.1", port: int = 0):
        self.health = health
        super().__init__(host, port)

    what = "health endpoint"
    thread_name = "lj-health"
    poll_interval = 0.2
    handler = _Handler

    def start(self) -> None:
        """Bind and serve on a daemon thread; ControlError (one line) if the port is busy."""
        started = self._thread is None
        super().start()
        if started:
            log.info("health on http://%s:%d/health", self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/health"
