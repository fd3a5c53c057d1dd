"""Who hears of alerts: :class:`Notifier` and the three the SDK ships (callback, log, webhook).

Notifications come in batches, one per evaluation: the alerts that started firing, the repeats of firing alerts
(every ``cooldown``) and the resolutions. :class:`WebhookNotifier` delivers over HTTP with
:mod:`otel_telemetry.delivery` on its own thread; the others run where notifications are delivered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from otel_telemetry.alerts.model import Alert, AlertState, Severity, _duration

if TYPE_CHECKING:
    from otel_telemetry.delivery import Outcome

__all__ = ["CallbackNotifier", "LogNotifier", "Notifier", "WebhookNotifier"]

_logger = logging.getLogger(__name__)

#: The longest ``Retry-After`` a webhook waits for (seconds): an alert is news, and the queue behind it waits too.
_MAX_WEBHOOK_RETRY_AFTER = 60.0


class Notifier(ABC):
    """Receives alert notifications: alerts that started firing, repeats while firing, and resolutions.

    :meth:`notify` runs on the thread that delivers notifications: :class:`~otel_telemetry.alerts.AlertEvaluator`'s
    worker (off the frame path), or the caller of :meth:`AlertManager.evaluate` when that is called directly. It
    should return quickly; the manager isolates every notifier (an exception is caught, counted in
    ``AlertManager.notification_failures`` and logged once).
    """

    @abstractmethod
    def notify(self, alerts: Sequence[Alert]) -> None:
        """Deliver the notifications of one evaluation (at least one alert)."""

    def close(self, timeout: float = 5.0) -> bool:
        """Release resources, delivering what is queued within ``timeout`` seconds; True when done in time."""
        return True


class CallbackNotifier(Notifier):
    """Calls ``fn(alert)`` for every notified alert, on the thread that delivers notifications (see :class:`Notifier`).

    An exception from ``fn`` is caught per alert (the other alerts are still delivered), counted in ``failures``
    and logged once.
    """

    def __init__(self, fn: Callable[[Alert], object]) -> None:
        if not callable(fn):
            raise ValueError(f"CallbackNotifier.fn: expected a callable, got {fn!r}")
        self._fn = fn
        self.failures = 0
        self._warned = False

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Call the callback once per alert."""
        for alert in alerts:
            try:
                self._fn(alert)
            except Exception:
                self.failures += 1
                if not self._warned:
                    self._warned = True
                    _logger.exception(
                        "alert callback %r failed for %s (logged once; counted in failures)", self._fn, alert.name
                    )

    def __repr__(self) -> str:
        return f"CallbackNotifier({self._fn!r})"


_LEVELS: Mapping[Severity, int] = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}


class LogNotifier(Notifier):
    """Logs every notification: firing alerts at their severity's level, resolutions at INFO.

    Records carry ``alert_name``, ``alert_state``, ``alert_severity`` and ``alert_value`` as ``extra`` fields (the
    JSON log handler writes them out).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger("otel_telemetry.alerts")

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Log one record per alert."""
        for alert in alerts:
            level = logging.INFO if alert.state is AlertState.RESOLVED else _LEVELS[alert.severity]
            summary = alert.annotations.get("description") or alert.annotations.get("summary") or ""
            self.logger.log(
                level,
                "alert %s %s [%s]: %s = %s%s",
                alert.name,
                alert.state.value.upper(),
                alert.severity.value,
                alert.metric,
                "n/a" if alert.value is None else f"{alert.value:g}",
                f" - {summary}" if summary else "",
                extra={
                    "alert_name": alert.name,
                    "alert_state": alert.state.value,
                    "alert_severity": alert.severity.value,
                    "alert_value": alert.value,
                },
            )

    def __repr__(self) -> str:
        return f"LogNotifier({self.logger.name!r})"


class WebhookNotifier(Notifier):
    """POSTs ``{"alerts": [...]}`` (see :meth:`Alert.to_dict`) as JSON to ``url`` from a background thread.

    :meth:`notify` only queues the body (a bounded queue of ``queue_size`` bodies; when full the body is dropped and
    counted in ``dropped``), so evaluation never waits on the network. The worker makes up to ``1 + retries``
    attempts per body, each over within ``timeout`` seconds in total (connect, send and answer). Connection errors,
    timeouts, 408, 429 and 5xx are retried after ``Retry-After`` (at most 60 s) or a jittered backoff, uniform in
    ``[0, backoff x 2^n]`` for the n-th retry; other answers (401, 403, other 4xx) are not retried. With ``token``
    the request carries ``Authorization: Bearer <token>``; the token never appears in logs, errors or ``repr``, and
    logs name the receiver by ``scheme://host:port`` only. Redirects are not followed and proxies are not used (see
    :mod:`otel_telemetry.delivery`).

    Counters: ``sent``, ``failed`` (bodies given up on), ``retried`` (extra attempts), ``dropped``.
    Call :meth:`close` to stop the worker (``AlertManager.close`` and ``AlertEvaluator.close`` do).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        *,
        queue_size: int = 256,
        backoff: float = 0.5,
    ) -> None:
        # HTTP delivery is loaded by the first webhook, not by every handle's log notifier.
        from otel_telemetry.delivery import Endpoint

        self._endpoint = Endpoint(
            "WebhookNotifier", "url", url, token=token, base=False, headers={"User-Agent": "otel-telemetry-alerts"}
        )
        self._timeout = _duration("WebhookNotifier", "timeout", timeout, positive=True)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"WebhookNotifier.retries: expected an integer >= 0, got {retries!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"WebhookNotifier.queue_size: expected an integer >= 1, got {queue_size!r}")
        self._backoff = _duration("WebhookNotifier", "backoff", backoff)
        self._retries = retries
        parts = urlsplit(self._endpoint.url)
        # Shown form: no query string (it may hold a secret of its own); logs show the origin only.
        self._shown = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
        self._origin = self._endpoint.origin
        self._rng = random.Random()
        # Bodies to send; None wakes the worker up to stop. The worker blocks on it: an idle webhook costs nothing.
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self._closing = threading.Event()
        self._deadline = math.inf
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="otel-telemetry-alert-webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The URL posted to, without its query string."""
        return self._shown

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._shown!r}, token={'***' if self._endpoint.has_token else None})"

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Queue one POST with every alert of this evaluation; never blocks."""
        if self._closing.is_set():
            self._count("dropped", 1)
            return
        body = json.dumps({"alerts": [a.to_dict() for a in alerts]}, allow_nan=False).encode("utf-8")
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self._count("dropped", 1)
            self._log_once(
                "full",
                logging.WARNING,
                "alert webhook %s: queue full, notification dropped (logged once; counted in dropped)",
                self._origin,
            )

    def close(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued within ``timeout`` seconds, then stop the worker (the rest is dropped)."""
        with self._lock:
            if not self._closing.is_set():
                self._deadline = time.monotonic() + max(0.0, timeout)
                self._closing.set()
        with contextlib.suppress(queue.Full):
            # Wakes an idle worker; when the queue is full the worker is busy and checks _closing after each body.
            self._queue.put_nowait(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    # -- worker -------------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if self._closing.is_set():
                try:
                    body = self._queue.get_nowait()
                except queue.Empty:
                    return
                if body is not None and time.monotonic() >= self._deadline:
                    self._count("dropped", 1 + self._drain())
                    return
            else:
                body = self._queue.get()
            if body is None:
                continue
            try:
                self._deliver(body)
            except Exception:  # pragma: no cover - delivery never raises; this is the last line of defence
                self._count("failed", 1)
                self._log_once("bug", logging.ERROR, "alert webhook %s: delivery crashed", self._origin)

    def _drain(self) -> int:
        dropped = 0
        while True:
            try:
                body = self._queue.get_nowait()
            except queue.Empty:
                return dropped
            dropped += body is not None

    def _deliver(self, body: bytes) -> None:
        from otel_telemetry.delivery import backoff_delay

        delay = 0.0
        for attempt in range(self._retries + 1):
            if attempt:
                if not self._pause(delay):
                    break
                self._count("retried", 1)
            timeout = self._timeout
            if self._closing.is_set():
                timeout = min(timeout, max(0.05, self._deadline - time.monotonic()))
            outcome = self._endpoint.post(body, timeout)
            if outcome.delivered:
                self._count("sent", 1)
                return
            if not outcome.retryable:
                self._log_once(
                    f"http{outcome.status}",
                    logging.ERROR,
                    "alert webhook %s: %s; notification rejected, not retried (logged once; counted in failed)",
                    self._origin,
                    outcome.describe(),
                )
                break
            self._log_retry(outcome)
            if outcome.retry_after is not None:
                delay = min(outcome.retry_after, _MAX_WEBHOOK_RETRY_AFTER)
            else:
                delay = backoff_delay(attempt + 1, self._backoff, rng=self._rng)
        self._count("failed", 1)

    def _log_retry(self, outcome: Outcome) -> None:
        self._log_once(
            "network" if outcome.status is None else f"http{outcome.status}",
            logging.WARNING,
            "alert webhook %s: delivery failed (%s); up to %d retries per notification "
            "(logged once; counted in retried/failed)",
            self._origin,
            outcome.describe(),
            self._retries,
        )

    def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds before a retry (cut short by the close deadline); False when no time is left."""
        end = time.monotonic() + delay
        if not self._closing.is_set():
            self._closing.wait(delay)  # close() interrupts the wait; the deadline then bounds the rest
        remaining = min(end, self._deadline) - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        return time.monotonic() < self._deadline

    def _count(self, counter: str, n: int) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def _log_once(self, key: str, level: int, message: str, *args: object) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        _logger.log(level, message, *args)
