"""The standard OTLP environment variables, as the OpenTelemetry specification defines them.

Each case sends real metrics, spans and log records to OTLP receivers on 127.0.0.1 (HTTP, and gRPC for the
scheme-less ``host:port`` target) and checks where each signal arrived: a signal's own endpoint is used as is, the
generic one gets ``/v1/metrics``, ``/v1/traces`` or ``/v1/logs``, a signal's own protocol wins over the generic one,
an empty value is unset, and ``http/json`` is refused by name.
"""

from __future__ import annotations

import gzip
import http.server
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_telemetry import Telemetry, TelemetryConfig, traced
from otel_telemetry import environment as env
from otel_telemetry.config import OTLP_SIGNALS, SETTINGS, otlp_destination
from otel_telemetry.export.otlp import metric_exporter, trace_and_log_exporters

_EVENT = "match.started"
_SPAN = "rpc.otlp_env"


@traced(_SPAN)
def _handler() -> None:
    pass


def _exported(telemetry: Telemetry) -> None:
    """One tick, one span, one event, then shutdown: its final export sends every signal."""
    with telemetry.performance.tick():
        telemetry.network.packet_received(64)
    _handler()
    telemetry.record_event(_EVENT, {"map": "arena"})
    assert telemetry.shutdown(timeout=10)


# --- OTLP/HTTP receivers --------------------------------------------------------------------------------------------
class _Receiver(http.server.ThreadingHTTPServer):
    """Records every POST as ``(path, body)``."""

    posts: list[tuple[str, bytes]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def signals(self) -> dict[str, set[str]]:
        """Path -> the signals its bodies decode to (by content: metric names, span names, log bodies)."""
        found: dict[str, set[str]] = {}
        for path, body in list(self.posts):
            found.setdefault(path, set()).update(_signals_in(body))
        return found


def _signals_in(body: bytes) -> set[str]:
    """Which signals a request body carries. The three requests share field 1, so decode and look at the content."""
    kinds: set[str] = set()
    try:
        metrics = ExportMetricsServiceRequest.FromString(body)
        names = {m.name for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        if "server.tick.duration" in names:
            kinds.add("metrics")
    except Exception:
        pass
    try:
        spans = ExportTraceServiceRequest.FromString(body)
        if _SPAN in {s.name for rs in spans.resource_spans for ss in rs.scope_spans for s in ss.spans}:
            kinds.add("traces")
    except Exception:
        pass
    try:
        logs = ExportLogsServiceRequest.FromString(body)
        bodies = {r.body.string_value for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records}
        if _EVENT in bodies:
            kinds.add("logs")
    except Exception:
        pass
    return kinds


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.posts.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receivers() -> Iterator[Callable[[], _Receiver]]:
    """Start OTLP/HTTP receivers on 127.0.0.1 (free ports); all are stopped afterwards."""
    started: list[tuple[_Receiver, threading.Thread]] = []

    def start() -> _Receiver:
        server = _Receiver(("127.0.0.1", 0), _Handler)
        server.posts = []
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    return check()


def _arrived(receiver: _Receiver, expected: dict[str, set[str]]) -> dict[str, set[str]]:
    _wait_for(lambda: all(receiver.signals().get(path, set()) >= kinds for path, kinds in expected.items()))
    return receiver.signals()


def _telemetry(make_telemetry: Callable[..., Telemetry], environ: dict[str, str]) -> Telemetry:
    return make_telemetry(environ=environ, enable_hardware_metrics=False, collection_interval=60)


# --- Endpoints -------------------------------------------------------------------------------------------------------
def test_a_signal_specific_endpoint_is_used_as_is(
    receivers: Callable[[], _Receiver], make_telemetry: Callable[..., Telemetry]
) -> None:
    """OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://h/custom/metrics: metrics POST to /custom/metrics, nothing added;
    traces and logs take the generic endpoint with their paths."""
    mine, common = receivers(), receivers()
    telemetry = _telemetry(
        make_telemetry,
        {
            env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: f"{mine.url}/custom/metrics",
            env.OTEL_EXPORTER_OTLP_ENDPOINT: common.url,
        },
    )
    _exported(telemetry)
    assert _arrived(mine, {"/custom/metrics": {"metrics"}}) == {"/custom/metrics": {"metrics"}}
    assert _arrived(common, {"/v1/traces": {"traces"}, "/v1/logs": {"logs"}}) == {
        "/v1/traces": {"traces"},
        "/v1/logs": {"logs"},
    }


def test_the_generic_endpoint_gets_each_signals_path(
    receivers: Callable[[], _Receiver], make_telemetry: Callable[..., Telemetry]
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: /v1/metrics, /v1/traces and /v1/logs are appended to its path."""
    receiver = receivers()
    telemetry = _telemetry(make_telemetry, {env.OTEL_EXPORTER_OTLP_ENDPOINT: f"{receiver.url}/otlp/"})
    _exported(telemetry)
    expected = {"/otlp/v1/metrics": {"metrics"}, "/otlp/v1/traces": {"traces"}, "/otlp/v1/logs": {"logs"}}
    assert _arrived(receiver, expected) == expected


def test_traces_and_logs_use_their_own_endpoints_as_is(
    receivers: Callable[[], _Receiver], make_telemetry: Callable[..., Telemetry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and _LOGS_ENDPOINT are honoured as given (a trailing slash kept, a URL
    without a path posts to /), read from the process environment as a server would."""
    common, own = receivers(), receivers()
    monkeypatch.setenv(env.OTEL_EXPORTER_OTLP_ENDPOINT, common.url)
    monkeypatch.setenv(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, own.url)
    monkeypatch.setenv(env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, f"{own.url}/ingest/logs/")
    telemetry = _telemetry(make_telemetry, dict(os.environ))
    _exported(telemetry)
    assert _arrived(common, {"/v1/metrics": {"metrics"}}) == {"/v1/metrics": {"metrics"}}
    expected = {"/": {"traces"}, "/ingest/logs/": {"logs"}}
    assert _arrived(own, expected) == expected


@pytest.mark.parametrize(("protocol", "default"), [("http/protobuf", "http://localhost:4318"), ("grpc", None)])
def test_signals_without_an_endpoint_take_the_specifications_default(protocol: str, default: str | None) -> None:
    """With only the metrics endpoint set, traces and logs go where the specification's default endpoint is."""
    config = TelemetryConfig(
        environ={
            env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://h/custom/metrics",
            env.OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        }
    )
    metrics, traces, logs = (otlp_destination(config, signal) for signal in OTLP_SIGNALS)
    assert metrics is not None and metrics.endpoint == "http://h/custom/metrics"
    assert traces is not None and logs is not None
    if default is None:  # gRPC: the target, plaintext as the http:// default says
        assert (traces.endpoint, traces.insecure) == (logs.endpoint, logs.insecure) == ("http://localhost:4317", True)
    else:
        assert (traces.endpoint, logs.endpoint) == (f"{default}/v1/traces", f"{default}/v1/logs")


def test_without_any_endpoint_nothing_is_exported() -> None:
    """No OTLP endpoint at all (or only empty ones): OTLP stays off."""
    for environ in ({}, {variable: "" for variable in _OTLP_VARIABLES}):
        config = TelemetryConfig(environ=environ)
        assert [otlp_destination(config, signal) for signal in OTLP_SIGNALS] == [None, None, None]
        assert trace_and_log_exporters(config) is None


# --- Protocols -------------------------------------------------------------------------------------------------------
def test_each_signals_protocol_wins_over_the_generic_one(
    receivers: Callable[[], _Receiver], make_telemetry: Callable[..., Telemetry]
) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc, but each signal's own protocol says http/protobuf: all arrive over HTTP."""
    receiver = receivers()
    environ = {env.OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, env.OTEL_EXPORTER_OTLP_PROTOCOL: "grpc"}
    for variable in (
        env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
        env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        env.OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    ):
        environ[variable] = "http/protobuf"
    _exported(_telemetry(make_telemetry, environ))
    expected = {"/v1/metrics": {"metrics"}, "/v1/traces": {"traces"}, "/v1/logs": {"logs"}}
    assert _arrived(receiver, expected) == expected


def test_one_signal_can_use_grpc_while_the_others_use_http(
    receivers: Callable[[], _Receiver], grpc_receiver: _GrpcReceiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc with its own endpoint: spans over gRPC, metrics and logs over HTTP."""
    receiver = receivers()
    environ = {
        env.OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "grpc",
        env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: f"http://{grpc_receiver.target}",  # http://: plaintext
    }
    _exported(_telemetry(make_telemetry, environ))
    expected = {"/v1/metrics": {"metrics"}, "/v1/logs": {"logs"}}
    assert _arrived(receiver, expected) == expected
    assert _wait_for(lambda: grpc_receiver.signals() == {"traces"}), grpc_receiver.methods


@pytest.mark.parametrize(
    "variable",
    [
        env.OTEL_EXPORTER_OTLP_PROTOCOL,
        env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
        env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        env.OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    ],
)
def test_http_json_is_refused_naming_the_variable_and_the_value(variable: str) -> None:
    """http/json is a protocol of the specification that the Python exporters lack: a clear error, not a guess."""
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(environ={env.OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", variable: "http/json"})
    message = str(raised.value)
    assert variable in message and "'http/json'" in message and "not supported" in message


def test_protocols_are_case_insensitive() -> None:
    """Enum values are case-insensitive in the specification: GRPC is grpc."""
    config = TelemetryConfig(environ={env.OTEL_EXPORTER_OTLP_PROTOCOL: "GRPC"})
    assert config.otlp_protocol == "grpc"


# --- Empty means unset -----------------------------------------------------------------------------------------------
_OTLP_VARIABLES = (
    env.OTEL_EXPORTER_OTLP_ENDPOINT,
    env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    env.OTEL_EXPORTER_OTLP_PROTOCOL,
    env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    env.OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
)


def test_an_empty_signal_endpoint_is_unset(
    receivers: Callable[[], _Receiver], make_telemetry: Callable[..., Telemetry]
) -> None:
    """OTEL_EXPORTER_OTLP_METRICS_ENDPOINT="" (and empty protocols): every signal takes the generic endpoint."""
    receiver = receivers()
    environ = {variable: "" for variable in _OTLP_VARIABLES}
    environ[env.OTEL_EXPORTER_OTLP_ENDPOINT] = receiver.url
    _exported(_telemetry(make_telemetry, environ))
    expected = {"/v1/metrics": {"metrics"}, "/v1/traces": {"traces"}, "/v1/logs": {"logs"}}
    assert _arrived(receiver, expected) == expected


@pytest.mark.parametrize(
    "variable", [variable for row in SETTINGS for variable in row.variables if variable.startswith("OTEL_")]
)
def test_every_empty_otel_variable_is_unset(variable: str, make_telemetry: Callable[..., Telemetry]) -> None:
    """Each OTEL_* variable we read, set to "", gives the same configuration as unset, and setup succeeds."""
    assert TelemetryConfig(environ={variable: ""}) == TelemetryConfig(environ={})
    telemetry = make_telemetry(environ={variable: ""}, enable_hardware_metrics=False)
    assert telemetry.get_current_metrics() is not None


def test_empty_service_name_falls_back_to_the_resource_attributes() -> None:
    """OTEL_SERVICE_NAME="" is unset: service.name from OTEL_RESOURCE_ATTRIBUTES applies."""
    environ = {env.OTEL_SERVICE_NAME: "", env.OTEL_RESOURCE_ATTRIBUTES: "service.name=lobby"}
    assert TelemetryConfig(environ=environ).service_name == "lobby"


# --- gRPC targets ----------------------------------------------------------------------------------------------------
_GRPC_SIGNALS = {
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": "metrics",
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export": "traces",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export": "logs",
}


@dataclass
class _GrpcReceiver(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no type hints
    """A plaintext OTLP/gRPC receiver: records the method of every call and answers with an empty response."""

    methods: list[str] = field(default_factory=list)
    target: str = ""

    def service(self, handler_call_details: Any) -> Any:
        method = handler_call_details.method

        def export(request: bytes, context: Any) -> bytes:
            self.methods.append(method)
            return b""

        return grpc.unary_unary_rpc_method_handler(export)

    def signals(self) -> set[str]:
        return {_GRPC_SIGNALS.get(method, method) for method in self.methods}


@pytest.fixture
def grpc_receiver() -> Iterator[_GrpcReceiver]:
    """An OTLP/gRPC receiver on 127.0.0.1 (a free port), without TLS."""
    recorder = _GrpcReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((recorder,))
    port = server.add_insecure_port("127.0.0.1:0")
    recorder.target = f"127.0.0.1:{port}"
    server.start()
    yield recorder
    server.stop(0).wait(5)


def test_grpc_accepts_a_host_port_target(
    grpc_receiver: _GrpcReceiver, make_telemetry: Callable[..., Telemetry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:PORT with grpc (as the gRPC exporter takes it): every signal arrives;
    plaintext because OTEL_EXPORTER_OTLP_INSECURE=true, which the exporter reads for scheme-less targets."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    environ = {env.OTEL_EXPORTER_OTLP_ENDPOINT: grpc_receiver.target, env.OTEL_EXPORTER_OTLP_PROTOCOL: "grpc"}
    _exported(_telemetry(make_telemetry, environ))
    assert _wait_for(lambda: grpc_receiver.signals() == {"metrics", "traces", "logs"}), grpc_receiver.methods


@pytest.mark.parametrize(
    ("endpoint", "insecure"),
    [
        ("127.0.0.1:4317", None),
        ("localhost:4317", None),
        ("[::1]:4317", None),
        ("collector", None),
        ("http://collector:4317", True),
        ("https://collector:4317", False),
    ],
)
def test_grpc_targets_are_built_as_the_exporter_takes_them(endpoint: str, insecure: bool | None) -> None:
    """Construction: the target is passed through; http:// means plaintext, https:// TLS, and a scheme-less one
    leaves it to OTEL_EXPORTER_OTLP_INSECURE (TLS unless true), as the specification says."""
    config = TelemetryConfig(
        environ={env.OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, env.OTEL_EXPORTER_OTLP_PROTOCOL: "grpc"}
    )
    for signal in OTLP_SIGNALS:
        destination = otlp_destination(config, signal)
        assert destination is not None
        assert (destination.protocol, destination.endpoint, destination.insecure) == ("grpc", endpoint, insecure)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    exporter = metric_exporter(config)
    assert isinstance(exporter, OTLPMetricExporter)
    exporter.shutdown(timeout_millis=1000)
    exporters = trace_and_log_exporters(config)
    assert exporters is not None
    assert [type(e).__module__.split(".")[4] for e in exporters] == ["grpc", "grpc"]
    for built in exporters:
        built.shutdown()


@pytest.mark.parametrize(
    "variable",
    [
        env.OTEL_EXPORTER_OTLP_ENDPOINT,
        env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
        env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    ],
)
def test_host_port_over_http_is_refused_naming_the_variable(variable: str) -> None:
    """HTTP needs a URL: a scheme-less host:port with http/protobuf is a clear error naming variable and value."""
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(environ={variable: "127.0.0.1:4318"})
    message = str(raised.value)
    assert variable in message and "'127.0.0.1:4318'" in message and "grpc" in message
