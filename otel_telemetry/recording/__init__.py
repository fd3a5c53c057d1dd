"""What game code calls besides the monitors: the statsd-style facade and its registered instruments, ``@traced``
handlers and ``timer``, a stopwatch, profiling sessions, events, component health and its checks, hooks and JSON
logs. Everything here writes cheap
in-process state; OpenTelemetry reads it at collection time.
"""

from otel_telemetry.recording.events import Event, EventRecorder
from otel_telemetry.recording.exporters import MetricsExporter
from otel_telemetry.recording.facade import CounterValue, GaugeStats, MetricsFacade, TimingStats
from otel_telemetry.recording.health import ComponentHealth, HealthRegistry, HealthStatus
from otel_telemetry.recording.health_checks import memory_check, tcp_check, threshold_check
from otel_telemetry.recording.hooks import HookRegistry
from otel_telemetry.recording.instruments import Counter, Gauge, Histogram, InstrumentRegistry
from otel_telemetry.recording.logs import JsonLogFormatter, JsonLogHandler
from otel_telemetry.recording.profiling import (
    MemoryUsage,
    Profiler,
    ProfileSession,
    ProfileSummary,
    ScopeStats,
    SessionReport,
)
from otel_telemetry.recording.stopwatch import Stopwatch, format_duration, logged_timing
from otel_telemetry.recording.tracing import timer, traced

__all__ = [
    "ComponentHealth",
    "Counter",
    "CounterValue",
    "Event",
    "EventRecorder",
    "Gauge",
    "GaugeStats",
    "HealthRegistry",
    "HealthStatus",
    "Histogram",
    "HookRegistry",
    "InstrumentRegistry",
    "JsonLogFormatter",
    "JsonLogHandler",
    "MemoryUsage",
    "MetricsExporter",
    "MetricsFacade",
    "ProfileSession",
    "ProfileSummary",
    "Profiler",
    "ScopeStats",
    "SessionReport",
    "Stopwatch",
    "TimingStats",
    "format_duration",
    "logged_timing",
    "memory_check",
    "tcp_check",
    "threshold_check",
    "timer",
    "traced",
]
