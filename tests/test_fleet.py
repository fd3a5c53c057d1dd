"""The fleet path end to end, on real binaries: game servers → Prometheus agent → remote write → central Prometheus.

Three game-server processes (distinct server ids, distinct packet rates, one throttled below 55 FPS) serve
``/metrics``; one ``prometheus --enable-feature=agent`` scrapes them with the generated agent configuration and
writes to a central ``prometheus --web.enable-remote-write-receiver`` that evaluates the generated alert rules. Every
assertion goes through the central store's HTTP API. Everything listens on 127.0.0.1, every wait is bounded, every
process is stopped by its pid. The configurations are the generated ones with shorter intervals (1 s scrape and
evaluation, 2 s ``for``) so the test takes seconds instead of minutes.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import ROOT

from otel_telemetry.config import TelemetryConfig
from otel_telemetry.tools.collector import (
    ALERT_RULES_FILE,
    FLEET_RULES_FILE,
    GAME_SERVERS_JOB,
    fleet_rules_config,
    prometheus_agent_config,
    prometheus_central_config,
    render_yaml,
)
from otel_telemetry.tools.rules import config_rules, prometheus_rules_yaml

#: The game server: the SDK at 60 Hz (or ``fps``), ``per_tick`` received packets a tick; it prints its /metrics port,
#: then ``<unix time> <packets received so far>`` four times a second.
SERVER_SCRIPT = r"""
import sys, time
from otel_telemetry import setup_telemetry

server_id, fps, per_tick = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
t = setup_telemetry(
    server_id=server_id, enable_prometheus_endpoint=True, prometheus_host="127.0.0.1", prometheus_port=0,
    collection_interval=0.5, enable_hardware_metrics=False, environ={},
)
print("port", t.prometheus_port, flush=True)
perf, received = t.performance, t.network.packet_received
period = 1.0 / fps
count = 0
next_tick = time.perf_counter()
next_print = 0.0
while True:
    with perf.tick():
        for _ in range(per_tick):
            received(200)
        count += per_tick
    now = time.time()
    if now >= next_print:
        print(f"{now:.6f} {count}", flush=True)
        next_print = now + 0.25
    next_tick += period
    delay = next_tick - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    elif delay < -5 * period:
        next_tick = time.perf_counter()
"""

#: server id → (loop rate in Hz, packets received per tick). fleet-c runs below LowTickRateCritical's 55 FPS.
SERVERS: dict[str, tuple[float, int]] = {"fleet-a": (60.0, 5), "fleet-b": (60.0, 12), "fleet-c": (45.0, 20)}
THROTTLED = "fleet-c"
KILLED = "fleet-b"
DEADLINE = 110.0  # seconds for the whole test (make test's budget is 2 minutes)
RATE_WINDOW = 20  # seconds: rate() over this window, compared with the servers' own counts


def _binary(name: str) -> str:
    found = ROOT / ".venv" / "bin" / name
    path = str(found) if found.exists() else shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is missing: run `make test` (scripts/install-promtool.sh installs promtool and prometheus)"
        )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Fleet:
    """The processes of one test, stopped by pid at the end."""

    tmp: Path
    start: float = field(default_factory=time.monotonic)
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    logs: dict[str, IO[str]] = field(default_factory=dict)
    counts: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    central: str = ""

    def remaining(self) -> float:
        left = DEADLINE - (time.monotonic() - self.start)
        if left <= 0:
            pytest.fail(f"the fleet test ran out of its {DEADLINE:g} s budget")
        return left

    def spawn(self, name: str, argv: list[str], **options: Any) -> subprocess.Popen[str]:
        log = open(self.tmp / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        process = subprocess.Popen(argv, stderr=log, text=True, **options)
        self.processes[name] = process
        return process

    def log_tail(self, name: str) -> str:
        self.logs[name].flush()
        return (self.tmp / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]

    def stop(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL if name.startswith("fleet-") else signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in reversed(self.processes):  # the agent before the store it flushes to, the servers last
            self.stop(name)
            if self.processes[name].stdout is not None:
                self.processes[name].stdout.close()  # type: ignore[union-attr]
        for log in self.logs.values():
            log.close()

    # -- the servers' own counts -------------------------------------------------------------------------------------
    def read_counts(self, name: str, until: float) -> None:
        """Read the lines server ``name`` printed, until one is stamped at or after ``until`` (bounded)."""
        stdout = self.processes[name].stdout
        assert stdout is not None
        while not self.counts[name] or self.counts[name][-1][0] < until:
            self.remaining()
            line = stdout.readline()
            if not line:
                pytest.fail(f"{name} exited: {self.log_tail(name)}")
            stamp, count = line.split()
            self.counts[name].append((float(stamp), int(count)))

    def count_at(self, name: str, when: float) -> float:
        """The server's packet count at ``when``, interpolated between the two lines around it."""
        points = self.counts[name]
        for (t0, c0), (t1, c1) in itertools.pairwise(points):
            if t0 <= when <= t1:
                return c0 + (c1 - c0) * (when - t0) / (t1 - t0)
        raise AssertionError(f"{name}: no count around {when} ({points[0][0]}..{points[-1][0]})")

    # -- the central store's HTTP API ----------------------------------------------------------------------------
    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"{self.central}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def by_server(self, expr: str, at: float | None = None) -> dict[str, float]:
        return {r["metric"].get("service_instance_id", ""): float(r["value"][1]) for r in self.query(expr, at)}

    def wait_for(self, what: str, check: Callable[[], bool], limit: float) -> float:
        """Poll ``check`` every 0.25 s until it holds (then return the seconds it took) or ``limit`` passes."""
        began = time.monotonic()
        while True:
            try:
                if check():
                    return time.monotonic() - began
            except (OSError, ValueError):  # not up yet
                pass
            if time.monotonic() - began > min(limit, self.remaining()):
                pytest.fail(f"timed out after {limit:g} s waiting for {what}\nagent:\n{self.log_tail('agent')}")
            time.sleep(0.25)


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
        return bool(response.status == 200)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()
        for data in ("central", "agent"):  # the stores' data; the small logs stay for a failure's report
            shutil.rmtree(tmp_path / data, ignore_errors=True)


def test_fleet_agent_remote_write_central_rules(fleet: Fleet, tmp_path: Path) -> None:
    """Three servers → agent → remote write → central store: ids, rates within 2%, the throttled server's alert,
    a killed server's up 0, its alert and its series going stale."""
    prometheus = _binary("prometheus")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ports: dict[str, int] = {}
    for name, (fps, per_tick) in SERVERS.items():
        process = fleet.spawn(
            name, [sys.executable, "-c", SERVER_SCRIPT, name, str(fps), str(per_tick)], stdout=subprocess.PIPE, env=env
        )
        fleet.counts[name] = []
    for name, process in fleet.processes.items():
        assert process.stdout is not None
        line = process.stdout.readline()  # the SDK starts in well under a second; a dead child gives ""
        assert line.startswith("port "), f"{name} did not start: {line!r}\n{fleet.log_tail(name)}"
        ports[name] = int(line.split()[1])

    # The central store: the generated central configuration, rules and fleet rules, 1 s evaluation, 2 s `for`.
    central_dir = tmp_path / "central"
    central_dir.mkdir()
    rules = config_rules(TelemetryConfig(alert_for=2.0, environ={}))
    (central_dir / ALERT_RULES_FILE).write_text(prometheus_rules_yaml(rules), encoding="utf-8")
    (central_dir / FLEET_RULES_FILE).write_text(render_yaml(fleet_rules_config(for_="2s")), encoding="utf-8")
    central_config = prometheus_central_config(evaluation_interval="1s", alertmanagers=[])
    (central_dir / "prometheus-central.yml").write_text(render_yaml(central_config), encoding="utf-8")
    central_port = _free_port()
    fleet.central = f"http://127.0.0.1:{central_port}"
    fleet.spawn(
        "central",
        [
            prometheus,
            "--web.enable-remote-write-receiver",
            f"--config.file={central_dir / 'prometheus-central.yml'}",
            f"--storage.tsdb.path={central_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{central_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
    )

    # The agent: the generated agent configuration, pointed at the three servers and the central store.
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    targets = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    agent_config: Any = prometheus_agent_config(
        targets,
        remote_write_url=f"{fleet.central}/api/v1/write",
        scrape_interval="1s",
        external_labels={"region": "test", "agent": "agent-1"},
    )
    agent_config["remote_write"][0]["queue_config"]["batch_send_deadline"] = "500ms"
    (agent_dir / "prometheus-agent.yml").write_text(render_yaml(agent_config), encoding="utf-8")
    agent_port = _free_port()
    fleet.spawn(
        "agent",
        [
            prometheus,
            "--enable-feature=agent",
            f"--config.file={agent_dir / 'prometheus-agent.yml'}",
            f"--storage.agent.path={agent_dir / 'wal'}",
            f"--web.listen-address=127.0.0.1:{agent_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
    )
    fleet.wait_for("the central store to be ready", lambda: _ready(fleet.central), 30)

    # Every server's series arrive with its id (and the agent's external labels); up is forwarded too.
    def all_up() -> bool:
        return fleet.by_server(f'up{{job="{GAME_SERVERS_JOB}"}} == 1') == dict.fromkeys(SERVERS, 1.0)

    fleet.wait_for("up == 1 for every server in the central store", all_up, 40)
    arrived = fleet.query('count by (service_instance_id, region, agent) ({job="game-servers"})')
    per_server = {r["metric"]["service_instance_id"]: r["metric"] for r in arrived}
    assert set(per_server) == set(SERVERS), arrived
    assert all(m["region"] == "test" and m["agent"] == "agent-1" for m in per_server.values()), arrived
    assert fleet.query('{job="game-servers", service_instance_id=""}') == [], "a series without its server id"
    info = fleet.by_server("target_info")
    assert set(info) == set(SERVERS), info  # target_info's own id, kept by honor_labels, is the target's
    assert not fleet.query('{__name__=~".+", exported_service_instance_id!=""}')

    # The throttled server fires LowTickRateCritical centrally, and only it.
    def throttled_fires() -> bool:
        return bool(fleet.by_server('ALERTS{alertname="LowTickRateCritical", alertstate="firing"}'))

    fleet.wait_for("LowTickRateCritical to fire", throttled_fires, 30)
    tick_rates = fleet.by_server("server_tick_rate_fps")
    assert set(fleet.by_server('ALERTS{alertname="LowTickRateCritical"}')) == {THROTTLED}, tick_rates
    assert tick_rates[THROTTLED] < 55, tick_rates
    assert all(v > 55 for k, v in tick_rates.items() if k != THROTTLED), tick_rates

    # rate() in the central store matches what each server recorded, within 2%.
    def rate_window_stored() -> bool:  # samples since well before the window (the start-up ticks left out)
        series = fleet.query(f'server_network_packets_total{{direction="received"}}[{RATE_WINDOW + 30}s]')
        firsts = {r["metric"]["service_instance_id"]: float(r["values"][0][0]) for r in series}
        return set(firsts) == set(SERVERS) and max(firsts.values()) < time.time() - RATE_WINDOW - 5

    fleet.wait_for(f"{RATE_WINDOW} s of samples", rate_window_stored, RATE_WINDOW + 20)
    at = time.time() - 2.0  # leave remote write time to deliver the samples up to `at`
    for name in SERVERS:
        fleet.read_counts(name, at)
    expr = f'sum by (service_instance_id) (rate(server_network_packets_total{{direction="received"}}[{RATE_WINDOW}s]))'
    stored = fleet.by_server(expr, at)
    expected = {
        name: (fleet.count_at(name, at) - fleet.count_at(name, at - RATE_WINDOW)) / RATE_WINDOW for name in SERVERS
    }
    for name in SERVERS:
        assert stored[name] == pytest.approx(expected[name], rel=0.02), (name, stored, expected)
    assert stored["fleet-a"] < stored["fleet-b"], stored  # distinct loads

    # Kill one server: up == 0 in the central store (the agent forwards up), GameServerDown fires, and its series
    # get stale markers: no sample is returned for it any more instead of its last value frozen.
    fleet.stop(KILLED)
    killed_at = time.time()
    fleet.wait_for(
        "up == 0 for the killed server",
        lambda: fleet.by_server(f'up{{job="{GAME_SERVERS_JOB}"}} == 0') == {KILLED: 0.0},
        15,
    )
    fleet.wait_for(
        "GameServerDown to fire",
        lambda: set(fleet.by_server('ALERTS{alertname="GameServerDown", alertstate="firing"}')) == {KILLED},
        20,
    )
    live = fleet.by_server('sum by (service_instance_id) (server_network_packets_total{direction="received"})')
    assert set(live) == set(SERVERS) - {KILLED}, live  # stale: an instant query no longer finds it
    recent = fleet.by_server("count by (service_instance_id) (count_over_time(server_tick_rate_fps[2s]))")
    assert set(recent) == set(SERVERS) - {KILLED}, recent  # no new samples since the kill
    frozen = fleet.by_server(
        f"max by (service_instance_id) (last_over_time(timestamp(server_tick_rate_fps)[{RATE_WINDOW}s:1s]))"
    )
    assert frozen[KILLED] <= killed_at + 1.5, (frozen, killed_at)  # its last sample predates the kill
    for name in SERVERS:
        assert fleet.processes[name].poll() is None or name == KILLED, fleet.log_tail(name)
