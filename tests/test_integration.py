"""Handlers, facade, health and events wired into one handle and one HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import http_get
from prometheus_client.parser import text_string_to_metric_families
from test_prometheus import _promtool

import otel_telemetry
from otel_telemetry import HealthStatus, Telemetry, traced
from otel_telemetry.alerts import CallbackNotifier
from otel_telemetry.catalog import SPEC_FIXED_PROMETHEUS_NAMES
from otel_telemetry.export.selftelemetry import SEED_FIXED_PROMETHEUS_NAMES


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, parsed by prometheus_client; empty labels dropped (= absent)."""
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if v != ""))
            found[(sample.name, labels)] = sample.value
    return found


@traced
def handle_move(player: str, dx: float) -> float:
    """A sync packet handler."""
    return dx * 2


@traced("rpc.trade", attributes={"kind": "rpc"})
async def handle_trade(item: str) -> str:
    """An async RPC handler that fails for one item."""
    if item == "cursed":
        raise ValueError("cursed item")
    return item


def test_public_names_are_pinned() -> None:
    """The package's public surface is exactly this list (changing it is a deliberate act), at most 12 names."""
    assert sorted(otel_telemetry.__all__) == sorted(
        [
            "HealthStatus",
            "JsonLogHandler",
            "ServerMetrics",
            "Telemetry",
            "TelemetryConfig",
            "__version__",
            "decode_otlp_metrics",
            "setup_telemetry",
            "timer",
            "traced",
        ]
    )
    assert len(otel_telemetry.__all__) <= 12
    for name in otel_telemetry.__all__:
        assert getattr(otel_telemetry, name) is not None


def test_moved_names_still_resolve_with_a_deprecation_warning() -> None:
    """Names that moved to a subpackage still import from the top level, warning where they live now."""
    from otel_telemetry.alerts import AlertRule

    with pytest.warns(DeprecationWarning, match=r"otel_telemetry\.alerts\.AlertRule"):
        assert otel_telemetry.__getattr__("AlertRule") is AlertRule
    with pytest.raises(AttributeError, match="no_such_name"):
        otel_telemetry.__getattr__("no_such_name")


def test_traced_handlers_and_facade_reach_the_metrics_endpoint(make_telemetry: Callable[..., Telemetry]) -> None:
    """Handler calls and facade timings/counters show up on /metrics, which promtool still accepts."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)
    for i in range(3):
        handle_move("p", float(i))
    asyncio.run(handle_trade("sword"))
    with contextlib.suppress(ValueError):
        asyncio.run(handle_trade("cursed"))
    telemetry.metrics.timing("db.save", 0.012, tags={"table": "players"})
    telemetry.metrics.increment("logins", 2)
    assert telemetry.prometheus_url is not None
    body = http_get(telemetry.prometheus_url)[2].decode()
    samples = _samples(body)
    assert samples[("handler_requests_total", (("handler", "handle_move"),))] == 3
    errors = ("handler_errors_total", (("error_type", "ValueError"), ("handler", "rpc.trade"), ("kind", "rpc")))
    assert samples[errors] == 1
    assert samples[("db_save_seconds_count", (("table", "players"),))] == 1
    assert samples[("logins_total", ())] == 2
    result = subprocess.run([_promtool(), "check", "metrics"], input=body.encode(), capture_output=True, timeout=60)
    problems = (result.stdout + result.stderr).decode().splitlines()
    fixed = SPEC_FIXED_PROMETHEUS_NAMES | SEED_FIXED_PROMETHEUS_NAMES  # telemetry_metrics_count: seed 004's name
    assert [p for p in problems if p.strip() and p.split()[0] not in fixed] == []
    stats = telemetry.metrics.get_timing("db.save", tags={"table": "players"})
    assert stats is not None and stats.count == 1


def test_health_is_served_next_to_metrics(make_telemetry: Callable[..., Telemetry]) -> None:
    """/health, /health/live and /health/ready answer on the /metrics server; unhealthy gives 503."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)
    assert telemetry.prometheus_url is not None
    base = telemetry.prometheus_url.removesuffix("/metrics")
    status, headers, body = http_get(base + "/health")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    document = json.loads(body)
    assert document["status"] in ("Healthy", "Degraded")
    assert "telemetry" in {c["name"] for c in document["details"]["components"]}
    assert http_get(base + "/health/live")[0] == 200
    telemetry.health.set("database", HealthStatus.UNHEALTHY, "connection refused")
    assert http_get(base + "/health")[0] == 503
    assert http_get(base + "/health/ready")[0] == 503
    telemetry.health.set("database", HealthStatus.HEALTHY)
    assert http_get(base + "/health/ready")[0] == 200


def test_events_are_recorded_and_hooked(make_telemetry: Callable[..., Telemetry]) -> None:
    """record_event keeps the event and calls hooks for its name; a bad severity is an error naming the value
    (counted, nothing recorded), never silently recorded as another one."""
    telemetry = make_telemetry()
    seen: list[str] = []
    telemetry.events.on("boss_killed", lambda event: seen.append(event.name))
    telemetry.record_event("boss_killed", {"boss": "dragon", "players": 5}, "info")
    telemetry.record_event("boss_killed", {"boss": "lich"}, severity="warn")
    with pytest.raises(ValueError, match="not-a-severity"):
        telemetry.record_event("boss_killed", {"boss": "imp"}, severity="not-a-severity")
    assert seen == ["boss_killed", "boss_killed"]
    assert [e.attributes["boss"] for e in telemetry.events.events("boss_killed")] == ["dragon", "lich"]
    assert [e.severity for e in telemetry.events.events("boss_killed")] == ["info", "warning"]
    assert telemetry.events.rejected == 1


def test_handlers_are_unbound_after_shutdown(make_telemetry: Callable[..., Telemetry]) -> None:
    """After the handle that bound @traced shuts down, handlers run unbound (and still work)."""
    from otel_telemetry.recording.tracing import bound_handler_telemetry

    telemetry = make_telemetry()
    assert bound_handler_telemetry() is not None
    telemetry.shutdown()
    assert bound_handler_telemetry() is None
    assert handle_move("p", 1.0) == 2.0


class _Principal(http.server.ThreadingHTTPServer):
    bodies: list[tuple[str, dict[str, str], dict[str, object]]]


class _PrincipalHandler(http.server.BaseHTTPRequestHandler):
    server: _Principal

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def principal() -> Iterator[_Principal]:
    """A recording API principal on 127.0.0.1."""
    server = _Principal(("127.0.0.1", 0), _PrincipalHandler)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_snapshots_are_pushed_to_the_api_principal(
    make_telemetry: Callable[..., Telemetry], principal: _Principal
) -> None:
    """With api_endpoint set, snapshots are POSTed to /api/v1/telemetry with the bearer token, in order."""
    token = "server-token-123"
    telemetry = make_telemetry(
        api_endpoint=f"http://127.0.0.1:{principal.server_address[1]}",
        server_token=token,
        server_id="server-001",
        collection_interval=0.1,
        api_send_interval=0.2,
    )
    telemetry.network.player_ping("p1", 40.0)
    deadline = time.monotonic() + 10
    while len(principal.bodies) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(principal.bodies) >= 2
    path, headers, body = principal.bodies[0]
    assert path == "/api/v1/telemetry"
    assert headers["Authorization"] == f"Bearer {token}"
    assert headers["Content-Type"] == "application/json"
    assert body["server_id"] == "server-001"
    assert set(body) >= {"server_id", "timestamp", "hardware", "network", "performance", "game"}
    stamps = [b["timestamp"] for _, _, b in principal.bodies]
    assert stamps == sorted(stamps)
    assert token not in repr(telemetry) and token not in repr(telemetry.config)


def test_snapshots_are_appended_to_a_file(make_telemetry: Callable[..., Telemetry], tmp_path: Path) -> None:
    """snapshot_file appends one JSON payload per collection, readable back."""
    from otel_telemetry.snapshot.files import read_jsonl

    path = tmp_path / "snapshots.jsonl"
    telemetry = make_telemetry(snapshot_file=str(path), collection_interval=3600, server_id="file-1")
    telemetry.collect()
    telemetry.collect()
    telemetry.shutdown()
    records = list(read_jsonl(path))
    assert len(records) >= 2 and all(r["server_id"] == "file-1" for r in records)


def test_self_telemetry_counts_collections_exports_and_drops(make_telemetry: Callable[..., Telemetry]) -> None:
    """telemetry_* metrics: collections run, scrapes served, and dropped values by source and reason."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)
    telemetry.network.packet_latency(float("nan"))
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    http_get(telemetry.prometheus_url)  # a scrape serves the frame above; the next frame counts it
    telemetry.collect()
    samples = _samples(http_get(telemetry.prometheus_url)[2].decode())
    assert samples[("telemetry_collection_runs_total", ())] >= 1
    assert samples[("telemetry_exporter_attempts_total", (("exporter", "prometheus"),))] >= 1
    assert samples[("telemetry_dropped_total", (("reason", "invalid:packet_latency"), ("source", "network")))] == 1
    assert ("telemetry_collection_duration_seconds", ()) in samples


def test_alerts_fire_from_a_slow_tick_loop(make_telemetry: Callable[..., Telemetry]) -> None:
    """A loop held at 50 FPS fires the spec's tick-rate warning (< 58) and critical (< 55) rules.

    ``alert_for=1`` lets the first interval (which began before the loop did) pass without paging, as the
    default of 10 s does in production.
    """
    telemetry = make_telemetry(
        enable_prometheus_endpoint=True, collection_interval=0.25, alert_for=1.0, enable_hardware_metrics=False
    )
    fired: list[str] = []
    telemetry.alerts.add_notifier(CallbackNotifier(lambda alert: fired.append(alert.name)))
    deadline = time.monotonic() + 10
    next_tick = time.perf_counter()
    while not {"LowTickRateWarning", "LowTickRateCritical"} <= set(fired) and time.monotonic() < deadline:
        with telemetry.performance.tick():
            pass
        next_tick += 1 / 50
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    assert {"LowTickRateWarning", "LowTickRateCritical"} <= set(fired)
    assert {alert.name for alert in telemetry.alerts.active()} >= {"LowTickRateWarning", "LowTickRateCritical"}
    assert telemetry.prometheus_url is not None
    samples = _samples(http_get(telemetry.prometheus_url)[2].decode())
    firing = [labels for (name, labels) in samples if name == "alerts" and ("alertstate", "firing") in labels]
    assert any(("alertname", "LowTickRateWarning") in labels for labels in firing)


def test_a_failing_exporter_degrades_telemetry_health(make_telemetry: Callable[..., Telemetry]) -> None:
    """With the API principal unreachable, the `telemetry` health component turns degraded, naming it."""
    with socket.socket() as probe:  # a port that refuses connections: bound, closed, never listened on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    telemetry = make_telemetry(api_endpoint=f"http://127.0.0.1:{port}", collection_interval=0.1, api_send_interval=0.1)
    deadline = time.monotonic() + 10
    component = None
    while time.monotonic() < deadline:
        telemetry.health.run_checks()
        component = next(c for c in telemetry.health.components() if c.name == "telemetry")
        if component.status == HealthStatus.DEGRADED:
            break
        time.sleep(0.1)
    assert component is not None and component.status == HealthStatus.DEGRADED
    assert "principal export failing" in component.message
