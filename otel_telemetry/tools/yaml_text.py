"""The one YAML emitter of the generated files in ``collector-config/`` (Collector, Prometheus, alert rules).

Runtime code does not depend on a YAML library (PyYAML is a development dependency, which the tests read the output
back with), so the files are written by this small, deterministic emitter: block style, keys in insertion order,
comments placed by path, and strings quoted only where YAML would read them as something else.

Two quoting policies, one per kind of file, so that each reads as people write it:

* ``plain="names"`` (configurations): only names, dotted paths and durations stay plain (``otlp/gateway``,
  ``server.tick_rate``, ``10s``); addresses, patterns and OTTL statements are quoted (``"localhost:4317"``).
* ``plain="text"`` (rules files): any one-line printable ASCII text that YAML reads back unchanged stays plain, so
  that PromQL and annotations read as written (``expr: server_cpu_usage_percent > 80``).

Either way ``yaml.safe_load`` of the result equals the input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = ["ConfigPath", "Plain", "Yaml", "render_yaml", "yaml_scalar"]

#: A YAML-ready value: mappings with string keys, lists, and scalars.
Yaml = Mapping[str, "Yaml"] | Sequence["Yaml"] | str | int | float | bool | None
#: A path into a document: mapping keys and list indexes, from the top.
ConfigPath = tuple[str | int, ...]
#: Which strings stay unquoted (see the module docstring).
Plain = Literal["names", "text"]

#: Prometheus and Collector durations ("0s", "1m30s", "250ms") read as strings in YAML 1.1 and 1.2 alike.
_DURATION = re.compile(r"(?:\d+(?:ms|[ywdhms]))+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_TEXT_START = re.compile(r"[A-Za-z_(]")
#: Words YAML 1.1 reads as booleans or null.
_RESERVED = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"})
_FLOW_LIST_WIDTH = 100


def _plain_text(text: str) -> bool:
    """True when ``text`` reads back as itself as a plain scalar in block context."""
    return (
        bool(text)
        and _TEXT_START.match(text) is not None
        and text == text.strip()
        and all(" " <= c <= "~" for c in text)
        and ": " not in text
        and " #" not in text
        and not text.endswith(":")
        and text.lower() not in _RESERVED
    )


def _double_quoted(text: str) -> str:
    out = ['"']
    for c in text:
        code = ord(c)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif code in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF) or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def yaml_scalar(value: object, *, plain: Plain = "names", flow: bool = False) -> str:
    """``value`` (str, int, float, bool or None) as a YAML scalar; ``TypeError`` for anything else.

    Strings are plain when the ``plain`` policy allows it, else single-quoted (``names`` only, for text with double
    quotes and no single quote: OTTL statements stay readable), else double-quoted with escapes. ``flow``: the
    scalar sits in a flow list (``[a, b]``), where only the ``names`` policy's plain strings are safe.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        # YAML 1.1 readers (PyYAML) need a dot in the mantissa of an exponent form: 1e-09 would be a string.
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if not isinstance(value, str):
        raise TypeError(f"render_yaml: cannot represent {type(value).__name__} {value!r}")
    if _DURATION.fullmatch(value):
        return value
    if plain == "text" and not flow:
        return value if _plain_text(value) else _double_quoted(value)
    if _NAME.fullmatch(value) and value.lower() not in _RESERVED:
        return value
    if '"' in value and "'" not in value and value.isprintable():
        return f"'{value}'"
    return _double_quoted(value)


def _comment_lines(text: str, indent: int) -> list[str]:
    # Comments are one line each, printable ASCII: anything else would end the comment or garble the file.
    safe = "".join(c if " " <= c <= "~" or c == "\n" else "?" for c in text)
    return [f"{' ' * indent}# {line}".rstrip() for line in safe.splitlines()]


def _is_scalar(value: object) -> bool:
    return not isinstance(value, (Mapping, list, tuple))


class _Emitter:
    def __init__(self, comments: Mapping[ConfigPath, str], plain: Plain) -> None:
        self.comments = comments
        self.plain: Plain = plain
        self.lines: list[str] = []

    def scalar(self, value: object, flow: bool = False) -> str:
        return yaml_scalar(value, plain=self.plain, flow=flow)

    def inline(self, value: object) -> str | None:
        """The one-line form of ``value`` when it has one (scalars, empty containers, short lists of scalars)."""
        if _is_scalar(value):
            return self.scalar(value)
        if isinstance(value, Mapping):
            return "{}" if not value else None
        assert isinstance(value, (list, tuple))
        if all(_is_scalar(item) for item in value):
            text = "[" + ", ".join(self.scalar(item, flow=True) for item in value) + "]"
            return text if len(text) <= _FLOW_LIST_WIDTH else None
        return None

    def comment(self, path: ConfigPath, indent: int) -> None:
        text = self.comments.get(path)
        if text is not None:
            self.lines.extend(_comment_lines(text, indent))

    def mapping(self, value: Mapping[str, object], indent: int, path: ConfigPath, first_prefix: str = "") -> None:
        """Emit a block mapping; ``first_prefix`` ("- ") starts the first line of a list item."""
        for i, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"render_yaml: mapping keys must be strings, got {key!r}")
            prefix = first_prefix if i == 0 else " " * len(first_prefix)
            if i > 0 or not first_prefix:
                self.comment((*path, key), indent + len(first_prefix))
            self.entry(f"{' ' * indent}{prefix}{self.scalar(key)}:", item, indent + len(first_prefix), (*path, key))

    def entry(self, head: str, item: object, indent: int, path: ConfigPath) -> None:
        inline = self.inline(item)
        if inline is not None:
            self.lines.append(f"{head} {inline}")
            if inline == "[]":
                self.comment((*path, 0), indent + 2)  # the trailing comment of an empty list
            return
        self.lines.append(head)
        self.block(item, indent + 2, path)

    def block(self, value: object, indent: int, path: ConfigPath) -> None:
        if isinstance(value, Mapping):
            self.mapping(value, indent, path)
            return
        assert isinstance(value, (list, tuple))
        for i, item in enumerate(value):
            self.comment((*path, i), indent)
            if isinstance(item, Mapping) and item:
                self.mapping(item, indent, (*path, i), first_prefix="- ")
            else:
                self.entry(f"{' ' * indent}-", item, indent, (*path, i))
        self.comment((*path, len(value)), indent)


def render_yaml(
    obj: object,
    *,
    comments: Mapping[ConfigPath, str] | None = None,
    header: str | None = None,
    plain: Plain = "names",
) -> str:
    """``obj`` (mappings with string keys, lists, str, int, float, bool, None) as block-style YAML.

    Deterministic: keys keep their insertion order, strings are quoted only where the ``plain`` policy says so.
    ``comments`` maps a path of keys and list indexes to comment lines written above that entry (for a list item,
    above its dash); the index one past a list's end puts the comment after its last item (below ``[]`` when the
    list is empty). ``header`` opens the document as comment lines. ``yaml.safe_load`` of the result equals ``obj``;
    ``TypeError`` for a value it cannot represent.
    """
    emitter = _Emitter(comments or {}, plain)
    if header:
        emitter.lines.extend(_comment_lines(header, 0))
    inline = emitter.inline(obj)
    if _is_scalar(obj) or inline in ("{}", "[]"):
        emitter.lines.append(str(inline))
    else:
        emitter.block(obj, 0, ())
    return "\n".join(emitter.lines) + "\n"
