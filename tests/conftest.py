"""Shared fixtures: telemetry handles that are always shut down, and a real HTTP client."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_telemetry import Telemetry, setup_telemetry

ROOT = Path(__file__).resolve().parent.parent
SPEC = next((ROOT.parent / "shared" / "seeds").glob("000_*.txt"), None)


@pytest.fixture
def make_telemetry() -> Iterator[Callable[..., Telemetry]]:
    """Build telemetry handles (Prometheus on 127.0.0.1, a free port) and shut every one down afterwards."""
    made: list[Telemetry] = []

    def make(**overrides: Any) -> Telemetry:
        settings: dict[str, Any] = {
            "server_id": "test-server",
            "prometheus_host": "127.0.0.1",
            "prometheus_port": 0,
            "environ": {},
        }
        settings.update(overrides)
        from otel_telemetry import TelemetryConfig

        environ = settings.pop("environ")
        readers = settings.pop("metric_readers", ())
        handle = setup_telemetry(TelemetryConfig(environ=environ, **settings), metric_readers=readers)
        made.append(handle)
        return handle

    yield make
    for handle in made:
        handle.shutdown(timeout=5.0)


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` with a real HTTP client; returns status, headers and body (errors included)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def spec_bullets() -> list[tuple[str, str]]:
    """``(section, bullet text)`` for every bullet of the spec's "Metrics Collected" section."""
    assert SPEC is not None, "the primary spec ../shared/seeds/000_*.txt is missing"
    bullets: list[tuple[str, str]] = []
    section = ""
    inside = False
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Metrics Collected"
            continue
        if not inside:
            continue
        if line.startswith("### "):
            section = line[4:].strip().split()[0].lower()
        elif line.startswith("- "):
            bullets.append((section, line[2:].strip()))
    return bullets
