"""Hostile and buggy input on the hot path (issue 13, items 6-10): nothing raises into the caller, every dropped
value is counted exactly (8 threads at once), and the next collection and scrape are whole.

Each test ends where an operator would look: ``telemetry.collect()`` returns data, a real HTTP GET of /metrics on
127.0.0.1 has the expected families, and ``promtool check metrics`` finds nothing but the spec's own three names.
"""

from __future__ import annotations

import gc
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from instrumentations.game import GameMonitor
from instrumentations.network import NetworkMonitor
from instrumentations.performance import PerformanceMonitor
from otel_telemetry import Telemetry
from otel_telemetry.catalog import SPEC_FIXED_PROMETHEUS_NAMES
from otel_telemetry.export.selftelemetry import SEED_FIXED_PROMETHEUS_NAMES
from otel_telemetry.recording.facade import MetricsFacade
from otel_telemetry.series import OVERFLOW_VALUE, SeriesRegistry
from otel_telemetry.snapshot.otlp import decode_otlp_metrics

ROOT = Path(__file__).resolve().parents[2]
THREADS = 8
CALLS = 400
HUGE = 10**5000  # beyond Python's 4,300-digit int->str limit
INT64_MAX = 2**63 - 1


@dataclass
class Player:
    """A game's player object: a non-frozen dataclass, so unhashable."""

    id: int
    name: str


class GameMap:
    """A game's map object: unhashable, printed by its name."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name


def _in_threads(work: Callable[[int], None], threads: int = THREADS) -> None:
    """Run ``work(index)`` on ``threads`` threads started together; re-raise the first failure."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def run(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    assert not errors, errors[0]


def _promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    assert Path(found).exists(), "promtool is missing: `make test` installs it (scripts/install-promtool.sh)"
    return found


def _scrape_is_whole(telemetry: Telemetry, *families: str) -> str:
    """Collect, GET /metrics, and check it: 200, the catalog's core families and ``families`` present, promtool
    clean but for the spec's fixed names. Returns the body."""
    data = telemetry.collect()
    assert data is not None and data.resource_metrics, "the collection returned no data"
    assert telemetry.prometheus_url is not None
    with urllib.request.urlopen(telemetry.prometheus_url, timeout=10) as response:
        assert response.status == 200
        body = str(response.read().decode("utf-8"))
    for family in ("server_packets_per_sec_incoming", "server_network_packets_total", *families):
        assert re.search(rf"^# TYPE {family} ", body, re.M), f"{family} missing from /metrics"
    result = subprocess.run([_promtool(), "check", "metrics"], input=body.encode(), capture_output=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).decode().splitlines() if line.strip()]
    assert [p for p in problems if p.split()[0] not in SPEC_FIXED_PROMETHEUS_NAMES | SEED_FIXED_PROMETHEUS_NAMES] == []
    return body


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def telemetry(make_telemetry: Callable[..., Telemetry]) -> Telemetry:
    """A handle serving /metrics on 127.0.0.1 (hardware off: these tests are about game-code input)."""
    return make_telemetry(enable_prometheus_endpoint=True, enable_hardware_metrics=False, max_tracked_players=100)


# -- item 6: unhashable ids, huge ints ----------------------------------------------------------------------------
def test_unhashable_ids_are_normalised_never_raised(telemetry: Telemetry) -> None:
    """A non-frozen dataclass player and a map object go through every id-taking call as str(obj), from 8
    threads: one player, one map, one phase; nothing raised, nothing rejected."""
    game, network, performance = telemetry.game, telemetry.network, telemetry.performance

    def work(index: int) -> None:
        for _ in range(CALLS):
            player, arena = Player(1, "ann"), GameMap("arena")
            game.map_loaded(arena)
            game.player_joined(player, arena)
            game.player_moved(player, arena)
            network.player_ping(player, 42.0)
            with performance.phase(player):
                pass
            performance.record_phase(arena, 0.001)
            game.entity_created(GameMap("NPC"), arena)
            game.record_system(player, 0.001)
            with game.system(arena):
                pass

    _in_threads(work)
    assert game.active_players == 1 and game.snapshot()["players_per_map"] == {"arena": 1}
    assert game.active_maps == 1
    assert network.tracked_pings() == {"Player(id=1, name='ann')": 42.0}
    assert game.snapshot()["entities_per_type"] == {"NPC": THREADS * CALLS}
    for monitor in (game, network, performance):
        assert monitor.rejected == {}
    game.player_left(Player(1, "ann"))
    network.player_disconnected(Player(1, "ann"))
    game.map_unloaded(GameMap("arena"))
    assert (game.active_players, game.active_maps, network.tracked_pings()) == (0, 0, {})
    body = _scrape_is_whole(telemetry, "server_tick_phase_duration_seconds")
    assert re.search(r'^server_tick_phase_duration_seconds_count\{phase="arena"\} 3200\.0$', body, re.M)


DURATION_CALLS: list[tuple[str, str, Callable[[Telemetry, Any], None]]] = [
    ("network", "packet_latency", lambda t, v: t.network.packet_latency(v)),
    ("network", "player_ping", lambda t, v: t.network.player_ping("p", v)),
    ("network", "ack_latency", lambda t, v: t.network.ack_latency(v)),
    ("network", "connection_closed", lambda t, v: t.network.connection_closed(v)),
    ("performance", "record_tick", lambda t, v: t.performance.record_tick(v)),
    ("performance", "record_phase", lambda t, v: t.performance.record_phase("physics", v)),
    ("game", "db_query", lambda t, v: t.game.db_query(v)),
    ("game", "record_system", lambda t, v: t.game.record_system("movement", v)),
    ("game", "ecs_query", lambda t, v: t.game.ecs_query(v)),
    ("metrics", "timing", lambda t, v: t.metrics.timing("op", v)),
]


def test_huge_int_durations_are_rejected_and_counted_exactly(telemetry: Telemetry) -> None:
    """10**400 (and 10**5000) in the ten duration and latency calls, 8 threads x 400 calls each: no
    OverflowError, exactly 3,200 rejections per call, nothing recorded, and the scrape is whole."""

    def work(index: int) -> None:
        for i in range(CALLS):
            value = 10**400 if i % 2 else HUGE
            for _source, _call, record in DURATION_CALLS:
                record(telemetry, value)

    _in_threads(work)
    for source, call, _record in DURATION_CALLS:
        counts = telemetry.metrics.rejected if source == "metrics" else getattr(telemetry, source).rejected
        assert counts.get(call) == THREADS * CALLS, (source, call, dict(counts))
    assert telemetry.performance.ticks == 0
    assert telemetry.metrics.get_timing("op") is None
    _scrape_is_whole(telemetry)


def test_int_names_beyond_the_conversion_limit_are_refused(telemetry: Telemetry) -> None:
    """Ids and names of 5,001 digits are checked before any str(): each call is refused and counted once."""
    game, network, performance = telemetry.game, telemetry.network, telemetry.performance
    with performance.phase(HUGE):
        pass
    performance.record_phase(HUGE, 0.001)
    game.player_joined(HUGE)
    game.player_joined("p", HUGE)
    game.player_left(HUGE)
    game.player_moved("p", HUGE)
    game.entity_created(HUGE)
    game.entity_removed("NPC", HUGE)
    game.map_loaded(HUGE)
    game.map_unloaded(HUGE)  # not loaded: ignored
    game.record_system(HUGE, 0.001)
    with game.system(HUGE):
        pass
    network.player_ping(HUGE, 10.0)
    network.player_disconnected(HUGE)
    telemetry.metrics.increment("c", tags={"k": HUGE})  # type: ignore[dict-item]
    assert performance.rejected == {"phase": 1, "record_phase": 1}
    assert game.rejected == {
        "player_joined": 2,
        "player_left": 1,
        "player_moved": 1,
        "entity_created": 1,
        "entity_removed": 1,
        "map_loaded": 1,
        "record_system": 1,
        "system": 1,
    }
    assert network.rejected == {"player_ping": 1, "player_disconnected": 1}
    assert telemetry.metrics.rejected == {"increment": 1}
    assert (game.active_players, game.active_maps, network.tracked_pings()) == (0, 0, {})
    _scrape_is_whole(telemetry)


# -- item 7: values beyond what exporters encode ------------------------------------------------------------------
def test_values_beyond_int64_are_rejected_at_the_call(telemetry: Telemetry) -> None:
    """packet_received(2**64), set_db_size(2**64), entity_created(n=2**63), metrics.increment('c', 2**64), from
    8 threads: exactly counted, nothing recorded."""

    def work(index: int) -> None:
        for _ in range(CALLS):
            telemetry.network.packet_received(2**64)
            telemetry.network.packet_sent(2**63)
            telemetry.network.packet_lost(2**63)
            telemetry.game.set_db_size(2**64)
            telemetry.game.entity_created(n=2**63)
            telemetry.game.aoi_update(2**64)
            telemetry.metrics.increment("c", 2**64)
            telemetry.metrics.gauge("g", 2**64)

    _in_threads(work)
    n = THREADS * CALLS
    assert telemetry.network.rejected == {"packet_received": n, "packet_sent": n, "packet_lost": n}
    assert telemetry.game.rejected == {"set_db_size": n, "entity_created": n, "aoi_update": n}
    assert telemetry.metrics.rejected == {"increment": n, "gauge": n}
    assert sum(telemetry.network.totals().values()) == 0
    assert telemetry.game.snapshot()["db_size_bytes"] is None
    _scrape_is_whole(telemetry)


def test_cumulative_sums_past_int64_stay_encodable(telemetry: Telemetry) -> None:
    """Three accepted calls of 2**63 - 1 bytes take the cumulative counter past int64: OTLP gets a double, the
    scrape stays whole, and the facade and entity totals do the same."""
    for _ in range(3):
        telemetry.network.packet_received(INT64_MAX)
        telemetry.metrics.increment("big", INT64_MAX)
        telemetry.game.entity_created("NPC", "arena", INT64_MAX)
    for monitor in telemetry.monitors():
        monitor.refresh(force=True)
    body = _scrape_is_whole(telemetry, "big_total")
    expected = 3 * INT64_MAX
    received = re.search(r'^server_network_io_bytes_total\{direction="received"\} (\S+)$', body, re.M)
    assert received is not None and float(received.group(1)) == pytest.approx(expected, rel=1e-15)
    encoded = telemetry.current_metrics_otlp()
    assert encoded, "the frame could not be encoded as OTLP"
    request = decode_otlp_metrics(encoded)
    values = {
        metric.name: [p.as_double or p.as_int for p in metric.sum.data_points]
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.HasField("sum")
    }
    assert max(values["server.network.io"]) == pytest.approx(expected, rel=1e-15)
    assert values["big"] == [pytest.approx(expected, rel=1e-15)]
    assert values["server.game.entities"] == [pytest.approx(expected, rel=1e-15)]


# -- item 8: one bad value never poisons a collection ----------------------------------------------------------------
def test_one_bad_id_cannot_poison_a_collection(telemetry: Telemetry) -> None:
    """player_ping(10**5000) among good pings and player_joined("p", 10**5000): refused at the call; the
    per-player pings, the history and /metrics of the next collections are whole."""
    for i in range(20):
        telemetry.network.player_ping(f"p{i}", 30.0 + i)
    telemetry.network.player_ping(HUGE, 99.0)
    telemetry.game.player_joined("p", HUGE)
    telemetry.game.player_joined("q", "arena")
    before = len(telemetry.get_history())
    telemetry.collect()
    snapshot = telemetry.get_current_metrics()
    assert len(snapshot.network.player_pings_ms) == 20
    assert snapshot.game.players_per_map == {"arena": 1}
    _scrape_is_whole(telemetry, "server_game_map_players")
    assert len(telemetry.get_history()) >= before + 2  # both collections reached the history
    assert telemetry.network.rejected == {"player_ping": 1}
    assert telemetry.game.rejected == {"player_joined": 1}


# -- item 9: player counts never drift --------------------------------------------------------------------------------
def test_untracked_players_are_counted_and_leave_no_residue() -> None:
    """max_tracked_players=10, 20 joins on "arena" then 20 leaves: nothing left on the map or in the total."""
    game = GameMonitor(max_tracked_players=10, refresh_interval=0.0)
    for i in range(20):
        game.player_joined(f"p{i}", "arena")
    assert game.snapshot()["active_players"] == 20
    assert game.snapshot()["players_per_map"] == {"arena": 10}  # per map: tracked players only
    for i in range(20):
        game.player_left(f"p{i}")
    snapshot = game.snapshot()
    assert (snapshot["active_players"], snapshot["players_per_map"]) == (0, {"arena": 0})
    assert game.unknown_leaves == 0


def test_unknown_leaves_are_ignored_and_counted() -> None:
    """1 join and 4 leaves of ids that never joined: 1 active player (never -3), 4 unknown leaves counted."""
    game = GameMonitor(refresh_interval=0.0)
    game.player_joined("a")
    for i in range(4):
        game.player_left(f"ghost-{i}")
    assert game.snapshot()["active_players"] == 1
    assert game.unknown_leaves == 4


def test_join_and_leave_are_idempotent_per_player() -> None:
    """Joining twice and leaving once leaves nobody; leaving again changes nothing (counted)."""
    game = GameMonitor(refresh_interval=0.0)
    game.player_joined("a", "arena")
    game.player_joined("a", "arena")
    assert game.snapshot()["active_players"] == 1
    game.player_left("a")
    game.player_left("a")
    snapshot = game.snapshot()
    assert (snapshot["active_players"], snapshot["players_per_map"]) == (0, {"arena": 0})
    assert snapshot["totals"]["players_joined"] == 1  # type: ignore[index]
    assert game.unknown_leaves == 1


def test_player_counts_are_exact_under_threads() -> None:
    """8 threads, each joining 400 players twice (as 1 and as "1": one player) and leaving them twice: exactly
    3,200 joins and 3,200 leaves, 3,200 second leaves counted as unknown, 0 active, per-map counts back at 0."""
    game = GameMonitor(max_tracked_players=THREADS * CALLS, refresh_interval=0.0)
    lowest: list[int] = []

    def work(index: int) -> None:
        low = 0
        for j in range(CALLS):
            player = index * CALLS + j
            game.player_joined(player, f"map-{j % 5}")
            game.player_joined(str(player), f"map-{j % 5}")  # the same player
        for j in range(CALLS):
            player = index * CALLS + j
            game.player_left(str(player))
            game.player_left(player)
            low = min(low, game.active_players)
        lowest.append(low)

    _in_threads(work)
    snapshot = game.snapshot()
    assert snapshot["totals"]["players_joined"] == THREADS * CALLS  # type: ignore[index]
    assert snapshot["totals"]["players_left"] == THREADS * CALLS  # type: ignore[index]
    assert snapshot["active_players"] == 0 and min(lowest) == 0
    assert set(snapshot["players_per_map"].values()) == {0}  # type: ignore[attr-defined]
    assert game.unknown_leaves == THREADS * CALLS


# -- item 10: every map keyed by user input is bounded -----------------------------------------------------------------
def test_ten_thousand_timing_names_stay_within_the_budget_and_a_few_mb(telemetry: Telemetry) -> None:
    """10,000 statsd timing names (1.75 GB before): only what the series budget admits is kept, the rest is
    refused and counted exactly; RSS grows by a few MB, no call takes long, the scrape stays whole."""
    facade = telemetry.metrics
    gc.collect()
    rss = _rss_bytes()
    worst = 0.0
    for i in range(10_000):
        start = time.perf_counter()
        facade.timing(f"name.{i}", 0.001 * (i % 50))
        worst = max(worst, time.perf_counter() - start)
    telemetry.collect()
    gc.collect()
    grown = _rss_bytes() - rss
    admitted = len(facade.histograms())
    refusals = facade.series.refusals().get("metrics", 0)
    assert admitted + refusals == 10_000
    assert 0 < admitted <= facade.series.budget // 24
    # Measured: +0.4 MB and a worst call of 4 ms (before: +1,229 MB, worst call 767 ms); the budget admits 41.
    assert grown < 20 * 1024 * 1024, f"RSS grew by {grown / 2**20:.1f} MB"
    assert worst < 0.25, f"worst timing() call took {worst * 1000:.0f} ms"
    _scrape_is_whole(telemetry)


def test_system_phase_map_type_and_player_maps_are_bounded() -> None:
    """100,000 distinct ECS systems, phases, maps, entity types and player ids: every map stays at its cap (plus
    one _overflow entry), and every value beyond it is counted once, by the cap or by the series budget."""
    registry = SeriesRegistry(budget=100_000_000)
    game = GameMonitor(attribute_limit=100, max_tracked_players=1000, series=registry)
    performance = PerformanceMonitor(max_phases=32, series=registry)
    network = NetworkMonitor(max_tracked_players=1000, series=registry)
    facade = MetricsFacade(None, tag_limit=50, series=registry)
    n = 100_000
    for i in range(n):
        game.record_system(f"system-{i}", 0.001)
        performance.record_phase(f"phase-{i}", 0.001)
        game.entity_created(f"type-{i}", f"map-{i}")
        network.player_ping(f"player-{i}", 40.0)
        facade.increment("kills", tags={"player": str(i)})
    assert len(game._system_series) == 100 + 1
    assert len(performance._phases) == 32 + 1
    assert len(game._maps) == len(game._types) == 100
    assert len(network.tracked_pings()) == 1000 and network.players_overflowed == n - 1000
    assert len(facade.get_all_metrics()["counters"]) == 50 + 1
    overflow_calls = (n - 100) * 3 + (n - (32 - 9))  # systems, types, maps (each per call) + phases beyond 23 new
    assert game.overflowed + performance.phases_overflowed == overflow_calls
    assert facade.overflowed == n - 50
    assert registry.refused_series == 0
    snapshot = game.snapshot()
    assert snapshot["entities_per_map"][OVERFLOW_VALUE] == n - 100  # type: ignore[index]
    assert sum(snapshot["entities_per_type"].values()) == n  # type: ignore[attr-defined]
