"""Tests for otel_telemetry.recording.tracing: @traced and timer against real SDK tracer and meter providers.

Module-level forms record into the process default; handle-level forms (``HandlerTelemetry.traced``/``timer``,
wired as ``Telemetry.traced``/``timer``) into their own handle only.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import threading
import timeit
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_telemetry import Telemetry
from otel_telemetry.recording.tracing import (
    HANDLER_DURATION,
    HANDLER_ERRORS,
    HANDLER_REQUESTS,
    TIMER_DURATION,
    HandlerTelemetry,
    bind_handler_telemetry,
    bound_handler_telemetry,
    claim_default,
    release_default,
    timer,
    traced,
)


@dataclass
class Rig:
    """A bound HandlerTelemetry with the in-memory exporter and reader behind it."""

    telemetry: HandlerTelemetry
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished(self) -> Sequence[ReadableSpan]:
        return self.spans.get_finished_spans()

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def histogram(self, name: str, **attributes: str) -> HistogramDataPoint:
        matches = [p for p in self.points(name) if dict(p.attributes) == attributes]
        assert len(matches) == 1, (name, attributes, [dict(p.attributes) for p in self.points(name)])
        point = matches[0]
        assert isinstance(point, HistogramDataPoint)
        return point

    def counter(self, name: str, **attributes: str) -> float:
        matches = [p for p in self.points(name) if dict(p.attributes) == attributes]
        assert len(matches) == 1, (name, attributes, [dict(p.attributes) for p in self.points(name)])
        point = matches[0]
        assert isinstance(point, NumberDataPoint)
        return point.value


@pytest.fixture
def providers() -> Iterator[tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]]:
    """Fresh SDK providers with in-memory export, shut down afterwards."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield tracer_provider, spans, meter_provider, reader
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def rig(
    providers: tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader],
) -> Iterator[Rig]:
    """HandlerTelemetry on the fresh providers, bound for the test and unbound afterwards."""
    tracer_provider, spans, meter_provider, reader = providers
    telemetry = HandlerTelemetry(tracer_provider.get_tracer("test"), meter_provider.get_meter("test"))
    bind_handler_telemetry(telemetry)
    yield Rig(telemetry, spans, reader)
    bind_handler_telemetry(None)


@pytest.fixture
def unbound() -> Iterator[None]:
    """Make sure nothing is bound during the test."""
    bind_handler_telemetry(None)
    yield
    bind_handler_telemetry(None)


# -- handlers under test, decorated at import time as in a game server ------------------------------------------
@traced
def move_player(player_id: int, dx: float = 0.0, *, dy: float = 0.0) -> tuple[int, float, float]:
    """Move a player."""
    return player_id, dx, dy


@traced()
def empty_parentheses() -> str:
    return "ok"


@traced("custom.name")
def positional_name() -> str:
    return "ok"


@traced(name="keyword.name", attributes={"zone": "north"})
def keyword_name() -> str:
    return "ok"


@traced
async def load_map(name: str, *, delay: float = 0.0) -> str:
    """Load a map."""
    await asyncio.sleep(delay)
    return name.upper()


class KickError(RuntimeError):
    pass


_KICK_ERROR = KickError("player 7 is afk")


@traced
def kick(player_id: int) -> None:
    raise _KICK_ERROR


@traced
async def kick_later(player_id: int) -> None:
    await asyncio.sleep(0)
    raise _KICK_ERROR


class Lobby:
    def __init__(self) -> None:
        self.players: list[int] = []

    @traced
    def join(self, player_id: int) -> int:
        self.players.append(player_id)
        return len(self.players)

    @traced
    async def leave(self, player_id: int) -> int:
        self.players.remove(player_id)
        return len(self.players)

    @traced
    @staticmethod
    def capacity() -> int:
        return 64

    @classmethod
    @traced
    def create(cls) -> Lobby:
        return cls()


@traced
def outer() -> str:
    return inner()


@traced
def inner() -> str:
    return "deep"


# -- spans and metrics ------------------------------------------------------------------------------------------
def test_sync_handler_records_span_duration_and_request(rig: Rig) -> None:
    """A sync handler gets a span named after its qualified name and records duration and one request."""
    assert move_player(7, 1.5, dy=2.0) == (7, 1.5, 2.0)
    (span,) = rig.finished()
    name = "move_player"
    assert span.name == name
    assert span.status.status_code is StatusCode.UNSET
    duration = rig.histogram(HANDLER_DURATION, handler=name)
    assert duration.count == 1 and 0 < duration.sum < 1.0
    assert rig.counter(HANDLER_REQUESTS, handler=name) == 1
    assert rig.points(HANDLER_ERRORS) == []


def test_async_handler_records_span_covering_the_await(rig: Rig) -> None:
    """An async handler stays a coroutine function and its span covers the awaited work."""
    assert inspect.iscoroutinefunction(load_map)
    assert asyncio.run(load_map("dust", delay=0.02)) == "DUST"
    (span,) = rig.finished()
    assert span.name == "load_map"
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.015
    duration = rig.histogram(HANDLER_DURATION, handler="load_map")
    assert duration.count == 1 and duration.sum >= 0.015


def test_decorator_forms_name_the_span(rig: Rig) -> None:
    """@traced(), @traced("name") and @traced(name=, attributes=) name the span and attach the attributes."""
    empty_parentheses()
    positional_name()
    keyword_name()
    spans = {s.name: s for s in rig.finished()}
    assert set(spans) == {"empty_parentheses", "custom.name", "keyword.name"}
    assert dict(spans["keyword.name"].attributes or {}) == {"zone": "north"}
    assert rig.counter(HANDLER_REQUESTS, handler="keyword.name", zone="north") == 1
    assert rig.counter(HANDLER_REQUESTS, handler="custom.name") == 1


def test_methods_static_and_class_methods_are_traced(rig: Rig) -> None:
    """Instance, async, static and class methods keep their binding and get a Class.method span name."""
    lobby = Lobby.create()
    assert lobby.join(1) == 1
    assert lobby.join(2) == 2
    assert asyncio.run(lobby.leave(1)) == 1
    assert Lobby.capacity() == 64 and lobby.capacity() == 64
    names = [s.name for s in rig.finished()]
    assert names.count("Lobby.join") == 2
    assert "Lobby.leave" in names
    assert names.count("Lobby.capacity") == 2
    assert "Lobby.create" in names
    assert rig.counter(HANDLER_REQUESTS, handler="Lobby.join") == 2


def test_exception_is_recorded_and_reraised_unchanged(rig: Rig) -> None:
    """A failing handler re-raises the same exception object; span, errors and requests say so."""
    with pytest.raises(KickError) as raised:
        kick(7)
    assert raised.value is _KICK_ERROR
    (span,) = rig.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert "KickError" in (span.status.description or "")
    (event,) = span.events
    assert event.name == "exception"
    assert str((event.attributes or {})["exception.type"]).endswith("KickError")
    name = "kick"
    assert rig.counter(HANDLER_ERRORS, handler=name, error_type="KickError") == 1
    assert rig.counter(HANDLER_REQUESTS, handler=name, error_type="KickError") == 1
    assert rig.histogram(HANDLER_DURATION, handler=name, error_type="KickError").count == 1


def test_async_exception_is_recorded_and_reraised_unchanged(rig: Rig) -> None:
    """A failing coroutine re-raises the same exception object and is counted as an error."""
    with pytest.raises(KickError) as raised:
        asyncio.run(kick_later(7))
    assert raised.value is _KICK_ERROR
    (span,) = rig.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert rig.counter(HANDLER_ERRORS, handler="kick_later", error_type="KickError") == 1


def test_context_is_restored_after_success_and_failure(rig: Rig) -> None:
    """After a call, succeeded or failed, no handler span is left current."""
    move_player(1)
    assert not trace.get_current_span().get_span_context().is_valid
    with pytest.raises(KickError):
        kick(1)
    assert not trace.get_current_span().get_span_context().is_valid


def test_nested_handlers_make_parent_and_child_spans(rig: Rig) -> None:
    """A traced handler called inside another is a child span of it, in the same trace."""
    assert outer() == "deep"
    spans = {s.name: s for s in rig.finished()}
    parent, child = spans["outer"], spans["inner"]
    assert child.parent is not None and parent.context is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context is not None and child.context.trace_id == parent.context.trace_id


def test_signature_name_and_doc_are_preserved() -> None:
    """The wrapper has the original signature, name, docstring and coroutine-ness."""
    assert str(inspect.signature(move_player)) == (
        "(player_id: 'int', dx: 'float' = 0.0, *, dy: 'float' = 0.0) -> 'tuple[int, float, float]'"
    )
    assert move_player.__name__ == "move_player" and move_player.__doc__ == "Move a player."
    assert str(inspect.signature(load_map)) == "(name: 'str', *, delay: 'float' = 0.0) -> 'str'"
    assert inspect.iscoroutinefunction(load_map) and not inspect.iscoroutinefunction(move_player)
    assert inspect.iscoroutinefunction(Lobby.leave)
    assert str(inspect.signature(Lobby.join)) == "(self, player_id: 'int') -> 'int'"


def test_unbound_decorator_calls_through_without_telemetry(unbound: None, rig_free_exporter: Rig) -> None:
    """With nothing bound, handlers return and raise exactly as undecorated ones, recording nothing."""
    assert bound_handler_telemetry() is None
    assert move_player(3, dy=1.0) == (3, 0.0, 1.0)
    assert asyncio.run(load_map("x")) == "X"
    with pytest.raises(KickError) as raised:
        kick(3)
    assert raised.value is _KICK_ERROR
    assert rig_free_exporter.finished() == ()
    assert rig_free_exporter.points(HANDLER_REQUESTS) == []


@pytest.fixture
def rig_free_exporter(
    providers: tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader],
) -> Rig:
    """Telemetry that exists but is NOT bound: nothing may reach it."""
    tracer_provider, spans, meter_provider, reader = providers
    telemetry = HandlerTelemetry(tracer_provider.get_tracer("test"), meter_provider.get_meter("test"))
    return Rig(telemetry, spans, reader)


def test_unbound_wrapper_costs_well_under_a_microsecond(unbound: None) -> None:
    """Unbound, a decorated call costs less than 1 µs more than the plain call (best of several runs)."""

    def plain(a: int, b: int = 1) -> int:
        return a

    wrapped = traced(plain)
    number = 20_000
    plain_best = min(timeit.repeat(lambda: plain(1), number=number, repeat=7)) / number
    wrapped_best = min(timeit.repeat(lambda: wrapped(1), number=number, repeat=7)) / number
    assert wrapped_best - plain_best < 1e-6, (plain_best, wrapped_best)


def test_binding_is_read_at_call_time(
    unbound: None, providers: tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]
) -> None:
    """A handler decorated before setup records once telemetry is bound, and stops when unbound."""
    tracer_provider, spans, meter_provider, _ = providers
    move_player(1)
    assert spans.get_finished_spans() == ()
    bind_handler_telemetry(HandlerTelemetry(tracer_provider.get_tracer("t"), meter_provider.get_meter("t")))
    move_player(2)
    bind_handler_telemetry(None)
    move_player(3)
    assert [s.name for s in spans.get_finished_spans()] == ["move_player"]


def test_concurrent_calls_from_threads_are_all_counted(rig: Rig) -> None:
    """Eight threads × 200 calls give exactly 1600 requests and 1600 spans."""

    def work() -> None:
        for i in range(200):
            move_player(i)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert rig.counter(HANDLER_REQUESTS, handler="move_player") == 1600
    assert len(rig.finished()) == 1600


class _FailingTracer(trace.Tracer):
    """A tracer whose every span start fails: instrumentation trouble the handler must never see."""

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        raise RuntimeError("exporter exploded")

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("exporter exploded")


def test_telemetry_failure_never_reaches_the_handler_and_is_logged_once(
    providers: tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tracer that raises leaves the handler's result intact; failures are counted and logged once."""
    _, _, meter_provider, _ = providers
    telemetry = HandlerTelemetry(_FailingTracer(), meter_provider.get_meter("t"))
    bind_handler_telemetry(telemetry)
    try:
        with caplog.at_level(logging.ERROR, logger="otel_telemetry.recording.tracing"):
            assert move_player(5) == (5, 0.0, 0.0)
            assert move_player(6) == (6, 0.0, 0.0)
            assert asyncio.run(load_map("a")) == "A"
            with pytest.raises(KickError):
                kick(1)
    finally:
        bind_handler_telemetry(None)
    assert telemetry.errors == 4
    failures = [r for r in caplog.records if "handler telemetry failed" in r.getMessage()]
    assert len(failures) == 3  # one per handler name: move_player twice logs once


def test_decorating_a_non_callable_raises_at_decoration() -> None:
    """Setup errors surface at decoration time with the offending value."""
    with pytest.raises(TypeError, match="42"):
        traced(42)  # type: ignore[call-overload]


# -- timer ------------------------------------------------------------------------------------------------------
def test_timer_context_manager_records_elapsed_seconds(rig: Rig) -> None:
    """`with timer(name, attributes)` records one duration with timer=name plus the attributes."""
    with timer("physics", {"zone": "north"}) as timed:
        threading.Event().wait(0.01)
    assert timed.elapsed is not None and timed.elapsed >= 0.009
    point = rig.histogram(TIMER_DURATION, timer="physics", zone="north")
    assert point.count == 1 and point.sum == pytest.approx(timed.elapsed)


def test_timer_records_and_propagates_on_exception(rig: Rig) -> None:
    """An exception inside the block propagates unchanged and the duration is still recorded."""
    error = ValueError("boom")
    with pytest.raises(ValueError) as raised, timer("failing"):
        raise error
    assert raised.value is error
    assert rig.histogram(TIMER_DURATION, timer="failing").count == 1


def test_timer_decorator_sync_and_async_with_fresh_state_per_call(rig: Rig) -> None:
    """As a decorator timer times each call, including overlapping coroutine calls, keeping signatures."""

    @timer("step")
    def step(n: int) -> int:
        return n * 2

    @timer("fetch")
    async def fetch(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    assert step(4) == 8 and step(5) == 10
    assert str(inspect.signature(step)) == "(n: 'int') -> 'int'"
    assert inspect.iscoroutinefunction(fetch)

    async def overlapping() -> list[float]:
        return list(await asyncio.gather(fetch(0.02), fetch(0.01), fetch(0.0)))

    assert asyncio.run(overlapping()) == [0.02, 0.01, 0.0]
    assert rig.histogram(TIMER_DURATION, timer="step").count == 2
    fetched = rig.histogram(TIMER_DURATION, timer="fetch")
    assert fetched.count == 3
    assert 0.03 <= fetched.sum < 0.5  # each call timed on its own: 0.02 + 0.01 + ~0


def test_timer_async_with(rig: Rig) -> None:
    """`async with timer(...)` records like the sync form."""

    async def run() -> None:
        async with timer("io"):
            await asyncio.sleep(0.005)

    asyncio.run(run())
    assert rig.histogram(TIMER_DURATION, timer="io").sum >= 0.004


def test_timer_unbound_measures_nothing(unbound: None) -> None:
    """With nothing bound, a timer does not even read the clock: elapsed stays None."""
    with timer("idle") as timed:
        pass
    assert timed.elapsed is None

    @timer("idle")
    def f() -> int:
        return 1

    assert f() == 1


# -- handles are independent: telemetry.traced / telemetry.timer, and the process default ------------------------
@pytest.fixture
def make_rig() -> Iterator[Callable[[], Rig]]:
    """Build independent HandlerTelemetry objects, each on providers of its own (none made the default)."""
    made: list[tuple[TracerProvider, MeterProvider, HandlerTelemetry]] = []

    def make() -> Rig:
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
        handlers = HandlerTelemetry(tracer_provider.get_tracer("test"), meter_provider.get_meter("test"))
        made.append((tracer_provider, meter_provider, handlers))
        return Rig(handlers, spans, reader)

    yield make
    for tracer_provider, meter_provider, handlers in made:
        handlers.close()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def test_each_handle_records_its_own_traced_functions_only(unbound: None, make_rig: Callable[[], Rig]) -> None:
    """h1.traced and h2.traced functions count on their own handle only, whichever was created later."""
    first, second = make_rig(), make_rig()

    @first.telemetry.traced
    def on_first() -> int:
        return 1

    @second.telemetry.traced("second.handler")
    async def on_second() -> int:
        return 2

    assert on_first() == 1 and on_first() == 1
    assert asyncio.run(on_second()) == 2
    assert first.counter(HANDLER_REQUESTS, handler=on_first.__qualname__) == 2
    assert [dict(p.attributes) for p in first.points(HANDLER_REQUESTS)] == [{"handler": on_first.__qualname__}]
    assert second.counter(HANDLER_REQUESTS, handler="second.handler") == 1
    assert len(second.points(HANDLER_REQUESTS)) == 1
    assert [s.name for s in second.finished()] == ["second.handler"]
    assert len(first.finished()) == 2
    move_player(1)  # module level, no default: neither handle sees it
    assert len(first.finished()) == 2 and len(second.finished()) == 1


def test_handle_traced_accepts_every_form_of_the_module_level_one(unbound: None, make_rig: Callable[[], Rig]) -> None:
    """@h.traced, @h.traced(), @h.traced("n"), @h.traced(name=, attributes=), methods: same names, same signature."""
    rig = make_rig()
    traced_here = rig.telemetry.traced

    @traced_here
    def bare(player_id: int, dx: float = 0.0, *, dy: float = 0.0) -> tuple[int, float, float]:
        """Move."""
        return player_id, dx, dy

    @traced_here()
    def parentheses() -> str:
        return "ok"

    @traced_here("handle.positional")
    def positional() -> str:
        return "ok"

    @traced_here(name="handle.keyword", attributes={"zone": "south"})
    async def keyword() -> str:
        return "ok"

    class Room:
        @traced_here
        def enter(self, who: int) -> int:
            return who

        @traced_here
        @staticmethod
        def size() -> int:
            return 8

        @classmethod
        @traced_here
        def open(cls) -> Room:
            return cls()

    assert bare(3, dy=1.0) == (3, 0.0, 1.0)
    assert str(inspect.signature(bare)) == (
        "(player_id: 'int', dx: 'float' = 0.0, *, dy: 'float' = 0.0) -> 'tuple[int, float, float]'"
    )
    assert bare.__name__ == "bare" and bare.__doc__ == "Move."
    assert inspect.iscoroutinefunction(keyword)
    assert parentheses() == positional() == asyncio.run(keyword()) == "ok"
    room = Room.open()
    assert room.enter(5) == 5 and Room.size() == 8
    names = {s.name for s in rig.finished()}
    assert {"handle.positional", "handle.keyword", parentheses.__qualname__} <= names
    assert {Room.enter.__qualname__, Room.size.__qualname__} <= names
    assert rig.counter(HANDLER_REQUESTS, handler="handle.keyword", zone="south") == 1
    with pytest.raises(TypeError, match="42"):
        traced_here(42)  # type: ignore[call-overload]


def test_handle_timer_records_on_its_own_handle_in_every_form(unbound: None, make_rig: Callable[[], Rig]) -> None:
    """h.timer works as `with`, `async with` and decorator (sync, async), into that handle only."""
    first, second = make_rig(), make_rig()
    with first.telemetry.timer("block", {"zone": "north"}) as timed:
        pass
    assert isinstance(timed, timer) and timed.name == "block" and timed.elapsed is not None

    @second.telemetry.timer("step")
    def step(n: int) -> int:
        return n + 1

    @second.telemetry.timer("fetch")
    async def fetch(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    async def run() -> None:
        async with first.telemetry.timer("io"):
            await asyncio.sleep(0)
        await asyncio.gather(fetch(0.01), fetch(0.0))

    assert step(1) == 2 and str(inspect.signature(step)) == "(n: 'int') -> 'int'"
    asyncio.run(run())
    assert first.histogram(TIMER_DURATION, timer="block", zone="north").count == 1
    assert first.histogram(TIMER_DURATION, timer="io").count == 1
    assert {dict(p.attributes)["timer"] for p in first.points(TIMER_DURATION)} == {"block", "io"}
    assert second.histogram(TIMER_DURATION, timer="step").count == 1
    assert second.histogram(TIMER_DURATION, timer="fetch").count == 2
    assert {dict(p.attributes)["timer"] for p in second.points(TIMER_DURATION)} == {"step", "fetch"}


def test_a_closed_handle_calls_through_and_records_nothing(unbound: None, make_rig: Callable[[], Rig]) -> None:
    """After close(), the handle's decorated functions and timers run unrecorded; nothing is raised."""
    rig = make_rig()

    @rig.telemetry.traced
    def handled() -> int:
        return 1

    @rig.telemetry.timer("timed")
    def timed() -> int:
        return 2

    assert handled() == 1
    rig.telemetry.close()
    rig.telemetry.close()  # idempotent
    assert rig.telemetry.closed
    assert handled() == 1 and timed() == 2
    with rig.telemetry.timer("late") as block:
        pass
    assert block.elapsed is None
    assert len(rig.finished()) == 1
    assert rig.counter(HANDLER_REQUESTS, handler=handled.__qualname__) == 1
    assert rig.points(TIMER_DURATION) == []


def test_disabled_handler_telemetry_always_calls_through() -> None:
    """HandlerTelemetry.disabled() (for telemetry switched off) gives working, silent traced and timer."""
    handlers = HandlerTelemetry.disabled()
    assert handlers.closed

    @handlers.traced
    def work(n: int) -> int:
        return n

    with handlers.timer("t") as block:
        pass
    assert work(3) == 3 and block.elapsed is None
    assert not claim_default(handlers)


def test_the_first_handle_keeps_the_default_and_module_level_goes_quiet_after_it(
    unbound: None, make_rig: Callable[[], Rig]
) -> None:
    """Module-level traced/timer follow the first claimed handle; a later one never takes it over; quiet after."""
    first, second = make_rig(), make_rig()
    assert claim_default(first.telemetry) and claim_default(first.telemetry)
    assert not claim_default(second.telemetry)
    assert bound_handler_telemetry() is first.telemetry
    move_player(1)
    with timer("physics"):
        pass
    assert first.counter(HANDLER_REQUESTS, handler="move_player") == 1
    assert first.histogram(TIMER_DURATION, timer="physics").count == 1
    assert second.points(HANDLER_REQUESTS) == [] and second.points(TIMER_DURATION) == []

    first.telemetry.close()  # what Telemetry.shutdown() does: releases the default
    assert bound_handler_telemetry() is None
    assert move_player(2) == (2, 0.0, 0.0)
    with timer("physics") as block:
        pass
    assert block.elapsed is None
    assert first.counter(HANDLER_REQUESTS, handler="move_player") == 1
    assert second.points(HANDLER_REQUESTS) == []  # the live second handle does not take over

    third = make_rig()
    assert claim_default(third.telemetry)  # the next setup makes the new default
    assert not claim_default(second.telemetry)
    move_player(3)
    assert third.counter(HANDLER_REQUESTS, handler="move_player") == 1
    assert second.points(HANDLER_REQUESTS) == []


def test_release_default_by_a_handle_that_is_not_the_default_changes_nothing(
    unbound: None, make_rig: Callable[[], Rig]
) -> None:
    """Only the default's own release (or close) clears it; a closed handle cannot claim it."""
    first, second = make_rig(), make_rig()
    assert claim_default(first.telemetry)
    release_default(second.telemetry)
    second.telemetry.close()
    assert bound_handler_telemetry() is first.telemetry
    release_default(first.telemetry)
    assert bound_handler_telemetry() is None
    assert not claim_default(second.telemetry)  # closed
    assert bound_handler_telemetry() is None


def test_concurrent_claims_elect_exactly_one_default(unbound: None, make_rig: Callable[[], Rig]) -> None:
    """Eight handles claiming at once: exactly one becomes the default."""
    rigs = [make_rig() for _ in range(8)]
    start = threading.Barrier(len(rigs))
    won: list[bool] = [False] * len(rigs)

    def claim(index: int) -> None:
        start.wait()
        won[index] = claim_default(rigs[index].telemetry)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(rigs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert won.count(True) == 1
    assert bound_handler_telemetry() is rigs[won.index(True)].telemetry


def test_functions_decorated_with_a_closed_handle_do_not_keep_it_alive(
    providers: tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader],
) -> None:
    """close() drops the handle from its decorators: a function decorated with it no longer keeps it alive."""
    tracer_provider, _, meter_provider, _ = providers
    handlers = HandlerTelemetry(tracer_provider.get_tracer("t"), meter_provider.get_meter("t"))

    @handlers.traced
    def kept() -> int:
        return 1

    collected = weakref.ref(handlers)
    handlers.close()
    del handlers
    gc.collect()
    assert collected() is None
    assert kept() == 1


# -- through setup_telemetry: needs Telemetry.traced/timer and claim_default/close wired in telemetry.py -------
def _recorded(reader: InMemoryMetricReader, metric_name: str, **attributes: str) -> float:
    """Sum of a counter's values, or of a histogram's counts, over the points carrying ``attributes``."""
    total = 0.0
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data is not None else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name != metric_name:
                    continue
                for point in metric.data.data_points:
                    if not attributes.items() <= dict(point.attributes or {}).items():
                        continue
                    if isinstance(point, NumberDataPoint):
                        total += point.value
                    elif isinstance(point, HistogramDataPoint):
                        total += point.count
    return total


def test_telemetry_handles_trace_and_time_independently(
    unbound: None, make_telemetry: Callable[..., Telemetry]
) -> None:
    """Two live handles: t1.traced and t2.traced functions (and timers) count only on their own handle."""
    first_reader, second_reader = InMemoryMetricReader(), InMemoryMetricReader()
    first = make_telemetry(metric_readers=[first_reader])
    second = make_telemetry(metric_readers=[second_reader])

    @first.traced("first.handler")
    def on_first() -> int:
        return 1

    @second.traced("second.handler")
    async def on_second() -> int:
        return 2

    assert on_first() == 1 and asyncio.run(on_second()) == 2
    with first.timer("first.block"):
        pass
    assert _recorded(first_reader, HANDLER_REQUESTS, handler="first.handler") == 1
    assert _recorded(first_reader, HANDLER_REQUESTS, handler="second.handler") == 0
    assert _recorded(second_reader, HANDLER_REQUESTS, handler="second.handler") == 1
    assert _recorded(second_reader, HANDLER_REQUESTS, handler="first.handler") == 0
    assert _recorded(first_reader, TIMER_DURATION, timer="first.block") == 1
    assert _recorded(second_reader, TIMER_DURATION, timer="first.block") == 0


def test_module_level_traced_reports_to_the_first_handle_until_it_shuts_down(
    unbound: None, make_telemetry: Callable[..., Telemetry]
) -> None:
    """Module-level @traced goes to the first handle even after a second exists; quiet after; next setup wins."""
    first_reader, second_reader, third_reader = InMemoryMetricReader(), InMemoryMetricReader(), InMemoryMetricReader()
    first = make_telemetry(metric_readers=[first_reader])
    make_telemetry(metric_readers=[second_reader])
    name = "move_player"
    move_player(1)
    assert _recorded(first_reader, HANDLER_REQUESTS, handler=name) == 1
    assert _recorded(second_reader, HANDLER_REQUESTS, handler=name) == 0
    first.shutdown()
    assert move_player(2) == (2, 0.0, 0.0)  # quiet, nothing raised
    assert _recorded(second_reader, HANDLER_REQUESTS, handler=name) == 0
    make_telemetry(metric_readers=[third_reader])
    move_player(3)
    assert _recorded(third_reader, HANDLER_REQUESTS, handler=name) == 1
    assert _recorded(second_reader, HANDLER_REQUESTS, handler=name) == 0
