"""The OTLP request encoder that updates the previous frame's request in place: always the official encoder's bytes.

Every check compares :class:`RequestEncoder` with ``encode_metrics`` (the official encoder) on the same data, byte
for byte, over sequences of frames whose series stay, change or appear; and counts which requests were updated in
place, so that a change that made every frame fall back to the official encoder would fail too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Buckets,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from receivers import OtlpReceiver

from otel_telemetry import Telemetry
from otel_telemetry.export.otlp_encoding import RequestEncoder

CUMULATIVE = AggregationTemporality.CUMULATIVE
RESOURCE = Resource({"service.name": "game", "server.id": "s-1"})
SCOPE = InstrumentationScope("otel_telemetry.instrumentations", "1.0")


def _frame(
    metrics: Sequence[Metric], resource: Resource = RESOURCE, scope: InstrumentationScope = SCOPE
) -> MetricsData:
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, list(metrics), "")], "")])


def _gauge(value: float, t: int, attributes: dict[str, Any] | None = None, name: str = "server.cpu") -> Metric:
    return Metric(name, "CPU", "%", Gauge([NumberDataPoint(attributes or {}, t, t, value)]))


def _sum(values: dict[str, int | float], t: int, monotonic: bool = True) -> Metric:
    points = [NumberDataPoint({"direction": d}, 100, t, v) for d, v in values.items()]
    return Metric("server.network.packets", "packets", "1", Sum(points, CUMULATIVE, monotonic))


def _histogram(
    counts: list[int], t: int, low: float | None = 1.0, high: float | None = 9.0, bounds: Sequence[float] = (5.0,)
) -> Metric:
    point = HistogramDataPoint(
        {"phase": "network"}, 100, t, sum(counts), 12.5 if low is not None else 0.0, counts, list(bounds), low, high
    )
    return Metric("server.tick.duration", "tick", "s", Histogram([point], CUMULATIVE))


def _same_bytes(encoder: RequestEncoder, data: MetricsData) -> None:
    ours = encoder.encode(data)
    assert isinstance(ours, ExportMetricsServiceRequest)
    assert ours.SerializeToString() == encode_metrics(data).SerializeToString()


def _sequence(encoder: RequestEncoder, frames: Sequence[MetricsData]) -> None:
    for data in frames:
        _same_bytes(encoder, data)


def test_a_frame_with_the_same_series_updates_the_kept_request() -> None:
    """Timestamps, values, bucket counts, min and max change; the series stay: one encoding, the rest in place."""
    encoder = RequestEncoder()
    frames = [
        _frame(
            [_gauge(10.0 + k, 1000 + k), _sum({"in": 5 * k, "out": 3 * k}, 1000 + k), _histogram([k, 2 * k], 1000 + k)]
        )
        for k in range(1, 6)
    ]
    _sequence(encoder, frames)
    assert (encoder.encoded, encoder.updated) == (1, 4)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(lambda k: _frame([_gauge(7, k)]), id="int-value-after-float"),  # as_int instead of as_double
        pytest.param(lambda k: _frame([_gauge(1.5, k, {"core": "0"})]), id="attributes-added"),
        pytest.param(lambda k: _frame([_gauge(1.5, k, name="server.memory")]), id="other-name"),
        pytest.param(lambda k: _frame([_gauge(1.5, k), _gauge(2.5, k, name="server.memory")]), id="metric-added"),
        pytest.param(lambda k: _frame([]), id="metric-gone"),
        pytest.param(lambda k: _frame([_gauge(1.5, k)], resource=Resource({"service.name": "x"})), id="resource"),
        pytest.param(lambda k: _frame([_gauge(1.5, k)], scope=InstrumentationScope("other")), id="scope"),
        pytest.param(
            lambda k: _frame([_gauge(1.5, k)], scope=InstrumentationScope(SCOPE.name, "1.0", None, {"a": "b"})),
            id="scope-attributes",
        ),
    ],
)
def test_a_frame_with_other_series_is_encoded_again(changed: Callable[[int], MetricsData]) -> None:
    """Whatever differs in the series, the bytes are the official encoder's; the frame after is updated again."""
    encoder = RequestEncoder()
    _sequence(encoder, [_frame([_gauge(1.5, 1)]), _frame([_gauge(2.5, 2)]), changed(3), changed(4)])
    assert encoder.updated >= 2


def test_values_that_switch_kind_or_go_missing_are_written_as_the_official_encoder_writes_them() -> None:
    """An int after a float (as_int), min and max absent (left unset), more buckets, a sum that turns float."""
    encoder = RequestEncoder()
    frames = [
        _frame([_gauge(1.5, 1), _sum({"in": 1, "out": 2}, 1), _histogram([1, 1], 1)]),
        _frame([_gauge(2, 2), _sum({"in": 1.5, "out": 2}, 2), _histogram([0, 0], 2, low=None, high=None)]),
        _frame([_gauge(2.5, 3), _sum({"in": 4, "out": 2}, 3), _histogram([3, 1], 3)]),
    ]
    _sequence(encoder, frames)
    assert encoder.updated == 2
    _sequence(
        encoder, [_frame([_gauge(2.5, 4), _sum({"in": 4, "out": 2}, 4), _histogram([3, 1, 1], 4, bounds=(5.0, 8.0))])]
    )


def test_attributes_in_another_order_are_encoded_in_that_order() -> None:
    """Equal attribute sets in another order encode differently: not an update."""
    encoder = RequestEncoder()
    _sequence(encoder, [_frame([_gauge(1.0, 1, {"a": "1", "b": "2"})]), _frame([_gauge(1.0, 2, {"b": "2", "a": "1"})])])
    assert encoder.updated == 0


def test_exemplars_and_exponential_histograms_are_always_left_to_the_official_encoder() -> None:
    exemplar = Exemplar({"k": "v"}, 3.0, 5, None, None)
    with_exemplar = [
        _frame([Metric("m", "", "1", Gauge([NumberDataPoint({}, k, k, 1.0, exemplars=[exemplar])]))]) for k in (1, 2, 3)
    ]
    exponential = [
        _frame(
            [
                Metric(
                    "e",
                    "",
                    "1",
                    ExponentialHistogram(
                        [
                            ExponentialHistogramDataPoint(
                                {}, 1, k, 2, 3.0, 0, 0, Buckets(0, [1, 1]), Buckets(0, []), 0, 1.0, 2.0
                            )
                        ],
                        CUMULATIVE,
                    ),
                )
            ]
        )
        for k in (1, 2)
    ]
    for frames in (with_exemplar, exponential):
        encoder = RequestEncoder()
        _sequence(encoder, frames)
        assert encoder.updated == 0


def test_two_equal_resources_are_merged_as_the_official_encoder_merges_them() -> None:
    """The official encoder keys resources by equality: the kept request would not line up, so none is kept."""
    encoder = RequestEncoder()
    rm = ResourceMetrics(RESOURCE, [ScopeMetrics(SCOPE, [_gauge(1.0, 1)], "")], "")
    twice = MetricsData([rm, ResourceMetrics(Resource(dict(RESOURCE.attributes)), rm.scope_metrics, "")])
    _sequence(encoder, [twice, twice])
    assert encoder.updated == 0


# -- a real handle: its frames, and what its OTLP exporter sends -----------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.stop()


def _drive(telemetry: Telemetry, round_: int) -> None:
    for k in range(20):
        with telemetry.performance.tick():
            telemetry.network.packet_received(64 + k)
            telemetry.network.packet_sent(96 + round_)
            telemetry.network.player_ping(f"p{k % 5}", 20.0 + round_ + k)
    if round_ == 3:  # series appear in the middle: a new facade name and a new map
        telemetry.metrics.increment("match.started", tags={"mode": "duel"})
        telemetry.game.player_joined("p9", "map-new")
    for monitor in telemetry.monitors():
        monitor.refresh(force=True)


def test_a_real_handles_frames_are_sent_as_the_official_encoder_would_encode_them(
    receiver: OtlpReceiver, make_telemetry: Callable[..., Telemetry]
) -> None:
    """Frames of a handle under load, with series appearing half way: each request the receiver decodes equals
    the official encoding of the frame sent, and most were updated in place."""
    telemetry = make_telemetry(otlp_endpoint=f"http://127.0.0.1:{receiver.port}", collection_interval=600)
    telemetry.game.player_joined("p0", "map-1")
    sent: list[MetricsData] = []
    for round_ in range(7):
        _drive(telemetry, round_)
        data = telemetry.collect()
        assert data is not None
        sent.append(data)
        deadline = time.monotonic() + 10
        while len(receiver.requests) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(receiver.requests) == len(sent)
    for request, data in zip(receiver.requests, sent, strict=True):
        assert request == encode_metrics(data)
    otlp = telemetry._otlp
    assert otlp is not None
    assert otlp.encoder.encoded >= 2, "the series added at round 3 make a new encoding"
    assert otlp.encoder.updated >= 4
