"""HardwareMonitor through OpenTelemetry: values checked against /proc and psutil."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

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
