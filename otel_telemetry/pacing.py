"""Background work in the game loop's idle time.

Python threads share one GIL: while telemetry's background threads collect, render or encode, the game thread
cannot run, and a tick that is due waits (up to the interpreter's switch interval, 5 ms, per hand-over; several
under load). A :class:`LoopPacer` learns when the loop is busy from the tick calls (``tick_started`` /
``tick_ended``, fed by the performance monitor) and lets background work start only in an idle gap long enough
for it, right after a tick ends. A loop that does not report ticks (no tick for ``quiet_after`` seconds) is not
paced: work runs at once, as it would without a pacer.

Every wait is bounded: work that found no gap within its timeout runs anyway (telemetry late is better than
telemetry lost), and that is counted in :attr:`LoopPacer.forced`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class LoopPacer:
    """Tracks the loop's ticks and hands out idle gaps. Thread-safe; the tick calls take no lock.

    Args:
        margin: seconds kept free before the next tick is due.
        quiet_after: seconds without a tick after which the loop counts as not reporting ticks (no pacing).
    """

    def __init__(self, *, margin: float = 0.001, quiet_after: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._margin = margin
        self._quiet_after = quiet_after
        self._started: float | None = None
        self._ended: float | None = None
        self._period: float | None = None
        self._idle = threading.Condition()
        self.granted = 0
        self.forced = 0

    # -- the game thread --------------------------------------------------------------------------------------------
    def tick_started(self) -> None:
        """A tick begins (called by the performance monitor on the game thread)."""
        now = self._clock()
        previous = self._started
        if previous is not None:
            gap = now - previous
            period = self._period
            # The loop's period, smoothed; a stall (a gap of several periods) does not stretch it for long.
            self._period = gap if period is None else period + 0.2 * (min(gap, 4 * period) - period)
        self._started = now

    def tick_ended(self) -> None:
        """A tick's work is done: the loop is idle until the next tick is due."""
        self._ended = self._clock()
        with self._idle:
            self._idle.notify_all()

    # -- background threads -----------------------------------------------------------------------------------------
    def idle_for(self) -> float | None:
        """Seconds the loop is expected to stay idle from now; None when it is not reporting ticks (no limit)."""
        now = self._clock()
        started, ended, period = self._started, self._ended, self._period
        if started is None or period is None or now - started > self._quiet_after:
            return None
        if ended is None or ended < started:
            return 0.0  # inside a tick
        return max(0.0, started + period - self._margin - now)

    def wait_for_idle(self, need: float, timeout: float) -> bool:
        """Block until the loop is idle for at least ``need`` seconds, or ``timeout`` seconds passed.

        Returns True when an idle gap (or an unpaced loop) was found, False when the timeout forced the work.
        """
        deadline = self._clock() + max(0.0, timeout)
        with self._idle:
            while True:
                idle = self.idle_for()
                if idle is None or idle >= need:
                    self.granted += 1
                    return True
                left = deadline - self._clock()
                if left <= 0:
                    self.forced += 1
                    return False
                # Woken by the end of the next tick (or polled, in case the loop stops reporting ticks).
                self._idle.wait(min(left, 0.05))


class Phase:
    """A named piece of background work whose duration is learnt, to ask the pacer for a long enough gap."""

    def __init__(self, pacer: LoopPacer | None, *, initial: float = 0.002, timeout: float = 0.5) -> None:
        self._pacer = pacer
        self.estimate = initial
        self._timeout = timeout

    def run(self, work: Callable[[], object]) -> None:
        """Wait for a gap (bounded), then run ``work`` and learn its duration (a slow moving maximum)."""
        if self._pacer is not None:
            self._pacer.wait_for_idle(self.estimate, self._timeout)
        started = time.perf_counter()
        try:
            work()
        finally:
            took = time.perf_counter() - started
            # Rise at once, decay slowly: a gap is only useful if the work fits in it.
            self.estimate = took if took > self.estimate else self.estimate + 0.1 * (took - self.estimate)
