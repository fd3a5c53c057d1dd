"""Tests for otel_telemetry.recording.health: aggregation, checks (raising, hung, periodic) and the HTTP answers.

HTTP behaviour is checked through a real ``ThreadingHTTPServer`` on 127.0.0.1 whose handler calls
``HealthRegistry.handle`` (as the SDK's server does), with ``urllib`` as the client.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import http_get

from otel_telemetry.recording.health import ComponentHealth, HealthRegistry, HealthStatus

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


@pytest.fixture
def registry() -> Iterator[HealthRegistry]:
    """A registry whose scheduler is stopped afterwards."""
    registry = HealthRegistry()
    yield registry
    assert registry.stop(timeout=5.0)


@pytest.fixture
def base_url(registry: HealthRegistry) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 (free port) answering through registry.handle; shut down afterwards."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = registry.handle(self.path)
            if answer is None:
                self.send_error(404)
                return
            code, headers, body = answer
            self.send_response(code)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event hung checks wait on; set at teardown so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` every 10 ms until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def get_json(url: str) -> tuple[int, dict[str, object]]:
    status, headers, body = http_get(url)
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


# -- aggregation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("statuses", "aggregate"),
    [
        ((), H),
        ((H,), H),
        ((H, H), H),
        ((H, D), D),
        ((D, D), D),
        ((H, U), U),
        ((D, U, H), U),
    ],
)
def test_aggregate_is_the_worst_component(statuses: tuple[HealthStatus, ...], aggregate: HealthStatus) -> None:
    """Any unhealthy → unhealthy; else any degraded → degraded; else (or empty) healthy."""
    registry = HealthRegistry()
    for index, status in enumerate(statuses):
        registry.set(f"c{index}", status)
    assert registry.status() is aggregate


def test_status_values_and_string_input() -> None:
    """Statuses have lowercase values; set() accepts them as strings in any case."""
    assert [s.value for s in HealthStatus] == ["healthy", "degraded", "unhealthy"]
    registry = HealthRegistry()
    component = registry.set("db", "Degraded", "high latency")
    assert component.status is D and component.message == "high latency"
    assert registry.components() == [component]


def test_set_rejects_an_unknown_status_naming_it() -> None:
    """A bad status is a programming error: ValueError naming the value."""
    with pytest.raises(ValueError, match="'sick'"):
        HealthRegistry().set("db", "sick")


def test_register_check_rejects_bad_settings() -> None:
    """Non-positive interval or timeout and non-callables are refused at registration."""
    registry = HealthRegistry()
    with pytest.raises(ValueError, match=r"interval.*0"):
        registry.register_check("db", lambda: H, interval=0)
    with pytest.raises(ValueError, match=r"timeout.*-1"):
        registry.register_check("db", lambda: H, timeout=-1)
    with pytest.raises(ValueError, match="callable"):
        registry.register_check("db", "not a function")  # type: ignore[arg-type]


# -- HTTP through a real server ------------------------------------------------------------------------------------
def test_health_endpoint_with_no_components_is_healthy(base_url: str) -> None:
    """GET /health with nothing registered: 200, status Healthy, no components, a whole-second uptime."""
    status, body = get_json(base_url + "/health")
    assert status == 200
    details = body["details"]
    assert isinstance(details, dict)
    assert body["status"] == "Healthy" and details["components"] == []
    assert isinstance(details["uptime_seconds"], int) and 0 <= details["uptime_seconds"] < 60


def test_health_endpoint_codes_follow_the_aggregate(registry: HealthRegistry, base_url: str) -> None:
    """200 while healthy or degraded, 503 once a component is unhealthy, 200 again when it recovers."""
    registry.set("server", H)
    assert get_json(base_url + "/health")[0] == 200
    registry.set("database", D, "High latency detected")
    status, body = get_json(base_url + "/health")
    assert (status, body["status"]) == (200, "Degraded")
    registry.set("cache", U, "connection refused")
    status, body = get_json(base_url + "/health")
    assert (status, body["status"]) == (503, "Unhealthy")
    registry.set("cache", H)
    assert get_json(base_url + "/health")[0] == 200


def test_health_body_lists_components_with_all_fields(registry: HealthRegistry, base_url: str) -> None:
    """Each component appears with name, status, message and timestamp, sorted by name."""
    before = time.time()
    registry.set("server", H)
    registry.set("database", D, "High latency detected")
    _, body = get_json(base_url + "/health")
    details = body["details"]
    assert isinstance(details, dict)
    components = details["components"]
    assert isinstance(components, list)
    assert [c["name"] for c in components] == ["database", "server"]
    database, server = components
    assert database["status"] == "Degraded" and database["message"] == "High latency detected"
    assert isinstance(database["timestamp"], int) and before - 1 <= database["timestamp"] <= time.time() + 1
    assert server["status"] == "Healthy" and server["message"] is None


def test_live_answers_ok_even_when_unhealthy(registry: HealthRegistry, base_url: str) -> None:
    """GET /health/live is 200 "ok" whatever the components say."""
    registry.set("database", U)
    registry.set_ready(False)
    status, headers, body = http_get(base_url + "/health/live")
    assert (status, body) == (200, b"ok\n")
    assert headers["Content-Type"].startswith("text/plain")


def test_ready_needs_ready_flag_and_not_unhealthy(registry: HealthRegistry, base_url: str) -> None:
    """GET /health/ready: 200 when ready and healthy or degraded; 503 when not ready or unhealthy."""
    assert registry.ready
    assert get_json(base_url + "/health/ready") == (
        200,
        {"ready": True, "status": "healthy", "declared_ready": True, "failing": []},
    )
    registry.set("database", D)
    assert get_json(base_url + "/health/ready")[0] == 200
    registry.set_ready(False)
    assert get_json(base_url + "/health/ready") == (
        503,
        {"ready": False, "status": "degraded", "declared_ready": False, "failing": []},
    )
    registry.set_ready(True)
    registry.set("database", U)
    assert get_json(base_url + "/health/ready")[0] == 503


def test_other_paths_are_not_answered_and_queries_are_ignored(registry: HealthRegistry, base_url: str) -> None:
    """handle() returns None for foreign paths (the server answers 404); query strings and a slash are ignored."""
    assert registry.handle("/metrics") is None
    assert http_get(base_url + "/healthz")[0] == 404
    assert http_get(base_url + "/health?verbose=1")[0] == 200
    assert http_get(base_url + "/health/ready/")[0] == 200


# -- checks ------------------------------------------------------------------------------------------------------
def test_run_checks_records_results_messages_and_errors(registry: HealthRegistry, base_url: str) -> None:
    """Statuses, (status, message) tuples, exceptions and invalid results become component health."""

    def broken() -> HealthStatus:
        raise ConnectionError("db down")

    registry.register_check("ok", lambda: H)
    registry.register_check("slow", lambda: (D, "p95 above budget"))
    registry.register_check("broken", broken)
    registry.register_check("confused", lambda: 42)  # type: ignore[arg-type, return-value]
    components = {c.name: c for c in registry.run_checks()}
    assert components["ok"].status is H
    assert (components["slow"].status, components["slow"].message) == (D, "p95 above budget")
    assert components["broken"].status is U
    assert components["broken"].message == "raised ConnectionError"  # the type only: the text goes to the log
    assert components["confused"].status is U
    assert components["confused"].message == "returned an invalid result (int)"
    assert registry.check_failures == 2
    assert http_get(base_url + "/health")[0] == 503


def test_a_failing_checks_text_is_logged_not_served(
    registry: HealthRegistry, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """/health shows "raised RuntimeError" and never the exception's text; the text is logged once per check and
    kind of failure, again after a recovery or when the exception type changes."""
    failures: list[BaseException | None] = [RuntimeError("db down: password=hunter2")] * 3

    def db() -> HealthStatus:
        failure = failures.pop(0)
        if failure is not None:
            raise failure
        return H

    registry.register_check("db", db)
    with caplog.at_level("WARNING", logger="otel_telemetry.recording.health"):
        for _ in range(3):
            registry.run_checks()
        status, _, body = http_get(base_url + "/health")
        assert status == 503 and b"hunter2" not in body and b"db down" not in body
        assert json.loads(body)["details"]["components"][0]["message"] == "raised RuntimeError"
        logged = [r for r in caplog.records if "hunter2" in r.getMessage()]
        assert len(logged) == 1 and logged[0].exc_info is not None  # 3 failures, logged once with the traceback
        failures[:] = [ValueError("other: token=abc"), None, RuntimeError("db down: password=hunter2")]
        for _ in range(3):
            registry.run_checks()
        messages = [r.getMessage() for r in caplog.records]
        assert sum("token=abc" in m for m in messages) == 1  # a new exception type is logged
        assert sum("hunter2" in m for m in messages) == 2  # after the recovery it is logged again
    assert registry.check_failures == 5


def test_error_details_opt_in_shows_the_exception_text(registry: HealthRegistry) -> None:
    """register_check(..., error_details=True) serves the exception's text too (for checks whose errors hold no
    secret)."""

    def broken() -> HealthStatus:
        raise TimeoutError("replica lag 12 s")

    registry.register_check("replica", broken, error_details=True)
    (component,) = registry.run_checks()
    assert component.message == "raised TimeoutError: replica lag 12 s"


def test_a_hung_check_times_out_without_blocking_the_others(registry: HealthRegistry, release: threading.Event) -> None:
    """A check past its timeout is unhealthy "timed out"; the other checks finish; its late result is dropped."""
    registry.register_check("hung", lambda: H if release.wait(10) else U, timeout=0.2)
    registry.register_check("fine", lambda: H, timeout=5.0)
    started = time.monotonic()
    components = {c.name: c for c in registry.run_checks()}
    assert time.monotonic() - started < 2.0
    assert components["hung"].status is U and "timed out" in components["hung"].message
    assert components["fine"].status is H
    release.set()
    time.sleep(0.1)
    (hung,) = [c for c in registry.components() if c.name == "hung"]
    assert hung.status is U  # the late healthy answer was discarded


def test_scheduler_runs_checks_periodically_and_stops(registry: HealthRegistry) -> None:
    """start() runs each check every interval on a background thread; stop() ends it."""
    calls: list[float] = []

    def check() -> HealthStatus:
        calls.append(time.monotonic())
        return H

    registry.register_check("periodic", check, interval=0.05)
    registry.start()
    assert wait_until(lambda: len(calls) >= 4)
    assert registry.stop(timeout=5.0)
    stopped_at = len(calls)
    time.sleep(0.2)
    assert len(calls) <= stopped_at + 1  # at most the run already launched
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(gap >= 0.04 for gap in gaps), gaps
    assert registry.components()[0].status is H


def test_scheduler_keeps_running_others_while_one_check_hangs(
    registry: HealthRegistry, release: threading.Event
) -> None:
    """With one check hung, the scheduler marks it timed out, does not restart it, and runs the rest."""
    hung_calls: list[int] = []
    fast_calls: list[int] = []

    def hung() -> HealthStatus:
        hung_calls.append(1)
        release.wait(10)
        return H

    def fast() -> HealthStatus:
        fast_calls.append(1)
        return D

    registry.register_check("hung", hung, interval=0.05, timeout=0.1)
    registry.register_check("fast", fast, interval=0.05, timeout=1.0)
    registry.start()

    def hung_reported() -> bool:
        return any(c.name == "hung" and "timed out" in c.message for c in registry.components())

    assert wait_until(hung_reported)
    assert wait_until(lambda: len(fast_calls) >= 5)
    assert len(hung_calls) == 1
    assert registry.status() is U
    release.set()
    assert wait_until(lambda: len(hung_calls) >= 2)  # restarted once the hung run returned
    assert wait_until(lambda: all(c.status is not U for c in registry.components()))


def test_remove_forgets_component_and_check(registry: HealthRegistry) -> None:
    """remove() drops the component and stops its check."""
    registry.register_check("db", lambda: U)
    registry.run_checks()
    assert registry.status() is U
    registry.remove("db")
    assert registry.components() == [] and registry.run_checks() == []
    assert registry.status() is H


def test_component_health_is_frozen() -> None:
    """ComponentHealth is an immutable value."""
    component = ComponentHealth("db", H, "", 0.0)
    with pytest.raises(AttributeError):
        component.status = U  # type: ignore[misc]
