"""The accumulator layer: what the hot path writes instead of calling OpenTelemetry per event.

Measured on this kind of machine, an OpenTelemetry SDK ``Counter.add`` costs 3-5 µs and ``Histogram.record`` 4-6 µs;
game code at 27k packets/s cannot pay that. Monitors write plain per-thread accumulators here (about 0.1 µs for a
counter, 0.4 µs for a histogram) and OpenTelemetry reads them at collection time: observable instruments for sums
and gauges, and histogram data points merged into each reader's collection (:mod:`otel_telemetry.producer`).

Histograms
----------

A :class:`HistogramLayout` divides the recorded range into logarithmic cells about 1% wide (relative width
``GROWTH - 1``). Where one of the catalog's explicit bucket boundaries falls inside a cell, the cell is split at that
boundary with a single comparison. So every storage slot lies inside exactly one explicit bucket and:

* the explicit-bucket counts exported to Prometheus and OTLP are **exact** (sums of slots), and
* quantiles, min and max read from the slots are within half a cell, ``QUANTILE_RELATIVE_ERROR`` (0.5%), of the
  exact sample quantile, whatever the number of samples: memory is fixed by the layout, not by the load.

Each thread writes only its own slots (:class:`HistogramCell`, one per thread through :class:`ThreadShards`, the
per-thread primitive every accumulator here and in the facade uses), so recording takes no lock and no count is ever
lost; the collector sums the threads' cells. Reading a cell while its thread writes it sees each slot either before or
after the increment, never a torn value.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import add, sub
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from otel_telemetry.catalog import MetricSpec

_S = TypeVar("_S")

#: Ratio between the upper and lower edge of one cell.
GROWTH = 1.01
#: Largest relative error of a quantile, min or max read from a layout (half a cell, geometrically).
QUANTILE_RELATIVE_ERROR = math.sqrt(GROWTH) - 1.0
#: How far below the first and above the last explicit boundary the fine cells extend (factors).
_RANGE_BELOW = 10.0
_RANGE_ABOVE = 10.0


class HistogramLayout:
    """The fixed slot structure of one histogram, in the unit values are recorded in.

    Slots: ``0`` holds values at or below ``low`` (including 0); for cell ``g``, slot ``2g+1`` holds values up to
    the split point and ``2g+2`` values above it; the last slot holds values above the highest cell.

    Args:
        boundaries: explicit bucket boundaries in the exported unit (e.g. seconds), strictly increasing.
        scale: exported value = recorded value × scale (e.g. 0.001 when milliseconds are recorded).
    """

    __slots__ = (
        "base",
        "boundaries",
        "bucket_end_slot",
        "bucket_of_slot",
        "cells",
        "inv_log_growth",
        "low",
        "scale",
        "slot_count",
        "slot_high",
        "slot_low",
        "split",
    )

    def __init__(self, boundaries: Sequence[float], scale: float = 1.0) -> None:
        if not boundaries:
            raise ValueError("a histogram layout needs at least one boundary")
        if scale <= 0 or not math.isfinite(scale):
            raise ValueError(f"scale must be positive, got {scale!r}")
        self.boundaries: tuple[float, ...] = tuple(float(b) for b in boundaries)
        self.scale = scale
        recorded = [b / scale for b in self.boundaries]
        positive = [b for b in recorded if b > 0]
        low = (positive[0] if positive else 1.0) / _RANGE_BELOW
        high = max(recorded[-1], low) * _RANGE_ABOVE
        self.low = low
        self.inv_log_growth = 1.0 / math.log(GROWTH)
        self.base = math.log(low) * self.inv_log_growth
        self.cells = math.ceil(math.log(high / low) * self.inv_log_growth) + 1
        # split[g]: the explicit boundary inside cell g (values <= it go to the lower slot), else +inf.
        self.split: list[float] = [math.inf] * self.cells
        edges = [low * GROWTH**g for g in range(self.cells + 1)]
        for b in recorded:
            if b <= low:
                continue
            g = self.cell_of(b)
            if g >= self.cells:
                continue
            if self.split[g] != math.inf:
                raise ValueError(f"boundaries {self.split[g] * scale} and {b * scale} are closer than one cell")
            self.split[g] = b
        self.slot_count = 2 * self.cells + 2
        # Value range of each slot, in the recorded unit.
        self.slot_low: list[float] = [0.0] * self.slot_count
        self.slot_high: list[float] = [0.0] * self.slot_count
        self.slot_low[0], self.slot_high[0] = 0.0, low
        for g in range(self.cells):
            lo_edge, hi_edge = edges[g], edges[g + 1]
            cut = min(self.split[g], hi_edge)
            self.slot_low[2 * g + 1], self.slot_high[2 * g + 1] = lo_edge, cut
            self.slot_low[2 * g + 2], self.slot_high[2 * g + 2] = cut, hi_edge
        last = self.slot_count - 1
        self.slot_low[last], self.slot_high[last] = edges[self.cells], math.inf
        # bucket_of_slot[s]: index of the explicit bucket (0..len(boundaries)) that slot s lies in. No boundary lies
        # strictly inside a slot, so probing the slot's middle finds it (edges are avoided: float rounding there).
        # Slot 0 holds values <= low, treated as 0 (low is 1/10 of the smallest positive boundary).
        self.bucket_of_slot: list[int] = []
        for s in range(self.slot_count):
            if s == 0:
                probe = 0.0
            elif s == self.slot_count - 1:
                probe = self.slot_low[s]
            else:
                probe = math.sqrt(self.slot_low[s] * self.slot_high[s])
            self.bucket_of_slot.append(bisect.bisect_left(recorded, probe))
        # bucket_end_slot[b]: the last slot of explicit bucket b (buckets are contiguous runs of slots).
        self.bucket_end_slot: list[int] = [0] * (len(recorded) + 1)
        for slot, bucket in enumerate(self.bucket_of_slot):
            self.bucket_end_slot[bucket] = slot
        for bucket in range(1, len(self.bucket_end_slot)):
            # An empty bucket (no slot) ends where the previous one ended.
            self.bucket_end_slot[bucket] = max(self.bucket_end_slot[bucket], self.bucket_end_slot[bucket - 1])

    def cell_of(self, value: float) -> int:
        """The fine cell index of a recorded ``value`` > ``low``."""
        return int(math.log(value) * self.inv_log_growth - self.base)

    def slot_of(self, value: float) -> int:
        """The storage slot of a recorded ``value`` (the same rule the hot path applies inline)."""
        if value <= self.low:
            return 0
        g = int(math.log(value) * self.inv_log_growth - self.base)
        if g >= self.cells:
            return self.slot_count - 1
        return 2 * g + 1 + (value > self.split[g])

    def representative(self, slot: int) -> float:
        """The value reported for a slot (recorded unit): the geometric middle of its range."""
        lo, hi = self.slot_low[slot], self.slot_high[slot]
        if slot == 0:
            return 0.0
        if hi == math.inf:
            return lo
        return math.sqrt(lo * hi)


class HistogramCell:
    """One thread's slots for one histogram series. Written only by its thread."""

    __slots__ = ("__weakref__", "counts", "sum")

    def __init__(self, slot_count: int) -> None:
        self.counts: list[int] = [0] * slot_count
        self.sum: float = 0.0


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


class HistogramSnapshot:
    """Aggregated state of one histogram series, in the recorded unit unless said otherwise. Immutable.

    ``counts`` are per-slot counts (see :class:`HistogramLayout`) for the slots ``offset .. offset+len(counts)-1``;
    every slot outside that range is empty. Sliding-window snapshots keep only the occupied range, so reading
    their statistics costs C-speed passes over a few hundred slots, not the whole layout.
    """

    __slots__ = ("_running", "count", "counts", "layout", "offset", "sum")

    def __init__(
        self, layout: HistogramLayout, counts: tuple[int, ...], count: int, sum: float, offset: int = 0
    ) -> None:
        self.layout = layout
        self.counts = counts
        self.count = count
        self.sum = sum
        self.offset = offset
        self._running: list[int] | None = None

    def __repr__(self) -> str:
        return f"HistogramSnapshot(count={self.count}, sum={self.sum})"

    def _cumulative(self) -> list[int]:
        running = self._running
        if running is None:
            running = self._running = list(itertools.accumulate(self.counts))
        return running

    def bucket_counts(self) -> list[int]:
        """Counts per explicit bucket (``len(boundaries) + 1`` values, the last for +Inf)."""
        running = self._cumulative()
        last = len(running) - 1
        ends = []
        for slot in self.layout.bucket_end_slot:
            index = slot - self.offset
            ends.append(0 if index < 0 or last < 0 else running[min(index, last)])
        return [ends[0], *map(sub, ends[1:], ends[:-1])]

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (0..1) of the recorded values, within 0.5%; None when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within 0..1, got {q!r}")
        if self.count == 0:
            return None
        # Nearest rank on the 1-based ordered samples: the first slot whose running count reaches it.
        rank = max(1, math.ceil(q * self.count))
        index = bisect.bisect_left(self._cumulative(), rank)
        return self.layout.representative(self.offset + min(index, len(self.counts) - 1))

    def min(self) -> float | None:
        """Smallest recorded value (within 0.5%); None when empty."""
        if not self.count:
            return None
        return self.layout.representative(next(itertools.compress(itertools.count(self.offset), self.counts)))

    def max(self) -> float | None:
        """Largest recorded value (within 0.5%); None when empty."""
        if not self.count:
            return None
        last = self.offset + len(self.counts) - 1
        return self.layout.representative(last - next(itertools.compress(itertools.count(), reversed(self.counts))))

    def mean(self) -> float | None:
        """Exact mean of the recorded values; None when empty."""
        return self.sum / self.count if self.count else None


def _merged_cells(a: HistogramCell, b: HistogramCell) -> HistogramCell:
    merged = HistogramCell(0)
    merged.counts = list(map(add, a.counts, b.counts))
    merged.sum = a.sum + b.sum
    return merged


class HistogramSeries:
    """One histogram series (an instrument bound to one attribute set), recorded without locks.

    ``record(value)`` is the hot path. Values must be finite and >= 0; the caller validates (monitors count what
    they reject). ``snapshot()`` sums all threads' cells (:class:`ThreadShards`); cells of threads that have
    ended are folded into a retired cell so that threads coming and going do not grow memory.
    """

    __slots__ = ("_local", "_shards", "attributes", "layout")

    def __init__(self, layout: HistogramLayout, attributes: tuple[tuple[str, str], ...] = ()) -> None:
        self.layout = layout
        self.attributes = attributes
        self._shards: ThreadShards[HistogramCell] = ThreadShards(
            functools.partial(HistogramCell, layout.slot_count), _merged_cells
        )
        self._local = self._shards.local  # read inline by record(): no method call on the hot path

    def record(
        self,
        value: float,
        _log: Callable[[float], float] = math.log,
        _int: type[int] = int,
    ) -> None:
        """Record one value (recorded unit). No validation: callers pass finite values >= 0."""
        try:
            cell = self._local.shard
        except AttributeError:
            cell = self._shards.shard()
        layout = self.layout
        if value > layout.low:
            g = _int(_log(value) * layout.inv_log_growth - layout.base)
            if g < layout.cells:
                cell.counts[2 * g + 1 + (value > layout.split[g])] += 1
            else:
                cell.counts[-1] += 1
        else:
            cell.counts[0] += 1
        cell.sum += value

    def snapshot(self) -> HistogramSnapshot:
        """The cumulative state of every thread's cell, summed."""
        totals: list[int] | None = None
        total_sum = 0.0
        for cell in self._shards.all():
            totals = list(cell.counts) if totals is None else list(map(add, totals, cell.counts))
            total_sum += cell.sum
        if totals is None:
            totals = [0] * self.layout.slot_count
        return HistogramSnapshot(self.layout, tuple(totals), sum(totals), total_sum)


def difference(newer: HistogramSnapshot, older: HistogramSnapshot | None) -> HistogramSnapshot:
    """What was recorded between two cumulative snapshots of the same series."""
    if older is None:
        return newer
    if older.offset == newer.offset and len(older.counts) == len(newer.counts):
        return HistogramSnapshot(
            newer.layout,
            tuple(map(sub, newer.counts, older.counts)),
            newer.count - older.count,
            newer.sum - older.sum,
            newer.offset,
        )
    # Trimmed snapshots cover only their occupied slots, which grow over time: align them first.
    low = min(newer.offset, older.offset)
    high = max(newer.offset + len(newer.counts), older.offset + len(older.counts))
    counts = [0] * (high - low)
    start = newer.offset - low
    counts[start : start + len(newer.counts)] = newer.counts
    start = older.offset - low
    counts[start : start + len(older.counts)] = map(sub, counts[start : start + len(older.counts)], older.counts)
    return HistogramSnapshot(newer.layout, tuple(counts), newer.count - older.count, newer.sum - older.sum, low)


def merge(a: HistogramSnapshot, b: HistogramSnapshot) -> HistogramSnapshot:
    """Both snapshots' values together (the same layout); either may cover only its occupied slots."""
    if not b.count:
        return a
    if not a.count:
        return b
    low = min(a.offset, b.offset)
    high = max(a.offset + len(a.counts), b.offset + len(b.counts))
    counts = [0] * (high - low)
    for snapshot in (a, b):
        start = snapshot.offset - low
        counts[start : start + len(snapshot.counts)] = map(
            add, counts[start : start + len(snapshot.counts)], snapshot.counts
        )
    return HistogramSnapshot(a.layout, tuple(counts), a.count + b.count, a.sum + b.sum, low)


_CHUNK = 64


def sparse_difference(newer: HistogramSnapshot, older: HistogramSnapshot | None) -> tuple[tuple[int, int], ...]:
    """``(slot, count)`` pairs recorded between two cumulative snapshots.

    Most slots do not change between two collections, so the slots are compared in chunks first (a slice
    comparison runs in C) and only chunks that differ are subtracted slot by slot.
    """
    counts = newer.counts
    if older is None:
        slots = itertools.compress(itertools.count(newer.offset), counts)
        return tuple(zip(slots, itertools.compress(counts, counts), strict=True))
    if newer.offset or older.offset:
        raise ValueError("sparse_difference compares whole cumulative snapshots (offset 0)")
    before = older.counts
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(counts), _CHUNK):
        end = start + _CHUNK
        chunk = counts[start:end]
        previous = before[start:end]
        if chunk != previous:
            delta = list(map(sub, chunk, previous))
            pairs.extend(
                zip(itertools.compress(itertools.count(start), delta), itertools.compress(delta, delta), strict=True)
            )
    return tuple(pairs)


class SlidingWindow:
    """Slot counts recorded over the last ``window`` seconds, from per-interval differences.

    Memory is bounded by the number of intervals in the window times the number of non-empty slots per interval,
    never by the number of samples. ``add`` and ``snapshot`` are called from the collecting thread only.
    """

    __slots__ = ("_count", "_high", "_intervals", "_layout", "_low", "_sum", "_totals", "window")

    def __init__(self, layout: HistogramLayout, window: float) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive, got {window!r}")
        self.window = window
        self._layout = layout
        self._totals = [0] * layout.slot_count
        self._sum = 0.0
        self._count = 0
        # Bounds of the occupied slots (may be loose after expiry; tightened when a snapshot is taken).
        self._low = layout.slot_count
        self._high = -1
        self._intervals: deque[tuple[float, tuple[tuple[int, int], ...], float]] = deque()

    def add(self, now: float, interval: HistogramSnapshot) -> None:
        """Add what one collection interval recorded, then drop intervals older than the window."""
        self.add_sparse(now, sparse_difference(interval, None), interval.sum)

    def add_sparse(self, now: float, sparse: tuple[tuple[int, int], ...], total: float) -> None:
        """Add one interval given as ascending ``(slot, count)`` pairs and its sum, then expire old intervals."""
        if sparse:
            totals = self._totals
            for slot, n in sparse:
                totals[slot] += n
            self._sum += total
            self._count += sum(n for _, n in sparse)
            self._low = min(self._low, sparse[0][0])
            self._high = max(self._high, sparse[-1][0])
            self._intervals.append((now, sparse, total))
        horizon = now - self.window
        while self._intervals and self._intervals[0][0] <= horizon:
            _, expired, expired_sum = self._intervals.popleft()
            for slot, n in expired:
                self._totals[slot] -= n
                self._count -= n
            self._sum -= expired_sum
        if not self._intervals:
            self._sum = 0.0
            self._low, self._high = self._layout.slot_count, -1

    def snapshot(self) -> HistogramSnapshot:
        """The window's content as a snapshot (quantiles, min, max, mean) over its occupied slots only."""
        count = self._count
        if count == 0:
            return HistogramSnapshot(self._layout, (), 0, 0.0)
        totals, low, high = self._totals, self._low, self._high
        while totals[low] == 0:
            low += 1
        while totals[high] == 0:
            high -= 1
        self._low, self._high = low, high
        return HistogramSnapshot(self._layout, tuple(totals[low : high + 1]), count, self._sum, low)


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
