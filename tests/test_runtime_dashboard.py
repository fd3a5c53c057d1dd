"""The runtime dashboard: sections built from frames of real telemetry handles, interval figures, widgets, alerts,
the JSON round trip, the /dashboard route on a handle's HTTP server, and never raising on bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime

import pytest
from conftest import http_get

from otel_telemetry import Telemetry
from otel_telemetry.alerts import AlertRule
from otel_telemetry.recording import tracing
from otel_telemetry.snapshot import dashboard_sections
from otel_telemetry.snapshot.dashboard import (
    DEFAULT_SOURCES,
    AlertRow,
    Dashboard,
    DashboardBuilder,
    DashboardRoute,
    DashboardSources,
    SystemOverview,
    Widget,
)
from otel_telemetry.snapshot.frame import Frame

# Nearest-rank quantiles of the sketches are within 0.5 % of the recorded values.
SKETCH = 0.005


@pytest.fixture
def telemetry(make_telemetry: Callable[..., Telemetry]) -> Telemetry:
    """A handle without /metrics or host sampling; frames are taken by collect() (the background one is slow)."""
    return make_telemetry(enable_prometheus_endpoint=False, enable_hardware_metrics=False, collection_interval=60)


def _frame(telemetry: Telemetry) -> Frame:
    telemetry.collect()
    frame = telemetry.latest_frame()
    assert frame is not None
    return frame


def test_database_and_cache_figures_are_what_the_facade_recorded(telemetry: Telemetry) -> None:
    """Facade timings, counters and gauges under the documented names fill the database and cache sections,
    first since the start, then over the interval between two frames."""
    metrics = telemetry.metrics
    for i in range(10):
        metrics.timing("db.query", 0.002 * (i + 1))  # 2, 4, ... 20 ms
    metrics.increment("db.errors", 3)
    metrics.gauge("db.pool.in_use", 4)
    metrics.gauge("db.pool.size", 16)
    metrics.gauge("db.size", 1_048_576)
    metrics.increment("cache.hits", 30)
    metrics.increment("cache.misses", 10)
    metrics.gauge("cache.items", 500)
    metrics.gauge("cache.bytes", 65536)
    builder = DashboardBuilder()
    first_frame = _frame(telemetry)
    first = builder.build(first_frame)
    db, cache = first.database, first.cache
    assert db is not None and cache is not None
    assert first.window_seconds is None  # the first frame: since the start
    assert (db.source, db.queries) == ("db.query", 10)
    assert db.latency_avg_ms == pytest.approx(11.0)
    assert db.latency_p50_ms == pytest.approx(10.0, rel=SKETCH)  # rank 5 of 10
    assert db.latency_p95_ms == pytest.approx(20.0) and db.latency_p99_ms == pytest.approx(20.0)  # the exact max
    assert (db.failed_queries, db.failed_queries_total) == (3.0, 3.0)
    assert (db.pool_in_use, db.pool_size, db.pool_utilization_percent) == (4.0, 16.0, 25.0)
    assert db.size_bytes == 1_048_576
    assert db.queries_per_second is not None and db.queries_per_second > 0
    assert (cache.hits, cache.misses, cache.hit_rate_percent, cache.miss_rate_percent) == (30.0, 10.0, 75.0, 25.0)
    assert (cache.items, cache.size_bytes) == (500.0, 65536.0)

    for _ in range(5):
        metrics.timing("db.query", 0.050)
    metrics.increment("db.errors")
    metrics.increment("cache.hits", 10)
    time.sleep(0.05)
    second_frame = _frame(telemetry)
    second = builder.build(second_frame)
    db, cache = second.database, second.cache
    assert db is not None and cache is not None
    window = second_frame.monotonic - first_frame.monotonic
    assert second.window_seconds == pytest.approx(window)
    assert db.queries == 5 and db.queries_per_second == pytest.approx(5 / window)
    assert db.latency_avg_ms == pytest.approx(50.0) and db.latency_p99_ms == pytest.approx(50.0)
    assert (db.failed_queries, db.failed_queries_total) == (1.0, 4.0)
    assert (cache.hits, cache.misses, cache.hits_total, cache.misses_total) == (10.0, 0.0, 40.0, 10.0)
    assert cache.hit_rate_percent == 100.0
    assert cache.lookups_per_second == pytest.approx(10 / window)


def test_traced_handler_rows_count_requests_errors_and_latency(telemetry: Telemetry) -> None:
    """One row per @traced handler: requests, errors and their ratios, latency percentiles, over the interval."""

    @telemetry.traced("load_profile")
    def load_profile(fail: bool) -> None:
        time.sleep(0.002)
        if fail:
            raise LookupError("no such player")

    def call(times: int) -> None:
        for i in range(times):
            with contextlib.suppress(LookupError):
                load_profile(i % 3 == 0)

    builder = DashboardBuilder()
    call(30)  # 10 failures
    first_frame = _frame(telemetry)
    (row,) = builder.build(first_frame).handlers
    assert (row.handler, row.requests, row.errors) == ("load_profile", 30, 10)
    assert row.error_ratio == pytest.approx(1 / 3) and row.success_ratio == pytest.approx(2 / 3)
    assert row.latency_p50_ms is not None and row.latency_p95_ms is not None and row.latency_p99_ms is not None
    assert 2.0 <= row.latency_p50_ms <= row.latency_p95_ms <= row.latency_p99_ms < 1000
    assert row.latency_avg_ms is not None and row.latency_avg_ms >= 2.0

    call(6)  # 2 failures
    second_frame = _frame(telemetry)
    (row,) = builder.build(second_frame).handlers
    window = second_frame.monotonic - first_frame.monotonic
    assert (row.requests, row.errors, row.requests_total, row.errors_total) == (6, 2, 36, 12)
    assert row.requests_per_second == pytest.approx(6 / window)
    assert row.errors_per_second == pytest.approx(2 / window)
    assert row.error_ratio == pytest.approx(1 / 3)


def test_tick_loop_percentiles_and_late_ticks_cover_the_interval(make_telemetry: Callable[..., Telemetry]) -> None:
    """Tick percentiles and late ticks (over the 60 Hz budget) cover the last interval, else everything since the
    start; the target and its budget come from the configuration."""
    # The monitors refresh their histograms every half collection interval: frames 0.1 s apart see every tick.
    telemetry = make_telemetry(enable_prometheus_endpoint=False, enable_hardware_metrics=False, collection_interval=0.1)
    performance = telemetry.performance
    for _ in range(90):
        performance.record_tick(0.005)
    for _ in range(10):
        performance.record_tick(0.030)  # late: over 16.67 ms
    builder = DashboardBuilder()
    tick = builder.build(_frame(telemetry)).tick_loop
    assert (tick.target_fps, tick.ticks, tick.late_ticks, tick.window_seconds) == (60.0, 100, 10, None)
    assert tick.budget_ms == pytest.approx(1000 / 60)
    assert tick.tick_p50_ms == pytest.approx(5.0, rel=SKETCH)
    assert tick.tick_p99_ms == pytest.approx(30.0, rel=SKETCH)
    assert tick.tick_avg_ms == pytest.approx((90 * 5 + 10 * 30) / 100)

    for _ in range(20):
        performance.record_tick(0.010)
    time.sleep(0.1)
    tick = builder.build(_frame(telemetry)).tick_loop
    assert (tick.ticks, tick.late_ticks) == (20, 0)
    assert tick.window_seconds is not None and tick.window_seconds > 0
    assert tick.tick_p99_ms == pytest.approx(10.0, rel=SKETCH)

    time.sleep(0.1)
    idle = builder.build(_frame(telemetry)).tick_loop  # no tick since: since-start figures
    assert (idle.ticks, idle.late_ticks, idle.window_seconds) == (120, 10, None)


def test_sections_are_none_when_the_server_records_nothing_of_the_kind(telemetry: Telemetry) -> None:
    """No database, cache or handler data: those sections are None or empty (the game monitor's zero series and
    its untouched histograms do not count as data)."""
    dashboard = DashboardBuilder().build(_frame(telemetry))
    assert (dashboard.database, dashboard.cache, dashboard.handlers, dashboard.alerts) == (None, None, (), ())
    assert dashboard.system.server_id == "test-server"
    assert dashboard.system.uptime_seconds is not None and dashboard.system.uptime_seconds >= 0
    assert dashboard.sequence is not None and dashboard.sequence >= 1


def test_the_game_monitors_database_and_cache_series_are_read_when_the_facade_has_none(telemetry: Telemetry) -> None:
    """Without facade names, GameMonitor.db_query / cache_hit / cache_miss / set_db_size fill the sections."""
    game = telemetry.game
    for _ in range(4):
        game.db_query(0.003)
    for _ in range(3):
        game.cache_hit()
    game.cache_miss()
    game.set_db_size(4096)
    dashboard = DashboardBuilder().build(_frame(telemetry))
    db, cache = dashboard.database, dashboard.cache
    assert db is not None and cache is not None
    assert (db.source, db.queries, db.size_bytes) == ("server.game.db.query.duration", 4, 4096.0)
    assert db.latency_avg_ms == pytest.approx(3.0)
    assert db.failed_queries is None  # the game monitor has no failure counter
    assert (cache.hits, cache.misses, cache.hit_rate_percent) == (3.0, 1.0, 75.0)


def test_sources_are_overridable_with_attribute_matches(telemetry: Telemetry) -> None:
    """A source names an exported metric and, in braces, the attributes its series must carry."""
    metrics = telemetry.metrics
    metrics.timing("store.call", 0.010, {"store": "orders"})
    metrics.timing("store.call", 0.900, {"store": "archive"})
    metrics.increment("store.failures", 2, {"store": "orders"})
    sources = DashboardSources(database_timing="store.call{store=orders}", database_errors="store.failures{store=*}")
    db = DashboardBuilder(sources).build(_frame(telemetry)).database
    assert db is not None
    assert (db.source, db.queries, db.failed_queries, db.pool_size) == ("store.call{store=orders}", 1, 2.0, None)
    assert db.latency_p99_ms == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("cache_hits", "not a name"), ("database_timing", "db.query{store}"), ("database_errors", 7)],
)
def test_a_bad_source_is_a_value_error_naming_the_field_and_value(field: str, value: object) -> None:
    """Setup refuses a malformed source, naming the field and the value."""
    with pytest.raises(ValueError, match=f"DashboardSources.{field}") as error:
        DashboardSources(**{field: value})  # type: ignore[arg-type]
    assert repr(value) in str(error.value)


def test_widgets_show_charts_tables_and_statuses_from_the_frame(telemetry: Telemetry) -> None:
    """Widget values come from the frame: a status against its thresholds (either direction), a table per series,
    a chart with one history value per frame, a counter's rate."""
    metrics = telemetry.metrics
    metrics.gauge("queue.depth", 7)
    metrics.gauge("sim.fps", 25)
    metrics.increment("jobs.done", 4, {"kind": "craft"})
    metrics.increment("jobs.done", 6, {"kind": "trade"})
    metrics.timing("db.query", 0.004)
    builder = DashboardBuilder(
        widgets=[
            Widget("status", "Queue", "queue.depth", warn=5, critical=10),
            Widget("status", "Sim FPS", "sim.fps", warn=30, critical=20),  # lower is worse
            Widget("table", "Jobs", "jobs.done"),
            Widget("chart", "Query p95", "db.query", "p95"),
        ]
    )
    builder.add_widget(Widget("chart", "Jobs/s", "jobs.done", "rate", match={"kind": "trade"}))
    first_frame = _frame(telemetry)
    queue, fps, jobs, query, rate = builder.build(first_frame).widgets
    assert (queue.value, queue.status, fps.value, fps.status) == (7.0, "warn", 25.0, "warn")
    assert [(dict(row.attributes), row.value) for row in jobs.rows] == [
        ({"kind": "craft"}, 4.0),
        ({"kind": "trade"}, 6.0),
    ]
    assert jobs.value == 10.0 and jobs.status is None
    assert (query.unit, query.history) == ("s", (pytest.approx(0.004, rel=SKETCH),))
    assert rate.metric == "jobs.done{kind=trade}" and rate.value is not None and rate.value > 0

    metrics.gauge("queue.depth", 12)
    metrics.gauge("sim.fps", 50)
    metrics.timing("db.query", 0.008)
    metrics.increment("jobs.done", 3, {"kind": "trade"})
    time.sleep(0.01)
    second_frame = _frame(telemetry)
    queue, fps, _jobs, query, rate = builder.build(second_frame).widgets
    assert (queue.status, fps.status) == ("critical", "ok")
    assert query.history == (pytest.approx(0.004, rel=SKETCH), pytest.approx(0.008, rel=SKETCH))
    assert rate.value == pytest.approx(3 / (second_frame.monotonic - first_frame.monotonic))
    again = builder.build(second_frame).widgets[3]  # the same frame again: no second history value
    assert len(again.history) == 2
    assert builder.remove_widget("Query p95") and not builder.remove_widget("Query p95")
    assert [w.title for w in builder.build(second_frame).widgets] == ["Queue", "Sim FPS", "Jobs", "Jobs/s"]


@pytest.mark.parametrize(
    ("arguments", "field", "value"),
    [
        ({"kind": "pie", "title": "t", "metric": "m"}, "kind", "'pie'"),
        ({"kind": "chart", "title": " ", "metric": "m"}, "title", "' '"),
        ({"kind": "chart", "title": "t", "metric": "bad name"}, "metric", "'bad name'"),
        ({"kind": "chart", "title": "t", "metric": "m", "statistic": "p42"}, "statistic", "'p42'"),
        ({"kind": "chart", "title": "t", "metric": "m", "match": {"k": 1}}, "match", "{'k': 1}"),
        ({"kind": "chart", "title": "t", "metric": "m", "warn": float("nan")}, "warn", "nan"),
        ({"kind": "status", "title": "t", "metric": "m", "warn": 1}, "warn/critical", "None"),
        ({"kind": "status", "title": "t", "metric": "m", "warn": 1, "critical": 1}, "critical", "1.0"),
    ],
)
def test_a_bad_widget_is_a_value_error_naming_the_field_and_value(
    arguments: dict[str, object], field: str, value: str
) -> None:
    """Widget validation names the field and the value it refused."""
    with pytest.raises(ValueError, match=f"Widget.{field}") as error:
        Widget(**arguments)  # type: ignore[arg-type]
    assert value in str(error.value)


def test_the_builder_refuses_duplicate_titles_and_non_widgets() -> None:
    """add_widget refuses a taken title and anything that is not a Widget; caps are validated."""
    builder = DashboardBuilder(widgets=[Widget("chart", "CPU", "server.cpu.usage")])
    with pytest.raises(ValueError, match="'CPU' is already taken"):
        builder.add_widget(Widget("table", "CPU", "server.cpu.usage"))
    with pytest.raises(ValueError, match="expected a Widget"):
        builder.add_widget("CPU")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"DashboardBuilder\.max_handlers"):
        DashboardBuilder(max_handlers=0)
    with pytest.raises(ValueError, match=r"DashboardBuilder\.sources"):
        DashboardBuilder(["db.query"])  # type: ignore[list-item]


def test_alerts_are_the_active_alert_dicts_firing_first(telemetry: Telemetry) -> None:
    """Alert.to_dict() outputs become rows (firing first, since = when it fired); resolved and malformed ones are
    left out and counted."""
    telemetry.alerts.add_rule(AlertRule(name="NoPlayers", metric="game.active_player_count", kind="below", threshold=1))
    telemetry.alerts.add_rule(
        AlertRule(name="FewPlayers", metric="game.active_player_count", kind="below", threshold=5, for_=3600)
    )
    frame = _frame(telemetry)
    active = [alert.to_dict() for alert in telemetry.alerts.active()]
    resolved = {**active[0], "state": "resolved"}
    builder = DashboardBuilder()
    dashboard = builder.build(frame, [*active, resolved, {"bogus": 1}, "text"])  # type: ignore[list-item]
    firing, pending = dashboard.alerts
    assert (firing.name, firing.state, firing.severity, firing.value, firing.metric) == (
        "NoPlayers",
        "firing",
        "warning",
        0.0,
        "game.active_player_count",
    )
    by_name = {alert["name"]: alert for alert in active}
    assert firing.since == by_name["NoPlayers"]["fired_at"]
    assert (pending.name, pending.state, pending.since) == (
        "FewPlayers",
        "pending",
        by_name["FewPlayers"]["active_since"],
    )
    assert builder.stats["invalid_alerts"] == 2 and builder.stats["inactive_alerts"] == 1


def test_the_alert_cap_keeps_the_worst_and_counts_the_rest(telemetry: Telemetry) -> None:
    """Beyond max_alerts, the firing and most severe alerts are kept; the others are counted."""
    alerts = [
        {"name": f"A{i}", "state": "pending" if i % 2 else "firing", "severity": "critical" if i < 2 else "info"}
        for i in range(6)
    ]
    builder = DashboardBuilder(max_alerts=2)
    dashboard = builder.build(_frame(telemetry), alerts)
    assert [a.name for a in dashboard.alerts] == ["A0", "A2"]  # firing: critical before info
    assert dashboard.alerts_omitted == 4 and builder.stats["omitted_alerts"] == 4


def test_json_round_trip_is_exact(telemetry: Telemetry) -> None:
    """to_json/from_json and to_dict/from_dict give back an equal dashboard, every section filled."""
    metrics = telemetry.metrics
    metrics.timing("db.query", 0.004)
    metrics.increment("cache.hits", 2)
    metrics.increment("tasks", 1, {"kind": "a"})
    telemetry.performance.record_tick(0.004)

    @telemetry.traced
    def handler() -> None:
        pass

    handler()
    builder = DashboardBuilder(
        widgets=[Widget("table", "Tasks", "tasks"), Widget("status", "Hits", "cache.hits", warn=1, critical=5)]
    )
    builder.add_widget(Widget("chart", "Ticks", "server.tick.duration", "p99"))
    dashboard = builder.build(
        _frame(telemetry),
        [{"name": "X", "state": "firing", "severity": "critical", "value": 2.5, "fired_at": "2024-01-01T00:00:00Z"}],
    )
    assert dashboard.database and dashboard.cache and dashboard.handlers and dashboard.alerts and dashboard.widgets
    text = dashboard.to_json(indent=2)
    assert "NaN" not in text and "Infinity" not in text
    assert Dashboard.from_json(text) == dashboard
    assert Dashboard.from_dict(json.loads(dashboard.to_json())) == dashboard
    assert Dashboard.from_dict(dashboard.to_dict()) == dashboard
    assert json.loads(text)["system"]["timestamp"].endswith("Z")


def test_reading_a_bad_dashboard_names_the_field_and_value() -> None:
    """from_dict / from_json raise ValueError naming the field; unknown keys are ignored, defaults fill gaps."""
    with pytest.raises(ValueError, match=r"Dashboard\.system\.timestamp: .*'yesterday'"):
        Dashboard.from_dict({"system": {"server_id": "s", "timestamp": "yesterday"}})
    with pytest.raises(ValueError, match=r"Dashboard\.tick_loop\.ticks: expected an integer, got 1\.5"):
        Dashboard.from_dict(
            {"system": {"server_id": "s", "timestamp": "2024-01-01T00:00:00Z"}, "tick_loop": {"ticks": 1.5}}
        )
    with pytest.raises(ValueError, match=r"Dashboard\.system: missing"):
        Dashboard.from_dict({})
    with pytest.raises(ValueError, match="not JSON"):
        Dashboard.from_json("<html>")
    read = Dashboard.from_dict(
        {"system": {"server_id": None, "timestamp": "2024-01-01T00:00:00+00:00", "future": 1}, "extra": []}
    )
    assert read == Dashboard(system=SystemOverview(None, datetime.fromisoformat("2024-01-01T00:00:00+00:00")))


def test_frames_fed_by_the_listener_make_the_interval_one_collection(telemetry: Telemetry) -> None:
    """With on_frame fed every frame, rates cover exactly the last collection however often build is called."""
    builder = DashboardBuilder()
    telemetry.metrics.increment("cache.hits", 5)
    first_frame = _frame(telemetry)
    builder.on_frame(first_frame)
    telemetry.metrics.increment("cache.hits", 5)
    time.sleep(0.01)
    second_frame = _frame(telemetry)
    builder.on_frame(second_frame)
    window = second_frame.monotonic - first_frame.monotonic
    for _ in range(3):
        dashboard = builder.build(second_frame)
        assert dashboard.window_seconds == pytest.approx(window)
        assert dashboard.cache is not None and dashboard.cache.hits == 5.0
    older = builder.build(first_frame)  # an older frame than the newest: since the start
    assert older.window_seconds is None


def test_build_never_raises_and_counts_what_failed(telemetry: Telemetry) -> None:
    """A frame whose metrics cannot be read, or alerts that are not a sequence, give a dashboard anyway: the
    failing parts keep their defaults, each failure counted (and logged once)."""
    frame = _frame(telemetry)
    builder = DashboardBuilder()
    broken = dataclasses.replace(frame, metrics_data=None)
    for _ in range(2):
        dashboard = builder.build(broken)  # type: ignore[arg-type]
        assert dashboard.system.server_id == "test-server" and dashboard.database is None
    assert builder.stats["failures"] == 2
    dashboard = builder.build(frame, alerts=42)  # type: ignore[arg-type]
    assert dashboard.alerts == () and dashboard.system.players == 0
    assert builder.stats["failures"] == 3 and builder.stats["builds"] == 3


def test_the_dashboard_route_serves_json_on_the_handles_http_server(make_telemetry: Callable[..., Telemetry]) -> None:
    """DashboardRoute on a handle's real HTTP server: 200 with the JSON, 503 before a frame, 500 when building
    fails (counted); other paths are left to the server."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, enable_hardware_metrics=False)
    server = telemetry.http_server
    assert server is not None
    telemetry.metrics.timing("db.query", 0.004)
    telemetry.collect()
    status, headers, body = http_get(f"{server.url}/dashboard?x=1")  # the handle serves telemetry.dashboard()
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    served = Dashboard.from_json(body)
    assert served.system.server_id == "test-server"
    assert served == telemetry.dashboard()  # the same object as in process, for the same frame
    assert served.database is not None and served.database.queries == 1
    assert http_get(f"{server.url}/dashboard/")[0] == 200
    assert http_get(f"{server.url}/dashboards")[0] == 404

    def failing() -> Dashboard:
        raise RuntimeError("cannot build")

    empty = DashboardRoute(lambda: None, "/empty")
    broken = DashboardRoute(failing, "/broken")
    server.add_route(empty)
    server.add_route(broken)
    assert http_get(f"{server.url}/empty")[0] == 503
    assert http_get(f"{server.url}/broken")[0] == 500 and http_get(f"{server.url}/broken")[0] == 500
    assert broken.failures == 2
    with pytest.raises(ValueError, match=r"DashboardRoute\.path"):
        DashboardRoute(lambda: None, "dashboard")


def test_the_handler_metric_names_are_the_tracing_modules() -> None:
    """The dashboard reads the @traced instruments by name without importing them (that would load the SDK)."""
    assert dashboard_sections.HANDLER_DURATION == tracing.HANDLER_DURATION
    assert dashboard_sections.HANDLER_REQUESTS == tracing.HANDLER_REQUESTS
    assert dashboard_sections.HANDLER_ERRORS == tracing.HANDLER_ERRORS
    assert [s.database_timing for s in DEFAULT_SOURCES] == [
        "db.query",
        "db.client.operation.duration",
        "server.game.db.query.duration",
    ]


def test_importing_the_dashboard_and_top_loads_no_opentelemetry() -> None:
    """A process that only renders dashboards (top attached to a URL) never imports OpenTelemetry."""
    code = (
        "import sys, otel_telemetry.snapshot.dashboard, otel_telemetry.tools.top; "
        "print([m for m in sys.modules if m.split('.')[0] == 'opentelemetry'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_alert_rows_are_plain_data() -> None:
    """AlertRow carries what top shows: name, severity, state, value, metric, since."""
    row = AlertRow("HighPing", "warning", "pending", 120.5, "network.avg_player_ping_ms", "2024-01-01T00:00:00Z")
    assert Dashboard.from_json(
        Dashboard(SystemOverview("s", datetime.now().astimezone()), alerts=(row,)).to_json()
    ).alerts == (row,)
