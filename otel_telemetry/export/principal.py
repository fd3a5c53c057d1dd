"""Pushes the spec's JSON payload to the API principal: ``POST {endpoint}/api/v1/telemetry`` every few seconds.

:class:`PrincipalExporter` runs one daemon thread that, every ``interval`` seconds, asks a ``payload()`` callable for
the body, queues it in a bounded FIFO buffer and delivers the buffer oldest first. A payload leaves the buffer only
when the principal answers 2xx; connection errors, timeouts, 408, 429 and 5xx keep it and retry with capped
exponential backoff and full jitter (or wait as ``Retry-After`` says); 401/403 and other 4xx drop the rejected payload.
Nothing is lost silently: every payload that does not reach the principal is counted in :attr:`PrincipalStats.dropped`
and the first occurrence of each kind of problem is logged. The server token is sent only in the ``Authorization``
header and never appears in logs, exception messages, ``repr`` or metrics; logs name the principal by
``scheme://host:port`` only.

HTTP itself is :mod:`otel_telemetry.delivery`, shared with the alert webhooks: one total deadline per attempt, no
redirects followed (a redirect could carry the token to another host), no proxies from the environment, and HTTPS
verifying certificates with the default SSL context unless ``ssl_context`` is given.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_telemetry.delivery import Endpoint, Outcome, backoff_delay, check_http_url, check_token
from otel_telemetry.snapshot.payload import encode_payload

_logger = logging.getLogger(__name__)

#: Path of the telemetry endpoint under the principal's base URL (spec, "API Integration").
TELEMETRY_PATH = "/api/v1/telemetry"

#: Attributes of the self-telemetry instruments.
_ATTRIBUTES: Mapping[str, str] = {"exporter": "principal"}


@dataclass(frozen=True)
class PrincipalStats:
    """Counts since the exporter was created (payloads unless noted). A consistent snapshot; immutable.

    Attributes:
        attempts: HTTP requests started (every POST, including retries).
        sent: payloads the principal acknowledged with 2xx.
        failures: attempts that did not end in 2xx, plus ``payload()`` calls that raised or returned something
            that cannot be sent.
        retries: times a payload was kept for another attempt (connection error, timeout, 408, 429, 5xx).
        dropped: payloads removed without delivery: oldest evicted from a full buffer, rejected with 4xx.
        auth_failures: responses 401 or 403.
        rate_limited: responses 429.
        pending: payloads waiting in the buffer now.
    """

    attempts: int
    sent: int
    failures: int
    retries: int
    dropped: int
    auth_failures: int
    rate_limited: int
    pending: int


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


class PrincipalExporter:
    """Sends ``payload()`` as JSON to ``POST {endpoint}/api/v1/telemetry`` every ``interval`` seconds.

    Args:
        endpoint: the principal's base URL (``http://`` or ``https://``, no trailing path ``/api/v1/telemetry``).
        token: the server token, sent as ``Authorization: Bearer <token>``; None sends no ``Authorization`` header.
        payload: returns the body (a JSON-serialisable mapping) or None when there is nothing to send. Called on the
            exporter's thread only; an exception is logged once, counted in ``failures``, and the loop continues.
        interval: seconds between payloads (spec default 5 s).
        buffer_size: payloads kept while the principal is unreachable; when full, the oldest is dropped and counted.
        timeout: seconds one HTTP attempt may take in total (connect, send and answer).
        initial_backoff, max_backoff: retry delays, seconds: ``initial_backoff`` doubling per consecutive failure,
            capped at ``max_backoff``, each drawn uniformly from ``[0, cap]`` (full jitter).
        ssl_context: overrides the default (certificate-verifying) context for ``https://`` endpoints.
        meter: when given, the exporter reports its own counters (``telemetry.exporter.*``) through it.
        clock, sleep, rng: injectable time source (seconds), wait and jitter source, for tests. By default waits use
            a ``threading.Event`` so ``send_now`` and ``shutdown`` interrupt them; an injected ``sleep`` cannot be
            interrupted, so keep it short.

    Thread-safety: every public method may be called from any thread; ``start``, ``send_now`` and ``stats`` never
    block on the network, and ``shutdown`` returns within its timeout.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        token: str | None,
        payload: Callable[[], Mapping[str, object] | None],
        interval: float = 5.0,
        buffer_size: int = 120,
        timeout: float = 5.0,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._endpoint = self._parse_endpoint(endpoint)
        check_token("PrincipalExporter", token)
        if not callable(payload):
            raise _bad("payload", payload, "expected a callable returning a mapping or None")
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
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._http = Endpoint(
            "PrincipalExporter",
            "endpoint",
            self._endpoint,
            token=token,
            base=True,
            suffix=TELEMETRY_PATH,
            headers={"Accept": "application/json", "User-Agent": _user_agent()},
            ssl_context=ssl_context,
        )
        self._url = self._http.url
        self._shown = self._http.origin  # what logs show: no path (a base path may name a tenant)

        # One lock guards the buffer, the counters and the lifecycle flags. The buffer is only mutated on the
        # exporter's thread; the lock makes ``stats`` a consistent snapshot from any thread.
        self._lock = threading.Lock()
        self._buffer: deque[bytes] = deque()
        self._requests = 0
        self._attempts = 0
        self._sent = 0
        self._failures = 0
        self._retries = 0
        self._dropped = 0
        self._auth_failures = 0
        self._rate_limited = 0
        self._streak = 0  # consecutive attempts kept for retry
        self._next_attempt = 0.0  # on ``clock``
        self._logged: set[str] = set()

        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline = math.inf  # on time.monotonic: sockets and thread joins run in real time
        self._stop = threading.Event()
        self._wake = threading.Event()

        if meter is not None:
            self._instrument(meter)

    @staticmethod
    def _parse_endpoint(endpoint: object) -> str:
        return check_http_url("PrincipalExporter", "endpoint", endpoint)[0]

    def __repr__(self) -> str:
        pending = self.stats.pending
        return f"PrincipalExporter(endpoint={self._endpoint!r}, interval={self._interval!r}, pending={pending})"

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
                dropped=self._dropped,
                auth_failures=self._auth_failures,
                rate_limited=self._rate_limited,
                pending=len(self._buffer),
            )

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the exporter's daemon thread (idempotent; does nothing after ``shutdown``)."""
        with self._lock:
            if self._thread is not None or self._closing:
                return
            self._thread = self._new_thread()
            self._thread.start()

    def send_now(self) -> None:
        """Ask for one payload now: the exporter's thread calls ``payload()`` and queues the result.

        Returns immediately. Requests made before ``start`` are served once the thread runs, or by ``shutdown``.
        Ignored after ``shutdown``.
        """
        with self._lock:
            if self._closing:
                return
            self._requests += 1
        self._wake.set()

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop the thread and make one last attempt, within ``timeout`` seconds, to deliver what is pending.

        Outstanding ``send_now`` requests are collected first; delivery stops at the first failure or when the time
        is up. Returns True when nothing is left pending. Idempotent; always returns within ``timeout`` (real
        seconds), even when the principal hangs.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = deadline
            thread = self._thread
            if thread is None and (self._buffer or self._requests):
                # Never started: run the final drain on a thread so the timeout bounds it however the principal behaves.
                thread = self._thread = self._new_thread()
                self._stop.set()
                thread.start()
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            finished = thread is None or not thread.is_alive()
            return finished and not self._buffer and not self._requests

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name="otel-telemetry-principal", daemon=True)

    # -- the exporter's thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # pragma: no cover - the loop isolates every step; this is the last line of defence
            _logger.error("the API principal exporter stopped unexpectedly:\n%s", self._traceback())
        finally:
            self._final_drain()

    def _loop(self) -> None:
        next_collect = self._clock() + self._interval
        while not self._stop.is_set():
            self._collect_requested()
            now = self._clock()
            if now >= next_collect:
                self._collect()
                next_collect += self._interval
                if next_collect <= now:  # fell behind (a slow attempt, a suspended process): skip, don't burst
                    next_collect = now + self._interval
            with self._lock:
                pending = bool(self._buffer)
                next_attempt = self._next_attempt
            if self._stop.is_set():
                break  # shutdown's final drain delivers, with timeouts bounded by its deadline
            if pending and self._clock() >= next_attempt:
                self._deliver_head(self._timeout)
                continue
            wake_at = min(next_collect, next_attempt) if pending else next_collect
            self._wait(wake_at - self._clock())

    def _wait(self, seconds: float) -> None:
        if self._stop.is_set():
            return
        if self._sleep is not None:
            if seconds > 0:
                self._sleep(seconds)
            return
        if seconds > 0:
            self._wake.wait(seconds)
        self._wake.clear()

    def _final_drain(self) -> None:
        with self._lock:
            deadline = self._deadline
        if time.monotonic() >= deadline:
            return
        self._collect_requested()
        while time.monotonic() < deadline:
            with self._lock:
                if not self._buffer:
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._deliver_head(min(self._timeout, remaining)):
                return

    def _collect_requested(self) -> None:
        with self._lock:
            requested, self._requests = self._requests, 0
        for _ in range(requested):
            self._collect()

    def _collect(self) -> None:
        """Call ``payload()`` (isolated) and queue its JSON body; evict the oldest payload when the buffer is full."""
        try:
            data = self._payload()
            if data is None:
                return
            if not isinstance(data, Mapping):
                raise TypeError(f"payload() must return a mapping or None, got {type(data).__name__}")
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
        with self._lock:
            evicted = len(self._buffer) >= self._buffer_size
            if evicted:
                self._buffer.popleft()
                self._dropped += 1
            self._buffer.append(body)
        if evicted:
            self._log_once(
                "overflow",
                logging.WARNING,
                "API principal %s: buffer full (%d payloads); dropping the oldest (logged once; counted in "
                "stats.dropped)",
                self._shown,
                self._buffer_size,
            )

    def _deliver_head(self, timeout: float) -> bool:
        """One attempt at the oldest payload. True when it left the buffer (delivered or rejected), False to retry."""
        with self._lock:
            if not self._buffer:
                return True
            body = self._buffer[0]
            self._attempts += 1
        outcome = self._http.post(body, timeout)
        if outcome.delivered:
            with self._lock:
                self._buffer.popleft()
                self._sent += 1
                recovered, self._streak = self._streak, 0
                self._next_attempt = self._clock()
            if recovered:
                _logger.info("API principal %s reachable again after %d failed attempt(s)", self._shown, recovered)
            return True
        if outcome.retryable:
            if outcome.status == 429:
                with self._lock:
                    self._rate_limited += 1
            self._keep(outcome.describe(), outcome.retry_after)
            return False
        self._reject(outcome)
        return True

    def _reject(self, outcome: Outcome) -> None:
        """The head payload was refused (401, 403, other 4xx): drop it, count it, log once per status."""
        auth = outcome.auth_failure
        with self._lock:
            self._buffer.popleft()
            self._dropped += 1
            self._failures += 1
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

    def _keep(self, why: str, retry_after: float | None) -> None:
        """The head payload stays queued; schedule the next attempt after ``Retry-After`` or a jittered backoff."""
        with self._lock:
            self._failures += 1
            self._retries += 1
            self._streak += 1
            streak = self._streak
            if retry_after is not None and retry_after > 0:
                delay = retry_after
            else:
                delay = backoff_delay(streak, self._initial_backoff, self._max_backoff, self._rng)
            self._next_attempt = self._clock() + delay
            pending = len(self._buffer)
        if streak == 1:
            _logger.warning(
                "API principal %s: delivery failed (%s); keeping %d payload(s) and retrying with backoff "
                "(logged once per outage; counted in stats.failures and stats.retries)",
                self._shown,
                why,
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
            "dropped": "Payloads that never reached the API principal (buffer overflow, rejected with 4xx)",
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
