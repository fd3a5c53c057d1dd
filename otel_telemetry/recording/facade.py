"""``MetricsFacade``: the statsd-style API (timings, distributions, counters, gauges with tags) on OpenTelemetry.

Game code calls ``timing``/``distribution``/``increment``/``gauge`` on the hot path; those calls write plain
accumulators (see :mod:`otel_telemetry.accumulators`) and never call OpenTelemetry. OpenTelemetry reads the
accumulators when it collects, each kind with its real type:

* counters: one monotonic ``ObservableCounter`` per name, reporting the sum of the increments since the facade was
  created; on ``/metrics`` a ``counter`` named ``<name>_total``. ``decrement`` keeps its statsd meaning in
  process (:meth:`MetricsFacade.get_counter` returns increments minus decrements, as the seed's guide shows), but
  an exported counter cannot go down: decrements (and negative increments) are left out of the export and counted
  in :attr:`MetricsFacade.unexported_decrements`, the way Prometheus' ``statsd_exporter`` refuses negative
  counter updates. For a value that goes up and down, use ``gauge``;
* gauges: one ``ObservableGauge`` per name, reporting the last value set;
* timings: durations in seconds, exported as explicit-bucket histograms in seconds (``<name>_seconds``);
* distributions: anything else (sizes, counts, scores), ``distribution(name, value, unit="By")``, exported as
  histograms in their own unit (``<name>_bytes``; ``unit="1"``, the default, adds no suffix) with
  :data:`DISTRIBUTION_BOUNDARIES`. A name keeps the unit of its first call; a call with another unit is refused.

Timings and distributions have no OpenTelemetry instrument (a synchronous ``Histogram.record`` costs about ten
times a facade timing). :meth:`MetricsFacade.histogram_states` returns, per timing series, the exported name, the
attributes and the cumulative :class:`~otel_telemetry.accumulators.HistogramSnapshot` (unit :data:`TIMING_UNIT`,
explicit boundaries in ``snapshot.layout.boundaries``); :meth:`MetricsFacade.histograms` returns every timing and
distribution series as :class:`~otel_telemetry.accumulators.HistogramState` objects, so
``producer.add_source(facade.histograms)`` merges them into every reader's collection like the monitors'
histograms.

Declared names and gauge arithmetic
-----------------------------------
:meth:`MetricsFacade.declare` names a counter, gauge, timing or distribution before its first value, with the
description that becomes its ``# HELP`` and, for timings and distributions, bucket boundaries of its own (charged
to the series budget at their real cost); the registered instruments of
:mod:`otel_telemetry.recording.instruments` are made of it. :meth:`MetricsFacade.gauge_add` changes a gauge by an
amount in one read-modify-write under the gauge's lock (a statsd gauge delta).

Local view and export
---------------------
``get_timing``/``get_distribution``/``get_counter``/``get_gauge``/``get_all_metrics``/``summary`` show what
happened since the last ``reset`` (timings and distributions: over the last ``window`` seconds). The reads answer
in the shapes dict-returning statsd clients read, as well as with attributes: :class:`TimingStats` and
:class:`GaugeStats` are read-only mappings of their fields (``stats["p95"]``, ``stats.p95``), and
:class:`CounterValue` is a float that also answers ``["value"]``. ``reset()`` and
``reset_counters()`` clear that view only: the exported series stay cumulative since start, as OpenTelemetry's
cumulative temporality requires.

The window is kept by :class:`~otel_telemetry.accumulators.SlidingWindow`, fed with the differences between
cumulative snapshots at most every ``min(1 s, window / 10)``; each ``histograms()`` call (every collection) and
each read feeds it. Values recorded since the last feed are always included, so a read never lags a write. A
value's age is judged by when it was fed, so without a collector the window's edge is as coarse as the interval
between reads.

Names, tags, the series budget and bad input
--------------------------------------------
A name must be a valid OpenTelemetry instrument name (``[A-Za-z][-_./A-Za-z0-9]{0,254}``). Tag keys must be
strings; tag values are normalised to labels before the series is keyed
(:func:`~otel_telemetry.series.label_value`: ``{"player": 1}`` and ``{"player": "1"}`` are one series, values
over 128 characters are shortened with a digest). Each kind has its own namespace, as in statsd: when two kinds
share a name, the later one is exported with a suffix (``name.count`` for a counter, ``name.value`` for a gauge,
``name.timing``, ``name.distribution``; never the Prometheus type itself, which promtool refuses in a name),
logged once. Every exported name is claimed in the handle's
:class:`~otel_telemetry.series.SeriesRegistry`: a name that would collide on ``/metrics`` with another family (a
timing ``handler.duration`` beside the ``@traced`` handlers' ``handler_duration_seconds``, a counter named
``telemetry_collection_runs_total``, two names that translate alike) is kept in process only (the ``get_*`` methods
still work), logged once and counted in the registry's ``refused_names``.

Each new series (a name with a tag set) must fit the registry's series budget: a counter or gauge costs 1 series,
a timing 24 (its 21 buckets, ``+Inf``, ``_sum``, ``_count``), a distribution 22. A series the budget refuses is
not created and its values are dropped, each call counted in the registry's ``refused_series`` (the first refusal
logged). Each name admits ``tag_limit`` distinct tag sets; later tag sets are recorded in the series
``{"otel.metric.overflow": "true"}`` (always admitted, so totals stay exact) and counted in
:attr:`MetricsFacade.overflowed`. Bad input (a name or tags of the wrong type, a non-numeric, NaN or infinite
amount, a negative timing or distribution, an int amount beyond 2**63 - 1, a duration beyond 1e300 s) is dropped,
counted in :attr:`MetricsFacade.rejected` per call, and logged once per call. No recording method raises.

Threads
-------
Recording is thread-safe without a lock on the hot path: counters, timings and distributions write per-thread
cells that the readers sum; a gauge takes its own lock. Series are created under one lock; the tag-set map of a
name is replaced, never mutated, and a name is added to its kind's map in one store, so lookups take no lock.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Real
from typing import Any, NamedTuple, TypeVar, cast

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_telemetry.accumulators import (
    HistogramLayout,
    HistogramSeries,
    HistogramSnapshot,
    HistogramState,
    SeriesKey,
    SlidingWindow,
    ThreadShards,
    difference,
    merge,
)
from otel_telemetry.catalog import Instrument, MetricSpec, Section
from otel_telemetry.recording.timing import BlockTimer, TimerGate
from otel_telemetry.series import (
    LABEL_LIMIT,
    Kind,
    SeriesRegistry,
    describe,
    encodable,
    histogram_cost,
    label_value,
    prometheus_family,
)

__all__ = [
    "DISTRIBUTION_BOUNDARIES",
    "OVERFLOW_ATTRIBUTES",
    "TIMING_BOUNDARIES",
    "TIMING_UNIT",
    "CounterValue",
    "GaugeStats",
    "MetricsFacade",
    "TimingState",
    "TimingStats",
]

_logger = logging.getLogger(__name__)

#: A tag set in canonical form: ``(key, value)`` pairs sorted by key.
TagKey = tuple[tuple[str, str], ...]

#: The attributes of the series that collects values beyond a name's ``tag_limit``.
OVERFLOW_ATTRIBUTES: Mapping[str, str] = {"otel.metric.overflow": "true"}
_OVERFLOW_KEY: TagKey = (("otel.metric.overflow", "true"),)
_NO_TAGS: TagKey = ()

#: The unit timings are recorded and exported in.
TIMING_UNIT = "s"
#: Explicit bucket boundaries of exported timings (seconds). Quantiles stay within 0.5% from 0.1 µs to 10,000 s.
TIMING_BOUNDARIES: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.010, 0.01667, 0.025, 0.050, 0.075, 0.1, 0.25,
    0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

#: Explicit bucket boundaries of exported distributions (in their own unit): 1-2-5 steps from 1 to 10^6.
DISTRIBUTION_BOUNDARIES: tuple[float, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000,
)  # fmt: skip

_NAME = re.compile(r"[a-zA-Z][-_./a-zA-Z0-9]{0,254}")
#: An OpenTelemetry unit: printable ASCII, at most 63 characters.
_UNIT = re.compile(r"[!-~]{0,63}")
_COUNTER, _GAUGE, _TIMING, _DISTRIBUTION = "counter", "gauge", "timing", "distribution"
_KINDS = (_COUNTER, _GAUGE, _TIMING, _DISTRIBUTION)
#: The suffix of a name exported by two kinds (for the later one): never the kind's own Prometheus type, which
#: promtool refuses in a name (``x_gauge``, ``x_counter_total``).
_RENAMED: Mapping[str, str] = {_COUNTER: "count", _GAUGE: "value", _TIMING: "timing", _DISTRIBUTION: "distribution"}
#: The Prometheus type of each facade kind.
_PROMETHEUS_KIND: Mapping[str, Kind] = {
    _COUNTER: "counter",
    _GAUGE: "gauge",
    _TIMING: "histogram",
    _DISTRIBUTION: "histogram",
}
_OWNER = "metrics"


class _FieldMapping(Mapping[str, float]):
    """Read-only mapping access to a stats dataclass's fields, in field order (``stats["p95"]``, ``dict(stats)``),
    so that code written for dict-returning statsd clients works unchanged beside attribute access."""

    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> float:
        if key in self._FIELDS:
            return cast(float, getattr(self, key))
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._FIELDS)

    def __len__(self) -> int:
        return len(self._FIELDS)

    def as_dict(self) -> dict[str, float]:
        """A JSON-ready mapping (a plain ``dict``)."""
        return {key: getattr(self, key) for key in self._FIELDS}


@dataclass(frozen=True, slots=True)
class TimingStats(_FieldMapping):
    """Statistics of one timing series over the window, in seconds (quantiles, min and max within 0.5%); of a
    distribution series, in its unit.

    Both a dataclass (``stats.p95``) and a read-only mapping of the same fields (``stats["p95"]``, ``dict(stats)``,
    ``"p95" in stats``). Immutable, so safe to share between threads.
    """

    _FIELDS = ("count", "mean", "min", "max", "p50", "p95", "p99")

    count: int
    mean: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True, slots=True)
class GaugeStats(_FieldMapping):
    """Statistics of one gauge series since the last reset: last value, extremes, mean of values set, count.

    Both a dataclass (``stats.current``) and a read-only mapping (``stats["current"]``). Immutable.
    """

    _FIELDS = ("current", "min", "max", "mean", "count")

    current: float
    min: float
    max: float
    mean: float
    count: int


class CounterValue(float):
    """What :meth:`MetricsFacade.get_counter` returns: the counter's value as a ``float`` (``== 3``, ``+ 1``,
    formatting all work as on a float) that also answers ``["value"]``, the shape dict-returning statsd clients
    read (``get_counter(name)["value"]``). Arithmetic gives plain floats. Immutable."""

    __slots__ = ()

    # Declared so that type checkers compare it with ints and floats as they compare a float.
    def __eq__(self, other: object) -> bool:
        return float.__eq__(self, other) is True if isinstance(other, (int, float)) else NotImplemented

    __hash__ = float.__hash__

    def __getitem__(self, key: str) -> float:
        if key == "value":
            return float(self)
        raise KeyError(key)

    def keys(self) -> tuple[str]:
        """The one key, ``"value"``."""
        return ("value",)

    def get(self, key: str, default: float | None = None) -> float | None:
        """``self[key]``, or ``default`` for any other key."""
        return float(self) if key == "value" else default

    def as_dict(self) -> dict[str, float]:
        """``{"value": ...}``, JSON-ready."""
        return {"value": float(self)}


class TimingState(NamedTuple):
    """One timing series for export: the exported name, its attributes, its cumulative state since start."""

    name: str
    attributes: Mapping[str, str]
    cumulative: HistogramSnapshot


# --- series ----------------------------------------------------------------------------------------------------
def _new_counter_cell() -> list[float]:
    return [0, 0, 0]


def _merged_counter_cells(a: list[float], b: list[float]) -> list[float]:
    return [a[0] + b[0], a[1] + b[1], a[2] + b[2]]


class _CounterSeries:
    """Sums written through per-thread cells (no lock, no lost update); cells of ended threads are folded.

    The cells are a :class:`ThreadShards` of ``[increments, decrements, decrement calls]`` lists, the primitive
    the histograms use too: the export reads the (monotonic) sum of increments, the local view the difference.
    """

    __slots__ = ("_local", "_shards", "attributes", "baseline")

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self.attributes = attributes
        self._shards: ThreadShards[list[float]] = ThreadShards(_new_counter_cell, _merged_counter_cells)
        self._local = self._shards.local  # read inline by add(): no method call on the hot path
        #: The total at the last reset: the local view reports ``total() - baseline``.
        self.baseline: float = 0

    def add(self, amount: float) -> None:
        """Add ``amount`` >= 0 (exported and local)."""
        try:
            cell = self._local.shard
        except AttributeError:
            cell = self._shards.shard()
        cell[0] += amount

    def subtract(self, amount: float) -> None:
        """Subtract ``amount`` >= 0 from the local view only (an exported counter never goes down)."""
        try:
            cell = self._local.shard
        except AttributeError:
            cell = self._shards.shard()
        cell[1] += amount
        cell[2] += 1

    def total(self) -> float:
        """The net sum since creation (increments minus decrements)."""
        return sum(cell[0] - cell[1] for cell in self._shards.all())

    def increments(self) -> float:
        """The sum of the increments since creation: what is exported."""
        return sum(cell[0] for cell in self._shards.all())

    def decrements(self) -> int:
        """Decrement calls since creation."""
        return int(sum(cell[2] for cell in self._shards.all()))


class _GaugeSeries:
    """Last value (exported) and the local statistics since the last reset, under one lock."""

    __slots__ = ("attributes", "count", "current", "last", "lock", "max", "min", "sum")

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self.attributes = attributes
        self.lock = threading.Lock()
        self.last: float | None = None
        self.current = 0.0
        self.min = 0.0
        self.max = 0.0
        self.sum = 0.0
        self.count = 0

    def set(self, value: float) -> None:
        with self.lock:
            self.last = self.current = value
            if self.count:
                if value < self.min:
                    self.min = value
                elif value > self.max:
                    self.max = value
            else:
                self.min = self.max = value
            self.sum += value
            self.count += 1

    def add(self, amount: float) -> bool:
        """Add ``amount`` to the last value (0 when never set) in one step; False (nothing stored) when the
        result is not finite."""
        with self.lock:
            value = (0.0 if self.last is None else self.last) + amount
            if not -math.inf < value < math.inf:
                return False
            self.last = self.current = value
            if self.count:
                if value < self.min:
                    self.min = value
                elif value > self.max:
                    self.max = value
            else:
                self.min = self.max = value
            self.sum += value
            self.count += 1
            return True

    def stats(self) -> GaugeStats | None:
        with self.lock:
            if not self.count:
                return None
            return GaugeStats(self.current, self.min, self.max, self.sum / self.count, self.count)

    def reset(self) -> None:
        with self.lock:
            self.count = 0
            self.sum = 0.0


class _TimingSeries:
    """A lock-free histogram (writes) plus the sliding window of the local view (reads, under ``lock``)."""

    __slots__ = (
        "_commit_interval",
        "_committed_at",
        "_duration",
        "_previous",
        "_window",
        "attributes",
        "hist",
        "lock",
        "started",
    )

    def __init__(self, layout: HistogramLayout, attributes: Mapping[str, str], window: float) -> None:
        self.attributes = attributes
        self.started = time.time()
        self.hist = HistogramSeries(layout, tuple(attributes.items()))
        self.lock = threading.Lock()
        self._duration = window
        self._commit_interval = min(1.0, window / 10.0)
        self._window = SlidingWindow(layout, window)
        self._previous: HistogramSnapshot | None = None
        self._committed_at: float | None = None

    def _advance(self, now: float, cumulative: HistogramSnapshot) -> HistogramSnapshot:
        """Feed the window when due; return the window plus what is not fed yet. Call under ``lock``."""
        pending = difference(cumulative, self._previous)
        if self._committed_at is None or now - self._committed_at >= self._commit_interval:
            self._window.add(now, pending)
            self._previous = cumulative
            self._committed_at = now
            return self._window.snapshot()
        return merge(self._window.snapshot(), pending)

    def view(self, now: float) -> HistogramSnapshot:
        """What the window holds now, including values not fed yet."""
        with self.lock:
            return self._advance(now, self.hist.snapshot())

    def cumulative(self, now: float) -> tuple[HistogramSnapshot, HistogramSnapshot]:
        """The cumulative state since creation and the window's (feeding the window on the way)."""
        with self.lock:
            cumulative = self.hist.snapshot()
            return cumulative, self._advance(now, cumulative)

    def reset(self) -> None:
        with self.lock:
            self._previous = self.hist.snapshot()
            self._window = SlidingWindow(self.hist.layout, self._duration)
            self._committed_at = None


_S = TypeVar("_S", _CounterSeries, _GaugeSeries, _TimingSeries)


def _tag_key(tags: Mapping[str, str] | None) -> TagKey:
    """Tags in canonical form (raises on a non-mapping or unorderable keys; the caller catches)."""
    if not tags:
        return _NO_TAGS
    if len(tags) == 1:
        return tuple(tags.items())
    return tuple(sorted(tags.items()))


def _normal_key(key: TagKey) -> TagKey | None:
    """``key`` with every value a label (:func:`label_value`); None when a key is not a string or a value cannot
    be a label."""
    normal = []
    for k, v in key:
        if k.__class__ is not str:
            return None
        if v.__class__ is not str or len(v) > LABEL_LIMIT:
            label = label_value(v)
            if label is None:
                return None
            v = label
        normal.append((k, v))
    return tuple(normal)


def _series_label(name: str, key: TagKey) -> str:
    """``name`` or ``name[k=v,k2=v2]``: the key of a series in :meth:`MetricsFacade.get_all_metrics`."""
    if not key:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in key) + "]"


def _as_number(value: object) -> float | None:
    """``value`` as a finite number, or None (bools are not numbers here; an int beyond 2**63 - 1 either way is
    not one either: no exporter encodes it)."""
    cls = value.__class__
    if cls is int:
        number = cast(int, value)
        return number if -9223372036854775807 <= number <= 9223372036854775807 else None
    if cls is float:
        return cast(float, value) if math.isfinite(cast(float, value)) else None
    if isinstance(value, Real) and not isinstance(value, bool):
        try:
            converted = float(value)
        except (OverflowError, ValueError):
            return None
        return converted if math.isfinite(converted) else None
    return None


class MetricsFacade:
    """The statsd-style metrics API: timings, distributions, counters and gauges with tags, exported through
    OpenTelemetry.

    Args:
        meter: where the observable instruments are created (lazily, once per name); None keeps everything
            local (the ``get_*`` methods still work; nothing is exported).
        tag_limit: distinct tag sets admitted per name; later ones go to the overflow series.
        window: seconds covered by :meth:`get_timing` and :meth:`get_distribution` statistics.
        clock: monotonic seconds, for the window and the uptime.
        boundaries: explicit bucket boundaries of exported timings, in seconds.
        distribution_boundaries: explicit bucket boundaries of exported distributions, in their unit.
        series: the handle's :class:`~otel_telemetry.series.SeriesRegistry` (namespace and series budget shared
            with the monitors and handlers); None gives the facade a registry of its own (default budget).

    Raises:
        ValueError: on a ``tag_limit`` below 1, a non-positive or non-finite ``window``, or bad boundaries.

    Thread-safety: every method may be called from any thread.
    """

    def __init__(
        self,
        meter: Meter | None,
        *,
        tag_limit: int = 100,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        boundaries: Sequence[float] = TIMING_BOUNDARIES,
        distribution_boundaries: Sequence[float] = DISTRIBUTION_BOUNDARIES,
        series: SeriesRegistry | None = None,
    ) -> None:
        if isinstance(tag_limit, bool) or not isinstance(tag_limit, int) or tag_limit < 1:
            raise ValueError(f"MetricsFacade.tag_limit: must be an integer of at least 1, got {tag_limit!r}")
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window < math.inf:
            raise ValueError(f"MetricsFacade.window: must be a positive, finite number of seconds, got {window!r}")
        self._meter = meter
        self._tag_limit = tag_limit
        self._window = float(window)
        self._clock = clock
        self._layout = HistogramLayout(boundaries)
        self._distribution_layout = HistogramLayout(distribution_boundaries)
        #: The namespace and series budget this facade's series are counted in.
        self.series = series if series is not None else SeriesRegistry()
        self._costs = {
            _COUNTER: 1,
            _GAUGE: 1,
            _TIMING: histogram_cost(len(self._layout.boundaries)),
            _DISTRIBUTION: histogram_cost(len(self._distribution_layout.boundaries)),
        }
        self._enabled = True
        # What this facade's timers read at each start: the facade while enabled, else None.
        self._timer_gate: TimerGate[MetricsFacade] = TimerGate(self)
        self._started = clock()
        #: When the exported cumulative series start (Unix epoch, nanoseconds).
        self.start_time_unix_nano = time.time_ns()
        # Structure lock: series creation, instrument creation, overflow and rejection counts. Never taken by
        # a lookup of an existing series, nor by an OpenTelemetry callback.
        self._lock = threading.Lock()
        self._counters: dict[str, dict[TagKey, _CounterSeries]] = {}
        self._gauges: dict[str, dict[TagKey, _GaugeSeries]] = {}
        self._timings: dict[str, dict[TagKey, _TimingSeries]] = {}
        self._distributions: dict[str, dict[TagKey, _TimingSeries]] = {}
        self._units: dict[str, str] = {}  # distribution name -> its unit (set by the call that created it)
        # Set by declare(): (kind, name) -> description, and -> (layout, series cost) for timings and distributions.
        self._descriptions: dict[tuple[str, str], str] = {}
        self._declared_layouts: dict[tuple[str, str], tuple[HistogramLayout, int]] = {}
        self._exported: dict[tuple[str, str], str] = {}  # (kind, name) -> exported name ("" when not exported)
        self._specs: dict[str, MetricSpec] = {}
        self._overflowed = 0
        self._rejected: dict[str, int] = {}
        self._warned: set[str] = set()
        self._callback_errors = 0

    # -- switch -----------------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether recording methods record. When False each returns at its first statement."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        self._timer_gate.target = self if self._enabled else None

    # -- counts about the facade itself -----------------------------------------------------------------------
    @property
    def overflowed(self) -> int:
        """Values recorded into an overflow series because their name had reached ``tag_limit`` tag sets."""
        return self._overflowed

    @property
    def rejected(self) -> Mapping[str, int]:
        """Dropped calls per method name (bad name, tags or value)."""
        with self._lock:
            return dict(self._rejected)

    @property
    def unexported_decrements(self) -> int:
        """Decrement calls (and negative increments) applied to :meth:`get_counter` but left out of the exported
        monotonic counters. Exact."""
        return sum(s.decrements() for by_tags in list(self._counters.values()) for s in list(by_tags.values()))

    @property
    def callback_errors(self) -> int:
        """OpenTelemetry callbacks of this facade that failed (each name logged once)."""
        return self._callback_errors

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        """Log ``message`` the first time ``key`` is seen. Call with ``_lock`` held."""
        if key not in self._warned:
            self._warned.add(key)
            _logger.warning(message + " (logged once)", *args)

    def _reject(self, call: str, value: object) -> None:
        with self._lock:
            self._rejected[call] = self._rejected.get(call, 0) + 1
            self._warn_once(
                "reject:" + call,
                "MetricsFacade.%s: dropped invalid input %s; further drops are counted in rejected",
                call,
                describe(value),
            )

    # -- recording ------------------------------------------------------------------------------------------
    def timing(self, name: str, seconds: float, tags: Mapping[str, str] | None = None) -> None:
        """Record one duration, in seconds (finite, 0 to 1e300). Never raises; bad input is counted in
        ``rejected``. For anything that is not a duration, use :meth:`distribution`."""
        if not self._enabled:
            return
        try:
            if seconds.__class__ is float:
                if not 0.0 <= seconds <= 1e300:
                    self._reject("timing", seconds)
                    return
            else:
                number = _as_number(seconds)
                if number is None or not 0 <= number <= 1e300:
                    self._reject("timing", seconds)
                    return
                seconds = number
            by_tags = self._timings.get(name)
            key = _tag_key(tags) if tags else _NO_TAGS
            series = by_tags.get(key) if by_tags is not None else None
            if series is None:
                series = self._series(_TIMING, "timing", name, key, self._new_timing)
                if series is None:
                    return
            series.hist.record(seconds)
        except Exception:
            self._reject("timing", name)

    def distribution(self, name: str, value: float, tags: Mapping[str, str] | None = None, *, unit: str = "1") -> None:
        """Record one value of a distribution that is not a duration: a size, a count, a score (finite, 0 to
        1e300), in ``unit`` (UCUM: ``"By"`` for bytes, ``"1"`` for a plain number, ``"{message}"``...).

        Exported as a histogram named for its unit (``websocket.message.size`` with ``unit="By"`` is
        ``websocket_message_size_bytes``), buckets :data:`DISTRIBUTION_BOUNDARIES`. A name keeps the unit of its
        first call; a call with another unit is refused. Never raises; bad input is counted in ``rejected``.
        """
        if not self._enabled:
            return
        try:
            if value.__class__ is float:
                if not 0.0 <= value <= 1e300:
                    self._reject("distribution", value)
                    return
            else:
                number = _as_number(value)
                if number is None or not 0 <= number <= 1e300:
                    self._reject("distribution", value)
                    return
                value = number
            by_tags = self._distributions.get(name)
            key = _tag_key(tags) if tags else _NO_TAGS
            series = by_tags.get(key) if by_tags is not None else None
            if series is None or self._units[name] != unit:
                series = self._series(_DISTRIBUTION, "distribution", name, key, self._new_distribution, unit)
                if series is None:
                    return
            series.hist.record(value)
        except Exception:
            self._reject("distribution", name)

    def increment(self, name: str, amount: float = 1, tags: Mapping[str, str] | None = None) -> None:
        """Add ``amount`` (a finite number, default 1; an int at most 2**63 - 1) to a counter. A negative amount
        is a :meth:`decrement`. Never raises."""
        if not self._enabled:
            return
        try:
            if amount.__class__ is int:
                if amount >> 63:  # 0 exactly for 0 <= amount < 2**63 (a negative int shifts to -1)
                    self._count("increment", name, amount, tags)
                    return
            else:
                number = _as_number(amount)
                if number is None or number < 0:
                    self._count("increment", name, amount, tags)
                    return
                amount = number
            by_tags = self._counters.get(name)
            key = _tag_key(tags) if tags else _NO_TAGS
            series = by_tags.get(key) if by_tags is not None else None
            if series is None:
                series = self._series(_COUNTER, "increment", name, key, _CounterSeries)
                if series is None:
                    return
            series.add(amount)
        except Exception:
            self._reject("increment", name)

    def decrement(self, name: str, amount: float = 1, tags: Mapping[str, str] | None = None) -> None:
        """Subtract ``amount`` (a finite number, default 1) from a counter's in-process value
        (:meth:`get_counter`); exported counters are monotonic, so the export leaves it out (counted in
        :attr:`unexported_decrements`, logged once per name). A negative amount is an :meth:`increment`.
        Never raises."""
        if not self._enabled:
            return
        try:
            number = _as_number(amount)
            if number is None:
                self._reject("decrement", amount)
                return
            self._count("decrement", name, -number, tags)
        except Exception:
            self._reject("decrement", name)

    def _count(self, call: str, name: str, delta: object, tags: Mapping[str, str] | None) -> None:
        """Add ``delta`` to a counter: an increment when >= 0, else a decrement of the local view only."""
        number = _as_number(delta)
        if number is None:
            self._reject(call, delta)
            return
        key = _tag_key(tags) if tags else _NO_TAGS
        by_tags = self._counters.get(name)
        series = by_tags.get(key) if by_tags is not None else None
        if series is None:
            series = self._series(_COUNTER, call, name, key, _CounterSeries)
            if series is None:
                return
        if number >= 0:
            series.add(number)
            return
        series.subtract(-number)
        if ("decrement:" + name) not in self._warned:
            with self._lock:
                self._warn_once(
                    "decrement:" + name,
                    "MetricsFacade: counter %r is exported as a monotonic counter (%s); decrements change "
                    "get_counter() only and are counted in unexported_decrements (use gauge() for a value that "
                    "goes down)",
                    name,
                    self._exported.get((_COUNTER, name)) or "not exported",
                )

    def gauge(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        """Set a gauge to ``value`` (a finite number). Never raises."""
        if not self._enabled:
            return
        try:
            number = _as_number(value)
            if number is None:
                self._reject("gauge", value)
                return
            by_tags = self._gauges.get(name)
            key = _tag_key(tags) if tags else _NO_TAGS
            series = by_tags.get(key) if by_tags is not None else None
            if series is None:
                series = self._series(_GAUGE, "gauge", name, key, _GaugeSeries)
                if series is None:
                    return
            series.set(float(number))
        except Exception:
            self._reject("gauge", name)

    def gauge_add(self, name: str, amount: float, tags: Mapping[str, str] | None = None) -> None:
        """Add ``amount`` (a finite number; negative to subtract) to a gauge's last value, 0 when it was never
        set, as one read-modify-write under the gauge's lock: concurrent calls never lose an update. A result
        that is not finite is refused. Never raises; bad input is counted in ``rejected``."""
        if not self._enabled:
            return
        try:
            number = _as_number(amount)
            if number is None:
                self._reject("gauge_add", amount)
                return
            by_tags = self._gauges.get(name)
            key = _tag_key(tags) if tags else _NO_TAGS
            series = by_tags.get(key) if by_tags is not None else None
            if series is None:
                series = self._series(_GAUGE, "gauge_add", name, key, _GaugeSeries)
                if series is None:
                    return
            if not series.add(float(number)):
                self._reject("gauge_add", amount)
        except Exception:
            self._reject("gauge_add", name)

    def timer(
        self, name: str, tags: Mapping[str, str] | None = None
    ) -> BlockTimer[MetricsFacade, tuple[str, Mapping[str, str] | None]]:
        """A context manager (``with``/``async with``) and decorator (sync or async) recording a timing.

        Whether the facade is enabled is checked when each timed block or call starts; a block started while
        disabled measures nothing (``elapsed`` stays None). Each decorated call keeps its state in locals.
        """
        return BlockTimer(self._timer_gate, _record_timing, (name, tags))

    # -- declared names (setup) ------------------------------------------------------------------------------
    def declare(
        self,
        kind: str,
        name: str,
        *,
        description: str,
        boundaries: Sequence[float] | None = None,
        unit: str = "",
    ) -> str | None:
        """Declare ``name`` of ``kind`` (``"counter"``, ``"gauge"``, ``"timing"`` or ``"distribution"``) before
        its first value: its ``# HELP`` text and, for timings and distributions, its own bucket boundaries
        (exported unit; default :data:`TIMING_BOUNDARIES` or :data:`DISTRIBUTION_BOUNDARIES`) and, for a
        distribution, its unit (default ``""``, no suffix; its calls must pass the same ``unit``). The name is
        claimed in the series registry now.

        Returns the exported instrument name, or None when the registry refused it (it would collide on
        ``/metrics``; logged and counted there, values stay in process). Declaring again with the same settings
        returns the same answer. A setup call: it raises.

        Raises:
            ValueError: on an unknown kind, a name that is not a valid instrument name, a description that is
                not a string, bad boundaries or unit, or a name already recorded or declared otherwise (any kind).

        Thread-safety: may be called from any thread (a value of ``name`` recorded first makes it raise).
        """
        if kind not in _KINDS:
            raise ValueError(f"MetricsFacade.declare.kind: must be one of {_KINDS}, got {kind!r}")
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise ValueError(f"MetricsFacade.declare.name: must match {_NAME.pattern}, got {describe(name)}")
        if not isinstance(description, str):
            raise ValueError(f"MetricsFacade.declare.description: must be a string, got {describe(description)}")
        histogram = kind in (_TIMING, _DISTRIBUTION)
        if boundaries is not None and not histogram:
            raise ValueError(f"MetricsFacade.declare.boundaries: only for timings and distributions, not a {kind}")
        if kind == _DISTRIBUTION and (not isinstance(unit, str) or _UNIT.fullmatch(unit) is None):
            raise ValueError(f"MetricsFacade.declare.unit: must be printable ASCII (<= 63), got {describe(unit)}")
        layout: HistogramLayout | None = None
        if boundaries is not None:
            try:
                layout = HistogramLayout(tuple(boundaries))
            except (TypeError, ValueError) as error:
                raise ValueError(f"MetricsFacade.declare.boundaries: {error} ({describe(boundaries)})") from None
        unit_of = unit if kind == _DISTRIBUTION else TIMING_UNIT if kind == _TIMING else ""
        key = (kind, name)
        with self._lock:
            known = self._descriptions.get(key)
            if known is not None:
                known_layout = self._declared_layouts.get(key)
                same_bounds = (known_layout[0].boundaries if known_layout else None) == (
                    layout.boundaries if layout else None
                )
                if known == description and same_bounds and self._units.get(name, unit_of) == unit_of:
                    return self._exported.get(key) or None
                raise ValueError(f"MetricsFacade.declare: {kind} {name!r} is already declared with other settings")
            used = [other for other in _KINDS if (other, name) in self._exported]
            if used:
                raise ValueError(
                    f"MetricsFacade.declare.name: {name!r} is already recorded as a {used[0]} (declare a name "
                    "before its first value, and one kind per name)"
                )
            self._descriptions[key] = description
            if layout is not None:
                self._declared_layouts[key] = (layout, histogram_cost(len(layout.boundaries)))
            if kind == _DISTRIBUTION:
                self._units[name] = unit
            self._export(kind, name, unit_of)
            return self._exported.get(key) or None

    # -- series creation (slow path) -------------------------------------------------------------------------
    def _new_timing(self, attributes: Mapping[str, str]) -> _TimingSeries:
        return _TimingSeries(self._layout, attributes, self._window)

    def _new_distribution(self, attributes: Mapping[str, str]) -> _TimingSeries:
        return _TimingSeries(self._distribution_layout, attributes, self._window)

    def _maps(self, kind: str) -> dict[str, dict[TagKey, Any]]:
        if kind == _COUNTER:
            return self._counters
        if kind == _GAUGE:
            return self._gauges
        if kind == _TIMING:
            return self._timings
        return self._distributions

    def _series(
        self,
        kind: str,
        call: str,
        name: str,
        key: TagKey,
        factory: Callable[[Mapping[str, str]], _S],
        unit: str = "",
    ) -> _S | None:
        """The series of ``name``/``key``, created (or the overflow series) when new; None when rejected or
        refused by the series budget."""
        if not isinstance(name, str):
            self._reject(call, name)
            return None
        normal = _normal_key(key)
        if normal is None:
            self._reject(call, key)
            return None
        if kind == _DISTRIBUTION:
            known_unit = self._units.get(name)
            if known_unit is not None and known_unit != unit:
                self._reject(call, unit)
                return None
        # A tag set given in another form (a value 1 for "1", a long value) is found without the lock.
        by_tags = self._maps(kind).get(name)
        found = by_tags.get(normal) if by_tags is not None else None
        if found is not None:
            return cast(_S, found)
        if _NAME.fullmatch(name) is None:
            self._reject(call, name)
            return None
        if kind == _DISTRIBUTION and (unit.__class__ is not str or _UNIT.fullmatch(unit) is None):
            self._reject(call, unit)
            return None
        with self._lock:
            maps = self._maps(kind)
            by_tags = maps.get(name)
            overflow = False
            if by_tags is not None:
                found = by_tags.get(normal)
                if found is not None:
                    return cast(_S, found)
                admitted = len(by_tags) - (_OVERFLOW_KEY in by_tags)
                if admitted >= self._tag_limit and normal != _OVERFLOW_KEY:
                    self._overflowed += 1
                    self._warn_once(
                        "overflow:" + kind + ":" + name,
                        "MetricsFacade: %s %r reached tag_limit=%d tag sets; further tag sets go to %s",
                        kind,
                        name,
                        self._tag_limit,
                        dict(OVERFLOW_ATTRIBUTES),
                    )
                    normal = _OVERFLOW_KEY
                    found = by_tags.get(normal)
                    if found is not None:
                        return cast(_S, found)
                    overflow = True
            declared = self._declared_layouts.get((kind, name))
            cost = self._costs[kind] if declared is None else declared[1]
            if overflow:
                self.series.reserve(cost, _OWNER)  # the one overflow series of this name: always admitted
            elif not self.series.admit(cost, _OWNER):
                return None
            if by_tags is None:
                if (kind, name) not in self._exported:  # else declared: unit and export already done
                    if kind == _DISTRIBUTION:
                        self._units[name] = unit
                    self._export(kind, name, unit)
                by_tags = {}
            if declared is None:
                series = factory(dict(normal))
            else:  # a declared timing or distribution with boundaries of its own
                series = cast(Any, _TimingSeries(declared[0], dict(normal), self._window))
            # The tag-set map is replaced, never mutated; the name's entry is one store: lookups need no lock.
            new_by_tags = dict(by_tags)
            new_by_tags[normal] = series
            maps[name] = new_by_tags
            return series

    def _export(self, kind: str, name: str, unit: str) -> None:
        """Pick the exported name of a new ``kind``/``name``, claim it and create its instrument. Call under
        ``_lock``."""
        exported = name
        if any(self._exported.get((other, name)) for other in _KINDS if other != kind):
            exported = f"{name}.{_RENAMED[kind]}"
            if _NAME.fullmatch(exported) is None:
                exported = ""
            self._warn_once(
                "conflict:" + kind + ":" + name,
                "MetricsFacade: %r is already exported as another kind; the %s is exported as %r",
                name,
                kind,
                exported or "(nothing)",
            )
        if exported:
            unit_of = TIMING_UNIT if kind == _TIMING else unit
            if self.series.claim(exported, unit_of, _PROMETHEUS_KIND[kind], _OWNER) is None:
                exported = ""  # refused by the namespace (logged and counted there): kept in process only
        self._exported[(kind, name)] = exported
        if not exported or self._meter is None or kind in (_TIMING, _DISTRIBUTION):
            return  # timings and distributions reach OpenTelemetry through histograms()
        try:
            if kind == _COUNTER:
                self._meter.create_observable_counter(
                    exported,
                    callbacks=[self._counter_callback(name)],
                    unit="",
                    description=self._descriptions.get((kind, name), f"Facade counter {name}"),
                )
            else:
                self._meter.create_observable_gauge(
                    exported,
                    callbacks=[self._gauge_callback(name)],
                    unit="",
                    description=self._descriptions.get((kind, name), f"Facade gauge {name}"),
                )
        except Exception:
            _logger.exception("MetricsFacade: could not create the instrument %r; it is kept local only", exported)

    # -- OpenTelemetry callbacks ----------------------------------------------------------------------------
    def _callback_failed(self, name: str) -> None:
        with self._lock:
            self._callback_errors += 1
            first = ("callback:" + name) not in self._warned
            self._warned.add("callback:" + name)
        if first:
            _logger.exception("MetricsFacade: callback for %r failed (logged once; counted)", name)

    def _counter_callback(self, name: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def observe(_options: CallbackOptions) -> Iterator[Observation]:
            try:
                series = list(self._counters.get(name, {}).values())
                points = [Observation(encodable(s.increments()), s.attributes) for s in series]
            except Exception:
                self._callback_failed(name)
                return iter(())
            return iter(points)

        return observe

    def _gauge_callback(self, name: str) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def observe(_options: CallbackOptions) -> Iterator[Observation]:
            try:
                points = []
                for series in list(self._gauges.get(name, {}).values()):
                    last = series.last
                    if last is not None:
                        points.append(Observation(last, series.attributes))
            except Exception:
                self._callback_failed(name)
                return iter(())
            return iter(points)

        return observe

    def histogram_states(self) -> list[TimingState]:
        """Every timing series with its exported name, attributes and cumulative state since start.

        For the SDK's producer, once per collection: it turns each state into an explicit-bucket histogram data
        point (``cumulative.bucket_counts()``, ``cumulative.sum``, ``cumulative.count``, boundaries from
        ``cumulative.layout.boundaries``, unit :data:`TIMING_UNIT`, start :attr:`start_time_unix_nano`).
        Unaffected by :meth:`reset`. Also advances the timing windows. Thread-safe.
        """
        now = self._clock()
        states: list[TimingState] = []
        for name, by_tags in list(self._timings.items()):
            exported = self._exported.get((_TIMING, name), "")
            if not exported:
                continue
            for series in list(by_tags.values()):
                states.append(TimingState(exported, dict(series.attributes), series.cumulative(now)[0]))
        return states

    def histograms(self) -> list[HistogramState]:
        """Every timing and distribution series in the shape of the monitors' ``histograms()``, for
        ``HistogramProducer``.

        ``producer.add_source(facade.histograms)`` exports every timing (unit ``s``) and distribution (its unit)
        as an explicit-bucket histogram. Each exported name gets a :class:`~otel_telemetry.catalog.MetricSpec`
        of its own (id ``facade.<name>``, section ``game``, group ``Facade timings`` or ``Facade
        distributions``); those specs are not in the catalog. Also advances the windows. Thread-safe.
        """
        now = self._clock()
        states: list[HistogramState] = []
        for kind, maps in ((_TIMING, self._timings), (_DISTRIBUTION, self._distributions)):
            for name, by_tags in list(maps.items()):
                exported = self._exported.get((kind, name), "")
                if not exported:
                    continue
                spec = self._histogram_spec(kind, name, exported, TIMING_UNIT if kind == _TIMING else self._units[name])
                for series in list(by_tags.values()):
                    cumulative, window = series.cumulative(now)
                    key = SeriesKey(exported, tuple(sorted(series.attributes.items())))
                    states.append(HistogramState(spec, key, cumulative, window, series.started))
        return states

    def _histogram_spec(self, kind: str, name: str, exported: str, unit: str) -> MetricSpec:
        spec = self._specs.get(exported)
        if spec is None:
            timing = kind == _TIMING
            declared = self._declared_layouts.get((kind, name))
            layout = declared[0] if declared else self._layout if timing else self._distribution_layout
            spec = MetricSpec(
                id=f"facade.{exported}",
                name=exported,
                instrument=Instrument.HISTOGRAM,
                unit=unit,
                description=self._descriptions.get((kind, name), f"Facade {kind} {exported}"),
                section=Section.GAME,
                group="Facade timings" if timing else "Facade distributions",
                documented="",
                prometheus_name=prometheus_family(exported, unit, "histogram"),
                boundaries=layout.boundaries,
            )
            self._specs = {**self._specs, exported: spec}
        return spec

    # -- reading ----------------------------------------------------------------------------------------------
    @staticmethod
    def _lookup(maps: Mapping[str, Mapping[TagKey, _S]], name: str, tags: Mapping[str, str] | None) -> _S | None:
        try:
            by_tags = maps.get(name)
            if by_tags is None:
                return None
            key = _tag_key(tags)
            found = by_tags.get(key)
            if found is None:
                normal = _normal_key(key)  # tag values given in another form (1 for "1")
                found = by_tags.get(normal) if normal is not None else None
            return found
        except Exception:
            return None

    @staticmethod
    def _timing_stats(snapshot: HistogramSnapshot) -> TimingStats | None:
        if not snapshot.count:
            return None
        quantile = snapshot.quantile
        return TimingStats(
            count=snapshot.count,
            mean=snapshot.sum / snapshot.count,
            min=cast(float, quantile(0.0)),
            max=cast(float, quantile(1.0)),
            p50=cast(float, quantile(0.50)),
            p95=cast(float, quantile(0.95)),
            p99=cast(float, quantile(0.99)),
        )

    def get_timing(self, name: str, tags: Mapping[str, str] | None = None) -> TimingStats | None:
        """Statistics of one timing series over the last ``window`` seconds; None when it has no values there."""
        series = self._lookup(self._timings, name, tags)
        if series is None:
            return None
        return self._timing_stats(series.view(self._clock()))

    def get_distribution(self, name: str, tags: Mapping[str, str] | None = None) -> TimingStats | None:
        """Statistics of one distribution series over the last ``window`` seconds, in its unit; None when it has
        no values there."""
        series = self._lookup(self._distributions, name, tags)
        if series is None:
            return None
        return self._timing_stats(series.view(self._clock()))

    def get_counter(self, name: str, tags: Mapping[str, str] | None = None) -> CounterValue:
        """A counter's value since the last reset (increments minus decrements); 0.0 for an unknown series.

        A :class:`CounterValue`: a float that also answers ``["value"]``.
        """
        series = self._lookup(self._counters, name, tags)
        if series is None:
            return CounterValue(0.0)
        return CounterValue(series.total() - series.baseline)

    def get_gauge(self, name: str, tags: Mapping[str, str] | None = None) -> GaugeStats | None:
        """A gauge's statistics since the last reset; None when it was not set since."""
        series = self._lookup(self._gauges, name, tags)
        return None if series is None else series.stats()

    def get_all_metrics(self) -> dict[str, Any]:
        """Every series' local view, JSON-ready.

        Keys: ``timestamp`` (ISO-8601 UTC), ``uptime_seconds``, ``window_seconds``, ``counters``
        (``{"name[k=v]": {"value": ...}}``), ``gauges`` (current/min/max/mean/count), ``timings``
        (count/mean/min/max/p50/p95/p99 in seconds, over the window), ``distributions`` (the same, in each
        distribution's unit), ``overflowed`` and ``rejected``. Series with no value in the view (a reset gauge, a
        timing with nothing in the window) are left out.
        """
        now = self._clock()
        counters: dict[str, dict[str, float]] = {}
        for name, counter_series in list(self._counters.items()):
            for key, counter in list(counter_series.items()):
                counters[_series_label(name, key)] = {"value": float(counter.total() - counter.baseline)}
        gauges: dict[str, dict[str, float]] = {}
        for name, gauge_series in list(self._gauges.items()):
            for key, gauge in list(gauge_series.items()):
                gauge_stats = gauge.stats()
                if gauge_stats is not None:
                    gauges[_series_label(name, key)] = gauge_stats.as_dict()
        timings: dict[str, dict[str, float]] = {}
        distributions: dict[str, dict[str, float]] = {}
        for maps, found in ((self._timings, timings), (self._distributions, distributions)):
            for name, timing_series in list(maps.items()):
                for key, timing in list(timing_series.items()):
                    timing_stats = self._timing_stats(timing.view(now))
                    if timing_stats is not None:
                        found[_series_label(name, key)] = timing_stats.as_dict()
        return {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "uptime_seconds": now - self._started,
            "window_seconds": self._window,
            "counters": counters,
            "gauges": gauges,
            "timings": timings,
            "distributions": distributions,
            "overflowed": self._overflowed,
            "rejected": dict(self.rejected),
        }

    def summary(self) -> str:
        """A human-readable table of :meth:`get_all_metrics` (timings in milliseconds)."""
        metrics = self.get_all_metrics()
        lines = [f"metrics after {metrics['uptime_seconds']:.1f} s (timings over the last {self._window:g} s)"]
        timings: dict[str, dict[str, float]] = metrics["timings"]
        if timings:
            width = max(len(k) for k in timings)
            lines.append(
                f"{'timing':<{width}}  {'count':>8}  {'mean ms':>10}  {'p50 ms':>10}  {'p95 ms':>10}"
                f"  {'p99 ms':>10}  {'max ms':>10}"
            )
            for key in sorted(timings):
                t = timings[key]
                lines.append(
                    f"{key:<{width}}  {int(t['count']):>8}  {t['mean'] * 1e3:>10.3f}  {t['p50'] * 1e3:>10.3f}"
                    f"  {t['p95'] * 1e3:>10.3f}  {t['p99'] * 1e3:>10.3f}  {t['max'] * 1e3:>10.3f}"
                )
        distributions: dict[str, dict[str, float]] = metrics["distributions"]
        if distributions:
            width = max(len(k) for k in distributions)
            lines.append(
                f"{'distribution':<{width}}  {'count':>8}  {'mean':>10}  {'p50':>10}  {'p95':>10}  {'p99':>10}"
                f"  {'max':>10}"
            )
            for key in sorted(distributions):
                d = distributions[key]
                lines.append(
                    f"{key:<{width}}  {int(d['count']):>8}  {d['mean']:>10g}  {d['p50']:>10g}  {d['p95']:>10g}"
                    f"  {d['p99']:>10g}  {d['max']:>10g}"
                )
        counters: dict[str, dict[str, float]] = metrics["counters"]
        if counters:
            width = max(len(k) for k in counters)
            lines.append(f"{'counter':<{width}}  {'value':>14}")
            lines.extend(f"{key:<{width}}  {counters[key]['value']:>14g}" for key in sorted(counters))
        gauges: dict[str, dict[str, float]] = metrics["gauges"]
        if gauges:
            width = max(len(k) for k in gauges)
            lines.append(f"{'gauge':<{width}}  {'current':>12}  {'min':>12}  {'max':>12}  {'mean':>12}")
            for key in sorted(gauges):
                g = gauges[key]
                lines.append(f"{key:<{width}}  {g['current']:>12g}  {g['min']:>12g}  {g['max']:>12g}  {g['mean']:>12g}")
        if not (timings or distributions or counters or gauges):
            lines.append("(no metrics recorded)")
        if metrics["overflowed"] or metrics["rejected"]:
            lines.append(f"overflowed: {metrics['overflowed']}, rejected: {metrics['rejected']}")
        return "\n".join(lines)

    # -- reset --------------------------------------------------------------------------------------------------
    def reset_counters(self) -> None:
        """Zero every counter's local view (exported totals are unaffected).

        Increments racing with the reset may land on either side of it.
        """
        for by_tags in list(self._counters.values()):
            for series in list(by_tags.values()):
                series.baseline = series.total()

    def reset(self) -> None:
        """Clear the local view of every counter, gauge, timing and distribution (exported series are
        unaffected)."""
        self.reset_counters()
        for gauges in list(self._gauges.values()):
            for gauge in list(gauges.values()):
                gauge.reset()
        for maps in (self._timings, self._distributions):
            for timings in list(maps.values()):
                for timing in list(timings.values()):
                    timing.reset()


def _record_timing(facade: MetricsFacade, key: tuple[str, Mapping[str, str] | None], seconds: float) -> None:
    """What :meth:`MetricsFacade.timer` records at the end of each block or call (``key``: name and tags)."""
    facade.timing(key[0], seconds, key[1])
