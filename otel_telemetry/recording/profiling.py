"""Profiling sessions: timed scopes, their statistics, memory use, summaries across sessions, and a histogram.

``with profiler.profile("load_map") as session:`` runs one session; inside it ``with session.scope("parse"):``
times a scope (nested scopes are paths: ``parse/tokens``), and ``session.record("io", seconds)`` adds a value
measured elsewhere. A scope's path is kept in a context variable of its session, so it is per thread and per
asyncio task (a task started inside a scope continues its path; a new thread starts at the top).
``@profiler.profiled("name")`` runs every call of a function (sync or async) as one session.

Statistics
----------
When a session ends its :class:`SessionReport` holds, per scope, :class:`ScopeStats` in seconds: count, total, mean,
median (the mean of the two middle values for an even count), p95 and p99 (nearest rank), min and max, all exact
over the session's values while a scope has at most ``exact_limit`` of them (kept as 8-byte floats). Beyond it the
scope's values go to a log-grid sketch (:class:`~otel_telemetry.accumulators.HistogramSeries`): count, total, mean,
min and max stay exact, the quantiles are within 0.5%; ``exact`` is then False and the scope is counted in
:attr:`Profiler.approximated`. :meth:`Profiler.summary` merges every session of a name since the profiler started:
sessions run and failed, total and mean duration, the duration statistics (scope :data:`SESSION_SCOPE`) and
per-scope statistics, exact for the first 1,000 values of a scope, then from the exported sketch (within 0.5%).
:meth:`Profiler.sessions` returns the last ``max_sessions`` reports; older ones are dropped and counted in
:attr:`Profiler.dropped_sessions`. (The report types and their arithmetic live in
:mod:`otel_telemetry.recording.profile_reports`, which loads with the first session: with it come ``tracemalloc``
and ``pickle``, some 9 ms of import that a handle which never profiles does not pay.)

A scope whose block raised is still timed and counted in its ``failed``; a session whose block raised has
``failed`` set. Exceptions of the profiled code propagate unchanged.

Memory
------
When ``tracemalloc`` is tracing at the start of a session, or ``profile(name, memory=True)`` starts it, the
report's :class:`MemoryUsage` has the traced bytes at start and end and the peak during the session, and each
scope's ``allocated_bytes`` sums the change of traced bytes over its runs. Traced memory is process-wide: other
threads' allocations count too. To know each session's peak, ``tracemalloc.reset_peak()`` is called when a session
starts (the peaks of the other sessions running are carried over first), so code of your own that reads
``tracemalloc``'s peak sees it reset. A session that started tracing stops it when the last session measuring
memory ends (a session entered and never left keeps it on); tracing stopped by someone else meanwhile
leaves that session's memory None.

Export
------
:meth:`Profiler.histograms` returns the cumulative series in the shape of ``MetricsFacade.histograms()``, for
``producer.add_source(profiler.histograms)``: the histogram :data:`PROFILE_METRIC` (``profile_duration_seconds``
on ``/metrics``, unit ``s``, the facade's timing buckets) with attributes ``session`` and ``scope``; the whole
session is the scope ``(session)`` (an empty label would mean "no label" to Prometheus). Each series is admitted
by the series registry (24 series with the buckets); one the budget refuses stays in process (summaries keep it)
and is counted in :attr:`Profiler.unexported`. At most ``name_limit`` session names and ``scope_limit`` scope
paths per name are kept; later ones are recorded under ``_overflow``.

Failures
--------
``profile``, ``scope`` and ``record`` run inside the profiled code and never raise: bad input (a name that is not a
non-empty string, a negative or non-finite duration, a record outside an open session) is dropped and counted in
:attr:`Profiler.rejected`, an internal failure in :attr:`Profiler.errors` (each logged once). The constructor and
``profiled`` are setup and raise ``ValueError``. Thread-safety: every method may be called from any thread.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, cast

from otel_telemetry._lazy import lazy_names
from otel_telemetry.accumulators import HistogramSeries, HistogramState, SeriesKey
from otel_telemetry.catalog import Instrument, MetricSpec, Section
from otel_telemetry.recording.facade import TIMING_BOUNDARIES
from otel_telemetry.series import OVERFLOW_VALUE, SeriesRegistry, describe, histogram_cost

if TYPE_CHECKING:
    from otel_telemetry.recording.profile_reports import (
        MemoryUsage,
        ProfileSummary,
        Samples,
        ScopeStats,
        SessionReport,
    )

__all__ = [
    "PROFILE_METRIC",
    "SESSION_SCOPE",
    "MemoryUsage",
    "ProfileScope",
    "ProfileSession",
    "ProfileSummary",
    "Profiler",
    "ScopeStats",
    "SessionReport",
]

#: The report types, defined in profile_reports and loaded from there on first use (see :func:`_load_reports`).
__getattr__, __dir__ = lazy_names(
    __name__,
    globals(),
    dict.fromkeys(
        ("MemoryUsage", "ProfileSummary", "ScopeStats", "SessionReport"), "otel_telemetry.recording.profile_reports"
    ),
    __all__,
)

_logger = logging.getLogger(__name__)
_P = ParamSpec("_P")
_R = TypeVar("_R")

#: The exported histogram (OpenTelemetry name; ``profile_duration_seconds`` on ``/metrics``).
PROFILE_METRIC = "profile.duration"
#: The ``scope`` of a whole session's duration: ``profile_reports.SESSION_SCOPE``, repeated here since that module
#: loads with the first session only and a scope's exit compares with it (a test pins the two equal).
SESSION_SCOPE = "(session)"
_SUMMARY_EXACT = 1000
_NAME_CHARS = 128
_OWNER = "profiler"


_SPEC = MetricSpec(
    id=PROFILE_METRIC,
    name=PROFILE_METRIC,
    instrument=Instrument.HISTOGRAM,
    unit="s",
    description='Durations of profiling sessions (scope "(session)") and of their scopes',
    section=Section.PERFORMANCE,
    group="Profiling",
    documented="Performance session recording and profile scopes",
    prometheus_name="profile_duration_seconds",
    attributes=("session", "scope"),
    boundaries=TIMING_BOUNDARIES,
    spec_bullet=False,
)


def _load_reports() -> None:
    """Import profile_reports on the thread that asks for a session (or decorates with ``profiled``): a session's
    scopes and its end may run on any thread, and a module first imported there would hold the GIL for
    milliseconds. Every later ``from ... import`` of it in this module is a look-up in ``sys.modules``."""
    import otel_telemetry.recording.profile_reports  # noqa: F401


class _Aggregate:
    """One (session name, scope) across sessions: exported sketch, summary samples, export state."""

    __slots__ = ("exported", "key", "samples", "series", "started")

    def __init__(self, name: str, scope: str, exported: bool) -> None:
        from otel_telemetry.recording.profile_reports import LAYOUT, Samples  # loaded with the session

        self.series = HistogramSeries(LAYOUT, (("scope", scope), ("session", name)))
        self.samples = Samples(_SUMMARY_EXACT, self.series)
        self.key = SeriesKey(PROFILE_METRIC, self.series.attributes)
        self.exported = exported
        self.started = time.time()


class _NameAggregate:
    __slots__ = ("failed", "peak", "scopes", "sessions", "total")

    def __init__(self) -> None:
        self.sessions = 0
        self.failed = 0
        self.total = 0.0
        self.peak: int | None = None
        self.scopes: dict[str, _Aggregate] = {}


class ProfileScope:
    """Times one block of a session as one scope (``with``/``async with``), from :meth:`ProfileSession.scope`.

    Each call of ``scope()`` gives a fresh one: use it for one block at a time. :attr:`elapsed` is the block's
    duration in seconds once it ended. Never raises into the block.
    """

    __slots__ = ("_began", "_memory", "_path", "_session", "_token", "elapsed")

    def __init__(self, session: ProfileSession | None, name: str) -> None:
        self._session = session
        self._path = name
        self._token: Token[str] | None = None
        self._began = 0.0
        self._memory: int | None = None
        #: Seconds the block took, or None when it was not measured.
        self.elapsed: float | None = None

    def __enter__(self) -> Self:
        session = self._session
        if session is not None:
            try:
                parent = session._path.get()
                if parent:
                    self._path = f"{parent}/{self._path}"
                self._token = session._path.set(self._path)
                if session._memory_start is not None:
                    import tracemalloc  # loaded with the session (profile_reports)

                    if tracemalloc.is_tracing():
                        self._memory = tracemalloc.get_traced_memory()[0]
            except Exception:
                session._profiler._error("scope")
            self._began = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session = self._session
        if session is None:
            return
        elapsed = self.elapsed = time.perf_counter() - self._began
        try:
            allocated = None
            if self._memory is not None:
                import tracemalloc  # loaded with the session (profile_reports)

                if tracemalloc.is_tracing():
                    allocated = tracemalloc.get_traced_memory()[0] - self._memory
            session._add(self._path, elapsed, exc_type is not None, allocated)
        except Exception:
            session._profiler._error("scope")
        try:
            if self._token is not None:
                session._path.reset(self._token)
        except ValueError:  # entered in another context (task) than this exit's: that context keeps its path
            session._profiler._error("scope")

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= _NAME_CHARS


class ProfileSession:
    """One profiling session (from :meth:`Profiler.profile`): a context manager (``with``/``async with``) entered
    once. Its scopes and records may come from any thread or task while it is open; :attr:`report` is set when it
    ends. Never raises into the profiled code.
    """

    def __init__(self, profiler: Profiler, name: str, memory: bool) -> None:
        _load_reports()
        self._profiler = profiler
        #: The session's name.
        self.name = name
        self._want_memory = memory
        self._label = name
        self._lock = threading.Lock()
        self._scopes: dict[str, Samples] = {}
        self._open = False
        self._started_at = 0.0
        self._began = 0.0
        self._memory_start: tuple[int, bool] | None = None
        self._rejected = 0
        self._reentered = 0  # rejected nested entries, whose exits are ignored
        self._path: ContextVar[str] = ContextVar(f"otel_telemetry.profile.{id(self)}", default="")
        #: The finished session's report (None until it ends).
        self.report: SessionReport | None = None

    def __enter__(self) -> Self:
        try:
            if self.report is not None or self._open:
                self._reentered += self._open
                self._profiler._reject("profile", "a session entered twice")
                return self
            from otel_telemetry.recording.profile_reports import MEMORY  # loaded with the session

            self._label = self._profiler._name_label(self.name)
            self._memory_start = MEMORY.begin(self, self._want_memory)
        except Exception:
            self._profiler._error("profile")
        self._started_at = time.time()
        self._open = True
        self._began = time.perf_counter()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        duration = time.perf_counter() - self._began
        if self._reentered:
            self._reentered -= 1
            return
        if not self._open:
            return
        try:
            from otel_telemetry.recording.profile_reports import MEMORY, MemoryUsage, SessionReport  # with the session

            memory = None
            if self._memory_start is not None:
                ended = MEMORY.end(self)
                if ended is not None:
                    start, started = self._memory_start
                    memory = MemoryUsage(start, ended[0], ended[1], started)
            with self._lock:
                self._open = False
                scopes = tuple(samples.stats(path) for path, samples in self._scopes.items())
                rejected = self._rejected
            self.report = SessionReport(
                self.name, self._started_at, duration, exc_type is not None, scopes, memory, rejected
            )
            self._profiler._finish(self, self.report)
        except Exception:
            self._open = False
            self._profiler._error("profile")

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def scope(self, name: str) -> ProfileScope:
        """A context manager timing one block as scope ``name`` (a path under the enclosing scope of this
        session in the same thread or task). Never raises; a bad name is counted and times nothing."""
        if not _valid_name(name):
            self._reject("scope", name)
            return ProfileScope(None, "")
        return ProfileScope(self, name)

    def record(self, scope: str, seconds: float) -> None:
        """Add ``seconds`` (finite, >= 0) measured elsewhere to scope path ``scope`` (as given, not under the
        current scope). Never raises; bad input is counted."""
        try:
            if not _valid_name(scope) or scope == SESSION_SCOPE:
                self._reject("record", scope)
            elif isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
                self._reject("record", seconds)
            else:
                self._add(scope, float(seconds), False, None)
        except Exception:
            self._profiler._error("record")

    def _reject(self, call: str, value: object) -> None:
        with self._lock:
            self._rejected += 1
        self._profiler._reject(call, value)

    def _add(self, path: str, seconds: float, failed: bool, allocated: int | None) -> None:
        if path == SESSION_SCOPE:
            path = f"{path}_"  # a user scope never reads as the whole session
        profiler = self._profiler
        with self._lock:  # the profiler's lock is taken inside this one, never the other way round
            closed = not self._open
            if closed:
                self._rejected += 1
            else:
                label = profiler._scope(self._label, path, seconds, failed, allocated)
                samples = self._scopes.get(label)
                if samples is None:
                    from otel_telemetry.recording.profile_reports import Samples  # loaded with the session

                    samples = self._scopes[label] = Samples(profiler.exact_limit)
                if samples.add(seconds, failed, allocated):
                    profiler._count("approximated")
        if closed:
            profiler._reject("scope", f"{path!r} outside its open session")


class Profiler:
    """Profiling sessions of one telemetry handle, their reports, summaries and exported histogram.

    Args:
        series: the handle's :class:`~otel_telemetry.series.SeriesRegistry` (namespace and series budget); None
            gives the profiler a registry of its own.
        max_sessions: finished reports kept for :meth:`sessions` (older ones dropped, counted).
        exact_limit: values per scope and session kept exactly (beyond: sketch, quantiles within 0.5%).
        name_limit: distinct session names kept; later ones are summarised and exported as ``_overflow``.
        scope_limit: distinct scope paths per session name; later ones as ``_overflow``.

    Raises:
        ValueError: on a limit that is not a positive integer.

    Thread-safety: every method may be called from any thread.
    """

    def __init__(
        self,
        *,
        series: SeriesRegistry | None = None,
        max_sessions: int = 100,
        exact_limit: int = 10_000,
        name_limit: int = 100,
        scope_limit: int = 100,
    ) -> None:
        for field, value in (
            ("max_sessions", max_sessions),
            ("exact_limit", exact_limit),
            ("name_limit", name_limit),
            ("scope_limit", scope_limit),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Profiler.{field}: must be a positive integer, got {describe(value)}")
        self.series = series if series is not None else SeriesRegistry()
        self.exact_limit = exact_limit
        self.name_limit = name_limit
        self.scope_limit = scope_limit
        self._lock = threading.Lock()
        self._names: dict[str, _NameAggregate] = {}
        self._reports: deque[SessionReport] = deque(maxlen=max_sessions)
        self._counts = {"dropped_sessions": 0, "approximated": 0, "unexported": 0, "rejected": 0, "errors": 0}
        self._warned: set[str] = set()
        self._cost = histogram_cost(len(TIMING_BOUNDARIES))
        #: Whether :data:`PROFILE_METRIC` got its name in the series registry (False: nothing is exported).
        self.exported = self.series.claim(PROFILE_METRIC, "s", "histogram", _OWNER) is not None

    # -- counts -----------------------------------------------------------------------------------------------
    @property
    def dropped_sessions(self) -> int:
        """Finished reports dropped from :meth:`sessions` because ``max_sessions`` newer ones were kept. Exact."""
        return self._counts["dropped_sessions"]

    @property
    def approximated(self) -> int:
        """Session scopes whose statistics became approximate (more than ``exact_limit`` values). Exact."""
        return self._counts["approximated"]

    @property
    def unexported(self) -> int:
        """(session, scope) series kept in process only: refused by the series budget. Exact."""
        return self._counts["unexported"]

    @property
    def rejected(self) -> int:
        """Dropped ``profile``/``scope``/``record`` calls (bad input, a record after its session ended). Exact."""
        return self._counts["rejected"]

    @property
    def errors(self) -> int:
        """Internal failures contained (logged once per call kind). Exact."""
        return self._counts["errors"]

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def _once(self, key: str) -> bool:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
            return first

    def _reject(self, call: str, value: object) -> None:
        self._count("rejected")
        if self._once("reject:" + call):
            _logger.warning("Profiler.%s: dropped %s (logged once; counted in rejected)", call, describe(value))

    def _error(self, call: str) -> None:
        self._count("errors")
        if self._once("error:" + call):
            _logger.exception("Profiler.%s failed; the profiled code goes on (logged once; counted in errors)", call)

    # -- sessions ---------------------------------------------------------------------------------------------
    def profile(self, name: str, *, memory: bool = False) -> ProfileSession:
        """A new session named ``name``; ``with`` (or ``async with``) runs it. ``memory=True`` starts
        ``tracemalloc`` for it when not tracing (stopped again afterwards). Never raises: a bad name is counted
        and the session is kept under ``_invalid``."""
        if not _valid_name(name):
            self._reject("profile", name)
            name = "_invalid"
        return ProfileSession(self, name, bool(memory))

    def profiled(self, name: str, *, memory: bool = False) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
        """A decorator running every call of a function (sync or async) as one session ``name``.

        Raises:
            ValueError: on a name that is not a non-empty string of at most 128 characters.
        """
        if not _valid_name(name):
            raise ValueError(f"Profiler.profiled.name: must be a non-empty string (<= 128), got {describe(name)}")
        _load_reports()  # now, on the decorating thread: the first call may run on any thread

        def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
            if inspect.iscoroutinefunction(function):
                coroutine = cast(Callable[_P, Awaitable[Any]], function)

                @functools.wraps(function)
                async def run_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                    async with self.profile(name, memory=memory):
                        return await coroutine(*args, **kwargs)

                return cast(Callable[_P, _R], run_async)

            @functools.wraps(function)
            def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
                with self.profile(name, memory=memory):
                    return function(*args, **kwargs)

            return run

        return decorate

    def _name_label(self, name: str) -> str:
        """``name``, admitted now when new and within ``name_limit``; else ``_overflow``."""
        with self._lock:
            if name in self._names or len(self._names) < self.name_limit:
                self._names_of(name)
                return name
        return OVERFLOW_VALUE

    def _aggregate(self, names: _NameAggregate, label: str, scope: str) -> tuple[str, _Aggregate]:
        """The aggregate of ``scope`` (created, or ``_overflow``); call under ``_lock``."""
        found = names.scopes.get(scope)
        if found is not None:
            return scope, found
        scopes = names.scopes
        kept = len(scopes) - (SESSION_SCOPE in scopes) - (OVERFLOW_VALUE in scopes)
        if kept >= self.scope_limit and scope != SESSION_SCOPE:
            scope = OVERFLOW_VALUE
            found = names.scopes.get(scope)
            if found is not None:
                return scope, found
            self.series.reserve(self._cost, _OWNER)  # the one overflow series of a name: always admitted
            exported = self.exported
        else:
            exported = self.exported and self.series.admit(self._cost, _OWNER)
            if self.exported and not exported:
                self._counts["unexported"] += 1
        found = names.scopes[scope] = _Aggregate(label, scope, exported)
        return scope, found

    def _names_of(self, label: str) -> _NameAggregate:
        names = self._names.get(label)
        if names is None:
            names = self._names[label] = _NameAggregate()
        return names

    def _scope(self, label: str, scope: str, seconds: float, failed: bool, allocated: int | None) -> str:
        """Record one scope value in the summary and the export; the scope's label (``_overflow`` past the
        limit)."""
        with self._lock:
            scope, aggregate = self._aggregate(self._names_of(label), label, scope)
            aggregate.samples.add(seconds, failed, allocated)
        aggregate.series.record(seconds)
        return scope

    def _finish(self, session: ProfileSession, report: SessionReport) -> None:
        memory = report.memory
        with self._lock:
            names = self._names_of(session._label)
            names.sessions += 1
            names.failed += report.failed
            names.total += report.duration
            if memory is not None:
                names.peak = max(names.peak or 0, memory.peak_bytes)
            _, aggregate = self._aggregate(names, session._label, SESSION_SCOPE)
            aggregate.samples.add(report.duration, report.failed, None)
            if len(self._reports) == self._reports.maxlen:
                self._counts["dropped_sessions"] += 1
            self._reports.append(report)
        aggregate.series.record(report.duration)

    # -- reading ----------------------------------------------------------------------------------------------
    def sessions(self, name: str | None = None) -> list[SessionReport]:
        """The kept reports (of ``name``, or all), oldest first."""
        with self._lock:
            return [r for r in self._reports if name is None or r.name == name]

    def summary(self, name: str | None = None) -> dict[str, ProfileSummary]:
        """Per session name (``name`` only, when given), every session since the profiler started; names with no
        finished session yet are left out."""
        from otel_telemetry.recording.profile_reports import ProfileSummary  # loaded with the first session

        with self._lock:
            found: dict[str, ProfileSummary] = {}
            for label, names in self._names.items():
                whole = names.scopes.get(SESSION_SCOPE)
                if (name is not None and label != name) or whole is None:
                    continue
                scopes = tuple(a.samples.stats(s) for s, a in names.scopes.items() if s != SESSION_SCOPE)
                found[label] = ProfileSummary(
                    label, names.sessions, names.failed, names.total, names.total / names.sessions,
                    whole.samples.stats(SESSION_SCOPE), scopes, names.peak,
                )  # fmt: skip
            return found

    def histograms(self) -> list[HistogramState]:
        """Every exported (session, scope) series as :class:`~otel_telemetry.accumulators.HistogramState`, for
        ``producer.add_source(profiler.histograms)``: cumulative since each series started (the profiler keeps no
        sliding window: ``window`` is the cumulative state too). Thread-safe; never raises (a failure is counted
        in :attr:`errors` and returns what was read)."""
        with self._lock:
            aggregates = [a for names in self._names.values() for a in names.scopes.values() if a.exported]
        states: list[HistogramState] = []
        try:
            for aggregate in aggregates:
                snapshot = aggregate.series.snapshot()
                states.append(HistogramState(_SPEC, aggregate.key, snapshot, snapshot, aggregate.started))
        except Exception:
            self._error("histograms")
        return states
