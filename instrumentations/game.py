"""GameMonitor: players, entities, world, database and ECS statistics, from game-code calls.

Every call is thread-safe, cheap and never raises; invalid values are dropped and counted in ``rejected`` (counts
are ints from 0 to 2**63 - 1, durations finite seconds from 0 to 1e300, ids and names anything that can be a
label, see :func:`~otel_telemetry.series.label_value`: ``7`` and ``"7"`` are one map, an object is ``str(obj)``).

Maps, entity types and ECS systems are capped at ``attribute_limit`` distinct values each, and each new one must
fit the handle's series budget (:class:`~otel_telemetry.series.SeriesRegistry`); values refused by the cap
(counted in ``overflowed``) or by the budget (counted in the registry's ``refused_series``) are reported under the
``_overflow`` value, so totals stay exact while memory and series stay bounded.

Players are counted exactly: a join of a player already in the game and a leave of a player not in it change
nothing (the latter is counted in ``unknown_leaves``), so no count ever drifts or goes negative. Up to
``max_tracked_players`` players are tracked by id, with their map and session start; players beyond that are
counted anonymously in the totals (``active_players``, ``players_connected``) but not per map, and a leave of an
id that is not tracked ends one of them (anonymous players cannot be told apart).

Every per-second gauge (entities created and removed, AOI updates, DB queries) and the cache hit and miss
percentages have the cumulative counter behind them, from the same per-thread totals, so that Prometheus can
``rate()`` them over any range.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from instrumentations._base import Monitor, Points, encodable, label_value, single
from otel_telemetry.accumulators import HistogramSeries, RateTracker, ThreadShards
from otel_telemetry.catalog import Section, lookup
from otel_telemetry.series import OVERFLOW_VALUE, SeriesRegistry, histogram_cost

__all__ = ["GameInstrumentor", "GameMonitor"]  # noqa: F822  (GameInstrumentor: module __getattr__)

#: Per-thread sums (no lock on the hot path); players are counted under the players' lock instead.
_SCALARS = (
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
_SYSTEM_SPEC = lookup("game.system.system_time")


class _Shard:
    __slots__ = (*_SCALARS, "map_entities", "type_entities")

    def __init__(self) -> None:
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
        self.map_entities: dict[str, int] = {}
        self.type_entities: dict[str, int] = {}


def _valid_count(n: object) -> bool:
    # ``n >> 63`` is 0 exactly for 0 <= n < 2**63 (a negative int shifts to -1): one operation, no lookup.
    return n.__class__ is int and not n >> 63  # type: ignore[operator,unused-ignore]


def _valid_duration(d: object) -> bool:
    return d.__class__ in (float, int) and 0 <= d <= 1e300  # type: ignore[operator,unused-ignore]


class _Timed:
    """Context manager recording its elapsed seconds into one histogram series (fresh per use; None: nothing)."""

    __slots__ = ("_clock", "_series", "_start")

    def __init__(self, series: HistogramSeries | None, clock: Callable[[], float]) -> None:
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
        if elapsed >= 0 and self._series is not None:
            self._series.record(elapsed)


class GameMonitor(Monitor):
    """Game-state telemetry for the spec's "Game Metrics".

    Players are tracked from ``player_joined`` to ``player_left`` (for per-map counts and session lengths), up to
    ``max_tracked_players`` at once; more still count in totals (see the module docstring).

    Args:
        attribute_limit: distinct maps, entity types and ECS systems admitted (each); further ones report as
            ``_overflow``.
        max_tracked_players: players tracked by id at once.
        series: the handle's series registry (see :class:`~instrumentations._base.Monitor`). A map costs 2
            series (players and entities per map), an entity type 1, an ECS system one histogram (23).
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
        series: SeriesRegistry | None = None,
    ) -> None:
        super().__init__(
            percentile_window=percentile_window, refresh_interval=refresh_interval, clock=clock, series=series
        )
        self._perf = perf_clock
        self._shards: ThreadShards[_Shard] = ThreadShards(_Shard)
        self._maps = self.series.labels("game.map", attribute_limit, 2)
        self._types = self.series.labels("game.entity_type", attribute_limit, 1)
        self._systems = self.series.labels("game.system", attribute_limit, histogram_cost(len(_SYSTEM_SPEC.boundaries)))
        # Players, under one lock: tracked ids (label -> map label, join time), anonymous ones, per-map counts.
        self._players_lock = threading.Lock()
        self._players: dict[str, tuple[str | None, float]] = {}
        self._max_players = max_tracked_players
        self._anonymous = 0
        self._joined = 0
        self._left = 0
        self._unknown_leaves = 0
        self._map_players: dict[str, int] = {}
        # Loaded maps: admitted labels, and how many maps beyond the cap (reported under _overflow) are loaded.
        self._active_maps: set[str] = set()
        self._overflow_maps = 0
        self._db_size: int | None = None
        self._session = self._histogram(lookup("game.players.session_duration"))
        self._cells = self._histogram(lookup("game.world.spatial_partitioning"))
        self._db_query = self._histogram(lookup("game.database.query_time"))
        self._ecs_query = self._histogram(lookup("game.system.query_time"))
        # Admitted system labels (and _overflow) -> series: bounded by attribute_limit + 1.
        self._system_series: dict[str, HistogramSeries] = {}
        self._system_lock = threading.Lock()
        now = clock()
        self._rate_names = ("entities_created", "entities_removed", "aoi_updates", "db_queries")
        self._rates = {name: RateTracker(now, min_interval=0.0) for name in self._rate_names}
        self._current: dict[str, float | None] = dict.fromkeys(self._rate_names)
        self._totals: dict[str, int] = dict.fromkeys((*_SCALARS, "players_joined", "players_left"), 0)
        self._by_map_players: dict[str, int] = {}
        self._by_map_entities: dict[str, int] = {}
        self._by_type_entities: dict[str, int] = {}
        self._interval_start = dict(self._totals)
        self._hit_percent: float | None = None
        self._miss_percent: float | None = None

    @property
    def overflowed(self) -> int:
        """Calls whose map, entity type or system was reported under ``_overflow`` because ``attribute_limit``
        values were admitted already. Exact. (Refusals by the series budget count in ``series.refused_series``.)"""
        return self._maps.overflowed + self._types.overflowed + self._systems.overflowed

    @property
    def unknown_leaves(self) -> int:
        """``player_left`` calls for a player who was not in the game (ignored). Exact."""
        return self._unknown_leaves

    @property
    def active_players(self) -> int:
        """Players in the game now: tracked and anonymous (never negative)."""
        return len(self._players) + self._anonymous

    # -- players ----------------------------------------------------------------------------------------------------
    def player_joined(self, player_id: object, map_id: object = None) -> None:
        """A player entered the game (optionally on ``map_id``). A player already in the game is not counted
        again (a new ``map_id`` moves them)."""
        key = label_value(player_id)
        if key is None:
            return self._reject("player_joined", player_id)
        label = None
        if map_id is not None:
            label = self._maps.admit(map_id)
            if label is None:
                return self._reject("player_joined", map_id)
        now = self._clock()
        with self._players_lock:
            found = self._players.get(key)
            if found is not None:
                if label is not None and label != found[0]:
                    self._move(key, found, label)
                return None
            self._joined += 1
            if len(self._players) < self._max_players:
                self._players[key] = (label, now)
                if label is not None:
                    self._map_players[label] = self._map_players.get(label, 0) + 1
            else:
                self._anonymous += 1
        return None

    def player_left(self, player_id: object) -> None:
        """A player left; their session length is recorded when they were tracked. A player who is not in the
        game is ignored (counted in :attr:`unknown_leaves`)."""
        key = label_value(player_id)
        if key is None:
            return self._reject("player_left", player_id)
        now = self._clock()
        with self._players_lock:
            found = self._players.pop(key, None)
            if found is not None:
                self._left += 1
                if found[0] is not None:
                    self._map_players[found[0]] -= 1
            elif self._anonymous:
                self._anonymous -= 1
                self._left += 1
            else:
                self._unknown_leaves += 1
        if found is not None:
            self._session.record(max(0.0, now - found[1]))
        return None

    def player_moved(self, player_id: object, map_id: object) -> None:
        """A tracked player changed map (others are ignored)."""
        key = label_value(player_id)
        if key is None:
            return self._reject("player_moved", player_id)
        label = self._maps.admit(map_id)
        if label is None:
            return self._reject("player_moved", map_id)
        with self._players_lock:
            found = self._players.get(key)
            if found is not None and found[0] != label:
                self._move(key, found, label)
        return None

    def _move(self, key: str, found: tuple[str | None, float], label: str) -> None:
        """Move a tracked player to map ``label`` (call with ``_players_lock`` held)."""
        self._players[key] = (label, found[1])
        if found[0] is not None:
            self._map_players[found[0]] -= 1
        self._map_players[label] = self._map_players.get(label, 0) + 1

    # -- entities ---------------------------------------------------------------------------------------------------
    def entity_created(self, entity_type: object = "Entity", map_id: object = None, n: int = 1) -> None:
        """``n`` entities of ``entity_type`` were created (on ``map_id``)."""
        if not _valid_count(n):
            return self._reject("entity_created", n)
        return self._entities("entity_created", entity_type, map_id, n)

    def entity_removed(self, entity_type: object = "Entity", map_id: object = None, n: int = 1) -> None:
        """``n`` entities of ``entity_type`` were removed (from ``map_id``)."""
        if not _valid_count(n):
            return self._reject("entity_removed", n)
        return self._entities("entity_removed", entity_type, map_id, -n)

    def _entities(self, call: str, entity_type: object, map_id: object, delta: int) -> None:
        kind = self._types.admit(entity_type)
        if kind is None:
            return self._reject(call, entity_type)
        label = None
        if map_id is not None:
            label = self._maps.admit(map_id)
            if label is None:
                return self._reject(call, map_id)
        s = self._shards.shard()
        if delta >= 0:
            s.entities_created += delta
        else:
            s.entities_removed -= delta
        s.type_entities[kind] = s.type_entities.get(kind, 0) + delta
        if label is not None:
            s.map_entities[label] = s.map_entities.get(label, 0) + delta
        return None

    # -- world ------------------------------------------------------------------------------------------------------
    def map_loaded(self, map_id: object) -> None:
        """A map became active (loading it again changes nothing)."""
        label = self._maps.admit(map_id)
        if label is None:
            return self._reject("map_loaded", map_id)
        with self._players_lock:
            if label == OVERFLOW_VALUE:
                self._overflow_maps += 1  # maps beyond the cap cannot be told apart: each load counts
            else:
                self._active_maps.add(label)
        return None

    def map_unloaded(self, map_id: object) -> None:
        """A map stopped (a map that is not loaded is ignored)."""
        label = self._maps.find(map_id)
        with self._players_lock:
            if label is not None:
                self._active_maps.discard(label)
            elif self._overflow_maps and label_value(map_id) is not None:
                self._overflow_maps -= 1

    @property
    def active_maps(self) -> int:
        """Maps loaded now."""
        return len(self._active_maps) + self._overflow_maps

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
        """The database's current size in bytes (an int from 0 to 2**63 - 1)."""
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

    def system(self, name: object) -> _Timed:
        """Context manager timing one run of the ECS system ``name``."""
        series = self._system(name)
        if series is None:
            self._reject("system", name)
        return _Timed(series, self._perf)

    def record_system(self, name: object, duration_s: float) -> None:
        """One run of ECS system ``name`` took ``duration_s`` seconds."""
        if not _valid_duration(duration_s):
            return self._reject("record_system", duration_s)
        series = self._system(name)
        if series is None:
            return self._reject("record_system", name)
        series.record(duration_s)
        return None

    def _system(self, name: object) -> HistogramSeries | None:
        series: HistogramSeries | None
        try:
            series = self._system_series.get(name)  # type: ignore[call-overload]
        except Exception:  # unhashable: its label is looked up below
            series = None
        if series is not None:
            return series
        label = self._systems.admit(name)
        if label is None:
            return None
        series = self._system_series.get(label)
        if series is None:
            with self._system_lock:
                series = self._system_series.get(label)
                if series is None:
                    series = self._system_series[label] = self._histogram(_SYSTEM_SPEC, system=label)
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
        entities: dict[str, int] = {}
        types: dict[str, int] = {}
        for shard in self._shards.all():
            for name in _SCALARS:
                totals[name] += getattr(shard, name)
            for src, dst in ((shard.map_entities, entities), (shard.type_entities, types)):
                for key, value in dict(src).items():  # dict() copies atomically under the GIL
                    dst[key] = dst.get(key, 0) + value
        with self._players_lock:
            totals["players_joined"] = self._joined
            totals["players_left"] = self._left
            players = dict(self._map_players)
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
            "active_maps": self.active_maps,
            "rates": dict(self._current),
            "cache_hit_percent": self._hit_percent,
            "cache_miss_percent": self._miss_percent,
            "db_size_bytes": self._db_size,
        }

    def _observers(self) -> Mapping[str, Callable[[], Points]]:
        def labelled(source: Callable[[], dict[str, int]], key: str) -> Callable[[], Points]:
            return lambda: [(encodable(v), {key: k}) for k, v in source().items()]

        def total(name: str) -> Callable[[], Points]:
            return lambda: single(encodable(self._totals[name]))

        def difference(a: str, b: str) -> Callable[[], Points]:
            return lambda: single(encodable(self._totals[a] - self._totals[b]))

        return {
            "server.game.active_players": difference("players_joined", "players_left"),
            "server.game.players_connected": total("players_joined"),
            "server.game.map.players": labelled(lambda: self._by_map_players, "map"),
            "server.game.entities": difference("entities_created", "entities_removed"),
            "server.game.map.entities": labelled(lambda: self._by_map_entities, "map"),
            "server.game.entity_type.entities": labelled(lambda: self._by_type_entities, "entity_type"),
            "server.game.entities.created": lambda: single(self._current["entities_created"]),
            "server.game.entities.removed": lambda: single(self._current["entities_removed"]),
            "server.game.entity.creations": total("entities_created"),
            "server.game.entity.removals": total("entities_removed"),
            "server.game.active_maps": lambda: single(self.active_maps),
            "server.game.aoi.updates": lambda: single(self._current["aoi_updates"]),
            "server.game.aoi.computations": total("aoi_updates"),
            "server.game.collision.tests": lambda: (
                (encodable(self._totals["collision_hits"]), {"outcome": "hit"}),
                (encodable(self._totals["collision_misses"]), {"outcome": "miss"}),
            ),
            "server.game.db.queries": lambda: single(self._current["db_queries"]),
            "server.game.db.query.executions": total("db_queries"),
            "server.game.db.cache.hit_rate": lambda: single(self._hit_percent),
            "server.game.db.cache.miss_rate": lambda: single(self._miss_percent),
            "server.game.db.cache.lookups": lambda: (
                (encodable(self._totals["cache_hits"]), {"outcome": "hit"}),
                (encodable(self._totals["cache_misses"]), {"outcome": "miss"}),
            ),
            "server.game.db.size": lambda: single(self._db_size),
            "server.game.ecs.components": total("components"),
            "server.game.ecs.allocations": total("allocations"),
        }


def __getattr__(name: str) -> object:
    # The entry-point class loads OpenTelemetry's instrumentation machinery (wrapt, semconv): only when asked for.
    if name == "GameInstrumentor":
        from instrumentations._instrumentors import GameInstrumentor

        return GameInstrumentor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
