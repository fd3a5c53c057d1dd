"""The Prometheus text exposition (format 0.0.4) of a frame, rendered in one pass.

The OpenTelemetry Prometheus exporter translates ``MetricsData`` into prometheus_client metric families and
prometheus_client renders them; together that costs tens of milliseconds of the GIL for a game server's ~1,000
series, once per scrape. This module produces the same bytes directly from ``MetricsData``: the exporter's names
(its own sanitising and unit mapping, reached through ``_otel.prometheus_naming``), family grouping, label
backfilling and ``target_info``, and prometheus_client's line format and number formatting. ``tests/test_exposition.py``
checks the output byte for byte against the exporter plus ``prometheus_client.generate_latest`` for real frames.

The exporter's naming module is loaded on the first rendering, not on import: the OpenTelemetry Prometheus exporter
package brings prometheus_client (and ``http.server`` under it) with it, and setting up a handle renders nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, Histogram, MetricsData, Sum

from otel_telemetry._otel import prometheus_naming

_INF = math.inf

#: The exporter's ``(sanitize_full_name, sanitize_attribute, map_unit)``, once the first rendering loaded them.
_Naming = tuple[Callable[[str], str], Callable[[str], str], Callable[[str], str]]
_naming: _Naming | None = None


def _exporter_naming() -> _Naming:
    """The exporter's naming functions, loaded on first use (two threads racing here load the same functions)."""
    global _naming
    naming = _naming
    if naming is None:
        naming = _naming = prometheus_naming()
    return naming


def go_float(value: float) -> str:
    """``value`` as Prometheus (Go) writes a float: ``1.0``, ``+Inf``, ``NaN``, ``1.5e+07``."""
    if value.__class__ is int and -1_000_000 < value < 1_000_000:
        return f"{value}.0"  # what repr(float(n)) gives, without the float
    d = float(value)
    if d == _INF:
        return "+Inf"
    if d == -_INF:
        return "-Inf"
    if d != d:
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _label_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if "\\" in text or "\n" in text or '"' in text:
        text = text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return text


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class _Family:
    __slots__ = ("help", "kind", "lines", "name")

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = name
        self.kind = kind
        self.help = help_text
        self.lines: list[str] = []


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(pairs))
    return "{" + inner + "}" if inner else ""


def render_text(metrics_data: MetricsData, names: Mapping[str, str], *, target_info: bool = True) -> bytes:
    """The text exposition of ``metrics_data``; ``names`` maps OpenTelemetry names to final Prometheus names
    (the catalog's, exposed without a unit suffix)."""
    naming = _exporter_naming()
    families: dict[str, _Family] = {}
    out: list[str] = []
    resources = metrics_data.resource_metrics
    if target_info and resources:
        attributes: dict[str, Any] = {}
        for rm in resources:
            attributes.update(rm.resource.attributes)
        labels = _labels((naming[1](k), _label_value(v)) for k, v in attributes.items())
        out.append(f"# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{labels} 1.0\n")
    for rm in resources:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _add_metric(families, metric, names, naming)
    for family in families.values():
        out.append(f"# HELP {family.name} {_help(family.help)}\n# TYPE {family.name} {family.kind}\n")
        out.extend(family.lines)
    return "".join(out).encode("utf-8")


def _add_metric(families: dict[str, _Family], metric: Any, names: Mapping[str, str], naming: _Naming) -> None:
    sanitize_name, sanitize_label, map_unit = naming
    data = metric.data
    fixed = names.get(metric.name)
    name = fixed if fixed is not None else sanitize_name(metric.name)
    unit = "" if fixed is not None else map_unit(metric.unit or "")
    description = metric.description or ""
    cumulative = getattr(data, "aggregation_temporality", None) == AggregationTemporality.CUMULATIVE
    if isinstance(data, Sum) and (data.is_monotonic or not cumulative):
        kind = "counter"
        if name.endswith("_total"):
            name = name[:-6]
    elif isinstance(data, (Gauge, Sum)):
        kind = "gauge"
    elif isinstance(data, Histogram):
        kind = "histogram"
    else:
        return
    if unit and not name.endswith("_" + unit):
        name = f"{name}_{unit}"
    key = f"{name}|{description}|{unit}|{kind}"
    family = families.get(key)
    exposed = name + "_total" if kind == "counter" else name
    if family is None:
        family = families[key] = _Family(exposed, kind, description)
    points = data.data_points
    rows: list[dict[str, str]] = []
    keys: set[str] = set()
    for point in points:
        row = {sanitize_label(k): _label_value(v) for k, v in point.attributes.items()}
        keys.update(row)
        rows.append(row)
    ordered = sorted(keys)
    lines = family.lines
    for point, row in zip(points, rows, strict=True):
        pairs = [(k, row.get(k, "")) for k in ordered]
        if kind != "histogram":
            lines.append(f"{exposed}{_labels(pairs)} {go_float(point.value)}\n")
            continue
        total = 0
        bounds = point.explicit_bounds
        # Labels are sorted with ``le`` among them: split the others around it once per point.
        before = ",".join(f'{k}="{v}"' for k, v in pairs if k < "le")
        after = ",".join(f'{k}="{v}"' for k, v in pairs if k > "le")
        head = f'{name}_bucket{{{before + "," if before else ""}le="'
        tail = f'",{after}}} ' if after else '"} '
        for index, count in enumerate(point.bucket_counts):
            total += count
            bound = f"{bounds[index]}" if index < len(bounds) else "+Inf"
            lines.append(f"{head}{bound}{tail}{go_float(total)}\n")
        if point.sum is not None and (not bounds or float(bounds[0]) >= 0 or len(point.bucket_counts) == 1):
            base = _labels(pairs)
            lines.append(f"{name}_count{base} {go_float(total)}\n")
            lines.append(f"{name}_sum{base} {go_float(point.sum)}\n")
