"""The API principal push against misbehaving receivers: real sockets on 127.0.0.1, nothing mocked.

Each receiver runs in threads of its own and is stopped by its own handle: one that trickles its answer a byte
every 0.2 s, one that answers late, one that answers 503, one that accepts and never answers. Every test asserts
numbers: ``generated == sent + dropped + pending`` (in every snapshot), the wall time of an attempt against its
deadline, the wall time and return value of ``shutdown``, that the exporter's threads are gone after it, and that
idempotency keys are unique per payload and equal across the retries of one payload.
"""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from otel_telemetry.delivery import Endpoint
from otel_telemetry.export.principal import PrincipalExporter, PrincipalStats

TOKEN = "tok-FAULTS-7c1d"
#: Short enough that the file runs in seconds; every figure below is derived from these.
INTERVAL = 0.1
DEADLINE = 0.5
MAX_BACKOFF = 0.1
#: Scheduling slack on a busy 2-core machine, for upper bounds on wall time.
SLACK = 0.3
KEY = re.compile(r'^"server-001:[0-9a-f]{16}:(\d+)"$')
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass(frozen=True)
class Request:
    """One request as the receiver read it."""

    key: str
    body: bytes
    accepted: float  # time.monotonic() when the connection was accepted


class Receiver:
    """An HTTP/1.1 receiver on 127.0.0.1, a free port, one thread per connection.

    After reading a request it waits ``delay`` seconds, then writes ``answer`` (one byte every ``gap`` seconds when
    ``gap`` is set); with ``hang`` it never answers. Every wait ends when :meth:`close` is called.
    """

    def __init__(self, answer: bytes = OK, *, delay: float = 0.0, gap: float = 0.0, hang: bool = False) -> None:
        self.answer = answer
        self.delay = delay
        self.gap = gap
        self.hang = hang
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._connections: list[threading.Thread] = []
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._socket.settimeout(0.05)
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, name="fault-receiver", daemon=True)
        self._thread.start()

    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted = time.monotonic()
            thread = threading.Thread(target=self._serve, args=(connection, accepted), daemon=True)
            with self._lock:
                self._connections.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket, accepted: float) -> None:
        with connection:
            connection.settimeout(1.0)
            try:
                request = self._read(connection, accepted)
            except OSError:
                return
            if request is None:
                return
            with self._lock:
                self._requests.append(request)
            if self.hang:
                self._stop.wait(30.0)
                return
            if self.delay and self._stop.wait(self.delay):
                return
            try:
                if not self.gap:
                    connection.sendall(self.answer)
                    return
                for byte in self.answer:
                    if self._stop.wait(self.gap):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:
                pass  # the client gave up on the attempt: what these tests expect

    @staticmethod
    def _read(connection: socket.socket, accepted: float) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            body += chunk
        return Request(headers.get("idempotency-key", ""), body, accepted)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._socket.close()
        with self._lock:
            connections = list(self._connections)
        for thread in connections:
            thread.join(5.0)
        assert not self._thread.is_alive() and not any(t.is_alive() for t in connections)


class Frames:
    """A payload callable: a new body ``{"server_id": "server-001", "n": k}`` on every call, k = 1, 2, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> Mapping[str, object]:
        self.n += 1
        return {"server_id": "server-001", "n": self.n}


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Start receivers; each is stopped by its own handle afterwards."""
    made: list[Receiver] = []

    def make(*args: Any, **kwargs: Any) -> Receiver:
        receiver = Receiver(*args, **kwargs)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def exporters() -> Iterator[Callable[..., PrincipalExporter]]:
    """Build exporters with the fast fault-test settings; each is shut down afterwards (a no-op if already done)."""
    made: list[PrincipalExporter] = []

    def make(url: str, **overrides: Any) -> PrincipalExporter:
        settings: dict[str, Any] = {
            "token": TOKEN,
            "payload": Frames(),
            "interval": INTERVAL,
            "timeout": DEADLINE,
            "initial_backoff": 0.05,
            "max_backoff": MAX_BACKOFF,
            "buffer_size": 1000,
        }
        settings.update(overrides)
        exporter = PrincipalExporter(endpoint=url, **settings)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown(timeout=1.0)


def accounted(stats: PrincipalStats) -> PrincipalStats:
    """Assert that every payload generated is delivered, counted as dropped, or pending; return ``stats``."""
    assert stats.generated == stats.sent + stats.dropped + stats.pending, stats
    assert stats.dropped == sum(stats.dropped_by_reason.values()), stats
    return stats


def watch(exporter: PrincipalExporter, seconds: float) -> PrincipalStats:
    """Sample the stats every 20 ms for ``seconds``, checking the accounting in each snapshot; the last one."""
    end = time.monotonic() + seconds
    stats = accounted(exporter.stats)
    while time.monotonic() < end:
        time.sleep(0.02)
        stats = accounted(exporter.stats)
    return stats


def principal_threads(before: set[threading.Thread]) -> list[str]:
    """Names of the exporter threads started since ``before`` that are still alive."""
    return [t.name for t in threading.enumerate() if t not in before and t.name.startswith("otel-telemetry-principal")]


def timed_shutdown(exporter: PrincipalExporter, timeout: float) -> tuple[bool, float]:
    began = time.monotonic()
    finished = exporter.shutdown(timeout=timeout)
    return finished, time.monotonic() - began


def sequence(key: str) -> int:
    match = KEY.match(key)
    assert match is not None, key
    return int(match.group(1))


def test_a_trickled_answer_cannot_hold_an_attempt_past_its_deadline(receivers: Callable[..., Receiver]) -> None:
    """An answer trickled a byte every 0.2 s would take 13 s; the attempt is over at its 0.5 s total deadline."""
    receiver = receivers(gap=0.2)
    endpoint = Endpoint("Test", "url", receiver.url + "/api/v1/telemetry", token=TOKEN)
    began = time.monotonic()
    outcome = endpoint.post(b"{}", timeout=DEADLINE)
    elapsed = time.monotonic() - began
    assert DEADLINE <= elapsed <= DEADLINE + 0.15, elapsed
    assert outcome.retryable and outcome.status is None and outcome.reason.startswith("TimeoutError")


def test_a_trickling_receiver_is_retried_at_each_deadline_while_payloads_keep_coming(
    receivers: Callable[..., Receiver], exporters: Callable[..., PrincipalExporter]
) -> None:
    """Against a receiver trickling a byte every 0.2 s, every attempt is abandoned at its deadline, counted as a
    failure and retried with the same key; one payload per interval is still generated; `failing` is set;
    shutdown counts what it could not deliver and leaves no thread behind."""
    receiver = receivers(gap=0.2)
    before = set(threading.enumerate())
    exporter = exporters(receiver.url)
    started = time.monotonic()
    exporter.start()
    stats = watch(exporter, 2.6)
    ran = time.monotonic() - started

    assert stats.sent == 0 and stats.attempts >= 3 and stats.failing
    assert stats.attempts - 1 <= stats.failures == stats.retries <= stats.attempts  # one may be in flight
    assert stats.generated >= 0.6 * ran / INTERVAL, (stats.generated, ran)  # not one per attempt: one per interval
    # The receiver's accept times bound each attempt: no sooner than its deadline, no later than deadline + backoff.
    accepted = [r.accepted for r in receiver.requests()]
    gaps = [b - a for a, b in itertools.pairwise(accepted)]
    assert len(gaps) >= 2 and min(gaps) >= DEADLINE - 0.02 and max(gaps) <= DEADLINE + MAX_BACKOFF + SLACK, gaps
    # Only the oldest payload was attempted, always with the same key.
    assert {sequence(r.key) for r in receiver.requests()} == {1}

    finished, took = timed_shutdown(exporter, 1.0)
    stats = accounted(exporter.stats)
    assert finished is False and took <= 1.0 + 0.5, took
    assert stats.pending == 0 and stats.sent == 0
    assert stats.dropped_by_reason["shutdown"] == stats.generated
    assert principal_threads(before) == []


def test_a_slow_receiver_does_not_slow_generation(
    receivers: Callable[..., Receiver], exporters: Callable[..., PrincipalExporter]
) -> None:
    """A receiver answering after 0.6 s (within the 1 s deadline) takes one payload per 0.6 s, while one payload
    per 0.1 s interval is still generated and buffered; once it is fast again, shutdown flushes the backlog in
    order, each payload exactly once with its own key, and returns True."""
    receiver = receivers(delay=0.6)
    before = set(threading.enumerate())
    exporter = exporters(receiver.url, timeout=1.0)
    started = time.monotonic()
    exporter.start()
    stats = watch(exporter, 2.5)
    ran = time.monotonic() - started
    assert 2 <= stats.sent <= 4 and stats.failures == 0
    assert stats.generated >= 0.6 * ran / INTERVAL and stats.pending >= stats.generated - 5, stats
    assert stats.missed_intervals <= 2

    receiver.delay = 0.0
    finished, took = timed_shutdown(exporter, 3.0)
    stats = accounted(exporter.stats)
    assert finished is True and took <= 3.0, took
    assert (stats.pending, stats.dropped, stats.sent) == (0, 0, stats.generated)
    keys = [sequence(r.key) for r in receiver.requests()]
    assert keys == list(range(1, stats.generated + 1))  # in order, no duplicate, no gap
    assert principal_threads(before) == []


def test_retries_after_a_late_answer_carry_the_same_key_so_the_receiver_can_deduplicate(
    receivers: Callable[..., Receiver], exporters: Callable[..., PrincipalExporter]
) -> None:
    """A receiver answering after 0.8 s gets each request in full but answers after the client's 0.4 s deadline:
    the payload is retried (the receiver sees duplicates), with the same key; keys are unique per payload, so
    de-duplicating by key yields every payload exactly once, in order."""
    receiver = receivers(delay=0.8)
    exporter = exporters(receiver.url, timeout=0.4)
    exporter.start()
    stats = watch(exporter, 1.8)
    assert stats.sent == 0 and stats.attempts >= 2 and stats.attempts - 1 <= stats.retries <= stats.attempts
    receiver.delay = 0.0
    finished, took = timed_shutdown(exporter, 3.0)
    stats = accounted(exporter.stats)
    assert finished is True and took <= 3.0

    requests = receiver.requests()
    assert len(requests) > len({r.key for r in requests})  # the receiver did get duplicates
    key_of: dict[bytes, set[str]] = {}
    for request in requests:
        key_of.setdefault(request.body, set()).add(request.key)
    assert all(len(keys) == 1 for keys in key_of.values())  # equal across retries of one payload
    assert len({next(iter(keys)) for keys in key_of.values()}) == len(key_of)  # unique per payload
    first_seen = list(dict.fromkeys(sequence(r.key) for r in requests))
    assert first_seen == list(range(1, stats.generated + 1)) and stats.sent == stats.generated


def test_a_503_receiver_overflows_the_buffer_with_every_payload_counted(
    receivers: Callable[..., Receiver], exporters: Callable[..., PrincipalExporter]
) -> None:
    """HTTP 503 for 2 s with a 10-payload buffer: the oldest are dropped and counted (buffer_full), retries back
    off, `failing` stays set; shutdown(0.5) returns False within its timeout, counting the ones left as shutdown."""
    unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    receiver = receivers(unavailable)
    before = set(threading.enumerate())
    exporter = exporters(receiver.url, buffer_size=10)
    exporter.start()
    stats = watch(exporter, 2.0)
    assert stats.sent == 0 and stats.failing and stats.attempts >= 5
    assert stats.attempts - 1 <= stats.failures <= stats.attempts
    # 10 wait; an 11th may be the one in flight, evicted meanwhile: it is dropped when its attempt fails.
    assert 10 <= stats.pending <= 11 and stats.dropped_by_reason["buffer_full"] == stats.generated - stats.pending >= 5
    assert stats.retries + stats.dropped_by_reason["buffer_full"] >= stats.failures

    finished, took = timed_shutdown(exporter, 0.5)
    stats = accounted(exporter.stats)
    assert finished is False and took <= 0.5 + 0.5, took
    assert stats.pending == 0 and 10 <= stats.dropped_by_reason["shutdown"] <= 11
    assert stats.dropped == stats.generated
    assert principal_threads(before) == []
    # Keys: one per payload; retries of a payload reuse it.
    key_of: dict[bytes, set[str]] = {}
    for request in receiver.requests():
        key_of.setdefault(request.body, set()).add(request.key)
    assert all(len(keys) == 1 for keys in key_of.values())
    assert len({k for keys in key_of.values() for k in keys}) == len(key_of)


def test_a_hanging_receiver_is_abandoned_at_each_deadline_and_at_shutdown(
    receivers: Callable[..., Receiver], exporters: Callable[..., PrincipalExporter]
) -> None:
    """A receiver that accepts and never answers: each attempt ends at its 0.5 s deadline, a failure retried;
    shutdown(0.3) abandons the attempt in flight, returns False within 0.3 s + slack, and no thread is left."""
    receiver = receivers(hang=True)
    before = set(threading.enumerate())
    exporter = exporters(receiver.url)
    exporter.start()
    stats = watch(exporter, 1.4)
    assert stats.attempts >= 2 and stats.attempts - 1 <= stats.failures <= stats.attempts
    assert stats.sent == 0 and stats.failing and stats.generated >= 8
    accepted = [r.accepted for r in receiver.requests()]
    gaps = [b - a for a, b in itertools.pairwise(accepted)]
    assert gaps and min(gaps) >= DEADLINE - 0.02 and max(gaps) <= DEADLINE + MAX_BACKOFF + SLACK, gaps

    finished, took = timed_shutdown(exporter, 0.3)
    stats = accounted(exporter.stats)
    assert finished is False and took <= 0.3 + 0.1, took
    assert stats.pending == 0 and stats.dropped_by_reason["shutdown"] == stats.generated
    assert principal_threads(before) == []


def test_an_attempt_in_flight_is_cancelled_from_another_thread(receivers: Callable[..., Receiver]) -> None:
    """post(cancel=event) against a receiver that never answers: setting the event ends the 5 s attempt in 50 ms."""
    receiver = receivers(hang=True)
    endpoint = Endpoint("Test", "url", receiver.url + "/hook")
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    began = time.monotonic()
    timer.start()
    outcome = endpoint.post(b"{}", timeout=5.0, cancel=cancel)
    elapsed = time.monotonic() - began
    timer.join(1.0)
    assert 0.2 <= elapsed <= 0.2 + 0.15, elapsed
    assert outcome.retryable and "abandoned" in outcome.reason


def test_an_unanswered_connect_is_bounded_by_the_deadline() -> None:
    """A listening socket whose backlog is full leaves connect() unanswered; the attempt still ends at 0.3 s."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):  # fill the accept queue: later SYNs are dropped, connect() waits
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            time.sleep(0.05)
            endpoint = Endpoint("Test", "url", f"http://127.0.0.1:{port}/hook")
            began = time.monotonic()
            outcome = endpoint.post(b"{}", timeout=0.3)
            elapsed = time.monotonic() - began
        finally:
            for filler in fillers:
                filler.close()
    assert outcome.retryable and outcome.status is None and outcome.reason.startswith("TimeoutError"), outcome
    assert 0.3 <= elapsed <= 0.3 + 0.15, elapsed


def test_shutdown_flushes_a_healthy_receiver_and_leaves_nothing(
    receivers: Callable[..., Receiver], exporters: Callable[..., PrincipalExporter]
) -> None:
    """The baseline: against a prompt receiver, shutdown delivers what is pending and returns True, fast."""
    receiver = receivers()
    before = set(threading.enumerate())
    exporter = exporters(receiver.url)
    exporter.start()
    stats = watch(exporter, 0.6)
    assert stats.sent >= 3 and stats.failures == 0 and not stats.failing
    finished, took = timed_shutdown(exporter, 1.0)
    stats = accounted(exporter.stats)
    assert finished is True and took <= 0.5
    assert (stats.pending, stats.dropped, stats.sent) == (0, 0, stats.generated)
    assert [sequence(r.key) for r in receiver.requests()] == list(range(1, stats.generated + 1))
    assert principal_threads(before) == []
