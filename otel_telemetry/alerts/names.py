"""Metric names a rule may watch: OpenTelemetry names, the Prometheus names the exporter gives them, and their kind.

A rule on a metric of the frame names it by its OpenTelemetry name (``"api.latency"``, ``"handler.errors"``) or by
the name ``/metrics`` shows for it (``"api_latency_seconds"``, ``"handler_errors_total"``): counters end in
``_total``, histograms are named by their family (without ``_bucket``/``_sum``/``_count``), and the unit suffix is
the one the OpenTelemetry Prometheus exporter appends (:func:`~otel_telemetry.series.prometheus_family`); catalog
metrics keep the catalog's fixed names. Pure functions and immutable tables; thread-safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, Histogram, Metric, Sum

from otel_telemetry.catalog import CATALOG
from otel_telemetry.recording.tracing import HANDLER_DURATION, HANDLER_ERRORS, HANDLER_REQUESTS
from otel_telemetry.series import prometheus_family

#: How a metric reads on ``/metrics``.
PrometheusKind = Literal["counter", "gauge", "histogram"]

# Patterns, not compiled ones: ``re`` compiles (and caches) them on the first metric-name rule or PromQL, which the
# default rules never need.
#: An OpenTelemetry instrument name or a Prometheus metric name (what a metric-name rule may give).
_METRIC_NAME = r"[A-Za-z_:][-A-Za-z0-9_./:]{0,254}"
#: A Prometheus metric name (no dots: what PromQL can select as it is).
_PROMETHEUS_NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"


def is_metric_name(text: str) -> bool:
    """True for text a metric-name rule may watch (an OpenTelemetry or a Prometheus metric name)."""
    return re.fullmatch(_METRIC_NAME, text) is not None


def is_prometheus_name(text: str) -> bool:
    """True for a valid Prometheus metric name (``[A-Za-z_:][A-Za-z0-9_:]*``)."""
    return re.fullmatch(_PROMETHEUS_NAME, text) is not None


@dataclass(frozen=True, slots=True)
class ExportedName:
    """One metric as it reads on ``/metrics``.

    Attributes:
        otel: the OpenTelemetry name (``"handler.errors"``).
        prometheus: the name PromQL selects: ``handler_errors_total`` for a counter, the family
            (``api_latency_seconds``) for a histogram, the gauge's own name.
        kind: ``"counter"``, ``"gauge"`` or ``"histogram"``.
    """

    otel: str
    prometheus: str
    kind: PrometheusKind


#: OpenTelemetry name -> the catalog's fixed Prometheus name (counters already end in ``_total``).
_CATALOG_NAMES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {spec.name: (spec.prometheus_name, spec.instrument.prometheus_type) for spec in CATALOG}
)


def exported_name(name: str, unit: str, kind: PrometheusKind) -> ExportedName:
    """The Prometheus name of OpenTelemetry metric ``name`` with ``unit`` and ``kind``, as ``/metrics`` shows it."""
    fixed = _CATALOG_NAMES.get(name)
    if fixed is not None:
        return ExportedName(name, fixed[0], kind)
    family = prometheus_family(name, unit, kind)
    return ExportedName(name, family + "_total" if kind == "counter" else family, kind)


def metric_kind(metric: Metric) -> PrometheusKind | None:
    """The kind ``metric`` has on ``/metrics`` (as the exporter decides it); None for what it cannot show."""
    data: Any = metric.data
    if isinstance(data, Sum):
        cumulative = data.aggregation_temporality == AggregationTemporality.CUMULATIVE
        return "counter" if data.is_monotonic or not cumulative else "gauge"
    if isinstance(data, Gauge):
        return "gauge"
    if isinstance(data, Histogram):
        return "histogram"
    return None


def _known() -> Mapping[str, ExportedName]:
    found: dict[str, ExportedName] = {}
    entries = [(spec.name, spec.unit, cast(PrometheusKind, spec.instrument.prometheus_type)) for spec in CATALOG]
    entries += [
        (HANDLER_DURATION, "s", "histogram"),
        (HANDLER_REQUESTS, "{request}", "counter"),
        (HANDLER_ERRORS, "{request}", "counter"),
    ]
    for name, unit, kind in entries:
        exported = exported_name(name, unit, kind)
        found.setdefault(exported.otel, exported)
        found.setdefault(exported.prometheus, exported)
    return MappingProxyType(found)


#: The metrics every handle exports whatever the application does (the catalog and the ``@traced`` handlers'),
#: by OpenTelemetry and by Prometheus name.
KNOWN_METRICS: Mapping[str, ExportedName] = _known()
