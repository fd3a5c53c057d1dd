"""What game code calls besides the monitors: the statsd-style facade and its registered instruments, ``@traced``
handlers and ``timer``, a stopwatch, profiling sessions, events, component health and its checks, hooks and JSON
logs. Everything here writes cheap
in-process state; OpenTelemetry reads it at collection time.

The names below load on first use, each from the module that defines it, so that importing one module of this
package (``otel_telemetry.recording.tracing``, say) does not load the others (the stopwatch, the JSON logs, the
health checks and the exporters of the statsd-style series are not needed to set a handle up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_telemetry._lazy import lazy_names

if TYPE_CHECKING:
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

#: The public names, each with the module that defines it.
_PUBLIC: dict[str, str] = {
    **dict.fromkeys(("Event", "EventRecorder"), "otel_telemetry.recording.events"),
    "MetricsExporter": "otel_telemetry.recording.exporters",
    **dict.fromkeys(("CounterValue", "GaugeStats", "MetricsFacade", "TimingStats"), "otel_telemetry.recording.facade"),
    **dict.fromkeys(("ComponentHealth", "HealthRegistry", "HealthStatus"), "otel_telemetry.recording.health"),
    **dict.fromkeys(("memory_check", "tcp_check", "threshold_check"), "otel_telemetry.recording.health_checks"),
    "HookRegistry": "otel_telemetry.recording.hooks",
    **dict.fromkeys(("Counter", "Gauge", "Histogram", "InstrumentRegistry"), "otel_telemetry.recording.instruments"),
    **dict.fromkeys(("JsonLogFormatter", "JsonLogHandler"), "otel_telemetry.recording.logs"),
    **dict.fromkeys(
        ("MemoryUsage", "Profiler", "ProfileSession", "ProfileSummary", "ScopeStats", "SessionReport"),
        "otel_telemetry.recording.profiling",
    ),
    **dict.fromkeys(("Stopwatch", "format_duration", "logged_timing"), "otel_telemetry.recording.stopwatch"),
    **dict.fromkeys(("timer", "traced"), "otel_telemetry.recording.tracing"),
}


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

__getattr__, __dir__ = lazy_names(__name__, globals(), _PUBLIC, __all__)
