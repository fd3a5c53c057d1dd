"""Threads, shutdown and exit under faults: nothing of ours keeps running, nothing hangs the interpreter."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from otel_telemetry import TelemetryConfig, setup_telemetry

_OURS = ("otel-telemetry", "OtelBatch", "OtelPeriodic")


def _our_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith(_OURS))


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts connections and never answers (a wedged collector)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, name="test-blackhole", daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def _config(**overrides: object) -> TelemetryConfig:
    settings: dict[str, object] = {
        "server_id": "fault",
        "prometheus_host": "127.0.0.1",
        "prometheus_port": 0,
        "environ": {},
        "enable_hardware_metrics": False,
    }
    settings.update(overrides)
    return TelemetryConfig(**settings)  # type: ignore[arg-type]


def test_after_shutdown_no_thread_of_ours_is_left() -> None:
    """Every output on (Prometheus, alerts, health): shutdown returns True and every thread of ours is gone."""
    before = _our_threads()
    telemetry = setup_telemetry(_config(enable_prometheus_endpoint=True, collection_interval=0.05))
    time.sleep(0.3)
    assert len(_our_threads()) > len(before)
    assert telemetry.shutdown(timeout=5.0) is True
    assert set(_our_threads()) <= set(before)


def test_a_wedged_collector_cannot_hold_shutdown_and_collection_stops(blackhole: int) -> None:
    """OTLP to a collector that never answers: shutdown(2) returns within its deadline (False: an export is
    still stuck), and no frame is taken after it returned."""
    telemetry = setup_telemetry(_config(otlp_endpoint=f"http://127.0.0.1:{blackhole}", collection_interval=0.05))
    time.sleep(0.4)
    started = time.monotonic()
    result = telemetry.shutdown(timeout=2.0)
    took = time.monotonic() - started
    assert took < 2.5, took
    collector = telemetry._collector
    assert collector is not None
    runs = collector.runs
    time.sleep(0.5)
    assert collector.runs == runs, "frames were taken after shutdown returned"
    assert not any(t.name == "otel-telemetry-collect" for t in threading.enumerate() if t.is_alive())
    assert result in (True, False)


def test_a_setup_that_fails_late_leaves_no_thread_behind() -> None:
    """Twenty setups that fail when binding a busy port (after providers, alerts and the principal exist) leave
    no thread of ours running."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        before = _our_threads()
        for _ in range(20):
            with pytest.raises(OSError):
                setup_telemetry(
                    _config(
                        enable_prometheus_endpoint=True,
                        prometheus_port=port,
                        api_endpoint="http://127.0.0.1:9",
                        server_token="t0ken",
                    )
                )
        deadline = time.monotonic() + 5
        while not set(_our_threads()) <= set(before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(_our_threads()) <= set(before)  # (a thread an earlier test left may have ended meanwhile)


def test_shutdown_with_no_time_left_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """shutdown(timeout=0) is a legitimate call: at most a warning, never an ERROR traceback."""
    telemetry = setup_telemetry(_config(enable_prometheus_endpoint=True))
    with caplog.at_level(logging.WARNING):
        telemetry.shutdown(timeout=0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_the_interpreter_exits_quickly_without_shutdown_and_a_wedged_collector(blackhole: int) -> None:
    """A script that never calls shutdown(), with OTLP (metrics, spans, events) to a collector that never answers,
    ends within 2 s of its last line."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from otel_telemetry import TelemetryConfig, setup_telemetry
        telemetry = setup_telemetry(TelemetryConfig(
            server_id="exit", environ={{}}, otlp_endpoint="http://127.0.0.1:{blackhole}",
            collection_interval=0.05, enable_hardware_metrics=False))

        @telemetry.traced("rpc.exit")
        def handler():
            return 1

        for _ in range(20):
            handler()
            telemetry.record_event("exit.soon", {{"n": 1}})
            time.sleep(0.01)
        time.sleep(0.3)
        print("last line", time.monotonic(), flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    ended = time.monotonic()
    assert process.returncode == 0, err.decode()[-2000:]
    last = float(out.decode().split()[-1])
    assert ended - last < 2.0, f"exit took {ended - last:.2f} s"
