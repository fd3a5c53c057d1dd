"""PerformanceMonitor: tick rate, tick and frame durations, phases, deviation and stability."""

from __future__ import annotations

import pytest

from instrumentations.performance import SPEC_PHASES, PerformanceMonitor
from otel_telemetry.accumulators import OVERFLOW_VALUE


class Clocks:
    """One controllable clock serving as both the monotonic and the perf clock."""

    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def _run(monitor: PerformanceMonitor, clocks: Clocks, ticks: int, frame: float, work: float) -> None:
    for _ in range(ticks):
        with monitor.tick():
            with monitor.phase("network"):
                clocks.now += work / 2
            with monitor.phase("entities"):
                clocks.now += work / 2
        clocks.now += frame - work


def test_tick_rate_durations_and_phases_from_a_50_fps_loop() -> None:
    """A loop at 50 FPS doing 8 ms of work: tick rate 50, deviation -10, tick duration 8 ms, frame time 20 ms."""
    clocks = Clocks()
    monitor = PerformanceMonitor(target_tick_rate=60, clock=clocks, perf_clock=clocks, refresh_interval=0.0)
    monitor.refresh()
    _run(monitor, clocks, ticks=100, frame=0.020, work=0.008)
    assert monitor.tick_rate == pytest.approx(50.0)
    tick = monitor.histogram_state("server.tick.duration")
    frame = monitor.histogram_state("server.frame.time")
    cycle = monitor.histogram_state("server.update_cycle.duration")
    network = monitor.histogram_state("server.tick.phase.duration", phase="network")
    assert tick is not None and frame is not None and cycle is not None and network is not None
    assert tick.window.count == 100 and tick.window.mean() == pytest.approx(0.008)
    assert frame.window.count == 99 and frame.window.quantile(0.5) == pytest.approx(0.020, rel=0.01)
    assert cycle.window.mean() == pytest.approx(0.008)
    assert network.window.mean() == pytest.approx(0.004)
    jitter = monitor.tick_interval_jitter()
    assert jitter is not None and jitter == pytest.approx(0.0, abs=0.0002)  # within the sketch's 0.5% of 20 ms


def test_alternating_frames_show_in_jitter_not_in_per_second_rates() -> None:
    """Alternating 10 ms and 30 ms frames: jitter (frame-time standard deviation) 10 ms, while every whole second
    holds 50 ticks, so the per-second tick rates do not vary."""
    clocks = Clocks()
    monitor = PerformanceMonitor(clock=clocks, perf_clock=clocks, refresh_interval=0.0)
    assert monitor.tick_rate_variance() is None and monitor.tick_interval_jitter() is None
    with monitor.tick():
        pass
    assert monitor.tick_rate_variance() == 0.0  # one (partial) second: nothing varies yet
    clocks.now += 0.010
    for i in range(199):
        with monitor.tick():
            clocks.now += 0.002
        clocks.now += (0.010 if i % 2 else 0.030) - 0.002
    clocks.now += 0.005  # past the end of the fourth second
    jitter = monitor.tick_interval_jitter()
    assert jitter is not None and jitter == pytest.approx(0.010, rel=0.02)
    assert monitor.per_second_tick_counts() == [50, 50, 50, 50]
    assert monitor.tick_rate_variance() == 0.0


def test_tick_rate_variance_is_the_variance_of_per_second_rates() -> None:
    """Nine seconds at 60 FPS and one at 30 FPS: per-second rates 60 x 9 and 30, variance 81 FPS²; a stall with
    no tick counts its whole seconds as 0 FPS even before the next tick; the window keeps its last seconds."""
    clocks = Clocks()
    monitor = PerformanceMonitor(clock=clocks, perf_clock=clocks, refresh_interval=0.0, percentile_window=10)
    start = clocks.now
    for second, rate in enumerate([60] * 4 + [30] + [60] * 5):
        for k in range(rate):
            clocks.now = start + second + k / rate
            monitor.record_tick(0.0)
    clocks.now = start + 10.0
    assert monitor.per_second_tick_counts() == [60] * 4 + [30] + [60] * 5
    assert monitor.tick_rate_variance() == pytest.approx(81.0)
    clocks.now = start + 12.5  # stalled: two whole seconds without a tick
    assert monitor.per_second_tick_counts() == [60] * 2 + [30] + [60] * 5 + [0, 0]


def test_spec_phases_exist_and_user_phases_are_bounded() -> None:
    """The spec's nine phases are always there; extra names are admitted up to max_phases, then overflow."""
    monitor = PerformanceMonitor(max_phases=len(SPEC_PHASES) + 2)
    for name in ("pathfinding", "scripting", "audio", "telemetry"):
        with monitor.phase(name):
            pass
    labels = {dict(state.key.attributes).get("phase") for state in monitor.histograms()}
    assert set(SPEC_PHASES) | {"pathfinding", "scripting", OVERFLOW_VALUE} <= labels
    assert "audio" not in labels and "telemetry" not in labels


def test_explicit_recording_and_bad_durations() -> None:
    """record_tick/record_phase accept seconds; negative or NaN durations are dropped and counted."""
    monitor = PerformanceMonitor(refresh_interval=0.0)
    monitor.record_tick(0.015)
    monitor.record_phase("database", 0.002)
    monitor.record_tick(-1.0)
    monitor.record_phase("database", float("nan"))
    assert monitor.rejected == {"record_tick": 1, "record_phase": 1}
    tick = monitor.histogram_state("server.tick.duration")
    assert tick is not None and tick.cumulative.count == 1


def test_target_must_be_positive() -> None:
    """A zero or negative target tick rate is an error at construction."""
    with pytest.raises(ValueError, match="target_tick_rate"):
        PerformanceMonitor(target_tick_rate=0)


def test_a_refresh_keeps_the_state_of_a_series_that_recorded_nothing_until_its_window_moves() -> None:
    """An idle series keeps its state object from refresh to refresh (nothing is copied again), and still forgets
    its window's old values when they expire; its cumulative counts stay."""
    clocks = Clocks()
    monitor = PerformanceMonitor(clock=clocks, perf_clock=clocks, refresh_interval=0.0, percentile_window=10)
    monitor.record_phase("network", 0.004)
    monitor.refresh()
    first = monitor.histogram_state("server.tick.phase.duration", phase="network")
    assert first is not None and first.window.count == 1
    clocks.now += 1.0
    monitor.refresh()
    assert monitor.histogram_state("server.tick.phase.duration", phase="network") is first
    clocks.now += 10.0
    monitor.refresh()
    expired = monitor.histogram_state("server.tick.phase.duration", phase="network")
    assert expired is not None and expired is not first
    assert expired.window.count == 0 and expired.cumulative.count == 1
    monitor.record_phase("network", 0.002)
    clocks.now += 1.0
    monitor.refresh()
    again = monitor.histogram_state("server.tick.phase.duration", phase="network")
    assert again is not None and again.window.count == 1 and again.cumulative.count == 2
    assert again.window.max() == pytest.approx(0.002)
