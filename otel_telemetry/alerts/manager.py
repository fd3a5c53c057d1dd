"""The alert lifecycle, with the semantics of Prometheus alerting rules: :class:`AlertManager`.

The manager runs every rule against each ``ServerMetrics`` snapshot it is given:

* a rule whose condition holds makes an alert **pending**; once it has held for ``for_`` seconds the alert is
  **firing** (with ``for_ = 0`` it fires on the first evaluation), exactly as Prometheus' ``for``;
* a pending alert whose condition stops holding is dropped without notice; a firing alert keeps firing for
  ``keep_firing_for`` seconds after its condition stopped holding (Prometheus' ``keep_firing_for``), then is
  **resolved**, and notifiers hear about it;
* a missing value (``None``: nothing measured yet, no tick in the window...) is "no data": it never fires, and a
  firing alert without data behaves as if its condition stopped holding;
* notifiers hear of an alert when it starts firing, again every ``cooldown`` seconds while it fires (0: never again;
  acknowledged alerts are not repeated) and when it resolves, only if it fired.

Nothing here runs on its own: :class:`~otel_telemetry.alerts.AlertEvaluator` calls :meth:`AlertManager.evaluate`
once per frame, or an application calls it with snapshots of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType

from otel_telemetry.alerts.model import _WINDOWED, Alert, AlertRule, AlertState, _duration
from otel_telemetry.alerts.notifiers import Notifier
from otel_telemetry.snapshot.model import ServerMetrics

__all__ = ["AlertManager"]

_logger = logging.getLogger(__name__)

#: Resolved alerts kept at most (whatever the retention), so that a flapping rule cannot grow memory.
_MAX_RESOLVED = 1000


class _Entry:
    """The mutable state of one pending or firing alert (guarded by the manager's lock)."""

    __slots__ = (
        "ack_at",
        "ack_by",
        "acknowledged",
        "active_mono",
        "active_wall",
        "annotations",
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
        self.fired_wall: datetime | None = None
        self.keep_since: float | None = None
        self.last_notified: float | None = None
        self.acknowledged = False
        self.ack_by: str | None = None
        self.ack_at: datetime | None = None
        self.annotations: Mapping[str, str] = MappingProxyType(rule.render_annotations(value))
        self.server_id = server_id

    def snapshot(self, state: AlertState | None = None, resolved_at: datetime | None = None) -> Alert:
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
        )


class AlertManager:
    """Runs rules against snapshots and keeps every alert's lifecycle (see the module docstring).

    Args:
        rules: the rules (names must be unique).
        notifiers: who hears of firing, repeated and resolved alerts.
        clock: monotonic seconds, for ``for_``, ``keep_firing_for``, ``cooldown`` and retention.
        wall_clock: epoch seconds, for the alerts' timestamps.
        resolved_retention: seconds resolved alerts stay in :meth:`resolved` (at most 1000 are kept).

    Thread-safe: one lock guards the state; notifiers run outside it, on the thread that called :meth:`evaluate`
    (or wherever its ``notify`` sends them: :class:`~otel_telemetry.alerts.AlertEvaluator` hands them to its own
    worker thread). :meth:`evaluate` never raises: a rule that fails is counted in ``errors``, logged once, and its
    alert left as it was (as Prometheus does for a failing rule); a failing notifier is counted in
    ``notification_failures``.
    """

    def __init__(
        self,
        rules: Iterable[AlertRule] = (),
        *,
        notifiers: Iterable[Notifier] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        resolved_retention: float = 300.0,
    ) -> None:
        self._lock = threading.Lock()
        self._rules: tuple[AlertRule, ...] = ()
        for rule in rules:
            self._rules = self._with_rule(rule)
        notifier_list = tuple(notifiers)
        for notifier in notifier_list:
            if not isinstance(notifier, Notifier):
                raise ValueError(f"AlertManager.notifiers: expected Notifier instances, got {notifier!r}")
        self._notifiers = notifier_list
        self._clock = clock
        self._wall_clock = wall_clock
        self._retention = _duration("AlertManager", "resolved_retention", resolved_retention)
        self._entries: dict[str, _Entry] = {}
        self._resolved: deque[tuple[float, Alert]] = deque(maxlen=_MAX_RESOLVED)
        self._logged: set[str] = set()
        self.errors = 0
        self.notification_failures = 0
        self.evaluations = 0

    # -- rules --------------------------------------------------------------------------------------------------------
    def _with_rule(self, rule: AlertRule) -> tuple[AlertRule, ...]:
        if not isinstance(rule, AlertRule):
            raise ValueError(f"expected an AlertRule, got {rule!r}")
        if any(r.name == rule.name for r in self._rules):
            raise ValueError(f"AlertManager: a rule named {rule.name!r} already exists")
        return (*self._rules, rule)

    @property
    def rules(self) -> tuple[AlertRule, ...]:
        """The rules, in evaluation order."""
        return self._rules

    @property
    def notifiers(self) -> tuple[Notifier, ...]:
        """The notifiers."""
        return self._notifiers

    def add_rule(self, rule: AlertRule) -> None:
        """Add a rule (``ValueError`` if its name is taken); it is evaluated from the next evaluation on."""
        with self._lock:
            self._rules = self._with_rule(rule)

    def remove_rule(self, name: str) -> AlertRule:
        """Remove the rule called ``name`` and return it (``KeyError`` if none). Its pending alert is dropped; its
        firing alert is resolved and notified."""
        with self._lock:
            found = next((r for r in self._rules if r.name == name), None)
            if found is None:
                raise KeyError(f"AlertManager: no rule named {name!r}")
            self._rules = tuple(r for r in self._rules if r.name != name)
            entry = self._entries.pop(name, None)
            notices: list[Alert] = []
            if entry is not None and entry.state is AlertState.FIRING:
                notices.append(self._resolve(entry, self._clock()))
        self.dispatch(notices)
        return found

    def add_notifier(self, notifier: Notifier) -> None:
        """Add a notifier (it hears of notifications from the next evaluation on)."""
        if not isinstance(notifier, Notifier):
            raise ValueError(f"AlertManager.add_notifier: expected a Notifier, got {notifier!r}")
        with self._lock:
            self._notifiers = (*self._notifiers, notifier)

    # -- reading ------------------------------------------------------------------------------------------------------
    def active(self) -> list[Alert]:
        """Pending and firing alerts, in rule order."""
        with self._lock:
            order = {r.name: i for i, r in enumerate(self._rules)}
            entries = sorted(self._entries.values(), key=lambda e: order.get(e.rule.name, len(order)))
            return [e.snapshot() for e in entries]

    def firing(self) -> list[Alert]:
        """Firing alerts only."""
        return [a for a in self.active() if a.state is AlertState.FIRING]

    def resolved(self) -> list[Alert]:
        """Alerts resolved within the last ``resolved_retention`` seconds, oldest first."""
        with self._lock:
            self._prune(self._clock())
            return [alert for _, alert in self._resolved]

    def acknowledge(self, name: str, by: str = "") -> Alert | None:
        """Acknowledge the pending or firing alert of rule ``name``: it is marked, and no longer repeated while it
        fires (its resolution is still notified). Returns the alert, None when the rule has no active alert, and
        raises ``KeyError`` when there is no such rule. A later alert of the same rule starts unacknowledged."""
        with self._lock:
            if not any(r.name == name for r in self._rules):
                raise KeyError(f"AlertManager: no rule named {name!r}")
            entry = self._entries.get(name)
            if entry is None:
                return None
            if not entry.acknowledged:
                entry.acknowledged = True
                entry.ack_by = str(by)
                entry.ack_at = self._wall()
            return entry.snapshot()

    # -- evaluation ---------------------------------------------------------------------------------------------------
    @property
    def needs_history(self) -> bool:
        """True when a rule compares with the past (``percent_change``, ``rate_of_change``) and so reads history."""
        return any(rule.kind in _WINDOWED for rule in self._rules)

    def evaluate(
        self,
        metrics: ServerMetrics,
        history: Sequence[ServerMetrics] = (),
        *,
        notify: Callable[[list[Alert]], None] | None = None,
    ) -> list[Alert]:
        """Run every rule against ``metrics`` (and ``history``, oldest first, for the windowed kinds).

        Returns the pending and firing alerts after this evaluation, followed by those it resolved. The
        notifications of this evaluation (if any) go to ``notify`` when given, to be delivered later with
        :meth:`dispatch`; otherwise the notifiers are called before it returns. Never raises.
        """
        try:
            return self._evaluate(metrics, history, notify)
        except Exception:
            with self._lock:
                self.errors += 1
            self._log_once("evaluate", "alert evaluation failed (logged once; counted in errors)")
            return []

    def _evaluate(
        self,
        metrics: ServerMetrics,
        history: Sequence[ServerMetrics],
        notify: Callable[[list[Alert]], None] | None,
    ) -> list[Alert]:
        rules = self._rules
        outcomes: list[tuple[AlertRule, float | None, bool]] = []
        failed: list[AlertRule] = []
        for rule in rules:
            try:
                value = rule.measure(metrics, history)
                outcomes.append((rule, value, value is not None and rule.matches(value)))
            except Exception:
                failed.append(rule)
                self._log_once(
                    f"rule:{rule.name}",
                    "alert rule %r failed to evaluate (logged once; counted in errors; its alert is left as it was)",
                    rule.name,
                )
        server_id = getattr(metrics, "server_id", None)
        notices: list[Alert] = []
        resolved_now: list[Alert] = []
        with self._lock:
            self.errors += len(failed)
            self.evaluations += 1
            now = self._clock()
            wall = self._wall()
            current = {r.name for r in self._rules}
            for rule, value, matched in outcomes:
                if rule.name not in current:
                    continue  # removed while we measured
                entry = self._entries.get(rule.name)
                if matched:
                    assert value is not None
                    if entry is None:
                        entry = self._entries[rule.name] = _Entry(rule, value, now, wall, server_id)
                    else:
                        entry.value = value
                        entry.keep_since = None
                        entry.annotations = MappingProxyType(rule.render_annotations(value))
                        entry.server_id = server_id
                    if entry.state is AlertState.PENDING and now - entry.active_mono >= rule.for_:
                        entry.state = AlertState.FIRING
                        entry.fired_wall = wall
                        entry.last_notified = now
                        notices.append(entry.snapshot())
                    else:
                        self._maybe_repeat(entry, now, notices)
                    continue
                if entry is None:
                    continue
                if entry.state is AlertState.PENDING:
                    del self._entries[rule.name]  # never fired: dropped without notice
                    continue
                if rule.keep_firing_for > 0:
                    if entry.keep_since is None:
                        entry.keep_since = now
                    if now - entry.keep_since < rule.keep_firing_for:
                        self._maybe_repeat(entry, now, notices)
                        continue
                del self._entries[rule.name]
                alert = self._resolve(entry, now)
                notices.append(alert)
                resolved_now.append(alert)
            self._prune(now)
            order = {r.name: i for i, r in enumerate(self._rules)}
            entries = sorted(self._entries.values(), key=lambda e: order.get(e.rule.name, len(order)))
            result = [e.snapshot() for e in entries] + resolved_now
        if notify is None:
            self.dispatch(notices)
        elif notices:
            try:
                notify(notices)
            except Exception:
                with self._lock:
                    self.notification_failures += 1
                self._log_once("notify", "handing alert notifications over failed (logged once; counted)")
        return result

    def _maybe_repeat(self, entry: _Entry, now: float, notices: list[Alert]) -> None:
        cooldown = entry.rule.cooldown
        if (
            entry.state is AlertState.FIRING
            and cooldown > 0
            and not entry.acknowledged
            and entry.last_notified is not None
            and now - entry.last_notified >= cooldown
        ):
            entry.last_notified = now
            notices.append(entry.snapshot())

    def _resolve(self, entry: _Entry, now: float) -> Alert:
        alert = entry.snapshot(AlertState.RESOLVED, self._wall())
        self._resolved.append((now, alert))
        return alert

    def _prune(self, now: float) -> None:
        while self._resolved and now - self._resolved[0][0] > self._retention:
            self._resolved.popleft()

    def _wall(self) -> datetime:
        return datetime.fromtimestamp(self._wall_clock(), UTC)

    def dispatch(self, alerts: Sequence[Alert]) -> None:
        """Hand ``alerts`` (one evaluation's notifications) to every notifier, in order, on the calling thread.

        Each notifier is isolated: an exception is counted in ``notification_failures`` and logged once.
        """
        if not alerts:
            return
        for notifier in self._notifiers:
            try:
                notifier.notify(alerts)
            except Exception:
                with self._lock:
                    self.notification_failures += 1
                self._log_once(
                    f"notifier:{id(notifier)}",
                    "alert notifier %r failed (logged once; counted in notification_failures)",
                    notifier,
                )

    def _log_once(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        _logger.exception(message, *args)

    def close(self, timeout: float = 5.0) -> bool:
        """Close every notifier (flushing queued webhooks) within ``timeout`` seconds; True when all finished."""
        deadline = time.monotonic() + max(0.0, timeout)
        done = True
        for notifier in self._notifiers:
            try:
                done = notifier.close(max(0.0, deadline - time.monotonic())) and done
            except Exception:
                done = False
                _logger.exception("closing alert notifier %r failed", notifier)
        return done
