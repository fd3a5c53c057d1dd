"""The runtime dashboard's data: a frozen tree of sections, its JSON form, and reading that form back.

:class:`Dashboard` is what ``Telemetry.dashboard()`` returns, what ``GET /dashboard`` serves and what
``otel-telemetry top`` renders. It is built by :class:`~otel_telemetry.snapshot.dashboard.DashboardBuilder` from
frames; here it is plain data. :meth:`Dashboard.to_dict` gives JSON-ready dicts (times ISO-8601 UTC, tuples as
lists, mappings as objects) and :meth:`Dashboard.from_dict` reads them back into an equal tree, so a dashboard
survives ``to_json``/``from_json`` exactly. Reading ignores keys it does not know (a newer server may send more)
and fills absent optional fields with their defaults.

Units: durations and latencies in milliseconds (``_ms``), rates per second (``_per_second``), ratios from 0 to 1
(``_ratio``), percentages from 0 to 100 (``_percent``), sizes in bytes. ``None`` means "no value", never zero.
Every object is immutable and safe to share between threads.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = [
    "AlertRow",
    "CacheSection",
    "Dashboard",
    "DatabaseSection",
    "HandlerRow",
    "NetworkOverview",
    "SystemOverview",
    "TickLoop",
    "WidgetRow",
    "WidgetValue",
]

_T = TypeVar("_T")
_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SystemOverview:
    """The server as a whole.

    Attributes:
        server_id: the server's id (None when unknown, or when ``servers`` > 1 behind a Collector).
        timestamp: when the frame was taken (UTC).
        cpu_percent: host CPU usage, 0-100.
        memory_bytes: memory in use, bytes.
        memory_percent: memory in use, 0-100.
        players: active sessions (connected players).
        uptime_seconds: seconds since the process started.
        servers: how many servers the figures cover (more than 1 only behind a Collector or a federation).
    """

    server_id: str | None
    timestamp: datetime
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    memory_percent: float | None = None
    players: int | None = None
    uptime_seconds: float | None = None
    servers: int = 1


@dataclass(frozen=True, slots=True)
class TickLoop:
    """The simulation loop.

    Attributes:
        tick_rate_fps: ticks per second over the last collection interval.
        target_fps: the configured tick rate.
        budget_ms: the time one tick may take at the target rate (1000 / target_fps).
        ticks: ticks whose duration the percentiles cover.
        tick_avg_ms, tick_p50_ms, tick_p95_ms, tick_p99_ms: tick duration statistics.
        window_seconds: the interval the tick figures cover, or None when they cover everything since the start
            (first frame, or no tick in the last interval).
        late_ticks: ticks (of ``ticks``) that took longer than ``budget_ms`` (within 0.5 %); None when unknown.
        entities: entities alive.
        active_maps: maps (simulations) running.
    """

    tick_rate_fps: float | None = None
    target_fps: float | None = None
    budget_ms: float | None = None
    ticks: int = 0
    tick_avg_ms: float | None = None
    tick_p50_ms: float | None = None
    tick_p95_ms: float | None = None
    tick_p99_ms: float | None = None
    window_seconds: float | None = None
    late_ticks: int | None = None
    entities: int | None = None
    active_maps: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkOverview:
    """Traffic and latency as players see it.

    Attributes:
        packets_in_per_second, packets_out_per_second: packets per second.
        avg_ping_ms: the server's average player ping.
        ping_p50_ms, ping_p95_ms, ping_p99_ms: ping percentiles over ``window_seconds`` (None: since the start).
        window_seconds: the interval the ping percentiles cover, or None.
        connections: open connections.
    """

    packets_in_per_second: float | None = None
    packets_out_per_second: float | None = None
    avg_ping_ms: float | None = None
    ping_p50_ms: float | None = None
    ping_p95_ms: float | None = None
    ping_p99_ms: float | None = None
    window_seconds: float | None = None
    connections: int | None = None


@dataclass(frozen=True, slots=True)
class DatabaseSection:
    """Database queries over the last interval (``Dashboard.window_seconds``), read from the metric names of one
    :class:`~otel_telemetry.snapshot.dashboard.DashboardSources`.

    Attributes:
        source: the query-timing metric read (OpenTelemetry name, with its attribute match).
        queries: queries timed in the interval.
        queries_per_second: ``queries`` per second.
        latency_avg_ms, latency_p50_ms, latency_p95_ms, latency_p99_ms: query latency in the interval.
        failed_queries: failed queries in the interval; failed_queries_total: since the start.
        pool_in_use, pool_size: connections of the pool in use, and its size.
        pool_utilization_percent: ``pool_in_use / pool_size``, 0-100.
        size_bytes: the database's size.
    """

    source: str
    queries: int = 0
    queries_per_second: float | None = None
    latency_avg_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    failed_queries: float | None = None
    failed_queries_total: float | None = None
    pool_in_use: float | None = None
    pool_size: float | None = None
    pool_utilization_percent: float | None = None
    size_bytes: float | None = None


@dataclass(frozen=True, slots=True)
class CacheSection:
    """Cache lookups over the last interval.

    Attributes:
        source: the hit-counter metric read (OpenTelemetry name, with its attribute match).
        hits, misses: lookups in the interval; hits_total, misses_total: since the start.
        hit_rate_percent, miss_rate_percent: shares of the interval's lookups, 0-100 (None without lookups).
        lookups_per_second: hits and misses per second.
        items: entries held; size_bytes: bytes held.
    """

    source: str
    hits: float | None = None
    misses: float | None = None
    hits_total: float | None = None
    misses_total: float | None = None
    hit_rate_percent: float | None = None
    miss_rate_percent: float | None = None
    lookups_per_second: float | None = None
    items: float | None = None
    size_bytes: float | None = None


@dataclass(frozen=True, slots=True)
class HandlerRow:
    """One ``@traced`` handler (its ``handler`` attribute) over the last interval.

    Attributes:
        handler: the handler's name (``_overflow`` collects handlers beyond the series budget).
        requests, errors: calls, and calls that raised, in the interval.
        requests_per_second, errors_per_second: the same per second.
        error_ratio, success_ratio: ``errors / requests`` and its complement, 0-1 (None without calls).
        latency_avg_ms, latency_p50_ms, latency_p95_ms, latency_p99_ms: call duration in the interval
            (percentiles interpolated inside the exported buckets, as Prometheus' ``histogram_quantile``, and kept
            within the observed min and max when those are known).
        requests_total, errors_total: since the start.
    """

    handler: str
    requests: int = 0
    errors: int = 0
    requests_per_second: float | None = None
    errors_per_second: float | None = None
    error_ratio: float | None = None
    success_ratio: float | None = None
    latency_avg_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    requests_total: int = 0
    errors_total: int = 0


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One active alert.

    Attributes:
        name: the rule's name; severity: its severity; state: ``pending`` or ``firing``.
        value: the last value that met the condition.
        metric: the watched ``ServerMetrics`` path ("" when unknown).
        since: ISO-8601 time it fires since (firing) or holds since (pending); None when unknown.
    """

    name: str
    severity: str
    state: str
    value: float | None = None
    metric: str = ""
    since: str | None = None


@dataclass(frozen=True, slots=True)
class WidgetRow:
    """One series of a table widget: its attributes and its value."""

    attributes: Mapping[str, str] = field(default_factory=lambda: _NO_ATTRIBUTES)
    value: float | None = None


@dataclass(frozen=True, slots=True)
class WidgetValue:
    """The current value of one configured widget.

    Attributes:
        kind: ``chart``, ``table`` or ``status``.
        title, metric, statistic: as configured (``metric`` with its attribute match).
        unit: the metric's unit ("" when unknown).
        value: the statistic over every matching series (None when there is none, or it does not apply).
        status: for status widgets, ``ok``, ``warn``, ``critical`` or ``unknown`` (no value); else None.
        warn, critical: the configured thresholds.
        rows: for table widgets, one row per matching series (at most 50; ``rows_omitted`` more).
        history: for chart widgets, the values of the last frames, oldest first (at most 60).
    """

    kind: str
    title: str
    metric: str
    statistic: str
    unit: str = ""
    value: float | None = None
    status: str | None = None
    warn: float | None = None
    critical: float | None = None
    rows: tuple[WidgetRow, ...] = ()
    rows_omitted: int = 0
    history: tuple[float | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Dashboard:
    """The runtime dashboard of one game server (or of the servers behind one endpoint).

    Attributes:
        system, tick_loop, network: always present.
        database, cache: None when the server records nothing of the kind.
        handlers: one row per ``@traced`` handler, busiest first (``handlers_omitted`` more beyond the cap).
        alerts: the active alerts, firing first (``alerts_omitted`` more beyond the cap).
        widgets: the configured widgets' values, in the order they were added.
        window_seconds: the interval rates and interval counts cover: between the previous frame the builder saw
            and this one; None when they cover everything since the start.
        sequence: the frame's sequence number (None when built from a ``/metrics`` scrape).

    Immutable; :meth:`to_json` and :meth:`from_json` round-trip exactly.
    """

    system: SystemOverview
    tick_loop: TickLoop = field(default_factory=TickLoop)
    network: NetworkOverview = field(default_factory=NetworkOverview)
    database: DatabaseSection | None = None
    cache: CacheSection | None = None
    handlers: tuple[HandlerRow, ...] = ()
    handlers_omitted: int = 0
    alerts: tuple[AlertRow, ...] = ()
    alerts_omitted: int = 0
    widgets: tuple[WidgetValue, ...] = ()
    window_seconds: float | None = None
    sequence: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: every section as an object, tuples as lists, times as ISO-8601 UTC strings."""
        encoded: dict[str, Any] = _encode(self)
        return encoded

    def to_json(self, indent: int | None = None) -> str:
        """The dashboard as JSON (no NaN or infinity: absent values are ``null``)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dashboard:
        """The dashboard ``data`` describes (what :meth:`to_dict` returns, or its JSON decoded).

        Raises:
            ValueError: a field is missing or has the wrong type; the message names the field and the value.
        """
        return _decode_dataclass(cls, data, "Dashboard")

    @classmethod
    def from_json(cls, text: str | bytes) -> Dashboard:
        """The dashboard in the JSON ``text`` (what :meth:`to_json` returns).

        Raises:
            ValueError: ``text`` is not JSON, or not a dashboard (the message names the field and the value).
        """
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Dashboard: not JSON ({error})") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"Dashboard: expected a JSON object, got {_show(data)}")
        return cls.from_dict(data)


# --- JSON form ----------------------------------------------------------------------------------------------------
def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _encode(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Mapping):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_encode(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(where: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{where}: expected {expected}, got {_show(value)}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a model class (cached: the model's classes are few and fixed)."""
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = get_type_hints(cls)
    return found


def _decode(kind: Any, value: Any, where: str) -> Any:
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        options = get_args(kind)
        if value is None and type(None) in options:
            return None
        (inner,) = (option for option in options if option is not type(None))
        return _decode(inner, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _bad(where, "a list", value)
        item = get_args(kind)[0]
        return tuple(_decode(item, element, f"{where}[{i}]") for i, element in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise _bad(where, "an object of strings", value)
        return MappingProxyType(dict(value))
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _bad(where, "a finite number", value)
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(where, "an integer", value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise _bad(where, "a string", value)
    if kind is datetime:
        try:
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise _bad(where, "an ISO-8601 time", value) from None
        if moment.tzinfo is None:
            raise _bad(where, "an ISO-8601 time with a UTC offset", value)
        return moment
    if isinstance(kind, type) and is_dataclass(kind):
        return _decode_dataclass(kind, value, where)
    raise TypeError(f"{where}: no decoder for {kind!r}")  # a model field of a new type: a bug here, not bad input


def _decode_dataclass(cls: type[_T], data: Any, where: str) -> _T:
    if not isinstance(data, Mapping):
        raise _bad(where, "an object", data)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        if item.name in data:
            values[item.name] = _decode(hints[item.name], data[item.name], f"{where}.{item.name}")
        elif item.default is MISSING and item.default_factory is MISSING:
            raise ValueError(f"{where}.{item.name}: missing")
    return cls(**values)
