"""Profiling sessions: scope paths per thread and task, exact statistics (and the sketch beyond the cap), failures,
memory with tracemalloc, summaries across sessions, bounded retention, and the exported histogram on /metrics."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from conftest import http_get
from prometheus_client.parser import text_string_to_metric_families

from otel_telemetry import Telemetry
from otel_telemetry.recording.facade import TIMING_BOUNDARIES
from otel_telemetry.recording.profiling import PROFILE_METRIC, SESSION_SCOPE, Profiler, ScopeStats
from otel_telemetry.series import OVERFLOW_VALUE, SeriesRegistry, histogram_cost


@pytest.fixture
def no_tracing() -> Iterator[None]:
    """Memory tests start and end with tracemalloc off (skipped when the run itself traces)."""
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is tracing for the whole run")
    yield
    assert not tracemalloc.is_tracing()


def _scope(stats: tuple[ScopeStats, ...], name: str) -> ScopeStats:
    return next(s for s in stats if s.scope == name)


def test_recorded_values_give_exact_statistics() -> None:
    """count, total, mean, median, p95, p99 (nearest rank), min and max are exact over a session's values."""
    profiler = Profiler()
    with profiler.profile("load_map") as session:
        for value in range(100, 0, -1):
            session.record("parse", value / 1000)
        session.record("pair", 0.001)
        session.record("pair", 0.002)
    assert session.report is not None
    parse = _scope(session.report.scopes, "parse")
    assert (parse.count, parse.failed, parse.exact) == (100, 0, True)
    assert parse.total == pytest.approx(5.05, abs=1e-12)
    assert parse.mean == pytest.approx(0.0505, abs=1e-12)
    assert parse.median == pytest.approx(0.0505, abs=1e-12)  # the mean of the two middle values
    assert (parse.p95, parse.p99, parse.min, parse.max) == (0.095, 0.099, 0.001, 0.1)
    pair = _scope(session.report.scopes, "pair")
    assert (pair.median, pair.p95, pair.p99) == (0.0015, 0.002, 0.002)
    assert session.report.memory is None or session.report.memory.start_bytes >= 0


def test_nested_scopes_are_paths_per_thread() -> None:
    """Nested scopes record ``outer/inner``; a thread started inside a scope begins at the top of its own path."""
    profiler = Profiler()
    with profiler.profile("frame") as session:
        with session.scope("update"):
            with session.scope("physics") as physics:
                pass

            def worker() -> None:
                with session.scope("io"), session.scope("read"):
                    pass

            thread = threading.Thread(target=worker)
            thread.start()
            thread.join(timeout=10)
        with session.scope("update"):
            pass
    assert session.report is not None
    names = {s.scope: s.count for s in session.report.scopes}
    assert names == {"update/physics": 1, "io/read": 1, "io": 1, "update": 2}
    assert physics.elapsed is not None and physics.elapsed >= 0


def test_async_tasks_continue_the_path_without_leaking_it() -> None:
    """A task started inside a scope continues its path; its own scopes do not leak into its siblings."""
    profiler = Profiler()

    async def main() -> None:
        async with profiler.profile("tick") as session:

            async def job(index: int) -> None:
                async with session.scope(f"job{index}"):
                    await asyncio.sleep(0)
                    with session.scope("step"):
                        await asyncio.sleep(0)

            async with session.scope("all"):
                await asyncio.gather(*(job(i) for i in range(3)))
        assert session.report is not None
        assert sorted(s.scope for s in session.report.scopes) == [
            "all", "all/job0", "all/job0/step", "all/job1", "all/job1/step", "all/job2", "all/job2/step",
        ]  # fmt: skip

    asyncio.run(main())


def test_exceptions_propagate_unchanged_and_are_counted_as_failed() -> None:
    """An exception of the profiled code leaves scope and session unchanged; the scope is timed, flagged failed."""
    profiler = Profiler()
    error = KeyError("missing")
    with pytest.raises(KeyError) as raised, profiler.profile("save") as session:
        with session.scope("write"):
            pass
        with session.scope("write"):
            raise error
    assert raised.value is error
    assert session.report is not None and session.report.failed
    write = _scope(session.report.scopes, "write")
    assert (write.count, write.failed) == (2, 1)
    summary = profiler.summary("save")["save"]
    assert (summary.sessions, summary.failed_sessions) == (1, 1)


def test_beyond_the_exact_limit_statistics_come_from_the_sketch_and_are_counted() -> None:
    """Past ``exact_limit`` values a scope's quantiles are within 0.5%; count, total, min and max stay exact."""
    profiler = Profiler(exact_limit=50)
    with profiler.profile("bulk") as session:
        for value in range(1, 201):
            session.record("item", value / 1000)
        session.record("few", 0.5)
    assert session.report is not None
    item = _scope(session.report.scopes, "item")
    assert (item.count, item.exact, item.min, item.max) == (200, False, 0.001, 0.2)
    assert item.total == pytest.approx(20.1)
    assert item.p95 == pytest.approx(0.19, rel=0.005)
    assert item.median == pytest.approx(0.1, rel=0.005)
    assert _scope(session.report.scopes, "few").exact
    assert profiler.approximated == 1


def test_memory_true_starts_tracemalloc_and_stops_it_afterwards(no_tracing: None) -> None:
    """``memory=True`` traces the session (start, end, peak; per-scope allocations) and leaves tracing off."""
    profiler = Profiler()
    with profiler.profile("alloc", memory=True) as session:
        assert tracemalloc.is_tracing()
        with session.scope("buffers"):
            kept = [bytearray(10_000) for _ in range(20)]
        del kept
    assert not tracemalloc.is_tracing()
    assert session.report is not None
    memory = session.report.memory
    assert memory is not None and memory.started_tracing
    assert memory.peak_bytes >= 200_000 + memory.start_bytes
    assert memory.peak_bytes >= memory.end_bytes
    buffers = _scope(session.report.scopes, "buffers")
    assert buffers.allocated_bytes is not None and buffers.allocated_bytes >= 200_000
    assert profiler.summary()["alloc"].peak_bytes == memory.peak_bytes


def test_tracing_already_on_is_used_and_left_on(no_tracing: None) -> None:
    """When tracemalloc already traces, a session measures with it and does not stop it."""
    tracemalloc.start()
    try:
        profiler = Profiler()
        with profiler.profile("traced") as session:
            block = bytearray(100_000)
        del block
        assert tracemalloc.is_tracing()
        assert session.report is not None and session.report.memory is not None
        assert not session.report.memory.started_tracing
        assert session.report.memory.peak_bytes >= session.report.memory.start_bytes + 100_000
    finally:
        tracemalloc.stop()


def test_overlapping_sessions_keep_their_peaks_and_tracing_ends_with_the_last(no_tracing: None) -> None:
    """A session starting inside another resets the peak, yet the outer keeps its own peak; tracing started by
    the outer stays on until the last measuring session ends."""
    profiler = Profiler()
    with profiler.profile("outer", memory=True) as outer:
        big = bytearray(500_000)
        del big
        with profiler.profile("inner") as inner:
            pass
        assert tracemalloc.is_tracing()
    assert not tracemalloc.is_tracing()
    assert outer.report is not None and outer.report.memory is not None
    assert inner.report is not None and inner.report.memory is not None
    assert outer.report.memory.peak_bytes >= 500_000
    assert inner.report.memory.peak_bytes < outer.report.memory.peak_bytes


def test_summary_merges_scopes_and_durations_across_sessions() -> None:
    """``summary()`` has, per session name, sessions run, total and mean duration and scopes merged over all."""
    profiler = Profiler()
    for values in ((0.1, 0.2), (0.3,), (0.4, 0.5, 0.6)):
        with profiler.profile("level") as session:
            for value in values:
                session.record("load", value)
    with profiler.profile("menu"):
        pass
    summaries = profiler.summary()
    assert set(summaries) == {"level", "menu"}
    level = summaries["level"]
    assert level.sessions == 3
    durations = [r.duration for r in profiler.sessions("level")]
    assert level.total_duration == pytest.approx(sum(durations))
    assert level.mean_duration == pytest.approx(sum(durations) / 3)
    assert (level.duration.scope, level.duration.count) == (SESSION_SCOPE, 3)
    (load,) = level.scopes
    assert (load.count, load.min, load.max) == (6, 0.1, 0.6)
    assert load.median == pytest.approx(0.35)
    assert load.mean == pytest.approx(0.35)
    assert profiler.summary("menu").keys() == {"menu"}
    json.dumps({name: s.to_dict() for name, s in summaries.items()})


def test_retention_of_finished_sessions_is_bounded_and_counted() -> None:
    """Only the last ``max_sessions`` reports are kept (oldest first); the dropped ones are counted."""
    profiler = Profiler(max_sessions=3)
    for index in range(5):
        with profiler.profile(f"s{index}"):
            pass
    assert [r.name for r in profiler.sessions()] == ["s2", "s3", "s4"]
    assert profiler.sessions("s3")[0].name == "s3"
    assert profiler.dropped_sessions == 2
    assert profiler.summary()["s0"].sessions == 1  # summaries keep every session


def test_decorator_profiles_each_call_sync_and_async() -> None:
    """``@profiled`` runs each call as a session, keeps the function's name and lets exceptions through."""
    profiler = Profiler()

    @profiler.profiled("compute")
    def compute(x: int) -> int:
        """Doubles."""
        if x < 0:
            raise ValueError("negative")
        return 2 * x

    @profiler.profiled("fetch")
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert compute(2) == 4
    with pytest.raises(ValueError, match="negative"):
        compute(-1)
    assert asyncio.run(fetch(1)) == 2
    assert compute.__name__ == "compute" and compute.__doc__ == "Doubles."
    assert [(r.name, r.failed) for r in profiler.sessions()] == [
        ("compute", False),
        ("compute", True),
        ("fetch", False),
    ]
    with pytest.raises(ValueError, match=r"Profiler\.profiled\.name"):
        profiler.profiled("")


def test_bad_input_inside_profiled_code_never_raises_and_is_counted() -> None:
    """Bad names, bad durations and records after a session ended are dropped and counted, never raised."""
    profiler = Profiler()
    with profiler.profile(None) as odd:  # type: ignore[arg-type]
        odd.record("x", 0.1)
    with profiler.profile("ok") as session:
        with session.scope(""):
            pass
        session.record("x", -1.0)
        session.record("x", math.nan)
        session.record("x", True)
        session.record(SESSION_SCOPE, 0.1)
        with session, session.scope("y"):  # entered twice: ignored, the session goes on
            pass
        session.record("y", 0.2)
    session.record("late", 0.1)
    assert odd.name == "_invalid"
    assert session.report is not None
    assert {s.scope: s.count for s in session.report.scopes} == {"y": 2}
    assert session.report.rejected == 5
    assert profiler.rejected == 8
    assert profiler.errors == 0
    with pytest.raises(ValueError, match=r"Profiler\.max_sessions"):
        Profiler(max_sessions=0)


def test_records_from_many_threads_are_all_counted() -> None:
    """Four threads recording into one session (bounded loops) lose no value."""
    profiler = Profiler()
    with profiler.profile("parallel") as session:

        def work() -> None:
            for _ in range(500):
                session.record("job", 0.001)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert session.report is not None
    assert _scope(session.report.scopes, "job").count == 2000
    assert profiler.summary()["parallel"].scopes[0].count == 2000


def test_names_and_scopes_beyond_their_limits_go_to_overflow() -> None:
    """Past ``name_limit`` names and ``scope_limit`` scope paths per name, values are kept under ``_overflow``."""
    profiler = Profiler(name_limit=2, scope_limit=2)
    for name in ("a", "b", "c", "d"):
        with profiler.profile(name) as session:
            for scope in ("s1", "s2", "s3", "s4"):
                session.record(scope, 0.1)
    summary = profiler.summary()
    assert set(summary) == {"a", "b", OVERFLOW_VALUE}
    assert summary[OVERFLOW_VALUE].sessions == 2
    assert {s.scope: s.count for s in summary["a"].scopes} == {"s1": 1, "s2": 1, OVERFLOW_VALUE: 2}
    assert profiler.sessions()[-1].name == "d"


def test_series_beyond_the_budget_stay_in_process_and_are_counted() -> None:
    """Each exported (session, scope) series is admitted by the budget; refused ones are summarised only."""
    cost = histogram_cost(len(TIMING_BOUNDARIES))
    series = SeriesRegistry(budget=2 * cost)
    profiler = Profiler(series=series)
    with profiler.profile("budget") as session:
        session.record("one", 0.1)
        session.record("two", 0.1)
    assert profiler.unexported == 1  # (session) came last, the budget was spent
    assert series.refused_series == 1
    assert {dict(s.key.attributes)["scope"] for s in profiler.histograms()} == {"one", "two"}
    assert profiler.summary()["budget"].duration.count == 1


def test_a_refused_metric_name_exports_nothing() -> None:
    """When ``profile.duration`` cannot get its name (already another family's), histograms() is empty."""
    series = SeriesRegistry()
    assert series.claim("profile_duration", "s", "gauge", "someone") is not None
    profiler = Profiler(series=series)
    with profiler.profile("x") as session:
        session.record("y", 0.1)
    assert not profiler.exported
    assert profiler.histograms() == []
    assert profiler.summary()["x"].scopes[0].count == 1


def test_the_session_scope_is_the_one_of_the_reports() -> None:
    """profiling repeats profile_reports' SESSION_SCOPE (that module loads with the first session): they agree, and
    the report types profiling re-exports are profile_reports' own."""
    from otel_telemetry.recording import profile_reports, profiling

    assert SESSION_SCOPE == profile_reports.SESSION_SCOPE
    for name in ("MemoryUsage", "ProfileSummary", "ScopeStats", "SessionReport"):
        assert getattr(profiling, name) is getattr(profile_reports, name), name
        assert name in dir(profiling)


def test_exported_histogram_reaches_metrics_with_session_and_scope_labels(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    """On a real handle's /metrics, ``profile_duration_seconds`` has one series per session and scope (the whole
    session under scope ``(session)``) with the facade's timing buckets and exact counts."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)
    for _ in range(3):
        with telemetry.profile("load_map") as session:
            session.record("parse", 0.02)
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    status, _headers, body = http_get(telemetry.prometheus_url)
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    family = families["profile_duration_seconds"]
    assert family.type == "histogram" and PROFILE_METRIC == "profile.duration"
    counts = {(s.labels["session"], s.labels["scope"]): s.value for s in family.samples if s.name.endswith("_count")}
    assert counts == {("load_map", "parse"): 3, ("load_map", SESSION_SCOPE): 3}
    bounds = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket") and s.labels["scope"] == "parse"]
    assert bounds == [*(str(b) for b in TIMING_BOUNDARIES), "+Inf"]
    parse_sum = next(s.value for s in family.samples if s.name.endswith("_sum") and s.labels["scope"] == "parse")
    assert parse_sum == pytest.approx(0.06)
