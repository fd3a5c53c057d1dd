"""Alerts on every frame: :class:`AlertEvaluator`, the frame listener of alerts, and the ``alerts`` gauge.

The handle takes one frame per collection interval and hands it to every output in turn, on the collecting thread.
:meth:`AlertEvaluator.on_frame` is the alerts' turn: it runs the rules on the frame (``ServerMetrics`` rules on its
snapshot and on the history, for those that compare with the past; metric-name rules on its metrics and histograms)
and returns. It collects nothing and starts no collection of its own, never raises, and never waits on a notifier:
notifications go to one worker thread, in order, so a slow callback, log handler or receiver can delay other
notifications but never a frame.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Meter, ObservableGauge, Observation
from opentelemetry.sdk.metrics.export import Gauge, Metric, NumberDataPoint

from otel_telemetry.alerts.manager import AlertManager
from otel_telemetry.alerts.model import Alert

if TYPE_CHECKING:
    from otel_telemetry.snapshot.frame import Frame
    from otel_telemetry.snapshot.model import ServerMetrics

__all__ = ["AlertEvaluator", "alert_metrics", "register_alert_metric"]

_logger = logging.getLogger(__name__)

_ALERTS_DESCRIPTION = "Active alerts: 1 per pending or firing alert, by alertname, alertstate and severity"
#: A batch of notifications that takes longer than this (seconds) to deliver is reported once: what queues behind
#: it waits, and a full queue drops.
_SLOW_NOTIFICATION = 1.0


class AlertEvaluator:
    """Evaluates ``manager``'s rules on each frame and delivers their notifications off the frame path.

    Args:
        manager: the :class:`~otel_telemetry.alerts.AlertManager` to drive.
        history: returns the ``ServerMetrics`` history, oldest first (the handle's history ring); called only while
            a rule compares with the past (``percent_change``, ``rate_of_change``).
        queue_size: notification batches (one per evaluation that notifies) waiting for the worker at most; one
            more is dropped and counted in ``dropped``.
        close_notifiers: :meth:`close` also closes the manager's notifiers (flushing webhooks) with the time left.

    :meth:`on_frame` is meant for one thread, the collecting thread; :meth:`close` may be called from any.
    Notifications are delivered by one daemon thread, ``otel-telemetry-alert-notify``, started with the first
    notification and stopped by :meth:`close`.

    Counters: ``evaluations`` (frames evaluated), ``failures`` (frames or histories that could not be read; each
    kind logged once), ``delivered`` and ``dropped`` (notification batches).
    """

    def __init__(
        self,
        manager: AlertManager,
        history: Callable[[], Sequence[ServerMetrics]],
        *,
        queue_size: int = 64,
        close_notifiers: bool = True,
    ) -> None:
        if not isinstance(manager, AlertManager):
            raise ValueError(f"AlertEvaluator.manager: expected an AlertManager, got {manager!r}")
        if not callable(history):
            raise ValueError(f"AlertEvaluator.history: expected a callable returning snapshots, got {history!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"AlertEvaluator.queue_size: expected an integer >= 1, got {queue_size!r}")
        self._manager = manager
        manager.hand_off_to(self._enqueue)  # check_metric and resolve notify through the worker too
        self._history = history
        self._close_notifiers = close_notifiers
        # Batches for the worker; None wakes it up to stop.
        self._queue: queue.Queue[list[Alert] | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._last_sequence: int | None = None
        self._logged: set[str] = set()
        self.evaluations = 0
        self.failures = 0
        self.delivered = 0
        self.dropped = 0

    @property
    def manager(self) -> AlertManager:
        """The manager this evaluator drives."""
        return self._manager

    @property
    def running(self) -> bool:
        """True while the notification worker runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def __repr__(self) -> str:
        return f"AlertEvaluator(rules={len(self._manager.rules)}, evaluations={self.evaluations})"

    # -- the collecting thread ----------------------------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        """Evaluate the rules on ``frame`` (:meth:`AlertManager.evaluate_frame`); queue the notifications. Never
        raises, never blocks.

        A frame already seen (same or older ``sequence``) is ignored; after :meth:`close` every frame is. When the
        history cannot be read, the rules that compare with the past have no data for this frame; the others run.
        """
        try:
            if self._closing.is_set():
                return
            sequence = frame.sequence
            if self._last_sequence is not None and sequence <= self._last_sequence:
                return
            self._last_sequence = sequence
        except Exception:
            self._failed("frame", "reading a frame for alert evaluation failed (logged once; counted in failures)")
            return
        history: Sequence[ServerMetrics] = ()
        if self._manager.needs_history:
            try:
                history = self._history()
            except Exception:
                self._failed("history", "reading the history for alert evaluation failed (logged once; counted)")
        self._manager.evaluate_frame(frame, history, notify=self._enqueue)  # never raises
        self.evaluations += 1

    def _failed(self, key: str, message: str) -> None:
        self.failures += 1
        self._log_once(key, message)

    def _enqueue(self, alerts: list[Alert]) -> None:
        if self._closing.is_set():
            self._drop(1)
            return
        self._start()
        try:
            self._queue.put_nowait(alerts)
        except queue.Full:
            self._drop(1)
            self._log_once(
                "full",
                "alert notifications dropped: %d batches wait for a slow notifier (logged once; counted in dropped)",
                self._queue.maxsize,
                exc_info=False,
            )

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closing.is_set():
                self._thread = threading.Thread(target=self._run, name="otel-telemetry-alert-notify", daemon=True)
                self._thread.start()

    # -- the worker ---------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if self._closing.is_set():
                try:
                    batch = self._queue.get_nowait()
                except queue.Empty:
                    return
                if batch is not None and time.monotonic() >= self._deadline:
                    self._drop(1 + self._drain())
                    return
            else:
                batch = self._queue.get()
            if batch is not None:
                self._deliver(batch)

    def _deliver(self, batch: list[Alert]) -> None:
        started = time.monotonic()
        try:
            from opentelemetry.instrumentation.utils import suppress_instrumentation  # costly import: first use

            with suppress_instrumentation():  # a notifier's own HTTP calls are not the game's telemetry
                self._manager.dispatch(batch)
        except Exception:  # pragma: no cover - dispatch isolates every notifier
            self._log_once("dispatch", "delivering alert notifications failed (logged once)")
        elapsed = time.monotonic() - started
        with self._lock:
            self.delivered += 1
        if elapsed > _SLOW_NOTIFICATION:
            self._log_once(
                "slow",
                "alert notifiers took %.1f s for one batch; notifications queue behind them (logged once)",
                elapsed,
                exc_info=False,
            )

    def _drain(self) -> int:
        dropped = 0
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                return dropped
            dropped += batch is not None

    def _drop(self, n: int) -> None:
        with self._lock:
            self.dropped += n

    def _log_once(self, key: str, message: str, *args: object, exc_info: bool = True) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        if exc_info:
            _logger.exception(message, *args)
        else:
            _logger.warning(message, *args)

    # -- lifecycle ----------------------------------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> bool:
        """Stop evaluating; deliver the queued notifications within ``timeout`` seconds (the rest are dropped and
        counted), stop the worker, then close the notifiers with the time left (``close_notifiers``).

        Returns True when everything finished in time. Idempotent; returns within ``timeout`` even when a notifier
        blocks (the daemon worker is then left to finish its batch).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        self._manager.hand_off_to(None)  # from now on the manager notifies on the calling thread again
        with self._lock:
            if not self._closing.is_set():
                self._deadline = deadline
                self._closing.set()
            thread = self._thread
        if thread is not None:
            with contextlib.suppress(queue.Full):  # full: the worker is busy, and checks the deadline after each batch
                self._queue.put_nowait(None)
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        done = thread is None or not thread.is_alive()
        if done:
            self._drop(self._drain())  # handed over while closing, after the worker's last look
        if self._close_notifiers:
            done = self._manager.close(max(0.0, deadline - time.monotonic())) and done
        return done


def register_alert_metric(manager: AlertManager, meter: Meter, name: str = "ALERTS") -> ObservableGauge:
    """Create the observable gauge ``ALERTS``: 1 per pending or firing alert, in the spirit of Prometheus' ``ALERTS``.

    Attributes: ``alertname``, ``alertstate`` (``pending``/``firing``), ``severity`` and the rule's labels.
    OpenTelemetry instrument names are case-insensitive and the Python SDK lowercases them, so readers see
    ``alerts`` and ``/metrics`` shows ``alerts{alertname=...,alertstate=...,severity=...}`` — a different series from
    the ``ALERTS`` Prometheus synthesises for its own rules (names are case-sensitive there).
    """
    warned = False

    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        nonlocal warned
        try:
            return [
                Observation(
                    1, {**a.labels, "alertname": a.name, "alertstate": a.state.value, "severity": a.severity.value}
                )
                for a in manager.active()
            ]
        except Exception:
            if not warned:
                warned = True
                _logger.exception("observing active alerts failed (logged once)")
            return []

    return meter.create_observable_gauge(name, callbacks=[observe], unit="{alert}", description=_ALERTS_DESCRIPTION)


def alert_metrics(manager: AlertManager, time_unix_nano: int) -> list[Metric]:
    """The ``alerts`` gauge as of the manager's latest evaluation: 1 per pending or firing alert, with
    ``alertname``, ``alertstate``, ``severity`` and the rule's labels (the series ``register_alert_metric`` observes).
    """
    points = [
        NumberDataPoint(
            {**a.labels, "alertname": a.name, "alertstate": a.state.value, "severity": a.severity.value},
            time_unix_nano,
            time_unix_nano,
            1,
        )
        for a in manager.active()
    ]
    return [Metric("alerts", _ALERTS_DESCRIPTION, "{alert}", Gauge(points))] if points else []
