"""The tests are self-contained: the spec facts they check are data files in tests/data/, never a path outside."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import DATA, spec_bullets, spec_payload

TESTS = Path(__file__).resolve().parent
# The seeds directory named as one string, or a path built from its two parts with Path division
_OUTSIDE = re.compile(r"shared/seeds|[\"']seeds[\"']|[\"']shared[\"']")


def test_no_test_reads_the_spec_from_outside_the_repository() -> None:
    """No .py file under tests/ (this one aside) names the shared seeds directory."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(TESTS.parent).as_posix()}:{number}: {line.strip()}")
    assert offenders == [], "tests must read spec facts from tests/data/, not the seeds:\n" + "\n".join(offenders)


def test_spec_data_files_hold_the_metric_bullets_and_the_example_payload() -> None:
    """82 distinct bullets in the spec's four sections, and the example payload's five top-level groups."""
    bullets = spec_bullets()
    assert len(bullets) == 82
    assert len(set(bullets)) == 82
    assert [section for section, _text in bullets] == sorted(
        (section for section, _text in bullets), key=["hardware", "network", "performance", "game"].index
    )
    assert all(text.strip() == text and text for _section, text in bullets)
    payload = spec_payload()
    assert list(payload) == ["server_id", "timestamp", "hardware", "network", "performance", "game"]
    assert payload["performance"]["target_fps"] == 60.0


def test_data_files_are_valid_json_written_by_the_regeneration_script() -> None:
    """Every data file parses and ends with a newline, as tests/data/regenerate.py writes it."""
    files = sorted(DATA.glob("*.json"))
    assert {path.name for path in files} >= {"spec_metric_bullets.json", "spec_payload.json"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
        assert text.endswith("\n"), path.name
