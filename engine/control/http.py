"""A small HTTP/1.1 server for the show's own endpoints (OSCQuery, ``GET /health``) that a hostile
or confused client cannot stop.

Why not ``http.server``: its one-request-at-a-time loop let one client sending a byte every 1.5 s,
or 200 idle connections, keep ``/health`` from answering (issue 17). Here one selector thread does
all the network I/O without ever blocking, and a fixed pool of worker threads computes answers:

- every connection has deadlines: the whole request head within ``head_timeout`` however slowly
  it trickles in (then 408 and close), the answer sent within ``write_timeout``, and what the
  client still sends after the answer read and dropped for at most ``linger`` seconds. A slow or
  silent client costs a socket, never a thread;
- at most ``max_rate`` new connections a second (a burst of ``max_burst``): beyond it they wait
  in the kernel's listen backlog, so a flood costs the show's process (and the frame loop, which
  shares Python's interpreter lock with these threads) a bounded share of its time;
- at most ``max_connections`` at once. At the cap the oldest connection that has been answered
  already, or has not sent a full request within ``evict_after`` seconds, is closed to make room
  (idle connections cannot lock out a health check); when none qualifies, new connections wait
  in the listen backlog until a slot frees. No thread is started per connection;
- the request line (``MAX_LINE``), the whole head (``MAX_HEAD``) and the number of header lines
  (``MAX_HEADERS``) are bounded: 414 or 431 and close;
- one request per connection: every answer says ``Connection: close`` and requests pipelined
  behind the first are read and dropped, never answered;
- methods other than GET and HEAD answer 405; a malformed request line 400; paths are
  percent-decoded as UTF-8 with undecodable bytes replaced (so they simply match nothing);
- a sender outside the allow-list (:class:`engine.control.access.AllowList`) is closed on accept
  without a byte of answer;
- no FQDN lookup when binding (a DNS query that can hang); errors in a handler are logged at
  debug level and answer 500; a busy or forbidden port is one :class:`ControlError` line.

Subclasses implement :meth:`HttpService.respond`: a parsed :class:`Request` in, a
:class:`Response` out, on a worker thread (so it must be thread-safe and quick).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import re
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

from engine.errors import ControlError

log = logging.getLogger("lj.http")

#: Connections open at once (reading, being answered or closing).
MAX_CONNECTIONS = 64
#: Seconds for the whole request line and headers, counted from the accept.
HEAD_TIMEOUT_S = 5.0
#: Seconds to send an answer to a client that reads slowly or not at all.
WRITE_TIMEOUT_S = 10.0
#: Seconds, and bytes, read and dropped after the answer before the socket is closed (so a
#: client still sending, e.g. pipelined requests, reads its answer rather than a reset).
LINGER_S = 1.0
LINGER_BYTES = 64 * 1024
#: At the cap, a connection that has not sent a full request in this long may be closed.
EVICT_AFTER_S = 0.5
#: Bounds on the request head.
MAX_LINE = 4096
MAX_HEAD = 16 * 1024
MAX_HEADERS = 64
#: New connections accepted per second, and the burst allowed above that rate.
MAX_RATE = 100.0
MAX_BURST = 200
#: Worker threads per service: answers are computed here, never network I/O.
WORKERS = 2
BACKLOG = 512  # (the kernel caps it at net.core.somaxconn): a queued SYN is not dropped and retried 1 s later
ACCEPT_BATCH = 32

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.[0-9]")
_READING, _WORKING, _WRITING, _CLOSING = range(4)


@dataclass(frozen=True)
class Request:
    """One parsed request head. ``path`` and ``query`` are percent-decoded (UTF-8, undecodable
    bytes replaced); ``headers`` are (lower-case name, value) pairs in order."""

    method: str
    target: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    peer: str


@dataclass(frozen=True)
class Response:
    """An answer: status, body bytes (not sent for HEAD and 204) and extra headers."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, payload: object | None, headers=()) -> Response:
    """A JSON answer (no body for ``payload=None``); NaN and inf are refused (500 upstream)."""
    body = b"" if payload is None else json.dumps(payload, allow_nan=False, default=str).encode()
    return Response(int(status), body, "application/json", tuple(headers))


def _error(status: HTTPStatus) -> Response:
    return Response(int(status), (status.phrase + "\n").encode(), "text/plain")


def encode_response(response: Response, head_only: bool, server: str) -> bytes:
    """The bytes of ``response`` on the wire (always ``Connection: close``)."""
    status = int(response.status)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}", f"Server: {server}", "Connection: close"]
    bodyless = status == 204 or status == 304 or 100 <= status < 200
    if not bodyless:
        if response.content_type:
            lines.append(f"Content-Type: {response.content_type}")
        lines.append(f"Content-Length: {len(response.body)}")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head if head_only or bodyless else head + response.body


def _decode(raw: bytes) -> str:
    return unquote_to_bytes(raw).decode("utf-8", "replace")


def parse_head(head: bytes, peer: str) -> Request | Response:
    """A complete request head (up to and including its blank line) as a :class:`Request`, or
    the error :class:`Response` to answer (400, 414, 431, 505). Linear in the head's length."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return _error(HTTPStatus.BAD_REQUEST)
    if len(lines[0]) > MAX_LINE:
        return _error(HTTPStatus.REQUEST_URI_TOO_LONG)
    if len(head) > MAX_HEAD or len(lines) - 1 > MAX_HEADERS:
        return _error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        return _error(HTTPStatus.BAD_REQUEST)
    method, target, version = parts
    match = _VERSION.fullmatch(version)
    if match is None:
        return _error(HTTPStatus.BAD_REQUEST)
    if match.group(1) != b"1":
        return _error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):  # also a folded line (leading white space)
            return _error(HTTPStatus.BAD_REQUEST)
        headers.append((name.decode("ascii").lower(), value.strip().decode("latin-1")))
    if target.startswith((b"http://", b"https://")):  # absolute form: keep the path
        target = b"/" + target.split(b"/", 3)[3] if target.count(b"/") >= 3 else b"/"
    if not target.startswith(b"/"):
        return _error(HTTPStatus.BAD_REQUEST)
    raw_path, _, raw_query = target.split(b"#", 1)[0].partition(b"?")
    return Request(method.decode("ascii"), target.decode("latin-1"), _decode(raw_path),
                   _decode(raw_query), tuple(headers), peer)


def _head_end(buf: bytearray, start: int) -> int:
    """The index just past the blank line that ends a head in ``buf`` (searched from
    ``start``), or -1."""
    ends = [i + n for i, n in ((buf.find(b"\n\r\n", start), 3), (buf.find(b"\n\n", start), 2))
            if i >= 0]
    return min(ends) if ends else -1


class _Conn:
    """One client connection and where it is in its life (reading, working, writing, closing)."""

    __slots__ = ("sock", "peer", "born", "buf", "scanned", "state", "out", "deadline",
                 "dropped", "head_only", "events")

    def __init__(self, sock: socket.socket, peer: str, now: float, deadline: float):
        self.sock: socket.socket | None = sock
        self.peer = peer
        self.born = now
        self.buf = bytearray()
        self.scanned = 0
        self.state = _READING
        self.out = memoryview(b"")
        self.deadline: float | None = deadline
        self.dropped = 0
        self.head_only = False
        self.events = 0


class HttpService:
    """Serve :meth:`respond` on ``host:port`` (``port=0``: a free one) from daemon threads.

    ``allow`` (an :class:`~engine.control.access.AllowList` or None for everyone) decides which
    peers are served. Subclasses set :attr:`what` (for messages), :attr:`thread_name`,
    :attr:`server_version` and implement :meth:`respond`; the limits above are attributes an
    instance may change before :meth:`start` (tests make them short).
    """

    what = "HTTP"
    thread_name = "lj-http"
    server_version = "LatentJockey"
    poll_interval = 0.1
    max_connections = MAX_CONNECTIONS
    head_timeout = HEAD_TIMEOUT_S
    write_timeout = WRITE_TIMEOUT_S
    linger = LINGER_S
    evict_after = EVICT_AFTER_S
    max_rate = MAX_RATE
    max_burst = MAX_BURST
    workers = WORKERS

    def __init__(self, host: str = "127.0.0.1", port: int = 0, allow=None):
        self.host = host
        self.allow = allow
        self._requested_port = int(port)
        self._bound_port: int | None = None
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._pool: list[threading.Thread] = []

    # --- what subclasses write -------------------------------------------------------------

    def respond(self, request: Request) -> Response:
        """The answer to a GET or HEAD ``request`` (runs on a worker thread)."""
        return _error(HTTPStatus.NOT_FOUND)

    # --- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve on daemon threads; ControlError (one line) if the port is busy."""
        if self._thread is not None:
            return
        self._listener = self._bind()
        self._bound_port = self._listener.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        self._accepting, self._resume_at = True, 0.0
        self._tokens, self._filled = float(self.max_burst), time.monotonic()
        self._conns: set[_Conn] = set()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # at most one job per connection
        self._done: list[tuple[_Conn, Response]] = []
        self._done_lock = threading.Lock()
        self._stopping = False
        self._bug_logged = False
        self._pool = [threading.Thread(target=self._work, name=f"{self.thread_name}-{i}",
                                       daemon=True) for i in range(max(1, int(self.workers)))]
        for worker in self._pool:
            worker.start()
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if os.name == "posix":  # rebind at once after a restart (TIME_WAIT), never share
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EPERM):
                raise ControlError(f"{self.what} port {self._requested_port} on {self.host} is "
                                   "busy; choose another") from None
            raise ControlError(f"{self.what} cannot listen on {self.host}:{self._requested_port} "
                               f"({exc.strerror or exc})") from None
        return sock

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, close every connection and the socket (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake()
        thread.join(timeout)
        for _ in self._pool:
            self._jobs.put(None)
        for worker in self._pool:
            worker.join(timeout)
        self._pool = []
        self._bound_port = None

    @property
    def port(self) -> int:
        """The bound port once started, else the requested one."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def open_connections(self) -> int:
        """Connections open right now (for tests and diagnostics)."""
        return len(getattr(self, "_conns", ()))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the selector thread -----------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping:
                for key, mask in self._sel.select(self.poll_interval):
                    self._event(key.data, mask)
                self._finish_jobs()
                self._expire()
        except Exception:  # a bug here must not pass silently, nor take the show down
            log.exception("%s server stopped", self.what)
        finally:
            for conn in list(self._conns):
                self._close(conn)
            for s in (self._listener, self._wake_r, self._wake_w):
                s.close()
            self._sel.close()

    def _event(self, what, mask: int) -> None:
        """One ready socket. A bug met on a client connection closes that connection only."""
        if what == "listen":
            self._accept()
        elif what == "wake":
            self._drain_wake()
        else:
            try:
                if mask & selectors.EVENT_WRITE:
                    self._write(what)
                else:
                    self._read(what)
            except Exception:
                log.warning("%s: a connection from %s failed; closed", self.what, what.peer,
                            exc_info=not self._bug_logged)
                self._bug_logged = True
                self._close(what)

    def _accept(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(self.max_burst),
                           self._tokens + (now - self._filled) * self.max_rate)
        self._filled = now
        for _ in range(ACCEPT_BATCH):
            if self._tokens < 1.0:  # over the rate: the rest wait in the backlog
                self._pause_accepting((1.0 - self._tokens) / self.max_rate)
                return
            if len(self._conns) >= self.max_connections and not self._evict():
                self._pause_accepting(0.0)
                return
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: let some close first
                log.debug("%s accept failed: %s", self.what, exc)
                self._pause_accepting(0.1)
                return
            self._tokens -= 1.0
            peer = str(addr[0])
            if self.allow is not None and not self.allow.permits(peer):
                log.debug("%s connection from %s refused (not in the allow-list)", self.what, peer)
                sock.close()
                continue
            sock.setblocking(False)
            now = time.monotonic()
            conn = _Conn(sock, peer, now, now + self.head_timeout)
            self._conns.add(conn)
            self._watch(conn, selectors.EVENT_READ)
            self._read(conn)  # the request is often there already: take it before any eviction

    def _pause_accepting(self, seconds: float) -> None:
        if self._accepting:
            self._sel.unregister(self._listener)
            self._accepting = False
        self._resume_at = time.monotonic() + seconds

    def _evict(self) -> bool:
        """Close the oldest answered, or stale unanswered, connection; False if there is none."""
        now = time.monotonic()
        victims = [c for c in self._conns if c.state == _CLOSING] or [
            c for c in self._conns if c.state == _READING and now - c.born >= self.evict_after]
        if not victims:
            return False
        self._close(min(victims, key=lambda c: c.born))
        return True

    def _read(self, conn: _Conn) -> None:
        if conn.sock is None or conn.state not in (_READING, _CLOSING):
            return
        try:
            data = conn.sock.recv(MAX_HEAD + 1 if conn.state == _READING else 16384)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:  # closed, or half-closed before a whole request: nothing to answer
            self._close(conn)
        elif conn.state == _CLOSING:
            conn.dropped += len(data)
            if conn.dropped > LINGER_BYTES:
                self._close(conn)
        else:
            conn.buf += data
            self._scan(conn)

    def _scan(self, conn: _Conn) -> None:
        """Look for the end of the head in what has arrived; answer or queue a whole one."""
        if conn.scanned == 0 and conn.buf[:1] in (b"\r", b"\n"):  # empty lines before it: skip
            conn.buf = bytearray(conn.buf.lstrip(b"\r\n"))
        end = _head_end(conn.buf, max(0, conn.scanned - 2))
        if end < 0:
            conn.scanned = len(conn.buf)
            if len(conn.buf) > MAX_LINE and b"\n" not in conn.buf[:MAX_LINE + 1]:
                self._reply(conn, _error(HTTPStatus.REQUEST_URI_TOO_LONG))
            elif len(conn.buf) > MAX_HEAD:
                self._reply(conn, _error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE))
            return
        parsed = parse_head(bytes(conn.buf[:end]), conn.peer)
        conn.buf = bytearray()
        if isinstance(parsed, Response):
            self._reply(conn, parsed)
        elif parsed.method not in ("GET", "HEAD"):
            self._reply(conn, Response(405, b"", None, (("Allow", "GET, HEAD"),)))
        else:
            conn.head_only = parsed.method == "HEAD"
            conn.state, conn.deadline = _WORKING, None
            self._watch(conn, 0)
            self._jobs.put((conn, parsed))

    def _reply(self, conn: _Conn, response: Response) -> None:
        conn.out = memoryview(encode_response(response, conn.head_only, self.server_version))
        conn.state, conn.deadline = _WRITING, time.monotonic() + self.write_timeout
        conn.buf = bytearray()
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        if conn.sock is None or conn.state != _WRITING:
            return
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            self._watch(conn, selectors.EVENT_WRITE)
            return
        try:  # the whole answer is out: say so, then drop what the client still sends
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.state, conn.deadline = _CLOSING, time.monotonic() + self.linger
        self._watch(conn, selectors.EVENT_READ)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._conns if c.deadline is not None and now >= c.deadline]:
            if conn.state == _READING:  # a head that never ended (slowloris, silence)
                self._reply(conn, _error(HTTPStatus.REQUEST_TIMEOUT))
            else:
                self._close(conn)
        if not self._accepting and now >= self._resume_at and (
                len(self._conns) < self.max_connections or self._evict()):
            self._sel.register(self._listener, selectors.EVENT_READ, "listen")
            self._accepting = True

    def _watch(self, conn: _Conn, events: int) -> None:
        if events == conn.events or conn.sock is None:
            return
        if conn.events == 0:
            self._sel.register(conn.sock, events, conn)
        elif events == 0:
            self._sel.unregister(conn.sock)
        else:
            self._sel.modify(conn.sock, events, conn)
        conn.events = events

    def _close(self, conn: _Conn) -> None:
        if conn.sock is None:
            return
        self._watch(conn, 0)
        conn.sock.close()
        conn.sock = None
        conn.out = memoryview(b"")
        self._conns.discard(conn)

    # --- workers -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn, request = job
            try:
                response = self.respond(request)
            except Exception:
                log.debug("%s request %s %s from %s failed", self.what, request.method,
                          request.target[:200], request.peer, exc_info=True)
                response = _error(HTTPStatus.INTERNAL_SERVER_ERROR)
            with self._done_lock:
                self._done.append((conn, response))
            self._wake()

    def _finish_jobs(self) -> None:
        with self._done_lock:
            done, self._done = self._done, []
        for conn, response in done:
            if conn.sock is not None:
                self._reply(conn, response)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed (stopping)
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
