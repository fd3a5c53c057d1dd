"""The four monitors as OpenTelemetry instrumentors: entry points, instrument and a real uninstrument."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from instrumentations.game import GameInstrumentor
from instrumentations.hardware import HardwareInstrumentor
from instrumentations.network import NetworkInstrumentor
from instrumentations.performance import PerformanceInstrumentor
from otel_telemetry.catalog import lookup
from otel_telemetry.snapshot.frame import points


@pytest.fixture
def provider() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    """A real meter provider with an in-memory reader, shut down afterwards."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


def test_entry_points_are_registered() -> None:
    """The opentelemetry_instrumentor group lists our four instrumentors, loadable as BaseInstrumentor classes."""
    found = {
        ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name.startswith("game_server")
    }
    assert set(found) == {"game_server_hardware", "game_server_network", "game_server_performance", "game_server_game"}
    for ep in found.values():
        assert issubclass(ep.load(), BaseInstrumentor)


def test_network_instrumentor_instruments_and_uninstruments(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """instrument() attaches a monitor whose counts are exported; uninstrument() stops them being reported."""
    meter_provider, reader = provider
    instrumentor = NetworkInstrumentor()
    instrumentor.instrument(meter_provider=meter_provider)
    try:
        monitor = instrumentor.monitor
        assert monitor is not None
        for _ in range(3):
            monitor.packet_received(10)
        received = [
            p
            for p in points(reader.get_metrics_data(), "server.network.packets")
            if p.attributes["direction"] == "received"
        ]
        assert received[0].value == 3
    finally:
        instrumentor.uninstrument()
    assert instrumentor.monitor is None
    assert points(reader.get_metrics_data(), "server.network.packets") == []


@pytest.mark.parametrize(
    ("instrumentor_class", "metric"),
    [
        (HardwareInstrumentor, "server.memory.total"),  # CPU % needs a first interval; memory is immediate
        (PerformanceInstrumentor, "server.tick_rate.target"),
        (GameInstrumentor, "server.game.active_players"),
    ],
)
def test_each_instrumentor_reports_its_section(
    provider: tuple[MeterProvider, InMemoryMetricReader], instrumentor_class: type[BaseInstrumentor], metric: str
) -> None:
    """Each instrumentor's observable instruments report on the given provider until uninstrumented."""
    meter_provider, reader = provider
    instrumentor = instrumentor_class()
    instrumentor.instrument(meter_provider=meter_provider)
    try:
        assert points(reader.get_metrics_data(), metric)
    finally:
        instrumentor.uninstrument()
    assert points(reader.get_metrics_data(), metric) == []


# -- histograms and per-player gauges reach a plain SDK provider's readers -------------------------------------------

LATENCY = "server.network.packet_latency"
TICK = "server.tick.duration"


def test_network_histogram_reaches_a_plain_in_memory_reader(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """packet_latency(5.0) on the instrumented monitor: the reader gets the latency histogram, count 1, 5 ms."""
    meter_provider, reader = provider
    instrumentor = NetworkInstrumentor()
    instrumentor.instrument(meter_provider=meter_provider)
    try:
        monitor = NetworkInstrumentor.monitor
        assert monitor is not None and monitor is instrumentor.monitor
        monitor.packet_latency(5.0)
        (point,) = points(reader.get_metrics_data(), LATENCY)
        assert (point.count, point.sum) == (1, pytest.approx(0.005))
        assert tuple(point.explicit_bounds) == lookup("network.latency.distribution").boundaries
        assert sum(point.bucket_counts) == 1
    finally:
        instrumentor.uninstrument()


def test_performance_tick_duration_reaches_a_plain_in_memory_reader(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """One tick() on the instrumented monitor: the reader gets the tick-duration histogram with count 1."""
    meter_provider, reader = provider
    instrumentor = PerformanceInstrumentor()
    instrumentor.instrument(meter_provider=meter_provider)
    try:
        monitor = PerformanceInstrumentor.monitor
        assert monitor is not None
        with monitor.tick():
            pass
        (point,) = points(reader.get_metrics_data(), TICK)
        assert point.count == 1
    finally:
        instrumentor.uninstrument()


def test_per_player_ping_gauge_reaches_a_plain_reader(provider: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """The produced per-player gauge is merged too: one series per tracked player, in seconds."""
    meter_provider, reader = provider
    instrumentor = NetworkInstrumentor()
    instrumentor.instrument(meter_provider=meter_provider)
    try:
        monitor = NetworkInstrumentor.monitor
        assert monitor is not None
        monitor.player_ping("p-1", 40.0)
        monitor.player_ping("p-2", 80.0)
        found = {
            p.attributes["player_id"]: p.value
            for p in points(reader.get_metrics_data(), "server.network.player_ping.last")
        }
        assert found == {"p-1": pytest.approx(0.040), "p-2": pytest.approx(0.080)}
    finally:
        instrumentor.uninstrument()


def test_monitors_on_one_provider_all_export_their_histograms(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """Network and performance instrumented on the same provider: both monitors' histograms are in one collection,
    under the monitors' scope, once each."""
    meter_provider, reader = provider
    network, performance = NetworkInstrumentor(), PerformanceInstrumentor()
    network.instrument(meter_provider=meter_provider)
    performance.instrument(meter_provider=meter_provider)
    try:
        assert NetworkInstrumentor.monitor is not None and PerformanceInstrumentor.monitor is not None
        NetworkInstrumentor.monitor.packet_latency(5.0)
        PerformanceInstrumentor.monitor.record_tick(0.016)
        data = reader.get_metrics_data()
        assert [p.count for p in points(data, LATENCY)] == [1]
        assert [p.count for p in points(data, TICK)] == [1]
        assert data is not None
        scopes = [sm.scope.name for rm in data.resource_metrics for sm in rm.scope_metrics]
        assert scopes == ["otel_telemetry.instrumentations"]
    finally:
        network.uninstrument()
        performance.uninstrument()


def test_cumulative_and_delta_readers_each_keep_their_own_state() -> None:
    """A cumulative and a delta reader on one provider: totals since start for one, per-collection counts for the
    other, however often either collects."""
    cumulative = InMemoryMetricReader()
    delta = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    meter_provider = MeterProvider(metric_readers=[cumulative, delta])
    instrumentor = NetworkInstrumentor()
    instrumentor.instrument(meter_provider=meter_provider)
    try:
        monitor = NetworkInstrumentor.monitor
        assert monitor is not None
        monitor.packet_latency(5.0)
        assert [p.count for p in points(delta.get_metrics_data(), LATENCY)] == [1]
        monitor.packet_latency(7.0)
        monitor.packet_latency(9.0)
        monitor.refresh(force=True)
        assert [p.count for p in points(delta.get_metrics_data(), LATENCY)] == [2]
        assert [p.count for p in points(delta.get_metrics_data(), LATENCY)] == [0]
        (point,) = points(cumulative.get_metrics_data(), LATENCY)
        assert point.count == 3
    finally:
        instrumentor.uninstrument()
        meter_provider.shutdown()


def test_uninstrument_stops_the_produced_histograms(provider: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """After uninstrument() the reader's collections carry no monitor histogram, while the SDK's own data flows on."""
    meter_provider, reader = provider
    meter_provider.get_meter("other").create_counter("other.counter").add(1)
    instrumentor = NetworkInstrumentor()
    instrumentor.instrument(meter_provider=meter_provider)
    monitor = NetworkInstrumentor.monitor
    assert monitor is not None
    monitor.packet_latency(5.0)
    assert points(reader.get_metrics_data(), LATENCY)
    instrumentor.uninstrument()
    assert NetworkInstrumentor.monitor is None
    monitor.packet_latency(5.0)
    data = reader.get_metrics_data()
    assert points(data, LATENCY) == [] and points(data, "server.network.player_ping.last") == []
    assert [p.value for p in points(data, "other.counter")] == [1]


def test_instrumenting_again_on_one_provider_continues_the_same_monitor(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """instrument, uninstrument, instrument on one provider: the same monitor reports again, gauges and histograms
    (OpenTelemetry keeps the first instruments of a name, so a new monitor's would never report)."""
    meter_provider, reader = provider
    instrumentor = NetworkInstrumentor()
    instrumentor.instrument(meter_provider=meter_provider)
    first = NetworkInstrumentor.monitor
    assert first is not None
    first.packet_latency(5.0)
    first.packet_received(10)
    instrumentor.uninstrument()
    assert reader.get_metrics_data() is None  # nothing reports while uninstrumented
    instrumentor.instrument(meter_provider=meter_provider)
    try:
        assert NetworkInstrumentor.monitor is first
        first.packet_latency(6.0)
        data = reader.get_metrics_data()
        assert [p.count for p in points(data, LATENCY)] == [2]
        received = [p.value for p in points(data, "server.network.packets") if p.attributes["direction"] == "received"]
        assert received == [1]
    finally:
        instrumentor.uninstrument()


def test_a_new_provider_gets_a_new_monitor(provider: tuple[MeterProvider, InMemoryMetricReader]) -> None:
    """Instrumenting on another provider builds a fresh monitor for it."""
    meter_provider, _reader = provider
    instrumentor = NetworkInstrumentor()
    instrumentor.instrument(meter_provider=meter_provider)
    first = NetworkInstrumentor.monitor
    instrumentor.uninstrument()
    other_reader = InMemoryMetricReader()
    other = MeterProvider(metric_readers=[other_reader])
    instrumentor.instrument(meter_provider=other)
    try:
        assert NetworkInstrumentor.monitor is not None and NetworkInstrumentor.monitor is not first
        NetworkInstrumentor.monitor.packet_latency(5.0)
        assert [p.count for p in points(other_reader.get_metrics_data(), LATENCY)] == [1]
    finally:
        instrumentor.uninstrument()
        other.shutdown()


def test_a_non_sdk_provider_gets_the_instruments_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """With the API's no-op provider there is no reader to hook: instrument() warns once and does not fail."""
    instrumentor = NetworkInstrumentor()
    with caplog.at_level(logging.WARNING, logger="instrumentations"):
        instrumentor.instrument(meter_provider=NoOpMeterProvider())
    try:
        assert NetworkInstrumentor.monitor is not None
        NetworkInstrumentor.monitor.packet_latency(5.0)
        assert [r for r in caplog.records if "not an OpenTelemetry SDK MeterProvider" in r.getMessage()]
    finally:
        instrumentor.uninstrument()
