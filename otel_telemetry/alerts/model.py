"""The rule model: severities, alert states, rule kinds, :class:`AlertRule` and :class:`Alert`, with their checks.

An :class:`AlertRule` watches one numeric ``ServerMetrics`` field (``"performance.tick_rate_fps"``,
``"network.player_ping_percentiles.p95"``...) and is validated when it is built: a bad path, kind, threshold,
duration, label or annotation template raises ``ValueError`` naming the field and the value. An :class:`Alert` is
an immutable view of one alert at one moment, what :class:`~otel_telemetry.alerts.AlertManager` returns and
notifiers receive. Both are immutable and safe to share between threads.
"""

from __future__ import annotations

import difflib
import math
import re
import string
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal

from otel_telemetry.snapshot.model import ServerMetrics

__all__ = ["RULE_KINDS", "Alert", "AlertRule", "AlertState", "Kind", "Severity"]


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
