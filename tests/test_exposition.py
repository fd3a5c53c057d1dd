"""Our one-pass Prometheus renderer gives exactly the bytes of the OpenTelemetry exporter + prometheus_client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest

from otel_telemetry import Telemetry
from otel_telemetry.export.exposition import TextRenderer, go_float, render_text
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


def test_consecutive_frames_reuse_their_plans_and_still_render_like_the_exporter(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    """One renderer over a handle's frames, with series added half way (a facade name, a handler, players on a
    new map): every frame's bytes are the exporter's, and the unchanged metrics were not planned again."""
    telemetry = make_telemetry(collection_interval=600)
    simulation = GameSimulation(telemetry, DemoOptions(players=50, maps=2, seed=7))
    renderer = TextRenderer()
    planned: list[int] = []
    for round_ in range(6):
        for _ in range(10):
            simulation.step()
        if round_ == 3:
            telemetry.metrics.increment("matches.started", tags={"mode": "duel"})
            telemetry.metrics.timing("db.save", 0.004)
        telemetry.collect()
        frame = telemetry.latest_frame()
        assert frame is not None
        assert renderer.render(frame.metrics_data, _PROMETHEUS_NAMES) == _reference(frame.metrics_data), round_
        planned.append(renderer.planned)
    metrics = sum(len(sm.metrics) for rm in frame.metrics_data.resource_metrics for sm in rm.scope_metrics)
    assert renderer.reused > 3 * metrics, "most metrics of rounds 1-5 reuse their plans"
    assert planned[3] > planned[2], "the series added at round 3 are planned"


_SCOPE = InstrumentationScope("test")


def _data(*metrics: Metric) -> MetricsData:
    return MetricsData(
        [ResourceMetrics(Resource({"service.name": "s"}), [ScopeMetrics(_SCOPE, list(metrics), "")], "")]
    )


def _histogram(bounds: list[float], counts: list[int], attributes: dict[str, str], total: float | None = 3.0) -> Metric:
    point = HistogramDataPoint(attributes, 1, 2, sum(counts), total, counts, bounds, None, None)  # type: ignore[arg-type]
    return Metric("lat", "latency", "s", Histogram([point], AggregationTemporality.CUMULATIVE))


def _gauge(value: float, attributes: dict[str, str], description: str = "g") -> Metric:
    return Metric("g", description, "1", Gauge([NumberDataPoint(attributes, 1, 2, value)]))


@pytest.mark.parametrize(
    "later",
    [
        pytest.param(_data(_histogram([1.0, 2.0, 5.0], [1, 1, 0, 1], {"a": "1"})), id="other-bounds"),
        pytest.param(_data(_histogram([1.0], [1, 2], {"a": "1"})), id="fewer-buckets"),
        pytest.param(_data(_histogram([1.0, 2.0], [1, 1, 1], {"a": "2"})), id="other-labels"),
        pytest.param(_data(_histogram([1.0, 2.0], [1, 1, 1], {"a": "1"}, None)), id="no-sum"),
        pytest.param(_data(_gauge(2.0, {"b": "1", "a": "2"}), _gauge(3.0, {"a": "2", "b": "1"})), id="label-order"),
        pytest.param(_data(_gauge(2.0, {"a": "1"}, "other help")), id="other-help"),
        pytest.param(_data(), id="nothing"),
        pytest.param(_data(_histogram([1.0, 2.0], [1, 1, 1], {"a": "1"}, 4.5), _gauge(1.0, {"a": "1"})), id="sum"),
        pytest.param(_data(_histogram([1.0, 2.0], [1, 2, 1], {"a": "1"}), _gauge(1.0, {"a": "1"})), id="counts"),
        pytest.param(_data(_histogram([1.0, 2.0], [0, 0, 0], {"a": "1"}, -0.0)), id="negative-zero-sum"),
    ],
)
def test_a_metric_whose_series_changed_is_planned_again(later: MetricsData) -> None:
    """Every change after a first frame, then the first frame again: the exporter's bytes each time (the lines of
    a histogram that did not change are written again as they were)."""
    renderer = TextRenderer()
    first = _data(_histogram([1.0, 2.0], [1, 1, 1], {"a": "1"}), _gauge(1.0, {"a": "1"}))
    for data in (first, first, later, later, first):
        assert renderer.render(data, {}) == _reference(data)
    zero = _data(_histogram([1.0, 2.0], [0, 0, 0], {"a": "1"}, 0.0))
    negative = _data(_histogram([1.0, 2.0], [0, 0, 0], {"a": "1"}, -0.0))
    assert renderer.render(zero, {}) != renderer.render(negative, {}) == _reference(negative)
