"""OTLP export to a real receiver on 127.0.0.1, decoded with the official protobuf classes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from receivers import OtlpReceiver

from otel_telemetry import Telemetry, traced


@traced("rpc.join")
def _join(player: str) -> str:
    return player


_Receiver = OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver on 127.0.0.1, stopped by its own handle."""
    server = OtlpReceiver()
    yield server
    server.stop()


def test_metrics_arrive_over_otlp_http(receiver: _Receiver, make_telemetry: Callable[..., Telemetry]) -> None:
    """With otlp_endpoint set, shutdown's final export delivers our histograms and gauges to the receiver."""
    port = receiver.server_address[1]
    telemetry = make_telemetry(otlp_endpoint=f"http://127.0.0.1:{port}", server_id="otlp-1")
    for _ in range(5):
        with telemetry.performance.tick():
            telemetry.network.packet_received(100)
            telemetry.network.player_ping("p1", 42.0)
    assert telemetry.shutdown(timeout=10)
    deadline = time.monotonic() + 5
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.requests, "no OTLP request arrived"
    metrics = {
        m.name: m
        for request in receiver.requests
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert metrics["server.tick.duration"].histogram.data_points[0].count == 5
    assert "server.network.player_ping.last" not in metrics, "per-player series are not exported by default"
    assert metrics["server.avg_player_ping"].gauge.data_points[0].as_double == pytest.approx(42.0)
    packets = metrics["server.network.packets"].sum
    assert packets.is_monotonic
    received = [p for p in packets.data_points if p.attributes[0].value.string_value == "received"]
    assert received[0].as_int == 5


def _histogram_points(receiver: _Receiver, name: str) -> list[object]:
    return [
        point
        for request in receiver.requests
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for point in m.histogram.data_points
    ]


def test_delta_temporality_is_selected_by_the_standard_variable(
    receiver: _Receiver, make_telemetry: Callable[..., Telemetry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta: our histograms are exported as deltas."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    # One export per frame: two frames taken by hand, the periodic ones far apart (collection_interval=60).
    telemetry = make_telemetry(otlp_endpoint=f"http://127.0.0.1:{receiver.server_address[1]}", collection_interval=60)
    for _ in range(4):
        telemetry.performance.record_tick(0.010)
    telemetry.collect()
    time.sleep(0.06)  # monitors refresh at most every collection_interval / 2 unless forced
    for _ in range(2):
        telemetry.performance.record_tick(0.010)
    for monitor in telemetry.monitors():
        monitor.refresh(force=True)
    telemetry.collect()
    deadline = time.monotonic() + 10
    while len(_histogram_points(receiver, "server.tick.duration")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    metric = next(
        m
        for request in receiver.requests
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "server.tick.duration"
    )
    assert metric.histogram.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    counts = [p.count for p in _histogram_points(receiver, "server.tick.duration")]  # type: ignore[attr-defined]
    assert counts[:2] == [4, 2]


def test_traced_spans_arrive_over_otlp(receiver: _Receiver, make_telemetry: Callable[..., Telemetry]) -> None:
    """@traced spans go to {endpoint}/v1/traces through the batch processor."""
    telemetry = make_telemetry(otlp_endpoint=f"http://127.0.0.1:{receiver.server_address[1]}")
    _join("p1")
    assert telemetry.shutdown(timeout=10)
    names = [s.name for r in receiver.spans for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert "rpc.join" in names


def _exports(receiver: _Receiver, count: int) -> int:
    deadline = time.monotonic() + 10
    while len(receiver.requests) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # anything more than expected would arrive by now
    return len(receiver.requests)


def test_every_frame_is_exported_by_default(receiver: _Receiver, make_telemetry: Callable[..., Telemetry]) -> None:
    """Without OTEL_METRIC_EXPORT_INTERVAL, OTLP sends each frame (not the SDK's 60 s default)."""
    telemetry = make_telemetry(otlp_endpoint=f"http://127.0.0.1:{receiver.server_address[1]}", collection_interval=600)
    for _ in range(4):
        telemetry.network.packet_received(10)
        telemetry.collect()
    assert _exports(receiver, 4) == 4


def test_the_standard_export_interval_exports_every_nth_frame(
    receiver: _Receiver, make_telemetry: Callable[..., Telemetry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_METRIC_EXPORT_INTERVAL=3000 with a 1 s collection interval: one frame in three is exported."""
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3000")
    telemetry = make_telemetry(otlp_endpoint=f"http://127.0.0.1:{receiver.server_address[1]}", collection_interval=1.0)
    telemetry._collector.stop(2.0)  # type: ignore[union-attr]  # frames by hand only, so that they can be counted
    for _ in range(7):
        telemetry.collect()
    assert _exports(receiver, 3) == 3  # frames 1, 4 and 7


_PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The test's environment without any proxy variable (each test sets what it needs)."""
    for name in (*_PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_metrics_go_through_the_proxy_the_environment_names_at_setup(
    receiver: _Receiver, make_telemetry: Callable[..., Telemetry], no_proxy_settings: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY set before setup: every export is asked of that proxy (a second receiver on 127.0.0.1), for the
    endpoint's URL; the endpoint itself is never reached directly."""
    proxy = OtlpReceiver()
    try:
        no_proxy_settings.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        telemetry = make_telemetry(otlp_endpoint=f"http://127.0.0.1:{receiver.port}", collection_interval=600)
        for _ in range(2):
            telemetry.collect()
        assert _exports(proxy, 2) == 2
        assert proxy.proxied == [f"http://127.0.0.1:{receiver.port}/v1/metrics"] * 2
        assert receiver.requests == []
    finally:
        proxy.stop()


def test_the_environment_is_read_once_at_setup_not_at_every_export(
    receiver: _Receiver, make_telemetry: Callable[..., Telemetry], no_proxy_settings: pytest.MonkeyPatch
) -> None:
    """A proxy variable set after setup is not read: the exports keep going straight to the endpoint (requests no
    longer scans the environment at each export; see export/otlp.py's steady_session)."""
    proxy = OtlpReceiver()
    try:
        telemetry = make_telemetry(otlp_endpoint=f"http://127.0.0.1:{receiver.port}", collection_interval=600)
        no_proxy_settings.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        for _ in range(2):
            telemetry.collect()
        assert _exports(receiver, 2) == 2
        assert proxy.proxied == []
    finally:
        proxy.stop()


def test_a_plain_http_endpoint_without_proxy_or_credentials_sends_through_urllib3(
    no_proxy_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only an http:// endpoint for which the environment names no proxy, netrc credentials or credential provider
    skips requests (and so reads nothing from the environment at export)."""
    from otel_telemetry.export.otlp import needs_no_environment

    url = "http://127.0.0.1:4318/v1/metrics"
    no_proxy_settings.delenv("NETRC", raising=False)
    no_proxy_settings.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert needs_no_environment(url)
    assert not needs_no_environment("https://127.0.0.1:4318/v1/metrics")
    no_proxy_settings.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert not needs_no_environment(url)
    no_proxy_settings.setenv("NO_PROXY", "127.0.0.1")
    assert needs_no_environment(url)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password secret\n")
    no_proxy_settings.setenv("NETRC", str(netrc))
    assert not needs_no_environment(url)
    no_proxy_settings.delenv("NETRC")
    no_proxy_settings.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", "somewhere")
    assert not needs_no_environment(url)
