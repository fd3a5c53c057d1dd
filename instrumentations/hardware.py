"""HardwareMonitor: CPU, load, memory, memory pressure, disk and NIC rates from psutil, as observable gauges.

Sampling happens at collection time on the collecting thread (never the game loop), at most once per refresh
interval however many readers collect. A psutil call that fails drops only the data points it feeds; the failures
are counted per source in ``errors``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from instrumentations._base import Monitor, Points, single
from instrumentations._hardware_sampler import HardwareSample, HardwareSampler
from otel_telemetry.catalog import Section

__all__ = ["HardwareInstrumentor", "HardwareMonitor", "HardwareSample"]

_PERIODS = ("1m", "5m", "15m")


class HardwareMonitor(Monitor):
    """Host hardware state for the spec's "Hardware Metrics".

    Memory pressure is reported as three indicators, each a percentage: ``unavailable`` = 100 × (1 − available /
    total) (how much memory the kernel could not hand to new work without reclaiming), ``swap_used`` (swap in use),
    and ``psi_some_avg10`` (Linux pressure-stall information: share of the last 10 s in which some task waited for
    memory; only where ``/proc/pressure/memory`` is readable).
    """

    section = Section.HARDWARE

    def __init__(
        self,
        *,
        refresh_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sampler: HardwareSampler | None = None,
    ) -> None:
        super().__init__(refresh_interval=refresh_interval, clock=clock)
        self._sampler = sampler or HardwareSampler(min_interval=min(0.2, refresh_interval))
        self._sample: HardwareSample | None = None

    @property
    def errors(self) -> Mapping[str, int]:
        """Failed psutil calls per source (cpu, loadavg, memory, swap, psi, disk, nic)."""
        return self._sampler.errors

    def sample(self) -> HardwareSample:
        """The latest sample (refreshing first when due)."""
        self.refresh()
        assert self._sample is not None
        return self._sample

    def _refresh(self, now: float) -> None:
        self._sample = self._sampler.sample()

    def _observers(self) -> Mapping[str, Callable[[], Points]]:
        def field(name: str) -> Callable[[], Points]:
            return lambda: single(getattr(self._sample, name))

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


class HardwareInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Entry-point instrumentor: ``instrument(meter_provider=...)`` attaches a :class:`HardwareMonitor`.

    On an OpenTelemetry SDK ``MeterProvider`` (the one ``opentelemetry-instrument`` configures, for example) every
    reader also receives the monitor's histograms; see :mod:`instrumentations._wiring`. The monitor is published on
    the class as :attr:`monitor` (``HardwareInstrumentor.monitor``) until ``uninstrument()``; instrumenting again on
    the same provider resumes the same monitor.
    """

    monitor: HardwareMonitor | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("psutil >= 5.9",)

    def _instrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import instrument_monitor

        # Published on the class: the instrumentor is a singleton and its monitor process-wide.
        type(self).monitor = instrument_monitor(HardwareMonitor, kwargs.get("meter_provider"), HardwareMonitor)

    def _uninstrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import detach_monitor

        monitor = type(self).monitor
        if monitor is not None:
            detach_monitor(monitor)
            type(self).monitor = None
