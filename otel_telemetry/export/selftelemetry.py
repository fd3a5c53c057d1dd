"""Telemetry about telemetry: collections, exports, events and everything dropped, as ``telemetry.*`` metrics.

Prometheus sees them as ``telemetry_collection_runs_total``, ``telemetry_collection_duration_seconds``,
``telemetry_metrics_count``, ``telemetry_events_total``, ``telemetry_exporter_attempts_total{exporter}``,
``telemetry_exporter_failures_total{exporter}``, ``telemetry_dropped_total{source,reason}`` and
``telemetry_pacing_waits_total{outcome}`` (the first four are seed 004's names, so its sample alert
``increase(telemetry_collection_runs_total[5m]) == 0`` works as written). Nothing the SDK drops goes uncounted.

``telemetry.pacing.waits`` counts how each background step met the game loop (:mod:`otel_telemetry.pacing`):
``outcome="fitted"``, it found an idle gap long enough (or the loop reports no ticks, so nothing is paced);
``"oversized"``, it was longer than any gap and started right after a tick ended; ``"forced"``, it found no gap
before its timeout and ran anyway, possibly into a tick.
A rising ``forced`` means telemetry's work competes with the loop: a loop with no idle time, or work grown too
long for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_telemetry._version import __version__
from otel_telemetry.catalog import Instrument
from otel_telemetry.producer import HistogramProducer, ScalarSpec

if TYPE_CHECKING:
    from otel_telemetry.snapshot.frame import Frame

_logger = logging.getLogger(__name__)

#: The scope of telemetry's own metrics.
SCOPE = InstrumentationScope("otel_telemetry.self", __version__)
#: The instruments :func:`register_self_telemetry` produces, as in ``series.SDK_FAMILIES``.
COLLECTION_RUNS = "telemetry.collection.runs"
COLLECTION_DURATION = "telemetry.collection.duration"
METRICS_COUNT = "telemetry.metrics.count"
EVENTS = "telemetry.events"
EXPORTER_ATTEMPTS = "telemetry.exporter.attempts"
EXPORTER_FAILURES = "telemetry.exporter.failures"
DROPPED = "telemetry.dropped"
PACING_WAITS = "telemetry.pacing.waits"

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


class PacingStats(Protocol):
    """What self-telemetry reads of the pacer (a ``LoopPacer``): waits granted (``oversized`` among them) and
    forced, cumulative."""

    granted: int
    oversized: int
    forced: int


def metric_families(frame: Frame) -> int:
    """The number of metric families in ``frame``: distinct metric names across its resources and scopes."""
    return len({metric.name for metric in frame.metrics()})


#: One produced instrument's points: ``[(value, attributes), ...]``.
Points = list[tuple[float, Mapping[str, Any]]]


class SelfTelemetry:
    """What :func:`register_self_telemetry` registered; counts its own observers' failures.

    Attributes:
        callback_errors: observers that raised (each is logged once per instrument; the instrument reports
            nothing for that collection, the others still do). Exact.

    Thread-safety: observers run on the collecting thread; the count takes a lock.
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

    def source(
        self, instruments: Sequence[tuple[ScalarSpec, Callable[[], Points]]]
    ) -> Callable[[], list[tuple[ScalarSpec, Points]]]:
        """A scalar source (``HistogramProducer.add_scalar_source``) of ``instruments``, each observer guarded:
        an exception is logged once per instrument, counted, and leaves only that instrument out. An instrument
        that observes nothing is left out of the collection, as an SDK instrument would be."""

        def observe() -> list[tuple[ScalarSpec, Points]]:
            found = []
            for spec, observer in instruments:
                try:
                    points = observer()
                except Exception:
                    self._failed(spec.name)
                    continue
                if points:
                    found.append((spec, points))
            return found

        return observe

    def _failed(self, name: str) -> None:
        with self._lock:
            self.callback_errors += 1
            first = name not in self._warned
            self._warned.add(name)
        if first:
            _logger.exception("self-telemetry callback %s failed (logged once; counted)", name)


_GAUGE, _COUNTER = Instrument.OBSERVABLE_GAUGE, Instrument.OBSERVABLE_COUNTER


def register_self_telemetry(
    producer: HistogramProducer,
    collection: CollectionStats,
    exporters: Sequence[ExportCounts],
    drops: Sequence[DropSource],
    *,
    events: Callable[[], int] | None = None,
    pacing: PacingStats | None = None,
    extra: Sequence[tuple[ScalarSpec, Callable[[], Points]]] = (),
) -> SelfTelemetry:
    """Produce the ``telemetry.*`` instruments through ``producer`` (scope :data:`SCOPE`, no SDK instrument: they
    cost nothing between collections and little at one) and return their :class:`SelfTelemetry`.

    Args:
        producer: the handle's producer; the instruments join every collection it is merged into.
        collection: the frame collector (runs, duration of the last collection, the newest frame).
        exporters: attempts and failures per exporter; the sequence is read at each collection, so exporters
            appended later are reported too.
        drops: sources of drop counts, summed by ``(source, reason)``; the sequence is read at each collection.
        events: the number of events recorded so far (``telemetry_events_total``); without it the instrument is
            not created.
        pacing: the pacer of the handle's background work (``telemetry_pacing_waits_total``); without it the
            instrument is not created.
        extra: more instruments of the same scope (the handle's ``process.*`` gauges), guarded the same way.

    ``telemetry.metrics.count`` is the number of metric families of the newest frame at the time of the
    collection, i.e. the previous frame's (the frame being taken is not finished yet); it is absent from the first
    frame. Counters are cumulative from this call on.
    """
    own = SelfTelemetry()

    def runs() -> Points:
        return [(collection.runs, {})]

    def duration() -> Points:
        last = collection.last_duration
        return [] if last is None else [(last, {})]

    def metrics_count() -> Points:
        frame = collection.latest()
        return [] if frame is None else [(own.families(frame), {})]

    def attempts() -> Points:
        return [(counts.attempts, {"exporter": counts.name}) for counts in list(exporters)]

    def failures() -> Points:
        return [(counts.failures, {"exporter": counts.name}) for counts in list(exporters)]

    def dropped() -> Points:
        totals: dict[tuple[str, str], int] = {}
        for source in [*drops, own.drops]:
            for name, reason, count in source():
                totals[(name, reason)] = totals.get((name, reason), 0) + count
        return [(count, {"source": name, "reason": reason}) for (name, reason), count in sorted(totals.items())]

    instruments: list[tuple[ScalarSpec, Callable[[], Points]]] = [
        (
            ScalarSpec(
                COLLECTION_RUNS, _COUNTER, "{collection}", "Periodic collections run (each frame counts itself)"
            ),
            runs,
        ),
        (ScalarSpec(COLLECTION_DURATION, _GAUGE, "s", "Duration of the last periodic collection"), duration),
        (ScalarSpec(METRICS_COUNT, _GAUGE, "{metric}", "Metric families in the newest frame"), metrics_count),
    ]
    if events is not None:
        count_events = events
        instruments.append(
            (ScalarSpec(EVENTS, _COUNTER, "{event}", "Events recorded"), lambda: [(int(count_events()), {})])
        )
    instruments += [
        (ScalarSpec(EXPORTER_ATTEMPTS, _COUNTER, "{export}", "Export attempts, by exporter"), attempts),
        (ScalarSpec(EXPORTER_FAILURES, _COUNTER, "{export}", "Failed export attempts, by exporter"), failures),
        (
            ScalarSpec(
                DROPPED,
                _COUNTER,
                "{value}",
                "Values dropped by the SDK (invalid input, overflow, failed callbacks), by source and reason",
            ),
            dropped,
        ),
    ]
    if pacing is not None:
        paced = pacing

        def waits() -> Points:
            granted, oversized, forced = paced.granted, paced.oversized, paced.forced
            return [
                (granted - oversized, {"outcome": "fitted"}),
                (oversized, {"outcome": "oversized"}),
                (forced, {"outcome": "forced"}),
            ]

        instruments.append(
            (
                ScalarSpec(
                    PACING_WAITS,
                    _COUNTER,
                    "{wait}",
                    "Background steps' waits for an idle gap of the game loop, by outcome",
                ),
                waits,
            )
        )
    instruments += extra
    producer.add_scalar_source(own.source(instruments), time.time_ns(), SCOPE)
    return own
