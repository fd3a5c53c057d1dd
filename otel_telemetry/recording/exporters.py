"""``MetricsExporter``: JSON documents made from :meth:`MetricsFacade.get_all_metrics` and from the handlers'
``@traced`` series, for code written against dict-returning statsd-style collectors.

Nothing here collects or sends anything: :meth:`MetricsExporter.to_json` and :meth:`MetricsExporter.to_summary`
reshape a ``get_all_metrics()`` dict, and :func:`handler_summary` reads the ``handler.*`` series out of a
collection's ``MetricsData`` (the newest frame's, so it agrees with ``/metrics``). Every function returns plain
dicts of str, int, float and None, ready for ``json.dumps``. Pure functions: safe from any thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint

from otel_telemetry.recording.tracing import HANDLER_DURATION, HANDLER_ERRORS, HANDLER_REQUESTS

__all__ = ["MetricsExporter", "handler_summary"]

_QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def _plain(value: object) -> Any:
    """``value`` with every mapping a dict, every sequence a list and every non-finite float None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    return str(value)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class MetricsExporter:
    """Reshape :meth:`~otel_telemetry.recording.facade.MetricsFacade.get_all_metrics` output into JSON documents.

    Static methods only, so ``MetricsExporter.to_json(all_metrics)`` reads as in the statsd-style collectors this
    API follows.
    """

    @staticmethod
    def to_json(all_metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The whole ``get_all_metrics()`` document as plain JSON types (``json.dump`` it as is).

        Stats objects become dicts, non-finite numbers become None; keys and values are otherwise unchanged
        (timings in seconds).
        """
        return dict(_plain(all_metrics))

    @staticmethod
    def to_summary(all_metrics: Mapping[str, Any]) -> dict[str, Any]:
        """A high-level overview of a ``get_all_metrics()`` document.

        Keys: ``timestamp``, ``uptime_seconds``; ``timings`` (per series: ``count`` and ``latency_ms`` with
        ``mean``, ``p50``, ``p95``, ``p99``, ``max`` in milliseconds); ``distributions`` (``count``, ``mean``,
        ``p50``, ``p95``, ``p99`` in the distribution's unit); ``counters`` (series → value); ``gauges`` (series →
        current value); ``errors`` (the counters whose name contains ``error``, series → value).
        """
        timings: dict[str, Any] = {}
        for key, stats in dict(all_metrics.get("timings", {})).items():
            latency = {name: _ms(stats[name]) for name in ("mean", "p50", "p95", "p99", "max")}
            timings[key] = {"count": int(stats["count"]), "latency_ms": latency}
        distributions = {
            key: {name: stats[name] for name in ("count", "mean", "p50", "p95", "p99")}
            for key, stats in dict(all_metrics.get("distributions", {})).items()
        }
        counters = {key: stats["value"] for key, stats in dict(all_metrics.get("counters", {})).items()}
        gauges = {key: stats["current"] for key, stats in dict(all_metrics.get("gauges", {})).items()}
        return dict(
            _plain(
                {
                    "timestamp": all_metrics.get("timestamp"),
                    "uptime_seconds": all_metrics.get("uptime_seconds"),
                    "timings": timings,
                    "distributions": distributions,
                    "counters": counters,
                    "gauges": gauges,
                    "errors": {key: value for key, value in counters.items() if "error" in key.split("[")[0]},
                }
            )
        )


class _Merged:
    """The points of one handler's duration (one per ``error_type`` and success) added up."""

    __slots__ = ("bounds", "bucket_counts", "count", "max", "min", "sum")

    def __init__(self, point: HistogramDataPoint) -> None:
        self.bounds = list(point.explicit_bounds)
        self.bucket_counts = list(point.bucket_counts)
        self.count, self.sum, self.min, self.max = point.count, point.sum, point.min, point.max

    def add(self, point: HistogramDataPoint) -> None:
        if list(point.explicit_bounds) == self.bounds:
            self.bucket_counts = [a + b for a, b in zip(self.bucket_counts, point.bucket_counts, strict=True)]
            self.count += point.count
            self.sum += point.sum
            self.min, self.max = min(self.min, point.min), max(self.max, point.max)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile, interpolated linearly inside its bucket and clamped to min and max (seconds)."""
        rank = q * self.count
        seen = 0
        for index, count in enumerate(self.bucket_counts):
            if count and seen + count >= rank:
                low = self.bounds[index - 1] if index > 0 else self.min
                high = self.bounds[index] if index < len(self.bounds) else self.max
                low, high = max(low, self.min), min(high, self.max)
                if high <= low:
                    return float(high)
                return float(low + (high - low) * (rank - seen) / count)
            seen += count
        return float(self.max)


def handler_summary(metrics_data: MetricsData | None) -> dict[str, dict[str, Any]]:
    """Per ``@traced`` handler (its ``handler`` label): ``requests``, ``errors``, ``latency_sum_ms`` and
    ``latency_ms`` (``mean``, ``p50``, ``p95``, ``p99``, interpolated inside the exported buckets), since start.

    Reads the ``handler.requests``, ``handler.errors`` and ``handler.duration`` series of ``metrics_data`` (a
    collection, e.g. the newest frame's); points of every ``error_type`` are added up. An empty dict when
    ``metrics_data`` is None or has no handler series.
    """
    counts: dict[str, dict[str, int]] = {}
    durations: dict[str, _Merged] = {}
    if metrics_data is None:
        return {}
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name not in (HANDLER_REQUESTS, HANDLER_ERRORS, HANDLER_DURATION):
                    continue
                for point in metric.data.data_points:
                    handler = str((point.attributes or {}).get("handler", ""))
                    if not handler:
                        continue
                    record = counts.setdefault(handler, {"requests": 0, "errors": 0})
                    if isinstance(point, NumberDataPoint):
                        record["requests" if metric.name == HANDLER_REQUESTS else "errors"] += int(point.value)
                    elif isinstance(point, HistogramDataPoint) and point.count:
                        merged = durations.get(handler)
                        if merged is None:
                            durations[handler] = _Merged(point)
                        else:
                            merged.add(point)
    found: dict[str, dict[str, Any]] = {}
    for handler in sorted(counts):
        summary: dict[str, Any] = dict(counts[handler])
        duration = durations.get(handler)
        if duration is None:
            summary["latency_sum_ms"] = 0.0
            summary["latency_ms"] = {"mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
        else:
            summary["latency_sum_ms"] = _ms(duration.sum)
            latency = {"mean": _ms(duration.sum / duration.count)}
            latency.update((name, _ms(duration.quantile(q))) for name, q in _QUANTILES)
            summary["latency_ms"] = latency
        found[handler] = summary
    return found
