"""``ServerMetrics`` from a collection, driven by the catalog.

Every field of ``ServerMetrics`` is filled from the collected ``MetricsData`` (the very numbers ``/metrics`` and
OTLP carry) or, for distributions, from the sliding-window statistics of the histogram series in the same frame.
Which metric fills which field, with what scale, filter or key, is the catalog's ``snapshot`` column
(:class:`~otel_telemetry.catalog.SnapshotField`); nothing here names a metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from otel_telemetry.catalog import SnapshotField, snapshot_fields
from otel_telemetry.snapshot.model import (
    Distribution,
    GameMetrics,
    HardwareMetrics,
    NetworkMetrics,
    PerformanceMetrics,
    ServerMetrics,
    distribution,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricsData

    from otel_telemetry.accumulators import HistogramState

_SECTIONS: Mapping[str, type] = MappingProxyType(
    {
        "hardware": HardwareMetrics,
        "network": NetworkMetrics,
        "performance": PerformanceMetrics,
        "game": GameMetrics,
    }
)
#: Fields whose type is ``int`` (counts and byte sizes): exported values may arrive as floats.
_INT_FIELDS: frozenset[str] = frozenset(
    f"{section}.{f.name}"
    for section, cls in _SECTIONS.items()
    for f in fields(cls)
    if str(f.type).replace(" ", "") in ("int", "int|None")
)
_NUMBER = re.compile(r"\d+")


def _number_in(text: str) -> int:
    found = _NUMBER.search(text)
    return int(found.group()) if found else 0


def _points_by_name(metrics_data: MetricsData | None) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    if metrics_data is None:
        return found
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _matches(attributes: Mapping[str, Any], where: Mapping[str, str]) -> bool:
    return all(str(attributes.get(k)) == v for k, v in where.items())


def _finite(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _scalar(item: SnapshotField, value: float) -> Any:
    scaled = value * item.scale
    return round(scaled) if item.path in _INT_FIELDS else scaled


def _keyed(item: SnapshotField, pairs: Iterable[tuple[str, Any]]) -> Any:
    """A mapping (or with ``ordered`` a tuple) of the pairs; None when there are none (the field keeps its default)."""
    found = dict(pairs)
    if not found:
        return None
    if item.ordered:
        return tuple(found[k] for k in sorted(found, key=_number_in))
    return MappingProxyType(found)


def _stat(item: SnapshotField, window: Distribution) -> Any:
    if item.stat == "distribution":
        return window
    if item.stat == "percentiles":
        return window.percentiles
    return getattr(window, item.stat)


def _scaled_distribution(state: HistogramState, scale: float) -> Distribution:
    # Windows hold recorded values; layout.scale makes them exported units, ``scale`` the field's unit.
    factor = scale * state.window.layout.scale
    return distribution(state.window, 1.0 if math.isclose(factor, 1.0) else factor)


def _set(values: dict[str, dict[str, Any]], item: SnapshotField, value: Any) -> None:
    if value is not None:
        values[item.section][item.name] = value


def server_metrics(
    server_id: str,
    timestamp: datetime,
    metrics_data: MetricsData | None,
    histograms: Iterable[HistogramState] = (),
    entities: Mapping[str, tuple[str, Mapping[str, float]]] | None = None,
) -> ServerMetrics:
    """The ``ServerMetrics`` of one collection: ``metrics_data`` plus its histogram series' window statistics and
    the per-entity values (``entities``, by metric name: ``(attribute key, {entity: value})``, one value per player,
    kept out of ``metrics_data`` unless exported)."""
    points = _points_by_name(metrics_data)
    by_name: dict[str, list[HistogramState]] = {}
    for state in histograms:
        by_name.setdefault(state.spec.name, []).append(state)
    values: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    for spec, item in snapshot_fields():
        if item.stat != "value":
            states = [s for s in by_name.get(spec.name, ()) if _matches(dict(s.key.attributes), item.where)]
            if item.key is not None:
                keyed = [
                    (dict(s.key.attributes)[item.key], _stat(item, _scaled_distribution(s, item.scale)))
                    for s in states
                    if item.key in dict(s.key.attributes) and s.window.count
                ]
                _set(values, item, _keyed(item, keyed))
            elif states:
                values[item.section][item.name] = _stat(item, _scaled_distribution(states[0], item.scale))
            continue
        if entities is not None and spec.per_entity:
            key, by_entity = entities.get(spec.name, ("", {}))
            if key == item.key and by_entity:
                scale = item.scale  # one comprehension: a value per player, at every collection
                scaled = {entity: v * scale for entity, v in by_entity.items()}
                _set(values, item, _keyed(item, scaled.items()) if item.ordered else MappingProxyType(scaled))
            continue
        chosen = [p for p in points.get(spec.name, ()) if _matches(p.attributes or {}, item.where)]
        if item.key is not None:
            pairs: list[tuple[str, Any]] = []
            for point in chosen:
                label = (point.attributes or {}).get(item.key)
                number = _finite(point.value)
                if label is not None and number is not None:
                    pairs.append((str(label), _scalar(item, number)))
            _set(values, item, _keyed(item, pairs))
            continue
        numbers = [n for n in (_finite(p.value) for p in chosen) if n is not None]
        if numbers:
            values[item.section][item.name] = _scalar(item, sum(numbers))
    return ServerMetrics(
        server_id=server_id,
        timestamp=timestamp,
        **{section: _SECTIONS[section](**found) for section, found in values.items()},
    )
