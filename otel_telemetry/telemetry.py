"""``setup_telemetry()``: resource, providers, readers, monitors and the HTTP server, wired once."""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, cast

from opentelemetry.metrics import Meter, MeterProvider, NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NoOpTracerProvider, Tracer, TracerProvider

from instrumentations import __version__ as _instrumentations_version
from instrumentations._wiring import SCOPE_NAME
from instrumentations.game import GameMonitor
from instrumentations.hardware import HardwareMonitor
from instrumentations.network import NetworkMonitor
from instrumentations.performance import PerformanceMonitor
from otel_telemetry._version import __version__
from otel_telemetry.alerts.core import (
    AlertEvaluatingReader,
    AlertManager,
    LogNotifier,
    WebhookNotifier,
    default_rules,
    register_alert_metric,
)
from otel_telemetry.catalog import Instrument, instruments
from otel_telemetry.config import TelemetryConfig
from otel_telemetry.export.http_server import MetricsHTTPServer
from otel_telemetry.export.principal import PrincipalExporter
from otel_telemetry.export.readers import LatestMetricsExporter, ProducingPeriodicReader, PrometheusReader
from otel_telemetry.export.selftelemetry import CollectionStats, CountingExporter, ExportCounts, register_self_telemetry
from otel_telemetry.producer import HistogramProducer, ProducingReaderMixin
from otel_telemetry.recording.events import Event, EventRecorder
from otel_telemetry.recording.facade import MetricsFacade
from otel_telemetry.recording.health import HealthRegistry, HealthStatus
from otel_telemetry.recording.tracing import HandlerTelemetry, bind_handler_telemetry, bound_handler_telemetry
from otel_telemetry.snapshot.files import SnapshotFileWriter
from otel_telemetry.snapshot.model import History, ServerMetrics, build_server_metrics

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


def _otlp_reader(config: TelemetryConfig, counts: ExportCounts) -> MetricReader | None:
    if config.otlp_endpoint is None:
        return None
    endpoint = config.otlp_endpoint
    exporter: Any
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        exporter = GrpcExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        if not endpoint.endswith("/v1/metrics"):
            endpoint = endpoint.rstrip("/") + "/v1/metrics"
        exporter = HttpExporter(endpoint=endpoint)
    return ProducingPeriodicReader(CountingExporter(exporter, counts))


def _otlp_trace_and_log_exporters(config: TelemetryConfig) -> tuple[Any, Any] | None:
    """OTLP span and log exporters for the configured endpoint (traces from @traced, events as log records)."""
    if config.otlp_endpoint is None:
        return None
    base = config.otlp_endpoint.rstrip("/")
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        insecure = base.startswith("http://")
        return GrpcSpans(endpoint=base, insecure=insecure), GrpcLogs(endpoint=base, insecure=insecure)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    base = base.removesuffix("/v1/metrics")
    return HttpSpans(endpoint=base + "/v1/traces"), HttpLogs(endpoint=base + "/v1/logs")


class _PrincipalCounts:
    """Export attempts/failures of the principal exporter, for self-telemetry."""

    name = "principal"

    def __init__(self, exporter: PrincipalExporter) -> None:
        self._exporter = exporter

    @property
    def attempts(self) -> int:
        return self._exporter.stats.attempts

    @property
    def failures(self) -> int:
        return self._exporter.stats.failures


class _SnapshotReader(ProducingPeriodicReader):
    """The periodic in-process reader; it also times its collections for self-telemetry."""

    stats: CollectionStats | None = None

    def collect(self, timeout_millis: float = 10_000) -> None:  # type: ignore[misc]  # timing wrapper only
        stats = self.stats
        if stats is not None:
            stats.started()
        try:
            super().collect(timeout_millis=timeout_millis)
        finally:
            if stats is not None:
                stats.finished()


class Telemetry:
    """The handle :func:`setup_telemetry` returns. Thread-safe.

    Attributes:
        config: the resolved :class:`TelemetryConfig`.
        hardware, network, performance, game: the four monitors (call their methods from game code).
        metrics: the statsd-style facade (``timing``, ``increment``, ``gauge``, ``get_timing``...).
        health: the health registry served at ``/health``, ``/health/live`` and ``/health/ready``.
        alerts: the :class:`~otel_telemetry.AlertManager` evaluating the spec's threshold rules every collection
            interval (``alerts.active()``, ``alerts.acknowledge(name)``, ``alerts.add_notifier(...)``).
        events: recent events and per-name hooks (see :meth:`record_event`).
        meter_provider, tracer_provider: this handle's own OpenTelemetry providers (never the global ones).
        resource: the OpenTelemetry resource of every signal.

    Each call to :func:`setup_telemetry` gives an independent handle with its own providers, readers and HTTP
    server; handles share nothing, so tests and multi-server processes may create many. Use ``shutdown()`` (or
    the handle as a context manager) to stop it.

    The monitors are attached the way the ``opentelemetry_instrumentor`` entry points attach them
    (``instrumentations._wiring.attach_monitor``), but per handle: OpenTelemetry instrumentors are process-wide
    singletons, which would make a second handle impossible. The entry-point instrumentors serve
    ``opentelemetry-instrument`` style auto-instrumentation, with one monitor per process.
    """

    def __init__(self, config: TelemetryConfig, metric_readers: Sequence[MetricReader] = ()) -> None:
        self.config = config
        self.resource = build_resource(config)
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        self._http: MetricsHTTPServer | None = None
        self._prometheus: PrometheusReader | None = None
        self._latest = LatestMetricsExporter()
        self._last_collection: float | None = None
        self._failures_seen: dict[str, int] = {}
        self._history = History(config.historical_retention)
        self._readers: list[MetricReader] = []
        interval = config.collection_interval
        refresh = interval / 2
        window = config.percentile_window
        self.hardware: HardwareMonitor | None = (
            HardwareMonitor(refresh_interval=refresh) if config.enable_hardware_metrics and config.enabled else None
        )
        self.network = NetworkMonitor(
            max_tracked_players=config.max_tracked_players, percentile_window=window, refresh_interval=refresh
        )
        self.performance = PerformanceMonitor(
            target_tick_rate=config.target_tick_rate, percentile_window=window, refresh_interval=refresh
        )
        self.game = GameMonitor(
            attribute_limit=config.attribute_limit,
            max_tracked_players=config.max_tracked_players,
            percentile_window=window,
            refresh_interval=refresh,
        )
        self.meter_provider: MeterProvider
        self.tracer_provider: TracerProvider
        self.health = HealthRegistry()
        self._handlers: HandlerTelemetry | None = None
        if not config.enabled:
            self.meter_provider = NoOpMeterProvider()
            self.tracer_provider = NoOpTracerProvider()
            self.metrics = MetricsFacade(None, tag_limit=config.attribute_limit, window=window)
            self.metrics.enabled = False
            self.events = EventRecorder(None)
            self.alerts = AlertManager([])
            return
        self._producer = HistogramProducer(InstrumentationScope(SCOPE_NAME, _instrumentations_version))
        self._collection_stats = CollectionStats()
        snapshot_reader = _SnapshotReader(self._latest, export_interval_millis=interval * 1000)
        snapshot_reader.stats = self._collection_stats
        self._export_counts: list[Any] = []
        self._readers.append(snapshot_reader)
        if config.enable_prometheus_endpoint:
            self._prometheus = PrometheusReader()
            self._readers.append(self._prometheus)
        if self._prometheus is not None:
            self._export_counts.append(self._prometheus.export_counts)
        otlp_counts = ExportCounts("otlp")
        otlp = _otlp_reader(config, otlp_counts)
        if otlp is not None:
            self._readers.append(otlp)
            self._export_counts.append(otlp_counts)
        self.alerts = AlertManager(
            default_rules(
                dict(config.alert_thresholds),
                config.alert_for,
                cooldown=config.alert_cooldown,
            )
            if config.enable_alerts
            else [],
            notifiers=[LogNotifier()],
        )
        if config.api_endpoint is not None and config.enable_alerts:
            self.alerts.add_notifier(WebhookNotifier(f"{config.api_endpoint}/api/v1/alerts", token=config.server_token))
        self._alert_reader: AlertEvaluatingReader | None = None
        if config.enable_alerts:
            self._alert_reader = AlertEvaluatingReader(
                self.alerts, self.get_current_metrics, self.get_history, interval=interval
            )
            self._readers.append(self._alert_reader)
        self._readers.extend(metric_readers)
        for reader in self._readers:
            if reader is self._alert_reader:
                continue  # evaluates snapshots; it needs no produced metrics
            if not isinstance(reader, ProducingReaderMixin):
                _logger.warning(
                    "%s is not a producing reader: it will miss histograms and per-player series "
                    "(use otel_telemetry.readers.ProducingInMemoryReader or ProducingPeriodicReader)",
                    type(reader).__name__,
                )
                continue
            # The in-process snapshot reader skips per-player series; exporting readers get everything.
            exporting = reader is not cast(MetricReader, snapshot_reader)
            reader.attach_producer(self._producer, self.resource, gauges=exporting)
        self.meter_provider = SdkMeterProvider(
            resource=self.resource, metric_readers=self._readers, views=catalog_views()
        )
        meter = self.meter_provider.get_meter(SCOPE_NAME, _instrumentations_version)
        for monitor in self.monitors():
            monitor.attach(meter)
            self._producer.add_source(monitor.histograms)
            self._producer.add_gauge_source(monitor.produced_gauges)
        self.tracer_provider = SdkTracerProvider(resource=self.resource)
        # The statsd-style facade: its counters and gauges are observable instruments, its timings produced.
        self.metrics = MetricsFacade(
            self.meter_provider.get_meter("otel_telemetry.metrics", __version__),
            tag_limit=config.attribute_limit,
            window=window,
        )
        self._producer.add_source(self.metrics.histograms)
        # @traced handlers and timer() report to the most recently set-up handle (process-wide binding).
        self._handlers = HandlerTelemetry(
            self.tracer_provider.get_tracer("otel_telemetry.handlers", __version__),
            self.meter_provider.get_meter("otel_telemetry.handlers", __version__),
        )
        bind_handler_telemetry(self._handlers)
        self.logger_provider = SdkLoggerProvider(resource=self.resource)
        otlp_exporters = _otlp_trace_and_log_exporters(config)
        if otlp_exporters is not None:
            span_exporter, log_exporter = otlp_exporters
            self.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
            self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
        self.events = EventRecorder(self.logger_provider.get_logger("otel_telemetry.events", __version__))
        register_alert_metric(self.alerts, self.meter_provider.get_meter("otel_telemetry.alerts", __version__))
        register_self_telemetry(
            self.meter_provider.get_meter("otel_telemetry.self", __version__),
            self._collection_stats,
            self._export_counts,
            [self._drops],
        )
        self._principal: PrincipalExporter | None = None
        if config.api_endpoint is not None:
            self._principal = PrincipalExporter(
                endpoint=config.api_endpoint,
                token=config.server_token,
                payload=lambda: self.get_current_metrics().to_dict(),
                interval=config.api_send_interval,
                buffer_size=config.api_buffer_size,
            )
            self._export_counts.append(_PrincipalCounts(self._principal))
            self._principal.start()
        self._snapshot_file: SnapshotFileWriter | None = None
        if config.snapshot_file is not None:
            self._snapshot_file = SnapshotFileWriter(
                config.snapshot_file,
                format=config.snapshot_file_format,  # type: ignore[arg-type]
            )
        self.health.register_check("telemetry", self._own_health, interval=max(1.0, interval), timeout=1.0)
        self.health.start()
        # Each periodic collection also becomes a ServerMetrics snapshot in the history ring.
        self._latest.add_listener(self._on_collection)
        if self._prometheus is not None:
            try:
                self._http = MetricsHTTPServer(
                    self._prometheus.registry, config.prometheus_host, config.prometheus_port, [self.health.handle]
                )
            except OSError:
                self.shutdown(timeout=2.0)
                raise

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

    def latest_metrics(self) -> MetricsData | None:
        """The most recent periodic collection (every ``collection_interval``), or None before the first."""
        return self._latest.latest()

    def record_event(self, name: str, attributes: Mapping[str, object] | None = None, severity: str = "info") -> Event:
        """Record a game event: an OpenTelemetry log record (and span event inside a span), kept in memory too.

        See :attr:`events` for querying recent events and hooking callbacks per event name.
        """
        return self.events.record_event(name, attributes, severity)

    def _drops(self) -> list[tuple[str, str, int]]:
        """Everything dropped so far, as ``(source, reason, count)``."""
        found: list[tuple[str, str, int]] = []
        for monitor in self.monitors():
            source = monitor.section.value
            found += [(source, f"invalid:{call}", n) for call, n in monitor.rejected.items()]
            if monitor.callback_errors:
                found.append((source, "callback_error", monitor.callback_errors))
        found.append(("network", "player_overflow", self.network.players_overflowed))
        found.append(("game", "attribute_overflow", self.game.overflowed))
        found.append(("performance", "phase_overflow", self.performance.phases_overflowed))
        found += [("metrics", f"invalid:{call}", n) for call, n in self.metrics.rejected.items()]
        found.append(("metrics", "tag_overflow", self.metrics.overflowed))
        found.append(("events", "buffer_full", self.events.dropped))
        found.append(("producer", "source_failure", self._producer.failures))
        if self._principal is not None:
            stats = self._principal.stats
            found.append(("principal", "buffer_full_or_rejected", stats.dropped))
        if self._snapshot_file is not None:
            found.append(("snapshot_file", "io_error", self._snapshot_file.errors))
        if self._prometheus is not None:
            found.append(("prometheus", "unrepresentable", self._prometheus.dropped_points))
        return found

    def _own_health(self) -> tuple[HealthStatus, str]:
        """Telemetry's own component: degraded when collections are late or exports fail."""
        problems = []
        if self._producer.failures:
            problems.append(f"{self._producer.failures} produced-metric failures")
        if self._latest.listener_failures:
            problems.append(f"{self._latest.listener_failures} snapshot failures")
        if self._prometheus is not None and self._prometheus.scrape_failures:
            problems.append(f"{self._prometheus.scrape_failures} scrape translation failures")
        # An exporter is failing when its failure count grew since the previous check.
        for counts in self._export_counts:
            failures = counts.failures
            if failures > self._failures_seen.get(counts.name, 0):
                problems.append(f"{counts.name} export failing ({failures} failures so far)")
            self._failures_seen[counts.name] = failures
        last = self._last_collection
        late_after = 3 * self.config.collection_interval + 1.0
        if last is not None and time.monotonic() - last > late_after:
            problems.append(f"no collection for more than {late_after:.0f} s")
        if problems:
            return HealthStatus.DEGRADED, "; ".join(problems)
        return HealthStatus.HEALTHY, "collecting"

    def _on_collection(self, metrics_data: MetricsData) -> None:
        self._last_collection = time.monotonic()
        snapshot = build_server_metrics(self)
        self._history.append(snapshot)
        writer = self._snapshot_file
        if writer is not None:
            if writer.format == "jsonl":
                writer.write(snapshot.to_dict())
            else:
                from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

                writer.write(encode_metrics(metrics_data).SerializeToString())

    def get_current_metrics(self) -> ServerMetrics:
        """The latest :class:`ServerMetrics` snapshot (taken every ``collection_interval``).

        Before the first periodic collection (or when the SDK is disabled) a snapshot is built on the spot.
        Never blocks recording: snapshots are built on the collecting thread from accumulated state.
        """
        latest = self._history.latest()
        return latest if latest is not None else build_server_metrics(self)

    def get_history(self, since: datetime | None = None) -> list[ServerMetrics]:
        """The last ``historical_retention`` snapshots, oldest first (optionally only those since ``since``)."""
        return self._history.snapshots(since)

    @property
    def history(self) -> History:
        """The snapshot ring, with ``summary("performance.tick_rate_fps")`` for window aggregates."""
        return self._history

    def current_metrics_otlp(self) -> bytes:
        """The latest collection as OTLP protobuf bytes (an ``ExportMetricsServiceRequest``), the standard binary
        form; decode with :func:`otel_telemetry.decode_otlp_metrics`. Empty bytes before the first collection."""
        data = self._latest.latest()
        if data is None:
            return b""
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        return encode_metrics(data).SerializeToString()  # type: ignore[no-any-return]

    def collect(self) -> MetricsData | None:
        """Collect now (on the calling thread) and return the result; None when disabled."""
        if not self._readers:
            return None
        self._readers[0].collect()
        return self._latest.latest()

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop serving and exporting; returns within ``timeout`` seconds even when an exporter is unreachable.

        Returns True when everything stopped in time. Further calls do nothing and return True.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._shutdown_lock:
            if self._shut_down:
                return True
            self._shut_down = True
        if self._http is not None:
            self._http.shutdown(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        self.health.stop(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        if getattr(self, "_principal", None) is not None:
            # One last bounded attempt to deliver what is pending, within half of what is left.
            self._principal.shutdown(timeout=max(0.0, deadline - time.monotonic()) / 2)  # type: ignore[union-attr]
        if self._handlers is not None and bound_handler_telemetry() is self._handlers:
            bind_handler_telemetry(None)

        def stop_providers() -> None:
            remaining_ms = max(0.0, deadline - time.monotonic()) * 1000
            for provider in (self.meter_provider, self.tracer_provider, getattr(self, "logger_provider", None)):
                stop = getattr(provider, "shutdown", None)
                if stop is None:
                    continue
                try:
                    if isinstance(provider, SdkMeterProvider):
                        stop(timeout_millis=remaining_ms)
                    else:
                        stop()
                except Exception:
                    _logger.exception("shutting down %s failed", type(provider).__name__)

        # The providers' shutdown may wait on an unreachable exporter; it runs on a daemon thread so this call
        # returns by its deadline whatever the network does.
        stopper = threading.Thread(target=stop_providers, name="otel-telemetry-shutdown", daemon=True)
        stopper.start()
        stopper.join(max(0.0, deadline - time.monotonic()))
        if getattr(self, "_snapshot_file", None) is not None:
            self._snapshot_file.close()  # type: ignore[union-attr]
        # Detach only now: the providers' final collection above must still see every instrument.
        for monitor in self.monitors():
            monitor.detach()
        if stopper.is_alive():
            _logger.warning("telemetry shutdown did not finish within %.1f s; exporters left stopping", timeout)
            return False
        return True

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "shut down" if self._shut_down else ("enabled" if self.enabled else "disabled")
        return f"<Telemetry server_id={self.config.server_id!r} {state} prometheus_port={self.prometheus_port}>"


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
    return Telemetry(config, metric_readers)
