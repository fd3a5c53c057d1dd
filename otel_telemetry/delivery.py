"""HTTP delivery, the one module that sends anything over HTTP: the API principal push and the alert webhooks.

It checks URLs and tokens once, at setup (:func:`check_http_url`, :func:`check_token`); :class:`Endpoint` POSTs a
body with ``Authorization: Bearer <token>``, bounds each attempt by one total deadline (connect, TLS handshake,
send and the read of the answer together: a server trickling a byte a second cannot hold an attempt past it),
classifies what came back (:class:`Outcome`: delivered, retry, rejected) and never raises; :func:`backoff_delay`
and :func:`retry_after_seconds` say how long to wait before the next attempt. Retrying, buffering and counting are
the callers' (``PrincipalExporter``, ``WebhookNotifier``), which run it on their own threads.

Only the standard library speaks HTTP (``http.client``): redirects are never followed (one could carry the token to
another host), proxies from the environment are not used, and HTTPS verifies certificates with the default SSL
context unless one is given. Requests run with instrumentation suppressed, so that HTTP instrumentations do not
trace or measure telemetry's own delivery. The token never appears in a log, an error, an outcome or a ``repr``;
descriptions of a URL show only ``scheme://host:port``, never its path or query (either may carry a secret), and
:func:`check_token_transport` refuses a token over plain ``http://`` to a host that is not loopback unless allowed.
An attempt in flight can be abandoned from another thread (``post(..., cancel=event)``: a shutdown's deadline).
Name resolution (``getaddrinfo``) is the one step neither the deadline nor a cancel can interrupt.
"""

from __future__ import annotations

import errno
import functools
import io
import ipaddress
import math
import os
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Literal
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    import http.client
    import ssl

    from _typeshed import WriteableBuffer

__all__ = [
    "MAX_RETRY_AFTER",
    "Endpoint",
    "Outcome",
    "backoff_delay",
    "check_http_url",
    "check_token",
    "check_token_transport",
    "classify",
    "is_loopback",
    "origin",
    "retry_after_seconds",
    "shown_url",
]

#: A ``Retry-After`` longer than this (seconds) is clamped, so one bad header cannot stall delivery for days.
MAX_RETRY_AFTER = 3600.0
#: At most this much of an answer's body is read (it only feeds a log line).
_MAX_RESPONSE_BYTES = 4096
_SNIPPET_CHARS = 200
#: Bytes written per socket call, so that the deadline is checked between writes to a slow reader.
_WRITE_CHUNK = 64 * 1024
#: Longest single wait on a socket: the deadline and the cancel event are checked at least this often.
_SLICE = 0.05
#: Statuses worth another attempt: request timeout, rate limited, and every server error.
_RETRY_STATUSES = frozenset({408, 429})


# -- setup checks ----------------------------------------------------------------------------------------------------
def check_http_url(owner: str, field: str, value: object, *, base: bool = True) -> tuple[str, SplitResult]:
    """Validate an ``http://`` or ``https://`` URL with a host; return it (stripped) and its parts.

    A URL carrying credentials (``user:password@``) is refused without echoing it: secrets go in the token, and
    the URL is shown in reprs and logs. ``base=True`` (a base URL such as the principal's) also refuses a query
    string or fragment and drops a trailing slash. Errors are ``ValueError("{owner}.{field}: ...")`` and show the
    URL's scheme, host and port only (:func:`shown_url`): a path or query may carry a secret.
    """
    if not isinstance(value, str):
        raise ValueError(f"{owner}.{field}: expected an http:// or https:// URL, got {value!r}")
    text = value.strip()
    if base:
        text = text.rstrip("/")
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{owner}.{field}: must not carry credentials (user:password@); use the token (value not shown)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{owner}.{field}: expected an http:// or https:// URL with a host, got {shown_url(value)}")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{owner}.{field}: has an invalid port, got {shown_url(value)}") from None
    if any(ch.isspace() or ord(ch) < 0x20 for ch in text):
        raise ValueError(f"{owner}.{field}: must not contain spaces or control characters, got {shown_url(value)}")
    if base and (parts.query or parts.fragment):
        raise ValueError(f"{owner}.{field}: must not carry a query string or fragment, got {shown_url(value)}")
    return text, parts


def shown_url(value: str) -> str:
    """How an error names a URL it refuses: ``repr(value)`` when it has no path, query or fragment; otherwise its
    scheme, host and port only. A value without a host is shown unless it holds a ``?``, ``#`` or ``@``."""
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:  # an unbalanced "[" in the host
        return "a value that is not a URL (not shown)"
    host = parts.hostname
    try:
        port = parts.port
    except ValueError:  # an invalid port: still show the scheme and host
        port = None
    if host:
        if (parts.path or "/") == "/" and not parts.query and not parts.fragment and "@" not in text:
            return repr(value)
        shown = f"[{host}]" if ":" in host else host
        return repr(f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "")) + " (rest not shown)"
    if any(mark in text for mark in "?#@"):
        return "a value with a query, fragment or '@' (not shown)"
    return repr(value)


def check_token(owner: str, token: object) -> str | None:
    """``token`` stripped, or None; ``ValueError("{owner}.token: ...")`` (never showing it) unless it is None or a
    non-empty string without control characters (a header injection would otherwise ride on it)."""
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
        raise ValueError(
            f"{owner}.token: expected None or a non-empty string without control characters (value not shown)"
        )
    return token.strip()


def is_loopback(host: str) -> bool:
    """True for ``localhost`` (and names under ``.localhost``), ``127.0.0.0/8`` and ``::1``."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_token_transport(owner: str, field: str, parts: SplitResult, token: object, *, allow: bool) -> None:
    """Refuse (``ValueError``) to send a token over plain ``http://`` to a host that is not loopback, unless
    ``allow``: anyone on the path could read it. ``https://``, loopback hosts and requests without a token pass."""
    if token is None or allow or parts.scheme != "http" or is_loopback(parts.hostname or ""):
        return
    raise ValueError(
        f"{owner}.{field}: refusing to send the token over plain http:// to {origin(parts)}, which is not a "
        "loopback host (anyone on the path could read it); use https://, or pass allow_insecure_token=True "
        "to accept that risk"
    )


def origin(parts: SplitResult) -> str:
    """``scheme://host:port`` of a checked URL (the default port filled in): how errors and logs name it."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


# -- retry timing ----------------------------------------------------------------------------------------------------
def backoff_delay(failures: int, initial: float, maximum: float = math.inf, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` consecutive failed attempts (1 or more), with full jitter: uniform in
    ``[0, cap]``, ``cap = initial x 2^(failures - 1)`` at most ``maximum``. ``rng`` defaults to ``random``."""
    cap = min(maximum, initial * 2.0 ** min(max(failures, 1) - 1, 64))
    return (rng if rng is not None else random).uniform(0.0, cap)


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), clamped to
    ``[0, MAX_RETRY_AFTER]``; None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # only for HTTP dates, which are rare

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# -- outcomes --------------------------------------------------------------------------------------------------------
Verdict = Literal["delivered", "retry", "rejected"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to. Immutable; every text in it is redacted (no token, no URL path or query).

    Attributes:
        verdict: ``"delivered"`` (2xx), ``"retry"`` (no answer: connection error, timeout, TLS failure; or 408,
            429, 5xx) or ``"rejected"`` (401, 403, any other answer: sending the same body again will not help).
        status: the HTTP status; None when no answer came.
        reason: the HTTP reason phrase, or ``"TimeoutError: ..."`` (the error) when no answer came.
        retry_after: seconds the server asked to wait (``Retry-After`` on a retryable answer), or None.
        body: the start of the answer's body, on one line (at most 200 characters).
    """

    verdict: Verdict
    status: int | None = None
    reason: str = ""
    retry_after: float | None = None
    body: str = ""

    @property
    def delivered(self) -> bool:
        """The server accepted the body (2xx)."""
        return self.verdict == "delivered"

    @property
    def retryable(self) -> bool:
        """Another attempt with the same body may succeed."""
        return self.verdict == "retry"

    @property
    def auth_failure(self) -> bool:
        """The server refused the token (401 or 403)."""
        return self.status in (401, 403)

    def describe(self) -> str:
        """``"HTTP 503 Service Unavailable"``, or the error when no answer came."""
        if self.status is None:
            return self.reason or "no answer"
        return f"HTTP {self.status} {self.reason}".rstrip()


def classify(status: int) -> Verdict:
    """The verdict on an HTTP answer with ``status``."""
    if 200 <= status < 300:
        return "delivered"
    if status in _RETRY_STATUSES or status >= 500:
        return "retry"
    return "rejected"


# -- one attempt -----------------------------------------------------------------------------------------------------
class _Deadline:
    """When one attempt must be over (on ``time.monotonic()``), and the event that abandons it sooner.

    :meth:`wait` is the longest a socket call may block: the time left, at most :data:`_SLICE`, so that a ``cancel``
    set from another thread (a shutdown's deadline) ends the attempt within ``_SLICE`` seconds.
    """

    __slots__ = ("at", "cancel")

    def __init__(self, at: float, cancel: threading.Event | None) -> None:
        self.at = at
        self.cancel = cancel

    def left(self) -> float:
        """Seconds left; ``TimeoutError`` when none are, or when the attempt was cancelled."""
        if self.cancel is not None and self.cancel.is_set():
            raise TimeoutError("the attempt was abandoned (shutting down)")
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the attempt's deadline passed")
        return left

    def wait(self) -> float:
        """Seconds the next blocking socket call may take (raises like :meth:`left`)."""
        left = self.left()
        return min(left, _SLICE) if self.cancel is not None else left


class _DeadlineSocket:
    """The socket of one attempt as ``http.client`` sees it: every write and read ends by the deadline.

    Each socket call waits at most for the time left (in slices when the attempt can be cancelled), and the time
    left is checked before each call, so a peer that reads or writes one byte at a time still cannot hold the
    attempt past its deadline.
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def sendall(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        while view:
            self._sock.settimeout(self._deadline.wait())
            try:
                sent = self._sock.send(view[:_WRITE_CHUNK])
            except TimeoutError:
                continue  # a slice ended: the deadline (or cancel) decides whether to wait again
            view = view[sent:]

    def recv_into(self, buffer: WriteableBuffer) -> int:
        while True:
            self._sock.settimeout(self._deadline.wait())
            try:
                return self._sock.recv_into(buffer)
            except TimeoutError:
                continue

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        self._sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._sock.recv_into(buffer)


_IN_PROGRESS = frozenset({0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, getattr(errno, "WSAEWOULDBLOCK", -1)})


def _connect(host: str, port: int, deadline: _Deadline) -> socket.socket:
    """A TCP connection to ``host:port``, trying each address in turn until the deadline (non-blocking connect,
    polled in slices, so that a cancel also ends a connection that is not answered)."""
    last: OSError | None = None
    for family, kind, proto, _name, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code not in _IN_PROGRESS:
                raise OSError(code, os.strerror(code))
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_WRITE)
                while not selector.select(deadline.wait()):
                    pass
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as error:
            sock.close()
            last = error
            if isinstance(error, TimeoutError):
                break  # the deadline passed or the attempt was cancelled: no time for another address
    raise last if last is not None else OSError("the host name resolved to no address")


#: Opens one attempt's connection: ``(host, port, deadline, TLS context or None)``.
_Opener = Callable[[str, int, _Deadline, "ssl.SSLContext | None"], "http.client.HTTPConnection"]


@functools.cache
def _opener() -> _Opener:
    """The connection class, defined on first use: the configuration imports this module without sending anything,
    and ``http.client`` (with the ``email`` package under it) is not cheap to import."""
    import http.client

    class _Connection(http.client.HTTPConnection):
        """``http.client``'s connection, with a socket bound by one deadline (and TLS when ``context`` is given)."""

        def __init__(self, host: str, port: int, deadline: _Deadline, context: ssl.SSLContext | None) -> None:
            super().__init__(host, port, timeout=deadline.left())
            self._deadline = deadline
            self._context = context

        def connect(self) -> None:
            sock = _connect(self.host, self.port, self._deadline)
            try:
                if self._context is not None:
                    tls = self._context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
                    sock = tls
                    while True:  # in slices: a timed-out handshake step resumes where it stopped
                        tls.settimeout(self._deadline.wait())
                        try:
                            tls.do_handshake()
                            break
                        except TimeoutError:
                            continue
            except BaseException:
                sock.close()
                raise
            self.sock = _DeadlineSocket(sock, self._deadline)  # duck-typed: what http.client calls

    return _Connection


def _default_context() -> ssl.SSLContext:
    import ssl  # only for https:// endpoints

    return ssl.create_default_context()


def _one_line(data: bytes) -> str:
    return " ".join(data.decode("utf-8", "replace").split())[:_SNIPPET_CHARS]


class Endpoint:
    """One URL that bodies are POSTed to, with its token, checked at construction.

    Args:
        owner, field: named in the ``ValueError`` of a bad URL or token (``"WebhookNotifier.url: ..."``).
        url: ``http://`` or ``https://``; with ``base=True`` a base URL (no query, trailing slash dropped) that
            ``suffix`` is appended to (``/api/v1/telemetry``); otherwise posted to as is, query included.
        token: sent as ``Authorization: Bearer <token>``; None sends no ``Authorization`` header.
        headers: more request headers (``Content-Type: application/json`` unless given).
        ssl_context: overrides the default, certificate-verifying context for ``https://``.

    Thread-safe: nothing changes after construction; each :meth:`post` opens and closes its own connection.
    """

    def __init__(
        self,
        owner: str,
        field: str,
        url: object,
        *,
        token: object = None,
        base: bool = False,
        suffix: str = "",
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        text, parts = check_http_url(owner, field, url, base=base)
        self._token = check_token(owner, token)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""  # check_http_url guarantees a host
        self._port = parts.port or (443 if self._https else 80)
        self._target = (parts.path + suffix or "/") + (f"?{parts.query}" if parts.query else "")
        self._url = text + suffix
        self._origin = origin(parts)
        self._context = (ssl_context or _default_context()) if self._https else None
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if self._token is not None:
            self._headers["Authorization"] = f"Bearer {self._token}"
        # Imported by the constructor, not at module level: the configuration imports this module and must not pay
        # for OpenTelemetry's instrumentation utilities; not at the first post either, where the import would hold
        # the GIL for milliseconds on a background thread while the game loop runs.
        from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

        self._suppress = (suppress_instrumentation, suppress_http_instrumentation)
        _opener()  # and http.client, for the same reason

    @property
    def url(self) -> str:
        """The URL posted to (with ``suffix``; with its query string, if any: show :attr:`origin` instead)."""
        return self._url

    @property
    def origin(self) -> str:
        """``scheme://host:port``: how logs and errors name this endpoint."""
        return self._origin

    @property
    def has_token(self) -> bool:
        """True when requests carry an ``Authorization`` header."""
        return self._token is not None

    def __repr__(self) -> str:
        return f"Endpoint({self._origin!r}, token={'***' if self._token else None})"

    def redact(self, text: str) -> str:
        """``text`` with the token replaced by ``***``."""
        return text.replace(self._token, "***") if self._token else text

    def post(
        self,
        body: bytes,
        timeout: float,
        *,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> Outcome:
        """POST ``body``; one attempt, over within ``timeout`` seconds in total. Never raises: a failure to get an
        answer is a ``"retry"`` outcome naming the error (``TimeoutError: ...``, ``ConnectionRefusedError: ...``).

        ``headers`` are added to this request only (an ``Idempotency-Key``). Setting ``cancel`` from another thread
        abandons the attempt within 50 ms (a ``"retry"`` outcome, ``TimeoutError``); name resolution
        (``getaddrinfo``) is the one step neither the deadline nor ``cancel`` can interrupt.
        """
        import http.client  # loaded by the constructor (through _opener): a dictionary look-up here

        quiet, quiet_http = self._suppress
        try:
            deadline = _Deadline(time.monotonic() + timeout, cancel)
            connection = _opener()(self._host, self._port, deadline, self._context)
        except Exception as error:
            return Outcome("retry", reason=self._error(error))
        try:
            # Our own requests must not be traced or measured by HTTP instrumentations.
            with quiet(), quiet_http():
                sent = self._headers if not headers else {**headers, **self._headers}
                connection.request("POST", self._target, body=body, headers=sent)
                response = connection.getresponse()
                status, reason = response.status, self.redact(response.reason or "")
                header = response.getheader("Retry-After")
                try:  # the status decides; the body only feeds a log line, so a slow one costs nothing
                    data = response.read(_MAX_RESPONSE_BYTES)
                except (OSError, http.client.HTTPException):
                    data = b""
        except Exception as error:
            return Outcome("retry", reason=self._error(error))
        finally:
            connection.close()
        verdict = classify(status)
        retry_after = retry_after_seconds(header) if verdict == "retry" else None
        return Outcome(verdict, status, reason, retry_after, self.redact(_one_line(data)))

    def _error(self, error: BaseException) -> str:
        detail = str(error) or "no detail"
        return self.redact(f"{type(error).__name__}: {detail}")
