"""Shared fixtures: telemetry handles that are always shut down, a real HTTP client, and the spec's facts.

The spec facts the tests check live in ``tests/data/`` (written from the spec's text by ``tests/data/regenerate.py``,
by hand), so the tests need nothing outside the repository.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_telemetry import Telemetry, setup_telemetry

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


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


class ManualClock:
    """A monotonic clock that moves only when a test sets ``now`` (seconds)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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
    """``(section, bullet text)`` for every bullet of the spec's "Metrics Collected" section, in the spec's order."""
    bullets = json.loads((DATA / "spec_metric_bullets.json").read_text(encoding="utf-8"))
    return [(bullet["section"], bullet["text"]) for bullet in bullets]


def spec_payload() -> dict[str, Any]:
    """The spec's example JSON body for ``POST /api/v1/telemetry``."""
    payload: dict[str, Any] = json.loads((DATA / "spec_payload.json").read_text(encoding="utf-8"))
    return payload
