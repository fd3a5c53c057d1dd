"""The runtime dashboard, built from frames: system, tick loop, network, database, cache, handlers, alerts, widgets.

``DashboardBuilder(...).build(frame, alerts)`` reads one :class:`~otel_telemetry.snapshot.frame.Frame` (its
``ServerMetrics`` and its collected metrics) into a :class:`~otel_telemetry.snapshot.dashboard_model.Dashboard`, a
frozen tree with an exact JSON round trip (``to_json``/``from_json``). ``Telemetry.dashboard()`` returns one for
the newest frame, ``GET /dashboard`` serves it (:class:`DashboardRoute`) and ``otel-telemetry top`` renders it.

* ``system``: CPU, memory (bytes, percent), players (active sessions), uptime (``process.uptime``), server id;
* ``tick_loop``: tick rate and target, the tick budget (1000 / target ms), tick-duration mean and percentiles,
  ticks over the budget (``late_ticks``), entities, maps; ``network``: packets, ping average and percentiles;
* ``database``, ``cache``: from metric names (below); None when the server records nothing of the kind;
* ``handlers``: one row per ``@traced`` handler (``handler.requests``, ``handler.errors``, ``handler.duration``):
  requests and errors per second, error and success ratios, latency percentiles;
* ``alerts``: the ``Alert.to_dict()`` mappings given to ``build`` that are pending or firing;
* ``widgets``: the values of the configured :class:`Widget` objects.

Intervals: the builder keeps the frame before the newest one it saw. Rates, interval counts and percentiles cover
the time between the two (``Dashboard.window_seconds``); for the first frame, everything since the start. Fed
every frame by :meth:`DashboardBuilder.on_frame` (a frame listener), that is exactly the last collection
interval however often the dashboard is asked for; without it, the interval since the previous frame built.
Tick and ping percentiles fall back to everything since the start when the interval saw no observation (their
``window_seconds`` is then None). Produced histograms (ticks, pings, facade timings) give quantiles within
0.5 %; SDK histograms (handlers) are interpolated in their buckets as Prometheus' ``histogram_quantile`` does,
kept within the observed extremes when those are known.

Database and cache come from metric names (OpenTelemetry names, as exported), a :class:`DashboardSources` each;
the first one whose metrics hold data fills the section. The defaults (:data:`DEFAULT_SOURCES`) are, in order:

* :data:`FACADE_SOURCES`, the statsd-style names: ``metrics.timing("db.query", s)``, ``increment("db.errors")``,
  ``gauge("db.pool.in_use", n)``, ``gauge("db.pool.size", n)``, ``gauge("db.size", bytes)``,
  ``increment("cache.hits")``, ``increment("cache.misses")``, ``gauge("cache.items", n)``,
  ``gauge("cache.bytes", bytes)``;
* :data:`SEMCONV_SOURCES`, OpenTelemetry's database client semantic conventions (what instrumented drivers record
  on this handle's meter provider): ``db.client.operation.duration`` (s), failures as its observations with an
  ``error.type``, ``db.client.connection.count{db.client.connection.state=used}`` and
  ``db.client.connection.max``;
* :data:`GAME_MONITOR_SOURCES`, the game monitor's own series (``game.db_query()``, ``cache_hit()``,
  ``cache_miss()``, ``set_db_size()``).

A source is ``name`` or ``name{key=value,...}`` (only points carrying those attributes; ``key=*``: any value).
Counts read a counter's value or a histogram's observation count; timings are histograms in seconds.

Thread-safety: a builder may be used from any thread; :meth:`~DashboardBuilder.build` and
:meth:`~DashboardBuilder.on_frame` never raise (a section that fails is left at its default, logged once and
counted in :attr:`~DashboardBuilder.stats`). Memory is bounded: two frames, 64 widgets of 60 chart values or 50
table rows, and the handler and alert rows capped (what the caps leave out is counted). Importing this module
loads no OpenTelemetry code.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from otel_telemetry.snapshot.dashboard_model import (
    AlertRow,
    CacheSection,
    Dashboard,
    DatabaseSection,
    HandlerRow,
    NetworkOverview,
    SystemOverview,
    TickLoop,
    WidgetRow,
    WidgetValue,
)
from otel_telemetry.snapshot.dashboard_reader import Reader, finite, histogram_quantile
from otel_telemetry.snapshot.dashboard_sections import (
    CHART_POINTS,
    DEFAULT_SOURCES,
    FACADE_SOURCES,
    GAME_MONITOR_SOURCES,
    HANDLER_REQUESTS,
    SEMCONV_SOURCES,
    STATISTICS,
    TABLE_ROWS,
    WIDGET_KINDS,
    DashboardSources,
    Widget,
    alert_row,
    bare_system,
    cache,
    database,
    first,
    handler_row,
    moment,
    network,
    statistic,
    system,
    tick_loop,
    widget_value,
)

if TYPE_CHECKING:
    from otel_telemetry.snapshot.frame import Frame

__all__ = [
    "CHART_POINTS",
    "DASHBOARD_PATH",
    "DEFAULT_SOURCES",
    "FACADE_SOURCES",
    "GAME_MONITOR_SOURCES",
    "MAX_WIDGETS",
    "SEMCONV_SOURCES",
    "STATISTICS",
    "TABLE_ROWS",
    "WIDGET_KINDS",
    "AlertRow",
    "CacheSection",
    "Dashboard",
    "DashboardBuilder",
    "DashboardRoute",
    "DashboardSources",
    "DatabaseSection",
    "HandlerRow",
    "NetworkOverview",
    "SystemOverview",
    "TickLoop",
    "Widget",
    "WidgetRow",
    "WidgetValue",
    "histogram_quantile",
]

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Where the handle's HTTP server serves the dashboard (JSON).
DASHBOARD_PATH = "/dashboard"
#: Widgets one builder shows at most.
MAX_WIDGETS = 64
_EPOCH = datetime.fromtimestamp(0, UTC)
_SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}
_JSON = ("Content-Type", "application/json")
_NO_STORE = ("Cache-Control", "no-store")


_COUNTS = ("builds", "failures", "invalid_alerts", "inactive_alerts", "omitted_alerts", "omitted_handlers")


class DashboardBuilder:
    """Builds :class:`Dashboard` objects from frames, keeping the frame before the newest for interval figures.

    Args:
        sources: where the database and cache sections are read, tried in order (the first with data wins).
        widgets: widgets to show (see :meth:`add_widget`).
        max_handlers: handler rows kept (the busiest); the rest are counted in ``Dashboard.handlers_omitted``.
        max_alerts: alert rows kept (firing, then by severity); the rest in ``Dashboard.alerts_omitted``.

    Raises:
        ValueError: a source is not a :class:`DashboardSources`, a cap is below 1, or a widget is refused.

    Thread-safe: one lock guards the two frames, the widgets and the chart histories; building runs outside it.
    :meth:`build` and :meth:`on_frame` never raise (see :attr:`stats`).
    """

    def __init__(
        self,
        sources: DashboardSources | Sequence[DashboardSources] = DEFAULT_SOURCES,
        *,
        widgets: Iterable[Widget] = (),
        max_handlers: int = 100,
        max_alerts: int = 100,
    ) -> None:
        chosen = (sources,) if isinstance(sources, DashboardSources) else tuple(sources)
        for item in chosen:
            if not isinstance(item, DashboardSources):
                raise ValueError(f"DashboardBuilder.sources: expected DashboardSources, got {item!r}")
        for name, cap in (("max_handlers", max_handlers), ("max_alerts", max_alerts)):
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"DashboardBuilder.{name}: expected an integer of at least 1, got {cap!r}")
        self._sources = chosen
        self._max_handlers = max_handlers
        self._max_alerts = max_alerts
        self._lock = threading.Lock()
        self._previous: Frame | None = None
        self._current: Frame | None = None
        self._widgets: tuple[Widget, ...] = ()
        self._history: dict[str, deque[tuple[int, float | None]]] = {}
        self._counts = dict.fromkeys(_COUNTS, 0)
        self._warned: set[str] = set()
        for widget in widgets:
            self.add_widget(widget)

    @property
    def sources(self) -> tuple[DashboardSources, ...]:
        """The database and cache sources, in the order they are tried."""
        return self._sources

    @property
    def widgets(self) -> tuple[Widget, ...]:
        """The configured widgets, in the order they were added."""
        return self._widgets

    @property
    def stats(self) -> dict[str, int]:
        """Counts since creation: ``builds``; ``failures`` (sections or widgets that raised, left at their
        default); alerts left out: ``invalid_alerts`` (not an ``Alert.to_dict()``), ``inactive_alerts`` (resolved),
        ``omitted_alerts`` (beyond ``max_alerts``); ``omitted_handlers`` (beyond ``max_handlers``)."""
        with self._lock:
            return dict(self._counts)

    def add_widget(self, widget: Widget) -> None:
        """Show ``widget`` on every dashboard built from now on.

        Raises:
            ValueError: ``widget`` is not a :class:`Widget`, its title is taken, or 64 widgets are configured.
        """
        if not isinstance(widget, Widget):
            raise ValueError(f"DashboardBuilder.add_widget: expected a Widget, got {widget!r}")
        with self._lock:
            if any(w.title == widget.title for w in self._widgets):
                raise ValueError(f"DashboardBuilder.add_widget: title {widget.title!r} is already taken")
            if len(self._widgets) >= MAX_WIDGETS:
                raise ValueError(
                    f"DashboardBuilder.add_widget: at most {MAX_WIDGETS} widgets, refused {widget.title!r}"
                )
            self._widgets = (*self._widgets, widget)

    def remove_widget(self, title: str) -> bool:
        """Stop showing the widget called ``title`` (and drop its chart history); False when there is none."""
        with self._lock:
            kept = tuple(w for w in self._widgets if w.title != title)
            removed = len(kept) != len(self._widgets)
            self._widgets = kept
            self._history.pop(title, None)
        return removed

    def on_frame(self, frame: Frame) -> None:
        """Take note of a new frame (a frame listener: keeps two references, computes nothing). Never raises."""
        try:
            with self._lock:
                self._advance(frame)
        except Exception:
            self._failed("on_frame")

    def _advance(self, frame: Frame) -> Frame | None:
        """Record ``frame`` (under the lock); returns the frame before it, or None."""
        current = self._current
        if current is None or frame.sequence > current.sequence:
            self._previous, self._current = current, frame
            return current
        if frame.sequence == current.sequence:
            return self._previous
        previous = self._previous
        return previous if previous is not None and previous.sequence < frame.sequence else None

    def _failed(self, where: str) -> None:
        with self._lock:
            self._counts["failures"] += 1
            first = where not in self._warned
            self._warned.add(where)
        if first:
            _logger.exception("dashboard: %s failed; left at its default (logged once; counted)", where)

    def _guard(self, where: str, compute: Callable[[], _T], default: _T) -> _T:
        try:
            return compute()
        except Exception:
            self._failed(where)
            return default

    def build(self, frame: Frame, alerts: Sequence[Mapping[str, object]] = ()) -> Dashboard:
        """The dashboard of ``frame``, with ``alerts`` (``Alert.to_dict()`` of the active alerts). Never raises.

        Interval figures cover the time since the frame before ``frame`` that this builder saw (through
        :meth:`on_frame` or an earlier ``build``); without one, since the start.
        """
        try:
            with self._lock:
                previous = self._advance(frame)
                self._counts["builds"] += 1
        except Exception:
            self._failed("frames")
            previous = None
        fallback = SystemOverview(server_id=None, timestamp=self._guard("frames", lambda: moment(frame), _EPOCH))
        reader = self._guard("reading", lambda: Reader(frame, previous), None)
        if reader is None:
            return Dashboard(system=self._guard("system", lambda: bare_system(frame), fallback))
        no_handlers: tuple[tuple[HandlerRow, ...], int] = ((), 0)
        no_alerts: tuple[tuple[AlertRow, ...], int] = ((), 0)
        handlers, handlers_omitted = self._guard("handlers", lambda: self._handlers(reader), no_handlers)
        rows, alerts_omitted = self._guard("alerts", lambda: self._alerts(alerts), no_alerts)
        return Dashboard(
            system=self._guard("system", lambda: system(frame, reader), fallback),
            tick_loop=self._guard("tick_loop", lambda: tick_loop(frame, reader), TickLoop()),
            network=self._guard("network", lambda: network(frame, reader), NetworkOverview()),
            database=self._guard("database", lambda: first(database, reader, self._sources), None),
            cache=self._guard("cache", lambda: first(cache, reader, self._sources), None),
            handlers=handlers,
            handlers_omitted=handlers_omitted,
            alerts=rows,
            alerts_omitted=alerts_omitted,
            widgets=tuple(self._widget(frame, reader, widget) for widget in self._widgets),
            window_seconds=reader.interval,
            sequence=self._guard("frames", lambda: frame.sequence, None),
        )

    def _handlers(self, reader: Reader) -> tuple[tuple[HandlerRow, ...], int]:
        metric = reader.now.get(HANDLER_REQUESTS)
        if metric is None:
            return (), 0
        names = sorted({value for key in metric.points if (value := dict(key).get("handler")) is not None})
        rows = sorted(
            (handler_row(reader, name) for name in names),
            key=lambda r: (-(r.requests_per_second or 0.0), -r.requests_total, r.handler),
        )
        omitted = max(0, len(rows) - self._max_handlers)
        if omitted:
            with self._lock:
                self._counts["omitted_handlers"] += omitted
        return tuple(rows[: self._max_handlers]), omitted

    def _alerts(self, alerts: Iterable[Mapping[str, object]]) -> tuple[tuple[AlertRow, ...], int]:
        rows: list[AlertRow] = []
        invalid = inactive = 0
        for item in alerts:
            try:
                row = alert_row(item)
            except (KeyError, TypeError, ValueError):
                invalid += 1
                continue
            if row.state in ("pending", "firing"):
                rows.append(row)
            else:
                inactive += 1
        rows.sort(key=lambda a: (a.state != "firing", _SEVERITY_ORDER.get(a.severity, len(_SEVERITY_ORDER)), a.name))
        omitted = max(0, len(rows) - self._max_alerts)
        with self._lock:
            self._counts["invalid_alerts"] += invalid
            self._counts["inactive_alerts"] += inactive
            self._counts["omitted_alerts"] += omitted
            warn_now = bool(invalid) and "invalid_alerts" not in self._warned
            if invalid:
                self._warned.add("invalid_alerts")
        if warn_now:
            _logger.warning("dashboard: %d alert(s) were not Alert.to_dict() mappings (logged once; counted)", invalid)
        return tuple(rows[: self._max_alerts]), omitted

    def _widget(self, frame: Frame, reader: Reader, widget: Widget) -> WidgetValue:
        def compute() -> WidgetValue:
            match = tuple(widget.match.items())
            rows: tuple[WidgetRow, ...] = ()
            omitted = 0
            if widget.kind == "table":
                keys = reader.keys(widget.metric, match)
                rows = tuple(
                    WidgetRow(MappingProxyType(dict(key)), finite(statistic(reader, widget, exact=key)))
                    for key in keys[:TABLE_ROWS]
                )
                omitted = len(keys) - len(rows)
            value = finite(statistic(reader, widget, match))
            history: tuple[float | None, ...] = ()
            if widget.kind == "chart":
                with self._lock:
                    ring = self._history.setdefault(widget.title, deque(maxlen=CHART_POINTS))
                    if not ring or ring[-1][0] < frame.sequence:
                        ring.append((frame.sequence, value))
                    history = tuple(v for _, v in ring)
            return widget_value(widget, reader.unit(widget.metric), value, rows, omitted, history)

        return self._guard("widgets", compute, widget_value(widget, "", None, (), 0, ()))


class DashboardRoute:
    """The ``GET /dashboard`` route of a handle's HTTP server: the JSON of ``source()``.

    A route in the sense of :class:`~otel_telemetry.export.http_server.MetricsHTTPServer`: called with the request
    path, it answers ``(status, headers, body)`` for ``path`` (query and one trailing slash ignored) and None for
    any other path. 200 with the dashboard's JSON; 503 while ``source()`` returns None (no frame yet); 500 when
    it raises (logged once, counted in :attr:`failures`). Never raises; thread-safe when ``source`` is.
    """

    def __init__(self, source: Callable[[], Dashboard | None], path: str = DASHBOARD_PATH) -> None:
        if not isinstance(path, str) or not path.startswith("/") or (len(path) > 1 and path.endswith("/")):
            raise ValueError(f"DashboardRoute.path: expected an absolute path without a trailing slash, got {path!r}")
        self._source = source
        self.path = path
        #: Requests whose dashboard could not be built (answered 500).
        self.failures = 0
        self._lock = threading.Lock()

    def __call__(self, request_path: str) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The response to a GET of ``request_path``, or None when it is not :attr:`path`."""
        try:
            route = urlsplit(request_path).path
        except ValueError:
            return None
        if len(route) > 1:
            route = route.rstrip("/")
        if route != self.path:
            return None
        try:
            dashboard = self._source()
            if dashboard is None:
                return 503, [_JSON, _NO_STORE, ("Retry-After", "1")], b'{"error": "no frame yet"}\n'
            return 200, [_JSON, _NO_STORE], dashboard.to_json().encode("utf-8")
        except Exception:
            with self._lock:
                self.failures += 1
                first = self.failures == 1
            if first:
                _logger.exception("dashboard: answering %s failed (logged once; counted)", self.path)
            return 500, [("Content-Type", "text/plain; charset=utf-8"), _NO_STORE], b"internal error\n"
