"""otel-telemetry: complete, cheap, trustworthy OpenTelemetry telemetry for multiplayer game servers.

One call gives a server every documented metric::

    from otel_telemetry import setup_telemetry

    telemetry = setup_telemetry(server_id="server-001", enable_prometheus_endpoint=True)
    with telemetry.performance.tick():
        telemetry.network.packet_received(512)
    telemetry.shutdown()

The names below load lazily, so ``import otel_telemetry.catalog`` (or any ``instrumentations`` module) never loads
the OpenTelemetry SDK or its exporters. Everything else lives in the subpackage named for its concern:
:mod:`otel_telemetry.recording` (statsd-style facade, ``@traced``, events, health, JSON logs),
:mod:`otel_telemetry.snapshot` (``ServerMetrics``, frames, history, files), :mod:`otel_telemetry.alerts`,
:mod:`otel_telemetry.export` (Prometheus, OTLP, the API principal) and :mod:`otel_telemetry.catalog`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from otel_telemetry._version import __version__

if TYPE_CHECKING:
    from otel_telemetry.config import TelemetryConfig
    from otel_telemetry.recording.health import HealthStatus
    from otel_telemetry.recording.logs import JsonLogHandler
    from otel_telemetry.recording.tracing import timer, traced
    from otel_telemetry.snapshot.model import ServerMetrics
    from otel_telemetry.snapshot.otlp import decode_otlp_metrics
    from otel_telemetry.telemetry import Telemetry, setup_telemetry

#: The public names, each with the module that defines it.
_PUBLIC: dict[str, str] = {
    "setup_telemetry": "otel_telemetry.telemetry",
    "Telemetry": "otel_telemetry.telemetry",
    "TelemetryConfig": "otel_telemetry.config",
    "ServerMetrics": "otel_telemetry.snapshot.model",
    "traced": "otel_telemetry.recording.tracing",
    "timer": "otel_telemetry.recording.tracing",
    "HealthStatus": "otel_telemetry.recording.health",
    "JsonLogHandler": "otel_telemetry.recording.logs",
    "decode_otlp_metrics": "otel_telemetry.snapshot.otlp",
}

#: Names this package exported before they moved to their subpackage: still found, with a DeprecationWarning.
_MOVED: dict[str, str] = {
    **dict.fromkeys(
        ("Alert", "AlertManager", "AlertRule", "AlertState", "CallbackNotifier", "LogNotifier", "Severity",
         "WebhookNotifier", "default_rules"),
        "otel_telemetry.alerts",
    ),
    **dict.fromkeys(
        ("Event", "GaugeStats", "MetricsFacade", "TimingStats", "ComponentHealth", "HealthRegistry"),
        "otel_telemetry.recording",
    ),
    **dict.fromkeys(
        ("Distribution", "FieldSummary", "GameMetrics", "HardwareMetrics", "NetworkMetrics", "Percentiles",
         "PerformanceMetrics"),
        "otel_telemetry.snapshot",
    ),
    **dict.fromkeys(("CATALOG", "MetricSpec"), "otel_telemetry.catalog"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        module = _MOVED.get(name)
        if module is None:
            raise AttributeError(f"module 'otel_telemetry' has no attribute {name!r}")
        warnings.warn(
            f"otel_telemetry.{name} moved to {module}.{name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "HealthStatus",
    "JsonLogHandler",
    "ServerMetrics",
    "Telemetry",
    "TelemetryConfig",
    "__version__",
    "decode_otlp_metrics",
    "setup_telemetry",
    "timer",
    "traced",
]
