"""The pacer hands background work the game loop's idle gaps, and never waits longer than its timeout."""

from __future__ import annotations

import threading
import time

from conftest import ManualClock

from otel_telemetry.pacing import LoopPacer, Phase


def test_idle_time_follows_the_ticks() -> None:
    """Until the loop has shown its period, work waits for a second, then is not paced; inside a tick there is no
    idle time; after it, the rest of the period minus the margin; no pacing when the loop stops reporting ticks."""
    clock = ManualClock()
    pacer = LoopPacer(margin=0.001, clock=clock)
    assert pacer.idle_for() == 0.0  # just made: the game loop may be about to start
    clock.now += 1.5
    assert pacer.idle_for() is None  # no tick for 1.5 s: a program without a loop, not paced
    pacer.tick_started()
    assert pacer.idle_for() == 0.0  # one tick: no period known yet
    clock.now += 1 / 60
    for _ in range(3):  # a 60 Hz loop with 4 ms of work
        pacer.tick_started()
        clock.now += 0.004
        pacer.tick_ended()
        clock.now += 1 / 60 - 0.004
    pacer.tick_started()
    assert pacer.idle_for() == 0.0
    clock.now += 0.004
    pacer.tick_ended()
    idle = pacer.idle_for()
    assert idle is not None and abs(idle - (1 / 60 - 0.004 - 0.001)) < 1e-9
    clock.now += 2.0  # the loop stopped ticking
    assert pacer.idle_for() is None


def _run_loop(pacer: LoopPacer, stop: threading.Event, *, busy: float, period: float = 0.01) -> threading.Thread:
    """A real loop on a thread: ``busy`` seconds of work per ``period``, reporting its ticks; 3 s at most."""

    def loop() -> None:
        next_at = time.monotonic()
        for _ in range(int(3 / period)):
            if stop.is_set():
                return
            pacer.tick_started()
            busy_until = time.monotonic() + busy
            while time.monotonic() < busy_until:
                pass
            pacer.tick_ended()
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=loop, name="test-loop", daemon=True)
    thread.start()
    return thread


def test_work_waits_for_a_gap_and_oversized_work_starts_at_the_beginning_of_one() -> None:
    """A real 100 Hz loop with 3 ms of work: waits are granted in idle gaps. Work longer than any gap (500 ms in a
    10 ms loop) does not wait for its timeout: it starts right after a tick ends, with most of a gap ahead."""
    pacer = LoopPacer(margin=0.0005)
    stop = threading.Event()
    thread = _run_loop(pacer, stop, busy=0.003)
    try:
        time.sleep(0.1)
        granted_idle = []
        for _ in range(10):
            assert pacer.wait_for_idle(0.002, timeout=1.0)
            granted_idle.append(pacer.idle_for())
        assert all(idle is not None and idle >= 0.0015 for idle in granted_idle), granted_idle
        started = time.monotonic()
        assert pacer.wait_for_idle(0.5, timeout=0.4)
        idle = pacer.idle_for()
        assert time.monotonic() - started < 0.2
        assert idle is not None and idle >= 0.004, idle  # the gap is ~6.5 ms: most of it is still ahead
        assert pacer.oversized == 1 and pacer.forced == 0 and pacer.granted == 11
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_a_loop_without_idle_time_forces_the_work_at_its_timeout() -> None:
    """A loop whose ticks take their whole period leaves no gap: the wait ends at its timeout, counted."""
    pacer = LoopPacer(margin=0.0005)
    stop = threading.Event()
    thread = _run_loop(pacer, stop, busy=0.012)  # 12 ms of work in a 10 ms period: always late, never idle
    try:
        time.sleep(0.1)
        started = time.monotonic()
        assert not pacer.wait_for_idle(0.002, timeout=0.2)
        assert 0.19 <= time.monotonic() - started < 0.5
        assert pacer.forced == 1 and pacer.granted == 0
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def _spin(seconds: float) -> None:
    """Hold the CPU (and the GIL) for ``seconds`` of this thread's CPU time."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_a_phase_learns_how_long_its_work_holds_the_cpu() -> None:
    """The first run (one-off costs) is not learnt; time blocked is not learnt; the estimate rises at once to a
    slow run and decays slowly after it."""
    phase = Phase(None, initial=0.001)
    phase.run(lambda: _spin(0.05))  # the first run: imports, caches, first series
    assert phase.estimate == 0.001
    phase.run(lambda: time.sleep(0.05))  # blocked on I/O: the game loop runs meanwhile
    assert phase.estimate < 0.001
    phase.run(lambda: _spin(0.02))
    assert phase.estimate >= 0.02
    high = phase.estimate
    phase.run(lambda: None)
    assert 0.0 < phase.estimate < high
    assert phase.estimate > high * 0.8


def test_a_phase_that_waits_for_another_thread_learns_wall_time() -> None:
    """Work done on a helper thread while the phase's own thread waits is learnt with a wall clock."""
    phase = Phase(None, initial=0.001, clock=time.perf_counter)

    def on_a_helper() -> None:
        helper = threading.Thread(target=_spin, args=(0.02,), name="test-helper")
        helper.start()
        helper.join(5)

    phase.run(on_a_helper)  # the first run is not learnt
    phase.run(on_a_helper)
    assert phase.estimate >= 0.02
