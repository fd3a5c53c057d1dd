"""One telemetry handle's metric namespace and series budget, and the label values every series is keyed by.

The bottom layer (standard library and :mod:`otel_telemetry.catalog` only): the monitors, the statsd-style facade
and the ``@traced`` handlers of one handle share one :class:`SeriesRegistry`.

Namespace
---------
Every metric family is registered once per handle under the name it gets on ``/metrics`` (the OpenTelemetry
Prometheus exporter's translation of name and unit, or the catalog's Prometheus name). A family occupies every
sample name it can produce: a counter ``x`` occupies ``x``, ``x_total`` and ``x_created``; a histogram ``x``
occupies ``x``, ``x_bucket``, ``x_sum``, ``x_count`` and ``x_created``; a gauge only ``x``. A family whose names
meet an occupied one is refused by :meth:`SeriesRegistry.claim` at the call that introduces it, logged once with
both owners and counted in :attr:`SeriesRegistry.refused_names`: two ``# HELP`` lines for one name (which makes
Prometheus drop the whole scrape) cannot happen. Every registry starts with the catalog's families and the SDK's
own (:data:`SDK_FAMILIES`: ``handler.*``, ``timer.duration``, ``telemetry.*``, ``alerts``, ``target_info``), so a
facade timing named ``handler.duration`` (``handler_duration_seconds``) or a facade counter named
``telemetry_collection_runs_total`` is refused whatever was created first. Instruments made on a meter of your own
(``telemetry.get_meter(...)``) are not checked: give them names outside the families listed by
:meth:`SeriesRegistry.families` (a prefix of your own, such as ``game.``, is enough).

Label values
------------
:func:`label_value` turns any id or tag value into the string its series is keyed by, before it is keyed:
``1`` and ``"1"`` are one series, a map object or a non-frozen dataclass becomes ``str(obj)``. A value of more
than :data:`LABEL_LIMIT` (128) characters keeps its first 111 characters, ``~`` and 16 hex digits of a BLAKE2b
digest of the whole value, so two long ids stay two series and no label exceeds 128 characters (the OpenTelemetry
SDK truncates attribute values the same way, by ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``; the digest keeps ids
apart). None, an int of more than 128 digits, or an object whose ``str()`` fails cannot be a label: the call is
refused (each monitor counts it in ``rejected``). Ints are checked before they are converted, so an int beyond
Python's 4,300-digit conversion limit is refused, never raised.

Series budget
-------------
A series is one sample line of the text exposition, the unit Prometheus' ``sample_limit`` and the stores' series
limits count: a gauge or counter point costs 1, a histogram point with B bucket boundaries costs B + 3 (its B + 1
buckets, ``_sum`` and ``_count``; ``_created`` is not counted). Each monitor reserves its section's fixed series
when it is built (:meth:`SeriesRegistry.reserve_catalog`: about 560 samples for the four sections, most of them
histogram buckets; the spec's nine phases included); the series that game code creates later (maps, entity types,
ECS systems, phases beyond the spec's, facade names and tag sets, handlers) are admitted by
:meth:`SeriesRegistry.admit` while the total stays within the budget (default :data:`DEFAULT_SERIES_BUDGET`,
1,000). Past it, a new label value reports under :data:`OVERFLOW_VALUE` (so totals stay exact) and a new facade
name is not recorded; every call so refused is counted in :attr:`SeriesRegistry.refused_series` and the first
refusal of each owner is logged. The ``_overflow`` series themselves are always admitted (one per family at most).
Per-player ping series are not counted (they are not exported by default), nor is telemetry's own
(``telemetry_*``, ``alerts``, ``target_info``: a few dozen series). Series are never released: OpenTelemetry's
cumulative series live as long as the handle.

Thread-safety: every method may be called from any thread; each count is exact.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from otel_telemetry.catalog import CATALOG, Instrument, Section, instruments

__all__ = [
    "DEFAULT_SERIES_BUDGET",
    "INT64_MAX",
    "LABEL_LIMIT",
    "OVERFLOW_VALUE",
    "SDK_FAMILIES",
    "Family",
    "Kind",
    "LabelSet",
    "SeriesRegistry",
    "describe",
    "encodable",
    "exposition_names",
    "histogram_cost",
    "label_value",
    "prometheus_family",
]

_logger = logging.getLogger(__name__)

#: The default number of series a handle may export (``TelemetryConfig.series_budget``).
DEFAULT_SERIES_BUDGET = 1000
#: Longest label value, in characters (longer values are shortened with a digest, see :func:`label_value`).
LABEL_LIMIT = 128
#: The label value a capped family reports refused values under (the same as ``accumulators.OVERFLOW_VALUE``).
OVERFLOW_VALUE = "_overflow"
#: The largest value an OTLP integer data point (``sfixed64``) can carry.
INT64_MAX = 2**63 - 1

#: The Prometheus type of a family.
Kind = Literal["counter", "gauge", "histogram", "info"]

# Ints with at most LABEL_LIMIT characters in decimal: -10**127 < v < 10**128.
_INT_LOW = -(10 ** (LABEL_LIMIT - 1))
_INT_HIGH = 10**LABEL_LIMIT
_DIGEST_CHARS = 16
_SHOWN = 64


# --- values ------------------------------------------------------------------------------------------------------
def label_value(value: object) -> str | None:
    """``value`` as the string a series is keyed by (at most :data:`LABEL_LIMIT` characters), or None.

    Strings are kept; ints are written in decimal (checked first: one of more than 128 digits gives None); None
    gives None (no id is not an id); other objects become ``str(value)`` (None when that raises). A string longer
    than the limit keeps its first 111 characters, then ``~`` and 16 hex digits of a digest of the whole string.
    """
    cls = value.__class__
    if cls is str:
        text: str = value  # type: ignore[assignment]
    elif cls is int:
        if not _INT_LOW < value < _INT_HIGH:
            return None
        return str(value)
    elif value is None:
        return None
    else:
        if isinstance(value, int) and not isinstance(value, bool) and not _INT_LOW < value < _INT_HIGH:
            return None  # an int subclass: its str() would meet the same conversion limit
        try:
            text = str(value)
        except Exception:
            return None
        if text.__class__ is not str:
            return None
    if len(text) <= LABEL_LIMIT:
        return text
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_CHARS // 2).hexdigest()
    return f"{text[: LABEL_LIMIT - _DIGEST_CHARS - 1]}~{digest}"


def describe(value: object) -> str:
    """A short description of ``value`` for a log line, whatever it is (never raises, never huge)."""
    try:
        if value.__class__ is int and not _INT_LOW < value < _INT_HIGH:
            return f"<int of {value.bit_length()} bits>"
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} without a printable form>"
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def encodable(value: float) -> float:
    """A cumulative integer as every exporter can encode it: itself within int64, else the nearest float (a
    float is returned as it is).

    Calls reject single values above :data:`INT64_MAX`, but a sum of many may pass it; OTLP then gets a double
    point (exact to 1 part in 2**53) rather than an integer it cannot encode.
    """
    return value if -INT64_MAX <= value <= INT64_MAX else float(value)


# --- Prometheus names --------------------------------------------------------------------------------------------
# The OpenTelemetry Prometheus exporter's translation (opentelemetry.exporter.prometheus._mapping, with
# prometheus_client's suffix rules); tests/test_namespace.py compares it with the exporter's output.
_UNIT_WORDS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PER_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_ANNOTATION = re.compile(r"{.*}")
_INVALID = re.compile(r"[^a-zA-Z0-9:]+")


def _unit_word(unit: str) -> str:
    unit = _ANNOTATION.sub("", unit)
    if unit in _UNIT_WORDS:
        return _UNIT_WORDS[unit]
    top, sep, bottom = unit.partition("/")
    if sep:
        bottom = _INVALID.sub("_", bottom)
        if bottom:
            top = _INVALID.sub("_", top)
            top = _UNIT_WORDS.get(top, top)
            bottom = _PER_WORDS.get(bottom, bottom)
            return f"{top}_per_{bottom}" if top else f"per_{bottom}"
    return _INVALID.sub("_", unit).strip("_")


def prometheus_family(name: str, unit: str, kind: Kind) -> str:
    """The family name the OpenTelemetry Prometheus exporter gives instrument ``name`` with ``unit``.

    For a counter, the name without ``_total`` (its sample is ``<family>_total``); for ``info``, without ``_info``.
    """
    family = _INVALID.sub("_", "_" + name[1:] if name[:1].isdigit() else name)
    if kind == "counter" and family.endswith("_total"):
        family = family[:-6]
    elif kind == "info" and family.endswith("_info"):
        family = family[:-5]
    word = _unit_word(unit)
    if word and not family.endswith("_" + word):
        family = f"{family}_{word}"
    return family


def exposition_names(family: str, kind: Kind) -> frozenset[str]:
    """Every sample (and family) name a family of ``kind`` can put on ``/metrics``, text format or OpenMetrics."""
    if kind == "counter":
        return frozenset((family, family + "_total", family + "_created"))
    if kind == "histogram":
        return frozenset((family, family + "_bucket", family + "_sum", family + "_count", family + "_created"))
    if kind == "info":
        return frozenset((family, family + "_info"))
    return frozenset((family,))


def histogram_cost(boundaries: int) -> int:
    """Series of one histogram point with ``boundaries`` bucket boundaries: its buckets, ``_sum`` and ``_count``."""
    return boundaries + 3


def _kind_of(instrument: Instrument) -> Kind:
    return {"gauge": "gauge", "counter": "counter", "histogram": "histogram"}[instrument.prometheus_type]  # type: ignore[return-value]


def _catalog_family(prometheus_name: str, instrument: Instrument) -> str:
    kind = _kind_of(instrument)
    return prometheus_name[:-6] if kind == "counter" and prometheus_name.endswith("_total") else prometheus_name


@dataclass(frozen=True, slots=True)
class Family:
    """One registered metric family.

    Attributes:
        prometheus_name: the family's name on ``/metrics`` (a counter's without ``_total``).
        kind: its Prometheus type.
        owner: who registered it (``catalog``, ``handlers``, ``self-telemetry``, ``metrics``, ...).
        name: the OpenTelemetry instrument name.
        unit: the instrument's unit.
    """

    prometheus_name: str
    kind: Kind
    owner: str
    name: str
    unit: str


#: The SDK's own families beside the catalog's: ``(instrument name, unit, kind, owner)``. Pinned against a scrape by
#: ``tests/test_namespace.py``.
SDK_FAMILIES: tuple[tuple[str, str, Kind, str], ...] = (
    ("handler.duration", "s", "histogram", "handlers"),
    ("handler.requests", "{request}", "counter", "handlers"),
    ("handler.errors", "{request}", "counter", "handlers"),
    ("timer.duration", "s", "histogram", "handlers"),
    ("telemetry.collection.runs", "{collection}", "counter", "self-telemetry"),
    ("telemetry.collection.duration", "s", "gauge", "self-telemetry"),
    ("telemetry.metrics.count", "{metric}", "gauge", "self-telemetry"),
    ("telemetry.events", "{event}", "counter", "self-telemetry"),
    ("telemetry.exporter.attempts", "{export}", "counter", "self-telemetry"),
    ("telemetry.exporter.failures", "{export}", "counter", "self-telemetry"),
    ("telemetry.dropped", "{value}", "counter", "self-telemetry"),
    ("telemetry.pacing.waits", "{wait}", "counter", "self-telemetry"),
    ("alerts", "{alert}", "gauge", "alerts"),
    ("target_info", "", "info", "resource"),
)

# Attributes of catalog instruments whose values are fixed (and how many there are); other attributes (map,
# entity_type, system, player_id) take game-code values, admitted one by one. ``phase`` has the spec's phases
# (the catalog's selectors); ``cpu`` one value per logical core.
_FIXED_VALUES = {"direction": 2, "outcome": 2, "period": 3, "indicator": 3}
_DYNAMIC = frozenset({"map", "entity_type", "system", "player_id"})


def _fixed_points(name: str, attributes: tuple[str, ...], cpu_count: int) -> int:
    points = 1
    for attribute in attributes:
        if attribute in _DYNAMIC:
            return 0
        if attribute == "cpu":
            points *= cpu_count
        elif attribute == "phase":
            points *= len({s.selector["phase"] for s in CATALOG if s.name == name and "phase" in s.selector})
        else:
            points *= _FIXED_VALUES.get(attribute, 1)
    return points


def catalog_series(section: Section, *, cpu_count: int | None = None) -> int:
    """The series a section of the catalog always exports (its label values fixed), buckets included."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    total = 0
    for spec in instruments():
        if spec.section is not section:
            continue
        cost = histogram_cost(len(spec.boundaries)) if spec.instrument is Instrument.HISTOGRAM else 1
        total += cost * _fixed_points(spec.name, spec.attributes, cores)
    return total


# --- the registry ------------------------------------------------------------------------------------------------
class SeriesRegistry:
    """The namespace and series budget of one telemetry handle (see the module docstring).

    Args:
        budget: how many series (exposition samples, buckets included) may exist; the catalog's fixed series
            are reserved first and never refused.

    Raises:
        ValueError: on a budget that is not a positive integer.
    """

    def __init__(self, budget: int = DEFAULT_SERIES_BUDGET) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"SeriesRegistry.budget: must be a positive integer, got {budget!r}")
        self.budget = budget
        self._lock = threading.Lock()
        self._families: dict[str, Family] = {}  # prometheus family name -> family
        self._occupied: dict[str, Family] = {}  # every sample name -> the family producing it
        self._used = 0
        self._used_by: dict[str, int] = {}
        self._refused_series = 0
        self._refused_by: dict[str, int] = {}
        self._refused_names = 0
        self._warned: set[str] = set()
        self._reserved_sections: set[Section] = set()
        for spec in instruments():
            kind = _kind_of(spec.instrument)
            self._add(Family(_catalog_family(spec.prometheus_name, spec.instrument), kind, "catalog", spec.name, ""))
        for name, unit, kind, owner in SDK_FAMILIES:
            self._add(Family(prometheus_family(name, unit, kind), kind, owner, name, unit))

    # -- namespace --------------------------------------------------------------------------------------------
    def _add(self, family: Family) -> None:
        self._families[family.prometheus_name] = family
        for sample in exposition_names(family.prometheus_name, family.kind):
            self._occupied[sample] = family

    def claim(self, name: str, unit: str, kind: Kind, owner: str) -> str | None:
        """Register the instrument ``name`` (``unit``, Prometheus ``kind``) for ``owner``; its family name, or None.

        Claiming again what is registered already for the same owner returns its family name. A family that
        would share a sample name with another family is refused: logged once per instrument name, counted in
        :attr:`refused_names`, and None is returned (the caller keeps it out of the export).
        """
        family_name = prometheus_family(name, unit, kind)
        family = Family(family_name, kind, owner, name, unit)
        names = exposition_names(family_name, kind)
        with self._lock:
            known = self._families.get(family_name)
            if known is not None and (known.name, known.kind, known.owner) == (name, kind, owner):
                return family_name
            clash = next((self._occupied[n] for n in sorted(names) if n in self._occupied), None)
            if clash is None:
                self._add(family)
                return family_name
            self._refused_names += 1
            first = self._first("name:" + owner + ":" + name)
        if first:
            _logger.warning(
                "%s: metric %r (%s %s) is refused: on /metrics it would meet %s %r of %s (%s); it is not exported "
                "(logged once; counted in refused_names)",
                owner,
                name,
                kind,
                family_name,
                clash.kind,
                clash.name,
                clash.owner,
                clash.prometheus_name,
            )
        return None

    def families(self) -> Mapping[str, Family]:
        """Every registered family by its Prometheus family name (a copy)."""
        with self._lock:
            return dict(self._families)

    def occupant(self, sample_name: str) -> Family | None:
        """The family that puts ``sample_name`` on ``/metrics``, or None."""
        with self._lock:
            return self._occupied.get(sample_name)

    @property
    def refused_names(self) -> int:
        """Families refused because their names would collide on ``/metrics``. Exact."""
        return self._refused_names

    # -- budget -----------------------------------------------------------------------------------------------
    def reserve(self, series: int, owner: str) -> None:
        """Count ``series`` that exist whatever the budget (fixed catalog series, ``_overflow`` series)."""
        with self._lock:
            self._used += series
            self._used_by[owner] = self._used_by.get(owner, 0) + series

    def reserve_catalog(self, section: Section, *, cpu_count: int | None = None) -> int:
        """Reserve the fixed series of a catalog section (once per section); returns how many were reserved."""
        with self._lock:
            if section in self._reserved_sections:
                return 0
            self._reserved_sections.add(section)
        series = catalog_series(section, cpu_count=cpu_count)
        self.reserve(series, section.value)
        with self._lock:
            over = self._used > self.budget and self._first("over-budget")
        if over:
            _logger.warning(
                "series_budget=%d is below the %d series the catalog always exports; every new series is refused",
                self.budget,
                self._used,
            )
        return series

    def admit(self, series: int, owner: str) -> bool:
        """Whether a new series costing ``series`` fits the budget; charged when it does, counted when not.

        Each refused call counts once in :attr:`refused_series` (and in :meth:`refusals` under ``owner``); the
        first refusal of each owner is logged.
        """
        with self._lock:
            if self._used + series <= self.budget:
                self._used += series
                self._used_by[owner] = self._used_by.get(owner, 0) + series
                return True
            self._refused_series += 1
            self._refused_by[owner] = self._refused_by.get(owner, 0) + 1
            first = self._first("budget:" + owner)
            used = self._used
        if first:
            _logger.warning(
                "%s: a new series is refused: %d of series_budget=%d series are in use (raise series_budget to "
                "allow more; logged once per owner; counted in refused_series)",
                owner,
                used,
                self.budget,
            )
        return False

    @property
    def used(self) -> int:
        """Series counted so far (reserved and admitted)."""
        return self._used

    def usage(self) -> Mapping[str, int]:
        """Series counted per owner (a copy)."""
        with self._lock:
            return dict(self._used_by)

    @property
    def refused_series(self) -> int:
        """Calls that asked for a new series the budget refused (for ``telemetry_dropped_total{reason=
        "cardinality"}``). Exact."""
        return self._refused_series

    def refusals(self) -> Mapping[str, int]:
        """:attr:`refused_series` per owner (a copy)."""
        with self._lock:
            return dict(self._refused_by)

    def labels(self, owner: str, limit: int, cost: int, preset: Iterable[str] = ()) -> LabelSet:
        """A :class:`LabelSet` of this registry: at most ``limit`` values, each new one costing ``cost`` series."""
        return LabelSet(self, owner, limit, cost, preset)

    def _first(self, key: str) -> bool:
        """Whether ``key`` is seen for the first time (call with ``_lock`` held)."""
        if key in self._warned:
            return False
        self._warned.add(key)
        return True


class LabelSet:
    """The admitted values of one label of one family: at most ``limit`` values, each within the budget.

    :meth:`admit` returns the value's label (:func:`label_value`) when it is admitted (already or now), and
    :data:`OVERFLOW_VALUE` when the ``limit`` (counted in :attr:`overflowed`) or the registry's budget (counted in
    the registry's ``refused_series``) refuses it; None when the value cannot be a label. Refused values are not
    remembered (memory stays bounded), so each call with one counts once. The ``_overflow`` series is reserved in
    the budget the first time it is used. ``preset`` values are admitted up front without being charged (the
    caller reserved them, e.g. with the catalog's fixed series).

    Thread-safety: lookups take no lock (a set's membership test is one C call under the GIL); admissions take
    one, so ``limit`` and the counts are exact.
    """

    __slots__ = ("_cost", "_known", "_lock", "_overflow_reserved", "_registry", "limit", "overflowed", "owner")

    def __init__(self, registry: SeriesRegistry, owner: str, limit: int, cost: int, preset: Iterable[str] = ()) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"LabelSet.limit: must be a positive integer, got {limit!r}")
        self._registry = registry
        self.owner = owner
        self.limit = limit
        self._cost = cost
        self._known: set[str] = set(preset)
        self._lock = threading.Lock()
        self._overflow_reserved = False
        #: Calls whose value was reported under ``_overflow`` because ``limit`` values were admitted. Exact.
        self.overflowed = 0

    def admit(self, value: object) -> str | None:
        """The label ``value`` reports under (admitting it when new and allowed); None when it cannot be one."""
        if value.__class__ is str and value in self._known:
            return value
        label = label_value(value)
        if label is None:
            return None
        if label in self._known:
            return label
        with self._lock:
            known = self._known
            if label in known:
                return label
            if len(known) >= self.limit:
                self.overflowed += 1
            elif self._registry.admit(self._cost, self.owner):
                known.add(label)  # lookups without the lock see it or not, never a torn set (one C call each)
                return label
            if not self._overflow_reserved:
                self._overflow_reserved = True
                self._registry.reserve(self._cost, self.owner)
        return OVERFLOW_VALUE

    def find(self, value: object) -> str | None:
        """The label ``value`` reports under if it was admitted, without admitting it; None otherwise."""
        if value.__class__ is str and value in self._known:
            return value
        label = label_value(value)
        return label if label is not None and label in self._known else None

    def __contains__(self, label: object) -> bool:
        return label in self._known

    def __len__(self) -> int:
        return len(self._known)
