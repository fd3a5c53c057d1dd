"""Tests for events' categories, values, labels and metadata, their export, the queries, retention and the counts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from opentelemetry._logs import Logger
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_telemetry.recording.event_fields import BUILTIN_CATEGORIES, MAX_CATEGORIES, MAX_LABELS
from otel_telemetry.recording.events import Event, EventRecorder


@pytest.fixture
def logs() -> Iterator[tuple[Logger, InMemoryLogRecordExporter]]:
    """A real SDK logger exporting to memory; the provider is shut down afterwards."""
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider.get_logger("events-query-test"), exporter
    provider.shutdown()


@pytest.fixture
def recorder(logs: tuple[Logger, InMemoryLogRecordExporter]) -> EventRecorder:
    """A recorder emitting to the in-memory logger."""
    return EventRecorder(logs[0], capacity=100)


# -- categories -------------------------------------------------------------------------------------------------
def test_builtin_categories_are_the_seeds_four_then_the_game_ones() -> None:
    """system, application, user_action, simulation (the spec) then gameplay and network; application is default."""
    assert BUILTIN_CATEGORIES == ("system", "application", "user_action", "simulation", "gameplay", "network")
    recorder = EventRecorder(None)
    assert recorder.record_event("e").category == "application"
    assert recorder.categories == BUILTIN_CATEGORIES


def test_unknown_category_is_refused_listing_the_known_ones(recorder: EventRecorder) -> None:
    """An unknown category raises ValueError naming the field, the value and the known categories."""
    with pytest.raises(ValueError, match=r"category: unknown category 'combat', known: \['system', .*'network'\]"):
        recorder.record_event("e", category="combat")
    assert recorder.rejected == 1 and recorder.events() == []


def test_add_category_validates_and_extends_the_known_ones(recorder: EventRecorder) -> None:
    """add_category takes lowercase identifiers only; an added category can be recorded and queried."""
    for bad in ("Combat", "1st", "with-dash", "", 7):
        with pytest.raises(ValueError, match="add_category: name"):
            recorder.add_category(bad)  # type: ignore[arg-type]
    recorder.add_category("combat")
    recorder.add_category("combat")  # again: nothing happens
    assert recorder.categories == (*BUILTIN_CATEGORIES, "combat")
    hit = recorder.record_event("hit", 25, category="combat")
    assert recorder.events(category="combat") == [hit]


def test_added_categories_are_bounded() -> None:
    """Beyond MAX_CATEGORIES added categories, add_category raises naming the refused name."""
    recorder = EventRecorder(None)
    for index in range(MAX_CATEGORIES):
        recorder.add_category(f"c{index}")
    with pytest.raises(ValueError, match=r"'one_more' refused"):
        recorder.add_category("one_more")


# -- value, labels, metadata ------------------------------------------------------------------------------------
def test_seed_call_with_data_mapping_and_labels(recorder: EventRecorder) -> None:
    """The collector spec's call: a dict as the second argument is the data, labels= are kept."""
    now = time.time()
    event = recorder.record_event("user_login", {"user_id": "12345", "timestamp": now}, labels={"source": "web"})
    assert dict(event.attributes) == {"user_id": "12345", "timestamp": now}
    assert dict(event.labels) == {"source": "web"} and event.value is None


def test_number_value_labels_and_metadata_are_kept(recorder: EventRecorder) -> None:
    """A number is Event.value; attributes= carries the data beside it; metadata is cleaned like attributes."""
    event = recorder.record_event(
        "match.duration",
        1834.5,
        {"mode": "ranked"},
        {"request": {"id": 7}, "tags": ["a", "b"]},
        category="gameplay",
        attributes={"map": "dust"},
    )
    assert (event.value, event.category, dict(event.attributes)) == (1834.5, "gameplay", {"map": "dust"})
    assert dict(event.labels) == {"mode": "ranked"}
    assert dict(event.metadata) == {"request": "{'id': 7}", "tags": ("a", "b")}


def test_old_positional_severity_still_works(recorder: EventRecorder) -> None:
    """record_event(name, attributes, severity): a string in the labels' place is the severity."""
    event = recorder.record_event("player.kicked", {"reason": "afk"}, "warning")
    assert (event.severity, dict(event.labels), dict(event.attributes)) == ("warning", {}, {"reason": "afk"})
    with pytest.raises(ValueError, match="severity: given twice"):
        recorder.record_event("e", None, "error", severity="debug")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"value": "fast"}, "value"),
        ({"value": True}, "value"),
        ({"value": float("nan")}, "value"),
        ({"value": [1, 2]}, "value"),
        ({"value": {"a": 1}, "attributes": {"b": 2}}, "attributes"),
        ({"labels": {"source": 1}}, r"labels\['source'\]"),
        ({"labels": {"": "x"}}, "labels"),
        ({"labels": {"k": "v" * 129}}, r"labels\['k'\]"),
        ({"labels": {f"k{i}": "v" for i in range(MAX_LABELS + 1)}}, "labels"),
        ({"labels": {"event.category": "x"}}, "labels"),
        ({"labels": ["source"]}, "labels"),
        ({"value": {"map": "dust"}, "labels": {"map": "dust"}}, "labels"),
        ({"value": {"event.value": 3}}, "attributes"),
        ({"value": {"metadata.x": 3}}, "attributes"),
        ({"metadata": "free text"}, "metadata"),
    ],
)
def test_bad_value_labels_or_metadata_are_refused_naming_the_field(
    recorder: EventRecorder, call: dict[str, object], field: str
) -> None:
    """Each invalid value, label set or metadata raises ValueError naming its field; nothing is recorded."""
    with pytest.raises(ValueError, match=f"record_event: {field}"):
        recorder.record_event("e", **call)  # type: ignore[arg-type]
    assert recorder.rejected == 1 and recorder.recorded == 0 and recorder.events() == []


def test_log_record_carries_category_value_labels_and_prefixed_metadata(
    recorder: EventRecorder, logs: tuple[Logger, InMemoryLogRecordExporter]
) -> None:
    """The exported log record has the attributes, labels, event.category, event.value and metadata.<key>."""
    recorder.record_event(
        "hit", 25, {"weapon": "rail"}, {"request_id": "r1"}, category="gameplay", attributes={"target": 9}
    )
    recorder.record_event("login", {"user_id": "u"})
    first, second = logs[1].get_finished_logs()
    assert dict(first.log_record.attributes or {}) == {
        "target": 9,
        "weapon": "rail",
        "event.category": "gameplay",
        "event.value": 25,
        "metadata.request_id": "r1",
    }
    assert dict(second.log_record.attributes or {}) == {"user_id": "u", "event.category": "application"}


def test_as_dict_is_json_ready_with_every_field(recorder: EventRecorder) -> None:
    """as_dict() holds category, value, labels and metadata too, as plain JSON types."""
    event = recorder.record_event("e", 2, {"k": "v"}, {"ids": (1, 2)}, severity="error", category="system")
    document = json.loads(json.dumps(event.as_dict()))
    assert document == {
        "name": "e",
        "category": "system",
        "severity": "error",
        "value": 2,
        "attributes": {},
        "labels": {"k": "v"},
        "metadata": {"ids": [1, 2]},
        "timestamp": event.timestamp,
        "trace_id": None,
        "span_id": None,
    }


# -- queries ----------------------------------------------------------------------------------------------------
@pytest.fixture
def mixed(recorder: EventRecorder) -> list[Event]:
    """Six events of several names, severities, categories and labels, in order."""
    return [
        recorder.record_event("kill", labels={"map": "dust", "mode": "ranked"}, category="gameplay"),
        recorder.record_event("lag", severity="warning", category="network", labels={"map": "dust"}),
        recorder.record_event("kill", labels={"map": "mirage"}, severity="debug", category="gameplay"),
        recorder.record_event("crash", severity="critical", category="system"),
        recorder.record_event("kill", labels={"map": "dust"}, severity="error", category="gameplay"),
        recorder.record_event("login", category="user_action"),
    ]


def test_query_by_name_severity_min_severity_category_and_labels(recorder: EventRecorder, mixed: list[Event]) -> None:
    """Each filter selects exactly the matching events, oldest first; filters combine."""
    kill, lag, kill_debug, crash, kill_error, login = mixed
    assert recorder.events(name="kill") == [kill, kill_debug, kill_error]
    assert recorder.events(severity="warn") == [lag]
    assert recorder.events(min_severity="warning") == [lag, crash, kill_error]
    assert recorder.events(min_severity="ERROR") == [crash, kill_error]
    assert recorder.events(category="gameplay") == [kill, kill_debug, kill_error]
    assert recorder.events(labels={"map": "dust"}) == [kill, lag, kill_error]
    assert recorder.events(labels={"map": "dust", "mode": "ranked"}) == [kill]
    assert recorder.events(name="kill", labels={"map": "dust"}, min_severity="info") == [kill, kill_error]
    assert recorder.events(category="user_action") == [login]


def test_query_time_range_since_inclusive_until_exclusive(recorder: EventRecorder, mixed: list[Event]) -> None:
    """since includes an event at exactly that time, until excludes it; datetimes are accepted too."""
    middle = mixed[2]
    assert recorder.events(since=middle.timestamp)[0] == middle
    assert middle not in recorder.events(until=middle.timestamp)
    assert recorder.events(since=middle.timestamp, until=mixed[4].timestamp) == [e for e in mixed[2:4]]
    moment = datetime.fromtimestamp(middle.timestamp, tz=UTC)
    assert recorder.events(since=moment) == recorder.events(since=moment.timestamp())
    assert recorder.events(until=0.0) == []


def test_query_limit_returns_the_newest_matches(recorder: EventRecorder, mixed: list[Event]) -> None:
    """limit=n keeps the newest n of the matches, still oldest first."""
    assert recorder.events(limit=2) == mixed[-2:]
    assert recorder.events(name="kill", limit=1) == [mixed[4]]
    assert recorder.events(limit=100) == mixed


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"name": ""}, "name"),
        ({"since": "yesterday"}, "since"),
        ({"until": float("inf")}, "until"),
        ({"since": 10.0, "until": 5.0}, "since"),
        ({"severity": "bogus"}, "severity"),
        ({"min_severity": 2}, "min_severity"),
        ({"category": "combat"}, "category"),
        ({"labels": {"map": 3}}, "labels"),
        ({"limit": 0}, "limit"),
        ({"limit": True}, "limit"),
    ],
)
def test_bad_filter_values_are_refused_naming_the_field(
    recorder: EventRecorder, filters: dict[str, object], field: str
) -> None:
    """A bad filter raises ValueError naming it."""
    with pytest.raises(ValueError, match=f"events: {field}"):
        recorder.events(**filters)  # type: ignore[arg-type]


# -- retention and counts -----------------------------------------------------------------------------------------
def test_retention_expires_old_events_and_counts_them_by_reason() -> None:
    """With retention 0.05 s, events older than that are dropped at the next record or query, counted as age;
    capacity overflow is counted as capacity."""
    recorder = EventRecorder(None, capacity=2, retention=0.05)
    for index in range(3):
        recorder.record_event(f"e{index}")
    assert recorder.dropped_by_reason == {"capacity": 1, "age": 0}
    time.sleep(0.1)
    assert recorder.events() == []
    assert recorder.dropped_by_reason == {"capacity": 1, "age": 2} and recorder.dropped == 3
    fresh = recorder.record_event("fresh")
    assert recorder.events() == [fresh] and recorder.recorded == 4


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), "60", True])
def test_retention_must_be_positive_seconds(bad: object) -> None:
    """A bad retention is a setup error naming the field and the value."""
    with pytest.raises(ValueError, match=r"retention.*got"):
        EventRecorder(None, retention=bad)  # type: ignore[arg-type]


def test_counts_by_category_and_severity(recorder: EventRecorder, mixed: list[Event]) -> None:
    """counts() has one entry per (category, severity) seen; refused calls and clear() do not change them."""
    with pytest.raises(ValueError):
        recorder.record_event("e", severity="nope")
    recorder.clear()
    assert recorder.recorded == 6
    assert recorder.counts() == {
        ("gameplay", "info"): 1,
        ("network", "warning"): 1,
        ("gameplay", "debug"): 1,
        ("system", "critical"): 1,
        ("gameplay", "error"): 1,
        ("user_action", "info"): 1,
    }


def test_counts_stay_exact_under_concurrent_recording() -> None:
    """Eight threads × 300 events over three categories: recorded and counts() add up exactly."""
    recorder = EventRecorder(None, capacity=50)
    categories = ("system", "gameplay", "network")

    def work(index: int) -> None:
        for n in range(300):
            recorder.record_event("tick", n, category=categories[index % 3], severity="debug")

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert recorder.recorded == 2400 and recorder.dropped == 2400 - 50
    assert recorder.counts() == {("system", "debug"): 900, ("gameplay", "debug"): 900, ("network", "debug"): 600}
