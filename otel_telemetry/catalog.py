"""The metric catalog: one declarative entry for every metric the spec's "Metrics Collected" section lists.

The catalog is the single source of truth. Views, the Prometheus names, the metric reference (``docs/metrics.md``),
alert rules and dashboards are generated from it; a test fails when a generated file is stale.

Each :class:`MetricSpec` names the OpenTelemetry instrument that implements one spec bullet. Several bullets may be
served by one instrument with a fixed attribute (``selector``): the ten update-cycle and breakdown phases are one
histogram, ``server.tick.phase.duration``, told apart by its ``phase`` attribute, as Prometheus prefers labels to
families of names.

Names follow OpenTelemetry conventions (dotted, UCUM units); ``prometheus_name`` is the name on ``/metrics``:
the OpenTelemetry-to-Prometheus translation of name and unit (base units, ``_total`` on counters), except for the
names the spec fixes (``server_cpu_usage_percent``, ``server_packets_per_sec_incoming``, ``server_tick_rate_fps``,
``server_avg_player_ping_ms``, ...), which are kept exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

__all__ = [
    "CATALOG",
    "PER_ENTITY_NAMES",
    "SPEC_FIXED_PROMETHEUS_NAMES",
    "Instrument",
    "MetricSpec",
    "Section",
    "SnapshotField",
    "instruments",
    "lookup",
    "prometheus_translation",
    "snapshot_fields",
    "snapshot_source",
]


class Instrument(str, Enum):
    """The OpenTelemetry instrument kind of a catalog entry."""

    OBSERVABLE_GAUGE = "observable_gauge"
    OBSERVABLE_COUNTER = "observable_counter"
    OBSERVABLE_UP_DOWN_COUNTER = "observable_up_down_counter"
    HISTOGRAM = "histogram"

    @property
    def prometheus_type(self) -> str:
        """The ``# TYPE`` this kind has on ``/metrics``."""
        return {
            Instrument.OBSERVABLE_GAUGE: "gauge",
            Instrument.OBSERVABLE_COUNTER: "counter",
            Instrument.OBSERVABLE_UP_DOWN_COUNTER: "gauge",
            Instrument.HISTOGRAM: "histogram",
        }[self]


class Section(str, Enum):
    """The spec's four sections of "Metrics Collected"."""

    HARDWARE = "hardware"
    NETWORK = "network"
    PERFORMANCE = "performance"
    GAME = "game"


@dataclass(frozen=True, slots=True)
class SnapshotField:
    """Where a catalog entry's values land in ``ServerMetrics`` (and so in the spec's JSON payload).

    Attributes:
        path: the dotted ``ServerMetrics`` field (``"network.packets_per_sec_incoming"``).
        scale: exported value x ``scale`` = the field's value (1000 for seconds exported, milliseconds in the JSON).
        where: only the data points with these attribute values (``{"direction": "received"}``).
        key: the field is a mapping keyed by this attribute (``entities_per_map`` by ``map``); with ``ordered``,
            a tuple ordered by the number in each key (``cpu_usage_per_core`` by ``cpu``).
        stat: for histograms, what of the sliding-window statistics the field holds: ``"distribution"`` (a
            ``Distribution``), ``"percentiles"``, or one of ``"avg"``, ``"min"``, ``"max"``; ``"value"`` otherwise.
    """

    path: str
    scale: float = 1.0
    where: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    key: str | None = None
    ordered: bool = False
    stat: str = "value"

    @property
    def section(self) -> str:
        """The ``ServerMetrics`` section (``hardware``, ``network``, ``performance`` or ``game``)."""
        return self.path.split(".", 1)[0]

    @property
    def name(self) -> str:
        """The field's name within its section."""
        return self.path.split(".", 1)[1]


def _fields(*items: str | SnapshotField) -> tuple[SnapshotField, ...]:
    return tuple(item if isinstance(item, SnapshotField) else SnapshotField(item) for item in items)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One documented metric.

    Attributes:
        id: unique, stable key of this entry (``section.group.slug``).
        name: the OpenTelemetry instrument name (shared by entries that differ only by ``selector``).
        instrument: the instrument kind.
        unit: UCUM unit of the recorded values.
        description: what the value means; becomes ``# HELP``.
        section: the spec's section.
        group: the spec's sub-heading (e.g. "CPU Metrics").
        documented: the spec's bullet text this entry implements, spelled as in the spec.
        prometheus_name: the name on ``/metrics`` (counters end in ``_total``; histograms get the usual
            ``_bucket``/``_sum``/``_count`` series).
        attributes: the attribute keys a data point may carry (everything else is dropped by the view).
        selector: fixed attribute values that pick this entry's series out of a shared instrument.
        boundaries: explicit histogram bucket boundaries, in ``unit``; empty for other kinds.
        spec_fixed_name: ``prometheus_name`` is fixed by the spec and kept even where conventions differ.
        snapshot: the ``ServerMetrics`` fields this entry's values fill (see :class:`SnapshotField`).
        per_entity: one series per player (or other entity): kept in process and in ``ServerMetrics``, exported
            to Prometheus and OTLP only when ``export_player_series`` is on (a fleet cannot afford them by default).
        spec_bullet: ``documented`` is one of the spec's bullets. False for the entries the spec does not list
            (the counters behind its per-second gauges, tick jitter): their ``documented`` says what they serve.
        rate_counter: on a per-second gauge (a rate or a percentage over the last collection interval), the id of
            the cumulative counter behind it, whose ``rate()``/``increase()`` over any range Prometheus can take
            (the gauge covers one collection interval only); ``rate_where`` picks that counter's series.
        percent_of: on a percentage gauge, the counter entry (and ``percent_of_where`` its series, summed) whose
            rate is the 100 %: the gauge is ``100 * rate(rate_counter) / rate(percent_of)`` over its interval, and
            PromQL computes the same ratio over any range.
    """

    id: str
    name: str
    instrument: Instrument
    unit: str
    description: str
    section: Section
    group: str
    documented: str
    prometheus_name: str
    attributes: tuple[str, ...] = ()
    selector: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    boundaries: tuple[float, ...] = ()
    spec_fixed_name: bool = False
    snapshot: tuple[SnapshotField, ...] = ()
    per_entity: bool = False
    spec_bullet: bool = True
    rate_counter: str | None = None
    rate_where: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    percent_of: str | None = None
    percent_of_where: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping (used by ``otel-telemetry catalog --format json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "instrument": self.instrument.value,
            "unit": self.unit,
            "description": self.description,
            "section": self.section.value,
            "group": self.group,
            "documented": self.documented,
            "prometheus_name": self.prometheus_name,
            "prometheus_type": self.instrument.prometheus_type,
            "attributes": list(self.attributes),
            "selector": dict(self.selector),
            "boundaries": list(self.boundaries),
            "spec_fixed_name": self.spec_fixed_name,
            "snapshot": [f.path for f in self.snapshot],
            "per_entity": self.per_entity,
            "spec_bullet": self.spec_bullet,
            "rate_counter": self.rate_counter,
            "rate_where": dict(self.rate_where),
            "percent_of": self.percent_of,
            "percent_of_where": dict(self.percent_of_where),
        }


# --- Prometheus name translation --------------------------------------------------------------------------------
# The OpenTelemetry specification's metric-name translation (compatibility/prometheus_and_openmetrics.md): the same
# rules the OTel Prometheus exporter and the Collector apply, so a name is the same whichever path it takes.
_UNIT_WORDS = {
    "s": "seconds",
    "ms": "milliseconds",
    "By": "bytes",
    "%": "percent",
    "1": "",
    "Hz": "hertz",
}
_PER_WORDS = {"s": "second", "min": "minute", "h": "hour"}
_ANNOTATION = re.compile(r"\{[^}]*\}")
_INVALID = re.compile(r"[^a-zA-Z0-9:]+")


def _unit_suffix(unit: str) -> str:
    unit = _ANNOTATION.sub("", unit)
    if unit in _UNIT_WORDS:
        return _UNIT_WORDS[unit]
    top, sep, bottom = unit.partition("/")
    if sep and bottom:
        top_word = _UNIT_WORDS.get(top, top)
        per = _PER_WORDS.get(bottom, bottom)
        return f"{top_word}_per_{per}" if top_word else f"per_{per}"
    return _INVALID.sub("_", unit).strip("_")


def prometheus_translation(name: str, unit: str, instrument: Instrument) -> str:
    """The Prometheus name OpenTelemetry's standard translation gives ``name`` with ``unit``."""
    base = _INVALID.sub("_", name).strip("_")
    suffix = _unit_suffix(unit)
    if suffix and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    if instrument is Instrument.OBSERVABLE_COUNTER and not base.endswith("_total"):
        base += "_total"
    return base


# --- Histogram boundaries ----------------------------------------------------------------------------------------
# Chosen so that Prometheus' histogram_quantile interpolates within a narrow bucket where the mass is.
#: Tick and frame durations (seconds): dense around the 60 Hz budget of 16.67 ms, then the 30 Hz and 20 Hz marks.
TICK_BOUNDARIES: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.012, 0.014, 0.015, 0.016, 0.0165, 0.01667, 0.017,
    0.0175, 0.018, 0.019, 0.020, 0.0225, 0.025, 0.0333, 0.050, 0.1, 0.25, 1.0,
)  # fmt: skip
#: Work phases inside one tick (seconds): 50 µs to one whole budget and beyond.
PHASE_BOUNDARIES: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.010,
    0.0125, 0.015, 0.01667, 0.020, 0.0333, 0.050, 0.1,
)  # fmt: skip
#: Network latencies and pings (seconds): 5 ms steps from 5 to 100 ms, then 25-100 ms steps to 1 s.
LATENCY_BOUNDARIES: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.0075, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.045, 0.050, 0.055, 0.060,
    0.065, 0.070, 0.080, 0.090, 0.100, 0.125, 0.150, 0.175, 0.200, 0.250, 0.300, 0.400, 0.500, 0.750, 1.0, 2.0,
)  # fmt: skip
#: Connection and session lengths (seconds): seconds to a day.
SESSION_BOUNDARIES: tuple[float, ...] = (
    1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 2700, 3600, 7200, 14400, 28800, 86400,
)  # fmt: skip
#: Database and ECS query durations (seconds): 50 µs to 2.5 s.
QUERY_BOUNDARIES: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.010, 0.025, 0.050, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5,
)  # fmt: skip
#: Fragments per fragmented packet.
FRAGMENT_BOUNDARIES: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 64)
#: Entities per spatial-partition cell.
CELL_BOUNDARIES: tuple[float, ...] = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


#: Seconds exported, milliseconds in ``ServerMetrics`` and the JSON payload.
_MS = 1000.0
_RECEIVED: Mapping[str, str] = MappingProxyType({"direction": "received"})
_SENT: Mapping[str, str] = MappingProxyType({"direction": "sent"})
_HIT: Mapping[str, str] = MappingProxyType({"outcome": "hit"})
_MISS: Mapping[str, str] = MappingProxyType({"outcome": "miss"})


# --- Factories -----------------------------------------------------------------------------------------------------
def _spec(
    id_: str,
    name: str,
    instrument: Instrument,
    unit: str,
    description: str,
    documented: str,
    *,
    attributes: Sequence[str] = (),
    selector: Mapping[str, str] | None = None,
    boundaries: Sequence[float] = (),
    prometheus_name: str | None = None,
    snapshot: str | SnapshotField | tuple[str | SnapshotField, ...] = (),
    per_entity: bool = False,
    spec_bullet: bool = True,
    rate_counter: str | None = None,
    rate_where: Mapping[str, str] | None = None,
    percent_of: str | None = None,
    percent_of_where: Mapping[str, str] | None = None,
) -> MetricSpec:
    section_name, group, _slug = id_.split(".", 2)
    standard = prometheus_translation(name, unit, instrument)
    return MetricSpec(
        id=id_,
        name=name,
        instrument=instrument,
        unit=unit,
        description=description,
        section=Section(section_name),
        group=_GROUPS[group],
        documented=documented,
        prometheus_name=prometheus_name or standard,
        attributes=tuple(attributes),
        selector=MappingProxyType(dict(selector or {})),
        boundaries=tuple(float(b) for b in boundaries),
        spec_fixed_name=prometheus_name is not None,
        snapshot=_fields(*((snapshot,) if isinstance(snapshot, (str, SnapshotField)) else snapshot)),
        per_entity=per_entity,
        spec_bullet=spec_bullet,
        rate_counter=rate_counter,
        rate_where=MappingProxyType(dict(rate_where or {})),
        percent_of=percent_of,
        percent_of_where=MappingProxyType(dict(percent_of_where or {})),
    )


def _gauge(id_: str, name: str, unit: str, description: str, documented: str, **kw: object) -> MetricSpec:
    return _spec(id_, name, Instrument.OBSERVABLE_GAUGE, unit, description, documented, **kw)  # type: ignore[arg-type]


def _counter(id_: str, name: str, unit: str, description: str, documented: str, **kw: object) -> MetricSpec:
    return _spec(id_, name, Instrument.OBSERVABLE_COUNTER, unit, description, documented, **kw)  # type: ignore[arg-type]


def _behind(id_: str, name: str, unit: str, description: str, serves: str, **kw: object) -> MetricSpec:
    """A counter the spec does not list: the cumulative total behind its per-second gauge(s) ``serves``."""
    return _counter(id_, name, unit, description, f"(counter behind: {serves})", spec_bullet=False, **kw)


def _updown(id_: str, name: str, unit: str, description: str, documented: str, **kw: object) -> MetricSpec:
    return _spec(id_, name, Instrument.OBSERVABLE_UP_DOWN_COUNTER, unit, description, documented, **kw)  # type: ignore[arg-type]


def _histogram(
    id_: str, name: str, unit: str, description: str, documented: str, boundaries: Sequence[float], **kw: object
) -> MetricSpec:
    return _spec(id_, name, Instrument.HISTOGRAM, unit, description, documented, boundaries=boundaries, **kw)  # type: ignore[arg-type]


_GROUPS = {
    "cpu": "CPU Metrics",
    "memory": "Memory Metrics",
    "disk": "Disk I/O Metrics",
    "nic": "Network Interface Metrics",
    "packets": "Packet Statistics",
    "latency": "Latency Metrics",
    "ping": "Player Ping Metrics",
    "connections": "Connection Metrics",
    "reliability": "Reliability Metrics",
    "tick_rate": "Tick Rate Metrics",
    "frame_time": "Frame Time Metrics",
    "update_cycle": "Update Cycle Metrics",
    "breakdown": "Performance Breakdown",
    "players": "Player Metrics",
    "entities": "Entity Metrics",
    "world": "World Metrics",
    "database": "Database Metrics",
    "system": "System Metrics",
}

_PHASE = "server.tick.phase.duration"
_PHASE_DESCRIPTION = "Time spent in one phase of a tick, by phase"


def _phase(id_: str, phase: str, documented: str, **kw: object) -> MetricSpec:
    return _histogram(
        id_,
        _PHASE,
        "s",
        _PHASE_DESCRIPTION,
        documented,
        PHASE_BOUNDARIES,
        attributes=("phase",),
        selector={"phase": phase},
        **kw,
    )


# fmt: off
CATALOG: tuple[MetricSpec, ...] = (
    # ---- Hardware ------------------------------------------------------------------------------------------------
    _gauge("hardware.cpu.total", "server.cpu.usage", "%",
           "CPU usage percentage", "Total CPU usage percentage",
           prometheus_name="server_cpu_usage_percent",
           snapshot="hardware.cpu_usage_percent"),
    _gauge("hardware.cpu.per_core", "server.cpu.core.usage", "%",
           "CPU usage percentage of one logical core", "Per-core CPU usage percentage", attributes=("cpu",),
           snapshot=SnapshotField("hardware.cpu_usage_per_core", key="cpu", ordered=True)),
    _gauge("hardware.cpu.load_average", "server.cpu.load_average", "{process}",
           "System load average over 1, 5 and 15 minutes", "CPU load average", attributes=("period",),
           snapshot=SnapshotField("hardware.cpu_load_average", key="period", ordered=True)),
    _gauge("hardware.memory.total", "server.memory.total", "By",
           "Total physical memory in bytes", "Total memory (bytes)",
           snapshot="hardware.memory_total_bytes"),
    _gauge("hardware.memory.used", "server.memory.used", "By",
           "Memory used in bytes", "Used memory (bytes)",
           prometheus_name="server_memory_used_bytes",
           snapshot="hardware.memory_used_bytes"),
    _gauge("hardware.memory.free", "server.memory.free", "By",
           "Free (unused) physical memory in bytes", "Free memory (bytes)",
           snapshot="hardware.memory_free_bytes"),
    _gauge("hardware.memory.usage", "server.memory.usage", "%",
           "Memory usage percentage", "Memory usage percentage",
           snapshot="hardware.memory_usage_percent"),
    _gauge("hardware.memory.pressure", "server.memory.pressure", "%",
           "Memory pressure indicators in percent: unavailable (share of memory not available to new work), "
           "swap_used (swap in use), psi_some_avg10 (Linux PSI: share of the last 10 s some task stalled on memory)",
           "Memory pressure indicators", attributes=("indicator",),
           snapshot=SnapshotField("hardware.memory_pressure", key="indicator")),
    _gauge("hardware.disk.read_bytes", "server.disk.read", "By/s",
           "Disk bytes read per second", "Disk read bytes per second",
           snapshot="hardware.disk_read_bytes_per_sec"),
    _gauge("hardware.disk.write_bytes", "server.disk.write", "By/s",
           "Disk bytes written per second", "Disk write bytes per second",
           snapshot="hardware.disk_write_bytes_per_sec"),
    _gauge("hardware.disk.read_ops", "server.disk.read_operations", "{operation}/s",
           "Disk read operations per second", "Disk read operations per second",
           snapshot="hardware.disk_read_ops_per_sec"),
    _gauge("hardware.disk.write_ops", "server.disk.write_operations", "{operation}/s",
           "Disk write operations per second", "Disk write operations per second",
           snapshot="hardware.disk_write_ops_per_sec"),
    _gauge("hardware.nic.bytes_received", "server.nic.received", "By/s",
           "Bytes received per second on all network interfaces", "Bytes received per second",
           snapshot="hardware.network_bytes_received_per_sec"),
    _gauge("hardware.nic.bytes_sent", "server.nic.sent", "By/s",
           "Bytes sent per second on all network interfaces", "Bytes sent per second",
           snapshot="hardware.network_bytes_sent_per_sec"),
    _gauge("hardware.nic.packets_received", "server.nic.received_packets", "{packet}/s",
           "Packets received per second on all network interfaces", "Packets received per second",
           snapshot="hardware.network_packets_received_per_sec"),
    _gauge("hardware.nic.packets_sent", "server.nic.sent_packets", "{packet}/s",
           "Packets sent per second on all network interfaces", "Packets sent per second",
           snapshot="hardware.network_packets_sent_per_sec"),

    # ---- Network ---------------------------------------------------------------------------------------------------
    _gauge("network.packets.rate_in", "server.packets_per_sec_incoming", "{packet}/s",
           "Incoming packets per second", "Packets per second (incoming)",
           prometheus_name="server_packets_per_sec_incoming",
           snapshot="network.packets_per_sec_incoming",
           rate_counter="network.packets.total", rate_where=_RECEIVED),
    _gauge("network.packets.rate_out", "server.packets_per_sec_outgoing", "{packet}/s",
           "Outgoing packets per second", "Packets per second (outgoing)",
           prometheus_name="server_packets_per_sec_outgoing",
           snapshot="network.packets_per_sec_outgoing",
           rate_counter="network.packets.total", rate_where=_SENT),
    _gauge("network.packets.bytes_rate_in", "server.network.received", "By/s",
           "Game traffic bytes received per second", "Bytes per second (incoming)",
           snapshot="network.bytes_per_sec_incoming",
           rate_counter="network.packets.bytes_total", rate_where=_RECEIVED),
    _gauge("network.packets.bytes_rate_out", "server.network.sent", "By/s",
           "Game traffic bytes sent per second", "Bytes per second (outgoing)",
           snapshot="network.bytes_per_sec_outgoing",
           rate_counter="network.packets.bytes_total", rate_where=_SENT),
    _counter("network.packets.total", "server.network.packets", "{packet}",
             "Game packets processed, by direction", "Total packets processed", attributes=("direction",),
           snapshot=(SnapshotField("network.total_packets_incoming", where=_RECEIVED),
                     SnapshotField("network.total_packets_outgoing", where=_SENT))),
    _counter("network.packets.bytes_total", "server.network.io", "By",
             "Game traffic bytes processed, by direction", "Total bytes processed", attributes=("direction",),
           snapshot=(SnapshotField("network.total_bytes_incoming", where=_RECEIVED),
                     SnapshotField("network.total_bytes_outgoing", where=_SENT))),
    _gauge("network.latency.avg", "server.network.packet_latency.avg", "s",
           "Average packet latency over the percentile window", "Average packet latency (milliseconds)",
           snapshot=SnapshotField("network.avg_packet_latency_ms", scale=_MS)),
    _histogram("network.latency.distribution", "server.network.packet_latency", "s",
               "Packet latency distribution", "Packet latency percentiles (p50, p95, p99)", LATENCY_BOUNDARIES,
           snapshot=SnapshotField("network.packet_latency_percentiles", scale=_MS, stat="percentiles")),
    _gauge("network.latency.min", "server.network.packet_latency.min", "s",
           "Minimum packet latency over the percentile window", "Minimum packet latency",
           snapshot=SnapshotField("network.min_packet_latency_ms", scale=_MS)),
    _gauge("network.latency.max", "server.network.packet_latency.max", "s",
           "Maximum packet latency over the percentile window", "Maximum packet latency",
           snapshot=SnapshotField("network.max_packet_latency_ms", scale=_MS)),
    _gauge("network.ping.avg", "server.avg_player_ping", "ms",
           "Average player ping in milliseconds", "Average player ping (milliseconds)",
           prometheus_name="server_avg_player_ping_ms",
           snapshot="network.avg_player_ping_ms"),
    _histogram("network.ping.distribution", "server.network.player_ping", "s",
               "Player ping (round-trip time) distribution", "Player ping percentiles (p50, p95, p99)",
               LATENCY_BOUNDARIES,
           snapshot=SnapshotField("network.player_ping_percentiles", scale=_MS, stat="percentiles")),
    _gauge("network.ping.min", "server.network.player_ping.min", "s",
           "Minimum player ping over the percentile window", "Minimum player ping",
           snapshot=SnapshotField("network.min_player_ping_ms", scale=_MS)),
    _gauge("network.ping.max", "server.network.player_ping.max", "s",
           "Maximum player ping over the percentile window", "Maximum player ping",
           snapshot=SnapshotField("network.max_player_ping_ms", scale=_MS)),
    _gauge("network.ping.per_player", "server.network.player_ping.last", "s",
           "Most recent ping of each connected player (bounded by max_tracked_players)",
           "Per-player ping tracking", attributes=("player_id",),
           snapshot=SnapshotField("network.player_pings_ms", scale=_MS, key="player_id"),
           per_entity=True),
    _updown("network.connections.active", "server.active_connections", "{connection}",
            "Connections currently open", "Active connections count",
           snapshot="network.active_connections"),
    _counter("network.connections.total", "server.network.connections", "{connection}",
             "Connections opened since start", "Total connections count",
           snapshot="network.total_connections"),
    _gauge("network.connections.rate_new", "server.network.new_connections", "{connection}/s",
           "New connections per second", "Connections per second (new)",
           snapshot="network.connections_per_sec",
           rate_counter="network.connections.total"),
    _gauge("network.connections.rate_closed", "server.network.disconnections", "{connection}/s",
           "Disconnections per second", "Disconnections per second",
           snapshot="network.disconnections_per_sec",
           rate_counter="network.connections.closed_total"),
    _behind("network.connections.closed_total", "server.network.connections.closed", "{connection}",
            "Connections closed since start", "Disconnections per second"),
    _histogram("network.connections.duration", "server.network.connection.duration", "s",
               "How long closed connections lasted", "Connection duration statistics", SESSION_BOUNDARIES,
           snapshot=SnapshotField("network.connection_duration_s", stat="distribution")),
    _gauge("network.reliability.loss", "server.network.packet_loss", "%",
           "Packets lost as a percentage of packets sent over the last collection interval",
           "Packet loss rate (percentage)",
           snapshot="network.packet_loss_percent",
           rate_counter="network.reliability.lost_total",
           percent_of="network.packets.total", percent_of_where=_SENT),
    _gauge("network.reliability.retransmission", "server.network.retransmission", "%",
           "Packets retransmitted as a percentage of packets sent over the last collection interval",
           "Retransmission rate (percentage)",
           snapshot="network.retransmission_percent",
           rate_counter="network.reliability.retransmitted_total",
           percent_of="network.packets.total", percent_of_where=_SENT),
    _behind("network.reliability.lost_total", "server.network.packets.lost", "{packet}",
            "Sent packets reported lost since start (loss = its rate over the rate of packets sent)",
            "Packet loss rate (percentage)"),
    _behind("network.reliability.retransmitted_total", "server.network.packets.retransmitted", "{packet}",
            "Packets retransmitted since start (retransmission = its rate over the rate of packets sent)",
            "Retransmission rate (percentage)"),
    _histogram("network.reliability.ack_latency", "server.network.ack_latency", "s",
               "Time from sending a reliable packet to its acknowledgment", "Acknowledgment latency",
               LATENCY_BOUNDARIES,
           snapshot=SnapshotField("network.ack_latency_ms", scale=_MS, stat="distribution")),
    _histogram("network.reliability.fragmentation", "server.network.packet_fragments", "{fragment}",
               "Fragments per fragmented packet", "Fragmentation statistics", FRAGMENT_BOUNDARIES,
           snapshot=SnapshotField("network.fragments_per_packet", stat="distribution")),

    # ---- Performance -----------------------------------------------------------------------------------------------
    _gauge("performance.tick_rate.current", "server.tick_rate", "{tick}/s",
           "Server tick rate in FPS: ticks per second over the last collection interval", "Current tick rate (FPS)",
           prometheus_name="server_tick_rate_fps",
           snapshot="performance.tick_rate_fps",
           rate_counter="performance.tick_rate.ticks_total"),
    _behind("performance.tick_rate.ticks_total", "server.ticks", "{tick}",
            "Ticks started since start", "Current tick rate (FPS)"),
    _gauge("performance.tick_rate.target", "server.tick_rate.target", "{tick}/s",
           "Configured target tick rate in FPS", "Target tick rate (60 FPS)",
           prometheus_name="server_target_tick_rate_fps",
           snapshot="performance.target_fps"),
    _gauge("performance.tick_rate.deviation", "server.tick_rate.deviation", "{tick}/s",
           "Current tick rate minus the target, in FPS (negative when the server falls behind)",
           "Tick rate deviation from target",
           prometheus_name="server_tick_rate_deviation_fps",
           snapshot="performance.tick_rate_deviation_fps"),
    _gauge("performance.tick_rate.variance", "server.tick_rate.variance", "{fps2}",
           "Variance, in FPS squared, of the per-second tick rates over the percentile window: the ticks started in "
           "each whole second since the first tick (0 when every second had the same count, and until two "
           "seconds have run; a 60 FPS loop that drops to 30 FPS for one second of ten reads 81)",
           "Tick rate stability (variance)",
           snapshot="performance.tick_rate_variance"),
    _gauge("performance.frame_time.avg", "server.tick.duration.avg", "s",
           "Average tick duration (time inside one tick) over the percentile window",
           "Average tick duration (milliseconds)",
           snapshot=SnapshotField("performance.avg_tick_duration_ms", scale=_MS)),
    _histogram("performance.frame_time.distribution", "server.tick.duration", "s",
               "Tick duration: time from the start to the end of the work of one tick",
               "Tick duration percentiles (p50, p95, p99)", TICK_BOUNDARIES,
           snapshot=SnapshotField("performance.tick_duration_percentiles", scale=_MS, stat="percentiles")),
    _gauge("performance.frame_time.min", "server.tick.duration.min", "s",
           "Minimum tick duration over the percentile window", "Minimum tick duration",
           snapshot=SnapshotField("performance.min_tick_duration_ms", scale=_MS)),
    _gauge("performance.frame_time.max", "server.tick.duration.max", "s",
           "Maximum tick duration over the percentile window", "Maximum tick duration",
           snapshot=SnapshotField("performance.max_tick_duration_ms", scale=_MS)),
    _histogram("performance.frame_time.frame_times", "server.frame.time", "s",
               "Frame time: from the start of one tick to the start of the next (work plus idle)",
               "Frame time distribution", TICK_BOUNDARIES,
           snapshot=SnapshotField("performance.frame_time_ms", scale=_MS, stat="distribution")),
    _gauge("performance.frame_time.jitter", "server.tick.interval.jitter", "s",
           "Frame-interval jitter: the standard deviation of the frame time (tick start to tick start) over the "
           "percentile window",
           "(tick stability: frame-interval jitter)", spec_bullet=False,
           snapshot=SnapshotField("performance.tick_interval_jitter_ms", scale=_MS)),
    _histogram("performance.update_cycle.total", "server.update_cycle.duration", "s",
               "Total time spent in measured phases during one tick", "Total update cycle duration",
               PHASE_BOUNDARIES,
           snapshot=SnapshotField("performance.update_cycle_ms", scale=_MS, stat="distribution")),
    # The one ServerMetrics mapping of every phase rides on the first entry of the shared instrument.
    _phase("performance.update_cycle.systems", "systems", "System processing time",
           snapshot=SnapshotField("performance.phase_time_ms", scale=_MS, stat="distribution", key="phase")),
    _phase("performance.update_cycle.entities", "entities", "Entity update time"),
    _phase("performance.update_cycle.network", "network", "Network processing time"),
    _phase("performance.update_cycle.database", "database", "Database query time"),
    _phase("performance.update_cycle.aoi", "aoi", "AOI update time"),
    _phase("performance.breakdown.ecs", "ecs", "Time spent in ECS systems"),
    _phase("performance.breakdown.network", "network", "Time spent in network processing"),
    _phase("performance.breakdown.serialization", "serialization", "Time spent in serialization"),
    _phase("performance.breakdown.compression", "compression", "Time spent in compression"),
    _phase("performance.breakdown.encryption", "encryption", "Time spent in encryption"),

    # ---- Game ------------------------------------------------------------------------------------------------------
    _updown("game.players.active", "server.game.active_players", "{player}",
            "Players currently connected", "Active player count",
           snapshot="game.active_player_count"),
    _counter("game.players.total", "server.game.players_connected", "{player}",
             "Players who connected since start", "Total players connected",
           snapshot="game.total_players_connected"),
    _updown("game.players.per_map", "server.game.map.players", "{player}",
            "Players currently on each map", "Players per map", attributes=("map",),
           snapshot=SnapshotField("game.players_per_map", key="map")),
    _histogram("game.players.session_duration", "server.game.session.duration", "s",
               "Length of finished player sessions (average = sum / count)", "Average session duration",
               SESSION_BOUNDARIES,
           snapshot=SnapshotField("game.avg_session_duration_s", stat="avg")),
    _updown("game.entities.total", "server.game.entities", "{entity}",
            "Entities alive", "Total entities",
           snapshot="game.total_entities"),
    _updown("game.entities.per_map", "server.game.map.entities", "{entity}",
            "Entities alive on each map", "Entities per map", attributes=("map",),
           snapshot=SnapshotField("game.entities_per_map", key="map")),
    _updown("game.entities.per_type", "server.game.entity_type.entities", "{entity}",
            "Entities alive of each type (Player, NPC, Monster, ...)",
            "Entities per type (Player, NPC, Monster, etc.)", attributes=("entity_type",),
           snapshot=SnapshotField("game.entities_per_type", key="entity_type")),
    _gauge("game.entities.creation_rate", "server.game.entities.created", "{entity}/s",
           "Entities created per second", "Entity creation rate",
           snapshot="game.entity_creation_rate",
           rate_counter="game.entities.created_total"),
    _gauge("game.entities.removal_rate", "server.game.entities.removed", "{entity}/s",
           "Entities removed per second", "Entity removal rate",
           snapshot="game.entity_removal_rate",
           rate_counter="game.entities.removed_total"),
    _behind("game.entities.created_total", "server.game.entity.creations", "{entity}",
            "Entities created since start", "Entity creation rate"),
    _behind("game.entities.removed_total", "server.game.entity.removals", "{entity}",
            "Entities removed since start", "Entity removal rate"),
    _updown("game.world.active_maps", "server.game.active_maps", "{map}",
            "Maps currently loaded and running", "Active maps count",
           snapshot="game.active_maps"),
    _gauge("game.world.aoi_frequency", "server.game.aoi.updates", "{update}/s",
           "Area-of-interest updates per second", "AOI update frequency",
           snapshot="game.aoi_updates_per_sec",
           rate_counter="game.world.aoi_updates_total"),
    _behind("game.world.aoi_updates_total", "server.game.aoi.computations", "{update}",
            "Area-of-interest updates computed since start", "AOI update frequency"),
    _histogram("game.world.spatial_partitioning", "server.game.spatial.cell_occupancy", "{entity}",
               "Entities per occupied spatial-partition cell, sampled by the game",
               "Spatial partitioning statistics", CELL_BOUNDARIES,
           snapshot=SnapshotField("game.spatial_cell_occupancy", stat="distribution")),
    _counter("game.world.collisions", "server.game.collision.tests", "{test}",
             "Collision tests run, by outcome (hit or miss)", "Collision detection statistics",
             attributes=("outcome",),
           snapshot=SnapshotField("game.collision_tests", key="outcome")),
    _histogram("game.database.query_time", "server.game.db.query.duration", "s",
               "Database query duration (average = sum / count)", "Average query time (milliseconds)",
               QUERY_BOUNDARIES,
           snapshot=(SnapshotField("game.avg_query_time_ms", scale=_MS, stat="avg"),
                     SnapshotField("game.query_time_ms", scale=_MS, stat="distribution"))),
    _gauge("game.database.query_rate", "server.game.db.queries", "{query}/s",
           "Database queries per second", "Query count per second",
           snapshot="game.queries_per_sec",
           rate_counter="game.database.queries_total"),
    _behind("game.database.queries_total", "server.game.db.query.executions", "{query}",
            "Database queries run since start", "Query count per second"),
    _gauge("game.database.cache_hit", "server.game.db.cache.hit_rate", "%",
           "Cache hits as a percentage of lookups over the last collection interval", "Cache hit rate (percentage)",
           snapshot="game.cache_hit_rate_percent",
           rate_counter="game.database.cache_lookups_total", rate_where=_HIT,
           percent_of="game.database.cache_lookups_total"),
    _gauge("game.database.cache_miss", "server.game.db.cache.miss_rate", "%",
           "Cache misses as a percentage of lookups over the last collection interval",
           "Cache miss rate (percentage)",
           snapshot="game.cache_miss_rate_percent",
           rate_counter="game.database.cache_lookups_total", rate_where=_MISS,
           percent_of="game.database.cache_lookups_total"),
    _behind("game.database.cache_lookups_total", "server.game.db.cache.lookups", "{lookup}",
            "Cache lookups since start, by outcome (hit or miss)",
            "Cache hit rate (percentage), Cache miss rate (percentage)", attributes=("outcome",)),
    _gauge("game.database.size", "server.game.db.size", "By",
           "Database size in bytes, as last reported by the game", "Database size (bytes)",
           snapshot="game.database_size_bytes"),
    _updown("game.system.components", "server.game.ecs.components", "{component}",
            "ECS components alive", "ECS component count",
           snapshot="game.ecs_component_count"),
    _histogram("game.system.system_time", "server.game.ecs.system.duration", "s",
               "Execution time of each ECS system per run", "System execution time per system",
               PHASE_BOUNDARIES, attributes=("system",),
           snapshot=SnapshotField("game.system_execution_time_ms", scale=_MS, stat="distribution", key="system")),
    _histogram("game.system.query_time", "server.game.ecs.query.duration", "s",
               "ECS query execution time", "Query execution time", QUERY_BOUNDARIES,
           snapshot=SnapshotField("game.ecs_query_time_ms", scale=_MS, stat="distribution")),
    _counter("game.system.allocations", "server.game.ecs.allocations", "{allocation}",
             "Memory allocations reported by the game's ECS", "Memory allocations (if any)",
           snapshot="game.memory_allocations"),
)
# fmt: on

#: OpenTelemetry names of the per-entity metrics (not exported unless ``export_player_series`` is on).
PER_ENTITY_NAMES: frozenset[str] = frozenset(s.name for s in CATALOG if s.per_entity)

#: The Prometheus names the spec fixes (kept exactly even where conventions would differ).
SPEC_FIXED_PROMETHEUS_NAMES: frozenset[str] = frozenset(s.prometheus_name for s in CATALOG if s.spec_fixed_name)

_BY_ID: Mapping[str, MetricSpec] = MappingProxyType({s.id: s for s in CATALOG})


def lookup(entry_id: str) -> MetricSpec:
    """The entry with ``id`` ``entry_id``; ``KeyError`` naming it when there is none."""
    try:
        return _BY_ID[entry_id]
    except KeyError:
        raise KeyError(f"no catalog entry with id {entry_id!r}") from None


def instruments() -> Iterator[MetricSpec]:
    """One entry per distinct instrument name (the first entry that names it), in catalog order."""
    seen: set[str] = set()
    for spec in CATALOG:
        if spec.name not in seen:
            seen.add(spec.name)
            yield spec


def snapshot_fields() -> Iterator[tuple[MetricSpec, SnapshotField]]:
    """Every ``(entry, field)`` pair: where each ``ServerMetrics`` field comes from, in catalog order."""
    for spec in CATALOG:
        for item in spec.snapshot:
            yield spec, item


def snapshot_source(path: str) -> tuple[MetricSpec, SnapshotField]:
    """The entry and field behind the ``ServerMetrics`` field ``path`` (``KeyError`` naming it when none)."""
    try:
        return _BY_PATH[path]
    except KeyError:
        raise KeyError(f"no catalog entry fills ServerMetrics field {path!r}") from None


_BY_PATH: Mapping[str, tuple[MetricSpec, SnapshotField]] = MappingProxyType(
    {item.path: (spec, item) for spec, item in snapshot_fields()}
)


def _check() -> None:
    ids = [s.id for s in CATALOG]
    if len(ids) != len(set(ids)):
        raise RuntimeError("duplicate catalog ids")
    paths = [item.path for _spec, item in snapshot_fields()]
    if len(paths) != len(set(paths)):
        raise RuntimeError("a ServerMetrics field is filled by two catalog entries")
    for spec, item in snapshot_fields():
        if item.stat != "value" and spec.instrument is not Instrument.HISTOGRAM:
            raise RuntimeError(f"{spec.id}: stat {item.stat!r} needs a histogram")
    by_name: dict[str, MetricSpec] = {}
    for spec in CATALOG:
        first = by_name.setdefault(spec.name, spec)
        if (first.instrument, first.unit, first.prometheus_name, first.boundaries) != (
            spec.instrument,
            spec.unit,
            spec.prometheus_name,
            spec.boundaries,
        ):
            raise RuntimeError(f"entries sharing instrument {spec.name!r} disagree")
        if spec.instrument is Instrument.HISTOGRAM and list(spec.boundaries) != sorted(set(spec.boundaries)):
            raise RuntimeError(f"{spec.id}: boundaries must be strictly increasing")
        links = ((spec.rate_counter, spec.rate_where), (spec.percent_of, spec.percent_of_where))
        for link, where in links:
            if link is None:
                continue
            counter = _BY_ID.get(link)
            if counter is None or counter.instrument is not Instrument.OBSERVABLE_COUNTER:
                raise RuntimeError(f"{spec.id}: {link!r} is not a counter entry")
            if not set(where) <= set(counter.attributes):
                raise RuntimeError(f"{spec.id}: {dict(where)} is not among {counter.id}'s attributes")
        if spec.percent_of is not None and spec.rate_counter is None:
            raise RuntimeError(f"{spec.id}: percent_of needs a rate_counter")


_check()
