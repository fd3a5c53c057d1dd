"""HardwareMonitor through OpenTelemetry: values checked against /proc and psutil."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from instrumentations.hardware import HardwareMonitor
from otel_telemetry import Telemetry
from otel_telemetry.snapshot.frame import points, value


def _meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_exported_hardware_values_match_proc(make_telemetry: Callable[..., Telemetry]) -> None:
    """Memory total equals /proc/meminfo, one per-core series per CPU, load average as /proc/loadavg."""
    telemetry = make_telemetry()
    # CPU percentages need CPU time to have passed since the sampler's baseline (a 10 ms kernel tick at least):
    # a reading right after start is None by design (never a fake 0). Spin briefly so the kernel counts some.
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        sum(range(1000))
    data = telemetry.collect()
    assert value(data, "server.memory.total") == _meminfo_total()
    cores = points(data, "server.cpu.core.usage")
    assert len(cores) == psutil.cpu_count() == os.cpu_count()
    assert all(0.0 <= p.value <= 100.0 for p in cores)
    load = {p.attributes["period"]: p.value for p in points(data, "server.cpu.load_average")}
    assert set(load) == {"1m", "5m", "15m"}
    proc = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    assert load["1m"] == pytest.approx(proc[0], abs=0.5)
    used = value(data, "server.memory.used")
    assert used is not None and 0 < used < _meminfo_total()


def test_hardware_can_be_turned_off(make_telemetry: Callable[..., Telemetry]) -> None:
    """enable_hardware_metrics=False: no hardware monitor and no hardware metrics."""
    telemetry = make_telemetry(enable_hardware_metrics=False)
    assert telemetry.hardware is None
    assert points(telemetry.collect(), "server.cpu.usage") == []


def _hardware_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("otel-telemetry-hardware") and t.is_alive()]


def test_sampling_runs_on_its_own_thread_and_ends_with_close() -> None:
    """A refresh publishes the latest sample of the sampling thread (a new one every refresh interval) without
    reading psutil itself; close() ends the sampling and reader threads and returns True."""
    monitor = HardwareMonitor(refresh_interval=0.05)
    try:
        first = monitor.sample()  # the first reading, taken by the first refresh
        assert "otel-telemetry-hardware" in _hardware_threads()
        deadline = time.monotonic() + 5
        while monitor.sample() is first and time.monotonic() < deadline:
            time.sleep(0.02)
        later = monitor.sample()
        assert later is not first and later.timestamp > first.timestamp
        assert monitor.stuck_samples == 0 and set(monitor.stuck) == set(monitor.errors)
    finally:
        assert monitor.close(timeout=2.0)
    assert _hardware_threads() == []
    stopped = monitor.sample()
    time.sleep(0.15)
    assert monitor.sample() is stopped and _hardware_threads() == []  # closed: no sampling until attached again


def test_hardware_threads_are_gone_after_shutdown(make_telemetry: Callable[..., Telemetry]) -> None:
    """The sampling thread and the psutil reader thread of a handle end with its shutdown."""
    telemetry = make_telemetry(collection_interval=0.2)
    telemetry.collect()
    time.sleep(0.2)
    assert _hardware_threads() != []
    assert telemetry.shutdown(timeout=5.0)
    assert _hardware_threads() == []
