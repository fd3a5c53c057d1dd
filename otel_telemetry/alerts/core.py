"""Alerting on ``ServerMetrics`` snapshots, with the semantics of Prometheus alerting rules.

An :class:`AlertRule` watches one numeric ``ServerMetrics`` field (``"performance.tick_rate_fps"``,
``"network.player_ping_percentiles.p95"``...) and an :class:`AlertManager` runs every rule against each snapshot:

* a rule whose condition holds makes an alert **pending**; once it has held for ``for_`` seconds the alert is
  **firing** (with ``for_ = 0`` it fires on the first evaluation), exactly as Prometheus' ``for``;
* a pending alert whose condition stops holding is dropped without notice; a firing alert keeps firing for
  ``keep_firing_for`` seconds after its condition stopped holding (Prometheus' ``keep_firing_for``), then is
  **resolved**, and notifiers hear about it;
* a missing value (``None``: nothing measured yet, no tick in the window...) is "no data": it never fires, and a
  firing alert without data behaves as if its condition stopped holding;
* notifiers hear of an alert when it starts firing, again every ``cooldown`` seconds while it fires (0: never again;
  acknowledged alerts are not repeated) and when it resolves, only if it fired.

The same rules export as a Prometheus rules file (:func:`prometheus_rules_yaml`) in PromQL over the names this SDK
exports, so that operators can run them in Prometheus and compare. :func:`default_rules` gives the spec's ten:

========================  ==================  ==================
metric                    warning             critical
========================  ==================  ==================
CPU usage                 > 80 %              > 95 %
memory usage              > 85 %              > 95 %
tick rate                 < 58 FPS            < 55 FPS
player ping p95           > 100 ms            > 200 ms
packet loss               > 1 %               > 5 %
========================  ==================  ==================

Evaluation reads finished, immutable snapshots on a background thread (:class:`AlertEvaluatingReader`): the game's
hot path is never touched, and nothing here raises into the game.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import http.client
import json
import logging
import math
import queue
import re
import string
import sys
import threading
import time
import types
import typing
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation
from opentelemetry.metrics import CallbackOptions, Meter, ObservableGauge, Observation
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import ObservableCounter as SdkObservableCounter
from opentelemetry.sdk.metrics import ObservableGauge as SdkObservableGauge
from opentelemetry.sdk.metrics import ObservableUpDownCounter as SdkObservableUpDownCounter
from opentelemetry.sdk.metrics import UpDownCounter as SdkUpDownCounter
from opentelemetry.sdk.metrics.export import MetricReader, MetricsData
from opentelemetry.sdk.metrics.view import DropAggregation

from otel_telemetry.catalog import lookup
from otel_telemetry.config import DEFAULT_THRESHOLDS, parse_thresholds
from otel_telemetry.delivery import check_http_url
from otel_telemetry.snapshot.model import ServerMetrics

__all__ = [
    "DEFAULT_THRESHOLDS",
    "RULE_KINDS",
    "Alert",
    "AlertEvaluatingReader",
    "AlertManager",
    "AlertRule",
    "AlertState",
    "CallbackNotifier",
    "LogNotifier",
    "Notifier",
    "Severity",
    "WebhookNotifier",
    "default_rules",
    "parse_thresholds",
    "prometheus_rules_yaml",
    "promql_expression",
    "register_alert_metric",
    "rules_command",
    "write_rules_file",
]

_logger = logging.getLogger(__name__)


# ======================================================================================================================
# Severities, states, kinds
# ======================================================================================================================
class Severity(str, Enum):
    """How bad an alert is. The spec's thresholds use ``WARNING`` and ``CRITICAL``."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class AlertState(str, Enum):
    """Where an alert is in its lifecycle (Prometheus: pending, firing; resolved = inactive after firing)."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


#: The kinds of threshold a rule may use.
Kind = Literal["above", "below", "between", "outside", "percent_change", "rate_of_change"]
RULE_KINDS: tuple[str, ...] = typing.get_args(Kind)
_SINGLE_THRESHOLD = frozenset({"above", "below", "percent_change", "rate_of_change"})
_RANGE = frozenset({"between", "outside"})
_WINDOWED = frozenset({"percent_change", "rate_of_change"})

#: Valid alert names and label names (Prometheus' metric/label name syntax, without ``:``).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Labels every alert carries, set from the rule itself.
_RESERVED_LABELS = frozenset({"alertname", "alertstate", "severity"})
#: Placeholders annotation templates may use.
_PLACEHOLDERS = frozenset({"value", "threshold", "low", "high", "metric", "name", "severity"})
#: Resolved alerts kept at most (whatever the retention), so that a flapping rule cannot grow memory.
_MAX_RESOLVED = 1000


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None (bools, NaN, infinities and non-numbers are "no data")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fmt(value: float) -> str:
    """A threshold as people write it: ``80`` rather than ``80.0``, ``0.5`` as ``0.5``."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


# ======================================================================================================================
# ServerMetrics paths
# ======================================================================================================================
def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_mapping(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is not None and isinstance(origin, type) and issubclass(origin, Mapping)


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp)


def _check_path(path: object) -> None:
    """Raise ``ValueError`` unless ``path`` names a numeric field of :class:`ServerMetrics`.

    Mapping fields (``performance.phase_time_ms``, ``game.players_per_map``...) take any key as the next segment.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"expected a dotted ServerMetrics path such as 'performance.tick_rate_fps', got {path!r}")
    _check_str_path(path)


@lru_cache(maxsize=512)
def _check_str_path(path: str) -> None:
    tp: Any = ServerMetrics
    walked: list[str] = []
    for part in path.split("."):
        tp = _strip_optional(tp)
        where = ".".join(walked) or "ServerMetrics"
        if not part:
            raise ValueError(f"{path!r} is not a ServerMetrics field: empty segment after {where!r}")
        if is_dataclass(tp) and isinstance(tp, type):
            hints = typing.get_type_hints(tp)
            names = [f.name for f in fields(tp)]
            if part not in names:
                close = difflib.get_close_matches(part, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; {where} has: {', '.join(names)}"
                raise ValueError(f"{path!r} is not a ServerMetrics field: {where} has no field {part!r}{hint}")
            tp = hints[part]
        elif _is_mapping(tp):
            tp = typing.get_args(tp)[1]
        else:
            raise ValueError(f"{path!r} is not a ServerMetrics field: {where} is a {_type_name(tp)}, not a record")
        walked.append(part)
    tp = _strip_optional(tp)
    if tp not in (int, float):
        raise ValueError(f"{path!r} is not a numeric ServerMetrics field (it is a {_type_name(tp)})")


def _read(metrics: ServerMetrics, path: str) -> float | None:
    """The number at ``path`` in ``metrics``; None when absent (an unknown mapping key) or not a finite number."""
    try:
        value = metrics.field_value(path)
    except KeyError:
        return None
    return _number(value)


# ======================================================================================================================
# Annotation templates
# ======================================================================================================================
class _Fill:
    """A template value that formats with the template's spec when it can, and as text otherwise."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value

    def __format__(self, spec: str) -> str:
        value = self._value
        if value is None:
            return "n/a"
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return str(value)


def _parse_template(template: str) -> list[tuple[str, str | None, str]]:
    """``(literal, field or None, spec)`` triples; ``ValueError`` for bad syntax or unknown placeholders."""
    parsed: list[tuple[str, str | None, str]] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is not None:
            if name not in _PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{name}}} (use {', '.join('{' + p + '}' for p in sorted(_PLACEHOLDERS))}; "
                    "double braces for a literal brace)"
                )
            if conversion is not None:
                raise ValueError(f"placeholder {{{name}!{conversion}}}: conversions are not supported")
            if spec and "{" in spec:
                raise ValueError(f"placeholder {{{name}:{spec}}}: nested fields are not supported")
        parsed.append((literal, name, spec or ""))
    return parsed


def _render(template: str, values: Mapping[str, object]) -> str:
    out: list[str] = []
    for literal, name, spec in _parse_template(template):
        out.append(literal)
        if name is not None:
            out.append(format(_Fill(values.get(name)), spec))
    return "".join(out)


# ======================================================================================================================
# Rules
# ======================================================================================================================
def _duration(owner: str, name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    number = _number(value)
    if number is None or number < 0 or (positive and number == 0):
        need = "a positive" if positive else "a non-negative"
        raise ValueError(f"{owner}.{name}: must be {need}, finite number of seconds, got {value!r}")
    return number


def _threshold(owner: str, name: str, value: object) -> float:
    number = _number(value)
    if number is None:
        raise ValueError(f"{owner}.{name}: expected a finite number, got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alerting rule over a numeric :class:`ServerMetrics` field. Immutable; validated on construction.

    Attributes:
        name: the alert's name (Prometheus ``alert:``; letters, digits and ``_``); unique within a manager.
        metric: dotted ``ServerMetrics`` path of the watched value, e.g. ``"performance.tick_rate_fps"`` or
            ``"network.player_ping_percentiles.p95"`` (milliseconds, as in the snapshot). Mapping fields take a key:
            ``"performance.phase_time_ms.network.p95"``. A missing value is "no data" and never fires.
        kind: ``"above"`` (value > threshold), ``"below"`` (value < threshold), ``"between"``
            (low <= value <= high), ``"outside"`` (value < low or value > high), ``"percent_change"`` (change over
            ``window`` seconds, in percent of the earlier value) or ``"rate_of_change"`` (change per second over
            ``window``). For the two windowed kinds a threshold >= 0 fires on a rise above it, a negative one on a
            fall below it (``-20``: dropped by more than 20 %).
        threshold: the limit for ``above``/``below``/the windowed kinds.
        low, high: the range for ``between``/``outside`` (``low <= high``).
        window: seconds looked back by the windowed kinds (from the snapshot history, which must span it).
        severity: the alert's severity (its ``severity`` label).
        for_: seconds the condition must hold before a pending alert fires (Prometheus ``for``).
        keep_firing_for: seconds a firing alert keeps firing after its condition stopped holding
            (Prometheus ``keep_firing_for``).
        cooldown: minimum seconds between two notifications of the same firing alert; 0 notifies once.
        labels: extra labels of the alert (not ``alertname``, ``alertstate`` or ``severity``).
        annotations: templates filled on each evaluation; placeholders ``{value}``, ``{threshold}``, ``{low}``,
            ``{high}``, ``{metric}``, ``{name}``, ``{severity}``, with format specs (``{value:.1f}``).

    Invalid values raise :class:`ValueError` naming the field and the value.
    """

    name: str
    metric: str
    kind: Kind = "above"
    threshold: float | None = None
    low: float | None = None
    high: float | None = None
    window: float | None = None
    severity: Severity = Severity.WARNING
    for_: float = 0.0
    keep_firing_for: float = 0.0
    cooldown: float = 0.0
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"AlertRule.name: expected letters, digits and '_' not starting with a digit "
                f"(a Prometheus alert name), got {self.name!r}"
            )
        owner = f"AlertRule {self.name!r}"
        try:
            _check_path(self.metric)
        except ValueError as error:
            raise ValueError(f"{owner}: metric {error}") from None
        if self.kind not in RULE_KINDS:
            raise ValueError(f"{owner}: kind must be one of {', '.join(RULE_KINDS)}, got {self.kind!r}")
        if self.kind in _SINGLE_THRESHOLD:
            if self.threshold is None:
                raise ValueError(f"{owner}: kind {self.kind!r} needs a threshold")
            set_(self, "threshold", _threshold(owner, "threshold", self.threshold))
            if self.low is not None or self.high is not None:
                raise ValueError(f"{owner}: low/high apply to 'between' and 'outside' only, not {self.kind!r}")
        else:
            if self.threshold is not None:
                raise ValueError(f"{owner}: kind {self.kind!r} takes low and high, not threshold")
            if self.low is None or self.high is None:
                raise ValueError(f"{owner}: kind {self.kind!r} needs both low and high")
            low = _threshold(owner, "low", self.low)
            high = _threshold(owner, "high", self.high)
            if low > high:
                raise ValueError(f"{owner}: inverted range: low ({self.low!r}) is above high ({self.high!r})")
            set_(self, "low", low)
            set_(self, "high", high)
        if self.kind in _WINDOWED:
            if self.window is None:
                raise ValueError(f"{owner}: kind {self.kind!r} needs a window in seconds")
            set_(self, "window", _duration(owner, "window", self.window, positive=True))
        elif self.window is not None:
            raise ValueError(f"{owner}: window applies to 'percent_change' and 'rate_of_change' only")
        try:
            set_(self, "severity", Severity(self.severity))
        except ValueError:
            allowed = ", ".join(s.value for s in Severity)
            raise ValueError(f"{owner}: severity must be one of {allowed}, got {self.severity!r}") from None
        for name in ("for_", "keep_firing_for", "cooldown"):
            set_(self, name, _duration(owner, name, getattr(self, name)))
        labels = dict(self.labels)
        for key, value in labels.items():
            if not isinstance(key, str) or not _NAME.fullmatch(key) or key.startswith("__"):
                raise ValueError(f"{owner}: label name {key!r} is not a valid Prometheus label name")
            if key in _RESERVED_LABELS:
                raise ValueError(f"{owner}: label {key!r} is set by the rule itself and cannot be given")
            if not isinstance(value, str):
                raise ValueError(f"{owner}: label {key!r} must be a string, got {value!r}")
        set_(self, "labels", MappingProxyType(labels))
        annotations = dict(self.annotations)
        for key, template in annotations.items():
            if not isinstance(key, str) or not _NAME.fullmatch(key):
                raise ValueError(f"{owner}: annotation name {key!r} is not a valid name")
            if not isinstance(template, str):
                raise ValueError(f"{owner}: annotation {key!r} must be a string template, got {template!r}")
            try:
                _render(template, self._template_values(1.0))
            except ValueError as error:
                raise ValueError(f"{owner}: annotation {key!r}: {error}") from None
        set_(self, "annotations", MappingProxyType(annotations))

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                self.metric,
                self.kind,
                self.threshold,
                self.low,
                self.high,
                self.window,
                self.severity,
                self.for_,
                self.keep_firing_for,
                self.cooldown,
                tuple(sorted(self.labels.items())),
                tuple(sorted(self.annotations.items())),
            )
        )

    @property
    def threshold_text(self) -> str:
        """The limit as text: ``"80"``, or ``"10..20"`` for a range."""
        if self.threshold is not None:
            return _fmt(self.threshold)
        assert self.low is not None and self.high is not None
        return f"{_fmt(self.low)}..{_fmt(self.high)}"

    def _template_values(self, value: float | None) -> dict[str, object]:
        return {
            "value": value,
            "threshold": self.threshold if self.threshold is not None else self.threshold_text,
            "low": self.low,
            "high": self.high,
            "metric": self.metric,
            "name": self.name,
            "severity": Severity(self.severity).value,
        }

    def render_annotations(self, value: float | None) -> dict[str, str]:
        """The annotations with ``value`` and this rule's fields filled in."""
        values = self._template_values(value)
        return {key: _render(template, values) for key, template in self.annotations.items()}

    def matches(self, value: float) -> bool:
        """True when ``value`` (the watched value, or the change for the windowed kinds) meets the condition."""
        kind = self.kind
        if kind in _RANGE:
            assert self.low is not None and self.high is not None
            inside = self.low <= value <= self.high
            return inside if kind == "between" else not inside
        assert self.threshold is not None
        if kind == "above":
            return value > self.threshold
        if kind == "below":
            return value < self.threshold
        return value > self.threshold if self.threshold >= 0 else value < self.threshold

    def measure(self, metrics: ServerMetrics, history: Sequence[ServerMetrics] = ()) -> float | None:
        """The value this rule compares: the field, or its change over ``window`` for the windowed kinds.

        ``history`` is oldest first (``Telemetry.get_history()``); the earlier value is that of the newest snapshot
        taken at least ``window`` seconds before ``metrics``. None means no data.
        """
        current = _read(metrics, self.metric)
        if self.kind not in _WINDOWED or current is None:
            return current
        assert self.window is not None
        target = metrics.timestamp - timedelta(seconds=self.window)
        earlier: ServerMetrics | None = None
        for snapshot in reversed(history):
            if snapshot.timestamp <= target:
                earlier = snapshot
                break
        if earlier is None:
            return None
        past = _read(earlier, self.metric)
        if past is None:
            return None
        if self.kind == "percent_change":
            return None if past == 0 else (current - past) / abs(past) * 100.0
        elapsed = (metrics.timestamp - earlier.timestamp).total_seconds()
        return (current - past) / elapsed if elapsed > 0 else None


# ----------------------------------------------------------------------------------------------------------------------
# The spec's rules
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Default:
    key: str
    base: str
    metric: str
    kind: Kind
    label: str
    unit: str


_DEFAULTS: tuple[_Default, ...] = (
    _Default("cpu", "HighCpuUsage", "hardware.cpu_usage_percent", "above", "CPU usage", "%"),
    _Default("memory", "HighMemoryUsage", "hardware.memory_usage_percent", "above", "Memory usage", "%"),
    _Default("tick_rate", "LowTickRate", "performance.tick_rate_fps", "below", "Tick rate", " FPS"),
    _Default(
        "player_ping_p95", "HighPlayerPing", "network.player_ping_percentiles.p95", "above", "Player ping p95", " ms"
    ),
    _Default("packet_loss", "HighPacketLoss", "network.packet_loss_percent", "above", "Packet loss", "%"),
)


def default_rules(
    thresholds: Mapping[str, tuple[float, float]] | None = None,
    for_: float = 0.0,
    *,
    keep_firing_for: float = 0.0,
    cooldown: float = 0.0,
) -> list[AlertRule]:
    """The spec's ten rules: five metrics, each with a warning and a critical rule.

    ``thresholds`` overrides ``(warning, critical)`` per key: ``"cpu"``, ``"memory"`` (percent), ``"tick_rate"``
    (FPS, fires below), ``"player_ping_p95"`` (milliseconds), ``"packet_loss"`` (percent). ``for_``,
    ``keep_firing_for`` and ``cooldown`` apply to every rule. Raises ``ValueError`` for an unknown key, a value
    that is not two numbers, or a warning threshold beyond the critical one.
    """
    chosen = dict(DEFAULT_THRESHOLDS)
    for key, pair in (thresholds or {}).items():
        if key not in chosen:
            raise ValueError(f"default_rules: unknown threshold key {key!r}; known: {', '.join(DEFAULT_THRESHOLDS)}")
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"default_rules: thresholds[{key!r}] must be (warning, critical), got {pair!r}")
        warning = _threshold("default_rules", f"thresholds[{key!r}][0]", pair[0])
        critical = _threshold("default_rules", f"thresholds[{key!r}][1]", pair[1])
        chosen[key] = (warning, critical)
    rules: list[AlertRule] = []
    for spec in _DEFAULTS:
        warning, critical = chosen[spec.key]
        inverted = warning < critical if spec.kind == "below" else warning > critical
        if inverted:
            side = "below" if spec.kind == "below" else "above"
            raise ValueError(
                f"default_rules: thresholds[{spec.key!r}] = ({warning!r}, {critical!r}): the warning threshold is "
                f"{side} the critical one (inverted)"
            )
        word = "below" if spec.kind == "below" else "above"
        for severity, limit in ((Severity.WARNING, warning), (Severity.CRITICAL, critical)):
            rules.append(
                AlertRule(
                    name=f"{spec.base}{severity.value.capitalize()}",
                    metric=spec.metric,
                    kind=spec.kind,
                    threshold=limit,
                    severity=severity,
                    for_=for_,
                    keep_firing_for=keep_firing_for,
                    cooldown=cooldown,
                    annotations={
                        "summary": f"{spec.label} {word} {{threshold:g}}{spec.unit}",
                        "description": (
                            f"{spec.label} is {{value:.1f}}{spec.unit} ({{severity}} {word} {{threshold:g}}{spec.unit})"
                        ),
                    },
                )
            )
    return rules


# ======================================================================================================================
# Alerts
# ======================================================================================================================
@dataclass(frozen=True, slots=True)
class Alert:
    """An immutable view of one alert at one moment (what :class:`AlertManager` returns and notifiers receive).

    Attributes:
        name: the rule's name.
        severity: the rule's severity.
        state: pending, firing or resolved.
        value: the last value that met the condition (the change, for the windowed kinds).
        metric: the rule's ``ServerMetrics`` path.
        active_since: when the condition started holding (UTC).
        fired_at: when it started firing; None while pending.
        resolved_at: when it resolved; None unless resolved.
        acknowledged, acknowledged_by, acknowledged_at: set by :meth:`AlertManager.acknowledge`.
        labels: ``alertname``, ``severity`` and the rule's labels (as on Prometheus alerts).
        annotations: the rule's annotations, filled in with the value.
        server_id: the ``server_id`` of the snapshot that last met the condition.
    """

    name: str
    severity: Severity
    state: AlertState
    value: float | None
    metric: str
    active_since: datetime
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    acknowledged: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    server_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping (times as ISO-8601 UTC); what the webhook posts."""
        return {
            "name": self.name,
            "state": self.state.value,
            "severity": self.severity.value,
            "value": self.value,
            "metric": self.metric,
            "server_id": self.server_id,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "active_since": _iso(self.active_since),
            "fired_at": _iso(self.fired_at),
            "resolved_at": _iso(self.resolved_at),
            "acknowledged": self.acknowledged,
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": _iso(self.acknowledged_at),
        }


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


# ======================================================================================================================
# Notifiers
# ======================================================================================================================
class Notifier(ABC):
    """Receives alert notifications: alerts that started firing, repeats while firing, and resolutions.

    :meth:`notify` runs on the evaluating thread and must return quickly; the manager isolates every notifier (an
    exception is caught, counted in ``AlertManager.notification_failures`` and logged once).
    """

    @abstractmethod
    def notify(self, alerts: Sequence[Alert]) -> None:
        """Deliver the notifications of one evaluation (at least one alert)."""

    def close(self, timeout: float = 5.0) -> bool:
        """Release resources, delivering what is queued within ``timeout`` seconds; True when done in time."""
        return True


class CallbackNotifier(Notifier):
    """Calls ``fn(alert)`` for every notified alert, on the evaluating thread.

    An exception from ``fn`` is caught per alert (the other alerts are still delivered), counted in ``failures``
    and logged once.
    """

    def __init__(self, fn: Callable[[Alert], object]) -> None:
        if not callable(fn):
            raise ValueError(f"CallbackNotifier.fn: expected a callable, got {fn!r}")
        self._fn = fn
        self.failures = 0
        self._warned = False

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Call the callback once per alert."""
        for alert in alerts:
            try:
                self._fn(alert)
            except Exception:
                self.failures += 1
                if not self._warned:
                    self._warned = True
                    _logger.exception(
                        "alert callback %r failed for %s (logged once; counted in failures)", self._fn, alert.name
                    )

    def __repr__(self) -> str:
        return f"CallbackNotifier({self._fn!r})"


_LEVELS: Mapping[Severity, int] = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}


class LogNotifier(Notifier):
    """Logs every notification: firing alerts at their severity's level, resolutions at INFO.

    Records carry ``alert_name``, ``alert_state``, ``alert_severity`` and ``alert_value`` as ``extra`` fields (the
    JSON log handler writes them out).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger("otel_telemetry.alerts")

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Log one record per alert."""
        for alert in alerts:
            level = logging.INFO if alert.state is AlertState.RESOLVED else _LEVELS[alert.severity]
            summary = alert.annotations.get("description") or alert.annotations.get("summary") or ""
            self.logger.log(
                level,
                "alert %s %s [%s]: %s = %s%s",
                alert.name,
                alert.state.value.upper(),
                alert.severity.value,
                alert.metric,
                "n/a" if alert.value is None else f"{alert.value:g}",
                f" - {summary}" if summary else "",
                extra={
                    "alert_name": alert.name,
                    "alert_state": alert.state.value,
                    "alert_severity": alert.severity.value,
                    "alert_value": alert.value,
                },
            )

    def __repr__(self) -> str:
        return f"LogNotifier({self.logger.name!r})"


class WebhookNotifier(Notifier):
    """POSTs ``{"alerts": [...]}`` (see :meth:`Alert.to_dict`) as JSON to ``url`` from a background thread.

    :meth:`notify` only queues the body (a bounded queue of ``queue_size`` bodies; when full the body is dropped and
    counted in ``dropped``), so evaluation never waits on the network. The worker makes up to ``1 + retries``
    attempts per body (connection errors, timeouts, 408, 429 and 5xx are retried after ``backoff``, doubling);
    other 4xx answers are not retried. With ``token`` the request carries ``Authorization: Bearer <token>``; the
    token never appears in logs, errors or ``repr``. Redirects are not followed and proxies are not used.

    Counters: ``sent``, ``failed`` (bodies given up on), ``retried`` (extra attempts), ``dropped``.
    Call :meth:`close` to stop the worker (the manager's and reader's shutdowns do).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        *,
        queue_size: int = 256,
        backoff: float = 0.5,
    ) -> None:
        _, parts = check_http_url("WebhookNotifier", "url", url, base=False)
        port = parts.port
        if token is not None and (
            not isinstance(token, str) or not token.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in token)
        ):
            raise ValueError(
                "WebhookNotifier.token: expected None or a non-empty string without control characters "
                "(value not shown)"
            )
        self._timeout = _duration("WebhookNotifier", "timeout", timeout, positive=True)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"WebhookNotifier.retries: expected an integer >= 0, got {retries!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"WebhookNotifier.queue_size: expected an integer >= 1, got {queue_size!r}")
        self._backoff = _duration("WebhookNotifier", "backoff", backoff)
        self._retries = retries
        self._https = parts.scheme == "https"
        self._host: str = parts.hostname or ""  # check_http_url guarantees a host
        self._port = port or (443 if self._https else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Logged form: no query string (it may hold a secret of its own).
        self._shown = f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
        self._token = token.strip() if token is not None else None
        self._headers = {"Content-Type": "application/json", "User-Agent": "otel-telemetry-alerts"}
        if self._token is not None:
            self._headers["Authorization"] = f"Bearer {self._token}"
        # Bodies to send; None wakes the worker up to stop. The worker blocks on it: an idle webhook costs nothing.
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self._closing = threading.Event()
        self._deadline = math.inf
        self.sent = 0
        self.failed = 0
        self.retried = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="otel-telemetry-alert-webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The URL posted to, without its query string."""
        return self._shown

    def __repr__(self) -> str:
        return f"WebhookNotifier({self._shown!r}, token={'***' if self._token else None})"

    def notify(self, alerts: Sequence[Alert]) -> None:
        """Queue one POST with every alert of this evaluation; never blocks."""
        if self._closing.is_set():
            self._count("dropped", 1)
            return
        body = json.dumps({"alerts": [a.to_dict() for a in alerts]}, allow_nan=False).encode("utf-8")
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self._count("dropped", 1)
            self._log_once(
                "full",
                logging.WARNING,
                "alert webhook %s: queue full, notification dropped (logged once; counted in dropped)",
                self._shown,
            )

    def close(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued within ``timeout`` seconds, then stop the worker (the rest is dropped)."""
        with self._lock:
            if not self._closing.is_set():
                self._deadline = time.monotonic() + max(0.0, timeout)
                self._closing.set()
        with contextlib.suppress(queue.Full):
            # Wakes an idle worker; when the queue is full the worker is busy and checks _closing after each body.
            self._queue.put_nowait(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    # -- worker -------------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if self._closing.is_set():
                try:
                    body = self._queue.get_nowait()
                except queue.Empty:
                    return
                if body is not None and time.monotonic() >= self._deadline:
                    self._count("dropped", 1 + self._drain())
                    return
            else:
                body = self._queue.get()
            if body is None:
                continue
            try:
                self._deliver(body)
            except Exception:  # pragma: no cover - _deliver catches what the network throws
                self._count("failed", 1)
                self._log_once("bug", logging.ERROR, "alert webhook %s: delivery crashed", self._shown)

    def _drain(self) -> int:
        dropped = 0
        while True:
            try:
                body = self._queue.get_nowait()
            except queue.Empty:
                return dropped
            dropped += body is not None

    def _deliver(self, body: bytes) -> None:
        for attempt in range(self._retries + 1):
            if attempt:
                if not self._pause(self._backoff * 2.0 ** (attempt - 1)):
                    break
                self._count("retried", 1)
            timeout = self._timeout
            if self._closing.is_set():
                timeout = min(timeout, max(0.05, self._deadline - time.monotonic()))
            try:
                status, reason = self._post(body, timeout)
            except (OSError, http.client.HTTPException) as error:
                why = self._redact(f"{type(error).__name__}: {error}")
                self._log_once(
                    "network",
                    logging.WARNING,
                    "alert webhook %s: delivery failed (%s); up to %d retries per notification "
                    "(logged once; counted in retried/failed)",
                    self._shown,
                    why,
                    self._retries,
                )
                continue
            if 200 <= status < 300:
                self._count("sent", 1)
                return
            if status in (408, 429) or status >= 500:
                self._log_once(
                    f"http{status}",
                    logging.WARNING,
                    "alert webhook %s: HTTP %d %s; up to %d retries per notification (logged once)",
                    self._shown,
                    status,
                    reason,
                    self._retries,
                )
                continue
            self._log_once(
                f"http{status}",
                logging.ERROR,
                "alert webhook %s: HTTP %d %s; notification rejected, not retried (logged once; counted in failed)",
                self._shown,
                status,
                reason,
            )
            break
        self._count("failed", 1)

    def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds before a retry (cut short by the close deadline); False when no time is left."""
        end = time.monotonic() + delay
        if not self._closing.is_set():
            self._closing.wait(delay)  # close() interrupts the wait; the deadline then bounds the rest
        remaining = min(end, self._deadline) - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        return time.monotonic() < self._deadline

    def _post(self, body: bytes, timeout: float) -> tuple[int, str]:
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            with suppress_instrumentation(), suppress_http_instrumentation():
                connection.request("POST", self._target, body=body, headers=self._headers)
                response = connection.getresponse()
                response.read(4096)
            return response.status, self._redact(response.reason or "")
        finally:
            connection.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _count(self, counter: str, n: int) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + n)

    def _log_once(self, key: str, level: int, message: str, *args: object) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        _logger.log(level, message, *args)


# ======================================================================================================================
# The manager
# ======================================================================================================================
class AlertManager:
    """Runs rules against snapshots and keeps every alert's lifecycle (see the module docstring).

    Args:
        rules: the rules (names must be unique).
        notifiers: who hears of firing, repeated and resolved alerts.
        clock: monotonic seconds, for ``for_``, ``keep_firing_for``, ``cooldown`` and retention.
        wall_clock: epoch seconds, for the alerts' timestamps.
        resolved_retention: seconds resolved alerts stay in :meth:`resolved` (at most 1000 are kept).

    Thread-safe: one lock guards the state; notifiers run outside it, on the thread that called :meth:`evaluate`.
    :meth:`evaluate` never raises: a rule that fails is counted in ``errors``, logged once, and its alert left as
    it was (as Prometheus does for a failing rule); a failing notifier is counted in ``notification_failures``.
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
    def evaluate(self, metrics: ServerMetrics, history: Sequence[ServerMetrics] = ()) -> list[Alert]:
        """Run every rule against ``metrics`` (and ``history``, oldest first, for the windowed kinds).

        Returns the pending and firing alerts after this evaluation, followed by those it resolved. Notifiers are
        called before it returns. Never raises.
        """
        try:
            return self._evaluate(metrics, history)
        except Exception:
            with self._lock:
                self.errors += 1
            self._log_once("evaluate", "alert evaluation failed (logged once; counted in errors)")
            return []

    def _evaluate(self, metrics: ServerMetrics, history: Sequence[ServerMetrics]) -> list[Alert]:
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
        self._deliver(notices)
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

    def _deliver(self, alerts: list[Alert]) -> None:
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


# ======================================================================================================================
# The reader and the ALERTS metric
# ======================================================================================================================
_INSTRUMENT_CLASSES = (
    SdkCounter,
    SdkUpDownCounter,
    SdkHistogram,
    SdkObservableCounter,
    SdkObservableUpDownCounter,
    SdkObservableGauge,
)


class AlertEvaluatingReader(MetricReader):
    """An OpenTelemetry ``MetricReader`` that evaluates alerts on its own thread every ``interval`` seconds.

    Register it on the telemetry's ``MeterProvider`` (``provider.add_metric_reader(reader)`` or at construction).
    Each collection calls ``manager.evaluate(snapshot_fn(), history_fn())`` from :meth:`_receive_metrics`; the
    collected data itself is not used. Snapshots are finished, immutable objects, so the hot path is never touched.
    Before it is registered (or when a collection yields nothing) it evaluates directly, so alerting never depends
    on the provider. Give it an ``interval`` no shorter than the collection interval: each of its collections runs
    the observable callbacks once more.

    Args:
        manager: the :class:`AlertManager` to drive.
        snapshot_fn: returns the current snapshot (``telemetry.get_current_metrics``).
        history_fn: returns the history, oldest first (``telemetry.get_history``); None for no history.
        interval: seconds between evaluations (default: the spec's collection interval, 1 s).
        close_notifiers: :meth:`shutdown` also closes the manager's notifiers (flushing webhooks).

    A failing ``snapshot_fn``/``history_fn`` is counted in ``failures`` and logged once; ``evaluations`` counts
    evaluations run.
    """

    def __init__(
        self,
        manager: AlertManager,
        snapshot_fn: Callable[[], ServerMetrics],
        history_fn: Callable[[], Sequence[ServerMetrics]] | None = None,
        *,
        interval: float = 1.0,
        close_notifiers: bool = True,
    ) -> None:
        # The collected data is not used, only the tick: let the SDK drop it instead of aggregating it.
        super().__init__(preferred_aggregation=dict.fromkeys(_INSTRUMENT_CLASSES, DropAggregation()))
        if not isinstance(manager, AlertManager):
            raise ValueError(f"AlertEvaluatingReader.manager: expected an AlertManager, got {manager!r}")
        if not callable(snapshot_fn):
            raise ValueError(f"AlertEvaluatingReader.snapshot_fn: expected a callable, got {snapshot_fn!r}")
        if history_fn is not None and not callable(history_fn):
            raise ValueError(f"AlertEvaluatingReader.history_fn: expected a callable or None, got {history_fn!r}")
        self._interval = _duration("AlertEvaluatingReader", "interval", interval, positive=True)
        self._manager = manager
        self._snapshot_fn = snapshot_fn
        self._history_fn = history_fn
        self._close_notifiers = close_notifiers
        self._stop = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        self._received = False
        self._warned = False
        self.evaluations = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="otel-telemetry-alerts", daemon=True)
        self._thread.start()

    @property
    def manager(self) -> AlertManager:
        """The manager this reader drives."""
        return self._manager

    @property
    def interval(self) -> float:
        """Seconds between evaluations."""
        return self._interval

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._tick()

    def _tick(self) -> None:
        self._received = False
        if self._collect is not None:
            try:
                self.collect(timeout_millis=max(1.0, self._interval * 1000))
            except Exception:
                self._failed("metric collection for alert evaluation failed")
        if not self._received and not self._stop.is_set():
            self._evaluate()

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._received = True
        self._evaluate()

    def _evaluate(self) -> None:
        with suppress_instrumentation():
            try:
                snapshot = self._snapshot_fn()
                history = self._history_fn() if self._history_fn is not None else ()
            except Exception:
                self._failed("reading the snapshot for alert evaluation failed")
                return
            self._manager.evaluate(snapshot, history)
            self.evaluations += 1

    def _failed(self, message: str) -> None:
        self.failures += 1
        if not self._warned:
            self._warned = True
            _logger.exception("%s (logged once; counted in failures)", message)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Stop the thread within ``timeout_millis`` (and close the notifiers with the time left). Idempotent."""
        deadline = time.monotonic() + max(0.0, timeout_millis) / 1000.0
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            _logger.warning("alert evaluation thread did not stop within %.0f ms", timeout_millis)
        if self._close_notifiers:
            self._manager.close(max(0.0, deadline - time.monotonic()))

    @property
    def running(self) -> bool:
        """True while the evaluation thread runs."""
        return self._thread.is_alive()


def register_alert_metric(manager: AlertManager, meter: Meter, name: str = "ALERTS") -> ObservableGauge:
    """Create the observable gauge ``ALERTS``: 1 per pending or firing alert, in the spirit of Prometheus' ``ALERTS``.

    Attributes: ``alertname``, ``alertstate`` (``pending``/``firing``), ``severity`` and the rule's labels.
    OpenTelemetry instrument names are case-insensitive and the Python SDK lowercases them, so readers see
    ``alerts`` and ``/metrics`` shows ``alerts{alertname=...,alertstate=...,severity=...}`` — a different series from
    the ``ALERTS`` Prometheus synthesises for its own rules (names are case-sensitive there).
    """
    warned = False

    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        nonlocal warned
        try:
            return [
                Observation(
                    1, {**a.labels, "alertname": a.name, "alertstate": a.state.value, "severity": a.severity.value}
                )
                for a in manager.active()
            ]
        except Exception:
            if not warned:
                warned = True
                _logger.exception("observing active alerts failed (logged once)")
            return []

    return meter.create_observable_gauge(
        name,
        callbacks=[observe],
        unit="{alert}",
        description="Active alerts: 1 per pending or firing alert, by alertname, alertstate and severity",
    )


# ======================================================================================================================
# PromQL
# ======================================================================================================================
@dataclass(frozen=True, slots=True)
class _Source:
    """How one ``ServerMetrics`` path reads in PromQL.

    ``value``: the series itself; ``quantile``: ``histogram_quantile`` over the buckets' rate; ``avg``: rate of
    ``_sum`` over rate of ``_count``; ``count``: increase of ``_count``. ``scale`` converts the exported unit to
    the snapshot's (1000: seconds to milliseconds). ``wildcard`` names the label a mapping key selects.
    """

    kind: Literal["value", "quantile", "avg", "count"]
    name: str
    scale: float = 1.0
    q: float = 0.0
    matchers: tuple[tuple[str, str], ...] = ()
    wildcard: str | None = None


def _build_table() -> dict[str, _Source]:
    def name(entry: str) -> str:
        return lookup(entry).prometheus_name

    table: dict[str, _Source] = {}

    def value(path: str, entry: str, scale: float = 1.0, wildcard: str | None = None, **matchers: str) -> None:
        table[path] = _Source("value", name(entry), scale, matchers=tuple(matchers.items()), wildcard=wildcard)

    def percentiles(prefix: str, entry: str, scale: float, wildcard: str | None = None) -> None:
        for stat, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            table[f"{prefix}.{stat}"] = _Source("quantile", name(entry), scale, q, wildcard=wildcard)

    def distribution(prefix: str, entry: str, scale: float, wildcard: str | None = None) -> None:
        percentiles(prefix, entry, scale, wildcard)
        table[f"{prefix}.avg"] = _Source("avg", name(entry), scale, wildcard=wildcard)
        table[f"{prefix}.count"] = _Source("count", name(entry), 1.0, wildcard=wildcard)

    ms = 1000.0
    # Hardware
    value("hardware.cpu_usage_percent", "hardware.cpu.total")
    value("hardware.memory_used_bytes", "hardware.memory.used")
    value("hardware.memory_total_bytes", "hardware.memory.total")
    value("hardware.memory_free_bytes", "hardware.memory.free")
    value("hardware.memory_usage_percent", "hardware.memory.usage")
    value("hardware.memory_pressure.*", "hardware.memory.pressure", wildcard="indicator")
    value("hardware.disk_read_bytes_per_sec", "hardware.disk.read_bytes")
    value("hardware.disk_write_bytes_per_sec", "hardware.disk.write_bytes")
    value("hardware.disk_read_ops_per_sec", "hardware.disk.read_ops")
    value("hardware.disk_write_ops_per_sec", "hardware.disk.write_ops")
    value("hardware.network_bytes_received_per_sec", "hardware.nic.bytes_received")
    value("hardware.network_bytes_sent_per_sec", "hardware.nic.bytes_sent")
    value("hardware.network_packets_received_per_sec", "hardware.nic.packets_received")
    value("hardware.network_packets_sent_per_sec", "hardware.nic.packets_sent")
    # Network
    value("network.packets_per_sec_incoming", "network.packets.rate_in")
    value("network.packets_per_sec_outgoing", "network.packets.rate_out")
    value("network.bytes_per_sec_incoming", "network.packets.bytes_rate_in")
    value("network.bytes_per_sec_outgoing", "network.packets.bytes_rate_out")
    value("network.total_packets_incoming", "network.packets.total", direction="received")
    value("network.total_packets_outgoing", "network.packets.total", direction="sent")
    value("network.total_bytes_incoming", "network.packets.bytes_total", direction="received")
    value("network.total_bytes_outgoing", "network.packets.bytes_total", direction="sent")
    value("network.avg_packet_latency_ms", "network.latency.avg", ms)
    percentiles("network.packet_latency_percentiles", "network.latency.distribution", ms)
    value("network.min_packet_latency_ms", "network.latency.min", ms)
    value("network.max_packet_latency_ms", "network.latency.max", ms)
    value("network.avg_player_ping_ms", "network.ping.avg")
    percentiles("network.player_ping_percentiles", "network.ping.distribution", ms)
    value("network.min_player_ping_ms", "network.ping.min", ms)
    value("network.max_player_ping_ms", "network.ping.max", ms)
    value("network.player_pings_ms.*", "network.ping.per_player", ms, wildcard="player_id")
    value("network.active_connections", "network.connections.active")
    value("network.total_connections", "network.connections.total")
    value("network.connections_per_sec", "network.connections.rate_new")
    value("network.disconnections_per_sec", "network.connections.rate_closed")
    distribution("network.connection_duration_s", "network.connections.duration", 1.0)
    value("network.packet_loss_percent", "network.reliability.loss")
    value("network.retransmission_percent", "network.reliability.retransmission")
    distribution("network.ack_latency_ms", "network.reliability.ack_latency", ms)
    distribution("network.fragments_per_packet", "network.reliability.fragmentation", 1.0)
    # Performance
    value("performance.tick_rate_fps", "performance.tick_rate.current")
    value("performance.target_fps", "performance.tick_rate.target")
    value("performance.tick_rate_deviation_fps", "performance.tick_rate.deviation")
    value("performance.tick_rate_variance", "performance.tick_rate.variance")
    value("performance.avg_tick_duration_ms", "performance.frame_time.avg", ms)
    percentiles("performance.tick_duration_percentiles", "performance.frame_time.distribution", ms)
    value("performance.min_tick_duration_ms", "performance.frame_time.min", ms)
    value("performance.max_tick_duration_ms", "performance.frame_time.max", ms)
    distribution("performance.frame_time_ms", "performance.frame_time.frame_times", ms)
    distribution("performance.update_cycle_ms", "performance.update_cycle.total", ms)
    distribution("performance.phase_time_ms.*", "performance.update_cycle.systems", ms, wildcard="phase")
    # Game
    value("game.active_player_count", "game.players.active")
    value("game.total_players_connected", "game.players.total")
    value("game.players_per_map.*", "game.players.per_map", wildcard="map")
    table["game.avg_session_duration_s"] = _Source("avg", name("game.players.session_duration"))
    value("game.total_entities", "game.entities.total")
    value("game.entities_per_map.*", "game.entities.per_map", wildcard="map")
    value("game.entities_per_type.*", "game.entities.per_type", wildcard="entity_type")
    value("game.entity_creation_rate", "game.entities.creation_rate")
    value("game.entity_removal_rate", "game.entities.removal_rate")
    value("game.active_maps", "game.world.active_maps")
    value("game.aoi_updates_per_sec", "game.world.aoi_frequency")
    distribution("game.spatial_cell_occupancy", "game.world.spatial_partitioning", 1.0)
    value("game.collision_tests.*", "game.world.collisions", wildcard="outcome")
    table["game.avg_query_time_ms"] = _Source("avg", name("game.database.query_time"), ms)
    distribution("game.query_time_ms", "game.database.query_time", ms)
    value("game.queries_per_sec", "game.database.query_rate")
    value("game.cache_hit_rate_percent", "game.database.cache_hit")
    value("game.cache_miss_rate_percent", "game.database.cache_miss")
    value("game.database_size_bytes", "game.database.size")
    value("game.ecs_component_count", "game.system.components")
    distribution("game.system_execution_time_ms.*", "game.system.system_time", ms, wildcard="system")
    distribution("game.ecs_query_time_ms", "game.system.query_time", ms)
    value("game.memory_allocations", "game.system.allocations")
    return table


#: ``ServerMetrics`` path (``*`` = any mapping key) -> its PromQL source.
_PROMQL: Mapping[str, _Source] = MappingProxyType(_build_table())
_WILDCARDS: tuple[tuple[tuple[str, ...], _Source], ...] = tuple(
    (tuple(path.split(".")), source) for path, source in _PROMQL.items() if "*" in path
)
#: Paths with no PromQL equivalent: the extremes of a histogram's window are not in its buckets.
_NO_PROMQL_REASON = "histograms do not carry min/max; in-process only"
_DURATION = re.compile(r"(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?")
#: Histogram statistics are summed by the label that tells servers apart. collector-config/prometheus.yml puts
#: ``service_instance_id`` on every series, whether Prometheus scrapes servers directly (a target label) or the
#: gateway Collector (``resource_to_telemetry_conversion``).
_DEFAULT_BY: tuple[str, ...] = ("service_instance_id",)


def _source(path: str) -> tuple[_Source, tuple[tuple[str, str], ...]] | None:
    found = _PROMQL.get(path)
    if found is not None:
        return found, found.matchers
    parts = tuple(path.split("."))
    for pattern, source in _WILDCARDS:
        if len(pattern) == len(parts) and all(p in ("*", s) for p, s in zip(pattern, parts, strict=True)):
            key = parts[pattern.index("*")]
            assert source.wildcard is not None
            return source, (*source.matchers, (source.wildcard, key))
    return None


def _label_value(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _prom_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: ``90`` -> ``"1m30s"``, ``0.25`` -> ``"250ms"``, ``0`` -> ``"0s"``."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Expr:
    text: str
    atomic: bool

    def wrapped(self) -> str:
        return self.text if self.atomic else f"({self.text})"


def _render_source(
    source: _Source, matchers: tuple[tuple[str, str], ...], by: Sequence[str], range_: str, offset: str
) -> _Expr:
    selector = source.name
    if matchers:
        selector += "{" + ", ".join(f"{k}={_label_value(v)}" for k, v in matchers) + "}"
    off = f" offset {offset}" if offset else ""
    scale = "" if source.scale == 1 else f" * {_fmt(source.scale)}"

    def summed(suffix: str, function: str, extra: tuple[str, ...] = ()) -> str:
        bucketed = selector.replace(source.name, source.name + suffix, 1)
        labels = ", ".join((*extra, *by))
        clause = f"sum by ({labels}) " if labels else "sum "
        return f"{clause}({function}({bucketed}[{range_}]{off}))"

    if source.kind == "value":
        return _Expr(f"{selector}{off}{scale}", atomic=not scale)
    if source.kind == "quantile":
        inner = summed("_bucket", "rate", ("le",))
        return _Expr(f"histogram_quantile({_fmt(source.q)}, {inner}){scale}", atomic=not scale)
    if source.kind == "avg":
        ratio = f"{summed('_sum', 'rate')} / {summed('_count', 'rate')}"
        return _Expr(f"{ratio}{scale}", atomic=False)
    return _Expr(summed("_count", "increase"), atomic=True)


def promql_expression(
    path: str, *, quantile_range: str = "5m", by: Sequence[str] = _DEFAULT_BY, offset: str = ""
) -> str | None:
    """The PromQL that reads ``ServerMetrics`` field ``path`` from this SDK's Prometheus names, in the snapshot's
    units (milliseconds where the snapshot has milliseconds); None when it has no PromQL equivalent.

    Histogram statistics use ``rate(..._bucket[quantile_range])`` summed ``by`` these labels (``le`` added).
    """
    found = _source(path)
    if found is None:
        return None
    source, matchers = found
    return _render_source(source, matchers, by, quantile_range, offset).text


def _rule_expr(rule: AlertRule, quantile_range: str, by: Sequence[str]) -> str | None:
    found = _source(rule.metric)
    if found is None:
        return None
    source, matchers = found
    expr = _render_source(source, matchers, by, quantile_range, "")
    kind = rule.kind
    if kind in _WINDOWED:
        assert rule.window is not None and rule.threshold is not None
        window = _prom_duration(rule.window)
        past = _render_source(source, matchers, by, quantile_range, window)
        change = f"({expr.wrapped()} - {past.wrapped()})"
        if kind == "percent_change":
            value = f"{change} / abs({past.wrapped()} != 0) * 100"
        else:
            value = f"{change} / {_fmt(rule.window)}"
        op = ">" if rule.threshold >= 0 else "<"
        return f"{value} {op} {_fmt(rule.threshold)}"
    if kind in _RANGE:
        assert rule.low is not None and rule.high is not None
        if kind == "between":
            return f"({expr.text} >= {_fmt(rule.low)}) <= {_fmt(rule.high)}"
        return f"{expr.text} < {_fmt(rule.low)} or {expr.text} > {_fmt(rule.high)}"
    assert rule.threshold is not None
    return f"{expr.text} {'>' if kind == 'above' else '<'} {_fmt(rule.threshold)}"


_PRINTF_SPEC = re.compile(r"(?:\.\d+)?[eEfgG]")


def _prometheus_template(rule: AlertRule, template: str) -> str:
    """``template`` as a Prometheus (Go) template: ``{value}`` becomes ``{{ $value }}``, the rest is filled in."""
    values = rule._template_values(None)
    out: list[str] = []
    for literal, name, spec in _parse_template(template):
        out.append(literal.replace("{{", '{{ "{{" }}'))
        if name == "value":
            out.append(f'{{{{ printf "%{spec}" $value }}}}' if _PRINTF_SPEC.fullmatch(spec) else "{{ $value }}")
        elif name is not None:
            out.append(format(_Fill(values[name]), spec).replace("{{", '{{ "{{" }}'))
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------------------
# A small YAML emitter (pyyaml is a development dependency only)
# ----------------------------------------------------------------------------------------------------------------------
_PLAIN_START = re.compile(r"[A-Za-z_(]")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"})
#: Prometheus durations ("0s", "1m30s") read as strings in YAML 1.1 and 1.2 alike.
_PLAIN_DURATION = re.compile(r"(?:\d+(?:ms|[ywdhms]))+")


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when that is unambiguous, double-quoted (escaped) otherwise."""
    if _PLAIN_DURATION.fullmatch(text):
        return text
    if (
        text
        and _PLAIN_START.match(text)
        and text == text.strip()
        and all(" " <= c <= "~" for c in text)
        and ": " not in text
        and " #" not in text
        and not text.endswith(":")
        and text.lower() not in _YAML_WORDS
    ):
        return text
    out = ['"']
    for c in text:
        code = ord(c)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif code in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF) or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _comment(text: str) -> str:
    return "# " + "".join(c if " " <= c <= "~" else "?" for c in text).strip()


def prometheus_rules_yaml(
    rules: Iterable[AlertRule],
    *,
    group: str = "game-server",
    quantile_range: str = "5m",
    by: Sequence[str] = _DEFAULT_BY,
    interval: str | None = None,
) -> str:
    """A Prometheus alerting-rules file expressing ``rules`` in PromQL over this SDK's exported names.

    Thresholds keep the snapshot's units: a ping p95 in milliseconds reads
    ``histogram_quantile(0.95, sum by (le, ...) (rate(server_network_player_ping_seconds_bucket[5m]))) * 1000``.
    Histogram statistics are summed ``by`` the labels that tell servers apart (``service_instance_id``, which
    ``collector-config/prometheus.yml`` puts on every series in both of its setups).
    A rule whose metric has no PromQL equivalent is left out with a comment saying so. ``interval`` sets the
    group's evaluation interval (a Prometheus duration such as ``"15s"``).
    """
    if not _DURATION.fullmatch(quantile_range) or not quantile_range:
        raise ValueError(
            f"prometheus_rules_yaml: quantile_range must be a Prometheus duration like '5m', got {quantile_range!r}"
        )
    if interval is not None and (not interval or not _DURATION.fullmatch(interval)):
        raise ValueError(f"prometheus_rules_yaml: interval must be a Prometheus duration like '15s', got {interval!r}")
    for label in by:
        if not isinstance(label, str) or not _NAME.fullmatch(label) or label == "le":
            raise ValueError(f"prometheus_rules_yaml: by: {label!r} is not a label name to group by")
    lines = [
        "# Prometheus alerting rules generated by otel-telemetry (`otel-telemetry rules`).",
        "# The same rules the SDK evaluates in process, in PromQL over the names on /metrics. Do not edit:",
        "# regenerate with `otel-telemetry rules > collector-config/alert-rules.yml`.",
        "groups:",
        f"  - name: {_yaml_scalar(group)}",
    ]
    if interval is not None:
        lines.append(f"    interval: {_yaml_scalar(interval)}")
    body: list[str] = []
    emitted = 0
    for rule in rules:
        expr = _rule_expr(rule, quantile_range, by)
        if expr is None:
            body.append(
                "      "
                + _comment(f"skipped {rule.name}: {rule.metric} has no PromQL equivalent ({_NO_PROMQL_REASON})")
            )
            continue
        emitted += 1
        body.append(f"      - alert: {_yaml_scalar(rule.name)}")
        body.append(f"        expr: {_yaml_scalar(expr)}")
        body.append(f"        for: {_yaml_scalar(_prom_duration(rule.for_))}")
        if rule.keep_firing_for > 0:
            body.append(f"        keep_firing_for: {_yaml_scalar(_prom_duration(rule.keep_firing_for))}")
        body.append("        labels:")
        body.append(f"          severity: {_yaml_scalar(rule.severity.value)}")
        for key, value in rule.labels.items():
            body.append(f"          {_yaml_scalar(key)}: {_yaml_scalar(value)}")
        if rule.annotations:
            body.append("        annotations:")
            for key, template in rule.annotations.items():
                body.append(f"          {_yaml_scalar(key)}: {_yaml_scalar(_prometheus_template(rule, template))}")
    lines.append("    rules:" if emitted else "    rules: []")
    lines.extend(body)
    return "\n".join(lines) + "\n"


def write_rules_file(path: str | Path, rules: Iterable[AlertRule], **options: Any) -> Path:
    """Write :func:`prometheus_rules_yaml` of ``rules`` to ``path`` (UTF-8, atomically replaced); returns the path."""
    target = Path(path)
    text = prometheus_rules_yaml(rules, **options)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(target)
    return target


def rules_command(argv: Sequence[str] | None = None) -> int:
    """``otel-telemetry rules``: print the Prometheus rules of :func:`default_rules` (or write them with ``-o``)."""
    parser = argparse.ArgumentParser(
        prog="otel-telemetry rules",
        description="Print the spec's alerting rules as a Prometheus rules file.",
    )
    parser.add_argument("-o", "--output", help="write to this file instead of standard output")
    parser.add_argument(
        "--thresholds",
        default="",
        help="override (warning, critical) thresholds, e.g. 'cpu=70,90;tick_rate=50,45' "
        f"(names: {', '.join(DEFAULT_THRESHOLDS)})",
    )
    parser.add_argument("--for", dest="for_", type=float, default=0.0, help="seconds before pending alerts fire")
    parser.add_argument("--keep-firing-for", type=float, default=0.0, help="seconds alerts keep firing after recovery")
    parser.add_argument("--quantile-range", default="5m", help="range of rate() under histogram_quantile (5m)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2): report it as the return code
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        rules = default_rules(parse_thresholds(args.thresholds), args.for_, keep_firing_for=args.keep_firing_for)
        text = prometheus_rules_yaml(rules, quantile_range=args.quantile_range)
    except ValueError as error:
        sys.stderr.write(f"otel-telemetry rules: {error}\n")
        return 2
    if args.output:
        write_rules_file(args.output, rules, quantile_range=args.quantile_range)
    else:
        sys.stdout.write(text)
    return 0
