"""The pacer hands background work the game loop's idle gaps, and never waits longer than its timeout."""

from __future__ import annotations

import threading
import time

from otel_telemetry.pacing import LoopPacer, Phase


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_time_follows_the_ticks() -> None:
    """Inside a tick there is no idle time; after it, the rest of the period minus the margin; no pacing when the
    loop reports no ticks."""
    clock = _Clock()
    pacer = LoopPacer(margin=0.001, clock=clock)
    assert pacer.idle_for() is None  # no ticks yet: not paced
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


def test_work_waits_for_a_gap_but_never_past_its_timeout() -> None:
    """A real 100 Hz loop on a thread: waits are granted in idle gaps; with a gap too short for the need, the
    wait ends at its timeout and is counted as forced."""
    pacer = LoopPacer(margin=0.0005)
    stop = threading.Event()

    def loop() -> None:
        next_at = time.monotonic()
        for _ in range(300):  # bounded: 3 s at most
            if stop.is_set():
                return
            pacer.tick_started()
            busy_until = time.monotonic() + 0.003
            while time.monotonic() < busy_until:
                pass
            pacer.tick_ended()
            next_at += 0.01
            time.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=loop, name="test-loop", daemon=True)
    thread.start()
    try:
        time.sleep(0.1)
        granted_idle = []
        for _ in range(10):
            assert pacer.wait_for_idle(0.002, timeout=1.0)
            granted_idle.append(pacer.idle_for())
        assert all(idle is not None and idle >= 0.0015 for idle in granted_idle), granted_idle
        started = time.monotonic()
        assert not pacer.wait_for_idle(0.5, timeout=0.2)  # never a 500 ms gap in a 10 ms loop
        assert 0.19 <= time.monotonic() - started < 0.5
        assert pacer.forced == 1 and pacer.granted == 10
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_a_phase_learns_how_long_its_work_takes() -> None:
    """The estimate rises at once to a slow run and decays slowly after it."""
    phase = Phase(None, initial=0.001)
    phase.run(lambda: time.sleep(0.02))
    assert phase.estimate >= 0.02
    high = phase.estimate
    phase.run(lambda: None)
    assert 0.0 < phase.estimate < high
    assert phase.estimate > high * 0.8
