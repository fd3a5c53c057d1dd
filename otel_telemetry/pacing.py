"""Background work in the game loop's idle time.

Python threads share one GIL: while telemetry's background threads collect, render or encode, the game thread
cannot run, and a tick that is due waits (up to the interpreter's switch interval, 5 ms, per hand-over; several
under load). A :class:`LoopPacer` learns when the loop is busy from the tick calls (``tick_started`` /
``tick_ended``, fed by the performance monitor) and lets background work start only in an idle gap long enough
for it, right after a tick ends. A loop that does not report ticks (no tick for ``quiet_after`` seconds) is not
paced: work runs at once, as it would without a pacer. In the first ``quiet_after`` seconds after the pacer is
made, before the loop has shown its period (two ticks), work waits: a game loop usually starts right after
``setup_telemetry()``, while every background thread does its first work.

Work longer than any gap the loop offers cannot fit in one; waiting for a gap that never comes would only
delay it to its timeout and then start it at any moment, possibly just before a tick is due. Such work starts
at the beginning of a gap instead, right after a tick ends, where it overlaps the next tick the least; it is
counted in :attr:`LoopPacer.oversized`.

Every wait is bounded: work that found no gap within its timeout (a loop with no idle time) runs anyway
(telemetry late is better than telemetry lost), and that is counted in :attr:`LoopPacer.forced`.
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
        self._created = clock()
        self._margin = margin
        self._quiet_after = quiet_after
        self._started: float | None = None
        self._ended: float | None = None
        self._period: float | None = None
        self._gap: float | None = None
        self._idle = threading.Condition()
        self.granted = 0
        self.forced = 0
        self.oversized = 0

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
        now = self._ended = self._clock()
        started, period = self._started, self._period
        if started is not None and period is not None:
            # The gap this tick leaves, smoothed like the period: the longest work that can fit in one.
            gap = max(0.0, started + period - self._margin - now)
            previous = self._gap
            self._gap = gap if previous is None else previous + 0.2 * (gap - previous)
        with self._idle:
            self._idle.notify_all()

    # -- background threads -----------------------------------------------------------------------------------------
    def idle_for(self) -> float | None:
        """Seconds the loop is expected to stay idle from now; None when it is not reporting ticks (no limit)."""
        now = self._clock()
        started, ended, period = self._started, self._ended, self._period
        if started is None or period is None:
            # No period known yet: wait while the loop may still be starting, then stop pacing.
            return 0.0 if now - (self._created if started is None else started) <= self._quiet_after else None
        if now - started > self._quiet_after:
            return None
        if ended is None or ended < started:
            return 0.0  # inside a tick
        return max(0.0, started + period - self._margin - now)

    def wait_for_idle(self, need: float, timeout: float) -> bool:
        """Block until the loop is idle for at least ``need`` seconds, or ``timeout`` seconds passed.

        A ``need`` longer than the gaps the loop leaves is granted at the start of a gap (see the module's text).
        Returns True when an idle gap (or an unpaced loop) was found, False when the timeout forced the work.
        """
        deadline = self._clock() + max(0.0, timeout)
        with self._idle:
            oversized = False
            while True:
                gap = self._gap
                if gap is not None and gap > 0.0 and need > 0.9 * gap:
                    need, oversized = 0.9 * gap, True
                idle = self.idle_for()
                if idle is None or (idle >= need and idle > 0.0):
                    self.granted += 1
                    self.oversized += oversized
                    return True
                left = deadline - self._clock()
                if left <= 0:
                    self.forced += 1
                    return False
                # Woken by the end of the next tick (or polled, in case the loop stops reporting ticks).
                self._idle.wait(min(left, 0.05))


class Phase:
    """A named piece of background work whose duration is learnt, to ask the pacer for a long enough gap.

    What is learnt is by default the work's CPU time on its thread (``time.thread_time``): the time it holds the
    GIL. Time blocked on a socket (an exporter waiting for its Collector) leaves the game loop free and is not
    counted. Work that hands its computing to another thread and waits for it passes ``clock=time.perf_counter``:
    its own thread's CPU time would miss it. The first run is not learnt: it pays one-off costs (imports, caches,
    first series) that later runs do not.
    """

    def __init__(
        self,
        pacer: LoopPacer | None,
        *,
        initial: float = 0.002,
        timeout: float = 0.5,
        clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self._pacer = pacer
        self.estimate = initial
        self._timeout = timeout
        self._clock = clock
        self._runs = 0

    def run(self, work: Callable[[], object]) -> None:
        """Wait for a gap (bounded), then run ``work`` and learn its duration (a slow moving maximum)."""
        if self._pacer is not None:
            self._pacer.wait_for_idle(self.estimate, self._timeout)
        started = self._clock()
        try:
            work()
        finally:
            took = self._clock() - started
            self._runs += 1
            if self._runs > 1:
                # Rise at once, decay slowly: a gap is only useful if the work fits in it.
                self.estimate = took if took > self.estimate else self.estimate + 0.1 * (took - self.estimate)
