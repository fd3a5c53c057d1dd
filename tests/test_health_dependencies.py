"""Tests for health checks' failure thresholds, dependencies, criticality, readiness from named components, and the
built-in checks (memory, TCP endpoints such as a database or a cache, thresholds on a number).

HTTP goes through the SDK's own ``MetricsHTTPServer`` on 127.0.0.1 (a free port) with the registry's ``handle`` as
its route; TCP checks connect to real listening sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
from conftest import http_get
from prometheus_client import CollectorRegistry

from otel_telemetry.export.http_server import MetricsHTTPServer
from otel_telemetry.recording.health import HealthRegistry, HealthStatus
from otel_telemetry.recording.health_checks import memory_check, tcp_check, threshold_check

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


@pytest.fixture
def registry() -> Iterator[HealthRegistry]:
    """A registry whose scheduler is stopped afterwards."""
    registry = HealthRegistry()
    yield registry
    assert registry.stop(timeout=5.0)


@pytest.fixture
def base_url(registry: HealthRegistry) -> Iterator[str]:
    """The SDK's HTTP server on 127.0.0.1 (free port) answering /health* through registry.handle."""
    server = MetricsHTTPServer(CollectorRegistry(), "127.0.0.1", 0, [registry.handle])
    try:
        yield server.url
    finally:
        assert server.shutdown(timeout=5.0)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event hung checks wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


Result = HealthStatus | tuple[HealthStatus, str]


def outcomes(*results: Result | Exception) -> Callable[[], Result]:
    """A check answering ``results`` in turn (raising the exceptions), then the last one forever."""
    queue = list(results)

    def check() -> Result:
        result = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(result, Exception):
            raise result
        return result

    return check


def component(registry: HealthRegistry, name: str) -> tuple[HealthStatus, str, int]:
    """``(status, message, consecutive_failures)`` of one component as the registry shows it."""
    (found,) = [c for c in registry.components() if c.name == name]
    return found.status, found.message, found.consecutive_failures


def get_json(url: str) -> tuple[int, dict[str, object]]:
    status, headers, body = http_get(url)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


# -- failure threshold ------------------------------------------------------------------------------------------
def test_failure_threshold_degrades_until_n_failures_then_recovers_at_once(registry: HealthRegistry) -> None:
    """With failure_threshold=3: degraded "1 of 3 failures", "2 of 3", then unhealthy; one success heals it."""
    registry.register_check("db", outcomes(U, RuntimeError("down"), U, H, U), failure_threshold=3)
    registry.run_checks()
    assert component(registry, "db") == (D, "1 of 3 failures", 1)
    registry.run_checks()
    assert component(registry, "db") == (D, "2 of 3 failures: raised RuntimeError", 2)
    registry.run_checks()
    assert component(registry, "db") == (U, "", 3)
    assert registry.status() is U
    registry.run_checks()
    assert component(registry, "db") == (H, "", 0)
    registry.run_checks()
    assert component(registry, "db") == (D, "1 of 3 failures", 1)


def test_a_degraded_result_is_not_a_failure(registry: HealthRegistry) -> None:
    """A degraded answer is shown as is and resets the consecutive failures."""
    registry.register_check("db", outcomes(U, (D, "slow"), U), failure_threshold=2)
    registry.run_checks()
    registry.run_checks()
    assert component(registry, "db") == (D, "slow", 0)
    registry.run_checks()
    assert component(registry, "db") == (D, "1 of 2 failures", 1)


def test_timeouts_count_against_the_threshold(registry: HealthRegistry, release: threading.Event) -> None:
    """A run past its timeout is one failure: degraded "1 of 2 failures: timed out after 0.05 s" first."""
    registry.register_check("hung", lambda: H if release.wait(10) else U, timeout=0.05, failure_threshold=2)
    registry.run_checks()
    assert component(registry, "hung") == (D, "1 of 2 failures: timed out after 0.05 s", 1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_failure_threshold_must_be_a_positive_integer(registry: HealthRegistry, bad: object) -> None:
    """A bad failure_threshold is refused at registration, naming the field and the value."""
    with pytest.raises(ValueError, match=rf"failure_threshold must be an integer of at least 1, got {bad!r}"):
        registry.register_check("db", lambda: H, failure_threshold=bad)  # type: ignore[arg-type]


def test_scheduler_applies_the_threshold_between_runs(registry: HealthRegistry) -> None:
    """Every 0.05 s in the background, a failing check is degraded first and unhealthy after 2 failures."""
    seen: list[HealthStatus] = []
    registry.register_check("cache", lambda: U, interval=0.05, failure_threshold=2)
    registry.start()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and U not in seen:
        components = registry.components()
        if components:
            seen.append(components[0].status)
        time.sleep(0.005)
    assert registry.stop(timeout=5.0)
    assert seen[0] is D and U in seen
    assert component(registry, "cache")[2] >= 2


# -- dependencies --------------------------------------------------------------------------------------------------
def test_a_dependency_makes_its_dependents_as_bad_as_itself(registry: HealthRegistry) -> None:
    """api depends on database: database unhealthy → api unhealthy, naming it; degraded → degraded; healthy again
    → api shows its own status."""
    database = [U]
    registry.register_check("database", lambda: database[0])
    registry.register_check("api", lambda: (H, "serving"), depends_on=["database"])
    registry.run_checks()
    assert component(registry, "api") == (U, "serving; dependency 'database' is unhealthy", 0)
    database[0] = D
    registry.run_checks()
    assert component(registry, "api") == (D, "serving; dependency 'database' is degraded", 0)
    database[0] = H
    registry.run_checks()
    assert component(registry, "api") == (H, "serving", 0)


def test_dependencies_propagate_transitively_and_from_manual_components(registry: HealthRegistry) -> None:
    """matchmaking → api → database (set by hand): an unhealthy database reaches matchmaking through api."""
    registry.set("database", U, "connection refused")
    registry.register_check("api", lambda: H, depends_on=("database",))
    registry.register_check("matchmaking", lambda: H, depends_on=("api",))
    registry.run_checks()
    assert component(registry, "matchmaking") == (U, "dependency 'api' is unhealthy", 0)
    registry.set("database", H)
    assert component(registry, "matchmaking") == (H, "", 0)


def test_a_non_critical_component_weighs_degraded_at_most(registry: HealthRegistry, base_url: str) -> None:
    """An unhealthy optional cache (critical=False) shows unhealthy itself, but its dependents and the aggregate
    are only degraded, so /health stays 200 and /health/ready stays ready."""
    registry.register_check("cache", lambda: (U, "refused"), critical=False)
    registry.register_check("api", lambda: H, depends_on=["cache"])
    registry.run_checks()
    assert component(registry, "cache")[0] is U
    assert component(registry, "api") == (D, "dependency 'cache' is unhealthy", 0)
    assert registry.status() is D
    status, body = get_json(base_url + "/health")
    assert (status, body["status"]) == (200, "Degraded")
    assert get_json(base_url + "/health/ready")[0] == 200


def test_dependency_cycles_are_refused_at_registration(registry: HealthRegistry) -> None:
    """A check closing a cycle (or depending on itself) raises ValueError naming the cycle in order."""
    registry.register_check("a", lambda: H, depends_on=["b"])
    registry.register_check("b", lambda: H, depends_on=["c"])
    with pytest.raises(ValueError, match=r"depends_on of 'c' makes a cycle: c -> a -> b -> c"):
        registry.register_check("c", lambda: H, depends_on=["a"])
    with pytest.raises(ValueError, match=r"cycle: d -> d"):
        registry.register_check("d", lambda: H, depends_on=["d"])
    assert sorted(c.name for c in registry.run_checks()) == ["a", "b"]


@pytest.mark.parametrize("bad", ["database", [""], [3], None])
def test_depends_on_must_be_names(registry: HealthRegistry, bad: object) -> None:
    """depends_on must be an iterable of non-empty strings (a bare string is refused), naming the field."""
    with pytest.raises(ValueError, match="depends_on must"):
        registry.register_check("api", lambda: H, depends_on=bad)  # type: ignore[arg-type]


def test_an_unknown_dependency_is_reported_at_first_run_and_logged_once(
    registry: HealthRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A dependency that is neither a component nor a check makes the dependent unhealthy "unknown dependency",
    logged once; registering it fixes that. A registered dependency that has not reported yet has no effect."""
    registry.register_check("api", lambda: H, depends_on=["ghost"])
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.recording.health"):
        registry.run_checks()
        registry.run_checks()
    assert component(registry, "api") == (U, "unknown dependency 'ghost'", 0)
    assert sum("unknown component 'ghost'" in r.getMessage() for r in caplog.records) == 1
    registry.register_check("ghost", lambda: H)
    assert component(registry, "api") == (H, "", 0)  # registered, not reported yet: no effect
    registry.run_checks()
    assert component(registry, "api") == (H, "", 0)


def test_health_document_shows_dependencies_and_consecutive_failures(registry: HealthRegistry, base_url: str) -> None:
    """Each /health component lists its dependencies, consecutive failures and criticality."""
    registry.register_check("database", lambda: U, failure_threshold=5)
    registry.register_check("api", lambda: H, depends_on=["database"], critical=False)
    registry.run_checks()
    registry.run_checks()
    _status, body = get_json(base_url + "/health")
    details = body["details"]
    assert isinstance(details, dict)
    api, database = details["components"]
    assert (api["dependencies"], api["consecutive_failures"], api["critical"]) == (["database"], 0, False)
    assert (database["dependencies"], database["consecutive_failures"], database["critical"]) == ([], 2, True)
    assert database["status"] == "Degraded" and database["message"] == "2 of 5 failures"
    assert api["message"] == "dependency 'database' is degraded"


# -- readiness -----------------------------------------------------------------------------------------------------
def test_readiness_follows_the_named_components(registry: HealthRegistry, base_url: str) -> None:
    """With set_readiness_checks(["database"]): not ready until it reported; ready when healthy or degraded; not
    ready when unhealthy, the body naming it; other components do not matter."""
    database = [H]
    registry.set_readiness_checks(["database"])
    assert registry.readiness_checks == ("database",)
    assert get_json(base_url + "/health/ready") == (
        503,
        {
            "ready": False,
            "status": "healthy",
            "declared_ready": True,
            "failing": [{"name": "database", "status": "missing", "message": "has not reported"}],
        },
    )
    registry.register_check("database", lambda: (database[0], "pool 3/10"))
    registry.run_checks()
    assert get_json(base_url + "/health/ready")[0] == 200
    database[0] = D
    registry.run_checks()
    assert get_json(base_url + "/health/ready")[0] == 200  # degraded is ready
    registry.set("telemetry", U, "exports failing")  # not needed for readiness
    assert get_json(base_url + "/health/ready")[0] == 200
    assert get_json(base_url + "/health")[0] == 503
    database[0] = U
    registry.run_checks()
    status, body = get_json(base_url + "/health/ready")
    assert status == 503 and body["failing"] == [{"name": "database", "status": "unhealthy", "message": "pool 3/10"}]


def test_readiness_needs_the_declaration_too(registry: HealthRegistry, base_url: str) -> None:
    """Healthy named components are not enough: set_ready(False) answers 503 with declared_ready false."""
    registry.set("database", H)
    registry.set_readiness_checks(["database"])
    registry.set_ready(False)
    assert get_json(base_url + "/health/ready") == (
        503,
        {"ready": False, "status": "healthy", "declared_ready": False, "failing": []},
    )
    registry.set_ready(True)
    assert get_json(base_url + "/health/ready")[0] == 200


def test_readiness_sees_through_dependencies(registry: HealthRegistry, base_url: str) -> None:
    """Ready depends on api, api on database: an unhealthy database makes api fail readiness, saying why."""
    registry.set("database", U)
    registry.register_check("api", lambda: H, depends_on=["database"])
    registry.set_readiness_checks(["api"])
    registry.run_checks()
    status, body = get_json(base_url + "/health/ready")
    assert status == 503
    assert body["failing"] == [{"name": "api", "status": "unhealthy", "message": "dependency 'database' is unhealthy"}]


def test_default_readiness_names_every_critical_unhealthy_component(registry: HealthRegistry) -> None:
    """Without set_readiness_checks (or after None), failing lists each critical unhealthy component, sorted."""
    registry.set("cache", U, "refused")
    registry.set("database", U)
    registry.register_check("stats", lambda: U, critical=False)
    registry.run_checks()
    registry.set_readiness_checks(["stats"])
    registry.set_readiness_checks(None)
    document = registry.readiness_document()
    assert document["ready"] is False
    assert document["failing"] == [
        {"name": "cache", "status": "unhealthy", "message": "refused"},
        {"name": "database", "status": "unhealthy", "message": None},
    ]


@pytest.mark.parametrize("bad", ["database", [None], 5])
def test_readiness_checks_must_be_names(registry: HealthRegistry, bad: object) -> None:
    """set_readiness_checks refuses a bare string and anything but non-empty strings, naming the field."""
    with pytest.raises(ValueError, match=r"set_readiness_checks: names must"):
        registry.set_readiness_checks(bad)  # type: ignore[arg-type]


# -- built-in checks -----------------------------------------------------------------------------------------------
@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A real TCP server socket on 127.0.0.1 (free port), closed afterwards."""
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield server
    finally:
        server.close()


def test_tcp_check_connects_to_a_listening_server(registry: HealthRegistry, listening: socket.socket) -> None:
    """A database or cache endpoint that accepts connections is healthy, with the connect time in the message."""
    port = listening.getsockname()[1]
    registry.register_check("database", tcp_check("127.0.0.1", port, timeout=1.0))
    status, message, _ = component_after_run(registry, "database")
    assert status is H and message.startswith(f"connected to 127.0.0.1:{port} in ") and message.endswith(" ms")


def test_tcp_check_is_unhealthy_once_the_server_is_gone(registry: HealthRegistry, listening: socket.socket) -> None:
    """After the listening socket is closed, the connection is refused: unhealthy, naming endpoint and reason."""
    port = listening.getsockname()[1]
    listening.close()
    registry.register_check("cache", tcp_check("127.0.0.1", port, timeout=1.0))
    status, message, failures = component_after_run(registry, "cache")
    assert status is U and failures == 1
    assert message.startswith(f"cannot connect to 127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", 1), "host"),
        (("db", 0), "port"),
        (("db", 70000), "port"),
        (("db", True), "port"),
        (("db", 1, 0), "timeout"),
    ],
)
def test_tcp_check_refuses_bad_settings(args: tuple[object, ...], field: str) -> None:
    """Bad host, port or timeout raise ValueError naming the field."""
    with pytest.raises(ValueError, match=f"tcp_check: {field} must"):
        tcp_check(*args)  # type: ignore[arg-type]


def component_after_run(registry: HealthRegistry, name: str) -> tuple[HealthStatus, str, int]:
    """Run the checks once and return one component's ``(status, message, consecutive_failures)``."""
    registry.run_checks()
    return component(registry, name)


def test_memory_check_grades_process_rss_against_its_limit() -> None:
    """RSS above the process limit is unhealthy; between 90 % and 100 % of it degraded; the message has figures."""
    rss = psutil.Process().memory_info().rss
    status, message = memory_check(max_percent=100.0, process_max_bytes=1)()
    assert status is U and "process RSS" in message and "limit 0.0 MiB" in message
    status, message = memory_check(max_percent=100.0, process_max_bytes=int(rss / 0.95))()
    assert status is D, message


def test_memory_check_reports_system_memory_with_figures() -> None:
    """The message states the system's used percentage and its limit; healthy when far below both limits."""
    percent = psutil.virtual_memory().percent
    if percent >= 85.0:
        pytest.skip(f"this machine uses {percent} % of its memory")
    status, message = memory_check(max_percent=100.0, process_max_bytes=2**60)()
    assert status is H
    assert message.startswith("system memory ") and "% (limit 100 %)" in message


@pytest.mark.parametrize(("args", "field"), [((0,), "max_percent"), ((101,), "max_percent"), ((90, 0), "process")])
def test_memory_check_refuses_bad_limits(args: tuple[object, ...], field: str) -> None:
    """Limits outside their range raise ValueError naming the field."""
    with pytest.raises(ValueError, match=f"memory_check: {field}"):
        memory_check(*args)  # type: ignore[arg-type]


def test_threshold_check_grades_a_number_and_an_increase() -> None:
    """A queue depth is degraded above one limit and unhealthy above the other; increase=True grades the growth of
    a counter since the previous run."""
    depth = [5.0]
    queue = threshold_check("otlp queue", lambda: depth[0], degraded_above=100, unhealthy_above=1000)
    assert queue() == (H, "otlp queue 5 (degraded above 100, unhealthy above 1000)")
    depth[0] = 120
    assert queue()[0] is D
    depth[0] = 1001
    assert queue()[0] is U
    failures = [10.0]
    exports = threshold_check("export failures", lambda: failures[0], degraded_above=0, increase=True)
    assert exports() == (H, "export failures +0 since the last check (degraded above 0)")
    failures[0] = 13
    assert exports() == (D, "export failures +3 since the last check (degraded above 0)")
    assert exports()[0] is H


def test_threshold_check_refuses_bad_settings_and_bad_reads(registry: HealthRegistry) -> None:
    """Inverted limits and non-callables are refused; a read returning no number fails the run."""
    with pytest.raises(ValueError, match=r"unhealthy_above \(1\) is below degraded_above \(5\)"):
        threshold_check("q", lambda: 0.0, degraded_above=5, unhealthy_above=1)
    with pytest.raises(ValueError, match="read must be callable"):
        threshold_check("q", 3, degraded_above=5)  # type: ignore[arg-type]
    registry.register_check("q", threshold_check("q", lambda: "many", degraded_above=5))  # type: ignore[arg-type, return-value]
    assert component_after_run(registry, "q") == (U, "raised ValueError", 1)
