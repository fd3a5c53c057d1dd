"""File exporters: the frame as a Prometheus text file or a JSON document, replaced atomically, on a period.

:class:`PrometheusTextFileExporter` writes the text exposition of a frame, the very bytes ``/metrics`` serves for
it (rendered by :mod:`otel_telemetry.export.exposition`), for node_exporter's textfile collector or anything else
that reads ``*.prom`` files. :class:`JsonFileExporter` writes the same series as one JSON document::

    {"timestamp": 1632150000.0, "sequence": 42,
     "metrics": {"server_tick_rate_fps": {"type": "gauge", "value": 59.8, "labels": {}, "timestamp": 1632150000.0},
                 "handler_requests_total{handler=\\"join\\"}": {"type": "counter", "value": 3.0, ...},
                 "server_tick_duration_seconds": {"type": "histogram", "count": 600.0, "sum": 9.7,
                                                  "buckets": {"0.005": 12.0, ..., "+Inf": 600.0}, ...}},
     "events_count": 150, "running": true}

Naming: a key of ``metrics`` is the series as the text exposition writes it, its Prometheus sample name plus its
labels in braces (sorted, escaped as in the text format; no braces without labels), so keys are unique and match
``/metrics``, the ``.prom`` file and PromQL. A histogram series is one entry under its family name (its labels
without ``le``) holding ``count``, ``sum`` and the cumulative ``buckets`` by upper bound. Every entry carries
``type``, ``labels`` and ``timestamp`` (the frame's collection time, Unix seconds; the text format has none of its
own); non-finite values become ``null``. ``events_count`` is the frame's ``telemetry.events`` (0 when the handle
does not count events), ``running`` what the exporter's ``running`` callable says (True without one).

Both write ``<path>.<pid>.tmp`` in the file's own directory, flush and ``fsync`` it, then ``os.replace`` it over
``path`` (node_exporter's textfile-collector convention): a reader sees the previous file or the new one, never a
part. An I/O error never raises: it is logged once per exporter and kind, counted in ``errors`` (and as a failed
attempt in ``export_counts``), the temporary file is removed, and the next export tries again.

:class:`MultiExporter` hands each frame to several exporters; :class:`PeriodicExporter` exports every ``interval``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from otel_telemetry.export.prometheus import PrometheusExposition
from otel_telemetry.export.selftelemetry import ExportCounts
from otel_telemetry.snapshot.frame import Frame
from otel_telemetry.snapshot.payload import encode_payload

__all__ = [
    "EVENTS_METRIC",
    "FileExporter",
    "FrameExporter",
    "FrameSource",
    "JsonFileExporter",
    "MultiExporter",
    "PeriodicExporter",
    "PrometheusTextFileExporter",
    "frame_json",
]

_logger = logging.getLogger(__name__)

#: The self-telemetry counter ``events_count`` is read from (``telemetry_events_total``).
EVENTS_METRIC = "telemetry.events"
#: Name of the thread of :meth:`PeriodicExporter.start`.
THREAD_NAME = "otel-telemetry-file-export"


class FrameSource(Protocol):
    """What ``export_metrics`` reads: a :class:`~otel_telemetry.Telemetry` handle, or anything alike."""

    def latest_frame(self) -> Frame | None:
        """The newest frame, or None before the first."""
        ...

    def collect(self) -> object:
        """Take a frame now (after which :meth:`latest_frame` returns it)."""
        ...


class FrameExporter(Protocol):
    """Anything :class:`MultiExporter` and :class:`PeriodicExporter` can hand frames to."""

    def export(self, frame: Frame) -> None:
        """Export ``frame``; must not raise."""
        ...


def _frame_of(source: FrameSource) -> Frame | None:
    """The source's newest frame, taking one first when there is none yet."""
    frame = source.latest_frame()
    if frame is None:
        source.collect()
        frame = source.latest_frame()
    return frame


def _check_path(owner: str, path: str | os.PathLike[str], suffix: str | None) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        raise ValueError(f"{owner}.path: expected a str or os.PathLike file path, got {path!r}") from None
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{owner}.path: expected a non-empty file path, got {path!r}")
    if os.path.basename(text) in ("", ".", ".."):
        raise ValueError(f"{owner}.path: expected a file path, not a directory, got {path!r}")
    if suffix is not None and not text.endswith(suffix):
        raise ValueError(f"{owner}.path: must end in {suffix} (the textfile collector reads only those), got {path!r}")
    return text


class FileExporter:
    """The atomic file write and the counts shared by the two file exporters (see the module docstring).

    Attributes:
        path: the file written.
        writes: files written (replaced) so far. Exact.
        errors: exports that failed (I/O, or the frame could not be rendered); each is retried at the next export.
        skipped: ``export_metrics`` calls that found no frame to write (telemetry disabled or shut down).
        export_counts: attempts and failures, for ``telemetry_exporter_attempts_total{exporter=<name>}``.

    Thread-safety: one lock per exporter; concurrent exports write one after the other.
    """

    #: The exporter's name in self-telemetry and logs.
    name = "file"

    def __init__(self, path: str | os.PathLike[str], *, suffix: str | None = None) -> None:
        self.path = _check_path(type(self).__name__, path, suffix)
        self.writes = 0
        self.errors = 0
        self.skipped = 0
        self.export_counts = ExportCounts(self.name)
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def render(self, frame: Frame) -> bytes:
        """The file's content for ``frame``."""
        raise NotImplementedError

    def export(self, frame: Frame) -> None:
        """Write ``frame`` to :attr:`path`, atomically. Never raises: failures are logged once and counted."""
        with self._lock:
            try:
                data = self.render(frame)
            except Exception as error:
                self._failed("render", f"rendering frame {frame.sequence} failed: {error!r}")
                return
            try:
                self._replace(data)
            except OSError as error:
                self._failed("io", f"writing {self.path} failed: {error}")
                return
            self.writes += 1
            self.export_counts.record(True)

    def export_metrics(self, source: FrameSource) -> None:
        """Export ``source``'s newest frame (seed 004's call), taking one first when it has none. Never raises."""
        try:
            frame = _frame_of(source)
        except Exception as error:
            with self._lock:
                self._failed("source", f"reading a frame from {type(source).__name__} failed: {error!r}")
            return
        if frame is None:
            with self._lock:
                self.skipped += 1
            return
        self.export(frame)

    def _replace(self, data: bytes) -> None:
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(temporary, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise

    def _failed(self, kind: str, message: str) -> None:
        """Count a failed export and log its kind the first time (call with the lock held)."""
        self.errors += 1
        self.export_counts.record(False)
        if kind not in self._warned:
            self._warned.add(kind)
            _logger.warning("%s: %s; retried at the next export (logged once; counted in errors)", self.name, message)


class PrometheusTextFileExporter(FileExporter):
    """Writes a frame's Prometheus text exposition (format 0.0.4) to a ``.prom`` file, atomically.

    The bytes are what ``/metrics`` serves for the same frame (same names, ``target_info``, number formatting);
    points the text format cannot carry are left out as they are on ``/metrics``. ``PrometheusAdapter(path)`` of
    seed 004.

    Args:
        path: the file to replace; must end in ``.prom``; its directory must exist when exporting.

    Raises:
        ValueError: on a path that is empty, a directory name, or does not end in ``.prom``.
    """

    name = "prometheus_textfile"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, suffix=".prom")

    def render(self, frame: Frame) -> bytes:
        """The text exposition of ``frame``."""
        return _exposition_text(frame)


class JsonFileExporter(FileExporter):
    """Writes a frame as one JSON document (seed 004's shape, see the module docstring), atomically.

    ``JSONExporter(path)`` of seed 004.

    Args:
        path: the file to replace; its directory must exist when exporting.
        running: whether telemetry is running, for the document's ``running`` (True when not given).

    Raises:
        ValueError: on a path that is empty or a directory name.
    """

    name = "json_file"

    def __init__(self, path: str | os.PathLike[str], *, running: Callable[[], bool] | None = None) -> None:
        super().__init__(path)
        self._running = running

    def render(self, frame: Frame) -> bytes:
        """The JSON document of ``frame`` (UTF-8, compact, one trailing newline)."""
        running = bool(self._running()) if self._running is not None else True
        return encode_payload(frame_json(frame, _exposition_text(frame), running=running)) + b"\n"


def _exposition_text(frame: Frame) -> bytes:
    """``frame``'s text exposition, as ``/metrics`` renders it; raises when it cannot be rendered.

    A fresh exposition each time: its cache is keyed by frame sequence, which frames of two handles share."""
    exposition = PrometheusExposition(lambda: None)
    body = exposition.text(frame)
    if exposition.scrape_failures:
        raise RuntimeError("the text exposition could not be rendered")
    return body


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _series_key(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{key}="{_escape(labels[key])}"' for key in sorted(labels)) + "}"


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _metric_entries(text: str, timestamp: float) -> dict[str, dict[str, Any]]:
    """The JSON ``metrics`` of a text exposition: one entry per series (a histogram's series as one entry)."""
    entries: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            for sample in family.samples:
                labels = dict(sample.labels)
                entries[_series_key(sample.name, labels)] = {
                    "type": family.type,
                    "value": _number(sample.value),
                    "labels": labels,
                    "timestamp": timestamp,
                }
            continue
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            entry = entries.setdefault(
                _series_key(family.name, labels),
                {"type": "histogram", "count": None, "sum": None, "buckets": {}, "labels": labels},
            )
            entry["timestamp"] = timestamp
            if sample.name.endswith("_bucket"):
                entry["buckets"][sample.labels.get("le", "+Inf")] = _number(sample.value)
            elif sample.name.endswith("_count"):
                entry["count"] = _number(sample.value)
            elif sample.name.endswith("_sum"):
                entry["sum"] = _number(sample.value)
    return entries


def _events_count(frame: Frame) -> int:
    total = 0.0
    for point in frame.points(EVENTS_METRIC):
        value = getattr(point, "value", None)
        if isinstance(value, (int, float)) and math.isfinite(value):
            total += value
    return int(total)


def frame_json(frame: Frame, exposition: bytes, *, running: bool = True) -> dict[str, object]:
    """The JSON document (as a dict) of ``frame`` whose text exposition is ``exposition`` (see the module
    docstring)."""
    timestamp = frame.time_unix_nano / 1e9
    return {
        "timestamp": timestamp,
        "sequence": frame.sequence,
        "metrics": _metric_entries(exposition.decode("utf-8"), timestamp),
        "events_count": _events_count(frame),
        "running": running,
    }


class MultiExporter:
    """Hands each frame to several exporters in turn; one that raises is logged once, counted in ``failures``
    and never stops the others. ``MultiExporter`` of seed 004.

    Args:
        exporters: objects with ``export(frame)`` (the file exporters, or exporters of your own).

    Raises:
        ValueError: when an argument has no ``export`` method.

    Thread-safety: as thread-safe as the exporters it holds; the counts take a lock.
    """

    def __init__(self, *exporters: FrameExporter) -> None:
        for index, exporter in enumerate(exporters):
            if not callable(getattr(exporter, "export", None)):
                raise ValueError(
                    f"MultiExporter.exporters[{index}]: expected an object with export(frame), got {exporter!r}"
                )
        self.exporters: tuple[FrameExporter, ...] = exporters
        self.failures = 0
        self._lock = threading.Lock()
        self._warned: set[int] = set()

    def __repr__(self) -> str:
        return f"MultiExporter({', '.join(map(repr, self.exporters))})"

    def export(self, frame: Frame) -> None:
        """Export ``frame`` with every exporter. Never raises."""
        for exporter in self.exporters:
            try:
                exporter.export(frame)
            except Exception:
                with self._lock:
                    self.failures += 1
                    first = id(exporter) not in self._warned
                    self._warned.add(id(exporter))
                if first:
                    _logger.exception("MultiExporter: %r failed (logged once; counted in failures)", exporter)

    def export_metrics(self, source: FrameSource) -> None:
        """Export ``source``'s newest frame (taking one first when it has none) with every exporter. Never
        raises."""
        try:
            frame = _frame_of(source)
        except Exception:
            with self._lock:
                self.failures += 1
            _logger.exception(
                "MultiExporter: reading a frame from %s failed (counted in failures)", type(source).__name__
            )
            return
        if frame is not None:
            self.export(frame)

    @property
    def writes(self) -> int:
        """Files written by the exporters that count them."""
        return sum(int(getattr(exporter, "writes", 0)) for exporter in self.exporters)

    @property
    def errors(self) -> int:
        """Failed exports counted by the exporters, plus :attr:`failures`."""
        return self.failures + sum(int(getattr(exporter, "errors", 0)) for exporter in self.exporters)


class PeriodicExporter:
    """Exports a frame every ``interval`` seconds. ``PeriodicExporter(exporter, collector, interval=30.0)`` of
    seed 004.

    As a frame listener, :meth:`on_frame` gets every frame and exports one when ``interval`` seconds of frame time
    passed since the last export (the first at once; half the gap between frames is slack, so 30 s over 1 s frames
    is every 30th frame, not every 31st). On its own, :meth:`start` runs the daemon thread
    ``otel-telemetry-file-export``, exporting ``source``'s newest frame every ``interval`` seconds (taking one when
    there is none) until :meth:`stop`. A failure is counted, logged once, and retried at the next period.

    Args:
        exporter: anything with ``export(frame)`` (a file exporter, a :class:`MultiExporter`).
        source: where :meth:`start`'s thread reads frames (a ``Telemetry`` handle); may be None for
            :meth:`on_frame` use only.
        interval: seconds between exports, above 0 and at most 86400.

    Attributes:
        exports: frames handed to the exporter. failures: of those, the ones where it raised.

    Raises:
        ValueError: on an ``exporter`` without ``export``, or an ``interval`` not above 0 and at most 86400.

    Thread-safety: :meth:`on_frame`, :meth:`export_now`, :meth:`start` and :meth:`stop` may be called from any
    thread; exports never overlap.
    """

    def __init__(self, exporter: FrameExporter, source: FrameSource | None = None, interval: float = 30.0) -> None:
        if not callable(getattr(exporter, "export", None)):
            raise ValueError(f"PeriodicExporter.exporter: expected an object with export(frame), got {exporter!r}")
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not math.isfinite(interval)
            or not 0 < interval <= 86400
        ):
            raise ValueError(
                f"PeriodicExporter.interval: must be a number of seconds above 0 and at most 86400, got {interval!r}"
            )
        self.exporter = exporter
        self.source = source
        self.interval = float(interval)
        self.exports = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._exporting = threading.Lock()
        self._last_export: float | None = None  # frame monotonic time of the last export
        self._last_frame: float | None = None
        self._gap = 0.0
        self._warned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"PeriodicExporter({self.exporter!r}, interval={self.interval:g})"

    # -- as a frame listener ----------------------------------------------------------------------------------------
    def on_frame(self, frame: Frame) -> None:
        """Frame listener: export ``frame`` when ``interval`` seconds passed since the last export. Never raises."""
        now = frame.monotonic
        with self._lock:
            if self._last_frame is not None and now > self._last_frame:
                self._gap = now - self._last_frame
            self._last_frame = now
            last = self._last_export
            slack = min(self._gap / 2, self.interval / 2)
            if last is not None and now - last < self.interval - slack:
                return
            self._last_export = now
        self._export(frame)

    def export_now(self, frame: Frame) -> None:
        """Export ``frame`` at once (the next period counts from now). Never raises."""
        with self._lock:
            self._last_export = frame.monotonic
        self._export(frame)

    def _export(self, frame: Frame) -> None:
        with self._exporting:
            try:
                self.exporter.export(frame)
                ok = True
            except Exception:
                ok = False
            with self._lock:
                self.exports += 1
                if ok:
                    return
                self.failures += 1
                first = not self._warned
                self._warned = True
        if first:
            _logger.exception("PeriodicExporter: %r failed; retried next period (logged once; counted)", self.exporter)

    # -- on its own thread ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the export thread (``otel-telemetry-file-export``); idempotent.

        Raises:
            ValueError: when there is no ``source`` to read frames from.
        """
        if self.source is None:
            raise ValueError("PeriodicExporter.source: start() needs a source of frames, got None")
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        source = self.source
        assert source is not None
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                frame = _frame_of(source)
            except Exception:
                frame = None
                with self._lock:
                    self.failures += 1
                    first = not self._warned
                    self._warned = True
                if first:
                    _logger.exception("PeriodicExporter: reading a frame failed; retried next period (logged once)")
            if frame is not None and not self._stop.is_set():
                self.export_now(frame)
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # after a stall: skip the missed periods instead of exporting in a burst
                next_at = now + self.interval

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop the export thread; True when it is gone within ``timeout`` seconds (an export in progress is
        finished, not cut off; a thread still writing after the timeout is a daemon and does not hold the exit)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            return False
        with self._lock:
            if self._thread is thread:
                self._thread = None
        return True

    @property
    def running(self) -> bool:
        """Whether the export thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()
