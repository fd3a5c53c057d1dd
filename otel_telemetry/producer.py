"""Histogram data points produced from our accumulators and merged into every reader's collection.

The OpenTelemetry specification calls this a MetricProducer; the Python SDK has no hook for it, so each of our
readers merges the produced metrics in ``_receive_metrics`` (the one override ``MetricReader`` documents).
Cumulative readers get totals since each series started; delta readers get what was recorded since their own
previous collection (each reader keeps its own previous totals). Count, sum, min, max and the explicit-bucket
counts of every point are exact (see :mod:`otel_telemetry.accumulators`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_telemetry._otel import histogram_temporality, instrument_temporality
from otel_telemetry.accumulators import HistogramSnapshot, HistogramState, SeriesKey, difference
from otel_telemetry.catalog import Instrument, MetricSpec

_logger = logging.getLogger(__name__)

#: A source of histogram series: usually a monitor's ``histograms`` method.
HistogramSource = Callable[[], Iterable[HistogramState]]
#: A source of high-cardinality gauges (per-player series): ``(spec, [(value, attributes), ...])`` pairs.
GaugeSource = Callable[[], Iterable[tuple[MetricSpec, list[tuple[float, dict[str, str]]]]]]


class Described(Protocol):
    """What producing a scalar metric reads of its spec: a catalog :class:`MetricSpec` or a :class:`ScalarSpec`."""

    @property
    def name(self) -> str: ...

    @property
    def unit(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def instrument(self) -> Instrument: ...


@dataclass(frozen=True)
class ScalarSpec:
    """A produced scalar instrument outside the catalog (telemetry's own, the health registry's)."""

    name: str
    instrument: Instrument
    unit: str
    description: str


#: A source of scalar series (observable gauges and counters produced without SDK instruments):
#: ``(spec, [(value, attributes), ...])`` per instrument; the spec's ``instrument`` says gauge, counter or
#: up-down counter.
ScalarSource = Callable[[], Iterable[tuple[Described, Iterable[tuple[float, Mapping[str, Any]]]]]]
_CUMULATIVE = AggregationTemporality.CUMULATIVE
_DELTA = AggregationTemporality.DELTA


#: The previous total of each sum series, for delta readers: ``(name, sorted attributes) -> (value, time ns)``.
SumTotals = dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[float, int]]


def sum_delta(
    previous: SumTotals, name: str, attributes: Mapping[str, Any], value: float, now: int, start: int
) -> tuple[float, int]:
    """``(delta, start)`` of a cumulative sum point for a delta reader: the change since the reader's previous
    total of that series (started then), or the total and ``start`` the first time; ``previous`` is updated."""
    key = (name, tuple(sorted(attributes.items())))
    before = previous.get(key)
    previous[key] = (value, now)
    if before is None:
        return value, start
    return value - before[0], before[1]


class ScalarView:
    """How one reader receives the produced scalar series: its temporality per instrument kind and, for delta
    counters, each series' previous total (so a delta reader gets what changed since its own previous collection,
    as the SDK's observable counters give it). Guarded by the caller (one collection of a reader at a time)."""

    def __init__(self, temporalities: Mapping[Instrument, AggregationTemporality] | None = None) -> None:
        self.temporalities = dict(temporalities or {})
        self.previous: SumTotals = {}

    @classmethod
    def of(cls, reader: MetricReader) -> ScalarView:
        """The view of ``reader``'s own preferences."""
        kinds = (Instrument.OBSERVABLE_COUNTER, Instrument.OBSERVABLE_UP_DOWN_COUNTER)
        return cls({kind: instrument_temporality(reader, kind.value) for kind in kinds})


def _min_max(snapshot: HistogramSnapshot, scale: float) -> tuple[float, float]:
    """The point's min and max in the exported unit: the exact recorded extremes (a delta point's are those of its
    interval, exact while the series' extremes log holds the collections since the reader's previous one, the last
    256; beyond that they are read from the cells, within 0.5%). ``inf``/``-inf`` for an empty point."""
    low, high = snapshot.min(), snapshot.max()
    if low is None or high is None:
        return math.inf, -math.inf
    return low * scale, high * scale


class HistogramProducer:
    """Turns the histogram series of registered sources into OpenTelemetry ``Metric`` objects.

    Thread-safe: readers on different threads may produce at once, and :attr:`failures` stays exact.
    """

    def __init__(self, scope: InstrumentationScope) -> None:
        self._scope = scope
        self._sources: list[HistogramSource] = []
        self._gauge_sources: list[GaugeSource] = []
        self._scalar_sources: list[tuple[ScalarSource, int, InstrumentationScope]] = []
        self._lock = threading.Lock()
        self._failures = 0

    @property
    def failures(self) -> int:
        """Sources or merges that raised (their series were left out of that collection). Exact."""
        return self._failures

    def count_failure(self) -> None:
        """Count one failure (a source, or a merge done on this producer's behalf, raised)."""
        with self._lock:
            self._failures += 1

    def add_source(self, source: HistogramSource) -> None:
        """Register a source of histogram series."""
        with self._lock:
            self._sources.append(source)

    def add_gauge_source(self, source: GaugeSource) -> None:
        """Register a source of per-entity gauges, produced only for readers that export them."""
        with self._lock:
            self._gauge_sources.append(source)

    def add_scalar_source(
        self, source: ScalarSource, start_time_unix_nano: int, scope: InstrumentationScope | None = None
    ) -> None:
        """Register a source of scalar series (observable gauges and counters produced directly, at a fraction of
        what SDK instruments cost per collection); cumulative counters start at ``start_time_unix_nano``. Its
        metrics belong to ``scope`` (by default this producer's own): :meth:`merge` adds one scope per scope."""
        with self._lock:
            self._scalar_sources.append((source, start_time_unix_nano, scope or self._scope))

    def _scalars(
        self, now: int, view: ScalarView | None, only: InstrumentationScope | None = None
    ) -> dict[InstrumentationScope, list[Metric]]:
        """The scalar metrics by scope, this producer's own first; with ``only``, the sources of that scope alone
        are read."""
        with self._lock:
            sources = [entry for entry in self._scalar_sources if only is None or entry[2] == only]
        by_scope: dict[InstrumentationScope, list[Metric]] = {self._scope: []}
        for source, start, scope in sources:
            metrics = by_scope.setdefault(scope, [])
            try:
                for spec, points in source():
                    metrics.append(self._scalar(spec, points, start, now, view))
            except Exception:
                self.count_failure()
                _logger.exception("a scalar source failed; its series are left out of this collection")
        return by_scope

    @staticmethod
    def _scalar(
        spec: Described,
        points: Iterable[tuple[float, Mapping[str, Any]]],
        start: int,
        now: int,
        view: ScalarView | None,
    ) -> Metric:
        kind = spec.instrument
        if kind is Instrument.OBSERVABLE_GAUGE:
            gauge_points = [NumberDataPoint(dict(attributes), now, now, value) for value, attributes in points]
            return Metric(spec.name, spec.description, spec.unit, Gauge(gauge_points))
        temporality = view.temporalities.get(kind, _CUMULATIVE) if view is not None else _CUMULATIVE
        data_points = []
        for value, attributes in points:
            point_start = start
            if temporality is _DELTA and view is not None:
                value, point_start = sum_delta(view.previous, spec.name, attributes, value, now, start)
            data_points.append(NumberDataPoint(dict(attributes), point_start, now, value))
        monotonic = kind is Instrument.OBSERVABLE_COUNTER
        return Metric(spec.name, spec.description, spec.unit, Sum(data_points, temporality, monotonic))

    def _gauges(self, now: int) -> list[Metric]:
        with self._lock:
            sources = list(self._gauge_sources)
        metrics: list[Metric] = []
        for source in sources:
            try:
                for spec, values in source():
                    points = [NumberDataPoint(attributes, now, now, value) for value, attributes in values]
                    metrics.append(
                        Metric(name=spec.name, description=spec.description, unit=spec.unit, data=Gauge(points))
                    )
            except Exception:
                self.count_failure()
                _logger.exception("a gauge source failed; its series are left out of this collection")
        return metrics

    def states(self) -> list[HistogramState]:
        """Every histogram series of every source, as of the sources' latest refresh."""
        with self._lock:
            sources = list(self._sources)
        states: list[HistogramState] = []
        for source in sources:
            try:
                states.extend(source())
            except Exception:
                self.count_failure()
                _logger.exception("a histogram source failed; its series are left out of this collection")
        return states

    def produce(
        self,
        temporality: AggregationTemporality,
        previous: dict[SeriesKey, tuple[HistogramSnapshot, int]] | None = None,
        include_gauges: bool = True,
        states: Iterable[HistogramState] | None = None,
        *,
        scalars: ScalarView | None = None,
        include_scalars: bool = True,
    ) -> list[Metric]:
        """The metrics of this producer's own scope: its scalar series (unless ``include_scalars`` is False), the
        histograms (and, if asked, the per-entity gauges). Scalar sources of other scopes are left to
        :meth:`merge`.

        For DELTA, ``previous`` is the reader's own state and is updated. ``states`` are the series to
        produce (a frame's); by default the sources are read now. ``scalars`` is the reader's view of the scalar
        series (None: cumulative).
        """
        own = self._scalars(time.time_ns(), scalars, only=self._scope)[self._scope] if include_scalars else []
        return self._produce(temporality, previous, include_gauges, states, own)

    def _produce(
        self,
        temporality: AggregationTemporality,
        previous: dict[SeriesKey, tuple[HistogramSnapshot, int]] | None,
        include_gauges: bool,
        states: Iterable[HistogramState] | None,
        scalar_metrics: list[Metric],
    ) -> list[Metric]:
        now = time.time_ns()
        by_name: dict[str, tuple[HistogramState, list[HistogramDataPoint]]] = {}
        for state in self.states() if states is None else states:
            spec, cumulative = state.spec, state.cumulative
            scale = cumulative.layout.scale
            start = int(state.start_time * 1e9)
            if temporality is AggregationTemporality.DELTA and previous is not None:
                before = previous.get(state.key)
                point_data = difference(cumulative, before[0] if before else None)
                start = before[1] if before else start
                previous[state.key] = (cumulative, now)
            else:
                point_data = cumulative
            low, high = _min_max(point_data, scale)
            point = HistogramDataPoint(
                attributes=dict(state.key.attributes),
                start_time_unix_nano=start,
                time_unix_nano=now,
                count=point_data.count,
                sum=point_data.sum * scale,
                bucket_counts=point_data.bucket_counts(),
                explicit_bounds=list(spec.boundaries),
                min=low,
                max=high,
            )
            entry = by_name.setdefault(spec.name, (state, []))
            entry[1].append(point)
        metrics = [
            Metric(
                name=state.spec.name,
                description=state.spec.description,
                unit=state.spec.unit,
                data=Histogram(data_points=points, aggregation_temporality=temporality),
            )
            for state, points in by_name.values()
        ]
        metrics[:0] = scalar_metrics
        if include_gauges:
            metrics.extend(self._gauges(now))
        return metrics

    def merge(
        self,
        metrics_data: MetricsData | None,
        resource: Resource,
        temporality: AggregationTemporality,
        previous: dict[SeriesKey, tuple[HistogramSnapshot, int]] | None = None,
        include_gauges: bool = True,
        states: Iterable[HistogramState] | None = None,
        *,
        scalars: ScalarView | None = None,
    ) -> MetricsData:
        """``metrics_data`` with our metrics added: one scope per scope of the produced metrics, this producer's own
        first, a scope with nothing produced left out (the SDK's own data untouched)."""
        scoped = self._scalars(time.time_ns(), scalars)
        scoped[self._scope] = self._produce(temporality, previous, include_gauges, states, scoped[self._scope])
        if metrics_data is None or not metrics_data.resource_metrics:
            scope_metrics = [ScopeMetrics(scope, metrics, "") for scope, metrics in scoped.items() if metrics]
            return MetricsData(
                resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=scope_metrics, schema_url="")]
            )
        first, *rest = metrics_data.resource_metrics
        # Join a scope the SDK already reported (an encoder keyed by scope would otherwise keep only one of two
        # entries with the same scope).
        scopes = list(first.scope_metrics)
        for scope, produced in scoped.items():
            if not produced:
                continue
            for index, existing in enumerate(scopes):
                if existing.scope == scope:
                    scopes[index] = replace(existing, metrics=[*existing.metrics, *produced])
                    break
            else:
                scopes.append(ScopeMetrics(scope=scope, metrics=produced, schema_url=""))
        merged = replace(first, scope_metrics=scopes)
        return MetricsData(resource_metrics=[merged, *rest])


class ReaderMerge:
    """The transform (for :func:`otel_telemetry._otel.hook_reader`) that merges producers' metrics into every
    collection of one reader, the MetricProducer the Python SDK lacks.

    Each reader gets its own ``ReaderMerge``: it keeps that reader's delta state per producer (a delta reader gets
    what was recorded since its own previous collection), merges one collection at a time (the periodic thread and
    a ``force_flush`` may overlap), and counts a producer that fails in its ``failures``, leaving the SDK's
    metrics to go out without it.

    Args:
        producers: returns the producers to merge now (read once per collection).
        resource: the resource of the produced metrics; by default the collection's own.
    """

    def __init__(self, producers: Callable[[], Sequence[HistogramProducer]], resource: Resource | None = None) -> None:
        self._producers = producers
        self._resource = resource
        self._lock = threading.Lock()
        self._previous: dict[HistogramProducer, dict[SeriesKey, tuple[HistogramSnapshot, int]]] = {}
        self._scalars: dict[HistogramProducer, ScalarView] = {}

    def __call__(self, metrics_data: MetricsData, reader: MetricReader) -> MetricsData:
        producers = self._producers()
        if not producers:
            return metrics_data
        temporality = histogram_temporality(reader)
        resource = self._resource
        if resource is None:
            first = metrics_data.resource_metrics[0] if metrics_data.resource_metrics else None
            resource = first.resource if first is not None else Resource.get_empty()
        with self._lock:
            for producer in producers:
                previous = self._previous.setdefault(producer, {})
                view = self._scalars.get(producer)
                if view is None:
                    view = self._scalars[producer] = ScalarView.of(reader)
                try:
                    metrics_data = producer.merge(metrics_data, resource, temporality, previous, scalars=view)
                except Exception:
                    producer.count_failure()
                    _logger.exception("merging produced histograms failed; exporting the SDK's metrics without them")
            return metrics_data
