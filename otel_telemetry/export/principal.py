"""Pushes the spec's JSON payload to the API principal: ``POST {endpoint}/api/v1/telemetry`` every few seconds.

:class:`PrincipalExporter` runs two daemon threads. The *generator* (``otel-telemetry-principal-generate``) asks a
``payload()`` callable for the body once per ``interval`` and queues it in a bounded FIFO buffer, whatever delivery
is doing; the *sender* (``otel-telemetry-principal-send``) delivers the buffer oldest first. A payload leaves the
buffer only when the principal answers 2xx; connection errors, timeouts, 408, 429 and 5xx keep it and retry with
capped exponential backoff and full jitter (or wait as ``Retry-After`` says); 401/403 and other 4xx drop the
rejected payload. Nothing is lost silently: every payload that does not reach the principal is counted in
:attr:`PrincipalStats.dropped_by_reason`, so that ``generated == sent + dropped + pending`` at every moment, and the
first occurrence of each kind of problem is logged. Each payload carries an ``Idempotency-Key`` header, the same on
every retry of it, so that a principal can de-duplicate a retry whose first attempt arrived but whose answer did
not. The server token is sent only in the ``Authorization`` header and never appears in logs, exception messages,
``repr`` or metrics; logs and errors name the principal by ``scheme://host:port`` only.

HTTP itself is :mod:`otel_telemetry.delivery`, shared with the alert webhooks: one total deadline per attempt, no
redirects followed (a redirect could carry the token to another host), no proxies from the environment, and HTTPS
verifying certificates with the default SSL context unless ``ssl_context`` is given.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import quote

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_telemetry.delivery import (
    Endpoint,
    Outcome,
    backoff_delay,
    check_http_url,
    check_token,
    check_token_transport,
)
from otel_telemetry.snapshot.payload import encode_payload

_logger = logging.getLogger(__name__)

#: Path of the telemetry endpoint under the principal's base URL (spec, "API Integration").
TELEMETRY_PATH = "/api/v1/telemetry"

#: The request header carrying each payload's key (IETF httpapi "The Idempotency-Key HTTP Header Field").
IDEMPOTENCY_HEADER = "Idempotency-Key"

#: Why payloads are dropped: evicted from a full buffer, refused with 401/403, refused with another 4xx, or still
#: pending when ``shutdown`` ran out of time.
DROP_REASONS: Final = ("buffer_full", "unauthorized", "rejected", "shutdown")

#: Attributes of the self-telemetry instruments.
_ATTRIBUTES: Mapping[str, str] = {"exporter": "principal"}

#: The longest single wait of either thread (seconds); ``threading`` refuses very long timeouts.
_MAX_WAIT = 60.0

#: What ``payload()`` returns: ``(frame sequence, body)``, a bare body (the older form), or None for nothing to send.
PayloadResult = tuple[int, Mapping[str, object]] | Mapping[str, object] | None

_GENERATOR_THREAD = "otel-telemetry-principal-generate"
_SENDER_THREAD = "otel-telemetry-principal-send"


@dataclass(frozen=True)
class PrincipalStats:
    """Counts since the exporter was created (payloads unless noted). A consistent snapshot; immutable.

    ``generated == sent + dropped + pending`` holds in every snapshot.

    Attributes:
        attempts: HTTP requests started (every POST, including retries).
        sent: payloads the principal acknowledged with 2xx.
        failures: attempts that did not end in 2xx, plus ``payload()`` calls that raised or returned something
            that cannot be sent.
        retries: times a payload was kept for another attempt (connection error, timeout, 408, 429, 5xx).
        dropped: payloads removed without delivery, all reasons (the sum of ``dropped_by_reason``).
        auth_failures: responses 401 or 403.
        rate_limited: responses 429.
        pending: payloads waiting in the buffer now, the one being sent included.
        generated: payloads built and queued (one per interval and per ``send_now``, unless unchanged).
        unchanged: ``payload()`` results skipped because their frame sequence had been queued already.
        missed_intervals: intervals for which no payload was built because the generator fell behind (a
            ``payload()`` call slower than the interval, a suspended process).
        dropped_by_reason: ``dropped`` by reason, every one of :data:`DROP_REASONS` present: ``buffer_full``,
            ``unauthorized`` (401/403), ``rejected`` (other 4xx), ``shutdown``.
        failing: True while the latest delivery attempt failed (from the first failure until an attempt succeeds).
    """

    attempts: int
    sent: int
    failures: int
    retries: int
    dropped: int
    auth_failures: int
    rate_limited: int
    pending: int
    generated: int
    unchanged: int
    missed_intervals: int
    dropped_by_reason: Mapping[str, int]
    failing: bool


@dataclass(frozen=True, slots=True)
class _Payload:
    """One queued payload: its body and the key every attempt at it carries."""

    key: str
    body: bytes


def _bad(field: str, value: object, why: str) -> ValueError:
    return ValueError(f"PrincipalExporter.{field}: {why}, got {value!r}")


def _positive(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(field, value, "expected a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise _bad(field, value, "must be a positive, finite number of seconds")
    return float(value)


def _user_agent() -> str:
    # Imported late: the bootstrap imports this module while the package is still initialising.
    try:
        from otel_telemetry._version import __version__
    except ImportError:  # pragma: no cover - only while the package is half-initialised
        __version__ = "unknown"
    return f"otel-telemetry/{__version__}"


def _unpack(result: object) -> tuple[int | None, Mapping[str, object]]:
    """``(sequence or None, body)`` from what ``payload()`` returned (not None); TypeError when unusable."""
    if isinstance(result, tuple):
        if (
            len(result) == 2
            and isinstance(result[0], int)
            and not isinstance(result[0], bool)
            and isinstance(result[1], Mapping)
        ):
            return result[0], result[1]
        raise TypeError("payload() must return (sequence: int, body: mapping), a mapping or None; got a bad tuple")
    if isinstance(result, Mapping):
        return None, result
    raise TypeError(f"payload() must return (sequence, mapping), a mapping or None, got {type(result).__name__}")


class PrincipalExporter:
    """Sends ``payload()`` as JSON to ``POST {endpoint}/api/v1/telemetry``, one payload every ``interval`` seconds.

    One thread builds the payloads, another delivers them, so generation never waits for delivery: against a slow
    or hanging principal one payload per interval is still built and buffered (a missed interval is counted).

    Each request carries ``Idempotency-Key: "<server id>:<run>:<sequence>"`` (a Structured Field string, as the IETF
    httpapi draft "The Idempotency-Key HTTP Header Field" specifies), the same on every retry of one payload and
    different for every payload: ``server id`` is ``server_id`` or the body's ``"server_id"`` (percent-encoded),
    ``run`` is 16 random hex digits drawn when the exporter is created (the frame sequence restarts at 1 with
    every process, and must not collide with a previous run's keys), and ``sequence`` is the frame's sequence (or
    the payload's number, from 1, when ``payload()`` returns a bare mapping). A principal that stores the keys it
    has accepted can answer a repeated key 2xx without storing the body twice.

    Args:
        endpoint: the principal's base URL (``http://`` or ``https://``, no trailing path ``/api/v1/telemetry``).
        token: the server token, sent as ``Authorization: Bearer <token>``; None sends no ``Authorization`` header.
            Over plain ``http://`` it is refused (``ValueError``) unless the host is loopback (``localhost``,
            ``127.0.0.0/8``, ``::1``) or ``allow_insecure_token`` is True.
        payload: returns ``(frame sequence, body)`` (body: a JSON-serialisable mapping), a bare body, or None when
            there is nothing to send. A sequence not above the last one queued is skipped (counted in
            ``unchanged``): each frame is pushed once. Called on the generator thread only; an exception is logged
            once, counted in ``failures``, and the loop continues.
        interval: seconds between payloads (spec default 5 s).
        buffer_size: payloads kept while the principal is unreachable (the one being sent included); when full,
            the oldest is dropped and counted (``buffer_full``). When the oldest is the one being sent, it is
            dropped when its attempt fails (sent if it succeeds), so ``pending`` may show one more meanwhile.
        timeout: seconds one HTTP attempt may take in total (connect, send and answer), however the principal
            trickles its answer; an attempt past it is abandoned, counted as a failure and retried.
        initial_backoff, max_backoff: retry delays, seconds: ``initial_backoff`` doubling per consecutive failure,
            capped at ``max_backoff``, each drawn uniformly from ``[0, cap]`` (full jitter).
        ssl_context: overrides the default (certificate-verifying) context for ``https://`` endpoints.
        meter: when given, the exporter reports its own counters (``telemetry.exporter.*``) through it.
        server_id: names the server in the idempotency key; None takes the body's ``"server_id"``.
        allow_insecure_token: send ``token`` over plain ``http://`` to a host that is not loopback.
        on_attempt: called with ``("principal", delivered)`` after each delivery attempt, on the sender thread
            (the handle's ``export`` hooks); it must not raise.
        clock, sleep, rng: injectable time source (seconds), wait and jitter source, for tests. ``sleep`` serves the
            sender's backoff waits only; by default they use a ``threading.Event`` so ``shutdown`` interrupts them,
            an injected ``sleep`` cannot be interrupted, so keep it short.

    Thread-safety: every public method may be called from any thread; ``start``, ``send_now`` and ``stats`` never
    block on the network, and ``shutdown`` returns within its timeout.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        token: str | None,
        payload: Callable[[], PayloadResult],
        interval: float = 5.0,
        buffer_size: int = 120,
        timeout: float = 5.0,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        meter: Meter | None = None,
        server_id: str | None = None,
        allow_insecure_token: bool = False,
        on_attempt: Callable[[str, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._endpoint, parts = check_http_url("PrincipalExporter", "endpoint", endpoint)
        checked_token = check_token("PrincipalExporter", token)
        if not isinstance(allow_insecure_token, bool):
            raise _bad("allow_insecure_token", allow_insecure_token, "expected True or False")
        check_token_transport("PrincipalExporter", "endpoint", parts, checked_token, allow=allow_insecure_token)
        if not callable(payload):
            raise _bad("payload", payload, "expected a callable returning (sequence, mapping), a mapping or None")
        self._payload = payload
        self._interval = _positive("interval", interval)
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise _bad("buffer_size", buffer_size, "expected an integer of at least 1")
        self._buffer_size = buffer_size
        self._timeout = _positive("timeout", timeout)
        self._initial_backoff = _positive("initial_backoff", initial_backoff)
        self._max_backoff = _positive("max_backoff", max_backoff)
        if self._max_backoff < self._initial_backoff:
            raise _bad("max_backoff", max_backoff, f"must be at least initial_backoff ({initial_backoff!r})")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise _bad("ssl_context", ssl_context, "expected an ssl.SSLContext or None")
        if server_id is not None and (not isinstance(server_id, str) or not server_id):
            raise _bad("server_id", server_id, "expected a non-empty string or None")
        self._server_id = server_id
        self._run_id = secrets.token_hex(8)
        self._clock = clock
        self._sleep = sleep
        self._on_attempt = on_attempt
        self._rng = rng if rng is not None else random.Random()
        self._http = Endpoint(
            "PrincipalExporter",
            "endpoint",
            self._endpoint,
            token=checked_token,
            base=True,
            suffix=TELEMETRY_PATH,
            headers={"Accept": "application/json", "User-Agent": _user_agent()},
            ssl_context=ssl_context,
        )
        self._url = self._http.url
        self._shown = self._http.origin  # what logs show: no path (a base path may name a tenant)

        # One lock guards the buffer, the counters and the lifecycle flags; both threads and ``stats`` take it.
        # The payload being sent is out of the buffer (``_sending``) and counted in ``pending`` until it is settled.
        self._lock = threading.Lock()
        self._buffer: deque[_Payload] = deque()
        self._sending: _Payload | None = None
        self._sending_evicted = False  # the buffer overflowed during its attempt: dropped unless delivered
        self._requests = 0
        self._attempts = 0
        self._sent = 0
        self._failures = 0
        self._retries = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._auth_failures = 0
        self._rate_limited = 0
        self._generated = 0
        self._unchanged = 0
        self._missed = 0
        self._numbered = 0  # payloads numbered by us (bare-mapping form)
        self._last_sequence: int | None = None  # the last frame sequence queued
        self._failing = False
        self._streak = 0  # consecutive attempts kept for retry
        self._next_attempt = 0.0  # on ``clock``
        self._logged: set[str] = set()

        self._threads: list[threading.Thread] = []
        self._closing = False
        self._abandoned = False  # shutdown counted what was left: whatever settles later is counted by itself
        self._generator_done = False
        self._drain_deadline = math.inf  # on time.monotonic: sockets and thread joins run in real time
        self._generator_wake = threading.Event()
        self._sender_wake = threading.Event()
        self._cancel = threading.Event()  # abandons the attempt in flight at the drain deadline

        if meter is not None:
            self._instrument(meter)

    def __repr__(self) -> str:
        pending = self.stats.pending
        return f"PrincipalExporter(endpoint={self._shown!r}, interval={self._interval!r}, pending={pending})"

    @property
    def endpoint(self) -> str:
        """The principal's base URL, as configured (no trailing slash)."""
        return self._endpoint

    @property
    def url(self) -> str:
        """The full URL payloads are posted to (``{endpoint}/api/v1/telemetry``)."""
        return self._url

    @property
    def stats(self) -> PrincipalStats:
        """Counts since creation (see :class:`PrincipalStats`); a consistent snapshot, never blocks on I/O."""
        with self._lock:
            return PrincipalStats(
                attempts=self._attempts,
                sent=self._sent,
                failures=self._failures,
                retries=self._retries,
                dropped=sum(self._dropped.values()),
                auth_failures=self._auth_failures,
                rate_limited=self._rate_limited,
                pending=self._pending(),
                generated=self._generated,
                unchanged=self._unchanged,
                missed_intervals=self._missed,
                dropped_by_reason=MappingProxyType(dict(self._dropped)),
                failing=self._failing,
            )

    def _pending(self) -> int:
        return len(self._buffer) + (self._sending is not None)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the generator and sender daemon threads (idempotent; does nothing after ``shutdown``)."""
        with self._lock:
            if self._threads or self._closing:
                return
            self._start_threads()

    def _start_threads(self) -> None:
        self._threads = [
            threading.Thread(target=self._generate_loop, name=_GENERATOR_THREAD, daemon=True),
            threading.Thread(target=self._send_loop, name=_SENDER_THREAD, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def send_now(self) -> None:
        """Ask for one payload now: the generator thread calls ``payload()`` and queues the result.

        Returns immediately. Requests made before ``start`` are served once the threads run, or by ``shutdown``.
        Ignored after ``shutdown``.
        """
        with self._lock:
            if self._closing:
                return
            self._requests += 1
        self._generator_wake.set()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop generating, try to deliver what is pending within ``timeout`` seconds, then stop both threads.

        Outstanding ``send_now`` requests are served first. Delivery goes on, oldest first, while time is left
        (retries after a backoff that ends in time); the attempt in flight at the deadline is abandoned. Whatever is
        still pending then is counted as dropped with reason ``"shutdown"``. Returns True when everything was
        delivered (or rejected and counted) and both threads are gone; False when anything was left or a thread is
        still alive (``payload()`` still running, or a name lookup the deadline cannot interrupt). Idempotent;
        always returns within ``timeout`` (real seconds) plus a few milliseconds, however the principal behaves.
        """
        timeout = max(0.0, timeout) if math.isfinite(timeout) else 3600.0
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._closing:
                self._closing = True
                # The threads stop a little before the deadline, so that joining them fits within it.
                self._drain_deadline = deadline - min(0.2, timeout / 4)
                self._next_attempt = self._clock()  # the drain starts at once, whatever the backoff said
                if not self._threads and (self._requests or self._buffer):
                    self._start_threads()  # never started: serve the requests on threads, bounded by the deadline
            threads = list(self._threads)
            drain_deadline = self._drain_deadline
        self._generator_wake.set()
        self._sender_wake.set()
        for thread in threads:
            thread.join(max(0.0, drain_deadline - time.monotonic()))
        self._cancel.set()  # an attempt still in flight (begun with a longer timeout) ends now
        self._sender_wake.set()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._abandoned = True
            left = self._pending() + self._requests
            dropped = len(self._buffer)
            self._buffer.clear()
            self._dropped["shutdown"] += dropped
            self._requests = 0
            alive = [thread.name for thread in threads if thread.is_alive()]
        if dropped:
            _logger.warning(
                "API principal %s: %d payload(s) could not be delivered before shutdown's deadline; dropped "
                "(counted in stats.dropped_by_reason['shutdown'])",
                self._shown,
                dropped,
            )
        return not alive and left == 0

    # -- the generator thread ----------------------------------------------------------------------------------

    def _generate_loop(self) -> None:
        try:
            next_at = self._clock() + self._interval
            while True:
                self._serve_requests()
                with self._lock:
                    if self._closing:
                        return
                now = self._clock()
                if now >= next_at:
                    self._generate()
                    next_at += self._interval
                    now = self._clock()
                    if next_at <= now:  # fell behind (a slow payload(), a suspended process): count, don't burst
                        missed = math.floor((now - next_at) / self._interval) + 1
                        next_at += missed * self._interval
                        self._missed_intervals(missed)
                self._generator_wake.wait(min(_MAX_WAIT, max(0.0, next_at - self._clock())))
                self._generator_wake.clear()
        except Exception:  # pragma: no cover - every step is isolated; this is the last line of defence
            _logger.error("the API principal generator stopped unexpectedly:\n%s", self._traceback())
        finally:
            with self._lock:
                self._generator_done = True
            self._sender_wake.set()

    def _serve_requests(self) -> None:
        with self._lock:
            requested, self._requests = self._requests, 0
        for _ in range(requested):
            self._generate()

    def _missed_intervals(self, missed: int) -> None:
        with self._lock:
            self._missed += missed
        self._log_once(
            "missed",
            logging.WARNING,
            "API principal %s: payload generation fell %d interval(s) behind (payload() slower than the interval, "
            "or the process was suspended); logged once, counted in stats.missed_intervals",
            self._shown,
            missed,
        )

    def _generate(self) -> None:
        """Call ``payload()`` (isolated) and queue its body; evict the oldest payload when the buffer is full."""
        try:
            result = self._payload()
            if result is None:
                return
            sequence, data = _unpack(result)
            with self._lock:
                if sequence is not None and self._last_sequence is not None and sequence <= self._last_sequence:
                    self._unchanged += 1
                    return
            body = encode_payload(data)
        except Exception:
            with self._lock:
                self._failures += 1
            self._log_once(
                "payload",
                logging.ERROR,
                "building the API principal payload failed (logged once; counted in stats.failures):\n%s",
                self._traceback(),
            )
            return
        self._enqueue(sequence, data, body)

    def _key(self, sequence: int, data: Mapping[str, object]) -> str:
        server = self._server_id
        if server is None:
            found = data.get("server_id")
            server = found if isinstance(found, str) else ""
        return f'"{quote(server, safe="")}:{self._run_id}:{sequence}"'

    def _enqueue(self, sequence: int | None, data: Mapping[str, object], body: bytes) -> None:
        with self._lock:
            if sequence is None:
                self._numbered += 1
                number = self._numbered
            else:
                self._last_sequence = number = sequence
            self._generated += 1
            if self._abandoned:  # shutdown already counted what was left; a late payload is counted likewise
                self._dropped["shutdown"] += 1
                return
            evicted = self._pending() - self._sending_evicted >= self._buffer_size
            if evicted:
                if self._sending is not None and not self._sending_evicted:
                    self._sending_evicted = True  # the oldest is in flight: dropped when it settles, unless delivered
                else:
                    self._buffer.popleft()
                    self._dropped["buffer_full"] += 1
            self._buffer.append(_Payload(self._key(number, data), body))
        self._sender_wake.set()
        if evicted:
            self._log_once(
                "overflow",
                logging.WARNING,
                "API principal %s: buffer full (%d payloads); dropping the oldest (logged once; counted in "
                "stats.dropped_by_reason['buffer_full'])",
                self._shown,
                self._buffer_size,
            )

    # -- the sender thread -------------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            while self._send_step():
                pass
        except Exception:  # pragma: no cover - every step is isolated; this is the last line of defence
            _logger.error("the API principal sender stopped unexpectedly:\n%s", self._traceback())

    def _send_step(self) -> bool:
        """Wait for the next due payload and make one attempt at it. False when the sender is done."""
        self._sender_wake.clear()
        with self._lock:
            closing, done, abandoned = self._closing, self._generator_done, self._abandoned
            has_work = bool(self._buffer)
            due_in = self._next_attempt - self._clock()
            drain_left = self._drain_deadline - time.monotonic()
        if abandoned or (closing and (drain_left <= 0 or (not has_work and done))):
            return False
        if not has_work:
            self._sender_wake.wait(min(_MAX_WAIT, drain_left))
            return True
        if due_in > 0:
            if closing and due_in >= drain_left:
                return False  # the next attempt would start after the deadline: give up
            if self._sleep is not None:
                self._sleep(due_in)
            else:
                self._sender_wake.wait(min(_MAX_WAIT, due_in))
            return True
        with self._lock:
            entry = self._sending = self._buffer.popleft()
            self._sending_evicted = False
            self._attempts += 1
        timeout = min(self._timeout, drain_left) if closing else self._timeout
        outcome = self._http.post(entry.body, timeout, headers={IDEMPOTENCY_HEADER: entry.key}, cancel=self._cancel)
        if self._on_attempt is not None:
            self._on_attempt("principal", outcome.delivered)
        if outcome.delivered:
            self._delivered()
        elif outcome.retryable:
            self._keep(entry, outcome)
        else:
            self._reject(outcome)
        return True

    def _delivered(self) -> None:
        with self._lock:
            self._sending = None
            self._sent += 1
            self._failing = False
            recovered, self._streak = self._streak, 0
            self._next_attempt = self._clock()
        if recovered:
            _logger.info("API principal %s reachable again after %d failed attempt(s)", self._shown, recovered)

    def _reject(self, outcome: Outcome) -> None:
        """The payload was refused (401, 403, other 4xx): drop it, count it, log once per status."""
        auth = outcome.auth_failure
        with self._lock:
            self._sending = None
            self._dropped["unauthorized" if auth else "rejected"] += 1
            self._failures += 1
            self._failing = True
            self._auth_failures += int(auth)
            self._streak = 0
            self._next_attempt = self._clock()
        if auth:
            self._log_once(
                f"status-{outcome.status}",
                logging.ERROR,
                "API principal %s rejected the server token: %s; each rejected payload is dropped "
                "(logged once per status; counted in stats.auth_failures and stats.dropped). Check the server token.",
                self._shown,
                outcome.describe(),
            )
        else:
            self._log_once(
                f"status-{outcome.status}",
                logging.ERROR,
                "API principal %s rejected a payload: %s%s; the payload is dropped (logged once per status; "
                "counted in stats.dropped)",
                self._shown,
                outcome.describe(),
                f" ({outcome.body})" if outcome.body else "",
            )

    def _keep(self, entry: _Payload, outcome: Outcome) -> None:
        """The attempt failed but may succeed later: requeue the payload at the head (unless the buffer overflowed
        meanwhile or shutdown gave it up) and schedule the next attempt after ``Retry-After`` or a jittered backoff."""
        with self._lock:
            self._sending = None
            self._failures += 1
            self._failing = True
            self._rate_limited += outcome.status == 429
            if self._abandoned:
                self._dropped["shutdown"] += 1
            elif self._sending_evicted:
                self._dropped["buffer_full"] += 1
            else:
                self._buffer.appendleft(entry)
                self._retries += 1
            self._streak += 1
            streak = self._streak
            retry_after = outcome.retry_after
            if retry_after is not None and retry_after > 0:
                delay = retry_after
            else:
                delay = backoff_delay(streak, self._initial_backoff, self._max_backoff, self._rng)
            self._next_attempt = self._clock() + delay
            pending = self._pending()
        if streak == 1:
            _logger.warning(
                "API principal %s: delivery failed (%s); keeping %d payload(s) and retrying with backoff "
                "(logged once per outage; counted in stats.failures and stats.retries)",
                self._shown,
                outcome.describe(),
                pending,
            )

    # -- logging and self-telemetry ----------------------------------------------------------------------------

    def _traceback(self) -> str:
        return self._http.redact(traceback.format_exc().rstrip())

    def _log_once(self, key: str, level: int, message: str, *args: object) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        _logger.log(level, message, *args)

    def _instrument(self, meter: Meter) -> None:
        def observe(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                return [Observation(getattr(self.stats, field), _ATTRIBUTES)]

            return callback

        descriptions = {
            "attempts": "HTTP requests made to the API principal, retries included",
            "failures": "API principal attempts that did not succeed, and payloads that could not be built",
            "retries": "Payloads kept for another attempt after a retryable failure",
            "dropped": "Payloads that never reached the API principal (buffer overflow, rejected, shutdown)",
        }
        for field, description in descriptions.items():
            meter.create_observable_counter(
                f"telemetry.exporter.{field}", callbacks=[observe(field)], unit="{payload}", description=description
            )
        meter.create_observable_up_down_counter(
            "telemetry.exporter.pending",
            callbacks=[observe("pending")],
            unit="{payload}",
            description="Payloads waiting in the exporter's buffer",
        )
