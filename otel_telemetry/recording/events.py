"""Structured game events: a span event, an OpenTelemetry log record, a bounded history and hooks.

``record_event("player.kicked", {"reason": "afk"}, severity="warning")``

* adds an event to the current span when one is recording;
* emits an OpenTelemetry log record (``event_name`` and body = the name, the attributes, the severity) when the
  recorder has a logger;
* keeps the event in a bounded in-memory history (the oldest is dropped, and counted, when full);
* calls the hooks registered for that name and for ``"*"``, each isolated.

``record_event`` never raises, in keeping with the rule that telemetry never raises into the game loop: a bad
severity is counted in ``rejected`` and recorded as ``"info"``; a bad name is recorded as ``str(name)``; a failing
hook, span or logger is logged once and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from opentelemetry import trace
from opentelemetry.trace import format_span_id, format_trace_id

from otel_telemetry._otel import Logger, LogRecord, SeverityNumber

__all__ = ["ALL_EVENTS", "SEVERITIES", "Event", "EventHook", "EventRecorder"]

_logger = logging.getLogger(__name__)

#: The hook name that receives every event.
ALL_EVENTS = "*"

#: Severity strings and the OpenTelemetry severity numbers they map to.
SEVERITIES: Mapping[str, SeverityNumber] = MappingProxyType(
    {
        "debug": SeverityNumber.DEBUG,
        "info": SeverityNumber.INFO,
        "warning": SeverityNumber.WARN,
        "error": SeverityNumber.ERROR,
        "critical": SeverityNumber.FATAL,
    }
)

#: Attribute values kept as they are; anything else is recorded as ``str(value)``.
AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
_SCALARS = (str, bool, int, float)

_EMPTY: Mapping[str, AttributeValue] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event.

    Attributes:
        name: what happened (e.g. ``"player.joined"``).
        attributes: details, read-only.
        severity: one of :data:`SEVERITIES`.
        timestamp: when it was recorded (Unix epoch seconds).
        trace_id: the current span's trace id (32 lowercase hex digits) when one was valid, else None.
        span_id: the current span's id (16 lowercase hex digits) when one was valid, else None.
    """

    name: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=lambda: _EMPTY)
    severity: str = "info"
    timestamp: float = 0.0
    trace_id: str | None = None
    span_id: str | None = None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping."""
        return {
            "name": self.name,
            "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in self.attributes.items()},
            "severity": self.severity,
            "timestamp": self.timestamp,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }


#: A hook: called with each matching event, on the recording thread.
EventHook = Callable[[Event], object]


def _homogeneous(values: Sequence[object]) -> bool:
    """Whether ``values`` are all strings, all bools, or all (non-bool) numbers."""
    if all(isinstance(v, str) for v in values) or all(isinstance(v, bool) for v in values):
        return True
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _clean_attributes(attributes: Mapping[str, object]) -> dict[str, AttributeValue]:
    """Attributes OpenTelemetry accepts: string keys; scalar or homogeneous-sequence values, else ``str()``."""
    cleaned: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, _SCALARS):
            cleaned[str(key)] = value
        elif isinstance(value, (list, tuple)) and _homogeneous(value):
            cleaned[str(key)] = tuple(value)
        else:
            cleaned[str(key)] = str(value)
    return cleaned


class EventRecorder:
    """Records structured events (see the module docs). Thread-safe; hooks run on the recording thread.

    Args:
        logger: an OpenTelemetry logger for the log records, or None for none.
        capacity: how many events the in-memory history keeps (the oldest go first).

    Raises:
        ValueError: on a capacity below 1.
    """

    def __init__(self, logger: Logger | None, *, capacity: int = 1000) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"EventRecorder.capacity: must be an integer of at least 1, got {capacity!r}")
        self._otel_logger = logger
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=capacity)
        self._hooks: dict[str, tuple[EventHook, ...]] = {}
        self._warned: set[str] = set()
        #: Events pushed out of the full history.
        self.dropped = 0
        #: Calls with a bad name, severity or attributes (recorded anyway, with a default).
        self.rejected = 0
        #: Hooks that raised.
        self.hook_errors = 0
        #: Failures adding span events or emitting log records.
        self.errors = 0

    @property
    def capacity(self) -> int:
        """How many events the history keeps."""
        return self._events.maxlen or 0

    def _warn_once(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            _logger.warning(message + " (logged once)", *args, exc_info=exc_info)

    def _reject(self, what: str, value: object) -> None:
        with self._lock:
            self.rejected += 1
        self._warn_once("reject:" + what, "record_event: bad %s %r, recorded with a default", what, value)

    def record_event(
        self,
        name: str,
        attributes: Mapping[str, object] | None = None,
        severity: str = "info",
    ) -> Event:
        """Record one event (see the module docs) and return it. Never raises.

        ``severity`` is one of ``debug``, ``info``, ``warning``, ``error``, ``critical`` (any case); anything
        else is counted in ``rejected`` and recorded as ``info``.
        """
        if not isinstance(name, str) or not name:
            self._reject("name", name)
            name = str(name) or "unnamed"
        level = severity.lower() if isinstance(severity, str) else None
        number = SEVERITIES.get(level) if level is not None else None
        if number is None:
            self._reject("severity", severity)
            level, number = "info", SeverityNumber.INFO
        try:
            cleaned = _clean_attributes(attributes) if attributes else {}
        except Exception:
            self._reject("attributes", attributes)
            cleaned = {}
        timestamp_ns = time.time_ns()
        span = trace.get_current_span()
        span_context = span.get_span_context()
        trace_id = span_id = None
        if span_context.is_valid:
            trace_id, span_id = format_trace_id(span_context.trace_id), format_span_id(span_context.span_id)
        event = Event(name, MappingProxyType(cleaned), level, timestamp_ns / 1e9, trace_id, span_id)

        if span.is_recording():
            try:
                span.add_event(name, {**cleaned, "event.severity": level}, timestamp=timestamp_ns)
            except Exception:
                self._failed("adding a span event")
        if self._otel_logger is not None:
            try:
                self._otel_logger.emit(
                    LogRecord(
                        timestamp=timestamp_ns,
                        severity_number=number,
                        severity_text=level.upper(),
                        body=name,
                        attributes=dict(cleaned),
                        event_name=name,
                    )
                )
            except Exception:
                self._failed("emitting a log record")
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(event)
        hooks = self._hooks
        matching = hooks.get(name, ()) if name == ALL_EVENTS else (*hooks.get(name, ()), *hooks.get(ALL_EVENTS, ()))
        for hook in matching:
            try:
                hook(event)
            except Exception:
                with self._lock:
                    self.hook_errors += 1
                label = getattr(hook, "__qualname__", repr(hook))
                self._warn_once(f"hook:{id(hook)}", "event hook %s failed on %r", label, name, exc_info=True)
        return event

    def _failed(self, what: str) -> None:
        with self._lock:
            self.errors += 1
        self._warn_once("failed:" + what, "record_event: %s failed", what, exc_info=True)

    def events(self, name: str | None = None, since: float | None = None) -> list[Event]:
        """The kept events, oldest first, optionally only those named ``name`` and those recorded at or after
        ``since`` (Unix epoch seconds)."""
        with self._lock:
            kept = list(self._events)
        return [e for e in kept if (name is None or e.name == name) and (since is None or e.timestamp >= since)]

    def clear(self) -> None:
        """Forget the kept events (the counts stay)."""
        with self._lock:
            self._events.clear()

    def on(self, name: str, callback: EventHook) -> None:
        """Call ``callback(event)`` for every event named ``name`` (``"*"``: every event), on the recording
        thread. A hook that raises is logged once and counted in ``hook_errors``; the others still run.

        Raises:
            ValueError: when ``callback`` is not callable (setup, not the hot path).
        """
        if not callable(callback):
            raise ValueError(f"EventRecorder.on: callback must be callable, got {callback!r}")
        with self._lock:
            self._hooks = {**self._hooks, name: (*self._hooks.get(name, ()), callback)}

    def off(self, name: str, callback: EventHook) -> None:
        """Remove one registration of ``callback`` for ``name``; nothing happens when it is not registered."""
        with self._lock:
            hooks = list(self._hooks.get(name, ()))
            if callback not in hooks:
                return
            hooks.remove(callback)
            updated = dict(self._hooks)
            if hooks:
                updated[name] = tuple(hooks)
            else:
                del updated[name]
            self._hooks = updated
