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
from typing import Any

from otel_telemetry.accumulators import HistogramSnapshot

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
    tick_interval_jitter_ms: float | None = None


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
    kind = type(value)
    if kind is float:  # the common leaves first: a payload has thousands (one ping per player)
        return value if math.isfinite(value) else None
    if kind is int or kind is str or value is None or kind is bool:
        return value
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
]
