"""The health registry as metrics: ``health_status``, ``health_checks_total`` and ``health_check_duration_seconds``.

These are the names collectors with health hooks register (``health_status`` 0 = unknown, 1 = healthy,
2 = degraded, 3 = unhealthy), one series each per component, label ``component``:

* ``health.status`` (gauge): the component's status, its dependencies included, as on ``/health``; 0 while a
  registered check has not reported yet;
* ``health.checks`` (counter): runs of the component's check finished so far (hung runs count when they return);
* ``health.check.duration`` (gauge, s): how long the last run took.

Each component's three series are counted in the handle's series budget when first seen, and always exported:
components are the few the application registers, and a health signal that vanished under a budget would hide
exactly what an operator needs when something else is exhausting it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_telemetry._version import __version__
from otel_telemetry.catalog import Instrument
from otel_telemetry.producer import HistogramProducer, ScalarSpec
from otel_telemetry.recording.health import HealthRegistry, HealthStatus
from otel_telemetry.series import Kind, SeriesRegistry

__all__ = ["SCOPE", "STATUS_VALUES", "register_health_metrics"]

#: The scope of the health metrics.
SCOPE = InstrumentationScope("otel_telemetry.health", __version__)
#: The value ``health_status`` reports for each status (0: registered, no result yet).
STATUS_VALUES: dict[HealthStatus, int] = {
    HealthStatus.HEALTHY: 1,
    HealthStatus.DEGRADED: 2,
    HealthStatus.UNHEALTHY: 3,
}
_OWNER = "health"
_SERIES_PER_COMPONENT = 3
_Points = list[tuple[float, dict[str, str]]]


def register_health_metrics(producer: HistogramProducer, registry: HealthRegistry, series: SeriesRegistry) -> None:
    """Produce the three instruments through ``producer`` (scope :data:`SCOPE`), reading ``registry`` at each
    collection."""
    counted: set[str] = set()
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:
            if name not in counted:
                counted.add(name)
                series.reserve(_SERIES_PER_COMPONENT, _OWNER)

    def status() -> _Points:
        reported = {c.name: c for c in registry.components()}
        points: _Points = []
        for name in sorted({*reported, *registry.check_names}):
            count(name)
            component = reported.get(name)
            value = STATUS_VALUES.get(component.status, 0) if component is not None else 0
            points.append((value, {"component": name}))
        return points

    def runs() -> _Points:
        return [(runs_, {"component": name}) for name, (runs_, _took) in sorted(registry.check_runs().items())]

    def duration() -> _Points:
        return [(took, {"component": name}) for name, (_count, took) in sorted(registry.check_runs().items())]

    candidates: list[tuple[ScalarSpec, Kind, Callable[[], _Points]]] = [
        (
            ScalarSpec(
                "health.status",
                Instrument.OBSERVABLE_GAUGE,
                "",
                "Component health: 0 unknown, 1 healthy, 2 degraded, 3 unhealthy (dependencies included)",
            ),
            "gauge",
            status,
        ),
        (ScalarSpec("health.checks", Instrument.OBSERVABLE_COUNTER, "", "Health check runs finished"), "counter", runs),
        (
            ScalarSpec(
                "health.check.duration", Instrument.OBSERVABLE_GAUGE, "s", "Duration of the last health check run"
            ),
            "gauge",
            duration,
        ),
    ]
    instruments = [
        (spec, observe) for spec, kind, observe in candidates if series.claim(spec.name, spec.unit, kind, _OWNER)
    ]

    def observe() -> list[tuple[ScalarSpec, _Points]]:
        found = [(spec, points()) for spec, points in instruments]
        return [(spec, points) for spec, points in found if points]  # no component yet: no series, as in the SDK

    producer.add_scalar_source(observe, time.time_ns(), SCOPE)
