"""The import graph: every module imports on its own, leaves stay light, no cycle, layers point down, and private
OpenTelemetry names are touched only in ``otel_telemetry/_otel.py`` (see DESIGN.md, "Data flows one way")."""

from __future__ import annotations

import ast
import itertools
import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import instrumentations
import otel_telemetry

PACKAGES = (otel_telemetry, instrumentations)
#: Where the packages were imported from: the children import the very same code.
SOURCE_ROOT = Path(otel_telemetry.__file__).resolve().parent.parent
IMPORT_TIMEOUT = 60.0

#: What importing the catalog, the accumulators or the package itself must not load.
HEAVY = ("opentelemetry.exporter", "prometheus_client", "opentelemetry.sdk")
LIGHT_MODULES = ("otel_telemetry.catalog", "otel_telemetry.accumulators", "otel_telemetry")

#: The layers of DESIGN.md, lowest first: a module may import only lower layers, or its own package.
#: Entries ending in ".*" hold the package and everything below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "otel_telemetry._version",
        "otel_telemetry._lazy",
        "otel_telemetry._otel",
        "otel_telemetry.catalog",
        "otel_telemetry.accumulators",
        "otel_telemetry.delivery",
        "otel_telemetry.environment",
        "otel_telemetry.config",
        "otel_telemetry.producer",
        "otel_telemetry.pacing",
        "otel_telemetry.series",
    ),
    ("instrumentations.*", "otel_telemetry.recording.*"),
    ("otel_telemetry.snapshot.*",),
    ("otel_telemetry.alerts.*", "otel_telemetry.export.*"),
    ("otel_telemetry.telemetry",),
    ("otel_telemetry.tools.*",),
)
#: The package ``__init__`` imports its public names lazily (importlib in ``__getattr__``): it has no layer.
LAZY_ROOT = "otel_telemetry"
TOOLS = "otel_telemetry.tools"

#: The only module allowed to touch OpenTelemetry's private names.
OTEL_COMPAT = "otel_telemetry._otel"
#: Private attributes of OpenTelemetry objects that this SDK is known to need.
PRIVATE_OTEL_ATTRIBUTES = frozenset(
    {
        "_collector",
        "_instrument_class_temporality",
        "_preferred_temporality",
        "_preferred_aggregation",
        "_sdk_config",
        "_receive_metrics",
        "_collect",
        "_measurement_consumer",
        "_reader_storages",
        "_metrics_datas",
    }
)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@cache
def modules() -> tuple[Module, ...]:
    """Every module of both packages (``pkgutil.walk_packages``), the packages themselves included."""
    found: list[Module] = []
    errors: list[str] = []
    for package in PACKAGES:
        base = Path(package.__file__).resolve().parent  # type: ignore[arg-type]
        found.append(Module(package.__name__, base / "__init__.py", True))
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.", onerror=errors.append):
            parts = info.name.split(".")[1:]
            path = base.joinpath(*parts, "__init__.py") if info.ispkg else base.joinpath(*parts[:-1], f"{parts[-1]}.py")
            found.append(Module(info.name, path, info.ispkg))
    assert errors == [], f"walking the packages failed in {errors}"
    return tuple(sorted(found, key=lambda module: module.name))


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports the packages from the same place as this process."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SOURCE_ROOT), environ.get("PYTHONPATH"))))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT,
        cwd=SOURCE_ROOT,
        env=environ,
        check=False,
    )


def _import_alone(name: str) -> str | None:
    """``None`` when ``import name`` succeeds in a fresh interpreter, else what went wrong."""
    try:
        result = run_child(f"import {name}")
    except subprocess.TimeoutExpired:
        return f"{name}: import took more than {IMPORT_TIMEOUT:.0f} s"
    if result.returncode != 0:
        return f"{name}: exit {result.returncode}\n{result.stderr.strip()}"
    return None


# -- (a) every module imports on its own ----------------------------------------------------------------------------


def test_walk_finds_both_packages_and_their_subpackages() -> None:
    """The walk sees the modules the other tests rely on (a broken walk would make them pass vacuously)."""
    names = {module.name for module in modules()}
    assert {
        "otel_telemetry",
        "otel_telemetry._otel",
        "otel_telemetry.catalog",
        "otel_telemetry.telemetry",
        "otel_telemetry.tools.cli",
        "instrumentations",
        "instrumentations.hardware",
    } <= names
    assert all(module.path.is_file() for module in modules()), [m for m in modules() if not m.path.is_file()]


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """``import X`` succeeds on its own for every module of both packages, each in a new interpreter."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [failure for failure in pool.map(_import_alone, [m.name for m in modules()]) if failure]
    assert failures == [], "modules that do not import on their own:\n\n" + "\n\n".join(failures)


# -- (b) the leaves and the package stay light ----------------------------------------------------------------------

_LOADED = """
import json, sys
import {name}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))))
"""


@pytest.mark.parametrize("name", LIGHT_MODULES)
def test_importing_a_light_module_loads_no_exporter_nor_sdk(name: str) -> None:
    """A fresh ``import X`` loads none of the OpenTelemetry SDK, its exporters or prometheus_client."""
    result = run_child(_LOADED.format(name=name, heavy=HEAVY))
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import {name} loaded {len(loaded)} heavy modules: {loaded}"


def test_the_package_init_stays_lazy() -> None:
    """``otel_telemetry/__init__.py`` imports only its version eagerly; everything else goes through __getattr__."""
    eager = sorted(set(graph()[LAZY_ROOT]) - {"otel_telemetry._version"})
    assert eager == [], f"otel_telemetry/__init__.py imports {eager} eagerly; load them in __getattr__"
    assert callable(getattr(otel_telemetry, "__getattr__", None))


# -- (c) the graph: no cycle, layers point down ---------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` branches do run) and of
    a module-level ``__getattr__`` (a lazy re-export: it runs after the module finished importing, so it cannot
    close an import cycle; the module it names is checked on its own)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(node, ast.Module) and isinstance(child, ast.FunctionDef) and child.name == "__getattr__":
            continue
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield child
        yield from _walk_runtime(child)


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports(tree: ast.AST, importer: str, *, is_package: bool) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every runtime import of ``tree``; ``from p import n`` yields ``p.n``."""
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node.module, node.level, importer, is_package)
            for alias in node.names:
                yield (source if alias.name == "*" else f"{source}.{alias.name}"), node.lineno


@cache
def _lazy_names() -> dict[str, str]:
    """``otel_telemetry.<name>`` → the module that really defines it, for the names the package loads lazily."""
    lazy = {
        f"{LAZY_ROOT}.{name}": module for name, module in {**otel_telemetry._MOVED, **otel_telemetry._PUBLIC}.items()
    }
    lazy[f"{LAZY_ROOT}.__version__"] = "otel_telemetry._version"
    return lazy


def _resolve(target: str, known: set[str]) -> str | None:
    """The module of ours that importing ``target`` executes (``p.name`` → ``p.name`` or ``p``), if any."""
    target = _lazy_names().get(target, target)
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


@cache
def graph() -> dict[str, dict[str, int]]:
    """importer → {imported module of ours → first line}, for runtime imports (functions included)."""
    known = {module.name for module in modules()}
    edges: dict[str, dict[str, int]] = {}
    for module in modules():
        tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
        found = edges.setdefault(module.name, {})
        for target, line in _imports(tree, module.name, is_package=module.is_package):
            resolved = _resolve(target, known)
            if resolved is not None and resolved != module.name:
                found.setdefault(resolved, line)
    return edges


def _where(importer: str, imported: str) -> str:
    module = next(m for m in modules() if m.name == importer)
    return f"{module.path.relative_to(SOURCE_ROOT).as_posix()}:{graph()[importer][imported]}"


def _find_cycle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of ``edges`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    """No module imports itself back through others (function-level imports count, TYPE_CHECKING ones do not)."""
    cycle = _find_cycle(graph())
    if cycle is not None:
        steps = "\n".join(f"  {a} -> {b}  ({_where(a, b)})" for a, b in itertools.pairwise(cycle))
        pytest.fail(f"import cycle: {' -> '.join(cycle)}\n{steps}")


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a three-module cycle is found and a diamond is not one."""
    assert _find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b": 1, "c": 1}, "b": {"d": 1}, "c": {"d": 1}, "d": {}}) is None


def test_relative_imports_resolve_against_the_importer() -> None:
    """``from . import x`` in a package ``__init__`` means the package itself; in a module, its parent."""
    assert _absolute(None, 1, "otel_telemetry.snapshot", is_package=True) == "otel_telemetry.snapshot"
    assert _absolute("model", 1, "otel_telemetry.snapshot.files", is_package=False) == "otel_telemetry.snapshot.model"
    assert _absolute("catalog", 2, "otel_telemetry.snapshot.files", is_package=False) == "otel_telemetry.catalog"


def layer_of(name: str) -> tuple[int, str]:
    """``(layer, unit)`` of a module; a module may import its own unit (its package, or all of layer 0)."""
    for number, entries in enumerate(LAYERS):
        for entry in entries:
            if entry.endswith(".*"):
                package = entry[:-2]
                if name == package or name.startswith(package + "."):
                    return number, package
            elif name == entry:
                return number, "layer 0" if number == 0 else entry
    raise AssertionError(f"{name} has no layer: add it to LAYERS in tests/test_imports.py (and to DESIGN.md)")


def test_every_module_has_a_layer() -> None:
    """A new module is placed in a layer on purpose, not by accident."""
    missing = [m.name for m in modules() if m.name != LAZY_ROOT and not _has_layer(m.name)]
    assert missing == [], f"modules without a layer in tests/test_imports.py LAYERS: {missing}"


def _has_layer(name: str) -> bool:
    try:
        layer_of(name)
    except AssertionError:
        return False
    return True


def test_modules_import_only_lower_layers() -> None:
    """Each import points to a lower layer or the importer's own package; alerts and export stay apart."""
    violations = []
    for importer, imported in sorted(graph().items()):
        if importer == LAZY_ROOT or not _has_layer(importer):
            continue
        layer, unit = layer_of(importer)
        for target in sorted(imported):
            if target == LAZY_ROOT:
                continue  # only __version__ loads eagerly; lazy names were resolved to their modules
            if not _has_layer(target):
                continue  # reported by test_every_module_has_a_layer
            target_layer, target_unit = layer_of(target)
            if target_layer < layer or target_unit == unit:
                continue
            violations.append(
                f"{_where(importer, target)}: {importer} (layer {layer}, {unit}) imports {target} "
                f"(layer {target_layer}, {target_unit})"
            )
    assert violations == [], "imports that point up or sideways across layers:\n" + "\n".join(violations)


def test_nothing_outside_tools_imports_tools() -> None:
    """The CLI, demo, ``top`` and generators are leaves: no runtime module imports them (the package init neither)."""
    offenders = [
        f"{_where(importer, target)}: {importer} imports {target}"
        for importer, imported in sorted(graph().items())
        if not (importer == TOOLS or importer.startswith(TOOLS + "."))
        for target in sorted(imported)
        if target == TOOLS or target.startswith(TOOLS + ".")
    ]
    assert offenders == [], "runtime modules importing otel_telemetry.tools:\n" + "\n".join(offenders)


def test_lazy_names_of_the_package_resolve_to_modules_of_ours() -> None:
    """Every name the package loads lazily names one of our modules (the graph resolves them through this map)."""
    known = {module.name for module in modules()}
    assert {name: module for name, module in _lazy_names().items() if module not in known} == {}


# -- (d) private OpenTelemetry names only in _otel.py ---------------------------------------------------------------

_PRIVATE_MODULE_STRING = re.compile(r"""["']opentelemetry(?:\.\w+)*\._\w*""")
_PRIVATE_ATTRIBUTE_STRING = re.compile(r"""["'](%s)["']""" % "|".join(sorted(PRIVATE_OTEL_ATTRIBUTES)))  # noqa: UP031


def _private_otel_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every import (TYPE_CHECKING ones too) of an OpenTelemetry path or name with a ``_``-component."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "opentelemetry" and any(
                    p.startswith("_") for p in alias.name.split(".")
                ):
                    yield node.lineno, f"import {alias.name}"
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "opentelemetry"
        ):
            module = node.module or ""
            names = [alias.name for alias in node.names]
            if any(part.startswith("_") for part in module.split(".")) or any(n.startswith("_") for n in names):
                yield node.lineno, f"from {module} import {', '.join(names)}"


def _own_attributes(tree: ast.AST) -> dict[ast.AST, set[str]]:
    """For each node inside a class, the names that class defines itself (methods and ``self.x =``)."""
    owner: dict[ast.AST, set[str]] = {}
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        defined = {item.name for item in cls.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                defined.add(node.attr)
        for node in ast.walk(cls):
            owner[node] = defined
    return owner


def _private_otel_attributes(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Reads or calls of a known private OpenTelemetry attribute, except ``self.x`` of a class that defines ``x``."""
    own = _own_attributes(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in PRIVATE_OTEL_ATTRIBUTES):
            continue
        is_self = isinstance(node.value, ast.Name) and node.value.id == "self"
        if is_self and node.attr in own.get(node, set()):
            continue  # our own attribute or method of the same name
        yield node.lineno, f"{ast.unparse(node)}"


def private_otel_offenders() -> list[str]:
    """``file:line: what`` for every touch of a private OpenTelemetry name outside ``otel_telemetry/_otel.py``."""
    offenders: list[str] = []
    for module in modules():
        if module.name == OTEL_COMPAT:
            continue
        text = module.path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(module.path))
        found = [*_private_otel_imports(tree), *_private_otel_attributes(tree)]
        for number, line in enumerate(text.splitlines(), 1):
            for pattern in (_PRIVATE_MODULE_STRING, _PRIVATE_ATTRIBUTE_STRING):
                found += [(number, f"string {match.group(0)}...") for match in pattern.finditer(line)]
        where = module.path.relative_to(SOURCE_ROOT).as_posix()
        offenders += [f"{where}:{number}: {what}" for number, what in sorted(set(found))]
    return offenders


def test_private_opentelemetry_names_are_touched_only_in_the_compat_module() -> None:
    """Private OpenTelemetry modules, names and attributes appear only in otel_telemetry/_otel.py."""
    offenders = private_otel_offenders()
    assert offenders == [], (
        "private OpenTelemetry API outside otel_telemetry/_otel.py (move each access there, with a test in "
        "tests/test_otel_private.py):\n" + "\n".join(offenders)
    )


def test_the_private_name_scan_finds_what_it_looks_for() -> None:
    """The scan flags private imports and attributes, and leaves a class's own ``self._collect`` alone."""
    sample = ast.parse(
        "from opentelemetry.sdk._logs import LoggerProvider\n"
        "from opentelemetry.exporter.prometheus import _CustomCollector\n"
        "import opentelemetry._logs\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "class Reader(Base):\n"
        "    def _collect(self):\n"
        "        return self._collect(), self._collector, super()._receive_metrics(1)\n"
        "x = provider._sdk_config.metric_readers\n"
    )
    assert [line for line, _what in _private_otel_imports(sample)] == [1, 2, 3]
    assert sorted(what for _line, what in _private_otel_attributes(sample)) == [
        "provider._sdk_config",
        "self._collector",
        "super()._receive_metrics",
    ]
