"""The frame: one collection, taken once per ``collection_interval``, that every output reads.

A frame holds the collected OpenTelemetry ``MetricsData`` (cumulative: the SDK's observable instruments, the
produced histograms and the per-entity gauges, under one resource) and what is derived from it: the window
statistics of every histogram series and the ``ServerMetrics`` snapshot. It is immutable and safe to share: the
Prometheus endpoint serves it, OTLP exports it, alerts evaluate it, the history ring, the API principal push, the
snapshot file and ``otel-telemetry top`` read it. None of them collects on its own, so they can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import Metric, MetricsData

    from otel_telemetry.accumulators import HistogramState, SeriesKey
    from otel_telemetry.snapshot.model import ServerMetrics


@dataclass(frozen=True, slots=True)
class Frame:
    """One collection and everything derived from it.

    Attributes:
        sequence: 1 for the handle's first frame, then one more per collection.
        time_unix_nano: when the collection was taken (wall clock, ns since the epoch).
        monotonic: the same moment on ``time.monotonic()`` (for intervals).
        metrics_data: the collected metrics, cumulative.
        histograms: every histogram series' state (cumulative cells and the sliding-window snapshot), by key.
        server_metrics: the :class:`~otel_telemetry.ServerMetrics` derived from this frame.
    """

    sequence: int
    time_unix_nano: int
    monotonic: float
    metrics_data: MetricsData
    histograms: Mapping[SeriesKey, HistogramState]
    server_metrics: ServerMetrics

    def metrics(self) -> Iterator[Metric]:
        """Every metric of the frame, across resources and scopes."""
        for rm in self.metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                yield from sm.metrics

    def points(self, name: str) -> list[Any]:
        """Every data point of the metric named ``name`` (OpenTelemetry name)."""
        found: list[Any] = []
        for metric in self.metrics():
            if metric.name == name:
                found.extend(metric.data.data_points)
        return found

    def value(self, name: str, **attributes: str) -> float | None:
        """The value of ``name``'s point with exactly ``attributes`` (None when absent or NaN)."""
        for point in self.points(name):
            if dict(point.attributes or {}) == attributes:
                value = getattr(point, "value", None)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    return None
                return float(value)
        return None
