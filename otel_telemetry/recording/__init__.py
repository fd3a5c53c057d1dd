"""What game code calls besides the monitors: the statsd-style facade, ``@traced`` handlers and ``timer``,
events, component health and JSON logs. Everything here writes cheap in-process state; OpenTelemetry reads it at
collection time.
"""

from otel_telemetry.recording.events import Event, EventRecorder
from otel_telemetry.recording.exporters import MetricsExporter
from otel_telemetry.recording.facade import CounterValue, GaugeStats, MetricsFacade, TimingStats
from otel_telemetry.recording.health import ComponentHealth, HealthRegistry, HealthStatus
from otel_telemetry.recording.logs import JsonLogHandler
from otel_telemetry.recording.tracing import timer, traced

__all__ = [
    "ComponentHealth",
    "CounterValue",
    "Event",
    "EventRecorder",
    "GaugeStats",
    "HealthRegistry",
    "HealthStatus",
    "JsonLogHandler",
    "MetricsExporter",
    "MetricsFacade",
    "TimingStats",
    "timer",
    "traced",
]
