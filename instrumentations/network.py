"""NetworkMonitor: packets, bytes, latency, player ping, connections and reliability, from game-code calls.

Every call is safe from any thread, costs a fraction of a microsecond, and never raises: invalid values
(wrong types, NaN, infinities, negative sizes or durations, sizes above 2**63 - 1, durations above 1e300 ms,
ids that cannot be a label) are dropped and counted in ``rejected``. Player ids are keyed by their label
(:func:`~otel_telemetry.series.label_value`): ``1`` and ``"1"`` are one player, any object is ``str(obj)``.
Rates are per second over the real time between two collections; loss and retransmission are percentages of the
packets sent in that interval. Every such gauge has the cumulative counter behind it (packets and bytes by
direction, connections opened and closed, packets lost and retransmitted), taken from the same totals, so that
Prometheus can ``rate()`` them over any range.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from instrumentations._base import Monitor, Points, encodable, label_value, single
from otel_telemetry.accumulators import RateTracker, ThreadShards
from otel_telemetry.catalog import MetricSpec, Section, lookup
from otel_telemetry.series import SeriesRegistry

__all__ = ["NetworkInstrumentor", "NetworkMonitor"]  # noqa: F822  (the instrumentor: module __getattr__)

_RECEIVED = {"direction": "received"}
_SENT = {"direction": "sent"}
_PER_PLAYER = lookup("network.ping.per_player")


class _Shard:
    __slots__ = ("bytes_in", "bytes_out", "closed", "lost", "opened", "packets_in", "packets_out", "retransmitted")

    def __init__(self) -> None:
        self.packets_in = 0
        self.packets_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.lost = 0
        self.retransmitted = 0
        self.opened = 0
        self.closed = 0


_FIELDS = _Shard.__slots__


class NetworkMonitor(Monitor):
    """Game network telemetry. Call its methods from game code, from any thread; they never raise.

    Counters go to per-thread shards and distributions to per-thread histogram cells (no lock, exact totals);
    the per-player map takes a lock only when a player is seen for the first time.

    Args:
        max_tracked_players: how many players' last ping are tracked at once (per-player series); pings of
            further players still count in the distribution, and the overflow is counted in ``players_overflowed``.
        percentile_window: seconds over which min/max/avg gauges and in-process percentiles are computed.
        series: the handle's series registry (see :class:`~instrumentations._base.Monitor`); per-player series
            are not counted in its budget.
    """

    section = Section.NETWORK

    def __init__(
        self,
        *,
        max_tracked_players: int = 2000,
        percentile_window: float = 60.0,
        refresh_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        series: SeriesRegistry | None = None,
    ) -> None:
        super().__init__(
            percentile_window=percentile_window, refresh_interval=refresh_interval, clock=clock, series=series
        )
        self._shards: ThreadShards[_Shard] = ThreadShards(_Shard)
        self._latency = self._histogram(lookup("network.latency.distribution"), 0.001)
        self._ping = self._histogram(lookup("network.ping.distribution"), 0.001)
        self._ack = self._histogram(lookup("network.reliability.ack_latency"), 0.001)
        self._fragments = self._histogram(lookup("network.reliability.fragmentation"))
        self._durations = self._histogram(lookup("network.connections.duration"))
        self._last_ping: dict[str, float] = {}
        self._max_players = max_tracked_players
        self._players_overflowed = 0
        now = clock()
        self._rates = {name: RateTracker(now, min_interval=0.0) for name in _FIELDS}
        self._current: dict[str, float | None] = dict.fromkeys(_FIELDS)
        self._totals: dict[str, int] = dict.fromkeys(_FIELDS, 0)
        self._interval_start: dict[str, int] = dict.fromkeys(_FIELDS, 0)
        self._loss_percent = 0.0
        self._retransmission_percent = 0.0
        self._ping_lock = threading.Lock()

    # -- hot path ---------------------------------------------------------------------------------------------------
    def packet_received(self, nbytes: int = 0) -> None:
        """One game packet of ``nbytes`` bytes arrived (an int from 0 to 2**63 - 1)."""
        # ``n >> 63`` is 0 exactly for 0 <= n < 2**63 (a negative int shifts to -1): one operation, no lookup.
        if nbytes.__class__ is not int or nbytes >> 63:
            return self._reject("packet_received", nbytes)
        s = self._shards.shard()
        s.packets_in += 1
        s.bytes_in += nbytes

    def packet_sent(self, nbytes: int = 0) -> None:
        """One game packet of ``nbytes`` bytes was sent (an int from 0 to 2**63 - 1)."""
        if nbytes.__class__ is not int or nbytes >> 63:
            return self._reject("packet_sent", nbytes)
        s = self._shards.shard()
        s.packets_out += 1
        s.bytes_out += nbytes

    def packet_latency(self, ms: float) -> None:
        """One packet's one-way latency in milliseconds."""
        if ms.__class__ is float:
            if not 0.0 <= ms <= 1e300:  # a literal bound: no lookup; rejects inf, and NaN fails it
                return self._reject("packet_latency", ms)
        elif ms.__class__ is not int or not 0 <= ms <= 1e300:  # an int of 10**400 would overflow the float sum
            return self._reject("packet_latency", ms)
        self._latency.record(ms)

    def player_ping(self, player_id: object, ms: float) -> None:
        """A player's round-trip ping in milliseconds; also tracked per player until they disconnect.

        ``player_id`` is keyed by its label: ``1`` and ``"1"`` are one player, an object is ``str(obj)``.
        """
        if ms.__class__ is float:
            if not 0.0 <= ms <= 1e300:  # a literal bound: no lookup; rejects inf, and NaN fails it
                return self._reject("player_ping", ms)
        elif ms.__class__ is not int or not 0 <= ms <= 1e300:
            return self._reject("player_ping", ms)
        last = self._last_ping
        try:
            tracked = player_id in last  # keys are labels: a tracked string id is its own label
        except Exception:  # unhashable: its label is looked up below
            tracked = False
        if tracked:
            self._ping.record(ms)
            last[player_id] = ms  # type: ignore[index]  # one dict store: atomic, no lock for tracked players
            return None
        key = label_value(player_id)
        if key is None:
            return self._reject("player_ping", player_id)
        self._ping.record(ms)
        if key in last:
            last[key] = ms
        else:
            self._track(key, ms)
        return None

    def _track(self, player_id: str, ms: float) -> None:
        # A new player (rare: once per player): admit under the lock so that the cap holds exactly and every
        # refused player is counted.
        with self._ping_lock:
            last = self._last_ping
            if player_id in last or len(last) < self._max_players:
                last[player_id] = ms
            else:
                self._players_overflowed += 1

    @property
    def players_overflowed(self) -> int:
        """Pings of players not tracked per player because ``max_tracked_players`` were tracked already. Exact."""
        return self._players_overflowed

    def player_disconnected(self, player_id: object) -> None:
        """Forget a player's per-player ping (an id never pinged is ignored)."""
        key = label_value(player_id)
        if key is None:
            return self._reject("player_disconnected", player_id)
        self._last_ping.pop(key, None)
        return None

    def connection_opened(self) -> None:
        """A client connection was opened."""
        self._shards.shard().opened += 1

    def connection_closed(self, duration_s: float | None = None) -> None:
        """A client connection closed, after ``duration_s`` seconds when known."""
        if duration_s is not None:
            if not (duration_s.__class__ in (float, int) and 0 <= duration_s <= 1e300):
                return self._reject("connection_closed", duration_s)
            self._durations.record(duration_s)
        self._shards.shard().closed += 1

    def packet_lost(self, n: int = 1) -> None:
        """``n`` sent packets were lost (the sender noticed)."""
        if n.__class__ is not int or n >> 63:
            return self._reject("packet_lost", n)
        self._shards.shard().lost += n

    def packet_retransmitted(self, n: int = 1) -> None:
        """``n`` packets were retransmitted."""
        if n.__class__ is not int or n >> 63:
            return self._reject("packet_retransmitted", n)
        self._shards.shard().retransmitted += n

    def ack_latency(self, ms: float) -> None:
        """Milliseconds from sending a reliable packet to its acknowledgment."""
        if ms.__class__ is float:
            if not 0.0 <= ms <= 1e300:  # a literal bound: no lookup; rejects inf, and NaN fails it
                return self._reject("ack_latency", ms)
        elif ms.__class__ is not int or not 0 <= ms <= 1e300:
            return self._reject("ack_latency", ms)
        self._ack.record(ms)

    def packet_fragmented(self, fragments: int) -> None:
        """A packet was split into ``fragments`` fragments."""
        if fragments.__class__ is not int or fragments < 1 or fragments >> 63:
            return self._reject("packet_fragmented", fragments)
        self._fragments.record(fragments)

    # -- reading ----------------------------------------------------------------------------------------------------
    def totals(self) -> dict[str, int]:
        """Cumulative counts since start, summed over threads: packets_in/out, bytes_in/out, lost, ..."""
        totals = dict.fromkeys(_FIELDS, 0)
        for shard in self._shards.all():
            for name in _FIELDS:
                totals[name] += getattr(shard, name)
        return totals

    @property
    def active_connections(self) -> int:
        """Connections opened minus closed."""
        totals = self.totals()
        return max(0, totals["opened"] - totals["closed"])

    def tracked_pings(self) -> Mapping[str, float]:
        """Last ping in milliseconds of every tracked player, by player label (a copy)."""
        return dict(self._last_ping)

    def _refresh(self, now: float) -> None:
        totals = self.totals()
        for name in _FIELDS:
            self._current[name] = self._rates[name].observe(now, totals[name])
        sent = totals["packets_out"] - self._interval_start["packets_out"]
        lost = totals["lost"] - self._interval_start["lost"]
        resent = totals["retransmitted"] - self._interval_start["retransmitted"]
        self._loss_percent = min(100.0, 100.0 * lost / sent) if sent > 0 else (100.0 if lost > 0 else 0.0)
        self._retransmission_percent = min(100.0, 100.0 * resent / sent) if sent > 0 else 0.0
        self._interval_start = totals
        self._totals = totals

    def rate(self, name: str) -> float | None:
        """Per-second rate of a counter over the last collection interval (``packets_in``, ``bytes_out``, ...)."""
        self.refresh()
        return self._current[name]

    @property
    def loss_percent(self) -> float:
        """Packets lost as a percentage of packets sent over the last collection interval."""
        self.refresh()
        return self._loss_percent

    @property
    def retransmission_percent(self) -> float:
        """Packets retransmitted as a percentage of packets sent over the last collection interval."""
        self.refresh()
        return self._retransmission_percent

    def _window_stat(self, entry: str, stat: str, scale: float) -> float | None:
        state = self.histogram_state(lookup(entry).name)
        if state is None or state.window.count == 0:
            return None
        value = getattr(state.window, stat)()
        return None if value is None else value * scale

    produced_gauge_names = frozenset({"server.network.player_ping.last"})

    def entity_values(self) -> list[tuple[MetricSpec, str, Mapping[str, float]]]:
        """The last ping of every tracked player, in seconds, by ``player_id``."""
        if not self._attached:
            return []
        return [(_PER_PLAYER, "player_id", {pid: ms * 0.001 for pid, ms in self.tracked_pings().items()})]

    def _observers(self) -> Mapping[str, Callable[[], Points]]:
        def rate(name: str) -> Callable[[], Points]:
            return lambda: single(self._current[name])

        def directional(a: str, b: str) -> Callable[[], Points]:
            return lambda: ((encodable(self._totals[a]), _RECEIVED), (encodable(self._totals[b]), _SENT))

        def total(name: str) -> Callable[[], Points]:
            return lambda: single(encodable(self._totals[name]))

        def window(entry: str, stat: str, scale: float = 0.001) -> Callable[[], Points]:
            return lambda: single(self._window_stat(entry, stat, scale))

        return {
            "server.packets_per_sec_incoming": rate("packets_in"),
            "server.packets_per_sec_outgoing": rate("packets_out"),
            "server.network.received": rate("bytes_in"),
            "server.network.sent": rate("bytes_out"),
            "server.network.packets": directional("packets_in", "packets_out"),
            "server.network.io": directional("bytes_in", "bytes_out"),
            "server.network.packet_latency.avg": window("network.latency.distribution", "mean"),
            "server.network.packet_latency.min": window("network.latency.distribution", "min"),
            "server.network.packet_latency.max": window("network.latency.distribution", "max"),
            "server.avg_player_ping": window("network.ping.distribution", "mean", 1.0),
            "server.network.player_ping.min": window("network.ping.distribution", "min"),
            "server.network.player_ping.max": window("network.ping.distribution", "max"),
            "server.active_connections": lambda: single(max(0, self._totals["opened"] - self._totals["closed"])),
            "server.network.connections": lambda: single(encodable(self._totals["opened"])),
            "server.network.new_connections": rate("opened"),
            "server.network.disconnections": rate("closed"),
            "server.network.connections.closed": total("closed"),
            "server.network.packet_loss": lambda: single(self._loss_percent),
            "server.network.retransmission": lambda: single(self._retransmission_percent),
            "server.network.packets.lost": total("lost"),
            "server.network.packets.retransmitted": total("retransmitted"),
        }


def __getattr__(name: str) -> object:
    # The entry-point class loads OpenTelemetry's instrumentation machinery (wrapt, semconv): only when asked for.
    if name == "NetworkInstrumentor":
        from instrumentations._instrumentors import NetworkInstrumentor

        return NetworkInstrumentor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
