"""The JSON body of the spec's payload (what the API principal receives and the JSON-lines file holds)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def _finite(value: object) -> object:
    """``value`` with NaN and infinities replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def encode_payload(payload: Mapping[str, object]) -> bytes:
    """The compact UTF-8 JSON body for ``payload``; non-finite floats become ``null``, datetimes ISO 8601.

    Raises ``TypeError``/``ValueError`` when the payload cannot be represented in JSON.
    """
    try:
        text = _dumps(payload)
    except ValueError:
        text = _dumps(_finite(payload))
    return text.encode("utf-8")


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default)
