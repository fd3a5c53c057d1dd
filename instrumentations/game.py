"""GameMonitor: players, entities, world, database and ECS statistics, from game-code calls.

Every call is thread-safe, cheap and never raises; invalid values are dropped and counted in ``rejected``.
Per-map and per-type attributes are capped at ``attribute_limit`` distinct values each; further values are
reported under the ``_overflow`` value (and counted in ``overflowed``), so memory and series stay bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from instrumentations._base import Monitor, Points, single
from otel_telemetry.accumulators import BoundedKeys, HistogramSeries, RateTracker, ThreadShards
from otel_telemetry.catalog import Section, lookup

__all__ = ["GameInstrumentor", "GameMonitor"]

_SCALARS = (
    "players_joined",
    "players_left",
    "entities_created",
    "entities_removed",
    "aoi_updates",
    "collision_hits",
    "collision_misses",
    "db_queries",
    "cache_hits",
    "cache_misses",
    "components",
    "allocations",
)


class _Shard:
    __slots__ = (*_SCALARS, "map_entities", "map_players", "type_entities")

    def __init__(self) -> None:
        self.players_joined = 0
        self.players_left = 0
        self.entities_created = 0
        self.entities_removed = 0
        self.aoi_updates = 0
        self.collision_hits = 0
        self.collision_misses = 0
        self.db_queries = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.components = 0
        self.allocations = 0
        self.map_players: dict[str, int] = {}
        self.map_entities: dict[str, int] = {}
        self.type_entities: dict[str, int] = {}


def _valid_count(n: object) -> bool:
    return n.__class__ is int and n >= 0  # type: ignore[operator,unused-ignore]


def _valid_duration(d: object) -> bool:
    return d.__class__ in (float, int) and 0 <= d < math.inf  # type: ignore[operator,unused-ignore]


class _Timed:
    """Context manager recording its elapsed seconds into one histogram series (fresh per use)."""

    __slots__ = ("_clock", "_series", "_start")

    def __init__(self, series: HistogramSeries, clock: Callable[[], float]) -> None:
        self._series = series
        self._clock = clock
        self._start = 0.0

    def __enter__(self) -> _Timed:
        self._start = self._clock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        elapsed = self._clock() - self._start
        if elapsed >= 0:
            self._series.record(elapsed)


class GameMonitor(Monitor):
    """Game-state telemetry for the spec's "Game Metrics".

    Players are tracked from ``player_joined`` to ``player_left`` (for per-map counts and session lengths), up to
    ``max_tracked_players`` at once; more still count in totals.
    """

    section = Section.GAME

    def __init__(
        self,
        *,
        attribute_limit: int = 100,
        max_tracked_players: int = 2000,
        percentile_window: float = 60.0,
        refresh_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        perf_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(percentile_window=percentile_window, refresh_interval=refresh_interval, clock=clock)
        self._perf = perf_clock
        self._shards: ThreadShards[_Shard] = ThreadShards(_Shard)
        self._maps = BoundedKeys(attribute_limit)
        self._types = BoundedKeys(attribute_limit)
        self._systems = BoundedKeys(attribute_limit)
        self._players: dict[str | int, tuple[str | None, float]] = {}
        self._players_lock = threading.Lock()
        self._max_players = max_tracked_players
        self._active_maps: set[str] = set()
        self._db_size: int | None = None
        self._session = self._histogram(lookup("game.players.session_duration"))
        self._cells = self._histogram(lookup("game.world.spatial_partitioning"))
        self._db_query = self._histogram(lookup("game.database.query_time"))
        self._ecs_query = self._histogram(lookup("game.system.query_time"))
        self._system_spec = lookup("game.system.system_time")
        self._system_series: dict[str, HistogramSeries] = {}
        now = clock()
        self._rate_names = ("entities_created", "entities_removed", "aoi_updates", "db_queries")
        self._rates = {name: RateTracker(now, min_interval=0.0) for name in self._rate_names}
        self._current: dict[str, float | None] = dict.fromkeys(self._rate_names)
        self._totals: dict[str, int] = dict.fromkeys(_SCALARS, 0)
        self._by_map_players: dict[str, int] = {}
        self._by_map_entities: dict[str, int] = {}
        self._by_type_entities: dict[str, int] = {}
        self._interval_start = dict(self._totals)
        self._hit_percent: float | None = None
        self._miss_percent: float | None = None

    @property
    def overflowed(self) -> int:
        """Values that were reported under ``_overflow`` because a cap was reached."""
        return self._maps.overflowed + self._types.overflowed + self._systems.overflowed

    # -- players ----------------------------------------------------------------------------------------------------
    def player_joined(self, player_id: str | int, map_id: str | None = None) -> None:
        """A player entered the game (optionally on ``map_id``)."""
        if player_id.__class__ not in (str, int):
            return self._reject("player_joined", player_id)
        label = self._maps.admit(map_id) if map_id is not None else None
        s = self._shards.shard()
        s.players_joined += 1
        if label is not None:
            s.map_players[label] = s.map_players.get(label, 0) + 1
        with self._players_lock:
            if player_id in self._players or len(self._players) < self._max_players:
                self._players[player_id] = (label, self._clock())

    def player_left(self, player_id: str | int) -> None:
        """A player left; their session length is recorded when they were tracked."""
        with self._players_lock:
            found = self._players.pop(player_id, None)
        s = self._shards.shard()
        s.players_left += 1
        if found is not None:
            label, joined = found
            if label is not None:
                s.map_players[label] = s.map_players.get(label, 0) - 1
            self._session.record(max(0.0, self._clock() - joined))

    def player_moved(self, player_id: str | int, map_id: str) -> None:
        """A tracked player changed map."""
        label = self._maps.admit(map_id)
        with self._players_lock:
            found = self._players.get(player_id)
            if found is None:
                return
            self._players[player_id] = (label, found[1])
        s = self._shards.shard()
        if found[0] is not None:
            s.map_players[found[0]] = s.map_players.get(found[0], 0) - 1
        s.map_players[label] = s.map_players.get(label, 0) + 1

    # -- entities ---------------------------------------------------------------------------------------------------
    def entity_created(self, entity_type: str = "Entity", map_id: str | None = None, n: int = 1) -> None:
        """``n`` entities of ``entity_type`` were created (on ``map_id``)."""
        if not _valid_count(n):
            return self._reject("entity_created", n)
        self._entities(entity_type, map_id, n)

    def entity_removed(self, entity_type: str = "Entity", map_id: str | None = None, n: int = 1) -> None:
        """``n`` entities of ``entity_type`` were removed (from ``map_id``)."""
        if not _valid_count(n):
            return self._reject("entity_removed", n)
        self._entities(entity_type, map_id, -n)

    def _entities(self, entity_type: str, map_id: str | None, delta: int) -> None:
        kind = self._types.admit(entity_type if isinstance(entity_type, str) else str(entity_type))
        s = self._shards.shard()
        if delta >= 0:
            s.entities_created += delta
        else:
            s.entities_removed -= delta
        s.type_entities[kind] = s.type_entities.get(kind, 0) + delta
        if map_id is not None:
            label = self._maps.admit(map_id if isinstance(map_id, str) else str(map_id))
            s.map_entities[label] = s.map_entities.get(label, 0) + delta

    # -- world ------------------------------------------------------------------------------------------------------
    def map_loaded(self, map_id: str) -> None:
        """A map became active."""
        self._active_maps.add(self._maps.admit(map_id))

    def map_unloaded(self, map_id: str) -> None:
        """A map stopped."""
        self._active_maps.discard(map_id)

    def aoi_update(self, n: int = 1) -> None:
        """``n`` area-of-interest updates were computed."""
        if not _valid_count(n):
            return self._reject("aoi_update", n)
        self._shards.shard().aoi_updates += n

    def spatial_cell(self, entities: int) -> None:
        """One spatial-partition cell holds ``entities`` entities (sample cells as often as you like)."""
        if not _valid_count(entities):
            return self._reject("spatial_cell", entities)
        self._cells.record(entities)

    def collision_test(self, hit: bool, n: int = 1) -> None:
        """``n`` collision tests ran with outcome ``hit``."""
        if not _valid_count(n):
            return self._reject("collision_test", n)
        s = self._shards.shard()
        if hit:
            s.collision_hits += n
        else:
            s.collision_misses += n

    # -- database ---------------------------------------------------------------------------------------------------
    def db_query(self, duration_s: float) -> None:
        """One database query took ``duration_s`` seconds."""
        if not _valid_duration(duration_s):
            return self._reject("db_query", duration_s)
        self._db_query.record(duration_s)
        self._shards.shard().db_queries += 1

    def cache_hit(self, n: int = 1) -> None:
        """``n`` cache lookups hit."""
        if not _valid_count(n):
            return self._reject("cache_hit", n)
        self._shards.shard().cache_hits += n

    def cache_miss(self, n: int = 1) -> None:
        """``n`` cache lookups missed."""
        if not _valid_count(n):
            return self._reject("cache_miss", n)
        self._shards.shard().cache_misses += n

    def set_db_size(self, nbytes: int) -> None:
        """The database's current size in bytes."""
        if not _valid_count(nbytes):
            return self._reject("set_db_size", nbytes)
        self._db_size = nbytes

    # -- ECS --------------------------------------------------------------------------------------------------------
    def components_added(self, n: int = 1) -> None:
        """``n`` ECS components were added."""
        if not _valid_count(n):
            return self._reject("components_added", n)
        self._shards.shard().components += n

    def components_removed(self, n: int = 1) -> None:
        """``n`` ECS components were removed."""
        if not _valid_count(n):
            return self._reject("components_removed", n)
        self._shards.shard().components -= n

    def system(self, name: str) -> _Timed:
        """Context manager timing one run of the ECS system ``name``."""
        return _Timed(self._system(name), self._perf)

    def record_system(self, name: str, duration_s: float) -> None:
        """One run of ECS system ``name`` took ``duration_s`` seconds."""
        if not _valid_duration(duration_s):
            return self._reject("record_system", duration_s)
        self._system(name).record(duration_s)

    def _system(self, name: str) -> HistogramSeries:
        series = self._system_series.get(name)
        if series is None:
            label = self._systems.admit(name if isinstance(name, str) else str(name))
            series = self._histogram(self._system_spec, system=label)
            self._system_series[name] = series
        return series

    def ecs_query(self, duration_s: float) -> None:
        """One ECS query took ``duration_s`` seconds."""
        if not _valid_duration(duration_s):
            return self._reject("ecs_query", duration_s)
        self._ecs_query.record(duration_s)

    def allocation(self, n: int = 1) -> None:
        """The ECS made ``n`` memory allocations."""
        if not _valid_count(n):
            return self._reject("allocation", n)
        self._shards.shard().allocations += n

    # -- reading ----------------------------------------------------------------------------------------------------
    def _sum_shards(self) -> None:
        totals = dict.fromkeys(_SCALARS, 0)
        players: dict[str, int] = {}
        entities: dict[str, int] = {}
        types: dict[str, int] = {}
        for shard in self._shards.all():
            for name in _SCALARS:
                totals[name] += getattr(shard, name)
            for src, dst in (
                (shard.map_players, players),
                (shard.map_entities, entities),
                (shard.type_entities, types),
            ):
                for key, value in dict(src).items():  # dict() copies atomically under the GIL
                    dst[key] = dst.get(key, 0) + value
        self._totals = totals
        self._by_map_players, self._by_map_entities, self._by_type_entities = players, entities, types

    def _refresh(self, now: float) -> None:
        self._sum_shards()
        totals = self._totals
        for name in self._rate_names:
            self._current[name] = self._rates[name].observe(now, totals[name])
        hits = totals["cache_hits"] - self._interval_start["cache_hits"]
        misses = totals["cache_misses"] - self._interval_start["cache_misses"]
        lookups = hits + misses
        self._hit_percent = 100.0 * hits / lookups if lookups else None
        self._miss_percent = 100.0 * misses / lookups if lookups else None
        self._interval_start = dict(totals)

    def snapshot(self) -> Mapping[str, object]:
        """Current totals and per-map/per-type counts (refreshing first when due)."""
        self.refresh()
        return {
            "totals": dict(self._totals),
            "active_players": self._totals["players_joined"] - self._totals["players_left"],
            "players_per_map": dict(self._by_map_players),
            "entities_per_map": dict(self._by_map_entities),
            "entities_per_type": dict(self._by_type_entities),
            "active_maps": len(self._active_maps),
            "rates": dict(self._current),
            "cache_hit_percent": self._hit_percent,
            "cache_miss_percent": self._miss_percent,
            "db_size_bytes": self._db_size,
        }

    def _observers(self) -> Mapping[str, Callable[[], Points]]:
        def labelled(source: Callable[[], dict[str, int]], key: str) -> Callable[[], Points]:
            return lambda: [(v, {key: k}) for k, v in source().items()]

        return {
            "server.game.active_players": lambda: single(self._totals["players_joined"] - self._totals["players_left"]),
            "server.game.players_connected": lambda: single(self._totals["players_joined"]),
            "server.game.map.players": labelled(lambda: self._by_map_players, "map"),
            "server.game.entities": lambda: single(self._totals["entities_created"] - self._totals["entities_removed"]),
            "server.game.map.entities": labelled(lambda: self._by_map_entities, "map"),
            "server.game.entity_type.entities": labelled(lambda: self._by_type_entities, "entity_type"),
            "server.game.entities.created": lambda: single(self._current["entities_created"]),
            "server.game.entities.removed": lambda: single(self._current["entities_removed"]),
            "server.game.active_maps": lambda: single(len(self._active_maps)),
            "server.game.aoi.updates": lambda: single(self._current["aoi_updates"]),
            "server.game.collision.tests": lambda: (
                (self._totals["collision_hits"], {"outcome": "hit"}),
                (self._totals["collision_misses"], {"outcome": "miss"}),
            ),
            "server.game.db.queries": lambda: single(self._current["db_queries"]),
            "server.game.db.cache.hit_rate": lambda: single(self._hit_percent),
            "server.game.db.cache.miss_rate": lambda: single(self._miss_percent),
            "server.game.db.size": lambda: single(self._db_size),
            "server.game.ecs.components": lambda: single(self._totals["components"]),
            "server.game.ecs.allocations": lambda: single(self._totals["allocations"]),
        }


class GameInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Entry-point instrumentor: ``instrument(meter_provider=...)`` attaches a :class:`GameMonitor`.

    On an OpenTelemetry SDK ``MeterProvider`` (the one ``opentelemetry-instrument`` configures, for example) every
    reader also receives the monitor's histograms; see :mod:`instrumentations._wiring`. The monitor is published on
    the class as :attr:`monitor` (``GameInstrumentor.monitor``) until ``uninstrument()``; instrumenting again on the
    same provider resumes the same monitor.
    """

    monitor: GameMonitor | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import instrument_monitor

        # Published on the class: the instrumentor is a singleton and its monitor process-wide.
        type(self).monitor = instrument_monitor(GameMonitor, kwargs.get("meter_provider"), GameMonitor)

    def _uninstrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import detach_monitor

        monitor = type(self).monitor
        if monitor is not None:
            detach_monitor(monitor)
            type(self).monitor = None
