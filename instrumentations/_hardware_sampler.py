"""Host hardware sampling with psutil: CPU, load, memory, memory pressure, disk and NIC rates.

:class:`HardwareSampler` turns psutil's cumulative counters into per-second rates and CPU percentages.
It runs on a sampling thread, never on the game loop: one ``sample()`` makes one psutil call per source and
reads ``/proc/pressure/memory`` once. With ``source_timeout`` each of those reads has a deadline (see
:class:`HardwareSampler`), so that a stuck psutil call (a hung NFS mount, a wedged ``/proc`` read) costs one
deadline once and then only that source's fields.
"""

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Final, Generic, NamedTuple, Protocol, TypeVar

import psutil

_logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_PSI_MEMORY_PATH: Final = "/proc/pressure/memory"

# The error sources, one per psutil call (plus the PSI file), in the order sample() reads them.
_SOURCES: Final = ("cpu", "loadavg", "memory", "swap", "psi", "disk", "nic")

_DISK_FIELDS: Final = ("read_bytes", "write_bytes", "read_count", "write_count")
_NIC_FIELDS: Final = ("bytes_recv", "bytes_sent", "packets_recv", "packets_sent")

#: The name of the thread that runs timed source reads.
READER_THREAD_NAME: Final = "otel-telemetry-hardware-read"
# An idle reader thread ends by itself after this many seconds (the next read starts a new one).
_READER_IDLE_EXIT: Final = 10.0


class _CpuTimes(Protocol):
    """One psutil ``scputimes`` named tuple (fields vary by platform)."""

    def _asdict(self) -> dict[str, float]: ...


class _Memory(NamedTuple):
    """``psutil.virtual_memory()`` values, converted while the read is still guarded."""

    total: int
    available: int
    used: int
    free: int
    percent: float


class _Counters(NamedTuple):
    """Cumulative counter values and the monotonic time they were read at."""

    values: tuple[float, ...]
    at: float


@dataclass(frozen=True, slots=True)
class HardwareSample:
    """One reading of host hardware state; immutable and safe to share between threads.

    A field is ``None`` (or, in ``memory_pressure``, an absent key) when its source failed or is not
    available on this host, or when a rate cannot be computed for this interval (no earlier reading,
    no elapsed time, or a cumulative counter went down).

    Attributes:
        timestamp: ``clock()`` (``time.monotonic()`` by default) when the sample was taken, in seconds.
        cpu_percent: total CPU busy %, 0..100, over the interval since the previous reading.
        cpu_percent_per_core: busy % per logical CPU, 0..100, same interval, in psutil's CPU order.
        load_average: 1, 5 and 15 minute load averages (``psutil.getloadavg()``).
        memory_total_bytes: physical memory, bytes.
        memory_used_bytes: ``psutil.virtual_memory().used``, bytes.
        memory_free_bytes: ``psutil.virtual_memory().free``, bytes (not counting reclaimable cache).
        memory_usage_percent: ``psutil.virtual_memory().percent``, 0..100.
        memory_pressure: pressure indicator name -> percent; see :class:`HardwareSampler`.
        disk_read_bytes_per_sec: bytes read from disks per second, all disks summed.
        disk_write_bytes_per_sec: bytes written to disks per second.
        disk_read_ops_per_sec: completed disk read operations per second.
        disk_write_ops_per_sec: completed disk write operations per second.
        nic_bytes_recv_per_sec: bytes received per second, all interfaces (loopback included).
        nic_bytes_sent_per_sec: bytes sent per second, all interfaces.
        nic_packets_recv_per_sec: packets received per second, all interfaces.
        nic_packets_sent_per_sec: packets sent per second, all interfaces.
        stuck_sources: the sources whose read passed its deadline, or was skipped because an earlier read of
            that source has not returned yet; their fields are ``None`` in this sample.
    """

    timestamp: float
    cpu_percent: float | None
    cpu_percent_per_core: tuple[float, ...] | None
    load_average: tuple[float, float, float] | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    memory_free_bytes: int | None
    memory_usage_percent: float | None
    # Excluded from the hash: a read-only mapping is not hashable.
    memory_pressure: Mapping[str, float] = field(hash=False)
    disk_read_bytes_per_sec: float | None
    disk_write_bytes_per_sec: float | None
    disk_read_ops_per_sec: float | None
    disk_write_ops_per_sec: float | None
    nic_bytes_recv_per_sec: float | None
    nic_bytes_sent_per_sec: float | None
    nic_packets_recv_per_sec: float | None
    nic_packets_sent_per_sec: float | None
    stuck_sources: frozenset[str] = frozenset()


class _Job(Generic[_T]):
    """One source read handed to the reader thread (``started``: when it began there, None before)."""

    __slots__ = ("done", "error", "read", "started", "value")

    def __init__(self, read: Callable[[], _T]) -> None:
        self.read = read
        self.done = threading.Event()
        self.value: _T | None = None
        self.error: BaseException | None = None
        self.started: float | None = None


class _Batch:
    """Source reads run one after another on one reader thread: a sample hands its reads over once and is woken
    once, instead of once per source. ``cancelled`` (set under ``lock``) stops it before its next read."""

    __slots__ = ("cancelled", "jobs", "lock")

    def __init__(self, jobs: list[_Job[Any]]) -> None:
        self.jobs = jobs
        self.lock = threading.Lock()
        self.cancelled = False

    def __call__(self) -> None:
        for job in self.jobs:
            with self.lock:
                if self.cancelled:
                    return
                job.started = time.monotonic()
            try:
                job.value = job.read()
            except BaseException as exc:  # handed to the sampler, which counts it like any failed read
                job.error = exc
            finally:
                job.done.set()


class _ReaderThread:
    """A daemon thread running one job at a time. After ``stop()`` it ends once its current job returns."""

    def __init__(self) -> None:
        self._ready = threading.Condition(threading.Lock())
        self._batch: _Batch | None = None
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name=READER_THREAD_NAME, daemon=True)
        self.thread.start()

    def submit(self, batch: _Batch) -> bool:
        """Hand ``batch`` over; False when this thread has ended or is ending (use a new one)."""
        with self._ready:
            if self._stopping or not self.thread.is_alive():
                return False
            self._batch = batch
            self._ready.notify()
            return True

    def stop(self) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                if self._batch is None and not self._stopping:
                    self._ready.wait(_READER_IDLE_EXIT)
                batch, self._batch = self._batch, None
                if batch is None:  # stopped, or idle for long: end (under the lock, so no batch is lost)
                    self._stopping = True
                    return
            batch()  # never raises: each read's exception is kept in its job


class _SourceReader:
    """Runs source reads on a reader thread with a deadline each (called by one sampler, under its lock).

    A read that passes its deadline is left to finish on its own thread, which then ends; the next read gets
    a new thread. Python cannot interrupt a blocked call, so each stuck source holds at most one thread, and the
    sampler does not read that source again until its stuck read has returned.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._worker: _ReaderThread | None = None
        self._ending: list[threading.Thread] = []  # stopped while idle: end at once
        self._abandoned: list[threading.Thread] = []  # stopped while stuck: end when their read returns

    def run(self, reads: list[Callable[[], Any]]) -> list[_Job[Any]]:
        """Run ``reads`` in order, each with its own deadline from the moment it starts; every job is done except
        a read that passed its deadline (it keeps running on its own thread; the reads after it run on a new
        one)."""
        jobs: list[_Job[Any]] = [_Job(read) for read in reads]
        pending = jobs
        while pending:
            batch = _Batch(pending)
            worker = self._worker
            if worker is None or not worker.submit(batch):
                worker = self._worker = _ReaderThread()
                worker.submit(batch)
            stuck = self._wait(batch)
            if stuck is None:
                break
            worker.stop()
            self._worker = None
            self._abandoned = [t for t in self._abandoned if t.is_alive()] + [worker.thread]
            pending = pending[stuck + 1 :]
        return jobs

    def _wait(self, batch: _Batch) -> int | None:
        """Wait for ``batch``; the position of a read that passed its deadline (the batch is then cancelled; a read
        the thread had not begun is then done, failed), or None when every read is done. Woken once when the batch
        finishes in time."""
        jobs, last = batch.jobs, batch.jobs[-1]
        waiting: tuple[int, float] | None = None  # (position, since when) of the next read while not yet begun
        while True:
            position = next((i for i, job in enumerate(jobs) if not job.done.is_set()), None)
            if position is None:
                return None
            started = jobs[position].started
            if started is None:  # not begun yet: its deadline counts from when it became the next read
                if waiting is None or waiting[0] != position:
                    waiting = (position, time.monotonic())
                started = waiting[1]
            left = started + self.timeout - time.monotonic()
            if left <= 0:
                job = jobs[position]
                with batch.lock:  # the next read starts under this lock: none starts once cancelled
                    if job.done.is_set():
                        continue
                    batch.cancelled = True
                    if job.started is None:  # never begun, and now it never will: a failed read, not a stuck one
                        job.error = TimeoutError("the reader thread did not begin this read within its deadline")
                        job.done.set()
                return position
            last.done.wait(left)

    def close(self, timeout: float, wait_for_stuck: bool = True) -> bool:
        """End the reader thread; True when no reader thread (stuck ones included) is left after ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
            self._ending.append(worker.thread)
        for thread in self._ending + (self._abandoned if wait_for_stuck else []):
            thread.join(max(0.0, deadline - time.monotonic()))
        self._ending = [t for t in self._ending if t.is_alive()]
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        return not self._abandoned and not self._ending


class HardwareSampler:
    """Samples host hardware through psutil, keeping its own baselines for CPU and counter rates.

    Memory pressure indicators (``HardwareSample.memory_pressure``, each a percent, 0..100):

    - ``"unavailable"``: ``100 × (1 − available / total)`` from ``psutil.virtual_memory()``, the share of
      memory that cannot be handed to new allocations without swapping.
    - ``"swap_used"``: ``psutil.swap_memory().percent`` (0 on hosts without swap).
    - ``"psi_some_avg10"``: the ``some avg10`` value of Linux ``/proc/pressure/memory``, the share of the
      last 10 s in which at least one task stalled on memory. Omitted where the file does not exist.

    Rates are per second over the monotonic time actually elapsed between the two psutil readings. The
    constructor takes a priming reading of every cumulative source, so the first ``sample()`` already
    reports rates over the time since construction. CPU percentages come from
    ``psutil.cpu_times(percpu=True)`` deltas (busy = total − idle − iowait, guest time counted once, as psutil
    does) against this sampler's own previous reading, so several samplers never disturb each other, unlike
    ``psutil.cpu_percent()``, whose state is module-global. Until one clock tick of CPU time has passed
    since the baseline, the CPU fields are ``None`` and the baseline is kept.

    When a cumulative counter goes down (interface or disk removed, counter reset), that counter's rate
    is ``None`` for the interval and the new reading becomes the baseline. When a source fails, its
    fields are ``None``, ``errors[source]`` grows by one, the first failure per source is logged as a
    warning, and the previous baseline is kept so the next good reading yields a rate over the whole gap.

    Deadlines (``source_timeout``): each psutil call (and the PSI read) runs on a reader thread
    (``otel-telemetry-hardware-read``) and is waited for at most ``source_timeout`` seconds. A read past its
    deadline is abandoned to its thread: the source's fields are ``None`` in this sample (and it is listed in
    ``HardwareSample.stuck_sources``), ``stuck[source]`` grows by one, one warning is logged per source, and
    the source is skipped (counted in ``stuck`` again, one per sample) until the abandoned read returns; its
    late result is discarded and the old baseline kept, so the next rate spans the whole gap. So a sample takes
    at most one deadline per newly stuck source. Without ``source_timeout`` reads run on the calling thread.
    :meth:`close` ends the reader thread (an idle one also ends by itself after 10 s).

    Thread-safety: ``sample()``, ``errors`` and ``stuck`` may be called from any thread; one lock serialises
    samples, and the counts have their own, so reading them never waits for a sample in progress.
    Calls less than ``min_interval`` seconds after the previous sample return that same sample object.
    """

    def __init__(
        self,
        *,
        min_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        psutil_module: ModuleType | None = None,
        source_timeout: float | None = None,
    ) -> None:
        """Create a sampler and take the priming reading of CPU times and disk and NIC counters.

        Args:
            min_interval: seconds; a ``sample()`` sooner than this after the previous one returns it again.
            clock: monotonic clock in seconds, used for sample timestamps and rate denominators.
            psutil_module: the psutil module to call; ``None`` means the installed ``psutil``.
            source_timeout: seconds each source read may take (see the class docstring); ``None`` reads on
                the calling thread without a deadline.

        Raises:
            ValueError: ``min_interval`` is negative or not finite, or ``source_timeout`` is not positive.
        """
        if not math.isfinite(min_interval) or min_interval < 0:
            raise ValueError(f"min_interval must be a finite number >= 0, got {min_interval!r}")
        if source_timeout is not None and not (math.isfinite(source_timeout) and source_timeout > 0):
            raise ValueError(f"source_timeout must be a finite number of seconds > 0, got {source_timeout!r}")
        self._min_interval = min_interval
        self._clock = clock
        self._psutil: ModuleType = psutil if psutil_module is None else psutil_module
        self._lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._errors: dict[str, int] = dict.fromkeys(_SOURCES, 0)
        self._stuck: dict[str, int] = dict.fromkeys(_SOURCES, 0)
        self._warned: set[str] = set()
        self._reader = None if source_timeout is None else _SourceReader(source_timeout)
        self._stuck_reads: dict[str, _Job[Any]] = {}  # source -> its abandoned read, until it returns
        self._stuck_now: set[str] = set()  # the sources stuck in the sample being taken
        self._psi_exists = True
        self._last: HardwareSample | None = None
        primed = self._read_all([("cpu", self._read_cpu_times), ("disk", self._read_disk), ("nic", self._read_nic)])
        self._cpu_base = primed["cpu"]
        # Baselines of the cumulative counter sources, by source name.
        self._counter_bases: dict[str, _Counters] = {
            source: primed[source] for source in ("disk", "nic") if primed[source] is not None
        }

    @property
    def errors(self) -> Mapping[str, int]:
        """Failed reads per source (``cpu``, ``loadavg``, ``memory``, ``swap``, ``psi``, ``disk``, ``nic``).

        A read-only copy; every source is present, with 0 when it never failed.
        """
        with self._counts_lock:
            return MappingProxyType(dict(self._errors))

    @property
    def stuck(self) -> Mapping[str, int]:
        """Readings lost to a stuck source, per source: the read that passed its deadline plus every later
        sample that skipped the source while that read had not returned. A read-only copy, every source present."""
        with self._counts_lock:
            return MappingProxyType(dict(self._stuck))

    @property
    def source_timeout(self) -> float | None:
        """The deadline of each source read, seconds (None: reads run on the calling thread)."""
        return None if self._reader is None else self._reader.timeout

    def close(self, timeout: float = 1.0, *, wait_for_stuck: bool = True) -> bool:
        """End the reader thread; True when no reader thread is left after at most ``timeout`` seconds.

        A stuck read keeps its thread until the call returns (it is waited for only with ``wait_for_stuck``).
        The sampler stays usable: a later read starts a new reader thread.
        """
        if self._reader is None:
            return True
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            return False
        try:
            return self._reader.close(timeout, wait_for_stuck)
        finally:
            self._lock.release()

    def sample(self) -> HardwareSample:
        """Read every source once and return a new sample, or the previous one if it is recent.

        Never raises: a failing source only leaves its own fields empty (see the class docstring).
        """
        with self._lock:
            now = self._clock()
            last = self._last
            if last is not None and now - last.timestamp < self._min_interval:
                return last
            self._stuck_now = set()

            read = self._read_all(
                [
                    ("cpu", self._read_cpu_times),
                    ("loadavg", self._read_loadavg),
                    ("memory", self._read_virtual_memory),
                    ("swap", self._read_swap_percent),
                    ("psi", self._read_psi_some_avg10),
                    ("disk", self._read_disk),
                    ("nic", self._read_nic),
                ]
            )
            cpu_total, cpu_per_core = self._cpu_percentages(read["cpu"])
            load = read["loadavg"]
            memory: _Memory | None = read["memory"]
            swap_percent = read["swap"]
            psi = read["psi"]
            disk = self._rates("disk", read["disk"], len(_DISK_FIELDS))
            nic = self._rates("nic", read["nic"], len(_NIC_FIELDS))

            pressure: dict[str, float] = {}
            if memory is not None and memory.total > 0:
                pressure["unavailable"] = 100.0 * (1.0 - memory.available / memory.total)
            if swap_percent is not None:
                pressure["swap_used"] = swap_percent
            if psi is not None:
                pressure["psi_some_avg10"] = psi

            result = HardwareSample(
                timestamp=now,
                cpu_percent=cpu_total,
                cpu_percent_per_core=cpu_per_core,
                load_average=load,
                memory_total_bytes=None if memory is None else memory.total,
                memory_used_bytes=None if memory is None else memory.used,
                memory_free_bytes=None if memory is None else memory.free,
                memory_usage_percent=None if memory is None else memory.percent,
                memory_pressure=MappingProxyType(pressure),
                disk_read_bytes_per_sec=disk[0],
                disk_write_bytes_per_sec=disk[1],
                disk_read_ops_per_sec=disk[2],
                disk_write_ops_per_sec=disk[3],
                nic_bytes_recv_per_sec=nic[0],
                nic_bytes_sent_per_sec=nic[1],
                nic_packets_recv_per_sec=nic[2],
                nic_packets_sent_per_sec=nic[3],
                stuck_sources=frozenset(self._stuck_now),
            )
            self._last = result
            return result

    # -- reading ---------------------------------------------------------------------------------------

    def _read_all(self, reads: list[tuple[str, Callable[[], Any]]]) -> dict[str, Any]:
        """Run the sources' reads in order (with a deadline each when there is one), handed to the reader thread
        together; by source, its value, or None when it failed (counted, warned once per source) or is stuck
        (counted, warned once; skipped until its stuck read returns)."""
        found: dict[str, Any] = {}
        if self._reader is None:
            for source, read in reads:
                try:
                    found[source] = read()
                except Exception as exc:
                    self._failed(source, exc)
                    found[source] = None
            return found
        runnable: list[tuple[str, Callable[[], Any]]] = []
        for source, read in reads:
            stuck = self._stuck_reads.get(source)
            if stuck is not None:
                if not stuck.done.is_set():
                    self._count_stuck(source)
                    found[source] = None
                    continue
                del self._stuck_reads[source]
                _logger.info(
                    "hardware sampler: the stuck read of %r returned after %.1f s; reading it again",
                    source,
                    time.monotonic() - (stuck.started or time.monotonic()),
                )
            runnable.append((source, read))
        if not runnable:
            return found
        try:
            jobs = self._reader.run([read for _, read in runnable])
        except Exception as exc:  # e.g. no thread could be started
            for source, _ in runnable:
                self._failed(source, exc)
                found[source] = None
            return found
        for (source, _), job in zip(runnable, jobs, strict=True):
            found[source] = None
            if not job.done.is_set():
                self._stuck_reads[source] = job
                self._count_stuck(source)
            elif job.error is not None:
                self._failed(source, job.error)
            else:
                found[source] = job.value
        return found

    def _failed(self, source: str, exc: BaseException) -> None:
        with self._counts_lock:
            self._errors[source] += 1
            first = source not in self._warned
            self._warned.add(source)
        if first:
            _logger.warning(
                "hardware sampler: reading %r failed (%s: %s); its fields are left empty and further "
                "failures are only counted",
                source,
                type(exc).__name__,
                exc,
            )

    def _count_stuck(self, source: str) -> None:
        self._stuck_now.add(source)
        key = "stuck:" + source
        with self._counts_lock:
            self._stuck[source] += 1
            first = key not in self._warned
            self._warned.add(key)
        if first:
            _logger.warning(
                "hardware sampler: reading %r took longer than its %.1f s deadline; its fields are left empty "
                "and it is skipped until that read returns (logged once; counted in stuck)",
                source,
                self.source_timeout,
            )

    def _read_cpu_times(self) -> tuple[dict[str, float], ...]:
        per_core: list[_CpuTimes] = self._psutil.cpu_times(percpu=True)
        return tuple(times._asdict() for times in per_core)

    def _read_loadavg(self) -> tuple[float, float, float]:
        one, five, fifteen = self._psutil.getloadavg()
        return float(one), float(five), float(fifteen)

    def _read_virtual_memory(self) -> _Memory:
        memory = self._psutil.virtual_memory()
        return _Memory(
            int(memory.total),
            int(memory.available),
            int(memory.used),
            int(memory.free),
            float(memory.percent),
        )

    def _read_swap_percent(self) -> float:
        return float(self._psutil.swap_memory().percent)

    def _read_psi_some_avg10(self) -> float | None:
        if not self._psi_exists:
            return None
        try:
            with open(_PSI_MEMORY_PATH, encoding="ascii") as psi_file:
                text = psi_file.read()
        except FileNotFoundError:
            # Not Linux, or a kernel without PSI: an absent indicator, not a failure.
            self._psi_exists = False
            return None
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "some":
                fields = dict(item.split("=", 1) for item in rest.split())
                return float(fields["avg10"])
        raise ValueError(f"no 'some' line in {_PSI_MEMORY_PATH}: {text!r}")

    def _read_disk(self) -> _Counters | None:
        counters: object | None = self._psutil.disk_io_counters()
        at = self._clock()
        # psutil returns None on hosts without disks: nothing to report, nothing failed.
        return None if counters is None else _Counters(_values(counters, _DISK_FIELDS), at)

    def _read_nic(self) -> _Counters | None:
        counters: object | None = self._psutil.net_io_counters()
        at = self._clock()
        return None if counters is None else _Counters(_values(counters, _NIC_FIELDS), at)

    # -- computing -------------------------------------------------------------------------------------

    def _cpu_percentages(
        self, current: tuple[dict[str, float], ...] | None
    ) -> tuple[float | None, tuple[float, ...] | None]:
        """Total and per-core busy % since the CPU baseline; moves the baseline when a result is given."""
        previous = self._cpu_base
        if current is None:
            return None, None
        if previous is None or len(previous) != len(current):
            # No baseline, or CPUs went on/offline: start over from this reading.
            self._cpu_base = current
            return None, None
        deltas = [_busy_and_total(before, after) for before, after in zip(previous, current, strict=True)]
        busy_sum = sum(busy for busy, _ in deltas)
        total_sum = sum(total for _, total in deltas)
        if total_sum <= 0:
            # Not one clock tick has passed since the baseline: keep it and measure a longer interval next.
            return None, None
        self._cpu_base = current
        per_core = tuple(_percent(busy, total) for busy, total in deltas)
        return _percent(busy_sum, total_sum), per_core

    def _rates(self, source: str, current: _Counters | None, width: int) -> tuple[float | None, ...]:
        """The per-second rates of a cumulative source's reading since its baseline."""
        empty: tuple[float | None, ...] = (None,) * width
        if current is None:
            return empty
        previous = self._counter_bases.get(source)
        if previous is None:
            self._counter_bases[source] = current
            return empty
        elapsed = current.at - previous.at
        if elapsed <= 0:
            # The clock has not advanced: keep the baseline so the next reading spans a real interval.
            return empty
        self._counter_bases[source] = current
        return tuple(
            None if after < before else (after - before) / elapsed
            for before, after in zip(previous.values, current.values, strict=True)
        )


def _values(counters: object, names: tuple[str, ...]) -> tuple[float, ...]:
    """The named numeric fields of a psutil counters named tuple, in the given order."""
    return tuple(float(getattr(counters, name)) for name in names)


def _busy_and_total(before: Mapping[str, float], after: Mapping[str, float]) -> tuple[float, float]:
    """Busy and total CPU time between two ``cpu_times`` readings of one CPU, psutil's way.

    Each field's delta is clamped at 0 (kernel times occasionally step back); guest time is already inside
    user/nice on Linux, so it is subtracted from the total; idle and iowait are not busy.
    """
    delta = {name: max(0.0, after[name] - before.get(name, after[name])) for name in after}
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    busy = total - delta.get("idle", 0.0) - delta.get("iowait", 0.0)
    return busy, total


def _percent(part: float, whole: float) -> float:
    """``part / whole`` as a percent clamped to 0..100; 0 when ``whole`` is 0 (as psutil reports it)."""
    if whole <= 0:
        return 0.0
    return min(100.0, max(0.0, 100.0 * part / whole))
