"""Our metric readers: each is a standard SDK reader that also merges the produced histograms.

* :class:`PrometheusReader` — the OpenTelemetry Prometheus exporter's reader with its own registry, the catalog's
  Prometheus names, no scope labels by default, and a scrape that never fails as a whole.
* :class:`ProducingPeriodicReader` — ``PeriodicExportingMetricReader`` (OTLP, snapshots).
* :class:`ProducingInMemoryReader` — ``InMemoryMetricReader`` (tests, programmatic access).
* :class:`LatestMetricsExporter` — a ``MetricExporter`` keeping the latest collection for programmatic access.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    Sum,
)
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from otel_telemetry.catalog import CATALOG
from otel_telemetry.export.selftelemetry import ExportCounts
from otel_telemetry.producer import ProducingReaderMixin

_logger = logging.getLogger(__name__)

#: OpenTelemetry name -> Prometheus name for every catalog instrument.
_PROMETHEUS_NAMES: Mapping[str, str] = {spec.name: spec.prometheus_name for spec in CATALOG}


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _GuardedCollector(Collector):
    """Wraps the exporter's collector: an exception logs once and yields nothing, never an HTTP 500."""

    def __init__(self, inner: Collector, on_failure: Callable[[], None]) -> None:
        self._inner = inner
        self._on_failure = on_failure
        self._warned = False

    def collect(self) -> Iterable[Any]:
        try:
            return list(self._inner.collect())
        except Exception:
            self._on_failure()
            if not self._warned:
                self._warned = True
                _logger.exception("translating metrics for Prometheus failed (logged once; counted)")
            return []


class PrometheusReader(ProducingReaderMixin, PrometheusMetricReader):
    """Serves the metrics in Prometheus format from its own registry (``registry``).

    Catalog metrics are exposed under their catalog ``prometheus_name``; others under OpenTelemetry's standard
    translation. Data points that Prometheus cannot represent (exponential histograms, non-numeric values) are
    dropped and counted in ``dropped_points``, so one bad metric never fails the whole scrape.

    Args:
        scope_labels: add ``otel_scope_*`` labels to every sample (off by default: they clutter every series).
        target_info: expose the ``target_info`` metric with the resource attributes (on by default).
    """

    def __init__(self, *, scope_labels: bool = False, target_info: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        super().__init__(
            disable_target_info=not target_info,
            scope_info_enabled=scope_labels,
            registry=self.registry,
        )
        self.dropped_points = 0
        self.scrape_failures = 0
        self.export_counts = ExportCounts("prometheus")
        inner = self._collector
        self.registry.unregister(inner)
        self._guard = _GuardedCollector(inner, self._count_scrape_failure)
        self.registry.register(self._guard)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Stop serving: the registry no longer yields our metrics."""
        with contextlib.suppress(KeyError):
            self.registry.unregister(self._guard)

    def _count_scrape_failure(self) -> None:
        self.scrape_failures += 1
        self.export_counts.record(False)

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        merged = self._merge_produced(metrics_data)
        if merged is None:
            return
        self.export_counts.record(True)  # one scrape served
        super()._receive_metrics(self._for_prometheus(merged), timeout_millis=timeout_millis, **kwargs)

    def _for_prometheus(self, metrics_data: MetricsData) -> MetricsData:
        resource_metrics = []
        for rm in metrics_data.resource_metrics:
            scopes = []
            for sm in rm.scope_metrics:
                metrics = [m for m in (self._translate(metric) for metric in sm.metrics) if m is not None]
                scopes.append(replace(sm, metrics=metrics))
            resource_metrics.append(replace(rm, scope_metrics=scopes))
        return MetricsData(resource_metrics=resource_metrics)

    def _translate(self, metric: Metric) -> Metric | None:
        data = metric.data
        points: list[Any]
        if isinstance(data, Histogram):
            points = [p for p in data.data_points if len(p.bucket_counts) == len(p.explicit_bounds) + 1]
        elif isinstance(data, (Sum, Gauge)):
            points = [p for p in data.data_points if _numeric(p.value)]
        else:
            # Exponential histograms cannot be expressed in the Prometheus text format.
            self.dropped_points += len(getattr(data, "data_points", ()))
            return None
        self.dropped_points += len(data.data_points) - len(points)
        new_data: Any = replace(data, data_points=points)  # type: ignore[arg-type]
        name = _PROMETHEUS_NAMES.get(metric.name)
        if name is None:
            return replace(metric, data=new_data)
        # The catalog name is final: an empty unit stops the exporter appending a unit suffix.
        return replace(metric, name=name, unit="", data=new_data)


class ProducingPeriodicReader(ProducingReaderMixin, PeriodicExportingMetricReader):
    """``PeriodicExportingMetricReader`` that also exports the produced histograms."""

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        merged = self._merge_produced(metrics_data)
        if merged is not None:
            super()._receive_metrics(merged, timeout_millis=timeout_millis, **kwargs)


class ProducingInMemoryReader(ProducingReaderMixin, InMemoryMetricReader):
    """``InMemoryMetricReader`` that also returns the produced histograms."""

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        merged = self._merge_produced(metrics_data)
        if merged is not None:
            super()._receive_metrics(merged, timeout_millis=timeout_millis, **kwargs)


class LatestMetricsExporter(MetricExporter):
    """Keeps the most recent collection and notifies listeners; never fails.

    Thread-safe: ``latest()`` may be called from any thread while the reader exports.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._latest: MetricsData | None = None
        self._listeners: list[Callable[[MetricsData], None]] = []
        self.exports = 0
        self.listener_failures = 0

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        with self._lock:
            self._latest = metrics_data
            self.exports += 1
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(metrics_data)
            except Exception:
                self.listener_failures += 1
                _logger.exception("a metrics listener failed")
        return MetricExportResult.SUCCESS

    def latest(self) -> MetricsData | None:
        """The most recent collection, or None before the first."""
        with self._lock:
            return self._latest

    def add_listener(self, listener: Callable[[MetricsData], None]) -> None:
        """Call ``listener`` with every new collection (on the collecting thread; keep it short)."""
        with self._lock:
            self._listeners.append(listener)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def points(metrics_data: MetricsData | None, name: str) -> list[Any]:
    """All data points of the metric called ``name`` (OpenTelemetry name) in ``metrics_data``."""
    found: list[Any] = []
    if metrics_data is None:
        return found
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def value(metrics_data: MetricsData | None, name: str, **attributes: str) -> float | None:
    """The value of the (first) data point of ``name`` with exactly ``attributes``; None when absent."""
    for point in points(metrics_data, name):
        if dict(point.attributes or {}) == attributes:
            v = getattr(point, "value", None)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    return None
