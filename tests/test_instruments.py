"""Seed 004's registered instruments (register_counter/gauge/histogram, get_metric) on a real handle's facade:
exact names, HELP and buckets on a real /metrics scrape, labels, counted drops, thread-safe gauges, and the facade
extension they are made of (declare, gauge_add)."""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
from collections.abc import Callable

import pytest
from conftest import ROOT, http_get
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from otel_telemetry import Telemetry
from otel_telemetry.recording.facade import MetricsFacade
from otel_telemetry.recording.instruments import (
    DEFAULT_BUCKETS,
    BoundCounter,
    Counter,
    Gauge,
    Histogram,
    InstrumentRegistry,
)
from otel_telemetry.series import SeriesRegistry

SEED_BUCKETS = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0]


def _scrape(telemetry: Telemetry) -> str:
    telemetry.collect()
    assert telemetry.prometheus_url is not None
    status, _headers, body = http_get(telemetry.prometheus_url)
    assert status == 200
    return body.decode()


def _families(text: str) -> dict[str, tuple[str, str, list[Sample]]]:
    """Family name -> (type, HELP, samples), as prometheus_client parses the exposition."""
    return {f.name: (f.type, f.documentation, list(f.samples)) for f in text_string_to_metric_families(text)}


@pytest.fixture
def handle(make_telemetry: Callable[..., Telemetry]) -> Telemetry:
    """A real handle serving /metrics on 127.0.0.1, a free port (shut down by make_telemetry)."""
    return make_telemetry(enable_prometheus_endpoint=True)


def test_seed_calls_export_the_registered_names_help_buckets_and_values(handle: Telemetry) -> None:
    """The seed's calls, exactly as it writes them, come out on /metrics under the registered names, with the
    descriptions as HELP and exactly the registered buckets."""
    registry = InstrumentRegistry(handle.metrics)
    counter = registry.register_counter("requests_total", "Total requests")
    gauge = registry.register_gauge("active_connections", "Active connections")
    histogram = registry.register_histogram("request_duration_seconds", "Request duration", buckets=SEED_BUCKETS)
    counter.increment()
    counter.increment(5.0)
    gauge.set(42)
    gauge.increment(1)
    gauge.decrement(2)
    histogram.observe(0.123)
    histogram.observe(0.456)
    text = _scrape(handle)
    assert "# HELP requests_total Total requests\n# TYPE requests_total counter\nrequests_total 6.0\n" in text
    assert "# HELP active_connections Active connections\n# TYPE active_connections gauge\n" in text
    families = _families(text)
    assert families["requests"][:2] == ("counter", "Total requests")
    assert [(s.name, s.value) for s in families["requests"][2]] == [("requests_total", 6.0)]
    assert families["active_connections"][:2] == ("gauge", "Active connections")
    assert [s.value for s in families["active_connections"][2]] == [41.0]
    kind, help_text, samples = families["request_duration_seconds"]
    assert (kind, help_text) == ("histogram", "Request duration")
    buckets = [(s.labels["le"], s.value) for s in samples if s.name == "request_duration_seconds_bucket"]
    assert [le for le, _ in buckets] == [*(str(b) for b in SEED_BUCKETS), "+Inf"]
    assert [count for _, count in buckets] == [0, 2, 2, 2, 2, 2, 2]
    by_name = {s.name: s.value for s in samples if s.name != "request_duration_seconds_bucket"}
    assert by_name["request_duration_seconds_count"] == 2
    assert by_name["request_duration_seconds_sum"] == pytest.approx(0.579)
    assert registry.get_metric("requests_total") is counter
    assert registry.get_metric("active_connections") is gauge
    assert registry.get_metric("request_duration_seconds") is histogram
    assert registry.get_metric("unknown") is None


def test_unlabelled_counter_and_gauge_show_zero_at_once(handle: Telemetry) -> None:
    """Registered without labels, a counter and a gauge are on /metrics at 0 before any call (prometheus_client's
    behaviour); a counter registered without ``_total`` gets the suffix on /metrics."""
    registry = InstrumentRegistry(handle.metrics)
    registry.register_counter("jobs", "Jobs run")
    registry.register_gauge("queue_depth", "Queued items")
    families = _families(_scrape(handle))
    assert [(s.name, s.value) for s in families["jobs"][2]] == [("jobs_total", 0.0)]
    assert [s.value for s in families["queue_depth"][2]] == [0.0]


def test_default_buckets_are_prometheus_clients(handle: Telemetry) -> None:
    """A histogram registered without buckets gets prometheus_client's default boundaries, all of them."""
    registry = InstrumentRegistry(handle.metrics)
    histogram = registry.register_histogram("render_seconds", "Render time")
    assert histogram.buckets == DEFAULT_BUCKETS
    histogram.observe(0.3)
    _kind, _help, samples = _families(_scrape(handle))["render_seconds"]
    bounds = [s.labels["le"] for s in samples if s.name == "render_seconds_bucket"]
    assert bounds == [*(str(b) for b in DEFAULT_BUCKETS), "+Inf"]


def test_promtool_accepts_the_registered_families(handle: Telemetry) -> None:
    """promtool parses the scrape and has nothing to say about the registered families."""
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    if not shutil.which(found):
        pytest.skip("promtool is not installed")
    registry = InstrumentRegistry(handle.metrics)
    registry.register_counter("requests_total", "Total requests", labels=("method",)).labels("GET").increment()
    registry.register_gauge("active_connections", "Active connections").set(3)
    registry.register_histogram("request_duration_seconds", "Request duration", SEED_BUCKETS).observe(0.2)
    result = subprocess.run(
        [found, "check", "metrics"], input=_scrape(handle), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode in (0, 3), result.stdout + result.stderr  # 3: lint remarks only, no parse error
    remarks = result.stdout + result.stderr
    for name in ("requests_total", "active_connections", "request_duration_seconds"):
        assert name not in remarks


def test_labels_bind_children_and_per_call_labels_record_the_same_series(handle: Telemetry) -> None:
    """``.labels(**values)``, positional ``.labels(...)`` and ``labels={...}`` on each call reach one series per
    label set; a child is cached and a new child starts at 0."""
    registry = InstrumentRegistry(handle.metrics)
    counter = registry.register_counter("http_requests_total", "HTTP requests", labels=("method", "status"))
    child = counter.labels(method="GET", status="200")
    assert isinstance(child, BoundCounter)
    assert counter.labels("GET", "200") is child
    assert counter.labels(status=200, method="GET") is child  # values become labels: 200 is "200"
    child.increment()
    counter.increment(2, labels={"method": "GET", "status": "200"})
    counter.labels(method="POST", status="500")
    gauge = registry.register_gauge("players", "Players online", labels=("map",))
    gauge.labels(map="dust").set(10)
    gauge.increment(5, labels={"map": "dust"})
    gauge.labels(map="nuke").decrement(2)
    histogram = registry.register_histogram("load_seconds", "Load time", [1.0, 2.0], labels=("map",))
    histogram.labels(map="dust").observe(1.5)
    histogram.observe(0.5, labels={"map": "dust"})
    families = _families(_scrape(handle))
    requests = {(s.labels["method"], s.labels["status"]): s.value for s in families["http_requests"][2]}
    assert requests == {("GET", "200"): 3.0, ("POST", "500"): 0.0}
    assert {s.labels["map"]: s.value for s in families["players"][2]} == {"dust": 15.0, "nuke": -2.0}
    counts = {s.labels["le"]: s.value for s in families["load_seconds"][2] if s.name == "load_seconds_bucket"}
    assert counts == {"1.0": 1.0, "2.0": 2.0, "+Inf": 2.0}
    assert counter.value({"method": "GET", "status": "200"}) == 3.0
    assert gauge.value({"map": "dust"}) == 15.0
    assert registry.dropped == {}


def test_labels_validate_at_the_boundary_and_name_the_field(handle: Telemetry) -> None:
    """``.labels()`` raises ValueError naming the missing, unknown or unusable label (a setup-like call)."""
    registry = InstrumentRegistry(handle.metrics)
    counter = registry.register_counter("logins_total", "Logins", labels=("source",))
    with pytest.raises(ValueError, match=r"missing \['source'\]"):
        counter.labels(origin="web")
    with pytest.raises(ValueError, match="unknown"):
        counter.labels(source="web", extra="x")
    with pytest.raises(ValueError, match="expected 1 values"):
        counter.labels("web", "app")
    with pytest.raises(ValueError, match=r"labels\.source: cannot be a label value, got None"):
        counter.labels(source=None)
    with pytest.raises(ValueError, match="not both"):
        counter.labels("web", source="web")
    plain = registry.register_gauge("uptime_ratio", "Uptime")
    with pytest.raises(ValueError, match="without labels"):
        plain.labels(x="1")


def test_recording_mismatches_are_dropped_counted_and_never_raise(handle: Telemetry) -> None:
    """Per-call label sets that differ from the declared names, a missing ``labels=``, a negative counter
    increment and bad values never raise: each is dropped and counted (here or in the facade's ``rejected``)."""
    registry = InstrumentRegistry(handle.metrics)
    counter = registry.register_counter("events_total", "Events", labels=("kind",))
    counter.increment(labels={"wrong": "x"})
    counter.increment()  # labels missing
    counter.increment(1, labels=["kind"])  # type: ignore[arg-type]
    counter.labels(kind="a").increment(-1)
    plain = registry.register_counter("ticks_total", "Ticks")
    plain.increment(labels={"kind": "x"})
    plain.increment(float("nan"))
    plain.increment("many")  # type: ignore[arg-type]
    gauge = registry.register_gauge("level", "Level")
    gauge.decrement(True)
    gauge.set(float("inf"))
    histogram = registry.register_histogram("size_seconds", "Sizes", [1.0])
    histogram.observe(-1.0)
    assert registry.dropped == {"labels": 4, "negative": 1, "value": 1}
    rejected = handle.metrics.rejected
    assert rejected["increment"] == 2 and rejected["gauge"] == 1 and rejected["distribution"] == 1
    assert plain.value() == 0.0


def test_registering_again_returns_the_same_instrument_or_raises_when_different(handle: Telemetry) -> None:
    """Same name, kind, description, labels (and buckets): the same object; anything different: ValueError."""
    registry = InstrumentRegistry(handle.metrics)
    counter = registry.register_counter("requests_total", "Total requests", labels=("method",))
    assert registry.register_counter("requests_total", "Total requests", labels=["method"]) is counter
    histogram = registry.register_histogram("latency_seconds", "Latency", SEED_BUCKETS)
    assert registry.register_histogram("latency_seconds", "Latency", tuple(SEED_BUCKETS)) is histogram
    with pytest.raises(ValueError, match="already registered as a counter"):
        registry.register_gauge("requests_total", "Total requests", labels=("method",))
    with pytest.raises(ValueError, match="already registered"):
        registry.register_counter("requests_total", "Total requests")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_counter("requests_total", "Other text", labels=("method",))
    with pytest.raises(ValueError, match="buckets"):
        registry.register_histogram("latency_seconds", "Latency", [0.1, 1.0])
    assert isinstance(registry.get_metric("requests_total"), Counter)
    assert set(registry.metrics()) == {"requests_total", "latency_seconds"}


def test_bad_registrations_raise_naming_the_field(handle: Telemetry) -> None:
    """Names, descriptions, label names and buckets are checked at registration; each error names its field."""
    registry = InstrumentRegistry(handle.metrics)
    for name in ("bad.name", "9lives", "", "a:b", None):
        with pytest.raises(ValueError, match=r"register_counter\.name"):
            registry.register_counter(name, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"register_gauge\.description"):
        registry.register_gauge("ok", None)  # type: ignore[arg-type]
    for labels in (("__reserved",), ("a", "a"), ("bad-label",), "method"):
        with pytest.raises(ValueError, match=r"register_counter\.labels"):
            registry.register_counter("ok_total", "x", labels=labels)
    with pytest.raises(ValueError, match="reserved"):
        registry.register_histogram("h", "x", labels=("le",))
    for buckets in ([], [2.0, 1.0], [1.0, 1.0], [float("nan")], [math.inf], "1,2", [1.0, math.inf, 2.0]):
        with pytest.raises(ValueError, match=r"register_histogram\.buckets"):
            registry.register_histogram("h", "x", buckets=buckets)  # type: ignore[arg-type]
    assert registry.register_histogram("h", "x", buckets=[1.0, math.inf]).buckets == (1.0,)
    with pytest.raises(ValueError, match=r"InstrumentRegistry\.facade"):
        InstrumentRegistry(object())  # type: ignore[arg-type]


def test_names_that_would_collide_on_metrics_are_refused_at_registration(handle: Telemetry) -> None:
    """A registered name meeting another family on /metrics (the SDK's own, the catalog's) raises, naming it."""
    registry = InstrumentRegistry(handle.metrics)
    with pytest.raises(ValueError, match="handlers"):
        registry.register_histogram("handler_duration_seconds", "mine")
    with pytest.raises(ValueError, match="catalog"):
        registry.register_gauge("server_active_connections", "mine")
    assert handle.series.refused_names >= 2


def test_a_name_recorded_through_the_facade_first_cannot_be_registered(handle: Telemetry) -> None:
    """Registration declares a name before its first value; a name the facade already exports (any kind) raises."""
    handle.metrics.increment("sessions_started")
    registry = InstrumentRegistry(handle.metrics)
    with pytest.raises(ValueError, match="already recorded as a counter"):
        registry.register_gauge("sessions_started", "Sessions")


def test_gauge_increments_and_decrements_from_threads_lose_nothing(handle: Telemetry) -> None:
    """Eight threads adding and subtracting concurrently (bounded loops) end exactly at the arithmetic sum."""
    registry = InstrumentRegistry(handle.metrics)
    gauge = registry.register_gauge("active_connections", "Active connections")
    child = registry.register_gauge("per_map", "Per map", labels=("map",)).labels(map="dust")
    start = threading.Barrier(8)

    def work() -> None:
        start.wait(timeout=10)
        for _ in range(2000):
            gauge.increment(1)
            child.increment(3)
        for _ in range(500):
            gauge.decrement(2)
            child.decrement()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert gauge.value() == 8 * (2000 - 1000)
    assert child.labels == {"map": "dust"}
    assert handle.metrics.get_gauge("per_map", {"map": "dust"}).current == 8 * (6000 - 500)  # type: ignore[union-attr]


def test_new_series_count_against_the_series_budget() -> None:
    """Each label set of a registered histogram costs its buckets + 3 series; past the budget a new label set is
    refused (counted in the registry) while admitted ones keep recording."""
    series = SeriesRegistry(budget=20)
    registry = InstrumentRegistry(MetricsFacade(None, series=series))
    histogram = registry.register_histogram("wait_seconds", "Wait", SEED_BUCKETS, labels=("queue",))
    for queue in ("a", "b", "c"):
        histogram.labels(queue=queue).observe(0.2)
    assert series.used == 18  # two label sets of 6 + 3 series each
    assert series.refused_series == 1
    assert registry.facade.get_distribution("wait_seconds", {"queue": "b"}) is not None
    assert registry.facade.get_distribution("wait_seconds", {"queue": "c"}) is None


def test_facade_declare_gives_description_and_boundaries_and_is_idempotent() -> None:
    """``MetricsFacade.declare`` sets HELP text and per-name boundaries; the same declaration again is a no-op,
    another one raises ValueError naming the field."""
    facade = MetricsFacade(None)
    assert facade.declare("distribution", "payload_size", description="Payload", boundaries=[10, 100]) == (
        "payload_size"
    )
    assert facade.declare("distribution", "payload_size", description="Payload", boundaries=[10, 100]) == (
        "payload_size"
    )
    with pytest.raises(ValueError, match="already declared"):
        facade.declare("distribution", "payload_size", description="Other", boundaries=[10, 100])
    with pytest.raises(ValueError, match=r"declare\.kind"):
        facade.declare("summary", "x", description="x")
    with pytest.raises(ValueError, match=r"declare\.boundaries"):
        facade.declare("counter", "x", description="x", boundaries=[1.0])
    with pytest.raises(ValueError, match=r"declare\.boundaries"):
        facade.declare("timing", "x", description="x", boundaries=[2.0, 1.0])
    facade.distribution("payload_size", 50, unit="")
    (state,) = facade.histograms()
    assert state.spec.description == "Payload"
    assert state.spec.boundaries == (10.0, 100.0)
    assert state.cumulative.bucket_counts() == [0, 1, 0]
    facade.distribution("payload_size", 50, unit="By")  # another unit than the declared one: refused
    assert facade.rejected["distribution"] == 1


def test_facade_gauge_add_starts_at_zero_and_refuses_non_finite_results() -> None:
    """``gauge_add`` adds to the last value (0 when never set) and refuses bad amounts and overflow, counted."""
    facade = MetricsFacade(None)
    facade.gauge_add("depth", 2)
    facade.gauge_add("depth", -0.5)
    assert facade.get_gauge("depth").current == 1.5  # type: ignore[union-attr]
    facade.gauge("big", 1e308)
    facade.gauge_add("big", 1e308)
    facade.gauge_add("depth", float("nan"))
    assert facade.get_gauge("big").current == 1e308  # type: ignore[union-attr]
    assert facade.rejected["gauge_add"] == 2


def test_instruments_of_a_disabled_facade_record_nothing() -> None:
    """While the facade is disabled (``enable_metrics=False``) the instruments' calls are no-ops."""
    facade = MetricsFacade(None)
    registry = InstrumentRegistry(facade)
    facade.enabled = False
    gauge: Gauge = registry.register_gauge("g", "G")
    histogram: Histogram = registry.register_histogram("h", "H", [1.0])
    gauge.set(5)
    histogram.observe(0.5)
    assert gauge.value() is None
    assert facade.get_distribution("h") is None
