"""OTLP export of frames with the official exporters (HTTP/protobuf or gRPC), plus traces and event logs.

:class:`OtlpFrameExporter` sends every frame (or every Nth, when the standard ``OTEL_METRIC_EXPORT_INTERVAL`` asks
for a slower cadence than ``collection_interval``) from its own thread, so a slow or unreachable Collector never
delays a collection. Frames waiting while an export is under way are bounded: the oldest is dropped and counted.
A cumulative frame is sent as delta when the exporter prefers delta (``OTEL_EXPORTER_OTLP_METRICS_
TEMPORALITY_PREFERENCE``): monotonic sums and histograms become the change since the previous export.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from opentelemetry.sdk.metrics import Counter, Histogram, ObservableCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)

from otel_telemetry._otel import exporter_preferences, otlp_log_exporter, request_sender, urllib3_metric_exporter
from otel_telemetry.accumulators import HistogramSnapshot, SeriesKey
from otel_telemetry.config import OtlpDestination, Signal, TelemetryConfig, otlp_destination
from otel_telemetry.export.selftelemetry import ExportCounts
from otel_telemetry.pacing import LoopPacer, Phase
from otel_telemetry.producer import HistogramProducer, SumTotals, sum_delta
from otel_telemetry.snapshot.frame import Frame

_logger = logging.getLogger(__name__)

#: The standard variable for the metric export interval, in milliseconds.
EXPORT_INTERVAL_VARIABLE = "OTEL_METRIC_EXPORT_INTERVAL"


def _destination(config: TelemetryConfig, signal: Signal) -> OtlpDestination:
    destination = otlp_destination(config, signal)
    if destination is None:
        raise ValueError(f"no OTLP endpoint is configured for {signal} (set otlp_endpoint or otlp_{signal}_endpoint)")
    return destination


def metric_exporter(config: TelemetryConfig) -> MetricExporter:
    """The official OTLP metric exporter for ``config``: its endpoint and protocol resolved as the OpenTelemetry
    specification says (:func:`~otel_telemetry.config.otlp_destination`); the other ``OTEL_EXPORTER_OTLP_*``
    variables (headers, timeout, compression, certificates, insecure) are read by the exporter itself."""
    destination = _destination(config, "metrics")
    if destination.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        return GrpcExporter(endpoint=destination.endpoint, insecure=destination.insecure)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    if needs_no_environment(destination.endpoint):
        return urllib3_metric_exporter(destination.endpoint)
    return HttpExporter(endpoint=destination.endpoint, session=steady_session(destination.endpoint))


#: The variables that make the OpenTelemetry HTTP exporters load a ``requests`` session of a credential provider.
CREDENTIAL_PROVIDER_VARIABLES = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_METRICS_CREDENTIAL_PROVIDER",
)
_CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def needs_no_environment(url: str) -> bool:
    """Whether exports to ``url`` take nothing from the environment beyond the ``OTEL_*`` variables: a plain
    ``http://`` URL (no certificate applies) with no proxy for it, no netrc credentials and no credential
    provider. Such an exporter sends through urllib3 directly (:func:`~otel_telemetry._otel.urllib3_metric_exporter`);
    any other through a ``requests`` session (:func:`steady_session`)."""
    if not url.lower().startswith("http://") or any(os.environ.get(n) for n in CREDENTIAL_PROVIDER_VARIABLES):
        return False
    from requests.utils import get_environ_proxies, get_netrc_auth

    return not get_environ_proxies(url) and get_netrc_auth(url) is None


def steady_session(url: str) -> Any:
    """A ``requests`` session for the metric exporter that reads the environment once, now, instead of at every
    export; None (the exporter makes its own) when a credential provider is configured.

    With ``trust_env`` on, requests scans the whole environment for proxy settings at every request (about a
    third of an export's HTTP cost at one export a second). The proxy for ``url`` (``HTTP(S)_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``) is resolved here and set on the session, which then stops reading the
    environment. Where requests would take more from it per request (credentials from a netrc file, or a CA
    bundle variable for an ``https`` URL), the session keeps reading it.
    """
    env = os.environ
    if any(env.get(name) for name in CREDENTIAL_PROVIDER_VARIABLES):
        return None
    import requests
    from requests.utils import get_environ_proxies, get_netrc_auth

    session = requests.Session()
    if get_netrc_auth(url) is not None:
        return session
    if url.lower().startswith("https:") and any(env.get(name) for name in _CA_BUNDLE_VARIABLES):
        return session
    session.proxies.update(get_environ_proxies(url))
    session.trust_env = False
    return session


def _span_exporter(destination: OtlpDestination) -> Any:
    if destination.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        return GrpcSpans(endpoint=destination.endpoint, insecure=destination.insecure)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    return HttpSpans(endpoint=destination.endpoint)


def _log_exporter(destination: OtlpDestination) -> Any:
    if destination.protocol == "grpc":
        return otlp_log_exporter("grpc", endpoint=destination.endpoint, insecure=destination.insecure)
    return otlp_log_exporter("http/protobuf", endpoint=destination.endpoint)


def trace_and_log_exporters(config: TelemetryConfig) -> tuple[Any, Any] | None:
    """OTLP span and log exporters (traces from @traced, events as log records), each to its own destination (its
    own endpoint and protocol, else the common ones); None while OTLP is off."""
    if otlp_destination(config, "traces") is None and otlp_destination(config, "logs") is None:
        return None
    return _span_exporter(_destination(config, "traces")), _log_exporter(_destination(config, "logs"))


def frames_per_export(collection_interval: float, environ: Mapping[str, str] | None = None) -> int:
    """How many frames make one export: 1, or ``OTEL_METRIC_EXPORT_INTERVAL`` (ms) over the collection interval."""
    raw = (os.environ if environ is None else environ).get(EXPORT_INTERVAL_VARIABLE, "").strip()
    if not raw:
        return 1
    try:
        milliseconds = float(raw)
    except ValueError:
        _logger.warning("%s=%r is not a number of milliseconds; exporting every frame", EXPORT_INTERVAL_VARIABLE, raw)
        return 1
    return max(1, round(milliseconds / 1000.0 / collection_interval))


class _DeltaConverter:
    """Turns consecutive cumulative frames into deltas: monotonic sums and histograms since the previous export."""

    def __init__(self, producer: HistogramProducer) -> None:
        self._producer = producer
        self._sums: SumTotals = {}
        self._histograms: dict[SeriesKey, tuple[HistogramSnapshot, int]] = {}

    def convert(self, frame: Frame) -> MetricsData:
        produced = {
            m.name: m
            for m in self._producer.produce(
                AggregationTemporality.DELTA,
                self._histograms,
                include_gauges=False,
                states=frame.histograms.values(),
                include_scalars=False,  # the frame's own sums are converted below
            )
        }
        resource_metrics = []
        for rm in frame.metrics_data.resource_metrics:
            scopes = []
            for sm in rm.scope_metrics:
                scopes.append(replace(sm, metrics=[self._metric(m, produced) for m in sm.metrics]))
            resource_metrics.append(replace(rm, scope_metrics=scopes))
        return MetricsData(resource_metrics=resource_metrics)

    def _metric(self, metric: Metric, produced: Mapping[str, Metric]) -> Metric:
        data = metric.data
        if isinstance(data, HistogramData):
            return produced.get(metric.name, metric)
        if not isinstance(data, Sum) or not data.is_monotonic:
            return metric
        points = []
        for point in data.data_points:
            delta, start = sum_delta(
                self._sums,
                metric.name,
                point.attributes or {},
                point.value,
                point.time_unix_nano,
                point.start_time_unix_nano,
            )
            points.append(replace(point, value=delta, start_time_unix_nano=start))
        return replace(
            metric, data=replace(data, data_points=points, aggregation_temporality=AggregationTemporality.DELTA)
        )


class OtlpFrameExporter:
    """Exports frames over OTLP from one thread (``otel-telemetry-otlp``). Thread-safe.

    ``on_frame`` only queues; the thread exports. At most ``queue_size`` frames wait; beyond that the oldest is
    dropped and counted in :attr:`dropped`. Attempts and failures are counted in :attr:`counts`.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        producer: HistogramProducer,
        *,
        every: int = 1,
        queue_size: int = 4,
        timeout: float = 10.0,
        pacer: LoopPacer | None = None,
    ) -> None:
        # Loaded here, at setup: imported at the first export, it would hold the GIL for milliseconds on this
        # thread while the game loop runs (wrapt and asyncio come with it).
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        from otel_telemetry.export.otlp_encoding import RequestEncoder  # protobuf: only with an OTLP endpoint

        self._suppress = suppress_instrumentation
        self._exporter = exporter
        self._phase = Phase(pacer, initial=0.005, timeout=0.5)
        self._every = max(1, every)
        self._timeout_millis = timeout * 1000
        temporality, _aggregation = exporter_preferences(exporter)
        delta = temporality.get(Histogram) is AggregationTemporality.DELTA or any(
            temporality.get(kind) is AggregationTemporality.DELTA for kind in (Counter, ObservableCounter)
        )
        self._delta = _DeltaConverter(producer) if delta else None
        # The OTLP/HTTP exporter gets requests encoded here: consecutive frames update one request in place
        # (otlp_encoding), where the exporter's own export would build every message again.
        self._send = request_sender(exporter)
        self.encoder = RequestEncoder()
        self._queue: deque[Frame] = deque()
        self._queue_size = queue_size
        self._wake = threading.Condition()
        self._stopping = False
        self._seen = 0
        self.counts = ExportCounts("otlp")
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="otel-telemetry-otlp", daemon=True)
        self._thread.start()

    def on_frame(self, frame: Frame) -> None:
        """Queue ``frame`` for export when it is one of every ``every`` frames."""
        with self._wake:
            self._seen += 1
            if (self._seen - 1) % self._every:
                return
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(frame)
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:
                    return
                frame = self._queue.popleft()
            # Encoding holds the GIL for milliseconds: start it in an idle gap of the game loop.
            self._phase.run(lambda frame=frame: self._export(frame))  # type: ignore[misc]

    def _export(self, frame: Frame) -> None:
        data = self._delta.convert(frame) if self._delta is not None else frame.metrics_data
        try:
            with self._suppress():
                if self._send is not None:
                    result = self._send(self.encoder.encode(data))
                else:
                    result = self._exporter.export(data, timeout_millis=self._timeout_millis)
        except Exception:
            _logger.exception("OTLP export raised")
            result = MetricExportResult.FAILURE
        self.counts.record(result is MetricExportResult.SUCCESS)

    def shutdown(self, timeout: float) -> bool:
        """Export what is queued within ``timeout`` seconds, then stop; True when the thread ended in time."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(max(0.0, timeout))
        stopped = not self._thread.is_alive()
        try:
            self._exporter.shutdown(timeout_millis=max(0.0, timeout) * 1000)
        except Exception:
            _logger.exception("shutting down the OTLP exporter failed")
        return stopped
