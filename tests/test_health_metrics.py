"""The health registry on /metrics: health_status, health_checks_total, health_check_duration_seconds."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_telemetry import setup_telemetry
from otel_telemetry.recording.health import HealthStatus
from otel_telemetry.telemetry import Telemetry


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    handle = setup_telemetry(
        enable_prometheus_endpoint=True, prometheus_port=0, prometheus_host="127.0.0.1", server_id="health-metrics"
    )
    try:
        yield handle
    finally:
        assert handle.shutdown(timeout=5.0)


def _samples(telemetry: Telemetry) -> dict[tuple[str, str], float]:
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    with urllib.request.urlopen(telemetry.prometheus_url, timeout=10) as response:
        body = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name.startswith("health_"):
                found[(sample.name, sample.labels["component"])] = sample.value
    return found


def test_status_runs_and_duration_per_component(telemetry: Telemetry) -> None:
    """Each component shows its status (1 healthy, 2 degraded, 3 unhealthy, 0 not reported yet), its check runs
    and the last run's duration, under the names collectors with health hooks use."""
    telemetry.health.set("matchmaker", HealthStatus.DEGRADED, "slow")
    telemetry.health.register_check("database", lambda: (HealthStatus.UNHEALTHY, "refused"), interval=3600)
    telemetry.health.register_check("cache", lambda: HealthStatus.HEALTHY, interval=3600, timeout=0.5)
    telemetry.health.run_checks()
    release = threading.Event()
    telemetry.health.register_check(
        "pending", lambda: HealthStatus.HEALTHY if release.wait(5.0) else HealthStatus.UNHEALTHY, timeout=10.0
    )
    try:
        samples = _samples(telemetry)
    finally:
        release.set()
    assert samples[("health_status", "matchmaker")] == 2
    assert samples[("health_status", "database")] == 3
    assert samples[("health_status", "cache")] == 1
    assert samples[("health_status", "pending")] == 0
    assert samples[("health_checks_total", "database")] >= 1
    runs, took = telemetry.health.check_runs()["cache"]
    assert samples[("health_checks_total", "cache")] == runs >= 1
    assert samples[("health_check_duration_seconds", "cache")] == pytest.approx(took)
    assert 0 <= took < 0.5
    assert ("health_checks_total", "matchmaker") not in samples  # set by hand: no check runs
