"""The mutable state of one pending or firing alert, kept by :class:`~otel_telemetry.alerts.AlertManager`.

Not thread-safe on its own: every ``_Entry`` is read and written under the manager's lock only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from otel_telemetry.alerts.model import Alert, AlertRule, AlertState


class _Entry:
    """One pending or firing alert (guarded by the manager's lock)."""

    __slots__ = (
        "ack_at",
        "ack_by",
        "acknowledged",
        "active_mono",
        "active_wall",
        "annotations",
        "fired_mono",
        "fired_wall",
        "keep_since",
        "last_notified",
        "rule",
        "server_id",
        "state",
        "value",
    )

    def __init__(self, rule: AlertRule, value: float, now: float, wall: datetime, server_id: str | None) -> None:
        self.rule = rule
        self.state = AlertState.PENDING
        self.value: float | None = value
        self.active_mono = now
        self.active_wall = wall
        self.fired_mono: float | None = None
        self.fired_wall: datetime | None = None
        self.keep_since: float | None = None
        self.last_notified: float | None = None
        self.acknowledged = False
        self.ack_by: str | None = None
        self.ack_at: datetime | None = None
        self.annotations: Mapping[str, str] = MappingProxyType(rule.render_annotations(value))
        self.server_id = server_id

    def started(self) -> float:
        """When the alert started firing (monotonic seconds); when it became pending if it never fired."""
        return self.active_mono if self.fired_mono is None else self.fired_mono

    def snapshot(
        self,
        state: AlertState | None = None,
        resolved_at: datetime | None = None,
        resolution: Literal["automatic", "manual"] | None = None,
        resolved_by: str | None = None,
    ) -> Alert:
        rule = self.rule
        return Alert(
            name=rule.name,
            severity=rule.severity,
            state=state or self.state,
            value=self.value,
            metric=rule.metric,
            active_since=self.active_wall,
            fired_at=self.fired_wall,
            resolved_at=resolved_at,
            acknowledged=self.acknowledged,
            acknowledged_by=self.ack_by,
            acknowledged_at=self.ack_at,
            labels=MappingProxyType({"alertname": rule.name, "severity": rule.severity.value, **rule.labels}),
            annotations=self.annotations,
            server_id=self.server_id,
            resolution=resolution,
            resolved_by=resolved_by,
        )
