"""File exporters: the .prom text file and the JSON document of a frame, written atomically, on a period.

Every test uses a real handle (its own providers, a real frame collection, /metrics on 127.0.0.1 port 0) and real
files under ``tmp_path``; the text file is checked with Prometheus' own linter.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, ROOT, http_get

from otel_telemetry import Telemetry
from otel_telemetry.catalog import SPEC_FIXED_PROMETHEUS_NAMES
from otel_telemetry.export.files import (
    THREAD_NAME,
    JsonFileExporter,
    MultiExporter,
    PeriodicExporter,
    PrometheusTextFileExporter,
)
from otel_telemetry.export.selftelemetry import SEED_FIXED_PROMETHEUS_NAMES
from otel_telemetry.snapshot.frame import Frame

SEED = json.loads((DATA / "seed_file_export.json").read_text(encoding="utf-8"))


def _promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    assert Path(found).exists(), "promtool is missing: `make test` installs it (scripts/install-promtool.sh)"
    return found


def _promtool_problems(path: Path) -> tuple[int, list[str]]:
    """``promtool check metrics < path``: its exit code and its findings, less the names the spec and seeds fix."""
    with open(path, "rb") as stream:
        result = subprocess.run([_promtool(), "check", "metrics"], stdin=stream, capture_output=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).decode().splitlines() if line.strip()]
    fixed = SPEC_FIXED_PROMETHEUS_NAMES | SEED_FIXED_PROMETHEUS_NAMES
    return result.returncode, [line for line in lines if line.split()[0] not in fixed]


def _handle(make_telemetry: Callable[..., Telemetry], **overrides: Any) -> Telemetry:
    """A handle that collects only when asked (the periodic thread waits an hour), serving /metrics."""
    settings: dict[str, Any] = {
        "enable_prometheus_endpoint": True,
        "collection_interval": 3600,
        "enable_hardware_metrics": False,
    }
    settings.update(overrides)
    return make_telemetry(**settings)


def _frames(telemetry: Telemetry, count: int) -> list[Frame]:
    found = []
    for _ in range(count):
        telemetry.collect()
        frame = telemetry.latest_frame()
        assert frame is not None
        found.append(frame)
    return found


def _leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tmp"))


# -- the Prometheus text file ------------------------------------------------------------------------------------
def test_textfile_holds_the_bytes_metrics_serves_and_passes_promtool(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    """The .prom file is byte for byte what /metrics serves for the same frame, and promtool finds nothing in it
    beyond the names the spec and seed 004 fix."""
    telemetry = _handle(make_telemetry)
    telemetry.performance.record_tick(0.016)
    telemetry.network.packet_received(120)
    (frame,) = _frames(telemetry, 2)[-1:]
    exporter = PrometheusTextFileExporter(tmp_path / "metrics.prom")
    exporter.export(frame)
    assert telemetry.prometheus_url is not None
    status, _headers, served = http_get(telemetry.prometheus_url)
    assert status == 200
    written = (tmp_path / "metrics.prom").read_bytes()
    assert written == served
    assert b"\ntelemetry_collection_runs_total 2.0\n" in written
    code, problems = _promtool_problems(tmp_path / "metrics.prom")
    assert problems == [], problems
    assert code in (0, 3)  # 3: lint findings only (the fixed names), never a parse error
    assert (exporter.writes, exporter.errors, exporter.skipped) == (1, 0, 0)
    assert (exporter.export_counts.attempts, exporter.export_counts.failures) == (1, 0)
    assert _leftovers(tmp_path) == []


def test_paths_and_intervals_are_checked_at_construction() -> None:
    """Seed 004's paths and interval are accepted; a text file not ending in .prom, an empty path, a directory
    name, a non-exporter or an interval that is not a positive number raise ValueError naming field and value."""
    assert PrometheusTextFileExporter(SEED["prometheus_example_path"]).path == SEED["prometheus_example_path"]
    assert JsonFileExporter(SEED["json_example_path"]).path == SEED["json_example_path"]
    exporter = PrometheusTextFileExporter(SEED["prometheus_example_path"])
    assert PeriodicExporter(exporter, None, interval=SEED["periodic_interval"]).interval == 30.0
    with pytest.raises(ValueError, match=r"PrometheusTextFileExporter\.path: must end in \.prom.*'metrics\.txt'"):
        PrometheusTextFileExporter("metrics.txt")
    with pytest.raises(ValueError, match=r"JsonFileExporter\.path: .*non-empty.*''"):
        JsonFileExporter("")
    with pytest.raises(ValueError, match=r"JsonFileExporter\.path: .*directory"):
        JsonFileExporter("exports/")
    with pytest.raises(ValueError, match=r"PrometheusTextFileExporter\.path: .*42"):
        PrometheusTextFileExporter(42)  # type: ignore[arg-type]
    for interval in (0, -1.0, math.nan, math.inf, True, "30"):
        with pytest.raises(ValueError, match=r"PeriodicExporter\.interval: .*" + repr(interval).replace("'", ".")):
            PeriodicExporter(exporter, None, interval=interval)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PeriodicExporter\.exporter: .*'not an exporter'"):
        PeriodicExporter("not an exporter", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"MultiExporter\.exporters\[1\]: .*None"):
        MultiExporter(exporter, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PeriodicExporter\.source: .*None"):
        PeriodicExporter(exporter, None).start()


def test_export_metrics_takes_the_first_frame_when_there_is_none(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    """Seed 004's call, ``export_metrics(collector)``, on a handle with no frame yet takes one and writes it; on a
    handle that is disabled there is nothing to write, which is counted in ``skipped``."""
    telemetry = _handle(make_telemetry)
    assert telemetry.latest_frame() is None
    exporter = PrometheusTextFileExporter(tmp_path / "first.prom")
    exporter.export_metrics(telemetry)
    assert telemetry.latest_frame() is not None
    assert b"# TYPE telemetry_collection_runs_total counter" in (tmp_path / "first.prom").read_bytes()
    disabled = make_telemetry(enabled=False)
    idle = JsonFileExporter(tmp_path / "disabled.json")
    idle.export_metrics(disabled)
    assert (idle.writes, idle.errors, idle.skipped) == (0, 0, 1)
    assert not (tmp_path / "disabled.json").exists()


# -- the JSON document -------------------------------------------------------------------------------------------
def test_json_document_has_the_seed_shape_and_the_exposition_series(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    """Seed 004's keys (timestamp, metrics {name: {value, labels, timestamp}}, events_count, running); one entry per
    series of the text exposition, keyed as /metrics writes it; histograms with count, sum and cumulative buckets."""
    telemetry = _handle(make_telemetry)

    @telemetry.traced
    def join() -> None:
        pass

    for _ in range(3):
        join()
    telemetry.network.packet_latency(30.0)  # ms; the histogram is in seconds
    (frame,) = _frames(telemetry, 2)[-1:]
    exporter = JsonFileExporter(tmp_path / "metrics.json", running=lambda: False)
    exporter.export(frame)
    document = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    example = SEED["json_example"]
    assert set(example) <= set(document)
    assert document["timestamp"] == frame.time_unix_nano / 1e9
    assert document["sequence"] == frame.sequence
    assert document["running"] is False
    assert document["events_count"] == 0  # this handle does not count events (telemetry.events is absent)
    metrics = document["metrics"]
    for entry in metrics.values():
        assert set(entry) >= {"labels", "timestamp", "type"}
        assert entry["timestamp"] == document["timestamp"]
        assert ("value" in entry) != (entry["type"] == "histogram")
    runs = metrics["telemetry_collection_runs_total"]
    assert runs == {"type": "counter", "value": 2.0, "labels": {}, "timestamp": document["timestamp"]}
    requests = [entry for key, entry in metrics.items() if key.startswith("handler_requests_total{")]
    assert [entry["value"] for entry in requests] == [3.0]
    assert requests[0]["labels"]["handler"].endswith("join")
    latency = metrics["server_network_packet_latency_seconds"]
    assert latency["type"] == "histogram" and latency["count"] == 1.0 and latency["sum"] == pytest.approx(0.030)
    buckets = list(latency["buckets"].items())
    assert buckets[-1] == ("+Inf", 1.0)
    assert [count for _bound, count in buckets] == sorted(count for _bound, count in buckets)
    # Every sample line of the text exposition has its entry (a histogram's lines under their family).
    text = PrometheusTextFileExporter(tmp_path / "same.prom")
    text.export(frame)
    exposition = (tmp_path / "same.prom").read_text(encoding="utf-8")
    histograms = set(re.findall(r"^# TYPE (\S+) histogram$", exposition, re.M))
    parts = {f"{family}{suffix}" for family in histograms for suffix in ("_bucket", "_count", "_sum")}
    series = [line.rsplit(" ", 1)[0] for line in exposition.splitlines() if line and not line.startswith("#")]
    plain = [key for key in series if key.split("{", 1)[0] not in parts]
    assert set(plain) <= set(metrics)
    counts = [key for key in series if key.split("{", 1)[0] in {f"{family}_count" for family in histograms}]
    assert len(metrics) == len(plain) + len(counts)  # one entry per histogram series
    assert {key.split("{", 1)[0] for key, entry in metrics.items() if entry["type"] == "histogram"} == histograms


# -- atomic replacement and I/O errors -----------------------------------------------------------------------------
def test_a_reader_never_sees_a_partial_file(make_telemetry: Callable[..., Telemetry], tmp_path: Path) -> None:
    """While one thread rewrites the file with two different frames, a reader in a loop only ever reads one whole
    file or the other, and no temporary file is left behind."""
    telemetry = _handle(make_telemetry)
    (first,) = _frames(telemetry, 1)
    telemetry.network.packet_received(99)
    telemetry.performance.record_tick(0.020)
    (second,) = _frames(telemetry, 1)
    path = tmp_path / "metrics.prom"
    exporter = PrometheusTextFileExporter(path)
    wholes = set()
    for frame in (first, second):
        exporter.export(frame)
        wholes.add(path.read_bytes())
    assert len(wholes) == 2
    writes = 300
    done = threading.Event()

    def write() -> None:
        try:
            for index in range(writes):
                exporter.export(first if index % 2 else second)
        finally:
            done.set()

    writer = threading.Thread(target=write, name="test-writer")
    writer.start()
    reads: list[bytes] = []
    for _ in range(100_000):  # bounded; the writer ends long before
        reads.append(path.read_bytes())
        if done.is_set():
            break
    writer.join(30)
    assert not writer.is_alive()
    assert reads and set(reads) <= wholes
    assert exporter.writes == writes + 2 and exporter.errors == 0
    assert _leftovers(tmp_path) == []


def test_io_errors_are_counted_logged_once_and_retried(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A path that is a directory, or whose directory is missing (or not writable), or a document that cannot be
    rendered, never raises: each failed export counts in ``errors`` and as a failed attempt, is logged once, and
    the next export succeeds once the path is usable again."""
    telemetry = _handle(make_telemetry)
    (frame,) = _frames(telemetry, 1)
    blocked = tmp_path / "blocked.prom"
    blocked.mkdir()
    exporter = PrometheusTextFileExporter(blocked)
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.export.files"):
        exporter.export(frame)
        exporter.export(frame)
    assert (exporter.writes, exporter.errors) == (0, 2)
    assert (exporter.export_counts.attempts, exporter.export_counts.failures) == (2, 2)
    assert len([r for r in caplog.records if "blocked.prom" in r.getMessage()]) == 1
    blocked.rmdir()
    exporter.export(frame)
    assert (exporter.writes, exporter.errors) == (1, 2)
    assert blocked.read_bytes().startswith(b"# HELP target_info")

    missing = JsonFileExporter(tmp_path / "missing" / "metrics.json")
    missing.export_metrics(telemetry)
    assert (missing.writes, missing.errors) == (0, 1)
    (tmp_path / "missing").mkdir()
    missing.export_metrics(telemetry)
    assert (missing.writes, missing.errors) == (1, 1)

    def unknown() -> bool:
        raise RuntimeError("state unknown")

    unrenderable = JsonFileExporter(tmp_path / "unrenderable.json", running=unknown)
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.export.files"):
        unrenderable.export(frame)
    assert (unrenderable.writes, unrenderable.errors) == (0, 1)
    assert not (tmp_path / "unrenderable.json").exists()
    assert any("state unknown" in r.getMessage() for r in caplog.records)

    if os.geteuid() != 0:  # root writes into read-only directories anyway
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            refused = PrometheusTextFileExporter(locked / "metrics.prom")
            refused.export(frame)
            assert (refused.writes, refused.errors) == (0, 1)
        finally:
            locked.chmod(0o700)
    assert _leftovers(tmp_path) == []


# -- several exporters, and the period -------------------------------------------------------------------------------
class _Exploding:
    """An exporter of the application's own that raises."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, frame: Frame) -> None:
        self.calls += 1
        raise RuntimeError(f"cannot export frame {frame.sequence}")


def test_multi_exporter_hands_each_frame_to_all_and_contains_a_failure(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    """MultiExporter writes the .prom and the JSON file for one frame; an exporter that raises is counted in
    ``failures`` and does not stop the ones after it."""
    telemetry = _handle(make_telemetry)
    text = PrometheusTextFileExporter(tmp_path / "m.prom")
    document = JsonFileExporter(tmp_path / "m.json")
    exploding = _Exploding()
    both = MultiExporter(text, exploding, document)
    both.export_metrics(telemetry)
    both.export_metrics(telemetry)
    assert (text.writes, document.writes, exploding.calls) == (2, 2, 2)
    assert (both.writes, both.failures, both.errors) == (4, 2, 2)
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["telemetry_collection_runs_total"]["value"] == 1.0


def test_on_frame_exports_once_per_interval_of_frame_time(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    """As a frame listener with interval 30 s over frames 1 s apart (with jitter), the first frame and every 30th
    after it are exported: 4 exports over 91 frames, never two within the interval."""
    telemetry = _handle(make_telemetry)
    (frame,) = _frames(telemetry, 1)
    exporter = PrometheusTextFileExporter(tmp_path / "m.prom")
    periodic = PeriodicExporter(exporter, telemetry, interval=30.0)
    exported: list[float] = []
    for index in range(91):
        moment = 1000.0 + index + (0.004 if index % 3 else -0.004)
        periodic.on_frame(replace(frame, monotonic=moment))
        if exporter.writes > len(exported):
            exported.append(moment)
    assert len(exported) == 4 and periodic.exports == 4 and periodic.failures == 0
    gaps = [later - earlier for earlier, later in itertools.pairwise(exported)]
    assert all(29.5 <= gap <= 30.5 for gap in gaps), gaps


def test_periodic_thread_exports_until_stopped_and_is_gone(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    """start() exports every interval on a thread named otel-telemetry-file-export (starting twice starts one);
    stop() ends it within its timeout, the thread is gone and the file stops changing."""
    telemetry = _handle(make_telemetry)
    exporter = JsonFileExporter(tmp_path / "m.json")
    periodic = PeriodicExporter(exporter, telemetry, interval=0.05)
    before = {thread.name for thread in threading.enumerate()}
    assert THREAD_NAME not in before
    periodic.start()
    periodic.start()
    assert [t.name for t in threading.enumerate()].count(THREAD_NAME) == 1
    deadline = time.monotonic() + 10.0
    while exporter.writes < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert exporter.writes >= 3 and exporter.errors == 0
    assert periodic.stop(timeout=2.0) is True
    assert not periodic.running
    assert THREAD_NAME not in {thread.name for thread in threading.enumerate()}
    stopped_at = exporter.writes
    time.sleep(0.2)
    assert exporter.writes == stopped_at
    assert periodic.stop(timeout=0.1) is True  # idempotent
    document = json.loads((tmp_path / "m.json").read_text())
    assert document["running"] is True and document["sequence"] == 1  # the one frame the handle took
