"""Reading a metric of the frame for a metric-name rule: the frame's metrics by name, their points, histograms.

A :class:`FrameView` indexes one frame's metrics by OpenTelemetry name and by the name ``/metrics`` shows
(:mod:`~otel_telemetry.alerts.names`), once per evaluation. The readers return what a statistic is computed from:

* :func:`read_number`: a gauge's or counter's value, summed over the points whose attributes contain the matchers;
* :func:`read_counter`: the cumulative total of each matching series of a counter (under ``rate`` and ``ratio``);
* :func:`read_produced`: the histogram series the SDK produces itself (catalog histograms, facade timings and
  distributions), with their sliding-window snapshot: nearest-rank quantiles within 0.5 %, exact count, sum, min
  and max;
* :func:`read_buckets`: an OpenTelemetry SDK histogram (``@traced`` handlers, your own meters): explicit-bucket
  counts summed over the matching points, whose quantiles :func:`bucket_quantile` interpolates as Prometheus'
  ``histogram_quantile`` does.

``None`` is "no data" (no such metric, or no matching point). A statistic that does not fit the metric's kind (a
quantile of a counter, the value of a histogram) raises :class:`StatisticMismatch`, which the manager counts as a
rule error. Everything here reads immutable frames and is thread-safe.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import Histogram, Metric

from otel_telemetry.accumulators import HistogramSnapshot, HistogramState, merge
from otel_telemetry.alerts.model import QUANTILES
from otel_telemetry.alerts.names import ExportedName, PrometheusKind, exported_name, metric_kind

if TYPE_CHECKING:
    from otel_telemetry.snapshot.frame import Frame

__all__ = [
    "Buckets",
    "FrameView",
    "Produced",
    "SeriesId",
    "StatisticMismatch",
    "bucket_quantile",
    "buckets_statistic",
    "read_buckets",
    "read_counter",
    "read_number",
    "read_produced",
    "snapshot_statistic",
]


class StatisticMismatch(Exception):
    """A rule's statistic does not apply to its metric's kind (``p95`` of a counter, ``value`` of a histogram)."""


class FrameView:
    """One frame's metrics by OpenTelemetry name and by Prometheus name. Built per evaluation; read-only after."""

    __slots__ = ("_aliases", "_exported", "_metrics", "_produced", "frame")

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self._metrics: dict[str, list[Metric]] = {}
        self._exported: dict[str, ExportedName] = {}
        self._aliases: dict[str, str] = {}
        self._produced: dict[str, list[HistogramState]] = {}
        for metric in frame.metrics():
            self._metrics.setdefault(metric.name, []).append(metric)
            kind = metric_kind(metric)
            if kind is not None and metric.name not in self._exported:
                self._add(exported_name(metric.name, metric.unit or "", kind))
        for state in frame.histograms.values():
            self._produced.setdefault(state.key.name, []).append(state)
            if state.key.name not in self._exported:
                self._add(exported_name(state.key.name, state.spec.unit, "histogram"))

    def _add(self, exported: ExportedName) -> None:
        self._exported[exported.otel] = exported
        self._aliases.setdefault(exported.prometheus, exported.otel)

    def resolve(self, name: str) -> str | None:
        """The OpenTelemetry name of the frame's metric called ``name`` (either name); None when absent."""
        if name in self._metrics or name in self._produced:
            return name
        return self._aliases.get(name)

    def kind(self, otel_name: str) -> PrometheusKind | None:
        """How the metric reads on ``/metrics``; None when absent."""
        found = self._exported.get(otel_name)
        return found.kind if found is not None else None

    def metrics(self, otel_name: str) -> list[Metric]:
        """The frame's metrics of that OpenTelemetry name (one per scope that reports it)."""
        return self._metrics.get(otel_name, [])

    def produced(self, otel_name: str) -> list[HistogramState]:
        """The produced histogram series of that name (empty for SDK histograms and other kinds)."""
        return self._produced.get(otel_name, [])

    def exported(self) -> dict[str, ExportedName]:
        """Every metric of the frame as ``/metrics`` shows it, by OpenTelemetry and by Prometheus name."""
        found = dict(self._exported)
        for prometheus, otel in self._aliases.items():
            found.setdefault(prometheus, self._exported[otel])
        return found


def _matches(attributes: Mapping[str, Any] | None, match: Mapping[str, str]) -> bool:
    if not match:
        return True
    if not attributes:
        return False
    for key, wanted in match.items():
        value = attributes.get(key)
        if value is None or (value != wanted and str(value) != wanted):
            return False
    return True


def _points(view: FrameView, name: str, match: Mapping[str, str], allowed: frozenset[str], what: str) -> list[Any]:
    otel = view.resolve(name)
    if otel is None:
        return []
    kind = view.kind(otel)
    if kind not in allowed:
        raise StatisticMismatch(f"metric {name!r} is a {kind or 'non-exportable metric'}; {what}")
    return [p for m in view.metrics(otel) for p in m.data.data_points if _matches(p.attributes, match)]


def _sum(points: Iterable[Any]) -> float | None:
    values = [float(p.value) for p in points if isinstance(p.value, (int, float)) and math.isfinite(p.value)]
    return math.fsum(values) if values else None


def read_number(view: FrameView, name: str, match: Mapping[str, str]) -> float | None:
    """Statistic ``value``: the sum of the matching points of gauge or counter ``name``; None when there are none."""
    allowed = frozenset({"gauge", "counter"})
    return _sum(_points(view, name, match, allowed, "statistic 'value' reads gauges and counters (use p95, mean...)"))


#: One series of a metric: its attributes, sorted.
SeriesId = tuple[tuple[str, str], ...]


def read_counter(view: FrameView, name: str, match: Mapping[str, str]) -> dict[SeriesId, float] | None:
    """The cumulative total of each matching series of counter ``name`` (under ``rate`` and ``ratio``); None when
    there is none."""
    points = _points(view, name, match, frozenset({"counter"}), "statistics 'rate' and 'ratio' read counters")
    totals: dict[SeriesId, float] = {}
    for point in points:
        value = point.value
        if isinstance(value, (int, float)) and math.isfinite(value):
            key = tuple(sorted((str(k), str(v)) for k, v in (point.attributes or {}).items()))
            totals[key] = totals.get(key, 0.0) + float(value)
    return totals or None


@dataclass(frozen=True, slots=True)
class Produced:
    """The matching series of a produced histogram, merged: cumulative since start and over its sliding window,
    in the recorded unit (``scale`` converts to the exported one)."""

    cumulative: HistogramSnapshot
    window: HistogramSnapshot
    scale: float


def read_produced(view: FrameView, name: str, match: Mapping[str, str]) -> Produced | None:
    """The produced histogram ``name`` (its matching series merged); None when the frame has no such series."""
    otel = view.resolve(name)
    states = view.produced(otel) if otel is not None else []
    chosen = [s for s in states if _matches(dict(s.key.attributes), match)]
    if not chosen:
        return None
    cumulative, window = chosen[0].cumulative, chosen[0].window
    for state in chosen[1:]:
        cumulative, window = merge(cumulative, state.cumulative), merge(window, state.window)
    return Produced(cumulative, window, cumulative.layout.scale)


def snapshot_statistic(snapshot: HistogramSnapshot, statistic: str, scale: float) -> float | None:
    """A histogram statistic of ``snapshot`` in the exported unit (``count``: 0 when empty; others None)."""
    if statistic == "count":
        return float(snapshot.count)
    if statistic in QUANTILES:
        found = snapshot.quantile(QUANTILES[statistic])
    elif statistic == "mean":
        found = snapshot.mean()
    elif statistic == "min":
        found = snapshot.min()
    elif statistic == "max":
        found = snapshot.max()
    else:
        raise StatisticMismatch(f"statistic {statistic!r} does not apply to a histogram")
    return None if found is None else found * scale


@dataclass(frozen=True, slots=True)
class Buckets:
    """Explicit-bucket histogram counts, summed over the matching points, in the exported unit.

    ``counts`` has one count per bucket (``len(bounds) + 1``, the last for +Inf). ``whole`` is True when these
    counts cover everything the series recorded (so ``min`` and ``max`` are the exact extremes of them).
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    sum: float
    min: float | None
    max: float | None
    whole: bool = True

    def since(self, older: Buckets | None) -> Buckets:
        """What was recorded since ``older`` (all of it when None, on a reset or when the buckets changed)."""
        if older is None or older.bounds != self.bounds or older.count > self.count:
            return self
        counts = tuple(a - b for a, b in zip(self.counts, older.counts, strict=True))
        if any(c < 0 for c in counts):
            return self
        return Buckets(self.bounds, counts, self.count - older.count, self.sum - older.sum, self.min, self.max, False)


def read_buckets(view: FrameView, name: str, match: Mapping[str, str]) -> Buckets | None:
    """SDK histogram ``name``'s matching points, summed; None when there are none."""
    otel = view.resolve(name)
    if otel is None:
        return None
    kind = view.kind(otel)
    if kind != "histogram":
        raise StatisticMismatch(
            f"metric {name!r} is a {kind or 'non-exportable metric'}; histogram statistics read histograms"
        )
    points = [
        p
        for m in view.metrics(otel)
        if isinstance(m.data, Histogram)
        for p in m.data.data_points
        if _matches(p.attributes, match)
    ]
    if not points:
        return None
    bounds = tuple(float(b) for b in points[0].explicit_bounds)
    counts = [0] * (len(bounds) + 1)
    total, count = 0.0, 0
    lows, highs = [], []
    for point in points:
        if tuple(float(b) for b in point.explicit_bounds) != bounds or len(point.bucket_counts) != len(counts):
            raise StatisticMismatch(f"histogram {name!r}: the matching points have different bucket boundaries")
        counts = [a + int(b) for a, b in zip(counts, point.bucket_counts, strict=True)]
        count += int(point.count)
        total += float(point.sum)
        if point.count and point.min is not None and math.isfinite(point.min):
            lows.append(float(point.min))
        if point.count and point.max is not None and math.isfinite(point.max):
            highs.append(float(point.max))
    return Buckets(bounds, tuple(counts), count, total, min(lows) if lows else None, max(highs) if highs else None)


def bucket_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The ``q``-quantile (0..1) of explicit-bucket ``counts`` (one per bucket, the last for +Inf), interpolated
    linearly inside its bucket exactly as Prometheus' ``histogram_quantile`` does; None when there is nothing.

    A rank in the +Inf bucket gives the highest finite boundary; a first bucket starts at 0 unless its upper
    boundary is not positive (then that boundary is the answer).
    """
    if not bounds or len(counts) != len(bounds) + 1:
        return None
    running = list(itertools.accumulate(counts))
    observations = running[-1]
    if observations <= 0:
        return None
    rank = q * observations
    index = bisect.bisect_left(running, rank, 0, len(bounds))
    if index == len(bounds):
        return float(bounds[-1])
    if index == 0 and bounds[0] <= 0:
        return float(bounds[0])
    start = 0.0 if index == 0 else float(bounds[index - 1])
    below = running[index - 1] if index > 0 else 0
    inside = running[index] - below
    if inside <= 0:
        return None
    return start + (float(bounds[index]) - start) * ((rank - below) / inside)


def buckets_statistic(buckets: Buckets, statistic: str) -> float | None:
    """A histogram statistic of ``buckets`` (what was recorded over the window).

    Quantiles are interpolated (:func:`bucket_quantile`); ``mean`` is sum over count; ``count`` the count (0 when
    empty). ``min`` and ``max`` are exact when the buckets cover the series' whole life; otherwise they are the
    boundaries of the lowest and highest bucket that grew, clamped by the extremes the points carry.
    """
    if statistic == "count":
        return float(buckets.count)
    if buckets.count <= 0:
        return None
    if statistic in QUANTILES:
        return bucket_quantile(QUANTILES[statistic], buckets.bounds, buckets.counts)
    if statistic == "mean":
        return buckets.sum / buckets.count
    if statistic not in ("min", "max"):
        raise StatisticMismatch(f"statistic {statistic!r} does not apply to a histogram")
    exact = buckets.min if statistic == "min" else buckets.max
    if buckets.whole:
        return exact
    grew = [i for i, c in enumerate(buckets.counts) if c > 0]
    if not grew:
        return None
    bounds = buckets.bounds
    if statistic == "min":
        edge = bounds[grew[0] - 1] if grew[0] > 0 else -math.inf
        found = edge if exact is None else max(edge, exact)
    else:
        edge = bounds[grew[-1]] if grew[-1] < len(bounds) else math.inf
        found = edge if exact is None else min(edge, exact)
    return found if math.isfinite(found) else None
