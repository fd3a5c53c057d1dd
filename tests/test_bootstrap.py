"""setup_telemetry(): resource, independence, disabled mode, and a shutdown that keeps its deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import metrics, trace

from otel_telemetry import Telemetry, TelemetryConfig, setup_telemetry


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers (an unreachable collector)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_shutdown_returns_within_deadline_when_otlp_is_unreachable(protocol: str, black_hole: int) -> None:
    """With an OTLP endpoint that never answers, shutdown(timeout=2) still returns in about 2 seconds."""
    telemetry = setup_telemetry(
        TelemetryConfig(environ={}, otlp_endpoint=f"http://127.0.0.1:{black_hole}", otlp_protocol=protocol)
    )
    telemetry.network.packet_received(100)
    telemetry.collect()
    started = time.monotonic()
    telemetry.shutdown(timeout=2.0)
    elapsed = time.monotonic() - started
    assert elapsed < 3.5, elapsed
    assert telemetry.shutdown(timeout=1.0) is True  # idempotent


def test_resource_carries_service_server_id_and_host(make_telemetry: Callable[..., Telemetry]) -> None:
    """service.name, service.instance.id (the server id) and host attributes are on the resource."""
    telemetry = make_telemetry(server_id="server-001", service_name="arena")
    attributes = telemetry.resource.attributes
    assert attributes["service.instance.id"] == "server-001"
    assert attributes["service.name"] == "arena"
    assert attributes["host.name"] == socket.gethostname()
    assert "process.command_args" not in attributes  # a command line may carry the token


def test_global_providers_are_never_touched(make_telemetry: Callable[..., Telemetry]) -> None:
    """setup_telemetry() leaves the global meter and tracer providers as they were."""
    before = (metrics.get_meter_provider(), trace.get_tracer_provider())
    telemetry = make_telemetry()
    assert (metrics.get_meter_provider(), trace.get_tracer_provider()) == before
    assert telemetry.meter_provider is not before[0]


def test_disabled_sdk_exports_nothing_and_calls_stay_safe(make_telemetry: Callable[..., Telemetry]) -> None:
    """OTEL_SDK_DISABLED=true: no endpoint, no collection; game calls still work and never raise."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, environ={"OTEL_SDK_DISABLED": "true"})
    assert telemetry.enabled is False
    assert telemetry.prometheus_port is None
    with telemetry.performance.tick():
        telemetry.network.packet_received(10)
        telemetry.network.player_ping("p", 40.0)
    assert telemetry.collect() is None
    assert telemetry.network.totals()["packets_in"] == 1


def test_periodic_collection_runs_on_the_collection_interval(make_telemetry: Callable[..., Telemetry]) -> None:
    """A reader collects every collection_interval without anyone asking; latest_metrics() shows it."""
    telemetry = make_telemetry(collection_interval=0.2)
    telemetry.network.packet_received(5)
    deadline = time.monotonic() + 5
    while telemetry.latest_metrics() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert telemetry.latest_metrics() is not None


def test_port_in_use_is_a_clear_error(make_telemetry: Callable[..., Telemetry]) -> None:
    """Asking for a port that is taken raises OSError at setup, not later in the game loop."""
    first = make_telemetry(enable_prometheus_endpoint=True)
    with pytest.raises(OSError):
        make_telemetry(enable_prometheus_endpoint=True, prometheus_port=first.prometheus_port)


def test_setup_applies_keyword_overrides_on_top_of_a_config() -> None:
    """setup_telemetry(config, **overrides): overrides win."""
    telemetry = setup_telemetry(TelemetryConfig(server_id="a", environ={}), server_id="b")
    try:
        assert telemetry.config.server_id == "b"
        assert "b" in repr(telemetry)
    finally:
        telemetry.shutdown()
