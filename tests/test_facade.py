"""Tests for otel_telemetry.recording.facade: statsd-style statistics against exact values, export, limits, bad input.

The "usage examples" section runs the metrics API examples of the statsd-style guide (the specification's
neighbour seed 001), adapted to this API: ``get_counter`` returns the number itself, ``get_timing`` and
``get_gauge`` return dataclasses (attribute access), and ``get_all_metrics()`` holds ``counters``, ``gauges`` and
``timings`` at its top level.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import threading
import time
import timeit
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_telemetry.recording.facade import OVERFLOW_ATTRIBUTES, TIMING_BOUNDARIES, MetricsFacade, TimingStats

_P95_TOLERANCE = 0.01


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """An in-memory reader on a fresh MeterProvider, shut down afterwards."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    reader.provider = provider  # type: ignore[attr-defined]
    yield reader
    provider.shutdown()


@pytest.fixture
def facade(reader: InMemoryMetricReader) -> MetricsFacade:
    """A facade exporting through the fresh provider."""
    provider: MeterProvider = reader.provider  # type: ignore[attr-defined]
    return MetricsFacade(provider.get_meter("facade-test"))


def exported(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Metric name -> data points of one collection."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return found
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def nearest_rank(values: np.ndarray[Any, Any], q: float) -> float:
    """The exact nearest-rank quantile (what HistogramSnapshot.quantile approximates)."""
    return float(np.percentile(values, q * 100, method="inverted_cdf"))


def assert_close(measured: float, exact: float, tolerance: float = _P95_TOLERANCE) -> None:
    assert measured == pytest.approx(exact, rel=tolerance), (measured, exact)


# -- statistics against exact values ----------------------------------------------------------------------------
def test_timing_statistics_match_numpy(facade: MetricsFacade) -> None:
    """count and mean are exact; min, max, p50, p95, p99 are within 1% of numpy's nearest-rank values."""
    values = np.random.default_rng(42).lognormal(mean=math.log(0.008), sigma=0.6, size=20_000)
    for value in values:
        facade.timing("tick", float(value))
    stats = facade.get_timing("tick")
    assert stats is not None
    assert stats.count == len(values)
    assert stats.mean == pytest.approx(float(values.mean()), rel=1e-9)
    assert_close(stats.min, float(values.min()))
    assert_close(stats.max, float(values.max()))
    for q, measured in ((0.50, stats.p50), (0.95, stats.p95), (0.99, stats.p99)):
        assert_close(measured, nearest_rank(values, q))


def test_timing_statistics_on_a_sorted_list_of_few_values(facade: MetricsFacade) -> None:
    """With ten known values the quantiles are the nearest-rank picks of the sorted list, within 1%."""
    values = [0.010, 0.002, 0.030, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.001]
    for value in values:
        facade.timing("few", value)
    ordered = sorted(values)
    stats = facade.get_timing("few")
    assert stats is not None and stats.count == 10
    assert_close(stats.p50, ordered[4])  # rank ceil(0.5 * 10) = 5
    assert_close(stats.p95, ordered[9])  # rank ceil(9.5) = 10
    assert_close(stats.min, 0.001)
    assert_close(stats.max, 0.030)
    assert stats.mean == pytest.approx(sum(values) / 10)


def test_counters_sum_increments_and_decrements_exactly(facade: MetricsFacade) -> None:
    """increment/decrement with amounts and tags sum exactly, per tag set; an unknown series reads 0."""
    for _ in range(1000):
        facade.increment("events.processed")
    facade.increment("events.dropped", amount=5)
    facade.increment("events.dropped", amount=2.5)
    facade.decrement("events.dropped")
    facade.increment("events.processed", tags={"event_type": "/live/scene/added"})
    assert facade.get_counter("events.processed") == 1000
    assert facade.get_counter("events.dropped") == 6.5
    assert facade.get_counter("events.processed", tags={"event_type": "/live/scene/added"}) == 1
    assert facade.get_counter("never.seen") == 0.0


def test_gauge_statistics_match_numpy(facade: MetricsFacade) -> None:
    """current, min, max and mean of a gauge equal the exact values of what was set."""
    values = np.random.default_rng(3).normal(50, 20, size=500)
    for value in values:
        facade.gauge("queue.depth", float(value))
    stats = facade.get_gauge("queue.depth")
    assert stats is not None
    assert stats.current == values[-1]
    assert stats.min == values.min() and stats.max == values.max()
    assert stats.mean == pytest.approx(float(values.mean()), rel=1e-12)
    assert stats.count == 500
    assert facade.get_gauge("unknown") is None


def test_tag_order_does_not_matter(facade: MetricsFacade) -> None:
    """Two orderings of the same tags are one series."""
    facade.increment("hits", tags={"a": "1", "b": "2"})
    facade.increment("hits", tags={"b": "2", "a": "1"})
    assert facade.get_counter("hits", tags={"a": "1", "b": "2"}) == 2


# -- window and reset ---------------------------------------------------------------------------------------------
def test_timing_window_forgets_values_older_than_the_window(reader: InMemoryMetricReader) -> None:
    """Values fed more than `window` seconds ago leave get_timing; newer ones stay."""
    clock = ManualClock()
    provider: MeterProvider = reader.provider  # type: ignore[attr-defined]
    facade = MetricsFacade(provider.get_meter("w"), window=60.0, clock=clock)
    for _ in range(100):
        facade.timing("op", 0.100)
    facade.histogram_states()  # a collection feeds the window at t=1000
    clock.now += 30
    for _ in range(50):
        facade.timing("op", 0.010)
    stats = facade.get_timing("op")
    assert stats is not None and stats.count == 150  # unfed values are included at once
    clock.now += 31  # t=1061: the t=1000 interval is now older than 60 s
    stats = facade.get_timing("op")
    assert stats is not None and stats.count == 50
    assert_close(stats.max, 0.010)
    clock.now += 61
    assert facade.get_timing("op") is None


def test_reset_clears_the_local_view_but_not_the_export(facade: MetricsFacade, reader: InMemoryMetricReader) -> None:
    """reset() empties get_* results; the exported cumulative series keep their totals."""
    facade.increment("c", 3)
    facade.gauge("g", 7.0)
    facade.timing("t", 0.5)
    facade.reset()
    assert facade.get_counter("c") == 0
    assert facade.get_gauge("g") is None
    assert facade.get_timing("t") is None
    facade.increment("c")
    facade.timing("t", 0.25)
    assert facade.get_counter("c") == 1
    stats = facade.get_timing("t")
    assert stats is not None and stats.count == 1
    points = exported(reader)
    assert points["c"][0].value == 4
    assert points["g"][0].value == 7.0
    (state,) = facade.histogram_states()
    assert state.cumulative.count == 2


def test_reset_counters_keeps_timings_and_gauges(facade: MetricsFacade) -> None:
    """reset_counters() zeroes counters only."""
    facade.increment("c", 3)
    facade.gauge("g", 1.0)
    facade.timing("t", 0.1)
    facade.reset_counters()
    assert facade.get_counter("c") == 0
    assert facade.get_gauge("g") is not None
    assert facade.get_timing("t") is not None


# -- export ---------------------------------------------------------------------------------------------------------
def test_counters_and_gauges_are_exported_as_observable_instruments(
    facade: MetricsFacade, reader: InMemoryMetricReader
) -> None:
    """Counters export their totals per tag set as monotonic sums and gauges their last value."""
    facade.increment("events.processed", 3, tags={"event_type": "a"})
    facade.increment("events.processed", 2, tags={"event_type": "b"})
    facade.increment("websocket.clients", 2)
    facade.decrement("websocket.clients")
    facade.gauge("cache.hit_rate", 0.5)
    facade.gauge("cache.hit_rate", 0.87)
    data = reader.get_metrics_data()
    assert data is not None
    sums = {
        m.name: m.data
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name in ("events.processed", "websocket.clients")
    }
    assert all(d.is_monotonic for d in sums.values()), "facade counters are monotonic counters"
    points = exported(reader)
    by_type = {p.attributes["event_type"]: p.value for p in points["events.processed"]}
    assert by_type == {"a": 3, "b": 2}
    assert all(isinstance(p, NumberDataPoint) for p in points["events.processed"])
    assert points["websocket.clients"][0].value == 2  # the export counts increments; the decrement stays local
    assert facade.get_counter("websocket.clients") == 1
    assert facade.unexported_decrements == 1
    assert points["cache.hit_rate"][0].value == 0.87


def test_decrements_change_the_local_view_only_counted_and_logged_once(
    facade: MetricsFacade, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    """A monotonic counter never goes down on export: 10 decrements and 3 negative increments are counted,
    get_counter() applies them, and one warning names the counter."""
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.recording.facade"):
        facade.increment("players.online", 20)
        for _ in range(10):
            facade.decrement("players.online")
        for _ in range(3):
            facade.increment("players.online", -1)
        facade.decrement("players.online", -4)  # a negative decrement is an increment
    assert facade.get_counter("players.online") == 20 - 10 - 3 + 4
    assert exported(reader)["players.online"][0].value == 24
    assert facade.unexported_decrements == 13
    assert facade.rejected == {}
    assert sum("monotonic counter" in r.getMessage() for r in caplog.records) == 1


def test_distribution_is_exported_in_its_own_unit_with_its_own_buckets(facade: MetricsFacade) -> None:
    """A size is a distribution in bytes, not a timing: its spec carries unit By and no seconds anywhere."""
    from otel_telemetry.recording.facade import DISTRIBUTION_BOUNDARIES

    for size in (209, 512, 80_000):
        facade.distribution("websocket.message.size", size, unit="By")
    facade.distribution("websocket.message.size", 1, unit="1")  # another unit for the same name: refused
    (state,) = facade.histograms()
    assert state.spec.unit == "By"
    assert state.spec.prometheus_name == "websocket_message_size_bytes"
    assert state.cumulative.count == 3 and state.cumulative.sum == 209 + 512 + 80_000
    assert list(state.spec.boundaries) == list(DISTRIBUTION_BOUNDARIES)
    stats = facade.get_distribution("websocket.message.size")
    assert stats is not None and stats.count == 3 and stats.mean == pytest.approx((209 + 512 + 80_000) / 3)
    assert "websocket.message.size" in facade.get_all_metrics()["distributions"]
    assert facade.histogram_states() == []  # timings only
    assert facade.rejected == {"distribution": 1}


def test_one_name_used_as_two_kinds_is_exported_twice_without_clash(
    facade: MetricsFacade, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    """A counter and a gauge named alike (as in the guide) export as `name` and `name.value`, logged once."""
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.recording.facade"):
        facade.increment("websocket.clients")
        facade.gauge("websocket.clients", 3.0)
        facade.gauge("websocket.clients", 4.0)
    points = exported(reader)
    assert points["websocket.clients"][0].value == 1
    assert points["websocket.clients.value"][0].value == 4.0
    assert facade.get_counter("websocket.clients") == 1
    stats = facade.get_gauge("websocket.clients")
    assert stats is not None and stats.current == 4.0
    assert sum("already exported" in r.getMessage() for r in caplog.records) == 1


def test_histogram_states_bucket_counts_equal_numpy(facade: MetricsFacade) -> None:
    """histogram_states() exposes cumulative per-bucket counts equal to numpy's, with the exact sum."""
    values = np.random.default_rng(9).lognormal(math.log(0.02), 1.0, size=5000)
    for value in values:
        facade.timing("work", float(value), tags={"zone": "north"})
    (state,) = facade.histogram_states()
    name, attributes, cumulative = state
    assert name == "work" and attributes == {"zone": "north"}
    assert cumulative.layout.boundaries == TIMING_BOUNDARIES
    edges = [-math.inf, *TIMING_BOUNDARIES, math.inf]
    # Explicit buckets are (previous, boundary]: count values <= each boundary and difference them.
    at_or_below = [int((values <= edge).sum()) for edge in edges[1:]]
    expected = [at_or_below[0]] + [b - a for a, b in itertools.pairwise(at_or_below)]
    assert cumulative.bucket_counts() == expected
    assert cumulative.count == 5000
    assert cumulative.sum == pytest.approx(float(values.sum()), rel=1e-9)


def test_histograms_feed_the_sdk_histogram_producer(facade: MetricsFacade) -> None:
    """facade.histograms is a HistogramProducer source: timings come out as OpenTelemetry histograms."""
    from otel_telemetry.producer import HistogramProducer

    for value in (0.001, 0.002, 0.003, 0.2):
        facade.timing("db.query", value, tags={"table": "players"})
    producer = HistogramProducer(InstrumentationScope("facade-test"))
    producer.add_source(facade.histograms)
    (metric,) = producer.produce(AggregationTemporality.CUMULATIVE)
    assert metric.name == "db.query" and metric.unit == "s"
    (point,) = metric.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert dict(point.attributes or {}) == {"table": "players"}
    assert point.count == 4 and point.sum == pytest.approx(0.206)
    assert list(point.explicit_bounds) == list(TIMING_BOUNDARIES)
    assert point.start_time_unix_nano <= point.time_unix_nano


# -- limits and bad input -------------------------------------------------------------------------------------------
def test_tag_sets_beyond_the_limit_go_to_the_overflow_series(reader: InMemoryMetricReader) -> None:
    """With tag_limit=3, the 4th and 5th tag sets land in the overflow series and are counted."""
    provider: MeterProvider = reader.provider  # type: ignore[attr-defined]
    facade = MetricsFacade(provider.get_meter("o"), tag_limit=3)
    for player in range(5):
        facade.increment("kills", tags={"player": str(player)})
        facade.timing("ping", 0.01 * (player + 1), tags={"player": str(player)})
    facade.increment("kills", tags={"player": "0"})  # an admitted set stays admitted
    assert facade.overflowed == 4  # two counter values and two timings
    assert facade.get_counter("kills", tags={"player": "0"}) == 2
    assert facade.get_counter("kills", tags={"player": "4"}) == 0
    assert facade.get_counter("kills", tags=dict(OVERFLOW_ATTRIBUTES)) == 2
    overflow_timing = facade.get_timing("ping", tags=dict(OVERFLOW_ATTRIBUTES))
    assert overflow_timing is not None and overflow_timing.count == 2
    points = exported(reader)
    assert len(points["kills"]) == 4
    assert {dict(p.attributes).get("otel.metric.overflow") for p in points["kills"]} == {None, "true"}
    assert "kills[otel.metric.overflow=true]" in facade.get_all_metrics()["counters"]


def test_bad_input_is_dropped_counted_and_logged_once(facade: MetricsFacade, caplog: pytest.LogCaptureFixture) -> None:
    """NaN, inf, negative timings, non-numeric amounts, bad names and tags never raise; each is counted."""
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.recording.facade"):
        facade.timing("t", math.nan)
        facade.timing("t", math.inf)
        facade.timing("t", -0.001)
        facade.timing("t", "fast")  # type: ignore[arg-type]
        facade.increment("c", "one")  # type: ignore[arg-type]
        facade.increment("c", True)
        facade.decrement("c", math.nan)
        facade.gauge("g", None)  # type: ignore[arg-type]
        facade.increment(42)  # type: ignore[arg-type]
        facade.increment("bad name with spaces")
        facade.increment("c", tags={1: "v"})  # type: ignore[dict-item]
        facade.increment("c", tags=["not", "a", "mapping"])  # type: ignore[arg-type]
        facade.gauge("g", 1.0, tags={"k": 10**200})  # type: ignore[dict-item]  # no label of 201 digits
    assert facade.rejected == {"timing": 4, "increment": 6, "decrement": 1, "gauge": 2}
    assert facade.get_timing("t") is None
    assert facade.get_counter("c") == 0
    warnings = [r for r in caplog.records if "dropped invalid input" in r.getMessage()]
    assert len(warnings) == 4  # once per call name


def test_numpy_and_int_values_are_accepted(facade: MetricsFacade) -> None:
    """Real numbers of other types (numpy floats, ints) are recorded like floats."""
    facade.timing("t", np.float64(0.25))
    facade.timing("t", 1)
    facade.increment("c", np.int64(2))  # type: ignore[arg-type]
    stats = facade.get_timing("t")
    assert stats is not None and stats.count == 2
    assert facade.get_counter("c") == 2
    assert facade.rejected == {}


def test_setup_errors_name_the_bad_value() -> None:
    """Bad constructor arguments raise ValueError naming the field and the value."""
    with pytest.raises(ValueError, match=r"tag_limit.*0"):
        MetricsFacade(None, tag_limit=0)
    with pytest.raises(ValueError, match=r"window.*-1"):
        MetricsFacade(None, window=-1)


# -- enabled ----------------------------------------------------------------------------------------------------------
def test_disabled_facade_records_nothing(facade: MetricsFacade, reader: InMemoryMetricReader) -> None:
    """enabled=False drops every recording call, timers included; enabling again records again."""
    facade.enabled = False
    assert not facade.enabled
    facade.timing("t", 0.1)
    facade.increment("c")
    facade.decrement("c")
    facade.gauge("g", 1.0)
    with facade.timer("block") as timed:
        pass
    assert timed.elapsed is None

    @facade.timer("decorated")
    def work() -> int:
        return 1

    assert work() == 1
    assert facade.get_all_metrics()["counters"] == {}
    assert facade.get_all_metrics()["timings"] == {}
    assert exported(reader) == {}
    facade.enabled = True
    assert work() == 1
    assert facade.get_timing("decorated") is not None


def test_disabled_calls_cost_well_under_a_microsecond(facade: MetricsFacade) -> None:
    """Disabled, increment and timing cost less than 1 µs each (best of several runs)."""
    facade.enabled = False
    number = 20_000
    increment = min(timeit.repeat(lambda: facade.increment("c", tags={"a": "b"}), number=number, repeat=5))
    timing = min(timeit.repeat(lambda: facade.timing("t", 0.1), number=number, repeat=5))
    assert increment / number < 1e-6 and timing / number < 1e-6, (increment / number, timing / number)


# -- threads and timers -----------------------------------------------------------------------------------------------
def test_concurrent_recording_loses_nothing(facade: MetricsFacade) -> None:
    """Eight threads × 5000 increments and timings are all counted, while a reader collects concurrently."""
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            facade.get_all_metrics()
            facade.histogram_states()
            time.sleep(0.001)

    def work(index: int) -> None:
        for i in range(5000):
            facade.increment("hits")
            facade.timing("lat", 0.001 * (1 + i % 10), tags={"worker": str(index % 2)})

    collector = threading.Thread(target=collect)
    collector.start()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    stop.set()
    collector.join(timeout=10)
    assert not collector.is_alive() and not any(w.is_alive() for w in workers)
    assert facade.get_counter("hits") == 40_000
    total = sum(s.cumulative.count for s in facade.histogram_states())
    assert total == 40_000


def test_timer_context_manager_and_decorators(facade: MetricsFacade) -> None:
    """timer() times `with`, `async with`, sync and async functions, one timing per block or call."""
    with facade.timer("block", tags={"k": "v"}) as timed:
        time.sleep(0.005)
    assert timed.elapsed is not None and timed.elapsed >= 0.004

    @facade.timer("sync")
    def sync(n: int) -> int:
        return n + 1

    @facade.timer("async")
    async def coroutine(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    async def main() -> None:
        async with facade.timer("async.block"):
            await asyncio.sleep(0.001)
        await asyncio.gather(coroutine(0.01), coroutine(0.0))

    assert sync(1) == 2 and sync(2) == 3
    asyncio.run(main())
    block = facade.get_timing("block", tags={"k": "v"})
    assert block is not None and block.count == 1 and block.mean >= 0.004
    sync_stats, async_stats = facade.get_timing("sync"), facade.get_timing("async")
    assert sync_stats is not None and sync_stats.count == 2
    assert async_stats is not None and async_stats.count == 2
    assert facade.get_timing("async.block") is not None


def test_get_all_metrics_is_json_and_summary_names_every_series(facade: MetricsFacade) -> None:
    """get_all_metrics() is JSON-serialisable with tagged keys; summary() mentions every series."""
    facade.timing("event.processing.duration", 0.005, tags={"event_type": "/live/track/renamed"})
    facade.increment("events.received")
    facade.gauge("websocket.clients", 3.0)
    document = json.loads(json.dumps(facade.get_all_metrics()))
    assert "event.processing.duration[event_type=/live/track/renamed]" in document["timings"]
    assert document["counters"]["events.received"] == {"value": 1.0}
    assert document["gauges"]["websocket.clients"]["current"] == 3.0
    text = facade.summary()
    for key in ("event.processing.duration[event_type=/live/track/renamed]", "events.received", "websocket.clients"):
        assert key in text


def test_facade_without_a_meter_keeps_local_statistics() -> None:
    """meter=None: nothing is exported, but every get_* works."""
    facade = MetricsFacade(None)
    facade.timing("t", 0.1)
    facade.increment("c")
    facade.gauge("g", 2.0)
    assert facade.get_counter("c") == 1
    assert facade.get_timing("t") is not None
    assert facade.get_gauge("g") is not None
    assert [s.name for s in facade.histogram_states()] == ["t"]


# -- usage examples of the statsd-style guide, adapted -------------------------------------------------------------
def test_guide_timings_example(facade: MetricsFacade) -> None:
    """Guide "Timings": manual timing, the timer context manager, and the statistics read back."""

    def process_event() -> None:
        time.sleep(0.002)

    start = time.time()
    process_event()
    duration = time.time() - start
    facade.timing("event.processing", duration)
    with facade.timer("event.processing"):
        process_event()
    stats = facade.get_timing("event.processing")
    assert stats is not None
    lines = [f"Mean: {stats.mean:.3f}s", f"p50: {stats.p50:.3f}s", f"p95: {stats.p95:.3f}s", f"p99: {stats.p99:.3f}s"]
    assert stats.count == 2 and stats.p99 >= 0.0015 and len(lines) == 4


def test_guide_counters_example(facade: MetricsFacade) -> None:
    """Guide "Counters": increment by 1 and by 5, decrement, read the value."""
    facade.increment("events.processed")
    facade.increment("events.dropped", amount=5)
    facade.decrement("websocket.clients")
    total = facade.get_counter("events.processed")
    assert f"Total events: {total}" == "Total events: 1.0"
    assert facade.get_counter("events.dropped") == 5
    assert facade.get_counter("websocket.clients") == -1


def test_guide_gauges_example(facade: MetricsFacade) -> None:
    """Guide "Gauges": set three gauges, read current, peak and average."""
    facade.gauge("websocket.clients", 3.0)
    facade.gauge("cache.hit_rate", 0.87)
    facade.gauge("udp.current_sequence", 12345.0)
    facade.gauge("websocket.clients", 5.0)
    facade.gauge("websocket.clients", 1.0)
    stats = facade.get_gauge("websocket.clients")
    assert stats is not None
    assert (stats.current, stats.max, stats.mean) == (1.0, 5.0, 3.0)


def test_guide_tags_example(facade: MetricsFacade) -> None:
    """Guide "Tags": tagged timings and counters are separate series, read back by tags."""
    duration = 0.004
    facade.timing("event.processing.duration", duration, tags={"event_type": "/live/track/renamed"})
    facade.increment("events.processed", tags={"event_type": "/live/scene/added"})
    facade.timing("handler.duration", duration, tags={"handler": "scene_handler"})
    stats = facade.get_timing("event.processing.duration", tags={"event_type": "/live/track/renamed"})
    assert stats is not None and stats.count == 1
    assert_close(stats.p50, duration)
    assert facade.get_timing("event.processing.duration") is None  # the untagged series is another one
    assert facade.get_counter("events.processed", tags={"event_type": "/live/scene/added"}) == 1


def test_guide_auto_tracked_metrics_example(facade: MetricsFacade) -> None:
    """Guide "Viewing Auto-Tracked Metrics": read counters and timings out of get_all_metrics()."""
    for _ in range(3):
        facade.increment("events.received")
    facade.increment("events.processed", 2)
    facade.timing("event.processing.duration", 0.003, tags={"event_type": "/live/track/renamed"})
    all_metrics = facade.get_all_metrics()
    counters = all_metrics["counters"]
    assert counters["events.received"]["value"] == 3
    assert counters["events.processed"]["value"] == 2
    assert counters.get("errors.event_processing", {}).get("value", 0) == 0
    timings = all_metrics["timings"]
    shown = {
        key: (stats["p50"] * 1000, stats["p95"] * 1000)
        for key, stats in timings.items()
        if "event.processing.duration" in key
    }
    assert list(shown) == ["event.processing.duration[event_type=/live/track/renamed]"]
    for milliseconds in shown["event.processing.duration[event_type=/live/track/renamed]"]:
        assert_close(milliseconds, 3.0)


def test_guide_example_2_custom_handler(facade: MetricsFacade) -> None:
    """Guide example 2: an async handler times its work, counts success/failure, sets a queue-depth gauge."""

    class CustomHandler:
        def __init__(self) -> None:
            self.queue = [1, 2, 3]

        async def _do_work(self, args: list[int]) -> bool:
            await asyncio.sleep(0)
            return bool(args)

        async def handle_custom_event(self, args: list[int], seq_num: int) -> bool:
            with facade.timer("custom.operation"):
                result = await self._do_work(args)
            if result:
                facade.increment("custom.success")
            else:
                facade.increment("custom.failure")
            facade.gauge("custom.queue_depth", len(self.queue))
            return result

    handler = CustomHandler()

    async def run() -> None:
        await handler.handle_custom_event([1], 1)
        await handler.handle_custom_event([], 2)

    asyncio.run(run())
    timing = facade.get_timing("custom.operation")
    assert timing is not None and timing.count == 2
    assert facade.get_counter("custom.success") == 1 and facade.get_counter("custom.failure") == 1
    gauge = facade.get_gauge("custom.queue_depth")
    assert gauge is not None and gauge.current == 3


def test_guide_example_3_profiling(facade: MetricsFacade) -> None:
    """Guide example 3: time three operations and print mean and p95 for each."""
    operations = {"load_project": 0.003, "find_tracks": 0.001, "compute_diff": 0.002}
    for op, seconds in operations.items():
        with facade.timer(f"operation.{op}"):
            time.sleep(seconds)
    printed = []
    for op in operations:
        stats = facade.get_timing(f"operation.{op}")
        if stats:
            printed.append(f"{op}: {stats.mean * 1000:.2f}ms (p95: {stats.p95 * 1000:.2f}ms)")
    assert len(printed) == 3
    load = facade.get_timing("operation.load_project")
    assert load is not None and load.mean >= 0.0025


def test_guide_example_4_monitoring_over_time(reader: InMemoryMetricReader) -> None:
    """Guide example 4: reset, process for a (simulated) minute, check every 10 s, then a final summary."""
    clock = ManualClock()
    provider: MeterProvider = reader.provider  # type: ignore[attr-defined]
    facade = MetricsFacade(provider.get_meter("ex4"), clock=clock)
    facade.increment("events.processed", 99)
    facade.reset()
    start_time = clock()
    reports = []
    while clock() - start_time < 60:
        for _ in range(10):
            facade.increment("events.processed")
            facade.timing("event.processing", 0.005)
        clock.now += 1
        if int(clock() - start_time) % 10 == 0:
            stats = facade.get_timing("event.processing")
            assert stats is not None
            reports.append(f"[{int(clock() - start_time)}s] Processed: {facade.get_counter('events.processed'):.0f}")
    assert reports[-1] == "[60s] Processed: 600"
    assert len(reports) == 6
    final = facade.summary()
    assert "events.processed" in final and "event.processing" in final


def test_guide_example_5_error_tracking(facade: MetricsFacade) -> None:
    """Guide example 5: count errors by type with tags, then list every counter with 'error' in its key."""

    def process_event(kind: str) -> None:
        if kind == "value":
            raise ValueError(kind)
        if kind == "key":
            raise KeyError(kind)

    for kind in ("value", "key", "value", "ok"):
        try:
            process_event(kind)
        except ValueError:
            facade.increment("errors.validation", tags={"error_type": "ValueError"})
        except KeyError:
            facade.increment("errors.missing_key", tags={"error_type": "KeyError"})
    found = {key: stats["value"] for key, stats in facade.get_all_metrics()["counters"].items() if "error" in key}
    assert found == {
        "errors.validation[error_type=ValueError]": 2.0,
        "errors.missing_key[error_type=KeyError]": 1.0,
    }


def test_guide_example_6_udp_packet_loss(facade: MetricsFacade) -> None:
    """Guide example 6: count packets and sequence gaps, track the sequence, compute the loss rate."""
    last_seq_num = 0
    for seq_num in (1, 2, 3, 7, 8, 12):
        facade.increment("udp.packet.received")
        if seq_num != last_seq_num + 1:
            gap_size = seq_num - last_seq_num - 1
            facade.increment("udp.packet.dropped", amount=gap_size)
            facade.increment("udp.sequence.gap")
        facade.gauge("udp.current_sequence", float(seq_num))
        last_seq_num = seq_num
    received = facade.get_counter("udp.packet.received")
    dropped = facade.get_counter("udp.packet.dropped")
    loss_rate = dropped / received if received > 0 else 0
    assert (received, dropped, facade.get_counter("udp.sequence.gap")) == (6.0, 6.0, 2.0)
    assert f"Packet loss rate: {loss_rate:.2%}" == "Packet loss rate: 100.00%"
    sequence = facade.get_gauge("udp.current_sequence")
    assert sequence is not None and sequence.current == 12


def test_guide_example_7_websocket_health(facade: MetricsFacade) -> None:
    """Guide example 7: count broadcast attempts and outcomes, gauge clients and message size."""
    clients = ["a", "b"]

    async def broadcast(message: dict[str, object], fail: bool) -> None:
        facade.increment("websocket.broadcast.attempt")
        facade.gauge("websocket.clients", len(clients))
        # The guide records the message size through timing(); sizes are bytes, not seconds, so a gauge here.
        facade.gauge("websocket.message.size", len(json.dumps(message)))
        try:
            if fail:
                raise ConnectionError("client gone")
            facade.increment("websocket.broadcast.success")
        except Exception:
            facade.increment("websocket.broadcast.failure")

    async def run() -> None:
        await broadcast({"type": "update"}, fail=False)
        await broadcast({"type": "update", "payload": [1, 2, 3]}, fail=True)

    asyncio.run(run())
    assert facade.get_counter("websocket.broadcast.attempt") == 2
    assert facade.get_counter("websocket.broadcast.success") == 1
    assert facade.get_counter("websocket.broadcast.failure") == 1
    size = facade.get_gauge("websocket.message.size")
    assert size is not None and size.max == len(json.dumps({"type": "update", "payload": [1, 2, 3]}))


def test_guide_configuration_examples(facade: MetricsFacade) -> None:
    """Guide "Configuration": check enabled before optional work; reset all or counters only."""
    if facade.enabled:
        facade.increment("custom.metric")
    facade.timing("kept", 0.1)
    facade.reset_counters()
    assert facade.get_counter("custom.metric") == 0 and facade.get_timing("kept") is not None
    facade.reset()
    assert facade.get_timing("kept") is None


def test_guide_custom_export_format(facade: MetricsFacade) -> None:
    """Guide "Custom Export Format": a hand-written text export over get_all_metrics() works unchanged."""
    facade.increment("events.processed", 3)
    facade.gauge("websocket.clients", 2.0)
    facade.timing("event.processing", 0.010)

    def export_to_prometheus(metrics: dict[str, Any]) -> str:
        lines = []
        for name, stats in metrics["counters"].items():
            lines.append(f"{name} {stats['value']}")
        for name, stats in metrics["gauges"].items():
            lines.append(f"{name} {stats['current']}")
        for name, stats in metrics["timings"].items():
            lines.append(f"{name}_p95 {stats['p95']}")
        return "\n".join(lines)

    text = export_to_prometheus(facade.get_all_metrics())
    assert "events.processed 3.0" in text and "websocket.clients 2.0" in text
    p95 = float(text.split("event.processing_p95 ")[1])
    assert_close(p95, 0.010)


def test_guide_troubleshooting_examples(facade: MetricsFacade) -> None:
    """Guide "Troubleshooting": rank timings by p95, count series, and verify recording works."""
    facade.timing("fast", 0.001)
    facade.timing("slow", 0.2)
    timings = facade.get_all_metrics()["timings"]
    ranked = [name for name, _ in sorted(timings.items(), key=lambda x: x[1]["p95"], reverse=True)]
    assert ranked == ["slow", "fast"]
    assert len(facade.get_all_metrics()["timings"]) == 2
    assert facade.enabled
    facade.increment("test.counter")
    assert facade.get_counter("test.counter") == 1


def test_timing_stats_as_dict_has_the_guide_keys() -> None:
    """TimingStats.as_dict() carries count, mean, min, max, p50, p95, p99."""
    stats = TimingStats(1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
    assert set(stats.as_dict()) == {"count", "mean", "min", "max", "p50", "p95", "p99"}


def test_counts_of_ended_threads_are_kept(facade: MetricsFacade) -> None:
    """Increments made by threads that have ended still count, before and after their cells are folded."""

    def work() -> None:
        for _ in range(1000):
            facade.increment("short.lived")

    for _ in range(3):
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
    assert facade.get_counter("short.lived") == 12_000
    assert facade.get_counter("short.lived") == 12_000  # the first read folded the ended threads' cells
    assert facade._counters["short.lived"][()]._shards.held() == 0  # and released them
