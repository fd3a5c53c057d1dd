"""SnapshotFileWriter: JSON lines and length-delimited OTLP files, size rotation, thread safety, no raising."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[import-untyped]
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from otel_telemetry.snapshot.files import SnapshotFileWriter, delimited, encode_varint, read_delimited, read_jsonl

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


def _request(value: float, points: int = 1) -> ExportMetricsServiceRequest:
    """An OTLP metrics request holding one gauge ``server.cpu.usage`` with ``points`` data points."""
    metric = Metric(
        name="server.cpu.usage",
        unit="%",
        description="Total CPU usage percentage",
        gauge=Gauge(
            data_points=[
                NumberDataPoint(
                    time_unix_nano=1_736_937_000_000_000_000 + i,
                    as_double=value + i,
                    attributes=[KeyValue(key="core", value=AnyValue(string_value=str(i)))],
                )
                for i in range(points)
            ]
        ),
    )
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="server-001"))])
    return ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=[metric])])]
    )


def _all_jsonl(path: Path, backups: int) -> list[dict[str, Any]]:
    """Records of ``path`` and its rotated files, oldest first."""
    records: list[dict[str, Any]] = []
    for index in range(backups, 0, -1):
        rotated = Path(f"{path}.{index}")
        if rotated.exists():
            records.extend(read_jsonl(rotated))
    records.extend(read_jsonl(path))
    return records


def test_jsonl_round_trip(tmp_path: Path) -> None:
    """Mappings written as JSON lines read back equal; NaN becomes null; pre-encoded JSON bytes are accepted."""
    path = tmp_path / "snapshots.jsonl"
    records: list[dict[str, Any]] = [
        {"server_id": "server-001", "timestamp": "2025-01-15T10:30:00Z", "hardware": {"cpu_usage_percent": 45.2}},
        {"game": {"entities_per_map": {"map-001": 5000}}, "note": "line\nbreak ünïcode"},
        {"network": {"player_ping_percentiles": {"p50": 42.0, "p99": float("nan")}}},
    ]
    with SnapshotFileWriter(path) as writer:
        for record in records:
            writer.write(record)
        writer.write(b'{"raw": true}\n')
    assert writer.written == 4 and writer.errors == 0
    back = list(read_jsonl(path))
    assert back[:2] == records[:2]
    assert back[2] == {"network": {"player_ping_percentiles": {"p50": 42.0, "p99": None}}}
    assert back[3] == {"raw": True}
    assert path.read_bytes().count(b"\n") == 4


def test_otlp_delimited_round_trip(tmp_path: Path) -> None:
    """Serialised ExportMetricsServiceRequests written length-delimited read back and parse to the same messages."""
    path = tmp_path / "snapshots.otlp"
    requests = [_request(10.0 * n, points=n + 1) for n in range(5)] + [_request(1.0, points=40)]
    payloads = [r.SerializeToString() for r in requests]
    assert any(len(p) >= 128 for p in payloads), "exercise a multi-byte length prefix"
    with SnapshotFileWriter(path, format="otlp") as writer:
        for payload in payloads:
            writer.write(payload)
    assert writer.errors == 0
    back = [ExportMetricsServiceRequest.FromString(m) for m in read_delimited(path)]
    assert back == requests
    metric = back[0].resource_metrics[0].scope_metrics[0].metrics[0]
    assert metric.name == "server.cpu.usage" and metric.gauge.data_points[0].as_double == 0.0
    assert path.read_bytes() == b"".join(_VarintBytes(len(p)) + p for p in payloads)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16_383, 16_384, 2**31, 2**63 - 1])
def test_varint_matches_protobuf(value: int) -> None:
    """Our varint length prefix is byte-for-byte protobuf's."""
    assert encode_varint(value) == _VarintBytes(value)


def test_rotation_keeps_backups_and_newest_data(tmp_path: Path) -> None:
    """Size rotation renames path → path.1 → … → path.N, deletes older files, and keeps the newest records."""
    path = tmp_path / "snapshots.jsonl"
    writer = SnapshotFileWriter(path, max_bytes=200, backups=3)
    for seq in range(100):
        writer.write({"seq": seq, "padding": "x" * 20})
    writer.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["snapshots.jsonl", "snapshots.jsonl.1", "snapshots.jsonl.2", "snapshots.jsonl.3"]
    assert all(p.stat().st_size <= 200 for p in tmp_path.iterdir())
    seqs = [r["seq"] for r in _all_jsonl(path, 3)]
    assert seqs[-1] == 99
    assert seqs == list(range(seqs[0], 100))
    assert len(seqs) > 10
    assert writer.rotations > 3 and writer.errors == 0


def test_rotation_of_otlp_files(tmp_path: Path) -> None:
    """Delimited files rotate on whole messages: every file parses completely."""
    path = tmp_path / "metrics.otlp"
    payloads = [_request(float(n)).SerializeToString() for n in range(30)]
    with SnapshotFileWriter(path, format="otlp", max_bytes=3 * len(delimited(payloads[0])), backups=2) as writer:
        for payload in payloads:
            writer.write(payload)
    files = [Path(f"{path}.2"), Path(f"{path}.1"), path]
    messages = [m for f in files for m in read_delimited(f)]
    assert messages == payloads[-len(messages) :]
    assert len(messages) >= 7
    assert not Path(f"{path}.3").exists()


def test_zero_backups_starts_afresh(tmp_path: Path) -> None:
    """With backups=0 a full file is replaced: only the current file exists, holding the newest records."""
    path = tmp_path / "s.jsonl"
    with SnapshotFileWriter(path, max_bytes=50, backups=0) as writer:
        for seq in range(20):
            writer.write({"seq": seq})
    assert [p.name for p in tmp_path.iterdir()] == ["s.jsonl"]
    assert [r["seq"] for r in read_jsonl(path)][-1] == 19


def test_oversized_record_is_written_alone(tmp_path: Path) -> None:
    """A record larger than max_bytes goes whole into a fresh file instead of being split or lost."""
    path = tmp_path / "s.jsonl"
    with SnapshotFileWriter(path, max_bytes=64, backups=2) as writer:
        writer.write({"seq": 0})
        writer.write({"seq": 1, "big": "y" * 500})
        writer.write({"seq": 2})
    assert list(read_jsonl(Path(f"{path}.2"))) == [{"seq": 0}]
    assert list(read_jsonl(Path(f"{path}.1"))) == [{"seq": 1, "big": "y" * 500}]
    assert list(read_jsonl(path)) == [{"seq": 2}]


def test_appends_to_existing_file_and_counts_its_size(tmp_path: Path) -> None:
    """A new writer appends after existing content and rotates by the file's real size."""
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"old":1}\n' * 9)  # 90 bytes
    with SnapshotFileWriter(path, max_bytes=100, backups=1) as writer:
        writer.write({"new": 1})  # 10 bytes: fits exactly
        writer.write({"new": 2})  # would exceed: rotates first
    assert len(list(read_jsonl(Path(f"{path}.1")))) == 10
    assert list(read_jsonl(path)) == [{"new": 2}]


@pytest.mark.parametrize("max_bytes", [10 * 1024 * 1024, 4096])
def test_concurrent_writers_produce_whole_lines(tmp_path: Path, max_bytes: int) -> None:
    """Threads writing at once (with and without rotation) produce only whole lines and lose no record."""
    path = tmp_path / "s.jsonl"
    threads_n, per_thread = 8, 400
    writer = SnapshotFileWriter(path, max_bytes=max_bytes, backups=10_000)
    barrier = threading.Barrier(threads_n)

    def work(thread: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            writer.write({"thread": thread, "i": i, "pad": "z" * (i % 97)})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    writer.close()
    files = sorted(tmp_path.iterdir())
    lines = [line for f in files for line in f.read_bytes().split(b"\n") if line]
    assert all(f.read_bytes().endswith(b"\n") for f in files)
    records = [json.loads(line) for line in lines]
    assert sorted((r["thread"], r["i"]) for r in records) == [
        (t, i) for t in range(threads_n) for i in range(per_thread)
    ]
    for thread in range(threads_n):
        mine = [r["i"] for r in _all_jsonl(path, 10_000) if r["thread"] == thread]
        assert mine == list(range(per_thread)), "each thread's records stay in its order"
    assert writer.written == threads_n * per_thread and writer.errors == 0


def test_io_errors_never_raise_are_counted_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Writes into a missing directory do not raise: each is counted in errors, logged once; writing recovers."""
    caplog.set_level(logging.WARNING)
    path = tmp_path / "missing" / "s.jsonl"
    writer = SnapshotFileWriter(path)
    for seq in range(3):
        writer.write({"seq": seq})
    assert writer.errors == 3 and writer.written == 0
    assert len([r for r in caplog.records if r.name == "otel_telemetry.snapshot.files"]) == 1
    path.parent.mkdir()
    writer.write({"seq": 3})
    writer.close()
    assert list(read_jsonl(path)) == [{"seq": 3}]


class _FailingFile(io.FileIO):
    """Writes a few bytes of the first call, then fails like a full disk."""

    calls = 0

    def write(self, data: ReadableBuffer, /) -> int:
        self.calls += 1
        if self.calls == 1:
            return super().write(bytes(memoryview(data)[:5]))
        raise OSError(errno.ENOSPC, "No space left on device")


def test_partial_write_is_cut_off(tmp_path: Path) -> None:
    """A write failing half-way leaves no partial line: the file holds whole records, and the next write works."""
    path = tmp_path / "s.jsonl"
    writer = SnapshotFileWriter(path)
    writer.write({"seq": 0})
    assert writer._stream is not None
    writer._stream.close()
    writer._stream = _FailingFile(path, "a")
    writer.write({"seq": 1, "pad": "p" * 50})
    assert writer.errors == 1
    assert path.read_bytes() == b'{"seq":0}\n'
    writer.write({"seq": 2})
    writer.close()
    assert list(read_jsonl(path)) == [{"seq": 0}, {"seq": 2}]


def test_bad_records_and_closed_writer_never_raise(tmp_path: Path) -> None:
    """Unencodable records, wrong record kinds and writes after close are counted, not raised."""
    jsonl = SnapshotFileWriter(tmp_path / "a.jsonl")
    jsonl.write({"bad": object()})
    jsonl.write(b"not json")
    jsonl.write(b'{"a": 1}\n{"b": 2}')
    jsonl.write({"ok": 1})
    jsonl.close()
    jsonl.close()
    jsonl.write({"late": 1})
    assert (jsonl.errors, jsonl.written) == (4, 1)
    otlp = SnapshotFileWriter(tmp_path / "b.otlp", format="otlp")
    otlp.write({"not": "bytes"})
    otlp.close()
    assert otlp.errors == 1
    assert list(read_jsonl(tmp_path / "a.jsonl")) == [{"ok": 1}]


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("path", ""),
        ("path", 42),
        ("format", "xml"),
        ("max_bytes", 0),
        ("max_bytes", True),
        ("max_bytes", 1.5),
        ("backups", -1),
        ("backups", "3"),
    ],
)
def test_invalid_arguments_raise_naming_them(tmp_path: Path, argument: str, value: object) -> None:
    """Construction rejects a bad argument with a ValueError naming the argument and its value."""
    settings: dict[str, Any] = {"path": tmp_path / "s.jsonl", argument: value}
    path = settings.pop("path")
    with pytest.raises(ValueError, match=argument) as raised:
        SnapshotFileWriter(path, **settings)
    assert repr(value) in str(raised.value)


def test_writer_does_not_touch_disk_until_first_write(tmp_path: Path) -> None:
    """Construction creates no file; the first write does."""
    path = tmp_path / "s.jsonl"
    writer = SnapshotFileWriter(os.fspath(path))
    assert not path.exists()
    writer.write({"a": 1})
    writer.close()
    assert path.exists()


def test_readers_skip_a_truncated_tail_and_reject_corruption(tmp_path: Path) -> None:
    """A record cut short at the end is skipped; a malformed line in the middle raises naming file and line."""
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b'{"a":1}\n\n{"b":2}\n{"c":')
    assert list(read_jsonl(jsonl)) == [{"a": 1}, {"b": 2}]
    jsonl.write_bytes(b'{"a":1}\nnope\n{"b":2}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl:2"):
        list(read_jsonl(jsonl))
    jsonl.write_bytes(b"[1, 2]\n")
    with pytest.raises(ValueError, match="expected a JSON object"):
        list(read_jsonl(jsonl))
    delimited_path = tmp_path / "b.otlp"
    delimited_path.write_bytes(delimited(b"first") + delimited(b"second")[:4])
    assert list(read_delimited(delimited_path)) == [b"first"]
    delimited_path.write_bytes(delimited(b"x") + b"\x80")
    assert list(read_delimited(delimited_path)) == [b"x"]
