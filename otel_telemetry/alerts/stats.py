"""Alert statistics: how many alerts fired, were acknowledged and resolved, and how long that took.

:class:`AlertStats` is what :meth:`AlertManager.stats() <otel_telemetry.alerts.AlertManager.stats>` returns: an
immutable view, safe to share. The manager keeps the running numbers in a
:class:`~otel_telemetry.alerts.stats_book._StatsBook` under its own lock; memory is bounded by the number of rules (a
removed rule's counts leave ``by_rule`` but stay in the totals). This module loads on the first ``stats()`` call:
evaluating rules needs only the running numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
