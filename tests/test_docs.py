"""The guides are true: every Python example runs as written, and the reference tables match the code."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from otel_telemetry import TelemetryConfig
from otel_telemetry import environment as env
from otel_telemetry.config import CONFIG_FIELDS
from otel_telemetry.tools.cli import main
from otel_telemetry.tools.collector import rename_rules
from otel_telemetry.tools.docs import configuration_markdown, with_configuration_markdown

DOCS = ROOT / "docs"
GUIDES = ("getting-started.md", "game-loop.md", "configuration.md", "fleet.md", "performance.md")
NO_RUN = "<!-- no-run -->"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("coming-from/*.md"))]


def _blocks(path: Path) -> list[tuple[int, str, bool]]:
    """``(line, code, runs)`` for every ```python block; a block right after ``<!-- no-run -->`` does not run."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found.append((text.count("\n", 0, match.start()) + 1, match.group(1), before.strip() != NO_RUN))
    return found


def _runnable() -> list[Any]:
    params = []
    for path in _documents():
        for line, code, runs in _blocks(path):
            if runs:
                name = path.relative_to(ROOT).as_posix()
                params.append(pytest.param(path, line, code, id=f"{name}:{line}"))
    return params


def _table(text: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after ``heading``, as lists of cell texts."""
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        elif rows:
            break
    return rows[2:]  # without the header and the separator


@pytest.mark.parametrize(("path", "line", "code"), _runnable())
def test_python_example_runs_as_written(
    path: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block executes without error and leaves no non-daemon thread behind."""
    monkeypatch.chdir(tmp_path)
    before = set(threading.enumerate())
    exec(compile(code, f"{path.name}:{line}", "exec"), {"__name__": f"doc_{path.stem}"})
    left = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert left == [], f"{path.name}:{line} left threads running: {left}"


def test_examples_use_free_ports_and_shut_telemetry_down() -> None:
    """Every example that sets telemetry up shuts it down, and one that serves /metrics asks for port 0."""
    for path in _documents():
        for line, code, runs in _blocks(path):
            if not runs or "setup_telemetry(" not in code:
                continue
            assert ".shutdown(" in code or "with setup_telemetry(" in code, f"{path.name}:{line}"
            if "enable_prometheus_endpoint=True" in code:
                assert "prometheus_port=0" in code, f"{path.name}:{line}"


def test_guides_exist_with_runnable_examples_and_few_exceptions() -> None:
    """Each guide exists; all but the performance page hold runnable examples; skipped blocks stay rare."""
    skipped = 0
    for name in GUIDES:
        blocks = _blocks(DOCS / name)
        assert any(runs for _line, _code, runs in blocks), name
        skipped += sum(not runs for _line, _code, runs in blocks)
    assert skipped <= 2


def test_configuration_reference_lists_every_field_with_its_variable_and_default() -> None:
    """One row per TelemetryConfig field, in order, naming its environment variable and its real default."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = _table(text, "## Settings")
    fields = [row[0].strip("`") for row in rows]
    assert fields == list(CONFIG_FIELDS)
    defaults = TelemetryConfig(environ={})
    variables = {name: getattr(env, name) for name in dir(env) if name.isupper()}
    for field, variable_cell, default_cell, *_rest in rows:
        field = field.strip("`")
        if field != "server_id":  # the host name: different on every machine
            assert default_cell.strip("`") == str(getattr(defaults, field)), field
        named = set(re.findall(r"`([A-Z_]+)`", variable_cell))
        assert named and named <= set(variables.values()), field
    documented = set(re.findall(r"`(GAME_TELEMETRY_\w+)`", text))
    assert documented == set(env.OWN_VARIABLES)


def test_configuration_settings_table_is_generated_from_the_config_table() -> None:
    """docs/configuration.md's settings table is what `otel-telemetry config-docs` generates (run `make docs`)."""
    committed = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert with_configuration_markdown(committed) == committed, "docs/configuration.md is stale: run `make docs`"


def test_config_docs_command_prints_and_rewrites_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config-docs` prints the table; `config-docs --write FILE` replaces only the text between the markers."""
    assert main(["config-docs"]) == 0
    assert capsys.readouterr().out == configuration_markdown() + "\n"
    committed = (DOCS / "configuration.md").read_text(encoding="utf-8")
    begin, end = "<!-- generated: otel-telemetry config-docs", "<!-- end generated -->"
    head, rest = committed.split(begin, 1)
    marker, _table_text = rest.split("\n", 1)
    tail = committed.split(end, 1)[1]
    stale = tmp_path / "configuration.md"
    stale.write_text(f"{head}{begin}{marker}\n| old | table |\n{end}{tail}", encoding="utf-8")
    assert main(["config-docs", "--write", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == committed


def test_fleet_guide_shows_the_catalog_rename_rules() -> None:
    """The rename table of docs/fleet.md is exactly what the gateway does."""
    text = (DOCS / "fleet.md").read_text(encoding="utf-8")
    rows = _table(text, "## The rename step")
    assert {otel.strip("`"): prometheus.strip("`") for otel, prometheus in rows} == rename_rules()


def test_performance_page_keeps_the_bench_table_marker() -> None:
    """The lead's benchmark table goes where the marker is."""
    text = (DOCS / "performance.md").read_text(encoding="utf-8")
    assert text.count("<!-- bench-table -->") == 1


def test_relative_links_in_the_guides_resolve() -> None:
    """Every relative Markdown link of the guides points to an existing file."""
    for name in GUIDES:
        text = (DOCS / name).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (DOCS / target).exists(), f"{name}: broken link {target}"


def test_coming_from_pages_run_every_block_and_cover_their_calls() -> None:
    """Both "coming from" pages exist, every Python block of them runs (none skipped), and each table row's
    equivalent appears in one of the page's examples or is a path, a setting or a metric name."""
    for name in ("coming-from/statsd-style.md", "coming-from/health-and-requests.md"):
        path = DOCS / name
        blocks = _blocks(path)
        assert len(blocks) >= 4 and all(runs for _line, _code, runs in blocks), name
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            assert (path.parent / target).exists(), f"{name}: broken link {target}"
    statsd = (DOCS / "coming-from/statsd-style.md").read_text(encoding="utf-8")
    code = "".join(code for _line, code, _runs in _blocks(DOCS / "coming-from/statsd-style.md"))
    for call in ("timing(", "timer(", "increment(", "decrement(", "gauge(", "get_timing(", "get_counter(",
                 "get_gauge(", "get_all_metrics(", "reset(", "reset_counters(", ".enabled", "enable_metrics=False",
                 "get_metrics(", "get_metrics_summary(", "MetricsExporter.to_json(", "MetricsExporter.to_summary(",
                 "distribution("):  # fmt: skip
        assert call in code, call
        assert call.rstrip("(").lstrip(".") in statsd.split("## Timings")[0], call
    health = "".join(code for _line, code, _runs in _blocks(DOCS / "coming-from/health-and-requests.md"))
    for call in ("traced(", "get_metrics_summary(", "health.set(", "register_check(", "set_ready(", '"/health"',
                 '"/health/ready"', '"/health/live"', "JsonLogHandler(", "process_uptime_seconds",
                 "process_start_time_seconds", "handler_requests_total", "handler_duration_seconds_sum"):  # fmt: skip
        assert call in health, call


def test_neighbour_pages_cover_every_feature_and_call() -> None:
    """The two pages for the neighbouring systems name each of their features in the table and exercise each of
    their calls, in the neighbour's argument forms, in a block that runs (tests/data/neighbour_features.json)."""
    facts = json.loads((ROOT / "tests" / "data" / "neighbour_features.json").read_text(encoding="utf-8"))
    for name, wanted in facts.items():
        if name.startswith("_"):
            continue
        path = DOCS / name
        blocks = _blocks(path)
        assert len(blocks) >= 4 and all(runs for _line, _code, runs in blocks), name
        text = path.read_text(encoding="utf-8")
        table = _table(text, "## Every feature and call")
        first_column = "\n".join(row[0] for row in table)
        missing = [f for f in wanted["features"] if f.lower() not in first_column.lower()]
        assert missing == [], f"{name}: features not in the table: {missing}"
        code = "".join(code for _line, code, runs in blocks if runs)
        absent = [call for call in wanted["calls"] if call not in code]
        assert absent == [], f"{name}: calls no example makes: {absent}"
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            assert (path.parent / target).exists(), f"{name}: broken link {target}"
