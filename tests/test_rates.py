"""Counters behind every rate, and tick stability: what Prometheus can rate() over any range, exact, and the
tick-rate variance and frame-interval jitter of real loops."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import pytest
from conftest import http_get
from prometheus_client.parser import text_string_to_metric_families

from instrumentations.performance import PerformanceMonitor
from otel_telemetry import Telemetry
from otel_telemetry.catalog import CATALOG, Instrument, MetricSpec, Section, lookup
from otel_telemetry.tools.demo import DemoOptions, GameSimulation

#: Per-second gauges with no counter of ours behind them, and why.
_NOT_A_RATE_OF_OURS = {
    # A configured value, not something counted.
    "performance.tick_rate.target",
    # The tick rate minus the target: rate(server_ticks_total[5m]) - server_target_tick_rate_fps.
    "performance.tick_rate.deviation",
}


def _per_second_gauges() -> list[MetricSpec]:
    """Gauges that hold a rate or a percentage over the last collection interval (one window per scrape).

    The host's disk and NIC rates (hardware section) are left out: psutil reads the kernel's cumulative counters,
    which Prometheus gets as counters from node_exporter (``node_disk_read_bytes_total``, ...).
    """
    return [
        spec
        for spec in CATALOG
        if spec.instrument is Instrument.OBSERVABLE_GAUGE
        and spec.section is not Section.HARDWARE
        and spec.id not in _NOT_A_RATE_OF_OURS
        and (spec.unit.endswith("/s") or "over the last collection interval" in spec.description)
    ]


def _times(n: int, call: Callable[[], object]) -> None:
    for _ in range(n):
        call()


#: How to record exactly ``n`` more of each counter's series (counter id, its where) on a handle.
_RECORD: Mapping[tuple[str, tuple[tuple[str, str], ...]], Callable[[Telemetry, int], None]] = {
    ("network.packets.total", (("direction", "received"),)): lambda t, n: _times(
        n, lambda: t.network.packet_received(0)
    ),
    ("network.packets.total", (("direction", "sent"),)): lambda t, n: _times(n, lambda: t.network.packet_sent(0)),
    # One packet of n bytes (counted in the packets above too: see the test).
    ("network.packets.bytes_total", (("direction", "received"),)): lambda t, n: t.network.packet_received(n),
    ("network.packets.bytes_total", (("direction", "sent"),)): lambda t, n: t.network.packet_sent(n),
    ("network.connections.total", ()): lambda t, n: _times(n, t.network.connection_opened),
    ("network.connections.closed_total", ()): lambda t, n: _times(n, t.network.connection_closed),
    ("network.reliability.lost_total", ()): lambda t, n: t.network.packet_lost(n),
    ("network.reliability.retransmitted_total", ()): lambda t, n: t.network.packet_retransmitted(n),
    ("performance.tick_rate.ticks_total", ()): lambda t, n: _times(n, lambda: t.performance.record_tick(0.001)),
    ("game.entities.created_total", ()): lambda t, n: t.game.entity_created("NPC", n=n),
    ("game.entities.removed_total", ()): lambda t, n: t.game.entity_removed("NPC", n=n),
    ("game.world.aoi_updates_total", ()): lambda t, n: t.game.aoi_update(n),
    ("game.database.queries_total", ()): lambda t, n: _times(n, lambda: t.game.db_query(0.001)),
    ("game.database.cache_lookups_total", (("outcome", "hit"),)): lambda t, n: t.game.cache_hit(n),
    ("game.database.cache_lookups_total", (("outcome", "miss"),)): lambda t, n: t.game.cache_miss(n),
}


def _links() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (spec.rate_counter, tuple(sorted(spec.rate_where.items())))
        for spec in _per_second_gauges()
        if spec.rate_counter is not None
    }


def _scrape_samples(telemetry: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a fresh frame on /metrics, by (name, labels without the resource's)."""
    for monitor in telemetry.monitors():
        monitor.refresh(force=True)
    assert telemetry._collector is not None
    telemetry._collector.collect()
    assert telemetry.prometheus_url is not None
    status, _, body = http_get(telemetry.prometheus_url)
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k in ("direction", "outcome")))
            samples[(sample.name, labels)] = sample.value
    return samples


def test_every_per_second_gauge_has_a_counter_behind_it() -> None:
    """Each per-second gauge (a rate or a percentage over the last interval) names a ``_total`` counter, with the
    attributes that pick its series; the spec's gauges keep their names."""
    gauges = _per_second_gauges()
    assert len(gauges) >= 14
    for spec in gauges:
        assert spec.rate_counter is not None, spec.id
        counter = lookup(spec.rate_counter)
        assert counter.instrument is Instrument.OBSERVABLE_COUNTER, spec.id
        assert counter.prometheus_name.endswith("_total"), spec.id
        assert set(spec.rate_where) <= set(counter.attributes), spec.id
        if counter.attributes:
            assert set(spec.rate_where) == set(counter.attributes), spec.id  # one series, not a sum
    assert lookup("network.packets.rate_in").prometheus_name == "server_packets_per_sec_incoming"
    assert lookup("performance.tick_rate.current").prometheus_name == "server_tick_rate_fps"
    assert _links() == set(_RECORD)


def test_rate_counters_are_on_metrics_and_count_exactly(make_telemetry: Callable[..., Telemetry]) -> None:
    """After the demo's simulated game ran, every counter behind a rate is on /metrics; recording n more of each
    raises its sample by exactly n."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, collection_interval=3600)
    simulation = GameSimulation(telemetry, DemoOptions(players=40, seed=7))
    for _ in range(90):
        simulation.step()
    before = _scrape_samples(telemetry)
    # counter id and where -> the sample on /metrics
    names = {key: (lookup(key[0]).prometheus_name, key[1]) for key in _RECORD}
    missing = [sample for sample in names.values() if sample not in before]
    assert missing == []
    # The demo drives every one of them.
    assert all(before[sample] > 0 for sample in names.values()), {k: before[s] for k, s in names.items()}
    recorded = {}
    for index, (key, record) in enumerate(_RECORD.items()):
        recorded[key] = n = 7 + index
        record(telemetry, n)
    for direction in ("received", "sent"):  # the packet carrying the bytes
        recorded[("network.packets.total", (("direction", direction),))] += 1
    after = _scrape_samples(telemetry)
    increases = {key: after[names[key]] - before[names[key]] for key in _RECORD}
    assert increases == recorded


def _loop(monitor: PerformanceMonitor, ticks: int, stall_at: int | None = None) -> None:
    """A 60 Hz sleep-based loop with absolute deadlines (it catches up after a late frame), optionally stalling
    200 ms in one tick."""
    period = 1.0 / 60.0
    deadline = time.perf_counter()
    for index in range(ticks):
        with monitor.tick():
            if index == stall_at:
                time.sleep(0.200)
            else:
                time.sleep(0.001)
        deadline += period
        pause = deadline - time.perf_counter()
        if pause > 0:
            time.sleep(pause)


def test_steady_60_hz_loop_has_small_variance_and_jitter() -> None:
    """A real 60 Hz loop for 2.5 s: the per-second tick rates vary by well under 5 FPS² and the frame interval's
    standard deviation stays within a few milliseconds."""
    monitor = PerformanceMonitor(refresh_interval=0.0)
    _loop(monitor, ticks=150)
    counts = monitor.per_second_tick_counts()
    assert len(counts) == 2 and all(55 <= c <= 65 for c in counts), counts
    variance = monitor.tick_rate_variance()
    assert variance is not None and variance < 5.0, counts
    jitter = monitor.tick_interval_jitter()
    assert jitter is not None and jitter < 0.004


def test_a_200_ms_stall_shows_in_jitter() -> None:
    """One 200 ms stall in a 60 Hz loop: the frame-interval jitter rises far above a steady loop's."""
    monitor = PerformanceMonitor(refresh_interval=0.0)
    _loop(monitor, ticks=90, stall_at=30)
    jitter = monitor.tick_interval_jitter()
    assert jitter is not None and jitter > 0.010
    frame = monitor.histogram_state("server.frame.time")
    longest = frame.window.max() if frame is not None else None
    assert longest is not None and longest >= 0.200


@pytest.mark.parametrize("path", ["performance.tick_rate_variance", "performance.tick_interval_jitter_ms"])
def test_stability_reaches_server_metrics(make_telemetry: Callable[..., Telemetry], path: str) -> None:
    """Both stability figures land in ServerMetrics (jitter in milliseconds) once ticks have run."""
    telemetry = make_telemetry(collection_interval=3600)
    monitor = telemetry.performance
    _loop(monitor, ticks=130)
    for each in telemetry.monitors():
        each.refresh(force=True)
    assert telemetry._collector is not None
    frame = telemetry._collector.collect()
    assert frame is not None
    section, name = path.split(".")
    value = getattr(getattr(frame.server_metrics, section), name)
    assert value is not None and value >= 0
    if name == "tick_interval_jitter_ms":
        assert value < 1000 * 0.004 * 2
