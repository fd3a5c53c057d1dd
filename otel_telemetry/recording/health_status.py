"""The health model: statuses, one component's health, and how dependencies and criticality derive what is shown.

A component's *own* status is what was set or what its check reported (after its failure threshold). What
``/health`` shows, what :meth:`HealthRegistry.status` aggregates and what readiness reads is its *effective*
status, the worst of:

* its own status;
* for each dependency (``depends_on``): that dependency's effective status, capped at degraded when the dependency
  is not critical (``critical=False``: an optional component degrades what needs it but never takes it down). The
  message then names it: ``"dependency 'database' is unhealthy"``;
* unhealthy for a dependency that is neither a component nor a registered check (``"unknown dependency 'x'"``).
  A dependency registered as a check that has not reported yet has no effect.

The aggregate is the worst effective status, a non-critical component counting at most as degraded.
Dependency cycles are refused when the check closing one is registered (:func:`find_cycle`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

__all__ = ["ComponentHealth", "HealthCheck", "HealthStatus", "status_label"]


class HealthStatus(str, Enum):
    """The health of a component or of the whole server."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


_LABELS = {HealthStatus.HEALTHY: "Healthy", HealthStatus.DEGRADED: "Degraded", HealthStatus.UNHEALTHY: "Unhealthy"}
_SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


def status_label(status: HealthStatus) -> str:
    """The spelling ``/health`` uses for ``status``: ``"Healthy"``, ``"Degraded"`` or ``"Unhealthy"``."""
    return _LABELS[status]


#: What a check function returns: a status, or a status and a message.
HealthCheck = Callable[[], HealthStatus | tuple[HealthStatus, str]]


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One component's health (immutable).

    Attributes:
        name: the component.
        status: its status (from :meth:`HealthRegistry.components`: the effective one, see the module docs).
        message: why, or empty.
        timestamp: when its status was last set or checked (Unix epoch seconds).
        dependencies: the components it depends on (``depends_on``), in registration order.
        consecutive_failures: failed runs of its check in a row (0 after a success, and for components set by
            hand).
        critical: whether its being unhealthy makes the aggregate (and what depends on it) unhealthy; when
            False it counts as degraded at most.
    """

    name: str
    status: HealthStatus
    message: str
    timestamp: float
    dependencies: tuple[str, ...] = ()
    consecutive_failures: int = 0
    critical: bool = True

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping, as ``/health`` shows it: status spelled by :func:`status_label`, an empty message
        as None, the timestamp in whole seconds, the dependencies as a list."""
        return {
            "name": self.name,
            "status": status_label(self.status),
            "message": self.message or None,
            "timestamp": int(self.timestamp),
            "dependencies": list(self.dependencies),
            "consecutive_failures": self.consecutive_failures,
            "critical": self.critical,
        }


def parse_status(value: object) -> HealthStatus:
    """``value`` as a status (a member or its value, any case). Raises ValueError naming the value."""
    if isinstance(value, HealthStatus):
        return value
    if isinstance(value, str):
        try:
            return HealthStatus(value.strip().lower())
        except ValueError:
            pass
    raise ValueError(f"health status must be one of {[s.value for s in HealthStatus]}, got {value!r}")


def parse_result(result: object) -> tuple[HealthStatus, str]:
    """A check's result as ``(status, message)``. Raises ValueError (naming the value, for the log) when invalid."""
    if isinstance(result, tuple) and len(result) == 2:
        return parse_status(result[0]), str(result[1])
    return parse_status(result), ""


def component_names(where: str, field: str, names: object) -> tuple[str, ...]:
    """``names`` as a tuple of non-empty strings without repeats. Raises ValueError naming ``field``."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise ValueError(f"{where}: {field} must be an iterable of component names, got {names!r}")
    found = tuple(names)
    for name in found:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: {field} must hold non-empty strings, got {name!r}")
    return tuple(dict.fromkeys(found))


def worse(a: HealthStatus, b: HealthStatus) -> HealthStatus:
    """The worse of two statuses."""
    return b if _SEVERITY[b] > _SEVERITY[a] else a


def weight(component: ComponentHealth) -> HealthStatus:
    """What ``component`` weighs in the aggregate and on its dependents: its status, at most degraded when it is
    not critical."""
    if not component.critical and component.status is HealthStatus.UNHEALTHY:
        return HealthStatus.DEGRADED
    return component.status


def aggregate(components: Iterable[ComponentHealth]) -> HealthStatus:
    """The worst :func:`weight` of effective ``components``; healthy when there is none."""
    worst = HealthStatus.HEALTHY
    for component in components:
        worst = worse(worst, weight(component))
    return worst


def unknown_dependencies(component: ComponentHealth, known: Collection[str]) -> list[str]:
    """The dependencies of ``component`` that are not in ``known`` (components and checks)."""
    return [name for name in component.dependencies if name not in known]


def effective(own: Mapping[str, ComponentHealth], checks: Collection[str]) -> dict[str, ComponentHealth]:
    """Every component with its effective status and message (see the module docs), by name.

    ``own`` holds the components' own health; ``checks`` the names of registered checks (a dependency on one that
    has not reported yet has no effect).
    """
    resolved: dict[str, ComponentHealth] = {}

    def resolve(name: str, path: frozenset[str]) -> ComponentHealth:
        done = resolved.get(name)
        if done is not None:
            return done
        component = own[name]
        status, notes = component.status, []
        for dependency in component.dependencies:
            found = own.get(dependency)
            if dependency in path:  # refused at registration; guarded so that a read can never recurse forever
                status, note = HealthStatus.UNHEALTHY, f"dependency cycle through {dependency!r}"
            elif found is None:
                if dependency in checks:
                    continue
                status, note = HealthStatus.UNHEALTHY, f"unknown dependency {dependency!r}"
            else:
                upstream = resolve(dependency, path | {name})
                effect = weight(upstream)
                if effect is HealthStatus.HEALTHY:
                    continue
                status, note = worse(status, effect), f"dependency {dependency!r} is {upstream.status.value}"
            notes.append(note)
        if notes:
            message = "; ".join([component.message, *notes] if component.message else notes)
            component = replace(component, status=status, message=message)
        resolved[name] = component
        return component

    for name in own:
        resolve(name, frozenset())
    return resolved


def readiness_failures(
    components: Mapping[str, ComponentHealth], needed: Iterable[str] | None
) -> list[dict[str, object]]:
    """What keeps the server from being ready, sorted by name: each ``needed`` component that is unhealthy or
    missing (``"status": "missing"``), or, when ``needed`` is None, each critical unhealthy component. Each entry
    has ``name``, ``status`` (lowercase) and ``message`` (None when empty)."""
    failing: list[ComponentHealth] = []
    missing: list[str] = []
    if needed is None:
        failing = [c for c in components.values() if c.critical and c.status is HealthStatus.UNHEALTHY]
    else:
        for name in needed:
            component = components.get(name)
            if component is None:
                missing.append(name)
            elif component.status is HealthStatus.UNHEALTHY:
                failing.append(component)
    entries: list[dict[str, object]] = [
        {"name": c.name, "status": c.status.value, "message": c.message or None} for c in failing
    ]
    entries += [{"name": name, "status": "missing", "message": "has not reported"} for name in missing]
    return sorted(entries, key=lambda entry: str(entry["name"]))


def find_cycle(graph: Mapping[str, Iterable[str]], start: str) -> list[str] | None:
    """A dependency path from ``start`` back to ``start`` in ``graph`` (name -> its dependencies), or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        for dependency in graph.get(name, ()):
            if dependency == start:
                return [*path, start]
            if dependency not in seen:
                seen.add(dependency)
                stack.append((dependency, [*path, dependency]))
    return None
