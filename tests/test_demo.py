"""The demo drives every catalog metric, and the command runs and stops cleanly."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_telemetry import Telemetry
from otel_telemetry.catalog import CATALOG, Instrument
from otel_telemetry.tools.demo import DemoOptions, GameSimulation, run_demo


def _points_by_name(reader: InMemoryMetricReader) -> dict[str, list[object]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[object]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_every_catalog_entry_receives_data_in_the_demo(make_telemetry: Callable[..., Telemetry]) -> None:
    """Run the simulated game briefly; list every catalog entry (with its selector) that got no data. Per-player
    series are not exported by default: they must show in ServerMetrics instead."""
    reader = InMemoryMetricReader()
    telemetry = make_telemetry(metric_readers=[reader])
    simulation = GameSimulation(telemetry, DemoOptions(players=60, seed=3))
    for _ in range(120):
        simulation.step()
    for monitor in telemetry.monitors():
        monitor.refresh(force=True)
    points = _points_by_name(reader)
    never: list[str] = []
    for spec in CATALOG:
        if spec.per_entity:
            if not all(telemetry.get_current_metrics().field_value(f.path) for f in spec.snapshot):
                never.append(f"{spec.id} (ServerMetrics)")
            continue
        matching = [
            p
            for p in points.get(spec.name, [])
            if all(dict(p.attributes or {}).get(k) == v for k, v in spec.selector.items())  # type: ignore[attr-defined]
        ]
        histogram = spec.instrument is Instrument.HISTOGRAM
        ok = any(p.count > 0 for p in matching) if histogram else bool(matching)  # type: ignore[attr-defined]
        if not ok:
            never.append(f"{spec.id} ({spec.prometheus_name})")
    assert never == []


def test_run_demo_prints_a_live_summary_and_stops_after_duration() -> None:
    """run_demo with a duration prints per-second summaries with tick rate and p95, then stops."""
    out = io.StringIO()
    code = run_demo(DemoOptions(duration=2.5, players=100, port=0, seed=1, out=out))
    text = out.getvalue()
    assert code == 0
    assert "metrics at http://127.0.0.1:" in text
    summaries = [line for line in text.splitlines() if line.startswith("tick ")]
    assert len(summaries) >= 2
    assert "p95 tick" in summaries[-1] and "players" in summaries[-1] and "cpu" in summaries[-1]
    assert text.rstrip().endswith("stopped")


def test_demo_command_line_runs_and_exits_zero() -> None:
    """`otel-telemetry demo --duration 1 --port 0` exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "otel_telemetry.tools.cli", "demo", "--duration", "1", "--port", "0", "--players", "50"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "stopped" in result.stdout


def test_demo_explains_a_busy_port() -> None:
    """When the port is taken the demo says so, suggests --port 0, and exits 2 (no traceback)."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "otel_telemetry.tools.cli", "demo", "--duration", "1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert "--port 0" in result.stderr and "Traceback" not in result.stderr
