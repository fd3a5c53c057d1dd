"""Self-telemetry: seed 004's telemetry_* names on real scrapes, and its sample alert in a real Prometheus.

The collection is the real one (``FrameCollector`` over a real ``MeterProvider``, or a whole handle); the alert test
runs ``.venv/bin/prometheus`` against a handle's ``/metrics`` on 127.0.0.1, with the seed's two rules checked by
``promtool check rules``, and asks its HTTP API. Every wait is bounded; the process is stopped by its pid.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, ROOT, http_get
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_telemetry import Telemetry
from otel_telemetry.export.prometheus import PrometheusExposition
from otel_telemetry.export.selftelemetry import (
    SEED_FIXED_PROMETHEUS_NAMES,
    ExportCounts,
    metric_families,
    register_self_telemetry,
)
from otel_telemetry.producer import HistogramProducer
from otel_telemetry.series import SeriesRegistry
from otel_telemetry.snapshot.collection import FrameCollector, FrameReader
from otel_telemetry.snapshot.frame import Frame

SEED = json.loads((DATA / "seed_file_export.json").read_text(encoding="utf-8"))
PROMETHEUS_BUDGET = 30.0  # seconds for the whole Prometheus test


def _binary(name: str) -> str:
    found = ROOT / ".venv" / "bin" / name
    path = str(found) if found.exists() else shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is missing: run `make test` (scripts/install-promtool.sh installs promtool and prometheus)"
        )
    return path


class _Pipeline:
    """A real collection without a handle: provider, frame reader, producer and collector, self-telemetry on it."""

    def __init__(self, events: Callable[[], int] | None = None, drops: Callable[[], list[Any]] | None = None) -> None:
        self.reader = FrameReader()
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        producer = HistogramProducer(InstrumentationScope("test"))
        self.collector = FrameCollector(self.reader, producer, Resource.create({}), "self-1", 3600)
        self.counts = ExportCounts("file")
        self.own = register_self_telemetry(
            producer,
            self.collector,
            [self.counts],
            [drops] if drops is not None else [],
            events=events,
        )

    def frame(self) -> Frame:
        frame = self.collector.collect()
        assert frame is not None
        return frame

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def pipeline() -> Iterator[Callable[..., _Pipeline]]:
    made: list[_Pipeline] = []

    def make(**options: Any) -> _Pipeline:
        made.append(_Pipeline(**options))
        return made[-1]

    yield make
    for each in made:
        each.close()


def _types(body: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))


# -- the names -------------------------------------------------------------------------------------------------
def test_seed_names_on_a_real_scrape_and_the_old_name_gone(make_telemetry: Callable[..., Telemetry]) -> None:
    """After two frames, /metrics has telemetry_collection_runs_total (counter, 2), the duration gauge and
    telemetry_metrics_count (gauge: the metric families of the frame before); telemetry_collections_total is gone."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, collection_interval=3600, enable_hardware_metrics=False)
    telemetry.collect()
    first = telemetry.latest_frame()
    assert first is not None
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    body = http_get(telemetry.prometheus_url)[2].decode("utf-8")
    types = _types(body)
    runs, duration, count, _events = SEED["self_telemetry_names"]
    assert (types[runs], types[duration], types[count]) == ("counter", "gauge", "gauge")
    assert re.search(rf"^{runs} 2\.0$", body, re.M)
    assert re.search(rf"^{duration} \d", body, re.M)
    assert re.search(rf"^{count} {metric_families(first)}\.0$", body, re.M)
    assert "telemetry_collections" not in body
    assert {count} == SEED_FIXED_PROMETHEUS_NAMES  # the one seed name promtool's lint flags (_count on a gauge)


def test_events_counter_reports_the_callable_and_is_absent_without_one(pipeline: Callable[..., _Pipeline]) -> None:
    """With ``events=`` the frame has telemetry.events (telemetry_events_total on Prometheus) equal to what the
    callable returns at each collection; without it there is no such instrument."""
    recorded = [150]
    counted = pipeline(events=lambda: recorded[0])
    assert counted.frame().value("telemetry.events") == 150.0
    recorded[0] = 152
    frame = counted.frame()
    assert frame.value("telemetry.events") == 152.0
    text = PrometheusExposition(lambda: None).text(frame).decode("utf-8")
    assert _types(text)[SEED["self_telemetry_names"][3]] == "counter"
    assert re.search(r"^telemetry_events_total 152\.0$", text, re.M)
    assert pipeline().frame().points("telemetry.events") == []


def test_metrics_count_is_the_previous_frames_families(pipeline: Callable[..., _Pipeline]) -> None:
    """telemetry.metrics.count is absent from the first frame and then the number of distinct metrics of the
    frame before (the second frame adds the count and the last collection's duration; then it holds steady)."""
    own = pipeline(events=lambda: 0)
    first = own.frame()
    assert first.points("telemetry.metrics.count") == []
    second = own.frame()
    assert second.value("telemetry.metrics.count") == metric_families(first)
    third = own.frame()
    assert metric_families(second) == metric_families(first) + 2
    assert third.value("telemetry.metrics.count") == metric_families(second) == metric_families(third)


def test_a_failing_source_is_counted_logged_once_and_reported_as_dropped(
    pipeline: Callable[..., _Pipeline], caplog: pytest.LogCaptureFixture
) -> None:
    """An events callable that raises never stops the collection: each failure counts in callback_errors, is
    logged once, and shows as telemetry_dropped_total{source="self_telemetry",reason="callback_error"}."""

    def broken() -> int:
        raise RuntimeError("event store unavailable")

    own = pipeline(events=broken)
    with caplog.at_level(logging.ERROR, logger="otel_telemetry.export.selftelemetry"):
        own.frame()
        frame = own.frame()
    assert own.own.callback_errors == 2
    assert len([r for r in caplog.records if "telemetry.events" in r.getMessage()]) == 1
    assert frame.points("telemetry.events") == []
    reported = frame.value("telemetry.dropped", source="self_telemetry", reason="callback_error")
    assert reported is not None and reported >= 1.0
    assert frame.value("telemetry.collection.runs") == 2.0


def test_the_namespace_reserves_the_seed_names() -> None:
    """The four seed names belong to self-telemetry in every handle's registry: a facade metric meeting one is
    refused."""
    registry = SeriesRegistry()
    for name in SEED["self_telemetry_names"]:
        family = registry.occupant(name)
        assert family is not None and family.owner == "self-telemetry", name
    assert registry.claim("telemetry.events", "", "counter", "metrics") is None
    assert registry.claim("telemetry_metrics_count", "", "gauge", "metrics") is None
    assert registry.occupant("telemetry_collections_total") is None


# -- the seed's sample alert in a real Prometheus ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def _wait(what: str, check: Callable[[], bool], deadline: float, log: Path) -> None:
    while True:
        try:
            if check():
                return
        except OSError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def test_seed_alert_finds_its_series_in_a_real_prometheus(
    make_telemetry: Callable[..., Telemetry], tmp_path: Path
) -> None:
    """promtool accepts the seed's two rules; a real Prometheus scraping a handle every second stores
    telemetry_collection_runs_total, sees it increase over 5m, evaluates both rules healthily, and
    TelemetryCollectionFailed is neither pending nor firing; its scrapes were answered with the text format."""
    deadline = time.monotonic() + PROMETHEUS_BUDGET
    rules = tmp_path / "telemetry-rules.yml"
    rules.write_text(json.dumps(SEED["sample_alert_rules"], indent=2) + "\n", encoding="utf-8")  # JSON is YAML
    checked = subprocess.run(
        [_binary("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "2 rules found" in checked.stdout

    telemetry = make_telemetry(enable_prometheus_endpoint=True, collection_interval=0.2, enable_hardware_metrics=False)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "game-server", "static_configs": [{"targets": [f"127.0.0.1:{telemetry.prometheus_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "prometheus.log"
    with open(log, "w", encoding="utf-8") as errors:
        process = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    try:
        _wait(
            "Prometheus to be ready",
            lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200,
            deadline,
            log,
        )

        def increasing() -> bool:
            return bool(_api(base, "query", query="increase(telemetry_collection_runs_total[5m]) > 0")["result"])

        _wait("increase(telemetry_collection_runs_total[5m]) > 0", increasing, deadline, log)
        series = _api(base, "series", **{"match[]": "telemetry_collection_runs_total"})
        assert len(series) == 1 and series[0]["job"] == "game-server", series
        increase = _api(base, "query", query="increase(telemetry_collection_runs_total[5m])")["result"]
        assert len(increase) == 1 and float(increase[0]["value"][1]) > 0
        assert _api(base, "query", query=SEED["sample_alert_rules"]["groups"][0]["rules"][0]["expr"])["result"] == []
        evaluated_after = time.time()

        def evaluated() -> bool:
            groups = _api(base, "rules")["groups"]
            found = [rule for group in groups for rule in group["rules"]]
            return len(found) == 2 and all(
                rule["health"] == "ok" and _stamp(rule["lastEvaluation"]) > evaluated_after for rule in found
            )

        _wait("both rules evaluated after the increase was seen", evaluated, deadline, log)
        # Prometheus' Accept lists OpenMetrics first and the text format after it: the text rendered ahead was served
        # (each such scrape counts as an attempt of the "prometheus" exporter).
        served = _api(base, "query", query='telemetry_exporter_attempts_total{exporter="prometheus"} > 0')["result"]
        assert len(served) == 1, served
        assert _api(base, "query", query='ALERTS{alertname="TelemetryCollectionFailed"}')["result"] == []
        alerts = _api(base, "alerts")["alerts"]
        assert [a for a in alerts if a["labels"]["alertname"] == "TelemetryCollectionFailed"] == []
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(tmp_path / "data", ignore_errors=True)


def _stamp(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time as Prometheus writes it (nanosecond fractions allowed)."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert match is not None, text
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(match[1] + zone).timestamp() + (float("0." + match[2]) if match[2] else 0.0)


# -- pacing ------------------------------------------------------------------------------------------------------
def _loop(telemetry: Telemetry, seconds: float, work: float, period: float) -> None:
    """A game loop of ``period`` seconds per tick with ``work`` seconds of busy work each, for ``seconds``."""
    end = time.perf_counter() + seconds
    next_at = time.perf_counter()
    while time.perf_counter() < end:
        with telemetry.performance.tick():
            busy_until = time.perf_counter() + work
            while time.perf_counter() < busy_until:
                pass
        next_at += period
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)


def test_pacing_waits_show_gaps_found_and_work_forced_into_a_loop_without_idle_time(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    """telemetry_pacing_waits_total{outcome}: a 60 Hz loop with idle time lets background steps fit in its gaps;
    a loop that never idles makes them wait their timeout and run anyway, counted as forced."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, collection_interval=0.25, enable_hardware_metrics=False)
    _loop(telemetry, 1.5, work=0.002, period=1 / 60)
    telemetry.collect()
    frame = telemetry.latest_frame()
    assert frame is not None
    fitted, forced_before = (frame.value("telemetry.pacing.waits", outcome=o) for o in ("fitted", "forced"))
    assert fitted is not None and fitted >= 3  # several collections (and their listeners) found a gap
    _loop(telemetry, 1.5, work=0.005, period=0.0)  # ticks back to back: no idle time at all
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    body = http_get(telemetry.prometheus_url)[2].decode("utf-8")
    assert _types(body)["telemetry_pacing_waits_total"] == "counter"
    samples = dict(re.findall(r'^telemetry_pacing_waits_total\{outcome="(\w+)"\} (\S+)$', body, re.M))
    assert samples.keys() == {"fitted", "oversized", "forced"}
    assert float(samples["forced"]) >= (forced_before or 0.0) + 1
