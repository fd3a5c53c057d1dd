"""The fields of a structured event and their validation: severities, categories, labels, attribute values, times.

Everything here raises ``ValueError`` naming the field and the bad value; :mod:`otel_telemetry.recording.events`
calls it at the public boundary (``record_event`` and ``events``), before anything is recorded.

Severities are ``debug``, ``info``, ``warning``, ``error`` and ``critical`` (any case), mapped to OpenTelemetry's
``DEBUG``, ``INFO``, ``WARN``, ``ERROR`` and ``FATAL``. ``warn`` is accepted as an alias of ``warning`` (the spelling
of OpenTelemetry's severity text and of common log levels); nothing else is mapped.

Categories: the spec's four (``system``, ``application``, ``user_action``, ``simulation``) plus two for game servers,
``gameplay`` (rules of the game: rounds, kills, matches) and ``network`` (connections, disconnects, packet trouble).
A recorder may register more (:meth:`EventRecorder.add_category`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType

from otel_telemetry._otel import SeverityNumber

__all__ = [
    "BUILTIN_CATEGORIES",
    "DEFAULT_CATEGORY",
    "MAX_CATEGORIES",
    "MAX_LABELS",
    "MAX_LABEL_LENGTH",
    "METADATA_PREFIX",
    "RESERVED_ATTRIBUTES",
    "SEVERITIES",
    "SEVERITY_ALIASES",
    "AttributeValue",
]

#: Severity strings and the OpenTelemetry severity numbers they map to, lowest first.
SEVERITIES: Mapping[str, SeverityNumber] = MappingProxyType(
    {
        "debug": SeverityNumber.DEBUG,
        "info": SeverityNumber.INFO,
        "warning": SeverityNumber.WARN,
        "error": SeverityNumber.ERROR,
        "critical": SeverityNumber.FATAL,
    }
)

#: Accepted other spellings (any case) and the severity each stands for.
SEVERITY_ALIASES: Mapping[str, str] = MappingProxyType({"warn": "warning"})

#: The categories every recorder knows: the spec's four, then ``gameplay`` and ``network`` (ours, for game servers).
BUILTIN_CATEGORIES: tuple[str, ...] = ("system", "application", "user_action", "simulation", "gameplay", "network")

#: The category of an event recorded without one.
DEFAULT_CATEGORY = "application"

#: How many categories a recorder may register beyond the built-in ones (memory stays bounded).
MAX_CATEGORIES = 64

#: How many labels one event may carry, and the longest label key or value (characters).
MAX_LABELS = 16
MAX_LABEL_LENGTH = 128

#: Metadata keys are exported as log-record attributes under this prefix (``metadata.request_id``).
METADATA_PREFIX = "metadata."

#: Attribute and label keys the exported records use themselves, refused in attributes and labels.
RESERVED_ATTRIBUTES: frozenset[str] = frozenset({"event.severity", "event.category", "event.value"})

#: Attribute values kept as they are; anything else is recorded as ``str(value)``.
AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]

_SCALARS = (str, bool, int, float)
_CATEGORY = re.compile(r"[a-z][a-z0-9_]*\Z")
_RANK = {name: index for index, name in enumerate(SEVERITIES)}


def severity_level(value: object, field: str = "severity") -> str:
    """``value`` as one of :data:`SEVERITIES` (any case, aliases resolved). Raises ValueError naming ``field``."""
    if isinstance(value, str):
        level = value.lower()
        level = SEVERITY_ALIASES.get(level, level)
        if level in SEVERITIES:
            return level
    allowed = [*SEVERITIES, *SEVERITY_ALIASES]
    raise ValueError(f"{field}: must be one of {allowed} (any case), got {value!r}")


def severity_rank(level: str) -> int:
    """The order of a valid severity level: debug 0 … critical 4."""
    return _RANK[level]


def category_name(value: object, field: str = "category") -> str:
    """``value`` checked as a category name: a lowercase identifier. Raises ValueError naming ``field``."""
    if not isinstance(value, str) or not _CATEGORY.match(value):
        raise ValueError(f"{field}: must be a lowercase identifier ([a-z][a-z0-9_]*), got {value!r}")
    return value


def event_name(value: object, field: str = "name") -> str:
    """``value`` checked as an event name: a non-empty string. Raises ValueError naming ``field``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: must be a non-empty string, got {value!r}")
    return value


def event_value(value: object) -> float | int | None:
    """The event's number: None, or a finite int or float (not a bool). Raises ValueError naming ``value``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"value: must be a mapping (the event's data), a finite number or None, got {value!r}")
    return value


def _homogeneous(values: Sequence[object]) -> bool:
    """Whether ``values`` are all strings, all bools, or all (non-bool) numbers."""
    if all(isinstance(v, str) for v in values) or all(isinstance(v, bool) for v in values):
        return True
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def clean_attributes(attributes: object, field: str) -> dict[str, AttributeValue]:
    """Attributes OpenTelemetry accepts: string keys; scalar or homogeneous-sequence values, else ``str()``; None
    values left out. Raises ValueError naming ``field`` when ``attributes`` is not a mapping, cannot be read, or
    uses a key of :data:`RESERVED_ATTRIBUTES` or the metadata prefix."""
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise ValueError(f"{field}: must be a mapping or None, got {type(attributes).__name__} {attributes!r}")
    cleaned: dict[str, AttributeValue] = {}
    try:
        items = list(attributes.items())
    except Exception as exc:
        raise ValueError(f"{field}: could not be read ({type(exc).__name__}: {exc})") from exc
    for key, value in items:
        if value is None:
            continue
        name = str(key)
        if isinstance(value, _SCALARS):
            cleaned[name] = value
        elif isinstance(value, (list, tuple)) and _homogeneous(value):
            cleaned[name] = tuple(value)
        else:
            cleaned[name] = str(value)
    return cleaned


def check_keys(keys: Sequence[str], field: str) -> None:
    """Refuse keys the exported records use themselves. Raises ValueError naming ``field`` and the key."""
    for key in keys:
        if key in RESERVED_ATTRIBUTES or key.startswith(METADATA_PREFIX):
            raise ValueError(
                f"{field}: key {key!r} is reserved (the export uses {sorted(RESERVED_ATTRIBUTES)} and the "
                f"{METADATA_PREFIX!r} prefix)"
            )


def clean_labels(labels: object, field: str = "labels") -> dict[str, str]:
    """``labels`` checked: a mapping of at most :data:`MAX_LABELS` non-empty string keys to string values, each at
    most :data:`MAX_LABEL_LENGTH` characters. Raises ValueError naming ``field`` and the bad entry."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise ValueError(f"{field}: must be a mapping of strings to strings or None, got {labels!r}")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{field}: at most {MAX_LABELS} labels (low cardinality), got {len(labels)}")
    cleaned: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not key or len(key) > MAX_LABEL_LENGTH:
            raise ValueError(f"{field}: keys must be non-empty strings of at most {MAX_LABEL_LENGTH}, got {key!r}")
        if not isinstance(value, str) or len(value) > MAX_LABEL_LENGTH:
            raise ValueError(
                f"{field}[{key!r}]: values must be strings of at most {MAX_LABEL_LENGTH} characters, got {value!r}"
            )
        cleaned[key] = value
    check_keys(list(cleaned), field)
    return cleaned


def epoch_seconds(value: object, field: str) -> float | None:
    """A time filter as Unix epoch seconds: None, a finite number, or a ``datetime`` (a naive one is local time,
    as :meth:`datetime.timestamp` reads it). Raises ValueError naming ``field``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field}: must be Unix epoch seconds, a datetime or None, got {value!r}")
    return float(value)


def positive_int(value: object, field: str) -> int | None:
    """None or an integer of at least 1. Raises ValueError naming ``field``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field}: must be an integer of at least 1 or None, got {value!r}")
    return value
