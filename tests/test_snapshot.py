"""ServerMetrics snapshots: the spec's JSON shape, history, window summaries, OTLP protobuf round trip."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import spec_payload

from otel_telemetry import ServerMetrics, Telemetry, decode_otlp_metrics
from otel_telemetry.tools.demo import DemoOptions, GameSimulation


def _same_shape(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Keys of ``expected`` missing from ``actual`` or with another JSON type, recursively."""
    problems: list[str] = []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object"]
        for key, value in expected.items():
            if path in (".game.entities_per_map",):
                continue  # keys are map ids, not field names
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += _same_shape(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        if not isinstance(actual, list):
            problems.append(f"{path}: expected a list")
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        if not (isinstance(actual, (int, float)) and not isinstance(actual, bool)):
            problems.append(f"{path}: expected a number, got {actual!r}")
    elif isinstance(expected, str) and not isinstance(actual, str):
        problems.append(f"{path}: expected a string")
    return problems


@pytest.fixture
def running(make_telemetry: Callable[..., Telemetry]) -> Telemetry:
    """A handle collecting every 0.2 s while a simulated game with 3 maps runs for a few intervals."""
    telemetry = make_telemetry(server_id="server-001", collection_interval=0.2, historical_retention=4)
    simulation = GameSimulation(telemetry, DemoOptions(players=80, maps=3, seed=5))
    deadline = time.monotonic() + 10
    while telemetry._collector.runs < 6 and time.monotonic() < deadline:
        simulation.step()
        time.sleep(0.004)
    return telemetry


def test_payload_has_the_spec_shape(running: Telemetry) -> None:
    """Every key of the spec's example payload is present, same nesting and JSON types; timestamp is ISO UTC."""
    payload = json.loads(running.get_current_metrics().to_json())
    assert _same_shape(spec_payload(), payload) == []
    assert payload["server_id"] == "server-001"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", payload["timestamp"])
    assert set(payload["game"]["entities_per_map"]) == {"map-001", "map-002", "map-003"}
    assert payload["performance"]["target_fps"] == 60.0


def test_programmatic_access_matches_the_monitors(running: Telemetry) -> None:
    """The snapshot's fields agree with what the monitors hold (a frame taken now, after the simulation stopped:
    the simulation churns players, so a frame taken while it ran may be one join or leave behind)."""
    running.game.refresh(force=True)
    running.collect()
    metrics = running.get_current_metrics()
    assert isinstance(metrics, ServerMetrics)
    assert metrics.game.active_player_count == running.game.active_players
    assert 70 <= metrics.game.active_player_count <= 80
    assert metrics.network.total_packets_incoming <= running.network.totals()["packets_in"]
    assert metrics.performance.tick_rate_fps is not None and metrics.performance.tick_rate_fps > 0
    assert metrics.network.avg_player_ping_ms is not None
    p = metrics.network.player_ping_percentiles
    assert p.p50 is not None and p.p95 is not None and p.p99 is not None and p.p50 <= p.p95 <= p.p99
    with pytest.raises(AttributeError):
        metrics.server_id = "other"  # type: ignore[misc]


def test_history_is_bounded_by_retention(running: Telemetry) -> None:
    """historical_retention=4 keeps the 4 newest snapshots, oldest first."""
    history = running.get_history()
    assert len(history) == 4
    stamps = [s.timestamp for s in history]
    assert stamps == sorted(stamps)
    assert running.get_current_metrics() is history[-1]


def test_history_summary_aggregates_a_field(running: Telemetry) -> None:
    """summary() gives count/min/max/avg/last of a numeric field over the ring."""
    summary = running.history.summary("game.active_player_count")
    values = [s.game.active_player_count for s in running.get_history()]
    assert summary.count == 4
    assert (summary.min, summary.max, summary.last) == (min(values), max(values), values[-1])
    assert summary.avg == sum(values) / 4
    assert 70 <= summary.min <= summary.max <= 80  # the simulation churns a player or two per tick
    with pytest.raises(KeyError):
        running.history.summary("game.no_such_field")


def test_otlp_bytes_decode_with_the_official_classes(running: Telemetry) -> None:
    """current_metrics_otlp() is an ExportMetricsServiceRequest with our resource and metrics."""
    request = decode_otlp_metrics(running.current_metrics_otlp())
    resource = {a.key: a.value.string_value for a in request.resource_metrics[0].resource.attributes}
    assert resource["service.instance.id"] == "server-001"
    names = {m.name for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"server.tick_rate", "server.tick.duration", "server.network.packets", "server.cpu.usage"} <= names
    tick = next(
        m
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "server.tick.duration"
    )
    point = tick.histogram.data_points[0]
    assert sum(point.bucket_counts) == point.count > 0
    assert list(point.explicit_bounds)[:3] == [0.0005, 0.001, 0.002]


def test_snapshot_before_any_collection_is_built_on_demand(make_telemetry: Callable[..., Telemetry]) -> None:
    """get_current_metrics() works right after setup, before the first periodic collection."""
    telemetry = make_telemetry(collection_interval=3600)
    telemetry.network.packet_received(10)
    metrics = telemetry.get_current_metrics()
    assert metrics.network.total_packets_incoming == 1
    assert metrics.timestamp <= datetime.now(UTC)
