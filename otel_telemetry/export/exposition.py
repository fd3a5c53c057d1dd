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
    return TextRenderer().render(metrics_data, names, target_info=target_info)


class _Plan:
    """How one metric renders: its family, and per point the text before each value. Valid for a metric with the
    same name, description, unit, kind and points (attributes in the same order, the same bucket bounds)."""

    __slots__ = ("description", "exposed", "family", "help", "histogram", "kind", "name", "points", "unit")

    def __init__(self, metric: Any, family: str, kind: str, exposed: str, points: list[_PointPlan]) -> None:
        self.name = metric.name
        self.description = metric.description
        self.unit = metric.unit
        self.kind = kind
        self.family = family
        self.exposed = exposed
        self.help = metric.description or ""
        self.histogram = kind == "histogram"
        self.points = points

    def fits(self, metric: Any, kind: str) -> bool:
        if metric.name != self.name or metric.description != self.description or metric.unit != self.unit:
            return False
        if kind != self.kind:
            return False
        points = metric.data.data_points
        if len(points) != len(self.points):
            return False
        for point, plan in zip(points, self.points, strict=True):
            if attribute_items(point.attributes) != plan.items:
                return False
            if self.histogram and (
                point.explicit_bounds != plan.bounds or len(point.bucket_counts) != len(plan.prefixes) - 2
            ):
                return False
        return True


class _PointPlan:
    """A point's attributes as planned, and the text before each of its values: the sample, or the buckets then
    ``_count`` and ``_sum`` (with ``totals``: whether those two are written when the point has a sum). For a
    histogram, also the lines last written and the counts and sum they show (``written``): a histogram that
    recorded nothing since the previous frame gets the same lines again."""

    __slots__ = ("bounds", "items", "lines", "prefixes", "totals", "written")

    def __init__(self, items: tuple[tuple[str, Any], ...], prefixes: list[str], bounds: Any, totals: bool) -> None:
        self.items = items
        self.prefixes = prefixes
        self.bounds = bounds
        self.totals = totals
        self.written: tuple[list[int], Any] | None = None
        self.lines: list[str] = []


def _same_number(a: Any, b: Any) -> bool:
    """Whether two numbers are written alike: equal, and for zero of the same sign (``-0.0`` is written so)."""
    return bool(a == b) and (a != 0 or math.copysign(1.0, a) == math.copysign(1.0, b))


def attribute_items(attributes: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """A point's attributes as ``(key, value)`` pairs in their order: what an encoder writes, order included (two
    equal mappings in another order encode differently)."""
    return tuple(attributes.items()) if attributes else ()


def _kind(data: Any) -> str | None:
    cumulative = getattr(data, "aggregation_temporality", None) == AggregationTemporality.CUMULATIVE
    if isinstance(data, Sum) and (data.is_monotonic or not cumulative):
        return "counter"
    if isinstance(data, (Gauge, Sum)):
        return "gauge"
    if isinstance(data, Histogram):
        return "histogram"
    return None


class TextRenderer:
    """Renders frames one after another, reusing each metric's plan (names, labels, line prefixes) from the
    previous frame while the metric's series stay the same: only the values are written again. The bytes are
    :func:`render_text`'s. Not thread-safe: one per exposition, called under its lock."""

    def __init__(self) -> None:
        self._plans: list[_Plan] = []
        self._names: Mapping[str, str] | None = None
        self.planned = 0
        self.reused = 0

    def render(self, metrics_data: MetricsData, names: Mapping[str, str], *, target_info: bool = True) -> bytes:
        """The text exposition of ``metrics_data`` (see :func:`render_text`)."""
        naming = _exporter_naming()
        if names is not self._names:
            self._plans, self._names = [], names
        families: dict[str, _Family] = {}
        out: list[str] = []
        resources = metrics_data.resource_metrics
        if target_info and resources:
            attributes: dict[str, Any] = {}
            for rm in resources:
                attributes.update(rm.resource.attributes)
            labels = _labels((naming[1](k), _label_value(v)) for k, v in attributes.items())
            out.append(f"# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{labels} 1.0\n")
        plans = self._plans
        index = 0
        for rm in resources:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = _kind(metric.data)
                    if kind is None:
                        continue
                    plan = plans[index] if index < len(plans) else None
                    if plan is None or not plan.fits(metric, kind):
                        plan = _plan(metric, kind, names, naming)
                        self.planned += 1
                        if index < len(plans):
                            plans[index] = plan
                        else:
                            plans.append(plan)
                    else:
                        self.reused += 1
                    index += 1
                    family = families.get(plan.family)
                    if family is None:
                        family = families[plan.family] = _Family(plan.exposed, kind, plan.help)
                    _values(family.lines, plan, metric.data.data_points)
        del plans[index:]
        for family in families.values():
            out.append(f"# HELP {family.name} {_help(family.help)}\n# TYPE {family.name} {family.kind}\n")
            out.extend(family.lines)
        return "".join(out).encode("utf-8")


def _values(lines: list[str], plan: _Plan, points: Any) -> None:
    if not plan.histogram:
        for point, point_plan in zip(points, plan.points, strict=True):
            lines.append(f"{point_plan.prefixes[0]}{go_float(point.value)}\n")
        return
    for point, point_plan in zip(points, plan.points, strict=True):
        counts, point_sum = list(point.bucket_counts), point.sum
        written = point_plan.written
        if written is not None and written[0] == counts:
            last_sum = written[1]
            if (point_sum is None and last_sum is None) or (
                point_sum is not None and last_sum is not None and _same_number(point_sum, last_sum)
            ):
                lines.extend(point_plan.lines)
                continue
        prefixes = point_plan.prefixes
        own: list[str] = []
        total = 0
        for prefix, count in zip(prefixes, counts, strict=False):
            total += count
            own.append(f"{prefix}{go_float(total)}\n")
        if point_sum is not None and point_plan.totals:
            own.append(f"{prefixes[-2]}{go_float(total)}\n")
            own.append(f"{prefixes[-1]}{go_float(point_sum)}\n")
        point_plan.written, point_plan.lines = (counts, point_sum), own
        lines.extend(own)


def _plan(metric: Any, kind: str, names: Mapping[str, str], naming: _Naming) -> _Plan:
    sanitize_name, sanitize_label, map_unit = naming
    fixed = names.get(metric.name)
    name = fixed if fixed is not None else sanitize_name(metric.name)
    unit = "" if fixed is not None else map_unit(metric.unit or "")
    if kind == "counter" and name.endswith("_total"):
        name = name[:-6]
    if unit and not name.endswith("_" + unit):
        name = f"{name}_{unit}"
    exposed = name + "_total" if kind == "counter" else name
    points = metric.data.data_points
    rows: list[dict[str, str]] = []
    keys: set[str] = set()
    for point in points:
        row = {sanitize_label(k): _label_value(v) for k, v in point.attributes.items()}
        keys.update(row)
        rows.append(row)
    ordered = sorted(keys)
    planned: list[_PointPlan] = []
    for point, row in zip(points, rows, strict=True):
        pairs = [(k, row.get(k, "")) for k in ordered]
        items = attribute_items(point.attributes)
        if kind != "histogram":
            planned.append(_PointPlan(items, [f"{exposed}{_labels(pairs)} "], None, False))
            continue
        bounds = point.explicit_bounds
        # Labels are sorted with ``le`` among them: split the others around it once per point.
        before = ",".join(f'{k}="{v}"' for k, v in pairs if k < "le")
        after = ",".join(f'{k}="{v}"' for k, v in pairs if k > "le")
        head = f'{name}_bucket{{{before + "," if before else ""}le="'
        tail = f'",{after}}} ' if after else '"} '
        prefixes = [
            f"{head}{bounds[index] if index < len(bounds) else '+Inf'}{tail}"
            for index in range(len(point.bucket_counts))
        ]
        base = _labels(pairs)
        prefixes += [f"{name}_count{base} ", f"{name}_sum{base} "]
        totals = not bounds or float(bounds[0]) >= 0 or len(point.bucket_counts) == 1
        planned.append(_PointPlan(items, prefixes, bounds, totals))
    return _Plan(metric, f"{name}|{metric.description or ''}|{unit}|{kind}", kind, exposed, planned)
