"""Tests for instrumentations._hardware_sampler against real psutil readings, /proc and loopback traffic."""

import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import psutil
import pytest

from instrumentations._hardware_sampler import HardwareSample, HardwareSampler

_LOGGER_NAME = "instrumentations._hardware_sampler"
_PROC = Path("/proc")
_MB = 1024 * 1024

_RATE_FIELDS = (
    "disk_read_bytes_per_sec",
    "disk_write_bytes_per_sec",
    "disk_read_ops_per_sec",
    "disk_write_ops_per_sec",
    "nic_bytes_recv_per_sec",
    "nic_bytes_sent_per_sec",
    "nic_packets_recv_per_sec",
    "nic_packets_sent_per_sec",
)

needs_procfs = pytest.mark.skipif(not (_PROC / "meminfo").exists(), reason="needs Linux /proc")


class _ManualClock:
    """A monotonic clock the test moves by hand; it stands still inside one sample()."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _psutil_wrapper(**overrides: Callable[..., object] | None) -> ModuleType:
    """A module object forwarding to the real psutil; an override replaces a function, None removes it."""
    wrapper = ModuleType("psutil_wrapper")
    for name in dir(psutil):
        if not name.startswith("__"):
            setattr(wrapper, name, getattr(psutil, name))
    for name, replacement in overrides.items():
        if replacement is None:
            delattr(wrapper, name)
        else:
            setattr(wrapper, name, replacement)
    return wrapper


def _raiser(exc: BaseException) -> Callable[..., object]:
    def fail(*args: object, **kwargs: object) -> object:
        raise exc

    return fail


def _send_over_loopback(nbytes: int) -> int:
    """Send ``nbytes`` over a real TCP connection on 127.0.0.1; return how many bytes arrived."""
    chunk = memoryview(bytes(256 * 1024))
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)

                def send() -> None:
                    sent = 0
                    while sent < nbytes:
                        step = min(len(chunk), nbytes - sent)
                        client.sendall(chunk[:step])
                        sent += step
                    client.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send, daemon=True)
                sender.start()
                received = 0
                for _ in range(nbytes + 1):  # every recv returns at least one byte, or b"" at the end
                    data = conn.recv(1024 * 1024)
                    if not data:
                        break
                    received += len(data)
                sender.join(timeout=10)
    return received


def _spin_cpu(seconds: float) -> None:
    """Keep one core busy for ``seconds`` of wall time."""
    deadline = time.monotonic() + seconds
    for _ in range(100_000_000):
        if time.monotonic() >= deadline:
            break


def _meminfo_kib(key: str) -> int:
    for line in (_PROC / "meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    raise AssertionError(f"{key} not in /proc/meminfo")


def _proc_loadavg() -> tuple[float, float, float]:
    one, five, fifteen = (_PROC / "loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def _psi_some_avg10() -> float | None:
    try:
        text = (_PROC / "pressure" / "memory").read_text()
    except OSError:
        return None
    match = re.search(r"^some .*\bavg10=([0-9.]+)", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


def _replay(readings: list[object]) -> Callable[..., object]:
    """A function returning the given (real) readings in order, one per call."""
    remaining: Iterator[object] = iter(readings)

    def next_reading(*args: object, **kwargs: object) -> object:
        return next(remaining)

    return next_reading


# -- agreement with /proc -----------------------------------------------------------------------------------


@needs_procfs
def test_memory_total_equals_proc_meminfo_memtotal() -> None:
    """memory_total_bytes is MemTotal from /proc/meminfo in bytes."""
    sample = HardwareSampler().sample()
    assert sample.memory_total_bytes == _meminfo_kib("MemTotal") * 1024


@needs_procfs
def test_memory_used_free_and_percent_come_from_virtual_memory() -> None:
    """The memory fields are psutil.virtual_memory() values, read in the same sample."""
    sample = HardwareSampler().sample()
    assert sample.memory_used_bytes is not None and sample.memory_free_bytes is not None
    assert sample.memory_total_bytes is not None and sample.memory_usage_percent is not None
    assert 0 < sample.memory_used_bytes < sample.memory_total_bytes
    assert 0 < sample.memory_free_bytes <= sample.memory_total_bytes
    memory = psutil.virtual_memory()
    assert sample.memory_usage_percent == pytest.approx(memory.percent, abs=2.0)


@needs_procfs
def test_per_core_cpu_count_matches_psutil_and_proc_stat_and_values_are_percentages() -> None:
    """One per-core value per cpuN line of /proc/stat (= psutil.cpu_count()), every value within 0..100."""
    sampler = HardwareSampler(min_interval=0)
    _spin_cpu(0.2)
    sample = sampler.sample()
    cpu_lines = [line for line in (_PROC / "stat").read_text().splitlines() if re.match(r"cpu\d+ ", line)]
    assert sample.cpu_percent_per_core is not None
    assert len(sample.cpu_percent_per_core) == psutil.cpu_count() == len(cpu_lines)
    assert all(0.0 <= value <= 100.0 for value in sample.cpu_percent_per_core)
    assert sample.cpu_percent is not None
    assert 0.0 <= sample.cpu_percent <= 100.0


@needs_procfs
def test_load_average_equals_proc_loadavg() -> None:
    """load_average equals the first three fields of /proc/loadavg, read just before or just after."""
    sampler = HardwareSampler()
    before = _proc_loadavg()
    sample = sampler.sample()
    after = _proc_loadavg()
    assert sample.load_average is not None
    assert any(
        all(math.isclose(got, want, abs_tol=0.01) for got, want in zip(sample.load_average, proc, strict=True))
        for proc in (before, after)
    ), (sample.load_average, before, after)


@needs_procfs
def test_memory_pressure_indicators_match_meminfo_swap_and_psi() -> None:
    """memory_pressure holds unavailable % (MemAvailable), swap_used % and PSI some avg10 when readable."""
    sampler = HardwareSampler()
    psi_before = _psi_some_avg10()
    sample = sampler.sample()
    psi_after = _psi_some_avg10()
    unavailable = 100.0 * (1.0 - _meminfo_kib("MemAvailable") / _meminfo_kib("MemTotal"))
    assert sample.memory_pressure["unavailable"] == pytest.approx(unavailable, abs=1.0)
    assert sample.memory_pressure["swap_used"] == pytest.approx(psutil.swap_memory().percent, abs=1.0)
    if psi_before is None and psi_after is None:
        assert "psi_some_avg10" not in sample.memory_pressure
    else:
        assert sample.memory_pressure["psi_some_avg10"] in (psi_before, psi_after)


# -- rates --------------------------------------------------------------------------------------------------


def test_nic_rate_times_real_elapsed_time_covers_loopback_traffic() -> None:
    """20 MB sent over loopback between two samples shows up as rate × the real elapsed time."""
    payload = 20 * _MB
    sampler = HardwareSampler(min_interval=0)
    outer_before = psutil.net_io_counters()
    first = sampler.sample()
    first_done = time.monotonic()
    assert _send_over_loopback(payload) == payload
    time.sleep(0.05)
    second = sampler.sample()
    second_done = time.monotonic()
    outer_after = psutil.net_io_counters()

    # Each sample's NIC read happened between its timestamp and its return; that bounds the real elapsed
    # time the sampler divided by from both sides.
    shortest = second.timestamp - first_done
    longest = second_done - first.timestamp
    assert second.nic_bytes_recv_per_sec is not None and second.nic_bytes_sent_per_sec is not None
    assert second.nic_bytes_recv_per_sec * longest >= payload
    assert second.nic_bytes_sent_per_sec * longest >= payload
    assert second.nic_bytes_recv_per_sec * shortest <= outer_after.bytes_recv - outer_before.bytes_recv
    assert second.nic_bytes_sent_per_sec * shortest <= outer_after.bytes_sent - outer_before.bytes_sent


def test_doubling_elapsed_time_halves_the_rate_for_the_same_counter_delta() -> None:
    """Rates divide the real counter delta by the clock's elapsed time: twice the time, half the rate."""
    _send_over_loopback(_MB)
    start = psutil.net_io_counters()
    _send_over_loopback(2 * _MB)
    end = psutil.net_io_counters()
    delta = end.bytes_recv - start.bytes_recv
    assert delta >= 2 * _MB

    rates: dict[float, float] = {}
    for elapsed in (1.5, 3.0):
        clock = _ManualClock()
        wrapper = _psutil_wrapper(net_io_counters=_replay([start, end]))
        sampler = HardwareSampler(clock=clock, psutil_module=wrapper)
        clock.now += elapsed
        rate = sampler.sample().nic_bytes_recv_per_sec
        assert rate is not None
        rates[elapsed] = rate

    assert rates[1.5] == pytest.approx(delta / 1.5)
    assert rates[3.0] == pytest.approx(rates[1.5] / 2)


def test_first_sample_already_has_plausible_rates() -> None:
    """The priming reading in the constructor makes the first sample's rates present and sane."""
    sampler = HardwareSampler()
    _send_over_loopback(_MB)
    _spin_cpu(0.3)
    sample = sampler.sample()

    disk_available = psutil.disk_io_counters() is not None
    for name in _RATE_FIELDS:
        value = getattr(sample, name)
        if name.startswith("disk_") and not disk_available:
            assert value is None
            continue
        assert value is not None, name
        assert 0.0 <= value < 1e12, (name, value)
    assert sample.nic_bytes_recv_per_sec is not None and sample.nic_bytes_recv_per_sec > 0
    assert sample.cpu_percent is not None and 0.0 < sample.cpu_percent <= 100.0


def test_counter_going_down_drops_that_rate_and_rebaselines() -> None:
    """A counter that decreases yields None for that interval, then correct rates from the new baseline."""
    _send_over_loopback(_MB)
    primed = psutil.net_io_counters()
    assert primed.bytes_recv > 1 and primed.packets_recv > 1
    # The NIC was re-created: its receive counters start again lower; the send counters keep going.
    reset = primed._replace(bytes_recv=primed.bytes_recv // 2, packets_recv=primed.packets_recv // 2)
    scripted = iter([primed, reset])

    def net_io_counters(*args: object, **kwargs: object) -> object:
        """The two scripted readings, then live ones."""
        return next(scripted, None) or psutil.net_io_counters()

    clock = _ManualClock()
    sampler = HardwareSampler(clock=clock, psutil_module=_psutil_wrapper(net_io_counters=net_io_counters))

    clock.now += 1.0
    after_reset = sampler.sample()
    assert after_reset.nic_bytes_recv_per_sec is None
    assert after_reset.nic_packets_recv_per_sec is None
    assert after_reset.nic_bytes_sent_per_sec == 0.0
    assert after_reset.nic_packets_sent_per_sec == 0.0

    _send_over_loopback(_MB)
    clock.now += 2.0
    before_real = psutil.net_io_counters()
    recovered = sampler.sample()
    after_real = psutil.net_io_counters()
    assert recovered.nic_bytes_recv_per_sec is not None and recovered.nic_bytes_sent_per_sec is not None
    assert recovered.nic_packets_recv_per_sec is not None
    low = (before_real.bytes_recv - reset.bytes_recv) / 2.0
    high = (after_real.bytes_recv - reset.bytes_recv) / 2.0
    assert 0 < low <= recovered.nic_bytes_recv_per_sec <= high
    assert recovered.nic_bytes_sent_per_sec >= (before_real.bytes_sent - primed.bytes_sent) / 2.0 > 0
    assert recovered.nic_packets_recv_per_sec >= (before_real.packets_recv - reset.packets_recv) / 2.0 > 0


def test_clock_standing_still_reports_no_rate_and_keeps_the_baseline() -> None:
    """With zero elapsed time there is no rate; the next interval is measured from the old baseline."""
    start = psutil.net_io_counters()
    _send_over_loopback(_MB)
    middle = psutil.net_io_counters()
    _send_over_loopback(_MB)
    end = psutil.net_io_counters()
    clock = _ManualClock()
    sampler = HardwareSampler(
        min_interval=0,
        clock=clock,
        psutil_module=_psutil_wrapper(net_io_counters=_replay([start, middle, end])),
    )
    assert sampler.sample().nic_bytes_recv_per_sec is None
    clock.now += 4.0
    assert sampler.sample().nic_bytes_recv_per_sec == pytest.approx((end.bytes_recv - start.bytes_recv) / 4.0)


# -- failure isolation --------------------------------------------------------------------------------------


class _FailureCase(NamedTuple):
    function: str
    error: BaseException | None  # None: the function is missing from the module
    source: str
    fields: tuple[str, ...]
    pressure_keys: tuple[str, ...] = ()


_FAILURE_CASES = (
    _FailureCase(
        "disk_io_counters",
        PermissionError(13, "Permission denied", "/proc/diskstats"),
        "disk",
        tuple(name for name in _RATE_FIELDS if name.startswith("disk_")),
    ),
    _FailureCase(
        "net_io_counters",
        OSError(5, "Input/output error"),
        "nic",
        tuple(name for name in _RATE_FIELDS if name.startswith("nic_")),
    ),
    _FailureCase("cpu_times", NotImplementedError("cpu_times"), "cpu", ("cpu_percent", "cpu_percent_per_core")),
    _FailureCase("getloadavg", None, "loadavg", ("load_average",)),
    _FailureCase(
        "virtual_memory",
        OSError(2, "No such file or directory", "/proc/meminfo"),
        "memory",
        ("memory_total_bytes", "memory_used_bytes", "memory_free_bytes", "memory_usage_percent"),
        ("unavailable",),
    ),
    _FailureCase("swap_memory", PermissionError("swap"), "swap", (), ("swap_used",)),
)

_ALL_FIELDS = (
    "cpu_percent",
    "cpu_percent_per_core",
    "load_average",
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_free_bytes",
    "memory_usage_percent",
    *_RATE_FIELDS,
)


@pytest.mark.parametrize("case", _FAILURE_CASES, ids=[case.source for case in _FAILURE_CASES])
def test_failing_psutil_call_empties_only_its_fields_counts_and_warns_once(
    case: _FailureCase, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising (or missing) psutil function empties its own fields, counts every failure, warns once."""
    caplog.set_level(logging.WARNING, logger=_LOGGER_NAME)
    replacement = None if case.error is None else _raiser(case.error)
    sampler = HardwareSampler(min_interval=0, psutil_module=_psutil_wrapper(**{case.function: replacement}))
    primed_calls = 1 if case.source in ("cpu", "disk", "nic") else 0
    disk_available = psutil.disk_io_counters() is not None

    samples: list[HardwareSample] = []
    for _ in range(3):
        time.sleep(0.05)
        samples.append(sampler.sample())

    assert sampler.errors[case.source] == primed_calls + len(samples)
    assert all(count == 0 for source, count in sampler.errors.items() if source != case.source)
    for sample in samples:
        for name in _ALL_FIELDS:
            value = getattr(sample, name)
            if name in case.fields or (name.startswith("disk_") and not disk_available):
                assert value is None, name
            else:
                assert value is not None, name
        for key in ("unavailable", "swap_used"):
            assert (key in sample.memory_pressure) == (key not in case.pressure_keys), key
    warnings = [record for record in caplog.records if record.name == _LOGGER_NAME]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert repr(case.source) in warnings[0].getMessage()


def test_sampler_does_not_use_psutils_module_global_cpu_percent() -> None:
    """CPU % is computed from the sampler's own cpu_times baseline, so psutil.cpu_percent is never needed."""
    wrapper = _psutil_wrapper(cpu_percent=None)
    sampler = HardwareSampler(min_interval=0, psutil_module=wrapper)
    _spin_cpu(0.2)
    sample = sampler.sample()
    assert sample.cpu_percent is not None and sample.cpu_percent > 0
    assert all(count == 0 for count in sampler.errors.values())


# -- caching and threads ------------------------------------------------------------------------------------


def test_sample_within_min_interval_returns_the_identical_object() -> None:
    """Within min_interval the previous sample object is returned; after it, a fresh one."""
    clock = _ManualClock()
    sampler = HardwareSampler(min_interval=0.2, clock=clock)
    clock.now += 1.0
    first = sampler.sample()
    clock.now += 0.1
    assert sampler.sample() is first
    clock.now += 0.1
    fresh = sampler.sample()
    assert fresh is not first
    assert fresh.timestamp == clock.now


def test_concurrent_samples_get_one_shared_reading() -> None:
    """Threads sampling at once are serialised by the lock and all receive the same cached sample."""
    sampler = HardwareSampler(min_interval=60)
    results: list[HardwareSample] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(timeout=10)
        results.append(sampler.sample())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 8
    assert all(result is results[0] for result in results)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_invalid_min_interval_is_rejected_at_construction(bad: float) -> None:
    """A negative or non-finite min_interval raises ValueError naming the argument."""
    with pytest.raises(ValueError, match="min_interval"):
        HardwareSampler(min_interval=bad)


# -- deadlines ----------------------------------------------------------------------------------------------


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "otel-telemetry-hardware-read" and t.is_alive()]


def test_a_stuck_source_costs_one_deadline_then_is_skipped_counted_and_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """net_io_counters blocks: the sample that meets it takes its 0.2 s deadline and no more; later samples skip
    it at once; its fields are None and it is listed as stuck; every lost reading is counted, one warning; once
    the call returns the source is read again (rates over the whole gap) and close() leaves no reader thread."""
    caplog.set_level(logging.WARNING, logger=_LOGGER_NAME)
    release, entered = threading.Event(), threading.Event()
    block = False

    def net_io_counters(*args: object, **kwargs: object) -> object:
        if block:
            entered.set()
            release.wait(10)
        return psutil.net_io_counters(*args, **kwargs)

    sampler = HardwareSampler(
        min_interval=0, source_timeout=0.2, psutil_module=_psutil_wrapper(net_io_counters=net_io_counters)
    )
    try:
        assert sampler.source_timeout == 0.2
        block = True
        started = time.monotonic()
        first = sampler.sample()
        first_took = time.monotonic() - started
        assert entered.is_set() and 0.19 < first_took < 0.6, first_took
        assert first.stuck_sources == {"nic"} and first.nic_bytes_recv_per_sec is None
        assert first.memory_total_bytes is not None
        started = time.monotonic()
        second = sampler.sample()
        assert time.monotonic() - started < 0.1  # skipped, not waited for again
        assert second.stuck_sources == {"nic"}
        assert sampler.stuck["nic"] == 2 and sum(sampler.stuck.values()) == 2
        assert all(count == 0 for count in sampler.errors.values())
        block = False
        release.set()
        time.sleep(0.05)  # the abandoned call returns; its thread ends
        third = sampler.sample()
        assert third.stuck_sources == frozenset() and third.nic_bytes_recv_per_sec is not None
        assert sampler.stuck["nic"] == 2
        stuck_warnings = [r for r in caplog.records if "deadline" in r.getMessage()]
        assert len(stuck_warnings) == 1 and "'nic'" in stuck_warnings[0].getMessage()
    finally:
        release.set()
        assert sampler.close(timeout=2.0)
    assert _reader_threads() == []


def test_a_sample_hands_all_its_reads_to_one_reader_thread() -> None:
    """Seven reads, one hand-over: every psutil call of a sample runs on the same reader thread, in order."""
    calls: list[tuple[str, int]] = []

    def recorded(name: str) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            calls.append((name, threading.get_ident()))
            return getattr(psutil, name)(*args, **kwargs)

        return call

    names = ("cpu_times", "getloadavg", "virtual_memory", "swap_memory", "disk_io_counters", "net_io_counters")
    sampler = HardwareSampler(
        min_interval=0, source_timeout=1.0, psutil_module=_psutil_wrapper(**{n: recorded(n) for n in names})
    )
    try:
        calls.clear()
        sampler.sample()
        assert [name for name, _ in calls] == list(names)
        assert len({ident for _, ident in calls}) == 1
        assert calls[0][1] != threading.get_ident()
    finally:
        assert sampler.close(timeout=2.0)


def test_the_reads_after_a_stuck_source_still_run_in_the_same_sample() -> None:
    """virtual_memory blocks: its deadline passes, the sources read after it (swap, disk, nic) are read on a new
    reader thread within the same sample, and only memory's fields are empty."""
    release = threading.Event()
    block = False
    threads: dict[str, int] = {}

    def virtual_memory() -> object:
        threads["memory"] = threading.get_ident()
        if block:
            release.wait(10)
        return psutil.virtual_memory()

    def net_io_counters(*args: object, **kwargs: object) -> object:
        threads["nic"] = threading.get_ident()
        return psutil.net_io_counters(*args, **kwargs)

    sampler = HardwareSampler(
        min_interval=0,
        source_timeout=0.2,
        psutil_module=_psutil_wrapper(virtual_memory=virtual_memory, net_io_counters=net_io_counters),
    )
    try:
        sampler.sample()
        time.sleep(0.05)
        block = True
        started = time.monotonic()
        sample = sampler.sample()
        took = time.monotonic() - started
        assert 0.19 < took < 0.6, took
        assert sample.stuck_sources == {"memory"} and sample.memory_total_bytes is None
        assert sample.load_average is not None and sample.nic_bytes_recv_per_sec is not None
        assert "unavailable" not in sample.memory_pressure and "swap_used" in sample.memory_pressure
        assert threads["nic"] != threads["memory"]
        assert sampler.stuck["memory"] == 1 and all(count == 0 for count in sampler.errors.values())
    finally:
        release.set()
        assert sampler.close(timeout=2.0)
    assert _reader_threads() == []


def test_without_source_timeout_reads_run_on_the_calling_thread() -> None:
    """The default sampler starts no thread: each read runs where sample() is called."""
    before = len(_reader_threads())
    sampler = HardwareSampler(min_interval=0)
    sampler.sample()
    assert sampler.source_timeout is None and len(_reader_threads()) == before
    assert sampler.close() is True


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_invalid_source_timeout_is_rejected_at_construction(bad: float) -> None:
    """A non-positive or non-finite source_timeout raises ValueError naming the argument."""
    with pytest.raises(ValueError, match="source_timeout"):
        HardwareSampler(source_timeout=bad)


def test_a_read_the_reader_thread_never_began_fails_instead_of_staying_stuck() -> None:
    """A batch no thread picks up within the deadline: its first read is then done and failed (a TimeoutError), so
    the sampler counts an error and reads that source again next time, instead of waiting forever for a read that
    will never run."""
    from instrumentations._hardware_sampler import _Batch, _Job, _SourceReader

    reader = _SourceReader(0.05)
    batch = _Batch([_Job(lambda: 1), _Job(lambda: 2)])  # handed to no thread
    started = time.monotonic()
    assert reader._wait(batch) == 0
    assert time.monotonic() - started < 1.0
    first, second = batch.jobs
    assert first.done.is_set() and isinstance(first.error, TimeoutError) and first.started is None
    assert batch.cancelled and not second.done.is_set()
    batch()  # a thread that picks it up late runs nothing
    assert second.started is None and not second.done.is_set()
