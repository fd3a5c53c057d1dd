"""The rule model: severities, alert states, rule kinds and statistics, :class:`AlertRule` and :class:`Alert`.

An :class:`AlertRule` watches either one numeric ``ServerMetrics`` field (``"performance.tick_rate_fps"``,
``"network.player_ping_percentiles.p95"``...) or any metric of the frame by its OpenTelemetry or Prometheus name
(``"api.latency"``, ``"handler_errors_total"``), read with a ``statistic`` (value, rate, ratio, quantiles...). It
is validated when it is built: a bad path, name, statistic, kind, threshold, duration, label or annotation template
raises ``ValueError`` naming the rule, the field and the value. An :class:`Alert` is an immutable view of one alert at
one moment, what :class:`~otel_telemetry.alerts.AlertManager` returns and notifiers receive. Both are immutable and
safe to share between threads.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from types import MappingProxyType
from typing import Literal

from otel_telemetry.alerts.names import is_metric_name
from otel_telemetry.alerts.paths import SNAPSHOT_ROOTS, _check_path, _read, is_snapshot_path
from otel_telemetry.alerts.templates import _Fill as _Fill
from otel_telemetry.alerts.templates import _parse_template as _parse_template
from otel_telemetry.alerts.templates import _render
from otel_telemetry.alerts.values import _duration as _duration
from otel_telemetry.alerts.values import _fmt as _fmt
from otel_telemetry.alerts.values import _iso
from otel_telemetry.alerts.values import _threshold as _threshold
from otel_telemetry.snapshot.model import ServerMetrics

__all__ = ["RULE_KINDS", "STATISTICS", "Alert", "AlertRule", "AlertState", "Kind", "Severity", "Statistic"]

#: seed (low/medium/high/critical) -> ours, one to one.
_SEVERITY_ALIASES: Mapping[str, str] = MappingProxyType(
    {"low": "info", "medium": "warning", "high": "error", "critical": "critical"}
)


class Severity(str, Enum):
    """How bad an alert is. The spec's thresholds use ``WARNING`` and ``CRITICAL``.

    Both vocabularies are accepted, in any case, and mapped one to one: ``low`` -> ``INFO``, ``medium`` ->
    ``WARNING``, ``high`` -> ``ERROR``, ``critical`` -> ``CRITICAL`` (``Severity("High") is Severity.ERROR``). The
    value (the ``severity`` label) is always ours. Anything else raises ``ValueError`` listing both vocabularies.
    """

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @classmethod
    def _missing_(cls, value: object) -> Severity:
        if isinstance(value, str):
            text = value.strip().lower()
            text = _SEVERITY_ALIASES.get(text, text)
            for member in cls:
                if member.value == text:
                    return member
        ours = ", ".join(s.value for s in cls)
        raise ValueError(f"severity must be one of {ours} (or {', '.join(_SEVERITY_ALIASES)}), any case; got {value!r}")


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

#: What a metric-name rule reads from its metric.
Statistic = Literal["value", "rate", "ratio", "p50", "p90", "p95", "p99", "mean", "count", "min", "max"]
STATISTICS: tuple[str, ...] = typing.get_args(Statistic)
#: Statistic -> quantile, for the quantile statistics.
QUANTILES: Mapping[str, float] = MappingProxyType({"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99})
#: The statistics of a histogram.
HISTOGRAM_STATISTICS = frozenset({*QUANTILES, "mean", "count", "min", "max"})
#: The statistics of a counter's increase.
COUNTER_STATISTICS = frozenset({"rate", "ratio"})

#: Valid alert names and label names (Prometheus' metric/label name syntax, without ``:``).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Labels every alert carries, set from the rule itself.
_RESERVED_LABELS = frozenset({"alertname", "alertstate", "severity"})


def _matchers(owner: str, name: str, value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{owner}.{name}: expected a mapping of attribute names to values, got {value!r}")
    for key, text in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{owner}.{name}: attribute name {key!r} must be a non-empty string")
        if not isinstance(text, str):
            raise ValueError(f"{owner}.{name}: value of {key!r} must be a string, got {text!r}")
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alerting rule over a ``ServerMetrics`` field or any metric of the frame. Immutable; validated on
    construction.

    Attributes:
        name: the alert's name (Prometheus ``alert:``; letters, digits and ``_``); unique within a manager.
        metric: what the rule watches. A dotted ``ServerMetrics`` path when its first segment is a top-level field
            (``"performance.tick_rate_fps"``, ``"network.player_ping_percentiles.p95"``, in the snapshot's units;
            mapping fields take a key: ``"performance.phase_time_ms.network.p95"``); otherwise the name of a metric
            of the frame, by its OpenTelemetry name (``"api.latency"``, ``"handler.errors"``) or its name on
            ``/metrics`` (``"api_latency_seconds"``, ``"handler_errors_total"``), read in its exported unit, or a
            name the application feeds with :meth:`AlertManager.check_metric`. A missing value is "no data" and
            never fires.
        kind: ``"above"`` (value > threshold), ``"below"`` (value < threshold), ``"between"``
            (low <= value <= high), ``"outside"`` (value < low or value > high), ``"percent_change"`` (change over
            ``window`` seconds, in percent of the earlier value) or ``"rate_of_change"`` (change per second over
            ``window``). For the two windowed kinds a threshold >= 0 fires on a rise above it, a negative one on a
            fall below it (``-20``: dropped by more than 20 %).
        threshold: the limit for ``above``/``below``/the windowed kinds.
        low, high: the range for ``between``/``outside`` (``low <= high``).
        window: seconds looked back: by the windowed kinds (a path rule reads them from the snapshot history,
            which must span it), and by a metric-name rule's ``rate``, ``ratio`` and histogram statistics (without
            a window: since the previous frame, or the produced histogram's own sliding window).
        severity: the alert's severity (its ``severity`` label); ``low``/``medium``/``high`` are accepted too (see
            :class:`Severity`).
        for_: seconds the condition must hold before a pending alert fires (Prometheus ``for``).
        keep_firing_for: seconds a firing alert keeps firing after its condition stopped holding
            (Prometheus ``keep_firing_for``).
        cooldown: minimum seconds between two notifications of the same firing alert; 0 notifies once.
        labels: extra labels of the alert (not ``alertname``, ``alertstate`` or ``severity``).
        annotations: templates filled on each evaluation; placeholders ``{value}``, ``{threshold}``, ``{low}``,
            ``{high}``, ``{metric}``, ``{name}``, ``{severity}``, with format specs (``{value:.1f}``).
        match: metric-name rules only: attribute equality matchers; the points whose attributes contain all of
            them are summed (histograms: merged). Empty: every point.
        statistic: metric-name rules only: ``"value"`` (a gauge's or counter's value), ``"rate"`` (a counter's
            increase per second), ``"ratio"`` (increase of ``metric`` over increase of ``denominator``; no data
            while the denominator does not increase), or of a histogram ``"p50"``, ``"p90"``, ``"p95"``,
            ``"p99"``, ``"mean"``, ``"count"``, ``"min"``, ``"max"``.
        denominator: the counter under a ``ratio`` (a metric name, like ``metric``).
        denominator_match: the matchers of ``denominator``'s points.

    Invalid values raise :class:`ValueError` naming the rule, the field and the value.
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
    match: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    statistic: Statistic = "value"
    denominator: str | None = None
    denominator_match: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"AlertRule.name: expected letters, digits and '_' not starting with a digit "
                f"(a Prometheus alert name), got {self.name!r}"
            )
        owner = f"AlertRule {self.name!r}"
        if self.kind not in RULE_KINDS:
            raise ValueError(f"{owner}: kind must be one of {', '.join(RULE_KINDS)}, got {self.kind!r}")
        if isinstance(self.metric, str) and self.metric and not is_snapshot_path(self.metric):
            self._check_metric_name(owner)
        else:
            try:
                _check_path(self.metric)
            except ValueError as error:
                raise ValueError(f"{owner}: metric {error}") from None
            self._check_snapshot_rule(owner)
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
        self._check_window(owner)
        try:
            set_(self, "severity", Severity(self.severity))
        except ValueError as error:
            raise ValueError(f"{owner}: {error}") from None
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

    def _check_metric_name(self, owner: str) -> None:
        set_ = object.__setattr__
        if not is_metric_name(self.metric):
            raise ValueError(
                f"{owner}: metric must be a ServerMetrics path (starting with one of "
                f"{', '.join(sorted(SNAPSHOT_ROOTS))}) or a metric name (letters, digits and '_', '.', '-', '/', "
                f"':'), got {self.metric!r}"
            )
        if self.statistic not in STATISTICS:
            raise ValueError(f"{owner}: statistic must be one of {', '.join(STATISTICS)}, got {self.statistic!r}")
        set_(self, "match", _matchers(owner, "match", self.match))
        set_(self, "denominator_match", _matchers(owner, "denominator_match", self.denominator_match))
        if self.statistic == "ratio":
            denominator = self.denominator
            if denominator is None:
                raise ValueError(f"{owner}: statistic 'ratio' needs a denominator (a counter's name), got None")
            if not isinstance(denominator, str) or not is_metric_name(denominator) or is_snapshot_path(denominator):
                raise ValueError(f"{owner}: denominator must be a counter's metric name, got {denominator!r}")
            return
        if self.denominator is not None:
            raise ValueError(
                f"{owner}: denominator applies to statistic 'ratio' only, not {self.statistic!r}; "
                f"got denominator={self.denominator!r}"
            )
        if self.denominator_match:
            raise ValueError(
                f"{owner}: denominator_match applies to statistic 'ratio' only, not {self.statistic!r}; "
                f"got denominator_match={dict(self.denominator_match)!r}"
            )

    def _check_snapshot_rule(self, owner: str) -> None:
        where = f"the ServerMetrics path {self.metric!r}"
        if self.statistic != "value":
            raise ValueError(
                f"{owner}: statistic applies to metric names only; {where} is already one value (percentiles are "
                f"fields: '...percentiles.p95'), got statistic={self.statistic!r}"
            )
        for name in ("match", "denominator_match"):
            given = getattr(self, name)
            if not isinstance(given, Mapping) or given:
                raise ValueError(f"{owner}: {name} applies to metric names only, not to {where}; got {name}={given!r}")
            object.__setattr__(self, name, MappingProxyType({}))
        if self.denominator is not None:
            raise ValueError(
                f"{owner}: denominator applies to metric names only, not to {where}; got {self.denominator!r}"
            )

    def _check_window(self, owner: str) -> None:
        looks_back = not self.reads_snapshot and self.statistic != "value"
        if self.kind in _WINDOWED:
            if self.window is None:
                raise ValueError(f"{owner}: kind {self.kind!r} needs a window in seconds")
        elif self.window is not None and not looks_back:
            extra = "" if self.reads_snapshot else ", and to the statistics rate, ratio and those of histograms"
            raise ValueError(
                f"{owner}: window applies to 'percent_change' and 'rate_of_change' only{extra}; "
                f"got window={self.window!r} with kind {self.kind!r}"
            )
        if self.window is not None:
            object.__setattr__(self, "window", _duration(owner, "window", self.window, positive=True))

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
                tuple(sorted(self.match.items())),
                self.statistic,
                self.denominator,
                tuple(sorted(self.denominator_match.items())),
            )
        )

    @property
    def reads_snapshot(self) -> bool:
        """True when :attr:`metric` is a ``ServerMetrics`` path; False for a metric name."""
        return is_snapshot_path(self.metric)

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

        For a ``ServerMetrics`` path only (a metric-name rule is measured by the manager, on frames and
        :meth:`AlertManager.check_metric` values, and gets None here). ``history`` is oldest first
        (``Telemetry.get_history()``); the earlier value is that of the newest snapshot taken at least ``window``
        seconds before ``metrics``. None means no data.
        """
        if not self.reads_snapshot:
            return None
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
        metric: the rule's ``metric`` (a ``ServerMetrics`` path or a metric name).
        active_since: when the condition started holding (UTC).
        fired_at: when it started firing; None while pending.
        resolved_at: when it resolved; None unless resolved.
        acknowledged, acknowledged_by, acknowledged_at: set by :meth:`AlertManager.acknowledge`.
        labels: ``alertname``, ``severity`` and the rule's labels (as on Prometheus alerts).
        annotations: the rule's annotations, filled in with the value.
        server_id: the ``server_id`` of the snapshot that last met the condition.
        resolution: how a resolved alert was resolved: ``"automatic"`` (its condition stopped holding, or its rule
            was removed) or ``"manual"`` (:meth:`AlertManager.resolve`); None unless resolved.
        resolved_by: who resolved it manually (the ``by`` given to :meth:`AlertManager.resolve`).
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
    resolution: Literal["automatic", "manual"] | None = None
    resolved_by: str | None = None

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
            "resolution": self.resolution,
            "resolved_by": self.resolved_by,
        }
