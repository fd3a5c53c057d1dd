"""The statsd-style API reference (timings, counters, gauges with tags) works with the return shapes its users read.

The facts checked (which keys each read returns) are in ``tests/data/seed_statsd_api.json``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import DATA, http_get
from prometheus_client.parser import text_string_to_metric_families

from otel_telemetry import Telemetry
from otel_telemetry.recording.exporters import MetricsExporter
from otel_telemetry.recording.facade import CounterValue, GaugeStats, MetricsFacade, TimingStats

FACTS: dict[str, Any] = json.loads((DATA / "seed_statsd_api.json").read_text(encoding="utf-8"))


@pytest.fixture
def facade() -> MetricsFacade:
    """A facade with no meter: the local view only."""
    return MetricsFacade(None)


def test_get_timing_answers_subscripts_and_attributes(facade: MetricsFacade) -> None:
    """get_timing(...) reads as stats['mean'] and stats.mean alike, with every documented key, in seconds."""
    for seconds in (0.010, 0.020, 0.030):
        facade.timing("event.processing", seconds)
    stats = facade.get_timing("event.processing")
    assert isinstance(stats, TimingStats)
    assert list(stats) == FACTS["timing_stats_keys"] and list(stats.keys()) == FACTS["timing_stats_keys"]
    assert stats["mean"] == stats.mean == pytest.approx(0.020)
    assert stats["p95"] == stats.p95 and 0.029 <= stats["p95"] <= 0.0302
    assert stats["count"] == 3 and "p99" in stats and "p42" not in stats
    assert dict(stats) == stats.as_dict()
    with pytest.raises(KeyError):
        stats["median"]
    assert f"{stats['mean']:.3f}s" == "0.020s"


def test_get_timing_of_an_unknown_name_is_falsy(facade: MetricsFacade) -> None:
    """`if stats:` skips a timing that never ran, as statsd-style profiling code does."""
    assert not facade.get_timing("operation.never")


def test_get_counter_is_a_float_that_answers_value(facade: MetricsFacade) -> None:
    """get_counter(...)['value'] works, and so do == 3, arithmetic and formatting on the same object."""
    facade.increment("events.processed")
    facade.increment("events.processed", amount=2)
    facade.increment("events.dropped", amount=5)
    facade.decrement("events.dropped")
    stats = facade.get_counter("events.processed")
    assert isinstance(stats, CounterValue) and isinstance(stats, float)
    assert stats["value"] == 3.0 and stats == 3.0 and stats + 1 == 4.0 and type(stats + 1) is float
    assert list(stats.keys()) == FACTS["counter_keys"] and stats.as_dict() == {"value": 3.0}
    assert facade.get_counter("events.dropped")["value"] == 4.0
    assert facade.get_counter("never.seen")["value"] == 0.0
    with pytest.raises(KeyError):
        stats["total"]


def test_get_gauge_answers_current_min_max_mean(facade: MetricsFacade) -> None:
    """get_gauge(...)['current'], ['max'], ['mean'] and the attributes agree."""
    for value in (3.0, 5.0, 1.0):
        facade.gauge("websocket.clients", value)
    stats = facade.get_gauge("websocket.clients")
    assert isinstance(stats, GaugeStats)
    assert set(FACTS["gauge_stats_keys"]) <= set(stats)
    assert (stats["current"], stats["min"], stats["max"], stats["mean"]) == (1.0, 1.0, 5.0, 3.0)
    assert stats["current"] == stats.current


def test_tags_select_their_own_series(facade: MetricsFacade) -> None:
    """timing/increment with tags= and get_timing with the same tags= read one series."""
    facade.timing("event.processing.duration", 0.004, tags={"event_type": "/live/track/renamed"})
    facade.timing("event.processing.duration", 0.400, tags={"event_type": "/live/scene/added"})
    facade.increment("events.processed", tags={"event_type": "/live/scene/added"})
    renamed = facade.get_timing("event.processing.duration", tags={"event_type": "/live/track/renamed"})
    assert renamed is not None and renamed["count"] == 1 and renamed["max"] < 0.01
    assert facade.get_counter("events.processed", tags={"event_type": "/live/scene/added"})["value"] == 1
    timings = facade.get_all_metrics()["timings"]
    assert "event.processing.duration[event_type=/live/track/renamed]" in timings


def test_timer_is_a_sync_and_async_context_manager_and_a_decorator(facade: MetricsFacade) -> None:
    """`with timer(name)`, `async with timer(name)` and `@timer(name)` each record one timing."""
    with facade.timer("operation.load_project"):
        pass

    async def handler() -> None:
        async with facade.timer("custom.operation", tags={"kind": "async"}):
            await asyncio.sleep(0)

    asyncio.run(handler())

    @facade.timer("operation.find_tracks")
    def find_tracks() -> int:
        return 3

    assert find_tracks() == 3 and find_tracks() == 3
    load = facade.get_timing("operation.load_project")
    custom = facade.get_timing("custom.operation", tags={"kind": "async"})
    find = facade.get_timing("operation.find_tracks")
    assert load is not None and custom is not None and find is not None
    assert (load["count"], custom["count"], find["count"]) == (1, 1, 2)


def test_reset_and_reset_counters_clear_the_local_view(facade: MetricsFacade) -> None:
    """reset_counters() zeroes counters only; reset() clears timings and gauges too."""
    facade.increment("custom.success")
    facade.timing("custom.operation", 0.01)
    facade.gauge("custom.queue_depth", 4.0)
    facade.reset_counters()
    assert facade.get_counter("custom.success")["value"] == 0
    assert facade.get_timing("custom.operation") is not None and facade.get_gauge("custom.queue_depth") is not None
    facade.reset()
    assert facade.get_timing("custom.operation") is None and facade.get_gauge("custom.queue_depth") is None


def test_enabled_false_records_nothing(facade: MetricsFacade) -> None:
    """With enabled False every recording call returns at once."""
    assert facade.enabled
    facade.enabled = False
    facade.increment("custom.metric")
    facade.timing("custom.operation", 0.01)
    assert facade.get_counter("custom.metric")["value"] == 0 and facade.get_timing("custom.operation") is None


def test_message_sizes_read_back_right_as_distributions(facade: MetricsFacade) -> None:
    """A size recorded with distribution(unit='By') reads back as recorded (mean and p95 within 0.5%)."""
    for size in (209, 209, 209):
        facade.distribution("websocket.message.size", size, unit="By")
    stats = facade.get_distribution("websocket.message.size")
    assert stats is not None
    assert stats["mean"] == pytest.approx(209) and stats["p95"] == pytest.approx(209, rel=0.005)


def test_a_size_recorded_as_a_timing_reads_back_as_recorded(facade: MetricsFacade) -> None:
    """timing('websocket.message.size', 209), as statsd-style code writes it, reads back 209 (not clamped)."""
    for size in (209, 150, 400):
        facade.timing("websocket.message.size", size)
    stats = facade.get_timing("websocket.message.size")
    assert stats is not None
    assert stats["mean"] == pytest.approx(253) and (stats["min"], stats["max"]) == (150, 400)
    assert stats["p50"] == pytest.approx(209, rel=0.005) and stats["p95"] == pytest.approx(400, rel=0.005)


def test_sorting_timings_by_p95_works_on_the_returned_dicts(facade: MetricsFacade) -> None:
    """sorted(timings.items(), key=lambda x: x[1]['p95'], reverse=True) orders series by p95."""
    facade.timing("fast", 0.001)
    facade.timing("slow", 0.5)
    timings = facade.get_all_metrics()["timings"]
    ordered = sorted(timings.items(), key=lambda x: x[1]["p95"], reverse=True)
    assert [name for name, _stats in ordered] == ["slow", "fast"]


def test_all_metrics_has_the_documented_sections_of_dicts(facade: MetricsFacade) -> None:
    """get_all_metrics()['counters'|'gauges'|'timings'] map series to the documented dicts, JSON-ready."""
    facade.increment("errors.validation", tags={"error_type": "ValueError"})
    facade.gauge("queue.depth", 2.0)
    facade.timing("operation", 0.002)
    metrics = facade.get_all_metrics()
    assert set(FACTS["all_metrics_sections"]) <= set(metrics)
    assert metrics["counters"]["errors.validation[error_type=ValueError]"] == {"value": 1.0}
    assert metrics["gauges"]["queue.depth"]["current"] == 2.0
    assert set(metrics["timings"]["operation"]) == set(FACTS["timing_stats_keys"])
    json.dumps(metrics)


def test_exporter_to_json_and_to_summary(facade: MetricsFacade) -> None:
    """MetricsExporter.to_json keeps the document as plain JSON; to_summary gives uptime, ms latencies and errors."""
    facade.timing("event.processing", 0.018)
    facade.increment("errors.event_processing", amount=2)
    facade.increment("events.processed", amount=7)
    facade.gauge("cache.hit_rate", 0.87)
    all_metrics = facade.get_all_metrics()
    exported = MetricsExporter.to_json(all_metrics)
    assert json.loads(json.dumps(exported)) == exported
    assert exported["counters"]["events.processed"] == {"value": 7.0}
    summary = MetricsExporter.to_summary(all_metrics)
    assert set(FACTS["summary_keys"]) <= set(summary)
    assert summary["timings"]["event.processing"]["latency_ms"]["p95"] == pytest.approx(18.0, rel=0.01)
    assert summary["errors"] == {"errors.event_processing": 2.0}
    assert summary["counters"]["events.processed"] == 7.0 and summary["gauges"]["cache.hit_rate"] == 0.87
    json.dumps(summary)


# -- through a telemetry handle ----------------------------------------------------------------------------------
def test_handle_get_metrics_and_summary(make_telemetry: Callable[..., Telemetry]) -> None:
    """get_metrics() has timestamp, uptime and the metrics; get_metrics_summary() adds the handlers' requests."""
    telemetry = make_telemetry(enable_hardware_metrics=False)
    telemetry.metrics.increment("events.received", amount=3)
    telemetry.metrics.timing("event.processing.duration", 0.005)

    @telemetry.traced("echo")
    def echo(message: str) -> str:
        return message

    @telemetry.traced("error_test")
    def error_test() -> None:
        raise RuntimeError("always fails")

    for _ in range(4):
        echo("hi")
    with pytest.raises(RuntimeError):
        error_test()
    metrics = telemetry.get_metrics()
    assert set(FACTS["get_metrics_keys"]) <= set(metrics)
    assert metrics["metrics"]["counters"]["events.received"]["value"] == 3
    assert metrics["uptime_seconds"] >= 0 and metrics["process_start_time_seconds"] > 1e9
    json.dumps(metrics)
    summary = telemetry.get_metrics_summary(fresh=True)
    assert summary["handlers"]["echo"]["requests"] == 4 and summary["handlers"]["echo"]["errors"] == 0
    failing = summary["handlers"]["error_test"]
    assert failing["requests"] == 1 and failing["errors"] == 1
    assert set(failing["latency_ms"]) == {"mean", "p50", "p95", "p99"} and failing["latency_sum_ms"] >= 0
    json.dumps(summary)


def test_enable_metrics_false_turns_the_facade_off(make_telemetry: Callable[..., Telemetry]) -> None:
    """TelemetryConfig(enable_metrics=False) gives a handle whose metrics.enabled is False."""
    telemetry = make_telemetry(enable_metrics=False, enable_hardware_metrics=False)
    assert not telemetry.metrics.enabled
    telemetry.metrics.increment("custom.metric")
    assert telemetry.metrics.get_counter("custom.metric")["value"] == 0
    telemetry.metrics.enabled = True
    telemetry.metrics.increment("custom.metric")
    assert telemetry.metrics.get_counter("custom.metric")["value"] == 1


def test_metrics_endpoint_shows_the_statsd_series_with_their_types(make_telemetry: Callable[..., Telemetry]) -> None:
    """After timing/increment/gauge calls, /metrics has a histogram, a counter, a gauge, and the uptime gauges."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, enable_hardware_metrics=False)
    telemetry.metrics.timing("event.processing", 0.012)
    telemetry.metrics.increment("events.processed", amount=2)
    telemetry.metrics.gauge("websocket.clients", 3.0)
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    status, _, body = http_get(telemetry.prometheus_url)
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
    assert families["event_processing_seconds"].type == "histogram"
    assert families["events_processed"].type == "counter"
    assert [s.value for s in families["events_processed"].samples if s.name == "events_processed_total"] == [2.0]
    assert families["websocket_clients"].type == "gauge"
    assert families["websocket_clients"].samples[0].value == 3.0
    start = families["process_start_time_seconds"]
    assert start.type == "gauge" and abs(start.samples[0].value - telemetry.process_start_time) < 1
    uptime = families["process_uptime_seconds"]
    assert uptime.type == "gauge" and uptime.samples[0].value >= 0
    assert telemetry.series.refused_names == 0


def test_a_disabled_handle_still_answers_the_reads(make_telemetry: Callable[..., Telemetry]) -> None:
    """With telemetry disabled, get_metrics() and get_metrics_summary() answer empty documents, never raise."""
    telemetry = make_telemetry(enabled=False)
    telemetry.metrics.increment("events.processed")
    assert telemetry.get_metrics()["metrics"]["counters"] == {}
    summary = telemetry.get_metrics_summary(fresh=True)
    assert summary["handlers"] == {} and summary["counters"] == {} and summary["uptime_seconds"] >= 0
