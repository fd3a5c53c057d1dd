"""The alert lifecycle, with the semantics of Prometheus alerting rules: :class:`AlertManager`.

The manager runs every rule against each frame (or ``ServerMetrics`` snapshot) it is given, and against the values
the application checks itself (:meth:`AlertManager.check_metric`):

* a rule whose condition holds makes an alert **pending**; once it has held for ``for_`` seconds the alert is
  **firing** (with ``for_ = 0`` it fires on the first evaluation), exactly as Prometheus' ``for``;
* a pending alert whose condition stops holding is dropped without notice; a firing alert keeps firing for
  ``keep_firing_for`` seconds after its condition stopped holding (Prometheus' ``keep_firing_for``), then is
  **resolved**, and notifiers hear about it;
* a missing value (``None``: nothing measured yet, no tick in the window, no such metric or matching point...) is
  "no data": it never fires, and a firing alert without data behaves as if its condition stopped holding;
* notifiers hear of an alert when it starts firing, again every ``cooldown`` seconds while it fires (0: never again;
  acknowledged alerts are not repeated) and when it resolves, only if it fired;
* :meth:`AlertManager.resolve` ends an alert by hand; its rule raises no new alert until its condition has stopped
  holding once.

Nothing here runs on its own: :class:`~otel_telemetry.alerts.AlertEvaluator` calls
:meth:`AlertManager.evaluate_frame` once per frame, or an application calls :meth:`AlertManager.evaluate` with
snapshots of its own.

A metric-name rule reads the frame's metrics through :mod:`~otel_telemetry.alerts.samples` and
:mod:`~otel_telemetry.alerts.sources`: they load when such a rule is given to the manager (or with the first
:meth:`AlertManager.check_metric`), on that caller's thread, so the default rules (``ServerMetrics`` paths only) never
load them and an evaluation on the evaluator's thread never imports them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from otel_telemetry.alerts.entries import _Entry
from otel_telemetry.alerts.model import _WINDOWED, Alert, AlertRule, AlertState
from otel_telemetry.alerts.notifiers import Notifier
from otel_telemetry.alerts.stats_book import _StatsBook
from otel_telemetry.alerts.values import _duration
from otel_telemetry.snapshot.model import ServerMetrics

if TYPE_CHECKING:
    from otel_telemetry.alerts.samples import RuleInput
    from otel_telemetry.alerts.sources import FrameView
    from otel_telemetry.alerts.stats import AlertStats
    from otel_telemetry.snapshot.frame import Frame

__all__ = ["AlertManager"]

_logger = logging.getLogger(__name__)

#: Resolved alerts kept at most (whatever the retention), so that a flapping rule cannot grow memory.
_MAX_RESOLVED = 1000
#: One rule's outcome: the rule, its value (None: no data), and whether the condition holds.
_Outcome = tuple[AlertRule, float | None, bool]


class AlertManager:
    """Runs rules against frames, snapshots and checked values, and keeps every alert's lifecycle (see the module
    docstring).

    Args:
        rules: the rules (names must be unique).
        notifiers: who hears of firing, repeated and resolved alerts.
        clock: monotonic seconds, for ``for_``, ``keep_firing_for``, ``cooldown``, retention and checked values.
        wall_clock: epoch seconds, for the alerts' timestamps.
        resolved_retention: seconds resolved alerts stay in :meth:`resolved` (at most 1000 are kept).

    Thread-safe: one lock guards the state (each metric-name rule's samples have a lock of their own); notifiers
    run outside it, on the thread that called :meth:`evaluate`, :meth:`evaluate_frame`, :meth:`check_metric` or
    :meth:`resolve` (or wherever its ``notify`` sends them: :class:`~otel_telemetry.alerts.AlertEvaluator` hands
    them to its own worker thread). Evaluation never raises: a rule that fails is counted in ``errors``, logged
    once, and its alert left as it was (as Prometheus does for a failing rule); a failing notifier is counted in
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
        self._hand_off: Callable[[list[Alert]], None] | None = None
        self._entries: dict[str, _Entry] = {}
        self._resolved: deque[tuple[float, Alert]] = deque(maxlen=_MAX_RESOLVED)
        self._inputs: dict[str, RuleInput] = {}  # metric-name rules' samples, by rule name
        self._disarmed: set[str] = set()  # resolved by hand, condition not yet stopped holding
        self._book = _StatsBook()
        self._dropped_before = 0  # samples dropped by the inputs of removed rules
        self._logged: set[str] = set()
        self.errors = 0
        self.notification_failures = 0
        self.evaluations = 0
        self.checks = 0

    # -- rules --------------------------------------------------------------------------------------------------------
    def _with_rule(self, rule: AlertRule) -> tuple[AlertRule, ...]:
        if not isinstance(rule, AlertRule):
            raise ValueError(f"expected an AlertRule, got {rule!r}")
        if any(r.name == rule.name for r in self._rules):
            raise ValueError(f"AlertManager: a rule named {rule.name!r} already exists")
        if not rule.reads_snapshot:
            import otel_telemetry.alerts.samples  # noqa: F401  # now, on the caller's thread: see the module docs
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

    def register_rule(self, rule: AlertRule) -> None:
        """Same as :meth:`add_rule` (the name the seed's alert manager uses)."""
        self.add_rule(rule)

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
            gone = self._inputs.pop(name, None)
            if gone is not None:
                self._dropped_before += gone.dropped
            self._disarmed.discard(name)
            self._book.forget(name)
        self._deliver(notices)
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
            return self._active()

    def _active(self) -> list[Alert]:
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

    def stats(self) -> AlertStats:
        """Counts per rule, per severity and per state, times to acknowledge and to resolve, and the manager's
        counters (see :class:`~otel_telemetry.alerts.stats.AlertStats`). Thread-safe; memory bounded by the rules."""
        with self._lock:
            self._prune(self._clock())
            dropped = self._dropped_before + sum(i.dropped for i in self._inputs.values())
            return self._book.frozen(
                self._rules,
                [(e.rule, e.state is AlertState.FIRING) for e in self._entries.values()],
                len(self._resolved),
                (self.evaluations, self.checks, self.errors, self.notification_failures, dropped),
            )

    def acknowledge(self, name: str, by: str = "") -> Alert | None:
        """Acknowledge the pending or firing alert of rule ``name``: it is marked, and no longer repeated while it
        fires (its resolution is still notified). Returns the alert, None when the rule has no active alert, and
        raises ``KeyError`` when there is no such rule. A later alert of the same rule starts unacknowledged."""
        with self._lock:
            self._rule(name)
            entry = self._entries.get(name)
            if entry is None:
                return None
            if not entry.acknowledged:
                entry.acknowledged = True
                entry.ack_by = str(by)
                entry.ack_at = self._wall()
                self._book.acknowledged(entry.rule, self._clock() - entry.started())
            return entry.snapshot()

    def resolve(self, name: str, by: str = "") -> Alert | None:
        """Resolve the pending or firing alert of rule ``name`` now, by hand (``resolution="manual"``,
        ``resolved_by=by``); notifiers hear of it when it had fired. The rule raises no new alert until its
        condition has stopped holding once (it is re-armed by an evaluation where it does not hold, or has no
        data). Returns the resolved alert, None when the rule has no active alert; ``KeyError`` for an unknown
        rule."""
        with self._lock:
            self._rule(name)
            entry = self._entries.pop(name, None)
            if entry is None:
                return None
            self._disarmed.add(name)
            alert = self._resolve(entry, self._clock(), by=str(by))
        if entry.state is AlertState.FIRING:
            self._deliver([alert])
        return alert

    def _rule(self, name: str) -> AlertRule:
        found = next((r for r in self._rules if r.name == name), None)
        if found is None:
            raise KeyError(f"AlertManager: no rule named {name!r}")
        return found

    # -- evaluation ---------------------------------------------------------------------------------------------------
    @property
    def needs_history(self) -> bool:
        """True when a ``ServerMetrics`` rule compares with the past (``percent_change``, ``rate_of_change``) and so
        reads the snapshot history (metric-name rules keep samples of their own)."""
        return any(rule.kind in _WINDOWED and rule.reads_snapshot for rule in self._rules)

    def evaluate(
        self,
        metrics: ServerMetrics,
        history: Sequence[ServerMetrics] = (),
        *,
        notify: Callable[[list[Alert]], None] | None = None,
    ) -> list[Alert]:
        """Run every ``ServerMetrics`` rule against ``metrics`` (and ``history``, oldest first, for the windowed
        kinds); metric-name rules need a frame (:meth:`evaluate_frame`) and are left as they are.

        Returns the pending and firing alerts after this evaluation, followed by those it resolved. The
        notifications of this evaluation (if any) go to ``notify`` when given, to be delivered later with
        :meth:`dispatch`; otherwise the notifiers are called before it returns. Never raises.
        """
        return self._guarded(
            lambda: (self._measure(metrics, history, None), getattr(metrics, "server_id", None)), notify
        )

    def evaluate_frame(
        self,
        frame: Frame,
        history: Sequence[ServerMetrics] = (),
        *,
        notify: Callable[[list[Alert]], None] | None = None,
    ) -> list[Alert]:
        """Run every rule on ``frame``: ``ServerMetrics`` rules on ``frame.server_metrics`` (and ``history``),
        metric-name rules on the frame's metrics and histograms (except those fed by :meth:`check_metric`).

        Returns and notifies as :meth:`evaluate` does. Never raises.
        """

        def measure() -> tuple[list[_Outcome], str | None]:
            metrics = frame.server_metrics
            view = None
            if any(not r.reads_snapshot for r in self._rules):
                from otel_telemetry.alerts.sources import FrameView  # loaded with the rule (_with_rule)

                view = FrameView(frame)
            inputs = (view, frame.monotonic) if view is not None else None
            return self._measure(metrics, history, inputs), getattr(metrics, "server_id", None)

        return self._guarded(measure, notify)

    def check_metric(
        self,
        name: str,
        value: float,
        labels: Mapping[str, str] | None = None,
        *,
        notify: Callable[[list[Alert]], None] | None = None,
    ) -> list[Alert]:
        """Evaluate now, on ``value``, every metric-name rule whose ``metric`` is ``name`` and whose ``match`` the
        ``labels`` satisfy (``alerts.check_metric("api_latency_ms", 1500.0)``), through the same lifecycle.

        For a ``value`` rule the value is compared as it is; for a ``rate`` rule it is a cumulative total (its
        increase per second is compared). Rules with other statistics need frames and are not fed. A rule that has
        received a checked value is judged on checked values only from then on (frames no longer resolve it). A
        NaN or infinite ``value`` is "no data". Returns those rules' pending and firing alerts after the check,
        followed by those it resolved; notifications go to ``notify`` or to the notifiers before it returns.
        Raises ``ValueError`` for a ``name`` that is not a string, a ``value`` that is not a number, or ``labels``
        that are not a mapping of strings.
        """
        from otel_telemetry.alerts.samples import checked_rules  # metric-name rules only: loaded when asked for

        number, chosen = checked_rules(self._rules, name, value, labels)
        if not chosen:
            return []
        names = {rule.name for rule in chosen}

        def measure() -> tuple[list[_Outcome], str | None]:
            now = self._clock()
            outcomes: list[_Outcome] = []
            for rule in chosen:
                measured = self._input(rule).on_check(number, now)
                outcomes.append((rule, measured, measured is not None and rule.matches(measured)))
            return outcomes, None

        result = self._guarded(measure, notify, checked=True)
        return [alert for alert in result if alert.name in names]

    def _input(self, rule: AlertRule) -> RuleInput:
        from otel_telemetry.alerts.samples import RuleInput  # loaded with the rule (_with_rule)

        with self._lock:
            found = self._inputs.get(rule.name)
            if found is None or found.rule is not rule:
                found = self._inputs[rule.name] = RuleInput(rule)
            return found

    def _measure(
        self, metrics: ServerMetrics, history: Sequence[ServerMetrics], frame: tuple[FrameView, float] | None
    ) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        failed = 0
        for rule in self._rules:
            try:
                if rule.reads_snapshot:
                    value = rule.measure(metrics, history)
                elif frame is None:
                    continue  # a metric-name rule without a frame: left as it is
                else:
                    found = self._input(rule)
                    if found.checked:
                        continue  # judged on check_metric values only
                    value = found.on_frame(frame[0], frame[1])
                outcomes.append((rule, value, value is not None and rule.matches(value)))
            except Exception:
                failed += 1
                self._log_once(
                    f"rule:{rule.name}",
                    "alert rule %r failed to evaluate (logged once; counted in errors; its alert is left as it was)",
                    rule.name,
                )
        if failed:
            with self._lock:
                self.errors += failed
        return outcomes

    def _guarded(
        self,
        measure: Callable[[], tuple[list[_Outcome], str | None]],
        notify: Callable[[list[Alert]], None] | None,
        *,
        checked: bool = False,
    ) -> list[Alert]:
        try:
            outcomes, server_id = measure()
            return self._apply(outcomes, server_id, notify, checked)
        except Exception:
            with self._lock:
                self.errors += 1
            self._log_once("evaluate", "alert evaluation failed (logged once; counted in errors)")
            return []

    def _apply(
        self,
        outcomes: list[_Outcome],
        server_id: str | None,
        notify: Callable[[list[Alert]], None] | None,
        checked: bool,
    ) -> list[Alert]:
        notices: list[Alert] = []
        resolved_now: list[Alert] = []
        with self._lock:
            if checked:
                self.checks += 1
            else:
                self.evaluations += 1
            now = self._clock()
            wall = self._wall()
            current = {r.name for r in self._rules}
            for rule, value, matched in outcomes:
                if rule.name not in current:
                    continue  # removed while we measured
                if rule.name in self._disarmed:
                    if matched:
                        continue  # resolved by hand: no new alert while the condition still holds
                    self._disarmed.discard(rule.name)
                entry = self._entries.get(rule.name)
                if matched:
                    assert value is not None
                    if entry is None:
                        entry = self._entries[rule.name] = _Entry(rule, value, now, wall, server_id)
                    else:
                        entry.value = value
                        entry.keep_since = None
                        entry.annotations = MappingProxyType(rule.render_annotations(value))
                        entry.server_id = server_id if server_id is not None else entry.server_id
                    if entry.state is AlertState.PENDING and now - entry.active_mono >= rule.for_:
                        entry.state = AlertState.FIRING
                        entry.fired_mono = now
                        entry.fired_wall = wall
                        entry.last_notified = now
                        self._book.fired(rule)
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
            result = self._active() + resolved_now
        self._deliver(notices, notify)
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

    def _resolve(self, entry: _Entry, now: float, *, by: str | None = None) -> Alert:
        manual = by is not None
        alert = entry.snapshot(AlertState.RESOLVED, self._wall(), "manual" if manual else "automatic", by)
        self._resolved.append((now, alert))
        self._book.resolved(entry.rule, now - entry.started(), manual=manual)
        return alert

    def _prune(self, now: float) -> None:
        while self._resolved and now - self._resolved[0][0] > self._retention:
            self._resolved.popleft()

    def _wall(self) -> datetime:
        return datetime.fromtimestamp(self._wall_clock(), UTC)

    def hand_off_to(self, notify: Callable[[list[Alert]], None] | None) -> None:
        """Give every notification that no ``notify=`` argument takes (``check_metric``, ``resolve``,
        ``remove_rule``) to ``notify`` instead of calling the notifiers on the calling thread; None undoes it.
        :class:`~otel_telemetry.alerts.AlertEvaluator` hands them to its worker, so that a game loop calling
        ``check_metric`` never waits on a notifier."""
        self._hand_off = notify

    def _deliver(self, notices: list[Alert], notify: Callable[[list[Alert]], None] | None = None) -> None:
        """Hand ``notices`` to ``notify``, else to :meth:`hand_off_to`'s target, else to the notifiers now."""
        if not notices:
            return
        hand_off = notify if notify is not None else self._hand_off
        if hand_off is None:
            self.dispatch(notices)
            return
        try:
            hand_off(notices)
        except Exception:
            with self._lock:
                self.notification_failures += 1
            self._log_once("notify", "handing alert notifications over failed (logged once; counted)")

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
