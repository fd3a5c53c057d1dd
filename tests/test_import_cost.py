"""What a Prometheus-only handle loads: modules it never uses stay unloaded, each import deferred to its first use.

The cost of ``import otel_telemetry`` plus ``setup_telemetry()`` is measured by hand (``python -X importtime``); what
the tests pin is structural and so not noisy: which modules a fresh interpreter holds after a real Prometheus-only
handle served a text scrape, and that the shortcuts taken to avoid imports (a constant, a date format) agree with the
modules they avoid.
"""

from __future__ import annotations

import email.utils
import json
import sys

import prometheus_client
import pytest
from test_imports import run_child

import otel_telemetry.alerts
import otel_telemetry.recording
from otel_telemetry.export import http_server, prometheus
from otel_telemetry.export.http_server import MetricsHTTPServer

#: Modules a Prometheus-only handle has no use for: loaded on first use, never while setting up or scraping text.
UNUSED_BY_PROMETHEUS_ONLY = (
    "otel_telemetry.alerts.promql",  # PromQL of a rule: the tools and rule_promql()
    "otel_telemetry.alerts.stats",  # AlertManager.stats()
    "otel_telemetry.alerts.samples",  # a metric-name rule (the default rules read ServerMetrics paths)
    "otel_telemetry.alerts.sources",
    "otel_telemetry.recording.exporters",  # Telemetry.get_metrics() and get_metrics_summary()
    "otel_telemetry.recording.health_checks",  # memory_check, tcp_check, threshold_check
    "otel_telemetry.recording.logs",  # JsonLogHandler
    "otel_telemetry.recording.stopwatch",  # Stopwatch, logged_timing
    "otel_telemetry.recording.profile_reports",  # the first profiling session (telemetry.profile, profiled)
    "tracemalloc",  # with profile_reports: a session's memory
    "opentelemetry.sdk._logs",  # OTLP, or the first read of Telemetry.logger_provider
    "opentelemetry.sdk.trace.export",  # OTLP: its BatchSpanProcessor
    "opentelemetry.sdk._shared_internal",  # the batch processors' base
    "google.protobuf",  # OTLP: the request encoder and the exporters
    "opentelemetry.exporter.otlp.proto.common",
    "difflib",  # the "did you mean" of a bad ServerMetrics path
    "prometheus_client",  # OpenMetrics and name[] scrapes only: the text exposition is our own renderer
    "opentelemetry.exporter.prometheus",  # its naming module is loaded on its own (_otel.prometheus_naming)
    "otel_telemetry.export.files",  # prometheus_textfile / json_export_file
    "otel_telemetry.export.principal",  # api_endpoint
    "otel_telemetry.delivery",  # the principal and webhooks
    "email",
    "ssl",
    "gzip",  # the first gzip scrape
    "otel_telemetry.snapshot.dashboard",  # telemetry.dashboard() and GET /dashboard
    "otel_telemetry.snapshot.dashboard_model",
)

#: Loaded by the export modules only for OpenMetrics, ``name[]`` filters or a ``registry`` read.
PROMETHEUS_CLIENT = ("prometheus_client", "opentelemetry.exporter.prometheus")

_PROMETHEUS_ONLY_RUN = """
import json, socket, sys
from otel_telemetry import TelemetryConfig, setup_telemetry

config = TelemetryConfig(
    environ={}, server_id="import-cost", enable_prometheus_endpoint=True, prometheus_port=0,
    prometheus_host="127.0.0.1",
)
telemetry = setup_telemetry(config)
with telemetry.performance.tick():
    telemetry.network.packet_received(512)
telemetry.collect()
# A raw-socket scrape: urllib would load http.client and email, hiding what the server itself loads.
with socket.create_connection(("127.0.0.1", telemetry.prometheus_port), timeout=10) as sock:
    sock.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
    chunks = []
    for _ in range(100_000):
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
response = b"".join(chunks)
stopped = telemetry.shutdown(timeout=5.0)
print(json.dumps({"status": response.split(b"\\r\\n", 1)[0].decode(), "body": b"server_tick_rate_fps" in response,
                  "stopped": stopped, "modules": sorted(sys.modules)}))
"""


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == name or m.startswith(name + ".") for name in names)]


def test_a_prometheus_only_handle_loads_none_of_the_modules_it_does_not_use() -> None:
    """Set up, one frame, one text scrape and shutdown, in a fresh interpreter: the unused modules stay unloaded."""
    result = run_child(_PROMETHEUS_ONLY_RUN)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout.strip().splitlines()[-1])
    assert run["status"] == "HTTP/1.1 200 OK"
    assert run["body"] and run["stopped"]
    assert _loaded(run["modules"], UNUSED_BY_PROMETHEUS_ONLY) == []


@pytest.mark.parametrize("name", ["otel_telemetry.export.prometheus", "otel_telemetry.export.http_server"])
def test_the_prometheus_endpoint_modules_import_without_prometheus_client(name: str) -> None:
    """The exposition and the HTTP server load prometheus_client (and the OpenTelemetry exporter) only when used."""
    result = run_child(f"import json, sys, {name}; print(json.dumps(sorted(sys.modules)))")
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert _loaded(modules, PROMETHEUS_CLIENT) == []


def test_the_text_content_type_is_prometheus_clients_latest() -> None:
    """The exposition's Content-Type constant is prometheus_client's CONTENT_TYPE_LATEST, without importing it."""
    assert prometheus._CONTENT_TYPE == prometheus_client.CONTENT_TYPE_LATEST


@pytest.mark.parametrize(
    "timestamp",
    [0.0, 784111777.0, 951782400.5, 1709164799.999, 4102444800.0, 1_700_000_000.25],
)
def test_the_http_date_is_what_email_utils_writes(timestamp: float) -> None:
    """The server's Date header equals email.utils.formatdate(usegmt=True) (epoch, RFC example, leap days, 2100)."""
    assert http_server._http_date(timestamp) == email.utils.formatdate(timestamp, usegmt=True)


def test_the_exposition_registry_is_made_once_on_first_read() -> None:
    """``PrometheusExposition.registry`` is one prometheus_client registry holding the exposition, made on demand."""
    exposition = prometheus.PrometheusExposition(lambda: None)
    registry = exposition.registry
    assert isinstance(registry, prometheus_client.CollectorRegistry)
    assert exposition.registry is registry
    assert prometheus_client.generate_latest(registry) == b""


def test_a_server_without_registry_needs_an_app_of_its_own() -> None:
    """``MetricsHTTPServer(None, ...)`` is refused without a ``metrics_app``, naming the field and the value."""
    with pytest.raises(ValueError, match=r"MetricsHTTPServer\.registry: None needs a metrics_app"):
        MetricsHTTPServer(None, "127.0.0.1", 0)


def test_a_server_without_registry_serves_its_app() -> None:
    """With a ``metrics_app`` and no registry, ``/metrics`` is the app's answer over real HTTP on 127.0.0.1."""
    from conftest import http_get

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"up 1.0\n"]

    server = MetricsHTTPServer(None, "127.0.0.1", 0, metrics_app=app)
    try:
        status, _, body = http_get(f"{server.url}/metrics")
    finally:
        assert server.shutdown(timeout=2.0)
    assert (status, body) == (200, b"up 1.0\n")


@pytest.mark.parametrize("package", [otel_telemetry.recording, otel_telemetry.alerts])
def test_every_lazy_name_resolves_to_the_object_its_module_defines(package: object) -> None:
    """Each name in ``__all__`` of the lazily loading packages is found, and is the defining module's own object."""
    names = package.__all__  # type: ignore[attr-defined]
    lazy = {**getattr(package, "_PUBLIC", {}), **getattr(package, "_LAZY", {})}
    for name in names:
        value = getattr(package, name)
        if name in lazy:
            assert value is getattr(sys.modules[lazy[name]], name), name
    assert set(names) <= set(dir(package))
    with pytest.raises(AttributeError, match="no attribute 'missing_name'"):
        _ = package.missing_name  # type: ignore[attr-defined]


_PROFILE_RUN = """
import json, sys
from otel_telemetry.recording.profiling import Profiler

profiler = Profiler()
loaded = ["otel_telemetry.recording.profile_reports" in sys.modules]
profiled = profiler.profiled("decorated")(lambda: None)
loaded.append("otel_telemetry.recording.profile_reports" in sys.modules)
print(json.dumps(loaded))
"""


def test_the_profile_reports_load_when_asked_for_on_the_asking_thread() -> None:
    """A profiler loads its report types (and tracemalloc) only for a session; ``profiled`` loads them when it
    decorates, so that the decorated function's first call, maybe on another thread, imports nothing."""
    result = run_child(_PROFILE_RUN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [False, True]
    child = run_child(
        "import sys; from otel_telemetry.recording.profiling import Profiler; Profiler().profile('x'); "
        "print('otel_telemetry.recording.profile_reports' in sys.modules)"
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().splitlines()[-1] == "True"


_METRIC_RULE_RUN = """
import json, sys
from otel_telemetry.alerts import AlertManager, AlertRule, default_rules

loaded = lambda: [m in sys.modules for m in ("otel_telemetry.alerts.samples", "otel_telemetry.alerts.sources")]
manager = AlertManager(default_rules())
steps = [loaded()]
manager.add_rule(AlertRule("SlowApi", "api.latency", statistic="p95", threshold=0.3))
steps.append(loaded())
print(json.dumps(steps))
"""


def test_a_metric_name_rule_loads_its_sources_when_given_to_the_manager() -> None:
    """The default rules need no metric sources; a metric-name rule loads them when it is added, on the adding
    thread, so that the evaluator's thread never imports them."""
    result = run_child(_METRIC_RULE_RUN)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [[False, False], [True, True]]


_SWEEP_RUN = """
import gc, json
from otel_telemetry import TelemetryConfig, setup_telemetry

def full_collections():
    return gc.get_stats()[2]["collections"]

before = full_collections()
first = setup_telemetry(TelemetryConfig(environ={}, server_id="sweep-1"))
after_first = full_collections()
second = setup_telemetry(TelemetryConfig(environ={}, server_id="sweep-2"))
after_second = full_collections()
first.shutdown(timeout=2.0)
second.shutdown(timeout=2.0)
print(json.dumps({"before": before, "first": after_first, "second": after_second}))
"""


def test_the_first_setup_of_a_process_ends_with_one_full_collection() -> None:
    """The objects the first setup imports are swept once, on the caller's thread, so that the first full
    collection does not land later on a background thread holding the GIL; a second handle does not sweep again."""
    result = run_child(_SWEEP_RUN)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["first"] >= counts["before"] + 1, counts
    assert counts["second"] == counts["first"], counts
