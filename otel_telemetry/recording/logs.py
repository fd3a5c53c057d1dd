"""``JsonLogHandler``: an opt-in ``logging`` handler writing one JSON object per line, with trace correlation.

Each line holds ``timestamp`` (ISO-8601, UTC), ``level``, ``logger`` and ``message``; ``trace_id`` (32 lowercase
hex digits) and ``span_id`` (16) when a valid span is current on the logging thread; ``exc_info`` (the formatted
traceback) and ``stack_info`` when present; and the record's ``extra`` fields whose values JSON can encode (the
fields above win over an ``extra`` of the same name)::

    logging.getLogger().addHandler(JsonLogHandler())
    log.info("player joined", extra={"player_id": 42})
    {"timestamp": "2025-10-03T12:00:00.000123Z", "level": "INFO", "logger": "game", "message": "player joined",
     "player_id": 42, "trace_id": "4bf9...", "span_id": "00f0..."}

The current span is read when the record is emitted, so put this handler where records are emitted
synchronously (not behind a ``QueueHandler``), or the ids are those of the queue's thread.

For files with rotation, give :class:`JsonLogFormatter` (the same JSON lines) to the standard library's own
rotating handlers: ``RotatingFileHandler(path, maxBytes=..., backupCount=...)`` rotates by size and keeps
``backupCount`` files; ``TimedRotatingFileHandler`` rotates by time.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from opentelemetry import trace
from opentelemetry.trace import format_span_id, format_trace_id

__all__ = ["JsonLogFormatter", "JsonLogHandler"]

# Attributes every LogRecord has; whatever else a record carries came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JsonLogFormatter(logging.Formatter):
    """Formats each record as one JSON object (one line; see the module docs), for any ``logging`` handler:
    ``RotatingFileHandler(path, maxBytes=10_000_000, backupCount=5).setFormatter(JsonLogFormatter())``."""

    def to_dict(self, record: logging.LogRecord) -> dict[str, object]:
        """The JSON object for ``record`` (before encoding)."""
        document: dict[str, object] = {}
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue
            document[key] = value
        document["timestamp"] = _iso(record.created)
        document["level"] = record.levelname
        document["logger"] = record.name
        document["message"] = record.getMessage()
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            document["trace_id"] = format_trace_id(span_context.trace_id)
            document["span_id"] = format_span_id(span_context.span_id)
        if record.exc_info:
            document["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exc_info"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        return document

    def format(self, record: logging.LogRecord) -> str:
        """``record`` as one line of JSON (no trailing newline: the handler adds its terminator)."""
        return json.dumps(self.to_dict(record), ensure_ascii=False, default=str)


class JsonLogHandler(logging.Handler):
    """Writes each record as one JSON line to ``stream`` (default ``sys.stderr``, looked up at each write).

    Never raises: a failure goes to :meth:`logging.Handler.handleError`. Thread-safe (``logging.Handler``
    serialises :meth:`emit` with its lock).

    Args:
        stream: a text stream; None for the current ``sys.stderr``.
        level: the handler's threshold.
    """

    def __init__(self, stream: TextIO | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.stream = stream
        self._json = JsonLogFormatter()

    def to_dict(self, record: logging.LogRecord) -> dict[str, object]:
        """The JSON object for ``record`` (before encoding)."""
        return self._json.to_dict(record)

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` as one JSON line."""
        try:
            line = self._json.format(record)
            stream = self.stream if self.stream is not None else sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Flush the stream (errors are ignored: a closed stream has nothing left to flush)."""
        self.acquire()
        try:
            stream = self.stream if self.stream is not None else sys.stderr
            stream.flush()
        except Exception:
            pass
        finally:
            self.release()
