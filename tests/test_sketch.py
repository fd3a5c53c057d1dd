"""The full-range distribution sketch: 1% quantiles from 1 ns to 10⁶ s, exact count/sum/min/max and buckets.

Quantiles are compared with numpy's exact nearest-rank quantile (``method="inverted_cdf"``, the definition
``HistogramSnapshot.quantile`` uses) of the very same samples.
"""

from __future__ import annotations

import bisect
import math
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricsData, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from instrumentations.game import GameMonitor
from instrumentations.network import NetworkMonitor
from instrumentations.performance import PerformanceMonitor
from otel_telemetry import Telemetry
from otel_telemetry.accumulators import (
    QUANTILE_RELATIVE_ERROR,
    HistogramLayout,
    HistogramSeries,
    HistogramSnapshot,
    HistogramState,
    SeriesKey,
    SlidingWindow,
    difference,
)
from otel_telemetry.catalog import CELL_BOUNDARIES, LATENCY_BOUNDARIES, TICK_BOUNDARIES, MetricSpec, lookup
from otel_telemetry.producer import HistogramProducer
from otel_telemetry.recording.facade import TIMING_BOUNDARIES, MetricsFacade
from otel_telemetry.snapshot.otlp import encode_otlp_metrics

QUANTILES = (0.5, 0.95, 0.99, 0.999)


def _layouts() -> dict[str, HistogramLayout]:
    """Every layout the SDK records through: each monitor series' (with its recorded unit) and the facade's."""
    found: dict[str, HistogramLayout] = {}
    for monitor in (NetworkMonitor(), PerformanceMonitor(), GameMonitor()):
        for spec, series, _started in monitor._series.values():
            found.setdefault(f"{spec.id}@{series.layout.scale}", series.layout)
    found["facade timing"] = MetricsFacade(None)._layout
    return found


LAYOUTS = _layouts()


def _recorded(series: HistogramSeries, values: np.ndarray[Any, Any]) -> HistogramSnapshot:
    for value in values.tolist():
        series.record(value)
    return series.snapshot()


def _assert_quantiles(snapshot: HistogramSnapshot, values: np.ndarray[Any, Any]) -> None:
    for q in QUANTILES:
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        measured = snapshot.quantile(q)
        assert measured is not None
        assert abs(measured - exact) <= 0.01 * abs(exact), (q, measured, exact)
        assert abs(measured - exact) <= (QUANTILE_RELATIVE_ERROR + 1e-12) * abs(exact), (q, measured, exact)


def _assert_exact(snapshot: HistogramSnapshot, values: np.ndarray[Any, Any]) -> None:
    assert snapshot.count == len(values)
    assert snapshot.min() == float(values.min()) and snapshot.max() == float(values.max())
    assert snapshot.sum == pytest.approx(math.fsum(values.tolist()), rel=1e-12)
    assert snapshot.quantile(0.0) == snapshot.min() and snapshot.quantile(1.0) == snapshot.max()


def _lognormal(centre: float, size: int = 50_000, sigma: float = 0.8, seed: int = 7) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).lognormal(math.log(centre), sigma, size)


# -- quantiles over the whole range ---------------------------------------------------------------------------
CASES: dict[str, tuple[HistogramLayout, Callable[[], np.ndarray[Any, Any]]]] = {
    # name: (layout of the catalog metric, samples in its recorded unit)
    "tick durations around 40 µs (s)": (HistogramLayout(TICK_BOUNDARIES), lambda: _lognormal(40e-6)),
    "tick durations around 16 ms (s)": (HistogramLayout(TICK_BOUNDARIES), lambda: _lognormal(0.016, sigma=0.3)),
    "packet latencies around 300 ms (ms)": (HistogramLayout(LATENCY_BOUNDARIES, 0.001), lambda: _lognormal(300.0)),
    "facade timings around 200 s (s)": (HistogramLayout(TIMING_BOUNDARIES), lambda: _lognormal(200.0)),
    "sizes 1 to 10⁶ (unitless)": (
        HistogramLayout(CELL_BOUNDARIES),
        lambda: np.round(np.exp(np.random.default_rng(3).uniform(0.0, math.log(1e6), 50_000))),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_quantiles_are_within_one_percent_of_numpy_wherever_the_values_lie(name: str) -> None:
    """p50/p95/p99/p99.9 within 1% (0.5% by design) of numpy's exact quantiles; count, sum, min and max exact."""
    layout, draw = CASES[name]
    values = draw()
    snapshot = _recorded(HistogramSeries(layout), values)
    _assert_quantiles(snapshot, values)
    _assert_exact(snapshot, values)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_covers_one_nanosecond_to_a_million_seconds(name: str) -> None:
    """In every monitor's and the facade's layout, values from 1 ns to 10⁶ s (exported unit) keep 1% quantiles
    and exact extremes: nothing clamps at the ends of the explicit buckets."""
    layout = LAYOUTS[name]
    exported = np.exp(np.random.default_rng(11).uniform(math.log(1e-9), math.log(1e6), 20_000))
    values = np.concatenate([exported, [1e-9, 1e6]]) / layout.scale
    snapshot = _recorded(HistogramSeries(layout), values)
    _assert_quantiles(snapshot, values)
    _assert_exact(snapshot, values)
    assert snapshot.min() == 1e-9 / layout.scale and snapshot.max() == 1e6 / layout.scale


def test_one_nanosecond_and_a_million_seconds_through_the_public_calls() -> None:
    """A tick of 1 ns and one of 10⁶ s, the same as a packet latency (ms) and a facade timing: exact extremes."""
    performance = PerformanceMonitor()
    network = NetworkMonitor()
    facade = MetricsFacade(None)
    for seconds in (1e-9, 40e-6, 1e6):
        performance.record_tick(seconds)
        network.packet_latency(seconds * 1000.0)
        facade.timing("stall", seconds)
    tick = performance.histogram_state("server.tick.duration")
    latency = network.histogram_state("server.network.packet_latency")
    assert tick is not None and latency is not None
    assert (tick.window.min(), tick.window.max()) == (1e-9, 1e6)
    assert tick.window.quantile(0.5) == pytest.approx(40e-6, rel=0.005)
    assert latency.window.min() == 1e-9 * 1000.0 and latency.window.max() == 1e6 * 1000.0
    stats = facade.get_timing("stall")
    assert stats is not None and (stats.min, stats.max) == (1e-9, 1e6)
    assert stats.p50 == pytest.approx(40e-6, rel=0.005)


# -- exact statistics, in process and exported ----------------------------------------------------------------
def _point(request: ExportMetricsServiceRequest, name: str) -> Any:
    points = [
        point
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for point in metric.histogram.data_points
    ]
    assert len(points) == 1, name
    return points[0]


def _expected_buckets(layout: HistogramLayout, values: np.ndarray[Any, Any]) -> list[int]:
    expected = [0] * (len(layout.boundaries) + 1)
    for value in values.tolist():
        expected[bisect.bisect_left(layout.recorded, value)] += 1
    return expected


def test_count_sum_min_max_are_exact_in_server_metrics_and_in_decoded_otlp(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    """Pings of 10-250 ms and ticks around 16 ms: ServerMetrics and the OTLP point (decoded with the official
    protobuf class) carry exactly the recorded count, min and max and the sum to float rounding."""
    telemetry = make_telemetry(collection_interval=3600, enable_hardware_metrics=False)
    latencies = np.random.default_rng(5).uniform(10.0, 250.0, 5000)  # ms
    ticks = _lognormal(0.016, size=2000, sigma=0.2)  # s
    for ms in latencies.tolist():
        telemetry.network.packet_latency(ms)
    for seconds in ticks.tolist():
        telemetry.performance.record_tick(seconds)
    telemetry.collect()
    metrics = telemetry.get_current_metrics()
    network, performance = metrics.network, metrics.performance
    # ms fields: the recorded values through the exported unit (s) and back, i.e. exact to one rounding.
    assert network.min_packet_latency_ms == pytest.approx(float(latencies.min()), rel=1e-15)
    assert network.max_packet_latency_ms == pytest.approx(float(latencies.max()), rel=1e-15)
    assert network.avg_packet_latency_ms == pytest.approx(float(latencies.mean()), rel=1e-12)
    assert performance.min_tick_duration_ms == pytest.approx(float(ticks.min()) * 1000.0, rel=1e-15)
    assert performance.max_tick_duration_ms == pytest.approx(float(ticks.max()) * 1000.0, rel=1e-15)
    assert performance.avg_tick_duration_ms == pytest.approx(float(ticks.mean()) * 1000.0, rel=1e-12)

    request = ExportMetricsServiceRequest.FromString(telemetry.current_metrics_otlp())
    latency = _point(request, "server.network.packet_latency")
    assert latency.count == len(latencies)
    assert latency.min == float(latencies.min()) * 0.001 and latency.max == float(latencies.max()) * 0.001
    assert latency.min >= 0.010 and latency.max <= 0.250  # never outside what was recorded
    assert latency.sum == pytest.approx(math.fsum(latencies.tolist()) * 0.001, rel=1e-12)
    assert list(latency.bucket_counts) == _expected_buckets(HistogramLayout(LATENCY_BOUNDARIES, 0.001), latencies)
    tick = _point(request, "server.tick.duration")
    assert (tick.count, tick.min, tick.max) == (len(ticks), float(ticks.min()), float(ticks.max()))
    assert tick.sum == pytest.approx(math.fsum(ticks.tolist()), rel=1e-12)


_SPEC: MetricSpec = lookup("network.latency.distribution")


def _encoded(producer: HistogramProducer, temporality: AggregationTemporality, previous: Any) -> Any:
    metrics = producer.produce(temporality, previous)
    data = MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=Resource.get_empty(),
                scope_metrics=[ScopeMetrics(scope=InstrumentationScope("t"), metrics=metrics, schema_url="")],
                schema_url="",
            )
        ]
    )
    return _point(ExportMetricsServiceRequest.FromString(encode_otlp_metrics(data)), _SPEC.name)


def test_delta_points_carry_the_exact_extremes_of_their_interval() -> None:
    """A delta reader's second point has the min and max of what was recorded since its first, exactly, even
    with several collections in between; cumulative points keep the extremes since start."""
    layout = HistogramLayout(_SPEC.boundaries, 0.001)
    series = HistogramSeries(layout)
    states: list[HistogramState] = []

    def source() -> list[HistogramState]:
        return states

    def refresh() -> None:
        snapshot = series.snapshot()
        states[:] = [HistogramState(_SPEC, SeriesKey(_SPEC.name), snapshot, snapshot, 0.0)]

    producer = HistogramProducer(InstrumentationScope("t"))
    producer.add_source(source)
    previous: dict[SeriesKey, tuple[HistogramSnapshot, int]] = {}
    first = np.random.default_rng(1).uniform(10.0, 250.0, 1000)
    for ms in first.tolist():
        series.record(ms)
    refresh()
    point = _encoded(producer, AggregationTemporality.DELTA, previous)
    assert (point.count, point.min, point.max) == (1000, first.min() * 0.001, first.max() * 0.001)
    second = np.random.default_rng(2).uniform(50.0, 60.0, 300)
    for chunk in np.array_split(second, 5):  # five collections before the reader's next one
        for ms in chunk.tolist():
            series.record(ms)
        refresh()
    point = _encoded(producer, AggregationTemporality.DELTA, previous)
    assert (point.count, point.min, point.max) == (300, second.min() * 0.001, second.max() * 0.001)
    assert point.sum == pytest.approx(math.fsum(second.tolist()) * 0.001, rel=1e-9)
    assert list(point.bucket_counts) == _expected_buckets(layout, second)
    cumulative = _encoded(producer, AggregationTemporality.CUMULATIVE, None)
    assert (cumulative.count, cumulative.min, cumulative.max) == (1300, first.min() * 0.001, first.max() * 0.001)


def test_an_interval_older_than_the_extremes_log_reads_its_extremes_from_the_cells() -> None:
    """Beyond the 256 collections the log holds, an interval's min and max are within 0.5% (never lost)."""
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))
    series.record(5.0)
    older = series.snapshot()
    series.record(40.3)
    series.record(44.7)
    for _ in range(300):
        series.snapshot()
    interval = difference(series.snapshot(), older)
    assert interval.count == 2
    assert interval.min() == pytest.approx(40.3, rel=QUANTILE_RELATIVE_ERROR)
    assert interval.max() == pytest.approx(44.7, rel=QUANTILE_RELATIVE_ERROR)


def test_sliding_window_min_and_max_are_exact_as_intervals_expire() -> None:
    """Window extremes are those of the intervals still in the window, exactly, not cell centres."""
    layout = HistogramLayout(LATENCY_BOUNDARIES, 0.001)
    series = HistogramSeries(layout)
    window = SlidingWindow(layout, window=10.0)
    previous = None
    for second, values in enumerate(([97.31, 3.07], [45.3], [12.34, 61.9])):
        for ms in values:
            series.record(ms)
        current = series.snapshot()
        window.add(second * 6.0, difference(current, previous))
        previous = current
        snapshot = window.snapshot()
        if second == 1:
            assert (snapshot.count, snapshot.min(), snapshot.max()) == (3, 3.07, 97.31)
    assert (snapshot.count, snapshot.min(), snapshot.max()) == (3, 12.34, 61.9)
    assert snapshot.sum == pytest.approx(45.3 + 12.34 + 61.9)


# -- explicit buckets -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_values_exactly_on_a_boundary_land_in_its_bucket(name: str) -> None:
    """A value equal to a boundary (in the recorded unit: 175 ms for 0.175 s) is in that boundary's bucket (le is
    inclusive); the next float above is in the next bucket, the one below in the same, also in the OTLP point."""
    layout = LAYOUTS[name]
    series = HistogramSeries(layout)
    for boundary in layout.recorded:
        for value in (math.nextafter(boundary, -math.inf), boundary, math.nextafter(boundary, math.inf)):
            series.record(value)
    expected = [0] * (len(layout.recorded) + 1)
    for index in range(len(layout.recorded)):
        expected[index] += 2
        expected[index + 1] += 1
    assert series.snapshot().bucket_counts() == expected


def test_recorded_boundaries_are_the_decimal_quotient() -> None:
    """Milliseconds recorded against boundaries in seconds: 0.175 s is 175.0 ms, so a 175 ms ping is le=0.175."""
    layout = HistogramLayout(LATENCY_BOUNDARIES, 0.001)
    assert layout.recorded == tuple(round(b * 1000, 6) for b in LATENCY_BOUNDARIES)
    series = HistogramSeries(layout)
    series.record(175.0)
    assert series.snapshot().bucket_counts()[LATENCY_BOUNDARIES.index(0.175)] == 1


# -- threads, zero, negative ----------------------------------------------------------------------------------
def test_eight_threads_recording_while_collecting_give_exact_totals_and_interval_extremes() -> None:
    """Eight threads record integers while a collector takes snapshots: totals are exact and every interval's
    min and max is a value that was recorded (exact, not a cell centre), together covering every value."""
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))
    per_thread = 20_000
    start = threading.Barrier(9)

    def work(offset: int) -> None:
        start.wait()
        for i in range(per_thread):
            series.record(float((i * 7 + offset) % 997 + 1))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads as often as CPython will: every chance of a torn read is taken
    try:
        start.wait()
        intervals: list[HistogramSnapshot] = []
        previous = None
        while previous is None or any(thread.is_alive() for thread in threads):
            current = series.snapshot()
            intervals.append(difference(current, previous))
            previous = current
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(switch)
    final = series.snapshot()
    intervals.append(difference(final, previous))
    assert final.count == 8 * per_thread == sum(i.count for i in intervals)
    assert sum(final.bucket_counts()) == final.count
    assert (final.min(), final.max()) == (1.0, 997.0)
    expected_sum = sum(float((i * 7 + n) % 997 + 1) for n in range(8) for i in range(per_thread))
    assert final.sum == expected_sum
    occupied = [i for i in intervals if i.count]
    assert len(occupied) > 1
    for interval in occupied:
        low, high = interval.min(), interval.max()
        assert low is not None and high is not None and low <= high
        assert low.is_integer() and high.is_integer()
    assert min(i.min() or math.inf for i in occupied) == 1.0
    assert max(i.max() or 0.0 for i in occupied) == 997.0


def test_zero_and_negative_values_are_counted_everywhere() -> None:
    """Zeros have their own count; negatives a mirrored store: both in count, sum, min, quantiles and the first
    bucket. NaN and infinities are counted as invalid and kept out of everything else."""
    layout = HistogramLayout(CELL_BOUNDARIES)  # (0, 1, 2, 4, ...): le=0 holds zero and below
    series = HistogramSeries(layout)
    for value in (-5.0, -0.5, 0.0, 0.0, 3.0, math.nan, math.inf, -math.inf):
        series.record(value)
    snapshot = series.snapshot()
    assert (snapshot.count, snapshot.sum, snapshot.min(), snapshot.max()) == (5, -2.5, -5.0, 3.0)
    assert (snapshot.zero, snapshot.invalid) == (2, 3)
    assert snapshot.quantile(0.2) == -5.0
    assert snapshot.quantile(0.4) == pytest.approx(-0.5, rel=QUANTILE_RELATIVE_ERROR)
    assert snapshot.quantile(0.6) == snapshot.quantile(0.8) == 0.0
    assert snapshot.quantile(1.0) == 3.0
    buckets = snapshot.bucket_counts()
    assert buckets[0] == 4 and buckets[layout.bucket_of(3.0)] == 1 and sum(buckets) == 5
    window = SlidingWindow(layout, 60.0)
    window.add(0.0, snapshot)
    assert window.snapshot().bucket_counts() == buckets and window.snapshot().min() == -5.0


def test_catalog_monitors_reject_negative_values_before_recording() -> None:
    """No catalog histogram is negative: the monitors and the facade count a negative value as rejected."""
    network, performance, facade = NetworkMonitor(), PerformanceMonitor(), MetricsFacade(None)
    network.packet_latency(-1.0)
    performance.record_tick(-0.001)
    facade.timing("negative", -1.0)
    assert network.rejected == {"packet_latency": 1} and performance.rejected == {"record_tick": 1}
    assert facade.rejected == {"timing": 1}


def test_memory_is_the_occupied_cells_only() -> None:
    """Pings of 5-500 ms occupy about 460 cells, whatever the number of samples."""
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))
    values = np.random.default_rng(4).uniform(5.0, 500.0, 100_000)
    snapshot = _recorded(series, np.concatenate([values, [5.0, 500.0]]))
    assert len(snapshot.counts) == math.ceil(math.log(100.0) / math.log(1.01005)) + 1
