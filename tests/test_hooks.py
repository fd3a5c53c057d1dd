"""Hooks on collections, exports and events: called with the moment's data, isolated, counted."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from otel_telemetry import setup_telemetry
from otel_telemetry.recording.hooks import HOOK_KINDS, HookRegistry
from otel_telemetry.snapshot.frame import Frame
from otel_telemetry.telemetry import Telemetry


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    handle = setup_telemetry(enable_prometheus_endpoint=False, collection_interval=60.0, server_id="hooks")
    try:
        yield handle
    finally:
        assert handle.shutdown(timeout=5.0)


def test_collection_hook_receives_every_frame_in_order(telemetry: Telemetry) -> None:
    """A collection hook is called with each new frame, after the outputs had it."""
    frames: list[Frame] = []
    telemetry.add_hook("collection", frames.append)
    telemetry.collect()
    telemetry.collect()
    assert [f.sequence for f in frames] == sorted(f.sequence for f in frames)
    assert len(frames) == 2 and frames[1].sequence == frames[0].sequence + 1
    assert frames[-1] is telemetry.latest_frame()


def test_event_hook_receives_recorded_events(telemetry: Telemetry) -> None:
    """An event hook hears every recorded event, whatever its name."""
    seen: list[str] = []
    telemetry.add_hook("event", lambda event: seen.append(event.name))
    telemetry.record_event("player.joined", {"player": "p1"})
    telemetry.record_event("match.started")
    assert seen == ["player.joined", "match.started"]


def test_a_failing_hook_is_isolated_logged_once_and_counted(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises neither stops the other hooks nor the collection; it is logged once and counted."""
    after: list[int] = []

    def broken(_frame: Frame) -> None:
        raise RuntimeError("hook bug")

    telemetry.add_hook("collection", broken)
    telemetry.add_hook("collection", lambda frame: after.append(frame.sequence))
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.recording.hooks"):
        telemetry.collect()
        telemetry.collect()
    assert len(after) == 2
    assert telemetry.hooks.errors["collection"] == 2
    assert sum("hook bug" in r.getMessage() or "broken" in r.getMessage() for r in caplog.records) == 1
    assert telemetry.latest_frame() is not None


def test_remove_hook_stops_calls(telemetry: Telemetry) -> None:
    """A removed hook is no longer called; removing an unknown one says so."""
    seen: list[int] = []
    hook = seen.append
    telemetry.add_hook("collection", lambda f: hook(f.sequence))
    telemetry.collect()
    assert telemetry.remove_hook("event", hook) is False
    registry = telemetry.hooks
    registry.remove("collection", registry.hooks("collection")[0])
    telemetry.collect()
    assert len(seen) == 1


def test_bad_kind_or_callback_is_rejected_naming_the_value() -> None:
    """Registration is setup: an unknown kind or a non-callable raises ValueError naming the value."""
    registry = HookRegistry()
    with pytest.raises(ValueError, match="'frame'"):
        registry.add("frame", print)
    with pytest.raises(ValueError, match="callable"):
        registry.add("event", 42)  # type: ignore[arg-type]
    assert set(HOOK_KINDS) == {"collection", "export", "event"}


def test_slow_hook_is_counted() -> None:
    """A hook slower than the limit is counted as slow (the clock is the registry's own)."""
    ticks = iter([0.0, 0.5, 1.0, 1.01])
    registry = HookRegistry(clock=lambda: next(ticks))
    registry.add("export", lambda exporter, ok: None)
    registry.fire("export", "otlp", True)
    registry.fire("export", "otlp", False)
    assert registry.calls["export"] == 2
    assert registry.slow["export"] == 1
