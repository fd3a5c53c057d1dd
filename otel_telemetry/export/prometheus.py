"""The Prometheus exposition of the latest frame.

A scrape never collects: it serves the newest :class:`~otel_telemetry.snapshot.frame.Frame`, translated once per
frame with the OpenTelemetry Prometheus exporter's own translation (names, units, ``_total``, ``target_info``)
and the catalog's Prometheus names. Data points that the text format cannot represent (exponential histograms,
non-numeric values) are dropped and counted in :attr:`PrometheusExposition.dropped_points`; a translation that
fails is logged once and counted, and the scrape answers with what it has, never with a 500.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Metric, MetricsData, Sum
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from otel_telemetry._otel import prometheus_translator
from otel_telemetry.catalog import CATALOG
from otel_telemetry.export.selftelemetry import ExportCounts
from otel_telemetry.snapshot.frame import Frame

_logger = logging.getLogger(__name__)

#: OpenTelemetry name -> Prometheus name for every catalog instrument.
_PROMETHEUS_NAMES: Mapping[str, str] = {spec.name: spec.prometheus_name for spec in CATALOG}


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


class PrometheusExposition(Collector):
    """A prometheus_client collector over the latest frame, registered in its own :attr:`registry`.

    Args:
        frames: returns the frame to serve (the newest one; the caller may take the first on demand).
        scope_labels: add ``otel_scope_*`` labels to every sample (off by default: they clutter every series).
        target_info: expose the ``target_info`` metric with the resource attributes (on by default).
    """

    def __init__(
        self, frames: Callable[[], Frame | None], *, scope_labels: bool = False, target_info: bool = True
    ) -> None:
        self._frames = frames
        self._scope_labels = scope_labels
        self._target_info = target_info
        self._lock = threading.Lock()
        self._served: tuple[int, list[Any]] | None = None
        self._warned = False
        self.dropped_points = 0
        self.scrape_failures = 0
        self.export_counts = ExportCounts("prometheus")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterable[Any]:
        """The families of the newest frame (translated once per frame, shared by concurrent scrapes)."""
        frame = self._frames()
        if frame is None:
            return []
        with self._lock:
            served = self._served
            if served is not None and served[0] == frame.sequence:
                self.export_counts.record(True)
                return list(served[1])
            try:
                families = self.families(frame.metrics_data)
            except Exception:
                self.scrape_failures += 1
                self.export_counts.record(False)
                if not self._warned:
                    self._warned = True
                    _logger.exception("translating a frame for Prometheus failed (logged once; counted)")
                return []
            self._served = (frame.sequence, families)
            self.export_counts.record(True)
            return list(families)

    def families(self, metrics_data: MetricsData) -> list[Any]:
        """The prometheus_client metric families of ``metrics_data`` (catalog names; unrepresentable points
        dropped and counted)."""
        translator = prometheus_translator(target_info=self._target_info, scope_labels=self._scope_labels)
        return translator.families(self._for_prometheus(metrics_data))

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

    def close(self) -> None:
        """Stop serving: the registry yields nothing from now on."""
        self._frames = lambda: None
