"""Tests for otel_telemetry.recording.logs: JSON lines with trace correlation, exceptions, extras, never raising."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from otel_telemetry.recording.logs import JsonLogFormatter, JsonLogHandler


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    """A real SDK tracer; the provider is shut down afterwards."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    yield provider.get_tracer("logs-test")
    provider.shutdown()


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def log(stream: io.StringIO) -> Iterator[logging.Logger]:
    """A private logger writing through a JsonLogHandler into ``stream``; the handler is removed afterwards."""
    logger = logging.getLogger("test_logs.game")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = JsonLogHandler(stream)
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)
    handler.close()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_core_fields(log: logging.Logger, stream: io.StringIO) -> None:
    """Each record is one line with an ISO-8601 UTC timestamp, level, logger and the formatted message."""
    log.info("player %s joined %s", "ada", "dust")
    log.warning("tick overran")
    first, second = lines(stream)
    assert first["level"] == "INFO" and second["level"] == "WARNING"
    assert first["logger"] == "test_logs.game"
    assert first["message"] == "player ada joined dust"
    assert first["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert "trace_id" not in first and "exc_info" not in first


def test_lines_carry_the_active_span_ids(log: logging.Logger, stream: io.StringIO, tracer: Tracer) -> None:
    """Inside a span, trace_id (32 hex) and span_id (16 hex) are those of the current span."""
    with tracer.start_as_current_span("tick") as span:
        log.info("inside")
    log.info("outside")
    inside, outside = lines(stream)
    context = span.get_span_context()
    assert re.fullmatch(r"[0-9a-f]{32}", inside["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", inside["span_id"])
    assert int(inside["trace_id"], 16) == context.trace_id
    assert int(inside["span_id"], 16) == context.span_id
    assert "trace_id" not in outside and "span_id" not in outside


def test_exception_info_is_formatted(log: logging.Logger, stream: io.StringIO) -> None:
    """log.exception() adds the formatted traceback under exc_info."""
    try:
        raise KeyError("missing player")
    except KeyError:
        log.exception("lookup failed")
    (line,) = lines(stream)
    assert line["level"] == "ERROR"
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing player'" in line["exc_info"]


def test_stack_info_is_included(log: logging.Logger, stream: io.StringIO) -> None:
    """stack_info=True adds the formatted stack."""
    log.info("where am I", stack_info=True)
    (line,) = lines(stream)
    assert line["stack_info"].startswith("Stack (most recent call last):")


def test_json_serialisable_extras_are_kept_others_dropped(log: logging.Logger, stream: io.StringIO) -> None:
    """extra fields that JSON can encode appear at top level; others are left out; core fields win."""
    log.info(
        "kill",
        extra={"player_id": 42, "weapon": "rail", "pos": [1.5, 2.0], "socket": object(), "level_name": "dust"},
    )
    log.info("shadow", extra={"logger_extra": 1, "timestamp_source": "x"})
    kill, shadow = lines(stream)
    assert kill["player_id"] == 42 and kill["weapon"] == "rail" and kill["pos"] == [1.5, 2.0]
    assert kill["level_name"] == "dust"
    assert "socket" not in kill
    assert shadow["logger"] == "test_logs.game" and shadow["logger_extra"] == 1


def test_extras_never_override_core_fields(stream: io.StringIO) -> None:
    """A record attribute named like a core field does not replace it."""
    handler = JsonLogHandler(stream)
    record = logging.LogRecord("game", logging.INFO, __file__, 1, "real", None, None)
    record.level = "FAKE"
    record.timestamp = "yesterday"
    handler.handle(record)
    (line,) = lines(stream)
    assert line["level"] == "INFO" and line["timestamp"] != "yesterday"


class _BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


class _CountingHandler(JsonLogHandler):
    def __init__(self, stream: io.StringIO) -> None:
        super().__init__(stream)
        self.errors = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self.errors += 1


def test_write_failure_goes_to_handle_error_and_never_raises() -> None:
    """A failing stream never raises into the logging call; handleError is told instead."""
    handler = _CountingHandler(_BrokenStream())
    logger = logging.getLogger("test_logs.broken")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.error("this write fails")
    finally:
        logger.removeHandler(handler)
    assert handler.errors == 1


def test_default_stream_is_the_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a stream the handler writes to sys.stderr as it is at emit time."""
    handler = JsonLogHandler()
    handler.handle(logging.LogRecord("game", logging.INFO, __file__, 1, "to stderr", None, None))
    captured = capsys.readouterr()
    assert json.loads(captured.err)["message"] == "to stderr"
    assert captured.out == ""


def test_threads_never_interleave_lines(log: logging.Logger, stream: io.StringIO) -> None:
    """Eight threads × 200 records give 1600 whole JSON lines."""

    def work(index: int) -> None:
        for i in range(200):
            log.info("worker %d line %d", index, i, extra={"worker": index})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    parsed = lines(stream)
    assert len(parsed) == 1600
    assert sorted({p["worker"] for p in parsed}) == list(range(8))


def test_json_formatter_rotates_with_the_standard_rotating_handler(tmp_path: Path) -> None:
    """JsonLogFormatter gives any handler the same JSON lines: with RotatingFileHandler the files rotate by size,
    at most backupCount old files are kept, and every line of every file is one JSON object."""
    path = tmp_path / "server.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000, backupCount=2, encoding="utf-8")
    handler.setFormatter(JsonLogFormatter())
    log = logging.getLogger("test.rotation")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        for number in range(100):
            log.info("tick %d", number, extra={"tick": number})
    finally:
        log.removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["server.log", "server.log.1", "server.log.2"]
    lines = [json.loads(line) for name in files for line in (tmp_path / name).read_text("utf-8").splitlines()]
    assert lines and all(doc["logger"] == "test.rotation" and doc["level"] == "INFO" for doc in lines)
    assert max(doc["tick"] for doc in lines) == 99  # the newest records are kept, the oldest rotated away
    assert min(doc["tick"] for doc in lines) > 0
