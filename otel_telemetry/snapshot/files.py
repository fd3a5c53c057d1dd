"""Snapshot files: append records to a size-rotated file, as JSON lines or length-delimited OTLP protobuf.

:class:`SnapshotFileWriter` writes each record whole (one lock per writer) and rotates like
``logging.handlers.RotatingFileHandler``: ``path`` → ``path.1`` → … → ``path.N``, the oldest deleted. Writing never
raises into the caller: I/O errors and records that cannot be encoded are logged once and counted in ``errors``.

:func:`read_jsonl` and :func:`read_delimited` read one such file back (tests, offline tools).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Literal

from otel_telemetry.snapshot.payload import encode_payload

_logger = logging.getLogger(__name__)

Format = Literal["jsonl", "otlp"]
_FORMATS: tuple[Format, ...] = ("jsonl", "otlp")


def _bad(field: str, value: object, why: str) -> ValueError:
    return ValueError(f"SnapshotFileWriter.{field}: {why}, got {value!r}")


def _json_line(record: Mapping[str, object]) -> bytes:
    # The same encoding as the API principal's body. JSON escapes control characters inside strings, so the only
    # newline is the terminator.
    return encode_payload(record) + b"\n"


def encode_varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf base-128 varint."""
    if value < 0:
        raise ValueError(f"varint: expected a non-negative integer, got {value!r}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def delimited(message: bytes) -> bytes:
    """``message`` prefixed with its length as a varint (protobuf's ``writeDelimitedTo`` framing)."""
    return encode_varint(len(message)) + message


class SnapshotFileWriter:
    """Appends snapshot records to ``path``, rotating by size.

    Args:
        path: the file to write; its directory must exist. Rotated files are ``path.1`` (newest) … ``path.<backups>``.
        format: ``"jsonl"`` — one compact JSON object per line (UTF-8; NaN/infinity become ``null``; ``bytes`` are
            taken as one already-encoded JSON object); ``"otlp"`` — each ``bytes`` record (e.g. a serialised
            ``ExportMetricsServiceRequest``) prefixed with its varint length, as protobuf's ``writeDelimitedTo``.
        max_bytes: rotate before a record would take the file past this size, in bytes. A single record larger than
            this is written alone to a fresh file.
        backups: rotated files kept. 0 keeps none: the file is started afresh when full.

    The file is opened on the first write (append mode, unbuffered): every record reaches the OS whole, and a write
    that fails half-way is cut off, so readers only ever see whole records.
    Thread-safety: one lock per writer; concurrent ``write`` calls never interleave records.
    Attributes ``written``, ``rotations`` and ``errors`` count records written, rotations done and records lost
    to I/O or encoding errors.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: Format = "jsonl",
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
    ) -> None:
        try:
            text = os.fspath(path)
        except TypeError:
            raise _bad("path", path, "expected a str or os.PathLike path") from None
        if not isinstance(text, str) or not text:
            raise _bad("path", path, "expected a non-empty file path")
        if format not in _FORMATS:
            raise _bad("format", format, f"expected one of {', '.join(_FORMATS)}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise _bad("max_bytes", max_bytes, "expected an integer number of bytes of at least 1")
        if isinstance(backups, bool) or not isinstance(backups, int) or backups < 0:
            raise _bad("backups", backups, "expected an integer of at least 0")
        self.path = text
        self.format: Format = format
        self.max_bytes = max_bytes
        self.backups = backups
        self.written = 0
        self.rotations = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._stream: io.FileIO | None = None
        self._size = 0
        self._closed = False
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        settings = f"format={self.format!r}, max_bytes={self.max_bytes}, backups={self.backups}"
        return f"SnapshotFileWriter({self.path!r}, {settings})"

    def write(self, record: Mapping[str, object] | bytes) -> None:
        """Append one record (rotating first when needed). Never raises: failures are logged once and counted."""
        try:
            data = self._encode(record)
        except Exception as error:
            self._fail("encode", f"cannot encode a {type(record).__name__} record as {self.format}: {error}")
            return
        with self._lock:
            if self._closed:
                self.errors += 1
                key, message = "closed", f"a write to closed {self!r} was dropped"
            else:
                try:
                    self._write_locked(data)
                    self.written += 1
                    return
                except OSError as error:
                    self.errors += 1
                    self._discard_stream()
                    key, message = "io", f"writing {self.path} failed, the record is lost: {error}"
        self._warn_once(key, message)

    def close(self) -> None:
        """Flush and close the file; later writes are dropped and counted in ``errors``. Idempotent."""
        with self._lock:
            self._closed = True
            failure = self._discard_stream()
        if failure:
            self._fail("close", failure)

    def __enter__(self) -> SnapshotFileWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _encode(self, record: Mapping[str, object] | bytes) -> bytes:
        if self.format == "otlp":
            if not isinstance(record, (bytes, bytearray, memoryview)):
                raise TypeError("the otlp format takes serialised protobuf bytes")
            return delimited(bytes(record))
        if isinstance(record, (bytes, bytearray, memoryview)):
            line = bytes(record).rstrip(b"\r\n")
            if b"\n" in line or not isinstance(json.loads(line), dict):
                raise ValueError("bytes for jsonl must be one JSON object on one line")
            return line + b"\n"
        if not isinstance(record, Mapping):
            raise TypeError("the jsonl format takes a mapping or JSON bytes")
        return _json_line(record)

    def _write_locked(self, data: bytes) -> None:
        if self._stream is None:
            self._open()
        if self._size > 0 and self._size + len(data) > self.max_bytes:
            failure = self._discard_stream()
            if failure:
                raise OSError(failure)
            self._rotate()
        stream = self._stream
        assert stream is not None
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += stream.write(view[written:]) or 0
        except OSError:
            if written:
                # Cut the partial record off so the file holds whole records only.
                with contextlib.suppress(OSError):
                    stream.truncate(self._size)
            raise
        self._size += written

    def _open(self) -> None:
        # Unbuffered: each record reaches the OS in full, and a failed write can be cut off (see _write_locked).
        stream = io.FileIO(self.path, "a")
        self._stream = stream
        self._size = stream.seek(0, os.SEEK_END)

    def _rotate(self) -> None:
        if self.backups > 0:
            for index in range(self.backups - 1, 0, -1):
                source = f"{self.path}.{index}"
                if os.path.exists(source):
                    os.replace(source, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
        elif os.path.exists(self.path):
            os.remove(self.path)
        self.rotations += 1
        self._open()

    def _discard_stream(self) -> str | None:
        """Close the stream (lock held); the failure message when flushing/closing failed."""
        stream, self._stream, self._size = self._stream, None, 0
        if stream is None:
            return None
        try:
            stream.close()
        except OSError as error:
            return f"closing {self.path} failed: {error}"
        return None

    def _fail(self, key: str, message: str) -> None:
        with self._lock:
            self.errors += 1
        self._warn_once(key, message)

    def _warn_once(self, key: str, message: str) -> None:
        """Log ``message`` the first time ``key`` occurs (call without the lock held)."""
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        _logger.warning("SnapshotFileWriter: %s (logged once; counted in errors)", message)


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, object]]:
    """The JSON objects of a JSON-lines file, in order. Blank lines are skipped.

    A last line without its newline (a write cut short) is skipped with a warning; any other malformed line raises
    ``ValueError`` naming the file and line number.
    """
    with open(path, "rb") as stream:
        lines = stream.read().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = number == len(lines)
        try:
            record = json.loads(line)
        except ValueError as error:
            if last:
                _logger.warning("%s: ignoring a truncated last line %d", os.fspath(path), number)
                return
            raise ValueError(f"{os.fspath(path)}:{number}: not a JSON object: {error}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{os.fspath(path)}:{number}: expected a JSON object, got {type(record).__name__}")
        yield record


def read_delimited(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The messages of a varint-length-delimited file, in order (protobuf's ``parseDelimitedFrom`` framing).

    A last message cut short (a write interrupted) is skipped with a warning.
    """
    with open(path, "rb") as stream:
        data = stream.read()
    position = 0
    while position < len(data):
        length = 0
        shift = 0
        start = position
        while True:
            if position >= len(data):
                _logger.warning("%s: ignoring a truncated length prefix at byte %d", os.fspath(path), start)
                return
            byte = data[position]
            position += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise ValueError(f"{os.fspath(path)}: invalid varint length prefix at byte {start}")
        end = position + length
        if end > len(data):
            _logger.warning("%s: ignoring a truncated last message at byte %d", os.fspath(path), start)
            return
        yield data[position:end]
        position = end
