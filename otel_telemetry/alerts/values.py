"""Small value checks shared by the rule model, the manager and the notifiers: numbers, durations, text forms.

Every function here is pure and thread-safe.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None (bools, NaN, infinities and non-numbers are "no data")."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fmt(value: float) -> str:
    """A threshold as people write it: ``80`` rather than ``80.0``, ``0.5`` as ``0.5``."""
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _duration(owner: str, name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    number = _number(value)
    if number is None or number < 0 or (positive and number == 0):
        need = "a positive" if positive else "a non-negative"
        raise ValueError(f"{owner}.{name}: must be {need}, finite number of seconds, got {value!r}")
    return number


def _threshold(owner: str, name: str, value: object) -> float:
    number = _number(value)
    if number is None:
        raise ValueError(f"{owner}.{name}: expected a finite number, got {value!r}")
    return number
