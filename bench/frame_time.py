"""Frame-time benchmark: how late a 60 Hz game loop's ticks start because of telemetry's background work.

Issue "telemetry must never cost the game loop a frame". A tick's *lateness* is its actual start minus its scheduled
start, the schedule being ``t0 + k/60``. After a tick overruns the schedule does not skip (no resync): the next ticks
start at once until the loop has caught up, so lateness measures the cumulative delay the game sees.

The loop, identical in every scenario: 60 Hz; each tick does 4 ms of pure-Python CPU work (a fixed number of
iterations of an arithmetic loop, calibrated once by the parent process and passed to every scenario, so that the
work is the same everywhere and a tick whose GIL is taken away really takes longer), then sleeps until the next
scheduled tick. Each scenario runs in its own subprocess, back to back in one invocation (same machine conditions):

1. ``baseline``: the loop alone, no telemetry call at all (and no scraper).
2. ``telemetry``: ``setup_telemetry(...)`` with ``/metrics`` on 127.0.0.1, OTLP/HTTP and the API principal pointed
   at local receivers, alerts and health on (defaults), and the spec's load: 1,250 players joined over 4 maps,
   per tick 250 ``packet_received`` + 200 ``packet_sent`` (15k + 12k packets/s), 21 ``player_ping`` cycling over
   every player, ``performance.tick()`` around the tick, ``phase("network")``/``phase("systems")`` inside.
3. ``peer``: prometheus_client alone with as many series as the telemetry scenario's ``/metrics`` (gauges, counters
   and histograms in the same proportion), updated by the loop in a similar proportion, served by
   ``prometheus_client.start_http_server``.

Telemetry and peer are scraped at 1 Hz (``--scrape-interval``) by a real HTTP client in ONE helper subprocess (so
that it does not compete for the game process's GIL), which also runs the OTLP receiver (``POST
/v1/metrics|traces|logs`` -> 200, empty protobuf body) and the API principal receiver (``POST /api/v1/telemetry``,
``/api/v1/alerts`` -> 200) and counts their requests. Per scenario: lateness p50/p99/p99.9/max, tick duration, and
the process CPU not spent by the game thread (``process_time`` minus the game thread's ``thread_time``: telemetry's
background CPU, % of one core), split by thread where Linux allows it. For telemetry also: scrape wall time and size
as seen by the client, series count, and the CPU of one scrape measured in the game process with the loop paused
(see :func:`scrape_cpu`).

Two more sections, each in fresh subprocesses: (a) ``import otel_telemetry`` + ``setup_telemetry(...)`` wall time
and max RSS (median of 5) against ``python -c pass``, measured twice: *installed* (every module's bytecode cached,
as after ``pip install``, which compiles it) and *compiling* (this package's own modules compiled at every start,
as in a checkout run with ``PYTHONDONTWRITEBYTECODE=1``); both use a private bytecode cache
(``PYTHONPYCACHEPREFIX`` in a temporary folder), so that the figures do not depend on what an earlier run left in
the tree; (b) ``telemetry.collect()`` and render cost per series at
1k, 10k and 100k series, grown through the statsd-style facade (distinct tag values, ``attribute_limit`` raised) and
through per-player pings (``max_tracked_players`` raised, ``export_player_series`` on when the SDK has it; without it
players are not exported series and collection is reported per player). The render is one HTTP GET of ``/metrics``
(no private name is used anywhere: whatever the exposition does inside, that is what a scrape costs).

Goals (printed next to the figures, ✔/✘): lateness p99 <= baseline + 0.5 ms and max <= baseline + 2 ms, both better
than the peer; one scrape <= 1 ms CPU; background <= 1% of one core; import + setup <= 150 ms and RSS <= 40 MB;
per-series collection and render cost within 2x from 1k to 100k series.

Run: ``python bench/frame_time.py [--seconds 20] [--rounds 3] [--quick]``; ends with one JSON line
``{"bench": "frame_time", ...}``.
Internal roles of the same script: ``--scenario X``, ``--helper``, ``--scaling PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import importlib.util
import json
import math
import os
import queue
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

TICK_RATE = 60.0
WORK_SECONDS = 0.004
PLAYERS = 1250
MAPS = 4
PACKETS_IN_PER_TICK = 250  # 15,000 packets/s
PACKETS_OUT_PER_TICK = 200  # 12,000 packets/s
PINGS_PER_TICK = 21  # 1,260 pings/s: every player about once a second
NETWORK_SHARE = 0.25  # share of the tick's work done inside phase("network"); the rest in phase("systems")
SCRAPE_INTERVAL = 1.0
SCRAPE_CPU_ROUNDS = 20
DEFAULT_PEER_SERIES = 2100
SCALING_SIZES = (1_000, 10_000, 100_000)
SCALING_LIMIT_SECONDS = 60.0
FACADE_TAGS_PER_NAME = 1_000  # below OpenTelemetry's default cardinality limit (2,000 attribute sets per metric)
PEER_BUCKETS = (
    0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.012, 0.014, 0.016, 0.01667, 0.018, 0.020, 0.025, 0.033, 0.050,
    0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip
_MESSAGE = "@@ "  # prefix of the protocol lines the subprocesses print on stdout

GOAL_P99_OVER_BASELINE_MS = 0.5
GOAL_MAX_OVER_BASELINE_MS = 2.0
GOAL_SCRAPE_CPU_MS = 1.0
GOAL_BACKGROUND_CORE_PERCENT = 1.0
GOAL_STARTUP_MS = 150.0
GOAL_RSS_MB = 40.0
GOAL_PER_SERIES_RATIO = 2.0


# -- small utilities ------------------------------------------------------------------------------------------------
def _emit(event: str, **fields: Any) -> None:
    """One protocol line for the parent process."""
    sys.stdout.write(_MESSAGE + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (nan when empty)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _distribution_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": _quantile(ordered, 0.5) * 1e3,
        "p99_ms": _quantile(ordered, 0.99) * 1e3,
        "p999_ms": _quantile(ordered, 0.999) * 1e3,
        "max_ms": (ordered[-1] if ordered else math.nan) * 1e3,
    }


def _clean_env() -> dict[str, str]:
    """The environment of every subprocess: ours, without settings that would change the SDK's configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GAME_TELEMETRY_", "PROMETHEUS_"))}


def _wait_stdin_line(timeout: float) -> str | None:
    """The next line on stdin, or None after ``timeout`` seconds or at EOF."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return None
    line = sys.stdin.readline()
    return line.strip() if line else None


def busy(iterations: int) -> int:
    """Pure-Python CPU work: ``iterations`` rounds of integer arithmetic (holds the GIL throughout)."""
    x = 1
    for i in range(iterations):
        x = (x * 31 + i) & 0xFFFFF
    return x


def calibrate(seconds: float = WORK_SECONDS) -> int:
    """Iterations of :func:`busy` that take ``seconds`` on this machine now (median of 21 runs of 20,000: on a
    shared machine the best run is far faster than a typical one)."""
    probe = 20_000
    took = []
    for _ in range(21):
        start = time.perf_counter()
        busy(probe)
        took.append(time.perf_counter() - start)
    return max(1, round(probe * seconds / statistics.median(took)))


# -- per-thread CPU -------------------------------------------------------------------------------------------------
_EPHEMERAL = re.compile(r"process_request_thread")


def _thread_label(thread: threading.Thread) -> str:
    return re.sub(r"^Thread-\d+ ?", "", thread.name) or thread.name


def _thread_clocks(exclude: set[int]) -> dict[int, tuple[str, int, float]]:
    """``ident -> (label, cpu clock id, cpu seconds now)`` of every long-lived live thread but ``exclude``.

    Uses ``pthread_getcpuclockid`` (Linux, ns resolution). Threads that serve one HTTP request each are skipped: they
    may end at any moment, and asking for the clock of a thread that has ended is undefined behaviour.
    """
    found: dict[int, tuple[str, int, float]] = {}
    getclock = getattr(time, "pthread_getcpuclockid", None)
    if getclock is None:
        return found
    for thread in threading.enumerate():
        ident = thread.ident
        if ident is None or ident in exclude or not thread.is_alive() or _EPHEMERAL.search(thread.name):
            continue
        try:
            clock = getclock(ident)
            found[ident] = (_thread_label(thread), clock, time.clock_gettime(clock))
        except OSError:
            continue
    return found


def _thread_cpu_since(before: dict[int, tuple[str, int, float]], exclude: set[int]) -> dict[str, float]:
    """CPU seconds per thread label since ``before`` (threads started since then: their whole CPU)."""
    now = _thread_clocks(exclude)
    spent: dict[str, float] = {}
    for ident, (label, _clock, cpu) in now.items():
        start = before[ident][2] if ident in before else 0.0
        spent[label] = spent.get(label, 0.0) + max(0.0, cpu - start)
    for ident, (label, clock, cpu) in before.items():
        if ident not in now:  # ended meanwhile: read its clock one last time if it still answers
            with contextlib.suppress(OSError):
                spent[label] = spent.get(label, 0.0) + max(0.0, time.clock_gettime(clock) - cpu)
    return spent


class GcPauses:
    """Garbage-collector pauses (any thread) recorded through ``gc.callbacks``: count, total and max per generation."""

    def __init__(self) -> None:
        self._started: dict[int, float] = {}
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.by_thread: dict[str, float] = {}
        self.active = False

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.active:
            return
        ident = threading.get_ident()
        if phase == "start":
            self._started[ident] = time.perf_counter()
        elif ident in self._started:
            took = time.perf_counter() - self._started.pop(ident)
            self.pauses[info["generation"]].append(took)
            name = _thread_label(threading.current_thread())
            self.by_thread[name] = self.by_thread.get(name, 0.0) + took

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for generation, pauses in self.pauses.items():
            out[f"gc_gen{generation}_count"] = len(pauses)
            out[f"gc_gen{generation}_total_ms"] = sum(pauses) * 1e3
            out[f"gc_gen{generation}_max_ms"] = max(pauses, default=0.0) * 1e3
        return out


# -- the game loop --------------------------------------------------------------------------------------------------
def run_loop(tick: Callable[[], None], warmup: float, seconds: float) -> dict[str, Any]:
    """Run ``tick`` at 60 Hz for ``warmup`` + ``seconds``; statistics of the measured ticks (after the warm-up).

    Lateness = actual start - (t0 + k/60), no resync after an overrun. CPU is measured over the measured window:
    ``process_time`` (all threads) and the calling (game) thread's ``thread_time``; their difference is the CPU of
    every other thread, i.e. telemetry's background work.
    """
    period = 1.0 / TICK_RATE
    n_warm = round(warmup * TICK_RATE)
    n_measured = round(seconds * TICK_RATE)
    lateness = [0.0] * n_measured
    durations = [0.0] * n_measured
    warm_max = 0.0
    me = {threading.get_ident()}
    perf, sleep = time.perf_counter, time.sleep
    gc_pauses = GcPauses()
    gc.callbacks.append(gc_pauses)

    def snapshot() -> tuple[float, float, float, float, dict[int, tuple[str, int, float]]]:
        return perf(), time.time(), time.process_time(), time.thread_time(), _thread_clocks(me)

    window_start = snapshot() if n_warm == 0 else None
    gc_pauses.active = n_warm == 0
    t0 = perf()
    for k in range(n_warm + n_measured):
        scheduled = t0 + k * period
        now = perf()
        if now < scheduled:
            sleep(scheduled - now)
        start = perf()
        tick()
        end = perf()
        if k >= n_warm:
            lateness[k - n_warm] = start - scheduled
            durations[k - n_warm] = end - start
        else:
            warm_max = max(warm_max, start - scheduled)
            if k == n_warm - 1:  # the measured window starts now, before the first measured tick's sleep
                window_start = snapshot()
                gc_pauses.active = True
    window_end = perf(), time.time(), time.process_time(), time.thread_time()
    gc_pauses.active = False
    gc.callbacks.remove(gc_pauses)
    assert window_start is not None
    threads = _thread_cpu_since(window_start[4], me)
    wall = window_end[0] - window_start[0]
    process_cpu = window_end[2] - window_start[2]
    game_cpu = window_end[3] - window_start[3]
    background = max(0.0, process_cpu - game_cpu)
    threads["(ended threads: HTTP request handlers, ...)"] = max(0.0, background - sum(threads.values()))
    return {
        "ticks": n_measured,
        "lateness_s": lateness,  # every measured tick, for pooling rounds
        "tick_duration_s": durations,
        "lateness": _distribution_ms(lateness),
        "tick_duration": _distribution_ms(durations),
        "late_ticks_over_1ms": sum(1 for x in lateness if x > 0.001),
        "warmup_max_lateness_ms": warm_max * 1e3,
        "window_wall_s": wall,
        "window_unix": [window_start[1], window_end[1]],
        "game_thread_core_percent": game_cpu / wall * 100,
        "background_core_percent": background / wall * 100,
        "threads_core_percent": {k: v / wall * 100 for k, v in sorted(threads.items(), key=lambda kv: -kv[1])},
        "gc": gc_pauses.summary(),
        "gc_by_thread_ms": {k: v * 1e3 for k, v in gc_pauses.by_thread.items()},
    }


def _split_work(iterations: int) -> tuple[int, int]:
    first = round(iterations * NETWORK_SHARE)
    return first, iterations - first


def _packet_sizes() -> tuple[list[int], list[int]]:
    return (
        [64 + (i * 37) % 900 for i in range(PACKETS_IN_PER_TICK)],
        [96 + (i * 53) % 1100 for i in range(PACKETS_OUT_PER_TICK)],
    )


def _ping_ms(i: int) -> float:
    return 25.0 + (i * 7919) % 600 / 10.0  # 25-85 ms, a different value for neighbouring players


# -- scenarios (each runs in its own subprocess) --------------------------------------------------------------------
def _finish_scenario(loop: dict[str, Any], extra: Callable[[], dict[str, Any]] | None = None) -> None:
    """Tell the parent the loop is done, wait until it has stopped the scraper, then do ``extra`` and report."""
    _emit("loop_done")
    _wait_stdin_line(60.0)
    result = dict(loop)
    if extra is not None:
        result.update(extra())
    _emit("result", **result)


def scenario_baseline(args: argparse.Namespace) -> None:
    """The loop with the same busy work and no telemetry at all."""
    n1, n2 = _split_work(args.work_iterations)

    def tick() -> None:
        busy(n1)
        busy(n2)

    _emit("ready", metrics_url=None)
    _finish_scenario(run_loop(tick, args.warmup, args.seconds))


def scenario_telemetry(args: argparse.Namespace) -> None:
    """The loop with otel_telemetry at the spec's load, scraped by the helper, exporting to its receivers."""
    from otel_telemetry import setup_telemetry

    telemetry = setup_telemetry(
        server_id="bench",
        enable_prometheus_endpoint=True,
        prometheus_host="127.0.0.1",
        prometheus_port=0,
        otlp_endpoint=f"http://127.0.0.1:{args.otlp_port}",
        api_endpoint=f"http://127.0.0.1:{args.api_port}",
        server_token="bench-token",
        api_send_interval=5.0,
    )
    maps = [f"map-{i + 1:03d}" for i in range(MAPS)]
    players = [f"p{i}" for i in range(PLAYERS)]
    for i, player in enumerate(players):
        telemetry.game.player_joined(player, maps[i % MAPS])
    for i, player in enumerate(players):  # every player has a ping from the start: the series count is stable
        telemetry.network.player_ping(player, _ping_ms(i))
    n1, n2 = _split_work(args.work_iterations)
    sizes_in, sizes_out = _packet_sizes()
    perf, network = telemetry.performance, telemetry.network
    received, sent, ping = network.packet_received, network.packet_sent, network.player_ping
    pings = [(players[i], _ping_ms(i)) for i in range(PLAYERS)]
    cursor = [0]

    def tick() -> None:
        with perf.tick():
            with perf.phase("network"):
                busy(n1)
                for nbytes in sizes_in:
                    received(nbytes)
                for nbytes in sizes_out:
                    sent(nbytes)
                j = cursor[0]
                for m in range(PINGS_PER_TICK):
                    player, ms = pings[(j + m) % PLAYERS]
                    ping(player, ms)
                cursor[0] = (j + PINGS_PER_TICK) % PLAYERS
            with perf.phase("systems"):
                busy(n2)

    _emit("ready", metrics_url=telemetry.prometheus_url)
    loop = run_loop(tick, args.warmup, args.seconds)

    def extra() -> dict[str, Any]:
        found: dict[str, Any] = {"scrape_cpu": scrape_cpu(telemetry, args.scrape_rounds)}
        start = time.perf_counter()
        telemetry.shutdown(timeout=5.0)
        found["shutdown_s"] = time.perf_counter() - start
        found["threads_after_shutdown"] = sorted(t.name for t in threading.enumerate() if t.is_alive())
        return found

    _finish_scenario(loop, extra)


def _frame_sequence(telemetry: Any) -> int | None:
    frame = telemetry.latest_frame()
    return getattr(frame, "sequence", None)


def scrape_cpu(telemetry: Any, rounds: int) -> dict[str, Any]:
    """CPU of one ``/metrics`` scrape in the game process, with the game loop paused and the helper not scraping.

    Each round, on one in-process client thread: ``telemetry.collect()`` takes a new frame, 0.1 s pass (the frame's
    OTLP export runs meanwhile), then two HTTP GETs of ``/metrics``: the first after a frame translates and renders
    it (what a 1 Hz scraper pays with the default 1 s collection interval), the second serves the same frame again.
    For each GET: ``time.process_time()`` delta (every thread of the process, including the client's own urllib
    work and whatever else ran meanwhile) and the server-side share = that delta minus the client thread's
    ``thread_time`` minus the CPU of every other long-lived thread (per-thread clocks), i.e. the CPU of the thread
    that served the request. A round in which a periodic collection replaced the frame between the two GETs is
    done again.
    """
    url = telemetry.prometheus_url
    found: dict[str, list[float]] = {"first_process": [], "first_server": [], "again_process": [], "again_server": []}
    details: dict[str, Any] = {"rounds": rounds, "redone": 0}

    def get() -> tuple[float, float, int]:
        me = {threading.get_ident()}
        others = _thread_clocks(me)
        p0, c0 = time.process_time(), time.thread_time()
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
        p1, c1 = time.process_time(), time.thread_time()
        other = sum(_thread_cpu_since(others, me).values())
        return p1 - p0, max(0.0, (p1 - p0) - (c1 - c0) - other), len(body)

    def client() -> None:
        done = attempts = 0
        while done < rounds and attempts < 3 * rounds:
            attempts += 1
            telemetry.collect()
            time.sleep(0.1)
            sequence = _frame_sequence(telemetry)
            first = get()
            second = get()
            if sequence is not None and _frame_sequence(telemetry) != sequence:
                details["redone"] += 1
                continue
            found["first_process"].append(first[0])
            found["first_server"].append(first[1])
            found["again_process"].append(second[0])
            found["again_server"].append(second[1])
            details["body_bytes"] = first[2]
            done += 1

    worker = threading.Thread(target=client, name="bench-scrape-client")
    worker.start()
    worker.join(120)
    for key, values in found.items():
        details[f"{key}_ms_mean"] = statistics.fmean(values) * 1e3 if values else math.nan
        details[f"{key}_ms_max"] = max(values) * 1e3 if values else math.nan
    details["per_thread_clocks"] = hasattr(time, "pthread_getcpuclockid")
    return details


def _peer_shape(series: int, mix: dict[str, int] | None) -> dict[str, int]:
    """Lines of each kind the peer's registry should expose: the telemetry scrape's mix scaled to ``series``."""
    mix = mix or {"gauge": 1290, "counter": 20, "histogram": 510}
    total = sum(mix.values()) or 1
    gauges = round(series * mix.get("gauge", 0) / total)
    counters = round(series * mix.get("counter", 0) / total)
    return {"gauge": gauges, "counter": counters, "histogram": max(0, series - gauges - counters)}


def scenario_peer(args: argparse.Namespace) -> None:
    """The loop with prometheus_client alone: a registry of as many series, updated alike, served over HTTP."""
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        disable_created_metrics,
        start_http_server,
    )

    disable_created_metrics()  # type: ignore[no-untyped-call]
    # our /metrics has no _created samples either: compare the same number of lines
    shape = _peer_shape(args.series, json.loads(args.mix) if args.mix else None)
    registry = CollectorRegistry()
    per_hist = len(PEER_BUCKETS) + 3  # buckets, +Inf, _sum, _count
    hist = dict(buckets=PEER_BUCKETS, registry=registry)
    tick_hist = Histogram("peer_tick_duration_seconds", "tick", **hist)  # type: ignore[arg-type]
    phase_hist = Histogram("peer_tick_phase_duration_seconds", "phase", ["phase"], **hist)  # type: ignore[arg-type]
    ping_hist = Histogram("peer_player_ping_seconds", "ping", **hist)  # type: ignore[arg-type]
    network_phase, systems_phase = phase_hist.labels("network"), phase_hist.labels("systems")
    other_hist = Histogram("peer_histogram_seconds", "other", ["name"], **hist)  # type: ignore[arg-type]
    other_hists = [other_hist.labels(f"h{i}") for i in range(max(0, round(shape["histogram"] / per_hist) - 4))]
    counter = dict(registry=registry)
    packets_in = Counter("peer_packets_received", "in", **counter)  # type: ignore[arg-type]
    bytes_in = Counter("peer_bytes_received", "in", **counter)  # type: ignore[arg-type]
    packets_out = Counter("peer_packets_sent", "out", **counter)  # type: ignore[arg-type]
    bytes_out = Counter("peer_bytes_sent", "out", **counter)  # type: ignore[arg-type]
    other_counter = Counter("peer_counter", "other", ["name"], registry=registry)
    other_counters = [other_counter.labels(f"c{i}") for i in range(max(0, shape["counter"] - 4))]
    ping_gauge = Gauge("peer_player_ping_last_seconds", "ping", ["player_id"], registry=registry)
    players = [ping_gauge.labels(f"p{i}") for i in range(min(PLAYERS, shape["gauge"]))]
    for i, child in enumerate(players):
        child.set(_ping_ms(i) / 1e3)
    other_gauge = Gauge("peer_gauge", "other", ["name"], registry=registry)
    other_gauges = [other_gauge.labels(f"g{i}") for i in range(max(0, shape["gauge"] - len(players)))]
    for gauge_child in other_gauges:
        gauge_child.set(1.0)
    for hist_child in other_hists:
        hist_child.observe(0.01)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    n1, n2 = _split_work(args.work_iterations)
    sizes_in, sizes_out = _packet_sizes()
    pings = [(players[i % len(players)], _ping_ms(i) / 1e3) for i in range(PLAYERS)] if players else []
    cursor = [0]

    def tick() -> None:
        with tick_hist.time():
            with network_phase.time():
                busy(n1)
                for nbytes in sizes_in:
                    packets_in.inc()
                    bytes_in.inc(nbytes)
                for nbytes in sizes_out:
                    packets_out.inc()
                    bytes_out.inc(nbytes)
                j = cursor[0]
                for m in range(PINGS_PER_TICK if pings else 0):
                    child, seconds = pings[(j + m) % PLAYERS]
                    child.set(seconds)
                    ping_hist.observe(seconds)
                cursor[0] = (j + PINGS_PER_TICK) % PLAYERS
                if other_gauges:  # one of each other kind per tick, in turn
                    other_gauges[j % len(other_gauges)].set(j)
                if other_counters:
                    other_counters[j % len(other_counters)].inc()
                if other_hists:
                    other_hists[j % len(other_hists)].observe(0.01)
            with systems_phase.time():
                busy(n2)

    _emit("ready", metrics_url=f"http://127.0.0.1:{server.server_port}/metrics", shape=shape)
    loop = run_loop(tick, args.warmup, args.seconds)

    def extra() -> dict[str, Any]:
        server.shutdown()
        server.server_close()
        return {"shape": shape}

    _finish_scenario(loop, extra)


# -- the helper: 1 Hz scraper + OTLP and API principal receivers (its own process) --------------------------------
_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)")
_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_total", "_gcount", "_gsum", "_info")


def sample_mix(text: str) -> tuple[int, dict[str, int]]:
    """Sample lines of a text exposition, and how many belong to each metric type."""
    types: dict[str, str] = {}
    mix: dict[str, int] = {}
    lines = 0
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            found = _TYPE_LINE.match(line)
            if found:
                types[found.group(1)] = found.group(2)
            continue
        lines += 1
        name = line.split("{", 1)[0].split(" ", 1)[0]
        kind = types.get(name)
        if kind is None:
            for suffix in _SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in types:
                    kind = types[name[: -len(suffix)]]
                    break
        kind = kind or "untyped"
        mix[kind] = mix.get(kind, 0) + 1
    return lines, mix


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts: ClassVar[dict[str, list[int]]] = {}  # path -> [requests, bytes], for the whole helper process
    lock: ClassVar[threading.Lock] = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if not size:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        with self.lock:
            entry = self.counts.setdefault(path, [0, 0])
            entry[0] += 1
            entry[1] += len(body)
        if path.startswith("/v1/"):
            content_type, answer = "application/x-protobuf", b""  # an empty Export*ServiceResponse
        else:
            content_type, answer = "application/json", b"{}"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _Scraper:
    """Scrapes one URL at 1 Hz (on schedule, no resync) until stopped; records wall time and size per scrape."""

    def __init__(self, url: str, like_prometheus: bool, interval: float = SCRAPE_INTERVAL) -> None:
        self.url = url
        self.interval = interval
        self.headers = (
            {"Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
             "Accept-Encoding": "gzip"}
            if like_prometheus
            else {}
        )  # fmt: skip
        self.scrapes: list[dict[str, Any]] = []
        self.last_text = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            started_unix, start = time.time(), time.perf_counter()
            entry: dict[str, Any] = {"unix": started_unix}
            try:
                request = urllib.request.Request(self.url, headers=self.headers)
                with urllib.request.urlopen(request, timeout=10) as response:
                    raw = response.read()
                    encoding = response.headers.get("Content-Encoding", "")
                entry["wall_s"] = time.perf_counter() - start
                entry["bytes"] = len(raw)
                body = gzip.decompress(raw) if encoding == "gzip" else raw
                entry["body_bytes"] = len(body)
                self.last_text = body.decode("utf-8", "replace")
            except Exception as error:  # a failed scrape is a figure too
                entry["wall_s"] = time.perf_counter() - start
                entry["error"] = repr(error)
            self.scrapes.append(entry)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def helper_main(args: argparse.Namespace) -> None:
    """Receivers on 127.0.0.1 port 0 (ports printed), then commands on stdin: ``scrape URL``, ``stop``; EOF ends."""
    threading.Timer(args.timeout, lambda: os._exit(3)).start()  # hard timeout, whatever happens
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Receiver) for _ in range(2)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    _emit("ports", otlp_port=servers[0].server_port, api_port=servers[1].server_port)
    scraper: _Scraper | None = None
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "scrape" and scraper is None:
            scraper = _Scraper(argument, args.scrape_like_prometheus, args.scrape_interval)
        elif command == "stop":
            if scraper is not None:
                scraper.stop()
            lines, mix = sample_mix(scraper.last_text) if scraper is not None else (0, {})
            with _Receiver.lock:
                received = {path: {"requests": n, "bytes": b} for path, (n, b) in _Receiver.counts.items()}
            _emit(
                "stats",
                scrapes=scraper.scrapes if scraper is not None else [],
                sample_lines=lines,
                mix=mix,
                received=received,
            )
    for server in servers:
        server.shutdown()
    os._exit(0)


# -- scaling: collection and render cost per series (its own process per path) -------------------------------------
def scaling_main(args: argparse.Namespace) -> None:
    """Grow series through ``args.scaling`` (``facade`` or ``players``) to each size; time collect and render."""
    from otel_telemetry import setup_telemetry

    path = args.scaling
    sizes = [int(s) for s in args.sizes.split(",")]
    settings: dict[str, Any] = {
        "server_id": "bench",
        "enable_prometheus_endpoint": True,
        "prometheus_host": "127.0.0.1",
        "prometheus_port": 0,
        "collection_interval": 3600.0,  # no periodic collection in the way: every collection here is ours
        "attribute_limit": FACADE_TAGS_PER_NAME,
        "max_tracked_players": max(sizes) + PLAYERS,
    }
    if path == "facade":
        knob = (
            f"metrics.gauge(f'g{{i // {FACADE_TAGS_PER_NAME}}}', 1.0, tags={{'k': str(i % {FACADE_TAGS_PER_NAME})}}), "
            f"attribute_limit={FACADE_TAGS_PER_NAME} (distinct tag values, {FACADE_TAGS_PER_NAME:,} per name: "
            "OpenTelemetry's default cardinality limit is 2,000 per metric)"
        )
        telemetry = setup_telemetry(**settings)
    else:
        knob = f"network.player_ping(f'player-{{i}}', ms), max_tracked_players={max(sizes) + PLAYERS}"
        try:  # per-player series are exported only when asked (DESIGN: they stay in process by default)
            telemetry = setup_telemetry(**settings, export_player_series=True)
            knob += ", export_player_series=True"
        except TypeError:  # no such setting (yet): players then add no exported series, only in-process work
            telemetry = setup_telemetry(**settings)
            knob += " (no export_player_series setting: per-player series not exported)"
    # Rendered through /metrics itself (a public URL): whatever the exposition does internally, this is one scrape.
    url = telemetry.prometheus_url
    assert url is not None
    base_url = url.rsplit("/", 1)[0]

    def get(target: str) -> bytes:
        with urllib.request.urlopen(target, timeout=600) as response:
            return bytes(response.read())

    overhead = []
    for _ in range(20):  # the HTTP round trip alone, for context: a tiny route of the same server
        start = time.perf_counter()
        get(base_url + "/")
        overhead.append(time.perf_counter() - start)
    http_overhead_ms = statistics.median(overhead) * 1e3
    method = "HTTP GET /metrics (wall time, loopback round trip included)"
    grown = 0
    for size in sizes:
        _emit("size_start", size=size)
        started = time.perf_counter()
        if path == "facade":
            gauge = telemetry.metrics.gauge
            while grown < size:
                gauge(f"g{grown // FACADE_TAGS_PER_NAME}", 1.0, tags={"k": str(grown % FACADE_TAGS_PER_NAME)})
                grown += 1
        else:
            ping = telemetry.network.player_ping
            while grown < size:
                ping(f"player-{grown}", _ping_ms(grown))
                grown += 1
        grow_s = time.perf_counter() - started
        start = time.perf_counter()
        telemetry.collect()  # the first frame with the new series (creates their aggregations): timed apart
        first_collect = time.perf_counter() - start
        collects: list[float] = []
        renders: list[float] = []
        again: list[float] = []
        lines = 0
        timing_started = time.perf_counter()
        # At least ``repeats`` rounds, and more while they take under a second (small sizes: a stable median).
        while len(collects) < args.repeats or (time.perf_counter() - timing_started < 1.0 and len(collects) < 50):
            start = time.perf_counter()
            telemetry.collect()
            collects.append(time.perf_counter() - start)
            start = time.perf_counter()
            body = get(url)
            renders.append(time.perf_counter() - start)
            start = time.perf_counter()
            get(url)
            again.append(time.perf_counter() - start)
            lines = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
        elapsed = time.perf_counter() - started
        collect_s, render_s, again_s = (statistics.median(x) for x in (collects, renders, again))
        # Collection cost per exported series, or per player when the players did not become exported series.
        unit, units = ("series", lines) if path == "facade" or lines >= size else ("player", size)
        _emit(
            "size",
            size=size,
            series=lines,
            grow_s=grow_s,
            first_collect_s=first_collect,
            collect_s=collect_s,
            render_s=render_s,
            render_again_s=again_s,
            unit=unit,
            collect_us_per_unit=collect_s / units * 1e6,
            render_us_per_series=render_s / lines * 1e6,
            render_again_us_per_series=again_s / lines * 1e6,
            elapsed_s=elapsed,
            too_slow=elapsed > args.limit,
            render_method=method,
            http_overhead_ms=http_overhead_ms,
            knob=knob,
        )
        if elapsed > args.limit:
            break
    telemetry.shutdown(timeout=5.0)


# -- the parent: runs the subprocesses and reports -----------------------------------------------------------------
class ChildFailed(RuntimeError):
    """A subprocess ended, or did not answer in time."""


class Child:
    """A subprocess speaking the ``@@ {json}`` line protocol on stdout; killed by its pid on any timeout."""

    def __init__(self, name: str, argv: list[str], workdir: str) -> None:
        self.name = name
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=_clean_env()
        )
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"read-{name}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(_MESSAGE):
                self._messages.put(json.loads(line[len(_MESSAGE) :]))
        self._messages.put(None)

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next message ``event`` (others are skipped); kills the child and raises on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                tail = self.stderr_tail()
                raise ChildFailed(f"{self.name}: no {event!r} within {timeout:.0f} s (killed){tail}") from None
            if message is None:
                self._messages.put(None)
                self.proc.wait(5)
                raise ChildFailed(f"{self.name}: exited ({self.proc.returncode}) before {event!r}{self.stderr_tail()}")
            if message.get("event") == event:
                return message

    def send(self, line: str) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def stderr_lines(self) -> list[str]:
        self._stderr.flush()
        with open(self.stderr_path) as f:
            return f.read().splitlines()

    def stderr_tail(self, n: int = 15) -> str:
        lines = self.stderr_lines()
        return ("\n  stderr: " + "\n  ".join(lines[-n:])) if lines else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL to this child's own pid
            self.proc.wait(10)

    def close(self, timeout: float = 30.0) -> None:
        """Close stdin, wait up to ``timeout`` s for the exit, kill otherwise."""
        with contextlib.suppress(BrokenPipeError, OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._stderr.close()


def _self_argv(*extra: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), *extra]


def run_scenario(
    name: str,
    args: argparse.Namespace,
    iterations: int,
    workdir: str,
    series: int = 0,
    mix: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Run one scenario's game subprocess (and, except for the baseline, the helper); its figures."""
    budget = args.seconds + args.warmup + 90.0
    common = ["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--work-iterations", str(iterations)]
    helper: Child | None = None
    game: Child | None = None
    try:
        extra: list[str] = []
        if name != "baseline":
            helper_argv = _self_argv("--helper", "--timeout", str(budget + 60))
            if args.scrape_like_prometheus:
                helper_argv.append("--scrape-like-prometheus")
            helper_argv += ["--scrape-interval", str(args.scrape_interval)]
            helper = Child(f"{name}-helper", helper_argv, workdir)
            ports = helper.expect("ports", 30)
            extra = ["--otlp-port", str(ports["otlp_port"]), "--api-port", str(ports["api_port"])]
        if name == "peer":
            extra += ["--series", str(series), "--mix", json.dumps(mix) if mix else ""]
        if name == "telemetry":
            extra += ["--scrape-rounds", str(args.scrape_rounds)]
        game = Child(name, _self_argv("--scenario", name, *common, *extra), workdir)
        ready = game.expect("ready", 120)
        if helper is not None and ready.get("metrics_url"):
            helper.send(f"scrape {ready['metrics_url']}")
        game.expect("loop_done", budget)
        stats: dict[str, Any] = {}
        if helper is not None:
            helper.send("stop")
            stats = helper.expect("stats", 30)
        game.send("go")
        result = game.expect("result", 180)
        result["helper"] = stats
        result["ready"] = ready
        result["stderr"] = game.stderr_lines()
        game.close(30)
        return result
    finally:
        for child in (game, helper):
            if child is not None:
                child.close(10)


def _summarise_scrapes(result: dict[str, Any]) -> dict[str, Any]:
    """Scrape figures of the measured window (scrapes started during it), plus the first scrape of the run."""
    scrapes = result.get("helper", {}).get("scrapes", [])
    start, end = result["window_unix"]
    inside = [s for s in scrapes if start <= s["unix"] <= end and "error" not in s]
    walls = [s["wall_s"] * 1e3 for s in inside]
    return {
        "scrapes": len(inside),
        "scrape_errors": sum(1 for s in scrapes if "error" in s),
        "scrape_wall_ms_mean": statistics.fmean(walls) if walls else math.nan,
        "scrape_wall_ms_max": max(walls) if walls else math.nan,
        "scrape_bytes": inside[-1]["bytes"] if inside else 0,
        "scrape_body_bytes": inside[-1]["body_bytes"] if inside else 0,
        "first_scrape_wall_ms": scrapes[0]["wall_s"] * 1e3 if scrapes else math.nan,
        "series": result.get("helper", {}).get("sample_lines", 0),
        "mix": result.get("helper", {}).get("mix", {}),
    }


def _run_timed(argv: list[str], timeout: float, env: Mapping[str, str] | None = None) -> tuple[float, int, str]:
    """Run ``argv``; wall seconds from spawn to exit, max RSS (KiB, from ``wait4``'s rusage), stdout."""
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=dict(env or _clean_env()))
        killer = threading.Timer(timeout, lambda: os.kill(proc.pid, 9))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return wall, usage.ru_maxrss, out.read()


_SETUP_PROBE = """\
import time
t0 = time.perf_counter()
import otel_telemetry
t1 = time.perf_counter()
handle = otel_telemetry.setup_telemetry(enable_prometheus_endpoint=True, prometheus_port=0, prometheus_host="127.0.0.1")
t2 = time.perf_counter()
import json, os, resource
rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"import_s": t1 - t0, "setup_s": t2 - t1, "rss_kib": rss_kib}))
os._exit(0)  # the process wall time stops here: shutdown is not part of the figure
"""

#: Bytecode conditions of the startup section: (prefix of its figures' keys, label, whether this project's own
#: modules compile at every start). The installed figures, unprefixed, are the goal's.
STARTUP_CONDITIONS = (
    ("", "installed (all bytecode cached, as after pip install)", False),
    ("compiling_", "compiling (this project's modules compiled at every start)", True),
)


def _own_package_folders() -> list[str]:
    """The folders of this project's packages (``otel_telemetry``, ``instrumentations``), found without importing."""
    folders = []
    for name in ("otel_telemetry", "instrumentations"):
        spec = importlib.util.find_spec(name)
        if spec is not None:
            folders.extend(os.path.realpath(f) for f in spec.submodule_search_locations or ())
    return folders


def _bytecode_env(prefix: str, *, write: bool) -> dict[str, str]:
    """The environment with a private bytecode cache at ``prefix``, written to only when ``write``."""
    env = {k: v for k, v in _clean_env().items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = prefix
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def startup_section(runs: int) -> dict[str, float]:
    """Median of ``runs`` fresh subprocesses each, per bytecode condition (see :data:`STARTUP_CONDITIONS`):
    ``python -c pass`` and import + setup (see :data:`_SETUP_PROBE`), keyed with the condition's prefix."""
    found: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="frame-time-pycache-") as prefix:
        # One start with writing allowed fills the cache with every module that import + setup loads.
        _run_timed([sys.executable, "-c", _SETUP_PROBE], 120, _bytecode_env(prefix, write=True))
        _run_timed([sys.executable, "-c", "pass"], 60, _bytecode_env(prefix, write=True))
        env = _bytecode_env(prefix, write=False)
        for key, _label, compiling in STARTUP_CONDITIONS:
            if compiling:  # drop this project's own bytecode: every start compiles it again, nothing else
                for folder in _own_package_folders():
                    shutil.rmtree(os.path.join(prefix, folder.lstrip(os.sep)), ignore_errors=True)
            passes, probes = [], []
            for _ in range(runs):  # alternated, so that both see the same conditions
                passes.append(_run_timed([sys.executable, "-c", "pass"], 60, env))
                wall, rss, out = _run_timed([sys.executable, "-c", _SETUP_PROBE], 120, env)
                probes.append((wall, rss, json.loads(out.strip().splitlines()[-1])))
            found.update(
                {
                    f"{key}pass_wall_ms": statistics.median(p[0] for p in passes) * 1e3,
                    f"{key}pass_rss_mb": statistics.median(p[1] for p in passes) / 1024,
                    f"{key}process_wall_ms": statistics.median(p[0] for p in probes) * 1e3,
                    f"{key}process_rss_mb": statistics.median(p[1] for p in probes) / 1024,
                    f"{key}import_ms": statistics.median(p[2]["import_s"] for p in probes) * 1e3,
                    f"{key}setup_ms": statistics.median(p[2]["setup_s"] for p in probes) * 1e3,
                    f"{key}import_setup_ms": statistics.median(p[2]["import_s"] + p[2]["setup_s"] for p in probes)
                    * 1e3,
                    f"{key}self_rss_mb": statistics.median(p[2]["rss_kib"] for p in probes) / 1024,
                }
            )
    return found


def scaling_section(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """Run each growth path in its own subprocess; a size that does not finish within the limit is too slow."""
    found: dict[str, Any] = {}
    sizes = ",".join(str(s) for s in SCALING_SIZES)
    for path in ("facade", "players"):
        rows: list[dict[str, Any]] = []
        argv = _self_argv("--scaling", path, "--sizes", sizes, "--repeats", str(args.repeats))
        child = Child(f"scaling-{path}", [*argv, "--limit", str(SCALING_LIMIT_SECONDS)], workdir)
        try:
            child.expect("size_start", 120)
            for size in SCALING_SIZES:
                try:
                    row = child.expect("size", SCALING_LIMIT_SECONDS + 60)
                except ChildFailed as error:
                    rows.append({"size": size, "too_slow": True, "error": str(error).splitlines()[0]})
                    break
                rows.append(row)
                if row["too_slow"]:
                    break
                if size != SCALING_SIZES[-1]:
                    child.expect("size_start", 30)
        except ChildFailed as error:
            rows.append({"size": None, "error": str(error)})
        finally:
            child.close(30)
        found[path] = rows
    return found


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _mark(ok: bool | None) -> str:
    return "?" if ok is None else ("✔" if ok else "✘")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per scenario (default 20)")
    parser.add_argument("--quick", action="store_true", help="5 s per scenario, fewer repeats (a smoke run)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of loop before measuring (default 2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds of the scenarios, interleaved, whose ticks are pooled (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--scrape-like-prometheus", action="store_true", help="scrape with Prometheus' Accept and gzip headers"
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=SCRAPE_INTERVAL,
        help="seconds between scrapes (default 1, the issue's goals; 15 is Prometheus' usual)",
    )
    parser.add_argument("--scenarios", default="baseline,telemetry,peer", help=argparse.SUPPRESS)
    parser.add_argument("--skip-startup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-scaling", action="store_true", help=argparse.SUPPRESS)
    # Internal roles (the parent invokes this script again with these).
    parser.add_argument("--scenario", choices=("baseline", "telemetry", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scaling", choices=("facade", "players"), help=argparse.SUPPRESS)
    parser.add_argument("--work-iterations", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--otlp-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--api-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--series", type=int, default=DEFAULT_PEER_SERIES, help=argparse.SUPPRESS)
    parser.add_argument("--mix", default="", help=argparse.SUPPRESS)
    parser.add_argument("--scrape-rounds", type=int, default=SCRAPE_CPU_ROUNDS, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=float, default=SCALING_LIMIT_SECONDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 20.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.helper:
        helper_main(args)
        return 0
    if args.scenario:
        if not args.work_iterations:
            args.work_iterations = calibrate()
        {"baseline": scenario_baseline, "telemetry": scenario_telemetry, "peer": scenario_peer}[args.scenario](args)
        return 0
    if args.scaling:
        scaling_main(args)
        return 0
    return orchestrate(args)


def orchestrate(args: argparse.Namespace) -> int:
    """The benchmark proper: every section, the table, the goals and the JSON line."""
    if args.quick:
        args.repeats = 1
    iterations = calibrate()
    check = time.perf_counter()
    busy(iterations)
    work_ms = (time.perf_counter() - check) * 1e3
    rounds: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="frame_time-") as workdir:
        for _round in range(args.rounds):  # interleaved: each round runs every scenario, so drifts hit them alike
            for name in args.scenarios.split(","):
                try:
                    if name == "peer":
                        shape = (rounds.get("telemetry") or [{}])[0].get("scrape", {})
                        series = shape.get("series") or DEFAULT_PEER_SERIES
                        result = run_scenario(name, args, iterations, workdir, series, shape.get("mix") or None)
                    else:
                        result = run_scenario(name, args, iterations, workdir)
                    if name != "baseline":
                        result["scrape"] = _summarise_scrapes(result)
                    rounds.setdefault(name, []).append(result)
                except ChildFailed as error:
                    failures.append(str(error))
        results = {name: pool_rounds(each) for name, each in rounds.items()}
        startup = {} if args.skip_startup else startup_section(5)
        scaling = {} if args.skip_scaling else scaling_section(args, workdir)
    report(args, iterations, work_ms, results, startup, scaling, failures)
    return 1 if failures else 0


def pool_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's rounds as one result: the ticks of every round pooled (percentiles of all of them), CPU
    shares averaged, counts summed, maxima kept; the other details (scrape sizes, receivers, stderr) of the last
    round; ``rounds`` keeps each round's own lateness p99 and max and background share."""
    pooled = dict(rounds[-1])
    lateness = [x for r in rounds for x in r["lateness_s"]]
    durations = [x for r in rounds for x in r["tick_duration_s"]]
    pooled["ticks"] = len(lateness)
    pooled["lateness"] = _distribution_ms(lateness)
    pooled["tick_duration"] = _distribution_ms(durations)
    pooled["late_ticks_over_1ms"] = sum(r["late_ticks_over_1ms"] for r in rounds)
    pooled["warmup_max_lateness_ms"] = max(r["warmup_max_lateness_ms"] for r in rounds)
    for key in ("game_thread_core_percent", "background_core_percent"):
        pooled[key] = statistics.fmean(r[key] for r in rounds)
    names = {k for r in rounds for k in r["threads_core_percent"]}
    threads = {k: statistics.fmean(r["threads_core_percent"].get(k, 0.0) for r in rounds) for k in names}
    pooled["threads_core_percent"] = dict(sorted(threads.items(), key=lambda kv: -kv[1]))
    pooled["gc"] = {k: (max if k.endswith("_max_ms") else sum)(r["gc"][k] for r in rounds) for k in rounds[-1]["gc"]}
    if "scrape" in pooled:
        scrapes = [r["scrape"] for r in rounds]
        pooled["scrape"] = {
            **scrapes[-1],
            "scrapes": sum(x["scrapes"] for x in scrapes),
            "scrape_errors": sum(x["scrape_errors"] for x in scrapes),
            "scrape_wall_ms_mean": statistics.fmean(x["scrape_wall_ms_mean"] for x in scrapes),
            "scrape_wall_ms_max": max(x["scrape_wall_ms_max"] for x in scrapes),
        }
    pooled["rounds"] = [
        {
            "p99_ms": r["lateness"]["p99_ms"],
            "max_ms": r["lateness"]["max_ms"],
            "background_core_percent": r["background_core_percent"],
        }
        for r in rounds
    ]
    return pooled


def report(
    args: argparse.Namespace,
    iterations: int,
    work_ms: float,
    results: dict[str, Any],
    startup: dict[str, float],
    scaling: dict[str, Any],
    failures: list[str],
) -> None:
    """Print the tables, the goals and the JSON line."""
    out = sys.stdout
    flat: dict[str, Any] = {
        "bench": "frame_time",
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "work_iterations": iterations,
        "work_ms": round(work_ms, 3),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
    }
    print(
        f"frame_time: 60 Hz loop, {work_ms:.2f} ms of pure-Python work per tick ({iterations} iterations, calibrated "
        f"once), {args.seconds:g} s measured per scenario after {args.warmup:g} s of warm-up, {args.rounds} "
        f"round{'s' if args.rounds > 1 else ''} of the scenarios in turn (ticks pooled); lateness = actual start "
        "- (t0 + k/60), no resync after an overrun",
        file=out,
    )
    header = (
        f"{'scenario':38} {'ticks':>5} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} "
        f"{'>1ms':>5} {'tick p99':>8} {'game thr %':>10} {'backgr. %':>9}"
    )
    print(header, file=out)
    labels = {
        "baseline": "baseline (no telemetry)",
        "telemetry": "telemetry (otel_telemetry)",
        "peer": "peer (prometheus_client alone)",
    }
    for name, label in labels.items():
        r = results.get(name)
        if r is None:
            print(f"{label:38} ({'failed' if name in args.scenarios.split(',') else 'not run'})", file=out)
            continue
        late, dur = r["lateness"], r["tick_duration"]
        if name == "peer":
            label = f"peer (prometheus_client, {r['scrape']['series']} series)"
        print(
            f"{label:38} {r['ticks']:5d} {late['p50_ms']:7.3f} {late['p99_ms']:7.3f} {late['p999_ms']:8.3f} "
            f"{late['max_ms']:7.3f} {r['late_ticks_over_1ms']:5d} {dur['p99_ms']:8.3f} "
            f"{r['game_thread_core_percent']:10.2f} {r['background_core_percent']:9.3f}",
            file=out,
        )
        for key, value in late.items():
            flat[f"{name}_lateness_{key}"] = round(value, 4)
        for key, value in dur.items():
            flat[f"{name}_tick_duration_{key}"] = round(value, 4)
        flat[f"{name}_ticks"] = r["ticks"]
        flat[f"{name}_late_ticks_over_1ms"] = r["late_ticks_over_1ms"]
        flat[f"{name}_warmup_max_lateness_ms"] = round(r["warmup_max_lateness_ms"], 3)
        flat[f"{name}_game_thread_core_percent"] = round(r["game_thread_core_percent"], 3)
        flat[f"{name}_background_core_percent"] = round(r["background_core_percent"], 4)
        for key, value in r["gc"].items():
            flat[f"{name}_{key}"] = round(value, 3)
    print(
        "  ticks: measured ticks, every round's (nearest-rank percentiles: with 1,200 ticks p99 is the 12th largest "
        "and p99.9 the 2nd, with 3,600 the 36th and the 4th); >1ms: ticks that started more than 1 ms late; "
        "tick p99: p99 of the tick's own duration (work + telemetry calls); game thr %: the game thread's CPU "
        "(thread_time) as % of one core; backgr. %: process_time minus the game thread's CPU, % of one core "
        "(every other thread: telemetry's background work), the mean of the rounds",
        file=out,
    )
    if args.rounds > 1:
        print("  each round's lateness p99 / max (ms), in the order run:", file=out)
        for name in ("baseline", "telemetry", "peer"):
            r = results.get(name)
            if r is None:
                continue
            print(f"    {name:9} " + ", ".join(f"{x['p99_ms']:.3f} / {x['max_ms']:.3f}" for x in r["rounds"]), file=out)
            flat[f"{name}_rounds_p99_ms"] = [round(x["p99_ms"], 4) for x in r["rounds"]]
            flat[f"{name}_rounds_max_ms"] = [round(x["max_ms"], 4) for x in r["rounds"]]
        tel_rounds, peer_rounds = (results.get(k, {}).get("rounds", []) for k in ("telemetry", "peer"))
        if tel_rounds and len(tel_rounds) == len(peer_rounds):
            won = sum(t["p99_ms"] < p["p99_ms"] for t, p in zip(tel_rounds, peer_rounds, strict=True))
            print(f"    telemetry's p99 below the peer's in {won} of {len(tel_rounds)} rounds", file=out)
            flat["p99_below_peer_rounds"] = won
    for name in ("baseline", "telemetry", "peer"):
        r = results.get(name)
        if r is None:
            continue
        gc_summary = r["gc"]
        print(
            f"  {name}: warm-up max lateness {r['warmup_max_lateness_ms']:.2f} ms; GC pauses in the window: gen0 "
            f"{gc_summary['gc_gen0_count']} (max {gc_summary['gc_gen0_max_ms']:.2f} ms), gen1 "
            f"{gc_summary['gc_gen1_count']} (max {gc_summary['gc_gen1_max_ms']:.2f} ms), gen2 "
            f"{gc_summary['gc_gen2_count']} (max {gc_summary['gc_gen2_max_ms']:.2f} ms)"
            + (
                "; by thread " + ", ".join(f"{k} {v:.1f} ms" for k, v in r["gc_by_thread_ms"].items())
                if r["gc_by_thread_ms"]
                else ""
            ),
            file=out,
        )
        threads = {k: v for k, v in r["threads_core_percent"].items() if v >= 0.005}
        if threads:
            print(
                f"  {name}: background CPU by thread (% of one core): "
                + ", ".join(f"{k} {v:.3f}" for k, v in threads.items()),
                file=out,
            )
        for k, v in r["threads_core_percent"].items():
            flat[f"{name}_thread_{re.sub(r'[^A-Za-z0-9]+', '_', k).strip('_')}_core_percent"] = round(v, 4)

    telemetry = results.get("telemetry")
    if telemetry is not None:
        s = telemetry["scrape"]
        received = telemetry["helper"].get("received", {})
        cpu = telemetry.get("scrape_cpu", {})
        print("", file=out)
        print(
            f"telemetry /metrics, scraped every {args.scrape_interval:g} s by the helper process (urllib, "
            f"{'Prometheus headers, gzip' if args.scrape_like_prometheus else 'text format, no gzip'}): "
            f"{s['scrapes']} scrapes in the window, wall time mean {_fmt(s['scrape_wall_ms_mean'])} ms, max "
            f"{_fmt(s['scrape_wall_ms_max'])} ms; first scrape of the run (warm-up) {_fmt(s['first_scrape_wall_ms'])} "
            f"ms; body {s['scrape_body_bytes']:,} bytes ({s['scrape_bytes']:,} on the wire); {s['series']:,} series "
            f"(sample lines: {', '.join(f'{k} {v}' for k, v in s['mix'].items())}); errors {s['scrape_errors']}",
            file=out,
        )
        print(
            "receivers: "
            + (", ".join(f"{p} {v['requests']} requests ({v['bytes']:,} bytes)" for p, v in sorted(received.items()))
               or "no request")
            + f" from setup to the end of the loop (~{args.seconds + args.warmup:g} s)",
            file=out,
        )  # fmt: skip
        print(
            f"one scrape's CPU in the game process (loop paused, helper not scraping, {cpu.get('rounds', 0)} "
            f"rounds, see scrape_cpu()): first scrape after a new frame (translate + render): process_time "
            f"{_fmt(cpu.get('first_process_ms_mean'))} ms (max {_fmt(cpu.get('first_process_ms_max'))}), server "
            f"thread alone {_fmt(cpu.get('first_server_ms_mean'))} ms; same frame again (render only): process_time "
            f"{_fmt(cpu.get('again_process_ms_mean'))} ms, server thread alone {_fmt(cpu.get('again_server_ms_mean'))}"
            f" ms; rounds redone {cpu.get('redone', 0)}",
            file=out,
        )
        print(
            f"shutdown took {_fmt(telemetry.get('shutdown_s'), '.3f')} s; threads left: "
            f"{', '.join(telemetry.get('threads_after_shutdown', [])) or 'none'}",
            file=out,
        )
        warnings = [line for line in telemetry.get("stderr", []) if line.strip()]
        if warnings:
            print(f"telemetry process stderr: {len(warnings)} lines, e.g. {warnings[0][:160]!r}", file=out)
        for key in ("scrapes", "scrape_errors", "scrape_wall_ms_mean", "scrape_wall_ms_max", "scrape_bytes",
                    "scrape_body_bytes", "first_scrape_wall_ms", "series"):  # fmt: skip
            flat[f"telemetry_{key}"] = round(s[key], 3) if isinstance(s[key], float) else s[key]
        for path, v in received.items():
            flat[f"telemetry_received_{path.strip('/').replace('/', '_')}_requests"] = v["requests"]
        for key, value in cpu.items():
            if key.endswith(("_mean", "_max")):
                flat[f"telemetry_scrape_cpu_{key}"] = round(value, 4)
        flat["telemetry_shutdown_s"] = round(telemetry.get("shutdown_s", math.nan), 3)
        flat["telemetry_stderr_lines"] = len(warnings)
    peer = results.get("peer")
    if peer is not None:
        s = peer["scrape"]
        print(
            f"peer /metrics: {s['scrapes']} scrapes, wall mean {_fmt(s['scrape_wall_ms_mean'])} ms, max "
            f"{_fmt(s['scrape_wall_ms_max'])} ms, body {s['scrape_body_bytes']:,} bytes, {s['series']:,} series "
            f"(asked: {sum(peer['shape'].values())}, {', '.join(f'{k} {v}' for k, v in peer['shape'].items())})",
            file=out,
        )
        for key in ("scrapes", "scrape_wall_ms_mean", "scrape_wall_ms_max", "scrape_body_bytes", "series"):
            flat[f"peer_{key}"] = round(s[key], 3) if isinstance(s[key], float) else s[key]

    if startup:
        print("", file=out)
        print(
            "startup, fresh subprocess each, median of 5 (wall from spawn to exit, max RSS from wait4's rusage):",
            file=out,
        )
        for k, what, _compiling in STARTUP_CONDITIONS:
            print(
                f"  {what}:\n"
                f"    python -c pass: {startup[k + 'pass_wall_ms']:.1f} ms, RSS {startup[k + 'pass_rss_mb']:.1f} MB\n"
                f"    import otel_telemetry + setup_telemetry(enable_prometheus_endpoint=True, port 0): in process "
                f"{startup[k + 'import_setup_ms']:.1f} ms (import {startup[k + 'import_ms']:.1f} ms - lazy -, setup "
                f"{startup[k + 'setup_ms']:.1f} ms); process {startup[k + 'process_wall_ms']:.1f} ms "
                f"(+{startup[k + 'process_wall_ms'] - startup[k + 'pass_wall_ms']:.1f} ms over pass); RSS "
                f"{startup[k + 'process_rss_mb']:.1f} MB "
                f"(+{startup[k + 'process_rss_mb'] - startup[k + 'pass_rss_mb']:.1f} MB)",
                file=out,
            )
        flat.update({f"startup_{k}": round(v, 3) for k, v in startup.items()})

    ratios: dict[str, tuple[float, str]] = {}  # path_what -> (ratio 100k/1k of µs per unit, unit)
    if scaling:
        print("", file=out)
        print(
            "collection and render cost (µs per sample line of /metrics, or per player when players are not exported "
            f"series; median of >= {args.repeats} rounds, more at small sizes; collection_interval=3600 so that only "
            "our collections run):",
            file=out,
        )
        print(
            f"  {'path':8} {'size':>7} {'series':>7} {'grow s':>7} {'1st collect s':>13} {'collect s':>9} "
            f"{'µs/unit':>9} {'unit':>6} {'render s':>8} {'µs/series':>9} {'again µs/s':>10}",
            file=out,
        )
        for path, rows in scaling.items():
            for row in rows:
                if "series" not in row:
                    print(
                        f"  {path:8} {_fmt(row.get('size'), 'd'):>7}  too slow / failed: {row.get('error')}", file=out
                    )
                    continue
                print(
                    f"  {path:8} {row['size']:7d} {row['series']:7d} {row['grow_s']:7.2f} "
                    f"{row['first_collect_s']:13.3f} {row['collect_s']:9.3f} {row['collect_us_per_unit']:9.2f} "
                    f"{row['unit']:>6} {row['render_s']:8.3f} {row['render_us_per_series']:9.2f} "
                    f"{row['render_again_us_per_series']:10.2f}"
                    + ("  TOO SLOW (> 60 s)" if row["too_slow"] else ""),
                    file=out,
                )  # fmt: skip
                prefix = f"scaling_{path}_{row['size']}"
                flat[f"{prefix}_collect_us_per_{row['unit']}"] = round(row["collect_us_per_unit"], 3)
                for key in ("series", "render_us_per_series", "render_again_us_per_series", "first_collect_s",
                            "collect_s", "render_s", "grow_s"):  # fmt: skip
                    flat[f"{prefix}_{key}"] = round(row[key], 4)
            by_size = {row["size"]: row for row in rows if "series" in row}
            if by_size:
                flat[f"scaling_{path}_http_overhead_ms"] = round(next(iter(by_size.values()))["http_overhead_ms"], 3)
            lo, hi = by_size.get(SCALING_SIZES[0]), by_size.get(SCALING_SIZES[-1])
            for what, field, unit in (
                ("collect", "collect_us_per_unit", hi["unit"] if hi else "series"),
                ("render", "render_us_per_series", "series"),
            ):
                ratio = hi[field] / lo[field] if lo and hi else math.nan
                ratios[f"{path}_{what}"] = (ratio, unit)
                flat[f"scaling_{path}_{what}_ratio_100k_1k"] = None if math.isnan(ratio) else round(ratio, 3)
        knobs = {path: rows[0].get("knob") for path, rows in scaling.items() if rows and rows[0].get("knob")}
        methods = {row.get("render_method") for rows in scaling.values() for row in rows if row.get("render_method")}
        print(
            "  knobs: " + "; ".join(f"{p}: {k}" for p, k in knobs.items()) + f". render: {', '.join(sorted(methods))} "
            "(the first GET after a frame; 'again' = a second GET of the same frame); the round trip alone (GET / of "
            "the same server, median of 20): "
            + ", ".join(
                f"{p} {rows[0]['http_overhead_ms']:.2f} ms"
                for p, rows in scaling.items()
                if rows and "series" in rows[0]
            ),
            file=out,
        )
        print(
            "  ratio 100k/1k: " + ", ".join(f"{k.replace('_', ' ')} µs/{u} {_fmt(r)}" for k, (r, u) in ratios.items()),
            file=out,
        )

    # -- goals -------------------------------------------------------------------------------------------------------
    base, tel, peer = results.get("baseline"), results.get("telemetry"), results.get("peer")
    goals: list[tuple[str, str, str, str, bool | None]] = []  # key, label, measured, target, met

    def lateness_of(r: dict[str, Any] | None, key: str) -> float:
        return r["lateness"][key] if r is not None else math.nan

    def goal(key: str, label: str, measured: float, target: float, unit: str, strict: bool = False) -> None:
        spec = {"ms": ".3f", "%": ".3f", "x": ".2f"}.get(unit, ".1f") if key != "startup" else ".1f"
        met = (
            None
            if math.isnan(measured) or math.isnan(target)
            else (measured < target if strict else measured <= target)
        )
        sign = "<" if strict else "<="
        goals.append((key, label, f"{_fmt(measured, spec)} {unit}", f"{sign} {_fmt(target, spec)} {unit}", met))
        flat[f"goal_{key}"] = met

    goal("p99", "lateness p99 <= baseline + 0.5 ms", lateness_of(tel, "p99_ms"),
         lateness_of(base, "p99_ms") + GOAL_P99_OVER_BASELINE_MS, "ms")  # fmt: skip
    goal("max", "lateness max <= baseline + 2 ms", lateness_of(tel, "max_ms"),
         lateness_of(base, "max_ms") + GOAL_MAX_OVER_BASELINE_MS, "ms")  # fmt: skip
    goal("p99_vs_peer", "lateness p99 better than the peer", lateness_of(tel, "p99_ms"), lateness_of(peer, "p99_ms"),
         "ms", strict=True)  # fmt: skip
    goal("max_vs_peer", "lateness max better than the peer", lateness_of(tel, "max_ms"), lateness_of(peer, "max_ms"),
         "ms", strict=True)  # fmt: skip
    cpu = (tel or {}).get("scrape_cpu", {})
    goal("scrape_cpu", "one scrape <= 1 ms CPU (first after a frame, server thread)",
         cpu.get("first_server_ms_mean", math.nan), GOAL_SCRAPE_CPU_MS, "ms")  # fmt: skip
    goal("background", "background <= 1% of one core", tel["background_core_percent"] if tel else math.nan,
         GOAL_BACKGROUND_CORE_PERCENT, "%")  # fmt: skip
    goal(
        "startup",
        "import + setup <= 150 ms (installed)",
        startup.get("import_setup_ms", math.nan),
        GOAL_STARTUP_MS,
        "ms",
    )
    goal("rss", "RSS after setup <= 40 MB", startup.get("process_rss_mb", math.nan), GOAL_RSS_MB, "MB")
    for key, (ratio, unit) in ratios.items():
        path, what = key.split("_")
        goal(f"per_series_{key}", f"{what} µs/{unit} 100k/1k within 2x ({path})", ratio, GOAL_PER_SERIES_RATIO, "x")
    print("", file=out)
    title = "goal (issue: telemetry must never cost the game loop a frame)"
    print(f"{title:62} {'measured':>14} {'target':>16}", file=out)
    for _key, label, measured, target, met in goals:
        print(f"{label:62} {measured:>14} {target:>16}  {_mark(met)}", file=out)
    for failure in failures:
        print(f"FAILED: {failure}", file=out)
    flat["failures"] = failures
    print(json.dumps({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in flat.items()}), file=out)


if __name__ == "__main__":
    raise SystemExit(main())
