"""One small HTTP/1.1 server per telemetry handle: ``/metrics`` (Prometheus) plus extra routes (health).

``/metrics`` is prometheus_client's own WSGI app over the handle's registry, so content negotiation (OpenMetrics,
gzip, ``name[]`` filters) is exactly prometheus_client's, unless a ``metrics_app`` of its own is given (the
exposition's pre-rendered frames); prometheus_client is imported only when its app is made (:func:`client_app`).
Other routes are plain functions ``path -> (status, headers, body) | None``. Every path answers ``GET`` and
``HEAD`` (headers only, the ``Content-Length`` of the ``GET``) and ``OPTIONS``; other methods get 405 with an
``Allow`` header.

Connections are handled so that no client can hold the endpoint, nor make it spin:

- One selector thread (``otel-telemetry-http``) accepts connections and reads requests without blocking, so an
  idle or slow connection costs a file descriptor and no thread. A request is handed to a worker only once it is
  complete (its head, and a ``Content-Length`` body of at most 64 KiB).
- Workers run the routes and the app, started as needed; they never read from or wait on a client: one health
  worker (``otel-telemetry-http-health``) for ``/health*`` requests only, so that a probe never queues behind a
  scrape, and 2 general workers (``otel-telemetry-http-worker-N``), which take ``/health*`` first and start a
  request only while the selector thread waits (or after 50 ms), so that rendering does not hold the GIL the
  selector thread needs after every ``accept`` and ``recv``. Two, not eight: rendering holds the GIL, so more
  renderers add little throughput (200 concurrent scrapes took 1.5-1.7 s with 2 workers, 1.3-1.4 s with 8) and
  each one more delays the probe (``/health/live`` at most 0.04-0.06 s with 2, 0.15-0.18 s with 8; 0.7-0.85 s
  before the selector thread was given way; measured on 2 cores). Complete requests wait in a queue of at most
  256 per lane; beyond it a request is answered ``503`` with ``Retry-After: 1`` at once.
- The request head must arrive within 5 s of the connection (nginx's ``client_header_timeout`` semantics, the
  whole head; 5 s instead of nginx's 60 s browser-oriented default: a scraper sends its request as soon as it has
  connected). An idle keep-alive connection is closed after 5 s (Apache's ``KeepAliveTimeout`` default) or 1000
  requests (nginx's ``keepalive_requests``). A response must be taken within 10 s (Prometheus' default
  ``scrape_timeout``, after which the scraper has given up anyway). Expired connections are closed.
- At most 512 open connections (nginx's ``worker_connections`` default). At that cap, or when ``accept`` fails
  for lack of file descriptors (``EMFILE``/``ENFILE``), the oldest connection still waiting for a request is
  closed to make room, as nginx reuses keep-alive connections; with none to close, accepting pauses for 5 ms,
  doubling up to 1 s, as Go's ``net/http`` server does, and each pause is counted in :attr:`stats`.
- A listen backlog of 511 (nginx's default on Linux). Request heads are limited to 32 KiB and 100 fields
  (nginx's four 8 KiB header buffers; Apache's ``LimitRequestFields``), a request line to 8 KiB.

The server never writes access logs (a scrape every few seconds would flood the game's logs).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import logging
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

__all__ = ["MetricsHTTPServer", "Route"]

_logger = logging.getLogger(__name__)

#: A route: given the request path, a response ``(status, headers, body)`` or None when not handled.
Route = Callable[[str], "tuple[int, list[tuple[str, str]], bytes] | None"]

HEADER_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
WORKERS = 2
QUEUE_SIZE = 256
MAX_CONNECTIONS = 512
BACKLOG = 511
MAX_KEEPALIVE_REQUESTS = 1000
MAX_HEAD_BYTES = 32 * 1024
MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_FIELDS = 100
MAX_BODY_BYTES = 64 * 1024
_ACCEPT_BATCH = 64
_YIELD_TO_SELECTOR = 0.05  # seconds a general worker waits at most for the selector thread to finish its turn
_ACCEPT_DELAY_MIN, _ACCEPT_DELAY_MAX = 0.005, 1.0
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ALLOW = "GET, HEAD, OPTIONS"
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HOP_BY_HOP = frozenset({"connection", "content-length", "keep-alive", "transfer-encoding"})
_LISTENER, _WAKER = object(), object()  # selector keys that are not connections

Response = tuple[int, list[tuple[str, str]], bytes]


class _Request:
    """A parsed request head. ``error`` is the status to answer instead when the request is malformed."""

    __slots__ = ("body_complete", "consumed", "error", "headers", "method", "path", "query", "version")

    def __init__(self) -> None:
        self.method = "GET"
        self.path = "/"
        self.query = ""
        self.version = "HTTP/1.1"
        self.headers: list[tuple[str, str]] = []
        self.error: int | None = None
        self.consumed = 0  # bytes of the buffer this request takes (head, and body when it is read)
        self.body_complete = True  # False: a body that is not read (chunked, too large): close after answering

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for key, value in self.headers if key == name for t in value.split(",")}


class _Connection:
    """One client connection, owned by the selector thread while registered and by one worker while served."""

    __slots__ = ("buffer", "close_after", "closed", "deadline", "outgoing", "peer", "request", "requests", "sock")

    def __init__(self, sock: socket.socket, peer: Any, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.buffer = bytearray()
        self.deadline = deadline
        self.request: _Request | None = None
        self.requests = 0
        self.outgoing: memoryview | None = None  # the part of a response the socket did not take at once
        self.close_after = False  # close once ``outgoing`` is written
        self.closed = False


class _WorkQueue:
    """Complete requests waiting for a worker: two bounded lanes, ``/health*`` (urgent) and the rest.

    The health worker takes urgent requests only; the others take urgent ones first. ``close()`` ends ``get``.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._urgent: collections.deque[_Connection] = collections.deque()
        self._normal: collections.deque[_Connection] = collections.deque()
        lock = threading.Lock()
        self._urgent_ready = threading.Condition(lock)  # the health worker waits here
        self._ready = threading.Condition(lock)  # the general workers wait here
        self._idle = 0  # general workers waiting
        self._closed = False

    def put(self, conn: _Connection, urgent: bool) -> bool | None:
        """Queue ``conn``; None when full, else whether more requests wait than general workers are idle."""
        with self._ready:
            lane = self._urgent if urgent else self._normal
            if self._closed or len(lane) >= self._capacity:
                return None
            lane.append(conn)
            if urgent:
                self._urgent_ready.notify()
            self._ready.notify()
            return len(self._urgent) + len(self._normal) > self._idle

    def get(self, urgent_only: bool) -> _Connection | None:
        with self._ready:
            while not self._closed:
                if self._urgent:
                    return self._urgent.popleft()
                if self._normal and not urgent_only:
                    return self._normal.popleft()
                self._idle += not urgent_only
                try:
                    (self._urgent_ready if urgent_only else self._ready).wait()
                finally:
                    self._idle -= not urgent_only
            return None

    def close(self) -> list[_Connection]:
        """Stop handing out requests; returns those still queued (the caller closes them)."""
        with self._ready:
            self._closed = True
            left = [*self._urgent, *self._normal]
            self._urgent.clear()
            self._normal.clear()
            self._urgent_ready.notify_all()
            self._ready.notify_all()
        return left


def client_app(registry: Collector) -> Callable[..., Iterable[bytes]]:
    """prometheus_client's WSGI app over ``registry`` with a ``name[]`` filter that works on any registry.

    Imports prometheus_client (with ``http.server`` under it) on the first call.
    """
    from prometheus_client import make_wsgi_app

    return make_wsgi_app(_NameFilterable(registry))


class _NameFilterable:
    """The registry as prometheus_client's app sees it, with a ``name[]`` filter that works on any registry.

    prometheus_client's ``restricted_registry`` finds collectors by the names they declared at registration; a
    collector registered without ``describe()`` in a registry without ``auto_describe`` declares none (as the
    frame exposition does), so ``?name[]=x`` answered an empty 200. Here every family is collected and its
    samples kept when their name is asked for: prometheus_client's own rule for a restricted registry.
    """

    def __init__(self, registry: Collector) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()

    def restricted_registry(self, names: Iterable[str]) -> Collector:
        return _Restricted(self._registry, frozenset(names))


class _Restricted:
    def __init__(self, registry: Collector, names: frozenset[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import Metric

        for family in self._registry.collect():
            samples = [sample for sample in family.samples if sample.name in self._names]
            if samples:
                restricted = Metric(family.name, family.documentation, family.type, family.unit)
                restricted.samples = samples
                yield restricted


def _head_end(buffer: bytearray) -> tuple[int, int] | None:
    """``(end of the head, length of the blank line)`` when the head is complete (CRLF, or bare LF, lines)."""
    crlf, lf = buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return (lf, 2) if lf >= 0 else None


def _parse(buffer: bytearray, end: int, separator: int) -> _Request:
    """The request whose head ends at ``end``; never raises (a malformed head sets ``error``)."""
    request = _Request()
    request.consumed = end + separator
    lines = [line.rstrip("\r") for line in bytes(buffer[:end]).decode("latin-1").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)  # RFC 9112 §2.2: ignore empty lines before the request line
    if not lines:
        request.error = 400
        return request
    if len(lines[0]) > MAX_REQUEST_LINE:
        request.error = 414
        return request
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN_CHARS:
        request.error = 400
        return request
    request.method, target, request.version = parts
    if request.version not in ("HTTP/1.1", "HTTP/1.0"):
        request.error = 505 if request.version.startswith("HTTP/") else 400
        return request
    if len(lines) - 1 > MAX_HEADER_FIELDS:
        request.error = 431
        return request
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or not set(name) <= _TOKEN_CHARS:  # also refuses obsolete line folding
            request.error = 400
            return request
        request.headers.append((name.lower(), value.strip(" \t")))
    if target.startswith("/"):
        path, _, request.query = target.partition("?")
    elif target.startswith(("http://", "https://")):  # absolute-form, which servers must accept
        split = urlsplit(target)
        path, request.query = split.path or "/", split.query
    elif target == "*" and request.method == "OPTIONS":
        path = "*"
    else:
        request.error = 400
        return request
    request.path = unquote(path, "iso-8859-1")  # as wsgiref decodes PATH_INFO
    lengths = {value for key, value in request.headers if key == "content-length"}
    if request.header("transfer-encoding") is not None:
        if lengths:
            request.error = 400  # both framings: refused, as RFC 9112 §6.3 allows (request smuggling)
        request.body_complete = False
    elif lengths:
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            request.error = 400
            return request
        length = int(next(iter(lengths)))
        if length > MAX_BODY_BYTES:
            request.body_complete = False
        else:
            request.consumed += length  # read (and ignored) before the request is handed to a worker
    return request


def _reason(status: int) -> str:
    import http  # on the first response: its status enum is not needed to set a server up

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _http_date(timestamp: float | None = None) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7), ``Sun, 06 Nov 1994 08:49:37 GMT``: what ``email.utils.formatdate(timestamp,
    usegmt=True)`` writes, without importing the ``email`` package. English names whatever the locale."""
    t = time.gmtime(timestamp)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _render(status: int, headers: Iterable[tuple[str, str]], body: bytes, *, head_only: bool, close: bool) -> bytes:
    """The response bytes: ``Content-Length`` of ``body`` always, the body unless ``head_only``."""
    lines = [f"HTTP/1.1 {status} {_reason(status)}", f"Date: {_http_date()}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _HOP_BY_HOP]
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def _busy() -> bytes:
    return _render(503, [_TEXT, ("Retry-After", "1")], b"busy\n", head_only=False, close=True)


class MetricsHTTPServer:
    """Serves ``/metrics`` from ``registry`` and any ``routes`` on ``host:port`` (port 0 picks a free one).

    ``metrics_app``, when given, serves ``/metrics`` instead of prometheus_client's app over ``registry``; then
    ``registry`` may be None (and prometheus_client is not imported).

    Thread-safety: ``add_route`` and ``shutdown`` may be called from any thread. The limits (module docstring)
    can be changed with the keyword arguments; :attr:`stats` counts what the limits refused.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None,
        host: str,
        port: int,
        routes: Iterable[Route] = (),
        *,
        workers: int = WORKERS,
        queue_size: int = QUEUE_SIZE,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
        backlog: int = BACKLOG,
        metrics_app: Callable[..., Iterable[bytes]] | None = None,
    ) -> None:
        # ``metrics_app``: a WSGI app of its own for /metrics (the exposition's pre-rendered frames).
        if metrics_app is None:
            if registry is None:
                raise ValueError("MetricsHTTPServer.registry: None needs a metrics_app to serve /metrics")
            metrics_app = client_app(registry)
        self._metrics_app = metrics_app
        self._routes = list(routes)
        self._max_workers = max(1, workers)
        self._max_connections = max(1, max_connections)
        self._header_timeout = header_timeout
        self._keepalive_timeout = keepalive_timeout
        self._write_timeout = write_timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server(
            (host, port),
            family=family,
            backlog=max(128, backlog),
            dualstack_ipv6=host == "::" and socket.has_dualstack_ipv6(),  # as before: "::" takes IPv4 too
        )
        self._listener.setblocking(False)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKER)
        self._queue = _WorkQueue(max(1, queue_size))
        self._returned: collections.deque[_Connection] = collections.deque()  # from workers
        self._waiting: dict[_Connection, None] = {}  # waiting for a request, oldest first (evictable)
        self._writing: dict[_Connection, None] = {}  # a response being written without blocking
        self._next_expiry = float("inf")
        self._accept_delay = 0.0
        self._accept_resume: float | None = None  # while accepting is paused: when to resume
        self._stopping = False
        # Set while the selector thread waits in select(). General workers start a request only then (or after
        # _YIELD_TO_SELECTOR): every accept and recv releases the GIL, and taking it back from a thread that
        # renders costs up to the 5 ms switch interval each time (CPython's convoy effect), which made one turn
        # over a burst of 200 connections last 0.4 s and kept a probe's connection waiting behind it.
        self._selector_idle = threading.Event()
        self._selector_idle.set()
        self._lock = threading.Lock()  # the counts, the worker list and the open-connection count
        self._open = 0
        self._counts = dict.fromkeys(
            ("accepted", "timed_out", "evicted", "rejected_busy", "rejected_full", "accept_errors", "bad_requests"), 0
        )
        self._warned: set[str] = set()
        self._workers: list[threading.Thread] = []
        self._health_worker = False  # started with the first /health* request
        self._thread = threading.Thread(target=self._run, name="otel-telemetry-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL of the server (``http://host:port``), with a loopback host when bound to all interfaces."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def stats(self) -> dict[str, int]:
        """Counts since start: ``accepted`` connections, ``open`` now, and what the limits refused:
        ``timed_out`` (head, keep-alive or write timeout), ``evicted`` (idle connections closed to make room),
        ``rejected_busy`` (503: queue full), ``rejected_full`` (503: no connection to evict),
        ``accept_errors`` (accept failed, e.g. EMFILE; accepting paused), ``bad_requests`` (4xx/5xx on parse)."""
        with self._lock:
            return {**self._counts, "open": self._open}

    @property
    def refused(self) -> int:
        """Requests and connections refused or cut by the limits (the sum of the refusal counts in :attr:`stats`)."""
        with self._lock:
            counts = self._counts
            return counts["timed_out"] + counts["evicted"] + counts["rejected_busy"] + counts["rejected_full"]

    def add_route(self, route: Route) -> None:
        """Serve ``route`` too (checked in the order added, before ``/metrics``)."""
        self._routes = [*self._routes, route]

    # -- the selector thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stopping:
                self._turn()
        except Exception:
            _logger.exception("the HTTP server loop failed; /metrics and /health are no longer served")
        finally:
            self._close_everything()

    def _turn(self) -> None:
        now = time.monotonic()
        wake_at = min(self._next_expiry, self._accept_resume or float("inf"))
        events = self._selector.select(max(0.0, min(1.0, wake_at - now)))
        if events:
            self._selector_idle.clear()
        try:
            self._handle(events)
        finally:
            self._selector_idle.set()

    def _handle(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        listener_ready = False
        for key, _mask in events:
            if key.data is _LISTENER:
                listener_ready = True  # accepted after reading: requests already here go first
            elif key.data is _WAKER:
                self._drain_waker()
            elif isinstance(key.data, _Connection):
                self._safely(key.data, self._on_event)
        while self._returned:
            conn = self._returned.popleft()
            self._safely(conn, self._adopt)
        if listener_ready and not self._stopping:
            self._accept()
        now = time.monotonic()
        if self._accept_resume is not None and now >= self._accept_resume:
            self._accept_resume = None
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        if now >= self._next_expiry:
            self._expire(now)

    def _safely(self, conn: _Connection, step: Callable[[_Connection], None]) -> None:
        try:
            step(conn)
        except Exception:
            self._warn_once("step", "HTTP connection handling failed (logged once)", exc_info=True)
            self._drop(conn)

    def _on_event(self, conn: _Connection) -> None:
        if conn in self._writing:
            self._write_some(conn)
        else:
            self._read(conn)

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the client left before we accepted
                if exc.errno in _OUT_OF_DESCRIPTORS and self._evict_oldest():
                    continue
                self._pause_accepting(exc)
                return
            self._accept_delay = 0.0
            with self._lock:
                self._counts["accepted"] += 1
                self._open += 1
                full = self._open > self._max_connections
            if full and not self._evict_oldest():
                self._count("rejected_full")
                self._answer_now(sock, _busy())
                sock.close()
                self._closed_one()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, peer, time.monotonic() + self._header_timeout)
            self._selector.register(sock, selectors.EVENT_READ, conn)
            self._watch(conn)
            self._safely(conn, self._read)  # a scraper's request is usually here already

    def _pause_accepting(self, exc: OSError) -> None:
        """Stop watching the listener for a while instead of spinning on a failing ``accept``."""
        self._accept_delay = min(_ACCEPT_DELAY_MAX, max(_ACCEPT_DELAY_MIN, self._accept_delay * 2))
        self._count("accept_errors")
        self._warn_once(
            f"accept:{exc.errno}",
            "HTTP server: accept failed (%s); pausing up to %.0f s between attempts (logged once; counted)",
            exc,
            _ACCEPT_DELAY_MAX,
        )
        self._selector.unregister(self._listener)
        self._accept_resume = time.monotonic() + self._accept_delay

    def _evict_oldest(self) -> bool:
        """Close the connection that has waited longest for a request; False when none waits."""
        for conn in self._waiting:
            self._count("evicted")
            self._drop(conn)
            return True
        return False

    def _watch(self, conn: _Connection) -> None:
        self._waiting[conn] = None
        self._next_expiry = min(self._next_expiry, conn.deadline)

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)  # the client closed
            return
        conn.buffer += data
        self._check_request(conn)

    def _check_request(self, conn: _Connection) -> None:
        """Hand ``conn`` to a worker when its buffer holds a complete request; refuse oversized heads."""
        request = conn.request
        if request is None:
            found = _head_end(conn.buffer)
            if found is None:
                if len(conn.buffer) > MAX_HEAD_BYTES:
                    self._refuse(conn, 431)
                return
            if found[0] > MAX_HEAD_BYTES:
                self._refuse(conn, 431)
                return
            request = conn.request = _parse(conn.buffer, *found)
        if request.error is None and request.body_complete and len(conn.buffer) < request.consumed:
            return  # the body is still arriving (within the head's deadline)
        self._dispatch(conn)

    def _dispatch(self, conn: _Connection) -> None:
        self._selector.unregister(conn.sock)
        self._waiting.pop(conn, None)
        request = conn.request
        urgent = request is not None and request.path.startswith("/health")
        wanted = self._queue.put(conn, urgent)
        if wanted is None:
            self._count("rejected_busy")
            self._answer_now(conn.sock, _busy())
            self._close(conn)
            return
        if urgent and not self._health_worker:
            self._health_worker = self._start_worker("otel-telemetry-http-health", urgent_only=True)
        if wanted:
            with self._lock:
                general = len(self._workers) - self._health_worker
            if general < self._max_workers:
                self._start_worker(f"otel-telemetry-http-worker-{general + 1}", urgent_only=False)

    def _start_worker(self, name: str, urgent_only: bool) -> bool:
        thread = threading.Thread(target=self._work, args=(urgent_only,), name=name, daemon=True)
        with self._lock:
            if self._stopping:
                return False
            self._workers.append(thread)
        try:
            thread.start()
        except RuntimeError:  # no more threads: the running workers serve the queue
            with self._lock:
                self._workers.remove(thread)
            return False
        return True

    def _adopt(self, conn: _Connection) -> None:
        """Take a connection back from a worker: finish writing its response, then wait for its next request."""
        if conn.outgoing is not None:
            conn.deadline = time.monotonic() + self._write_timeout
            self._writing[conn] = None
            self._next_expiry = min(self._next_expiry, conn.deadline)
            self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
            return
        self._await_next(conn)

    def _await_next(self, conn: _Connection) -> None:
        if self._stopping:
            self._drop(conn)
            return
        conn.request = None
        conn.deadline = time.monotonic() + self._keepalive_timeout
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)
        self._watch(conn)
        if conn.buffer:
            self._check_request(conn)  # a pipelined request

    def _write_some(self, conn: _Connection) -> None:
        outgoing = conn.outgoing
        assert outgoing is not None
        try:
            sent = conn.sock.send(outgoing)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        conn.outgoing = outgoing[sent:] if sent < len(outgoing) else None
        if conn.outgoing is not None:
            return
        self._writing.pop(conn, None)
        self._selector.unregister(conn.sock)
        if conn.close_after:
            self._close(conn)
        else:
            self._await_next(conn)

    def _expire(self, now: float) -> None:
        upcoming = float("inf")
        for group in (self._waiting, self._writing):
            for conn in list(group):
                if conn.deadline <= now:
                    self._count("timed_out")
                    self._drop(conn)
                else:
                    upcoming = min(upcoming, conn.deadline)
        self._next_expiry = upcoming

    def _refuse(self, conn: _Connection, status: int) -> None:
        """Answer a request the selector thread refuses itself (a head too large), then close."""
        self._count("bad_requests")
        body = f"{_reason(status).lower()}\n".encode()
        self._answer_now(conn.sock, _render(status, [_TEXT], body, head_only=False, close=True))
        self._drop(conn)

    @staticmethod
    def _answer_now(sock: socket.socket, data: bytes) -> None:
        """Best effort, never blocking: a short answer fits the socket's send buffer."""
        try:
            sock.setblocking(False)
            sock.send(data)
        except OSError:
            pass

    def _drop(self, conn: _Connection) -> None:
        """Forget and close a connection the selector thread watches."""
        self._waiting.pop(conn, None)
        self._writing.pop(conn, None)
        if not conn.closed:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        self._close(conn)

    def _close(self, conn: _Connection) -> None:
        """Close a connection once (any thread that owns it)."""
        if conn.closed:
            return
        conn.closed = True
        conn.sock.close()
        self._closed_one()

    def _closed_one(self) -> None:
        with self._lock:
            self._open -= 1

    def _drain_waker(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (the loop is awake anyway) or closed (the loop is gone)
            self._wake_w.send(b"\0")

    def _close_everything(self) -> None:
        for conn in [*self._waiting, *self._writing]:
            self._drop(conn)
        while self._returned:
            self._close(self._returned.popleft())
        self._selector.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- workers ----------------------------------------------------------------------------------------------------
    def _work(self, urgent_only: bool) -> None:
        while True:
            conn = self._queue.get(urgent_only)
            if conn is None:
                return
            if not urgent_only:
                self._selector_idle.wait(_YIELD_TO_SELECTOR)
            try:
                keep = self._serve(conn)
            except Exception:
                self._warn_once("serve", "HTTP request handling failed (logged once)", exc_info=True)
                keep, conn.outgoing = False, None
            if self._stopping or (conn.outgoing is None and not keep):
                self._close(conn)
                continue
            conn.close_after = not keep
            self._returned.append(conn)
            self._wake()

    def _serve(self, conn: _Connection) -> bool:
        """Answer the request of ``conn``; True to keep the connection for another request."""
        request = conn.request
        assert request is not None
        conn.requests += 1
        head_only = request.method == "HEAD"
        if request.error is not None:
            self._count("bad_requests")
            status, headers, body = request.error, [_TEXT], f"{_reason(request.error).lower()}\n".encode()
        else:
            status, headers, body = self._respond(request, conn.peer)
        keep = (
            request.error is None
            and request.body_complete
            and request.version == "HTTP/1.1"
            and "close" not in request.tokens("connection")
            and conn.requests < MAX_KEEPALIVE_REQUESTS
            and not self._stopping
        )
        data = memoryview(_render(status, headers, body, head_only=head_only, close=not keep))
        if keep:
            del conn.buffer[: request.consumed]  # what is left is the next (pipelined) request
        try:
            sent = conn.sock.send(data)  # non-blocking: the selector thread writes what does not fit now
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            conn.outgoing = None
            return False
        conn.outgoing = data[sent:] if sent < len(data) else None
        return keep

    def _respond(self, request: _Request, peer: Any) -> Response:
        method, path = request.method, request.path
        if method not in ("GET", "HEAD"):
            if not self._served(path):
                return 404, [_TEXT], b"not found\n"
            if method == "OPTIONS":
                return 200, [("Allow", _ALLOW)], b""
            return 405, [_TEXT, ("Allow", _ALLOW)], f"method {method} not allowed; use GET or HEAD\n".encode()
        for route in self._routes:
            try:
                response = route(path)
            except Exception:
                _logger.exception("route for %s failed", path)
                response = (500, [_TEXT], b"internal error\n")
            if response is not None:
                return response
        if path in ("/metrics", "/metrics/"):
            return self._call_metrics_app(request, peer)
        if path == "/":
            return 200, [_TEXT], b"otel-telemetry: see /metrics\n"
        return 404, [_TEXT], b"not found\n"

    def _served(self, path: str) -> bool:
        if path in ("/metrics", "/metrics/", "/", "*"):
            return True
        for route in self._routes:
            try:
                if route(path) is not None:
                    return True
            except Exception:
                return True
        return False

    def _call_metrics_app(self, request: _Request, peer: Any) -> Response:
        """prometheus_client's WSGI app (content negotiation, gzip, ``name[]``); HEAD is its GET without body."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": "",
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query,
            "SERVER_NAME": self.host or "0.0.0.0",
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": str(peer[0]) if isinstance(peer, tuple) and peer else "",
            "CONTENT_LENGTH": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
            if name in ("content-type", "content-length"):
                continue
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: list[Any] = []
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            started[:] = [status, headers]
            return written.append

        result = self._metrics_app(environ, start_response)
        try:
            body = b"".join([*written, *result])
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status_line, headers = started
        return int(str(status_line).split(" ", 1)[0]), list(headers), body

    # -- counting ---------------------------------------------------------------------------------------------------
    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _warn_once(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            _logger.warning(message, *args, exc_info=exc_info)

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 2.0) -> bool:
        """Stop serving and close every socket; True when every server thread ended within ``timeout`` seconds.

        Requests being answered finish (the routes and the app are not interrupted); queued ones are dropped.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._stopping = True
            workers = list(self._workers)
        self._wake()
        for conn in self._queue.close():
            self._close(conn)
        for thread in (self._thread, *workers):
            thread.join(max(0.0, deadline - time.monotonic()))
        stopped = not any(thread.is_alive() for thread in (self._thread, *workers))
        if stopped:
            while self._returned:  # handed back by a worker after the loop had closed everything
                self._close(self._returned.popleft())
        return stopped
