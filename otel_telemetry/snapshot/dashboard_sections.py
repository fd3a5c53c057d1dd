"""What fills the runtime dashboard's sections: the metric sources, the widgets, and a section per part.

Configuration (:class:`DashboardSources`, :class:`Widget`) and the functions that read one section each from a
:class:`~otel_telemetry.snapshot.dashboard_reader.Reader` over two frames. The behaviour is documented in
:mod:`otel_telemetry.snapshot.dashboard`, which re-exports the public names; everything here is immutable or pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from otel_telemetry.catalog import lookup
from otel_telemetry.snapshot.dashboard_model import (
    AlertRow,
    CacheSection,
    DatabaseSection,
    HandlerRow,
    NetworkOverview,
    SystemOverview,
    TickLoop,
    WidgetRow,
    WidgetValue,
)
from otel_telemetry.snapshot.dashboard_reader import (
    KEY,
    NAME,
    Dist,
    Key,
    Reader,
    count_above,
    finite,
    ms,
    per_second,
    selector,
)

if TYPE_CHECKING:
    from otel_telemetry.snapshot.frame import Frame

__all__ = [
    "CHART_POINTS",
    "DEFAULT_SOURCES",
    "FACADE_SOURCES",
    "GAME_MONITOR_SOURCES",
    "SEMCONV_SOURCES",
    "STATISTICS",
    "TABLE_ROWS",
    "WIDGET_KINDS",
    "DashboardSources",
    "Widget",
]

_T = TypeVar("_T")

#: What a widget shows: a value with its recent history, one row per series, or ok/warn/critical.
WIDGET_KINDS = ("chart", "table", "status")
#: Widget statistics (the alert rules' words where they overlap): ``value`` (a gauge, or a counter's total),
#: ``delta`` and ``rate`` (a counter's increase over the interval, and per second; ``rate`` of a histogram:
#: observations per second), and of a histogram over the interval ``count``, ``sum``, ``mean``, ``min``, ``max``,
#: ``p50``, ``p90``, ``p95``, ``p99`` (in the metric's unit). A statistic that does not fit the metric gives None.
STATISTICS = ("value", "delta", "rate", "count", "sum", "mean", "min", "max", "p50", "p90", "p95", "p99")
#: Values a chart widget keeps (one per frame built).
CHART_POINTS = 60
#: Rows a table widget shows.
TABLE_ROWS = 50
# The @traced handlers' instruments (otel_telemetry.recording.tracing, which loads the SDK: a test pins them).
HANDLER_DURATION = "handler.duration"
HANDLER_REQUESTS = "handler.requests"
HANDLER_ERRORS = "handler.errors"
_UPTIME = "process.uptime"
_TICK = lookup("performance.frame_time.distribution").name
_PING = lookup("network.ping.distribution").name
_NO_MATCH: Mapping[str, str] = MappingProxyType({})


# --- Configuration ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DashboardSources:
    """Which metrics fill the database and cache sections (OpenTelemetry names as exported; None: not read).

    Each is ``name`` or ``name{key=value,...}``. Timings are histograms in seconds; errors, hits and misses are
    counts (a counter's value, or a histogram's observations); the others are gauges. The defaults are the
    statsd-style facade names (see the module docstring); immutable.

    Raises:
        ValueError: a source is not a metric name with an optional attribute match (naming the field).
    """

    database_timing: str | None = "db.query"
    database_errors: str | None = "db.errors"
    database_pool_in_use: str | None = "db.pool.in_use"
    database_pool_size: str | None = "db.pool.size"
    database_size: str | None = "db.size"
    cache_hits: str | None = "cache.hits"
    cache_misses: str | None = "cache.misses"
    cache_items: str | None = "cache.items"
    cache_bytes: str | None = "cache.bytes"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                try:
                    selector(value)
                except (TypeError, ValueError) as error:
                    raise ValueError(f"DashboardSources.{item.name}: {error}") from None


#: The statsd-style facade's names (the defaults of :class:`DashboardSources`).
FACADE_SOURCES = DashboardSources()
#: OpenTelemetry's database client semantic conventions (no cache conventions exist).
SEMCONV_SOURCES = DashboardSources(
    database_timing="db.client.operation.duration",
    database_errors="db.client.operation.duration{error.type=*}",
    database_pool_in_use="db.client.connection.count{db.client.connection.state=used}",
    database_pool_size="db.client.connection.max",
    database_size=None,
    cache_hits=None,
    cache_misses=None,
    cache_items=None,
    cache_bytes=None,
)
#: The game monitor's database and cache series.
GAME_MONITOR_SOURCES = DashboardSources(
    database_timing=lookup("game.database.query_time").name,
    database_errors=None,
    database_pool_in_use=None,
    database_pool_size=None,
    database_size=lookup("game.database.size").name,
    cache_hits=lookup("game.database.cache_lookups_total").name + "{outcome=hit}",
    cache_misses=lookup("game.database.cache_lookups_total").name + "{outcome=miss}",
    cache_items=None,
    cache_bytes=None,
)
#: The sources a builder tries in order: facade, semantic conventions, game monitor.
DEFAULT_SOURCES: tuple[DashboardSources, ...] = (FACADE_SOURCES, SEMCONV_SOURCES, GAME_MONITOR_SOURCES)


def _threshold(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"Widget.{name}: expected a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Widget:
    """One customizable widget: a statistic of one metric, shown as a chart, a table or a status indicator.

    Attributes:
        kind: one of :data:`WIDGET_KINDS`.
        title: what the widget is called (unique within a builder).
        metric: an OpenTelemetry metric name as exported (``"server.cpu.usage"``, ``"db.query"``).
        statistic: one of :data:`STATISTICS` (default ``value``).
        match: only series carrying these attributes (``"*"``: any value); every series by default.
        warn, critical: thresholds in the statistic's unit; ``critical`` above ``warn`` means higher is worse,
            below it lower is worse (a status needs both).

    Immutable. Raises :class:`ValueError` naming the field and the value.
    """

    kind: str
    title: str
    metric: str
    statistic: str = "value"
    match: Mapping[str, str] = field(default_factory=lambda: _NO_MATCH)
    warn: float | None = None
    critical: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in WIDGET_KINDS:
            raise ValueError(f"Widget.kind: expected one of {', '.join(WIDGET_KINDS)}, got {self.kind!r}")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError(f"Widget.title: expected a non-empty string, got {self.title!r}")
        if not isinstance(self.metric, str) or not re.fullmatch(NAME, self.metric):
            raise ValueError(f"Widget.metric: expected an OpenTelemetry metric name, got {self.metric!r}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"Widget.statistic: expected one of {', '.join(STATISTICS)}, got {self.statistic!r}")
        if not isinstance(self.match, Mapping) or not all(
            isinstance(k, str) and KEY.fullmatch(k) and isinstance(v, str) and v for k, v in self.match.items()
        ):
            raise ValueError(f"Widget.match: expected a mapping of attribute names to strings, got {self.match!r}")
        object.__setattr__(self, "match", MappingProxyType(dict(sorted(self.match.items()))))
        warn, critical = _threshold("warn", self.warn), _threshold("critical", self.critical)
        object.__setattr__(self, "warn", warn)
        object.__setattr__(self, "critical", critical)
        if self.kind == "status" and (warn is None or critical is None):
            raise ValueError(f"Widget.warn/critical: a status widget needs both, got {self.warn!r} and {critical!r}")
        if warn is not None and warn == critical:
            raise ValueError(f"Widget.critical: must differ from warn ({warn!r}), got {critical!r}")

    @property
    def source(self) -> str:
        """The metric with its match, as a source (``name{key=value}``)."""
        if not self.match:
            return self.metric
        return self.metric + "{" + ",".join(f"{k}={v}" for k, v in self.match.items()) + "}"

    def level(self, value: float | None) -> str:
        """``ok``, ``warn`` or ``critical`` for ``value`` against the thresholds; ``unknown`` for None."""
        if value is None or (self.warn is None and self.critical is None):
            return "unknown" if value is None else "ok"
        higher_is_worse = self.warn is None or self.critical is None or self.critical > self.warn
        sign = 1.0 if higher_is_worse else -1.0
        if self.critical is not None and sign * value >= sign * self.critical:
            return "critical"
        if self.warn is not None and sign * value >= sign * self.warn:
            return "warn"
        return "ok"


def alert_row(item: Mapping[str, object]) -> AlertRow:
    """An :class:`AlertRow` from ``Alert.to_dict()``; ValueError (or TypeError) when it is not one."""
    name, state = item["name"], item.get("state")
    if not isinstance(name, str) or not name or not isinstance(state, str):
        raise ValueError(f"not an alert: {item!r:.80}")
    value = item.get("value")
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    since = item.get("fired_at") if state == "firing" and item.get("fired_at") else item.get("active_since")
    return AlertRow(
        name=name,
        severity=str(item.get("severity") or ""),
        state=state,
        value=finite(number),
        metric=str(item.get("metric") or ""),
        since=since if isinstance(since, str) else None,
    )


# --- Sections ---------------------------------------------------------------------------------------------------------
def _dist(reader: Reader, source: str | None) -> Dist | None:
    if source is None:
        return None
    name, match = selector(source)
    return reader.histogram(name, match)


def _count(reader: Reader, source: str | None) -> tuple[float | None, float | None, float | None]:
    """(interval count, total, seconds) of a count source: zeros when it is configured but has no series yet."""
    if source is None:
        return None, None, None
    name, match = selector(source)
    found = reader.count(name, match)
    return (0.0, 0.0, None) if found is None else (found.delta, found.total, found.seconds)


def _gauge(reader: Reader, source: str | None) -> float | None:
    if source is None:
        return None
    name, match = selector(source)
    return reader.gauge(name, match)


def _percentiles(reader: Reader, name: str) -> tuple[Dist | None, float | None]:
    """A histogram over the interval when it saw observations, else since the start (window None)."""
    if reader.previous is not None:
        recent = reader.histogram(name)
        if recent is not None and recent.count:
            return recent, reader.interval
    return reader.histogram(name, since_start=True), None


def _stat_ms(dist: Dist | None, name: str) -> float | None:
    return ms(dist.stat(name)) if dist is not None else None


def first(
    section: Callable[[Reader, DashboardSources], _T | None], reader: Reader, sources: Iterable[DashboardSources]
) -> _T | None:
    """The section from the first sources with data."""
    for item in sources:
        found = section(reader, item)
        if found is not None:
            return found
    return None


def moment(frame: Frame) -> datetime:
    """When ``frame`` was taken (UTC)."""
    return datetime.fromtimestamp(frame.time_unix_nano / 1e9, UTC)


def bare_system(frame: Frame) -> SystemOverview:
    """The system section from ``ServerMetrics`` alone (when the frame's metrics cannot be read)."""
    return SystemOverview(server_id=frame.server_metrics.server_id, timestamp=moment(frame))


def system(frame: Frame, reader: Reader) -> SystemOverview:
    """The ``system`` section: host usage and players from ``ServerMetrics``, uptime from ``process.uptime``."""
    metrics = frame.server_metrics
    hardware = metrics.hardware
    return SystemOverview(
        server_id=metrics.server_id,
        timestamp=metrics.timestamp.astimezone(UTC),
        cpu_percent=finite(hardware.cpu_usage_percent),
        memory_bytes=hardware.memory_used_bytes,
        memory_percent=finite(hardware.memory_usage_percent),
        players=metrics.game.active_player_count,
        uptime_seconds=reader.gauge(_UPTIME),
    )


def tick_loop(frame: Frame, reader: Reader) -> TickLoop:
    """The ``tick_loop`` section: rates from ``ServerMetrics``, durations and late ticks from the tick histogram."""
    performance, game = frame.server_metrics.performance, frame.server_metrics.game
    target = finite(performance.target_fps)
    budget = 1000.0 / target if target else None
    ticks, window = _percentiles(reader, _TICK)
    count = ticks.count if ticks is not None else 0
    late = None
    if ticks is not None and ticks.sketch is not None and budget is not None:
        late = count_above(ticks.sketch, budget / 1000.0)
    return TickLoop(
        tick_rate_fps=finite(performance.tick_rate_fps),
        target_fps=target,
        budget_ms=budget,
        ticks=count,
        tick_avg_ms=_stat_ms(ticks, "mean"),
        tick_p50_ms=_stat_ms(ticks, "p50"),
        tick_p95_ms=_stat_ms(ticks, "p95"),
        tick_p99_ms=_stat_ms(ticks, "p99"),
        window_seconds=window if count else None,
        late_ticks=late,
        entities=game.total_entities,
        active_maps=game.active_maps,
    )


def network(frame: Frame, reader: Reader) -> NetworkOverview:
    """The ``network`` section: packet rates and average ping from ``ServerMetrics``, ping percentiles."""
    network = frame.server_metrics.network
    pings, window = _percentiles(reader, _PING)
    return NetworkOverview(
        packets_in_per_second=finite(network.packets_per_sec_incoming),
        packets_out_per_second=finite(network.packets_per_sec_outgoing),
        avg_ping_ms=finite(network.avg_player_ping_ms),
        ping_p50_ms=_stat_ms(pings, "p50"),
        ping_p95_ms=_stat_ms(pings, "p95"),
        ping_p99_ms=_stat_ms(pings, "p99"),
        window_seconds=window if pings is not None and pings.count else None,
        connections=network.active_connections,
    )


def database(reader: Reader, sources: DashboardSources) -> DatabaseSection | None:
    """The ``database`` section from ``sources``; None when none of its metrics holds data."""
    timing = _dist(reader, sources.database_timing)
    failed, failed_total, _seconds = _count(reader, sources.database_errors)
    in_use = _gauge(reader, sources.database_pool_in_use)
    size = _gauge(reader, sources.database_pool_size)
    stored = _gauge(reader, sources.database_size)
    if not ((timing is not None and timing.total) or failed_total or (in_use, size, stored) != (None, None, None)):
        return None
    return DatabaseSection(
        source=sources.database_timing or "",
        queries=timing.count if timing is not None else 0,
        queries_per_second=timing.rate if timing is not None else None,
        latency_avg_ms=_stat_ms(timing, "mean"),
        latency_p50_ms=_stat_ms(timing, "p50"),
        latency_p95_ms=_stat_ms(timing, "p95"),
        latency_p99_ms=_stat_ms(timing, "p99"),
        failed_queries=failed,
        failed_queries_total=failed_total,
        pool_in_use=in_use,
        pool_size=size,
        pool_utilization_percent=in_use / size * 100.0 if in_use is not None and size else None,
        size_bytes=stored,
    )


def cache(reader: Reader, sources: DashboardSources) -> CacheSection | None:
    """The ``cache`` section from ``sources``; None when none of its metrics holds data."""
    hits, hits_total, hit_seconds = _count(reader, sources.cache_hits)
    misses, misses_total, miss_seconds = _count(reader, sources.cache_misses)
    items = _gauge(reader, sources.cache_items)
    stored = _gauge(reader, sources.cache_bytes)
    if not (hits_total or misses_total or items is not None or stored is not None):
        return None
    lookups = (hits or 0.0) + (misses or 0.0)
    return CacheSection(
        source=sources.cache_hits or "",
        hits=hits,
        misses=misses,
        hits_total=hits_total,
        misses_total=misses_total,
        hit_rate_percent=(hits or 0.0) / lookups * 100.0 if lookups else None,
        miss_rate_percent=(misses or 0.0) / lookups * 100.0 if lookups else None,
        lookups_per_second=per_second(lookups, hit_seconds or miss_seconds),
        items=items,
        size_bytes=stored,
    )


def handler_row(reader: Reader, handler: str) -> HandlerRow:
    """The row of the ``@traced`` handler named ``handler`` (every attribute set of it together)."""
    match = (("handler", handler),)
    calls = reader.count(HANDLER_REQUESTS, match)
    failures = reader.count(HANDLER_ERRORS, match)
    durations = reader.histogram(HANDLER_DURATION, match)
    requests = round(calls.delta) if calls is not None else 0
    errors = min(requests, round(failures.delta)) if failures is not None else 0
    seconds = calls.seconds if calls is not None else None
    ratio = errors / requests if requests else None
    return HandlerRow(
        handler=handler,
        requests=requests,
        errors=errors,
        requests_per_second=per_second(requests, seconds),
        errors_per_second=per_second(errors, seconds),
        error_ratio=ratio,
        success_ratio=1.0 - ratio if ratio is not None else None,
        latency_avg_ms=_stat_ms(durations, "mean"),
        latency_p50_ms=_stat_ms(durations, "p50"),
        latency_p95_ms=_stat_ms(durations, "p95"),
        latency_p99_ms=_stat_ms(durations, "p99"),
        requests_total=round(calls.total) if calls is not None else 0,
        errors_total=round(failures.total) if failures is not None else 0,
    )


def statistic(reader: Reader, widget: Widget, match: Key = (), exact: Key | None = None) -> float | None:
    """``widget``'s statistic over the series matching ``match`` (or the one series ``exact``); None when absent
    or when the statistic does not fit the metric's kind."""
    kind, name, wanted = reader.kind(widget.metric), widget.metric, widget.statistic
    if wanted == "value":
        return reader.gauge(name, match, exact) if kind in ("gauge", "sum") else None
    if kind == "sum" and wanted in ("delta", "rate"):
        found = reader.count(name, match, exact)
        return None if found is None else found.delta if wanted == "delta" else found.rate
    if kind == "histogram":
        dist = reader.histogram(name, match, exact)
        return None if dist is None else dist.rate if wanted == "rate" else finite(dist.stat(wanted))
    return None


def widget_value(
    widget: Widget,
    unit: str,
    value: float | None,
    rows: tuple[WidgetRow, ...],
    omitted: int,
    history: tuple[float | None, ...],
) -> WidgetValue:
    """The :class:`WidgetValue` of ``widget`` showing ``value`` (a status from the widget's thresholds)."""
    return WidgetValue(
        kind=widget.kind,
        title=widget.title,
        metric=widget.source,
        statistic=widget.statistic,
        unit=unit,
        value=value,
        status=widget.level(value) if widget.kind == "status" else None,
        warn=widget.warn,
        critical=widget.critical,
        rows=rows,
        rows_omitted=omitted,
        history=history,
    )
