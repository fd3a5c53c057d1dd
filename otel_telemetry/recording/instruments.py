"""Registered instruments in the prometheus_client style: ``register_counter``, ``register_gauge``,
``register_histogram`` and ``get_metric``, on top of a handle's :class:`~otel_telemetry.recording.facade.MetricsFacade`.

Every recording call is the facade's own fast path (per-thread cells, no OpenTelemetry call per value), so a
registered counter costs what ``metrics.increment`` costs. Registration declares the name in the facade
(:meth:`~otel_telemetry.recording.facade.MetricsFacade.declare`): its description becomes the ``# HELP`` line and a
histogram gets exactly the buckets it was registered with. On ``/metrics`` the names are the registered ones:

* a counter ``requests_total`` is the family ``requests_total`` (a counter registered without the suffix, say
  ``requests``, gets it on ``/metrics``, as with prometheus_client: ``requests_total``);
* a gauge ``active_connections`` is ``active_connections``;
* a histogram ``request_duration_seconds`` with ``buckets=[0.1, 0.5, 1.0]`` is ``request_duration_seconds_bucket``
  with ``le="0.1"``, ``"0.5"``, ``"1.0"`` and ``"+Inf"``, plus ``_sum`` and ``_count``. Without buckets it gets
  :data:`DEFAULT_BUCKETS` (prometheus_client's defaults).

Names are plain Prometheus names without colons (``[a-zA-Z][a-zA-Z0-9_]*``), so that no translation changes them; a
name the handle's series registry refuses (it would collide with another family on ``/metrics``) is refused at
registration. Units are left empty: the name carries them.

Labels
------
An instrument declares its label names at registration. ``.labels(**values)`` (or positional values, in declared
order) returns a bound child, checked then: a missing, extra or unusable label raises ``ValueError`` (a setup-like
call; keep the child). The recording methods also take ``labels={...}``; there a label set whose names differ from
the declared ones, a missing ``labels=`` on a labelled instrument, or a counter increment below zero is dropped,
counted in :attr:`InstrumentRegistry.dropped` by reason and logged once per instrument and reason: a recording call
never raises. Values the facade refuses (NaN, non-numbers, a negative histogram observation) are counted in the
facade's ``rejected``. New series count against the handle's series budget, as every facade series does.

Counters and gauges without labels (and every newly bound child) start at 0 on ``/metrics`` at once, as in
prometheus_client; a histogram series appears with its first observation. While the facade is disabled
(``enable_metrics=False``) nothing is recorded.

Thread-safety: every method may be called from any thread. ``Gauge.increment``/``decrement`` are one
read-modify-write under the gauge series' lock, so concurrent updates are never lost.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal, TypeVar, cast

from otel_telemetry.recording.facade import MetricsFacade
from otel_telemetry.series import Kind, describe, exposition_names, label_value, prometheus_family

__all__ = [
    "DEFAULT_BUCKETS",
    "BoundCounter",
    "BoundGauge",
    "BoundHistogram",
    "Counter",
    "Gauge",
    "Histogram",
    "InstrumentRegistry",
    "RegisteredInstrument",
]

_logger = logging.getLogger(__name__)

#: Bucket boundaries of a histogram registered without ``buckets`` (prometheus_client's defaults, seconds).
DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# Patterns, not compiled ones: ``re`` compiles (and caches) them on the first registration, which a handle that
# registers nothing never makes.
_NAME = r"[a-zA-Z][a-zA-Z0-9_]{0,199}"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]{0,99}"
#: Bound children kept per instrument; beyond it ``.labels()`` still works but builds a new child each call.
_CHILD_CACHE = 1024
_KindName = Literal["counter", "gauge", "histogram"]
#: What :meth:`_Base._checked` returns for a call it dropped (compared by identity).
_DROPPED: Mapping[str, str] = MappingProxyType({})


_B = TypeVar("_B", bound="_Bound")


class _Base:
    """What every registered instrument shares: name, description, label names, the facade and the registry."""

    __slots__ = ("_children", "_facade", "_label_set", "_plain", "_registry", "description", "label_names", "name")
    _kind: _KindName = "counter"

    def __init__(self, registry: InstrumentRegistry, name: str, description: str, label_names: tuple[str, ...]) -> None:
        #: The registered name (also the name on ``/metrics``, see the module docstring).
        self.name = name
        #: The ``# HELP`` text.
        self.description = description
        #: The declared label names, in declared order.
        self.label_names = label_names
        self._label_set = frozenset(label_names)
        self._plain = not label_names  # no labels: ``labels=None`` calls take the short path
        self._registry = registry
        self._facade = registry.facade
        self._children: dict[tuple[str, ...], object] = {}

    def _tags(self, values: tuple[object, ...], named: Mapping[str, object]) -> tuple[tuple[str, ...], dict[str, str]]:
        """The label values of ``.labels(...)`` checked against the declared names (raises ValueError)."""
        what = f"{type(self).__name__}({self.name!r}).labels"
        if not self.label_names:
            raise ValueError(f"{what}: the instrument was registered without labels")
        if values and named:
            raise ValueError(f"{what}: give label values by position or by name, not both")
        if values:
            if len(values) != len(self.label_names):
                raise ValueError(f"{what}: expected {len(self.label_names)} values {self.label_names}, got {values!r}")
            named = dict(zip(self.label_names, values, strict=True))
        missing = [n for n in self.label_names if n not in named]
        extra = sorted(set(named) - self._label_set)
        if missing or extra:
            raise ValueError(f"{what}: label names must be {self.label_names}; missing {missing}, unknown {extra}")
        labels: list[str] = []
        for label in self.label_names:
            text = label_value(named[label])
            if text is None:
                raise ValueError(f"{what}.{label}: cannot be a label value, got {describe(named[label])}")
            labels.append(text)
        key = tuple(labels)
        return key, dict(zip(self.label_names, key, strict=True))

    def _child(self, values: tuple[object, ...], named: Mapping[str, object], make: type[_B]) -> _B:
        key, tags = self._tags(values, named)
        child = self._children.get(key)
        if child is not None:
            return cast(_B, child)
        new = make(self, tags)
        with self._registry.lock:
            child = self._children.get(key)
            if child is not None:
                return cast(_B, child)
            if len(self._children) >= _CHILD_CACHE:
                return new
            self._children = {**self._children, key: new}  # replaced, never mutated: lookups take no lock
        new._start()
        return new

    def _checked(self, labels: Mapping[str, str] | None) -> Mapping[str, str] | None:
        """The tags to record with: ``labels`` when its names are the declared ones, None for an unlabelled
        instrument, :data:`_DROPPED` (dropped and counted) otherwise."""
        if labels is None:
            if self.label_names:
                self._registry._drop(self.name, "labels")
                return _DROPPED
            return None
        try:
            if labels.keys() == self._label_set:
                return labels
        except Exception:
            pass
        self._registry._drop(self.name, "labels")
        return _DROPPED


class _Bound:
    """A child bound to one label set; recording goes straight to the facade with those tags."""

    __slots__ = ("_facade", "_name", "_registry", "labels")

    def __init__(self, parent: _Base, tags: dict[str, str]) -> None:
        self._facade = parent._facade
        self._registry = parent._registry
        self._name = parent.name
        #: The label values of this child, by label name.
        self.labels: Mapping[str, str] = tags

    def _start(self) -> None:
        """Make the series visible at 0 (counters and gauges); nothing for histograms."""


class BoundCounter(_Bound):
    """A :class:`Counter` bound to one label set (from :meth:`Counter.labels`). Thread-safe."""

    __slots__ = ()

    def _start(self) -> None:
        self._facade.increment(self._name, 0, self.labels)

    def increment(self, amount: float = 1.0) -> None:
        """Add ``amount`` (finite, >= 0; default 1). Never raises; a negative amount is dropped and counted."""
        cls = amount.__class__
        if (cls is float or cls is int) and amount >= 0:
            self._facade.increment(self._name, amount, self.labels)
        else:
            _increment(self._registry, self._facade, self._name, amount, self.labels)


class BoundGauge(_Bound):
    """A :class:`Gauge` bound to one label set (from :meth:`Gauge.labels`). Thread-safe."""

    __slots__ = ()

    def _start(self) -> None:
        self._facade.gauge_add(self._name, 0, self.labels)

    def set(self, value: float) -> None:
        """Set the gauge to ``value`` (finite). Never raises."""
        self._facade.gauge(self._name, value, self.labels)

    def increment(self, amount: float = 1.0) -> None:
        """Add ``amount`` in one read-modify-write (never a lost update). Never raises."""
        self._facade.gauge_add(self._name, amount, self.labels)

    def decrement(self, amount: float = 1.0) -> None:
        """Subtract ``amount`` in one read-modify-write (never a lost update). Never raises."""
        _decrement(self._registry, self._facade, self._name, amount, self.labels)


class BoundHistogram(_Bound):
    """A :class:`Histogram` bound to one label set (from :meth:`Histogram.labels`). Thread-safe."""

    __slots__ = ()

    def observe(self, value: float) -> None:
        """Record one observation (finite, >= 0). Never raises."""
        self._facade.distribution(self._name, value, self.labels, unit="")


def _increment(
    registry: InstrumentRegistry, facade: MetricsFacade, name: str, amount: float, tags: Mapping[str, str] | None
) -> None:
    try:
        if amount < 0:
            registry._drop(name, "negative")
            return
    except Exception:
        pass  # not a number: the facade rejects and counts it
    facade.increment(name, amount, tags)


def _decrement(
    registry: InstrumentRegistry, facade: MetricsFacade, name: str, amount: float, tags: Mapping[str, str] | None
) -> None:
    try:
        if isinstance(amount, bool):
            raise TypeError
        negated = -amount
    except Exception:
        registry._drop(name, "value")
        return
    facade.gauge_add(name, negated, tags)


class Counter(_Base):
    """A monotonic counter (seed 004's ``register_counter``); on ``/metrics`` a ``counter`` family.

    ``increment()`` adds 1, ``increment(5.0)`` adds 5; ``labels={...}`` or a bound child from :meth:`labels` pick the
    series of a labelled counter. Thread-safe without a lock (per-thread cells).
    """

    __slots__ = ()
    _kind: _KindName = "counter"

    def increment(self, amount: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        """Add ``amount`` (finite, >= 0; default 1) to the series of ``labels`` (names exactly the declared
        ones; None for an unlabelled counter). Never raises: a label mismatch or a negative amount is dropped and
        counted in :attr:`InstrumentRegistry.dropped`."""
        if labels is None and self._plain:
            tags = None
        else:
            tags = self._checked(labels)
            if tags is _DROPPED:
                return
        cls = amount.__class__
        if (cls is float or cls is int) and amount >= 0:
            self._facade.increment(self.name, amount, tags)
        else:
            _increment(self._registry, self._facade, self.name, amount, tags)

    def labels(self, *values: object, **named: object) -> BoundCounter:
        """The child of one label set (by name, or by position in declared order), cached.

        Raises:
            ValueError: when the names are not exactly the declared ones, or a value cannot be a label.
        """
        return self._child(values, named, BoundCounter)

    def value(self, labels: Mapping[str, str] | None = None) -> float:
        """The counter's total since the facade's last reset (in-process view, ``MetricsFacade.get_counter``)."""
        return float(self._facade.get_counter(self.name, labels))


class Gauge(_Base):
    """A value that goes up and down (seed 004's ``register_gauge``); on ``/metrics`` a ``gauge`` family.

    ``set(v)`` stores ``v``; ``increment``/``decrement`` change the last value (0 before the first) by an amount in
    one read-modify-write under the series' lock, so concurrent updates from many threads are never lost.
    """

    __slots__ = ()
    _kind: _KindName = "gauge"

    def set(self, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Set the series of ``labels`` to ``value`` (finite). Never raises (mismatches are counted)."""
        if labels is None and self._plain:
            self._facade.gauge(self.name, value, None)
            return
        tags = self._checked(labels)
        if tags is not _DROPPED:
            self._facade.gauge(self.name, value, tags)

    def increment(self, amount: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        """Add ``amount`` (default 1) to the series of ``labels``. Never raises (mismatches are counted)."""
        if labels is None and self._plain:
            self._facade.gauge_add(self.name, amount, None)
            return
        tags = self._checked(labels)
        if tags is not _DROPPED:
            self._facade.gauge_add(self.name, amount, tags)

    def decrement(self, amount: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        """Subtract ``amount`` (default 1) from the series of ``labels``. Never raises (mismatches are counted)."""
        tags = self._checked(labels)
        if tags is not _DROPPED:
            _decrement(self._registry, self._facade, self.name, amount, tags)

    def labels(self, *values: object, **named: object) -> BoundGauge:
        """The child of one label set (see :meth:`Counter.labels`); a new child starts at 0.

        Raises:
            ValueError: when the names are not exactly the declared ones, or a value cannot be a label.
        """
        return self._child(values, named, BoundGauge)

    def value(self, labels: Mapping[str, str] | None = None) -> float | None:
        """The last value set (in-process view); None when the series has no value since the facade's reset."""
        stats = self._facade.get_gauge(self.name, labels)
        return None if stats is None else stats.current


class Histogram(_Base):
    """A distribution with explicit buckets (seed 004's ``register_histogram``); on ``/metrics`` a ``histogram``
    family with exactly :attr:`buckets` (and ``+Inf``). Thread-safe without a lock (per-thread cells)."""

    __slots__ = ("buckets",)
    _kind: _KindName = "histogram"

    def __init__(
        self,
        registry: InstrumentRegistry,
        name: str,
        description: str,
        label_names: tuple[str, ...],
        buckets: tuple[float, ...],
    ) -> None:
        super().__init__(registry, name, description, label_names)
        #: The finite bucket boundaries (``le``), strictly increasing.
        self.buckets = buckets

    def observe(self, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Record one observation (finite, >= 0) in the series of ``labels``. Never raises: a label mismatch is
        counted in :attr:`InstrumentRegistry.dropped`, a bad value in the facade's ``rejected``."""
        if labels is None and self._plain:
            self._facade.distribution(self.name, value, None, unit="")
            return
        tags = self._checked(labels)
        if tags is not _DROPPED:
            self._facade.distribution(self.name, value, tags, unit="")

    def labels(self, *values: object, **named: object) -> BoundHistogram:
        """The child of one label set (see :meth:`Counter.labels`).

        Raises:
            ValueError: when the names are not exactly the declared ones, or a value cannot be a label.
        """
        return self._child(values, named, BoundHistogram)


#: Whatever :meth:`InstrumentRegistry.get_metric` can return.
RegisteredInstrument = Counter | Gauge | Histogram


def _buckets(buckets: Sequence[float] | None) -> tuple[float, ...]:
    if buckets is None:
        return DEFAULT_BUCKETS
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence):
        raise ValueError(f"register_histogram.buckets: must be a sequence of numbers, got {describe(buckets)}")
    values: list[float] = []
    for bound in buckets:
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound):
            raise ValueError(f"register_histogram.buckets: {describe(bound)} is not a number")
        values.append(float(bound))
    if values and values[-1] == math.inf:
        values.pop()  # prometheus_client accepts a trailing +Inf; it is always there
    if not values:
        raise ValueError(f"register_histogram.buckets: needs at least one finite boundary, got {describe(buckets)}")
    for low, high in itertools.pairwise(values):
        if not low < high:
            raise ValueError(f"register_histogram.buckets: must be strictly increasing, got {low!r} then {high!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"register_histogram.buckets: must be finite (but a last +Inf), got {describe(buckets)}")
    return tuple(values)


def _label_names(call: str, labels: Sequence[str], kind: _KindName) -> tuple[str, ...]:
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ValueError(f"{call}.labels: must be a sequence of label names, got {describe(labels)}")
    names = tuple(labels)
    for label in names:
        if not isinstance(label, str) or re.fullmatch(_LABEL, label) is None or label.startswith("__"):
            raise ValueError(f"{call}.labels: {describe(label)} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, no '__')")
        if kind == "histogram" and label == "le":
            raise ValueError(f"{call}.labels: 'le' is reserved for histogram buckets")
    if len(set(names)) != len(names):
        raise ValueError(f"{call}.labels: names must be distinct, got {names!r}")
    return names


class InstrumentRegistry:
    """Seed 004's ``register_counter``/``register_gauge``/``register_histogram``/``get_metric`` on one facade.

    Args:
        facade: the handle's :class:`~otel_telemetry.recording.facade.MetricsFacade` (``telemetry.metrics``);
            its meter, series registry and ``enabled`` switch apply.

    Registering a name again with the same kind, description, labels (and buckets) returns the same instrument;
    with anything different it raises ``ValueError``. One name is one instrument whatever its kind.

    Thread-safety: every method may be called from any thread.
    """

    def __init__(self, facade: MetricsFacade) -> None:
        if not isinstance(facade, MetricsFacade):
            raise ValueError(f"InstrumentRegistry.facade: must be a MetricsFacade, got {describe(facade)}")
        #: The facade every instrument records through.
        self.facade = facade
        #: Registration and child-cache lock (never taken by a recording call).
        self.lock = threading.Lock()
        self._metrics: dict[str, RegisteredInstrument] = {}
        self._dropped: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()

    @property
    def dropped(self) -> Mapping[str, int]:
        """Recording calls dropped, by reason: ``labels`` (label names differ from the declared ones, or missing),
        ``negative`` (a counter increment below 0), ``value`` (a gauge decrement by a non-number). Exact."""
        with self.lock:
            return dict(self._dropped)

    def _drop(self, name: str, reason: str) -> None:
        with self.lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + 1
            first = (name, reason) not in self._warned
            if first:
                self._warned.add((name, reason))
        if first:
            _logger.warning(
                "registered metric %r: dropped a call (%s); further drops are counted in InstrumentRegistry.dropped "
                "(logged once per metric and reason)",
                name,
                reason,
            )

    def get_metric(self, name: str) -> RegisteredInstrument | None:
        """The instrument registered under ``name``, or None."""
        return self._metrics.get(name)

    def metrics(self) -> Mapping[str, RegisteredInstrument]:
        """Every registered instrument by name (a copy)."""
        with self.lock:
            return dict(self._metrics)

    def register_counter(self, name: str, description: str, labels: Sequence[str] = ()) -> Counter:
        """Register (or return) the counter ``name`` with ``# HELP`` ``description`` and label names ``labels``.

        Raises:
            ValueError: on a bad name, description or label name, a name registered otherwise, recorded through
                the facade before, or refused by the series registry (it would collide on ``/metrics``).
        """
        found = self._register("counter", name, description, labels, None)
        assert isinstance(found, Counter)
        return found

    def register_gauge(self, name: str, description: str, labels: Sequence[str] = ()) -> Gauge:
        """Register (or return) the gauge ``name`` (see :meth:`register_counter`).

        Raises:
            ValueError: as :meth:`register_counter`.
        """
        found = self._register("gauge", name, description, labels, None)
        assert isinstance(found, Gauge)
        return found

    def register_histogram(
        self, name: str, description: str, buckets: Sequence[float] | None = None, labels: Sequence[str] = ()
    ) -> Histogram:
        """Register (or return) the histogram ``name`` with bucket boundaries ``buckets`` (finite, strictly
        increasing; a trailing ``+Inf`` is allowed; default :data:`DEFAULT_BUCKETS`).

        Raises:
            ValueError: as :meth:`register_counter`, and on bad buckets.
        """
        found = self._register("histogram", name, description, labels, _buckets(buckets))
        assert isinstance(found, Histogram)
        return found

    def _register(
        self,
        kind: _KindName,
        name: str,
        description: str,
        labels: Sequence[str],
        buckets: tuple[float, ...] | None,
    ) -> RegisteredInstrument:
        call = f"register_{kind}"
        if not isinstance(name, str) or re.fullmatch(_NAME, name) is None:
            raise ValueError(f"{call}.name: must match [a-zA-Z][a-zA-Z0-9_]* (at most 200), got {describe(name)}")
        if not isinstance(description, str):
            raise ValueError(f"{call}.description: must be a string, got {describe(description)}")
        label_names = _label_names(call, labels, kind)
        with self.lock:
            known = self._metrics.get(name)
            if known is not None:
                same = (
                    known._kind == kind
                    and known.label_names == label_names
                    and known.description == description
                    and (not isinstance(known, Histogram) or known.buckets == buckets)
                )
                if same:
                    return known
                raise ValueError(
                    f"{call}.name: {name!r} is already registered as a {known._kind} with description "
                    f"{known.description!r}, labels {known.label_names}"
                    + (f", buckets {known.buckets}" if isinstance(known, Histogram) else "")
                )
            facade_kind = "distribution" if kind == "histogram" else kind
            try:
                exported = self.facade.declare(facade_kind, name, description=description, boundaries=buckets)
            except ValueError as error:
                raise ValueError(f"{call}.name: {error}") from None
            if exported is None:
                raise ValueError(f"{call}.name: {name!r} is refused: {self._clash(name, kind)}")
            instrument: RegisteredInstrument
            if kind == "counter":
                instrument = Counter(self, name, description, label_names)
            elif kind == "gauge":
                instrument = Gauge(self, name, description, label_names)
            else:
                assert buckets is not None
                instrument = Histogram(self, name, description, label_names, buckets)
            self._metrics = {**self._metrics, name: instrument}
        if not label_names:  # visible at 0 at once, as in prometheus_client
            if kind == "counter":
                self.facade.increment(name, 0)
            elif kind == "gauge":
                self.facade.gauge_add(name, 0)
        return instrument

    def _clash(self, name: str, kind: Kind) -> str:
        """Which family ``name`` would meet on ``/metrics`` (for the error message)."""
        family = prometheus_family(name, "", kind)
        for sample in sorted(exposition_names(family, kind)):
            occupant = self.facade.series.occupant(sample)
            if occupant is not None:
                return f"on /metrics it would meet {occupant.kind} {occupant.prometheus_name!r} of {occupant.owner}"
        return "the series registry refused its name (see the log)"
