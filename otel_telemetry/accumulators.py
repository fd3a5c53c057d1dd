"""The accumulator layer: what the hot path writes instead of calling OpenTelemetry per event.

Measured on this kind of machine, an OpenTelemetry SDK ``Counter.add`` costs 3-5 µs and ``Histogram.record`` 4-6 µs;
game code at 27k packets/s cannot pay that. Monitors write plain per-thread accumulators here (about 0.1 µs for a
counter, 0.4 µs for a histogram) and OpenTelemetry reads them at collection time: observable instruments for sums
and gauges, and histogram data points merged into each reader's collection (:mod:`otel_telemetry.producer`).

Histograms
----------

A histogram series is a logarithmic sketch (the DDSketch idea) plus exact statistics:

* **Cells.** A positive value ``v`` goes to cell ``k = ceil(log(v) / log(GAMMA))`` with
  ``GAMMA = (1 + α) / (1 - α)`` and ``α = RELATIVE_ACCURACY`` (0.5%); cell ``k`` holds ``(GAMMA**(k-1), GAMMA**k]``
  and reports ``2 * GAMMA**k / (GAMMA + 1)``, which is within ``α`` of every value in it. The index has no range:
  any positive float has a cell, so every quantile of any positive value (1 ns or 10⁶ s, in any recorded unit) is
  within 0.5%. Only occupied cells take memory: a thread keeps a dict of its occupied cells, snapshots a dense
  tuple over the occupied range (pings of 5-500 ms occupy about 460 cells).
* **Zero and negative values** are explicit: zero has a count of its own; a negative value goes to a mirrored
  cell of its magnitude. No catalog metric is negative (the monitors and the facade reject negative durations and
  sizes before recording), but a negative value that reaches :meth:`HistogramSeries.record` is counted in
  ``count``, ``sum``, min, max, the quantiles and the first explicit bucket(s). NaN and infinities have no place in
  a distribution: they are counted in :attr:`HistogramSnapshot.invalid` and left out of everything else.
* **Exact statistics.** Count, sum, min and max are exact, per series and per interval (so per window and per
  delta point): each thread keeps the min and max of what it recorded since the last collection, and the
  collection folds them into the series' running min and max and into a log of per-collection extremes
  (:class:`_ExtremesLog`) from which :func:`difference` takes an interval's exact min and max.
* **Explicit buckets stay exact.** A value in a cell holding one of the layout's boundaries (about one cell in
  ten for pings) is also counted in the explicit bucket :func:`bisect.bisect_left` finds for it, so a value exactly
  on a boundary lands in that boundary's bucket (Prometheus' ``le`` is inclusive); every other cell lies inside one
  explicit bucket. Boundaries are compared in the recorded unit, converted by decimal division (``0.175`` s is
  ``175.0`` ms, not ``174.99999999999997``).

Each thread writes only its own cell (:class:`HistogramCell`, one per thread through :class:`ThreadShards`, the
per-thread primitive every accumulator here and in the facade uses), so recording takes no lock and no count is ever
lost; the collector sums the threads' cells. CPython switches threads only between bytecodes that call, jump back or
start a function: :meth:`HistogramSeries.record` makes its calls (``log``, ``ceil``, ``bisect``) before its first
update and none after, and the collection reads a cell (and restarts its min and max) with no call before its last
read, so a collection sees each recorded value entirely or not at all. Only a Python-level tracer (a debugger,
``sys.settrace``) can switch threads in between: then a value recorded at that very moment may have its min or max
attributed to the next interval; its count and sum are never lost, nor is it from the cumulative min and max.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import sys
import threading
import weakref
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import add, itemgetter, sub
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from otel_telemetry.catalog import MetricSpec

_S = TypeVar("_S")

#: Relative accuracy α of the sketch: every quantile, of any positive value, is within this fraction of the exact
#: sample quantile (nearest rank).
RELATIVE_ACCURACY = 0.005
#: Ratio between the upper and lower edge of one cell: ``(1 + α) / (1 - α)``.
GAMMA = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
#: Largest relative error of a quantile read from a sketch (min and max are exact when known, see ``min()``).
QUANTILE_RELATIVE_ERROR = RELATIVE_ACCURACY

_INF = math.inf
_INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
# The value a cell reports: GAMMA**k * this (the point within α of both edges).
_CENTRE = 2.0 / (GAMMA + 1.0)

# A thread's cell is one dict of integer keys, so that a collection copies it in one call. Cells of positive values
# use their index (|index| < _KEY_SPAN for every float); the other counters use keys in bands above it.
_KEY_SPAN = 1 << 17
assert (
    -math.log(math.ulp(0.0)) * _INV_LOG_GAMMA + 1 < _KEY_SPAN
    and math.log(sys.float_info.max) * _INV_LOG_GAMMA < _KEY_SPAN
)
_SPECIAL = 1 << 18  # keys >= this are not positive cells
_ZERO = _SPECIAL
_INVALID = _SPECIAL + 1
_BUCKET = _SPECIAL + 2  # _BUCKET + j: values counted directly in explicit bucket j
_NEGATIVE = 1 << 20  # _NEGATIVE + k: negative values whose magnitude is in cell k
_MAX_BOUNDARIES = _NEGATIVE - _KEY_SPAN - _BUCKET - 1


def _cell_of(value: float) -> int:
    """The cell index of a positive value (the expression :meth:`HistogramSeries.record` applies inline)."""
    return math.ceil(math.log(value) * _INV_LOG_GAMMA)


def _centre(key: int) -> float:
    """The value cell ``key`` reports (recorded unit)."""
    try:
        return float(GAMMA**key * _CENTRE)
    except OverflowError:
        return _INF


def _in_recorded_unit(boundary: float, scale: float) -> float:
    """``boundary / scale`` as the decimal numbers they are written as (``0.175 / 0.001`` is exactly 175)."""
    if scale == 1.0:
        return boundary
    return float(Decimal(repr(boundary)) / Decimal(repr(float(scale))))


class HistogramLayout:
    """The explicit buckets of one histogram, in the unit values are recorded in, and how cells map onto them.

    Cells (see the module docstring) are the same for every layout; the layout knows which cells hold a boundary
    (values there are also counted per explicit bucket) and which run of cells makes each explicit bucket.

    Args:
        boundaries: explicit bucket boundaries in the exported unit (e.g. seconds), finite and strictly increasing.
        scale: exported value = recorded value × scale (e.g. 0.001 when milliseconds are recorded).

    Raises:
        ValueError: on no boundaries, boundaries that are not finite and strictly increasing, or a scale that is
            not positive and finite.
    """

    __slots__ = ("_positive_runs", "boundaries", "boundary_cells", "one_boundary", "recorded", "scale", "zero_bucket")

    def __init__(self, boundaries: Sequence[float], scale: float = 1.0) -> None:
        if not boundaries:
            raise ValueError("a histogram layout needs at least one boundary")
        if len(boundaries) > _MAX_BOUNDARIES:
            raise ValueError(f"a histogram layout takes at most {_MAX_BOUNDARIES} boundaries, got {len(boundaries)}")
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be positive and finite, got {scale!r}")
        exported = tuple(float(b) for b in boundaries)
        for low, high in itertools.pairwise(exported):
            if not low < high:
                raise ValueError(f"boundaries must be strictly increasing, got {low!r} then {high!r}")
        if not all(math.isfinite(b) for b in exported):
            raise ValueError(f"boundaries must be finite, got {exported!r}")
        self.boundaries: tuple[float, ...] = exported
        self.scale = scale
        #: The boundaries in the recorded unit: a value ``v`` belongs to bucket ``bisect_left(recorded, v)``.
        self.recorded: tuple[float, ...] = tuple(_in_recorded_unit(b, scale) for b in exported)
        first_positive = bisect.bisect_right(self.recorded, 0.0)
        keys = [_cell_of(b) for b in self.recorded[first_positive:]]
        #: Cells holding a boundary: their values are also counted per explicit bucket.
        self.boundary_cells: frozenset[int] = frozenset(keys)
        #: For a cell holding exactly one boundary: that boundary and the key of its bucket in a thread's counts
        #: (a value above it is in the next bucket). Cells holding several boundaries are bisected.
        self.one_boundary: dict[int, tuple[float, int]] = {
            key: (self.recorded[first_positive + index], first_positive + index + _BUCKET)
            for index, key in enumerate(keys)
            if keys.count(key) == 1
        }
        #: The explicit bucket of the value 0.
        self.zero_bucket = bisect.bisect_left(self.recorded, 0.0)
        # Explicit bucket j (for j >= first_positive) holds the positive cells strictly between the cells of its
        # lower and upper boundary (None: unbounded); a boundary's own cell is counted per bucket instead.
        runs: list[tuple[int, int | None, int | None]] = []
        for bucket in range(first_positive, len(self.recorded) + 1):
            after = keys[bucket - first_positive - 1] if bucket > first_positive else None
            before = keys[bucket - first_positive] if bucket < len(self.recorded) else None
            if after is None or before is None or before - after > 1:
                runs.append((bucket, after, before))
        self._positive_runs = tuple(runs)

    def cell_of(self, value: float) -> int:
        """The cell index of a positive recorded ``value``."""
        return _cell_of(value)

    def bucket_of(self, value: float) -> int:
        """The explicit bucket (0 .. ``len(boundaries)``) of a recorded ``value``; boundaries are inclusive."""
        return bisect.bisect_left(self.recorded, value)

    def representative(self, cell: int) -> float:
        """The value reported for positive cell ``cell`` (recorded unit): within α of every value in it."""
        return _centre(cell)


class HistogramCell:
    """One thread's state for one histogram series. Written only by its thread (the collection restarts min/max).

    ``counts`` maps keys to counts: positive cells by index, and the zero, invalid, per-bucket and negative counters
    by keys above them (the per-bucket ones from the start: ``seed``); ``low``/``high`` are the extremes recorded
    since the last collection; ``sum`` is cumulative. ``invalid_since`` is set when a value that is not a number
    was recorded since the last collection (it moves no extreme): with the extremes, it tells a collection whether
    the cell took anything in at all.
    """

    __slots__ = ("__weakref__", "counts", "high", "invalid_since", "low", "sum")

    def __init__(self, seed: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = {} if seed is None else dict(seed)
        self.sum: float = 0.0
        self.low: float = _INF
        self.high: float = -_INF
        self.invalid_since = False


class _ShardLocal(threading.local, Generic[_S]):
    shard: _S


class ThreadShards(Generic[_S]):
    """Per-thread accumulator objects (``shard()``), each written only by its own thread.

    The hot path does ``s = shards.shard(); s.count += 1``: no lock, and no update is ever lost, because no two
    threads write the same object. :meth:`all` returns every shard for the reader to sum.

    Without ``merge``, the shards of ended threads are kept for good (their totals still count). With ``merge``
    (``merge(a, b)`` returns a *new* shard holding both, leaving ``a`` and ``b`` as they are), :meth:`all` folds
    the shards of threads that have ended into one retired shard, so threads coming and going do not grow
    memory. The retired shard is replaced, never mutated: a reader still summing an earlier :meth:`all` list
    counts nothing twice.

    The hottest paths may skip the method call: ``local.shard`` is this thread's shard once :meth:`shard` has
    made it (AttributeError before). An owner keeps ``local`` in a slot of its own and writes::

        try:
            cell = self._local.shard
        except AttributeError:
            cell = self._shards.shard()

    Thread-safety: :meth:`shard` and :meth:`all` may be called from any thread; a shard is written by its thread
    only. Shards of threads not started by :mod:`threading` are never folded (such threads always look alive).
    """

    __slots__ = ("_factory", "_lock", "_merge", "_retired", "_shards", "local")

    def __init__(self, factory: Callable[[], _S], merge: Callable[[_S, _S], _S] | None = None) -> None:
        self._factory = factory
        self._merge = merge
        self._lock = threading.Lock()
        self._shards: list[tuple[weakref.ref[threading.Thread], _S]] = []
        self._retired: _S | None = None
        #: Per-thread storage: ``local.shard`` is this thread's shard once :meth:`shard` has made it.
        self.local: _ShardLocal[_S] = _ShardLocal()

    def shard(self) -> _S:
        """This thread's shard, created on first use."""
        try:
            return self.local.shard
        except AttributeError:
            shard = self._factory()
            with self._lock:
                self._shards.append((weakref.ref(threading.current_thread()), shard))
            self.local.shard = shard
            return shard

    def all(self) -> list[_S]:
        """Every shard to sum (a new list): the retired one first when there is one, then each live thread's."""
        with self._lock:
            merge = self._merge
            if merge is not None:
                live: list[tuple[weakref.ref[threading.Thread], _S]] = []
                retired = self._retired
                for ref, shard in self._shards:
                    # Liveness first: a thread seen dead writes no more, so its shard is final from here on.
                    thread = ref()
                    if thread is not None and thread.is_alive():
                        live.append((ref, shard))
                    else:
                        retired = shard if retired is None else merge(retired, shard)
                self._shards = live
                self._retired = retired
            shards = [shard for _, shard in self._shards]
            retired = self._retired
        return shards if retired is None else [retired, *shards]

    def held(self) -> int:
        """How many per-thread shards are held: live threads', and ended ones' not folded yet (not the retired)."""
        return len(self._shards)


class _ExtremesLog:
    """The exact min and max of what each of the last ``capacity`` collections of one series took in (a ring).

    Collection ``g`` (1, 2, ...) is the ``g``-th :meth:`HistogramSeries.snapshot`; :meth:`between` gives the extremes
    of the values recorded between two snapshots as long as the ring still holds every collection in between.
    Thread-safe.
    """

    __slots__ = ("_highs", "_lock", "_lows", "capacity", "latest")

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._lows = array("d", [_INF]) * capacity
        self._highs = array("d", [-_INF]) * capacity
        #: The number of the newest collection (0: none yet).
        self.latest = 0
        self._lock = threading.Lock()

    def append(self, low: float, high: float) -> int:
        """Log one collection's extremes (``inf``/``-inf`` when it took in nothing); returns its number."""
        with self._lock:
            self.latest += 1
            slot = self.latest % self.capacity
            self._lows[slot] = low
            self._highs[slot] = high
            return self.latest

    def between(self, after: int, upto: int) -> tuple[float, float] | None:
        """Extremes of the collections ``after + 1 .. upto``; None when the ring no longer holds all of them."""
        with self._lock:
            if not self.latest - self.capacity <= after <= upto <= self.latest:
                return None
            if after == upto:
                return _INF, -_INF
            first, last = (after + 1) % self.capacity, upto % self.capacity
            if first <= last:
                return min(self._lows[first : last + 1]), max(self._highs[first : last + 1])
            return (
                min(min(self._lows[first:]), min(self._lows[: last + 1])),
                max(max(self._highs[first:]), max(self._highs[: last + 1])),
            )


class HistogramSnapshot:
    """Aggregated state of one histogram series, in the recorded unit unless said otherwise. Immutable.

    ``counts`` are the counts of the positive cells ``offset .. offset + len(counts) - 1`` (every other positive
    cell is empty), ``negative``/``negative_offset`` the same for the magnitudes of negative values, ``zero`` the
    count of zeros. ``edge_counts`` (empty or one per explicit bucket) are the values counted directly in their
    explicit bucket: those in a cell holding a boundary, and negative values. ``invalid`` counts NaN and infinities,
    which are in nothing else. ``count``, ``sum``, :meth:`min` and :meth:`max` are exact (``low``/``high`` given);
    without ``low``/``high`` (an interval older than the extremes log), min and max are read from the cells.
    """

    __slots__ = (
        "_buckets",
        "_high",
        "_log",
        "_low",
        "_running",
        "count",
        "counts",
        "edge_counts",
        "generation",
        "invalid",
        "layout",
        "negative",
        "negative_offset",
        "offset",
        "sum",
        "zero",
    )

    def __init__(
        self,
        layout: HistogramLayout,
        counts: tuple[int, ...],
        count: int,
        sum: float,
        offset: int = 0,
        *,
        zero: int = 0,
        negative: tuple[int, ...] = (),
        negative_offset: int = 0,
        edge_counts: tuple[int, ...] = (),
        low: float | None = None,
        high: float | None = None,
        invalid: int = 0,
        generation: int | None = None,
        log: _ExtremesLog | None = None,
    ) -> None:
        self.layout = layout
        self.counts = counts
        self.count = count
        self.sum = sum
        self.offset = offset
        self.zero = zero
        self.negative = negative
        self.negative_offset = negative_offset
        self.edge_counts = edge_counts
        self.invalid = invalid
        #: The collection this cumulative snapshot was taken at (None for intervals, windows and merges).
        self.generation = generation
        self._low = low
        self._high = high
        self._log = log
        self._running: list[int] | None = None
        self._buckets: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"HistogramSnapshot(count={self.count}, sum={self.sum}, min={self.min()}, max={self.max()})"

    def _cumulative(self) -> list[int]:
        running = self._running
        if running is None:
            running = self._running = list(itertools.accumulate(self.counts))
        return running

    def bucket_counts(self) -> list[int]:
        """Counts per explicit bucket (``len(boundaries) + 1`` values, the last for +Inf). Exact. A new list each
        call, computed once per snapshot (a series that records nothing keeps its snapshot from frame to frame)."""
        found = self._buckets
        if found is None:
            found = self._buckets = tuple(self._bucket_counts())
        return list(found)

    def _bucket_counts(self) -> list[int]:
        layout = self.layout
        buckets = list(self.edge_counts) if self.edge_counts else [0] * (len(layout.recorded) + 1)
        if self.zero:
            buckets[layout.zero_bucket] += self.zero
        if self.counts:
            running = self._cumulative()
            last, offset, total = len(running) - 1, self.offset, running[-1]
            for bucket, after, before in layout._positive_runs:
                # Cells strictly between the cells of the bucket's two boundaries (their own are in edge_counts).
                upper = total if before is None else _at_or_below(running, last, before - 1 - offset)
                lower = 0 if after is None else _at_or_below(running, last, after - offset)
                buckets[bucket] += upper - lower
        return buckets

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (0..1) of the recorded values (nearest rank), within 0.5%; None when empty.

        The smallest and largest rank (``q = 0`` and ``q = 1``) are the exact min and max; every quantile lies
        between them.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, got {q!r}")
        count = self.count
        if count == 0:
            return None
        # Nearest rank on the 1-based ordered samples (numpy's "inverted_cdf").
        rank = max(1, math.ceil(q * count))
        low, high = self.min(), self.max()
        assert low is not None and high is not None
        if rank == 1:
            return low
        if rank >= count:
            return high
        return min(max(self._at_rank(rank), low), high)

    def _at_rank(self, rank: int) -> float:
        negatives = sum(self.negative)
        if rank <= negatives:
            # Negative values ascend as their magnitudes descend.
            for index in range(len(self.negative) - 1, -1, -1):
                rank -= self.negative[index]
                if rank <= 0:
                    return -_centre(self.negative_offset + index)
        if rank <= negatives + self.zero:
            return 0.0
        running = self._cumulative()
        index = bisect.bisect_left(running, rank - negatives - self.zero)
        return _centre(self.offset + min(index, len(running) - 1))

    def min(self) -> float | None:
        """Smallest recorded value (exact; read from the cells, within 0.5%, only for an interval older than the
        extremes log); None when empty."""
        if not self.count:
            return None
        if self._low is not None:
            return self._low
        if any(self.negative):
            return -_centre(self.negative_offset + _last_occupied(self.negative))
        if self.zero:
            return 0.0
        return _centre(self.offset + _first_occupied(self.counts))

    def max(self) -> float | None:
        """Largest recorded value (exact, or within 0.5% as for :meth:`min`); None when empty."""
        if not self.count:
            return None
        if self._high is not None:
            return self._high
        if any(self.counts):
            return _centre(self.offset + _last_occupied(self.counts))
        if self.zero:
            return 0.0
        return -_centre(self.negative_offset + _first_occupied(self.negative))

    def mean(self) -> float | None:
        """Exact mean of the recorded values; None when empty."""
        return self.sum / self.count if self.count else None


def _at_or_below(running: list[int], last: int, index: int) -> int:
    return 0 if index < 0 else running[min(index, last)]


def _first_occupied(counts: Sequence[int]) -> int:
    return next(itertools.compress(itertools.count(), counts))


def _last_occupied(counts: Sequence[int]) -> int:
    return len(counts) - 1 - next(itertools.compress(itertools.count(), reversed(counts)))


def _trimmed(values: Sequence[int], offset: int) -> tuple[tuple[int, ...], int]:
    """``values`` without their zero ends, and the offset of what is left."""
    first = next(itertools.compress(itertools.count(), values), None)
    if first is None:
        return (), 0
    last = _last_occupied(values)
    return tuple(values[first : last + 1]), offset + first


def _combined(
    a: tuple[int, ...], a_offset: int, b: tuple[int, ...], b_offset: int, op: Callable[[int, int], int]
) -> tuple[tuple[int, ...], int]:
    """``a op b`` cell by cell (``op`` is ``add`` or ``sub``), both aligned on their offsets, trimmed."""
    if not b:
        return a, a_offset
    if not a and op is add:
        return b, b_offset
    if a_offset == b_offset and len(a) == len(b):
        return _trimmed(tuple(map(op, a, b)), a_offset)
    low = min(a_offset, b_offset)
    high = max(a_offset + len(a), b_offset + len(b))
    values = [0] * (high - low)
    values[a_offset - low : a_offset - low + len(a)] = a
    part = slice(b_offset - low, b_offset - low + len(b))
    values[part] = map(op, values[part], b)
    return _trimmed(values, low)


def _dense(spans: Iterable[tuple[dict[int, int], int, int]]) -> tuple[tuple[int, ...], int]:
    """Dict counts over key ranges ``first .. last`` as one dense tuple and its offset (summed where they meet)."""
    spans = list(spans)
    if not spans:
        return (), 0
    if len(spans) == 1:
        counts, first, last = spans[0]
        return tuple(map(counts.get, range(first, last + 1), itertools.repeat(0))), first
    first = min(span[1] for span in spans)
    values = [0] * (max(span[2] for span in spans) - first + 1)
    for counts, low, high in spans:
        part = slice(low - first, high - first + 1)
        values[part] = map(add, values[part], map(counts.get, range(low, high + 1), itertools.repeat(0)))
    return tuple(values), first


def _from_copies(
    layout: HistogramLayout,
    copies: list[dict[int, int]],
    total: float,
    low: float,
    high: float,
    generation: int,
    log: _ExtremesLog,
) -> HistogramSnapshot:
    """The snapshot of the threads' cell dicts (copied by a collection), with the series' extremes."""
    spans: list[tuple[dict[int, int], int, int]] = []
    zero = invalid = 0
    buckets: list[int] | None = None
    negative: dict[int, int] = {}
    for counts in copies:
        if not counts:
            continue
        keys = sorted(counts)
        split = bisect.bisect_left(keys, _SPECIAL)
        if split:
            spans.append((counts, keys[0], keys[split - 1]))
        for key in keys[split:]:  # a few: zero, invalid, per-bucket counts, negative cells
            n = counts[key]
            if key >= _NEGATIVE - _KEY_SPAN:
                negative[key - _NEGATIVE] = negative.get(key - _NEGATIVE, 0) + n
            elif key >= _BUCKET:
                if buckets is None:
                    buckets = [0] * (len(layout.recorded) + 1)
                buckets[key - _BUCKET] += n
            elif key == _ZERO:
                zero += n
            else:
                invalid += n
    positive, offset = _dense(spans)
    negatives, negative_offset = _dense([(negative, min(negative), max(negative))] if negative else [])
    count = sum(positive) + zero + sum(negatives)
    return HistogramSnapshot(
        layout,
        positive,
        count,
        total,
        offset,
        zero=zero,
        negative=negatives,
        negative_offset=negative_offset,
        edge_counts=tuple(buckets) if buckets else (),
        low=low if count else None,
        high=high if count else None,
        invalid=invalid,
        generation=generation,
        log=log,
    )


def _merged_cells(a: HistogramCell, b: HistogramCell) -> HistogramCell:
    merged = HistogramCell()
    counts = dict(a.counts)
    for key, n in b.counts.items():
        counts[key] = counts.get(key, 0) + n
    merged.counts = counts
    merged.sum = a.sum + b.sum
    merged.low = min(a.low, b.low)
    merged.high = max(a.high, b.high)
    merged.invalid_since = a.invalid_since or b.invalid_since
    return merged


class HistogramSeries:
    """One histogram series (an instrument bound to one attribute set), recorded without locks.

    ``record(value)`` is the hot path; ``snapshot()`` sums all threads' cells (:class:`ThreadShards`; cells of
    threads that have ended are folded into a retired cell, so threads coming and going do not grow memory).
    Thread-safety: ``record`` from any thread, ``snapshot`` from any thread (snapshots are serialised by a lock
    the hot path never takes).
    """

    __slots__ = (
        "_boundary_cells",
        "_high",
        "_local",
        "_lock",
        "_log",
        "_low",
        "_one_boundary",
        "_recorded",
        "_shards",
        "attributes",
        "layout",
    )

    def __init__(self, layout: HistogramLayout, attributes: tuple[tuple[str, str], ...] = ()) -> None:
        self.layout = layout
        self.attributes = attributes
        # Every bucket key is in a thread's counts from the start: incrementing one cannot raise (see record()).
        seed = dict.fromkeys(range(_BUCKET, _BUCKET + len(layout.recorded) + 1), 0)
        self._shards: ThreadShards[HistogramCell] = ThreadShards(functools.partial(HistogramCell, seed), _merged_cells)
        self._local = self._shards.local  # read inline by record(): no method call on the hot path
        self._boundary_cells = layout.boundary_cells
        self._one_boundary = layout.one_boundary
        self._recorded = layout.recorded
        self._lock = threading.Lock()
        self._log = _ExtremesLog()
        self._low = _INF
        self._high = -_INF

    def record(
        self,
        value: float,
        _log: Callable[[float], float] = math.log,
        _ceil: Callable[[float], int] = math.ceil,
        _inv: float = _INV_LOG_GAMMA,
        _bisect: Callable[[Sequence[float], float], int] = bisect.bisect_left,
    ) -> None:
        """Record one value (recorded unit). Never raises; NaN, infinities and ints beyond float are counted as
        ``invalid`` only.

        Callers validate (the monitors and the facade pass finite values >= 0 and count what they reject).
        """
        try:
            cell = self._local.shard
        except AttributeError:
            cell = self._shards.shard()
        if value > 0.0:
            try:
                key = _ceil(_log(value) * _inv)
                total = cell.sum + value
            except OverflowError:  # +inf, or an int beyond float
                return self._record_unusual(cell, value)
            counts = cell.counts
            if key in self._boundary_cells:
                # A cell holding a boundary: the value is also counted in its explicit bucket.
                try:
                    boundary, bucket = self._one_boundary[key]
                    bucket += value > boundary
                except KeyError:
                    bucket = _bisect(self._recorded, value) + _BUCKET
                # From the first update to the last nothing may call (see the module docstring); a KeyError
                # runs before any update of this value, and the bucket keys are always there.
                try:
                    counts[key] += 1
                except KeyError:
                    counts[key] = 1
                counts[bucket] += 1
            else:
                # From the first update to the last nothing may call (see the module docstring); a KeyError
                # runs before any update of this value.
                try:
                    counts[key] += 1
                except KeyError:
                    counts[key] = 1
            cell.sum = total
        elif value == 0.0:
            try:
                cell.counts[_ZERO] += 1
            except KeyError:
                cell.counts[_ZERO] = 1
        else:
            return self._record_unusual(cell, value)
        if value < cell.low:
            cell.low = value
        if value > cell.high:
            cell.high = value

    def _record_unusual(self, cell: HistogramCell, value: float) -> None:
        """A negative value (mirrored cell, counted in its explicit bucket), or one that is not a finite float
        (invalid)."""
        counts = cell.counts
        try:
            if not -_INF < value < 0.0:
                raise OverflowError
            key = math.ceil(math.log(-value) * _INV_LOG_GAMMA) + _NEGATIVE
            total = cell.sum + value
        except OverflowError:  # NaN, an infinity, an int beyond float (positive ones come from record())
            if _INVALID in counts:
                counts[_INVALID] += 1
            else:
                counts[_INVALID] = 1
            cell.invalid_since = True
            return
        bucket = bisect.bisect_left(self._recorded, value) + _BUCKET
        # No call and nothing that raises from here on (see record()): the bucket keys are always there.
        if key in counts:
            counts[key] += 1
        else:
            counts[key] = 1
        counts[bucket] += 1
        cell.sum = total
        if value < cell.low:
            cell.low = value
        if value > cell.high:
            cell.high = value

    def snapshot(self) -> HistogramSnapshot:
        """The cumulative state of every thread's cell, summed, with exact count, sum, min and max.

        Each snapshot is one collection of the series' extremes log: :func:`difference` of two snapshots of this
        series has the exact min and max of what was recorded in between.
        """
        with self._lock:
            copies: list[dict[int, int]] = []
            total = 0.0
            low, high = _INF, -_INF
            for cell in self._shards.all():
                # One instant per cell: no call until the copy (record() cannot be between two updates here).
                cell_low = cell.low
                cell_high = cell.high
                cell.low = _INF
                cell.high = -_INF
                cell.invalid_since = False
                total += cell.sum
                copies.append(cell.counts.copy())
                if cell_low < low:
                    low = cell_low
                if cell_high > high:
                    high = cell_high
            generation = self._log.append(low, high)
            if low < self._low:
                self._low = low
            if high > self._high:
                self._high = high
            return _from_copies(self.layout, copies, total, self._low, self._high, generation, self._log)

    def unchanged(self) -> bool:
        """Whether nothing was recorded since the last :meth:`snapshot`, whose result then still stands.

        Much cheaper than a snapshot: it reads each thread's extremes (every value but a NaN or an infinity moves
        them; those set ``invalid_since``), copies nothing, and takes no collection of the extremes log. A value
        recorded while this runs is in the next snapshot, as if recorded just after it (a record has no call
        from its first update to its last: see :meth:`record`).
        """
        return all(cell.low == _INF and cell.high == -_INF and not cell.invalid_since for cell in self._shards.all())


def difference(newer: HistogramSnapshot, older: HistogramSnapshot | None) -> HistogramSnapshot:
    """What was recorded between two cumulative snapshots of the same series (exact min and max while the
    series' extremes log still holds the collections in between: the last 256)."""
    if older is None:
        return newer
    counts, offset = _combined(newer.counts, newer.offset, older.counts, older.offset, sub)
    negative, negative_offset = _combined(
        newer.negative, newer.negative_offset, older.negative, older.negative_offset, sub
    )
    edges = newer.edge_counts
    if older.edge_counts:
        edges = tuple(map(sub, edges, older.edge_counts))
    count = newer.count - older.count
    low = high = None
    if count and not older.count:
        low, high = newer._low, newer._high
    elif count:
        log = newer._log
        if log is not None and log is older._log and newer.generation is not None and older.generation is not None:
            found = log.between(older.generation, newer.generation)
            if found is not None and found[0] <= found[1]:
                low, high = found
        # Where the series' extremes moved, the interval holds the new ones.
        if low is None and newer._low is not None and older._low is not None and newer._low < older._low:
            low = newer._low
        if high is None and newer._high is not None and older._high is not None and newer._high > older._high:
            high = newer._high
    return HistogramSnapshot(
        newer.layout,
        counts,
        count,
        newer.sum - older.sum,
        offset,
        zero=newer.zero - older.zero,
        negative=negative,
        negative_offset=negative_offset,
        edge_counts=edges,
        low=low,
        high=high,
        invalid=newer.invalid - older.invalid,
    )


def merge(a: HistogramSnapshot, b: HistogramSnapshot) -> HistogramSnapshot:
    """Both snapshots' values together (the same layout); either may cover only its occupied cells."""
    if not (b.count or b.invalid):
        return a
    if not (a.count or a.invalid):
        return b
    counts, offset = _combined(a.counts, a.offset, b.counts, b.offset, add)
    negative, negative_offset = _combined(a.negative, a.negative_offset, b.negative, b.negative_offset, add)
    edges = a.edge_counts or b.edge_counts
    if a.edge_counts and b.edge_counts:
        edges = tuple(map(add, a.edge_counts, b.edge_counts))
    lows = [x for x in (a.min(), b.min()) if x is not None]
    highs = [x for x in (a.max(), b.max()) if x is not None]
    return HistogramSnapshot(
        a.layout,
        counts,
        a.count + b.count,
        a.sum + b.sum,
        offset,
        zero=a.zero + b.zero,
        negative=negative,
        negative_offset=negative_offset,
        edge_counts=edges,
        low=min(lows) if lows else None,
        high=max(highs) if highs else None,
        invalid=a.invalid + b.invalid,
    )


def sparse_difference(newer: HistogramSnapshot, older: HistogramSnapshot | None) -> tuple[tuple[int, int], ...]:
    """``(cell, count)`` pairs of the positive cells recorded between two snapshots (all of ``newer`` when
    ``older`` is None), ascending; :meth:`HistogramLayout.representative` gives each cell's value."""
    interval = difference(newer, older)
    counts = interval.counts
    cells = itertools.compress(itertools.count(interval.offset), counts)
    return tuple(zip(cells, itertools.compress(counts, counts), strict=True))


class _DenseCounts:
    """Counts of a contiguous run of cells that grows at either end (the sliding window's totals)."""

    __slots__ = ("offset", "values")

    def __init__(self) -> None:
        self.offset = 0
        self.values: list[int] = []

    def apply(self, counts: tuple[int, ...], offset: int, op: Callable[[int, int], int]) -> None:
        if not counts:
            return
        values = self.values
        if not values:
            values.extend(counts if op is add else map(sub, itertools.repeat(0), counts))
            self.offset = offset
            return
        if offset < self.offset:
            values[0:0] = [0] * (self.offset - offset)
            self.offset = offset
        end = offset + len(counts) - self.offset
        if end > len(values):
            values.extend([0] * (end - len(values)))
        part = slice(offset - self.offset, end)
        values[part] = map(op, values[part], counts)

    def trimmed(self) -> tuple[tuple[int, ...], int]:
        """The occupied run (and the list shrunk to it, so expired cells free their memory)."""
        counts, offset = _trimmed(self.values, self.offset)
        self.values, self.offset = list(counts), offset
        return counts, offset


class SlidingWindow:
    """The values recorded over the last ``window`` seconds, from per-interval differences.

    Memory is bounded by the number of intervals in the window times the occupied cells per interval, never by the
    number of samples. Count, sum, min and max over the window are exact when the intervals' are (those of
    :func:`difference` are). ``add`` and ``snapshot`` are called from one thread at a time (the owner's lock).
    """

    __slots__ = ("_count", "_edges", "_intervals", "_invalid", "_layout", "_negative", "_positive", "_zero", "window")

    def __init__(self, layout: HistogramLayout, window: float) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive, got {window!r}")
        self.window = window
        self._layout = layout
        self._positive = _DenseCounts()
        self._negative = _DenseCounts()
        self._edges = [0] * (len(layout.recorded) + 1)
        self._zero = self._count = self._invalid = 0
        # (time added, interval, its min, its max, its sum)
        self._intervals: deque[tuple[float, HistogramSnapshot, float, float, float]] = deque()

    def add(self, now: float, interval: HistogramSnapshot) -> bool:
        """Add what one collection interval recorded, then drop intervals older than the window. True when the
        window's content changed (the interval held values, or some expired)."""
        added = bool(interval.count or interval.invalid)
        if added:
            self._apply(interval, add)
            low, high = interval.min(), interval.max()
            self._intervals.append(
                (now, interval, _INF if low is None else low, -_INF if high is None else high, interval.sum)
            )
        return self.expire(now) or added

    def expire(self, now: float) -> bool:
        """Drop the intervals older than the window; True when there were any (the content changed)."""
        horizon = now - self.window
        intervals = self._intervals
        if not intervals or intervals[0][0] > horizon:
            return False
        while intervals and intervals[0][0] <= horizon:
            self._apply(intervals.popleft()[1], sub)
        if not intervals:
            self._positive, self._negative = _DenseCounts(), _DenseCounts()
        return True

    def _apply(self, interval: HistogramSnapshot, op: Callable[[int, int], int]) -> None:
        self._positive.apply(interval.counts, interval.offset, op)
        self._negative.apply(interval.negative, interval.negative_offset, op)
        if interval.edge_counts:
            self._edges[:] = map(op, self._edges, interval.edge_counts)
        self._zero = op(self._zero, interval.zero)
        self._count = op(self._count, interval.count)
        self._invalid = op(self._invalid, interval.invalid)

    def snapshot(self) -> HistogramSnapshot:
        """The window's content as a snapshot (quantiles, exact count, sum, min and max) over its occupied cells."""
        intervals = self._intervals
        if not intervals:
            return HistogramSnapshot(self._layout, (), 0, 0.0)
        counts, offset = self._positive.trimmed()
        negative, negative_offset = self._negative.trimmed()
        count = self._count
        return HistogramSnapshot(
            self._layout,
            counts,
            count,
            math.fsum(map(itemgetter(4), intervals)),
            offset,
            zero=self._zero,
            negative=negative,
            negative_offset=negative_offset,
            edge_counts=tuple(self._edges) if any(self._edges) else (),
            low=min(map(itemgetter(2), intervals)) if count else None,
            high=max(map(itemgetter(3), intervals)) if count else None,
            invalid=self._invalid,
        )


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identifies one histogram series: instrument name and its attribute set."""

    name: str
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HistogramState:
    """A histogram series as of the last refresh: cumulative since start, and over the sliding window."""

    spec: MetricSpec
    key: SeriesKey
    cumulative: HistogramSnapshot
    window: HistogramSnapshot
    start_time: float  # time.time() when the series was created


class RateTracker:
    """Per-second rate of a cumulative count over the real time between two observations.

    The first observation primes the tracker at construction time (``start`` value and time), so the first rate is
    already a true rate. A count that goes down (a reset) yields ``None`` for that interval and becomes the new
    baseline. Observations closer together than ``min_interval`` return the previous rate unchanged, so several
    readers collecting within one interval agree.
    """

    __slots__ = ("_last_time", "_last_value", "_min_interval", "_rate")

    def __init__(self, now: float, start: float = 0.0, min_interval: float = 0.25) -> None:
        self._last_time = now
        self._last_value = start
        self._min_interval = min_interval
        self._rate: float | None = None

    def observe(self, now: float, value: float) -> float | None:
        """The rate ending at ``now`` given the cumulative ``value`` then."""
        elapsed = now - self._last_time
        if elapsed < self._min_interval and self._rate is not None:
            return self._rate
        if elapsed <= 0:
            return self._rate
        delta = value - self._last_value
        self._rate = None if delta < 0 else delta / elapsed
        self._last_time, self._last_value = now, value
        return self._rate


#: The attribute value a capped series reports once its cap is reached.
OVERFLOW_VALUE = "_overflow"


class BoundedKeys:
    """Admits at most ``limit`` distinct keys; later keys map to :data:`OVERFLOW_VALUE` and are counted.

    Used for per-map, per-type and per-player attributes so that an unbounded set of ids cannot grow memory or
    the number of exported series. ``forget(key)`` frees a slot (e.g. when a player disconnects).
    """

    __slots__ = ("_keys", "_lock", "limit", "overflowed")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        self.limit = limit
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self.overflowed = 0

    def admit(self, key: str) -> str:
        """``key`` itself if admitted (already or now), else :data:`OVERFLOW_VALUE`."""
        if key in self._keys:
            return key
        with self._lock:
            if key in self._keys:
                return key
            if len(self._keys) < self.limit:
                self._keys.add(key)
                return key
            self.overflowed += 1
            return OVERFLOW_VALUE

    def forget(self, key: str) -> None:
        """Free ``key``'s slot."""
        with self._lock:
            self._keys.discard(key)

    def __len__(self) -> int:
        return len(self._keys)
