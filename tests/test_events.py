"""Tests for otel_telemetry.recording.events: span events, OpenTelemetry log records, history, hooks, never raising."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer, format_span_id, format_trace_id

from otel_telemetry.recording.events import SEVERITIES, Event, EventRecorder


@pytest.fixture
def logs() -> Iterator[tuple[Logger, InMemoryLogRecordExporter]]:
    """A real SDK logger exporting to memory; the provider is shut down afterwards."""
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider.get_logger("events-test"), exporter
    provider.shutdown()


@pytest.fixture
def tracing() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    """A real SDK tracer exporting to memory; the provider is shut down afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("events-test"), exporter
    provider.shutdown()


@pytest.fixture
def recorder(logs: tuple[Logger, InMemoryLogRecordExporter]) -> EventRecorder:
    """A recorder emitting to the in-memory logger."""
    return EventRecorder(logs[0], capacity=100)


def test_record_event_returns_and_keeps_the_event(recorder: EventRecorder) -> None:
    """The returned Event carries name, attributes, severity and a current timestamp, and is kept."""
    before = time.time()
    event = recorder.record_event("player.joined", {"player_id": 42, "map": "dust"})
    assert (event.name, dict(event.attributes), event.severity) == (
        "player.joined",
        {"player_id": 42, "map": "dust"},
        "info",
    )
    assert before <= event.timestamp <= time.time()
    assert recorder.events() == [event]
    assert event.trace_id is None and event.span_id is None


def test_log_record_is_emitted_with_event_name_body_attributes_and_severity(
    recorder: EventRecorder, logs: tuple[Logger, InMemoryLogRecordExporter]
) -> None:
    """Each event becomes one OpenTelemetry log record with event_name, body, attributes and severity."""
    recorder.record_event("player.kicked", {"reason": "afk"}, severity="warning")
    (exported,) = logs[1].get_finished_logs()
    record = exported.log_record
    assert record.event_name == "player.kicked"
    assert record.body == "player.kicked"
    assert dict(record.attributes or {}) == {"reason": "afk", "event.category": "application"}
    assert record.severity_number is SeverityNumber.WARN
    assert record.severity_text == "WARNING"


def test_event_inside_a_span_becomes_a_span_event_with_correlated_ids(
    recorder: EventRecorder,
    logs: tuple[Logger, InMemoryLogRecordExporter],
    tracing: tuple[Tracer, InMemorySpanExporter],
) -> None:
    """Inside a recording span the event is added to it, and the event and log record carry its ids."""
    tracer, spans = tracing
    with tracer.start_as_current_span("tick") as span:
        event = recorder.record_event("round.started", {"round": 3}, severity="error")
    (finished,) = spans.get_finished_spans()
    (span_event,) = finished.events
    assert span_event.name == "round.started"
    assert dict(span_event.attributes or {}) == {"round": 3, "event.severity": "error", "event.category": "application"}
    context = span.get_span_context()
    assert event.trace_id == format_trace_id(context.trace_id)
    assert event.span_id == format_span_id(context.span_id)
    (exported,) = logs[1].get_finished_logs()
    assert exported.log_record.trace_id == context.trace_id
    assert exported.log_record.span_id == context.span_id


@pytest.mark.parametrize(("severity", "number"), list(SEVERITIES.items()))
def test_each_severity_maps_to_its_severity_number(
    recorder: EventRecorder, logs: tuple[Logger, InMemoryLogRecordExporter], severity: str, number: SeverityNumber
) -> None:
    """debug/info/warning/error/critical map to DEBUG/INFO/WARN/ERROR/FATAL."""
    event = recorder.record_event("e", severity=severity.upper())
    assert event.severity == severity
    (exported,) = logs[1].get_finished_logs()
    assert exported.log_record.severity_number is number
    assert recorder.rejected == 0


@pytest.mark.parametrize("bad", ["fatal-ish", "bogus", "", 3, None])
def test_bad_severity_is_refused_naming_field_value_and_allowed(recorder: EventRecorder, bad: object) -> None:
    """An unknown severity raises ValueError naming the field, the value and the allowed ones; it is counted in
    rejected and nothing is recorded (never silently mapped to info)."""
    with pytest.raises(ValueError, match=r"severity.*'debug'.*'critical'.*got") as raised:
        recorder.record_event("e", severity=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(raised.value)
    assert recorder.rejected == 1
    assert recorder.events() == [] and recorder.recorded == 0


def test_warn_is_a_documented_alias_of_warning(
    recorder: EventRecorder, logs: tuple[Logger, InMemoryLogRecordExporter]
) -> None:
    """ "warn" (any case) is recorded as "warning", with OpenTelemetry's WARN number."""
    event = recorder.record_event("e", severity="WARN")
    assert event.severity == "warning"
    (exported,) = logs[1].get_finished_logs()
    assert exported.log_record.severity_number is SeverityNumber.WARN


@pytest.mark.parametrize("bad", [404, "", None, b"kill"])
def test_bad_name_is_refused_naming_the_field(recorder: EventRecorder, bad: object) -> None:
    """A non-string or empty name raises ValueError naming the field and the value; nothing is recorded."""
    with pytest.raises(ValueError, match=r"name: must be a non-empty string, got"):
        recorder.record_event(bad)  # type: ignore[arg-type]
    assert recorder.rejected == 1 and recorder.events() == []


def test_odd_attribute_values_are_recorded_as_strings(recorder: EventRecorder) -> None:
    """Attribute values OpenTelemetry refuses become strings; None values are left out; nothing is rejected."""
    event = recorder.record_event(
        "e", {"ids": [1, 2], "tags": ("a", "b"), "obj": {"nested": True}, "none": None, "ok": 1.5}
    )
    assert dict(event.attributes) == {"ids": (1, 2), "tags": ("a", "b"), "obj": "{'nested': True}", "ok": 1.5}
    assert recorder.rejected == 0


def test_history_is_bounded_and_counts_drops(logs: tuple[Logger, InMemoryLogRecordExporter]) -> None:
    """With capacity 3, five events keep the last three and count two drops."""
    recorder = EventRecorder(logs[0], capacity=3)
    for index in range(5):
        recorder.record_event(f"e{index}")
    assert [e.name for e in recorder.events()] == ["e2", "e3", "e4"]
    assert recorder.dropped == 2
    assert recorder.capacity == 3


def test_events_filter_by_name_and_time(recorder: EventRecorder) -> None:
    """events(name=..., since=...) select by name and by timestamp."""
    recorder.record_event("kill")
    recorder.record_event("death")
    time.sleep(0.01)
    cutoff = time.time()
    late = recorder.record_event("kill")
    assert [e.name for e in recorder.events(name="kill")] == ["kill", "kill"]
    assert recorder.events(since=cutoff) == [late]
    assert recorder.events(name="death", since=cutoff) == []


def test_hooks_by_name_and_wildcard_and_off(recorder: EventRecorder) -> None:
    """on(name) hooks see that name, on("*") sees all; off() removes a hook."""
    seen_kills: list[Event] = []
    seen_all: list[str] = []

    def on_kill(event: Event) -> None:
        seen_kills.append(event)

    recorder.on("kill", on_kill)
    recorder.on("*", lambda event: seen_all.append(event.name))
    kill = recorder.record_event("kill", {"weapon": "rail"})
    recorder.record_event("death")
    recorder.off("kill", on_kill)
    recorder.off("kill", on_kill)  # removing twice is harmless
    recorder.record_event("kill")
    assert seen_kills == [kill]
    assert seen_all == ["kill", "death", "kill"]


def test_failing_hook_is_isolated_counted_and_logged_once(
    recorder: EventRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises does not reach the caller nor stop later hooks; it is counted and logged once."""
    later: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("hook bug")

    recorder.on("kill", broken)
    recorder.on("kill", lambda event: later.append(event.name))
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.recording.events"):
        recorder.record_event("kill")
        recorder.record_event("kill")
    assert later == ["kill", "kill"]
    assert recorder.hook_errors == 2
    logged = [r for r in caplog.records if "event hook" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


class _ExplodingLogger(Logger):
    """A logger whose emit fails: a broken pipeline the game must never notice."""

    def emit(self, record: Any = None, **kwargs: Any) -> None:
        raise OSError("pipeline down")

    def enabled(self, **kwargs: Any) -> bool:
        return True


def test_failing_logger_never_reaches_the_caller() -> None:
    """An emit failure is counted in errors; the event is still kept and hooks still run."""
    recorder = EventRecorder(_ExplodingLogger("broken"))
    seen: list[str] = []
    recorder.on("*", lambda event: seen.append(event.name))
    recorder.record_event("a")
    recorder.record_event("b")
    assert recorder.errors == 2
    assert [e.name for e in recorder.events()] == ["a", "b"] and seen == ["a", "b"]


def test_recorder_without_logger_keeps_history() -> None:
    """logger=None records span events and history only."""
    recorder = EventRecorder(None)
    recorder.record_event("a")
    assert [e.name for e in recorder.events()] == ["a"]


def test_a_logger_set_later_receives_the_later_events(logs: tuple[Logger, InMemoryLogRecordExporter]) -> None:
    """``set_logger`` attaches a logger to a recorder made without one: later events become log records."""
    recorder = EventRecorder(None)
    recorder.record_event("before")
    recorder.set_logger(logs[0])
    recorder.record_event("after")
    assert [r.log_record.body for r in logs[1].get_finished_logs()] == ["after"]
    assert [e.name for e in recorder.events()] == ["before", "after"]


def test_a_handle_without_otlp_makes_its_logger_provider_on_first_read(make_telemetry: Any) -> None:
    """Without OTLP the handle's logger provider is made by the first read of ``logger_provider`` (always the same
    one); a processor added to it receives the events recorded from then on."""
    telemetry = make_telemetry()
    assert telemetry._logger_provider is None  # setup made none: no processor could have been added to it
    telemetry.record_event("unseen")
    provider = telemetry.logger_provider
    assert isinstance(provider, LoggerProvider) and telemetry.logger_provider is provider
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    telemetry.record_event("match.started", {"map": "dust"})
    assert [r.log_record.body for r in exporter.get_finished_logs()] == ["match.started"]


def test_a_disabled_handle_has_no_logger_provider(make_telemetry: Any) -> None:
    """A disabled handle's ``logger_provider`` stays None, read or not."""
    assert make_telemetry(enabled=False).logger_provider is None


def test_concurrent_recording_keeps_exact_counts(logs: tuple[Logger, InMemoryLogRecordExporter]) -> None:
    """Eight threads × 250 events into capacity 1000: 1000 kept, 1000 dropped, every hook call made."""
    recorder = EventRecorder(logs[0], capacity=1000)
    calls: list[int] = []
    lock = threading.Lock()

    def count(event: Event) -> None:
        with lock:
            calls.append(1)

    recorder.on("*", count)

    def work() -> None:
        for _ in range(250):
            recorder.record_event("tick")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(recorder.events()) == 1000 and recorder.dropped == 1000
    assert len(calls) == 2000
    assert len(logs[1].get_finished_logs()) == 2000


def test_capacity_must_be_positive() -> None:
    """A capacity below 1 is a setup error naming the value."""
    with pytest.raises(ValueError, match=r"capacity.*0"):
        EventRecorder(None, capacity=0)


def test_event_as_dict_is_json_ready(recorder: EventRecorder) -> None:
    """Event.as_dict() holds plain JSON types."""
    import json

    event = recorder.record_event("e", {"ids": [1, 2]})
    assert json.loads(json.dumps(event.as_dict()))["attributes"] == {"ids": [1, 2]}
