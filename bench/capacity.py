"""Capacity: what one game server costs a fleet, and what a Prometheus agent costs per scraped server.

1. One server at the spec's load (the demo's GameSimulation: 1,250 players, 60 Hz, 15k/12k packets/s) with the
   default settings, run for ``--seconds`` (10): series on ``/metrics``, samples/s at a 1 s scrape and at the shipped
   ``prometheus.yml``'s 5 s, bytes per scrape (plain and gzip), bytes per OTLP export
   (``telemetry.current_metrics_otlp()``), bytes of the principal payload (``get_current_metrics().to_json()``).
2. A Prometheus agent (``prometheus --enable-feature=agent``, the generated configuration, 1 s scrape) writing to a
   central Prometheus, scraping 1, 5 and 20 server processes (a lighter load each: 100 players at 20 Hz, which
   exposes the same default series set) for ``--agent-seconds`` (20): the agent's CPU (``/proc/<pid>/stat``) and RSS
   (``/proc/<pid>/status``) per scraped server, and the remote-write bytes per sample it sent (its own
   ``prometheus_remote_storage_*`` counters).

Prints a table and one JSON line. Loopback only; every process is stopped by its pid.
Run: ``python bench/capacity.py`` (needs ``.venv/bin/prometheus``: ``make test`` installs it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_telemetry import setup_telemetry  # noqa: E402
from otel_telemetry.tools.collector import (  # noqa: E402
    prometheus_agent_config,
    prometheus_central_config,
    render_yaml,
)
from otel_telemetry.tools.demo import DemoOptions, GameSimulation, run_loop  # noqa: E402

#: A server process for the agent measurement: the demo's simulation at a lighter load; prints its port.
SERVER_SCRIPT = r"""
import sys, threading
from otel_telemetry import setup_telemetry
from otel_telemetry.tools.demo import DemoOptions, GameSimulation, run_loop
t = setup_telemetry(server_id=sys.argv[1], enable_prometheus_endpoint=True, prometheus_host="127.0.0.1",
                    prometheus_port=0, environ={})
options = DemoOptions(players=100, tick_rate=20.0, packets_in=1500, packets_out=1200, quiet=True, seed=1)
sim = GameSimulation(t, options)
print("port", t.prometheus_port, flush=True)
run_loop(sim, options.tick_rate, threading.Event(), None)
"""
_TICKS = os.sysconf("SC_CLK_TCK")


def _get(url: str, gzip_ok: bool = False) -> bytes:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read()
        return body


def one_server(seconds: float, player_series: bool = False) -> dict[str, Any]:
    """Run one server at the spec's load with the default settings (per-player series on if ``player_series``);
    measure what it exports."""
    telemetry = setup_telemetry(
        server_id="capacity-server",
        enable_prometheus_endpoint=True,
        prometheus_host="127.0.0.1",
        prometheus_port=0,
        export_player_series=player_series,
    )
    try:
        options = DemoOptions(players=1250, quiet=True, seed=1)
        sim = GameSimulation(telemetry, options)
        run_loop(sim, options.tick_rate, threading.Event(), seconds)
        telemetry.collect()
        assert telemetry.prometheus_url is not None
        plain = _get(telemetry.prometheus_url)
        packed = _get(telemetry.prometheus_url, gzip_ok=True)
        if packed[:2] != b"\x1f\x8b":  # the server did not compress: measure what gzip would have sent
            packed = gzip.compress(plain)
        lines = [line for line in plain.decode().splitlines() if line and not line.startswith("#")]
        per_player = sum(1 for line in lines if "player_id=" in line)
        otlp = telemetry.current_metrics_otlp()
        principal = telemetry.get_current_metrics().to_json()
        return {
            "players": len(sim.players),
            "series": len(lines),
            "per_player_series": per_player,
            "samples_per_s_1s_scrape": len(lines) / 1.0,
            "samples_per_s_5s_scrape": len(lines) / 5.0,
            "scrape_bytes": len(plain),
            "scrape_bytes_gzip": len(packed),
            "otlp_export_bytes": len(otlp),
            "principal_payload_bytes": len(principal.encode()),
        }
    finally:
        telemetry.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match[1]) / 1024 if match else 0.0


def _counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _wait_ready(url: str, limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            _get(f"{url}/-/ready")
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready in {limit:g} s")


def agent_cost(prometheus: str, servers: int, seconds: float) -> dict[str, Any]:
    """Start ``servers`` server processes, one agent scraping them every second and a central store; measure the
    agent over ``seconds`` once every target has been scraped."""
    processes: list[subprocess.Popen[Any]] = []
    work = Path(tempfile.mkdtemp(prefix="capacity-"))
    try:
        targets: dict[str, str] = {}
        for i in range(servers):
            server_id = f"capacity-{i:03d}"
            child = subprocess.Popen(
                [sys.executable, "-c", SERVER_SCRIPT, server_id],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            processes.append(child)
        for i, child in enumerate(processes):
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line.startswith("port "):
                raise RuntimeError(f"server {i} did not start: {line!r}")
            targets[f"capacity-{i:03d}"] = f"127.0.0.1:{int(line.split()[1])}"
        central_port, agent_port = _free_port(), _free_port()
        (work / "central.yml").write_text(render_yaml(prometheus_central_config(rule_files=[], alertmanagers=[])))
        agent = prometheus_agent_config(
            targets, remote_write_url=f"http://127.0.0.1:{central_port}/api/v1/write", scrape_interval="1s"
        )
        (work / "agent.yml").write_text(render_yaml(agent))
        central = subprocess.Popen(
            [
                prometheus,
                "--web.enable-remote-write-receiver",
                f"--config.file={work / 'central.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{central_port}",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(central)
        agent_process = subprocess.Popen(
            [
                prometheus,
                "--enable-feature=agent",
                f"--config.file={work / 'agent.yml'}",
                f"--storage.agent.path={work / 'wal'}",
                f"--web.listen-address=127.0.0.1:{agent_port}",
                "--log.level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(agent_process)
        agent_url = f"http://127.0.0.1:{agent_port}"
        _wait_ready(f"http://127.0.0.1:{central_port}")
        _wait_ready(agent_url)
        time.sleep(3.0)  # every target scraped at least once: series created, WAL warm
        own = _get(f"{agent_url}/metrics").decode()
        cpu0, t0 = _cpu_seconds(agent_process.pid), time.monotonic()
        bytes0 = _counter(own, "prometheus_remote_storage_bytes_total")
        samples0 = _counter(own, "prometheus_remote_storage_samples_total")
        time.sleep(seconds)
        cpu1, t1 = _cpu_seconds(agent_process.pid), time.monotonic()
        own = _get(f"{agent_url}/metrics").decode()
        sent_bytes = _counter(own, "prometheus_remote_storage_bytes_total") - bytes0
        sent_samples = _counter(own, "prometheus_remote_storage_samples_total") - samples0
        rss = _rss_mib(agent_process.pid)
        cpu_percent = 100.0 * (cpu1 - cpu0) / (t1 - t0)
        return {
            "servers": servers,
            "agent_cpu_percent": round(cpu_percent, 2),
            "agent_cpu_percent_per_server": round(cpu_percent / servers, 3),
            "agent_rss_mib": round(rss, 1),
            "agent_rss_mib_per_server": round(rss / servers, 2),
            "samples_per_s": round(sent_samples / (t1 - t0), 1),
            "remote_write_bytes_per_s": round(sent_bytes / (t1 - t0), 1),
            "remote_write_bytes_per_sample": round(sent_bytes / sent_samples, 3) if sent_samples else None,
        }
    finally:
        for process in reversed(processes):
            _stop(process)
            if process.stdout is not None:
                process.stdout.close()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="one server at the spec's load (10)")
    parser.add_argument("--agent-seconds", type=float, default=20.0, help="agent measurement per fleet size (20)")
    parser.add_argument("--fleets", default="1,5,20", help="numbers of scraped servers (1,5,20; '' for none)")
    parser.add_argument("--player-series", action="store_true", help="turn per-player series on (off by default)")
    args = parser.parse_args(argv)
    server = one_server(args.seconds, args.player_series)
    print("One server at the spec's load, " + ("per-player series on" if args.player_series else "default settings"))
    for key, value in server.items():
        print(f"  {key:28} {value:>12,.0f}" if isinstance(value, (int, float)) else f"  {key:28} {value}")
    prometheus = str(ROOT / ".venv" / "bin" / "prometheus")
    if not Path(prometheus).exists():
        prometheus = shutil.which("prometheus") or ""
    agents: list[dict[str, Any]] = []
    if prometheus:
        for count in (int(n) for n in args.fleets.split(",") if n.strip()):
            agents.append(agent_cost(prometheus, count, args.agent_seconds))
    if agents:
        print("\nPrometheus agent (1 s scrape, remote write to a central Prometheus)")
        heading = ("servers", "CPU %", "CPU %/srv", "RSS MiB", "RSS/srv", "samples/s", "B/sample")
        widths = (7, 7, 9, 8, 8, 10, 8)
        print("  " + " ".join(f"{name:>{width}}" for name, width in zip(heading, widths, strict=True)))
        for row in agents:
            print(
                f"  {row['servers']:>7} {row['agent_cpu_percent']:>7.2f} {row['agent_cpu_percent_per_server']:>9.3f} "
                f"{row['agent_rss_mib']:>8.1f} {row['agent_rss_mib_per_server']:>8.2f} {row['samples_per_s']:>10.0f} "
                f"{row['remote_write_bytes_per_sample'] or 0:>8.3f}"
            )
    elif not prometheus:
        print("\nprometheus not found: run `make test` to install it; agent figures skipped")
    print(json.dumps({"server": server, "agent": agents}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
