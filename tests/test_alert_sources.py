"""Alert rules on any metric of the frame: statistics, check_metric, severities, manual resolve, statistics of
alerts, and the same rules in PromQL checked by promtool."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from test_alerts import EPOCH, Clock, run_promtool

from otel_telemetry import ServerMetrics, Telemetry
from otel_telemetry.alerts import (
    Alert,
    AlertManager,
    AlertRule,
    AlertState,
    AlertStats,
    CallbackNotifier,
    Severity,
)
from otel_telemetry.alerts.samples import MAX_SAMPLES
from otel_telemetry.alerts.sources import bucket_quantile
from otel_telemetry.recording.facade import MetricsFacade
from otel_telemetry.snapshot.frame import Frame
from otel_telemetry.tools.cli import main
from otel_telemetry.tools.rules import load_rules, prometheus_rules_yaml, rules_command


# -- helpers -------------------------------------------------------------------------------------------------------
class Frames:
    """Frames of a real MeterProvider (read by an InMemoryMetricReader) and a real MetricsFacade on a manual clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.meter = self.provider.get_meter("test")
        self.facade = MetricsFacade(self.meter, window=10.0, clock=clock)
        self.sequence = 0
        self.level = 0.0
        self.meter.create_observable_gauge("queue.depth", callbacks=[self._observe], unit="{job}")

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.level, {"queue": "main"}), Observation(1.0, {"queue": "other"})]

    def frame(self) -> Frame:
        """Collect now: one frame at the clock's time."""
        self.sequence += 1
        data = self.reader.get_metrics_data()
        assert data is not None
        histograms = {state.key: state for state in self.facade.histograms()}
        metrics = ServerMetrics(server_id="server-001", timestamp=datetime.fromtimestamp(EPOCH + self.clock.now, UTC))
        return Frame(self.sequence, int((EPOCH + self.clock.now) * 1e9), self.clock.now, data, histograms, metrics)

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def clock() -> Clock:
    """A manual clock shared by the manager and the frames."""
    return Clock()


@pytest.fixture
def frames(clock: Clock) -> Iterator[Frames]:
    """Frames on ``clock``; the provider is shut down afterwards."""
    made = Frames(clock)
    yield made
    made.close()


def managed(clock: Clock, *rules: AlertRule) -> tuple[AlertManager, list[Alert]]:
    """A manager on ``clock`` that records every notification."""
    sent: list[Alert] = []
    manager = AlertManager(rules, notifiers=[CallbackNotifier(sent.append)], clock=clock, wall_clock=clock.wall)
    return manager, sent


def states(alerts: Iterable[Alert]) -> list[tuple[str, str]]:
    """``(name, state)`` of each alert."""
    return [(a.name, a.state.value) for a in alerts]


def handle(make_telemetry: Callable[..., Telemetry], **overrides: Any) -> Telemetry:
    """A real handle for alert tests: no background frame in the way, no hardware sampling, no endpoint."""
    settings: dict[str, Any] = {"collection_interval": 60.0, "enable_hardware_metrics": False}
    settings.update(overrides)
    return make_telemetry(**settings)


def active(telemetry: Telemetry) -> dict[str, Alert]:
    """The handle's active alerts by name, after forcing a frame now."""
    telemetry.collect()
    return {alert.name: alert for alert in telemetry.alerts.active()}


# -- rules on frames of a real handle --------------------------------------------------------------------------------
def test_timing_p95_fires_then_resolves_when_the_values_fall(make_telemetry: Callable[..., Telemetry]) -> None:
    """A rule on a statsd-style timing's p95 fires on slow calls and resolves once the slow ones left the window:
    from the produced histogram's sliding window, and over the rule's own window."""
    telemetry = handle(make_telemetry, percentile_window=0.5)
    telemetry.alerts.add_rule(AlertRule("SlowApi", "api.latency", statistic="p95", threshold=0.3, severity="high"))
    telemetry.alerts.add_rule(
        AlertRule("SlowApiOverWindow", "api_latency_seconds", statistic="p95", threshold=0.3, window=0.3)
    )
    assert active(telemetry) == {}  # nothing timed yet: no data
    for _ in range(20):
        telemetry.metrics.timing("api.latency", 0.5)
    time.sleep(0.35)
    found = active(telemetry)
    assert {name: (a.state, a.value) for name, a in found.items()} == {
        "SlowApi": (AlertState.FIRING, 0.5),
        "SlowApiOverWindow": (AlertState.FIRING, 0.5),
    }
    assert found["SlowApi"].severity is Severity.ERROR and found["SlowApi"].metric == "api.latency"
    time.sleep(0.6)  # the slow calls leave both windows
    for _ in range(20):
        telemetry.metrics.timing("api.latency", 0.01)
    assert active(telemetry) == {}
    assert {a.name for a in telemetry.alerts.resolved()} == {"SlowApi", "SlowApiOverWindow"}


def test_traced_handler_error_ratio_fires_and_resolves(make_telemetry: Callable[..., Telemetry]) -> None:
    """handler.errors / handler.requests for handler="join" fires on failing joins and resolves when they succeed;
    another handler's errors do not count, and no data until the ratio has a previous frame."""
    telemetry = handle(make_telemetry)
    rule = AlertRule(
        "JoinErrors",
        "handler.errors",
        statistic="ratio",
        denominator="handler_requests_total",
        match={"handler": "join"},
        denominator_match={"handler": "join"},
        threshold=0.2,
    )
    telemetry.alerts.add_rule(rule)

    @telemetry.traced("join")
    def join(fail: bool) -> None:
        if fail:
            raise RuntimeError("lobby full")

    @telemetry.traced("leave")
    def leave() -> None:
        raise KeyError("never joined")

    def calls(failing: int, ok: int) -> None:
        for index in range(failing + ok):
            with pytest.raises(RuntimeError) if index < failing else contextlib.nullcontext():
                join(index < failing)
            with pytest.raises(KeyError):
                leave()

    calls(0, 2)
    assert active(telemetry) == {}  # the first frame: nothing to compare with
    calls(3, 1)
    found = active(telemetry)
    assert list(found) == ["JoinErrors"] and found["JoinErrors"].value == 0.75
    calls(0, 4)
    assert active(telemetry) == {}
    assert [a.name for a in telemetry.alerts.resolved()] == ["JoinErrors"]


def test_check_metric_rules_are_not_resolved_by_frames(make_telemetry: Callable[..., Telemetry]) -> None:
    """A rule fed by check_metric is judged on checked values only: frames without that name leave it firing."""
    telemetry = handle(make_telemetry)
    telemetry.alerts.register_rule(AlertRule("high_latency", "api_latency_ms", threshold=1000.0, severity="high"))
    assert active(telemetry) == {}  # frames alone: no data
    [alert] = telemetry.alerts.check_metric("api_latency_ms", 1500.0)
    assert alert.state is AlertState.FIRING
    for _ in range(3):
        assert list(active(telemetry)) == ["high_latency"]
    [resolved] = telemetry.alerts.check_metric("api_latency_ms", 200.0)
    assert resolved.state is AlertState.RESOLVED and active(telemetry) == {}


# -- check_metric, severities, resolve, stats ----------------------------------------------------------------------
def test_the_seeds_check_metric_example(clock: Clock) -> None:
    """The seed's rule ("api_latency_ms" greater than 1000, severity high): checking 1500 fires it at once, 200
    resolves it; a check of another name touches nothing."""
    manager, sent = managed(clock)
    manager.register_rule(AlertRule("high_latency", "api_latency_ms", kind="above", threshold=1000.0, severity="high"))
    assert manager.check_metric("db_latency_ms", 5000.0) == []
    [alert] = manager.check_metric("api_latency_ms", 1500.0)
    assert (alert.state, alert.value, alert.severity, alert.labels["severity"]) == (
        AlertState.FIRING,
        1500.0,
        Severity.ERROR,
        "error",
    )
    clock.advance(5)
    [resolved] = manager.check_metric("api_latency_ms", 200.0)
    assert resolved.state is AlertState.RESOLVED and resolved.resolution == "automatic"
    assert states(sent) == [("high_latency", "firing"), ("high_latency", "resolved")]
    assert manager.check_metric("api_latency_ms", float("nan")) == []  # not a number: no data
    assert manager.stats().checks == 3


def test_check_metric_matches_labels_and_feeds_rates(clock: Clock) -> None:
    """``match`` selects by the labels given; a ``rate`` rule reads checked values as a cumulative total."""
    eu = AlertRule("EuSlow", "latency_ms", threshold=100, match={"region": "eu"})
    growth = AlertRule("FastGrowth", "jobs_done", statistic="rate", threshold=5)
    manager, _ = managed(clock, eu, growth)
    assert manager.check_metric("latency_ms", 500, {"region": "us"}) == []
    assert states(manager.check_metric("latency_ms", 500, {"region": "eu", "host": "a"})) == [("EuSlow", "firing")]
    assert manager.check_metric("jobs_done", 100) == []  # a first total: no rate yet
    clock.advance(10)
    [alert] = manager.check_metric("jobs_done", 200)
    assert alert.value == 10.0
    with pytest.raises(ValueError, match=r"check_metric: value must be a number, got 'fast'"):
        manager.check_metric("jobs_done", "fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"check_metric: name must be a non-empty string, got 5"):
        manager.check_metric(5, 1.0)  # type: ignore[arg-type]


def test_both_severity_vocabularies_map_one_to_one() -> None:
    """low/medium/high/critical and info/warning/error/critical, any case, name the same four severities."""
    pairs = {"low": Severity.INFO, "medium": Severity.WARNING, "high": Severity.ERROR, "critical": Severity.CRITICAL}
    for seed, ours in pairs.items():
        assert Severity(seed) is ours and Severity(seed.upper()) is ours and Severity(ours.value.title()) is ours
        assert AlertRule("R", "queue.depth", threshold=1, severity=seed).severity is ours  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"info, warning, error, critical \(or low, medium, high, critical\).*'x'"):
        Severity("x")
    with pytest.raises(ValueError, match=r"AlertRule 'R': severity must be one of .*got 'urgent'"):
        AlertRule("R", "queue.depth", threshold=1, severity="urgent")  # type: ignore[arg-type]


def test_resolve_by_hand_rearms_after_the_condition_stops(clock: Clock) -> None:
    """resolve() ends the alert now (notified when it fired, recorded as manual); the rule raises no new alert
    until its condition stopped holding once."""
    rule = AlertRule("high_latency", "api_latency_ms", threshold=1000.0)
    slow = AlertRule("SlowToFire", "api_latency_ms", threshold=1000.0, for_=60)
    manager, sent = managed(clock, rule, slow)
    manager.check_metric("api_latency_ms", 1500.0)
    resolved = manager.resolve("high_latency", by="ops")
    assert resolved is not None and resolved.state is AlertState.RESOLVED
    assert (resolved.resolution, resolved.resolved_by) == ("manual", "ops")
    assert resolved.to_dict()["resolution"] == "manual" and resolved.to_dict()["resolved_by"] == "ops"
    assert states(sent) == [("high_latency", "firing"), ("high_latency", "resolved")]
    pending = manager.resolve("SlowToFire")
    assert pending is not None and pending.fired_at is None and len(sent) == 2  # never fired: not notified
    assert manager.resolve("high_latency") is None
    with pytest.raises(KeyError, match="no rule named 'nope'"):
        manager.resolve("nope")
    assert manager.check_metric("api_latency_ms", 1600.0) == []  # still holding: disarmed
    assert manager.check_metric("api_latency_ms", 100.0) == []  # stopped holding: re-armed
    assert states(manager.check_metric("api_latency_ms", 1700.0)) == [
        ("high_latency", "firing"),
        ("SlowToFire", "pending"),
    ]
    assert [a.resolution for a in manager.resolved()] == ["manual", "manual"]


def test_stats_count_per_rule_severity_and_state_with_times(clock: Clock) -> None:
    """stats(): fired, acknowledged, resolved automatically and manually, per rule and severity; pending and firing
    now; time to acknowledge and to resolve; evaluations and checks."""
    api = AlertRule("Api", "api_latency_ms", threshold=1000, severity="high")
    db = AlertRule("Db", "db_latency_ms", threshold=100)
    later = AlertRule("Later", "db_latency_ms", threshold=100, for_=600, severity="low")
    manager, _ = managed(clock, api, db, later)
    manager.check_metric("api_latency_ms", 2000)
    manager.check_metric("db_latency_ms", 500)
    clock.advance(30)
    manager.acknowledge("Api", by="ops")
    manager.acknowledge("Api", by="ops")  # once per alert
    clock.advance(30)
    manager.resolve("Api")
    clock.advance(40)
    manager.check_metric("db_latency_ms", 50)
    stats = manager.stats()
    assert isinstance(stats, AlertStats)
    total = stats.total
    assert (total.fired, total.acknowledged, total.resolved_automatically, total.resolved_manually) == (2, 1, 1, 1)
    assert (total.pending, total.firing, total.resolved) == (0, 0, 2)
    assert stats.by_rule["Api"].resolved_manually == 1 and stats.by_rule["Db"].resolved_automatically == 1
    assert stats.by_rule["Later"].fired == 0
    assert stats.by_severity["error"].fired == 1 and stats.by_severity["warning"].fired == 1
    assert stats.by_severity["info"].fired == 0 and set(stats.by_severity) == {"info", "warning", "error", "critical"}
    assert dict(stats.by_state) == {"pending": 0, "firing": 0, "resolved": 2}
    ack, resolve = stats.time_to_acknowledge, stats.time_to_resolve
    assert (ack.count, ack.mean, ack.max) == (1, 30.0, 30.0)
    assert (resolve.count, resolve.mean, resolve.max) == (2, 80.0, 100.0)
    assert (stats.checks, stats.evaluations, stats.errors, stats.notification_failures) == (3, 0, 0, 0)
    manager.check_metric("db_latency_ms", 500)
    now = manager.stats()
    assert (now.total.firing, now.total.pending, now.by_rule["Later"].pending) == (1, 1, 1)
    assert json.loads(json.dumps(now.to_dict()))["total"]["fired"] == 3


# -- every kind and lifecycle setting on metric-name rules -----------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "values", "fires"),
    [
        ({"kind": "above", "threshold": 3}, [(0, 2), (1, 5)], [False, True]),
        ({"kind": "below", "threshold": 3}, [(0, 5), (1, 2)], [False, True]),
        ({"kind": "between", "low": 1, "high": 3}, [(0, 5), (1, 2)], [False, True]),
        ({"kind": "outside", "low": 1, "high": 3}, [(0, 2), (1, 5)], [False, True]),
        ({"kind": "percent_change", "threshold": 20, "window": 10}, [(0, 100), (5, 200), (10, 150)], [0, 0, 1]),
        ({"kind": "percent_change", "threshold": -20, "window": 10}, [(0, 100), (10, 90), (20, 50)], [0, 0, 1]),
        ({"kind": "rate_of_change", "threshold": 2, "window": 10}, [(0, 0), (10, 10), (20, 50)], [0, 0, 1]),
    ],
)
def test_every_kind_on_a_checked_metric(
    clock: Clock, settings: dict[str, Any], values: list[tuple[float, float]], fires: list[bool]
) -> None:
    """above, below, between, outside and the windowed kinds judge checked values as they judge snapshots."""
    manager, _ = managed(clock, AlertRule("R", "load", **settings))
    start = clock.now
    for (at, value), expected in zip(values, fires, strict=True):
        clock.now = start + at
        assert bool(manager.check_metric("load", value)) == bool(expected), (at, value)


def test_windowed_kind_on_a_frame_gauge(clock: Clock, frames: Frames) -> None:
    """percent_change on a gauge of the frame (summed over the matching points): the change over the window."""
    rule = AlertRule(
        "QueueGrows", "queue.depth", kind="percent_change", threshold=50, window=10, match={"queue": "main"}
    )
    manager, _ = managed(clock, rule)
    results = []
    for level in (10.0, 12.0, 20.0):
        frames.level = level
        results.append(states(manager.evaluate_frame(frames.frame())))
        clock.advance(5)
    assert results == [[], [], [("QueueGrows", "firing")]]
    assert manager.active()[0].value == 100.0


def test_for_keep_firing_for_and_cooldown_apply_to_metric_rules(clock: Clock) -> None:
    """for_ delays firing, cooldown repeats the notification, keep_firing_for holds it after recovery."""
    rule = AlertRule("Hot", "temperature", threshold=80, for_=10, cooldown=20, keep_firing_for=15)
    manager, sent = managed(clock, rule)
    timeline = [(0, 90, "pending"), (10, 90, "firing"), (30, 90, "firing"), (35, 20, "firing"), (50, 20, "resolved")]
    start = clock.now
    for at, value, state in timeline:
        clock.now = start + at
        [alert] = manager.check_metric("temperature", value)
        assert alert.state.value == state, at
    assert states(sent) == [("Hot", "firing"), ("Hot", "firing"), ("Hot", "resolved")]


# -- statistics read from frames -------------------------------------------------------------------------------------
def test_counter_rate_over_a_window_survives_a_reset(clock: Clock, frames: Frames) -> None:
    """rate: the increase per second from the newest sample at least ``window`` old; a total that goes down
    restarts from 0, as in Prometheus."""
    totals = iter([100.0, 150.0, 200.0, 20.0])
    current = [0.0]

    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(current[0], {"kind": "ok"}), Observation(1000.0, {"kind": "other"})]

    frames.meter.create_observable_counter("jobs.done", callbacks=[observe])
    rule = AlertRule("Busy", "jobs_done_total", statistic="rate", window=10, threshold=100, match={"kind": "ok"})
    manager, _ = managed(clock, rule, AlertRule("Any", "jobs.done", statistic="rate", window=10, threshold=-1))
    seen = []
    for total in totals:
        current[0] = total
        manager.evaluate_frame(frames.frame())
        seen.append({a.name: a.value for a in manager.active()})
        clock.advance(5)
    # 0 s: no earlier sample; 5 s: (150 - 100) / 5; 10 s: (200 - 100) / 10; 15 s: (200 + 20 - 150) / 10.
    assert [s.get("Any") for s in seen] == [None, 10.0, 10.0, 7.0]


def test_sdk_histogram_quantiles_interpolate_like_prometheus(clock: Clock, frames: Frames) -> None:
    """p50/p90/mean/count/max of an SDK histogram come from the buckets' increase since the previous frame;
    quantiles are interpolated inside their bucket as histogram_quantile does."""
    histogram = frames.meter.create_histogram(
        "rpc.duration", unit="s", explicit_bucket_boundaries_advisory=[0.1, 0.2, 0.5, 1.0]
    )
    rules = [
        AlertRule(f"Rpc_{stat}", "rpc_duration_seconds", statistic=stat, threshold=-1)  # type: ignore[arg-type]
        for stat in ("p50", "p90", "mean", "count", "max", "min")
    ]
    manager, _ = managed(clock, *rules)
    for value in (0.05, 5.0):
        histogram.record(value, {"method": "get"})
    manager.evaluate_frame(frames.frame())
    assert manager.active() == []  # the first frame: nothing to compare with
    clock.advance(1)
    for value in (0.15, 0.15, 0.3, 0.3, 0.3, 0.4, 0.6, 0.7, 0.9, 0.9):
        histogram.record(value, {"method": "get"})
    manager.evaluate_frame(frames.frame())
    values = {a.name.removeprefix("Rpc_"): a.value for a in manager.active()}
    counts = [0, 2, 4, 4, 0]  # the new values per bucket (0.1, 0.2, 0.5, 1.0, +Inf)
    assert values["p50"] == bucket_quantile(0.5, [0.1, 0.2, 0.5, 1.0], counts) == pytest.approx(0.425)
    assert values["p90"] == pytest.approx(0.875)  # rank 9 of 10: 3/4 into (0.5, 1.0]
    assert values["mean"] == pytest.approx(4.7 / 10) and values["count"] == 10.0
    assert values["max"] == 1.0 and values["min"] == 0.1  # bucket edges, clamped by the points' extremes


def test_a_statistic_that_does_not_fit_counts_an_error(
    clock: Clock, frames: Frames, caplog: pytest.LogCaptureFixture
) -> None:
    """p95 of a gauge is a rule error (counted, logged once); a missing metric or point is only "no data"."""
    wrong = AlertRule("Wrong", "queue.depth", statistic="p95", threshold=1)
    missing = AlertRule("Missing", "no.such.metric", threshold=1)
    nobody = AlertRule("Nobody", "queue.depth", threshold=0, match={"queue": "nope"})
    manager, _ = managed(clock, wrong, missing, nobody)
    with caplog.at_level(logging.ERROR, logger="otel_telemetry.alerts.manager"):
        for _ in range(2):
            assert manager.evaluate_frame(frames.frame()) == []
            clock.advance(1)
    assert manager.errors == 2 and caplog.text.count("'Wrong' failed to evaluate") == 1
    assert "metric 'queue.depth' is a gauge" in caplog.text


def test_metric_rule_samples_stay_bounded(clock: Clock) -> None:
    """Thousands of checks within a window keep at most MAX_SAMPLES samples (plus two), dropping none, and the
    rate stays right."""
    manager, _ = managed(clock, AlertRule("Growth", "total", statistic="rate", window=10, threshold=-1))
    start = clock.now
    for step in range(5000):
        clock.now = start + step * 0.01
        manager.check_metric("total", 3.0 * step * 0.01)
    [alert] = manager.active()
    assert alert.value == pytest.approx(3.0)
    ring = manager._inputs["Growth"]._counters._samples  # the rule's counter samples (private: the bound itself)
    assert len(ring) <= MAX_SAMPLES + 2 and manager.stats().samples_dropped == 0


# -- validation ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"statistic": "p96"}, r"AlertRule 'R': statistic must be one of value, rate.*got 'p96'"),
        ({"statistic": "ratio"}, r"AlertRule 'R': statistic 'ratio' needs a denominator.*got None"),
        ({"denominator": "handler.requests"}, r"denominator applies to statistic 'ratio' only.*'handler.requests'"),
        ({"statistic": "ratio", "denominator": "hardware.cpu"}, r"denominator must be a counter's.*'hardware.cpu'"),
        ({"denominator_match": {"a": "b"}}, r"denominator_match applies to statistic 'ratio' only.*\{'a': 'b'\}"),
        ({"match": {"handler": 1}}, r"AlertRule 'R'\.match: value of 'handler' must be a string, got 1"),
        ({"match": ["handler"]}, r"AlertRule 'R'\.match: expected a mapping.*got \['handler'\]"),
        ({"metric": "api latency"}, r"AlertRule 'R': metric must be a ServerMetrics path.*got 'api latency'"),
        ({"window": 30}, r"AlertRule 'R': window applies to .*statistics rate, ratio.*got window=30"),
        ({"statistic": "rate", "window": -1}, r"AlertRule 'R'\.window: must be a positive.*got -1"),
        ({"metric": "network.player_ping_percentiles.p95", "statistic": "p95"}, r"metric names only.*statistic='p95'"),
        ({"metric": "hardware.cpu_usage_percent", "match": {"core": "0"}}, r"match applies to metric names only"),
        ({"metric": "performance.tick_rate"}, r"'performance\.tick_rate' is not a ServerMetrics field"),
        ({"severity": "fatal"}, r"severity must be one of info, warning, error, critical.*got 'fatal'"),
    ],
)
def test_bad_metric_rules_name_the_field_and_value(settings: dict[str, Any], message: str) -> None:
    """Every bad field of a metric-name rule fails at construction, naming the rule, the field and the value."""
    arguments: dict[str, Any] = {"name": "R", "metric": "api.latency", "threshold": 1.0, **settings}
    with pytest.raises(ValueError, match=message):
        AlertRule(**arguments)


def test_metric_rules_accept_their_fields() -> None:
    """A valid metric-name rule keeps its fields (immutable), and is hashable like the others."""
    rule = AlertRule(
        "JoinErrors",
        "handler.errors",
        statistic="ratio",
        denominator="handler.requests",
        match={"handler": "join"},
        denominator_match={"handler": "join"},
        window=60,
        threshold=0.1,
    )
    assert not rule.reads_snapshot and rule.window == 60.0 and dict(rule.match) == {"handler": "join"}
    assert hash(rule) == hash(AlertRule(**{f: getattr(rule, f) for f in rule.__dataclass_fields__}))
    assert AlertRule("Cpu", "hardware.cpu_usage_percent", threshold=80).reads_snapshot


# -- PromQL ----------------------------------------------------------------------------------------------------------
CUSTOM_RULES = """
from otel_telemetry.alerts import AlertRule

RULES = [
    AlertRule(
        "JoinErrorRatio", "handler.errors", statistic="ratio", denominator="handler.requests",
        match={"handler": "join"}, denominator_match={"handler": "join"}, window=60, threshold=0.1,
        severity="high", for_=60, labels={"team": "lobby"}, annotations={"summary": "join errors {value:.2f}"},
    ),
    AlertRule("SlowApi", "api_latency_seconds", statistic="p95", window=300, threshold=0.25, severity="medium"),
    AlertRule("LatencyJump", "api_latency_ms", kind="percent_change", threshold=50, window=60),
    AlertRule("LongestCall", "api_latency_seconds", statistic="max", threshold=2),
]
"""


@pytest.fixture
def custom_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of custom rules in the current directory; its reference for ``--rules``."""
    (tmp_path / "custom_alert_rules.py").write_text(CUSTOM_RULES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "custom_alert_rules", raising=False)
    return "custom_alert_rules:RULES"


def test_promtool_fires_a_custom_rule_from_the_generator(tmp_path: Path, custom_rules: str) -> None:
    """`otel-telemetry rules --rules module:RULES` writes the custom rules in PromQL; promtool evaluates them on
    series as the exporter names them, and the ratio and p95 alerts fire with the expected labels; the rules
    PromQL cannot express are skipped with a comment."""
    output = tmp_path / "custom.yml"
    assert main(["rules", "--rules", custom_rules, "--no-defaults", "-o", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert "# skipped LatencyJump: percent_change of a metric-name rule is evaluated in process only" in text
    assert "# skipped LongestCall: max of api_latency_seconds: histograms do not carry min/max" in text
    expressions = {r["alert"]: r["expr"] for r in yaml.safe_load(text)["groups"][0]["rules"]}
    assert expressions == {
        "JoinErrorRatio": 'sum by (service_instance_id) (rate(handler_errors_total{handler="join"}[1m])) / '
        '(sum by (service_instance_id) (rate(handler_requests_total{handler="join"}[1m])) > 0) > 0.1',
        "SlowApi": "histogram_quantile(0.95, sum by (le, service_instance_id) "
        "(rate(api_latency_seconds_bucket[5m]))) > 0.25",
    }
    server = 'service_instance_id="server-001", job="game-servers"'
    buckets = {"0.1": 90, "0.25": 90, "0.5": 100, "+Inf": 100}  # p95 interpolated inside (0.25, 0.5]: 0.375
    series = [
        {"series": f'handler_requests_total{{{server}, handler="join"}}', "values": "0+60x20"},
        {"series": f'handler_requests_total{{{server}, handler="leave"}}', "values": "0+600x20"},
        {
            "series": f'handler_errors_total{{{server}, handler="join", error_type="RuntimeError"}}',
            "values": "0x5 30+30x14",
        },
        *(
            {"series": f'api_latency_seconds_bucket{{{server}, le="{le}"}}', "values": f"0+{n}x20"}
            for le, n in buckets.items()
        ),
    ]
    who = {"service_instance_id": "server-001"}
    ratio = {
        "exp_labels": {**who, "severity": "error", "team": "lobby"},
        "exp_annotations": {"summary": "join errors 0.50"},
    }
    cases = [
        {"eval_time": "4m", "alertname": "JoinErrorRatio", "exp_alerts": []},
        {"eval_time": "6m", "alertname": "JoinErrorRatio", "exp_alerts": []},  # pending: for 1m
        {"eval_time": "10m", "alertname": "JoinErrorRatio", "exp_alerts": [ratio]},
        {"eval_time": "10m", "alertname": "SlowApi", "exp_alerts": [{"exp_labels": {**who, "severity": "warning"}}]},
    ]
    # histogram_quantile on uneven counts (a first bucket, inside buckets, the +Inf bucket) gives our numbers.
    bounds, cumulative = [0.1, 0.25, 0.5], [7, 13, 29, 31]
    series += [
        {"series": f'rpc_seconds_bucket{{le="{le}"}}', "values": f"{n}x10"}
        for le, n in zip(["0.1", "0.25", "0.5", "+Inf"], cumulative, strict=True)
    ]
    checks = [
        {
            "expr": f"histogram_quantile({q}, rpc_seconds_bucket)",
            "eval_time": "5m",
            "exp_samples": [{"labels": "{}", "value": bucket_quantile(q, bounds, list(_per_bucket(cumulative)))}],
        }
        for q in (0.1, 0.3, 0.5, 0.9, 0.99)
    ]
    unit_test = {
        "rule_files": [output.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases, "promql_expr_test": checks}],
    }
    (tmp_path / "custom.test.yml").write_text(yaml.safe_dump(unit_test), encoding="utf-8")
    result = run_promtool("test", "rules", str(tmp_path / "custom.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["exp_samples"][0]["value"] for c in checks][-1] == 0.5  # a rank in +Inf: the highest boundary


def _per_bucket(cumulative: Iterable[int]) -> Iterator[int]:
    before = 0
    for total in cumulative:
        yield total - before
        before = total


def test_custom_rules_join_the_default_ones(custom_rules: str) -> None:
    """Without --no-defaults the spec's ten rules come first; a missing module or a name used twice is an error."""
    assert len(load_rules(custom_rules)) == 4
    with pytest.raises(ValueError, match=r"--rules 'nowhere:RULES': cannot import 'nowhere'"):
        load_rules("nowhere:RULES")
    with pytest.raises(ValueError, match=r"expected 'module:NAME'"):
        load_rules("custom_alert_rules")
    assert rules_command(["--rules", custom_rules, "--rules", custom_rules]) == 2


def test_generated_names_resolve_through_a_frame(make_telemetry: Callable[..., Telemetry]) -> None:
    """With the frame, an OpenTelemetry name becomes the name /metrics shows, and a name the frame lacks (a
    check_metric name) is skipped; without it, an unknown dotted name is skipped with the reason."""
    telemetry = handle(make_telemetry)
    telemetry.metrics.timing("api.latency", 0.2)
    telemetry.metrics.increment("jobs.done", 3)
    telemetry.collect()
    frame = telemetry.latest_frame()
    rules = [
        AlertRule("SlowApi", "api.latency", statistic="p99", window=60, threshold=0.5),
        AlertRule("Jobs", "jobs.done", statistic="rate", threshold=100),
        AlertRule("Checked", "api_latency_ms", threshold=1000),
    ]
    text = prometheus_rules_yaml(rules, frame=frame, by=())
    expressions = {r["alert"]: r["expr"] for r in yaml.safe_load(text)["groups"][0]["rules"]}
    assert expressions == {
        "SlowApi": "histogram_quantile(0.99, sum by (le) (rate(api_latency_seconds_bucket[1m]))) > 0.5",
        "Jobs": "sum(irate(jobs_done_total[5m])) > 100",
    }
    assert "# skipped Checked: api_latency_ms is not on /metrics of the frame given (a check_metric name?)" in text
    plain = prometheus_rules_yaml(rules)
    assert "# skipped SlowApi: no Prometheus name known for 'api.latency'" in plain
    assert "sum by (service_instance_id) (api_latency_ms) > 1000" in plain


def test_check_metric_on_a_handle_never_waits_on_a_notifier(make_telemetry: Callable[..., Telemetry]) -> None:
    """On a handle, check_metric hands its notifications to the alerts' worker: a notifier that takes 0.5 s
    delays nothing on the calling (game) thread, and still hears the alert, on another thread."""
    import threading

    from otel_telemetry.alerts import CallbackNotifier

    telemetry = make_telemetry()
    heard: list[tuple[str, str]] = []
    done = threading.Event()

    def slow(alert: Any) -> None:
        time.sleep(0.5)
        heard.append((alert.name, threading.current_thread().name))
        done.set()

    telemetry.alerts.add_notifier(CallbackNotifier(slow))
    telemetry.alerts.register_rule(AlertRule("high_latency", "api_latency_ms", "above", 1000.0, severity="high"))
    alerts = telemetry.alerts.check_metric("api_latency_ms", 1500.0)
    assert heard == []  # returned before the notifier finished: it runs elsewhere
    assert [a.name for a in alerts] == ["high_latency"]
    assert done.wait(5.0)
    assert heard[0][0] == "high_latency" and heard[0][1] != threading.current_thread().name
