"""Telemetry about telemetry: collections, exports and everything dropped, as ``telemetry.*`` metrics.

Prometheus sees them as ``telemetry_collections_total``, ``telemetry_collection_duration_seconds``,
``telemetry_exporter_attempts_total{exporter}``, ``telemetry_exporter_failures_total{exporter}``,
``telemetry_dropped_total{source,reason}``. Nothing the SDK drops goes uncounted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation


class ExportCounts:
    """Attempts and failures of one exporter. Thread-safe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.attempts = 0
        self.failures = 0

    def record(self, ok: bool) -> None:
        """One export attempt and whether it succeeded."""
        with self._lock:
            self.attempts += 1
            if not ok:
                self.failures += 1


class CollectionStats(Protocol):
    """What self-telemetry reads of the collection (a ``FrameCollector``)."""

    @property
    def runs(self) -> int: ...

    @property
    def last_duration(self) -> float | None: ...


#: A source of drop counts: ``(source, reason, count)`` triples, cumulative.
DropSource = Callable[[], Iterable[tuple[str, str, int]]]


def register_self_telemetry(
    meter: Meter,
    collection: CollectionStats,
    exporters: Sequence[ExportCounts],
    drops: Sequence[DropSource],
) -> None:
    """Create the ``telemetry.*`` observable instruments on ``meter``."""

    def runs(_options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(collection.runs)

    def duration(_options: CallbackOptions) -> Iterator[Observation]:
        if collection.last_duration is not None:
            yield Observation(collection.last_duration)

    def attempts(_options: CallbackOptions) -> Iterator[Observation]:
        for counts in exporters:
            yield Observation(counts.attempts, {"exporter": counts.name})

    def failures(_options: CallbackOptions) -> Iterator[Observation]:
        for counts in exporters:
            yield Observation(counts.failures, {"exporter": counts.name})

    def dropped(_options: CallbackOptions) -> Iterator[Observation]:
        totals: dict[tuple[str, str], int] = {}
        for source in drops:
            for name, reason, count in source():
                totals[(name, reason)] = totals.get((name, reason), 0) + count
        for (name, reason), count in sorted(totals.items()):
            yield Observation(count, {"source": name, "reason": reason})

    meter.create_observable_counter(
        "telemetry.collections", [runs], unit="{collection}", description="Periodic collections run"
    )
    meter.create_observable_gauge(
        "telemetry.collection.duration", [duration], unit="s", description="Duration of the last periodic collection"
    )
    meter.create_observable_counter(
        "telemetry.exporter.attempts", [attempts], unit="{export}", description="Export attempts, by exporter"
    )
    meter.create_observable_counter(
        "telemetry.exporter.failures", [failures], unit="{export}", description="Failed export attempts, by exporter"
    )
    meter.create_observable_counter(
        "telemetry.dropped",
        [dropped],
        unit="{value}",
        description="Values dropped by the SDK (invalid input, overflow, failed callbacks), by source and reason",
    )
