"""The catalog: every spec bullet, consistent names, generated views and docs in sync."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from conftest import ROOT, spec_bullets

from otel_telemetry.catalog import (
    CATALOG,
    SPEC_FIXED_PROMETHEUS_NAMES,
    Instrument,
    instruments,
    prometheus_translation,
)
from otel_telemetry.telemetry import catalog_views
from otel_telemetry.tools.docs import metrics_markdown


def test_every_spec_bullet_has_exactly_one_entry() -> None:
    """The 82 bullets of "Metrics Collected" map one-to-one onto catalog entries, section by section; the entries
    the spec does not list (the counters behind its per-second gauges, tick jitter) say what they serve."""
    bullets = spec_bullets()
    assert len(bullets) == 82
    documented = Counter((spec.section.value, spec.documented) for spec in CATALOG if spec.spec_bullet)
    for spec in CATALOG:
        if not spec.spec_bullet:
            assert spec.documented.startswith("(") and spec.documented.endswith(")"), spec.id
    expected = Counter(bullets)
    assert documented == expected, {
        "missing": sorted(expected - documented),
        "not in spec": sorted(documented - expected),
    }


def test_spec_example_prometheus_names_are_kept_exactly() -> None:
    """The names of the spec's /metrics example are catalog names, as gauges."""
    by_name = {spec.prometheus_name: spec for spec in CATALOG}
    for name in (
        "server_cpu_usage_percent",
        "server_memory_used_bytes",
        "server_packets_per_sec_incoming",
        "server_tick_rate_fps",
        "server_avg_player_ping_ms",
    ):
        assert by_name[name].instrument.prometheus_type == "gauge"
        assert name in SPEC_FIXED_PROMETHEUS_NAMES


def test_other_names_follow_the_standard_translation() -> None:
    """Apart from the spec-fixed names, prometheus_name is OpenTelemetry's own translation of name and unit."""
    for spec in CATALOG:
        if not spec.spec_fixed_name:
            assert spec.prometheus_name == prometheus_translation(spec.name, spec.unit, spec.instrument), spec.id
        if spec.instrument is Instrument.OBSERVABLE_COUNTER:
            assert spec.prometheus_name.endswith("_total"), spec.id
        assert "_milliseconds" not in spec.prometheus_name, spec.id


def test_prometheus_names_are_unique_per_instrument() -> None:
    """Two instruments never share a Prometheus name; entries sharing an instrument differ by selector."""
    names = [spec.prometheus_name for spec in instruments()]
    assert len(names) == len(set(names))
    selectors = Counter((spec.name, tuple(sorted(spec.selector.items()))) for spec in CATALOG)
    shared = [key for key, n in selectors.items() if n > 1]
    # Only the spec's two "network processing" bullets (update cycle and breakdown) name the same series.
    assert shared == [("server.tick.phase.duration", (("phase", "network"),))]


def test_histograms_have_increasing_boundaries_dense_where_it_matters() -> None:
    """Histogram boundaries are strictly increasing; tick durations are dense around 16.67 ms, pings 5-500 ms."""
    for spec in CATALOG:
        if spec.instrument is Instrument.HISTOGRAM:
            assert list(spec.boundaries) == sorted(set(spec.boundaries)) and spec.boundaries
        else:
            assert spec.boundaries == ()
    tick = next(s for s in CATALOG if s.name == "server.tick.duration")
    near_budget = [b for b in tick.boundaries if 0.014 <= b <= 0.020]
    assert len(near_budget) >= 8 and 0.01667 in tick.boundaries
    ping = next(s for s in CATALOG if s.name == "server.network.player_ping")
    assert len([b for b in ping.boundaries if 0.005 <= b <= 0.5]) >= 20


def test_views_are_generated_from_the_catalog() -> None:
    """One view per instrument, histograms with the catalog's explicit boundaries."""
    views = catalog_views()
    assert len(views) == len(list(instruments()))
    by_name = {view._instrument_name: view for view in views}
    tick = by_name["server.tick.duration"]
    assert (
        tuple(tick._aggregation._boundaries) == next(s for s in CATALOG if s.name == "server.tick.duration").boundaries
    )


def test_catalog_command_prints_json() -> None:
    """`otel-telemetry catalog --format json` prints every entry with the documented keys."""
    output = subprocess.run(
        [sys.executable, "-m", "otel_telemetry.tools.cli", "catalog", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    entries = json.loads(output)
    assert len(entries) == len(CATALOG)
    assert sum(entry["spec_bullet"] for entry in entries) == 82
    for entry in entries:
        assert {"name", "instrument", "unit", "description", "section", "documented", "prometheus_name"} <= set(entry)


def test_committed_metric_reference_is_not_stale() -> None:
    """docs/metrics.md equals what `otel-telemetry catalog --format markdown` generates (run `make docs`)."""
    committed = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert committed == metrics_markdown() + "\n", "docs/metrics.md is stale: run `make docs`"
