"""The reports of :mod:`otel_telemetry.recording.profiling`, how their statistics are computed, and the
process-wide ``tracemalloc`` bookkeeping its sessions share.

:class:`ScopeStats`, :class:`MemoryUsage`, :class:`SessionReport` and :class:`ProfileSummary` are frozen
dataclasses with ``to_dict()`` (JSON-ready). :class:`Samples` keeps one scope's durations exactly (8-byte floats)
up to a limit, then in a log-grid sketch (quantiles within 0.5%; count, total, min and max stay exact).
:data:`MEMORY` is the one :class:`MemoryTracker` of the process: ``tracemalloc`` is process-wide, so every profiler
shares it.
"""

from __future__ import annotations

import math
import threading
import tracemalloc
from array import array
from dataclasses import dataclass, fields
from typing import Any, cast

from otel_telemetry.accumulators import HistogramLayout, HistogramSeries
from otel_telemetry.recording.facade import TIMING_BOUNDARIES

__all__ = [
    "LAYOUT",
    "MEMORY",
    "SESSION_SCOPE",
    "MemoryTracker",
    "MemoryUsage",
    "ProfileSummary",
    "Samples",
    "ScopeStats",
    "SessionReport",
]

#: The layout of the sketches (and of the exported histogram): the facade's timing buckets, in seconds.
LAYOUT = HistogramLayout(TIMING_BOUNDARIES)
#: The ``scope`` of a whole session's duration (also ``profiling.SESSION_SCOPE``).
SESSION_SCOPE = "(session)"


class _Dict:
    """``to_dict()`` for the report dataclasses: their fields, nested reports as dicts, tuples as lists."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the fields."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, _Dict):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [v.to_dict() if isinstance(v, _Dict) else v for v in value]
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class ScopeStats(_Dict):
    """Statistics of one scope's durations, in seconds. Immutable.

    ``exact`` is False when the quantiles come from the log-grid sketch (within 0.5%; count, total, mean, min and
    max are exact either way). ``failed`` counts runs whose block raised. ``allocated_bytes`` sums the change of
    traced memory over the runs (None when memory was not traced).
    """

    scope: str
    count: int
    failed: int
    total: float
    mean: float
    median: float
    p95: float
    p99: float
    min: float
    max: float
    exact: bool
    allocated_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class MemoryUsage(_Dict):
    """Traced memory of one session (``tracemalloc``, bytes, process-wide). Immutable.

    ``started_tracing``: this session turned tracing on (and it was turned off when no session needed it).
    """

    start_bytes: int
    end_bytes: int
    peak_bytes: int
    started_tracing: bool

    @property
    def allocated_bytes(self) -> int:
        """Traced bytes at the end minus at the start (negative when memory was freed)."""
        return self.end_bytes - self.start_bytes


@dataclass(frozen=True, slots=True)
class SessionReport(_Dict):
    """One finished session. Immutable.

    Attributes:
        name: the session's name (as given; summaries and the export use ``_overflow`` past ``name_limit``).
        started_at: Unix time of the start, seconds.
        duration: seconds from start to end (``time.perf_counter``).
        failed: the session's block raised.
        scopes: per scope path, in the order their first run ended.
        memory: traced memory, or None when memory was not traced.
        rejected: ``record``/``scope`` calls of this session that were dropped (bad input, or after its end).
    """

    name: str
    started_at: float
    duration: float
    failed: bool
    scopes: tuple[ScopeStats, ...]
    memory: MemoryUsage | None
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class ProfileSummary(_Dict):
    """Every session of one name since the profiler started. Immutable.

    ``duration`` has the statistics of the sessions' durations (scope :data:`SESSION_SCOPE`); ``scopes`` the
    per-scope statistics merged over all sessions; ``peak_bytes`` the highest traced peak of any session (None when
    no session traced memory). Seconds and bytes.
    """

    name: str
    sessions: int
    failed_sessions: int
    total_duration: float
    mean_duration: float
    duration: ScopeStats
    scopes: tuple[ScopeStats, ...]
    peak_bytes: int | None


class Samples:
    """One scope's durations: exact (an array) up to ``limit``, then a sketch (its own, or ``sketch``: one the
    caller records every value into itself). Not thread-safe: call under the owner's lock."""

    __slots__ = ("allocated", "count", "failed", "limit", "owned", "sketch", "values")

    def __init__(self, limit: int, sketch: HistogramSeries | None = None) -> None:
        self.values: array[float] | None = array("d")
        self.limit = limit
        self.owned = sketch is None  # else the caller records every value into the shared sketch itself
        self.sketch = sketch
        self.count = 0
        self.failed = 0
        self.allocated: int | None = None

    def add(self, seconds: float, failed: bool, allocated: int | None) -> bool:
        """Add one value; True when this value made the scope approximate."""
        self.count += 1
        self.failed += failed
        if allocated is not None:
            self.allocated = (self.allocated or 0) + allocated
        values = self.values
        if values is None:
            if self.owned:
                cast(HistogramSeries, self.sketch).record(seconds)
            return False
        if len(values) < self.limit:
            values.append(seconds)
            return False
        if self.owned:
            sketch = self.sketch = HistogramSeries(LAYOUT)
            for value in values:
                sketch.record(value)
            sketch.record(seconds)
        self.values = None
        return True

    def stats(self, scope: str) -> ScopeStats:
        """The statistics so far, as scope ``scope`` (call after at least one :meth:`add`)."""
        values = self.values
        if values is not None:
            ordered = sorted(values)
            n = len(ordered)
            mid = n // 2
            total = math.fsum(ordered)

            def rank(q: float) -> float:
                return ordered[max(1, math.ceil(q * n)) - 1]

            median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
            return ScopeStats(
                scope, n, self.failed, total, total / n, median, rank(0.95), rank(0.99), ordered[0], ordered[-1],
                True, self.allocated,
            )  # fmt: skip
        snap = cast(HistogramSeries, self.sketch).snapshot()
        q = snap.quantile
        return ScopeStats(
            scope, snap.count, self.failed, snap.sum, snap.sum / snap.count, cast(float, q(0.5)),
            cast(float, q(0.95)), cast(float, q(0.99)), cast(float, snap.min()), cast(float, snap.max()), False,
            self.allocated,
        )  # fmt: skip


class MemoryTracker:
    """Process-wide: which sessions measure traced memory, their peaks across ``reset_peak`` calls, and whether
    tracing was started here (stopped again when the last measuring session ends). Thread-safe (one lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[object, int] = {}  # session -> its peak so far
        self._started_here = False

    def begin(self, session: object, start: bool) -> tuple[int, bool] | None:
        """Start measuring ``session``: (traced bytes now, whether tracing was started now), or None."""
        with self._lock:
            started = False
            if not tracemalloc.is_tracing():
                if not start:
                    return None
                tracemalloc.start()
                self._started_here = started = True
            current, peak = tracemalloc.get_traced_memory()
            for other, known in self._active.items():
                self._active[other] = max(known, peak)
            tracemalloc.reset_peak()
            self._active[session] = current
            return current, started

    def end(self, session: object) -> tuple[int, int] | None:
        """Stop measuring ``session``: (traced bytes now, peak since its start), or None when tracing stopped."""
        with self._lock:
            known = self._active.pop(session, 0)
            result = None
            if tracemalloc.is_tracing():
                current, peak = tracemalloc.get_traced_memory()
                result = (current, max(known, peak, current))
            if not self._active and self._started_here:
                self._started_here = False
                tracemalloc.stop()
            return result


#: The process's one tracker.
MEMORY = MemoryTracker()
