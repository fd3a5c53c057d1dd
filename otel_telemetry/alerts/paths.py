"""``ServerMetrics`` paths: which dotted names a rule reads from the snapshot, their checks, and reading them.

A rule's ``metric`` is a path when its first segment is a top-level ``ServerMetrics`` field (``hardware``,
``network``, ``performance``, ``game``, ``server_id``, ``timestamp``); any other text is the name of a metric of the
frame. Pure functions (one bounded cache of checked paths); thread-safe.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from functools import lru_cache
from typing import Any

from otel_telemetry.alerts.values import _number
from otel_telemetry.snapshot.model import ServerMetrics

#: The top-level fields of ``ServerMetrics``: a rule metric starting with one of them is a snapshot path.
SNAPSHOT_ROOTS: frozenset[str] = frozenset(f.name for f in fields(ServerMetrics))


def is_snapshot_path(metric: str) -> bool:
    """True when ``metric`` reads ``ServerMetrics`` (its first dotted segment is a top-level field)."""
    return metric.split(".", 1)[0] in SNAPSHOT_ROOTS


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_mapping(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is not None and isinstance(origin, type) and issubclass(origin, Mapping)


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp)


def _check_path(path: object) -> None:
    """Raise ``ValueError`` unless ``path`` names a numeric field of :class:`ServerMetrics`.

    Mapping fields (``performance.phase_time_ms``, ``game.players_per_map``...) take any key as the next segment.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"expected a dotted ServerMetrics path such as 'performance.tick_rate_fps', got {path!r}")
    _check_str_path(path)


@lru_cache(maxsize=64)
def _hints(tp: type) -> dict[str, Any]:
    """``typing.get_type_hints(tp)`` once per record type (it evaluates every annotation string each time)."""
    return typing.get_type_hints(tp)


@lru_cache(maxsize=512)
def _check_str_path(path: str) -> None:
    tp: Any = ServerMetrics
    walked: list[str] = []
    for part in path.split("."):
        tp = _strip_optional(tp)
        where = ".".join(walked) or "ServerMetrics"
        if not part:
            raise ValueError(f"{path!r} is not a ServerMetrics field: empty segment after {where!r}")
        if is_dataclass(tp) and isinstance(tp, type):
            hints = _hints(tp)
            names = [f.name for f in fields(tp)]
            if part not in names:
                import difflib  # for the error message only

                close = difflib.get_close_matches(part, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; {where} has: {', '.join(names)}"
                raise ValueError(f"{path!r} is not a ServerMetrics field: {where} has no field {part!r}{hint}")
            tp = hints[part]
        elif _is_mapping(tp):
            tp = typing.get_args(tp)[1]
        else:
            raise ValueError(f"{path!r} is not a ServerMetrics field: {where} is a {_type_name(tp)}, not a record")
        walked.append(part)
    tp = _strip_optional(tp)
    if tp not in (int, float):
        raise ValueError(f"{path!r} is not a numeric ServerMetrics field (it is a {_type_name(tp)})")


def _read(metrics: ServerMetrics, path: str) -> float | None:
    """The number at ``path`` in ``metrics``; None when absent (an unknown mapping key) or not a finite number."""
    try:
        value = metrics.field_value(path)
    except KeyError:
        return None
    return _number(value)
