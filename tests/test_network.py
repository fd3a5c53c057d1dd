"""NetworkMonitor: exact totals, true rates, reliability percentages, ping tracking, bad input."""

from __future__ import annotations

import logging
import threading

import pytest
from conftest import ManualClock

from instrumentations.network import NetworkMonitor


def test_totals_are_exact_after_concurrent_recording() -> None:
    """Four threads sending and receiving at once: packet and byte totals are exact."""
    monitor = NetworkMonitor()
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        for _ in range(25_000):
            monitor.packet_received(10)
            monitor.packet_sent(3)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    totals = monitor.totals()
    assert (totals["packets_in"], totals["bytes_in"]) == (100_000, 1_000_000)
    assert (totals["packets_out"], totals["bytes_out"]) == (100_000, 300_000)


def test_rates_are_per_second_over_the_real_interval() -> None:
    """1,500 packets over 2.5 s of clock time is 600 packets/s, whatever the nominal interval."""
    clock = ManualClock()
    monitor = NetworkMonitor(clock=clock, refresh_interval=0.0)
    for _ in range(1500):
        monitor.packet_received(100)
    clock.now += 2.5
    assert monitor.rate("packets_in") == pytest.approx(600.0)
    assert monitor.rate("bytes_in") == pytest.approx(60_000.0)
    clock.now += 1.0
    assert monitor.rate("packets_in") == 0.0


def test_first_rate_is_a_true_rate() -> None:
    """The first collection already gives packets per second since the monitor started (no 0, no spike)."""
    clock = ManualClock()
    monitor = NetworkMonitor(clock=clock, refresh_interval=0.0)
    for _ in range(50):
        monitor.packet_sent(1)
    clock.now += 0.5
    assert monitor.rate("packets_out") == pytest.approx(100.0)


def test_loss_and_retransmission_are_percentages_of_packets_sent() -> None:
    """2 lost and 5 retransmitted of 200 sent in the interval: 1% loss, 2.5% retransmission."""
    clock = ManualClock()
    monitor = NetworkMonitor(clock=clock, refresh_interval=0.0)
    for _ in range(200):
        monitor.packet_sent(50)
    monitor.packet_lost(2)
    monitor.packet_retransmitted(5)
    clock.now += 1
    assert monitor.loss_percent == pytest.approx(1.0)
    assert monitor.retransmission_percent == pytest.approx(2.5)
    clock.now += 1
    assert monitor.loss_percent == 0.0  # nothing sent, nothing lost in the next interval


def test_ping_statistics_and_per_player_tracking() -> None:
    """Ping min/avg/max over the window, the last ping per player, and forgetting on disconnect."""
    clock = ManualClock()
    monitor = NetworkMonitor(clock=clock, refresh_interval=0.0)
    for player, ms in (("a", 20.0), ("b", 40.0), ("c", 90.0), ("a", 30.0)):
        monitor.player_ping(player, ms)
    assert monitor.tracked_pings() == {"a": 30.0, "b": 40.0, "c": 90.0}
    clock.now += 1
    state = monitor.histogram_state("server.network.player_ping")
    assert state is not None
    assert state.window.mean() == pytest.approx(45.0)
    assert state.window.min() == pytest.approx(20.0, rel=0.01)
    assert state.window.max() == pytest.approx(90.0, rel=0.01)
    monitor.player_disconnected("b")
    assert set(monitor.tracked_pings()) == {"a", "c"}


def test_per_player_tracking_is_capped() -> None:
    """Beyond max_tracked_players new ids are not tracked (counted), but their pings still count."""
    monitor = NetworkMonitor(max_tracked_players=3)
    for i in range(10):
        monitor.player_ping(f"p{i}", 50.0)
    assert len(monitor.tracked_pings()) == 3
    assert monitor.players_overflowed == 7
    state = monitor.histogram_state("server.network.player_ping")
    assert state is not None and state.cumulative.count == 10


def test_connections_active_total_and_duration() -> None:
    """Opened minus closed is the active count; durations land in the connection histogram."""
    monitor = NetworkMonitor(refresh_interval=0.0)
    for _ in range(5):
        monitor.connection_opened()
    monitor.connection_closed(12.0)
    monitor.connection_closed()
    assert monitor.active_connections == 3
    state = monitor.histogram_state("server.network.connection.duration")
    assert state is not None and state.cumulative.count == 1


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("packet_received", (-1,)),
        ("packet_received", (1.5,)),
        ("packet_received", ("12",)),
        ("packet_received", (True,)),
        ("packet_latency", (float("nan"),)),
        ("packet_latency", (float("inf"),)),
        ("packet_latency", (-3.0,)),
        ("player_ping", ("p", None)),
        ("player_ping", (10**200, 10.0)),  # an id of 201 digits cannot be a label
        ("player_ping", ("p", 10**400)),  # an int beyond any float
        ("packet_received", (2**63,)),  # beyond what an OTLP integer point carries
        ("packet_sent", (2**64,)),
        ("packet_lost", (2**63,)),
        ("player_disconnected", (10**5000,)),
        ("connection_closed", (-1.0,)),
        ("packet_lost", (-2,)),
        ("ack_latency", ("fast",)),
        ("packet_fragmented", (0,)),
    ],
)
def test_bad_values_are_dropped_and_counted_never_raised(call: str, args: tuple[object, ...]) -> None:
    """Invalid input returns quietly, is counted per call, and records nothing."""
    monitor = NetworkMonitor()
    getattr(monitor, call)(*args)
    assert monitor.rejected == {call: 1}
    assert sum(monitor.totals().values()) == 0


def test_bad_values_warn_once_per_call(caplog: pytest.LogCaptureFixture) -> None:
    """A flood of bad values logs one warning, not one per value."""
    monitor = NetworkMonitor()
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            monitor.packet_latency(float("nan"))
    assert len([r for r in caplog.records if "packet_latency" in r.getMessage()]) == 1
    assert monitor.rejected["packet_latency"] == 100
