"""The monitors' observable instruments, produced without SDK instruments on a handle: the same metrics, kinds
and values, for the frame and for readers of the user's own, cumulative or delta."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import ObservableCounter, ObservableUpDownCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, Gauge, InMemoryMetricReader, MetricsData, Sum

from instrumentations.network import NetworkMonitor
from otel_telemetry.catalog import CATALOG, Instrument
from otel_telemetry.telemetry import Telemetry

DELTA = AggregationTemporality.DELTA
CUMULATIVE = AggregationTemporality.CUMULATIVE
PACKETS = "server.network.packets"


def _metrics(data: Any) -> dict[str, Any]:
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def _packets(data: Any, direction: str) -> Any:
    (point,) = [p for p in _metrics(data)[PACKETS].data.data_points if p.attributes["direction"] == direction]
    return point


def test_every_observable_catalog_instrument_reaches_the_frame_with_its_kind(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    """Each observable instrument of the catalog is in the frame, a Gauge or a Sum as its kind says (monotonic for
    counters), with the catalog's unit and description, and none of them is an SDK instrument of the handle."""
    telemetry = make_telemetry(enable_prometheus_endpoint=False, enable_hardware_metrics=False)
    telemetry.network.packet_received(100)
    with telemetry.performance.tick():
        pass
    data = telemetry.collect()
    found = _metrics(data)
    sections = {m.section for m in telemetry.monitors()}
    expected = [
        s for s in CATALOG if s.instrument is not Instrument.HISTOGRAM and s.section in sections and not s.per_entity
    ]
    assert expected
    for spec in expected:
        metric = found.get(spec.name)
        assert metric is not None, spec.name
        assert (metric.unit, metric.description) == (spec.unit, spec.description), spec.name
        if spec.instrument is Instrument.OBSERVABLE_GAUGE:
            assert isinstance(metric.data, Gauge), spec.name
        else:
            assert isinstance(metric.data, Sum), spec.name
            assert metric.data.is_monotonic is (spec.instrument is Instrument.OBSERVABLE_COUNTER), spec.name
            assert metric.data.aggregation_temporality is CUMULATIVE
    assert _packets(data, "received").value == 1


def test_a_delta_reader_of_the_user_gets_per_collection_counts(make_telemetry: Callable[..., Telemetry]) -> None:
    """A reader preferring delta counters receives what changed since its own previous collection, with the start
    of each point at that collection; a cumulative reader beside it keeps totals."""
    delta = InMemoryMetricReader(
        preferred_temporality={ObservableCounter: DELTA, ObservableUpDownCounter: DELTA, UpDownCounter: DELTA}
    )
    cumulative = InMemoryMetricReader()
    telemetry = make_telemetry(
        enable_prometheus_endpoint=False, enable_hardware_metrics=False, metric_readers=[delta, cumulative]
    )
    network = telemetry.network
    for _ in range(3):
        network.packet_received(100)
    first = _packets(delta.get_metrics_data(), "received")
    assert first.value == 3
    for _ in range(2):
        network.packet_received(100)
    network.refresh(force=True)  # totals are refreshed at most every half collection interval
    second = _packets(delta.get_metrics_data(), "received")
    assert second.value == 2
    assert second.start_time_unix_nano == first.time_unix_nano
    assert _metrics(delta.get_metrics_data())[PACKETS].data.aggregation_temporality is DELTA
    assert _packets(cumulative.get_metrics_data(), "received").value == 5


def test_a_failing_observer_is_counted_and_the_others_still_report() -> None:
    """An observer that raises is logged once and counted; the monitor's other instruments still report."""
    monitor = NetworkMonitor()
    monitor.attach_produced()
    monitor.packet_received(10)

    def broken() -> Any:
        raise RuntimeError("observer bug")

    assert monitor._produced is not None
    spec, _observe = monitor._produced[0]
    monitor._produced[0] = (spec, broken)
    for _ in range(2):
        names = {s.name for s, _points in monitor.scalar_points()}
        assert spec.name not in names and PACKETS in names
    assert monitor.callback_errors == 2
    monitor.detach()
    assert monitor.scalar_points() == []


def test_telemetry_and_health_instruments_are_produced_in_their_own_scopes(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    """telemetry.*, process.* and health.* keep their scopes (otel_telemetry.self, otel_telemetry.health) in the
    frame and reach a reader of the user's own, while the SDK's own collection holds no metric at all: every
    instrument a handle makes at setup is produced, so a collection pays no SDK callback."""
    user = InMemoryMetricReader()
    telemetry = make_telemetry(enable_prometheus_endpoint=False, metric_readers=[user])
    telemetry.collect()
    frame = telemetry.collect()
    assert frame is not None
    scopes = {m.name: sm.scope.name for rm in frame.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    own = {name: scope for name, scope in scopes.items() if name.startswith(("telemetry.", "process.", "health."))}
    assert {"telemetry.collection.runs", "telemetry.dropped", "process.uptime", "health.status"} <= own.keys()
    assert {scope for name, scope in own.items() if not name.startswith("health.")} == {"otel_telemetry.self"}
    assert {scope for name, scope in own.items() if name.startswith("health.")} == {"otel_telemetry.health"}
    assert _metrics(user.get_metrics_data())["health.status"].data.data_points[0].attributes == {
        "component": "telemetry"
    }
    reader = telemetry._collector._reader  # type: ignore[union-attr]  # the SDK side of the handle's collection
    assert reader.take() == MetricsData(resource_metrics=[])
