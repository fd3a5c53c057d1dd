"""One frame, one truth: /metrics, the OTLP request, ServerMetrics/JSON and the alert evaluator agree on every
shared field of the same frame."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import http_get
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from receivers import OtlpReceiver

from otel_telemetry import Telemetry
from otel_telemetry.alerts import AlertRule
from otel_telemetry.catalog import Instrument, snapshot_fields
from otel_telemetry.tools.demo import DemoOptions, GameSimulation

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


_Receiver = OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver on 127.0.0.1, stopped by its own handle."""
    server = OtlpReceiver()
    yield server
    server.stop()


def _scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, _, body = http_get(url)
    assert status == 200
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in body.decode().splitlines():
        found = _SAMPLE.match(line)
        if found and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(found.group(2) or ""))
            samples[(found.group(1), labels)] = float(found.group(3))
    return samples


def _otlp_values(request: ExportMetricsServiceRequest) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind not in ("gauge", "sum"):
                    continue
                for point in getattr(metric, kind).data_points:
                    labels = frozenset((a.key, a.value.string_value) for a in point.attributes)
                    number = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
                    values[(metric.name, labels)] = float(number)
    return values


def test_every_output_reads_the_same_frame(receiver: _Receiver, make_telemetry: Callable[..., Telemetry]) -> None:
    """For one frame, each scalar ServerMetrics field equals its /metrics sample, its OTLP point and the value
    the alert evaluator saw (each scaled by the catalog's scale), and the JSON payload carries the same number."""
    telemetry = make_telemetry(
        enable_prometheus_endpoint=True,
        otlp_endpoint=f"http://127.0.0.1:{receiver.server_address[1]}",
        collection_interval=600,  # no periodic frame during the test: the frame below is the only one
        enable_alerts=True,
    )
    simulation = GameSimulation(telemetry, DemoOptions(players=50, maps=3, seed=11))
    for _ in range(120):
        simulation.step()
    time.sleep(0.05)
    for monitor in telemetry.monitors():
        monitor.refresh(force=True)
    scalar = [
        (spec, item)
        for spec, item in snapshot_fields()
        if item.stat == "value" and item.key is None and spec.instrument is not Instrument.HISTOGRAM
    ]
    for index, (_spec, item) in enumerate(scalar):  # a rule per field that fires whatever the value
        telemetry.alerts.add_rule(AlertRule(name=f"Probe{index}", metric=item.path, kind="above", threshold=-1e300))
    telemetry.collect()
    frame = telemetry.latest_frame()
    assert frame is not None
    assert telemetry.prometheus_url is not None
    scraped = _scrape(telemetry.prometheus_url)
    deadline = time.monotonic() + 10
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert receiver.requests, "the frame was not exported over OTLP"
    otlp = _otlp_values(receiver.requests[0])
    payload = frame.server_metrics.to_dict()
    alerted = {a.metric: a.value for a in telemetry.alerts.active()}
    assert telemetry.latest_frame() is frame, "a second frame was taken during the test"
    compared = 0
    for spec, item in scalar:
        value = frame.server_metrics.field_value(item.path)
        labels = frozenset(item.where.items())
        sample = scraped.get((spec.prometheus_name, labels))
        point = otlp.get((spec.name, labels))
        if value is None:
            assert sample is None and point is None, f"{item.path}: no value in ServerMetrics but exported"
            assert item.path not in alerted
            continue
        assert sample is not None, f"{item.path}: {spec.prometheus_name} missing from /metrics"
        assert point is not None, f"{item.path}: {spec.name} missing from the OTLP request"
        assert sample * item.scale == pytest.approx(value, rel=1e-12), item.path
        assert point * item.scale == pytest.approx(value, rel=1e-12), item.path
        assert alerted[item.path] == pytest.approx(value, rel=1e-12), item.path
        section, name = item.path.split(".", 1)
        assert payload[section][name] == pytest.approx(value, rel=1e-12), item.path
        compared += 1
    assert compared >= 40, f"only {compared} fields compared"
    # Distributions: the exported histogram count of the frame is the count behind its ServerMetrics field.
    tick = frame.histograms
    exported = {k: v for k, v in scraped.items() if k[0] == "server_tick_duration_seconds_count"}
    assert exported and not any(math.isnan(v) for v in exported.values())
    total = sum(s.cumulative.count for s in tick.values() if s.spec.name == "server.tick.duration")
    assert sum(exported.values()) == total
