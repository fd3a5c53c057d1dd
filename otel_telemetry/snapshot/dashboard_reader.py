"""Reading two frames for the runtime dashboard: interval counts, gauges and histograms, and metric sources.

Internal to :mod:`otel_telemetry.snapshot.dashboard` (which documents the behaviour), apart from
:func:`histogram_quantile`, Prometheus' interpolation, which ``otel-telemetry top`` also applies to scrapes.
Nothing here imports OpenTelemetry: data points are read by their attributes (``value``, ``count``,
``bucket_counts``...), so that a process rendering a dashboard needs no SDK.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otel_telemetry.accumulators import HistogramSnapshot, difference, merge

if TYPE_CHECKING:
    from otel_telemetry.snapshot.frame import Frame

__all__ = ["histogram_quantile"]

#: An OpenTelemetry instrument name.
NAME = r"[A-Za-z][-_./A-Za-z0-9]{0,254}"
#: An attribute name in a source's match.
KEY = re.compile(r"[A-Za-z_][-A-Za-z0-9_.]*")
_SOURCE = re.compile(rf"({NAME})(?:\{{([^{{}}]*)\}})?")

#: A series' attributes in canonical form: ``(key, value)`` pairs sorted by key.
Key = tuple[tuple[str, str], ...]


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of a histogram, interpolated exactly as Prometheus' ``histogram_quantile`` does.

    ``buckets`` are ``(upper bound, cumulative count)`` pairs in any order; the last bound must be ``+Inf``. Within
    the bucket holding the rank, values are assumed spread linearly from the previous bound (0 for the first bucket
    when its bound is positive); a rank in the ``+Inf`` bucket gives the highest finite bound. Returns None where
    Prometheus gives NaN (no ``+Inf`` bucket, fewer than two buckets, no observations); ``-inf``/``+inf`` for
    ``q`` below 0 or above 1.
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if not ordered or not math.isinf(ordered[-1][0]) or len(ordered) < 2:
        return None
    # Cumulative counts never decrease; scrapes taken mid-update can make them, so Prometheus forces them up.
    monotonic: list[tuple[float, float]] = []
    highest = 0.0
    for bound, count in ordered:
        highest = max(highest, count)
        monotonic.append((bound, highest))
    observations = monotonic[-1][1]
    if observations <= 0:
        return None
    rank = q * observations
    index = next((i for i, (_bound, count) in enumerate(monotonic[:-1]) if count >= rank), len(monotonic) - 1)
    if index == len(monotonic) - 1:
        return monotonic[-2][0]
    if index == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    start, end, count = 0.0, monotonic[index][0], monotonic[index][1]
    if index > 0:
        start = monotonic[index - 1][0]
        count -= monotonic[index - 1][1]
        rank -= monotonic[index - 1][1]
    return start + (end - start) * (rank / count)


# --- Sources -------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=512)
def selector(text: str) -> tuple[str, Key]:
    """``name`` and the attribute match of a source ``name{key=value,...}``; ValueError when malformed."""
    found = _SOURCE.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"expected an OpenTelemetry metric name, optionally with {{key=value,...}}, got {text!r}")
    pairs: dict[str, str] = {}
    for part in filter(None, (found.group(2) or "").split(",")):
        key, equals, value = (piece.strip() for piece in part.partition("="))
        if not equals or not KEY.fullmatch(key) or not value:
            raise ValueError(f"expected key=value in the attribute match of {text!r}, got {part!r}")
        pairs[key] = value
    return found.group(1), tuple(sorted(pairs.items()))


def matches(attributes: Key, wanted: Key) -> bool:
    """Whether a series with ``attributes`` carries every wanted pair (value ``*``: the key with any value)."""
    if not wanted:
        return True
    present = dict(attributes)
    return all((key in present) if value == "*" else present.get(key) == value for key, value in wanted)


# --- Two frames --------------------------------------------------------------------------------------------------
_KINDS = {"Sum": "sum", "Gauge": "gauge", "Histogram": "histogram"}


@dataclass(slots=True)
class _Metric:
    kind: str
    unit: str
    points: dict[Key, Any]


def _key(attributes: Mapping[str, object] | None) -> Key:
    return tuple(sorted((str(k), str(v)) for k, v in (attributes or {}).items()))


def _index(frame: Frame | None) -> dict[str, _Metric]:
    found: dict[str, _Metric] = {}
    if frame is None:
        return found
    for rm in frame.metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                entry = found.setdefault(metric.name, _Metric(_KINDS.get(type(metric.data).__name__, ""), "", {}))
                entry.unit = entry.unit or (metric.unit or "")
                for point in metric.data.data_points:
                    entry.points[_key(point.attributes)] = point
    return found


def _amount(point: Any) -> float:
    value = getattr(point, "value", None)
    return float(value if value is not None else point.count)


@dataclass(frozen=True, slots=True)
class Count:
    """A count since the start (``total``) and over the interval (``delta``, in ``seconds``; None: unknown)."""

    total: float
    delta: float
    seconds: float | None

    @property
    def rate(self) -> float | None:
        """``delta`` per second."""
        return self.delta / self.seconds if self.seconds else None


@dataclass(frozen=True, slots=True)
class Dist:
    """What histogram series observed over an interval: count, sum, quantiles and (when known) extremes, in the
    metric's unit; ``total`` is the observations since the start, ``sketch`` the produced series' cells.

    Percentiles of explicit-bucket series are interpolated as Prometheus does, then kept within the exact
    extremes when those are known (since the start, or a series new in the interval)."""

    count: int
    sum: float
    seconds: float | None
    total: int  # observations since the start
    quantile: Callable[[float], float | None]
    low: float | None = None
    high: float | None = None
    sketch: HistogramSnapshot | None = None

    @property
    def rate(self) -> float | None:
        """Observations per second."""
        return self.count / self.seconds if self.seconds else None

    def stat(self, name: str) -> float | None:
        """``count``, ``sum``, ``mean``, ``min``, ``max``, ``p50``, ``p90``, ``p95`` or ``p99`` (else None)."""
        if name in ("p50", "p90", "p95", "p99"):
            value = self.quantile(int(name[1:]) / 100) if self.count else None
            if value is not None and self.low is not None and self.high is not None:
                value = min(max(value, self.low), self.high)  # interpolation may leave the observed range
            return value
        if name == "mean":
            return self.sum / self.count if self.count else None
        return {"count": float(self.count), "sum": self.sum, "min": self.low, "max": self.high}.get(name)


class Reader:
    """The current frame's metrics beside the previous frame's: interval counts, gauges and histograms."""

    def __init__(self, frame: Frame, previous: Frame | None) -> None:
        self.frame = frame
        self.previous = previous
        self.now = _index(frame)
        self.before = _index(previous)
        elapsed = frame.monotonic - previous.monotonic if previous is not None else 0.0
        self.interval = elapsed if elapsed > 0 else None
        self._end = frame.time_unix_nano / 1e9

    def _since(self, starts: Iterable[float]) -> float | None:
        earliest = min(starts, default=None)
        elapsed = self._end - earliest if earliest is not None else 0.0
        return elapsed if elapsed > 0 else None

    def kind(self, name: str) -> str:
        """``sum``, ``gauge`` or ``histogram`` for a metric of the current frame ("" when absent or other)."""
        metric = self.now.get(name)
        return metric.kind if metric is not None else ""

    def unit(self, name: str) -> str:
        """The metric's unit ("" when absent)."""
        metric = self.now.get(name)
        return metric.unit if metric is not None else ""

    def keys(self, name: str, match: Key) -> list[Key]:
        """The attribute sets of the metric's matching series, sorted."""
        metric = self.now.get(name)
        return sorted(k for k in metric.points if matches(k, match)) if metric is not None else []

    def _chosen(self, name: str, match: Key, exact: Key | None, kinds: tuple[str, ...]) -> list[tuple[Key, Any]]:
        metric = self.now.get(name)
        if metric is None or metric.kind not in kinds:
            return []
        return [(k, p) for k, p in metric.points.items() if (k == exact if exact is not None else matches(k, match))]

    def count(self, name: str, match: Key = (), exact: Key | None = None) -> Count | None:
        """The total and the increase over the interval of a counter (or a histogram's observation count)."""
        chosen = self._chosen(name, match, exact, ("sum", "histogram"))
        if not chosen:
            return None
        before = self.before.get(name)
        prior = before.points if before is not None else {}
        total = delta = 0.0
        for key, point in chosen:
            amount = _amount(point)
            earlier = prior.get(key)
            last = _amount(earlier) if earlier is not None else None
            total += amount
            delta += amount - last if last is not None and amount >= last else amount  # new, or restarted
        if self.previous is not None:
            return Count(total, delta, self.interval)
        return Count(total, delta, self._since(p.start_time_unix_nano / 1e9 for _, p in chosen))

    def gauge(self, name: str, match: Key = (), exact: Key | None = None) -> float | None:
        """The sum of the matching series' values (None when there is none)."""
        chosen = self._chosen(name, match, exact, ("gauge", "sum"))
        values = [float(p.value) for _, p in chosen if p.value is not None and math.isfinite(p.value)]
        return sum(values) if values else None

    def histogram(
        self, name: str, match: Key = (), exact: Key | None = None, *, since_start: bool = False
    ) -> Dist | None:
        """What the matching histogram series observed over the interval (``since_start``: since the start).

        Produced histograms (the frame's sketches) give quantiles within 0.5 % and exact extremes; other histograms
        are interpolated inside their explicit buckets.
        """
        prior_frame = None if since_start else self.previous
        states = [
            s
            for k, s in self.frame.histograms.items()
            if k.name == name and (k.attributes == exact if exact is not None else matches(k.attributes, match))
        ]
        if states:
            earlier = prior_frame.histograms if prior_frame is not None else {}
            parts = []
            for state in states:
                old = earlier.get(state.key)
                now = state.cumulative
                if old is None or now.count < old.cumulative.count:  # new in the interval, or restarted
                    parts.append(now)
                else:
                    parts.append(difference(now, old.cumulative))
            sketch = functools.reduce(merge, parts)
            seconds = self.interval if prior_frame is not None else self._since(s.start_time for s in states)
            total = sum(s.cumulative.count for s in states)
            scale = sketch.layout.scale  # sketches hold the recorded unit (pings: ms); the metric's unit is exported

            def quantile(q: float) -> float | None:
                value = sketch.quantile(q)
                return None if value is None else value * scale

            low, high = sketch.min(), sketch.max()
            return Dist(
                sketch.count,
                sketch.sum * scale,
                seconds,
                total,
                quantile,
                None if low is None else low * scale,
                None if high is None else high * scale,
                sketch,
            )
        return self._bucket_histogram(name, match, exact, prior_frame is not None)

    def _bucket_histogram(self, name: str, match: Key, exact: Key | None, interval: bool) -> Dist | None:
        chosen = self._chosen(name, match, exact, ("histogram",))
        if not chosen:
            return None
        before = self.before.get(name) if interval else None
        prior = before.points if before is not None else {}
        cumulative: dict[float, float] = {}
        count, total, observed = 0, 0.0, 0
        lows: list[float] = []
        highs: list[float] = []
        exact_extremes = True
        for key, point in chosen:
            bounds = (*point.explicit_bounds, math.inf)
            counts = list(point.bucket_counts)
            n, s = int(point.count), float(point.sum)
            observed += n
            old = prior.get(key)
            if (
                old is not None
                and tuple(old.explicit_bounds) == tuple(point.explicit_bounds)
                and old.count <= n
                and all(a >= b for a, b in zip(counts, old.bucket_counts, strict=False))
            ):
                counts = [a - b for a, b in zip(counts, old.bucket_counts, strict=False)]
                n, s = n - int(old.count), s - float(old.sum)
                exact_extremes = False  # a cumulative point's min and max cover the start, not the interval
            elif n:
                lows.append(float(point.min))
                highs.append(float(point.max))
            running = 0.0
            for bound, c in zip(bounds, counts, strict=False):
                running += c
                cumulative[bound] = cumulative.get(bound, 0.0) + running
            count += n
            total += s
        pairs = tuple(cumulative.items())
        seconds = self.interval if interval else self._since(p.start_time_unix_nano / 1e9 for _, p in chosen)
        return Dist(
            count,
            total,
            seconds,
            observed,
            lambda q: histogram_quantile(q, pairs),
            min(lows) if exact_extremes and lows else None,
            max(highs) if exact_extremes and highs else None,
        )


def ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds (None for None or a non-finite value)."""
    return seconds * 1000.0 if seconds is not None and math.isfinite(seconds) else None


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None when absent or not finite."""
    return float(value) if value is not None and math.isfinite(value) else None


def per_second(amount: float, seconds: float | None) -> float | None:
    """``amount / seconds``; None without a positive interval."""
    return amount / seconds if seconds else None


def count_above(sketch: HistogramSnapshot, threshold: float) -> int:
    """Values of ``sketch`` above ``threshold`` > 0, in the exported unit (values in the threshold's own cell, within
    0.5 %, are not counted)."""
    first = sketch.layout.cell_of(threshold / sketch.layout.scale) + 1 - sketch.offset
    return sum(sketch.counts[max(0, first) :])
