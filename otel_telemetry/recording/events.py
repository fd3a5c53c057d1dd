"""Structured events: a span event, an OpenTelemetry log record, a bounded queryable history, counts and hooks.

``record_event("player.kicked", {"reason": "afk"}, labels={"mode": "ranked"}, severity="warning",
category="gameplay")``, or with a number: ``record_event("match.duration", 1834.5, category="gameplay")``.

* ``value``: a mapping is the event's data (its attributes); a number is :attr:`Event.value`.
* ``labels``: a few low-cardinality ``str -> str`` pairs to filter on (``events(labels=...)``).
* ``metadata``: free-form details (cleaned like attributes).
* ``severity``: ``debug``, ``info``, ``warning`` (alias ``warn``), ``error``, ``critical``, any case.
* ``category``: see :mod:`otel_telemetry.recording.event_fields` for the built-in ones; more with
  :meth:`EventRecorder.add_category`. The default is ``application``.

Each event

* is added to the current span when one is recording, and emitted as an OpenTelemetry log record (``event_name``
  and body = the name, severity number and text) when the recorder has a logger. Both carry the attributes, the
  labels as attributes, ``event.category``, ``event.value`` (when set) and each metadata entry as
  ``metadata.<key>``; the span event also carries ``event.severity``. Those names are reserved: an attribute or
  label key equal to one of them (or starting with ``metadata.``), or a label key equal to an attribute key, is
  refused;
* is kept in a bounded history (``capacity`` events, and with ``retention`` none older than that many seconds);
  what leaves it is counted by reason (``capacity``, ``age``);
* is counted by category and severity (:meth:`EventRecorder.counts`);
* is passed to the hooks registered for its name and for ``"*"``, each isolated.

Bad input is refused where it is made: ``record_event`` raises ``ValueError`` naming the field and the value (and
counts it in ``rejected``) before anything is recorded; nothing is silently replaced by a default. Failures past
that point (a hook, the span, the logger) never reach the caller: they are logged once and counted.

The old call ``record_event(name, attributes, severity)`` still works: a string in the third position, where
labels now go, is read as the severity.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from opentelemetry import trace
from opentelemetry.trace import format_span_id, format_trace_id

from otel_telemetry._otel import Logger, LogRecord
from otel_telemetry.recording import event_fields as fields
from otel_telemetry.recording.event_fields import (
    BUILTIN_CATEGORIES,
    DEFAULT_CATEGORY,
    METADATA_PREFIX,
    SEVERITIES,
    SEVERITY_ALIASES,
    AttributeValue,
)

__all__ = [
    "ALL_EVENTS",
    "BUILTIN_CATEGORIES",
    "DEFAULT_CATEGORY",
    "SEVERITIES",
    "SEVERITY_ALIASES",
    "AttributeValue",
    "Event",
    "EventHook",
    "EventRecorder",
]

_logger = logging.getLogger(__name__)

#: The hook name that receives every event.
ALL_EVENTS = "*"

_EMPTY: Mapping[str, AttributeValue] = MappingProxyType({})
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def _jsonable(values: Mapping[str, AttributeValue]) -> dict[str, object]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event (immutable).

    Attributes:
        name: what happened (e.g. ``"player.joined"``).
        attributes: the event's data, read-only.
        severity: one of :data:`SEVERITIES` (an alias is stored resolved: ``warn`` as ``warning``).
        timestamp: when it was recorded (Unix epoch seconds).
        trace_id: the current span's trace id (32 lowercase hex digits) when one was valid, else None.
        span_id: the current span's id (16 lowercase hex digits) when one was valid, else None.
        category: the event's category (``application`` by default).
        value: the event's number, or None.
        labels: low-cardinality ``str -> str`` pairs, read-only.
        metadata: free-form details (cleaned like attributes), read-only.
    """

    name: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=lambda: _EMPTY)
    severity: str = "info"
    timestamp: float = 0.0
    trace_id: str | None = None
    span_id: str | None = None
    category: str = DEFAULT_CATEGORY
    value: float | int | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)
    metadata: Mapping[str, AttributeValue] = field(default_factory=lambda: _EMPTY)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping of every field (sequences as lists)."""
        return {
            "name": self.name,
            "category": self.category,
            "severity": self.severity,
            "value": self.value,
            "attributes": _jsonable(self.attributes),
            "labels": dict(self.labels),
            "metadata": _jsonable(self.metadata),
            "timestamp": self.timestamp,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }

    def exported_attributes(self) -> dict[str, AttributeValue]:
        """The attributes of its log record: attributes, labels, ``event.category``, ``event.value`` when set, and
        ``metadata.<key>`` for each metadata entry."""
        exported: dict[str, AttributeValue] = {**self.attributes, **self.labels, "event.category": self.category}
        if self.value is not None:
            exported["event.value"] = self.value
        exported.update({METADATA_PREFIX + key: value for key, value in self.metadata.items()})
        return exported


#: A hook: called with each matching event, on the recording thread.
EventHook = Callable[[Event], object]

#: Why an event left the history.
_REASONS = ("capacity", "age")


class EventRecorder:
    """Records structured events (see the module docs). Thread-safe: one lock guards the history and the counts;
    hooks run on the recording thread, outside it.

    Args:
        logger: an OpenTelemetry logger for the log records, or None for none.
        capacity: how many events the history keeps at most (the oldest go first).
        retention: the longest an event is kept, in seconds, or None for no age limit.

    Raises:
        ValueError: on a capacity below 1 or a retention that is not a positive number of seconds.
    """

    def __init__(self, logger: Logger | None, *, capacity: int = 1000, retention: float | None = None) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"EventRecorder.capacity: must be an integer of at least 1, got {capacity!r}")
        if retention is not None and (
            isinstance(retention, bool) or not isinstance(retention, (int, float)) or not 0 < retention < math.inf
        ):
            raise ValueError(
                f"EventRecorder.retention: must be a positive number of seconds or None, got {retention!r}"
            )
        self._otel_logger = logger
        self._retention = None if retention is None else float(retention)
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=capacity)
        self._hooks: dict[str, tuple[EventHook, ...]] = {}
        self._categories: frozenset[str] = frozenset(BUILTIN_CATEGORIES)
        self._added: tuple[str, ...] = ()
        self._warned: set[str] = set()
        self._dropped = dict.fromkeys(_REASONS, 0)
        self._counts: dict[tuple[str, str], int] = {}
        self._recorded = 0
        #: Calls refused with a ValueError (bad name, severity, category, value, labels, metadata).
        self.rejected = 0
        #: Hooks that raised.
        self.hook_errors = 0
        #: Failures adding span events or emitting log records.
        self.errors = 0

    # -- settings --------------------------------------------------------------------------------------------------
    def set_logger(self, logger: Logger | None) -> None:
        """Emit the log records of later events to ``logger`` (None: none); for a logger made after the recorder
        (a handle makes its logger provider on first use). Thread-safe: one attribute write."""
        self._otel_logger = logger

    @property
    def capacity(self) -> int:
        """How many events the history keeps at most."""
        return self._events.maxlen or 0

    @property
    def retention(self) -> float | None:
        """The longest an event is kept (seconds), or None."""
        return self._retention

    @property
    def categories(self) -> tuple[str, ...]:
        """The known categories: the built-in ones, then those added, in order."""
        return (*BUILTIN_CATEGORIES, *self._added)

    def add_category(self, name: str) -> None:
        """Make ``name`` a known category (registering a known one again does nothing).

        Raises:
            ValueError: when ``name`` is not a lowercase identifier, or beyond
                :data:`~otel_telemetry.recording.event_fields.MAX_CATEGORIES` added categories.
        """
        fields.category_name(name, "EventRecorder.add_category: name")
        with self._lock:
            if name in self._categories:
                return
            if len(self._added) >= fields.MAX_CATEGORIES:
                raise ValueError(
                    f"EventRecorder.add_category: name {name!r} refused, at most {fields.MAX_CATEGORIES} "
                    "categories may be added"
                )
            self._added = (*self._added, name)
            self._categories = self._categories | {name}

    def _category(self, value: object, field: str) -> str:
        if isinstance(value, str) and value in self._categories:
            return value
        raise ValueError(f"{field}: unknown category {value!r}, known: {list(self.categories)}")

    # -- counts ----------------------------------------------------------------------------------------------------
    @property
    def recorded(self) -> int:
        """Events recorded since the recorder was made (refused calls not included)."""
        with self._lock:
            return self._recorded

    @property
    def dropped(self) -> int:
        """Events that left the history: pushed out by ``capacity`` or expired by ``retention``."""
        with self._lock:
            return sum(self._dropped.values())

    @property
    def dropped_by_reason(self) -> dict[str, int]:
        """:attr:`dropped` by reason: ``{"capacity": n, "age": m}``."""
        with self._lock:
            return dict(self._dropped)

    def counts(self) -> dict[tuple[str, str], int]:
        """Events recorded so far by ``(category, severity)`` (a copy; only pairs seen appear). Bounded: at most
        the known categories times the five severities."""
        with self._lock:
            return dict(self._counts)

    # -- recording -------------------------------------------------------------------------------------------------
    def _warn_once(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            _logger.warning(message + " (logged once)", *args, exc_info=exc_info)

    def record_event(
        self,
        name: str,
        value: Mapping[str, object] | float | None = None,
        labels: Mapping[str, str] | str | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        severity: str = "info",
        category: str = DEFAULT_CATEGORY,
        attributes: Mapping[str, object] | None = None,
    ) -> Event:
        """Record one event (see the module docs) and return it.

        Args:
            name: what happened, a non-empty string.
            value: the event's data (a mapping, as ``attributes``) or its number (:attr:`Event.value`).
            labels: up to 16 ``str -> str`` pairs of low cardinality (a string here is the old signature's
                severity: ``record_event(name, attributes, "warning")``).
            metadata: free-form details.
            severity: ``debug``, ``info``, ``warning`` (or ``warn``), ``error`` or ``critical``, any case.
            category: a known category (:attr:`categories`).
            attributes: the event's data, when ``value`` is a number (give the data once).

        Raises:
            ValueError: naming the field and the value when any of them is invalid; nothing is recorded then.
        """
        timestamp_ns = time.time_ns()
        try:
            event = self._build(name, value, labels, metadata, severity, category, attributes, timestamp_ns)
        except ValueError as exc:
            with self._lock:
                self.rejected += 1
            raise ValueError(f"record_event: {exc}") from None
        self._emit(event, timestamp_ns)
        self._store(event)
        self._run_hooks(event)
        return event

    def _build(
        self,
        name: object,
        value: object,
        labels: object,
        metadata: object,
        severity: object,
        category: object,
        attributes: object,
        timestamp_ns: int,
    ) -> Event:
        if isinstance(labels, str):  # the old signature's third positional argument
            if severity != "info":
                raise ValueError(f"severity: given twice ({labels!r} in the labels' place and {severity!r})")
            severity, labels = labels, None
        fields.event_name(name)
        level = fields.severity_level(severity)
        kind = self._category(category, "category")
        number: float | int | None = None
        if isinstance(value, Mapping):
            if attributes is not None:
                raise ValueError("attributes: the event's data was given twice (as value and as attributes)")
            data = fields.clean_attributes(value, "value")
        else:
            number = fields.event_value(value)
            data = fields.clean_attributes(attributes, "attributes")
        fields.check_keys(list(data), "attributes")
        tags = fields.clean_labels(labels)
        shared = sorted(set(tags) & set(data))
        if shared:
            raise ValueError(f"labels: keys {shared} are also attribute keys")
        details = fields.clean_attributes(metadata, "metadata")
        span_context = trace.get_current_span().get_span_context()
        trace_id = span_id = None
        if span_context.is_valid:
            trace_id, span_id = format_trace_id(span_context.trace_id), format_span_id(span_context.span_id)
        return Event(
            str(name),
            MappingProxyType(data),
            level,
            timestamp_ns / 1e9,
            trace_id,
            span_id,
            kind,
            number,
            MappingProxyType(tags),
            MappingProxyType(details),
        )

    def _emit(self, event: Event, timestamp_ns: int) -> None:
        """The span event and the log record; failures are logged once and counted, never raised."""
        exported = event.exported_attributes()
        span = trace.get_current_span()
        if span.is_recording():
            try:
                span.add_event(event.name, {**exported, "event.severity": event.severity}, timestamp=timestamp_ns)
            except Exception:
                self._failed("adding a span event")
        if self._otel_logger is not None:
            try:
                self._otel_logger.emit(
                    LogRecord(
                        timestamp=timestamp_ns,
                        severity_number=SEVERITIES[event.severity],
                        severity_text=event.severity.upper(),
                        body=event.name,
                        attributes=exported,
                        event_name=event.name,
                    )
                )
            except Exception:
                self._failed("emitting a log record")

    def _store(self, event: Event) -> None:
        with self._lock:
            self._expire(event.timestamp)
            if len(self._events) == self._events.maxlen:
                self._dropped["capacity"] += 1
            self._events.append(event)
            self._recorded += 1
            key = (event.category, event.severity)
            self._counts[key] = self._counts.get(key, 0) + 1

    def _expire(self, now: float) -> None:
        """Drop the events older than ``retention``, counting them. Call with ``_lock`` held."""
        if self._retention is None:
            return
        oldest = now - self._retention
        events = self._events
        while events and events[0].timestamp < oldest:
            events.popleft()
            self._dropped["age"] += 1

    def _run_hooks(self, event: Event) -> None:
        hooks = self._hooks
        name = event.name
        matching = hooks.get(name, ()) if name == ALL_EVENTS else (*hooks.get(name, ()), *hooks.get(ALL_EVENTS, ()))
        for hook in matching:
            try:
                hook(event)
            except Exception:
                with self._lock:
                    self.hook_errors += 1
                label = getattr(hook, "__qualname__", repr(hook))
                self._warn_once(f"hook:{id(hook)}", "event hook %s failed on %r", label, name, exc_info=True)

    def _failed(self, what: str) -> None:
        with self._lock:
            self.errors += 1
        self._warn_once("failed:" + what, "record_event: %s failed", what, exc_info=True)

    # -- queries ---------------------------------------------------------------------------------------------------
    def events(
        self,
        name: str | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        severity: str | None = None,
        min_severity: str | None = None,
        category: str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """The kept events that match every filter given, oldest first.

        Args:
            name: exactly this name.
            since: recorded at or after this time (Unix epoch seconds or a datetime; inclusive).
            until: recorded before this time (exclusive).
            severity: exactly this severity (aliases accepted).
            min_severity: this severity or a more severe one.
            category: exactly this (known) category.
            labels: carrying every one of these label pairs (a subset match).
            limit: only the newest ``limit`` of the matches.

        Raises:
            ValueError: naming the filter and the value when one is invalid (an unknown category too, and
                ``since`` after ``until``).
        """
        if name is not None:
            fields.event_name(name, "events: name")
        start = fields.epoch_seconds(since, "events: since")
        end = fields.epoch_seconds(until, "events: until")
        if start is not None and end is not None and start > end:
            raise ValueError(f"events: since ({since!r}) is after until ({until!r})")
        level = None if severity is None else fields.severity_level(severity, "events: severity")
        floor = (
            None
            if min_severity is None
            else fields.severity_rank(fields.severity_level(min_severity, "events: min_severity"))
        )
        if category is not None:
            self._category(category, "events: category")
        wanted = fields.clean_labels(labels, "events: labels").items()
        count = fields.positive_int(limit, "events: limit")
        with self._lock:
            self._expire(time.time())
            kept = list(self._events)
        found = [
            event
            for event in kept
            if (name is None or event.name == name)
            and (start is None or event.timestamp >= start)
            and (end is None or event.timestamp < end)
            and (level is None or event.severity == level)
            and (floor is None or fields.severity_rank(event.severity) >= floor)
            and (category is None or event.category == category)
            and all(event.labels.get(key) == value for key, value in wanted)
        ]
        return found if count is None else found[-count:]

    def clear(self) -> None:
        """Forget the kept events (the counts stay)."""
        with self._lock:
            self._events.clear()

    # -- hooks -----------------------------------------------------------------------------------------------------
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
