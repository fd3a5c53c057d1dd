"""The accumulator layer: exact buckets, quantile accuracy, no lost counts across threads, bounded windows."""

from __future__ import annotations

import bisect
import math
import random
import threading
from collections.abc import Callable

import numpy as np
import pytest

from otel_telemetry.accumulators import (
    GAMMA,
    OVERFLOW_VALUE,
    QUANTILE_RELATIVE_ERROR,
    BoundedKeys,
    HistogramLayout,
    HistogramSeries,
    RateTracker,
    SlidingWindow,
    ThreadShards,
    difference,
    merge,
)
from otel_telemetry.catalog import CATALOG, LATENCY_BOUNDARIES, TICK_BOUNDARIES, Instrument


def _exact_quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


DISTRIBUTIONS = {
    "lognormal ping, median 45 ms": (LATENCY_BOUNDARIES, lambda r: r.lognormvariate(math.log(45.0), 0.6)),
    "tick ~16.7 ms with 40 ms spikes": (
        TICK_BOUNDARIES,
        lambda r: 40.0 + r.random() if r.random() < 0.01 else r.gauss(16.7, 0.3),
    ),
    "uniform 1-100 ms": (LATENCY_BOUNDARIES, lambda r: r.uniform(1.0, 100.0)),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_quantiles_within_one_percent_of_exact(name: str) -> None:
    """p50/p95/p99 are within 1% (by design 0.5%) of the exact values of the same samples; min and max are exact."""
    boundaries, draw = DISTRIBUTIONS[name]
    rng = random.Random(42)
    samples = [draw(rng) for _ in range(50_000)]
    series = HistogramSeries(HistogramLayout(boundaries, scale=0.001))
    for value in samples:
        series.record(value)
    snapshot = series.snapshot()
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(samples, q, method="inverted_cdf"))
        assert exact == _exact_quantile(samples, q)
        assert snapshot.quantile(q) == pytest.approx(exact, rel=0.01)
        assert abs(snapshot.quantile(q) - exact) / exact <= QUANTILE_RELATIVE_ERROR + 1e-12  # type: ignore[operator]
    assert snapshot.min() == min(samples) and snapshot.max() == max(samples)
    assert snapshot.mean() == pytest.approx(float(np.mean(samples)), rel=1e-9)


@pytest.mark.parametrize("spec", [s for s in CATALOG if s.instrument is Instrument.HISTOGRAM], ids=lambda s: s.id)
def test_explicit_bucket_counts_are_exact_for_every_catalog_histogram(spec: object) -> None:
    """Bucket counts derived from the fine slots equal a direct bisect of the samples, boundaries included."""
    boundaries = spec.boundaries  # type: ignore[attr-defined]
    series = HistogramSeries(HistogramLayout(boundaries))
    rng = random.Random(1)
    samples = [b for b in boundaries] + [b * (1 + 1e-9) for b in boundaries]
    samples += [rng.uniform(0, boundaries[-1] * 1.5) for _ in range(5000)] + [0.0, boundaries[-1] * 10]
    for value in samples:
        series.record(value)
    expected = [0] * (len(boundaries) + 1)
    for value in samples:
        expected[bisect.bisect_left(boundaries, value)] += 1
    assert series.snapshot().bucket_counts() == expected


def test_memory_is_fixed_by_the_occupied_range_not_the_sample_count() -> None:
    """A series holds one cell per occupied 1% step: the same after 2 or 100,000 samples over 1-500 ms."""
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))
    series.record(1.0)
    series.record(500.0)
    small = len(series.snapshot().counts)
    for i in range(100_000):
        series.record(float(i % 500 + 1))
    assert len(series.snapshot().counts) == small == math.ceil(math.log(500) / math.log(GAMMA)) + 1


def test_threads_recording_at_once_lose_nothing() -> None:
    """Eight threads recording into one histogram and one shard set: totals are exact."""
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))

    class Shard:
        def __init__(self) -> None:
            self.n = 0

    shards: ThreadShards[Shard] = ThreadShards(Shard)
    per_thread = 20_000
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for i in range(per_thread):
            series.record(float(i % 300 + 1))
            shards.shard().n += 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert series.snapshot().count == 8 * per_thread
    assert sum(s.n for s in shards.all()) == 8 * per_thread


def test_cells_of_finished_threads_are_folded_in_and_kept() -> None:
    """When recording threads end, their counts stay in the totals and their cells are released."""
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))
    for _ in range(3):
        thread = threading.Thread(target=lambda: [series.record(10.0) for _ in range(100)])
        thread.start()
        thread.join(10)
    assert series.snapshot().count == 300
    assert series._shards.held() == 0
    series.record(5.0)
    assert series.snapshot().count == 301


class _Count:
    def __init__(self, n: int = 0) -> None:
        self.n = n


def _merged_counts(a: _Count, b: _Count) -> _Count:
    return _Count(a.n + b.n)


def _run_threads(target: Callable[[], object], count: int) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)


def test_thread_shards_with_merge_fold_ended_threads_into_one_retired_shard() -> None:
    """With merge, the shards of ended threads become one retired shard; totals are unchanged."""
    shards: ThreadShards[_Count] = ThreadShards(_Count, _merged_counts)

    def work() -> None:
        for _ in range(100):
            shards.shard().n += 1

    _run_threads(work, 4)
    shards.shard().n += 1  # this thread stays alive: its shard is kept as is
    assert shards.held() == 5
    folded = shards.all()
    assert sum(s.n for s in folded) == 401
    assert shards.held() == 1 and len(folded) == 2  # the retired shard, then this thread's
    assert folded[1] is shards.shard()
    _run_threads(work, 2)
    assert sum(s.n for s in shards.all()) == 601 and shards.held() == 1


def test_thread_shards_without_merge_keep_every_shard() -> None:
    """Without merge, ended threads' shards are kept (the monitors' behaviour) and still count."""
    shards: ThreadShards[_Count] = ThreadShards(_Count)
    _run_threads(lambda: setattr(shards.shard(), "n", 7), 3)
    assert len(shards.all()) == 3 and shards.held() == 3
    assert sum(s.n for s in shards.all()) == 21


def test_thread_shards_local_is_the_threads_shard_once_made() -> None:
    """local.shard (the hot paths' inline read) is the shard() of this thread, absent before."""
    shards: ThreadShards[_Count] = ThreadShards(_Count)
    with pytest.raises(AttributeError):
        shards.local.shard  # noqa: B018
    made = shards.shard()
    assert shards.local.shard is made


def test_a_reader_of_an_earlier_list_never_counts_a_folded_shard_twice() -> None:
    """The retired shard is replaced, not mutated: a list taken before a fold still sums exactly."""
    shards: ThreadShards[_Count] = ThreadShards(_Count, _merged_counts)
    _run_threads(lambda: setattr(shards.shard(), "n", 5), 2)
    first = shards.all()  # folds both into a retired shard
    _run_threads(lambda: setattr(shards.shard(), "n", 3), 1)
    before = list(first)
    second = shards.all()  # folds the third into a new retired shard
    assert sum(s.n for s in before) == 10
    assert sum(s.n for s in second) == 13


def test_sliding_window_forgets_old_intervals() -> None:
    """Intervals older than the window stop counting; the window's memory is bounded by its intervals."""
    layout = HistogramLayout(LATENCY_BOUNDARIES, 0.001)
    series = HistogramSeries(layout)
    window = SlidingWindow(layout, window=10.0)
    previous = None
    for second in range(30):
        series.record(100.0 if second < 15 else 10.0)
        current = series.snapshot()
        window.add(float(second), difference(current, previous))
        previous = current
    snapshot = window.snapshot()
    assert snapshot.count == 10
    assert snapshot.max() == snapshot.min() == 10.0
    assert len(window._intervals) == 10


def test_rate_tracker_uses_real_elapsed_time_and_survives_resets() -> None:
    """Rates divide by the actual interval; a counter going down yields None, then rates resume."""
    tracker = RateTracker(now=0.0, start=0.0, min_interval=0.0)
    assert tracker.observe(2.0, 100) == 50.0
    assert tracker.observe(2.5, 150) == 100.0
    assert tracker.observe(3.5, 10) is None
    assert tracker.observe(4.5, 30) == 20.0


def test_bounded_keys_cap_and_overflow() -> None:
    """Beyond the limit new keys map to the overflow value and are counted; forgetting frees a slot."""
    keys = BoundedKeys(2)
    assert [keys.admit(k) for k in ("a", "b", "c", "a")] == ["a", "b", OVERFLOW_VALUE, "a"]
    assert keys.overflowed == 1
    keys.forget("a")
    assert keys.admit("c") == "c"


def test_boundaries_inside_one_cell_are_both_exact() -> None:
    """Two boundaries 0.1% apart (inside one cell) still split the values exactly, boundaries included."""
    layout = HistogramLayout((1.004, 1.005))
    assert layout.cell_of(1.004) == layout.cell_of(1.005)
    series = HistogramSeries(layout)
    for value in (1.0035, 1.004, 1.0045, 1.005, 1.0055):
        series.record(value)
    assert series.snapshot().bucket_counts() == [2, 2, 1]


@pytest.mark.parametrize("boundaries", [(), (2.0, 1.0), (1.0, 1.0), (1.0, math.inf), (math.nan,)])
def test_layout_rejects_bad_boundaries(boundaries: tuple[float, ...]) -> None:
    """No boundaries, boundaries out of order or repeated, and non-finite ones are errors at setup."""
    with pytest.raises(ValueError, match="boundar"):
        HistogramLayout(boundaries)


def test_window_snapshots_cover_only_occupied_slots_and_merge_correctly() -> None:
    """A window snapshot keeps just its occupied cell range; merging it with a full snapshot adds cell by cell."""
    layout = HistogramLayout(LATENCY_BOUNDARIES, 0.001)
    series = HistogramSeries(layout)
    window = SlidingWindow(layout, window=60.0)
    for value in (40.0, 45.0, 50.0):
        series.record(value)
    first = series.snapshot()
    window.add(1.0, first)
    snapshot = window.snapshot()
    assert (
        snapshot.offset == layout.cell_of(40.0) and len(snapshot.counts) == layout.cell_of(50.0) - snapshot.offset + 1
    )
    assert snapshot.quantile(0.5) == pytest.approx(45.0, rel=0.01)
    assert snapshot.bucket_counts() == first.bucket_counts()
    series.record(10.0)
    series.record(900.0)
    pending = difference(series.snapshot(), first)
    merged = merge(snapshot, pending)
    assert merged.count == 5
    assert merged.min() == 10.0 and merged.max() == 900.0
    assert merged.quantile(0.5) == pytest.approx(45.0, rel=0.01)
    assert merged.bucket_counts() == series.snapshot().bucket_counts()


def test_unchanged_tells_whether_anything_was_recorded_since_the_last_snapshot() -> None:
    """Every kind of value a series takes in (positive, zero, negative, not a number, from another thread) makes it
    changed until the next snapshot; the snapshot it skips would have equalled the previous one."""
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))
    assert series.unchanged()
    first = series.snapshot()
    for value in (12.5, 0.0, -3.0, math.nan, math.inf):
        series.record(value)
        assert not series.unchanged(), value
        series.snapshot()
        assert series.unchanged(), value
    later = series.snapshot()
    assert (later.count, later.invalid, later.zero) == (first.count + 3, 2, 1)
    thread = threading.Thread(target=series.record, args=(7.0,))
    thread.start()
    thread.join(10)
    assert not series.unchanged()  # the ended thread's cell is folded into the retired one, still marked
    assert series.snapshot().count == later.count + 1
    assert series.unchanged()


def test_a_difference_across_skipped_snapshots_keeps_its_exact_extremes() -> None:
    """A reader that skips the snapshots of idle intervals still gets exact min and max for the next interval:
    the extremes log only takes the snapshots that were taken."""
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))
    series.record(50.0)
    older = series.snapshot()
    for _ in range(300):  # more idle intervals than the extremes log holds, none snapshotted
        assert series.unchanged()
    series.record(20.0)
    series.record(30.0)
    interval = difference(series.snapshot(), older)
    assert (interval.count, interval.min(), interval.max()) == (2, 20.0, 30.0)


def test_window_expire_and_add_say_whether_the_content_changed() -> None:
    layout = HistogramLayout(LATENCY_BOUNDARIES, 0.001)
    series = HistogramSeries(layout)
    window = SlidingWindow(layout, window=10.0)
    empty = series.snapshot()
    assert not window.add(0.0, empty) and not window.expire(5.0)
    series.record(10.0)
    assert window.add(1.0, difference(series.snapshot(), empty))
    assert not window.expire(10.5)  # the interval added at 1.0 is still inside the window
    assert window.snapshot().count == 1
    assert window.expire(11.0)
    assert window.snapshot().count == 0 and not window.expire(12.0)


def test_bucket_counts_are_computed_once_and_handed_out_as_new_lists() -> None:
    series = HistogramSeries(HistogramLayout(LATENCY_BOUNDARIES, 0.001))
    for value in (1.0, 10.0, 100.0):
        series.record(value)
    snapshot = series.snapshot()
    counts = snapshot.bucket_counts()
    expected = list(counts)
    counts[0] += 100  # a caller's list is its own
    assert snapshot.bucket_counts() == expected and sum(expected) == 3
