"""Annotation templates: ``{value:.1f}``-style placeholders, checked when a rule is built and filled on evaluation.

Pure functions over immutable text; thread-safe.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

#: Placeholders annotation templates may use.
_PLACEHOLDERS = frozenset({"value", "threshold", "low", "high", "metric", "name", "severity"})


class _Fill:
    """A template value that formats with the template's spec when it can, and as text otherwise."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value

    def __format__(self, spec: str) -> str:
        value = self._value
        if value is None:
            return "n/a"
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return str(value)


def _parse_template(template: str) -> list[tuple[str, str | None, str]]:
    """``(literal, field or None, spec)`` triples; ``ValueError`` for bad syntax or unknown placeholders."""
    parsed: list[tuple[str, str | None, str]] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is not None:
            if name not in _PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{name}}} (use {', '.join('{' + p + '}' for p in sorted(_PLACEHOLDERS))}; "
                    "double braces for a literal brace)"
                )
            if conversion is not None:
                raise ValueError(f"placeholder {{{name}!{conversion}}}: conversions are not supported")
            if spec and "{" in spec:
                raise ValueError(f"placeholder {{{name}:{spec}}}: nested fields are not supported")
        parsed.append((literal, name, spec or ""))
    return parsed


def _render(template: str, values: Mapping[str, object]) -> str:
    out: list[str] = []
    for literal, name, spec in _parse_template(template):
        out.append(literal)
        if name is not None:
            out.append(format(_Fill(values.get(name)), spec))
    return "".join(out)
