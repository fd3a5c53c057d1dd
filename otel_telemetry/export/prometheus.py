"""The Prometheus exposition of the latest frame.

A scrape never collects: it serves the newest :class:`~otel_telemetry.snapshot.frame.Frame`, rendered once per
frame. The text format (what Prometheus asks for by default) is rendered by :mod:`otel_telemetry.export.exposition`
in one pass, byte for byte what the OpenTelemetry Prometheus exporter and prometheus_client would write. The
collector renders a new frame right after taking it when a scrape is expected to read it (:class:`ScrapeForecast`:
each scraper's interval is learnt from its scrapes), so a scrape only sends bytes, and a Prometheus scraping every
15 s costs one rendering per 15 frames, not 15.
OpenMetrics and ``name[]`` filters go through prometheus_client over the exporter's translation (also once per
frame), rendered on the HTTP server's thread at each scrape.

Content negotiation: the text format is answered whenever the client accepts it. Prometheus lists OpenMetrics
first and ``text/plain;version=0.0.4;q=0.5`` after it in every scrape's ``Accept`` (unless its
``scrape_protocols`` say otherwise), and the text is what is ready before the scrape; the Go client answers the
same way unless OpenMetrics is enabled in its handler. OpenMetrics is served when the client accepts only it
(``Accept: application/openmetrics-text``, or Prometheus with ``scrape_protocols: [OpenMetricsText1.0.0]``):
exemplars, which only it carries, are off in this SDK, so it carries nothing more.

Data points that the format cannot represent (exponential histograms, non-numeric values) are dropped and counted
in :attr:`PrometheusExposition.dropped_points`; a rendering that fails is logged once and counted, and the scrape
answers with what it has, never with a 500.

prometheus_client is imported only when it is needed: on the first OpenMetrics or ``name[]`` scrape, or the first
read of :attr:`PrometheusExposition.registry` (never on the game loop: scrapes run on the HTTP server's workers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Metric, MetricsData, Sum

from otel_telemetry._otel import prometheus_translator
from otel_telemetry.catalog import CATALOG
from otel_telemetry.export.exposition import TextRenderer
from otel_telemetry.export.http_server import client_app
from otel_telemetry.export.selftelemetry import ExportCounts
from otel_telemetry.snapshot.frame import Frame

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

_logger = logging.getLogger(__name__)

#: The ``Content-Type`` of the text exposition: prometheus_client's ``CONTENT_TYPE_LATEST``, which this module
#: does not import for a constant (``tests/test_import_cost.py`` checks that the two agree).
_CONTENT_TYPE = "text/plain; version=1.0.0; charset=utf-8"

#: OpenTelemetry name -> Prometheus name for every catalog instrument.
_PROMETHEUS_NAMES: Mapping[str, str] = {spec.name: spec.prometheus_name for spec in CATALOG}

#: A scraper not seen for this long (seconds, or three of its intervals if longer) is forgotten; with none left,
#: frames are rendered when a scrape asks for them.
_EAGER_FOR = 30.0
#: A scraper whose latest gap between scrapes differs from its interval by more than this share is irregular:
#: every frame is rendered ahead for it until a gap is regular again.
_REGULAR_WITHIN = 0.25


class ScrapeForecast:
    """When the scrapers (by client address) are expected next, learnt from their scrapes. Thread-safe.

    A scraper's interval is the smoothed gap between its scrapes; it is *regular* while its latest gap stayed
    within 25% of that interval. :meth:`expected_within` answers whether a frame taken now will be read: True
    when some regular scraper's next scrape falls before ``now + horizon`` (overdue ones included), when a
    scraper's interval is not known yet (one scrape seen) or it is irregular; False when nobody scrapes or every
    scraper is due later.

    Args:
        clock: monotonic seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._scrapers: dict[str, tuple[float, float | None, bool]] = {}  # who -> (last, interval, regular)

    def scraped(self, who: str) -> None:
        """A scrape by ``who`` (its address) now."""
        now = self._clock()
        with self._lock:
            known = self._scrapers.get(who)
            if known is None:
                self._scrapers[who] = (now, None, True)
                return
            last, interval, regular = known
            gap = now - last
            if interval is None:
                self._scrapers[who] = (now, gap, True)
                return
            regular = abs(gap - interval) <= _REGULAR_WITHIN * interval
            self._scrapers[who] = (now, interval + 0.3 * (gap - interval), regular)

    def expected_within(self, horizon: float) -> bool:
        """Whether a scrape is expected before ``horizon`` seconds from now (see the class docstring)."""
        now = self._clock()
        expected = False
        with self._lock:
            for who, (last, interval, regular) in list(self._scrapers.items()):
                if now - last > max(_EAGER_FOR, 3 * (interval or 0.0)):
                    del self._scrapers[who]  # gone
                elif interval is None or not regular or last + interval <= now + horizon:
                    expected = True
        return expected


def _numeric(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _writable(data: Any, point: Any) -> bool:
    """Whether the text format can carry ``point`` of ``data`` (a histogram, sum or gauge): a histogram's buckets
    must match its bounds, a number must be an int or float."""
    if isinstance(data, Histogram):
        return len(point.bucket_counts) == len(point.explicit_bounds) + 1
    return _numeric(point.value)


def _representable(data: Any) -> bool:
    """Whether every point of ``data`` can be written in the text format (what :meth:`PrometheusExposition.
    _translate` keeps)."""
    if isinstance(data, (Histogram, Sum, Gauge)):
        return all(_writable(data, p) for p in data.data_points)
    return not getattr(data, "data_points", ())


class PrometheusExposition:
    """Serves the latest frame: :meth:`wsgi_app` for ``/metrics``; also a prometheus_client collector over the
    frame (prometheus_client's ``Collector`` is a protocol: :meth:`collect`), registered in its own
    :attr:`registry` (used for OpenMetrics and ``name[]`` filters). Thread-safe.

    Args:
        frames: returns the frame to serve (the newest one; the caller may take the first on demand).
        scope_labels: add ``otel_scope_*`` labels to every sample (off by default: they clutter every series).
        target_info: expose the ``target_info`` metric with the resource attributes (on by default).
        frame_interval: seconds between frames; with it, :meth:`on_frame` renders a frame ahead only when a scrape
            is expected before the next one (or within a fifth of an interval after it). Without it, every frame
            is rendered ahead while someone scrapes.

    Attributes:
        renders: frames rendered (ahead of a scrape or by one); ``renders_by_scrape``: those a scrape had to
            render itself, on the HTTP server's thread, because no rendering of its frame was ready.
    """

    def __init__(
        self,
        frames: Callable[[], Frame | None],
        *,
        scope_labels: bool = False,
        target_info: bool = True,
        frame_interval: float | None = None,
    ) -> None:
        self._frames = frames
        self._frame_interval = frame_interval
        self.forecast = ScrapeForecast()
        self.renders = 0
        self.renders_by_scrape = 0
        self._scope_labels = scope_labels
        self._target_info = target_info
        self._lock = threading.Lock()
        self._families: tuple[int, list[Any]] | None = None
        self._text: tuple[int, bytes] | None = None
        self._renderer = TextRenderer()
        self._gzipped: tuple[int, bytes] | None = None
        self._warned = False
        self.dropped_points = 0
        self.scrape_failures = 0
        self.export_counts = ExportCounts("prometheus")
        self._registry: CollectorRegistry | None = None
        self._client_app: Callable[..., Iterable[bytes]] | None = None
        self._client_lock = threading.Lock()  # creates the registry and the app once; never held while serving

    @property
    def registry(self) -> CollectorRegistry:
        """prometheus_client's registry holding this collector (made, and prometheus_client imported, on first
        read)."""
        with self._client_lock:
            if self._registry is None:
                from prometheus_client import CollectorRegistry

                registry = CollectorRegistry(auto_describe=False)
                registry.register(self)
                self._registry = registry
            return self._registry

    def _openmetrics_app(self) -> Callable[..., Iterable[bytes]]:
        """prometheus_client's WSGI app over :attr:`registry` (made on the first OpenMetrics or ``name[]`` scrape)."""
        app = self._client_app
        if app is None:
            registry = self.registry
            with self._client_lock:
                if self._client_app is None:
                    self._client_app = client_app(registry)
                app = self._client_app
        return app

    # -- serving ----------------------------------------------------------------------------------------------------
    @staticmethod
    def wants_openmetrics(accept: str) -> bool:
        """Whether an ``Accept`` header asks for OpenMetrics and does not accept the text format (``text/plain``,
        ``text/*`` or ``*/*`` with a q above 0); see the module docstring."""
        openmetrics = text = False
        for media_range in accept.split(","):
            kind, *params = (part.strip() for part in media_range.split(";"))
            quality = 1.0
            for param in params:
                key, _, value = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        quality = float(value)
                    except ValueError:
                        quality = 0.0
            if quality <= 0:
                continue
            kind = kind.lower()
            if kind == "application/openmetrics-text":
                openmetrics = True
            elif kind in ("text/plain", "text/*", "*/*"):
                text = True
        return openmetrics and not text

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """``/metrics``: the frame's pre-rendered text (gzip when accepted); OpenMetrics (when the client accepts
        only it, see :meth:`wants_openmetrics`) and ``name[]`` filters through prometheus_client's own app."""
        accept = environ.get("HTTP_ACCEPT", "")
        if self.wants_openmetrics(accept) or "name[]" in parse_qs(environ.get("QUERY_STRING", "")):
            counts = self.export_counts

            def counted(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
                counts.record(status.startswith("200"))  # a scrape is an attempt of this exporter, whatever its format
                return start_response(status, headers, *exc_info)

            return self._openmetrics_app()(environ, counted)
        frame = self._frames()
        self.forecast.scraped(str(environ.get("REMOTE_ADDR", "")))
        body = self.text(frame, by_scrape=True) if frame is not None else b""
        headers = [("Content-Type", _CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "") and frame is not None:
            body = self._gzip(frame.sequence, body)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def text(self, frame: Frame, *, by_scrape: bool = False) -> bytes:
        """The text exposition of ``frame`` (rendered once per frame; later calls return the same bytes)."""
        body = self._rendered(frame, by_scrape=by_scrape)
        self.export_counts.record(body is not None)
        return body if body is not None else self._last_text()

    def _rendered(self, frame: Frame, *, by_scrape: bool = False) -> bytes | None:
        """``frame``'s text, rendered now unless it already was; None when rendering failed (logged, counted)."""
        with self._lock:
            cached = self._text
            if cached is not None and cached[0] == frame.sequence:
                return cached[1]
            try:
                body = self._renderer.render(
                    self._renderable(frame.metrics_data), _PROMETHEUS_NAMES, target_info=self._target_info
                )
            except Exception:
                self._failed()
                return None
            self.renders += 1
            self.renders_by_scrape += by_scrape
            self._text = (frame.sequence, body)
            return body

    def _last_text(self) -> bytes:
        with self._lock:
            return self._text[1] if self._text is not None else b""

    def _gzip(self, sequence: int, body: bytes) -> bytes:
        with self._lock:
            cached = self._gzipped
            if cached is not None and cached[0] == sequence:
                return cached[1]
            import gzip  # on the first gzip scrape

            packed = gzip.compress(body, compresslevel=1)
            self._gzipped = (sequence, packed)
            return packed

    def on_frame(self, frame: Frame) -> None:
        """Frame listener: render ``frame`` ahead when a scrape is expected to read it (see :class:`ScrapeForecast`;
        without a ``frame_interval``, whenever someone scraped within the last ``_EAGER_FOR`` seconds)."""
        interval = self._frame_interval
        horizon = 1.2 * interval if interval is not None else _EAGER_FOR
        if self.forecast.expected_within(horizon) and self._rendered(frame) is None:
            self.export_counts.record(False)

    def _failed(self) -> None:
        self.scrape_failures += 1
        if not self._warned:
            self._warned = True
            _logger.exception("rendering a frame for Prometheus failed (logged once; counted)")

    # -- prometheus_client collector (OpenMetrics, name[] filters, registries of your own) -------------------------
    def collect(self) -> Iterable[Any]:
        """The families of the newest frame (translated once per frame, shared by concurrent scrapes)."""
        frame = self._frames()
        if frame is None:
            return []
        with self._lock:
            served = self._families
            if served is not None and served[0] == frame.sequence:
                return list(served[1])
            try:
                families = self.families(frame.metrics_data)
            except Exception:
                self._failed()
                self.export_counts.record(False)
                return []
            self._families = (frame.sequence, families)
            return list(families)

    def families(self, metrics_data: MetricsData) -> list[Any]:
        """The prometheus_client metric families of ``metrics_data`` (catalog names; unrepresentable points
        dropped and counted)."""
        translator = prometheus_translator(target_info=self._target_info, scope_labels=self._scope_labels)
        return translator.families(self._for_prometheus(metrics_data))

    def _renderable(self, metrics_data: MetricsData) -> MetricsData:
        """``metrics_data`` without the points the text format cannot carry (counted in :attr:`dropped_points`);
        the data itself when there are none, as in nearly every frame. Names are left to the renderer."""
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if not _representable(metric.data):
                        return self._for_prometheus(metrics_data, rename=False)
        return metrics_data

    def _for_prometheus(self, metrics_data: MetricsData, *, rename: bool = True) -> MetricsData:
        resource_metrics = []
        for rm in metrics_data.resource_metrics:
            scopes = []
            for sm in rm.scope_metrics:
                metrics = [m for m in (self._translate(metric, rename) for metric in sm.metrics) if m is not None]
                scopes.append(replace(sm, metrics=metrics))
            resource_metrics.append(replace(rm, scope_metrics=scopes))
        return MetricsData(resource_metrics=resource_metrics)

    def _translate(self, metric: Metric, rename: bool = True) -> Metric | None:
        data = metric.data
        points: list[Any]
        if isinstance(data, (Histogram, Sum, Gauge)):
            points = [p for p in data.data_points if _writable(data, p)]
        else:
            # Exponential histograms cannot be expressed in the Prometheus text format.
            self.dropped_points += len(getattr(data, "data_points", ()))
            return None
        dropped = len(data.data_points) - len(points)
        if dropped:
            self.dropped_points += dropped
            data = replace(data, data_points=points)  # type: ignore[arg-type]
        name = _PROMETHEUS_NAMES.get(metric.name) if rename else None
        if name is None:
            return metric if not dropped else replace(metric, data=data)
        # The catalog name is final: an empty unit stops the exporter appending a unit suffix.
        return replace(metric, name=name, unit="", data=data)

    def close(self) -> None:
        """Stop serving: the registry yields nothing from now on."""
        self._frames = lambda: None
