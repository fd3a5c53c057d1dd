"""The four monitors as OpenTelemetry instrumentors: entry points, instrument and a real uninstrument."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentations.game import GameInstrumentor
from instrumentations.hardware import HardwareInstrumentor
from instrumentations.network import NetworkInstrumentor
from instrumentations.performance import PerformanceInstrumentor
from otel_telemetry.export.readers import points


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
