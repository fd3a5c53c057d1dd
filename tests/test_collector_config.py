"""collector-config/: Collector pipelines that hold together, the catalog's renames, a valid Prometheus config."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from otel_telemetry.catalog import SPEC_FIXED_PROMETHEUS_NAMES, instruments, prometheus_translation
from otel_telemetry.tools.collector import (
    AGENT_FILE,
    GATEWAY_FILE,
    PROMETHEUS_FILE,
    agent_config,
    gateway_config,
    render_yaml,
    rendered_files,
    write_all,
)

CONFIG_DIR = ROOT / "collector-config"
COLLECTOR_FILES = (GATEWAY_FILE, AGENT_FILE)
KINDS = ("receivers", "processors", "exporters")


def _load(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((CONFIG_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), name
    return loaded


def _promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    assert Path(found).exists(), "promtool is missing: `make test` installs it (scripts/install-promtool.sh)"
    return found


def _expected_renames() -> dict[str, str]:
    """Straight from the catalog: the names whose standard translation is not the exported name."""
    return {
        spec.name: spec.prometheus_name
        for spec in instruments()
        if prometheus_translation(spec.name, spec.unit, spec.instrument) != spec.prometheus_name
    }


@pytest.mark.parametrize("name", [*COLLECTOR_FILES, PROMETHEUS_FILE])
def test_every_file_is_valid_yaml(name: str) -> None:
    """Each committed file parses with PyYAML into a mapping."""
    assert _load(name)


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_pipelines_reference_only_defined_components(name: str) -> None:
    """Every receiver, processor, exporter and extension a pipeline names is configured, and each one is used."""
    config = _load(name)
    pipelines = config["service"]["pipelines"]
    assert pipelines
    used: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for pipeline_name, pipeline in pipelines.items():
        assert pipeline_name.split("/")[0] in ("metrics", "traces", "logs"), pipeline_name
        for kind in KINDS:
            assert pipeline.get(kind), f"{name}: pipeline {pipeline_name} has no {kind}"
            for component in pipeline[kind]:
                assert component in config[kind], f"{name}: {pipeline_name} uses undefined {kind[:-1]} {component}"
                used[kind].add(component)
    for kind in KINDS:
        assert set(config[kind]) == used[kind], f"{name}: configured but unused {kind}"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
    assert "health_check" in config["service"]["extensions"]


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_memory_limiter_first_and_batch_last_in_every_pipeline(name: str) -> None:
    """memory_limiter refuses data before any work is done; batch groups what is finally exported."""
    for pipeline_name, pipeline in _load(name)["service"]["pipelines"].items():
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter", (name, pipeline_name)
        assert processors[-1] == "batch", (name, pipeline_name)
        assert processors.count("memory_limiter") == 1 and processors.count("batch") == 1


def test_gateway_keeps_the_server_id_and_turns_it_into_a_label() -> None:
    """No processor deletes or rewrites service.instance.id; both Prometheus exporters copy resource attributes."""
    config = _load(GATEWAY_FILE)
    for component, settings in config["processors"].items():
        kind = component.split("/")[0]
        if kind in ("resource", "attributes"):
            for action in settings.get("attributes", []):
                if action.get("key") == "service.instance.id":
                    assert action["action"] == "insert", action  # only fills it in where a sender set none
                pattern = action.get("pattern")
                if pattern is not None and action["action"] == "delete":
                    assert not re.fullmatch(pattern, "service.instance.id"), action
        text = yaml.safe_dump(settings)
        for verb in ("delete_key", "delete_matching_keys", "keep_keys", "keep_matching_keys"):
            assert verb not in text, (component, verb)
    for exporter in ("prometheus", "prometheusremotewrite"):
        assert config["exporters"][exporter]["resource_to_telemetry_conversion"] == {"enabled": True}
    metrics = config["service"]["pipelines"]["metrics"]
    assert set(metrics["exporters"]) == {"prometheus", "prometheusremotewrite"}
    assert config["exporters"]["prometheusremotewrite"]["endpoint"] == "${env:PROMETHEUS_REMOTE_WRITE_URL}"
    assert config["exporters"]["otlp"]["endpoint"] == "${env:TRACES_BACKEND}"
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp"]


def test_gateway_renames_exactly_the_catalog_spec_fixed_names() -> None:
    """The rename rules equal the catalog's, and each renamed metric loses its unit so no suffix is appended."""
    config = _load(GATEWAY_FILE)
    expected = _expected_renames()
    assert expected, "the catalog has spec-fixed names that differ from the standard translation"
    assert set(expected.values()) <= SPEC_FIXED_PROMETHEUS_NAMES
    transforms = config["processors"]["metricstransform/spec_names"]["transforms"]
    assert {t["include"]: t["new_name"] for t in transforms} == expected
    assert all(t["action"] == "update" and t["match_type"] == "strict" for t in transforms)
    (group,) = config["processors"]["transform/spec_units"]["metric_statements"]
    cleared = set()
    for statement in group["statements"]:
        match = re.fullmatch(r'set\(metric\.unit, ""\) where metric\.name == "(\w+)"', statement)
        assert match is not None, statement
        cleared.add(match[1])
    assert cleared == set(expected.values())
    processors = config["service"]["pipelines"]["metrics"]["processors"]
    assert processors.index("metricstransform/spec_names") < processors.index("transform/spec_units")


def test_agent_forwards_everything_to_the_gateway() -> None:
    """The agent receives OTLP locally and exports only to the gateway over OTLP."""
    config = _load(AGENT_FILE)
    assert set(config["exporters"]) == {"otlp/gateway"}
    assert config["exporters"]["otlp/gateway"]["endpoint"] == "${env:OTEL_GATEWAY_ENDPOINT}"
    receivers = {r for p in config["service"]["pipelines"].values() for r in p["receivers"]}
    assert receivers == {"otlp", "hostmetrics"}


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """`promtool check config` accepts prometheus.yml with the alert rules beside it."""
    shutil.copy(CONFIG_DIR / PROMETHEUS_FILE, tmp_path / PROMETHEUS_FILE)
    rules = CONFIG_DIR / "alert-rules.yml"
    if rules.exists():
        shutil.copy(rules, tmp_path / "alert-rules.yml")
    else:  # the generated rules are not there yet: any valid rules file will do for the config check
        (tmp_path / "alert-rules.yml").write_text(
            "groups:\n  - name: placeholder\n    rules:\n      - alert: Placeholder\n        expr: vector(0) > 0\n",
            encoding="utf-8",
        )
    result = subprocess.run(
        [_promtool(), "check", "config", PROMETHEUS_FILE], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheus_scrapes_the_gateway_exporter_and_loads_the_rules() -> None:
    """The Prometheus job for the Collector targets the gateway's exporter port; rules come from alert-rules.yml."""
    config = _load(PROMETHEUS_FILE)
    assert config["rule_files"] == ["alert-rules.yml"]
    port = _load(GATEWAY_FILE)["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["otel-gateway"]["static_configs"][0]["targets"][0].endswith(f":{port}")
    for target in jobs["game-servers"]["static_configs"]:
        assert target["labels"]["service_instance_id"]


def test_committed_files_are_not_stale(tmp_path: Path) -> None:
    """collector-config/ holds exactly what `python -m otel_telemetry.tools.collector` writes."""
    for path in write_all(tmp_path):
        committed = CONFIG_DIR / path.name
        assert committed.exists(), f"{committed} is missing: run `python -m otel_telemetry.tools.collector`"
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{committed} is stale: run `python -m otel_telemetry.tools.collector`"
        )


def test_rendered_yaml_loads_back_to_the_same_data() -> None:
    """The YAML emitter round-trips the configurations and awkward scalars through PyYAML."""
    assert yaml.safe_load(rendered_files()[GATEWAY_FILE]) == gateway_config()
    assert yaml.safe_load(rendered_files()[AGENT_FILE]) == agent_config()
    tricky: dict[str, Any] = {
        "reserved": ["yes", "No", "on", "null", "~", "true"],
        "numbers as text": ["1", "1.5", "0x10", "1e3", "-1", ".inf"],
        "numbers": [0, -3, 2.5, 1e-9, 3e20, -1.5e-7, True, None],
        "punctuation": ["a: b", "#x", "- x", "[x]", "{x}", "x, y", "'q'", 'say "hi"', "both ' and \"", "", " pad"],
        "text": ["tab\there", "line\nbreak", "ünïcode", "${env:X}", "0.0.0.0:4317", "5s"],
        "nested": {"empty map": {}, "empty list": [], "lists": [[1, 2], [], [{"a": 1, "b": [{"c": None}]}]]},
        "a list of maps": [{"k": "v"}, {"k": {"deep": [1]}, "other": "x"}],
    }
    assert yaml.safe_load(render_yaml(tricky)) == tricky
    assert render_yaml(tricky) == render_yaml(tricky)
    with pytest.raises(TypeError):
        render_yaml({"bad": object()})


def test_comments_are_placed_above_their_entries() -> None:
    """A comment keyed by a path is written above that entry, at its indentation; the header opens the file."""
    text = render_yaml(
        {"a": {"b": 1}, "l": [{"x": 1}, 2]},
        comments={("a", "b"): "about b", ("l", 0): "first item"},
        header="top",
    )
    assert text == "# top\na:\n  # about b\n  b: 1\nl:\n  # first item\n  - x: 1\n  - 2\n"
