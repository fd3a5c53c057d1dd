"""The Grafana dashboard: generated from the catalog, every query on an exported metric, committed file in sync."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from otel_telemetry.catalog import Instrument, instruments
from otel_telemetry.tools.dashboard import DASHBOARD_FILE, dashboard, render_dashboard, write_dashboard

COMMITTED = ROOT / "collector-config" / DASHBOARD_FILE
_METRIC = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The committed dashboard, as Grafana would load it."""
    loaded = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model["panels"]:
        if panel["type"] != "row":
            yield panel


def _exported_names() -> set[str]:
    names = {"ALERTS", "target_info"}
    for spec in instruments():
        names.add(spec.prometheus_name)
        if spec.instrument is Instrument.HISTOGRAM:
            names |= {spec.prometheus_name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


#: The histograms the spec asks an average of: their panels plot rate(_sum) / rate(_count), not quantiles.
_AVERAGES = {"server.game.session.duration", "server.game.db.query.duration"}


def test_the_specs_averages_are_rate_of_sum_over_rate_of_count(model: dict[str, Any]) -> None:
    """ "Average session duration" and "Average query time" plot the average per server, in seconds."""
    titles = {panel["title"]: panel for panel in _panels(model)}
    for title in ("Average session duration", "Average query time (milliseconds)"):
        (target,) = titles[title]["targets"]
        assert "histogram_quantile" not in target["expr"]
        numerator, denominator = target["expr"].split(" / ")
        assert "_sum{" in numerator and "_count{" in denominator
        assert titles[title]["fieldConfig"]["defaults"]["unit"] == "s"


def _promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    assert Path(found).exists(), "promtool is missing: `make test` installs it (scripts/install-promtool.sh)"
    return found


def test_committed_dashboard_is_not_stale() -> None:
    """collector-config/grafana-dashboard.json is what `python -m otel_telemetry.tools.dashboard` writes."""
    assert COMMITTED.read_text(encoding="utf-8") == render_dashboard(), (
        "grafana-dashboard.json is stale: run `python -m otel_telemetry.tools.dashboard`"
    )


def test_write_dashboard_writes_pretty_sorted_json(tmp_path: Path) -> None:
    """The written file is indented JSON with sorted keys and a trailing newline."""
    text = write_dashboard(tmp_path).read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_model_has_the_variables_and_rows(model: dict[str, Any]) -> None:
    """A Prometheus datasource variable, a multi-select server variable over service_instance_id, five rows."""
    assert 36 <= model["schemaVersion"] <= 41
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    server = variables["server"]
    assert server["type"] == "query" and server["multi"] and server["includeAll"]
    assert re.fullmatch(r"label_values\(.*target_info.*, service_instance_id\)", server["definition"])
    assert server["query"] == server["definition"]
    rows = [p["title"] for p in model["panels"] if p["type"] == "row"]
    assert rows == ["Hardware", "Network", "Performance", "Game", "Alerts"]


def test_every_query_names_an_exported_metric(model: dict[str, Any]) -> None:
    """Each query selects metrics under their exported names (histograms through _bucket), or ALERTS/target_info."""
    exported = _exported_names()
    for panel in _panels(model):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _METRIC.findall(target["expr"])
            assert names, target["expr"]
            assert set(names) <= exported, (panel["title"], target["expr"])
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_selector_of_every_panel_honours_the_server_variable(model: dict[str, Any]) -> None:
    """Each metric selector of each query, the ALERTS panels' included, selects the servers of $server."""
    selector = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\s*\{([^}]*)\}")
    for panel in _panels(model):
        for target in panel["targets"]:
            matchers = selector.findall(target["expr"])
            assert matchers, target["expr"]
            for matcher in matchers:
                assert 'service_instance_id=~"$server"' in matcher, (panel["title"], target["expr"])


def test_every_catalog_instrument_has_its_panel(model: dict[str, Any]) -> None:
    """One panel per instrument: quantiles for histograms, rates for counters, values for gauges."""
    by_metric: dict[str, dict[str, Any]] = {}
    for panel in _panels(model):
        for target in panel["targets"]:
            for name in _METRIC.findall(target["expr"]):
                by_metric.setdefault(name, panel)
    specs = list(instruments())
    assert len(list(_panels(model))) == len(specs) + 2  # plus the two alert panels
    for spec in specs:
        name = spec.prometheus_name
        if spec.name in _AVERAGES:
            (target,) = by_metric[name + "_sum"]["targets"]
            assert target["expr"] == (
                f'sum by (service_instance_id) (rate({name}_sum{{service_instance_id=~"$server"}}[$__rate_interval]))'
                f' / sum by (service_instance_id) (rate({name}_count{{service_instance_id=~"$server"}}'
                "[$__rate_interval]))"
            )
            assert name + "_bucket" not in by_metric
        elif spec.instrument is Instrument.HISTOGRAM:
            panel = by_metric[name + "_bucket"]
            exprs = [t["expr"] for t in panel["targets"]]
            assert [re.findall(r"^histogram_quantile\(([0-9.]+),", e) for e in exprs] == [["0.5"], ["0.95"], ["0.99"]]
            assert all(f"rate({name}_bucket{{" in e and "[$__rate_interval]" in e for e in exprs)
            assert all("sum by (le" in e for e in exprs)
        elif spec.instrument is Instrument.OBSERVABLE_COUNTER:
            (target,) = by_metric[name]["targets"]
            assert f"rate({name}{{" in target["expr"]
        else:
            (target,) = by_metric[name]["targets"]
            assert "rate(" not in target["expr"]
    assert "ALERTS" in by_metric


def test_queries_are_valid_promql(model: dict[str, Any], tmp_path: Path) -> None:
    """With Grafana's variables substituted, every query passes `promtool check rules` as a recording rule."""
    rules = []
    for panel in _panels(model):
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$server", ".*")
            rules.append({"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr})
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_have_unique_ids_and_do_not_overlap(model: dict[str, Any]) -> None:
    """Grafana needs distinct ids; grid cells of two panels never intersect."""
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_generation_is_deterministic() -> None:
    """Two renders are identical, and the model is what dashboard() returns."""
    assert render_dashboard() == render_dashboard()
    assert json.loads(render_dashboard()) == json.loads(json.dumps(dashboard()))
