"""``ServerMetrics``: typed, immutable snapshots of every metric, their history, and the spec's JSON payload.

A snapshot is built by the periodic collection (every ``collection_interval``) on the collecting thread, from the
monitors' state of that very collection, and kept in a bounded history ring of ``historical_retention`` snapshots.
Reading a snapshot never touches the hot path: it is a finished, immutable object.

Field names follow the spec's JSON payload (``cpu_usage_percent``, ``packets_per_sec_incoming``,
``avg_player_ping_ms``, ``tick_duration_percentiles``, ``entities_per_map``...); latencies and durations are in
milliseconds as in the spec's JSON (Prometheus and OTLP export them in seconds).
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from otel_telemetry.accumulators import HistogramSnapshot, HistogramState

if TYPE_CHECKING:
    from otel_telemetry.telemetry import Telemetry

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50, p95 and p99 of a distribution (None when there were no samples)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class Distribution:
    """Statistics of one distribution over the percentile window: count, avg, min, max and percentiles."""

    count: int = 0
    avg: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @property
    def percentiles(self) -> Percentiles:
        """The p50/p95/p99 triple."""
        return Percentiles(self.p50, self.p95, self.p99)


def distribution(snapshot: HistogramSnapshot | None, scale: float = 1.0) -> Distribution:
    """A :class:`Distribution` of ``snapshot``'s values multiplied by ``scale`` (e.g. 1000 for s -> ms)."""
    if snapshot is None or snapshot.count == 0:
        return Distribution()

    def scaled(value: float | None) -> float | None:
        return None if value is None else value * scale

    return Distribution(
        count=snapshot.count,
        avg=scaled(snapshot.mean()),
        min=scaled(snapshot.min()),
        max=scaled(snapshot.max()),
        p50=scaled(snapshot.quantile(0.50)),
        p95=scaled(snapshot.quantile(0.95)),
        p99=scaled(snapshot.quantile(0.99)),
    )


@dataclass(frozen=True, slots=True)
class HardwareMetrics:
    """The spec's hardware metrics (None where the host could not provide a value)."""

    cpu_usage_percent: float | None = None
    cpu_usage_per_core: tuple[float, ...] = ()
    cpu_load_average: tuple[float, float, float] | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_usage_percent: float | None = None
    memory_pressure: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    disk_read_bytes_per_sec: float | None = None
    disk_write_bytes_per_sec: float | None = None
    disk_read_ops_per_sec: float | None = None
    disk_write_ops_per_sec: float | None = None
    network_bytes_received_per_sec: float | None = None
    network_bytes_sent_per_sec: float | None = None
    network_packets_received_per_sec: float | None = None
    network_packets_sent_per_sec: float | None = None


@dataclass(frozen=True, slots=True)
class NetworkMetrics:
    """The spec's network metrics; latencies in milliseconds over the percentile window."""

    packets_per_sec_incoming: float | None = None
    packets_per_sec_outgoing: float | None = None
    bytes_per_sec_incoming: float | None = None
    bytes_per_sec_outgoing: float | None = None
    total_packets_incoming: int = 0
    total_packets_outgoing: int = 0
    total_bytes_incoming: int = 0
    total_bytes_outgoing: int = 0
    avg_packet_latency_ms: float | None = None
    packet_latency_percentiles: Percentiles = field(default_factory=Percentiles)
    min_packet_latency_ms: float | None = None
    max_packet_latency_ms: float | None = None
    avg_player_ping_ms: float | None = None
    player_ping_percentiles: Percentiles = field(default_factory=Percentiles)
    min_player_ping_ms: float | None = None
    max_player_ping_ms: float | None = None
    player_pings_ms: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    active_connections: int = 0
    total_connections: int = 0
    connections_per_sec: float | None = None
    disconnections_per_sec: float | None = None
    connection_duration_s: Distribution = field(default_factory=Distribution)
    packet_loss_percent: float | None = None
    retransmission_percent: float | None = None
    ack_latency_ms: Distribution = field(default_factory=Distribution)
    fragments_per_packet: Distribution = field(default_factory=Distribution)


@dataclass(frozen=True, slots=True)
class PerformanceMetrics:
    """The spec's tick-loop metrics; durations in milliseconds over the percentile window."""

    tick_rate_fps: float | None = None
    target_fps: float | None = None
    tick_rate_deviation_fps: float | None = None
    tick_rate_variance: float | None = None
    avg_tick_duration_ms: float | None = None
    tick_duration_percentiles: Percentiles = field(default_factory=Percentiles)
    min_tick_duration_ms: float | None = None
    max_tick_duration_ms: float | None = None
    frame_time_ms: Distribution = field(default_factory=Distribution)
    update_cycle_ms: Distribution = field(default_factory=Distribution)
    phase_time_ms: Mapping[str, Distribution] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class GameMetrics:
    """The spec's game metrics."""

    active_player_count: int = 0
    total_players_connected: int = 0
    players_per_map: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    avg_session_duration_s: float | None = None
    total_entities: int = 0
    entities_per_map: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    entities_per_type: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    entity_creation_rate: float | None = None
    entity_removal_rate: float | None = None
    active_maps: int = 0
    aoi_updates_per_sec: float | None = None
    spatial_cell_occupancy: Distribution = field(default_factory=Distribution)
    collision_tests: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    avg_query_time_ms: float | None = None
    query_time_ms: Distribution = field(default_factory=Distribution)
    queries_per_sec: float | None = None
    cache_hit_rate_percent: float | None = None
    cache_miss_rate_percent: float | None = None
    database_size_bytes: int | None = None
    ecs_component_count: int = 0
    system_execution_time_ms: Mapping[str, Distribution] = field(default_factory=lambda: _EMPTY)
    ecs_query_time_ms: Distribution = field(default_factory=Distribution)
    memory_allocations: int = 0


def _plain(value: Any) -> Any:
    """A JSON-ready copy: dataclasses to dicts, mappings to dicts, tuples to lists, NaN/inf to None."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True, slots=True)
class ServerMetrics:
    """One snapshot of every metric of one server, as in the spec's "Programmatic Access" and JSON payload.

    ``metrics.hardware.cpu_usage_percent``, ``metrics.performance.tick_rate_fps``,
    ``metrics.network.avg_player_ping_ms``... Immutable and safe to share between threads.
    """

    server_id: str
    timestamp: datetime
    hardware: HardwareMetrics = field(default_factory=HardwareMetrics)
    network: NetworkMetrics = field(default_factory=NetworkMetrics)
    performance: PerformanceMetrics = field(default_factory=PerformanceMetrics)
    game: GameMetrics = field(default_factory=GameMetrics)

    def to_dict(self) -> dict[str, Any]:
        """The spec's payload: ``server_id``, ISO-8601 UTC ``timestamp``, then the four sections."""
        return {
            "server_id": self.server_id,
            "timestamp": self.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z"),
            "hardware": _plain(self.hardware),
            "network": _plain(self.network),
            "performance": _plain(self.performance),
            "game": _plain(self.game),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """The spec's JSON payload (what is POSTed to the API principal)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def field_value(self, path: str) -> Any:
        """The value at a dotted ``path`` such as ``"performance.tick_rate_fps"`` (``KeyError`` if unknown)."""
        value: Any = self
        for part in path.split("."):
            if isinstance(value, Mapping):
                value = value[part]
            elif is_dataclass(value) and part in {f.name for f in fields(value)}:
                value = getattr(value, part)
            else:
                raise KeyError(f"ServerMetrics has no field {path!r}")
        return value


# -- building snapshots from the monitors --------------------------------------------------------------------------
def _state(monitor: Any, name: str, **attributes: str) -> HistogramState | None:
    if monitor is None:
        return None
    state: HistogramState | None = monitor.histogram_state(name, **attributes)
    return state


def _window(monitor: Any, name: str, scale: float, **attributes: str) -> Distribution:
    state = _state(monitor, name, **attributes)
    return distribution(state.window if state is not None else None, scale)


def _by_attribute(monitor: Any, name: str, attribute: str, scale: float) -> dict[str, Distribution]:
    found: dict[str, Distribution] = {}
    for state in monitor.histograms():
        attributes = dict(state.key.attributes)
        if state.key.name == name and attribute in attributes and state.window.count:
            found[attributes[attribute]] = distribution(state.window, scale)
    return found


def build_server_metrics(telemetry: Telemetry, now: datetime | None = None) -> ServerMetrics:
    """A snapshot of ``telemetry``'s monitors as of their latest refresh."""
    hardware = HardwareMetrics()
    if telemetry.hardware is not None:
        sample = telemetry.hardware.sample()
        hardware = HardwareMetrics(
            cpu_usage_percent=sample.cpu_percent,
            cpu_usage_per_core=tuple(sample.cpu_percent_per_core or ()),
            cpu_load_average=sample.load_average,
            memory_used_bytes=sample.memory_used_bytes,
            memory_total_bytes=sample.memory_total_bytes,
            memory_free_bytes=sample.memory_free_bytes,
            memory_usage_percent=sample.memory_usage_percent,
            memory_pressure=MappingProxyType(dict(sample.memory_pressure)),
            disk_read_bytes_per_sec=sample.disk_read_bytes_per_sec,
            disk_write_bytes_per_sec=sample.disk_write_bytes_per_sec,
            disk_read_ops_per_sec=sample.disk_read_ops_per_sec,
            disk_write_ops_per_sec=sample.disk_write_ops_per_sec,
            network_bytes_received_per_sec=sample.nic_bytes_recv_per_sec,
            network_bytes_sent_per_sec=sample.nic_bytes_sent_per_sec,
            network_packets_received_per_sec=sample.nic_packets_recv_per_sec,
            network_packets_sent_per_sec=sample.nic_packets_sent_per_sec,
        )

    net = telemetry.network
    net.refresh()
    totals = net.totals()
    latency = _window(net, "server.network.packet_latency", 1.0)
    ping = _window(net, "server.network.player_ping", 1.0)
    network = NetworkMetrics(
        packets_per_sec_incoming=net.rate("packets_in"),
        packets_per_sec_outgoing=net.rate("packets_out"),
        bytes_per_sec_incoming=net.rate("bytes_in"),
        bytes_per_sec_outgoing=net.rate("bytes_out"),
        total_packets_incoming=totals["packets_in"],
        total_packets_outgoing=totals["packets_out"],
        total_bytes_incoming=totals["bytes_in"],
        total_bytes_outgoing=totals["bytes_out"],
        avg_packet_latency_ms=latency.avg,
        packet_latency_percentiles=latency.percentiles,
        min_packet_latency_ms=latency.min,
        max_packet_latency_ms=latency.max,
        avg_player_ping_ms=ping.avg,
        player_ping_percentiles=ping.percentiles,
        min_player_ping_ms=ping.min,
        max_player_ping_ms=ping.max,
        player_pings_ms=MappingProxyType({str(k): v for k, v in net.tracked_pings().items()}),
        active_connections=max(0, totals["opened"] - totals["closed"]),
        total_connections=totals["opened"],
        connections_per_sec=net.rate("opened"),
        disconnections_per_sec=net.rate("closed"),
        connection_duration_s=_window(net, "server.network.connection.duration", 1.0),
        packet_loss_percent=net.loss_percent,
        retransmission_percent=net.retransmission_percent,
        ack_latency_ms=_window(net, "server.network.ack_latency", 1.0),
        fragments_per_packet=_window(net, "server.network.packet_fragments", 1.0),
    )

    perf = telemetry.performance
    tick = _window(perf, "server.tick.duration", 1000.0)
    rate = perf.tick_rate
    phases = _by_attribute(perf, "server.tick.phase.duration", "phase", 1000.0)
    performance = PerformanceMetrics(
        tick_rate_fps=rate,
        target_fps=perf.target_tick_rate,
        tick_rate_deviation_fps=None if rate is None else rate - perf.target_tick_rate,
        tick_rate_variance=perf.tick_rate_variance(),
        avg_tick_duration_ms=tick.avg,
        tick_duration_percentiles=tick.percentiles,
        min_tick_duration_ms=tick.min,
        max_tick_duration_ms=tick.max,
        frame_time_ms=_window(perf, "server.frame.time", 1000.0),
        update_cycle_ms=_window(perf, "server.update_cycle.duration", 1000.0),
        phase_time_ms=MappingProxyType(phases),
    )

    game_monitor = telemetry.game
    snap = game_monitor.snapshot()
    game_totals: Mapping[str, int] = snap["totals"]  # type: ignore[assignment]
    rates: Mapping[str, float | None] = snap["rates"]  # type: ignore[assignment]
    query = _window(game_monitor, "server.game.db.query.duration", 1000.0)
    session = _window(game_monitor, "server.game.session.duration", 1.0)
    game = GameMetrics(
        active_player_count=int(snap["active_players"]),  # type: ignore[call-overload]
        total_players_connected=game_totals["players_joined"],
        players_per_map=MappingProxyType(dict(snap["players_per_map"])),  # type: ignore[call-overload]
        avg_session_duration_s=session.avg,
        total_entities=game_totals["entities_created"] - game_totals["entities_removed"],
        entities_per_map=MappingProxyType(dict(snap["entities_per_map"])),  # type: ignore[call-overload]
        entities_per_type=MappingProxyType(dict(snap["entities_per_type"])),  # type: ignore[call-overload]
        entity_creation_rate=rates["entities_created"],
        entity_removal_rate=rates["entities_removed"],
        active_maps=int(snap["active_maps"]),  # type: ignore[call-overload]
        aoi_updates_per_sec=rates["aoi_updates"],
        spatial_cell_occupancy=_window(game_monitor, "server.game.spatial.cell_occupancy", 1.0),
        collision_tests=MappingProxyType(
            {"hit": game_totals["collision_hits"], "miss": game_totals["collision_misses"]}
        ),
        avg_query_time_ms=query.avg,
        query_time_ms=query,
        queries_per_sec=rates["db_queries"],
        cache_hit_rate_percent=snap["cache_hit_percent"],  # type: ignore[arg-type]
        cache_miss_rate_percent=snap["cache_miss_percent"],  # type: ignore[arg-type]
        database_size_bytes=snap["db_size_bytes"],  # type: ignore[arg-type]
        ecs_component_count=game_totals["components"],
        system_execution_time_ms=MappingProxyType(
            _by_attribute(game_monitor, "server.game.ecs.system.duration", "system", 1000.0)
        ),
        ecs_query_time_ms=_window(game_monitor, "server.game.ecs.query.duration", 1000.0),
        memory_allocations=game_totals["allocations"],
    )
    return ServerMetrics(
        server_id=telemetry.config.server_id,
        timestamp=now or datetime.now(UTC),
        hardware=hardware,
        network=network,
        performance=performance,
        game=game,
    )


@dataclass(frozen=True, slots=True)
class FieldSummary:
    """Aggregate of one numeric field over a stretch of history."""

    count: int
    min: float | None
    max: float | None
    avg: float | None
    last: float | None


class History:
    """The last ``capacity`` snapshots, oldest first. Thread-safe; memory bounded by ``capacity``.

    One snapshot is a few kilobytes (more with many tracked players), so the spec's 300 snapshots cost about a
    megabyte.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"history capacity must be at least 1, got {capacity!r}")
        self._ring: deque[ServerMetrics] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def append(self, snapshot: ServerMetrics) -> None:
        """Add the newest snapshot (the oldest falls out when full)."""
        with self._lock:
            self._ring.append(snapshot)

    def latest(self) -> ServerMetrics | None:
        """The newest snapshot, or None."""
        with self._lock:
            return self._ring[-1] if self._ring else None

    def snapshots(self, since: datetime | None = None) -> list[ServerMetrics]:
        """Snapshots oldest first, optionally only those taken at or after ``since``."""
        with self._lock:
            items = list(self._ring)
        return items if since is None else [s for s in items if s.timestamp >= since]

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self) -> Iterator[ServerMetrics]:
        return iter(self.snapshots())

    def summary(self, path: str, since: datetime | None = None) -> FieldSummary:
        """min/max/avg/last of the numeric field at ``path`` (``"performance.tick_rate_fps"``) over the history."""
        values: list[float] = []
        for snapshot in self.snapshots(since):
            value = snapshot.field_value(path)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values.append(float(value))
        if not values:
            return FieldSummary(0, None, None, None, None)
        return FieldSummary(len(values), min(values), max(values), sum(values) / len(values), values[-1])


__all__ = [
    "Distribution",
    "FieldSummary",
    "GameMetrics",
    "HardwareMetrics",
    "History",
    "NetworkMetrics",
    "Percentiles",
    "PerformanceMetrics",
    "ServerMetrics",
    "build_server_metrics",
]
