"""The frame: one collection, taken once per ``collection_interval``, that every output reads.

A frame holds the collected OpenTelemetry ``MetricsData`` (cumulative: the SDK's observable instruments, the
produced histograms, and the per-player gauges only when ``export_player_series`` is on, under one resource) and
what is derived from it: the window statistics of every histogram series and the ``ServerMetrics`` snapshot. It is
immutable and safe to share: the Prometheus endpoint serves it, OTLP exports it, alerts evaluate it, the history
ring, the API principal push, the snapshot file and ``otel-telemetry top`` read it. None of them collects on its
own, so they can never disagree.
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
        return points(self.metrics_data, name)

    def value(self, name: str, **attributes: str) -> float | None:
        """The value of ``name``'s point with exactly ``attributes`` (None when absent or NaN)."""
        return value(self.metrics_data, name, **attributes)


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
    """The value of the (first) data point of ``name`` with exactly ``attributes``; None when absent or NaN."""
    for point in points(metrics_data, name):
        if dict(point.attributes or {}) == attributes:
            found = getattr(point, "value", None)
            if found is None or (isinstance(found, float) and math.isnan(found)):
                return None
            return float(found)
    return None
