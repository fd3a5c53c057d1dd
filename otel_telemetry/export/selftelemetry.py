"""Telemetry about telemetry: collections, exports, events and everything dropped, as ``telemetry.*`` metrics.

Prometheus sees them as ``telemetry_collection_runs_total``, ``telemetry_collection_duration_seconds``,
``telemetry_metrics_count``, ``telemetry_events_total``, ``telemetry_exporter_attempts_total{exporter}``,
``telemetry_exporter_failures_total{exporter}`` and ``telemetry_dropped_total{source,reason}`` (the first four are
seed 004's names, so its sample alert ``increase(telemetry_collection_runs_total[5m]) == 0`` works as written).
Nothing the SDK drops goes uncounted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

if TYPE_CHECKING:
    from otel_telemetry.snapshot.frame import Frame

_logger = logging.getLogger(__name__)

#: The instruments :func:`register_self_telemetry` creates: ``(name, unit, kind)``, as in ``series.SDK_FAMILIES``.
COLLECTION_RUNS = "telemetry.collection.runs"
COLLECTION_DURATION = "telemetry.collection.duration"
METRICS_COUNT = "telemetry.metrics.count"
EVENTS = "telemetry.events"
EXPORTER_ATTEMPTS = "telemetry.exporter.attempts"
EXPORTER_FAILURES = "telemetry.exporter.failures"
DROPPED = "telemetry.dropped"

#: Seed 004's Prometheus names that ``promtool check metrics`` flags (a gauge ending in ``_count``), kept because
#: the seed's dashboards and alerts use them, as the catalog keeps the spec's abbreviated names.
SEED_FIXED_PROMETHEUS_NAMES: frozenset[str] = frozenset({"telemetry_metrics_count"})


class ExportCounts:
    """Attempts and failures of one exporter. Thread-safe.

    :attr:`listener`, when set, is called with ``(name, ok)`` after each attempt (the handle's ``export`` hooks);
    it must not raise (the hook registry isolates every hook).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.attempts = 0
        self.failures = 0
        self.listener: Callable[[str, bool], None] | None = None

    def record(self, ok: bool) -> None:
        """One export attempt and whether it succeeded."""
        with self._lock:
            self.attempts += 1
            if not ok:
                self.failures += 1
        listener = self.listener
        if listener is not None:
            listener(self.name, ok)


class CollectionStats(Protocol):
    """What self-telemetry reads of the collection (a ``FrameCollector``)."""

    @property
    def runs(self) -> int: ...

    @property
    def last_duration(self) -> float | None: ...

    def latest(self) -> Frame | None: ...


#: A source of drop counts: ``(source, reason, count)`` triples, cumulative.
DropSource = Callable[[], Iterable[tuple[str, str, int]]]


def metric_families(frame: Frame) -> int:
    """The number of metric families in ``frame``: distinct metric names across its resources and scopes."""
    return len({metric.name for metric in frame.metrics()})


class SelfTelemetry:
    """What :func:`register_self_telemetry` registered; counts its own callbacks' failures.

    Attributes:
        callback_errors: callbacks that raised (each is logged once per instrument; the instrument reports
            nothing for that collection). Exact.

    Thread-safety: callbacks run on the collecting thread; the count takes a lock.
    """

    def __init__(self) -> None:
        self.callback_errors = 0
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._families: tuple[int, int] | None = None  # (frame sequence, families) of the newest frame counted

    def drops(self) -> list[tuple[str, str, int]]:
        """A :data:`DropSource` of this object's own failures: ``("self_telemetry", "callback_error", n)``."""
        return [("self_telemetry", "callback_error", self.callback_errors)]

    def families(self, frame: Frame) -> int:
        """:func:`metric_families` of ``frame``, counted once per frame."""
        cached = self._families
        if cached is not None and cached[0] == frame.sequence:
            return cached[1]
        count = metric_families(frame)
        self._families = (frame.sequence, count)
        return count

    def guarded(
        self, name: str, callback: Callable[[CallbackOptions], Iterable[Observation]]
    ) -> Callable[[CallbackOptions], list[Observation]]:
        """``callback`` made safe: an exception is logged once, counted, and yields no observation."""

        def observe(options: CallbackOptions) -> list[Observation]:
            try:
                return list(callback(options))
            except Exception:
                with self._lock:
                    self.callback_errors += 1
                    first = name not in self._warned
                    self._warned.add(name)
                if first:
                    _logger.exception("self-telemetry callback %s failed (logged once; counted)", name)
                return []

        return observe


def register_self_telemetry(
    meter: Meter,
    collection: CollectionStats,
    exporters: Sequence[ExportCounts],
    drops: Sequence[DropSource],
    *,
    events: Callable[[], int] | None = None,
) -> SelfTelemetry:
    """Create the ``telemetry.*`` observable instruments on ``meter`` and return their :class:`SelfTelemetry`.

    Args:
        meter: the handle's own meter.
        collection: the frame collector (runs, duration of the last collection, the newest frame).
        exporters: attempts and failures per exporter; the sequence is read at each collection, so exporters
            appended later are reported too.
        drops: sources of drop counts, summed by ``(source, reason)``; the sequence is read at each collection.
        events: the number of events recorded so far (``telemetry_events_total``); without it the instrument is
            not created.

    ``telemetry.metrics.count`` is the number of metric families of the newest frame at the time of the
    collection, i.e. the previous frame's (the frame being taken is not finished yet); it is absent from the first
    frame.
    """
    own = SelfTelemetry()

    def runs(_options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(collection.runs)

    def duration(_options: CallbackOptions) -> Iterator[Observation]:
        if collection.last_duration is not None:
            yield Observation(collection.last_duration)

    def metrics_count(_options: CallbackOptions) -> Iterator[Observation]:
        frame = collection.latest()
        if frame is not None:
            yield Observation(own.families(frame))

    def attempts(_options: CallbackOptions) -> Iterator[Observation]:
        for counts in list(exporters):
            yield Observation(counts.attempts, {"exporter": counts.name})

    def failures(_options: CallbackOptions) -> Iterator[Observation]:
        for counts in list(exporters):
            yield Observation(counts.failures, {"exporter": counts.name})

    def dropped(_options: CallbackOptions) -> Iterator[Observation]:
        totals: dict[tuple[str, str], int] = {}
        for source in [*drops, own.drops]:
            for name, reason, count in source():
                totals[(name, reason)] = totals.get((name, reason), 0) + count
        for (name, reason), count in sorted(totals.items()):
            yield Observation(count, {"source": name, "reason": reason})

    meter.create_observable_counter(
        COLLECTION_RUNS,
        [own.guarded(COLLECTION_RUNS, runs)],
        unit="{collection}",
        description="Periodic collections run (each frame counts itself)",
    )
    meter.create_observable_gauge(
        COLLECTION_DURATION,
        [own.guarded(COLLECTION_DURATION, duration)],
        unit="s",
        description="Duration of the last periodic collection",
    )
    meter.create_observable_gauge(
        METRICS_COUNT,
        [own.guarded(METRICS_COUNT, metrics_count)],
        unit="{metric}",
        description="Metric families in the newest frame",
    )
    if events is not None:
        count_events = events

        def recorded(_options: CallbackOptions) -> Iterator[Observation]:
            yield Observation(int(count_events()))

        meter.create_observable_counter(
            EVENTS, [own.guarded(EVENTS, recorded)], unit="{event}", description="Events recorded"
        )
    meter.create_observable_counter(
        EXPORTER_ATTEMPTS,
        [own.guarded(EXPORTER_ATTEMPTS, attempts)],
        unit="{export}",
        description="Export attempts, by exporter",
    )
    meter.create_observable_counter(
        EXPORTER_FAILURES,
        [own.guarded(EXPORTER_FAILURES, failures)],
        unit="{export}",
        description="Failed export attempts, by exporter",
    )
    meter.create_observable_counter(
        DROPPED,
        [own.guarded(DROPPED, dropped)],
        unit="{value}",
        description="Values dropped by the SDK (invalid input, overflow, failed callbacks), by source and reason",
    )
    return own
