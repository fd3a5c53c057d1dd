"""PerformanceMonitor: the tick loop — tick rate, tick and frame durations, update-cycle phases.

Use it around the game loop::

    with telemetry.performance.tick():
        with telemetry.performance.phase("network"):
            ...
        with telemetry.performance.phase("entities"):
            ...

Definitions (all in seconds on export):

* **tick duration**: from entering ``tick()`` to leaving it (the work of one tick);
* **frame time**: from the start of one tick to the start of the next (work plus idle), so the current tick rate
  is ticks per second over the last collection interval and ``1 / frame time`` instant by instant;
* **update cycle**: the total time spent in measured phases during one tick;
* **tick stability**: the spec's "Tick rate stability (variance)" is the variance, in FPS², of the per-second
  tick rates over the percentile window (the ticks started in each whole second since the first tick), so a
  steady loop reads about 0 whatever its catch-up frames; **frame-interval jitter** is the standard deviation of
  the frame time over the same window (seconds on export, milliseconds in ``ServerMetrics``);
* **phase**: one named part of a tick. The spec's phases are ``systems``, ``entities``, ``network``, ``database``,
  ``aoi``, ``ecs``, ``serialization``, ``compression``, ``encryption``; other names are allowed up to
  ``max_phases`` distinct names, each within the handle's series budget (further ones report as ``_overflow``).
  A name is keyed by its label (:func:`~otel_telemetry.series.label_value`): any object is ``str(obj)``.

Thread-safety: every call may come from any thread and every count is exact (ticks, phase and update-cycle
time are kept in per-thread cells, summed when read). ``tick()``/``record_tick()`` are meant for the game-loop
thread, though: frame time is the time between two consecutive tick starts, which only means something for one
loop. The update cycle of a tick sums the phases measured, on any thread, between its start and its end.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from instrumentations._base import Monitor, Points, single
from otel_telemetry.accumulators import HistogramSeries, RateTracker, ThreadShards, sparse_difference
from otel_telemetry.catalog import Section, lookup
from otel_telemetry.pacing import LoopPacer
from otel_telemetry.series import SeriesRegistry, histogram_cost

__all__ = ["SPEC_PHASES", "PerformanceInstrumentor", "PerformanceMonitor"]  # noqa: F822  (the instrumentor: module __getattr__)

#: The phases the spec names (update cycle and performance breakdown).
SPEC_PHASES = (
    "systems",
    "entities",
    "network",
    "database",
    "aoi",
    "ecs",
    "serialization",
    "compression",
    "encryption",
)


class _Cell:
    """One thread's counts: ticks started, and seconds spent in phases (cumulative). Written by its thread only."""

    __slots__ = ("cycle", "ticks")

    def __init__(self) -> None:
        self.ticks = 0
        self.cycle = 0.0


def _merged(a: _Cell, b: _Cell) -> _Cell:
    """A new cell holding both cells' counts (folds the cells of threads that have ended)."""
    cell = _Cell()
    cell.ticks = a.ticks + b.ticks
    cell.cycle = a.cycle + b.cycle
    return cell


def _target_tick_rate(value: object) -> float:
    """``value`` as a target tick rate (ticks per second), or ValueError naming it."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf):
        raise ValueError(f"target_tick_rate must be a positive number, got {value!r}")
    return float(value)


class _Tick:
    """Context manager timing one tick (fresh per tick)."""

    __slots__ = ("_monitor", "_start")

    def __init__(self, monitor: PerformanceMonitor) -> None:
        self._monitor = monitor
        self._start = 0.0

    def __enter__(self) -> _Tick:
        monitor = self._monitor
        if monitor.pacer is not None:
            monitor.pacer.tick_started()
        self._start = monitor._tick_started()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        monitor = self._monitor
        monitor._tick_ended(self._start)
        if monitor.pacer is not None:
            monitor.pacer.tick_ended()  # background work may use the idle time until the next tick


class _Phase:
    """Context manager timing one phase (fresh per use; with no series, a phase whose name was refused, it
    measures nothing)."""

    __slots__ = ("_monitor", "_series", "_start")

    def __init__(self, monitor: PerformanceMonitor, series: HistogramSeries | None) -> None:
        self._monitor = monitor
        self._series = series
        self._start = 0.0

    def __enter__(self) -> _Phase:
        self._start = self._monitor._perf()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        monitor = self._monitor
        elapsed = monitor._perf() - self._start
        if elapsed >= 0 and self._series is not None:
            self._series.record(elapsed)
            monitor._cells.shard().cycle += elapsed


class PerformanceMonitor(Monitor):
    """Tick-loop telemetry: ``tick()``, ``phase(name)``, and explicit ``record_tick``/``record_phase``.

    Args:
        target_tick_rate: the loop's target in ticks per second (spec default 60).
        max_phases: how many distinct phase names are tracked (the spec's nine are always admitted first).
        perf_clock: the clock ticks are timed with (``time.perf_counter``).
        series: the handle's series registry (see :class:`~instrumentations._base.Monitor`); a phase beyond the
            spec's nine costs one histogram (23 series).
    """

    section = Section.PERFORMANCE

    def __init__(
        self,
        *,
        target_tick_rate: float = 60.0,
        max_phases: int = 32,
        percentile_window: float = 60.0,
        refresh_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        perf_clock: Callable[[], float] = time.perf_counter,
        series: SeriesRegistry | None = None,
        pacer: LoopPacer | None = None,
    ) -> None:
        #: Told when each tick starts and ends, so that telemetry's background work runs between ticks.
        self.pacer = pacer
        super().__init__(
            percentile_window=percentile_window, refresh_interval=refresh_interval, clock=clock, series=series
        )
        self.target_tick_rate = _target_tick_rate(target_tick_rate)
        self._perf = perf_clock
        self._cells: ThreadShards[_Cell] = ThreadShards(_Cell, _merged)
        self._last_tick_start: float | None = None
        # Phase seconds summed over every thread's cell when the current tick started.
        self._cycle_base = 0.0
        self._tick_series = self._histogram(lookup("performance.frame_time.distribution"))
        self._frame_series = self._histogram(lookup("performance.frame_time.frame_times"))
        self._cycle_series = self._histogram(lookup("performance.update_cycle.total"))
        self._phase_spec = lookup("performance.update_cycle.systems")
        # The spec's phases are among the catalog's fixed series (reserved already): admitted without a charge.
        self._phase_names = self.series.labels(
            "performance.phase",
            max(max_phases, len(SPEC_PHASES)),
            histogram_cost(len(self._phase_spec.boundaries)),
            preset=SPEC_PHASES,
        )
        # Admitted phase labels (and _overflow) -> series: bounded by max_phases + 1.
        self._phases: dict[str, HistogramSeries] = {}
        self._phase_lock = threading.Lock()
        for name in SPEC_PHASES:
            self._phase_series(name)
        self._rate = RateTracker(clock(), min_interval=0.0)
        self._tick_rate: float | None = None
        self._ticks_total = 0
        # Ticks per whole second since the first tick (perf clock), for the tick-rate variance: the count of the
        # current second, and a ring of the last completed seconds, as many as the percentile window holds. Written
        # by the loop's thread only, O(1) per tick, no allocation.
        self._seconds: list[int] = [0] * max(2, math.ceil(percentile_window))
        self._seconds_done = 0  # completed seconds since the first tick (the ring holds the last len(_seconds))
        self._second_origin: float | None = None
        self._second_index = 0  # whole seconds from the first tick to the current second
        self._second_ticks = 0

    # -- hot path ---------------------------------------------------------------------------------------------------
    def tick(self) -> _Tick:
        """Context manager around one tick of the game loop."""
        return _Tick(self)

    def phase(self, name: object) -> _Phase:
        """Context manager around one phase inside a tick (``"network"``, ``"entities"``, ...)."""
        try:
            series = self._phases.get(name)  # type: ignore[call-overload]
        except Exception:  # unhashable: its label is looked up below
            series = None
        if series is None:
            series = self._phase_series(name)
            if series is None:
                self._reject("phase", name)
        return _Phase(self, series)

    def record_tick(self, duration_s: float) -> None:
        """Record a tick timed by the caller (seconds); counts toward the tick rate like ``tick()``."""
        if not (duration_s.__class__ in (float, int) and 0 <= duration_s <= 1e300):
            return self._reject("record_tick", duration_s)
        start = self._perf() - duration_s
        self._tick_started(start)
        self._tick_series.record(duration_s)
        if self.pacer is not None:  # a tick timed by the caller has ended by now
            self.pacer.tick_started()
            self.pacer.tick_ended()

    def record_phase(self, name: object, duration_s: float) -> None:
        """Record a phase timed by the caller (seconds)."""
        if not (duration_s.__class__ in (float, int) and 0 <= duration_s <= 1e300):
            return self._reject("record_phase", duration_s)
        try:
            series = self._phases.get(name)  # type: ignore[call-overload]
        except Exception:  # unhashable: its label is looked up below
            series = None
        if series is None:
            series = self._phase_series(name)
            if series is None:
                return self._reject("record_phase", name)
        series.record(duration_s)
        self._cells.shard().cycle += duration_s
        return None

    def _phase_series(self, name: object) -> HistogramSeries | None:
        """The series of phase ``name`` (its label's, or ``_overflow``'s); None when it cannot be a label."""
        label = self._phase_names.admit(name)
        if label is None:
            return None
        series = self._phases.get(label)
        if series is None:
            with self._phase_lock:
                series = self._phases.get(label)
                if series is None:
                    series = self._phases[label] = self._histogram(self._phase_spec, phase=label)
        return series

    def _tick_started(self, start: float | None = None) -> float:
        now = self._perf() if start is None else start
        last = self._last_tick_start
        if last is not None and now >= last:
            self._frame_series.record(now - last)
        self._last_tick_start = now
        self._cells.shard().ticks += 1
        self._cycle_base = self._cycle_total()
        origin = self._second_origin
        if origin is None:
            self._second_origin = origin = now
        index = int(now - origin)
        if index > self._second_index:  # the current second has ended (a tick timed in the past counts in it)
            self._close_seconds(index)
        self._second_ticks += 1
        return now

    def _close_seconds(self, index: int) -> None:
        """Store the count of the second that ended, and 0 for every whole second without a tick up to ``index``."""
        ring = self._seconds
        size = len(ring)
        done = self._seconds_done
        ring[done % size] = self._second_ticks
        done += 1
        for _ in range(min(index - self._second_index - 1, size)):
            ring[done % size] = 0
            done += 1
        self._second_ticks = 0
        self._second_index = index
        self._seconds_done = done

    def _tick_ended(self, start: float) -> None:
        elapsed = self._perf() - start
        if elapsed >= 0:
            self._tick_series.record(elapsed)
        cycle = self._cycle_total() - self._cycle_base
        if cycle > 0:
            self._cycle_series.record(cycle)

    def _cycle_total(self) -> float:
        """Seconds spent in phases since creation, over every thread."""
        return sum(cell.cycle for cell in self._cells.all())

    # -- reading ----------------------------------------------------------------------------------------------------
    @property
    def phases_overflowed(self) -> int:
        """Phase names reported under ``_overflow`` because ``max_phases`` was reached."""
        return self._phase_names.overflowed

    @property
    def ticks(self) -> int:
        """Ticks started since creation (exact, over every thread)."""
        return sum(cell.ticks for cell in self._cells.all())

    @property
    def tick_rate(self) -> float | None:
        """Ticks per second over the last collection interval."""
        self.refresh()
        return self._tick_rate

    def _refresh(self, now: float) -> None:
        # Before the first tick there is no tick rate (no data), not a rate of 0 fps that would page someone.
        ticks = self.ticks
        rate = self._rate.observe(now, ticks)
        self._tick_rate = rate if ticks else None
        self._ticks_total = ticks

    def per_second_tick_counts(self) -> list[int]:
        """Ticks started in each whole second since the first tick, oldest first, over the percentile window.

        Seconds are counted from the first tick on the perf clock; a second counts once it has ended, including
        seconds that ended without a tick since the last one (a stalled loop). Empty before two seconds have run.
        """
        origin = self._second_origin
        if origin is None:
            return []
        index, ticks, done = self._second_index, self._second_ticks, self._seconds_done
        ring = list(self._seconds)
        size = len(ring)
        counts = [ring[i % size] for i in range(max(0, done - size), done)]
        ended = int(self._perf() - origin) - index  # seconds ended since the last tick (the loop may be stalled)
        if ended > 0:
            counts.append(ticks)
            counts.extend([0] * min(ended - 1, size))
        return counts[-size:]

    def tick_rate_variance(self) -> float | None:
        """The spec's "Tick rate stability (variance)": the variance (FPS²) of the per-second tick rates over the
        percentile window (:meth:`per_second_tick_counts`); None before the first tick, and 0 until two whole
        seconds have run (one rate does not vary)."""
        if self._second_origin is None:
            return None
        counts = self.per_second_tick_counts()
        if len(counts) < 2:
            return 0.0
        mean = sum(counts) / len(counts)
        return sum((c - mean) ** 2 for c in counts) / len(counts)

    def tick_interval_jitter(self) -> float | None:
        """Frame-interval jitter: the standard deviation of the frame time (tick start to tick start) over the
        percentile window, in seconds; None before two frames. Read from the frame-time sketch about the window's
        exact mean: each frame time counts within 0.5% of its value."""
        state = self.histogram_state(self._frame_series_name)
        if state is None or state.window.count < 2:
            return None
        window = state.window
        mean = window.mean()
        if mean is None:
            return None
        layout = window.layout
        n = 0
        squares = 0.0
        for slot, count in sparse_difference(window, None):
            n += count
            squares += count * (layout.representative(slot) - mean) ** 2
        return math.sqrt(squares / n) if n else None

    _frame_series_name = lookup("performance.frame_time.frame_times").name

    def _window(self, stat: str) -> float | None:
        state = self.histogram_state(self._tick_series_name)
        if state is None or state.window.count == 0:
            return None
        value: float | None = getattr(state.window, stat)()
        return value

    _tick_series_name = lookup("performance.frame_time.distribution").name

    def _observers(self) -> Mapping[str, Callable[[], Points]]:
        def deviation() -> Points:
            rate = self._tick_rate
            return single(None if rate is None else rate - self.target_tick_rate)

        return {
            "server.tick_rate": lambda: single(self._tick_rate),
            "server.tick_rate.target": lambda: single(self.target_tick_rate),
            "server.tick_rate.deviation": deviation,
            "server.tick_rate.variance": lambda: single(self.tick_rate_variance()),
            "server.ticks": lambda: single(self._ticks_total),
            "server.tick.interval.jitter": lambda: single(self.tick_interval_jitter()),
            "server.tick.duration.avg": lambda: single(self._window("mean")),
            "server.tick.duration.min": lambda: single(self._window("min")),
            "server.tick.duration.max": lambda: single(self._window("max")),
        }


def __getattr__(name: str) -> object:
    # The entry-point class loads OpenTelemetry's instrumentation machinery (wrapt, semconv): only when asked for.
    if name == "PerformanceInstrumentor":
        from instrumentations._instrumentors import PerformanceInstrumentor

        return PerformanceInstrumentor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
