"""The one collection per interval: the SDK reads the accumulators, and the result becomes a :class:`Frame`.

:class:`FrameReader` is the only reader on a handle's ``MeterProvider`` that our outputs use (cumulative);
:class:`FrameCollector` runs it every ``collection_interval`` on one named thread, merges the produced histograms
and per-entity gauges, derives ``ServerMetrics``, and hands the finished frame to every listener in turn
(history, alerts, Prometheus, OTLP, file, principal). A listener that fails is logged once and counted; it never
stops the others or the next collection. Listeners must be quick: slow work (HTTP) belongs on their own threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_telemetry.catalog import MetricSpec
from otel_telemetry.pacing import LoopPacer, Phase
from otel_telemetry.producer import HistogramProducer
from otel_telemetry.snapshot.build import server_metrics
from otel_telemetry.snapshot.frame import Frame

_logger = logging.getLogger(__name__)

#: A frame listener: called with each new frame on the collecting thread.
FrameListener = Callable[[Frame], None]
#: A source of per-entity values: ``(spec, attribute key, {entity: value})`` (a monitor's ``entity_values``).
EntitySource = Callable[[], Iterable[tuple[MetricSpec, str, Mapping[str, float]]]]
#: Scope of the per-entity gauges, when exported.
_ENTITY_SCOPE = "otel_telemetry.entities"
#: A stage: evaluates a frame before it is published and returns metrics that belong to the same frame (the
#: ``alerts`` gauge of the alerts evaluated on it), added under the scope ``otel_telemetry.<name>``.
FrameStage = Callable[[Frame], Sequence[Metric]]


def _with(metrics_data: MetricsData, scopes: Sequence[ScopeMetrics]) -> MetricsData:
    """``metrics_data`` with ``scopes`` added to its first resource."""
    first, *rest = metrics_data.resource_metrics
    first = replace(first, scope_metrics=[*first.scope_metrics, *scopes])
    return MetricsData(resource_metrics=[first, *rest])


class FrameReader(MetricReader):
    """A pull reader whose collections are taken only by :class:`FrameCollector` (cumulative temporality)."""

    def __init__(self) -> None:
        super().__init__()
        self._received: MetricsData | None = None
        self._shut_down = False

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._received = metrics_data

    def take(self, timeout_millis: float = 10_000) -> MetricsData | None:
        """Collect now and return what the SDK produced: empty when it has no metric (every instrument of a handle
        may be produced), None when the provider is shut down."""
        if self._shut_down:
            return None
        self._received = None
        self.collect(timeout_millis=timeout_millis)
        received, self._received = self._received, None
        return MetricsData(resource_metrics=[]) if received is None else received

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to flush: frames are handed out as they are taken. Later takes return None."""
        self._shut_down = True


class FrameCollector:
    """Takes one frame every ``interval`` seconds and publishes it. Thread-safe.

    ``collect()`` takes a frame at once on the calling thread (the periodic thread takes the others); collections
    never overlap. ``stats``-like counters: :attr:`runs`, :attr:`failures`, :attr:`listener_failures`,
    :attr:`last_duration` (seconds).
    """

    def __init__(
        self,
        reader: FrameReader,
        producer: HistogramProducer,
        resource: Resource,
        server_id: str,
        interval: float,
        *,
        export_per_entity: bool = False,
        pacer: LoopPacer | None = None,
    ) -> None:
        self._reader = reader
        self._producer = producer
        self._resource = resource
        self._server_id = server_id
        self._interval = interval
        self._export_per_entity = export_per_entity
        self._pacer = pacer
        self._take_phase = Phase(pacer, initial=0.005, timeout=min(0.5, interval / 2))
        self._listener_phases: dict[str, Phase] = {}
        self._entity_sources: list[EntitySource] = []
        self._lock = threading.Lock()
        self._collecting = threading.Lock()
        self._listeners: list[tuple[str, FrameListener]] = []
        self._stages: list[tuple[str, FrameStage]] = []
        self._warned: set[str] = set()
        self._latest: Frame | None = None
        self._sequence = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.failures = 0
        self.listener_failures: dict[str, int] = {}
        self.last_duration: float | None = None
        self.last_collection: float | None = None

    # -- listeners --------------------------------------------------------------------------------------------------
    def add_listener(self, name: str, listener: FrameListener, *, paced: bool = False) -> None:
        """Call ``listener`` with every new frame, after those added before it.

        ``paced``: the listener does real work (rendering, encoding): on the periodic thread it waits for an idle
        gap of the game loop of its own (see :mod:`otel_telemetry.pacing`).
        """
        with self._lock:
            self._listeners.append((name, listener))
            if paced:
                self._listener_phases[name] = Phase(self._pacer, timeout=min(0.5, self._interval / 2))

    def add_entity_source(self, source: EntitySource) -> None:
        """Register a source of per-entity values (a monitor's ``entity_values``): they fill ``ServerMetrics``
        and, with ``export_per_entity``, become gauges of the frame."""
        with self._lock:
            self._entity_sources.append(source)

    def _entities(self, now: int) -> tuple[dict[str, tuple[str, Mapping[str, float]]], list[Metric]]:
        with self._lock:
            sources = list(self._entity_sources)
        values: dict[str, tuple[str, Mapping[str, float]]] = {}
        metrics: list[Metric] = []
        for source in sources:
            try:
                for spec, key, by_entity in source():
                    values[spec.name] = (key, by_entity)
                    if self._export_per_entity:
                        points = [NumberDataPoint({key: entity}, now, now, v) for entity, v in by_entity.items()]
                        metrics.append(Metric(spec.name, spec.description, spec.unit, Gauge(points)))
            except Exception:
                with self._lock:
                    self.failures += 1
                self._warn_once("entities", "a per-entity source failed (logged once; counted)")
        return values, metrics

    def add_stage(self, name: str, stage: FrameStage) -> None:
        """Run ``stage`` on every frame before it is published; the metrics it returns join that frame."""
        with self._lock:
            self._stages.append((name, stage))

    def latest(self) -> Frame | None:
        """The newest frame, or None before the first."""
        return self._latest

    # -- collecting -------------------------------------------------------------------------------------------------
    def collect(self, *, paced: bool = False) -> Frame | None:
        """Take a frame now, publish it and return it (None when the collection failed or after shutdown).

        ``paced`` (the periodic thread): each step waits for an idle gap of the game loop first.
        """
        with self._collecting:
            with self._lock:
                self.runs += 1  # the frame counts itself: its telemetry_collection_runs_total includes it
            taken: list[tuple[Frame | None, float]] = []

            def take() -> None:
                started = time.perf_counter()
                found = self._take()
                taken.append((found, time.perf_counter() - started))

            if paced:
                self._take_phase.run(take)  # waits for an idle gap of the game loop first
            else:
                take()
            frame, duration = taken[0] if taken else (None, 0.0)
            with self._lock:
                self.last_duration = duration
                listeners = list(self._listeners)
            if frame is None:
                return None
            for name, listener in listeners:
                phase = self._listener_phases.get(name) if paced else None
                try:
                    if phase is not None:
                        phase.run(lambda listener=listener: listener(frame))  # type: ignore[misc]
                    else:
                        listener(frame)
                except Exception:
                    with self._lock:
                        self.listener_failures[name] = self.listener_failures.get(name, 0) + 1
                    self._warn_once(name, "frame listener %r failed (logged once; counted)", name)
            return frame

    def _take(self) -> Frame | None:
        try:
            states = self._producer.states()
            sdk_data = self._reader.take()
            if sdk_data is None:  # the provider is shut down
                return None
            now = time.time_ns()
            merged = self._producer.merge(
                sdk_data, self._resource, AggregationTemporality.CUMULATIVE, None, False, states
            )
            entities, entity_metrics = self._entities(now)
            if entity_metrics:
                merged = _with(merged, [ScopeMetrics(InstrumentationScope(_ENTITY_SCOPE), entity_metrics, "")])
            monotonic = time.monotonic()
            timestamp = datetime.fromtimestamp(now / 1e9, UTC)
            snapshot = server_metrics(self._server_id, timestamp, merged, states, entities)
        except Exception:
            with self._lock:
                self.failures += 1
            self._warn_once("collection", "a collection failed (logged once; counted)")
            return None
        with self._lock:
            self._sequence += 1
            frame = Frame(
                sequence=self._sequence,
                time_unix_nano=now,
                monotonic=monotonic,
                metrics_data=merged,
                histograms={state.key: state for state in states},
                server_metrics=snapshot,
            )
            stages = list(self._stages)
        frame = self._staged(frame, stages)
        with self._lock:
            self._latest = frame
            self.last_collection = monotonic
        return frame

    def _staged(self, frame: Frame, stages: Sequence[tuple[str, FrameStage]]) -> Frame:
        added: list[ScopeMetrics] = []
        for name, stage in stages:
            try:
                metrics = list(stage(frame))
            except Exception:
                with self._lock:
                    self.listener_failures[name] = self.listener_failures.get(name, 0) + 1
                self._warn_once(name, "frame stage %r failed (logged once; counted)", name)
                continue
            if metrics:
                added.append(ScopeMetrics(InstrumentationScope(f"otel_telemetry.{name}"), metrics, ""))
        if not added or not frame.metrics_data.resource_metrics:
            return frame
        return replace(frame, metrics_data=_with(frame.metrics_data, added))

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _logger.exception(message, *args)

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the periodic thread (``otel-telemetry-collect``)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="otel-telemetry-collect", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic() + self._interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.collect(paced=True)
            # Keep the cadence; after a stall, skip the missed slots instead of collecting in a burst.
            next_at += self._interval
            now = time.monotonic()
            if next_at < now:
                next_at = now + self._interval

    def stop(self, timeout: float) -> bool:
        """Stop the periodic thread; True when it ended within ``timeout`` seconds."""
        self._stop.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(max(0.0, timeout))
        return not thread.is_alive()
