"""The Grafana dashboard, generated from the catalog: one panel per instrument, grouped by the spec's sections.

Every query names a metric as it is exported (``prometheus_name``, with ``_bucket`` for histograms), selects the
servers of the ``server`` variable by ``service_instance_id`` (the server id), and reads Prometheus through the
``datasource`` variable, so the same JSON imports into any Grafana. Histograms show p50/p95/p99 with
``histogram_quantile`` over the per-metric buckets of the catalog, except those the spec asks an average of
("Average session duration", "Average query time"), which show ``rate(_sum) / rate(_count)`` per server; counters
show per-second rates; gauges their value. A last row lists the alerts Prometheus evaluates from
``alert-rules.yml`` (the ``ALERTS`` series) for the selected servers: every panel honours ``$server``.

Regenerate ``collector-config/grafana-dashboard.json`` with ``python -m otel_telemetry.tools.dashboard [directory]``;
a test fails when the committed file is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from otel_telemetry.catalog import Instrument, MetricSpec, Section, instruments

__all__ = ["DASHBOARD_FILE", "dashboard", "render_dashboard", "write_dashboard"]

#: File name inside ``collector-config/``.
DASHBOARD_FILE = "grafana-dashboard.json"

_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_SERVER = 'service_instance_id=~"$server"'
_QUANTILES = (0.5, 0.95, 0.99)
#: Series whose attribute is unbounded in practice (one per player) are shown as the top few only.
_TOP_K = 10
_TOP_K_ATTRIBUTES = frozenset({"player_id"})
#: A direct scrape's ``target_info`` carries ``service_instance_id``; behind a Collector (scrape or remote write) its
#: target_info has the id as ``instance`` only, but every series carries the label, the constant target rate too.
_SERVER_QUERY = 'label_values({__name__=~"target_info|server_target_tick_rate_fps"}, service_instance_id)'

_ROW_TITLES = {
    Section.HARDWARE: "Hardware",
    Section.NETWORK: "Network",
    Section.PERFORMANCE: "Performance",
    Section.GAME: "Game",
}

_PANEL_WIDTH = 12
_PANEL_HEIGHT = 8


def _grafana_unit(spec: MetricSpec) -> str:
    """Grafana's unit id for the values a panel shows (rates for counters)."""
    unit = spec.unit
    if spec.instrument is Instrument.OBSERVABLE_COUNTER:
        unit += "/s"  # the panel shows rate()
    if unit.startswith("{tick}/"):
        return "suffix: fps"
    return {
        "s": "s",
        "ms": "ms",
        "%": "percent",
        "By": "bytes",
        "By/s": "Bps",
        "{packet}/s": "pps",
    }.get(unit, "cps" if unit.endswith("/s") else "short")


def _legend(spec: MetricSpec, first: str) -> str:
    return " ".join([first, *(f"{{{{{attribute}}}}}" for attribute in spec.attributes)])


def _is_average(spec: MetricSpec) -> bool:
    """A histogram whose spec bullet is an average (its first ``ServerMetrics`` field is the ``avg`` statistic)."""
    return spec.instrument is Instrument.HISTOGRAM and bool(spec.snapshot) and spec.snapshot[0].stat == "avg"


def _targets(spec: MetricSpec) -> list[dict[str, Any]]:
    """The panel's queries: quantiles for histograms (the average for those the spec asks an average of), rates for
    counters, the value for gauges."""
    name = spec.prometheus_name
    if _is_average(spec):
        by = ", ".join(("service_instance_id", *spec.attributes))
        rates = [f"sum by ({by}) (rate({name}_{part}{{{_SERVER}}}[$__rate_interval]))" for part in ("sum", "count")]
        return [{"expr": " / ".join(rates), "legendFormat": _legend(spec, "{{service_instance_id}}")}]
    if spec.instrument is Instrument.HISTOGRAM:
        by = ", ".join(("le", *spec.attributes))
        return [
            {
                "expr": f"histogram_quantile({q}, sum by ({by}) (rate({name}_bucket{{{_SERVER}}}[$__rate_interval])))",
                "legendFormat": _legend(spec, f"p{round(q * 100)}"),
            }
            for q in _QUANTILES
        ]
    if spec.instrument is Instrument.OBSERVABLE_COUNTER:
        by = ", ".join(("service_instance_id", *spec.attributes))
        return [
            {
                "expr": f"sum by ({by}) (rate({name}{{{_SERVER}}}[$__rate_interval]))",
                "legendFormat": _legend(spec, "{{service_instance_id}}"),
            }
        ]
    expr = f"{name}{{{_SERVER}}}"
    if _TOP_K_ATTRIBUTES & set(spec.attributes):
        expr = f"topk({_TOP_K}, {expr})"
    return [{"expr": expr, "legendFormat": _legend(spec, "{{service_instance_id}}")}]


def _title(spec: MetricSpec) -> str:
    # Instruments shared by several spec bullets (the phases), and those the spec does not list (the counters behind
    # its per-second gauges), are titled by what they measure.
    title = spec.description if spec.selector or not spec.spec_bullet else spec.documented
    if spec.instrument is Instrument.OBSERVABLE_COUNTER:
        title += ", per second"
    if _TOP_K_ATTRIBUTES & set(spec.attributes):
        title += f" (top {_TOP_K})"
    return title


def _timeseries(spec: MetricSpec) -> dict[str, Any]:
    kind = spec.instrument.prometheus_type
    return {
        "type": "timeseries",
        "title": _title(spec),
        "description": (
            f"{spec.description}. Prometheus: {spec.prometheus_name} ({kind}); "
            f"OpenTelemetry: {spec.name} [{spec.unit}]."
        ),
        "datasource": dict(_DATASOURCE),
        "fieldConfig": {"defaults": {"unit": _grafana_unit(spec)}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": _targets(spec),
    }


def _alert_panels() -> list[dict[str, Any]]:
    # Every rule keeps service_instance_id on its alerts (gauges keep their labels, quantiles sum by it).
    firing = f'ALERTS{{alertstate=~"firing|pending", {_SERVER}}}'
    return [
        {
            "type": "table",
            "title": "Active alerts",
            "description": "Alerts Prometheus evaluates from alert-rules.yml that are pending or firing now, for the "
            "selected servers.",
            "datasource": dict(_DATASOURCE),
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": {"showHeader": True, "sortBy": [{"displayName": "severity", "desc": False}]},
            "targets": [{"expr": firing, "format": "table", "instant": True, "legendFormat": ""}],
            "transformations": [
                {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}
            ],
        },
        {
            "type": "timeseries",
            "title": "Alerts over time",
            "description": "Pending and firing alerts by name and severity.",
            "datasource": dict(_DATASOURCE),
            "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
            "options": {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            },
            "targets": [
                {
                    "expr": f"sum by (alertname, alertstate, severity) ({firing})",
                    "legendFormat": "{{alertname}} {{severity}} {{alertstate}}",
                }
            ],
        },
    ]


def _layout(rows: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Rows with their panels two per line, ids and ``gridPos`` assigned top to bottom; ``refId`` per query."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, members in rows:
        panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for i, panel in enumerate(members):
            panel["gridPos"] = {
                "h": _PANEL_HEIGHT,
                "w": _PANEL_WIDTH,
                "x": (i % 2) * _PANEL_WIDTH,
                "y": y + (i // 2) * _PANEL_HEIGHT,
            }
            for index, target in enumerate(panel["targets"]):
                target["refId"] = chr(ord("A") + index)
                target["datasource"] = dict(_DATASOURCE)
            panels.append(panel)
        y += (len(members) + 1) // 2 * _PANEL_HEIGHT
    for panel_id, panel in enumerate(panels, start=1):
        panel["id"] = panel_id
    return panels


def _variables() -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [],
            "refresh": 1,
            "regex": "",
        },
        {
            "name": "server",
            "label": "Server",
            "description": "Game servers by id (resource attribute service.instance.id): from target_info, or from the "
            "target tick rate every server exports where target_info lacks the label (Collector, remote write).",
            "type": "query",
            "datasource": dict(_DATASOURCE),
            "definition": _SERVER_QUERY,
            "query": _SERVER_QUERY,  # the plain-string form every Grafana version reads
            "current": {},
            "hide": 0,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "options": [],
            "refresh": 2,
            "regex": "",
            "sort": 1,
        },
    ]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON model (schema version 39) for the catalog's metrics."""
    rows: list[tuple[str, list[dict[str, Any]]]] = [
        (_ROW_TITLES[section], [_timeseries(spec) for spec in instruments() if spec.section is section])
        for section in Section
    ]
    rows.append(("Alerts", _alert_panels()))
    return {
        "annotations": {"list": []},
        "description": "Game servers instrumented with otel-telemetry; generated from the metric catalog.",
        "editable": True,
        "graphTooltip": 1,
        "links": [],
        "panels": _layout(rows),
        "refresh": "10s",
        "schemaVersion": 39,
        "tags": ["otel-telemetry", "game-server"],
        "templating": {"list": _variables()},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": "Game servers (otel-telemetry)",
        "uid": "otel-telemetry-game-servers",
        "version": 1,
    }


def render_dashboard() -> str:
    """The dashboard as the committed file holds it: pretty JSON, sorted keys, trailing newline."""
    return json.dumps(dashboard(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_dashboard(directory: str | Path) -> Path:
    """Write ``grafana-dashboard.json`` into ``directory`` (created if needed); returns its path."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    path = target / DASHBOARD_FILE
    path.write_text(render_dashboard(), encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover - a maintainer's regeneration command
    print(f"wrote {write_dashboard(sys.argv[1] if len(sys.argv) > 1 else 'collector-config')}")
