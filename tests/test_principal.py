"""PrincipalExporter against a real, scriptable HTTP principal on 127.0.0.1, and the HTTP delivery it shares with the
alert webhooks (``otel_telemetry.delivery``): deadlines, outcomes, redaction, backoff."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from otel_telemetry._version import __version__
from otel_telemetry.delivery import Endpoint, backoff_delay, classify, retry_after_seconds
from otel_telemetry.export.principal import PrincipalExporter
from otel_telemetry.snapshot.payload import encode_payload

TOKEN = "tok-S3CRET-5f2a9c"


@dataclass
class Reply:
    """How the principal answers one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # hold the request until the test ends


@dataclass
class Received:
    """One request as the principal saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out leave broken pipes behind; that is expected here."""


class Principal:
    """A scriptable API principal: replies in order from ``script``, then ``default``; can refuse and re-accept."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.default = Reply()
        self.clock: Callable[[], float] = time.monotonic
        self.release = threading.Event()
        self.tls: ssl.SSLContext | None = None
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.accept()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else self.default

    def _record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def delivered(self) -> list[Any]:
        """Bodies of the requests answered 2xx, in arrival order."""
        return [r.json for r in self.requests() if 200 <= r.status < 300]

    def accept(self) -> None:
        """(Re)bind the same port and serve."""
        principal = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                reply = principal._next()
                principal._record(
                    Received("POST", self.path, dict(self.headers.items()), body, reply.status, principal.clock())
                )
                if reply.hang:
                    principal.release.wait(30)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_port
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def refuse(self) -> None:
        """Close the listening socket: connections are refused until ``accept``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def close(self) -> None:
        self.release.set()
        self.refuse()


class FakeTime:
    """An injectable clock and sleep: sleeping advances the clock instantly and records the duration."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        time.sleep(0.001)


class Payloads:
    """A payload callable producing ``{"seq": n}``; ``limit`` makes it return None after that many."""

    def __init__(self, limit: int | None = None) -> None:
        self.produced: list[int] = []
        self.limit = limit

    def __call__(self) -> Mapping[str, object] | None:
        if self.limit is not None and len(self.produced) >= self.limit:
            return None
        seq = len(self.produced)
        self.produced.append(seq)
        return {"seq": seq, "server_id": "server-001"}


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def principal() -> Iterator[Principal]:
    """A principal on 127.0.0.1, a free port; stopped (and any hung request released) afterwards."""
    server = Principal()
    yield server
    server.close()


@pytest.fixture
def make_exporter() -> Iterator[Callable[..., PrincipalExporter]]:
    """Build exporters with fast test defaults; every one is shut down afterwards."""
    made: list[PrincipalExporter] = []

    def make(endpoint: str, payload: Callable[[], Mapping[str, object] | None], **overrides: Any) -> PrincipalExporter:
        settings: dict[str, Any] = {
            "token": TOKEN,
            "interval": 60.0,
            "timeout": 2.0,
            "initial_backoff": 0.01,
            "max_backoff": 0.05,
        }
        settings.update(overrides)
        exporter = PrincipalExporter(endpoint=endpoint, payload=payload, **settings)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown(timeout=1.0)


def test_posts_json_with_bearer_token_and_user_agent(principal: Principal, make_exporter: Any) -> None:
    """One payload is POSTed to /api/v1/telemetry with Bearer auth, JSON content type, our User-Agent and the body."""
    body = {"server_id": "server-001", "timestamp": "2025-01-15T10:30:00Z", "hardware": {"cpu_usage_percent": 45.2}}
    exporter = make_exporter(principal.url + "/", lambda: body)
    exporter.send_now()
    exporter.start()
    wait_for(lambda: exporter.stats.sent == 1, "one delivery")
    (request,) = principal.requests()
    assert request.method == "POST"
    assert request.path == "/api/v1/telemetry"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"otel-telemetry/{__version__}"
    assert request.json == body
    assert exporter.stats.pending == 0 and exporter.stats.failures == 0


def test_no_authorization_header_without_token(principal: Principal, make_exporter: Any) -> None:
    """With token=None the request carries no Authorization header."""
    exporter = make_exporter(principal.url, Payloads(), token=None)
    exporter.send_now()
    exporter.start()
    wait_for(lambda: exporter.stats.sent == 1, "one delivery")
    assert "Authorization" not in principal.requests()[0].headers


def test_endpoint_path_prefix_is_kept(principal: Principal, make_exporter: Any) -> None:
    """A base URL with a path prefix posts under that prefix."""
    exporter = make_exporter(principal.url + "/principal", Payloads())
    exporter.send_now()
    exporter.start()
    wait_for(lambda: len(principal.requests()) == 1, "one request")
    assert principal.requests()[0].path == "/principal/api/v1/telemetry"


def test_periodic_sends_every_interval(principal: Principal, make_exporter: Any) -> None:
    """Without send_now, the thread calls payload() every interval and delivers each result."""
    payloads = Payloads()
    exporter = make_exporter(principal.url, payloads, interval=0.03)
    exporter.start()
    wait_for(lambda: len(principal.delivered()) >= 3, "three periodic deliveries")
    assert [b["seq"] for b in principal.delivered()][:3] == [0, 1, 2]


def test_payloads_delivered_in_order(principal: Principal, make_exporter: Any) -> None:
    """Payloads queued back to back arrive strictly oldest first, each exactly once."""
    payloads = Payloads()
    exporter = make_exporter(principal.url, payloads)
    exporter.start()
    for _ in range(20):
        exporter.send_now()
    wait_for(lambda: exporter.stats.sent == 20, "twenty deliveries")
    assert [b["seq"] for b in principal.delivered()] == list(range(20))


def test_outage_loses_nothing_and_keeps_order(principal: Principal, make_exporter: Any) -> None:
    """While the principal refuses connections for several intervals, payloads wait; afterwards all arrive in order."""
    principal.refuse()
    payloads = Payloads()
    exporter = make_exporter(principal.url, payloads, interval=0.03)
    exporter.start()
    wait_for(lambda: len(payloads.produced) >= 8 and exporter.stats.failures >= 5, "an outage of several intervals")
    assert principal.requests() == []
    assert exporter.stats.pending >= 7
    principal.accept()
    wait_for(lambda: exporter.stats.pending == 0, "the backlog to drain")
    assert exporter.shutdown(timeout=2.0) is True
    stats = exporter.stats
    delivered = [b["seq"] for b in principal.delivered()]
    assert delivered == payloads.produced == list(range(len(payloads.produced)))
    assert stats.sent == len(delivered)
    assert stats.dropped == 0
    assert stats.retries >= 5
    assert stats.failures == stats.retries
    assert stats.attempts == stats.sent + stats.failures


def test_5xx_is_retried_until_accepted(principal: Principal, make_exporter: Any) -> None:
    """503 and 500 keep the payload; it is retried and delivered once the principal answers 200."""
    principal.script(Reply(503), Reply(500))
    exporter = make_exporter(principal.url, Payloads())
    exporter.send_now()
    exporter.start()
    wait_for(lambda: exporter.stats.sent == 1, "delivery after two 5xx")
    requests = principal.requests()
    assert [r.status for r in requests] == [503, 500, 200]
    assert len({r.body for r in requests}) == 1
    stats = exporter.stats
    assert (stats.attempts, stats.failures, stats.retries, stats.dropped, stats.pending) == (3, 2, 2, 0, 0)


KEY = re.compile(r'^"server-001:[0-9a-f]{16}:(\d+)"$')


def test_each_payload_carries_an_idempotency_key_kept_across_retries(principal: Principal, make_exporter: Any) -> None:
    """Idempotency-Key is a quoted "<server id>:<run>:<n>": one per payload, the same on every retry of it."""
    principal.script(Reply(503), Reply(503))
    exporter = make_exporter(principal.url, Payloads())
    exporter.start()
    for _ in range(3):
        exporter.send_now()
    wait_for(lambda: exporter.stats.sent == 3, "three deliveries after two 503s")
    requests = principal.requests()
    keys = [r.headers["Idempotency-Key"] for r in requests]
    assert [KEY.match(k).group(1) for k in keys] == ["1", "1", "1", "2", "3"]  # type: ignore[union-attr]
    by_body: dict[bytes, set[str]] = {}
    for request in requests:
        by_body.setdefault(request.body, set()).add(request.headers["Idempotency-Key"])
    assert len(by_body) == 3 and all(len(k) == 1 for k in by_body.values())
    assert len({k for ks in by_body.values() for k in ks}) == 3
    other = make_exporter(principal.url, Payloads())
    other.send_now()
    other.start()
    wait_for(lambda: other.stats.sent == 1, "a second exporter's delivery")
    # Another run (a restarted server numbers its frames from 1 again) never reuses a key.
    assert principal.requests()[-1].headers["Idempotency-Key"] not in keys


def test_a_frame_is_pushed_once(principal: Principal, make_exporter: Any) -> None:
    """payload() returning (sequence, body): a sequence already queued is skipped and counted as unchanged, not
    dropped; the key carries the frame's sequence; the bare-mapping form still works (see the other tests)."""
    frames = deque([(1, {"f": 1}), (1, {"f": 1}), (2, {"f": 2}), (2, {"f": 2}), (1, {"f": 1}), (5, {"f": 5})])
    exporter = make_exporter(principal.url, lambda: frames.popleft() if frames else None, server_id="server-001")
    exporter.start()
    for _ in range(7):
        exporter.send_now()
    wait_for(lambda: exporter.stats.sent == 3 and exporter.stats.unchanged == 3, "three frames, three repeats")
    assert principal.delivered() == [{"f": 1}, {"f": 2}, {"f": 5}]
    keys = [KEY.match(r.headers["Idempotency-Key"]).group(1) for r in principal.requests()]  # type: ignore[union-attr]
    assert keys == ["1", "2", "5"]
    stats = exporter.stats
    assert (stats.generated, stats.dropped, stats.pending, stats.failures) == (3, 0, 0, 0)


def test_bad_sequenced_payloads_are_failures(principal: Principal, make_exporter: Any) -> None:
    """A tuple that is not (int, mapping) is counted as a failure, never sent."""
    results: deque[Any] = deque([(True, {}), ("1", {}), (1, [1]), (1, {}, 2), (3, {"ok": 1})])
    exporter = make_exporter(principal.url, lambda: results.popleft() if results else None)
    exporter.start()
    for _ in range(5):
        exporter.send_now()
    wait_for(lambda: exporter.stats.sent == 1, "the one good payload")
    assert exporter.stats.failures == 4 and principal.delivered() == [{"ok": 1}]


def test_failing_is_true_from_a_failed_attempt_until_a_delivery(principal: Principal, make_exporter: Any) -> None:
    """stats.failing: False at first, True after a failed attempt (5xx, 4xx), False again once one is delivered."""
    principal.script(Reply(503), Reply(503))
    seen: list[bool] = []
    exporter = make_exporter(principal.url, Payloads(), initial_backoff=0.05, max_backoff=0.05)
    assert exporter.stats.failing is False
    exporter.start()
    exporter.send_now()
    wait_for(lambda: exporter.stats.failures >= 1, "a failure")
    seen.append(exporter.stats.failing)
    wait_for(lambda: exporter.stats.sent == 1, "a delivery")
    seen.append(exporter.stats.failing)
    principal.script(Reply(401))
    exporter.send_now()
    wait_for(lambda: exporter.stats.auth_failures == 1, "a 401")
    seen.append(exporter.stats.failing)
    assert seen == [True, False, True]
    assert exporter.stats.dropped_by_reason == {"buffer_full": 0, "unauthorized": 1, "rejected": 0, "shutdown": 0}


def test_backoff_doubles_with_full_jitter_and_cap(principal: Principal, make_exporter: Any) -> None:
    """Retry delays are uniform(0, cap) from the injected rng, cap = initial_backoff doubling up to max_backoff."""
    principal.script(*[Reply(503)] * 5)
    fake = FakeTime()
    exporter = make_exporter(
        principal.url,
        Payloads(limit=1),
        interval=1000.0,
        initial_backoff=1.0,
        max_backoff=4.0,
        clock=fake.clock,
        sleep=fake.sleep,
        rng=random.Random(7),
    )
    exporter.send_now()
    exporter.start()
    wait_for(lambda: exporter.stats.sent == 1, "delivery after five 503s")
    reference = random.Random(7)
    expected = [reference.uniform(0.0, cap) for cap in (1.0, 2.0, 4.0, 4.0, 4.0)]
    assert fake.sleeps[:5] == pytest.approx(expected)
    assert exporter.stats.retries == 5


def test_connection_timeout_is_retried(principal: Principal, make_exporter: Any) -> None:
    """A principal slower than the socket timeout counts a failure and the payload is retried, not lost."""
    principal.script(Reply(hang=True))
    exporter = make_exporter(principal.url, Payloads(), timeout=0.2)
    exporter.send_now()
    exporter.start()
    wait_for(lambda: exporter.stats.sent == 1, "delivery after a timeout")
    stats = exporter.stats
    assert stats.failures == 1 and stats.retries == 1 and stats.dropped == 0


def test_429_waitsretry_after_seconds(principal: Principal, make_exporter: Any) -> None:
    """429 with Retry-After: 7 delays the next attempt by exactly 7 s on the injected clock; counted as rate limited."""
    fake = FakeTime()
    principal.clock = fake.clock
    principal.script(Reply(429, {"Retry-After": "7"}))
    exporter = make_exporter(principal.url, Payloads(limit=1), interval=1000.0, clock=fake.clock, sleep=fake.sleep)
    exporter.send_now()
    exporter.start()
    wait_for(lambda: exporter.stats.sent == 1, "delivery after 429")
    first, second = principal.requests()
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at == pytest.approx(7.0)
    assert first.body == second.body
    assert exporter.stats.rate_limited == 1


def test_429_honours_retry_after_http_date(principal: Principal, make_exporter: Any) -> None:
    """Retry-After given as an HTTP date is converted to a delay from now."""
    fake = FakeTime()
    principal.clock = fake.clock
    principal.script(Reply(429, {"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)}))
    exporter = make_exporter(principal.url, Payloads(limit=1), interval=1000.0, clock=fake.clock, sleep=fake.sleep)
    exporter.send_now()
    exporter.start()
    wait_for(lambda: exporter.stats.sent == 1, "delivery after 429")
    first, second = principal.requests()
    assert 28.0 <= second.at - first.at <= 31.0


def test_429_retry_after_in_real_time(principal: Principal, make_exporter: Any) -> None:
    """With the default clock and wait, the next attempt comes no sooner than Retry-After (1 s) later."""
    principal.script(Reply(429, {"Retry-After": "1"}))
    exporter = make_exporter(principal.url, Payloads())
    exporter.send_now()
    exporter.start()
    wait_for(lambda: exporter.stats.sent == 1, "delivery after 429")
    first, second = principal.requests()
    assert 1.0 <= second.at - first.at < 2.0


def test_retry_after_parsing() -> None:
    """Retry-After accepts delta seconds or an HTTP date; invalid values fall back to backoff (None)."""
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(" 3 ") == 3.0
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412480.0 - 10) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("99999999") == 3600.0


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_drops_and_logs_once_without_token(
    principal: Principal, make_exporter: Any, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """401/403 drop each payload after one attempt, log one error naming the origin and status, never the token."""
    caplog.set_level(logging.DEBUG)
    principal.default = Reply(status)
    exporter = make_exporter(principal.url, Payloads())
    exporter.start()
    for _ in range(3):
        exporter.send_now()
    wait_for(lambda: exporter.stats.dropped == 3, "three rejected payloads")
    stats = exporter.stats
    assert len(principal.requests()) == 3
    assert (stats.auth_failures, stats.retries, stats.pending, stats.sent) == (3, 0, 0, 0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    # The principal is named by scheme://host:port only: a URL's path or query may carry a secret.
    assert principal.url in message and str(status) in message and "/api/v1/telemetry" not in message
    assert TOKEN not in caplog.text
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_each_auth_status_logged_once(
    principal: Principal, make_exporter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """401 then 403: one error line per status, later payloads still attempted."""
    caplog.set_level(logging.DEBUG)
    principal.script(Reply(401), Reply(401), Reply(403), Reply(403))
    exporter = make_exporter(principal.url, Payloads())
    exporter.start()
    for _ in range(5):
        exporter.send_now()
    wait_for(lambda: exporter.stats.sent == 1 and exporter.stats.dropped == 4, "four rejections then a delivery")
    assert [b["seq"] for b in principal.delivered()] == [4]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    assert "401" in errors[0] and "403" in errors[1]
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("status", [400, 404, 413])
def test_other_4xx_drops_payload_and_logs_once(
    principal: Principal, make_exporter: Any, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """Other 4xx responses drop the payload (counted, not retried), log once, and later payloads go through."""
    caplog.set_level(logging.DEBUG)
    principal.script(Reply(status), Reply(status))
    exporter = make_exporter(principal.url, Payloads())
    exporter.start()
    for _ in range(3):
        exporter.send_now()
    wait_for(lambda: exporter.stats.sent == 1, "the third payload delivered")
    stats = exporter.stats
    assert (stats.dropped, stats.retries, stats.auth_failures, stats.failures) == (2, 0, 0, 2)
    assert [b["seq"] for b in principal.delivered()] == [2]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(status) in errors[0] and principal.url in errors[0]
    assert "/api/v1/telemetry" not in errors[0]


def test_buffer_overflow_drops_oldest_and_counts(principal: Principal, make_exporter: Any) -> None:
    """A full buffer evicts its oldest payload, counts it in dropped, and keeps the newest."""

    class MaxJitter(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    principal.default = Reply(503)
    payloads = Payloads()
    exporter = make_exporter(
        principal.url, payloads, buffer_size=3, initial_backoff=60.0, max_backoff=60.0, rng=MaxJitter()
    )
    exporter.start()
    for _ in range(6):
        exporter.send_now()
    wait_for(lambda: exporter.stats.dropped == 3, "three evictions")
    assert exporter.stats.pending == 3
    principal.default = Reply(200)
    assert exporter.shutdown(timeout=10.0) is True  # returns once delivered
    assert [b["seq"] for b in principal.delivered()] == [3, 4, 5]
    assert exporter.stats.dropped == 3
    assert exporter.stats.sent == 3


def test_shutdown_returns_within_timeout_when_principal_hangs(principal: Principal, make_exporter: Any) -> None:
    """With a request stuck in a hung principal, shutdown returns False within its timeout; callers never block."""
    principal.default = Reply(hang=True)
    exporter = make_exporter(principal.url, Payloads(), timeout=5.0)
    exporter.start()
    exporter.send_now()
    wait_for(lambda: len(principal.requests()) == 1, "the request to be in flight")
    began = time.monotonic()
    exporter.send_now()
    exporter.start()
    _ = exporter.stats
    assert time.monotonic() - began < 0.05
    began = time.monotonic()
    assert exporter.shutdown(timeout=0.5) is False
    assert time.monotonic() - began < 0.8
    # The attempt in flight is abandoned at the deadline; both payloads are counted, none is left pending.
    stats = exporter.stats
    assert (stats.generated, stats.pending, stats.dropped_by_reason["shutdown"], stats.dropped) == (2, 0, 2, 2)
    assert not [t for t in threading.enumerate() if t.name.startswith("otel-telemetry-principal")]


def test_shutdown_final_attempt_is_bounded_by_timeout(principal: Principal, make_exporter: Any) -> None:
    """An exporter never started still delivers on shutdown; against a hung principal it gives up within the timeout."""
    principal.default = Reply(hang=True)
    exporter = make_exporter(principal.url, Payloads(), timeout=5.0)
    exporter.send_now()
    began = time.monotonic()
    assert exporter.shutdown(timeout=0.4) is False
    assert time.monotonic() - began < 0.7
    assert len(principal.requests()) == 1


def test_shutdown_delivers_pending_and_requested(principal: Principal, make_exporter: Any) -> None:
    """shutdown collects outstanding send_now requests and delivers them before returning True."""
    exporter = make_exporter(principal.url, Payloads())
    exporter.send_now()
    exporter.send_now()
    assert exporter.shutdown(timeout=2.0) is True
    assert [b["seq"] for b in principal.delivered()] == [0, 1]
    assert exporter.shutdown(timeout=0.1) is True
    exporter.send_now()
    exporter.start()
    assert exporter.stats.pending == 0


def test_start_is_idempotent(principal: Principal, make_exporter: Any) -> None:
    """Calling start twice runs one generator and one sender; shutdown stops both."""
    before = set(threading.enumerate())
    exporter = make_exporter(principal.url, Payloads())
    exporter.start()
    exporter.start()
    started = sorted(t.name for t in threading.enumerate() if t not in before)
    assert started == ["otel-telemetry-principal-generate", "otel-telemetry-principal-send"]
    assert exporter.shutdown(timeout=1.0) is True
    assert not [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_raising_payload_is_contained(
    principal: Principal, make_exporter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload callable that raises is logged once, counted as a failure, and the loop keeps sending."""
    caplog.set_level(logging.DEBUG)
    calls = {"n": 0}

    def payload() -> Mapping[str, object]:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("snapshot not ready")
        return {"n": calls["n"]}

    exporter = make_exporter(principal.url, payload, interval=0.02)
    exporter.start()
    wait_for(lambda: exporter.stats.sent >= 1, "a delivery after three failures")
    assert exporter.stats.failures == 3
    assert principal.delivered()[0] == {"n": 4}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "snapshot not ready" in errors[0].getMessage()


def test_unserialisable_and_nan_payloads(principal: Principal, make_exporter: Any) -> None:
    """NaN becomes null; a payload JSON cannot encode is counted as a failure instead of raising."""
    payloads: deque[Any] = deque([{"p99": float("nan"), "ok": 1.5}, {"bad": object()}, ["not", "a", "mapping"]])
    exporter = make_exporter(principal.url, lambda: payloads.popleft() if payloads else None)
    exporter.start()
    for _ in range(3):
        exporter.send_now()
    wait_for(lambda: exporter.stats.sent + exporter.stats.failures == 3, "three payloads handled")
    assert principal.delivered() == [{"p99": None, "ok": 1.5}]
    assert exporter.stats.failures == 2
    assert encode_payload({"a": [1, float("inf")]}) == b'{"a":[1,null]}'


def test_token_never_in_repr_or_errors(principal: Principal) -> None:
    """repr shows the endpoint but not the token; invalid tokens are rejected without echoing them."""
    exporter = PrincipalExporter(endpoint=principal.url, token=TOKEN, payload=dict)
    assert principal.url in repr(exporter) and TOKEN not in repr(exporter)
    with pytest.raises(ValueError) as raised:
        PrincipalExporter(endpoint=principal.url, token=TOKEN + "\r\nX: y", payload=dict)
    assert TOKEN not in str(raised.value) and "token" in str(raised.value)


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("endpoint", "ftp://example.com"),
        ("endpoint", "example.com"),
        ("endpoint", "http://example.com/?x=1"),
        ("interval", 0),
        ("interval", float("inf")),
        ("buffer_size", 0),
        ("buffer_size", 2.5),
        ("timeout", -1),
        ("initial_backoff", 0),
        ("max_backoff", 0.001),
    ],
)
def test_invalid_arguments_raise_naming_them(argument: str, value: object) -> None:
    """Construction rejects a bad argument with a ValueError naming it and its value."""
    settings: dict[str, Any] = {"endpoint": "http://127.0.0.1:9", "token": None, "payload": dict, argument: value}
    with pytest.raises(ValueError, match=argument) as raised:
        PrincipalExporter(**settings)
    if isinstance(value, str) and "?" in value:  # a URL's path and query are never shown (they may hold a secret)
        assert "'http://example.com' (rest not shown)" in str(raised.value) and "x=1" not in str(raised.value)
    else:
        assert repr(value) in str(raised.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:4318/?api_key=s3cr3t-TOKEN-xyz",
        "http://127.0.0.1:4318/#s3cr3t-TOKEN-xyz",
        "ftp://h/s3cr3t-TOKEN-xyz",
    ],
)
def test_url_errors_show_scheme_host_and_port_only(endpoint: str) -> None:
    """A refused endpoint is named by scheme://host:port in the error; its path, query and fragment are not shown."""
    with pytest.raises(ValueError, match="endpoint") as raised:
        PrincipalExporter(endpoint=endpoint, token=None, payload=dict)
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        ("http://principal.example", False),
        ("http://10.0.0.7:8080/base", False),
        ("http://[2001:db8::1]:8080", False),
        ("https://principal.example", True),
        ("http://localhost:8080", True),
        ("http://127.0.0.1:8080", True),
        ("http://127.9.8.7", True),
        ("http://[::1]:8080", True),
    ],
)
def test_a_token_over_plain_http_needs_a_loopback_host_or_consent(endpoint: str, allowed: bool) -> None:
    """A Bearer token over http:// to a host that is not loopback is refused at construction (the token unshown),
    unless allow_insecure_token=True; without a token, over https:// or to loopback it is accepted."""
    if allowed:
        PrincipalExporter(endpoint=endpoint, token=TOKEN, payload=dict)
    else:
        with pytest.raises(ValueError, match="allow_insecure_token") as raised:
            PrincipalExporter(endpoint=endpoint, token=TOKEN, payload=dict)
        message = str(raised.value)
        assert "PrincipalExporter.endpoint" in message and "plain http://" in message
        assert TOKEN not in message and "/base" not in message
        PrincipalExporter(endpoint=endpoint, token=TOKEN, payload=dict, allow_insecure_token=True)
    PrincipalExporter(endpoint=endpoint, token=None, payload=dict)


def test_endpoint_credentials_rejected_without_echo() -> None:
    """A URL with user:password is refused and the password is not echoed."""
    with pytest.raises(ValueError, match="credentials") as raised:
        PrincipalExporter(endpoint="https://user:hunter2@example.com", token=None, payload=dict)
    assert "hunter2" not in str(raised.value)


def test_self_telemetry_counters(principal: Principal, make_exporter: Any) -> None:
    """With a meter, the exporter counters appear in a real MeterProvider's InMemoryMetricReader, exporter=principal."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        principal.script(Reply(503), Reply(400))
        exporter = make_exporter(principal.url, Payloads(), meter=provider.get_meter("test"))
        exporter.start()
        exporter.send_now()
        exporter.send_now()
        wait_for(lambda: exporter.stats.sent == 1 and exporter.stats.dropped == 1, "a 503, a 400 and a delivery")
        data = reader.get_metrics_data()
        assert data is not None
        found: dict[str, tuple[str, float, dict[str, Any]]] = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    (point,) = metric.data.data_points
                    assert isinstance(point, NumberDataPoint)
                    found[metric.name] = (metric.unit or "", point.value, dict(point.attributes or {}))
        expected = {"attempts": 3, "failures": 2, "retries": 1, "dropped": 1, "pending": 0}
        for name, count in expected.items():
            unit, observed, attributes = found[f"telemetry.exporter.{name}"]
            assert (unit, observed, attributes) == ("{payload}", count, {"exporter": "principal"}), name
        assert TOKEN not in data.to_json()
    finally:
        provider.shutdown()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_https_verifies_certificates_by_default(
    principal: Principal, make_exporter: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An untrusted certificate fails by default (kept for retry); an ssl_context trusting it delivers."""
    cert, key = _self_signed(tmp_path)
    principal.refuse()
    principal.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    principal.tls.load_cert_chain(cert, key)
    principal.accept()
    endpoint = principal.url
    assert endpoint.startswith("https://")

    caplog.set_level(logging.WARNING)
    default = make_exporter(endpoint, Payloads())
    default.send_now()
    default.start()
    wait_for(lambda: default.stats.failures >= 1, "a verification failure")
    assert default.stats.sent == 0 and default.stats.pending == 1
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    default.shutdown(timeout=0.5)

    trusting = make_exporter(endpoint, Payloads(), ssl_context=ssl.create_default_context(cafile=str(cert)))
    trusting.send_now()
    trusting.start()
    wait_for(lambda: trusting.stats.sent == 1, "delivery over verified TLS")
    assert principal.delivered()[-1]["seq"] == 0


# -- the HTTP delivery the exporter shares with the alert webhooks (otel_telemetry.delivery) -------------------------
class RawServer:
    """A TCP server on 127.0.0.1 that reads each request, then writes ``answer`` one byte every ``gap`` seconds."""

    def __init__(self, answer: bytes, gap: float = 0.0) -> None:
        self.answer = answer
        self.gap = gap
        self.stop = threading.Event()
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(1.0)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                try:
                    if self.gap:
                        for byte in self.answer:
                            if self.stop.wait(self.gap):
                                return
                            connection.sendall(bytes([byte]))
                    else:
                        connection.sendall(self.answer)
                except OSError:
                    pass  # the client gave up: that is what the trickle tests expect

    def close(self) -> None:
        self.stop.set()
        self._thread.join(5)
        self._socket.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Start raw servers; every one is stopped afterwards."""
    made: list[RawServer] = []

    def make(answer: bytes, gap: float = 0.0) -> RawServer:
        server = RawServer(answer, gap)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def test_a_trickling_server_cannot_hold_an_attempt_past_its_deadline(raw_server: Callable[..., RawServer]) -> None:
    """An answer arriving a byte every 50 ms would take seconds; the attempt ends at its 0.4 s total deadline."""
    server = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", gap=0.05)
    endpoint = Endpoint("Test", "url", f"http://127.0.0.1:{server.port}/hook", token=TOKEN)
    began = time.monotonic()
    outcome = endpoint.post(b"{}", timeout=0.4)
    elapsed = time.monotonic() - began
    assert 0.35 <= elapsed < 0.7, elapsed
    assert outcome.retryable and outcome.status is None and outcome.reason.startswith("TimeoutError")


def test_a_trickling_server_bounds_the_exporter_too(raw_server: Callable[..., RawServer], make_exporter: Any) -> None:
    """Through the exporter: the trickled attempt is one failure, kept for retry, within the attempt's timeout."""
    server = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", gap=0.05)
    exporter = make_exporter(
        f"http://127.0.0.1:{server.port}", Payloads(limit=1), timeout=0.3, initial_backoff=60.0, max_backoff=60.0
    )
    exporter.send_now()
    began = time.monotonic()
    exporter.start()
    wait_for(lambda: exporter.stats.failures == 1, "one failed attempt")
    assert time.monotonic() - began < 0.8
    assert exporter.stats.pending == 1 and exporter.stats.retries == 1 and exporter.stats.dropped == 0


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "rejected"),
        (400, "rejected"),
        (401, "rejected"),
        (403, "rejected"),
        (404, "rejected"),
    ],
)
def test_outcomes_are_classified(principal: Principal, status: int, verdict: str) -> None:
    """2xx delivered; 408, 429 and 5xx worth a retry (with Retry-After); redirects and other 4xx rejected."""
    principal.script(Reply(status, {"Retry-After": "7", "Location": "http://elsewhere.example/"}))
    outcome = Endpoint("Test", "url", principal.url + "/hook", token=TOKEN).post(b"{}", timeout=2.0)
    assert (outcome.status, outcome.verdict) == (status, verdict)
    assert outcome.retry_after == (7.0 if verdict == "retry" else None)
    assert outcome.auth_failure == (status in (401, 403))
    assert len(principal.requests()) == 1  # a redirect is not followed
    assert classify(status) == verdict


def test_failures_show_the_origin_only_and_never_the_token(raw_server: Callable[..., RawServer]) -> None:
    """A server echoing the token gets it redacted; errors and repr show scheme://host:port, not path or query."""
    echo = f"HTTP/1.1 500 token {TOKEN}\r\nContent-Length: 19\r\n\r\nbad tok-S3CRET-5f2a9c".encode()
    server = raw_server(echo)
    endpoint = Endpoint("Test", "url", f"http://127.0.0.1:{server.port}/hook/secret-path?key=k3y", token=TOKEN)
    outcome = endpoint.post(b"{}", timeout=2.0)
    assert outcome.status == 500 and outcome.retryable
    assert TOKEN not in repr(outcome) and "***" in outcome.reason
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    refused = Endpoint("Test", "url", f"http://127.0.0.1:{closed}/hook/secret-path?key=k3y", token=TOKEN)
    failure = refused.post(b"{}", timeout=1.0)
    assert failure.retryable and failure.status is None and "Connection" in failure.describe()
    for text in (repr(refused), repr(failure), refused.origin):
        assert "secret-path" not in text and "k3y" not in text and TOKEN not in text
    assert refused.origin == f"http://127.0.0.1:{closed}"
    with pytest.raises(ValueError, match="value not shown") as raised:
        Endpoint("Test", "url", "http://127.0.0.1/", token=TOKEN + "\n")
    assert TOKEN not in str(raised.value)


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    """The n-th consecutive failure waits uniform(0, initial x 2^(n-1)), at most the cap."""

    class MaxJitter(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    assert [backoff_delay(n, 0.5, 3.0, MaxJitter()) for n in (1, 2, 3, 4, 100)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    draws = [backoff_delay(3, 1.0, rng=random.Random(n)) for n in range(50)]
    assert all(0.0 <= d <= 4.0 for d in draws) and len(set(draws)) == 50
