"""Telemetry about telemetry: collections, exports and everything dropped, as ``telemetry.*`` metrics.

Prometheus sees them as ``telemetry_collections_total``, ``telemetry_collection_duration_seconds``,
``telemetry_exporter_attempts_total{exporter}``, ``telemetry_exporter_failures_total{exporter}``,
``telemetry_dropped_total{source,reason}``. Nothing the SDK drops goes uncounted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData


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


class CountingExporter(MetricExporter):
    """Wraps a ``MetricExporter`` and counts its attempts and failures (an exception counts as a failure)."""

    def __init__(self, inner: MetricExporter, counts: ExportCounts) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self.counts = counts

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            self.counts.record(False)
            raise
        self.counts.record(result is MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class CollectionStats:
    """Runs and duration of the periodic collection. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0
        self.last_duration: float | None = None
        self._started: float | None = None

    def started(self) -> None:
        """A collection begins (called on the collecting thread)."""
        self._started = time.perf_counter()

    def finished(self) -> None:
        """The collection that began last has ended."""
        started = self._started
        with self._lock:
            self.runs += 1
            if started is not None:
                self.last_duration = time.perf_counter() - started


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
