"""``/health`` answers in the shape health-checking MCP servers use, field by field, with their status codes.

The example response and the codes are in ``tests/data/seed_health_response.json`` and
``tests/data/seed_statsd_api.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import DATA, http_get

from otel_telemetry import HealthStatus, Telemetry
from otel_telemetry.recording.health import HealthRegistry, status_label

EXAMPLE: dict[str, Any] = json.loads((DATA / "seed_health_response.json").read_text(encoding="utf-8"))
CODES: dict[str, int] = json.loads((DATA / "seed_statsd_api.json").read_text(encoding="utf-8"))["health_codes"]


def _answer(registry: HealthRegistry, path: str = "/health") -> tuple[int, dict[str, Any]]:
    answer = registry.handle(path)
    assert answer is not None
    code, headers, body = answer
    assert ("Content-Type", "application/json") in headers
    return code, json.loads(body)


#: What our components add to the example's (name, status, message, timestamp), with their JSON types.
EXTRA_COMPONENT_KEYS = {"dependencies": list, "consecutive_failures": int, "critical": bool}


def _without_extras(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with our extra component keys checked (present, of their JSON type) and taken out."""
    components = []
    for component in body["details"]["components"]:
        for key, kind in EXTRA_COMPONENT_KEYS.items():
            assert type(component[key]) is kind, (component["name"], key)
        components.append({k: v for k, v in component.items() if k not in EXTRA_COMPONENT_KEYS})
    return {**body, "details": {**body["details"], "components": components}}


def _same_shape(found: object, expected: object, where: str) -> None:
    """Same keys at every level and the same JSON type for every value (null where the example has null)."""
    if isinstance(expected, dict):
        assert isinstance(found, dict) and set(found) == set(expected), where
        for key in expected:
            _same_shape(found[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(found, list) and len(found) == len(expected), where
        for index, (a, b) in enumerate(zip(found, expected, strict=True)):
            _same_shape(a, b, f"{where}[{index}]")
    elif expected is None:
        assert found is None, where
    else:
        assert type(found) is type(expected), f"{where}: {found!r} is not like {expected!r}"


def test_health_body_matches_the_example_field_by_field() -> None:
    """One healthy component with no message: the example's keys (plus our dependencies, consecutive_failures and
    critical), types, null message and spellings."""
    registry = HealthRegistry()
    registry.set("server", HealthStatus.HEALTHY)
    code, raw = _answer(registry)
    assert code == 200
    (server,) = raw["details"]["components"]
    assert (server["dependencies"], server["consecutive_failures"], server["critical"]) == ([], 0, True)
    body = _without_extras(raw)
    _same_shape(body, EXAMPLE, "body")
    assert body["status"] == body["details"]["status"] == EXAMPLE["status"]
    (component,) = body["details"]["components"]
    assert component["name"] == "server" and component["status"] == "Healthy" and component["message"] is None
    assert abs(component["timestamp"] - time.time()) <= 2


def test_uptime_counts_whole_seconds_since_the_registry_started() -> None:
    """details.uptime_seconds is an integer number of seconds from the registry's clock."""
    now = [100.0]
    registry = HealthRegistry(clock=lambda: now[0])
    now[0] = 3700.7
    _code, body = _answer(registry)
    assert body["details"]["uptime_seconds"] == 3600
    assert registry.uptime_seconds == pytest.approx(3600.7)


@pytest.mark.parametrize("status", list(HealthStatus))
def test_codes_follow_the_aggregate_status(status: HealthStatus) -> None:
    """Healthy 200, Degraded 200, Unhealthy 503, with the status spelled as the example spells it."""
    registry = HealthRegistry()
    registry.set("server", HealthStatus.HEALTHY)
    registry.set("database", status, "High latency detected")
    code, body = _answer(registry)
    label = status_label(status)
    assert (code, body["status"], body["details"]["status"]) == (CODES[label], label, label)
    database = next(c for c in body["details"]["components"] if c["name"] == "database")
    assert database["message"] == "High latency detected"


def test_statuses_are_accepted_in_the_example_spelling() -> None:
    """set_component_health-style calls with "Degraded" work: the spelling is read in any case."""
    registry = HealthRegistry()
    component = registry.set("database", "Degraded", "High latency detected")
    assert component.status is HealthStatus.DEGRADED
    assert registry.status() is HealthStatus.DEGRADED


def test_ready_and_live_answer_as_before() -> None:
    """/health/ready keeps {"ready", "status"} (lowercase), adds declared_ready and the failing components;
    /health/live keeps its plain "ok"."""
    registry = HealthRegistry()
    registry.set("cache", HealthStatus.UNHEALTHY)
    assert _answer(registry, "/health/ready") == (
        503,
        {
            "ready": False,
            "status": "unhealthy",
            "declared_ready": True,
            "failing": [{"name": "cache", "status": "unhealthy", "message": None}],
        },
    )
    live = registry.handle("/health/live")
    assert live is not None and (live[0], live[2]) == (200, b"ok\n")


def test_handle_serves_the_example_shape_next_to_metrics(make_telemetry: Callable[..., Telemetry]) -> None:
    """A real handle's /health has the example's structure, its own telemetry component included."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, enable_hardware_metrics=False)
    telemetry.health.run_checks()
    assert telemetry.prometheus_url is not None
    code, _headers, raw = http_get(telemetry.prometheus_url.removesuffix("/metrics") + "/health")
    body = _without_extras(json.loads(raw))
    assert code == CODES[body["status"]]
    assert set(body) == set(EXAMPLE) and set(body["details"]) == set(EXAMPLE["details"])
    assert isinstance(body["details"]["uptime_seconds"], int)
    for component in body["details"]["components"]:
        _same_shape({**component, "message": None}, EXAMPLE["details"]["components"][0], component["name"])
    assert "telemetry" in {c["name"] for c in body["details"]["components"]}
