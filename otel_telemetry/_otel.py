"""Every use of OpenTelemetry's private API, in one place.

The Python SDK lacks a few public hooks that this SDK needs (a MetricProducer, the reader list of a provider,
the Prometheus exporter's translation without its per-scrape collection, a stable logs SDK). Each access is a
small function here, and ``tests/test_otel_private.py`` exercises every one of them against the installed
OpenTelemetry packages, so that an upgrade which changes one fails loudly in the tests instead of quietly in
production. Nothing else in the package touches a ``_``-name of OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

# The logs API is still published under an underscored module; its three names are used here and re-exported.
from opentelemetry._logs import Logger as Logger
from opentelemetry._logs import LogRecord as LogRecord
from opentelemetry._logs import SeverityNumber as SeverityNumber

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        MetricExporter,
        MetricExportResult,
        MetricReader,
        MetricsData,
    )

#: Every private access this module makes, for the tests that pin them (one test per entry).
ACCESSES: tuple[str, ...] = (
    "histogram_temporality",
    "instrument_temporality",
    "exporter_preferences",
    "provider_readers",
    "hook_reader",
    "prometheus_translator",
    "prometheus_naming",
    "logs_sdk",
    "logs_api",
    "otlp_log_exporter",
    "request_sender",
    "urllib3_metric_exporter",
)


def histogram_temporality(reader: MetricReader) -> AggregationTemporality:
    """The temporality ``reader`` prefers for histograms (``MetricReader._instrument_class_temporality``)."""
    from opentelemetry.sdk.metrics._internal.instrument import _Histogram

    temporality: AggregationTemporality = reader._instrument_class_temporality[_Histogram]
    return temporality


def instrument_temporality(reader: MetricReader, instrument: str) -> AggregationTemporality:
    """The temporality ``reader`` prefers for an instrument kind: ``"histogram"``, ``"observable_counter"``,
    ``"observable_up_down_counter"`` or ``"observable_gauge"`` (the catalog's ``Instrument`` values), from
    ``MetricReader._instrument_class_temporality`` keyed by the SDK's private instrument classes."""
    from opentelemetry.sdk.metrics._internal import instrument as sdk

    classes: dict[str, type[Any]] = {
        "histogram": sdk._Histogram,
        "observable_counter": sdk._ObservableCounter,
        "observable_up_down_counter": sdk._ObservableUpDownCounter,
        "observable_gauge": sdk._ObservableGauge,
    }
    temporality: AggregationTemporality = reader._instrument_class_temporality[classes[instrument]]
    return temporality


def exporter_preferences(exporter: MetricExporter) -> tuple[dict[type, Any], dict[type, Any]]:
    """An exporter's preferred temporality and aggregation, as given to its constructor."""
    return dict(exporter._preferred_temporality or {}), dict(exporter._preferred_aggregation or {})


def request_sender(exporter: MetricExporter) -> Callable[[Any], MetricExportResult] | None:
    """A function that sends an encoded ``ExportMetricsServiceRequest`` through the official OTLP/HTTP metric
    exporter (``OTLPMetricExporter._export_batch``: its size limit, self-metrics, retries and transport), or None
    when ``exporter`` is another one or splits requests into batches (``max_export_batch_size``): then only its
    public ``export`` applies. ``export`` would encode the frame itself; this lets the caller encode it."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import MetricExportResult

    if type(exporter) is not OTLPMetricExporter or exporter._max_export_batch_size is not None:
        return None
    send_batch = exporter._export_batch

    def send(request: Any) -> MetricExportResult:
        if exporter._shutdown:
            return MetricExportResult.FAILURE
        return send_batch(request)

    return send


def urllib3_metric_exporter(endpoint: str) -> MetricExporter:
    """The official OTLP/HTTP metric exporter for ``endpoint`` sending through the exporters' own urllib3
    transport (``opentelemetry.exporter.http.transport._urllib3``, given as the constructor's ``_transport``)
    instead of a ``requests`` session: the same client (headers, compression, timeout and retries from the
    ``OTEL_EXPORTER_OTLP_*`` variables), about a millisecond less CPU per export. That transport reads no proxy,
    netrc or certificate setting: for a plain ``http://`` endpoint that needs none (the caller checks)."""
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint, _transport=Urllib3HTTPTransport())


def provider_readers(provider: MeterProvider) -> Sequence[MetricReader]:
    """The readers registered on a ``MeterProvider`` now, those added by ``add_metric_reader`` included.

    ``MeterProvider._measurement_consumer._reader_storages`` (a dict keyed by reader, replaced on every change,
    never mutated); in SDK 1.45 ``SdkConfiguration`` holds no reader list.
    """
    return tuple(provider._measurement_consumer._reader_storages)


def hook_reader(reader: MetricReader, transform: Callable[[MetricsData, MetricReader], MetricsData]) -> None:
    """Make ``reader`` pass every collection through ``transform`` before it handles it.

    This is the MetricProducer of the OpenTelemetry specification, which the Python SDK does not have: the
    instance's ``_receive_metrics`` (the method every reader implements) is wrapped, so any reader, ours or a
    plain ``InMemoryMetricReader``/``PeriodicExportingMetricReader``, also receives the produced metrics.
    A collection in which the SDK itself has no metric (its collect callback returns None, and the reader would
    receive nothing) reaches ``transform`` as an empty ``MetricsData``: the collect callback the provider sets
    (``MetricReader._set_collect_callback``, ``_collect``) is wrapped too, now and whenever it is set again. As
    in the SDK, a collection without any metric, produced ones included, is not handed to the reader.
    Hooking the same reader twice keeps only the latest transform.
    """
    original = getattr(reader, "_otel_telemetry_original_receive", None)
    if original is None:
        original = reader._receive_metrics
        reader._otel_telemetry_original_receive = original  # type: ignore[attr-defined]
        _never_empty_handed(reader)

    def receive(metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        transformed = transform(metrics_data, reader)
        if any(sm.metrics for rm in transformed.resource_metrics for sm in rm.scope_metrics):
            original(transformed, timeout_millis=timeout_millis, **kwargs)  # as the SDK: nothing, nothing received

    reader._receive_metrics = receive  # type: ignore[method-assign]


def _never_empty_handed(reader: MetricReader) -> None:
    """Wrap ``reader``'s collect callback so that "no SDK metric" (None) becomes an empty ``MetricsData``."""
    from opentelemetry.sdk.metrics.export import MetricsData

    def wrap(collect: Callable[..., MetricsData | None]) -> Callable[..., MetricsData]:
        def collected(*args: Any, **kwargs: Any) -> MetricsData:
            data = collect(*args, **kwargs)
            return MetricsData(resource_metrics=[]) if data is None else data

        return collected

    setter = reader._set_collect_callback

    def set_collect(func: Callable[..., MetricsData | None] | None) -> None:
        setter(None if func is None else wrap(func))

    reader._set_collect_callback = set_collect  # type: ignore[method-assign,misc]
    current: Callable[..., MetricsData | None] | None = reader._collect  # type: ignore[assignment]
    if current is not None:  # already registered on a provider
        setter(wrap(current))


class PrometheusTranslator:
    """The OpenTelemetry Prometheus exporter's translation (``MetricsData`` to prometheus_client families),
    without the exporter's habit of collecting the SDK on every scrape.

    Wraps the exporter's ``_CustomCollector``: :meth:`families` translates one ``MetricsData`` with exactly the
    names, units, ``target_info`` and label handling the exporter applies.
    """

    def __init__(self, *, target_info: bool, scope_labels: bool) -> None:
        from opentelemetry.exporter.prometheus import _CustomCollector

        self._collector = _CustomCollector(disable_target_info=not target_info, scope_info_enabled=scope_labels)
        self._collector._callback = None  # never collect on our behalf: we hand it the frame

    def families(self, metrics_data: MetricsData) -> list[Any]:
        """The prometheus_client metric families of ``metrics_data``."""
        self._collector.add_metrics_data(metrics_data)
        found: Iterable[Any] = self._collector.collect()
        return list(found)


def prometheus_translator(*, target_info: bool = True, scope_labels: bool = False) -> PrometheusTranslator:
    """A :class:`PrometheusTranslator`."""
    return PrometheusTranslator(target_info=target_info, scope_labels=scope_labels)


def prometheus_naming() -> tuple[Callable[[str], str], Callable[[str], str], Callable[[str], str]]:
    """The Prometheus exporter's ``sanitize_full_name``, ``sanitize_attribute`` and ``map_unit``
    (``opentelemetry.exporter.prometheus._mapping``), so that our renderer names series exactly as it does."""
    import importlib.util
    import os
    import sys

    mapping = sys.modules.get("opentelemetry.exporter.prometheus._mapping")
    if mapping is None:
        # The module alone (it imports only ``re``): its package's __init__ would bring prometheus_client and the
        # exporter with it. Loaded under a name of ours, so the exporter, when imported later, loads its own copy.
        package = importlib.util.find_spec("opentelemetry.exporter.prometheus")
        if package is None or not package.submodule_search_locations:
            raise ModuleNotFoundError("opentelemetry-exporter-prometheus is not installed")
        path = os.path.join(next(iter(package.submodule_search_locations)), "_mapping.py")
        spec = importlib.util.spec_from_file_location("otel_telemetry._otel_prometheus_mapping", path)
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"cannot load {path}")
        mapping = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mapping)
    return mapping.sanitize_full_name, mapping.sanitize_attribute, mapping.map_unit


def logs_sdk() -> tuple[type, type]:
    """The logs SDK's ``LoggerProvider`` and ``BatchLogRecordProcessor`` (``opentelemetry.sdk._logs``)."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    return LoggerProvider, BatchLogRecordProcessor


def logs_api() -> tuple[type, type, type]:
    """The logs API's ``Logger``, ``LogRecord`` and ``SeverityNumber`` (``opentelemetry._logs``)."""
    return Logger, LogRecord, SeverityNumber


def otlp_log_exporter(protocol: str, **kwargs: Any) -> Any:
    """The OTLP log exporter for ``protocol`` (``grpc`` or ``http/protobuf``), from its ``_log_exporter`` module."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs

        return GrpcLogs(**kwargs)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

    return HttpLogs(**kwargs)
