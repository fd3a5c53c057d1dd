"""Timing utilities for code that is not a metric: a stopwatch with laps, a logged timing guard, and durations
as people read them.

* :class:`Stopwatch`: ``start()``, ``lap(name)``, ``stop()``, ``elapsed``, ``laps``; a context manager too.
  ``time.perf_counter_ns`` underneath (the highest-resolution monotonic clock Python has).
* :class:`logged_timing`: ``with logged_timing(log, "loading map %s", name):`` logs ``loading map x took
  12.3 ms`` when the block ends (only above ``threshold`` seconds, when given), whether it raised or not; a
  decorator on sync and async functions too. A timing you want on dashboards belongs in
  ``telemetry.metrics.timer(name)`` instead; this one is for the log.
* :func:`format_duration`: ``0.0000123`` → ``"12.3 µs"``, ``0.5`` → ``"500 ms"``, ``90`` → ``"1 min 30 s"``.

Nothing here is thread-safe by design: a stopwatch belongs to the code that runs it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar, cast

__all__ = ["Lap", "Stopwatch", "format_duration", "logged_timing"]

_F = TypeVar("_F", bound=Callable[..., Any])


def format_duration(seconds: float) -> str:
    """``seconds`` as people read it: ns, µs, ms and s with 3 significant digits; minutes, hours and days as
    ``"1 min 30 s"``, ``"2 h 5 min"``, ``"3 d 4 h"``. Negative values keep their sign; NaN and infinities are
    written as such.

    Raises:
        ValueError: when ``seconds`` is not a number.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"format_duration: seconds must be a number, got {seconds!r}")
    if not math.isfinite(seconds):
        return str(float(seconds))
    if seconds < 0:
        return "-" + format_duration(-seconds)
    for limit, scale, unit in ((1e-6, 1e9, "ns"), (1e-3, 1e6, "µs"), (1.0, 1e3, "ms"), (60.0, 1.0, "s")):
        if seconds < limit:
            text = f"{seconds * scale:.3g}"
            if "e" in text:  # 999.95 ms rounds to "1e+03": say it in the next unit up
                continue
            return f"{text} {unit}"
    whole = round(seconds)
    for size, unit, small, small_unit in ((86_400, "d", 3_600, "h"), (3_600, "h", 60, "min"), (60, "min", 1, "s")):
        if whole >= size:
            rest = (whole % size) // small
            return f"{whole // size} {unit} {rest} {small_unit}" if rest else f"{whole // size} {unit}"
    return f"{seconds:.3g} s"


@dataclass(frozen=True, slots=True)
class Lap:
    """One lap of a :class:`Stopwatch`.

    Attributes:
        name: the lap's name (``"lap 1"``... when none was given).
        seconds: this lap's duration.
        total: the stopwatch's elapsed time at the end of this lap.
    """

    name: str
    seconds: float
    total: float

    def __str__(self) -> str:
        return f"{self.name}: {format_duration(self.seconds)} (total {format_duration(self.total)})"


class Stopwatch:
    """A stopwatch with laps: ``start()``, ``lap()``, ``stop()``, ``reset()``; ``with Stopwatch() as watch:``.

    Args:
        clock: nanoseconds, monotonic (default ``time.perf_counter_ns``).
    """

    __slots__ = ("_accumulated", "_clock", "_lap_start", "_laps", "_started")

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self._clock = clock
        self._started: int | None = None
        self._accumulated = 0
        self._lap_start = 0
        self._laps: list[Lap] = []

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started is not None

    @property
    def elapsed(self) -> float:
        """Seconds measured so far (running time only: a stopped stopwatch does not advance)."""
        return self._elapsed_ns() / 1e9

    @property
    def laps(self) -> tuple[Lap, ...]:
        """The laps so far, in order."""
        return tuple(self._laps)

    def _elapsed_ns(self) -> int:
        started = self._started
        return self._accumulated + (self._clock() - started if started is not None else 0)

    def start(self) -> Self:
        """Start (or resume after :meth:`stop`); starting a running stopwatch does nothing."""
        if self._started is None:
            self._started = self._clock()
        return self

    def stop(self) -> float:
        """Stop and return the elapsed seconds; stopping a stopped stopwatch changes nothing."""
        started = self._started
        if started is not None:
            self._accumulated += self._clock() - started
            self._started = None
        return self._accumulated / 1e9

    def lap(self, name: str | None = None) -> Lap:
        """End the current lap (started at :meth:`start` or at the previous lap) and return it."""
        total = self._elapsed_ns()
        lap = Lap(name or f"lap {len(self._laps) + 1}", (total - self._lap_start) / 1e9, total / 1e9)
        self._lap_start = total
        self._laps.append(lap)
        return lap

    def reset(self) -> None:
        """Back to zero, stopped, without laps."""
        self._started = None
        self._accumulated = 0
        self._lap_start = 0
        self._laps.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Stopwatch {state} {format_duration(self.elapsed)} laps={len(self._laps)}>"


class logged_timing:  # a class used like a function: ``with logged_timing(log, "x"):``
    """Log how long a block or function took: ``"<message> took 12.3 ms"`` at ``level`` on ``logger``.

    Args:
        logger: where to log.
        message: a ``%``-style message; ``args`` fill it, lazily, as ``logging`` does.
        level: the level of the line (default INFO).
        threshold: seconds; shorter blocks are not logged (None: always).

    Logged whether the block raised or not (then ``"... took 12.3 ms (raised ValueError)"``); the exception
    propagates unchanged. A logging failure is ``logging``'s own business (``handleError``): never raised here.
    """

    __slots__ = ("_args", "_level", "_logger", "_message", "_started", "_threshold")

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *args: object,
        level: int = logging.INFO,
        threshold: float | None = None,
    ) -> None:
        if not isinstance(logger, logging.Logger):
            raise ValueError(f"logged_timing: logger must be a logging.Logger, got {logger!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise ValueError(f"logged_timing: threshold must be a number of seconds or None, got {threshold!r}")
        self._logger = logger
        self._message = message
        self._args = args
        self._level = level
        self._threshold = threshold
        self._started = 0

    def __enter__(self) -> Self:
        self._started = time.perf_counter_ns()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        seconds = (time.perf_counter_ns() - self._started) / 1e9
        if self._threshold is not None and seconds < self._threshold:
            return
        if not self._logger.isEnabledFor(self._level):
            return
        suffix = f" (raised {exc_type.__name__})" if exc_type is not None else ""
        self._logger.log(self._level, f"{self._message} took %s{suffix}", *self._args, format_duration(seconds))

    def __call__(self, function: _F) -> _F:
        """Use as a decorator: every call is timed and logged (sync or async)."""
        logger, message, args_, level, threshold = self._logger, self._message, self._args, self._level, self._threshold
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with logged_timing(logger, message, *args_, level=level, threshold=threshold):
                    return await function(*args, **kwargs)

            return cast(_F, async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with logged_timing(logger, message, *args_, level=level, threshold=threshold):
                return function(*args, **kwargs)

        return cast(_F, wrapper)
