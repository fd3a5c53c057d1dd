"""``otel-telemetry top``: a live terminal view of one game server, read from its Prometheus ``/metrics``.

It needs nothing but the exported names: tick rate and target, tick-duration percentiles, players, ping, packet
rates, CPU, memory, and the alerts: the SDK's own, which ``/metrics`` exports as ``alerts`` (the in-process rules'
pending and firing alerts), and Prometheus' ``ALERTS`` when the URL is a Prometheus ``/federate`` endpoint. The
percentiles are Prometheus' own ``histogram_quantile`` over the exported buckets; since buckets count from the
server's start, each refresh uses the difference from the previous scrape, so the view shows the last interval.

Attach to a server with ``top_command(["http://host:9090/metrics"])``, or ``top_command(["--demo"])`` to run the
simulated server in-process and watch it.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import math
import os
import shutil
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:  # the SDK is imported only for --demo: attaching to a URL needs nothing but prometheus_client
    from otel_telemetry.telemetry import Telemetry

__all__ = [
    "Alert",
    "Percentiles",
    "TopView",
    "fetch",
    "histogram_quantile",
    "normalize_url",
    "parse",
    "render",
    "run_top",
    "top_command",
]

#: Buckets as ``(upper bound, cumulative count)``, the last bound ``+Inf``.
Buckets = tuple[tuple[float, float], ...]

_TICK_BUCKETS = "server_tick_duration_seconds_bucket"
_PING_BUCKETS = "server_network_player_ping_seconds_bucket"
_CLEAR = "\x1b[H\x1b[2J"
_RESET = "\x1b[0m"
_STYLES = {"bold": "\x1b[1m", "dim": "\x1b[2m", "green": "\x1b[32m", "yellow": "\x1b[33m", "red": "\x1b[1;31m"}
_MAX_ALERT_LINES = 8


# --- Reading ----------------------------------------------------------------------------------------------------------
def normalize_url(url: str) -> str:
    """``url`` with ``http://`` when it has no scheme and ``/metrics`` when it has no path.

    Raises:
        ValueError: the scheme is not http or https, or there is no host.
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def fetch(url: str, timeout: float = 5.0) -> str:
    """GET ``url`` and return the body as text.

    Raises:
        OSError: the server cannot be reached, or answers with an error status (``urllib.error.URLError``).
    """
    request = urllib.request.Request(url, headers={"Accept": "text/plain; version=0.0.4"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        charset = response.headers.get_content_charset() or "utf-8"
        body: bytes = response.read()
    return body.decode(charset, errors="replace")


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q``-quantile of a histogram, interpolated exactly as Prometheus' ``histogram_quantile`` does.

    ``buckets`` are ``(upper bound, cumulative count)`` pairs in any order; the last bound must be ``+Inf``. Within
    the bucket holding the rank, values are assumed spread linearly from the previous bound (0 for the first bucket
    when its bound is positive); a rank in the ``+Inf`` bucket gives the highest finite bound. Returns None where
    Prometheus gives NaN (no ``+Inf`` bucket, fewer than two buckets, no observations); ``-inf``/``+inf`` for
    ``q`` below 0 or above 1.
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if not ordered or not math.isinf(ordered[-1][0]) or len(ordered) < 2:
        return None
    # Cumulative counts never decrease; scrapes taken mid-update can make them, so Prometheus forces them up.
    monotonic: list[tuple[float, float]] = []
    highest = 0.0
    for bound, count in ordered:
        highest = max(highest, count)
        monotonic.append((bound, highest))
    observations = monotonic[-1][1]
    if observations <= 0:
        return None
    rank = q * observations
    index = next((i for i, (_bound, count) in enumerate(monotonic[:-1]) if count >= rank), len(monotonic) - 1)
    if index == len(monotonic) - 1:
        return monotonic[-2][0]
    if index == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    start, end, count = 0.0, monotonic[index][0], monotonic[index][1]
    if index > 0:
        start = monotonic[index - 1][0]
        count -= monotonic[index - 1][1]
        rank -= monotonic[index - 1][1]
    return start + (end - start) * (rank / count)


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50, p95 and p99 of one distribution, in milliseconds."""

    p50: float
    p95: float
    p99: float


@dataclass(frozen=True, slots=True)
class Alert:
    """One ``alerts`` (or ``ALERTS``) sample: the alert's name, ``pending`` or ``firing``, and its severity label
    (may be empty)."""

    name: str
    state: str
    severity: str


@dataclass(frozen=True, slots=True)
class TopView:
    """What one scrape says about the server, ready to render. ``None`` where the endpoint has no value.

    Attributes:
        server: the server id (``service_instance_id`` of ``target_info``), or ``"N servers"`` behind a Collector.
        tick_rate, target_tick_rate: ticks per second.
        tick_ms, ping_ms: percentiles in milliseconds.
        window_s: seconds between this scrape and the previous one, over which the tick percentiles are computed,
            or None when they cover everything since the server started (first scrape, restart, no new tick). Ping
            percentiles use the same interval when it saw pings.
        players: active players.
        avg_ping_ms: the server's average player ping.
        packets_in, packets_out: packets per second.
        cpu_percent, memory_percent: host usage.
        alerts: pending and firing alerts, firing first.
        source: where the scrape came from (set by :func:`run_top`).
        scraped_at: ``time.monotonic()`` of the scrape.
        tick_buckets, ping_buckets: the cumulative buckets, kept for the next scrape's difference.
    """

    server: str | None = None
    tick_rate: float | None = None
    target_tick_rate: float | None = None
    tick_ms: Percentiles | None = None
    window_s: float | None = None
    players: float | None = None
    ping_ms: Percentiles | None = None
    avg_ping_ms: float | None = None
    packets_in: float | None = None
    packets_out: float | None = None
    cpu_percent: float | None = None
    memory_percent: float | None = None
    alerts: tuple[Alert, ...] = ()
    source: str = ""
    scraped_at: float = 0.0
    tick_buckets: Buckets = ()
    ping_buckets: Buckets = ()


_Samples = dict[str, list[tuple[dict[str, str], float]]]


def _samples(text: str) -> _Samples:
    found: _Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return found


def _value(samples: _Samples, name: str, *, total: bool = False) -> float | None:
    """The sample's value; with several series (a Collector endpoint), their sum (``total``) or mean."""
    values = [value for _labels, value in samples.get(name, ()) if not math.isnan(value)]
    if not values:
        return None
    return sum(values) if total else sum(values) / len(values)


def _buckets(samples: _Samples, name: str) -> Buckets:
    merged: dict[float, float] = {}
    for labels, value in samples.get(name, ()):
        try:
            bound = float(labels["le"])
        except (KeyError, ValueError):
            continue
        merged[bound] = merged.get(bound, 0.0) + value
    return tuple(sorted(merged.items()))


def _recent(current: Buckets, previous: Buckets) -> Buckets | None:
    """The buckets of the observations made since ``previous``; None when there are none or the server restarted."""
    if not previous or [b for b, _ in current] != [b for b, _ in previous]:
        return None
    delta = tuple((bound, now - before) for (bound, now), (_b, before) in zip(current, previous, strict=True))
    if any(count < 0 for _bound, count in delta) or delta[-1][1] <= 0:
        return None
    return delta


def _percentiles_ms(buckets: Buckets) -> Percentiles | None:
    values = [histogram_quantile(q, buckets) for q in (0.5, 0.95, 0.99)]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    p50, p95, p99 = (float(v) * 1000 for v in values if v is not None)
    return Percentiles(p50, p95, p99)


def _server(samples: _Samples) -> str | None:
    # A server's own target_info carries its id; behind a Collector, target_info has it as `instance` only, but every
    # other series carries the label (the constant target tick rate is always there).
    for name in ("target_info", "server_target_tick_rate_fps"):
        ids = sorted(
            {labels["service_instance_id"] for labels, _ in samples.get(name, ()) if "service_instance_id" in labels}
        )
        if ids:
            return ids[0] if len(ids) == 1 else f"{len(ids)} servers"
    return None


#: The SDK's in-process alerts (``register_alert_metric``: OpenTelemetry lowercases the instrument name ``ALERTS``),
#: and the series Prometheus synthesises for the rules it evaluates (through ``/federate``).
_ALERT_SERIES = ("alerts", "ALERTS")


def _alerts(samples: _Samples) -> tuple[Alert, ...]:
    alerts = {
        Alert(labels.get("alertname", "?"), labels.get("alertstate", "?"), labels.get("severity", ""))
        for name in _ALERT_SERIES
        for labels, value in samples.get(name, ())
        if value > 0
    }
    return tuple(sorted(alerts, key=lambda a: (a.state != "firing", a.name, a.severity)))


def parse(text: str, previous: TopView | None = None, *, now: float | None = None) -> TopView:
    """Read a Prometheus text exposition into a :class:`TopView`.

    With the ``previous`` view of the same endpoint, percentiles cover the observations made between the two
    scrapes; otherwise (or when the server restarted or nothing new was observed) everything since the start.

    Raises:
        ValueError: ``text`` is not a Prometheus text exposition.
    """
    scraped_at = time.monotonic() if now is None else now
    samples = _samples(text)
    tick = _buckets(samples, _TICK_BUCKETS)
    ping = _buckets(samples, _PING_BUCKETS)
    recent_tick = _recent(tick, previous.tick_buckets) if previous is not None else None
    recent_ping = _recent(ping, previous.ping_buckets) if previous is not None else None
    return TopView(
        server=_server(samples),
        tick_rate=_value(samples, "server_tick_rate_fps"),
        target_tick_rate=_value(samples, "server_target_tick_rate_fps"),
        tick_ms=_percentiles_ms(recent_tick or tick),
        window_s=scraped_at - previous.scraped_at if previous is not None and recent_tick else None,
        players=_value(samples, "server_game_active_players", total=True),
        ping_ms=_percentiles_ms(recent_ping or ping),
        avg_ping_ms=_value(samples, "server_avg_player_ping_ms"),
        packets_in=_value(samples, "server_packets_per_sec_incoming", total=True),
        packets_out=_value(samples, "server_packets_per_sec_outgoing", total=True),
        cpu_percent=_value(samples, "server_cpu_usage_percent"),
        memory_percent=_value(samples, "server_memory_usage_percent"),
        alerts=_alerts(samples),
        scraped_at=scraped_at,
        tick_buckets=tick,
        ping_buckets=ping,
    )


# --- Rendering --------------------------------------------------------------------------------------------------------
_Segment = tuple[str, str | None]  # text, style name


def _line(segments: Sequence[_Segment], *, color: bool, width: int) -> str:
    """Join styled segments, cut to ``width`` visible characters; styles become ANSI codes only with ``color``."""
    out: list[str] = []
    room = width
    for text, style in segments:
        if room <= 0:
            break
        text = text[:room]
        room -= len(text)
        out.append(f"{_STYLES[style]}{text}{_RESET}" if color and style and text else text)
    return "".join(out).rstrip()


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _level(value: float | None, warn: float, bad: float) -> str | None:
    """green / yellow / red for a value where higher is worse."""
    if value is None:
        return None
    return "red" if value >= bad else "yellow" if value >= warn else "green"


def _bar(percent: float | None, size: int) -> str:
    if percent is None or size <= 0:
        return ""
    filled = round(max(0.0, min(100.0, percent)) / 100 * size)
    return "[" + "#" * filled + "." * (size - filled) + "]"


def render(view: TopView, *, color: bool, width: int = 80) -> str:
    """The view as text lines no wider than ``width``; ANSI colours only when ``color`` (never otherwise)."""
    label = 12
    target = view.target_tick_rate
    budget_ms = 1000.0 / target if target else None
    rate_style = None
    if view.tick_rate is not None and target:
        shortfall = view.tick_rate / target
        rate_style = "green" if shortfall >= 0.98 else "yellow" if shortfall >= 0.9 else "red"
    window = f"last {view.window_s:.1f} s" if view.window_s is not None else "since start"
    lines: list[list[_Segment]] = [
        [("otel-telemetry top", "bold"), (f"  {view.server or 'unknown server'}", "bold"), (f"  {view.source}", "dim")],
        [("-" * width, "dim")],
        [
            ("Tick rate".ljust(label), "bold"),
            (_fmt(view.tick_rate, ".1f", " fps"), rate_style),
            (f"   target {_fmt(target, 'g', ' fps')}", None),
            (f"   budget {_fmt(budget_ms, '.2f', ' ms')} per tick", "dim"),
        ],
    ]
    tick = view.tick_ms
    tick_line: list[_Segment] = [("Tick time".ljust(label), "bold")]
    if tick is None:
        tick_line.append(("-", None))
    else:
        p99_style = None if budget_ms is None else _level(tick.p99, 0.8 * budget_ms, budget_ms)
        tick_line += [
            (f"p50 {tick.p50:.2f} ms   p95 {tick.p95:.2f} ms   ", None),
            (f"p99 {tick.p99:.2f} ms", p99_style),
            (f"   ({window})", "dim"),
        ]
    lines.append(tick_line)
    lines.append([("Players".ljust(label), "bold"), (_fmt(view.players, ".0f"), None)])
    ping = view.ping_ms
    ping_line: list[_Segment] = [
        ("Ping".ljust(label), "bold"),
        (f"avg {_fmt(view.avg_ping_ms, '.1f', ' ms')}", _level(view.avg_ping_ms, 100, 200)),
    ]
    if ping is not None:
        ping_line += [
            (f"   p50 {ping.p50:.1f} ms   p95 {ping.p95:.1f} ms   ", None),
            (f"p99 {ping.p99:.1f} ms", _level(ping.p99, 150, 250)),
        ]
    lines.append(ping_line)
    lines.append(
        [
            ("Packets/s".ljust(label), "bold"),
            (f"in {_fmt(view.packets_in, ',.0f')}   out {_fmt(view.packets_out, ',.0f')}", None),
        ]
    )
    bar = max(0, min(30, width - label - 12))
    for name, percent in (("CPU", view.cpu_percent), ("Memory", view.memory_percent)):
        style = _level(percent, 75, 90)
        lines.append(
            [(name.ljust(label), "bold"), (_fmt(percent, "5.1f", " %"), style), (f"  {_bar(percent, bar)}", style)]
        )
    if not view.alerts:
        lines.append([("Alerts".ljust(label), "bold"), ("none", "green")])
    for i, alert in enumerate(view.alerts[:_MAX_ALERT_LINES]):
        head = "Alerts" if i == 0 else ""
        severity = f"  severity={alert.severity}" if alert.severity else ""
        style = "red" if alert.state == "firing" else "yellow"
        lines.append([(head.ljust(label), "bold"), (f"{alert.state.upper():8} {alert.name}{severity}", style)])
    if len(view.alerts) > _MAX_ALERT_LINES:
        lines.append([("".ljust(label), None), (f"... {len(view.alerts) - _MAX_ALERT_LINES} more", "dim")])
    return "\n".join(_line(segments, color=color, width=width) for segments in lines) + "\n"


def _render_error(url: str, error: str, *, color: bool, width: int) -> str:
    segments: list[_Segment] = [("otel-telemetry top", "bold"), (f"  {url}", "dim")]
    message: list[_Segment] = [(f"cannot read the endpoint: {error} (retrying)", "red")]
    return "\n".join(_line(s, color=color, width=width) for s in (segments, message)) + "\n"


# --- Running ----------------------------------------------------------------------------------------------------------
class _InProcessDemo:
    """The demo game server on a background thread, with ``/metrics`` on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.telemetry: Telemetry | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> str:
        from otel_telemetry.tools.demo import DemoOptions, GameSimulation, demo_telemetry, run_loop

        options = DemoOptions(port=0, quiet=True)
        self.telemetry = demo_telemetry(options)
        try:
            simulation = GameSimulation(self.telemetry, options)
            self._thread = threading.Thread(
                target=run_loop,
                args=(simulation, options.tick_rate, self._stop, None),
                name="otel-telemetry-top-demo",
                daemon=True,
            )
            self._thread.start()
            # One collection interval, so that the first view shows a settled tick rate rather than start-up.
            self._stop.wait(1.0)
        except BaseException:
            self.telemetry.shutdown(timeout=5.0)
            raise
        url = self.telemetry.prometheus_url
        assert url is not None  # the endpoint was asked for
        return url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self.telemetry is not None:
            self.telemetry.shutdown(timeout=5.0)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _refreshes(iterations: int | None) -> Iterator[int]:
    return itertools.count() if iterations is None else iter(range(iterations))


def _watch(
    url: str, *, interval: float, iterations: int | None, stream: TextIO, errors: TextIO, color: bool | None
) -> int:
    tty = _isatty(stream)
    use_color = (tty and "NO_COLOR" not in os.environ) if color is None else color
    width = shutil.get_terminal_size((80, 24)).columns if tty else 80
    previous: TopView | None = None
    status = 0
    for i in _refreshes(iterations):
        started = time.monotonic()
        try:
            view = replace(parse(fetch(url, timeout=max(1.0, interval * 5)), previous), source=url)
        except (OSError, ValueError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            if previous is None:
                print(f"otel-telemetry top: cannot read {url}: {reason}", file=errors, flush=True)
                return 1
            block = _render_error(url, str(reason), color=use_color, width=width)
            status = 1
        else:
            previous = view
            block = render(view, color=use_color, width=width)
            status = 0
        stream.write(_CLEAR + block if tty else ("\n" if i else "") + block)
        stream.flush()
        if iterations is not None and i == iterations - 1:
            break
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    return status


def run_top(
    url: str | None,
    *,
    interval: float = 1.0,
    iterations: int | None = None,
    stream: TextIO | None = None,
    demo: bool = False,
    errors: TextIO | None = None,
    color: bool | None = None,
) -> int:
    """Show the live view of the ``/metrics`` endpoint at ``url`` (or of the in-process demo with ``demo=True``).

    Writes to ``stream`` (default: ``sys.stdout`` at call time) every ``interval`` seconds, ``iterations`` times
    (None: until Ctrl-C). On a terminal the screen is redrawn in place (ANSI codes; colours unless ``NO_COLOR`` is
    set or ``color=False``); otherwise each refresh is a plain text block, blocks separated by a blank line.

    Returns the exit code: 0 (also on Ctrl-C); 1 when the endpoint cannot be read at the first attempt (with a
    message on ``errors``, default stderr) or at the last one; 2 when there is neither a URL nor ``demo``.

    Raises:
        ValueError: ``interval`` is not positive, ``iterations`` below 1, or both ``url`` and ``demo`` given.
    """
    out = sys.stdout if stream is None else stream
    err = sys.stderr if errors is None else errors
    if not (interval > 0 and math.isfinite(interval)):
        raise ValueError(f"run_top interval: must be a positive number of seconds, got {interval!r}")
    if iterations is not None and iterations < 1:
        raise ValueError(f"run_top iterations: must be at least 1, got {iterations!r}")
    if demo and url is not None:
        raise ValueError("run_top: give a URL or demo=True, not both")
    try:
        if demo:
            with _InProcessDemo() as demo_url:
                return _watch(demo_url, interval=interval, iterations=iterations, stream=out, errors=err, color=color)
        if url is None:
            print("otel-telemetry top: give the URL of a /metrics endpoint, or --demo", file=err)
            return 2
        try:
            target = normalize_url(url)
        except ValueError as error:
            print(f"otel-telemetry top: {error}", file=err)
            return 1
        return _watch(target, interval=interval, iterations=iterations, stream=out, errors=err, color=color)
    except KeyboardInterrupt:
        out.write("\n")
        return 0


def top_command(argv: Sequence[str] | None = None) -> int:
    """``otel-telemetry top [URL] [--demo] [--interval S] [--iterations N] [--no-color]``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="otel-telemetry top", description="Live terminal view of a game server's /metrics endpoint."
    )
    parser.add_argument("url", nargs="?", help="the server's /metrics URL (host:port is enough)")
    parser.add_argument("--demo", action="store_true", help="run the simulated game server in-process and watch it")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    parser.add_argument("--iterations", type=int, default=None, help="refresh this many times, then exit")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours")
    args = parser.parse_args(argv)
    if args.demo == (args.url is not None):
        parser.error("give a URL or --demo")
    if args.interval <= 0 or not math.isfinite(args.interval):
        parser.error(f"--interval must be a positive number of seconds, got {args.interval}")
    if args.iterations is not None and args.iterations < 1:
        parser.error(f"--iterations must be at least 1, got {args.iterations}")
    return run_top(
        args.url,
        interval=args.interval,
        iterations=args.iterations,
        demo=args.demo,
        color=False if args.no_color else None,
    )
