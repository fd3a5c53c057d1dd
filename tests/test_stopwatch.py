"""The stopwatch, the logged timing guard and human-readable durations."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from otel_telemetry.recording.stopwatch import Stopwatch, format_duration, logged_timing


class _Clock:
    """A nanosecond clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0 ns"),
        (12e-9, "12 ns"),
        (0.0000123, "12.3 µs"),
        (0.0123, "12.3 ms"),
        (0.5, "500 ms"),
        (0.99996, "1 s"),
        (1.5, "1.5 s"),
        (59.4, "59.4 s"),
        (90, "1 min 30 s"),
        (3_600, "1 h"),
        (7_500, "2 h 5 min"),
        (3 * 86_400 + 4 * 3_600, "3 d 4 h"),
        (-0.002, "-2 ms"),
    ],
)
def test_format_duration_reads_as_people_write_it(seconds: float, text: str) -> None:
    """Three significant digits in the unit that fits, whole minutes, hours and days above a minute."""
    assert format_duration(seconds) == text


def test_format_duration_rejects_non_numbers_and_writes_nan() -> None:
    """A non-number is an error naming the value; NaN and infinity are written as such."""
    with pytest.raises(ValueError, match="'soon'"):
        format_duration("soon")  # type: ignore[arg-type]
    assert format_duration(math.inf) == "inf"
    assert format_duration(math.nan) == "nan"


def test_stopwatch_laps_add_up_and_stop_pauses() -> None:
    """Laps measure from the previous lap; a stopped stopwatch does not advance; resuming goes on."""
    clock = _Clock()
    watch = Stopwatch(clock).start()
    clock.now += 2_000_000  # 2 ms
    first = watch.lap("load")
    clock.now += 3_000_000
    second = watch.lap()
    assert (first.name, first.seconds, first.total) == ("load", 0.002, 0.002)
    assert (second.name, second.seconds, second.total) == ("lap 2", 0.003, 0.005)
    assert watch.stop() == 0.005
    clock.now += 10_000_000  # stopped: not counted
    assert watch.elapsed == 0.005 and not watch.running
    watch.start()
    clock.now += 1_000_000
    assert watch.elapsed == pytest.approx(0.006)
    assert str(second) == "lap 2: 3 ms (total 5 ms)"
    watch.reset()
    assert watch.elapsed == 0 and watch.laps == ()


def test_stopwatch_as_context_manager_measures_the_block() -> None:
    """``with Stopwatch() as w`` starts and stops around the block (real clock)."""
    with Stopwatch() as watch:
        sum(range(1000))
    assert not watch.running and watch.elapsed > 0


def test_logged_timing_logs_the_block_and_its_exception(caplog: pytest.LogCaptureFixture) -> None:
    """The guard logs the duration when the block ends, names the exception when it raised, and lets the
    exception through unchanged."""
    log = logging.getLogger("test.timing")
    with caplog.at_level(logging.INFO, logger="test.timing"):
        with logged_timing(log, "loading map %s", "arena"):
            pass
        with pytest.raises(KeyError), logged_timing(log, "saving"):
            raise KeyError("slot")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("loading map arena took ") and messages[0].endswith("s")
    assert messages[1].startswith("saving took ") and messages[1].endswith("(raised KeyError)")


def test_logged_timing_threshold_and_decorators(caplog: pytest.LogCaptureFixture) -> None:
    """Below the threshold nothing is logged; as a decorator it times sync and async calls."""
    log = logging.getLogger("test.timing.decorated")

    @logged_timing(log, "sync call")
    def work(n: int) -> int:
        return n * 2

    @logged_timing(log, "async call", level=logging.WARNING)
    async def async_work() -> str:
        await asyncio.sleep(0)
        return "done"

    with caplog.at_level(logging.INFO, logger="test.timing.decorated"):
        with logged_timing(log, "fast", threshold=10.0):
            pass
        assert work(21) == 42
        assert asyncio.run(async_work()) == "done"
    records = [(r.levelno, r.getMessage().split(" took ")[0]) for r in caplog.records]
    assert records == [(logging.INFO, "sync call"), (logging.WARNING, "async call")]
    assert work.__name__ == "work"
