"""GameMonitor: players, entities, world, database and ECS, with bounded attributes."""

from __future__ import annotations

import pytest
from conftest import ManualClock

from instrumentations.game import GameMonitor
from otel_telemetry.accumulators import OVERFLOW_VALUE


def test_players_per_map_and_session_duration() -> None:
    """Joins, moves and leaves keep per-map counts; a leave records the session length."""
    clock = ManualClock(0.0)
    monitor = GameMonitor(clock=clock, refresh_interval=0.0)
    monitor.player_joined("a", "map-1")
    monitor.player_joined("b", "map-1")
    monitor.player_joined("c", "map-2")
    monitor.player_moved("b", "map-2")
    clock.now += 120
    monitor.player_left("a")
    snapshot = monitor.snapshot()
    assert snapshot["active_players"] == 2
    assert snapshot["players_per_map"] == {"map-1": 0, "map-2": 2}
    session = monitor.histogram_state("server.game.session.duration")
    assert session is not None and session.cumulative.mean() == pytest.approx(120.0)


def test_entities_per_map_and_type_and_rates() -> None:
    """Entity totals by map and type are exact; creation/removal rates are per second."""
    clock = ManualClock(0.0)
    monitor = GameMonitor(clock=clock, refresh_interval=0.0)
    monitor.entity_created("NPC", "map-1", 30)
    monitor.entity_created("Monster", "map-2", 10)
    monitor.entity_removed("NPC", "map-1", 5)
    clock.now += 5
    snapshot = monitor.snapshot()
    assert snapshot["entities_per_map"] == {"map-1": 25, "map-2": 10}
    assert snapshot["entities_per_type"] == {"NPC": 25, "Monster": 10}
    assert snapshot["rates"]["entities_created"] == pytest.approx(8.0)  # type: ignore[index]
    assert snapshot["rates"]["entities_removed"] == pytest.approx(1.0)  # type: ignore[index]


def test_map_and_type_attributes_are_capped_with_an_overflow_series() -> None:
    """More maps than attribute_limit: the extra ones are reported together under the overflow value."""
    monitor = GameMonitor(attribute_limit=3, refresh_interval=0.0)
    for i in range(10):
        monitor.entity_created("NPC", f"map-{i}")
    per_map = monitor.snapshot()["entities_per_map"]
    assert len(per_map) == 4  # type: ignore[arg-type]
    assert per_map[OVERFLOW_VALUE] == 7  # type: ignore[index]
    assert monitor.overflowed == 7


def test_cache_rates_are_percentages_of_lookups_in_the_interval() -> None:
    """90 hits and 10 misses: 90% hit rate, 10% miss rate; database query times land in the histogram."""
    clock = ManualClock(0.0)
    monitor = GameMonitor(clock=clock, refresh_interval=0.0)
    monitor.cache_hit(90)
    monitor.cache_miss(10)
    monitor.db_query(0.004)
    monitor.set_db_size(1024)
    clock.now += 1
    snapshot = monitor.snapshot()
    assert snapshot["cache_hit_percent"] == pytest.approx(90.0)
    assert snapshot["cache_miss_percent"] == pytest.approx(10.0)
    assert snapshot["db_size_bytes"] == 1024
    query = monitor.histogram_state("server.game.db.query.duration")
    assert query is not None and query.cumulative.count == 1


def test_ecs_systems_are_timed_per_system() -> None:
    """Each ECS system gets its own series."""
    monitor = GameMonitor(refresh_interval=0.0)
    monitor.record_system("movement", 0.001)
    monitor.record_system("combat", 0.002)
    with monitor.system("movement"):
        pass
    movement = monitor.histogram_state("server.game.ecs.system.duration", system="movement")
    assert movement is not None and movement.cumulative.count == 2


def test_bad_values_are_dropped_and_counted() -> None:
    """Negative counts and durations never raise and are counted per call."""
    monitor = GameMonitor()
    monitor.entity_created("NPC", "m", -1)
    monitor.db_query(float("inf"))
    monitor.cache_hit(1.5)  # type: ignore[arg-type]
    monitor.player_joined(None)  # type: ignore[arg-type]
    assert monitor.rejected == {"entity_created": 1, "db_query": 1, "cache_hit": 1, "player_joined": 1}
