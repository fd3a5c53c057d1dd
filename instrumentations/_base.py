"""What every monitor shares: catalog-driven instruments, isolation, rejected-value counting, refresh.

Bad input, the same in every monitor: sizes and counts are ints from 0 to 2**63 - 1 (what an OTLP integer point
can carry), durations and latencies finite numbers from 0 to 1e300, ids and names anything :func:`label_value`
can turn into a label (``str(value)``, at most 128 characters, see :mod:`otel_telemetry.series`). Anything else
is dropped at the call and counted in ``rejected``; it never reaches an accumulator, so it cannot poison a
collection.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_telemetry.accumulators import (
    HistogramLayout,
    HistogramSeries,
    HistogramSnapshot,
    HistogramState,
    SeriesKey,
    SlidingWindow,
    difference,
)
from otel_telemetry.catalog import CATALOG, Instrument, MetricSpec, Section
from otel_telemetry.series import SeriesRegistry, describe, encodable, label_value

__all__ = ["Monitor", "Points", "encodable", "is_number", "label_value", "single"]

_logger = logging.getLogger("instrumentations")

#: ``(value, attributes)`` pairs an observer yields for one instrument.
Points = Iterable[tuple[float, Mapping[str, str]]]

_NO_ATTRIBUTES: Mapping[str, str] = {}


def is_number(value: object) -> bool:
    """True for real numbers that are finite (bools are not numbers here)."""
    cls = value.__class__
    if cls is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    return cls is int or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


class Monitor:
    """Base of the four monitors.

    A monitor owns the accumulators of one spec section. :meth:`attach` creates the section's observable
    instruments on an OpenTelemetry :class:`~opentelemetry.metrics.Meter`; histograms are exposed through
    :meth:`histograms` for the SDK's producer to merge into every reader's collection. Hot-path calls never raise:
    a bad value is dropped and counted in :attr:`rejected`, with one warning per call name.

    Args:
        series: the handle's :class:`~otel_telemetry.series.SeriesRegistry` (the namespace and series budget
            shared with the other monitors, the facade and the handlers); the monitor reserves its section's
            fixed series there. None gives the monitor a registry of its own (default budget).

    Thread-safety: recording calls write per-thread accumulators (no lock, no lost update); the counts of rare
    events (rejected values, failed callbacks, overflows) are kept under a lock taken only on those paths, so
    every count is exact whichever threads call.
    """

    section: Section

    def __init__(
        self,
        *,
        percentile_window: float = 60.0,
        refresh_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        series: SeriesRegistry | None = None,
    ) -> None:
        #: The namespace and series budget this monitor's series are counted in.
        self.series = series if series is not None else SeriesRegistry()
        self.series.reserve_catalog(self.section)
        self._clock = clock
        self._percentile_window = percentile_window
        self._refresh_interval = refresh_interval
        self._refresh_lock = threading.Lock()
        self._last_refresh: float | None = None
        self._attached = False
        self._meters: list[Meter] = []
        # Set by attach_produced: the scalar instruments and their observers, read by scalar_points.
        self._produced: list[tuple[MetricSpec, Callable[[], Points]]] | None = None
        self._series: dict[SeriesKey, tuple[MetricSpec, HistogramSeries, float]] = {}
        self._series_lock = threading.Lock()
        self._previous: dict[SeriesKey, HistogramSnapshot] = {}
        self._windows: dict[SeriesKey, SlidingWindow] = {}
        self._states: dict[SeriesKey, HistogramState] = {}
        # Counts of the rare paths (a rejected value, a failed callback) and the names already warned about, all
        # under one lock: a lock costs nothing on the hot path, which never takes it.
        self._counts_lock = threading.Lock()
        self._rejected: dict[str, int] = {}
        self._warned: set[str] = set()
        self._callback_errors = 0
        self._layouts: dict[str, HistogramLayout] = {}

    # -- specs ------------------------------------------------------------------------------------------------------
    def specs(self) -> list[MetricSpec]:
        """The catalog entries this monitor serves."""
        return [s for s in CATALOG if s.section is self.section]

    # -- bad input --------------------------------------------------------------------------------------------------
    @property
    def rejected(self) -> Mapping[str, int]:
        """Dropped values per call name (bad types, NaN, infinities, negative sizes or durations). A copy; exact
        however many threads call at once."""
        with self._counts_lock:
            return dict(self._rejected)

    @property
    def callback_errors(self) -> int:
        """OpenTelemetry callbacks of this monitor that failed (each instrument logged once). Exact."""
        return self._callback_errors

    def _first_time(self, key: str) -> bool:
        """Whether ``key`` is warned about for the first time (call with ``_counts_lock`` held)."""
        if key in self._warned:
            return False
        self._warned.add(key)
        return True

    def _reject(self, call: str, value: object) -> None:
        with self._counts_lock:
            self._rejected[call] = self._rejected.get(call, 0) + 1
            first = self._first_time(call)
        if first:
            _logger.warning(
                "%s: dropped invalid value %s (logged once; further drops are counted in rejected)",
                call,
                describe(value),
            )

    # -- histograms -------------------------------------------------------------------------------------------------
    def _layout(self, spec: MetricSpec, scale: float) -> HistogramLayout:
        key = f"{spec.name}@{scale}"
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = HistogramLayout(spec.boundaries, scale)
        return layout

    def _histogram(self, spec: MetricSpec, scale: float = 1.0, **attributes: str) -> HistogramSeries:
        """The series of ``spec`` for ``attributes`` (created once; bind it and keep it for the hot path)."""
        key = SeriesKey(spec.name, tuple(sorted(attributes.items())))
        with self._series_lock:
            found = self._series.get(key)
            if found is None:
                series = HistogramSeries(self._layout(spec, scale), key.attributes)
                found = self._series[key] = (spec, series, time.time())
        return found[1]

    def histograms(self) -> list[HistogramState]:
        """Every histogram series as of the latest refresh (refreshing first when due)."""
        self.refresh()
        return list(self._states.values())

    def histogram_state(self, name: str, **attributes: str) -> HistogramState | None:
        """One series' state as of the latest refresh, or None when it has not recorded yet."""
        self.refresh()
        return self._states.get(SeriesKey(name, tuple(sorted(attributes.items()))))

    # -- refresh ----------------------------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Recompute derived values (rates, windows) if ``refresh_interval`` has passed since the last time.

        Called by every collection; several readers collecting within one interval see the same values.
        """
        with self._refresh_lock:
            now = self._clock()
            last = self._last_refresh
            if last is not None and (now <= last or (not force and now - last < self._refresh_interval)):
                return  # no time has passed (or not enough): the values of the last refresh stand
            self._last_refresh = now
            with self._series_lock:
                series = list(self._series.items())
            for key, (spec, hist, started) in series:
                previous = self._previous.get(key)
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = SlidingWindow(hist.layout, self._percentile_window)
                if previous is not None and hist.unchanged():
                    # Nothing recorded since the last refresh (most series of a frame): the cumulative snapshot
                    # stands, and the state too unless part of the window expired.
                    if window.expire(now):
                        self._states[key] = HistogramState(spec, key, previous, window.snapshot(), started)
                    continue
                cumulative = hist.snapshot()
                # The interval since the previous refresh, with its exact min and max. Snapshots cover only the
                # cells ever used, so statistics and buckets stay cheap.
                window.add(now, difference(cumulative, previous))
                self._previous[key] = cumulative
                self._states[key] = HistogramState(spec, key, cumulative, window.snapshot(), started)
            self._refresh(now)

    def _refresh(self, now: float) -> None:
        """Subclasses compute their rates here (called under the refresh lock)."""

    # -- instruments ------------------------------------------------------------------------------------------------
    def _observers(self) -> Mapping[str, Callable[[], Points]]:
        """Instrument name -> function yielding that instrument's current points. Subclasses provide it."""
        raise NotImplementedError

    #: Instrument names served by :meth:`produced_gauges` instead of an observable instrument.
    produced_gauge_names: frozenset[str] = frozenset()

    def entity_values(self) -> list[tuple[MetricSpec, str, Mapping[str, float]]]:
        """High-cardinality gauges (one series per player) as ``(spec, attribute key, {entity: value})``, values in
        the spec's unit: what a handle's collection reads (cheap: no attribute set per entity unless exported)."""
        return []

    def produced_gauges(self) -> list[tuple[MetricSpec, list[tuple[float, dict[str, str]]]]]:
        """:meth:`entity_values` as ``(spec, [(value, attributes), ...])``, produced directly for exporting readers."""
        return [
            (spec, [(value, {key: entity}) for entity, value in values.items()])
            for spec, key, values in self.entity_values()
        ]

    def attach(self, meter: Meter) -> None:
        """Create this section's observable instruments on ``meter`` (histograms go through the producer).

        Attaching again to a meter this monitor has instruments on (after :meth:`detach`) only resumes reporting:
        OpenTelemetry keeps an instrument, with its callbacks, for the life of its meter.
        """
        if any(known is meter for known in self._meters):
            self._attached = True
            return
        self._meters.append(meter)
        for spec, observe in self._scalar_specs():
            callback = self._callback(spec.name, observe)
            kwargs = {"callbacks": [callback], "unit": spec.unit, "description": spec.description}
            if spec.instrument is Instrument.OBSERVABLE_GAUGE:
                meter.create_observable_gauge(spec.name, **kwargs)  # type: ignore[arg-type]
            elif spec.instrument is Instrument.OBSERVABLE_COUNTER:
                meter.create_observable_counter(spec.name, **kwargs)  # type: ignore[arg-type]
            else:
                meter.create_observable_up_down_counter(spec.name, **kwargs)  # type: ignore[arg-type]
        self._attached = True

    def _scalar_specs(self) -> list[tuple[MetricSpec, Callable[[], Points]]]:
        """The observable (non-histogram) instruments of this section, each with its observer, once per name."""
        observers = self._observers()
        seen: set[str] = set(self.produced_gauge_names)
        found = []
        for spec in self.specs():
            if spec.instrument is Instrument.HISTOGRAM or spec.name in seen:
                continue
            seen.add(spec.name)
            found.append((spec, observers[spec.name]))
        return found

    def attach_produced(self) -> None:
        """Report the observable instruments through :meth:`scalar_points` (a producer builds their metrics
        directly) instead of OpenTelemetry SDK instruments: the same names, units, descriptions, kinds and
        values, at a fraction of the SDK's cost per collection. For one handle's own pipeline; the entry-point
        instrumentors use :meth:`attach`."""
        if self._produced is None:
            self._produced = self._scalar_specs()
        self._attached = True

    def scalar_points(self) -> list[tuple[MetricSpec, list[tuple[float, Mapping[str, str]]]]]:
        """Every observable instrument's current points, after a refresh (see :meth:`attach_produced`): what the
        SDK's callbacks would observe. An observer that fails is logged once and counted in
        :attr:`callback_errors`; the others still report. Nothing before :meth:`attach_produced` or after
        :meth:`detach`."""
        produced = self._produced
        if produced is None or not self._attached:
            return []
        found: list[tuple[MetricSpec, list[tuple[float, Mapping[str, str]]]]] = []
        try:
            self.refresh()
        except Exception:
            self._observer_failed("refresh")
            return found
        for spec, observe in produced:
            try:
                found.append((spec, _reported(observe())))
            except Exception:
                self._observer_failed(spec.name)
        return found

    def _observer_failed(self, name: str) -> None:
        with self._counts_lock:
            self._callback_errors += 1
            first = self._first_time("callback:" + name)
        if first:
            _logger.exception("callback for %s failed (logged once; counted in callback_errors)", name)

    def detach(self) -> None:
        """Stop reporting: callbacks yield nothing from now on (OpenTelemetry cannot remove instruments)."""
        self._attached = False

    @property
    def attached(self) -> bool:
        """Whether the instruments report."""
        return self._attached

    def _callback(self, name: str, observe: Callable[[], Points]) -> Callable[[CallbackOptions], Iterator[Observation]]:
        def callback(_options: CallbackOptions) -> Iterator[Observation]:
            if not self._attached:
                return iter(())
            try:
                self.refresh()
                points = [Observation(value, dict(attributes)) for value, attributes in _reported(observe())]
            except Exception:
                self._observer_failed(name)
                return iter(())
            return iter(points)

        return callback


def _reported(points: Points) -> list[tuple[float, Mapping[str, str]]]:
    """The points an observer yields that are values: None and NaN are "no data" and left out."""
    return [
        (value, attributes)
        for value, attributes in points
        if value is not None and not (isinstance(value, float) and math.isnan(value))
    ]


def single(value: float | None) -> Points:
    """One point without attributes, or none when ``value`` is None."""
    return () if value is None else ((value, _NO_ATTRIBUTES),)
