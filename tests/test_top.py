"""otel-telemetry top: Prometheus' quantile interpolation, parsing a real /metrics endpoint, and the refresh loop."""

from __future__ import annotations

import io
import math
import socket
import threading
from collections.abc import Callable

import pytest

from otel_telemetry import Telemetry
from otel_telemetry.tools import top as top
from otel_telemetry.tools.demo import DemoOptions, GameSimulation, run_loop
from otel_telemetry.tools.top import (
    Alert,
    Percentiles,
    TopView,
    fetch,
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


def test_percentiles_cover_the_interval_between_two_scrapes() -> None:
    """With the previous scrape, percentiles come from the bucket differences; a restart falls back to all."""
    first = parse(_exposition([10, 30, 90, 100]), now=10.0)
    assert first.tick_ms == pytest.approx(Percentiles(30.0, 50.0, 50.0))
    assert first.window_s is None
    # Since the first scrape: 0, 10, 100 and 100 observations per bound -> rank 50 is 40/90 into (20, 50] ms.
    second = parse(_exposition([10, 40, 190, 200]), first, now=11.5)
    assert second.tick_ms is not None
    assert second.tick_ms.p50 == pytest.approx(20 + 30 * 40 / 90)
    assert second.window_s == pytest.approx(1.5)
    restarted = parse(_exposition([1, 2, 3, 4]), second, now=12.5)
    assert restarted.window_s is None
    assert restarted.tick_ms == pytest.approx(Percentiles(20.0, 50.0, 50.0))
    idle = parse(_exposition([1, 2, 3, 4]), restarted, now=13.5)
    assert idle.window_s is None  # nothing new: the view keeps the since-start figures


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
    assert view.server == "2 servers"
    assert view.players == 15
    assert view.tick_rate == 55
    assert view.alerts == (Alert("TickRateLow", "firing", "critical"), Alert("PingHigh", "pending", "warning"))


def test_parse_finds_the_server_id_behind_a_collector() -> None:
    """The Collector's target_info has the id as `instance` only; the labelled series still name the server."""
    text = (
        'target_info{instance="eu-017",job="game-server",host_name="h"} 1\n'
        'server_target_tick_rate_fps{instance="eu-017",job="game-server",service_instance_id="eu-017"} 60\n'
    )
    view = parse(text)
    assert view.server == "eu-017"
    assert view.target_tick_rate == 60


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
    first = parse(fetch(telemetry.prometheus_url, timeout=10))
    assert first.server == "test-server"
    assert first.tick_rate is not None and 30 <= first.tick_rate <= 75
    assert first.target_tick_rate == 60
    assert first.players is not None and 30 <= first.players <= 40
    tick = first.tick_ms
    assert tick is not None and 0 < tick.p50 <= tick.p95 <= tick.p99 < 1000
    ping = first.ping_ms
    assert ping is not None and 10 < ping.p50 <= ping.p95 <= ping.p99 < 500
    assert first.avg_ping_ms is not None and 20 < first.avg_ping_ms < 100
    assert first.packets_in is not None and first.packets_in > 0
    assert first.cpu_percent is not None and first.memory_percent is not None

    _run_game(simulation, 0.5)
    second = parse(fetch(telemetry.prometheus_url, timeout=10), first)
    assert second.window_s is not None and second.window_s > 0  # recent percentiles, not since start
    text = render(second, color=False)
    assert "test-server" in text
    assert "fps" in text and "target 60 fps" in text
    assert f"Players     {second.players:.0f}" in text
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

    def interrupted(url: str, timeout: float = 5.0) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(top, "fetch", interrupted)
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
    view = TopView(
        server="server-001",
        tick_rate=42.0,
        target_tick_rate=60.0,
        tick_ms=Percentiles(12.0, 18.0, 25.0),
        players=1250,
        alerts=(Alert("TickRateLow", "firing", "critical"), Alert("PingHigh", "pending", "warning")),
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
        Alert("HighCpuUsageCritical", "firing", "critical"),
        Alert("LowTickRateWarning", "firing", "warning"),
        Alert("HighPlayerPingWarning", "pending", "warning"),
    )


def test_a_live_endpoint_shows_the_sdks_firing_alerts(make_telemetry: Callable[..., Telemetry]) -> None:
    """Attached to a server's own /metrics, top shows the alerts the SDK evaluated on the frame it serves."""
    from otel_telemetry.alerts import AlertRule

    telemetry = make_telemetry(enable_prometheus_endpoint=True, enable_hardware_metrics=False)
    telemetry.alerts.add_rule(AlertRule(name="NoPlayers", metric="game.active_player_count", kind="below", threshold=1))
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    view = parse(fetch(telemetry.prometheus_url))
    assert Alert("NoPlayers", "firing", "warning") in view.alerts
    assert "FIRING   NoPlayers" in render(view, color=False)
