"""The README is true: its quickstart runs as written and its configuration table matches TelemetryConfig."""

from __future__ import annotations

import re

from conftest import ROOT

from otel_telemetry import TelemetryConfig
from otel_telemetry import environment as env
from otel_telemetry.config import CONFIG_FIELDS

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_python_blocks_run_as_written() -> None:
    """Every ```python block of the README executes without error."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})


def test_the_two_commands_are_make_demo_and_make_test() -> None:
    """The set-up section shows exactly `make demo` and `make test`."""
    section = README.split("## Two commands", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^(make \w+)", re.search(r"```sh\n(.*?)```", section, re.S).group(1), re.M)  # type: ignore[union-attr]
    assert commands == ["make demo", "make test"]


def test_configuration_table_matches_the_config() -> None:
    """One row per TelemetryConfig field, with its environment variable(s) and its real default."""
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \| (.*?) \| .*\|$", README, re.M)
    table = {field: (variables, default) for field, variables, default in rows}
    assert list(table) == list(CONFIG_FIELDS)
    defaults = TelemetryConfig(environ={})
    for field, (_variables, default) in table.items():
        if field not in ("server_id",):
            assert default.strip("`") == str(getattr(defaults, field)), field
    documented = set(re.findall(r"`(GAME_TELEMETRY_\w+)`", README))
    assert documented == set(env.OWN_VARIABLES)
