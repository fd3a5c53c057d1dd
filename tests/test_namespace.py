"""otel_telemetry.series: one namespace per handle, label values as strings, and the series budget.

The scrape tests use a real handle, a real HTTP GET on 127.0.0.1 and Prometheus' own linter (``promtool check
metrics``), which rejects a second ``# HELP`` line for a name, duplicate samples and counters without ``_total``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from instrumentations.game import GameMonitor
from instrumentations.network import NetworkMonitor
from instrumentations.performance import PerformanceMonitor
from otel_telemetry import Telemetry
from otel_telemetry._otel import prometheus_translator
from otel_telemetry.catalog import SPEC_FIXED_PROMETHEUS_NAMES, Section
from otel_telemetry.export.selftelemetry import SEED_FIXED_PROMETHEUS_NAMES
from otel_telemetry.recording.facade import MetricsFacade
from otel_telemetry.recording.tracing import HandlerTelemetry
from otel_telemetry.series import (
    LABEL_LIMIT,
    OVERFLOW_VALUE,
    SDK_FAMILIES,
    Kind,
    SeriesRegistry,
    catalog_series,
    label_value,
    prometheus_family,
)

ROOT = Path(__file__).resolve().parent.parent


def _promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    assert Path(found).exists(), "promtool is missing: `make test` installs it (scripts/install-promtool.sh)"
    return found


def _scrape(telemetry: Telemetry) -> str:
    assert telemetry.prometheus_url is not None
    with urllib.request.urlopen(telemetry.prometheus_url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode("utf-8"))


def _promtool_problems(body: str) -> list[str]:
    """What ``promtool check metrics`` says about ``body``, less the spec's own fixed names."""
    result = subprocess.run([_promtool(), "check", "metrics"], input=body.encode(), capture_output=True, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).decode().splitlines() if line.strip()]
    fixed = SPEC_FIXED_PROMETHEUS_NAMES | SEED_FIXED_PROMETHEUS_NAMES  # telemetry_metrics_count: seed 004's name
    return [line for line in lines if line.split()[0] not in fixed]


def _families(body: str) -> dict[str, str]:
    """``# TYPE`` name -> type of a text exposition (asserting each name has one TYPE and one HELP line)."""
    metadata = Counter((line.split()[1], line.split()[2]) for line in body.splitlines() if line.startswith("# "))
    assert [key for key, n in metadata.items() if n > 1] == []
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))


@dataclass
class Player:
    """A game's player object: a non-frozen dataclass, so unhashable."""

    id: int
    name: str


# -- Prometheus names -------------------------------------------------------------------------------------------
NAMES: list[tuple[str, str, Kind]] = [
    ("handler.duration", "s", "histogram"),
    ("handler.requests", "{request}", "counter"),
    ("matches.started", "", "counter"),
    ("telemetry_collection_runs_total", "", "counter"),
    ("websocket.message.size", "By", "histogram"),
    ("queue.depth", "1", "gauge"),
    ("cache.hit_rate", "%", "gauge"),
    ("net.rate", "By/s", "gauge"),
    ("x_seconds", "s", "histogram"),
    ("a-b/c.d", "ms", "gauge"),
]


def test_prometheus_family_is_the_exporters_translation() -> None:
    """For counters, gauges and histograms of assorted names and units, the registry's family name is the one the
    OpenTelemetry Prometheus exporter gives (what /metrics shows)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        meter = provider.get_meter("names")

        def one(_options: CallbackOptions) -> list[Observation]:
            return [Observation(1)]

        for i, (name, unit, kind) in enumerate(NAMES):
            scoped = provider.get_meter(f"names-{i}")  # one scope each: names may repeat across cases
            if kind == "counter":
                scoped.create_observable_counter(name, [one], unit=unit, description=name)
            elif kind == "gauge":
                scoped.create_observable_gauge(name, [one], unit=unit, description=name)
            else:
                scoped.create_histogram(name, unit=unit, description=name).record(1.0)
        del meter
        data = reader.get_metrics_data()
        assert data is not None
        families = prometheus_translator(target_info=True).families(data)
        by_description = {family.documentation: family for family in families}
        for name, unit, kind in NAMES:
            family = by_description[name]
            assert (family.name, family.type) == (prometheus_family(name, unit, kind), kind), name
        target = next(f for f in families if f.type == "info")
        assert target.name == prometheus_family("target_info", "", "info")
    finally:
        provider.shutdown()


def test_the_registry_refuses_colliding_families_once_each() -> None:
    """A family meeting another's sample names is refused and counted; the same claim by its owner is not."""
    registry = SeriesRegistry()
    assert registry.claim("handler.duration", "s", "histogram", "handlers") == "handler_duration_seconds"
    assert registry.claim("handler.duration", "s", "histogram", "metrics") is None
    assert registry.claim("telemetry_collection_runs_total", "", "counter", "metrics") is None
    assert registry.claim("telemetry.collection.runs", "", "gauge", "metrics") is None  # telemetry_collection_runs
    assert registry.claim("server_tick_duration_seconds_count", "", "gauge", "metrics") is None  # a histogram's
    assert registry.claim("matches.started", "", "counter", "metrics") == "matches_started"
    assert registry.claim("matches_started_total", "", "gauge", "metrics") is None
    assert registry.claim("matches.started", "", "counter", "metrics") == "matches_started"  # idempotent
    assert registry.refused_names == 5
    assert registry.occupant("matches_started_total") is not None
    assert registry.families()["handler_duration_seconds"].owner == "handlers"


def test_every_family_on_metrics_is_registered(make_telemetry: Callable[..., Telemetry]) -> None:
    """Each family of a busy scrape (catalog, handlers, self-telemetry, alerts, target_info, facade) is known to
    the registry, so a new family of the SDK cannot slip past the namespace: add it to SDK_FAMILIES."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)

    @telemetry.traced
    def login() -> None:
        pass

    login()
    with telemetry.timer("pathfinding"):
        pass
    telemetry.metrics.increment("matches.started")
    telemetry.collect()
    registry = telemetry.metrics.series
    unknown = [name for name in _families(_scrape(telemetry)) if registry.occupant(name) is None]
    assert unknown == []
    assert {f"{owner}:{name}" for name, _unit, _kind, owner in SDK_FAMILIES} >= {
        "handlers:handler.duration",
        "self-telemetry:telemetry.dropped",
    }


# -- the scrape of issue 12 ------------------------------------------------------------------------------------
def test_facade_handler_duration_beside_a_traced_handler_passes_promtool(
    make_telemetry: Callable[..., Telemetry],
) -> None:
    """A facade timing named handler.duration next to a @telemetry.traced handler, player_ping(1) and
    player_ping("1"), maps 7 and "7": the scrape has one handler_duration_seconds family and passes promtool."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)

    @telemetry.traced
    def handle_login() -> str:
        return "ok"

    for _ in range(3):
        handle_login()
    telemetry.metrics.timing("handler.duration", 0.25)  # seed 001's name: refused for export, kept in process
    telemetry.metrics.increment("telemetry_collection_runs_total")  # meets telemetry.collection.runs
    telemetry.metrics.gauge("telemetry.dropped", 1.0)  # meets telemetry_dropped_total's family
    telemetry.metrics.increment("matches.started", 2)
    telemetry.metrics.decrement("matches.started")
    telemetry.metrics.distribution("websocket.message.size", 209, unit="By")
    telemetry.network.player_ping(1, 40.0)
    telemetry.network.player_ping("1", 50.0)
    telemetry.game.entity_created("NPC", 7)
    telemetry.game.entity_created("NPC", "7")
    telemetry.game.player_joined(Player(1, "ann"), 7)
    telemetry.collect()
    body = _scrape(telemetry)
    assert _promtool_problems(body) == []
    families = _families(body)
    assert families["handler_duration_seconds"] == "histogram"
    assert len(re.findall(r'^handler_requests_total\{handler="[^"]*handle_login"\} 3\.0$', body, re.M)) == 1
    assert families["matches_started_total"] == "counter"
    assert re.search(r"^matches_started_total 2\.0$", body, re.M)  # the decrement stays in process
    assert families["websocket_message_size_bytes"] == "histogram"
    assert "websocket_message_size_seconds" not in body
    assert len(re.findall(r'^server_game_map_entities\{map="7"\} 2(\.0)?$', body, re.M)) == 1
    assert len(re.findall(r'^server_game_map_players\{map="7"\} 1(\.0)?$', body, re.M)) == 1
    # In process: one player "1" with the last ping; the refused timing still answers get_timing().
    assert telemetry.network.tracked_pings() == {"1": 50.0}
    stats = telemetry.metrics.get_timing("handler.duration")
    assert stats is not None and stats.count == 1
    assert telemetry.metrics.series.refused_names == 3  # handler.duration, telemetry_collection_runs_total, .dropped
    assert telemetry.metrics.get_counter("matches.started") == 1


def test_per_player_series_are_one_per_label() -> None:
    """player_ping(1) and player_ping("1") feed one per-player series, with the label "1"."""
    network = NetworkMonitor()
    network.player_ping(1, 40.0)
    network.player_ping("1", 50.0)
    network.player_ping(Player(2, "bo"), 60.0)
    network.attach(MeterProvider().get_meter("t"))
    ((_spec, points),) = network.produced_gauges()
    assert sorted((p[1]["player_id"], p[0]) for p in points) == [("1", 0.05), ("Player(id=2, name='bo')", 0.06)]


def test_facade_counters_are_counters_on_metrics(make_telemetry: Callable[..., Telemetry]) -> None:
    """Facade counters carry TYPE counter and _total, gauges TYPE gauge, timings _seconds histograms."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True)
    telemetry.metrics.increment("events.processed", 5, tags={"event_type": "a"})
    telemetry.metrics.gauge("queue.depth", 3.0)
    telemetry.metrics.timing("event.processing", 0.002)
    telemetry.collect()
    body = _scrape(telemetry)
    families = _families(body)
    assert families["events_processed_total"] == "counter"
    assert re.search(r'^events_processed_total\{event_type="a"\} 5\.0$', body, re.M)
    assert families["queue_depth"] == "gauge"
    assert families["event_processing_seconds"] == "histogram"
    assert _promtool_problems(body) == []


# -- label values -------------------------------------------------------------------------------------------------
def test_label_values_are_strings_with_a_length_limit() -> None:
    """Ints and strings meet; objects become str(); long values keep a prefix and a digest; huge ints, None and
    objects whose str() fails are refused."""

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert label_value(7) == label_value("7") == "7"
    assert label_value(Player(1, "ann")) == "Player(id=1, name='ann')"
    long_a, long_b = "a" * 500, "a" * 499 + "b"
    assert len(label_value(long_a) or "") == len(label_value(long_b) or "") == LABEL_LIMIT
    assert label_value(long_a) != label_value(long_b)
    assert label_value("x" * LABEL_LIMIT) == "x" * LABEL_LIMIT
    assert label_value(10**127) == str(10**127)  # 128 digits
    assert label_value(10**128) is None
    assert label_value(-(10**126)) == str(-(10**126))
    assert label_value(-(10**127)) is None  # 129 characters with the sign
    assert label_value(10**5000) is None  # beyond Python's int->str limit: checked first, never raised
    assert label_value(None) is None
    assert label_value(Broken()) is None


def test_facade_tag_values_are_normalised_before_keying() -> None:
    """{"player": 1} and {"player": "1"} are one series; a tag value of 200 digits is refused."""
    facade = MetricsFacade(None)
    facade.increment("kills", tags={"player": 1})  # type: ignore[dict-item]
    facade.increment("kills", tags={"player": "1"})
    facade.increment("kills", tags={"player": 10**200})  # type: ignore[dict-item]
    assert facade.get_counter("kills", tags={"player": "1"}) == 2
    assert facade.get_counter("kills", tags={"player": 1}) == 2  # type: ignore[dict-item]
    assert list(facade.get_all_metrics()["counters"]) == ["kills[player=1]"]
    assert facade.rejected == {"increment": 1}


# -- the series budget ---------------------------------------------------------------------------------------------
def test_catalog_reservations_count_buckets() -> None:
    """Each monitor reserves its section's fixed series once: histogram buckets, _sum and _count included."""
    registry = SeriesRegistry()
    NetworkMonitor(series=registry)
    PerformanceMonitor(series=registry)
    GameMonitor(series=registry)
    expected = sum(catalog_series(s) for s in (Section.NETWORK, Section.PERFORMANCE, Section.GAME))
    assert registry.used == expected
    # The spec's 9 phases are among them: 9 histograms of 20 boundaries, 23 series each.
    assert catalog_series(Section.PERFORMANCE) >= 9 * 23
    assert registry.reserve_catalog(Section.NETWORK) == 0  # once per section


def test_the_reserved_series_are_the_samples_on_metrics(make_telemetry: Callable[..., Telemetry]) -> None:
    """With every fixed series of the network, performance and game sections fed, /metrics shows exactly as many
    samples of their families (labels map, entity_type, system and player_id aside) as the registry reserves."""
    from instrumentations.performance import SPEC_PHASES
    from otel_telemetry.catalog import CATALOG

    telemetry = make_telemetry(enable_prometheus_endpoint=True, enable_hardware_metrics=False)
    network, performance, game = telemetry.network, telemetry.performance, telemetry.game
    for _ in range(3):
        with performance.tick():
            for phase in SPEC_PHASES:
                with performance.phase(phase):
                    pass
        network.packet_received(10)
        network.packet_sent(10)
        network.packet_latency(5.0)
        network.player_ping("a", 10.0)
        network.ack_latency(3.0)
        network.packet_fragmented(2)
        network.connection_opened()
        network.connection_closed(3.0)
        network.packet_lost()
        network.packet_retransmitted()
        game.player_joined("x")
        game.player_left("x")
        game.aoi_update()
        game.spatial_cell(3)
        game.collision_test(True)
        game.collision_test(False)
        game.db_query(0.01)
        game.cache_hit()
        game.cache_miss()
        game.set_db_size(100)
        game.components_added()
        game.ecs_query(0.001)
        game.allocation()
        game.entity_created()
        for monitor in telemetry.monitors():
            monitor.refresh(force=True)
    telemetry.collect()
    sections = (Section.NETWORK, Section.PERFORMANCE, Section.GAME)
    families = {
        spec.prometheus_name.removesuffix("_total")
        if spec.instrument.prometheus_type == "counter"
        else spec.prometheus_name
        for spec in CATALOG
        if spec.section in sections
    }
    exposed = 0
    for line in _scrape(telemetry).splitlines():
        if not line or line.startswith("#") or re.search(r'(map|entity_type|system|player_id)="', line):
            continue
        sample = line.split("{")[0].split(" ")[0]
        if any(sample.removesuffix(suffix) in families for suffix in ("_bucket", "_sum", "_count", "_total", "")):
            exposed += 1
    assert exposed == sum(catalog_series(s) for s in sections)


def test_the_budget_refuses_new_series_everywhere_and_counts_each_call() -> None:
    """With the catalog's three sections reserved and 100 series left: maps, entity types, systems, phases,
    facade names and handlers are admitted until the budget is spent; every refused call is counted once and its
    values go to the _overflow series, so totals stay exact."""
    fixed = sum(catalog_series(s) for s in (Section.NETWORK, Section.PERFORMANCE, Section.GAME))
    registry = SeriesRegistry(budget=fixed + 100)
    NetworkMonitor(series=registry)
    performance = PerformanceMonitor(series=registry)
    game = GameMonitor(series=registry, attribute_limit=1000)
    facade = MetricsFacade(None, series=registry)
    for i in range(30):  # the type NPC (1 series) and 30 maps (2 series each: players and entities per map)
        game.entity_created("NPC", f"map-{i}")
    assert registry.used == fixed + 61 and registry.refused_series == 0
    for i in range(50):  # 39 fit, 11 refused (reported under _overflow)
        game.entity_created(f"type-{i}", "map-0")
    assert registry.used == fixed + 100 + 1  # + the _overflow series of entity_type
    assert registry.refused_series == 11
    per_type = game.snapshot()["entities_per_type"]
    assert per_type[OVERFLOW_VALUE] == 11 and sum(per_type.values()) == 80  # type: ignore[index, attr-defined]
    game.record_system("movement", 0.001)  # one histogram: refused, recorded under _overflow
    with performance.phase("physics"):
        pass
    facade.increment("new.counter")  # a new facade series: refused, not recorded
    facade.timing("new.timing", 0.1)
    assert registry.refused_series == 11 + 4
    assert registry.refusals() == {"game.entity_type": 11, "game.system": 1, "performance.phase": 1, "metrics": 2}
    assert facade.get_counter("new.counter") == 0
    game.refresh(force=True)
    assert game.histogram_state("server.game.ecs.system.duration", system=OVERFLOW_VALUE) is not None


def test_handlers_beyond_the_budget_record_under_overflow() -> None:
    """Handlers admitted while the budget allows; a refused handler's calls are counted and recorded under
    handler="_overflow", so handler_requests_total still adds up."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    from opentelemetry.sdk.trace import TracerProvider

    registry = SeriesRegistry(budget=28 * 2)  # room for two handlers' successful series
    handlers = HandlerTelemetry(TracerProvider().get_tracer("t"), provider.get_meter("t"), series=registry)
    functions = []
    for i in range(4):

        def work() -> None:
            pass

        functions.append(handlers.traced(f"handler-{i}")(work))
    for fn in functions:
        for _ in range(5):
            fn()
    data = reader.get_metrics_data()
    assert data is not None
    requests = {
        point.attributes["handler"]: point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "handler.requests"
        for point in metric.data.data_points
    }
    assert requests == {"handler-0": 5, "handler-1": 5, OVERFLOW_VALUE: 10}
    assert registry.refused_series == 10
    provider.shutdown()


def test_budget_refusals_are_exact_under_threads() -> None:
    """8 threads x 500 calls with new map names past a spent budget: exactly 4,000 refusals counted."""
    registry = SeriesRegistry(budget=1)
    game = GameMonitor(series=registry, attribute_limit=100_000)
    threads_n, calls = 8, 500

    def work(t: int) -> None:
        for j in range(calls):
            game.map_loaded(f"t{t}-m{j}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.refused_series == threads_n * calls
    assert game.active_maps == threads_n * calls  # each refused map still counts as loaded (under _overflow)


def test_handle_budget_refusals_reach_telemetry_dropped(make_telemetry: Callable[..., Telemetry]) -> None:
    """Wired through the handle (TelemetryConfig.series_budget): refusals show as
    telemetry_dropped_total{reason="cardinality"}."""
    from otel_telemetry import TelemetryConfig

    if "series_budget" not in TelemetryConfig.__init__.__code__.co_varnames:
        pytest.skip("TelemetryConfig.series_budget does not exist yet")
    telemetry = make_telemetry(enable_prometheus_endpoint=True, series_budget=1000)
    if getattr(telemetry, "series", None) is not telemetry.metrics.series:
        pytest.skip("telemetry.py does not share one SeriesRegistry (telemetry.series) between its parts yet")
    assert telemetry.game.series is telemetry.series and telemetry.network.series is telemetry.series
    for i in range(2000):
        telemetry.metrics.increment(f"name.{i}")
    telemetry.collect()
    body = _scrape(telemetry)
    match = re.search(r'^telemetry_dropped_total\{[^}]*reason="cardinality"[^}]*\} ([0-9.e+]+)$', body, re.M)
    assert match is not None and float(match.group(1)) == telemetry.metrics.series.refused_series > 0
    assert _promtool_problems(body) == []
