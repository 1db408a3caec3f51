"""A small stdlib HTTP service on a daemon thread: the base of OSCQuery and ``GET /health``.

One request at a time (bounded resources), no FQDN lookup when binding (a DNS query that can
hang), request errors logged at debug level and never printed, and a busy or forbidden port
reported as one :class:`~engine.errors.ControlError` line.
"""

from __future__ import annotations

import errno
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from engine.errors import ControlError

log = logging.getLogger("lj.http")


class QuietHTTPServer(HTTPServer):
    """``HTTPServer`` without the FQDN lookup and without tracebacks on stderr."""

    allow_reuse_address = False

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        log.debug("HTTP request from %s failed", client_address[0], exc_info=True)


class HttpService:
    """Serve ``handler`` on ``host:port`` (``port=0``: a free one) from a daemon thread.

    Subclasses set :attr:`what` (for messages), :attr:`thread_name`, :attr:`poll_interval` and
    :attr:`handler`; the handler reaches the service as ``self.server.service``.
    """

    what = "HTTP"
    thread_name = "lj-http"
    poll_interval = 0.2
    handler: type[BaseHTTPRequestHandler]

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self._requested_port = int(port)
        self._httpd: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on a daemon thread; ControlError (one line) if the port is busy."""
        if self._thread is not None:
            return
        try:
            httpd = QuietHTTPServer((self.host, self._requested_port), self.handler)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EPERM):
                raise ControlError(f"{self.what} port {self._requested_port} on {self.host} is "
                                   "busy; choose another") from None
            raise ControlError(f"{self.what} cannot listen on {self.host}:{self._requested_port} "
                               f"({exc.strerror or exc})") from None
        httpd.service = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever,
                                        kwargs={"poll_interval": self.poll_interval},
                                        name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving and close the socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        thread, self._thread = self._thread, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout)

    @property
    def port(self) -> int:
        """The bound port once started, else the requested one."""
        return self._httpd.server_address[1] if self._httpd is not None else self._requested_port

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
