"""Our one-pass Prometheus renderer gives exactly the bytes of the OpenTelemetry exporter + prometheus_client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from otel_telemetry import Telemetry
from otel_telemetry.export.exposition import go_float, render_text
from otel_telemetry.export.prometheus import _PROMETHEUS_NAMES, PrometheusExposition
from otel_telemetry.tools.demo import DemoOptions, GameSimulation


def _reference(metrics_data: Any) -> bytes:
    """The exporter's translation (with the catalog's names, as /metrics applies them) rendered by prometheus_client."""
    families = PrometheusExposition(lambda: None).families(metrics_data)

    class _Families:
        def collect(self) -> list[Any]:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families())  # type: ignore[arg-type]
    return generate_latest(registry)


def test_a_busy_frame_renders_byte_for_byte_like_the_exporter(make_telemetry: Callable[..., Telemetry]) -> None:
    """A frame of the demo at load (every catalog metric, facade and handler series) renders identically."""
    telemetry = make_telemetry(collection_interval=600)
    simulation = GameSimulation(telemetry, DemoOptions(players=200, maps=3, seed=4))
    for _ in range(90):
        simulation.step()
    telemetry.metrics.increment("matches.started", tags={"mode": "duel"})
    telemetry.metrics.gauge("queue.depth", 3)
    telemetry.metrics.timing("db.save", 0.004)

    @telemetry.traced("rpc.trade")
    def trade() -> None:
        return None

    trade()
    telemetry.collect()
    frame = telemetry.latest_frame()
    assert frame is not None
    ours = render_text(frame.metrics_data, _PROMETHEUS_NAMES)
    reference = _reference(frame.metrics_data)
    assert ours.decode().splitlines() == reference.decode().splitlines()
    assert ours == reference
    assert ours.count(b"\n") > 500


def test_odd_names_labels_and_values_render_like_the_exporter() -> None:
    """Label values with quotes, backslashes and newlines, non-string attributes, missing labels, NaN/inf, an
    up-down counter (gauge), a delta-free monotonic counter and help text with a newline."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        meter = provider.get_meter("odd")
        counter = meter.create_counter("odd.count", unit="By", description='bytes "in"\nwith a newline \\')
        counter.add(3, {"path": 'a"b\\c\nd'})
        counter.add(2, {"path": "x", "code": 200})
        meter.create_up_down_counter("odd.level", unit="{thing}").add(-4)
        meter.create_histogram("odd.latency", unit="ms").record(12.5, {"route": "/"})
        meter.create_gauge("odd.gauge", unit="1").set(float("nan"))
        meter.create_counter("starts_total").add(1)
        data = reader.get_metrics_data()
        assert data is not None
        assert render_text(data, {}) == _reference(data)
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1.0"), (3, "3.0"), (float("inf"), "+Inf"), (-float("inf"), "-Inf"), (1.5e7, "1.5e+07"), (0.001, "0.001")],
)
def test_floats_are_written_as_go_writes_them(value: float, text: str) -> None:
    """Numbers follow prometheus_client's floatToGoString."""
    assert go_float(value) == text
    assert go_float(float("nan")) == "NaN"
