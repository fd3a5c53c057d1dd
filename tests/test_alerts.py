"""Alerting: rules, the Prometheus-like lifecycle, notifiers, the ALERTS metric, the frame evaluator, PromQL and the
rules file."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from conftest import ROOT, http_get
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

from otel_telemetry import ServerMetrics, Telemetry, TelemetryConfig
from otel_telemetry.alerts import (
    DEFAULT_THRESHOLDS,
    Alert,
    AlertEvaluator,
    AlertManager,
    AlertRule,
    AlertState,
    CallbackNotifier,
    LogNotifier,
    Notifier,
    Severity,
    WebhookNotifier,
    alert_metrics,
    default_rules,
    parse_thresholds,
    promql_expression,
    register_alert_metric,
)
from otel_telemetry.catalog import lookup, snapshot_fields
from otel_telemetry.snapshot import HardwareMetrics, NetworkMetrics, Percentiles, PerformanceMetrics
from otel_telemetry.snapshot.build import server_metrics
from otel_telemetry.snapshot.frame import Frame
from otel_telemetry.tools.rules import (
    RULES_TEST_FILE,
    TICK_RATE_SCENARIO,
    config_rules,
    prometheus_rules_yaml,
    promtool_tests_yaml,
    rules_command,
    write_rules_file,
)
from otel_telemetry.tools.yaml_text import yaml_scalar

RULES_FILE = ROOT / "collector-config" / "alert-rules.yml"
RULES_TESTS = ROOT / "collector-config" / RULES_TEST_FILE
EPOCH = 1_700_000_000.0


# -- helpers -------------------------------------------------------------------------------------------------------
class Clock:
    """A manual clock: ``clock()`` is monotonic seconds, ``clock.wall()`` the matching epoch seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def snap(
    at: float = 0.0,
    *,
    cpu: float | None = None,
    memory: float | None = None,
    tick: float | None = None,
    p95: float | None = None,
    loss: float | None = None,
) -> ServerMetrics:
    """A snapshot taken ``at`` seconds after EPOCH with the given values."""
    return ServerMetrics(
        server_id="server-001",
        timestamp=datetime.fromtimestamp(EPOCH + at, UTC),
        hardware=HardwareMetrics(cpu_usage_percent=cpu, memory_usage_percent=memory),
        network=NetworkMetrics(player_ping_percentiles=Percentiles(p95=p95), packet_loss_percent=loss),
        performance=PerformanceMetrics(tick_rate_fps=tick),
    )


def manager(
    rules: Sequence[AlertRule], clock: Clock, *notifiers: Notifier, retention: float = 300.0
) -> tuple[AlertManager, list[Alert]]:
    """A manager on ``clock`` that also records every notification in the returned list."""
    sent: list[Alert] = []
    notifier_list: list[Notifier] = [CallbackNotifier(sent.append), *notifiers]
    return (
        AlertManager(rules, notifiers=notifier_list, clock=clock, wall_clock=clock.wall, resolved_retention=retention),
        sent,
    )


def cpu_rule(**kwargs: Any) -> AlertRule:
    """A CPU > 80 % rule with ``kwargs`` applied."""
    settings: dict[str, Any] = {"name": "HighCpu", "metric": "hardware.cpu_usage_percent", "threshold": 80.0}
    settings.update(kwargs)
    return AlertRule(**settings)


def states(alerts: Sequence[Alert]) -> list[tuple[str, str]]:
    """``(name, state)`` pairs."""
    return [(a.name, a.state.value) for a in alerts]


def frame_of(metrics: ServerMetrics, sequence: int = 1, data: MetricsData | None = None) -> Frame:
    """A frame carrying ``metrics`` (and ``data``, empty by default), as the collector hands them out."""
    return Frame(
        sequence=sequence,
        time_unix_nano=int(metrics.timestamp.timestamp() * 1e9),
        monotonic=time.monotonic(),
        metrics_data=data if data is not None else MetricsData(resource_metrics=[]),
        histograms={},
        server_metrics=metrics,
    )


def take_frame(telemetry: Telemetry) -> Frame:
    """A frame taken now through the handle's one collection (the same path as its periodic frames)."""
    telemetry.collect()
    frame = telemetry.latest_frame()
    assert frame is not None
    return frame


def promtool() -> str:
    """The promtool binary, or skip."""
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    if not Path(found).exists():
        pytest.skip("promtool is not installed (make test installs it)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with a bounded wait."""
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- rule validation -----------------------------------------------------------------------------------------------
def test_unknown_metric_path_is_rejected_naming_it() -> None:
    """A path ServerMetrics does not have fails at construction, naming the path and suggesting the field."""
    with pytest.raises(ValueError, match=r"'performance\.tick_rate'.*no field 'tick_rate'.*'tick_rate_fps'"):
        AlertRule(name="Tick", metric="performance.tick_rate", kind="below", threshold=58)
    with pytest.raises(ValueError, match=r"'hardware\.cpu\.usage'"):
        AlertRule(name="Cpu", metric="hardware.cpu.usage", threshold=80)


def test_non_numeric_paths_are_rejected() -> None:
    """Records, strings and tuples are not values a rule can compare."""
    for path in ("network.player_ping_percentiles", "server_id", "hardware.cpu_usage_per_core", "network"):
        with pytest.raises(ValueError, match=r"numeric|not a record"):
            AlertRule(name="X", metric=path, threshold=1)


def test_mapping_fields_take_a_key() -> None:
    """Mapping fields such as per-phase distributions are addressed by key."""
    rule = AlertRule(name="SlowNetworkPhase", metric="performance.phase_time_ms.network.p95", threshold=5)
    assert rule.metric == "performance.phase_time_ms.network.p95"
    with pytest.raises(ValueError, match="no field 'p96'"):
        AlertRule(name="X", metric="performance.phase_time_ms.network.p96", threshold=5)


def test_inverted_range_is_rejected() -> None:
    """``between``/``outside`` need low <= high."""
    with pytest.raises(ValueError, match=r"inverted range: low \(90\) is above high \(10\)"):
        AlertRule(name="R", metric="hardware.cpu_usage_percent", kind="between", low=90, high=10)
    with pytest.raises(ValueError, match="needs both low and high"):
        AlertRule(name="R", metric="hardware.cpu_usage_percent", kind="outside", low=1)


@pytest.mark.parametrize("field_name", ["for_", "keep_firing_for", "cooldown"])
def test_negative_durations_are_rejected_naming_the_field(field_name: str) -> None:
    """Negative durations fail with the field name and value."""
    with pytest.raises(ValueError, match=rf"AlertRule 'HighCpu'\.{field_name}: .*got -1"):
        cpu_rule(**{field_name: -1})


def test_windowed_kinds_need_a_positive_window() -> None:
    """percent_change and rate_of_change need a window; other kinds refuse one."""
    with pytest.raises(ValueError, match=r"window: must be a positive.*got -5"):
        AlertRule(name="Jump", metric="hardware.cpu_usage_percent", kind="percent_change", threshold=50, window=-5)
    with pytest.raises(ValueError, match="needs a window"):
        AlertRule(name="Jump", metric="hardware.cpu_usage_percent", kind="rate_of_change", threshold=5)
    with pytest.raises(ValueError, match="window applies"):
        cpu_rule(window=60)


def test_other_bad_rules_fail_with_clear_messages() -> None:
    """Kind, threshold, severity, names, labels and annotation templates are all checked."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "over"}, "kind must be one of above, below"),
        ({"threshold": None}, "needs a threshold"),
        ({"threshold": float("nan")}, "threshold: expected a finite number"),
        ({"severity": "fatal"}, "severity must be one of info, warning, error, critical"),
        ({"name": "1st"}, "AlertRule.name"),
        ({"labels": {"severity": "x"}}, "label 'severity' is set by the rule"),
        ({"labels": {"bad-name": "x"}}, "not a valid Prometheus label name"),
        ({"annotations": {"summary": "{nope}"}}, r"annotation 'summary': unknown placeholder \{nope\}"),
        ({"annotations": {"summary": "{value!r}"}}, "conversions are not supported"),
        ({"low": 1}, "low/high apply to 'between' and 'outside' only"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            cpu_rule(**kwargs)
    assert cpu_rule(severity="critical").severity is Severity.CRITICAL


# -- default rules -------------------------------------------------------------------------------------------------
def test_default_rules_are_the_specs_ten() -> None:
    """Five metrics times warning/critical with the spec's thresholds and directions."""
    rules = default_rules()
    table = {(r.metric, r.severity.value): (r.kind, r.threshold) for r in rules}
    assert len(rules) == 10 == len({r.name for r in rules})
    assert table == {
        ("hardware.cpu_usage_percent", "warning"): ("above", 80),
        ("hardware.cpu_usage_percent", "critical"): ("above", 95),
        ("hardware.memory_usage_percent", "warning"): ("above", 85),
        ("hardware.memory_usage_percent", "critical"): ("above", 95),
        ("performance.tick_rate_fps", "warning"): ("below", 58),
        ("performance.tick_rate_fps", "critical"): ("below", 55),
        ("network.player_ping_percentiles.p95", "warning"): ("above", 100),
        ("network.player_ping_percentiles.p95", "critical"): ("above", 200),
        ("network.packet_loss_percent", "warning"): ("above", 1),
        ("network.packet_loss_percent", "critical"): ("above", 5),
    }
    assert all(r.for_ == 0 for r in rules)
    assert [r.for_ for r in default_rules(for_=30)] == [30] * 10


def test_thresholds_can_be_overridden_and_are_checked() -> None:
    """Overrides replace (warning, critical); unknown keys and inverted pairs fail."""
    rules = {r.name: r for r in default_rules({"cpu": (70, 90), "tick_rate": (50, 45)})}
    assert rules["HighCpuUsageWarning"].threshold == 70 and rules["HighCpuUsageCritical"].threshold == 90
    assert rules["LowTickRateWarning"].threshold == 50 and rules["LowTickRateCritical"].threshold == 45
    with pytest.raises(ValueError, match="unknown threshold key 'gpu'"):
        default_rules({"gpu": (1, 2)})
    with pytest.raises(ValueError, match=r"thresholds\['cpu'\].*inverted"):
        default_rules({"cpu": (95, 80)})
    with pytest.raises(ValueError, match=r"thresholds\['tick_rate'\].*inverted"):
        default_rules({"tick_rate": (50, 55)})
    assert parse_thresholds("cpu=70,90; packet_loss=0.5,2") == {"cpu": (70.0, 90.0), "packet_loss": (0.5, 2.0)}
    with pytest.raises(ValueError, match="unknown name 'disk'"):
        parse_thresholds("disk=1,2")
    with pytest.raises(ValueError, match="expected name=warning,critical"):
        parse_thresholds("cpu=70")
    assert set(DEFAULT_THRESHOLDS) == {"cpu", "memory", "tick_rate", "player_ping_p95", "packet_loss"}


# -- lifecycle -----------------------------------------------------------------------------------------------------
def test_pending_becomes_firing_after_for() -> None:
    """The condition must hold for ``for_`` seconds; only the transition to firing is notified."""
    clock = Clock()
    alerts, sent = manager([cpu_rule(for_=30)], clock)
    assert states(alerts.evaluate(snap(cpu=90))) == [("HighCpu", "pending")]
    clock.advance(29)
    assert states(alerts.evaluate(snap(cpu=91))) == [("HighCpu", "pending")]
    assert sent == []
    clock.advance(1)
    [alert] = alerts.evaluate(snap(cpu=92))
    assert alert.state is AlertState.FIRING and alert.value == 92
    assert alert.active_since == datetime.fromtimestamp(EPOCH + 1000, UTC)
    assert alert.fired_at == datetime.fromtimestamp(EPOCH + 1030, UTC)
    assert dict(alert.labels) == {"alertname": "HighCpu", "severity": "warning"}
    assert states(sent) == [("HighCpu", "firing")]


def test_for_zero_fires_on_the_first_evaluation() -> None:
    """As in Prometheus, a rule without ``for`` fires as soon as its condition holds."""
    alerts, sent = manager([cpu_rule()], Clock())
    assert states(alerts.evaluate(snap(cpu=81))) == [("HighCpu", "firing")]
    assert states(sent) == [("HighCpu", "firing")]


def test_a_pending_alert_that_clears_is_dropped_without_notice() -> None:
    """Pending then normal: no notification at all, and nothing kept as resolved."""
    clock = Clock()
    alerts, sent = manager([cpu_rule(for_=60)], clock)
    alerts.evaluate(snap(cpu=99))
    clock.advance(10)
    assert alerts.evaluate(snap(cpu=20)) == []
    assert sent == [] and alerts.active() == [] and alerts.resolved() == []


def test_recovery_resolves_and_notifies_once() -> None:
    """Firing then normal: one resolved notice, kept in resolved() for the retention only."""
    clock = Clock()
    alerts, sent = manager([cpu_rule()], clock, retention=60)
    alerts.evaluate(snap(cpu=90))
    clock.advance(5)
    result = alerts.evaluate(snap(cpu=50))
    assert states(result) == [("HighCpu", "resolved")]
    assert states(sent) == [("HighCpu", "firing"), ("HighCpu", "resolved")]
    assert sent[-1].resolved_at == datetime.fromtimestamp(EPOCH + 1005, UTC) and sent[-1].value == 90
    clock.advance(1)
    assert alerts.evaluate(snap(cpu=50)) == [] and len(sent) == 2
    assert states(alerts.resolved()) == [("HighCpu", "resolved")]
    clock.advance(60)
    assert alerts.resolved() == []


def test_keep_firing_for_rides_out_flapping() -> None:
    """Oscillating around the threshold fires once; it resolves keep_firing_for after the first miss (Prometheus)."""
    clock = Clock()
    alerts, sent = manager([cpu_rule(keep_firing_for=10)], clock)
    for value in (85, 70, 86, 75, 90, 60, 88):
        alerts.evaluate(snap(cpu=value))
        clock.advance(1)
    assert states(sent) == [("HighCpu", "firing")]
    for _ in range(10):  # misses at +0 s .. +9 s after the first miss keep firing; +10 s resolves
        assert states(alerts.evaluate(snap(cpu=40))) == [("HighCpu", "firing")]
        clock.advance(1)
    assert states(alerts.evaluate(snap(cpu=40))) == [("HighCpu", "resolved")]
    assert states(sent) == [("HighCpu", "firing"), ("HighCpu", "resolved")]


def test_without_keep_firing_for_flapping_is_visible() -> None:
    """The same oscillation with keep_firing_for = 0 fires and resolves on every swing (the contrast)."""
    clock = Clock()
    alerts, sent = manager([cpu_rule()], clock)
    for value in (85, 70, 86, 75):
        alerts.evaluate(snap(cpu=value))
        clock.advance(1)
    assert [a.state.value for a in sent] == ["firing", "resolved", "firing", "resolved"]


def test_no_data_never_fires_and_lets_a_firing_alert_resolve_after_keep_firing_for() -> None:
    """None is "no data": nothing fires; a firing alert keeps firing for keep_firing_for, then resolves."""
    clock = Clock()
    alerts, sent = manager([cpu_rule(keep_firing_for=5), cpu_rule(name="Pending", for_=60)], clock)
    assert alerts.evaluate(snap(cpu=None)) == []
    alerts.evaluate(snap(cpu=99))
    assert states(alerts.active()) == [("HighCpu", "firing"), ("Pending", "pending")]
    clock.advance(1)
    assert states(alerts.evaluate(snap(cpu=None))) == [("HighCpu", "firing")]  # pending dropped at once
    clock.advance(4.9)
    assert states(alerts.evaluate(snap(cpu=None))) == [("HighCpu", "firing")]
    clock.advance(0.1)
    assert states(alerts.evaluate(snap(cpu=None))) == [("HighCpu", "resolved")]
    assert states(sent) == [("HighCpu", "firing"), ("HighCpu", "resolved")]


def test_cooldown_limits_repeated_notifications() -> None:
    """While firing, notifications repeat every ``cooldown`` seconds at most; 0 means once."""
    clock = Clock()
    alerts, sent = manager([cpu_rule(cooldown=60), cpu_rule(name="Once")], clock)
    for _ in range(150):
        alerts.evaluate(snap(cpu=99))
        clock.advance(1)
    repeated = [a for a in sent if a.name == "HighCpu"]
    assert [a.state for a in repeated] == [AlertState.FIRING] * 3
    assert [s.name for s in sent].count("Once") == 1


def test_acknowledgment() -> None:
    """Acknowledging marks the alert, stops repeats, still notifies resolution; the next alert starts fresh."""
    clock = Clock()
    alerts, sent = manager([cpu_rule(cooldown=10)], clock)
    assert alerts.acknowledge("HighCpu", by="ops") is None
    with pytest.raises(KeyError, match="no rule named 'Nope'"):
        alerts.acknowledge("Nope")
    alerts.evaluate(snap(cpu=99))
    clock.advance(3)
    acked = alerts.acknowledge("HighCpu", by="ops")
    assert acked is not None and acked.acknowledged and acked.acknowledged_by == "ops"
    assert acked.acknowledged_at == datetime.fromtimestamp(EPOCH + 1003, UTC)
    for _ in range(30):
        clock.advance(1)
        alerts.evaluate(snap(cpu=99))
    assert states(sent) == [("HighCpu", "firing")]
    alerts.evaluate(snap(cpu=10))
    assert states(sent) == [("HighCpu", "firing"), ("HighCpu", "resolved")] and sent[-1].acknowledged
    [fresh] = alerts.evaluate(snap(cpu=99))
    assert fresh.state is AlertState.FIRING and not fresh.acknowledged


def test_annotations_are_filled_in() -> None:
    """Templates get the value, threshold, metric, name and severity."""
    rule = cpu_rule(
        severity=Severity.CRITICAL,
        annotations={"summary": "{name}: {metric} at {value:.1f} > {threshold:g} ({severity})", "plain": "{{x}}"},
    )
    [alert] = manager([rule], Clock())[0].evaluate(snap(cpu=93.25))
    assert dict(alert.annotations) == {
        "summary": "HighCpu: hardware.cpu_usage_percent at 93.2 > 80 (critical)",
        "plain": "{x}",
    }


def test_between_and_outside() -> None:
    """Range kinds: between is inclusive, outside is its complement."""
    between = AlertRule(name="In", metric="hardware.cpu_usage_percent", kind="between", low=10, high=20)
    outside = AlertRule(name="Out", metric="hardware.cpu_usage_percent", kind="outside", low=10, high=20)
    for value, expected in ((5, ["Out"]), (10, ["In"]), (20, ["In"]), (21, ["Out"])):
        alerts, _ = manager([between, outside], Clock())
        assert [a.name for a in alerts.evaluate(snap(cpu=value))] == expected


def test_percent_change_and_rate_of_change_read_the_history() -> None:
    """Windowed kinds compare with the newest snapshot at least ``window`` seconds older; short history = no data."""
    history = [snap(t, tick=60.0) for t in range(0, 61, 10)]
    drop = AlertRule(
        name="TickDrop", metric="performance.tick_rate_fps", kind="percent_change", threshold=-20, window=60
    )
    slide = AlertRule(
        name="TickSlide", metric="performance.tick_rate_fps", kind="rate_of_change", threshold=-0.2, window=30
    )
    rise = AlertRule(name="TickRise", metric="performance.tick_rate_fps", kind="percent_change", threshold=5, window=60)
    alerts, _ = manager([drop, slide, rise], Clock())
    now = snap(70, tick=45.0)
    assert drop.measure(now, history) == pytest.approx(-25.0)
    assert slide.measure(now, history) == pytest.approx(-15 / 30)
    assert sorted(a.name for a in alerts.evaluate(now, history)) == ["TickDrop", "TickSlide"]
    assert drop.measure(now, history[-2:]) is None  # history does not reach back 60 s
    assert rise.measure(snap(70, tick=61.0), history) == pytest.approx(100 / 60)


def test_a_failing_rule_is_counted_logged_once_and_leaves_its_alert(caplog: pytest.LogCaptureFixture) -> None:
    """A rule that raises does not stop the others, never raises from evaluate, and keeps its alert unchanged."""

    class Exploding:
        """Duck-typed snapshot whose CPU field raises."""

        server_id = "server-001"
        timestamp = datetime.fromtimestamp(EPOCH, UTC)

        def field_value(self, path: str) -> object:
            if path.startswith("hardware"):
                raise RuntimeError("sensor exploded")
            return snap(tick=40).field_value(path)

    clock = Clock()
    tick = AlertRule(name="LowTick", metric="performance.tick_rate_fps", kind="below", threshold=55)
    alerts, sent = manager([cpu_rule(), tick], clock)
    alerts.evaluate(snap(cpu=99, tick=60))
    with caplog.at_level(logging.ERROR, logger="otel_telemetry.alerts.manager"):
        for _ in range(3):
            result = alerts.evaluate(cast(ServerMetrics, Exploding()))
    assert states(result) == [("HighCpu", "firing"), ("LowTick", "firing")]
    assert alerts.errors == 3
    assert caplog.text.count("'HighCpu' failed to evaluate") == 1
    assert states(alerts.evaluate(cast(ServerMetrics, None))) == states(result)  # garbage in: counted, unchanged
    assert alerts.errors == 5
    assert states(sent) == [("HighCpu", "firing"), ("LowTick", "firing")]


def test_rules_can_be_added_and_removed() -> None:
    """Names are unique; removing a rule resolves its firing alert with a notice."""
    clock = Clock()
    alerts, sent = manager([cpu_rule()], clock)
    with pytest.raises(ValueError, match="already exists"):
        alerts.add_rule(cpu_rule())
    alerts.add_rule(AlertRule(name="LowTick", metric="performance.tick_rate_fps", kind="below", threshold=55))
    alerts.evaluate(snap(cpu=90, tick=30))
    removed = alerts.remove_rule("HighCpu")
    assert removed.name == "HighCpu" and [r.name for r in alerts.rules] == ["LowTick"]
    assert states(sent)[-1] == ("HighCpu", "resolved")
    assert states(alerts.active()) == [("LowTick", "firing")]
    with pytest.raises(KeyError):
        alerts.remove_rule("HighCpu")


# -- notifiers -----------------------------------------------------------------------------------------------------
def test_a_raising_notifier_does_not_stop_the_others_or_evaluation(caplog: pytest.LogCaptureFixture) -> None:
    """A raising callback and a raising notifier are isolated, counted and logged once; the log notifier logs."""

    class Broken(Notifier):
        """Always fails."""

        def notify(self, alerts: Sequence[Alert]) -> None:
            raise ConnectionError("pager down")

    def bad_callback(alert: Alert) -> None:
        raise ValueError("callback bug")

    clock = Clock()
    flaky = CallbackNotifier(bad_callback)
    game_log = logging.getLogger("test.alerts.game")
    alerts, sent = manager([cpu_rule(cooldown=1)], clock, flaky, Broken(), LogNotifier(game_log))
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            alerts.evaluate(snap(cpu=97))
            clock.advance(1)
        alerts.evaluate(snap(cpu=10))
    assert [a.state.value for a in sent] == ["firing", "firing", "firing", "resolved"]
    assert flaky.failures == 4 and alerts.notification_failures == 4
    assert caplog.text.count("ValueError: callback bug") == 1 and caplog.text.count("ConnectionError: pager down") == 1
    logged = [r for r in caplog.records if r.name == "test.alerts.game"]
    assert [r.levelno for r in logged] == [logging.WARNING] * 3 + [logging.INFO]
    assert "HighCpu FIRING [warning]: hardware.cpu_usage_percent = 97" in logged[0].getMessage()
    assert logged[-1].__dict__["alert_state"] == "resolved"


class _Recorder(BaseHTTPRequestHandler):
    """Records every POST; answers with the next status of ``server.statuses`` (then 200), after ``server.delay``."""

    def do_POST(self) -> None:
        server = cast(Any, self.server)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(server.delay)
        server.requests.append((self.path, dict(self.headers), body))
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def webhook_server() -> Iterator[Any]:
    """A real HTTP server on 127.0.0.1 recording posts; stopped afterwards."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []
    server.statuses = []
    server.delay = 0.0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_webhook_posts_json_with_the_bearer_token(webhook_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A real server gets {"alerts": [...]} with Authorization: Bearer; a 500 is retried; the token is not logged."""
    token = "tok-3f9a-very-secret"
    webhook_server.statuses = [500]
    url = f"http://127.0.0.1:{webhook_server.server_address[1]}/api/v1/alerts?tenant=t1"
    hook = WebhookNotifier(url, token=token, timeout=2, retries=2, backoff=0.01)
    clock = Clock()
    alerts, _ = manager([cpu_rule(labels={"team": "ops"})], clock, hook)
    try:
        with caplog.at_level(logging.DEBUG):
            alerts.evaluate(snap(cpu=99))
            assert wait_until(lambda: hook.sent == 1)
            clock.advance(1)
            alerts.evaluate(snap(cpu=1))
            assert wait_until(lambda: hook.sent == 2)
    finally:
        assert hook.close(timeout=2)
    assert hook.retried == 1 and hook.failed == 0 and hook.dropped == 0
    assert len(webhook_server.requests) == 3
    path, headers, body = webhook_server.requests[1]
    assert path == "/api/v1/alerts?tenant=t1"
    assert headers["Authorization"] == f"Bearer {token}" and headers["Content-Type"] == "application/json"
    [alert] = json.loads(body)["alerts"]
    assert alert["name"] == "HighCpu" and alert["state"] == "firing" and alert["value"] == 99
    assert alert["labels"] == {"alertname": "HighCpu", "severity": "warning", "team": "ops"}
    assert alert["server_id"] == "server-001" and alert["fired_at"].endswith("Z")
    assert json.loads(webhook_server.requests[2][2])["alerts"][0]["state"] == "resolved"
    assert "HTTP 500" in caplog.text
    assert token not in caplog.text and token not in repr(hook) and "tenant" not in repr(hook)


def test_webhook_never_blocks_evaluation_and_counts_drops(webhook_server: Any) -> None:
    """With a slow receiver and a one-slot queue, evaluation stays fast and extra notifications are dropped."""
    webhook_server.delay = 0.3
    hook = WebhookNotifier(f"http://127.0.0.1:{webhook_server.server_address[1]}/", queue_size=1, retries=0)
    clock = Clock()
    alerts, _ = manager([cpu_rule(cooldown=1)], clock, hook)
    started = time.perf_counter()
    for _ in range(6):
        alerts.evaluate(snap(cpu=99))
        clock.advance(1)
    elapsed = time.perf_counter() - started
    assert hook.close(timeout=3)
    assert elapsed < 0.2
    assert hook.dropped >= 4 and hook.sent + hook.dropped == 6


def test_webhook_close_drops_what_it_cannot_deliver_in_time(webhook_server: Any) -> None:
    """close() returns by its timeout (which also bounds the POST in flight); what is left is dropped and counted."""
    webhook_server.delay = 0.4
    hook = WebhookNotifier(f"http://127.0.0.1:{webhook_server.server_address[1]}/", retries=0)
    alerts, _ = manager([cpu_rule(name=f"Rule{i}", threshold=90 + i) for i in range(5)], Clock(), hook)
    for value in (91, 92, 93, 94, 95):  # each evaluation fires one more rule: five POST bodies
        alerts.evaluate(snap(cpu=value))
    started = time.monotonic()
    hook.close(timeout=0.1)
    assert time.monotonic() - started < 0.5
    assert wait_until(lambda: hook.sent + hook.failed + hook.dropped == 5, timeout=5)
    assert hook.dropped >= 3 and hook.sent + hook.failed <= 2
    hook.notify(alerts.active())
    assert hook.sent + hook.failed + hook.dropped == 6  # closed: counted as dropped, not queued


def test_webhook_failure_is_counted_not_raised() -> None:
    """An unreachable receiver costs retries and a failure count, never an exception."""
    hook = WebhookNotifier(f"http://127.0.0.1:{closed_port()}/hook", timeout=0.5, retries=1, backoff=0.01)
    alerts, sent = manager([cpu_rule()], Clock(), hook)
    alerts.evaluate(snap(cpu=99))
    assert wait_until(lambda: hook.failed == 1)
    assert hook.close(timeout=2)
    assert hook.retried == 1 and len(sent) == 1


def closed_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_webhook_settings_are_validated_without_showing_the_token() -> None:
    """Bad URLs, credentials in the URL and bad tokens fail at construction; the token is not echoed."""
    with pytest.raises(ValueError, match="http:// or https://"):
        WebhookNotifier("ftp://example.com/hook")
    with pytest.raises(ValueError, match="credentials"):
        WebhookNotifier("http://user:pw@example.com/hook")
    with pytest.raises(ValueError, match="value not shown") as caught:
        WebhookNotifier("http://example.com/hook", token="abc\r\nX-Evil: 1")
    assert "abc" not in str(caught.value)
    with pytest.raises(ValueError, match="retries"):
        WebhookNotifier("http://example.com/hook", retries=-1)


# -- real values through the SDK -----------------------------------------------------------------------------------
def test_a_50_fps_tick_loop_fires_both_tick_rate_rules(make_telemetry: Callable[..., Telemetry]) -> None:
    """A real tick loop paced at 50 Hz for about a second drops below 58 and 55 FPS: warning and critical fire."""
    telemetry = make_telemetry(collection_interval=3600, enable_hardware_metrics=False)
    perf = telemetry.performance
    perf.refresh(force=True)
    start = time.perf_counter()
    for i in range(50):
        with perf.tick():
            pass
        time.sleep(max(0.0, start + (i + 1) * 0.02 - time.perf_counter()))
    perf.refresh(force=True)
    frame = take_frame(telemetry)
    metrics = frame.server_metrics
    assert metrics.performance.tick_rate_fps is not None and 35 < metrics.performance.tick_rate_fps < 54
    alerts, sent = manager(default_rules(), Clock())
    evaluator = AlertEvaluator(alerts, telemetry.get_history)
    evaluator.on_frame(frame)
    fired = alerts.active()
    assert states(fired) == [("LowTickRateWarning", "firing"), ("LowTickRateCritical", "firing")]
    assert fired[0].annotations["summary"] == "Tick rate below 58 FPS"
    assert evaluator.close(timeout=2)
    assert fired[1].annotations["description"].startswith("Tick rate is ") and len(sent) == 2


def test_a_slow_ping_tail_fires_the_p95_rules(make_telemetry: Callable[..., Telemetry]) -> None:
    """Pings with a 10 % tail at 250 ms put p95 above both thresholds; a 150 ms tail only above the warning."""
    fired: dict[float, list[str]] = {}
    for tail in (250.0, 150.0):
        telemetry = make_telemetry(collection_interval=3600, enable_hardware_metrics=False)
        for i in range(200):
            telemetry.network.player_ping(f"player-{i % 40}", tail if i % 10 == 0 else 40.0)
        telemetry.network.refresh(force=True)
        metrics = take_frame(telemetry).server_metrics
        assert metrics.network.player_ping_percentiles.p95 == pytest.approx(tail, rel=0.01)
        ping_rules = [r for r in default_rules() if "Ping" in r.name]
        fired[tail] = [a.name for a in manager(ping_rules, Clock())[0].evaluate(metrics)]
    assert fired == {250.0: ["HighPlayerPingWarning", "HighPlayerPingCritical"], 150.0: ["HighPlayerPingWarning"]}


def test_packet_loss_fires_the_warning_only(make_telemetry: Callable[..., Telemetry]) -> None:
    """3 % of sent packets lost: above the 1 % warning, below the 5 % critical."""
    telemetry = make_telemetry(collection_interval=3600, enable_hardware_metrics=False)
    for _ in range(200):
        telemetry.network.packet_sent(64)
    telemetry.network.packet_lost(6)
    telemetry.network.refresh(force=True)
    metrics = take_frame(telemetry).server_metrics
    assert metrics.network.packet_loss_percent == pytest.approx(3.0)
    assert metrics.performance.tick_rate_fps is None  # no tick yet: no data, so the tick-rate rules stay quiet
    assert not [a for a in manager(default_rules(), Clock())[0].evaluate(metrics) if "TickRate" in a.name]
    loss_rules = [r for r in default_rules() if "PacketLoss" in r.name]
    [alert] = manager(loss_rules, Clock())[0].evaluate(metrics)
    assert alert.name == "HighPacketLossWarning" and alert.annotations["description"] == (
        "Packet loss is 3.0% (warning above 1%)"
    )


# -- the ALERTS metric ---------------------------------------------------------------------------------------------
def _alert_points(data: MetricsData | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "alerts":
                    points = cast(Sequence[Any], metric.data.data_points)
                    found += [{**dict(p.attributes or {}), "value": p.value} for p in points]
    return found


def test_alerts_metric_reports_pending_and_firing_alerts() -> None:
    """ALERTS (read back as ``alerts``) has one point of 1 per active alert; resolved alerts disappear."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        clock = Clock()
        alerts, _ = manager([cpu_rule(labels={"team": "ops"}), cpu_rule(name="Slow", for_=60)], clock)
        register_alert_metric(alerts, provider.get_meter("otel_telemetry.alerts"))
        assert _alert_points(reader.get_metrics_data()) == []
        alerts.evaluate(snap(cpu=99))
        assert sorted(_alert_points(reader.get_metrics_data()), key=lambda p: p["alertname"]) == [
            {"alertname": "HighCpu", "alertstate": "firing", "severity": "warning", "team": "ops", "value": 1},
            {"alertname": "Slow", "alertstate": "pending", "severity": "warning", "value": 1},
        ]
        clock.advance(1)
        alerts.evaluate(snap(cpu=5))
        assert _alert_points(reader.get_metrics_data()) == []
    finally:
        provider.shutdown()


def test_alert_metrics_join_a_frame_with_the_same_series() -> None:
    """alert_metrics gives the frame the ``alerts`` gauge of the latest evaluation: the series the gauge observes."""
    clock = Clock()
    alerts, _ = manager([cpu_rule(labels={"team": "ops"}), cpu_rule(name="Slow", for_=60)], clock)
    assert alert_metrics(alerts, 123) == []
    alerts.evaluate(snap(cpu=99))
    [metric] = alert_metrics(alerts, 123)
    assert (metric.name, metric.unit) == ("alerts", "{alert}")
    points = cast(Sequence[Any], metric.data.data_points)
    assert sorted(({**dict(p.attributes), "value": p.value, "at": p.time_unix_nano} for p in points), key=str) == [
        {"alertname": "HighCpu", "alertstate": "firing", "severity": "warning", "team": "ops", "value": 1, "at": 123},
        {"alertname": "Slow", "alertstate": "pending", "severity": "warning", "value": 1, "at": 123},
    ]


def test_alerts_metric_on_the_prometheus_endpoint(make_telemetry: Callable[..., Telemetry]) -> None:
    """Through a real /metrics scrape the OpenTelemetry Prometheus exporter names it ``alerts``."""
    telemetry = make_telemetry(enable_prometheus_endpoint=True, enable_hardware_metrics=False)
    alerts, _ = manager(default_rules(), Clock())
    register_alert_metric(alerts, telemetry.get_meter("otel_telemetry.alerts"))
    alerts.evaluate(snap(tick=50))
    assert telemetry.prometheus_url is not None
    status, _headers, body = http_get(telemetry.prometheus_url)
    text = body.decode()
    assert status == 200
    assert 'alerts{alertname="LowTickRateWarning",alertstate="firing",severity="warning"} 1.0' in text
    assert 'alerts{alertname="LowTickRateCritical",alertstate="firing",severity="critical"} 1.0' in text
    assert "\nALERTS{" not in text


# -- the frame evaluator -------------------------------------------------------------------------------------------
class Gate(Notifier):
    """A notifier that blocks until ``release`` is set, recording every batch it gets."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[tuple[str, str]]] = []

    def notify(self, alerts: Sequence[Alert]) -> None:
        self.entered.set()
        self.release.wait(10)
        self.batches.append(states(alerts))


def test_evaluator_evaluates_each_frame_once_and_notifies_off_the_frame_path() -> None:
    """on_frame returns at once although the notifier blocks; each frame counts once; order is kept; close ends it."""
    clock = Clock()
    gate = Gate()
    alerts = AlertManager([cpu_rule()], notifiers=[gate], clock=clock, wall_clock=clock.wall)
    evaluator = AlertEvaluator(alerts, lambda: [])
    before = set(threading.enumerate())
    try:
        started = time.perf_counter()
        evaluator.on_frame(frame_of(snap(cpu=99), sequence=1))
        evaluator.on_frame(frame_of(snap(cpu=99), sequence=1))  # the same frame again: ignored
        clock.advance(1)
        evaluator.on_frame(frame_of(snap(1, cpu=5), sequence=2))
        elapsed = time.perf_counter() - started
        assert elapsed < 0.05, f"on_frame waited {elapsed:.3f} s on a blocked notifier"
        assert evaluator.evaluations == 2 and alerts.evaluations == 2
        assert states(alerts.resolved()) == [("HighCpu", "resolved")]  # the state moved on without the notifier
        workers = [t for t in threading.enumerate() if t not in before]
        assert [t.name for t in workers] == ["otel-telemetry-alert-notify"]
        gate.release.set()
        assert wait_until(lambda: evaluator.delivered == 2)
        assert gate.batches == [[("HighCpu", "firing")], [("HighCpu", "resolved")]]
    finally:
        gate.release.set()
        assert evaluator.close(timeout=2)
    assert not evaluator.running and not any(t.is_alive() for t in workers)
    evaluator.on_frame(frame_of(snap(cpu=99), sequence=3))  # closed: frames are ignored
    assert evaluator.evaluations == 2


def test_evaluator_close_returns_in_time_and_counts_what_it_dropped() -> None:
    """With a notifier stuck and a two-batch queue: every batch is delivered, dropped or pending; close is bounded."""
    clock = Clock()
    gate = Gate()
    alerts = AlertManager([cpu_rule(cooldown=1)], notifiers=[gate], clock=clock, wall_clock=clock.wall)
    evaluator = AlertEvaluator(alerts, lambda: [], queue_size=2)
    try:
        for sequence in range(1, 7):  # fires, then repeats every second: six batches
            evaluator.on_frame(frame_of(snap(sequence, cpu=99), sequence=sequence))
            clock.advance(1)
            if sequence == 1:
                assert gate.entered.wait(2)  # the first batch is in the notifier, which blocks
        assert evaluator.dropped == 3  # one in the notifier, two queued, three dropped
        started = time.monotonic()
        assert evaluator.close(timeout=0.2) is False  # the notifier still blocks
        assert time.monotonic() - started < 0.5
    finally:
        gate.release.set()
    assert wait_until(lambda: not evaluator.running)
    assert evaluator.delivered + evaluator.dropped == 6
    assert evaluator.delivered == len(gate.batches) >= 1


def test_evaluator_never_raises_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """A frame that cannot be read is skipped; a failing history only silences the windowed rules; each logs once."""
    calls: list[int] = []

    def history() -> list[ServerMetrics]:
        calls.append(1)
        raise RuntimeError("history unavailable")

    jump = AlertRule(name="CpuJump", metric="hardware.cpu_usage_percent", kind="percent_change", threshold=50, window=5)
    alerts, sent = manager([jump, cpu_rule()], Clock())
    evaluator = AlertEvaluator(alerts, history)
    try:
        with caplog.at_level(logging.ERROR):
            evaluator.on_frame(cast(Frame, object()))
            evaluator.on_frame(cast(Frame, object()))
            evaluator.on_frame(frame_of(snap(cpu=99), sequence=1))
            evaluator.on_frame(frame_of(snap(1, cpu=99), sequence=2))
        assert evaluator.failures == 4 and evaluator.evaluations == 2 and len(calls) == 2
        assert caplog.text.count("reading a frame for alert evaluation failed") == 1
        assert caplog.text.count("RuntimeError: history unavailable") == 1
        assert states(alerts.firing()) == [("HighCpu", "firing")]  # the other rules still ran
        alerts.remove_rule("CpuJump")
        evaluator.on_frame(frame_of(snap(2, cpu=99), sequence=3))
        assert len(calls) == 2  # no windowed rule left: the history is not read
        assert evaluator.evaluations == 3 and alerts.errors == 0
    finally:
        assert evaluator.close(timeout=2)
    assert states(sent) == [("HighCpu", "firing")]


def test_evaluator_reads_the_history_for_windowed_rules() -> None:
    """A percent_change rule compares the frame with the history the evaluator is given."""
    past = [snap(t, tick=60.0) for t in range(0, 61, 10)]
    drop = AlertRule(
        name="TickDrop", metric="performance.tick_rate_fps", kind="percent_change", threshold=-20, window=60
    )
    alerts, sent = manager([drop], Clock())
    evaluator = AlertEvaluator(alerts, lambda: past)
    evaluator.on_frame(frame_of(snap(70, tick=45.0)))
    assert evaluator.close(timeout=2)
    assert states(sent) == [("TickDrop", "firing")] and sent[0].value == pytest.approx(-25.0)


def test_evaluator_fires_on_a_frame_of_a_real_sdk_collection() -> None:
    """A real MeterProvider collection, turned into ServerMetrics the way the collector does, fires the tick rules."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:

        def tick_rate(_options: CallbackOptions) -> list[Observation]:
            return [Observation(40.0)]

        meter = provider.get_meter("test.alerts")
        meter.create_observable_gauge("server.tick_rate", callbacks=[tick_rate], unit="{tick}/s")
        data = reader.get_metrics_data()
        assert data is not None
        metrics = server_metrics("server-001", datetime.now(UTC), data)
        assert metrics.performance.tick_rate_fps == 40.0
        alerts, sent = manager(default_rules(), Clock())
        evaluator = AlertEvaluator(alerts, lambda: [])
        evaluator.on_frame(frame_of(metrics, data=data))
        assert evaluator.close(timeout=2)
    finally:
        provider.shutdown()
    assert states(sent) == [("LowTickRateWarning", "firing"), ("LowTickRateCritical", "firing")]


def test_a_handle_evaluates_its_frames(make_telemetry: Callable[..., Telemetry]) -> None:
    """A handle's own frames drive its alerts: a 30 FPS loop fires both tick-rate rules, with no reader of ours."""
    telemetry = make_telemetry(collection_interval=0.25, enable_hardware_metrics=False, alert_for=0)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not any(a.name == "LowTickRateCritical" for a in telemetry.alerts.firing()):
        with telemetry.performance.tick():
            pass
        time.sleep(1 / 30)
    assert [a.name for a in telemetry.alerts.firing()] == ["LowTickRateWarning", "LowTickRateCritical"]
    assert telemetry.alerts.errors == 0
    # About 30 FPS, quantised by short refresh intervals (3 or 4 ticks in 1/8 s): well below both thresholds.
    assert 10 < (telemetry.get_current_metrics().performance.tick_rate_fps or 0) < 50
    assert telemetry.shutdown(timeout=5)
    assert not [t for t in threading.enumerate() if t.name == "otel-telemetry-alert-notify" and t.is_alive()]


# -- the Prometheus rules file -------------------------------------------------------------------------------------
def test_committed_rules_file_is_current() -> None:
    """collector-config/alert-rules.yml is exactly prometheus_rules_yaml(config_rules()) (regenerate if not)."""
    assert RULES_FILE.exists(), "run: otel-telemetry rules -o collector-config/alert-rules.yml"
    assert RULES_FILE.read_text(encoding="utf-8") == prometheus_rules_yaml(config_rules()), (
        "collector-config/alert-rules.yml is stale; regenerate it with `otel-telemetry rules -o ...`"
    )


def test_committed_rules_file_passes_promtool() -> None:
    """promtool accepts the committed rules file."""
    result = run_promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_rules_file_expresses_the_spec_in_promql() -> None:
    """The YAML parses, has one game-server group, and each rule reads our exported names in the snapshot's units."""
    document = yaml.safe_load(prometheus_rules_yaml(default_rules(for_=30, keep_firing_for=90)))
    [group] = document["groups"]
    assert group["name"] == "game-server"
    rules = {r["alert"]: r for r in group["rules"]}
    assert len(rules) == 10
    by = "le, service_instance_id"
    assert rules["HighCpuUsageWarning"]["expr"] == "server_cpu_usage_percent > 80"
    assert rules["HighMemoryUsageCritical"]["expr"] == "server_memory_usage_percent > 95"
    assert rules["LowTickRateWarning"]["expr"] == "server_tick_rate_fps < 58"
    assert rules["HighPlayerPingWarning"]["expr"] == (
        f"histogram_quantile(0.95, sum by ({by}) (rate(server_network_player_ping_seconds_bucket[5m]))) * 1000 > 100"
    )
    assert rules["HighPacketLossWarning"]["expr"] == (  # over 5 minutes of packets, not one interval's sample
        "sum by (service_instance_id) (rate(server_network_packets_lost_total[5m])) / "
        'sum by (service_instance_id) (rate(server_network_packets_total{direction="sent"}[5m])) * 100 > 1'
    )
    first = rules["HighCpuUsageWarning"]
    assert first["for"] == "30s" and first["keep_firing_for"] == "1m30s"
    assert first["labels"] == {"severity": "warning"}
    assert first["annotations"]["description"] == 'CPU usage is {{ printf "%.1f" $value }}% (warning above 80%)'


def _numeric_paths() -> list[str]:
    """Every numeric ServerMetrics path, with ``key`` for mapping keys."""
    found: list[str] = []

    def walk(tp: Any, prefix: str) -> None:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is not None and len(args) == 1 and not typing.get_origin(args[0]):
            tp = args[0]
        if is_dataclass(tp) and isinstance(tp, type):
            hints = typing.get_type_hints(tp)
            for f in fields(tp):
                walk(hints[f.name], f"{prefix}.{f.name}" if prefix else f.name)
        elif typing.get_origin(tp) is not None and str(typing.get_origin(tp)).endswith("Mapping'>"):
            walk(typing.get_args(tp)[1], f"{prefix}.key")
        elif tp in (int, float):
            found.append(prefix)

    walk(ServerMetrics, "")
    return found


def test_every_numeric_field_has_promql_or_is_a_window_extreme() -> None:
    """Each numeric ServerMetrics field maps to PromQL, except the min/max of histogram windows."""
    paths = _numeric_paths()
    assert "performance.tick_rate_fps" in paths and "performance.phase_time_ms.key.p95" in paths
    unmapped = [p for p in paths if promql_expression(p) is None]
    assert unmapped and all(p.endswith((".min", ".max")) for p in unmapped), unmapped
    assert promql_expression("network.avg_player_ping_ms") == "server_avg_player_ping_ms"
    assert promql_expression("performance.avg_tick_duration_ms") == "server_tick_duration_avg_seconds * 1000"
    assert promql_expression("game.players_per_map.map-001") == 'server_game_map_players{map="map-001"}'
    assert promql_expression("performance.phase_time_ms.network.p99", by=()) == (
        'histogram_quantile(0.99, sum by (le) (rate(server_tick_phase_duration_seconds_bucket{phase="network"}[5m])))'
        " * 1000"
    )


def _matchers(where: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in where.items()) + "}" if where else ""


def test_promql_is_derived_from_the_catalog() -> None:
    """Every field the catalog fills reads back from its entry's Prometheus name, with its scale, filter and key."""
    checked = 0
    for spec, item in snapshot_fields():
        if item.ordered:
            continue  # tuples (per core, load average) are not paths a rule can name
        path = f"{item.path}.key" if item.key else item.path
        stats = [path] if item.stat in ("value", "avg") else [f"{path}.{q}" for q in ("p50", "p95", "p99")]
        for stat in stats:
            expr = promql_expression(stat, by=())
            if spec.percent_of is not None:  # a percentage: the ratio of the rates of the counters behind it
                part, whole = lookup(spec.rate_counter or ""), lookup(spec.percent_of)
                assert expr == (
                    f"sum (rate({part.prometheus_name}{_matchers(spec.rate_where)}[5m])) / "
                    f"sum (rate({whole.prometheus_name}{_matchers(spec.percent_of_where)}[5m])) * 100"
                ), (stat, expr)
                checked += 1
                continue
            assert expr is not None and spec.prometheus_name in expr, stat
            assert expr.endswith(f" * {item.scale:g}") == (item.scale != 1), (stat, expr)
            assert all(f'{k}="{v}"' in expr for k, v in item.where.items()), (stat, expr)
            assert item.key is None or f'{item.key}="key"' in expr, (stat, expr)
            assert ("histogram_quantile" in expr) == stat.endswith(("p50", "p95", "p99")), (stat, expr)
            checked += 1
    assert checked > 60
    assert promql_expression("game.avg_query_time_ms", by=()) == (
        "sum (rate(server_game_db_query_duration_seconds_sum[5m])) / "
        "sum (rate(server_game_db_query_duration_seconds_count[5m])) * 1000"
    )
    assert promql_expression("network.total_packets_incoming") == 'server_network_packets_total{direction="received"}'
    # Packet loss over the range (every packet of the last 5 minutes), not one interval's percentage.
    assert promql_expression("network.packet_loss_percent") == (
        "sum by (service_instance_id) (rate(server_network_packets_lost_total[5m])) / "
        'sum by (service_instance_id) (rate(server_network_packets_total{direction="sent"}[5m])) * 100'
    )


def test_the_alerts_package_does_not_load_the_tools() -> None:
    """Importing otel_telemetry.alerts loads no tools module; its rules-file names still resolve, to the tools'."""
    code = "import sys, otel_telemetry.alerts; print(sorted(m for m in sys.modules if 'otel_telemetry.tools' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    import otel_telemetry.alerts as package

    assert package.prometheus_rules_yaml is prometheus_rules_yaml and package.write_rules_file is write_rules_file


def test_every_mapping_and_kind_passes_promtool(tmp_path: Path) -> None:
    """Rules over every mapped field and every kind, with awkward annotations, are valid Prometheus rules."""
    rules: list[AlertRule] = []
    kinds: list[dict[str, Any]] = [
        {"kind": "above", "threshold": 1},
        {"kind": "below", "threshold": 0.5},
        {"kind": "between", "low": 1, "high": 2},
        {"kind": "outside", "low": 1, "high": 2},
        {"kind": "percent_change", "threshold": -20, "window": 300},
        {"kind": "rate_of_change", "threshold": 2.5, "window": 90},
    ]
    for i, metric in enumerate(p for p in _numeric_paths() if promql_expression(p) is not None):
        rules.append(
            AlertRule(
                name=f"Rule{i}",
                metric=metric,
                for_=i % 3 * 30,
                keep_firing_for=i % 2 * 60,
                labels={"team": 'game "core"'},
                annotations={"summary": 'v={value:.2f} t={threshold} "{name}": {{braces}} # é\n2nd line'},
                **kinds[i % len(kinds)],
            )
        )
    text = prometheus_rules_yaml(rules, interval="15s")
    path = write_rules_file(tmp_path / "all.yml", rules, interval="15s")
    assert path.read_text(encoding="utf-8") == text
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    parsed = yaml.safe_load(text)["groups"][0]
    assert len(parsed["rules"]) == len(rules) and parsed["interval"] == "15s"
    assert parsed["rules"][0]["labels"]["team"] == 'game "core"'


def test_rules_without_promql_are_skipped_with_a_comment() -> None:
    """A rule over a histogram window's max is kept out of the file, with a comment saying why."""
    rule = AlertRule(name="LongestSession", metric="network.connection_duration_s.max", threshold=3600)
    text = prometheus_rules_yaml([rule, cpu_rule()])
    assert "# skipped LongestSession: network.connection_duration_s.max has no PromQL equivalent" in text
    assert [r["alert"] for r in yaml.safe_load(text)["groups"][0]["rules"]] == ["HighCpu"]
    assert yaml.safe_load(prometheus_rules_yaml([rule]))["groups"][0]["rules"] == []


def test_prometheus_evaluates_the_rules_like_the_sdk(tmp_path: Path) -> None:
    """promtool runs the generated rules on series like ours: the same alerts fire, pending -> firing after ``for``."""
    (tmp_path / "rules.yml").write_text(prometheus_rules_yaml(default_rules()), encoding="utf-8")
    (tmp_path / "rules_for.yml").write_text(prometheus_rules_yaml(default_rules(for_=120)), encoding="utf-8")
    # As collector-config/prometheus.yml scrapes a server directly: job, instance, and service_instance_id.
    target = {"job": "game-servers", "instance": "10.0.0.11:9090", "service_instance_id": "server-001"}
    selector = ", ".join(f'{k}="{v}"' for k, v in target.items())
    # 90 % of pings under 50 ms, 10 % between 200 and 250 ms: histogram_quantile interpolates p95 = 225 ms.
    buckets = {"0.05": 90, "0.1": 90, "0.2": 90, "0.25": 100, "+Inf": 100}
    series = [
        {"series": f"server_tick_rate_fps{{{selector}}}", "values": "50x10"},
        # 1,000 packets sent and 30 lost per minute: 3 % loss over any range.
        {"series": f'server_network_packets_total{{{selector}, direction="sent"}}', "values": "0+1000x10"},
        {"series": f"server_network_packets_lost_total{{{selector}}}", "values": "0+30x10"},
        *(
            {"series": f'server_network_player_ping_seconds_bucket{{{selector}, le="{le}"}}', "values": f"0+{n}x10"}
            for le, n in buckets.items()
        ),
    ]
    one = {"service_instance_id": "server-001"}  # what `sum by ([le, ]service_instance_id)` keeps

    def expect(at: str, name: str, labels: dict[str, str], summary: str = "", description: str = "") -> dict[str, Any]:
        severity = "critical" if name.endswith("Critical") else "warning"
        alert = {"exp_labels": {**labels, "severity": severity}}
        alert["exp_annotations"] = {"summary": summary, "description": description}
        return {"eval_time": at, "alertname": name, "exp_alerts": [alert] if summary else []}

    tick, ping = "Tick rate is 50.0 FPS ({} below {} FPS)", "Player ping p95 is 225.0 ms ({} above {} ms)"
    checks = [
        expect("5m", "LowTickRateWarning", target, "Tick rate below 58 FPS", tick.format("warning", 58)),
        expect("5m", "LowTickRateCritical", target, "Tick rate below 55 FPS", tick.format("critical", 55)),
        expect("5m", "HighPlayerPingWarning", one, "Player ping p95 above 100 ms", ping.format("warning", 100)),
        expect("5m", "HighPlayerPingCritical", one, "Player ping p95 above 200 ms", ping.format("critical", 200)),
        expect("5m", "HighPacketLossWarning", one, "Packet loss above 1%", "Packet loss is 3.0% (warning above 1%)"),
        expect("5m", "HighPacketLossCritical", one),
        expect("5m", "HighCpuUsageWarning", target),
    ]
    pending = [  # for: 2m -> pending at 1m (no alert yet), firing at 2m
        expect("1m", "LowTickRateWarning", target),
        expect("2m", "LowTickRateWarning", target, "Tick rate below 58 FPS", tick.format("warning", 58)),
    ]
    for name, rules, cases in (("test.yml", "rules.yml", checks), ("test_for.yml", "rules_for.yml", pending)):
        unit_test = {
            "rule_files": [rules],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
        }
        (tmp_path / name).write_text(yaml.safe_dump(unit_test), encoding="utf-8")
    result = run_promtool("test", "rules", str(tmp_path / "test.yml"), str(tmp_path / "test_for.yml"))
    assert result.returncode == 0, result.stdout + result.stderr

    # The SDK reaches the same verdicts on the same numbers (its p95 is the 95th ping itself, not interpolated).
    clock = Clock()
    alerts, _ = manager(default_rules(for_=120), clock)
    assert states(alerts.evaluate(snap(tick=50, p95=250, loss=3)))[0] == ("LowTickRateWarning", "pending")
    clock.advance(60)
    assert alerts.firing() == [] and len(alerts.evaluate(snap(tick=50, p95=250, loss=3))) == 5
    clock.advance(60)
    assert [a.name for a in alerts.evaluate(snap(tick=50, p95=250, loss=3))] == [
        "LowTickRateWarning",
        "LowTickRateCritical",
        "HighPlayerPingWarning",
        "HighPlayerPingCritical",
        "HighPacketLossWarning",
    ]
    assert {a.state for a in alerts.active()} == {AlertState.FIRING}


def test_yaml_scalars_round_trip() -> None:
    """Awkward strings survive the hand-written emitter exactly (checked with PyYAML)."""
    samples = [
        "plain",
        "yes",
        "No",
        "null",
        "~",
        "80",
        "0s",
        "1m30s",
        "a: b",
        "a #b",
        "trailing ",
        " leading",
        "-dash",
        "{braces}",
        "[list]",
        'quote " and \\ backslash',
        "tab\tnew\nline",
        "é ü 中文 🎮",
        "\x00\x07\x7f\x85",
        "\u2028\u2029\ufeff",
        "",
        "x > 1 or y < 2",
        "ends with colon:",
    ]
    for text in samples:
        assert yaml.safe_load(f"key: {yaml_scalar(text, plain='text')}\n") == {"key": text}, text


def test_rules_command_prints_the_default_rules(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``otel-telemetry rules`` prints the file, ``-o`` writes it, bad thresholds return 2."""
    assert rules_command([]) == 0
    assert capsys.readouterr().out == prometheus_rules_yaml(config_rules())
    out = tmp_path / "rules.yml"
    assert rules_command(["-o", str(out), "--thresholds", "cpu=70,90", "--for", "60"]) == 0
    written = yaml.safe_load(out.read_text(encoding="utf-8"))["groups"][0]["rules"]
    assert written[0]["expr"] == "server_cpu_usage_percent > 70" and written[0]["for"] == "1m"
    assert rules_command(["--thresholds", "cpu=95,80"]) == 2
    assert "inverted" in capsys.readouterr().err
    assert rules_command(["--bogus"]) == 2


# -- the generated rules and the in-process alerts agree out of the box ---------------------------------------------
def test_generated_rules_carry_the_for_of_the_in_process_alerts(make_telemetry: Callable[..., Telemetry]) -> None:
    """The committed rules and `otel-telemetry rules` use alert_for's default (10 s), as a handle's own rules do."""
    default_for = TelemetryConfig(environ={}).alert_for
    assert default_for == 10.0
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"][0]["rules"]
    assert {rule["for"] for rule in rules} == {"10s"}
    telemetry = make_telemetry(enable_hardware_metrics=False)
    assert list(telemetry.alerts.rules) == config_rules()
    tuned = TelemetryConfig(alert_for=30, alert_thresholds="cpu=70,90", environ={})
    assert [r.for_ for r in config_rules(tuned)] == [30.0] * 10
    assert config_rules(tuned)[0].threshold == 70.0


def test_committed_promtool_tests_are_current() -> None:
    """collector-config/alert-rules.test.yml is promtool_tests_yaml(config_rules()), as generated."""
    assert RULES_TESTS.read_text(encoding="utf-8") == promtool_tests_yaml(config_rules()), (
        f"{RULES_TESTS} is stale; regenerate it with `otel-telemetry collector-config`"
    )


def _expected_firing(text: str) -> dict[str, list[str]]:
    """Alert name -> the eval times at which the promtool tests expect it firing."""
    [test] = yaml.safe_load(text)["tests"]
    firing: dict[str, list[str]] = {}
    for case in test["alert_rule_test"]:
        firing.setdefault(case["alertname"], [])
        if case["exp_alerts"]:
            firing[case["alertname"]].append(case["eval_time"])
    return firing


def test_prometheus_and_the_sdk_agree_on_a_recorded_tick_rate() -> None:
    """promtool runs alert-rules.yml on the recorded tick rate and finds exactly the alerts the SDK's manager
    decided: the one-scrape dip to 50 FPS (5 s, shorter than for) fires nothing, 40 s at 57 FPS fires the warning
    from 10 s in, until the rate recovers; the critical rule never fires."""
    result = run_promtool("test", "rules", str(RULES_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert TICK_RATE_SCENARIO[7] == 50.0 and TICK_RATE_SCENARIO[13:21] == (57.0,) * 8
    firing = _expected_firing(RULES_TESTS.read_text(encoding="utf-8"))
    assert firing["LowTickRateCritical"] == []
    # 57 FPS from 65 s (pending) to 100 s: firing from 75 s (held for 10 s) through 100 s.
    assert firing["LowTickRateWarning"] == ["1m15s", "1m20s", "1m25s", "1m30s", "1m35s", "1m40s"]


def test_rules_without_the_sdks_for_disagree_with_it(tmp_path: Path) -> None:
    """The old `for: 0s` rules fail the same promtool tests: Prometheus fires on the dip where the SDK stays pending."""
    (tmp_path / "alert-rules.yml").write_text(prometheus_rules_yaml(default_rules(for_=0)), encoding="utf-8")
    (tmp_path / RULES_TEST_FILE).write_text(promtool_tests_yaml(config_rules()), encoding="utf-8")
    result = run_promtool("test", "rules", str(tmp_path / RULES_TEST_FILE))
    assert result.returncode != 0
    assert "LowTickRateWarning, time: 35s" in result.stdout + result.stderr
