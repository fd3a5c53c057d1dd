"""What a metric-name rule remembers between evaluations: bounded samples over its window, and its statistic.

A :class:`RuleInput` belongs to one rule of one manager. Once per frame (:meth:`RuleInput.on_frame`) or per
:meth:`~otel_telemetry.alerts.AlertManager.check_metric` value (:meth:`RuleInput.on_check`) it turns what it
reads into the value the rule compares:

* ``value``: the value itself;
* ``rate``: the counter's increase per second since the newest sample at least ``window`` seconds old (the oldest
  one while the rule has not seen ``window`` seconds yet), or since the previous frame without a window, summed
  over its matching series. Resets are handled per series as Prometheus does (a total that goes down restarts
  from 0), and a series that appears counts from 0;
* ``ratio``: the numerator's increase over the denominator's, over the same samples; no data while the denominator
  did not increase;
* histogram statistics: from the produced histogram's sliding window without a rule window, from the difference
  of its cumulative snapshots over the rule's window otherwise; for SDK histograms, from the bucket counts'
  difference over the window (or since the previous frame);
* then, for ``percent_change`` and ``rate_of_change``, the change of that value over ``window`` (the earlier
  value is the newest at least ``window`` seconds old; no data until there is one).

Memory is bounded: each ring keeps one sample older than its window and at most :data:`MAX_SAMPLES` more, spaced
at least about ``window / MAX_SAMPLES`` apart (a closer sample replaces the newest one, so the window's edge is accurate
to that spacing); a sample beyond that bound is dropped and counted in ``dropped``. Thread-safe: one lock per input.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from otel_telemetry.accumulators import HistogramSnapshot, difference
from otel_telemetry.alerts.model import _WINDOWED, AlertRule
from otel_telemetry.alerts.sources import (
    Buckets,
    FrameView,
    SeriesId,
    buckets_statistic,
    read_buckets,
    read_counter,
    read_number,
    read_produced,
    snapshot_statistic,
)
from otel_telemetry.alerts.values import _number

__all__ = ["CHECKED_STATISTICS", "MAX_SAMPLES", "MAX_SERIES", "RuleInput", "checked_rules"]

#: Samples a ring keeps within its window at most (plus the newest and one older than the window).
MAX_SAMPLES = 512
#: Series of one counter a rule follows at most (their increases are summed).
MAX_SERIES = 10_000
#: The statistics :meth:`~otel_telemetry.alerts.AlertManager.check_metric` feeds (the others need a frame).
CHECKED_STATISTICS = frozenset({"value", "rate"})
_T = TypeVar("_T")


class _Ring(Generic[_T]):
    """Timestamped samples over ``span`` seconds (None: the newest only), oldest first."""

    __slots__ = ("_samples", "_span", "dropped")

    def __init__(self, span: float | None) -> None:
        self._span = span
        self._samples: deque[tuple[float, _T]] = deque()
        self.dropped = 0

    def base(self, now: float, window: float | None) -> tuple[float, _T] | None:
        """The sample a window ending ``now`` starts from: the newest at least ``window`` old, else the oldest;
        without a window, the newest. None when there is none."""
        samples = self._samples
        if not samples:
            return None
        if window is None:
            return samples[-1]
        return self.earlier(now, window) or samples[0]

    def earlier(self, now: float, window: float) -> tuple[float, _T] | None:
        """The newest sample taken at least ``window`` seconds before ``now``; None when there is none."""
        horizon = now - window
        for sample in reversed(self._samples):
            if sample[0] <= horizon:
                return sample
        return None

    def add(self, now: float, item: _T) -> None:
        samples = self._samples
        span = self._span
        if span is None:
            samples.clear()
            samples.append((now, item))
            return
        if len(samples) >= 2 and samples[-1][0] - samples[-2][0] < span / (MAX_SAMPLES - 2):
            samples[-1] = (now, item)  # the newest was too close to the one before: it moves on
        else:
            samples.append((now, item))
        horizon = now - span
        while len(samples) >= 2 and samples[1][0] <= horizon:
            samples.popleft()
        while len(samples) > MAX_SAMPLES + 2:
            samples.popleft()
            self.dropped += 1


class _Counter:
    """A counter's increase summed over its series, resets taken out per series as Prometheus does: a total that
    goes down restarts from 0, a new series counts from 0. At most :data:`MAX_SERIES` series are followed; the
    increases of more are dropped and counted."""

    __slots__ = ("dropped", "last", "total")

    def __init__(self) -> None:
        self.last: dict[SeriesId, float] = {}
        self.total = 0.0
        self.dropped = 0

    def observe(self, series: dict[SeriesId, float] | None) -> bool:
        """Fold in the totals read now (None: absent); True when there were some."""
        if series is None:
            return False
        last_of = self.last
        for key, raw in series.items():
            last = last_of.get(key)
            if last is None and len(last_of) >= MAX_SERIES:
                self.dropped += 1
                continue
            self.total += raw if last is None or raw < last else raw - last
            last_of[key] = raw
        return True


class RuleInput:
    """The samples and statistic of one metric-name rule (see the module docstring). Thread-safe.

    ``checked`` becomes True with the first :meth:`on_check` value: from then on the manager judges the rule on
    those values only, and frames no longer feed it.
    """

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self.checked = False
        self._lock = threading.Lock()
        self._window = rule.window if rule.statistic != "value" else None
        self._counters: _Ring[tuple[float, float]] = _Ring(self._window)
        self._histograms: _Ring[HistogramSnapshot | Buckets | None] = _Ring(self._window)
        self._values: _Ring[float | None] | None = _Ring(rule.window) if rule.kind in _WINDOWED else None
        self._numerator = _Counter()
        self._denominator = _Counter()

    @property
    def dropped(self) -> int:
        """Samples dropped beyond the bound (see :data:`MAX_SAMPLES`)."""
        values = self._values.dropped if self._values is not None else 0
        counters = self._numerator.dropped + self._denominator.dropped
        return self._counters.dropped + self._histograms.dropped + values + counters

    def on_frame(self, view: FrameView, now: float) -> float | None:
        """The value the rule compares on this frame, taken at ``now`` (monotonic seconds); None: no data.

        Raises :class:`~otel_telemetry.alerts.sources.StatisticMismatch` when the statistic does not fit the metric.
        """
        rule = self.rule
        with self._lock:
            statistic = rule.statistic
            if statistic == "value":
                value = read_number(view, rule.metric, rule.match)
            elif statistic == "rate":
                value = self._rate(now, read_counter(view, rule.metric, rule.match))
            elif statistic == "ratio":
                assert rule.denominator is not None
                numerator = read_counter(view, rule.metric, rule.match)
                value = self._ratio(now, numerator, read_counter(view, rule.denominator, rule.denominator_match))
            else:
                value = self._histogram(view, now)
            return self._change(now, value)

    def on_check(self, value: float | None, now: float) -> float | None:
        """The value the rule compares after the application checked ``value`` at ``now`` (``value`` or ``rate``
        rules; for ``rate``, ``value`` is a cumulative total)."""
        with self._lock:
            self.checked = True
            if self.rule.statistic == "rate":
                measured = self._rate(now, None if value is None else {(): value})
            else:
                measured = value
            return self._change(now, measured)

    def _rate(self, now: float, raw: dict[SeriesId, float] | None) -> float | None:
        present = self._numerator.observe(raw)
        base = self._counters.base(now, self._window)
        total = self._numerator.total
        self._counters.add(now, (total, 0.0))
        if not present or base is None or now <= base[0]:
            return None
        return (total - base[1][0]) / (now - base[0])

    def _ratio(
        self, now: float, numerator: dict[SeriesId, float] | None, denominator: dict[SeriesId, float] | None
    ) -> float | None:
        present = self._numerator.observe(numerator)
        present = self._denominator.observe(denominator) and present
        base = self._counters.base(now, self._window)
        totals = (self._numerator.total, self._denominator.total)
        self._counters.add(now, totals)
        if not present or base is None:
            return None
        below = totals[1] - base[1][1]
        return (totals[0] - base[1][0]) / below if below > 0 else None

    def _histogram(self, view: FrameView, now: float) -> float | None:
        rule = self.rule
        produced = read_produced(view, rule.metric, rule.match)
        if produced is not None:
            if self._window is None:
                return snapshot_statistic(produced.window, rule.statistic, produced.scale)
            older = self._histogram_base(now, produced.cumulative)
            if older is _NO_BASE:
                return None
            start = older if isinstance(older, HistogramSnapshot) else None
            if start is not None and start.count > produced.cumulative.count:
                start = None  # the series restarted
            return snapshot_statistic(difference(produced.cumulative, start), rule.statistic, produced.scale)
        buckets = read_buckets(view, rule.metric, rule.match)
        base = self._histogram_base(now, buckets)
        if buckets is None or base is _NO_BASE:
            return None
        return buckets_statistic(buckets.since(base if isinstance(base, Buckets) else None), rule.statistic)

    def _histogram_base(self, now: float, current: HistogramSnapshot | Buckets | None) -> object:
        base = self._histograms.base(now, self._window)
        self._histograms.add(now, current)
        return _NO_BASE if base is None else base[1]

    def _change(self, now: float, value: float | None) -> float | None:
        values = self._values
        if values is None:
            return value
        rule = self.rule
        assert rule.window is not None
        earlier = values.earlier(now, rule.window)
        values.add(now, value)
        if value is None or earlier is None or earlier[1] is None:
            return None
        past = earlier[1]
        if rule.kind == "percent_change":
            return None if past == 0 else (value - past) / abs(past) * 100.0
        return (value - past) / (now - earlier[0]) if now > earlier[0] else None


#: No sample yet to start a window from (distinct from a sample of an absent series, None).
_NO_BASE = object()


def checked_rules(
    rules: Iterable[AlertRule], name: object, value: object, labels: Mapping[str, str] | None
) -> tuple[float | None, list[AlertRule]]:
    """The arguments of ``check_metric`` checked (``ValueError`` naming the argument and the value), as the number
    to compare (None for NaN and infinities) and the rules it feeds: metric-name rules on ``name`` with a statistic
    of :data:`CHECKED_STATISTICS` whose ``match`` the ``labels`` satisfy."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"AlertManager.check_metric: name must be a non-empty string, got {name!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"AlertManager.check_metric: value must be a number, got {value!r}")
    given = dict(labels or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
        raise ValueError(f"AlertManager.check_metric: labels must map strings to strings, got {labels!r}")
    chosen = [
        rule
        for rule in rules
        if rule.metric == name
        and not rule.reads_snapshot
        and rule.statistic in CHECKED_STATISTICS
        and all(given.get(k) == v for k, v in rule.match.items())
    ]
    return _number(value), chosen
