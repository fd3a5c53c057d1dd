"""``setup_telemetry()``: the handle that wires monitors, one collection per interval, and every output.

The flow is one way (see ``docs/architecture.md``): monitors and the recording APIs write accumulators; a
:class:`~otel_telemetry.snapshot.collection.FrameCollector` takes one frame per ``collection_interval``; history,
alerts, the Prometheus endpoint, OTLP, the snapshot file and the API principal read frames. Nothing here collects
on its own or sets a global OpenTelemetry provider.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import platform
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import Meter, MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import Metric, MetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NoOpTracerProvider, Tracer, TracerProvider

from instrumentations import __version__ as _instrumentations_version
from instrumentations._wiring import SCOPE_NAME
from instrumentations.game import GameMonitor
from instrumentations.hardware import HardwareMonitor
from instrumentations.network import NetworkMonitor
from instrumentations.performance import PerformanceMonitor
from otel_telemetry._otel import hook_reader, logs_sdk
from otel_telemetry._version import __version__
from otel_telemetry.alerts import (
    AlertEvaluator,
    AlertManager,
    LogNotifier,
    WebhookNotifier,
    alert_metrics,
    default_rules,
)
from otel_telemetry.catalog import Instrument, Section, instruments
from otel_telemetry.config import TelemetryConfig
from otel_telemetry.export.http_server import MetricsHTTPServer
from otel_telemetry.export.otlp import OtlpFrameExporter, frames_per_export, metric_exporter, trace_and_log_exporters
from otel_telemetry.export.prometheus import PrometheusExposition
from otel_telemetry.export.selftelemetry import ExportCounts, Points, register_self_telemetry
from otel_telemetry.pacing import LoopPacer
from otel_telemetry.producer import HistogramProducer, ReaderMerge, ScalarSpec
from otel_telemetry.recording.events import Event, EventRecorder
from otel_telemetry.recording.facade import MetricsFacade
from otel_telemetry.recording.health import HealthRegistry, HealthStatus
from otel_telemetry.recording.health_metrics import register_health_metrics
from otel_telemetry.recording.hooks import Hook, HookRegistry
from otel_telemetry.recording.instruments import Counter, Gauge, Histogram, InstrumentRegistry, RegisteredInstrument
from otel_telemetry.recording.profiling import Profiler, ProfileSession
from otel_telemetry.recording.tracing import HandlerTelemetry, claim_default
from otel_telemetry.series import SeriesRegistry
from otel_telemetry.snapshot.build import server_metrics
from otel_telemetry.snapshot.collection import FrameCollector, FrameReader
from otel_telemetry.snapshot.frame import Frame
from otel_telemetry.snapshot.model import History, ServerMetrics
from otel_telemetry.snapshot.otlp import encode_otlp_metrics

if TYPE_CHECKING:  # loaded when configured (see _build_outputs): a Prometheus-only handle needs none of them
    from otel_telemetry.export.files import JsonFileExporter, PeriodicExporter, PrometheusTextFileExporter
    from otel_telemetry.export.principal import PrincipalExporter
    from otel_telemetry.snapshot.dashboard import Dashboard, DashboardBuilder, DashboardRoute
    from otel_telemetry.snapshot.files import SnapshotFileWriter

_logger = logging.getLogger("otel_telemetry")


def catalog_views() -> list[View]:
    """One view per catalog instrument: allowed attributes, and explicit buckets for histograms."""
    views = []
    for spec in instruments():
        aggregation = (
            ExplicitBucketHistogramAggregation(boundaries=spec.boundaries)
            if spec.instrument is Instrument.HISTOGRAM
            else None
        )
        if aggregation is None:
            views.append(View(instrument_name=spec.name, attribute_keys=set(spec.attributes)))
        else:
            views.append(View(instrument_name=spec.name, attribute_keys=set(spec.attributes), aggregation=aggregation))
    return views


def build_resource(config: TelemetryConfig) -> Resource:
    """The resource every signal carries: service, server id and host.

    ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` are merged by :meth:`Resource.create`; the configured
    ``service.name`` and ``service.instance.id`` win. The process command line is deliberately not included: it
    may carry secrets such as the server token.
    """
    return Resource.create(
        {
            "service.name": config.service_name,
            "service.instance.id": config.server_id,
            "service.version": __version__,
            "host.name": socket.gethostname(),
            "host.arch": platform.machine(),
            "os.type": platform.system().lower(),
            "process.pid": os.getpid(),
            "process.runtime.name": platform.python_implementation().lower(),
            "process.runtime.version": platform.python_version(),
        }
    )


class _ExitHooks:
    """Handles still running when the interpreter exits are shut down then, all within one bounded time (the
    SDK providers' own exit hooks are off: they would wait for an unreachable exporter without a deadline)."""

    #: Seconds the interpreter's exit may spend on all handles together.
    EXIT_TIMEOUT = 1.5

    def __init__(self) -> None:
        self._handles: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._registered = False

    def add(self, handle: Telemetry) -> None:
        with self._lock:
            self._handles.add(handle)
            if not self._registered:
                self._registered = True
                atexit.register(self._at_exit)

    def discard(self, handle: Telemetry) -> None:
        with self._lock:
            self._handles.discard(handle)

    def _at_exit(self) -> None:
        with self._lock:
            handles = list(self._handles)
        deadline = time.monotonic() + self.EXIT_TIMEOUT
        for handle in handles:
            handle.shutdown(timeout=max(0.0, deadline - time.monotonic()))


_exit_hooks = _ExitHooks()


class _Counts:
    """Attempts and failures read from an exporter's own stats, for self-telemetry and health."""

    def __init__(self, name: str, attempts: Callable[[], int], failures: Callable[[], int]) -> None:
        self.name = name
        self._attempts = attempts
        self._failures = failures

    @property
    def attempts(self) -> int:
        return self._attempts()

    @property
    def failures(self) -> int:
        return self._failures()


class Telemetry:
    """The handle :func:`setup_telemetry` returns. Thread-safe.

    Attributes:
        config: the resolved :class:`TelemetryConfig`.
        hardware, network, performance, game: the four monitors (call their methods from game code).
        metrics: the statsd-style facade (``timing``, ``increment``, ``gauge``, ``get_timing``...).
        health: the health registry served at ``/health``, ``/health/live`` and ``/health/ready``.
        alerts: the :class:`~otel_telemetry.alerts.AlertManager` evaluating the spec's threshold rules on every
            frame (``alerts.active()``, ``alerts.acknowledge(name)``, ``alerts.add_notifier(...)``).
        events: recent events and per-name hooks (see :meth:`record_event`).
        meter_provider, tracer_provider: this handle's own OpenTelemetry providers (never the global ones).
        resource: the OpenTelemetry resource of every signal.

    Each call to :func:`setup_telemetry` gives an independent handle with its own providers, frames and HTTP
    server; handles share nothing, so tests and multi-server processes may create many. Use ``shutdown()`` (or
    the handle as a context manager) to stop it.

    The monitors are attached the way the ``opentelemetry_instrumentor`` entry points attach them, but per
    handle: OpenTelemetry instrumentors are process-wide singletons, which would make a second handle impossible.
    """

    def __init__(self, config: TelemetryConfig, metric_readers: Sequence[MetricReader] = ()) -> None:
        self.config = config
        self.resource = build_resource(config)
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        self._history = History(config.historical_retention)
        self._http: MetricsHTTPServer | None = None
        self._prometheus: PrometheusExposition | None = None
        self._otlp: OtlpFrameExporter | None = None
        self._principal: PrincipalExporter | None = None
        self._snapshot_file: SnapshotFileWriter | None = None
        self._file_exporters: list[PrometheusTextFileExporter | JsonFileExporter] = []
        self._file_export: PeriodicExporter | None = None
        self._handlers = HandlerTelemetry.disabled()
        self.traced = self._handlers.traced
        self.timer = self._handlers.timer
        self._collector: FrameCollector | None = None
        self._alert_evaluator: AlertEvaluator | None = None
        self._failures_seen: dict[str, int] = {}
        self._export_counts: list[Any] = []
        self._pacer = LoopPacer()  # background work waits for the game loop's idle time (fed by tick())
        # The dashboard is built on first use (its modules cost a tenth of the import); until then the last two
        # frames are kept for it, so that its first rates already cover one interval.
        self._dashboard_builder: DashboardBuilder | None = None
        self._dashboard_route: DashboardRoute | None = None
        self._dashboard_frames: list[Frame] = []
        self._dashboard_lock = threading.Lock()
        self._logger_provider: Any = None
        self._logs_lock = threading.Lock()
        self._logs_on_read = False  # without OTLP, the logger provider is made by the first read of logger_provider
        # One namespace and series budget for every family and series this handle exports.
        self.series = SeriesRegistry(config.series_budget)
        #: Hooks of the application on collections, exports and events (:meth:`add_hook`).
        self.hooks = HookRegistry()
        self._build_monitors(config)
        self.health = HealthRegistry()
        if not config.enabled:
            self._build_disabled(config)
            return
        try:
            self._build_pipeline(config, metric_readers)
        except BaseException:
            self.shutdown(timeout=2.0)
            raise

    # -- construction -----------------------------------------------------------------------------------------------
    def _build_monitors(self, config: TelemetryConfig) -> None:
        refresh = config.collection_interval / 2
        window = config.percentile_window
        self.hardware: HardwareMonitor | None = (
            HardwareMonitor(refresh_interval=config.collection_interval, pacer=self._pacer)  # one sample a frame
            if config.enable_hardware_metrics and config.enabled
            else None
        )
        if self.hardware is not None:
            self.series.reserve_catalog(Section.HARDWARE)
        self.network = NetworkMonitor(
            max_tracked_players=config.max_tracked_players,
            percentile_window=window,
            refresh_interval=refresh,
            series=self.series,
        )
        self.performance = PerformanceMonitor(
            target_tick_rate=config.target_tick_rate,
            pacer=self._pacer,
            percentile_window=window,
            refresh_interval=refresh,
            series=self.series,
        )
        self.game = GameMonitor(
            attribute_limit=config.attribute_limit,
            max_tracked_players=config.max_tracked_players,
            percentile_window=window,
            refresh_interval=refresh,
            series=self.series,
        )

    def _build_disabled(self, config: TelemetryConfig) -> None:
        self.meter_provider: MeterProvider = NoOpMeterProvider()
        self.tracer_provider: TracerProvider = NoOpTracerProvider()
        self.metrics = MetricsFacade(
            None, tag_limit=config.attribute_limit, window=config.percentile_window, series=self.series
        )
        self.metrics.enabled = False
        self.instruments = InstrumentRegistry(self.metrics)
        self.profiler = Profiler(series=self.series)
        self.events = EventRecorder(None)
        self.events.on("*", self._event_hook)
        self.alerts = AlertManager([])

    def _build_pipeline(self, config: TelemetryConfig, metric_readers: Sequence[MetricReader]) -> None:
        interval = config.collection_interval
        self._producer = HistogramProducer(InstrumentationScope(SCOPE_NAME, _instrumentations_version))
        frame_reader = FrameReader()
        for reader in metric_readers:  # the user's own readers also receive the produced metrics
            hook_reader(reader, ReaderMerge(lambda: (self._producer,), self.resource))
        # The providers' own exit hooks would flush to an unreachable exporter without a deadline; the handle
        # registers one bounded shutdown at exit instead (see _exit_hook).
        self.meter_provider = SdkMeterProvider(
            resource=self.resource,
            metric_readers=[frame_reader, *metric_readers],
            views=catalog_views(),
            shutdown_on_exit=False,
            exemplar_filter=AlwaysOffExemplarFilter(),  # no exemplars: every value is an accumulator, not a span
        )
        self._collector = FrameCollector(
            frame_reader,
            self._producer,
            self.resource,
            config.server_id,
            interval,
            export_per_entity=config.export_player_series,
            pacer=self._pacer,
        )
        started = time.time_ns()
        for monitor in self.monitors():
            # The observable instruments are produced directly (the same metrics, without the SDK's per-collection
            # cost); the entry-point instrumentors attach SDK instruments instead.
            monitor.attach_produced()
            self._producer.add_scalar_source(monitor.scalar_points, started)
            self._producer.add_source(monitor.histograms)
            self._collector.add_entity_source(monitor.entity_values)
        self.metrics = MetricsFacade(
            self.meter_provider.get_meter("otel_telemetry.metrics", __version__),
            tag_limit=config.attribute_limit,
            window=config.percentile_window,
            series=self.series,
        )
        self._producer.add_source(self.metrics.histograms)
        self.metrics.enabled = config.enable_metrics
        #: Seed-style registered instruments (:meth:`register_counter`...), recorded through :attr:`metrics`.
        self.instruments = InstrumentRegistry(self.metrics)
        #: Profiling sessions (:meth:`profile`), exported as the ``profile.duration`` histogram.
        self.profiler = Profiler(series=self.series)
        self._producer.add_source(self.profiler.histograms)
        self._build_signals(config)
        self._build_alerts(config)
        self._build_outputs(config)
        self._self_telemetry = register_self_telemetry(
            self._producer,
            self._collector,
            self._export_counts,
            [self._drops],
            events=lambda: self.events.recorded,
            pacing=self._pacer,
            extra=self._uptime_instruments(),
        )
        for counts in self._export_counts:
            if isinstance(counts, ExportCounts):
                counts.listener = self._export_hook
        self.health.register_check("telemetry", self._own_health, interval=max(1.0, interval), timeout=1.0)
        self.health.run_checks()  # only ours is registered yet: /health lists it from the moment setup returns
        register_health_metrics(self._producer, self.health, self.series)
        self.health.start()
        self._collector.start()
        _exit_hooks.add(self)

    def _build_signals(self, config: TelemetryConfig) -> None:
        """Traces for @traced handlers and log records for events, exported over OTLP when configured.

        The tracer is made here whatever the configuration: handlers may run on any thread. The logger provider
        only with OTLP: without it no processor can receive a record until the application reads
        :attr:`logger_provider` (to add one), which makes it then, so a handle without OTLP never imports the logs
        SDK (some 10 ms) unless asked to; until then the events are span events and history only.
        """
        self.tracer_provider = SdkTracerProvider(resource=self.resource, shutdown_on_exit=False)
        self._handlers = HandlerTelemetry(
            self.tracer_provider.get_tracer("otel_telemetry.handlers", __version__),
            self.meter_provider.get_meter("otel_telemetry.handlers", __version__),
            series=self.series,
        )
        claim_default(self._handlers)  # the process default for module-level @traced/timer, unless one is alive
        self.traced = self._handlers.traced
        self.timer = self._handlers.timer
        self.events = EventRecorder(None)
        self.events.on("*", self._event_hook)
        exporters = trace_and_log_exporters(config)
        if exporters is None:
            self._logs_on_read = True
            return
        # OTLP only: its batch processors, with their worker threads
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        span_exporter, log_exporter = exporters
        self.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        _, batch_processor_class = logs_sdk()
        self._new_logger_provider().add_log_record_processor(batch_processor_class(log_exporter))

    def _new_logger_provider(self) -> Any:
        """This handle's logs SDK ``LoggerProvider``, made now, with the events' logger on it."""
        logger_provider_class, _ = logs_sdk()
        provider = self._logger_provider = logger_provider_class(resource=self.resource, shutdown_on_exit=False)
        self.events.set_logger(provider.get_logger("otel_telemetry.events", __version__))
        return provider

    @property
    def logger_provider(self) -> Any:
        """This handle's own logs SDK ``LoggerProvider`` (the events' log records), None when disabled. Without an
        OTLP endpoint it is made by this first read, on the reading thread: read it from setup code, not from a
        hook or a background thread of the game loop (the logs SDK is imported then)."""
        with self._logs_lock:
            if self._logger_provider is None and self._logs_on_read:
                self._logs_on_read = False
                provider = self._new_logger_provider()
                if self._shut_down:  # as if it had been made in setup and stopped with the handle
                    provider.shutdown()
            return self._logger_provider

    @logger_provider.setter
    def logger_provider(self, provider: Any) -> None:
        with self._logs_lock:
            self._logs_on_read = False
            self._logger_provider = provider

    def _build_alerts(self, config: TelemetryConfig) -> None:
        rules = default_rules(dict(config.alert_thresholds), config.alert_for, cooldown=config.alert_cooldown)
        self.alerts = AlertManager(rules if config.enable_alerts else [], notifiers=[LogNotifier()])
        self._alert_evaluator = AlertEvaluator(self.alerts, self._history.snapshots)
        if config.api_endpoint is not None and config.enable_alerts:
            self.alerts.add_notifier(WebhookNotifier(f"{config.api_endpoint}/api/v1/alerts", token=config.server_token))

    def _build_outputs(self, config: TelemetryConfig) -> None:
        """Every output reads frames, in this order: history, alerts, file, OTLP; Prometheus and the principal
        read the latest frame when they serve or push."""
        collector = self._collector
        assert collector is not None
        collector.add_listener("history", lambda frame: self._history.append(frame.server_metrics))
        collector.add_listener("dashboard", self._dashboard_frame)
        if config.enable_alerts:
            collector.add_stage("alerts", self._evaluate_alerts)
        if config.snapshot_file is not None:
            from otel_telemetry.snapshot.files import SnapshotFileWriter

            self._snapshot_file = SnapshotFileWriter(
                config.snapshot_file,
                format=config.snapshot_file_format,  # type: ignore[arg-type]
            )
            collector.add_listener("snapshot_file", self._write_snapshot_file)
        if config.prometheus_textfile is not None or config.json_export_file is not None:
            # prometheus_client's parser comes with these (the JSON file lists the parsed series)
            from otel_telemetry.export.files import (
                JsonFileExporter,
                MultiExporter,
                PeriodicExporter,
                PrometheusTextFileExporter,
            )
        if config.prometheus_textfile is not None:
            self._file_exporters.append(PrometheusTextFileExporter(config.prometheus_textfile))
        if config.json_export_file is not None:
            self._file_exporters.append(JsonFileExporter(config.json_export_file, running=lambda: not self._shut_down))
        if self._file_exporters:
            files = MultiExporter(*self._file_exporters)
            self._file_export = PeriodicExporter(files, self, interval=config.file_export_interval)
            self._export_counts.extend(f.export_counts for f in self._file_exporters)
            collector.add_listener("file_export", self._file_export.on_frame, paced=True)  # rendering holds the GIL
        if config.otlp_endpoint is not None:
            self._otlp = OtlpFrameExporter(
                metric_exporter(config),
                self._producer,
                every=frames_per_export(config.collection_interval),
                pacer=self._pacer,
            )
            self._export_counts.append(self._otlp.counts)
            collector.add_listener("otlp", self._otlp.on_frame)
        if config.api_endpoint is not None:
            from otel_telemetry.export.principal import PrincipalExporter

            self._principal = PrincipalExporter(
                endpoint=config.api_endpoint,
                token=config.server_token,
                payload=self._principal_payload,
                interval=config.api_send_interval,
                buffer_size=config.api_buffer_size,
                server_id=config.server_id,
                allow_insecure_token=config.allow_insecure_token,
                on_attempt=self._export_hook,
            )
            principal = self._principal
            self._export_counts.append(
                _Counts("principal", lambda: principal.stats.attempts, lambda: principal.stats.failures)
            )
            self._principal.start()
        if config.enable_prometheus_endpoint:
            self._prometheus = PrometheusExposition(self._frame_now, frame_interval=config.collection_interval)
            self._export_counts.append(self._prometheus.export_counts)
            collector.add_listener("prometheus", self._prometheus.on_frame, paced=True)
            self._http = MetricsHTTPServer(
                None,  # /metrics is the exposition's own app: prometheus_client loads on the first OpenMetrics scrape
                config.prometheus_host,
                config.prometheus_port,
                [self.health.handle],
                metrics_app=self._prometheus.wsgi_app,
            )
            self._http.add_route(self._dashboard_http)

        collector.add_listener("hooks", lambda frame: self.hooks.fire("collection", frame))

    def _event_hook(self, event: Event) -> None:
        self.hooks.fire("event", event)

    def _export_hook(self, exporter: str, ok: bool) -> None:
        self.hooks.fire("export", exporter, ok)

    def _principal_payload(self) -> tuple[int, Mapping[str, object]] | None:
        """The newest frame for the principal: (its sequence, the spec's JSON body); None before the first frame."""
        frame = self.latest_frame()
        if frame is None:
            return None
        self._pacer.wait_for_idle(0.003, timeout=0.25)  # building the JSON body holds the GIL: between ticks
        return frame.sequence, frame.server_metrics.to_dict()

    # -- frame listeners --------------------------------------------------------------------------------------------
    def _evaluate_alerts(self, frame: Frame) -> list[Metric]:
        """Evaluate the rules on the frame; the ``alerts`` gauge of this evaluation joins the same frame."""
        evaluator = self._alert_evaluator
        assert evaluator is not None
        evaluator.on_frame(frame)
        return alert_metrics(self.alerts, frame.time_unix_nano)

    def _write_snapshot_file(self, frame: Frame) -> None:
        writer = self._snapshot_file
        assert writer is not None
        if writer.format == "jsonl":
            writer.write(frame.server_metrics.to_dict())
        else:
            writer.write(encode_otlp_metrics(frame.metrics_data))

    # -- access -----------------------------------------------------------------------------------------------------
    def monitors(self) -> list[Any]:
        """The monitors in spec order (hardware omitted when disabled)."""
        found: list[Any] = [self.hardware] if self.hardware is not None else []
        return [*found, self.network, self.performance, self.game]

    @property
    def enabled(self) -> bool:
        """False when the SDK is disabled (``OTEL_SDK_DISABLED`` or ``enabled=False``): nothing is exported."""
        return self.config.enabled

    @property
    def prometheus_port(self) -> int | None:
        """The port ``/metrics`` is bound to (useful with ``prometheus_port=0``), or None when not served."""
        return self._http.port if self._http is not None else None

    @property
    def prometheus_url(self) -> str | None:
        """``http://host:port/metrics`` of this handle's endpoint, or None when not served."""
        return f"{self._http.url}/metrics" if self._http is not None else None

    @property
    def http_server(self) -> MetricsHTTPServer | None:
        """The HTTP server behind ``/metrics`` (None when the endpoint is off)."""
        return self._http

    def get_meter(self, name: str, version: str | None = None) -> Meter:
        """A meter of this handle's provider, for metrics of your own."""
        return self.meter_provider.get_meter(name, version)

    def get_tracer(self, name: str, version: str | None = None) -> Tracer:
        """A tracer of this handle's provider."""
        return self.tracer_provider.get_tracer(name, version)

    def latest_frame(self) -> Frame | None:
        """The newest frame (one collection every ``collection_interval``), or None before the first."""
        return self._collector.latest() if self._collector is not None else None

    def _frame_now(self) -> Frame | None:
        """The newest frame, taking the first one now when none exists yet."""
        collector = self._collector
        if collector is None:
            return None
        return collector.latest() or collector.collect()

    def latest_metrics(self) -> MetricsData | None:
        """The ``MetricsData`` of the newest frame, or None before the first."""
        frame = self.latest_frame()
        return frame.metrics_data if frame is not None else None

    def record_event(
        self,
        name: str,
        value: Mapping[str, object] | float | None = None,
        labels: Mapping[str, str] | str | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        severity: str = "info",
        category: str = "application",
        attributes: Mapping[str, object] | None = None,
    ) -> Event:
        """Record an event: an OpenTelemetry log record (and span event inside a span), kept in memory too.

        ``value`` is the event's data when a mapping (``record_event("user_login", {"user_id": "1"})``) or its
        number; ``labels`` are low-cardinality strings, ``metadata`` free-form details; ``severity`` one of
        debug, info, warning (or warn), error, critical; ``category`` one of :attr:`events`' categories.

        Raises:
            ValueError: on a bad name, severity, category, value, labels or metadata (naming the field and value).

        See :attr:`events` for queries (time range, name, category, severity, labels) and per-name hooks.
        """
        return self.events.record_event(
            name, value, labels, metadata, severity=severity, category=category, attributes=attributes
        )

    # -- registered instruments and profiling -----------------------------------------------------------------------
    def register_counter(self, name: str, description: str, labels: Sequence[str] = ()) -> Counter:
        """A counter exported exactly as ``name`` (``requests_total``) with ``description`` as its HELP; recorded
        on the statsd-style fast path. ``labels`` are the label names each value carries (``counter.labels(...)``).

        Registering a name again with the same settings returns the same counter; other settings raise ValueError.
        """
        return self.instruments.register_counter(name, description, labels)

    def register_gauge(self, name: str, description: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge exported exactly as ``name``, with ``set``, ``increment`` and ``decrement``."""
        return self.instruments.register_gauge(name, description, labels)

    def register_histogram(
        self, name: str, description: str, buckets: Sequence[float] | None = None, labels: Sequence[str] = ()
    ) -> Histogram:
        """A histogram exported as ``name`` with exactly ``buckets`` (prometheus_client's defaults when None)."""
        return self.instruments.register_histogram(name, description, buckets, labels)

    def get_metric(self, name: str) -> RegisteredInstrument | None:
        """The instrument registered as ``name``, or None."""
        return self.instruments.get_metric(name)

    def profile(self, name: str, *, memory: bool = False) -> ProfileSession:
        """A profiling session: ``with telemetry.profile("load_map") as session:`` and ``session.scope("parse")``
        inside; statistics in ``session.report`` and :attr:`profiler` (``summary()``), durations exported as
        ``profile_duration_seconds{session, scope}``. ``memory=True`` measures allocations with tracemalloc."""
        return self.profiler.profile(name, memory=memory)

    def add_hook(self, kind: str, callback: Hook) -> None:
        """Call ``callback`` at every moment of ``kind``: ``"collection"`` (with each new frame, on the collecting
        thread, after every output had it), ``"export"`` (with ``(exporter, ok)`` after each export attempt) or
        ``"event"`` (with each recorded event). Each hook is isolated: one that raises is logged once and counted
        in ``hooks.errors``; hooks run inline, so they must be quick (see :mod:`otel_telemetry.recording.hooks`).

        Raises:
            ValueError: on an unknown ``kind`` or a ``callback`` that is not callable.
        """
        self.hooks.add(kind, callback)

    def remove_hook(self, kind: str, callback: Hook) -> bool:
        """Remove one registration of ``callback`` for ``kind``; False when it was not registered."""
        return self.hooks.remove(kind, callback)

    @property
    def dashboard_builder(self) -> DashboardBuilder:
        """What builds :meth:`dashboard` from frames (``dashboard_builder.add_widget(Widget(...))`` for widgets of
        your own; ``DashboardBuilder(sources=...)`` semantics). Made on first use."""
        with self._dashboard_lock:
            builder = self._dashboard_builder
            if builder is None:
                from otel_telemetry.snapshot.dashboard import DashboardBuilder

                builder = self._dashboard_builder = DashboardBuilder()
                for frame in self._dashboard_frames:
                    builder.on_frame(frame)
                self._dashboard_frames = []
            return builder

    def _dashboard_frame(self, frame: Frame) -> None:
        """Frame listener: the builder's, once it exists; until then the last two frames are kept for it."""
        builder = self._dashboard_builder
        if builder is not None:
            builder.on_frame(frame)
            return
        with self._dashboard_lock:
            if self._dashboard_builder is None:
                self._dashboard_frames = [*self._dashboard_frames[-1:], frame]
                return
        self._dashboard_builder.on_frame(frame)

    def _dashboard_http(self, path: str) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """``GET /dashboard``: :meth:`dashboard` as JSON (the route and its modules are loaded by the first
        request)."""
        if not path.startswith("/dashboard"):
            return None
        route = self._dashboard_route
        if route is None:
            from otel_telemetry.snapshot.dashboard import DashboardRoute

            route = self._dashboard_route = DashboardRoute(self.dashboard)
        return route(path)

    def dashboard(self) -> Dashboard:
        """The runtime dashboard of the newest frame: system, tick loop, network, database, cache, handlers with
        percentiles, active alerts and widgets (``dashboard().to_json()``; also served at ``GET /dashboard``, which
        ``otel-telemetry top`` renders). Rates and percentiles cover the interval since the frame before."""
        from otel_telemetry.snapshot.dashboard import Dashboard, SystemOverview

        frame = self._frame_now()
        if frame is None:  # the SDK is disabled: nothing is collected
            return Dashboard(system=SystemOverview(self.config.server_id, datetime.now(UTC)))
        return self.dashboard_builder.build(frame, [alert.to_dict() for alert in self.alerts.active()])

    def _drops(self) -> list[tuple[str, str, int]]:
        """Everything dropped so far, as ``(source, reason, count)``."""
        found: list[tuple[str, str, int]] = []
        for monitor in self.monitors():
            source = monitor.section.value
            found += [(source, f"invalid:{call}", n) for call, n in monitor.rejected.items()]
            if monitor.callback_errors:
                found.append((source, "callback_error", monitor.callback_errors))
        found.append(("network", "player_overflow", self.network.players_overflowed))
        found += [(owner, "cardinality", n) for owner, n in self.series.refusals().items()]
        found.append(("series", "name_collision", self.series.refused_names))
        found.append(("metrics", "negative_counter", self.metrics.unexported_decrements))
        found.append(("game", "unknown_player", self.game.unknown_leaves))
        found.append(("game", "attribute_overflow", self.game.overflowed))
        found.append(("performance", "phase_overflow", self.performance.phases_overflowed))
        found += [("metrics", f"invalid:{call}", n) for call, n in self.metrics.rejected.items()]
        found.append(("metrics", "tag_overflow", self.metrics.overflowed))
        found += [("instruments", f"invalid:{reason}", n) for reason, n in self.instruments.dropped.items()]
        profiler = self.profiler
        found.append(("profiler", "retention", profiler.dropped_sessions))
        found.append(("profiler", "unexported", profiler.unexported))
        found.append(("profiler", "invalid", profiler.rejected))
        found.append(("profiler", "failed", profiler.errors))
        reasons = {"capacity": "buffer_full", "age": "expired"}
        found += [("events", reasons.get(r, r), n) for r, n in self.events.dropped_by_reason.items()]
        found.append(("producer", "source_failure", self._producer.failures))
        collector = self._collector
        if collector is not None:
            found.append(("collection", "failed", collector.failures))
            found += [(f"frame_listener:{name}", "failed", n) for name, n in collector.listener_failures.items()]
        if self._otlp is not None:
            found.append(("otlp", "queue_full", self._otlp.dropped))
        if self._principal is not None:
            found += [("principal", reason, n) for reason, n in self._principal.stats.dropped_by_reason.items()]
        if self._snapshot_file is not None:
            found.append(("snapshot_file", "io_error", self._snapshot_file.errors))
        found += [(f.export_counts.name, "io_error", f.errors) for f in self._file_exporters]
        if self._prometheus is not None:
            found.append(("prometheus", "unrepresentable", self._prometheus.dropped_points))
        if self.hardware is not None:
            found.append(("hardware", "stuck_sample", self.hardware.stuck_samples))
            found.append(("hardware", "source_error", sum(self.hardware.errors.values())))
        if self._http is not None:
            stats = self._http.stats
            found.append(("http", "busy", stats["rejected_busy"] + stats["rejected_full"]))
            found.append(("http", "timed_out", stats["timed_out"]))
        return found

    def _own_health(self) -> tuple[HealthStatus, str]:
        """Telemetry's own component: degraded when collections are late or fail, or exports fail."""
        problems = []
        if self._producer.failures:
            problems.append(f"{self._producer.failures} produced-metric failures")
        collector = self._collector
        if collector is not None and collector.listener_failures:
            problems.append(f"{sum(collector.listener_failures.values())} frame listener failures")
        if self._prometheus is not None and self._prometheus.scrape_failures:
            problems.append(f"{self._prometheus.scrape_failures} scrape translation failures")
        # An exporter is failing when its failure count grew since the previous check.
        if self._principal is not None and self._principal.stats.failing:
            problems.append(f"principal export failing ({self._principal.stats.failures} failures so far)")
        for counts in self._export_counts:
            if counts.name == "principal":
                continue  # judged by its latest attempts above: sustained failure, not a count that grew
            failures = counts.failures
            if failures > self._failures_seen.get(counts.name, 0):
                problems.append(f"{counts.name} export failing ({failures} failures so far)")
            self._failures_seen[counts.name] = failures
        last = collector.last_collection if collector is not None else None
        late_after = 3 * self.config.collection_interval + 1.0
        if last is not None and time.monotonic() - last > late_after:
            problems.append(f"no collection for more than {late_after:.0f} s")
        if problems:
            return HealthStatus.DEGRADED, "; ".join(problems)
        return HealthStatus.HEALTHY, "collecting"

    def get_current_metrics(self) -> ServerMetrics:
        """The :class:`ServerMetrics` of the newest frame (taken every ``collection_interval``).

        Before the first frame, the first one is taken now; when the SDK is disabled, an empty snapshot.
        Never blocks recording: frames are built from accumulated state.
        """
        frame = self._frame_now()
        if frame is not None:
            return frame.server_metrics
        return server_metrics(self.config.server_id, datetime.now().astimezone(), None)

    def get_history(self, since: datetime | None = None) -> list[ServerMetrics]:
        """The last ``historical_retention`` snapshots, oldest first (optionally only those since ``since``)."""
        return self._history.snapshots(since)

    @property
    def history(self) -> History:
        """The snapshot ring, with ``summary("performance.tick_rate_fps")`` for window aggregates."""
        return self._history

    def current_metrics_otlp(self) -> bytes:
        """The newest frame as OTLP protobuf bytes (an ``ExportMetricsServiceRequest``), the standard binary form;
        decode with :func:`otel_telemetry.decode_otlp_metrics`. Empty bytes before the first frame."""
        frame = self.latest_frame()
        return encode_otlp_metrics(frame.metrics_data) if frame is not None else b""

    def collect(self) -> MetricsData | None:
        """Take a frame now (on the calling thread), publish it to every output and return its ``MetricsData``;
        None when disabled."""
        collector = self._collector
        frame = collector.collect() if collector is not None else None
        return frame.metrics_data if frame is not None else None

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop collecting, serving and exporting; returns within ``timeout`` seconds even when an exporter is
        unreachable. A last frame is taken and handed to the outputs first.

        Returns True when everything stopped in time. Further calls do nothing and return True.
        """
        deadline = time.monotonic() + max(0.0, timeout)

        def left(share: float = 1.0) -> float:
            return max(0.0, deadline - time.monotonic()) * share

        with self._shutdown_lock:
            if self._shut_down:
                return True
            self._shut_down = True
        _exit_hooks.discard(self)
        done = True
        if self._http is not None:
            done = self._http.shutdown(timeout=min(1.0, left())) and done
        if self._prometheus is not None:
            self._prometheus.close()
        self.health.stop(timeout=min(1.0, left()))
        collector = self._collector
        if collector is not None:
            done = collector.stop(left(0.5)) and done
            collector.collect()  # the last frame: what was recorded since the previous one reaches the outputs
        last = self.latest_frame()
        if self._file_export is not None and last is not None:
            self._file_export.export_now(last)  # the files end with the last frame, whatever the interval
        if self._alert_evaluator is not None:
            done = self._alert_evaluator.close(left(0.25)) and done
        if self._otlp is not None:
            done = self._otlp.shutdown(left(0.5)) and done
        if self._principal is not None:
            self._principal.send_now()  # the last frame too (a frame is pushed once)
            done = self._principal.shutdown(timeout=left(0.5)) and done
        self._handlers.close()  # this handle's traced/timer go quiet; gives up the default if it held it
        done = self._stop_providers(left()) and done
        if self._snapshot_file is not None:
            self._snapshot_file.close()
        if self.hardware is not None:
            done = self.hardware.close(left()) and done
        for monitor in self.monitors():
            monitor.detach()
        if not done:
            _logger.warning("telemetry shutdown did not finish within %.1f s; exporters left stopping", timeout)
        return done

    def _stop_providers(self, timeout: float) -> bool:
        """Shut the providers down on a daemon thread, so that an unreachable exporter cannot hold this call."""
        deadline = time.monotonic() + timeout
        providers = (
            getattr(self, "meter_provider", None),
            getattr(self, "tracer_provider", None),
            self._logger_provider,  # never made here: shutting down needs no logs SDK
        )

        def stop() -> None:
            for provider in providers:
                close = getattr(provider, "shutdown", None)
                if close is None:
                    continue
                try:
                    if isinstance(provider, SdkMeterProvider):
                        close(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)
                    else:
                        close()
                except Exception as error:  # typically: no time was left for a reader or exporter to finish
                    failed.append(type(provider).__name__)
                    _logger.warning("shutting down %s did not complete: %s", type(provider).__name__, error)

        failed: list[str] = []
        stopper = threading.Thread(target=stop, name="otel-telemetry-shutdown", daemon=True)
        stopper.start()
        stopper.join(max(0.0, deadline - time.monotonic()))
        return not stopper.is_alive() and not failed

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "shut down" if self._shut_down else ("enabled" if self.enabled else "disabled")
        return f"<Telemetry server_id={self.config.server_id!r} {state} prometheus_port={self.prometheus_port}>"

    # -- statsd-style reads and uptime ------------------------------------------------------------------------------
    @property
    def process_start_time(self) -> float:
        """When this process started (Unix epoch seconds; from psutil, else when this handle was set up)."""
        start = getattr(self, "_process_start", None)
        if start is None:
            try:
                import psutil

                start = float(psutil.Process().create_time())
            except Exception:  # psutil missing or refused: the handle's own start is the best estimate left
                start = time.time() - self.uptime_seconds
            self._process_start: float = start
        return start

    @property
    def uptime_seconds(self) -> float:
        """Seconds since this handle was set up (what ``/health`` shows as ``details.uptime_seconds``)."""
        return self.health.uptime_seconds

    def _uptime_instruments(self) -> list[tuple[ScalarSpec, Callable[[], Points]]]:
        """``process.start_time`` and ``process.uptime`` (s), gauges produced with telemetry's own metrics:
        ``process_start_time_seconds`` and ``process_uptime_seconds`` on ``/metrics``; claimed in the series
        registry, their 2 series reserved."""

        def start() -> Points:
            return [(self.process_start_time, {})]

        def uptime() -> Points:
            return [(max(0.0, time.time() - self.process_start_time), {})]

        self.series.reserve(2, "process")
        gauge = Instrument.OBSERVABLE_GAUGE
        return [
            (ScalarSpec(name, gauge, "s", description), observe)
            for name, observe, description in (
                ("process.start_time", start, "Start time of the process since the Unix epoch"),
                ("process.uptime", uptime, "Seconds since the process started"),
            )
            if self.series.claim(name, "s", "gauge", "process") is not None
        ]

    def get_metrics(self) -> dict[str, Any]:
        """Every statsd-style series in one JSON-ready dict: ``timestamp`` (ISO-8601 UTC), ``uptime_seconds`` (since
        this handle was set up), ``process_start_time_seconds`` and ``metrics`` (:meth:`MetricsFacade.get_all_metrics`:
        ``counters``, ``gauges``, ``timings``, ``distributions``...). Thread-safe."""
        from otel_telemetry.recording.exporters import MetricsExporter

        metrics = MetricsExporter.to_json(self.metrics.get_all_metrics())
        return {
            "timestamp": metrics["timestamp"],
            "uptime_seconds": self.uptime_seconds,
            "process_start_time_seconds": self.process_start_time,
            "metrics": metrics,
        }

    def get_metrics_summary(self, *, fresh: bool = False) -> dict[str, Any]:
        """A high-level overview as a dict: :meth:`MetricsExporter.to_summary` of the statsd-style series
        (``timestamp``, ``uptime_seconds``, ``timings`` with ``latency_ms``, ``counters``, ``gauges``, ``errors``)
        plus ``handlers``: per ``@telemetry.traced`` handler ``requests``, ``errors``, ``latency_sum_ms`` and
        ``latency_ms`` (``mean``, ``p50``, ``p95``, ``p99``) since start.

        The handler figures come from the newest frame (so they agree with ``/metrics``); ``fresh=True`` takes a
        frame now first (:meth:`collect`: costs one collection, so not for every tick).
        """
        from otel_telemetry.recording.exporters import MetricsExporter, handler_summary

        summary = MetricsExporter.to_summary(self.metrics.get_all_metrics())
        summary["uptime_seconds"] = self.uptime_seconds
        summary["handlers"] = handler_summary(self.collect() if fresh else self.latest_metrics())
        return summary


def setup_telemetry(
    config: TelemetryConfig | None = None, *, metric_readers: Sequence[MetricReader] = (), **overrides: Any
) -> Telemetry:
    """Set up telemetry for one game server and return its :class:`Telemetry` handle.

    ``config`` defaults to ``TelemetryConfig()`` (environment, then the spec's defaults); keyword ``overrides``
    are applied on top (``setup_telemetry(enable_prometheus_endpoint=True, prometheus_port=0)``). Invalid settings
    raise ``ValueError`` naming the field. Nothing global is set: each call gives an independent handle.

    ``metric_readers`` adds readers of your own to the handle's meter provider; use the producing readers of
    :mod:`otel_telemetry.export.readers` so that they also receive the histograms and per-player series.
    """
    if config is None:
        config = TelemetryConfig(**overrides)
    elif overrides:
        config = config.replace(**overrides)
    handle = Telemetry(config, metric_readers)
    _sweep_import_garbage()
    return handle


_swept = False


def _sweep_import_garbage() -> None:
    """Once per process, after the first handle is set up: one full garbage collection, on the caller's thread.

    The first setup imports the OpenTelemetry SDK and this package (some 30,000 objects). The first full
    collection after that scans them all; left to itself it happens seconds later, on whichever thread then
    allocates, a background thread that holds the GIL for it (16 ms measured, on the first scrape's thread) while
    the game loop waits. Taken here it costs about 5 ms once, before the loop runs, and later full collections are
    rare (they wait until the long-lived objects grew by a quarter).
    """
    global _swept
    if not _swept:
        _swept = True
        gc.collect()
