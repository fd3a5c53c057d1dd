"""The instrumentations as a fresh process sees them: every module imports alone, every entry point loads and
instruments, and ``opentelemetry-instrument`` with ``opentelemetry-distro`` exports the monitors' histograms
over real OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import gzip
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

import instrumentations

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0
GROUP = "opentelemetry_instrumentor"
#: The entry points pyproject.toml declares, name -> "module:class".
DECLARED = {
    "game_server_hardware": "instrumentations.hardware:HardwareInstrumentor",
    "game_server_network": "instrumentations.network:NetworkInstrumentor",
    "game_server_performance": "instrumentations.performance:PerformanceInstrumentor",
    "game_server_game": "instrumentations.game:GameInstrumentor",
}
#: What importing an instrumentation must not load (the exporters are the bootstrap's business).
HEAVY = ("opentelemetry.exporter", "prometheus_client")


def _modules() -> list[str]:
    names = [instrumentations.__name__]
    names += [info.name for info in pkgutil.walk_packages(instrumentations.__path__, "instrumentations.")]
    return sorted(names)


def _child_environment(**extra: str) -> dict[str, str]:
    """This process's environment without OTEL_* settings, importing our packages from the checkout."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    environ.update(extra)
    return environ


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=_child_environment(),
        check=False,
    )


_IMPORT = """
import json, sys
import {name}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))))
"""


def test_the_module_walk_finds_every_instrumentation() -> None:
    """The parametrized tests below see the four monitors and their shared modules (an empty walk passes nothing)."""
    assert {f"instrumentations.{n}" for n in ("hardware", "network", "performance", "game", "_base", "_wiring")} <= set(
        _modules()
    )


@pytest.mark.parametrize("name", _modules())
def test_each_module_imports_alone_without_exporters(name: str) -> None:
    """``import X`` works in a fresh interpreter and loads neither an OpenTelemetry exporter nor prometheus_client."""
    result = _run_python(_IMPORT.format(name=name, heavy=HEAVY))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_pyproject_entry_points_are_the_installed_ones() -> None:
    """The installed distribution declares exactly the four entry points (a stale install would fail here)."""
    found = {ep.name: ep.value for ep in entry_points(group=GROUP) if ep.name.startswith("game_server")}
    assert found == DECLARED


_LOAD = """
import json, sys
from importlib.metadata import entry_points
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

(ep,) = [ep for ep in entry_points(group={group!r}) if ep.name == {name!r}]
cls = ep.load()
assert issubclass(cls, BaseInstrumentor), cls
heavy = {heavy!r}
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])
cls().instrument(meter_provider=provider)
monitor = cls.monitor
data = reader.get_metrics_data()
names = sorted({{m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}})
cls().uninstrument()
provider.shutdown()
print(json.dumps({{"loaded": loaded, "monitor": type(monitor).__name__, "metrics": names, "after": cls.monitor}}))
"""


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_each_entry_point_loads_and_instruments_in_a_fresh_interpreter(name: str) -> None:
    """Loading the entry point gives a BaseInstrumentor whose instrument() reports on a new provider and whose
    uninstrument() unpublishes the monitor; loading it pulls in no exporter."""
    result = _run_python(_LOAD.format(group=GROUP, name=name, heavy=HEAVY))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    section = DECLARED[name].split(":")[1].removesuffix("Instrumentor")
    assert report["loaded"] == []
    assert report["monitor"] == f"{section}Monitor"
    assert report["metrics"], "the instrumented monitor reported nothing"
    assert report["after"] is None


# -- end to end: opentelemetry-instrument, the distro, OTLP/HTTP ---------------------------------------------------


class _Receiver:
    """An OTLP/HTTP metrics receiver on 127.0.0.1 (port 0): keeps every decoded ExportMetricsServiceRequest."""

    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportMetricsServiceRequest()
                request.ParseFromString(body)
                with receiver._lock:
                    receiver.requests.append(request)
                    receiver.paths.append(self.path)
                reply = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        assert not self._thread.is_alive()

    def metrics(self) -> list[tuple[dict[str, str], str, Any]]:
        """``(resource attributes, scope name, metric)`` of every metric of every request, in arrival order."""
        with self._lock:
            requests = list(self.requests)
        found = []
        for request in requests:
            for rm in request.resource_metrics:
                resource = {a.key: a.value.string_value for a in rm.resource.attributes}
                for sm in rm.scope_metrics:
                    found += [(resource, sm.scope.name, metric) for metric in sm.metrics]
        return found


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    """A running OTLP/HTTP receiver, stopped afterwards."""
    running = _Receiver()
    yield running
    running.stop()


_GAME = """
import json, time
from instrumentations.game import GameInstrumentor
from instrumentations.network import NetworkInstrumentor
from instrumentations.performance import PerformanceInstrumentor

network, performance, game = NetworkInstrumentor.monitor, PerformanceInstrumentor.monitor, GameInstrumentor.monitor
assert network is not None and performance is not None and game is not None, "not instrumented"
counts = {"ticks": 0, "packets": 0, "pings": 0}
deadline = time.monotonic() + 2.0
while time.monotonic() < deadline:
    with performance.tick():
        with performance.phase("network"):
            for _ in range(3):
                network.packet_received(120)
                network.packet_latency(5.0)
                counts["packets"] += 1
            network.player_ping("p-1", 42.0)
            counts["pings"] += 1
        game.entity_created("npc")
    counts["ticks"] += 1
    time.sleep(0.01)
print(json.dumps(counts))
"""


def test_opentelemetry_instrument_exports_the_monitors_histograms_over_otlp(
    receiver: _Receiver, tmp_path: Path
) -> None:
    """A game loop run under ``opentelemetry-instrument`` (the distro's SDK provider, OTLP/HTTP every 500 ms) for
    2 s: the receiver gets the monitors' gauges and their histograms, whose final counts equal what was recorded."""
    command = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert command is not None, "opentelemetry-instrument is not installed next to this Python (pip install -e .[dev])"
    script = tmp_path / "game_loop.py"
    script.write_text(_GAME, encoding="utf-8")
    others = sorted(ep.name for ep in entry_points(group=GROUP) if ep.name not in DECLARED)
    environ = _child_environment(
        OTEL_SERVICE_NAME="e2e-game-server",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_TRACES_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=",".join(others),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        environ.pop(proxy, None)
    # subprocess.run kills the child when the timeout expires (opentelemetry-instrument execs Python in place).
    result = subprocess.run(
        [command, sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["ticks"] > 20 and counts["packets"] == 3 * counts["ticks"]

    assert set(receiver.paths) == {"/v1/metrics"}
    assert len(receiver.requests) >= 2, "expected periodic exports plus the final one at exit"
    metrics = receiver.metrics()
    ours = [(resource, metric) for resource, scope, metric in metrics if scope == "otel_telemetry.instrumentations"]
    assert ours, f"no metric of the monitors' scope among {sorted({m.name for _r, _s, m in metrics})}"
    assert {resource.get("service.name") for resource, _metric in ours} == {"e2e-game-server"}

    def final_counts(name: str) -> list[int]:
        found = [metric for _resource, metric in ours if metric.name == name]
        assert found, f"{name} was never exported"
        assert all(metric.WhichOneof("data") == "histogram" for metric in found)
        return [point.count for point in found[-1].histogram.data_points]

    assert final_counts("server.network.packet_latency") == [counts["packets"]]
    assert final_counts("server.network.player_ping") == [counts["pings"]]
    assert final_counts("server.tick.duration") == [counts["ticks"]]
    assert final_counts("server.update_cycle.duration") == [counts["ticks"]]
    names = {metric.name for _resource, metric in ours}
    assert {
        "server.tick_rate",
        "server.network.packets",
        "server.game.entities",
        "server.network.player_ping.last",
    } <= (names)
    packets = [m for _r, m in ours if m.name == "server.network.packets"][-1]
    received = [p.as_int for p in packets.sum.data_points if p.attributes[0].value.string_value == "received"]
    assert received == [counts["packets"]]
