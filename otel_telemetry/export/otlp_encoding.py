"""OTLP requests for consecutive frames, encoded once and then updated in place.

A game server's frames have the same series, in the same order, from one interval to the next: only timestamps and
values change. The official encoder (``encode_metrics``) builds every message of the request again each time, which
at the spec's load is most of an export's CPU. :class:`RequestEncoder` keeps the request it built for the previous
frame and, when the new frame has exactly the same resources, scopes, metrics and series, writes the new numbers
into it. Anything else (a series added or gone, other attributes or attribute order, exemplars, an exponential
histogram) is encoded again by the official encoder, so the bytes are always the ones it would produce; the tests
compare the two frame by frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum

from otel_telemetry.export.exposition import attribute_items

#: Per metric: (name, description, unit, data class, temporality, monotonic, point slots).
_MetricSlot = tuple[str, str, str, type, Any, Any, list["_PointSlot"]]
#: Per data point: (attribute items in order, explicit bounds or None, the request's point message).
_PointSlot = tuple[tuple[tuple[str, Any], ...], Any, Any]
_Layout = list[tuple[Any, list[tuple[Any, list[_MetricSlot]]]]]


def _same(kept: Any, new: Any) -> bool:
    """Whether a resource or scope encodes as the kept one: equal, with the same attributes in the same order."""
    return new is kept or (new == kept and attribute_items(new.attributes) == attribute_items(kept.attributes))


class RequestEncoder:
    """``encode_metrics`` for a sequence of frames, reusing the previous request when the series are the same.

    The returned request belongs to the encoder and changes at the next :meth:`encode`: serialize it first. Not
    thread-safe (one exporter thread). :attr:`encoded` counts requests built by the official encoder,
    :attr:`updated` those rewritten in place.
    """

    def __init__(self) -> None:
        self._request: ExportMetricsServiceRequest | None = None
        self._layout: _Layout | None = None
        self.encoded = 0
        self.updated = 0

    def encode(self, data: MetricsData) -> ExportMetricsServiceRequest:
        """The request for ``data``: equal to ``encode_metrics(data)``."""
        request = self._request
        if request is not None and self._update(data):
            self.updated += 1
            return request
        self._request = self._layout = None
        request = encode_metrics(data)
        self.encoded += 1
        layout = _layout(data, request)
        if layout is not None:
            self._request, self._layout = request, layout
        return request

    def _update(self, data: MetricsData) -> bool:
        """Write ``data``'s numbers into the kept request; False (the request is then stale) when a series differs."""
        layout = self._layout
        assert layout is not None
        if len(data.resource_metrics) != len(layout):
            return False
        for rm, (resource, scopes) in zip(data.resource_metrics, layout, strict=True):
            if not _same(resource, rm.resource):
                return False
            if len(rm.scope_metrics) != len(scopes):
                return False
            for sm, (scope, metrics) in zip(rm.scope_metrics, scopes, strict=True):
                if not _same(scope, sm.scope) or len(sm.metrics) != len(metrics):
                    return False
                for metric, slot in zip(sm.metrics, metrics, strict=True):
                    if not _update_metric(metric, slot):
                        return False
        return True


def _update_metric(metric: Any, slot: _MetricSlot) -> bool:
    name, description, unit, kind, temporality, monotonic, points = slot
    data: Any = metric.data
    data_class: type = type(data)
    if data_class is not kind or metric.name != name or metric.description != description or metric.unit != unit:
        return False
    if kind is not Gauge and data.aggregation_temporality != temporality:
        return False
    if kind is Sum and data.is_monotonic != monotonic:
        return False
    if len(data.data_points) != len(points):
        return False
    for point, (items, bounds, pb) in zip(data.data_points, points, strict=True):
        if point.exemplars or attribute_items(point.attributes) != items:
            return False
        if kind is Histogram:
            if point.explicit_bounds != bounds:
                return False
            _set_histogram(pb, point)
            continue
        if kind is Sum:
            pb.start_time_unix_nano = point.start_time_unix_nano
        pb.time_unix_nano = point.time_unix_nano
        value = point.value
        if isinstance(value, int):  # as the official encoder decides
            pb.as_int = value
        else:
            pb.as_double = value
    return True


def _set_histogram(pb: Any, point: Any) -> None:
    pb.start_time_unix_nano = point.start_time_unix_nano
    pb.time_unix_nano = point.time_unix_nano
    pb.count = point.count
    counts = pb.bucket_counts
    if len(counts) == len(point.bucket_counts):
        counts[:] = point.bucket_counts
    else:
        del counts[:]
        counts.extend(point.bucket_counts)
    for field in ("sum", "min", "max"):  # optional fields: None leaves them unset, as in encode_metrics
        value = getattr(point, field)
        if value is None:
            pb.ClearField(field)
        else:
            setattr(pb, field, value)


def _layout(data: MetricsData, request: ExportMetricsServiceRequest) -> _Layout | None:
    """Where each series of ``data`` sits in ``request`` (just encoded from it); None when the request cannot be
    updated in place: the encoder merged repeated resources or scopes, or a metric is of another kind or carries
    exemplars."""
    if len(request.resource_metrics) != len(data.resource_metrics):
        return None
    layout: _Layout = []
    for rm, pb_rm in zip(data.resource_metrics, request.resource_metrics, strict=True):
        if len(pb_rm.scope_metrics) != len(rm.scope_metrics):
            return None
        scopes: list[tuple[Any, list[_MetricSlot]]] = []
        for sm, pb_sm in zip(rm.scope_metrics, pb_rm.scope_metrics, strict=True):
            metrics: list[_MetricSlot] = []
            for metric, pb_metric in zip(sm.metrics, pb_sm.metrics, strict=True):
                slot = _metric_slot(metric, pb_metric)
                if slot is None:
                    return None
                metrics.append(slot)
            scopes.append((sm.scope, metrics))
        layout.append((rm.resource, scopes))
    return layout


def _metric_slot(metric: Any, pb_metric: Any) -> _MetricSlot | None:
    data = metric.data
    kind = type(data)
    if kind is Gauge:
        pb_points: Sequence[Any] = pb_metric.gauge.data_points
    elif kind is Sum:
        pb_points = pb_metric.sum.data_points
    elif kind is Histogram:
        pb_points = pb_metric.histogram.data_points
    else:
        return None
    if len(pb_points) != len(data.data_points):
        return None
    points: list[_PointSlot] = []
    for point, pb in zip(data.data_points, pb_points, strict=True):
        if point.exemplars:
            return None
        bounds = point.explicit_bounds if kind is Histogram else None
        points.append((attribute_items(point.attributes), bounds, pb))
    temporality = None if kind is Gauge else data.aggregation_temporality
    monotonic = data.is_monotonic if kind is Sum else None
    return (metric.name, metric.description, metric.unit, kind, temporality, monotonic, points)
