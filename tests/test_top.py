"""otel-telemetry top: Prometheus' quantile interpolation, the /dashboard a server serves and the /metrics fallback,
rendering, and the refresh loop."""

from __future__ import annotations

import contextlib
import http.server
import io
import math
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from otel_telemetry import Telemetry
from otel_telemetry.snapshot.dashboard import (
    AlertRow,
    CacheSection,
    Dashboard,
    DashboardBuilder,
    DatabaseSection,
    HandlerRow,
    SystemOverview,
    TickLoop,
    Widget,
    WidgetRow,
    WidgetValue,
)
from otel_telemetry.tools import top as top
from otel_telemetry.tools.demo import DemoOptions, GameSimulation, run_loop
from otel_telemetry.tools.top import (
    MetricsScraper,
    dashboard_url,
    fetch,
    fetch_dashboard,
    histogram_quantile,
    normalize_url,
    parse,
    render,
    run_top,
    top_command,
)

INF = math.inf
# Cumulative buckets: 10 observations <= 10 ms, 20 more <= 20 ms, 60 more <= 50 ms, 10 above.
BUCKETS = [(0.01, 10.0), (0.02, 30.0), (0.05, 90.0), (INF, 100.0)]


def _exposition(counts: list[float], extra: str = "") -> str:
    bounds = ["0.01", "0.02", "0.05", "+Inf"]
    lines = ["# TYPE server_tick_duration_seconds histogram"]
    lines += [f'server_tick_duration_seconds_bucket{{le="{b}"}} {c}' for b, c in zip(bounds, counts, strict=True)]
    lines += [f"server_tick_duration_seconds_count {counts[-1]}", "server_tick_duration_seconds_sum 3.0"]
    return "\n".join(lines) + "\n" + extra


def _run_game(simulation: GameSimulation, seconds: float) -> None:
    run_loop(simulation, 60.0, threading.Event(), seconds)


@pytest.fixture
def live(make_telemetry: Callable[..., Telemetry]) -> tuple[Telemetry, GameSimulation]:
    """A telemetry handle serving /metrics on 127.0.0.1, and the demo's simulation driving it."""
    # /metrics serves the newest frame: frames every 0.25 s, so that two scrapes 0.5 s apart see two frames.
    telemetry = make_telemetry(enable_prometheus_endpoint=True, collection_interval=0.25)
    return telemetry, GameSimulation(telemetry, DemoOptions(players=40, seed=7))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


#: One canned answer: status, content type, body.
Answer = tuple[int, str, bytes]


class _Server:
    """A real HTTP server on 127.0.0.1 answering GETs from a table of paths (404 elsewhere), logging each path.

    A path's answers are used in turn, the last one repeated."""

    def __init__(self, answers: dict[str, list[Answer]], default: Answer | None = None) -> None:
        self.requested: list[str] = []
        self.answers = answers
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.requested.append(path)
                queue = server.answers.get(path)
                status, kind, body = (
                    (queue.pop(0) if len(queue) > 1 else queue[0])
                    if queue
                    else (default or (404, "text/plain", b"not found\n"))
                )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-top-server", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5.0)


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    """Start canned HTTP servers on 127.0.0.1; all are stopped afterwards."""
    started: list[_Server] = []

    def start(answers: dict[str, list[Answer]], default: Answer | None = None) -> _Server:
        server = _Server(answers, default)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def _recorded_dashboard(telemetry: Telemetry) -> Dashboard:
    """A dashboard built from a real handle's frame: facade database and cache, a failing handler, widgets."""
    metrics = telemetry.metrics
    for i in range(20):
        metrics.timing("db.query", 0.001 * (i + 1))
    metrics.increment("db.errors", 2)
    metrics.increment("cache.hits", 40)
    metrics.increment("cache.misses", 60)
    metrics.gauge("queue.depth", 12)

    @telemetry.traced("save_inventory")
    def save(fail: bool) -> None:
        if fail:
            raise OSError("disk full")

    for i in range(10):
        with contextlib.suppress(OSError):
            save(i == 0)
    telemetry.collect()
    frame = telemetry.latest_frame()
    assert frame is not None
    builder = DashboardBuilder(widgets=[Widget("status", "Queue", "queue.depth", warn=5, critical=10)])
    return builder.build(frame, [{"name": "QueueDeep", "state": "firing", "severity": "critical", "value": 12}])


# --- histogram_quantile -----------------------------------------------------------------------------------------------
def test_histogram_quantile_interpolates_like_prometheus() -> None:
    """Linear interpolation inside the bucket that holds the rank, from 0 for the first bucket (hand-computed)."""
    assert histogram_quantile(0.1, BUCKETS) == pytest.approx(0.01)  # rank 10: the top of the first bucket
    assert histogram_quantile(0.25, BUCKETS) == pytest.approx(0.0175)  # rank 25: 15 of 20 into (10, 20] ms
    assert histogram_quantile(0.5, BUCKETS) == pytest.approx(0.03)  # rank 50: 20 of 60 into (20, 50] ms
    assert histogram_quantile(0.05, BUCKETS) == pytest.approx(0.005)  # rank 5: half of (0, 10] ms
    assert histogram_quantile(0.5, list(reversed(BUCKETS))) == pytest.approx(0.03)  # order does not matter


def test_histogram_quantile_edge_cases_follow_prometheus() -> None:
    """+Inf bucket gives the highest finite bound; NaN cases give None; q outside [0, 1] gives ±inf."""
    assert histogram_quantile(0.95, BUCKETS) == 0.05  # rank 95 lies in the +Inf bucket
    assert histogram_quantile(-0.1, BUCKETS) == -INF
    assert histogram_quantile(1.1, BUCKETS) == INF
    assert histogram_quantile(0.5, BUCKETS[:-1]) is None  # no +Inf bucket
    assert histogram_quantile(0.5, [(0.01, 0.0), (INF, 0.0)]) is None  # no observations
    assert histogram_quantile(0.5, [(INF, 5.0)]) is None  # a single bucket
    assert histogram_quantile(0.2, [(0.0, 5.0), (1.0, 10.0), (INF, 10.0)]) == 0.0  # first bound <= 0
    # A count that decreases (a scrape caught mid-update) is forced up to 10, as Prometheus does: rank 50 is then
    # 40 of 80 into (20, 50] ms.
    assert histogram_quantile(0.5, [(0.01, 10.0), (0.02, 8.0), (0.05, 90.0), (INF, 100.0)]) == pytest.approx(0.035)


def _ticks(dashboard: Dashboard) -> tuple[float | None, float | None, float | None]:
    tick = dashboard.tick_loop
    return tick.tick_p50_ms, tick.tick_p95_ms, tick.tick_p99_ms


def test_percentiles_cover_the_interval_between_two_scrapes() -> None:
    """With the previous scrape, percentiles come from the bucket differences; a restart falls back to all."""
    scraper = MetricsScraper()
    first = scraper.parse(_exposition([10, 30, 90, 100]), now=10.0)
    assert _ticks(first) == pytest.approx((30.0, 50.0, 50.0))
    assert first.tick_loop.window_seconds is None and first.tick_loop.ticks == 100
    # Since the first scrape: 0, 10, 100 and 100 observations per bound -> rank 50 is 40/90 into (20, 50] ms.
    second = scraper.parse(_exposition([10, 40, 190, 200]), now=11.5)
    assert second.tick_loop.tick_p50_ms == pytest.approx(20 + 30 * 40 / 90)
    assert second.tick_loop.window_seconds == pytest.approx(1.5) and second.window_seconds == pytest.approx(1.5)
    assert second.tick_loop.ticks == 100
    restarted = scraper.parse(_exposition([1, 2, 3, 4]), now=12.5)
    assert restarted.tick_loop.window_seconds is None
    assert _ticks(restarted) == pytest.approx((20.0, 50.0, 50.0))
    idle = scraper.parse(_exposition([1, 2, 3, 4]), now=13.5)
    assert idle.tick_loop.window_seconds is None  # nothing new: the view keeps the since-start figures


def test_parse_reads_alerts_and_aggregates_several_servers() -> None:
    """ALERTS samples become alerts (firing first); several servers' gauges are summed or averaged."""
    text = (
        'target_info{service_instance_id="a"} 1\ntarget_info{service_instance_id="b"} 1\n'
        'server_game_active_players{service_instance_id="a"} 10\n'
        'server_game_active_players{service_instance_id="b"} 5\n'
        'server_tick_rate_fps{service_instance_id="a"} 60\nserver_tick_rate_fps{service_instance_id="b"} 50\n'
        'ALERTS{alertname="PingHigh",alertstate="pending",severity="warning"} 1\n'
        'ALERTS{alertname="TickRateLow",alertstate="firing",severity="critical"} 1\n'
    )
    view = parse(text)
    assert (view.system.server_id, view.system.servers) == (None, 2)
    assert view.system.players == 15
    assert view.tick_loop.tick_rate_fps == 55
    assert view.alerts == (AlertRow("TickRateLow", "critical", "firing"), AlertRow("PingHigh", "warning", "pending"))
    assert "2 servers" in render(view, color=False)


def test_parse_finds_the_server_id_behind_a_collector() -> None:
    """The Collector's target_info has the id as `instance` only; the labelled series still name the server."""
    text = (
        'target_info{instance="eu-017",job="game-server",host_name="h"} 1\n'
        'server_target_tick_rate_fps{instance="eu-017",job="game-server",service_instance_id="eu-017"} 60\n'
    )
    view = parse(text)
    assert view.system.server_id == "eu-017"
    assert view.tick_loop.target_fps == 60


def test_parse_rejects_text_that_is_not_an_exposition() -> None:
    """An HTML page (a wrong URL) is a ValueError, not a silently empty view."""
    with pytest.raises(ValueError):
        parse("<html><body>not metrics</body></html>\n")


# --- A real endpoint --------------------------------------------------------------------------------------------------
def test_live_endpoint_shows_tick_rate_players_and_percentiles(live: tuple[Telemetry, GameSimulation]) -> None:
    """A real server driven by the game simulation: plausible tick rate, players, tick and ping percentiles."""
    telemetry, simulation = live
    assert telemetry.prometheus_url is not None
    _run_game(simulation, 1.5)
    scraper = MetricsScraper()
    first = scraper.parse(fetch(telemetry.prometheus_url, timeout=10))
    assert first.system.server_id == "test-server"
    tick, network, system = first.tick_loop, first.network, first.system
    assert tick.tick_rate_fps is not None and 30 <= tick.tick_rate_fps <= 75
    assert tick.target_fps == 60
    assert system.players is not None and 30 <= system.players <= 40
    assert tick.tick_p50_ms is not None and tick.tick_p95_ms is not None and tick.tick_p99_ms is not None
    assert 0 < tick.tick_p50_ms <= tick.tick_p95_ms <= tick.tick_p99_ms < 1000
    assert network.ping_p50_ms is not None and network.ping_p95_ms is not None and network.ping_p99_ms is not None
    assert 10 < network.ping_p50_ms <= network.ping_p95_ms <= network.ping_p99_ms < 500
    assert network.avg_ping_ms is not None and 20 < network.avg_ping_ms < 100
    assert network.packets_in_per_second is not None and network.packets_in_per_second > 0
    assert system.cpu_percent is not None and system.memory_percent is not None
    assert system.memory_bytes is not None and system.uptime_seconds is not None
    assert tick.entities is not None and tick.entities > 0

    _run_game(simulation, 0.5)
    second = scraper.parse(fetch(telemetry.prometheus_url, timeout=10))
    assert second.tick_loop.window_seconds is not None and second.tick_loop.window_seconds > 0  # not since start
    text = render(second, color=False)
    assert "test-server" in text
    assert "fps" in text and "target 60 fps" in text
    assert f"Players     {second.system.players:.0f}" in text
    assert "p95" in text and "p99" in text and "last " in text


def test_non_tty_output_is_plain_text_blocks(live: tuple[Telemetry, GameSimulation]) -> None:
    """Without a terminal: no ANSI escapes, one block per refresh, blocks separated by one blank line."""
    telemetry, simulation = live
    assert telemetry.prometheus_url is not None
    _run_game(simulation, 0.3)
    out, err = io.StringIO(), io.StringIO()
    assert run_top(telemetry.prometheus_url, interval=0.05, iterations=2, stream=out, errors=err) == 0
    text = out.getvalue()
    assert "\x1b" not in text
    blocks = text.split("\n\n")
    assert len(blocks) == 2 and all(block.startswith("otel-telemetry top") for block in blocks)
    assert err.getvalue() == ""


def test_terminal_output_redraws_in_place_with_colours(
    live: tuple[Telemetry, GameSimulation], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal each refresh clears the screen first and uses colours (NO_COLOR unset)."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    telemetry, _simulation = live
    assert telemetry.prometheus_url is not None
    out = _Terminal()
    assert run_top(telemetry.prometheus_url, interval=0.05, iterations=2, stream=out) == 0
    assert out.getvalue().startswith(top._CLEAR)
    assert out.getvalue().count(top._CLEAR) == 2
    assert "\x1b[1m" in out.getvalue()


def test_unreachable_url_prints_a_clear_error_and_exits_1() -> None:
    """Nothing listening: exit code 1, a message naming the URL on the error stream, nothing on the view stream."""
    url = f"http://127.0.0.1:{_free_port()}/metrics"
    out, err = io.StringIO(), io.StringIO()
    assert run_top(url, iterations=1, stream=out, errors=err) == 1
    assert out.getvalue() == ""
    assert f"cannot read {url}" in err.getvalue()


def test_bad_url_and_missing_url_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """A non-HTTP URL exits 1 with a message; the command line needs a URL or --demo."""
    assert run_top("ftp://example.org/metrics", iterations=1, stream=io.StringIO()) == 1
    assert "http://" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        top_command([])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        top_command(["--interval", "0", "127.0.0.1:9090"])


def test_ctrl_c_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """KeyboardInterrupt during a refresh ends the loop with exit code 0."""

    def interrupted(url: str, timeout: float = 5.0) -> Dashboard:
        raise KeyboardInterrupt

    monkeypatch.setattr(top, "fetch_dashboard", interrupted)
    assert run_top("http://127.0.0.1:9/metrics", interval=0.01, stream=io.StringIO()) == 0


def test_normalize_url_adds_scheme_and_metrics_path() -> None:
    """host:port is enough; an explicit path is kept."""
    assert normalize_url("127.0.0.1:9090") == "http://127.0.0.1:9090/metrics"
    assert normalize_url("https://game.example:443/") == "https://game.example:443/metrics"
    assert normalize_url("http://h:1/federate?match[]=ALERTS") == "http://h:1/federate?match[]=ALERTS"
    with pytest.raises(ValueError):
        normalize_url("file:///etc/passwd")


def test_render_fits_the_width_and_highlights_firing_alerts() -> None:
    """Lines never exceed the width without colour; firing alerts are bold red, pending ones yellow."""
    view = Dashboard(
        system=SystemOverview("server-001", datetime.now(UTC), players=1250),
        tick_loop=TickLoop(tick_rate_fps=42.0, target_fps=60.0, tick_p50_ms=12.0, tick_p95_ms=18.0, tick_p99_ms=25.0),
        alerts=(AlertRow("TickRateLow", "critical", "firing"), AlertRow("PingHigh", "warning", "pending")),
    )
    plain = render(view, color=False, width=60)
    assert all(len(line) <= 60 for line in plain.splitlines())
    assert "FIRING   TickRateLow  severity=critical" in plain
    coloured = render(view, color=True)
    assert "\x1b[1;31mFIRING   TickRateLow" in coloured
    assert "\x1b[33mPENDING  PingHigh" in coloured
    assert "\x1b[1;31m42.0 fps" in coloured  # 70% of the target


def test_demo_mode_runs_the_simulation_and_stops_its_thread(capsys: pytest.CaptureFixture[str]) -> None:
    """`top --demo` watches an in-process demo server and leaves no thread or server behind."""
    assert top_command(["--demo", "--iterations", "2", "--interval", "0.5"]) == 0
    output = capsys.readouterr().out
    assert output.count("demo-server-001") == 2
    assert not [t for t in threading.enumerate() if t.name == "otel-telemetry-top-demo"]


def test_parse_reads_the_sdks_alerts_series() -> None:
    """The SDK exports its alerts as `alerts` (lowercase): they are the view's alerts, beside a federated ALERTS."""
    text = (
        "# TYPE alerts gauge\n"
        'alerts{alertname="LowTickRateWarning",alertstate="firing",severity="warning"} 1.0\n'
        'alerts{alertname="HighPlayerPingWarning",alertstate="pending",severity="warning"} 1.0\n'
        'ALERTS{alertname="HighCpuUsageCritical",alertstate="firing",severity="critical"} 1\n'
    )
    assert parse(text).alerts == (
        AlertRow("HighCpuUsageCritical", "critical", "firing"),
        AlertRow("LowTickRateWarning", "warning", "firing"),
        AlertRow("HighPlayerPingWarning", "warning", "pending"),
    )


def test_a_live_endpoint_shows_the_sdks_firing_alerts(make_telemetry: Callable[..., Telemetry]) -> None:
    """Attached to a server's own /metrics, top shows the alerts the SDK evaluated on the frame it serves."""
    from otel_telemetry.alerts import AlertRule

    telemetry = make_telemetry(enable_prometheus_endpoint=True, enable_hardware_metrics=False)
    telemetry.alerts.add_rule(AlertRule(name="NoPlayers", metric="game.active_player_count", kind="below", threshold=1))
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    view = parse(fetch(telemetry.prometheus_url))
    assert AlertRow("NoPlayers", "warning", "firing") in view.alerts
    assert "FIRING   NoPlayers" in render(view, color=False)


# --- The /dashboard a server serves, and the /metrics fallback --------------------------------------------------------
def test_dashboard_url_replaces_the_last_path_segment() -> None:
    """/dashboard sits beside the metrics path; the query is dropped."""
    assert dashboard_url("http://h:9090/metrics") == "http://h:9090/dashboard"
    assert dashboard_url("https://h/game/metrics") == "https://h/game/dashboard"
    assert dashboard_url("http://p:9090/federate?match[]=ALERTS") == "http://p:9090/dashboard"


def test_top_renders_the_dashboard_a_server_serves(
    make_telemetry: Callable[..., Telemetry], serve: Callable[..., _Server]
) -> None:
    """A server serving /dashboard: top reads it (never /metrics) and renders database, cache, handlers, widgets
    and alerts from it."""
    telemetry = make_telemetry(enable_prometheus_endpoint=False, enable_hardware_metrics=False)
    dashboard = _recorded_dashboard(telemetry)
    server = serve({"/dashboard": [(200, "application/json", dashboard.to_json().encode())]})
    assert fetch_dashboard(f"{server.url}/dashboard") == dashboard
    out, err = io.StringIO(), io.StringIO()
    assert run_top(f"{server.url}/metrics", interval=0.05, iterations=2, stream=out, errors=err) == 0
    text = out.getvalue()
    assert set(server.requested) == {"/dashboard"}
    assert f"test-server  {server.url}/dashboard" in text
    assert "Database    " in text and "failed 2" in text
    assert "Cache       hit 40.0 %" in text
    assert "save_inventory" in text and "10.0%" in text  # one of ten calls failed
    assert "Queue       CRITICAL" in text
    assert "FIRING   QueueDeep  severity=critical  value=12" in text
    assert err.getvalue() == ""


def test_top_falls_back_to_metrics_where_there_is_no_dashboard(
    live: tuple[Telemetry, GameSimulation], serve: Callable[..., _Server]
) -> None:
    """/dashboard answering 404 (a Prometheus, an older server): top scrapes /metrics, asking /dashboard once."""
    telemetry, simulation = live
    assert telemetry.prometheus_url is not None
    _run_game(simulation, 0.5)
    exposition = fetch(telemetry.prometheus_url).encode()
    server = serve({"/metrics": [(200, "text/plain; version=0.0.4", exposition)]})
    assert fetch_dashboard(f"{server.url}/dashboard") is None
    out = io.StringIO()
    assert run_top(f"{server.url}/metrics", interval=0.05, iterations=3, stream=out) == 0
    assert server.requested == ["/dashboard", "/dashboard", "/metrics", "/metrics", "/metrics"]
    text = out.getvalue()
    assert f"test-server  {server.url}/metrics" in text and "target 60 fps" in text
    assert "Database" not in text and "Handlers" not in text


def test_an_answer_that_is_not_a_dashboard_also_falls_back(serve: Callable[..., _Server]) -> None:
    """A server answering every path with metrics text (a Collector's exporter) or other JSON has no dashboard."""
    exposition = _exposition([10, 30, 90, 100], 'target_info{service_instance_id="gw-1"} 1\n').encode()
    server = serve({}, default=(200, "text/plain", exposition))
    assert fetch_dashboard(f"{server.url}/dashboard") is None
    other = serve({"/dashboard": [(200, "application/json", b'{"panels": []}')]})
    assert fetch_dashboard(f"{other.url}/dashboard") is None
    out = io.StringIO()
    assert run_top(f"{server.url}/metrics", iterations=1, stream=out) == 0
    assert "gw-1" in out.getvalue() and "p50 30.00 ms" in out.getvalue()


def test_a_failing_dashboard_is_an_error_not_a_fallback(
    make_telemetry: Callable[..., Telemetry], serve: Callable[..., _Server]
) -> None:
    """A 500 from /dashboard at the first refresh exits 1 with a message; after a good refresh it shows the error
    block and the last refresh's failure is the exit code."""
    failing = serve({"/dashboard": [(500, "text/plain", b"boom")]})
    out, err = io.StringIO(), io.StringIO()
    assert run_top(f"{failing.url}/metrics", iterations=1, stream=out, errors=err) == 1
    assert f"cannot read {failing.url}/metrics" in err.getvalue() and out.getvalue() == ""

    telemetry = make_telemetry(enable_prometheus_endpoint=False, enable_hardware_metrics=False)
    body = _recorded_dashboard(telemetry).to_json().encode()
    flaky = serve({"/dashboard": [(200, "application/json", body), (500, "text/plain", b"boom")]})
    out = io.StringIO()
    assert run_top(f"{flaky.url}/metrics", interval=0.05, iterations=2, stream=out, errors=err) == 1
    first, second = out.getvalue().split("\n\n")
    assert "save_inventory" in first
    assert "cannot read the endpoint" in second and "(retrying)" in second


def test_render_shows_database_cache_handlers_and_widgets_within_the_width() -> None:
    """Every section renders inside the width; worrying values are coloured (error ratio, hit rate, status)."""
    view = Dashboard(
        system=SystemOverview("s-1", datetime.now(UTC), cpu_percent=50.0, memory_bytes=3 * 1024**3, memory_percent=40),
        tick_loop=TickLoop(
            tick_rate_fps=60.0,
            target_fps=60.0,
            budget_ms=16.67,
            tick_p50_ms=2.0,
            tick_p95_ms=4.0,
            tick_p99_ms=20.0,
            late_ticks=3,
            entities=1200,
            active_maps=4,
        ),
        database=DatabaseSection(
            "db.query",
            queries=10,
            queries_per_second=5.0,
            latency_avg_ms=2.0,
            latency_p95_ms=4.0,
            latency_p99_ms=8.0,
            failed_queries=1.0,
            pool_in_use=3,
            pool_size=12,
            pool_utilization_percent=25.0,
        ),
        cache=CacheSection(
            "cache.hits",
            hits=4.0,
            misses=6.0,
            hit_rate_percent=40.0,
            lookups_per_second=10.0,
            items=250.0,
            size_bytes=2048.0,
        ),
        handlers=tuple(
            HandlerRow(
                f"handler_{i}",
                requests=10,
                errors=1,
                requests_per_second=10.0 - i,
                error_ratio=0.1,
                latency_p50_ms=1.0,
                latency_p95_ms=2.0,
                latency_p99_ms=3.0,
            )
            for i in range(10)
        ),
        widgets=(
            WidgetValue("status", "CPU status", "server.cpu.usage", "value", unit="%", value=95.0, status="critical"),
            WidgetValue("chart", "Query time", "db.query", "p95", unit="s", value=0.004, history=(0.001, 0.004, 0.002)),
            WidgetValue("table", "Jobs", "jobs", "value", rows=(WidgetRow({"kind": "craft"}, 4.0),), rows_omitted=2),
        ),
    )
    plain = render(view, color=False, width=60)
    assert all(len(line) <= 60 for line in plain.splitlines())
    text = render(view, color=False, width=120)
    assert "p99 20.00 ms" in text and "3 late" in text and "entities 1,200   maps 4" in text
    assert "pool 3/12 (25 %)" in text and "failed 1" in text and "3.0 GiB" in text
    assert "hit 40.0 %" in text and "items 250" in text and "2.0 KiB" in text
    assert "handler_0" in text and "... 2 more" in text  # 8 rows shown
    assert "CRITICAL" in text and "4.00 ms" in text and "kind=craft" in text
    coloured = render(view, color=True, width=120)
    assert "\x1b[1;31m  10.0%" in coloured  # a handler failing 10 % of calls
    assert "\x1b[1;31mhit 40.0 %" in coloured
    assert "\x1b[1;31mCRITICAL" in coloured
