"""The demo: a simulated multiplayer game server running a real 60 Hz loop with telemetry on.

Nothing is canned: players join and leave across maps, move, ping with a long-tailed distribution; packets flow at
the configured rates with latency, loss, retransmission and fragmentation; entities spawn and die; the tick does
(a little) real work in each phase and sleeps to hold its rate. Every catalog metric receives data. Defaults are the
spec's example load: 1,250 players, 60 Hz, 15,000 packets/s in and 12,000 out.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TextIO

from otel_telemetry.telemetry import Telemetry, setup_telemetry

_ENTITY_TYPES = ("Player", "NPC", "Monster", "Projectile", "Item")
_SYSTEMS = ("movement", "combat", "ai", "physics")


@dataclass
class DemoOptions:
    """What the demo simulates and where it serves ``/metrics``."""

    duration: float | None = None
    players: int = 1250
    tick_rate: float = 60.0
    packets_in: int = 15000
    packets_out: int = 12000
    maps: int = 4
    host: str = "127.0.0.1"
    port: int = 9090
    quiet: bool = False
    seed: int | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        checks: dict[str, bool] = {
            "players": self.players >= 0,
            "tick_rate": 0 < self.tick_rate <= 1000,
            "packets_in": self.packets_in >= 0,
            "packets_out": self.packets_out >= 0,
            "maps": self.maps >= 1,
            "port": 0 <= self.port <= 65535,
            "duration": self.duration is None or self.duration > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"demo option {name}: invalid value {getattr(self, name)!r}")


class _Spreader:
    """Spreads a per-second count evenly over ticks (carrying fractions), so totals are exact."""

    def __init__(self, per_second: float, tick_rate: float) -> None:
        self._per_tick = per_second / tick_rate
        self._carry = 0.0

    def take(self) -> int:
        self._carry += self._per_tick
        n = int(self._carry)
        self._carry -= n
        return n


class GameSimulation:
    """The simulated server state, advanced one tick at a time by :meth:`step`."""

    def __init__(self, telemetry: Telemetry, options: DemoOptions) -> None:
        self.t = telemetry
        self.options = options
        self.rng = random.Random(options.seed)
        self.maps = [f"map-{i + 1:03d}" for i in range(options.maps)]
        self.players: dict[str, tuple[str, float]] = {}
        self.next_player = 0
        self.entities: dict[tuple[str, str], int] = {}
        self.inbound = _Spreader(options.packets_in, options.tick_rate)
        self.outbound = _Spreader(options.packets_out, options.tick_rate)
        self.pings = _Spreader(options.players, options.tick_rate)  # one ping per player per second
        self.payload = bytes(self.rng.getrandbits(8) for _ in range(2048))
        for name in self.maps:
            telemetry.game.map_loaded(name)
        self.t.game.set_db_size(256 * 1024 * 1024)

    # -- players --------------------------------------------------------------------------------------------------
    def _join(self) -> None:
        pid = f"player-{self.next_player}"
        self.next_player += 1
        where = self.rng.choice(self.maps)
        self.players[pid] = (where, time.monotonic())
        self.t.game.player_joined(pid, where)
        self.t.network.connection_opened()
        self._spawn("Player", where, 1)

    def _leave(self, pid: str) -> None:
        where, since = self.players.pop(pid)
        self.t.game.player_left(pid)
        self.t.network.player_disconnected(pid)
        self.t.network.connection_closed(time.monotonic() - since)
        self._despawn("Player", where, 1)

    def _spawn(self, kind: str, where: str, n: int) -> None:
        self.entities[(kind, where)] = self.entities.get((kind, where), 0) + n
        self.t.game.entity_created(kind, where, n)
        self.t.game.components_added(3 * n)

    def _despawn(self, kind: str, where: str, n: int) -> None:
        n = min(n, self.entities.get((kind, where), 0))
        if n:
            self.entities[(kind, where)] -= n
            self.t.game.entity_removed(kind, where, n)
            self.t.game.components_removed(3 * n)

    # -- one tick ---------------------------------------------------------------------------------------------------
    def step(self) -> None:
        """One tick of game work, instrumented phase by phase."""
        t, rng = self.t, self.rng
        perf = t.performance
        with perf.tick():
            with perf.phase("network"):
                # Keep the population near the target with a little churn.
                target = self.options.players
                while len(self.players) < target and rng.random() < 0.9:
                    self._join()
                    if len(self.players) >= target:
                        break
                if self.players and rng.random() < 0.05:
                    self._leave(rng.choice(list(self.players)))
                received = t.network.packet_received
                latency = t.network.packet_latency
                for i in range(self.inbound.take()):
                    received(64 + (i * 37) % 900)
                    if i % 4 == 0:  # latency is measured on acknowledged packets, about one in four
                        latency(rng.lognormvariate(3.0, 0.35))
                sent = t.network.packet_sent
                for i in range(self.outbound.take()):
                    sent(96 + (i * 53) % 1100)
                if rng.random() < 0.5:
                    t.network.packet_lost(1)
                if rng.random() < 0.6:
                    t.network.packet_retransmitted(1)
                    t.network.ack_latency(rng.lognormvariate(3.6, 0.3))
                if rng.random() < 0.3:
                    t.network.packet_fragmented(rng.randint(2, 6))
                ids = list(self.players)
                ping = t.network.player_ping
                for _ in range(min(self.pings.take(), len(ids))):
                    ping(rng.choice(ids), rng.lognormvariate(math.log(45.0), 0.3))
            with perf.phase("systems"):
                for system in _SYSTEMS:
                    with t.game.system(system):
                        sum(range(200))
            with perf.phase("entities"):
                where = rng.choice(self.maps)
                kind = rng.choice(_ENTITY_TYPES[1:])
                if rng.random() < 0.5:
                    self._spawn(kind, where, rng.randint(1, 4))
                else:
                    self._despawn(kind, where, rng.randint(1, 4))
                if self.players and rng.random() < 0.02:
                    pid = rng.choice(list(self.players))
                    new_map = rng.choice(self.maps)
                    self.players[pid] = (new_map, self.players[pid][1])
                    t.game.player_moved(pid, new_map)
            with perf.phase("ecs"):
                start = time.perf_counter()
                sorted(self.entities.values())
                t.game.ecs_query(time.perf_counter() - start)
                t.game.allocation(rng.randint(0, 5))
            with perf.phase("aoi"):
                t.game.aoi_update(len(self.maps) * 4)
                for _ in range(4):
                    t.game.spatial_cell(rng.randint(0, 40))
                t.game.collision_test(hit=False, n=rng.randint(20, 60))
                t.game.collision_test(hit=True, n=rng.randint(0, 3))
            with perf.phase("database"):
                if rng.random() < 0.25:
                    t.game.db_query(rng.lognormvariate(math.log(0.002), 0.5))
                    if rng.random() < 0.9:
                        t.game.cache_hit()
                    else:
                        t.game.cache_miss()
            with perf.phase("serialization"):
                blob = self.payload[: 256 + rng.randint(0, 1024)]
            with perf.phase("compression"):
                packed = zlib.compress(blob, 1)
            with perf.phase("encryption"):
                bytes(b ^ 0x5A for b in packed[:128])


def _summary(t: Telemetry) -> str:
    perf = t.performance
    tick = perf.histogram_state("server.tick.duration")
    p95 = tick.window.quantile(0.95) if tick is not None else None
    rate = perf.tick_rate
    hw = t.hardware.sample() if t.hardware is not None else None
    cpu = hw.cpu_percent if hw is not None else None
    players = t.game.snapshot()["active_players"]
    pin, pout = t.network.rate("packets_in"), t.network.rate("packets_out")

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    return (
        f"tick {fmt(rate, '5.1f')} fps  p95 tick {fmt(p95 and p95 * 1000, '5.2f')} ms  players {players:5d}  "
        f"packets/s in {fmt(pin, '6.0f')} out {fmt(pout, '6.0f')}  cpu {fmt(cpu, '5.1f')}%"
    )


def run_loop(
    sim: GameSimulation,
    tick_rate: float,
    stop: threading.Event,
    duration: float | None,
    on_second: Callable[[], None] | None = None,
) -> int:
    """Run ticks at ``tick_rate`` until ``stop`` is set or ``duration`` passes; returns ticks run."""
    period = 1.0 / tick_rate
    start = time.perf_counter()
    next_tick = start
    next_report = start + 1.0
    ticks = 0
    while not stop.is_set():
        now = time.perf_counter()
        if duration is not None and now - start >= duration:
            break
        sim.step()
        ticks += 1
        now = time.perf_counter()
        if on_second is not None and now >= next_report:
            next_report += 1.0
            on_second()
        next_tick += period
        delay = next_tick - time.perf_counter()
        if delay > 0:
            stop.wait(delay)
        elif delay < -period * 5:
            next_tick = time.perf_counter()  # fell far behind: do not try to catch up with a burst
    return ticks


def demo_telemetry(options: DemoOptions) -> Telemetry:
    """The demo server's telemetry: /metrics on ``options.host:options.port``, its target tick rate."""
    return setup_telemetry(
        server_id="demo-server-001",
        service_name="otel-telemetry-demo",
        enable_prometheus_endpoint=True,
        prometheus_host=options.host,
        prometheus_port=options.port,
        target_tick_rate=options.tick_rate,
    )


def run_demo(options: DemoOptions) -> int:
    """Run the demo; returns the process exit code."""
    options.validate()
    out = options.out
    try:
        telemetry = demo_telemetry(options)
    except OSError as error:
        print(
            f"otel-telemetry demo: cannot serve /metrics on {options.host}:{options.port} ({error.strerror or error}); "
            "pass --port 0 for any free port, or --port N",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_signal) if in_main_thread else None
    try:
        print(
            f"otel-telemetry demo: {options.players} players, {options.tick_rate:g} Hz, "
            f"{options.packets_in}+{options.packets_out} packets/s; metrics at {telemetry.prometheus_url} "
            "(Ctrl-C to stop)",
            file=out,
            flush=True,
        )
        sim = GameSimulation(telemetry, options)
        report = None if options.quiet else (lambda: print(_summary(telemetry), file=out, flush=True))
        run_loop(sim, options.tick_rate, stop, options.duration, report)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        telemetry.shutdown(timeout=5.0)
        print("otel-telemetry demo: stopped", file=out, flush=True)
    return 0
