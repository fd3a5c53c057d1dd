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
from collections.abc import Iterator

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_telemetry.recording.health import HealthRegistry, HealthStatus
from otel_telemetry.series import SeriesRegistry

__all__ = ["STATUS_VALUES", "register_health_metrics"]

#: The value ``health_status`` reports for each status (0: registered, no result yet).
STATUS_VALUES: dict[HealthStatus, int] = {
    HealthStatus.HEALTHY: 1,
    HealthStatus.DEGRADED: 2,
    HealthStatus.UNHEALTHY: 3,
}
_OWNER = "health"
_SERIES_PER_COMPONENT = 3


def register_health_metrics(meter: Meter, registry: HealthRegistry, series: SeriesRegistry) -> None:
    """Create the three observable instruments on ``meter``, reading ``registry`` at each collection."""
    counted: set[str] = set()
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:
            if name not in counted:
                counted.add(name)
                series.reserve(_SERIES_PER_COMPONENT, _OWNER)

    def status(_options: CallbackOptions) -> Iterator[Observation]:
        reported = {c.name: c for c in registry.components()}
        for name in sorted({*reported, *registry.check_names}):
            count(name)
            component = reported.get(name)
            value = STATUS_VALUES.get(component.status, 0) if component is not None else 0
            yield Observation(value, {"component": name})

    def runs(_options: CallbackOptions) -> Iterator[Observation]:
        for name, (runs_, _took) in sorted(registry.check_runs().items()):
            yield Observation(runs_, {"component": name})

    def duration(_options: CallbackOptions) -> Iterator[Observation]:
        for name, (_count, took) in sorted(registry.check_runs().items()):
            yield Observation(took, {"component": name})

    if series.claim("health.status", "", "gauge", _OWNER) is not None:
        meter.create_observable_gauge(
            "health.status",
            [status],
            description="Component health: 0 unknown, 1 healthy, 2 degraded, 3 unhealthy (dependencies included)",
        )
    if series.claim("health.checks", "", "counter", _OWNER) is not None:
        meter.create_observable_counter("health.checks", [runs], description="Health check runs finished")
    if series.claim("health.check.duration", "s", "gauge", _OWNER) is not None:
        meter.create_observable_gauge(
            "health.check.duration", [duration], unit="s", description="Duration of the last health check run"
        )
