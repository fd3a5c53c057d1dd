"""``otel-telemetry top``: a live terminal view of one game server's runtime dashboard.

Attached to a URL, top reads the server's ``/dashboard`` (JSON, derived from the ``/metrics`` URL it is given:
``http://host:9090/metrics`` -> ``http://host:9090/dashboard``) and renders the
:class:`~otel_telemetry.snapshot.dashboard.Dashboard` it describes: tick loop, players, ping, packets, CPU, memory,
database, cache, ``@traced`` handlers, widgets and alerts. Where there is no ``/dashboard`` (404, or a body that is
not a dashboard: a Prometheus ``/federate`` URL, a Collector's exporter), top builds the dashboard from the
``/metrics`` text itself, as :class:`MetricsScraper` does: the exported gauges, the SDK's ``alerts`` series (and
Prometheus' ``ALERTS`` through ``/federate``), and tick and ping percentiles by Prometheus' own
``histogram_quantile`` over the bucket differences between two scrapes, so the view shows the last interval.

Either way the renderer has one input, a ``Dashboard``. ``top_command(["http://host:9090/metrics"])`` attaches to
a server; ``top_command(["--demo"])`` runs the simulated server in-process and renders its dashboard directly.
Attaching to a URL loads no OpenTelemetry SDK.
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
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TextIO
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

from otel_telemetry.catalog import lookup
from otel_telemetry.snapshot.dashboard import (
    DASHBOARD_PATH,
    AlertRow,
    Dashboard,
    NetworkOverview,
    SystemOverview,
    TickLoop,
    histogram_quantile,
)
from otel_telemetry.tools.top_render import render, render_error

if TYPE_CHECKING:  # the SDK is imported only for --demo: attaching to a URL needs nothing but prometheus_client
    from otel_telemetry.telemetry import Telemetry

__all__ = [
    "MetricsScraper",
    "dashboard_url",
    "fetch",
    "fetch_dashboard",
    "histogram_quantile",
    "normalize_url",
    "parse",
    "render",
    "run_top",
    "top_command",
]

#: Buckets as ``(upper bound, cumulative count)``, the last bound ``+Inf``.
Buckets = tuple[tuple[float, float], ...]

_CLEAR = "\x1b[H\x1b[2J"
#: The most of a ``/dashboard`` answer top reads (a dashboard with every cap reached is a few hundred KiB).
_MAX_DASHBOARD_BYTES = 8 * 1024 * 1024
#: Answers meaning "this server has no /dashboard": top falls back to its /metrics.
_ABSENT = frozenset({404, 405, 410, 501})


def _family(entry_id: str) -> str:
    return lookup(entry_id).prometheus_name


_TICK_BUCKETS = _family("performance.frame_time.distribution") + "_bucket"
_PING_BUCKETS = _family("network.ping.distribution") + "_bucket"
_TICK_RATE = _family("performance.tick_rate.current")
_TARGET = _family("performance.tick_rate.target")


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


def dashboard_url(metrics_url: str) -> str:
    """The ``/dashboard`` URL beside a (normalized) metrics URL: its last path segment replaced, no query.

    ``http://h:9090/metrics`` -> ``http://h:9090/dashboard``; ``http://h:9090/game/metrics`` ->
    ``http://h:9090/game/dashboard``; ``http://prometheus:9090/federate?match[]=...`` -> ``.../dashboard``.
    """
    parts = urlsplit(metrics_url)
    head = parts.path.rpartition("/")[0]
    return urlunsplit((parts.scheme, parts.netloc, head + DASHBOARD_PATH, "", ""))


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


def fetch_dashboard(url: str, timeout: float = 5.0) -> Dashboard | None:
    """GET the ``/dashboard`` at ``url``; None when the server has none (404, 405, 410, 501, or an answer that is
    not a dashboard's JSON).

    Raises:
        OSError: the server cannot be reached, or answers with another error status.
    """
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            body: bytes = response.read(_MAX_DASHBOARD_BYTES + 1)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code in _ABSENT:
            return None
        raise
    if kind != "application/json" or len(body) > _MAX_DASHBOARD_BYTES:
        return None
    try:
        return Dashboard.from_json(body)
    except ValueError:
        return None


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


def _whole(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) else round(value)


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


def _percentiles_ms(buckets: Buckets) -> tuple[float | None, float | None, float | None]:
    values = [histogram_quantile(q, buckets) for q in (0.5, 0.95, 0.99)]
    if any(v is None or not math.isfinite(v) for v in values):
        return None, None, None
    p50, p95, p99 = (float(v) * 1000 for v in values if v is not None)
    return p50, p95, p99


def _servers(samples: _Samples) -> list[str]:
    # A server's own target_info carries its id; behind a Collector, target_info has it as `instance` only, but every
    # other series carries the label (the constant target tick rate is always there).
    for name in ("target_info", _TARGET):
        ids = sorted(
            {labels["service_instance_id"] for labels, _ in samples.get(name, ()) if "service_instance_id" in labels}
        )
        if ids:
            return ids
    return []


#: The SDK's in-process alerts (``register_alert_metric``: OpenTelemetry lowercases the instrument name ``ALERTS``),
#: and the series Prometheus synthesises for the rules it evaluates (through ``/federate``).
_ALERT_SERIES = ("alerts", "ALERTS")


def _alerts(samples: _Samples) -> tuple[AlertRow, ...]:
    alerts = {
        AlertRow(labels.get("alertname", "?"), labels.get("severity", ""), labels.get("alertstate", "?"))
        for name in _ALERT_SERIES
        for labels, value in samples.get(name, ())
        if value > 0
    }
    return tuple(sorted(alerts, key=lambda a: (a.state != "firing", a.name, a.severity)))


class MetricsScraper:
    """Dashboards from successive scrapes of one ``/metrics`` endpoint (what top shows without ``/dashboard``).

    Each :meth:`parse` keeps the tick and ping buckets, so that the next one's percentiles cover the observations
    made between the two scrapes; the first, a restart, or an interval without observations covers everything
    since the start (``window_seconds`` None). Handlers, database, cache and widgets need ``/dashboard``: they
    stay empty. Not thread-safe: one scraper per endpoint and thread.
    """

    def __init__(self) -> None:
        self._tick: Buckets = ()
        self._ping: Buckets = ()
        self._scraped_at: float | None = None

    def parse(self, text: str, *, now: float | None = None) -> Dashboard:
        """The dashboard of one scrape (``now``: its ``time.monotonic()``, default the current one).

        Raises:
            ValueError: ``text`` is not a Prometheus text exposition (the scraper's state is unchanged).
        """
        scraped_at = time.monotonic() if now is None else now
        samples = _samples(text)
        tick = _buckets(samples, _TICK_BUCKETS)
        ping = _buckets(samples, _PING_BUCKETS)
        recent_tick = _recent(tick, self._tick)
        recent_ping = _recent(ping, self._ping)
        window = scraped_at - self._scraped_at if self._scraped_at is not None else None
        self._tick, self._ping, self._scraped_at = tick, ping, scraped_at
        ids = _servers(samples)
        target = _value(samples, _TARGET)
        ticks = recent_tick or tick
        tick_p50, tick_p95, tick_p99 = _percentiles_ms(ticks)
        ping_p50, ping_p95, ping_p99 = _percentiles_ms(recent_ping or ping)
        return Dashboard(
            system=SystemOverview(
                server_id=ids[0] if len(ids) == 1 else None,
                timestamp=datetime.now(UTC),
                cpu_percent=_value(samples, _family("hardware.cpu.total")),
                memory_bytes=_whole(_value(samples, _family("hardware.memory.used"), total=True)),
                memory_percent=_value(samples, _family("hardware.memory.usage")),
                players=_whole(_value(samples, _family("game.players.active"), total=True)),
                uptime_seconds=_value(samples, "process_uptime_seconds"),
                servers=max(1, len(ids)),
            ),
            tick_loop=TickLoop(
                tick_rate_fps=_value(samples, _TICK_RATE),
                target_fps=target,
                budget_ms=1000.0 / target if target else None,
                ticks=round(ticks[-1][1]) if ticks else 0,
                tick_p50_ms=tick_p50,
                tick_p95_ms=tick_p95,
                tick_p99_ms=tick_p99,
                window_seconds=window if recent_tick else None,
                entities=_whole(_value(samples, _family("game.entities.total"), total=True)),
                active_maps=_whole(_value(samples, _family("game.world.active_maps"), total=True)),
            ),
            network=NetworkOverview(
                packets_in_per_second=_value(samples, _family("network.packets.rate_in"), total=True),
                packets_out_per_second=_value(samples, _family("network.packets.rate_out"), total=True),
                avg_ping_ms=_value(samples, _family("network.ping.avg")),
                ping_p50_ms=ping_p50,
                ping_p95_ms=ping_p95,
                ping_p99_ms=ping_p99,
                window_seconds=window if recent_ping else None,
                connections=_whole(_value(samples, _family("network.connections.active"), total=True)),
            ),
            alerts=_alerts(samples),
            window_seconds=window,
        )


def parse(text: str) -> Dashboard:
    """The dashboard of one ``/metrics`` scrape on its own (percentiles since the server's start).

    Raises:
        ValueError: ``text`` is not a Prometheus text exposition.
    """
    return MetricsScraper().parse(text)


# --- Running ----------------------------------------------------------------------------------------------------------
class _Feed(Protocol):
    """Where the refreshes come from: ``read()`` the next dashboard; ``source`` names it in the header."""

    source: str

    def read(self) -> Dashboard:
        """The next dashboard."""
        ...


class _Endpoint:
    """A server by URL: its ``/dashboard`` while it serves one, else its ``/metrics`` through a scraper."""

    def __init__(self, metrics_url: str, timeout: float) -> None:
        self.source = metrics_url
        self._metrics_url = metrics_url
        self._dashboard_url = dashboard_url(metrics_url)
        self._timeout = timeout
        self._scraper: MetricsScraper | None = None

    def read(self) -> Dashboard:
        """The next dashboard (OSError, ValueError or HTTPException when the server cannot be read)."""
        if self._scraper is None:
            found = fetch_dashboard(self._dashboard_url, timeout=self._timeout)
            if found is not None:
                self.source = self._dashboard_url
                return found
            self._scraper = MetricsScraper()  # no /dashboard there: scrape /metrics from now on
            self.source = self._metrics_url
        return self._scraper.parse(fetch(self._metrics_url, timeout=self._timeout))


class _InProcessDemo:
    """The demo game server on a background thread; its dashboard is built in-process from the handle's frames."""

    def __init__(self) -> None:
        self.telemetry: Telemetry | None = None
        self.source = "in-process demo"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _InProcessDemo:
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
        return self

    def read(self) -> Dashboard:
        """The dashboard of the demo handle's newest frame, with its active alerts."""
        telemetry = self.telemetry
        assert telemetry is not None  # read only inside the with block
        if telemetry.latest_frame() is None:
            telemetry.collect()
        if telemetry.latest_frame() is None:
            raise OSError("the demo's telemetry took no frame")
        return telemetry.dashboard()  # what GET /dashboard serves

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
    feed: _Feed,
    name: str,
    *,
    interval: float,
    iterations: int | None,
    stream: TextIO,
    errors: TextIO,
    color: bool | None,
) -> int:
    tty = _isatty(stream)
    use_color = (tty and "NO_COLOR" not in os.environ) if color is None else color
    width = shutil.get_terminal_size((80, 24)).columns if tty else 80
    seen = False
    status = 0
    for i in _refreshes(iterations):
        started = time.monotonic()
        try:
            dashboard = feed.read()
        except (OSError, ValueError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            if not seen:
                print(f"otel-telemetry top: cannot read {name}: {reason}", file=errors, flush=True)
                return 1
            block = render_error(feed.source, str(reason), color=use_color, width=width)
            status = 1
        else:
            seen = True
            block = render(dashboard, color=use_color, width=width, source=feed.source)
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
    """Show the live dashboard of the server whose ``/metrics`` is at ``url`` (or of the in-process demo).

    Reads ``/dashboard`` beside ``url`` when the server serves it, else ``url`` itself (see the module docstring).
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
            with _InProcessDemo() as feed:
                return _watch(
                    feed, feed.source, interval=interval, iterations=iterations, stream=out, errors=err, color=color
                )
        if url is None:
            print("otel-telemetry top: give the URL of a /metrics endpoint, or --demo", file=err)
            return 2
        try:
            target = normalize_url(url)
        except ValueError as error:
            print(f"otel-telemetry top: {error}", file=err)
            return 1
        endpoint = _Endpoint(target, max(1.0, interval * 5))
        return _watch(endpoint, target, interval=interval, iterations=iterations, stream=out, errors=err, color=color)
    except KeyboardInterrupt:
        out.write("\n")
        return 0


def top_command(argv: Sequence[str] | None = None) -> int:
    """``otel-telemetry top [URL] [--demo] [--interval S] [--iterations N] [--no-color]``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="otel-telemetry top", description="Live terminal view of a game server's runtime dashboard."
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
