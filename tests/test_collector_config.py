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
    ENVIRONMENT_DEFAULTS,
    FLEET_RULES_FILE,
    GAME_SERVERS_JOB,
    GATEWAY_FILE,
    PROMETHEUS_AGENT_FILE,
    PROMETHEUS_CENTRAL_FILE,
    PROMETHEUS_FILE,
    agent_config,
    collector_components,
    fleet_rules_config,
    gateway_config,
    prometheus_agent_config,
    prometheus_central_config,
    prometheus_config,
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


#: The Collector's environment reference (confmap's env provider): ``${env:NAME}`` or ``${env:NAME:-default}``.
_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _variable(value: str) -> str:
    """The environment variable a whole-value reference names."""
    match = _ENV_REFERENCE.fullmatch(value)
    assert match is not None, value
    return match[1]


def _expand(value: Any, environ: dict[str, str]) -> Any:
    """``value`` with every reference expanded as the Collector does: the variable if set, else its default (an
    unset variable without one expands to nothing)."""
    if isinstance(value, dict):
        return {key: _expand(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, environ) for item in value]
    if isinstance(value, str):
        return _ENV_REFERENCE.sub(lambda m: environ.get(m[1], m[2] if m[2] is not None else ""), value)
    return value


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


@pytest.mark.parametrize(
    "name", [*COLLECTOR_FILES, PROMETHEUS_FILE, PROMETHEUS_AGENT_FILE, PROMETHEUS_CENTRAL_FILE, FLEET_RULES_FILE]
)
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
    assert _variable(config["exporters"]["prometheusremotewrite"]["endpoint"]) == "PROMETHEUS_REMOTE_WRITE_URL"
    assert _variable(config["exporters"]["otlp/traces"]["endpoint"]) == "TRACES_BACKEND"
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp/traces"]


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
    assert _variable(config["exporters"]["otlp/gateway"]["endpoint"]) == "OTEL_GATEWAY_ENDPOINT"
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


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_every_environment_variable_has_a_default_so_the_collector_starts_without_any(name: str) -> None:
    """With no variable set, every reference expands to its default: no exporter is left without an endpoint (an
    empty endpoint is what stopped the gateway from starting)."""
    text = (CONFIG_DIR / name).read_text(encoding="utf-8")
    references = _ENV_REFERENCE.findall(text)
    assert references, name
    for variable, default in references:
        assert default, f"{name}: ${{env:{variable}}} has no default"
        assert ENVIRONMENT_DEFAULTS[variable] == default
    expanded = _expand(_load(name), environ={})
    for exporter, settings in expanded["exporters"].items():
        if "endpoint" in settings:
            assert settings["endpoint"], (name, exporter)
    assert "${" not in yaml.safe_dump(expanded)
    set_by_operator = _expand(_load(name), environ={variable: "set" for variable, _ in references})
    assert all(
        settings.get("endpoint") == "set"
        for exporter, settings in set_by_operator["exporters"].items()
        if exporter != "prometheus"
    )


@pytest.mark.parametrize("name", COLLECTOR_FILES)
def test_events_have_a_logs_pipeline(name: str) -> None:
    """The SDK sends events as OTLP log records: both Collectors receive them on otlp and export them."""
    pipelines = _load(name)["service"]["pipelines"]
    assert pipelines["logs"]["receivers"] == ["otlp"]
    assert pipelines["logs"]["exporters"]
    assert {pipeline.split("/")[0] for pipeline in pipelines} == {"metrics", "traces", "logs"}


def test_gateway_sends_logs_to_an_otlp_http_backend() -> None:
    """The gateway's logs go to LOGS_BACKEND over OTLP/HTTP, through memory_limiter, resource and batch."""
    config = _load(GATEWAY_FILE)
    assert config["service"]["pipelines"]["logs"] == {
        "receivers": ["otlp"],
        "processors": ["memory_limiter", "resource", "batch"],
        "exporters": ["otlphttp/logs"],
    }
    assert _variable(config["exporters"]["otlphttp/logs"]["endpoint"]) == "LOGS_BACKEND"


def test_the_collector_components_are_the_ones_the_files_use() -> None:
    """collector_components() lists exactly the component types of both files; docs/fleet.md names each one."""
    used: dict[str, set[str]] = {}
    for name in COLLECTOR_FILES:
        for kind, section in _load(name).items():
            if kind in (*KINDS, "extensions"):
                used.setdefault(kind, set()).update(component.split("/")[0] for component in section)
    assert {kind: set(names) for kind, names in collector_components().items()} == used
    guide = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    for names in collector_components().values():
        for component in names:
            assert f"`{component}`" in guide, component


def test_a_direct_scrape_gives_each_server_one_id(make_telemetry: Any) -> None:
    """A real /metrics scrape merged with the game-servers job's target labels as Prometheus merges them
    (honor_labels: true): every series has exactly one service_instance_id, the server's own, and no exported_*
    label. The server exposes service_instance_id on target_info only, and no job or instance label."""
    from conftest import http_get
    from prometheus_client.parser import text_string_to_metric_families

    jobs: Any = prometheus_config()["scrape_configs"]
    job = next(j for j in jobs if j["job_name"] == "game-servers")
    assert job["honor_labels"] is True
    target = job["static_configs"][0]
    server_id = target["labels"]["service_instance_id"]
    telemetry = make_telemetry(server_id=server_id, enable_prometheus_endpoint=True, enable_hardware_metrics=False)
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    _status, _headers, body = http_get(telemetry.prometheus_url)
    target_labels = {"job": job["job_name"], "instance": target["targets"][0], **target["labels"]}
    exposed_with_id = set()
    samples = 0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            exposed = dict(sample.labels)
            assert "job" not in exposed and "instance" not in exposed, sample
            if "service_instance_id" in exposed:
                exposed_with_id.add(family.name)
            # honor_labels: true keeps an exposed label; target labels fill in the others.
            stored = {**target_labels, **exposed}
            assert stored["service_instance_id"] == server_id, sample
            assert not any(label.startswith("exported_") for label in stored), sample
            samples += 1
    assert samples > 100
    assert exposed_with_id == {"target_info"}


# -- the Prometheus-agent fleet path ---------------------------------------------------------------------------------
def test_prometheus_agent_and_central_configs_pass_promtool(tmp_path: Path) -> None:
    """`promtool check config --agent` accepts the agent's file; `promtool check config` the central store's, with
    the SDK's rules and the fleet rules beside it; `promtool check rules` the fleet rules."""
    for name in (PROMETHEUS_AGENT_FILE, PROMETHEUS_CENTRAL_FILE, FLEET_RULES_FILE, "alert-rules.yml"):
        shutil.copy(CONFIG_DIR / name, tmp_path / name)
    for argv in (
        ["check", "config", "--agent", PROMETHEUS_AGENT_FILE],
        ["check", "config", PROMETHEUS_CENTRAL_FILE],
        ["check", "rules", FLEET_RULES_FILE],
    ):
        result = subprocess.run([_promtool(), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (argv, result.stdout + result.stderr)
        assert "SUCCESS" in result.stdout


def test_the_agent_gives_every_target_its_server_id_and_forwards_to_the_central_store() -> None:
    """Every agent target carries service_instance_id (the servers' series do not: only target_info does); the
    agent writes remotely and labels what it forwards; the central store loads both rules files."""
    agent = _load(PROMETHEUS_AGENT_FILE)
    assert agent == prometheus_agent_config()
    assert set(agent) == {"global", "scrape_configs", "remote_write"}  # agent mode: no rules, no alerting
    assert agent["global"]["external_labels"]
    [job] = agent["scrape_configs"]
    assert job["job_name"] == GAME_SERVERS_JOB and job["honor_labels"] is True
    assert all(target["labels"]["service_instance_id"] for target in job["static_configs"])
    assert agent["remote_write"][0]["url"].endswith("/api/v1/write")
    central = _load(PROMETHEUS_CENTRAL_FILE)
    assert central == prometheus_central_config()
    assert central["rule_files"] == ["alert-rules.yml", FLEET_RULES_FILE]
    custom: Any = prometheus_agent_config({"s-1": "127.0.0.1:1"}, remote_write_url="http://x/api/v1/write")
    assert custom["scrape_configs"][0]["static_configs"] == [
        {"targets": ["127.0.0.1:1"], "labels": {"service_instance_id": "s-1"}}
    ]


def test_the_fleet_rules_alert_on_a_server_that_stops_reporting() -> None:
    """GameServerDown: up of the game-servers job at 0, for 30 s by default."""
    [group] = _load(FLEET_RULES_FILE)["groups"]
    [rule] = group["rules"]
    assert rule["alert"] == "GameServerDown"
    assert rule["expr"] == f'up{{job="{GAME_SERVERS_JOB}"}} == 0'
    assert rule["for"] == "30s"
    shorter: Any = fleet_rules_config(for_="2s")
    assert shorter["groups"][0]["rules"][0]["for"] == "2s"
