"""Frames and what is derived from them: ``ServerMetrics`` (the spec's programmatic access and JSON payload), the
history ring, OTLP bytes and snapshot files.
"""

from otel_telemetry.snapshot.model import (
    Distribution,
    FieldSummary,
    GameMetrics,
    HardwareMetrics,
    History,
    NetworkMetrics,
    Percentiles,
    PerformanceMetrics,
    ServerMetrics,
)

__all__ = [
    "Distribution",
    "FieldSummary",
    "GameMetrics",
    "HardwareMetrics",
    "History",
    "NetworkMetrics",
    "Percentiles",
    "PerformanceMetrics",
    "ServerMetrics",
]
