"""Every counter the monitors and the producer keep is exact when eight real threads write it at once.

Each test starts 8 threads on a barrier. CPython switches threads only at a few kinds of instruction, so a plain
``self.count += 1`` rarely loses an update on 3.11 even when it is not thread-safe (and loses many on other builds,
free-threaded ones above all). To make the tests prove the code rather than the interpreter's habits, the writer
threads run with an opcode tracer on our packages' frames and a switch interval of one microsecond: a switch can
then happen between any two instructions of our code, and a read-modify-write on shared state that is not atomic
loses updates within a few thousand calls (the code before the fix counted 13,994 of 15,990 overflowed players
and 14,999 of 16,000 rejected pings here).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

import instrumentations
import otel_telemetry
from instrumentations.game import GameMonitor
from instrumentations.network import NetworkMonitor
from instrumentations.performance import PerformanceMonitor
from otel_telemetry.accumulators import HistogramState
from otel_telemetry.producer import HistogramProducer

THREADS = 8
CALLS = 2_000
#: Source folders whose frames are traced instruction by instruction.
TRACED = tuple(str(Path(package.__file__).resolve().parent) for package in (instrumentations, otel_telemetry))  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def frequent_switches() -> Iterator[None]:
    """Switch threads every microsecond instead of every 5 ms, so that lost updates show up quickly."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _each_instruction(frame: FrameType, _event: str, _arg: Any) -> Any:
    return _each_instruction


def _interleave(frame: FrameType, _event: str, _arg: Any) -> Any:
    """A global trace function: our packages' frames get a (no-op) call before each of their instructions."""
    if frame.f_code.co_filename.startswith(TRACED):
        frame.f_trace_opcodes = True
        return _each_instruction
    return None


def run_threads(work: Callable[[int], None], threads: int = THREADS) -> None:
    """Run ``work(index)`` on ``threads`` real threads started together, switching between any two instructions
    of our code; fail if a thread does not finish within 60 s."""
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait(10)
            sys.settrace(_interleave)
            try:
                work(index)
            finally:
                sys.settrace(None)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    started = [threading.Thread(target=target, args=(i,), name=f"writer-{i}") for i in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(60)
    assert not [t for t in started if t.is_alive()], "a writer thread did not finish within 60 s"
    assert not errors, errors


def test_rejections_are_counted_exactly_per_call_name(caplog: pytest.LogCaptureFixture) -> None:
    """8 threads × 2,000 of each bad call: every call name counts exactly 16,000, with one warning each."""
    network = NetworkMonitor()
    game = GameMonitor()
    performance = PerformanceMonitor()

    def work(_index: int) -> None:
        for _ in range(CALLS):
            network.packet_received(-1)
            network.packet_latency(float("nan"))
            network.player_ping("p", -1.0)
            game.entity_created(n=-1)
            performance.record_tick(-1.0)

    with caplog.at_level(logging.WARNING, logger="instrumentations"):
        run_threads(work)
    total = THREADS * CALLS
    assert network.rejected == {"packet_received": total, "packet_latency": total, "player_ping": total}
    assert game.rejected == {"entity_created": total}
    assert performance.rejected == {"record_tick": total}
    assert len([r for r in caplog.records if "dropped invalid value" in r.getMessage()]) == 5


def test_overflowed_players_are_counted_exactly_and_the_cap_holds() -> None:
    """8 threads × 2,000 distinct players with a cap of 10: exactly 10 tracked, 15,990 overflowed, all pinged."""
    monitor = NetworkMonitor(max_tracked_players=10)

    def work(index: int) -> None:
        for j in range(CALLS):
            monitor.player_ping(f"t{index}-p{j}", 40.0)

    run_threads(work)
    assert len(monitor.tracked_pings()) == 10
    assert monitor.players_overflowed == THREADS * CALLS - 10
    state = monitor.histogram_state("server.network.player_ping")
    assert state is not None and state.cumulative.count == THREADS * CALLS


def test_update_cycle_sums_every_threads_phases_exactly() -> None:
    """One tick whose phases run on 8 threads (2,000 × 2⁻¹⁰ s each): the update cycle is exactly 15.625 s."""
    clock = [10.0]
    monitor = PerformanceMonitor(perf_clock=lambda: clock[0], refresh_interval=0.0)
    step = 2.0**-10  # exactly representable: float sums of it are exact, so the total can be compared with ==

    def work(_index: int) -> None:
        for _ in range(CALLS):
            monitor.record_phase("entities", step)

    with monitor.tick():
        run_threads(work)
        clock[0] += 1.0
    cycle = monitor.histogram_state("server.update_cycle.duration")
    phase = monitor.histogram_state("server.tick.phase.duration", phase="entities")
    assert cycle is not None and phase is not None
    assert cycle.cumulative.count == 1
    assert cycle.cumulative.sum == THREADS * CALLS * step == 15.625
    assert phase.cumulative.count == THREADS * CALLS


def test_update_cycle_from_phase_context_managers_on_threads() -> None:
    """phase() context managers on 8 threads during one tick add up exactly too (a per-thread clock: 0.5 s each)."""
    local = threading.local()

    def perf() -> float:
        # Each call advances the calling thread's own clock by 0.5 s: every phase lasts exactly 0.5 s.
        local.now = getattr(local, "now", 0.0) + 0.5
        return float(local.now)

    monitor = PerformanceMonitor(perf_clock=perf, refresh_interval=0.0)
    calls = 2_000

    def work(_index: int) -> None:
        for _ in range(calls):
            with monitor.phase("network"):
                pass

    with monitor.tick():
        run_threads(work)
    cycle = monitor.histogram_state("server.update_cycle.duration")
    assert cycle is not None and cycle.cumulative.count == 1
    assert cycle.cumulative.sum == THREADS * calls * 0.5


def test_ticks_recorded_from_threads_are_counted_exactly() -> None:
    """8 threads × 2,000 record_tick calls: ticks is exactly 16,000 and so is the tick-duration count."""
    monitor = PerformanceMonitor(refresh_interval=0.0)

    def work(_index: int) -> None:
        for _ in range(CALLS):
            monitor.record_tick(0.001)

    run_threads(work)
    assert monitor.ticks == THREADS * CALLS
    state = monitor.histogram_state("server.tick.duration")
    assert state is not None and state.cumulative.count == THREADS * CALLS


def test_callback_errors_are_counted_exactly(caplog: pytest.LogCaptureFixture) -> None:
    """An observer that always fails, called 8 × 2,000 times at once: callback_errors is exactly 16,000."""
    monitor = NetworkMonitor(refresh_interval=3600.0)
    monitor.refresh()
    monitor._attached = True

    def broken() -> list[tuple[float, dict[str, str]]]:
        raise RuntimeError("observer broke")

    callback = monitor._callback("server.test.broken", broken)

    def work(_index: int) -> None:
        for _ in range(CALLS):
            assert list(callback(None)) == []  # type: ignore[arg-type]

    with caplog.at_level(logging.ERROR, logger="instrumentations"):
        run_threads(work)
    assert monitor.callback_errors == THREADS * CALLS
    assert len([r for r in caplog.records if "server.test.broken" in r.getMessage()]) == 1


def test_producer_failures_are_counted_exactly() -> None:
    """8 threads × 1,000 productions with one failing histogram and one failing gauge source: 16,000 failures."""
    producer = HistogramProducer(InstrumentationScope("thread-safety-test"))

    def broken_histograms() -> list[HistogramState]:
        raise RuntimeError("histogram source broke")

    def broken_gauges() -> list[tuple[object, list[tuple[float, dict[str, str]]]]]:
        raise RuntimeError("gauge source broke")

    producer.add_source(broken_histograms)
    producer.add_gauge_source(broken_gauges)  # type: ignore[arg-type]
    calls = 1_000
    logger = logging.getLogger("otel_telemetry.producer")
    logger.disabled = True  # one traceback per failure: 16,000 of them would only slow the test down
    try:

        def work(_index: int) -> None:
            for _ in range(calls):
                assert producer.produce(AggregationTemporality.CUMULATIVE) == []

        run_threads(work)
    finally:
        logger.disabled = False
    assert producer.failures == THREADS * calls * 2
