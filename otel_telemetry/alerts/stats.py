"""Alert statistics: how many alerts fired, were acknowledged and resolved, and how long that took.

:class:`AlertStats` is what :meth:`AlertManager.stats() <otel_telemetry.alerts.AlertManager.stats>` returns: an
immutable view, safe to share. The manager keeps the running numbers in a :class:`_StatsBook` under its own lock;
memory is bounded by the number of rules (a removed rule's counts leave ``by_rule`` but stay in the totals).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from otel_telemetry.alerts.model import AlertRule, Severity

__all__ = ["AlertCounts", "AlertStats", "DurationStats"]


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Durations in seconds: how many were measured, their mean and their maximum (None before the first)."""

    count: int = 0
    mean: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, object]:
        """``{"count": ..., "mean": ..., "max": ...}`` (seconds)."""
        return {"count": self.count, "mean": self.mean, "max": self.max}


@dataclass(frozen=True, slots=True)
class AlertCounts:
    """Counts of alerts: those that started firing, were acknowledged, resolved automatically (their condition
    stopped holding, or their rule was removed) or manually (:meth:`AlertManager.resolve`), since the manager was
    created; and those pending or firing now."""

    fired: int = 0
    acknowledged: int = 0
    resolved_automatically: int = 0
    resolved_manually: int = 0
    pending: int = 0
    firing: int = 0

    @property
    def resolved(self) -> int:
        """Alerts resolved, automatically or manually."""
        return self.resolved_automatically + self.resolved_manually

    def to_dict(self) -> dict[str, int]:
        """Every count, ``resolved`` included."""
        return {
            "fired": self.fired,
            "acknowledged": self.acknowledged,
            "resolved": self.resolved,
            "resolved_automatically": self.resolved_automatically,
            "resolved_manually": self.resolved_manually,
            "pending": self.pending,
            "firing": self.firing,
        }


@dataclass(frozen=True, slots=True)
class AlertStats:
    """A manager's alert statistics at one moment. Immutable.

    Attributes:
        total: the counts over every rule.
        by_rule: the counts of each current rule, in rule order.
        by_severity: the counts per severity (``info``, ``warning``, ``error``, ``critical``; all four present).
        by_state: alerts per state now: ``pending``, ``firing``, and ``resolved`` (those still kept by
            ``resolved()``, within ``resolved_retention``).
        time_to_acknowledge: seconds from an alert's firing (from its start, when acknowledged while pending) to
            its first acknowledgement.
        time_to_resolve: seconds from an alert's firing (from its start, when resolved manually while pending) to
            its resolution.
        evaluations: frames or snapshots evaluated; checks: :meth:`AlertManager.check_metric` calls evaluated.
        errors: rule evaluations that failed; notification_failures: notifier calls that raised.
        samples_dropped: samples of metric-name rules dropped beyond their bound (their window then looks back
            less far).
    """

    total: AlertCounts
    by_rule: Mapping[str, AlertCounts]
    by_severity: Mapping[str, AlertCounts]
    by_state: Mapping[str, int]
    time_to_acknowledge: DurationStats
    time_to_resolve: DurationStats
    evaluations: int = 0
    checks: int = 0
    errors: int = 0
    notification_failures: int = 0
    samples_dropped: int = 0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping of every field."""
        return {
            "total": self.total.to_dict(),
            "by_rule": {name: counts.to_dict() for name, counts in self.by_rule.items()},
            "by_severity": {name: counts.to_dict() for name, counts in self.by_severity.items()},
            "by_state": dict(self.by_state),
            "time_to_acknowledge": self.time_to_acknowledge.to_dict(),
            "time_to_resolve": self.time_to_resolve.to_dict(),
            "evaluations": self.evaluations,
            "checks": self.checks,
            "errors": self.errors,
            "notification_failures": self.notification_failures,
            "samples_dropped": self.samples_dropped,
        }


class _Durations:
    __slots__ = ("count", "max", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.max: float | None = None

    def add(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.count += 1
        self.total += seconds
        self.max = seconds if self.max is None else max(self.max, seconds)

    def frozen(self) -> DurationStats:
        return DurationStats(self.count, self.total / self.count if self.count else None, self.max)


# Indexes of the running counts: fired, acknowledged, resolved automatically, resolved manually.
_FIRED, _ACKNOWLEDGED, _AUTOMATIC, _MANUAL = range(4)


class _StatsBook:
    """The running numbers behind :class:`AlertStats`; every method is called under the manager's lock."""

    __slots__ = ("_by_rule", "_by_severity", "_resolve", "_to_ack", "_total")

    def __init__(self) -> None:
        self._total = [0, 0, 0, 0]
        self._by_rule: dict[str, list[int]] = {}
        self._by_severity: dict[str, list[int]] = {s.value: [0, 0, 0, 0] for s in Severity}
        self._to_ack = _Durations()
        self._resolve = _Durations()

    def _count(self, rule: AlertRule, index: int) -> None:
        self._total[index] += 1
        self._by_rule.setdefault(rule.name, [0, 0, 0, 0])[index] += 1
        self._by_severity[rule.severity.value][index] += 1

    def fired(self, rule: AlertRule) -> None:
        self._count(rule, _FIRED)

    def acknowledged(self, rule: AlertRule, seconds: float) -> None:
        self._count(rule, _ACKNOWLEDGED)
        self._to_ack.add(seconds)

    def resolved(self, rule: AlertRule, seconds: float, *, manual: bool) -> None:
        self._count(rule, _MANUAL if manual else _AUTOMATIC)
        self._resolve.add(seconds)

    def forget(self, name: str) -> None:
        """Drop a removed rule's own counts (the totals keep them)."""
        self._by_rule.pop(name, None)

    def frozen(
        self,
        rules: Iterable[AlertRule],
        active: Iterable[tuple[AlertRule, bool]],
        resolved_kept: int,
        counters: tuple[int, int, int, int, int],
    ) -> AlertStats:
        """The statistics, with ``active`` the (rule, firing) of every pending or firing alert and ``counters`` the
        manager's evaluations, checks, errors, notification failures and dropped samples."""
        now: dict[str, list[int]] = {}
        by_severity_now: dict[str, list[int]] = {s.value: [0, 0] for s in Severity}
        totals_now = [0, 0]
        for rule, firing in active:
            slot = 1 if firing else 0
            now.setdefault(rule.name, [0, 0])[slot] += 1
            by_severity_now[rule.severity.value][slot] += 1
            totals_now[slot] += 1

        def counts(running: list[int], current: list[int]) -> AlertCounts:
            return AlertCounts(
                fired=running[_FIRED],
                acknowledged=running[_ACKNOWLEDGED],
                resolved_automatically=running[_AUTOMATIC],
                resolved_manually=running[_MANUAL],
                pending=current[0],
                firing=current[1],
            )

        by_rule = {
            rule.name: counts(self._by_rule.get(rule.name, [0, 0, 0, 0]), now.get(rule.name, [0, 0])) for rule in rules
        }
        return AlertStats(
            total=counts(self._total, totals_now),
            by_rule=MappingProxyType(by_rule),
            by_severity=MappingProxyType(
                {name: counts(running, by_severity_now[name]) for name, running in self._by_severity.items()}
            ),
            by_state=MappingProxyType({"pending": totals_now[0], "firing": totals_now[1], "resolved": resolved_kept}),
            time_to_acknowledge=self._to_ack.frozen(),
            time_to_resolve=self._resolve.frozen(),
            evaluations=counters[0],
            checks=counters[1],
            errors=counters[2],
            notification_failures=counters[3],
            samples_dropped=counters[4],
        )
