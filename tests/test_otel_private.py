"""Every private OpenTelemetry access of ``otel_telemetry/_otel.py``, against the installed OpenTelemetry packages.

One test (at least) per entry of ``_otel.ACCESSES``, named ``test_<entry>_...``, each with real objects: a real
``MeterProvider`` with an ``InMemoryMetricReader``, real OTLP exporters constructed but never sending, the
Prometheus translation of a real collection, a real ``LoggerProvider``. When an OpenTelemetry upgrade renames or
changes one of these private names, the test of that access fails and says which.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    InMemoryMetricReader,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from otel_telemetry import _otel

DELTA = AggregationTemporality.DELTA
CUMULATIVE = AggregationTemporality.CUMULATIVE
#: Names OTLP exporters read from the environment; the tests construct exporters with explicit settings only.
_OTLP_ENVIRONMENT = (
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


@pytest.fixture(autouse=True)
def _no_otlp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _OTLP_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@contextmanager
def _provider(reader: MetricReader) -> Iterator[MeterProvider]:
    """A real MeterProvider reading through ``reader`` (never the global provider), shut down afterwards."""
    provider = MeterProvider(metric_readers=[reader], resource=Resource({"service.name": "game", "server.id": "s-1"}))
    try:
        yield provider
    finally:
        provider.shutdown()


@pytest.fixture
def in_memory() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    """A real MeterProvider with one InMemoryMetricReader (never the global provider)."""
    reader = InMemoryMetricReader()
    with _provider(reader) as provider:
        yield provider, reader


def _metrics(data: MetricsData | None) -> list[Any]:
    assert data is not None, "the reader collected nothing"
    return [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


def _metric_names(data: MetricsData | None) -> list[str]:
    return [m.name for m in _metrics(data)]


def _renamed(data: MetricsData, suffix: str) -> MetricsData:
    return MetricsData(
        resource_metrics=[
            replace(
                rm,
                scope_metrics=[
                    replace(sm, metrics=[replace(m, name=m.name + suffix) for m in sm.metrics])
                    for sm in rm.scope_metrics
                ],
            )
            for rm in data.resource_metrics
        ]
    )


class _RecordingExporter(MetricExporter):
    """A metric exporter that keeps what it is given (for readers that need an exporter)."""

    def __init__(self, **preferences: Any) -> None:
        super().__init__(**preferences)
        self.exported: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


# -- the list itself ------------------------------------------------------------------------------------------------


def test_accesses_lists_exactly_the_public_functions_of_the_compat_module() -> None:
    """ACCESSES names every public function of _otel.py once, and nothing else."""
    functions = {
        name
        for name, value in vars(_otel).items()
        if inspect.isfunction(value) and value.__module__ == _otel.__name__ and not name.startswith("_")
    }
    assert len(_otel.ACCESSES) == len(set(_otel.ACCESSES)), f"duplicates in ACCESSES: {_otel.ACCESSES}"
    assert set(_otel.ACCESSES) == functions, {
        "public functions missing from ACCESSES": sorted(functions - set(_otel.ACCESSES)),
        "ACCESSES entries that are no public function": sorted(set(_otel.ACCESSES) - functions),
    }


@pytest.mark.parametrize("access", _otel.ACCESSES)
def test_every_access_has_its_own_test_here(access: str) -> None:
    """A new entry of ACCESSES comes with a ``test_<entry>_...`` in this file."""
    tests = [name for name in vars(sys.modules[__name__]) if name.startswith(f"test_{access}_")]
    assert tests, f"_otel.{access} has no test_{access}_... in tests/test_otel_private.py"


# -- histogram_temporality: MetricReader._instrument_class_temporality[_Histogram] ---------------------------------


@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
def test_histogram_temporality_is_the_one_the_reader_collects_histograms_with(
    temporality: AggregationTemporality,
) -> None:
    """What the function reports is what the SDK then puts on the reader's histogram points."""
    reader = InMemoryMetricReader(preferred_temporality={Histogram: temporality})
    with _provider(reader) as provider:
        assert _otel.histogram_temporality(reader) is temporality
        provider.get_meter("test").create_histogram("tick.duration", unit="ms").record(16.7)
        [metric] = _metrics(reader.get_metrics_data())
        assert metric.data.aggregation_temporality is temporality


def test_histogram_temporality_defaults_to_cumulative_and_follows_an_exporter() -> None:
    """A reader without preference is cumulative; a periodic reader takes its exporter's preference."""
    assert _otel.histogram_temporality(InMemoryMetricReader()) is CUMULATIVE
    exporter = _RecordingExporter(preferred_temporality={Histogram: DELTA})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    try:
        assert _otel.histogram_temporality(reader) is DELTA
    finally:
        reader.shutdown()


# -- instrument_temporality: MetricReader._instrument_class_temporality[<SDK instrument class>] -----------------------


@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
def test_instrument_temporality_is_the_one_the_reader_collects_observables_with(
    temporality: AggregationTemporality,
) -> None:
    """For each observable kind, what the function reports is what the SDK puts on the reader's points (gauges
    have no temporality of their own; the reader's preference is still reported)."""
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import ObservableCounter, ObservableGauge, ObservableUpDownCounter

    preferences = {ObservableCounter: temporality, ObservableUpDownCounter: temporality, ObservableGauge: temporality}
    reader = InMemoryMetricReader(preferred_temporality=preferences)  # type: ignore[arg-type]
    with _provider(reader) as provider:
        meter = provider.get_meter("test")
        meter.create_observable_counter("packets", [lambda _o: [Observation(3)]])
        meter.create_observable_up_down_counter("players", [lambda _o: [Observation(2)]])
        for kind in ("observable_counter", "observable_up_down_counter", "observable_gauge", "histogram"):
            expected = temporality if kind != "histogram" else CUMULATIVE
            assert _otel.instrument_temporality(reader, kind) is expected, kind
        metrics = {m.name: m for m in _metrics(reader.get_metrics_data())}
        assert metrics["packets"].data.aggregation_temporality is temporality
        assert metrics["players"].data.aggregation_temporality is temporality


# -- exporter_preferences: MetricExporter._preferred_temporality / _preferred_aggregation --------------------------


@pytest.mark.parametrize(
    ("exporter_class", "endpoint"),
    [(HttpMetricExporter, "http://127.0.0.1:9/v1/metrics"), (GrpcMetricExporter, "127.0.0.1:9")],
    ids=["http", "grpc"],
)
def test_exporter_preferences_of_an_otlp_exporter_are_what_it_was_given(exporter_class: Any, endpoint: str) -> None:
    """A real OTLP exporter (never sending) reports the temporality and aggregation given to its constructor."""
    aggregation = ExplicitBucketHistogramAggregation((1.0, 2.0, 5.0))
    kwargs: dict[str, Any] = {"insecure": True} if exporter_class is GrpcMetricExporter else {}
    exporter = exporter_class(
        endpoint=endpoint,
        preferred_temporality={Histogram: DELTA, Counter: DELTA},
        preferred_aggregation={Histogram: aggregation},
        **kwargs,
    )
    try:
        temporality, aggregations = _otel.exporter_preferences(exporter)
        assert temporality[Histogram] is DELTA and temporality[Counter] is DELTA
        assert aggregations[Histogram] is aggregation
        temporality.clear()  # a copy: the exporter keeps its own
        assert _otel.exporter_preferences(exporter)[0][Histogram] is DELTA
    finally:
        exporter.shutdown()


def test_exporter_preferences_carry_over_to_a_wrapping_exporter() -> None:
    """Handed to another exporter (as the self-telemetry wrapper does), they configure its reader the same way."""
    inner = HttpMetricExporter(
        endpoint="http://127.0.0.1:9/v1/metrics",
        preferred_temporality={Histogram: DELTA},
        preferred_aggregation={Histogram: ExplicitBucketHistogramAggregation((10.0, 20.0))},
    )
    try:
        temporality, aggregation = _otel.exporter_preferences(inner)
    finally:
        inner.shutdown()
    wrapper = _RecordingExporter(preferred_temporality=temporality, preferred_aggregation=aggregation)
    reader = PeriodicExportingMetricReader(wrapper, export_interval_millis=math.inf)
    with _provider(reader) as provider:
        provider.get_meter("test").create_histogram("tick.duration", unit="ms").record(15.0)
        reader.force_flush()
        [metric] = _metrics(wrapper.exported[-1])
        assert metric.data.aggregation_temporality is DELTA
        assert tuple(metric.data.data_points[0].explicit_bounds) == (10.0, 20.0)


# -- provider_readers: the reader list of a MeterProvider (private in every SDK version) ---------------------------


def test_provider_readers_are_the_readers_the_provider_was_built_with() -> None:
    """The same reader objects, in order; none for a provider without readers."""
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[first, second])
    try:
        readers = _otel.provider_readers(provider)
        assert isinstance(readers, Sequence)
        assert len(readers) == 2 and readers[0] is first and readers[1] is second
    finally:
        provider.shutdown()
    empty = MeterProvider()
    try:
        assert tuple(_otel.provider_readers(empty)) == ()
    finally:
        empty.shutdown()


def test_provider_readers_follow_readers_added_and_removed_later() -> None:
    """A reader added with ``add_metric_reader`` is listed, one removed with ``remove_metric_reader`` is not."""
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[first])
    try:
        provider.add_metric_reader(second)
        assert [id(reader) for reader in _otel.provider_readers(provider)] == [id(first), id(second)]
        provider.remove_metric_reader(first)
        assert [id(reader) for reader in _otel.provider_readers(provider)] == [id(second)]
    finally:
        provider.shutdown()
        first.shutdown()


# -- hook_reader: MetricReader._receive_metrics --------------------------------------------------------------------


def test_hook_reader_passes_every_collection_of_an_in_memory_reader_through_the_transform(
    in_memory: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """The reader returns what the transform made of the collection; hooking again keeps only the latest."""
    provider, reader = in_memory
    provider.get_meter("test").create_counter("packets").add(3)
    seen: list[MetricReader] = []

    def first(data: MetricsData, by: MetricReader) -> MetricsData:
        seen.append(by)
        return _renamed(data, ".first")

    _otel.hook_reader(reader, first)
    assert _metric_names(reader.get_metrics_data()) == ["packets.first"]
    assert seen == [reader]
    _otel.hook_reader(reader, lambda data, _by: _renamed(data, ".second"))
    assert _metric_names(reader.get_metrics_data()) == ["packets.second"]
    assert seen == [reader], "the replaced transform still ran"


def test_hook_reader_also_works_on_a_periodic_exporting_reader() -> None:
    """The exporter behind a PeriodicExportingMetricReader receives the transformed collection."""
    exporter = _RecordingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    with _provider(reader) as provider:
        provider.get_meter("test").create_counter("packets").add(1)
        _otel.hook_reader(reader, lambda data, _by: _renamed(data, ".hooked"))
        reader.force_flush()
        assert exporter.exported, "force_flush exported nothing"
        assert _metric_names(exporter.exported[-1]) == ["packets.hooked"]


def _with_gauge(data: MetricsData, by: MetricReader) -> MetricsData:
    """A transform that adds one produced gauge, as ``ReaderMerge`` adds the produced metrics."""
    point = NumberDataPoint({}, 0, 1, 7.0)
    scope = ScopeMetrics(InstrumentationScope("produced"), [Metric("produced.gauge", "", "", Gauge([point]))], "")
    resource = ResourceMetrics(Resource.get_empty(), [scope], "")
    return MetricsData(resource_metrics=[*data.resource_metrics, resource])


@pytest.mark.parametrize("hooked", ["before the provider", "after the provider"])
def test_hook_reader_hands_a_collection_without_sdk_metrics_to_the_transform(hooked: str) -> None:
    """A provider with no SDK metric makes the reader's collect callback (MetricReader._collect, set through
    _set_collect_callback) return None: the transform still runs, whether the reader was hooked before the
    provider registered it or after; with nothing produced either, the reader receives nothing, as in the SDK."""
    reader = InMemoryMetricReader()
    if hooked == "before the provider":
        _otel.hook_reader(reader, _with_gauge)
    with _provider(reader):
        if hooked == "after the provider":
            _otel.hook_reader(reader, _with_gauge)
        assert _metric_names(reader.get_metrics_data()) == ["produced.gauge"]
        _otel.hook_reader(reader, lambda data, _by: data)
        assert reader.get_metrics_data() is None


# -- prometheus_translator: opentelemetry.exporter.prometheus._CustomCollector --------------------------------------


def _game_collection(in_memory: tuple[MeterProvider, InMemoryMetricReader]) -> tuple[MetricsData, list[int]]:
    """A real collection: a byte counter, a tick histogram and an observable gauge counting its callbacks."""
    provider, reader = in_memory
    meter = provider.get_meter("game.scope", "1.0")
    meter.create_counter("server.network.bytes", unit="By", description="Bytes.").add(5, {"direction": "in"})
    meter.create_histogram(
        "server.tick.duration", unit="ms", description="Tick.", explicit_bucket_boundaries_advisory=[10.0, 20.0]
    ).record(15.0)
    calls: list[int] = []

    def players(_options: CallbackOptions) -> list[Observation]:
        calls.append(1)
        return [Observation(7)]

    meter.create_observable_gauge("server.players", callbacks=[players], unit="{player}")
    data = reader.get_metrics_data()
    assert data is not None
    return data, calls


def test_prometheus_translator_names_and_types_like_the_exporter(
    in_memory: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """Families carry the exporter's names, units and types; the text exposition renders them."""
    data, _calls = _game_collection(in_memory)
    families = {family.name: family for family in _otel.prometheus_translator().families(data)}
    assert {name: family.type for name, family in families.items()} == {
        "target": "info",
        "server_network_bytes": "counter",
        "server_tick_duration_milliseconds": "histogram",
        "server_players": "gauge",
    }
    counter = families["server_network_bytes"]
    assert [(s.name, s.labels, s.value) for s in counter.samples] == [
        ("server_network_bytes_total", {"direction": "in"}, 5)
    ]
    buckets = [
        (float(s.labels["le"]), s.value)
        for s in families["server_tick_duration_milliseconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert buckets == [(10.0, 0), (20.0, 1), (math.inf, 1)]
    assert families["target"].samples[0].labels == {"service_name": "game", "server_id": "s-1"}

    class _Frame:
        def collect(self) -> list[Any]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Frame())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'server_network_bytes_total{direction="in"} 5.0' in text
    assert 'server_tick_duration_milliseconds_bucket{le="+Inf"} 1.0' in text
    assert "server_players 7.0" in text
    assert 'target_info{server_id="s-1",service_name="game"} 1.0' in text


def test_prometheus_translator_options_switch_target_info_and_scope_labels(
    in_memory: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """``target_info=False`` drops the target family; ``scope_labels=True`` adds the otel_scope_* labels."""
    data, _calls = _game_collection(in_memory)
    plain = {f.name: f for f in _otel.prometheus_translator(target_info=False).families(data)}
    assert "target" not in plain
    assert "otel_scope_name" not in plain["server_players"].samples[0].labels
    scoped = {f.name: f for f in _otel.prometheus_translator(scope_labels=True).families(data)}
    labels = scoped["server_players"].samples[0].labels
    assert labels["otel_scope_name"] == "game.scope" and labels["otel_scope_version"] == "1.0"


def test_prometheus_translator_translates_only_what_it_is_handed(
    in_memory: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """It never collects the SDK itself and keeps nothing between calls: each call is one collection's families."""
    data, calls = _game_collection(in_memory)
    assert calls == [1]
    translator = _otel.prometheus_translator(target_info=False)
    assert len(translator.families(data)) == 3
    assert len(translator.families(data)) == 3, "families of an earlier call were kept"
    assert calls == [1], "the translator made the SDK collect"
    assert translator.families(MetricsData(resource_metrics=[])) == []


# -- logs_sdk: opentelemetry.sdk._logs ------------------------------------------------------------------------------


def test_logs_sdk_provider_and_batch_processor_export_records_with_the_resource() -> None:
    """``LoggerProvider(resource=...)`` + ``BatchLogRecordProcessor(exporter)`` deliver an emitted record on flush."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    logger_provider_class, batch_processor_class = _otel.logs_sdk()
    _logger_class, log_record_class, severity = _otel.logs_api()
    exporter = InMemoryLogRecordExporter()
    provider = logger_provider_class(resource=Resource({"service.name": "game"}))
    try:
        provider.add_log_record_processor(batch_processor_class(exporter))
        provider.get_logger("test").emit(log_record_class(body="hello", severity_number=severity.INFO))
        assert provider.force_flush()
        [finished] = exporter.get_finished_logs()
        assert finished.log_record.body == "hello"
        assert finished.resource.attributes["service.name"] == "game"
    finally:
        provider.shutdown()


# -- logs_api: opentelemetry._logs ----------------------------------------------------------------------------------


def test_logs_api_record_fields_and_severities_are_what_events_emit() -> None:
    """The SDK logger is an API ``Logger``; a ``LogRecord`` with the fields events use arrives intact."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    logger_class, log_record_class, severity = _otel.logs_api()
    assert {name: severity[name].value for name in ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")} == {
        "DEBUG": 5,
        "INFO": 9,
        "WARN": 13,
        "ERROR": 17,
        "FATAL": 21,
    }
    logger_provider_class, batch_processor_class = _otel.logs_sdk()
    exporter = InMemoryLogRecordExporter()
    provider = logger_provider_class(resource=Resource({"service.name": "game"}))
    try:
        provider.add_log_record_processor(batch_processor_class(exporter))
        logger = provider.get_logger("test")
        assert isinstance(logger, logger_class)
        logger.emit(
            log_record_class(
                timestamp=1_736_937_000_000_000_000,
                severity_number=severity.WARN,
                severity_text="WARNING",
                body="player.joined",
                attributes={"player": "p-1"},
                event_name="player.joined",
            )
        )
        provider.force_flush()
        [finished] = exporter.get_finished_logs()
        record = finished.log_record
        assert (record.timestamp, record.severity_number, record.severity_text) == (
            1_736_937_000_000_000_000,
            severity.WARN,
            "WARNING",
        )
        assert (record.body, dict(record.attributes or {}), record.event_name) == (
            "player.joined",
            {"player": "p-1"},
            "player.joined",
        )
    finally:
        provider.shutdown()


# -- otlp_log_exporter: opentelemetry.exporter.otlp.proto.{grpc,http}._log_exporter --------------------------------


@pytest.mark.parametrize(
    ("protocol", "kwargs", "module", "endpoint"),
    [
        (
            "grpc",
            {"endpoint": "http://127.0.0.1:4317", "insecure": True},
            "opentelemetry.exporter.otlp.proto.grpc",
            "127.0.0.1:4317",
        ),
        (
            "http/protobuf",
            {"endpoint": "http://127.0.0.1:4318/v1/logs"},
            "opentelemetry.exporter.otlp.proto.http",
            "http://127.0.0.1:4318/v1/logs",
        ),
    ],
    ids=["grpc", "http"],
)
def test_otlp_log_exporter_builds_the_official_exporter_for_the_protocol(
    protocol: str, kwargs: dict[str, Any], module: str, endpoint: str
) -> None:
    """A real OTLPLogExporter of the protocol's package, with the endpoint given, usable by the batch processor."""
    exporter = _otel.otlp_log_exporter(protocol, **kwargs)
    try:
        assert type(exporter).__name__ == "OTLPLogExporter"
        assert type(exporter).__module__.startswith(module + "."), type(exporter).__module__
        assert exporter._endpoint == endpoint
        assert callable(exporter.export) and callable(exporter.force_flush)
        logger_provider_class, batch_processor_class = _otel.logs_sdk()
        provider = logger_provider_class()
        provider.add_log_record_processor(batch_processor_class(exporter))
        provider.shutdown()  # nothing was emitted: nothing is sent
    finally:
        exporter.shutdown()


def test_prometheus_naming_sanitises_and_maps_units_like_the_exporter() -> None:
    """The exporter's naming helpers: dots and dashes become underscores, a leading digit is escaped, and UCUM
    units map to Prometheus words (braced annotations dropped)."""
    sanitize_name, sanitize_label, map_unit = _otel.prometheus_naming()
    assert sanitize_name("server.tick-rate") == "server_tick_rate"
    assert sanitize_name("9lives") == "_lives"
    assert sanitize_label("service.instance.id") == "service_instance_id"
    assert map_unit("s") == "seconds"
    assert map_unit("By") == "bytes"
    assert map_unit("{packet}") == ""


# -- request_sender: OTLPMetricExporter._export_batch (and _max_export_batch_size, _shutdown) ---------------------


def test_request_sender_sends_an_encoded_request_through_the_http_exporter() -> None:
    """The request reaches a real receiver as sent; the exporter's own self-counting path reports SUCCESS; after
    the exporter's shutdown nothing is sent."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from receivers import OtlpReceiver

    receiver = OtlpReceiver()
    exporter = HttpMetricExporter(endpoint=f"http://127.0.0.1:{receiver.port}/v1/metrics")
    try:
        send = _otel.request_sender(exporter)
        assert send is not None
        scope = InstrumentationScope("test")
        point = NumberDataPoint({"k": "v"}, 1, 2, 7)
        data = MetricsData(
            [ResourceMetrics(Resource({}), [ScopeMetrics(scope, [Metric("m", "", "1", Gauge([point]))], "")], "")]
        )
        request = encode_metrics(data)
        assert send(request) is MetricExportResult.SUCCESS
        assert receiver.requests == [request]
        exporter.shutdown()
        assert send(request) is MetricExportResult.FAILURE
        assert len(receiver.requests) == 1
    finally:
        exporter.shutdown()
        receiver.stop()


def test_request_sender_is_none_where_only_the_public_export_applies() -> None:
    """The gRPC exporter, an HTTP exporter that splits batches, and a subclass (which may override export)."""

    class _Subclass(HttpMetricExporter):
        pass

    exporters = [
        GrpcMetricExporter(endpoint="http://127.0.0.1:9", insecure=True),
        HttpMetricExporter(endpoint="http://127.0.0.1:9/v1/metrics", max_export_batch_size=100),
        _Subclass(endpoint="http://127.0.0.1:9/v1/metrics"),
    ]
    try:
        assert [_otel.request_sender(e) for e in exporters] == [None, None, None]
    finally:
        for exporter in exporters:
            exporter.shutdown()


# -- urllib3_metric_exporter: OTLPMetricExporter(_transport=...) and transport._urllib3 -----------------------------


def test_urllib3_metric_exporter_sends_through_urllib3_with_the_exporters_own_client() -> None:
    """A real OTLPMetricExporter whose client sends through the urllib3 transport; the request reaches a real
    receiver."""
    from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
    from receivers import OtlpReceiver

    receiver = OtlpReceiver()
    exporter = _otel.urllib3_metric_exporter(f"http://127.0.0.1:{receiver.port}/v1/metrics")
    try:
        assert type(exporter) is HttpMetricExporter
        assert isinstance(exporter._client._transport, Urllib3HTTPTransport)
        point = NumberDataPoint({"k": "v"}, 1, 2, 7)
        metric = Metric("m", "", "1", Gauge([point]))
        data = MetricsData([ResourceMetrics(Resource({}), [ScopeMetrics(InstrumentationScope("t"), [metric], "")], "")])
        assert exporter.export(data) is MetricExportResult.SUCCESS
        [request] = receiver.requests
        assert request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_int == 7
    finally:
        exporter.shutdown()
        receiver.stop()
