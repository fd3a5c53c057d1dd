"""The running numbers behind :class:`~otel_telemetry.alerts.stats.AlertStats`, kept by the alert manager.

The manager counts on every transition; the immutable statistics (three dataclasses) are built only when someone
asks for them, so :mod:`otel_telemetry.alerts.stats` is imported on the first ``stats()`` call, not with the
manager. Not thread-safe on its own: every method is called under the manager's lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING

from otel_telemetry.alerts.model import AlertRule, Severity

if TYPE_CHECKING:
    from otel_telemetry.alerts.stats import AlertCounts, AlertStats, DurationStats


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
        from otel_telemetry.alerts.stats import DurationStats

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
        from otel_telemetry.alerts.stats import AlertCounts, AlertStats

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
