"""The /metrics endpoint, scraped with a real HTTP client and checked with Prometheus' own linter."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ROOT, ManualClock, http_get

from otel_telemetry import Telemetry
from otel_telemetry.catalog import SPEC_FIXED_PROMETHEUS_NAMES, instruments
from otel_telemetry.export.prometheus import PrometheusExposition, ScrapeForecast
from otel_telemetry.export.selftelemetry import SEED_FIXED_PROMETHEUS_NAMES
from otel_telemetry.tools.demo import DemoOptions, GameSimulation

SPEC_EXAMPLE = (
    "server_cpu_usage_percent",
    "server_memory_used_bytes",
    "server_packets_per_sec_incoming",
    "server_tick_rate_fps",
    "server_avg_player_ping_ms",
)


def _promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    assert Path(found).exists(), "promtool is missing: `make test` installs it (scripts/install-promtool.sh)"
    return found


def _scrape(telemetry: Telemetry, headers: dict[str, str] | None = None) -> str:
    assert telemetry.prometheus_url is not None
    status, _, body = http_get(telemetry.prometheus_url, headers)
    assert status == 200
    return body.decode("utf-8")


@pytest.fixture
def busy(make_telemetry: Callable[..., Telemetry]) -> Telemetry:
    """A handle whose monitors have all been driven by a short run of the demo's game simulation."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)
    simulation = GameSimulation(telemetry, DemoOptions(players=40, seed=7))
    for _ in range(90):
        simulation.step()
    for monitor in telemetry.monitors():
        monitor.refresh(force=True)
    return telemetry


def test_spec_example_names_have_help_type_and_a_sample(busy: Telemetry) -> None:
    """The five names of the spec's example appear exactly, as gauges with HELP and TYPE and a value."""
    body = _scrape(busy)
    for name in SPEC_EXAMPLE:
        assert re.search(rf"^# HELP {name} \S.*$", body, re.M), name
        assert re.search(rf"^# TYPE {name} gauge$", body, re.M), name
        assert re.search(rf"^{name} [-+0-9.e]+$", body, re.M), name


def test_every_catalog_metric_is_exposed_under_its_prometheus_name(busy: Telemetry) -> None:
    """After the simulated game ran, every catalog instrument has a family on /metrics, except the per-player
    series, which stay in process by default (a fleet cannot afford one series per player)."""
    body = _scrape(busy)
    missing = [
        spec.prometheus_name
        for spec in instruments()
        if not spec.per_entity
        and not re.search(rf"^# TYPE {spec.prometheus_name} {spec.instrument.prometheus_type}$", body, re.M)
    ]
    assert missing == []
    per_player = [spec.prometheus_name for spec in instruments() if spec.per_entity]
    assert per_player and not any(name in body for name in per_player)
    assert busy.get_current_metrics().network.player_pings_ms, "per-player pings stay in ServerMetrics"


def test_exposition_passes_promtool_except_for_spec_fixed_names(busy: Telemetry) -> None:
    """`promtool check metrics` finds nothing but the abbreviations the spec itself fixes."""
    body = _scrape(busy)
    result = subprocess.run([_promtool(), "check", "metrics"], input=body.encode(), capture_output=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).decode().splitlines() if line.strip()]
    unexpected = [
        line for line in problems if line.split()[0] not in SPEC_FIXED_PROMETHEUS_NAMES | SEED_FIXED_PROMETHEUS_NAMES
    ]
    assert unexpected == [], unexpected
    assert problems, "promtool should at least flag the spec's own abbreviated names (is it really running?)"


def test_no_duplicate_metadata_and_no_scope_labels(busy: Telemetry) -> None:
    """Each family has one HELP and one TYPE line, and samples carry no otel_scope_* labels."""
    body = _scrape(busy)
    metadata = Counter(line.split()[2] + line.split()[1] for line in body.splitlines() if line.startswith("# "))
    assert [key for key, n in metadata.items() if n > 1] == []
    assert "otel_scope_" not in body


def test_histograms_expose_the_catalog_buckets(busy: Telemetry) -> None:
    """Tick durations are exported in seconds with the catalog's buckets, consistent with _count."""
    body = _scrape(busy)
    buckets = re.findall(r'^server_tick_duration_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', body, re.M)
    assert [b for b, _ in buckets][:3] == ["0.0005", "0.001", "0.002"]
    assert buckets[-1][0] == "+Inf"
    count = float(re.search(r"^server_tick_duration_seconds_count ([0-9.e+]+)$", body, re.M).group(1))  # type: ignore[union-attr]
    assert float(buckets[-1][1]) == count == busy.performance.ticks
    values = [float(v) for _, v in buckets]
    assert values == sorted(values)


#: The Accept header of every Prometheus 2.x scrape by default (scrape_protocols unset).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (PROMETHEUS_ACCEPT, False),
        ("", False),
        ("text/plain", False),
        ("application/openmetrics-text; version=1.0.0", True),
        ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75", True),
        ("application/openmetrics-text, text/plain;q=0", True),
        ("application/openmetrics-text, */*;q=0.1", False),
        ("application/openmetrics-text, text/plain;q=oops", True),
    ],
)
def test_openmetrics_only_when_the_text_format_is_not_accepted(accept: str, openmetrics: bool) -> None:
    """The text format (rendered ahead) is answered whenever it is acceptable, as the Go client does by default;
    OpenMetrics only when the client accepts nothing else."""
    assert PrometheusExposition.wants_openmetrics(accept) is openmetrics


def test_a_scrape_with_prometheus_headers_is_served_the_text_rendered_ahead(busy: Telemetry) -> None:
    """A real client sending Prometheus' Accept and gzip headers gets the text format, gzipped, the same bytes as a
    plain scrape."""
    assert busy.prometheus_url is not None
    before = http_get(busy.prometheus_url)[2]
    status, headers, body = http_get(busy.prometheus_url, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    after = http_get(busy.prometheus_url)[2]
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(body) in (before, after)  # the same frame's bytes (a new frame may come in between)


def _prometheus_attempts(telemetry: Telemetry) -> float:
    telemetry.collect()
    frame = telemetry.latest_frame()
    assert frame is not None
    return frame.value("telemetry.exporter.attempts", exporter="prometheus") or 0.0


def test_openmetrics_is_served_when_asked(busy: Telemetry) -> None:
    """prometheus_client's OpenMetrics, for a client that accepts only it; each such scrape counts as an attempt
    of the prometheus exporter, as a text scrape does."""
    assert busy.prometheus_url is not None
    before = _prometheus_attempts(busy)
    status, headers, body = http_get(busy.prometheus_url, {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    assert _prometheus_attempts(busy) == before + 1


def test_a_failing_callback_does_not_fail_the_scrape(make_telemetry: Callable[..., Telemetry]) -> None:
    """A user's observable callback that raises is contained: the scrape is 200 and other metrics are there."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)

    def broken(_options: object) -> list[object]:
        raise RuntimeError("boom")

    telemetry.get_meter("user").create_observable_gauge("user.broken", callbacks=[broken])  # type: ignore[list-item]
    telemetry.network.packet_received(10)
    body = _scrape(telemetry)
    assert "server_network_packets_total" in body
    assert "user_broken" not in body


def test_two_handles_are_independent(make_telemetry: Callable[..., Telemetry]) -> None:
    """Two handles in one process serve their own data on their own ports."""
    first = make_telemetry(enable_prometheus_endpoint=True, server_id="alpha")
    second = make_telemetry(enable_prometheus_endpoint=True, server_id="beta")
    assert first.prometheus_port != second.prometheus_port
    for _ in range(7):
        first.network.packet_received(1)
    body_a, body_b = _scrape(first), _scrape(second)
    assert 'service_instance_id="alpha"' in body_a and 'service_instance_id="beta"' in body_b
    assert re.search(r'^server_network_packets_total\{direction="received"\} 7\.0$', body_a, re.M)
    assert re.search(r'^server_network_packets_total\{direction="received"\} 0\.0$', body_b, re.M)


def test_unknown_paths_are_404_and_root_points_to_metrics(make_telemetry: Callable[..., Telemetry]) -> None:
    """The server answers 404 for unknown paths."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)
    assert telemetry.prometheus_url is not None
    base = telemetry.prometheus_url.removesuffix("/metrics")
    assert http_get(base + "/nope")[0] == 404
    assert http_get(base + "/")[0] == 200


def test_endpoint_is_off_by_default(make_telemetry: Callable[..., Telemetry]) -> None:
    """The spec's default is no endpoint."""
    telemetry = make_telemetry()
    assert telemetry.prometheus_port is None and telemetry.prometheus_url is None


def test_unrepresentable_metrics_are_dropped_and_counted() -> None:
    """An exponential histogram (not expressible in the text format) is dropped and counted; the rest is served."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from prometheus_client import generate_latest

    from otel_telemetry.export.prometheus import PrometheusExposition
    from otel_telemetry.snapshot.frame import Frame
    from otel_telemetry.snapshot.model import ServerMetrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="user.exp", aggregation=ExponentialBucketHistogramAggregation())],
    )
    try:
        meter = provider.get_meter("user")
        meter.create_histogram("user.exp").record(1.5)
        meter.create_counter("user.ok").add(3)
        data = reader.get_metrics_data()
        assert data is not None
        frame = Frame(1, 0, 0.0, data, {}, ServerMetrics(server_id="x", timestamp=datetime.now(UTC)))
        exposition = PrometheusExposition(lambda: frame)
        body = generate_latest(exposition.registry).decode()
        assert "user_ok_total 3.0" in body
        assert "user_exp" not in body
        assert exposition.dropped_points == 1
    finally:
        provider.shutdown()


def test_per_player_series_are_exported_only_when_switched_on(make_telemetry: Callable[..., Telemetry]) -> None:
    """export_player_series=True puts one ping series per player on /metrics (off by default)."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, export_player_series=True)
    for player in ("p1", "p2", "p3"):
        telemetry.network.player_ping(player, 40.0)
    telemetry.collect()
    body = _scrape(telemetry)
    rows = re.findall(r'^server_network_player_ping_last_seconds\{player_id="(p\d)"\} (\S+)$', body, re.M)
    assert sorted(rows) == [("p1", "0.04"), ("p2", "0.04"), ("p3", "0.04")]


# -- rendering ahead only for the frames a scrape will read ----------------------------------------------------------


def test_the_forecast_expects_a_regular_scraper_only_near_its_next_scrape() -> None:
    """A scraper every 15 s: after two scrapes, a frame taken mid-interval will not be read (False) and one taken
    within the horizon of the next scrape will (True), overdue included; a second scraper with an unknown interval,
    an irregular one, or none at all after it was gone for 3 intervals change the answer as documented."""
    clock = ManualClock(1000.0)
    forecast = ScrapeForecast(clock)
    assert not forecast.expected_within(1.2)  # nobody scrapes
    forecast.scraped("10.0.0.1")
    assert forecast.expected_within(1.2)  # one scrape: its interval is not known yet
    clock.now += 15.0
    forecast.scraped("10.0.0.1")
    clock.now += 5.0
    assert not forecast.expected_within(1.2)  # next scrape in 10 s
    clock.now += 9.0
    assert forecast.expected_within(1.2)  # next scrape in 1 s
    clock.now += 3.0
    assert forecast.expected_within(1.2)  # overdue: still expected
    forecast.scraped("10.0.0.2")
    assert forecast.expected_within(1.2)  # a new scraper: interval unknown
    clock.now += 60.0  # both gone for longer than three intervals and _EAGER_FOR
    assert not forecast.expected_within(1.2)
    for gap in (15.0, 15.0, 4.0):  # a third scrape far off its interval: irregular, always expected
        forecast.scraped("10.0.0.3")
        clock.now += gap
    forecast.scraped("10.0.0.3")
    clock.now += 1.0
    assert forecast.expected_within(1.2)


def test_a_regular_scrape_finds_its_frame_rendered_and_the_frames_nobody_reads_are_not(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    """Frames every 0.1 s, a real client scraping every 0.6 s: after the first scrapes have shown the interval,
    each scrape is served bytes rendered ahead (renders_by_scrape stops growing) while most frames, read by
    nobody, are never rendered."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, collection_interval=0.1, enable_hardware_metrics=False)
    exposition = telemetry._prometheus  # type: ignore[attr-defined]  # its render counts
    assert telemetry.prometheus_url is not None
    started = time.monotonic()
    next_at = started
    for scrape in range(9):
        if scrape == 3:
            by_scrape_after_warmup, frames_before = exposition.renders_by_scrape, telemetry._collector.runs  # type: ignore[union-attr]
            renders_before = exposition.renders
        assert http_get(telemetry.prometheus_url)[0] == 200
        next_at += 0.6
        time.sleep(max(0.0, next_at - time.monotonic()))
    frames = telemetry._collector.runs - frames_before  # type: ignore[union-attr]
    renders = exposition.renders - renders_before
    assert frames >= 20, f"only {frames} frames in 3.6 s at 0.1 s"
    assert renders <= 6 * 3, f"{renders} renders for 6 scrapes of {frames} frames"
    assert renders < frames / 2
    assert exposition.renders_by_scrape - by_scrape_after_warmup <= 1  # a scrape that raced its frame, at most
