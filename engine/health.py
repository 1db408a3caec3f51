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

import errno
import json
import logging
import math
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer

from engine.errors import ControlError

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
        self._send(HTTPStatus.OK, self.server.health.snapshot(), body)  # type: ignore[attr-defined]

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


class _Server(HTTPServer):
    allow_reuse_address = False

    def server_bind(self) -> None:  # no FQDN lookup (a DNS query that can hang)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        log.debug("health request from %s failed", client_address[0], exc_info=True)


class HealthServer:
    """Serve ``health`` as JSON on ``http://host:port/health``; ``port=0`` picks a free port."""

    def __init__(self, health: Health, host: str = "127.0.0.1", port: int = 0):
        self.health = health
        self.host = host
        self._requested_port = int(port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on a daemon thread; ControlError (one line) if the port is busy."""
        if self._thread is not None:
            return
        try:
            httpd = _Server((self.host, self._requested_port), _Handler)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EPERM):
                raise ControlError(f"health port {self._requested_port} on {self.host} is busy; "
                                   "choose another") from None
            raise ControlError(f"health endpoint cannot listen on {self.host}:"
                               f"{self._requested_port} ({exc.strerror or exc})") from None
        httpd.health = self.health  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="lj-health", daemon=True)
        self._thread.start()
        log.info("health on http://%s:%d/health", self.host, self.port)

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        thread, self._thread = self._thread, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(2.0)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd is not None else self._requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/health"
