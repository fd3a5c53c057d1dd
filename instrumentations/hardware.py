"""HardwareMonitor: CPU, load, memory, memory pressure, disk and NIC rates from psutil, as observable gauges.

Sampling happens on a thread of its own (``otel-telemetry-hardware``), every refresh interval, never on the game
loop nor on the collection path: a collection reads the latest finished sample and never waits for psutil. Each
psutil call has a deadline (``source_timeout``, 1 s by default: the calls take 1 µs to 0.3 ms here, so a call
past a second is stuck, not slow). A psutil call that fails drops only the data points it feeds; the failures are
counted per source in ``errors``. A call that is stuck is abandoned to its thread, its data points are dropped
(``None`` in :class:`HardwareSample`, listed in ``stuck_sources``) until it returns, and every reading lost so is
counted in ``stuck`` / ``stuck_samples``, with one warning per source.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from opentelemetry.metrics import Meter

from instrumentations._base import Monitor, Points, single
from instrumentations._hardware_sampler import HardwareSample, HardwareSampler
from otel_telemetry.catalog import Section
from otel_telemetry.pacing import LoopPacer, Phase

__all__ = ["SAMPLER_THREAD_NAME", "SOURCE_TIMEOUT", "HardwareInstrumentor", "HardwareMonitor", "HardwareSample"]  # noqa: F822  (the instrumentor: module __getattr__)

_logger = logging.getLogger(__name__)

_PERIODS = ("1m", "5m", "15m")

#: Default deadline of one psutil call, seconds.
SOURCE_TIMEOUT = 1.0
#: The name of the monitor's sampling thread.
SAMPLER_THREAD_NAME = "otel-telemetry-hardware"


class HardwareMonitor(Monitor):
    """Host hardware state for the spec's "Hardware Metrics".

    Memory pressure is reported as three indicators, each a percentage: ``unavailable`` = 100 × (1 − available /
    total) (how much memory the kernel could not hand to new work without reclaiming), ``swap_used`` (swap in use),
    and ``psi_some_avg10`` (Linux pressure-stall information: share of the last 10 s in which some task waited for
    memory; only where ``/proc/pressure/memory`` is readable).

    Sampling: the first reading is taken by the first refresh (on the caller's thread, each psutil call bounded by
    ``source_timeout``), which also starts the sampling thread; from then on that thread takes one sample every
    ``refresh_interval`` seconds and a refresh only publishes the latest finished one. ``refresh(force=True)``
    takes a sample now (bounded the same way). :meth:`attach` starts the thread; :meth:`detach` and
    :meth:`close` stop it (and the sampler's reader thread), and no sampling happens again until the next
    :meth:`attach`.

    Thread-safety: every method may be called from any thread.
    """

    section = Section.HARDWARE

    def __init__(
        self,
        *,
        refresh_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sampler: HardwareSampler | None = None,
        source_timeout: float = SOURCE_TIMEOUT,
        pacer: LoopPacer | None = None,
    ) -> None:
        super().__init__(refresh_interval=refresh_interval, clock=clock)
        #: Sampling waits for an idle gap of the game loop (psutil calls hold the GIL while they read /proc). The
        #: reads run on the sampler's reader thread while this one waits: their wall time is what is learnt.
        self._phase = Phase(pacer, initial=0.002, timeout=refresh_interval / 2, clock=time.perf_counter)
        self._sampler = sampler or HardwareSampler(
            min_interval=min(0.2, refresh_interval), source_timeout=source_timeout
        )
        self._sample: HardwareSample | None = None
        self._latest: HardwareSample | None = None  # the newest finished sample, published by the sampling thread
        self._sampling_lock = threading.Lock()
        self._sampling: threading.Thread | None = None
        self._stop = threading.Event()
        self._stopped = False  # detached or closed: no sampling until attached again

    @property
    def errors(self) -> Mapping[str, int]:
        """Failed psutil calls per source (cpu, loadavg, memory, swap, psi, disk, nic)."""
        return self._sampler.errors

    @property
    def stuck(self) -> Mapping[str, int]:
        """Readings lost to a stuck psutil call, per source (see :attr:`HardwareSampler.stuck`)."""
        return self._sampler.stuck

    @property
    def stuck_samples(self) -> int:
        """All readings lost to stuck psutil calls (the sum of :attr:`stuck`): a drop count for self-telemetry."""
        return sum(self._sampler.stuck.values())

    def sample(self) -> HardwareSample:
        """The latest sample (refreshing first when due)."""
        self.refresh()
        if self._sample is None:  # stopped before any sample was taken
            self._sample = self._latest = self._sampler.sample()
        return self._sample

    def refresh(self, force: bool = False) -> None:
        """Publish the latest finished sample if ``refresh_interval`` has passed (see the class docstring)."""
        if not self._stopped:
            if force or self._latest is None:
                self._latest = self._sampler.sample()  # bounded: each psutil call has its deadline
            self._start_sampling()
        super().refresh(force)

    def _refresh(self, now: float) -> None:
        self._sample = self._latest

    # -- the sampling thread ----------------------------------------------------------------------------------------
    def attach(self, meter: Meter) -> None:
        """Create the instruments on ``meter`` (see :meth:`Monitor.attach`) and start sampling."""
        super().attach(meter)
        with self._sampling_lock:
            self._stopped = False
        self._start_sampling()

    def attach_produced(self) -> None:
        """Report through :meth:`scalar_points` (see :meth:`Monitor.attach_produced`) and start sampling."""
        super().attach_produced()
        with self._sampling_lock:
            self._stopped = False
        self._start_sampling()

    def detach(self) -> None:
        """Stop reporting and sampling (the threads end within about a second; use :meth:`close` to wait)."""
        super().detach()
        self.close(timeout=1.0, wait_for_stuck=False)

    def close(self, timeout: float = 2.0, *, wait_for_stuck: bool = True) -> bool:
        """Stop the sampling thread and the sampler's reader thread; True when both ended within ``timeout``.

        A psutil call that is stuck keeps its thread until it returns: with ``wait_for_stuck`` (the default) it is
        waited for within ``timeout`` and counted as not ended. :meth:`attach` starts sampling again.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._sampling_lock:
            self._stopped = True
            self._stop.set()
            thread, self._sampling = self._sampling, None
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        closed = self._sampler.close(max(0.0, deadline - time.monotonic()), wait_for_stuck=wait_for_stuck)
        return closed and (thread is None or not thread.is_alive())

    def _start_sampling(self) -> None:
        if self._sampling is not None:
            return
        with self._sampling_lock:
            if self._stopped or self._sampling is not None:
                return
            self._stop = threading.Event()
            thread = threading.Thread(target=self._run, args=(self._stop,), name=SAMPLER_THREAD_NAME, daemon=True)
            self._sampling = thread
        try:
            thread.start()
        except RuntimeError:  # no more threads: refreshes keep publishing the last sample
            _logger.exception("could not start the hardware sampling thread")
            with self._sampling_lock:
                self._sampling = None
                self._stopped = True

    def _run(self, stop: threading.Event) -> None:
        warned = False
        while not stop.wait(self._refresh_interval):
            taken: list[HardwareSample] = []
            try:
                self._phase.run(lambda taken=taken: taken.append(self._sampler.sample()))  # type: ignore[misc]
                sample = taken[0]
            except Exception:  # sample() never raises by contract; keep sampling if it ever does
                if not warned:
                    warned = True
                    _logger.exception("hardware sampling failed (logged once)")
                continue
            if not stop.is_set():
                self._latest = sample
        self._sampler.close(0.0, wait_for_stuck=False)  # the reader thread ends with us

    def _observers(self) -> Mapping[str, Callable[[], Points]]:
        def field(name: str) -> Callable[[], Points]:
            return lambda: single(getattr(self._sample, name, None))

        def per_core() -> Points:
            cores = self._sample.cpu_percent_per_core if self._sample else None
            return [(v, {"cpu": str(i)}) for i, v in enumerate(cores or ())]

        def load() -> Points:
            loads = self._sample.load_average if self._sample else None
            return [(v, {"period": p}) for p, v in zip(_PERIODS, loads or (), strict=False)]

        def pressure() -> Points:
            indicators = self._sample.memory_pressure if self._sample else {}
            return [(v, {"indicator": k}) for k, v in indicators.items()]

        return {
            "server.cpu.usage": field("cpu_percent"),
            "server.cpu.core.usage": per_core,
            "server.cpu.load_average": load,
            "server.memory.total": field("memory_total_bytes"),
            "server.memory.used": field("memory_used_bytes"),
            "server.memory.free": field("memory_free_bytes"),
            "server.memory.usage": field("memory_usage_percent"),
            "server.memory.pressure": pressure,
            "server.disk.read": field("disk_read_bytes_per_sec"),
            "server.disk.write": field("disk_write_bytes_per_sec"),
            "server.disk.read_operations": field("disk_read_ops_per_sec"),
            "server.disk.write_operations": field("disk_write_ops_per_sec"),
            "server.nic.received": field("nic_bytes_recv_per_sec"),
            "server.nic.sent": field("nic_bytes_sent_per_sec"),
            "server.nic.received_packets": field("nic_packets_recv_per_sec"),
            "server.nic.sent_packets": field("nic_packets_sent_per_sec"),
        }


def __getattr__(name: str) -> object:
    # The entry-point class loads OpenTelemetry's instrumentation machinery (wrapt, semconv): only when asked for.
    if name == "HardwareInstrumentor":
        from instrumentations._instrumentors import HardwareInstrumentor

        return HardwareInstrumentor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
