"""otel-telemetry: complete, cheap, trustworthy OpenTelemetry telemetry for multiplayer game servers.

One call gives a server every documented metric::

    from otel_telemetry import setup_telemetry

    telemetry = setup_telemetry(server_id="server-001", enable_prometheus_endpoint=True)
    with telemetry.performance.tick():
        telemetry.network.packet_received(512)
    telemetry.shutdown()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_telemetry._alerts import (
    Alert,
    AlertManager,
    AlertRule,
    AlertState,
    CallbackNotifier,
    LogNotifier,
    Severity,
    WebhookNotifier,
    default_rules,
)
from otel_telemetry._bootstrap import Telemetry, __version__, setup_telemetry
from otel_telemetry._config import TelemetryConfig
from otel_telemetry._events import Event
from otel_telemetry._facade import GaugeStats, MetricsFacade, TimingStats
from otel_telemetry._health import ComponentHealth, HealthRegistry, HealthStatus
from otel_telemetry._logs import JsonLogHandler
from otel_telemetry._snapshot import (
    Distribution,
    FieldSummary,
    GameMetrics,
    HardwareMetrics,
    NetworkMetrics,
    Percentiles,
    PerformanceMetrics,
    ServerMetrics,
)
from otel_telemetry._tracing import timer, traced
from otel_telemetry.catalog import CATALOG, MetricSpec

if TYPE_CHECKING:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest


def decode_otlp_metrics(data: bytes) -> ExportMetricsServiceRequest:
    """Read back OTLP protobuf bytes (from :meth:`Telemetry.current_metrics_otlp`) with the official classes."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request: ExportMetricsServiceRequest = ExportMetricsServiceRequest.FromString(data)
    return request


__all__ = [
    "CATALOG",
    "Alert",
    "AlertManager",
    "AlertRule",
    "AlertState",
    "CallbackNotifier",
    "ComponentHealth",
    "Distribution",
    "Event",
    "FieldSummary",
    "GameMetrics",
    "GaugeStats",
    "HardwareMetrics",
    "HealthRegistry",
    "HealthStatus",
    "JsonLogHandler",
    "LogNotifier",
    "MetricSpec",
    "MetricsFacade",
    "NetworkMetrics",
    "Percentiles",
    "PerformanceMetrics",
    "ServerMetrics",
    "Severity",
    "Telemetry",
    "TelemetryConfig",
    "TimingStats",
    "WebhookNotifier",
    "__version__",
    "decode_otlp_metrics",
    "default_rules",
    "setup_telemetry",
    "timer",
    "traced",
]
