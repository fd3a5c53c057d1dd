"""``TelemetryConfig``: the spec's settings, resolved keyword > environment > default, validated on entry.

The settings are a table, :data:`SETTINGS`: one :class:`Setting` row per field names its environment variables, its
default, its parser, its bounds and its documentation. The same rows resolve and validate every value, hide the
token in ``repr()``, drive :meth:`TelemetryConfig.replace` and generate the table of ``docs/configuration.md``
(``otel-telemetry config-docs``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from otel_telemetry import environment as env

_logger = logging.getLogger(__name__)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


#: The spec's thresholds, ``(warning, critical)`` per key of :func:`default_rules`.
DEFAULT_THRESHOLDS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "cpu": (80.0, 95.0),
        "memory": (85.0, 95.0),
        "tick_rate": (58.0, 55.0),
        "player_ping_p95": (100.0, 200.0),
        "packet_loss": (1.0, 5.0),
    }
)


def parse_thresholds(text: str) -> dict[str, tuple[float, float]]:
    """Parse ``"cpu=70,90;tick_rate=50,45"`` into :func:`default_rules` overrides (for environment variables and the
    command line). ``ValueError`` names the bad item."""
    parsed: dict[str, tuple[float, float]] = {}
    for item in text.replace("\n", ";").split(";"):
        if not item.strip():
            continue
        key, sep, values = item.partition("=")
        parts = values.split(",")
        if not sep or len(parts) != 2:
            raise ValueError(f"thresholds: expected name=warning,critical, got {item.strip()!r}")
        try:
            pair = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise ValueError(f"thresholds: expected two numbers in {item.strip()!r}") from None
        key = key.strip()
        if key not in DEFAULT_THRESHOLDS:
            raise ValueError(f"thresholds: unknown name {key!r}; known: {', '.join(DEFAULT_THRESHOLDS)}")
        parsed[key] = pair
    return parsed


def _bad(field: str, value: object, why: str) -> ValueError:
    return ValueError(f"TelemetryConfig.{field}: {why}, got {value!r}")


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


@dataclass(frozen=True, slots=True)
class Bounds:
    """The range a numeric setting must lie in: ``low`` and ``high`` are included unless ``low_open`` /
    ``high_open``."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: object) -> bool:
        """Whether ``value`` is a number (not a bool) within the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, unit: str = "") -> str:
        """The range in words, as errors and the docs say it: ``between 0 and 65535``, ``above 0 and at most 60``."""
        low, high = _number_text(self.low), _number_text(self.high)
        if not self.low_open and not self.high_open:
            words = f"between {low} and {high}"
        else:
            above = "above" if self.low_open else "at least"
            below = "below" if self.high_open else "at most"
            words = f"{above} {low} and {below} {high}"
        return f"{words} {unit}" if unit else words


@dataclass(frozen=True, slots=True)
class Parser:
    """How one kind of value is read: ``parse(field, value)`` takes a keyword argument or an environment string and
    returns the typed value or raises ``ValueError`` naming the field and the value. ``accepts`` is what the docs say
    it takes; ``unit`` follows the bounds in errors and docs; ``numeric`` parsers need bounds."""

    accepts: str
    parse: Callable[[str, object], object]
    unit: str = ""
    numeric: bool = False


def _parse_seconds(field: str, value: object) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad(field, value, "expected a number of seconds or a timedelta")
    else:
        try:
            seconds = float(value)
        except ValueError:
            raise _bad(field, value, "expected a number of seconds") from None
    if not math.isfinite(seconds):
        raise _bad(field, value, "must be a finite number of seconds")
    return seconds


def _parse_int(field: str, value: object) -> int:
    if isinstance(value, bool):
        raise _bad(field, value, "expected an integer")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _bad(field, value, "expected an integer") from None
    if not isinstance(value, int):
        raise _bad(field, value, "expected an integer")
    return value


def _parse_number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad(field, value, "expected a number")
    try:
        number = float(value)
    except ValueError:
        raise _bad(field, value, "expected a number") from None
    if not math.isfinite(number):
        raise _bad(field, value, "must be a finite number")
    return number


def _parse_bool(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(field, value, "expected true or false")


def _parse_text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(field, value, "expected a non-empty string")
    return value.strip()


def _parse_token(field: str, value: object) -> str:
    # The token itself never appears in an error message.
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"TelemetryConfig.{field}: expected a non-empty string (value not shown)")
    return value.strip()


def _parse_url(field: str, value: object) -> str:
    from otel_telemetry.delivery import check_http_url  # HTTP delivery only for settings that name a URL

    return check_http_url("TelemetryConfig", field, value)[0]


#: A gRPC target without a scheme: ``host:port``, ``[v6]:port`` or a bare host (forms the gRPC client accepts). A
#: pattern, not a compiled one: ``re`` compiles (and caches) it on the first scheme-less OTLP endpoint.
_GRPC_TARGET = r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)(?::(?P<port>\d{1,5}))?"


def _otlp_endpoint_parser(*, base: bool) -> Callable[[str, object], str]:
    """An OTLP endpoint: an ``http://`` or ``https://`` URL with a host (no credentials), or a scheme-less gRPC
    target (``host:port``), which only ``grpc`` accepts (checked once the protocols are known). ``base`` endpoints
    (``OTEL_EXPORTER_OTLP_ENDPOINT``) lose a trailing slash and refuse a query, since signal paths are appended to
    them; a signal's own endpoint is kept exactly as given."""

    def parse(field: str, value: object) -> str:
        from otel_telemetry.delivery import check_http_url, shown_url

        if isinstance(value, str) and "://" not in value:
            target = re.fullmatch(_GRPC_TARGET, value.strip())
            if target is None:
                raise ValueError(
                    f"TelemetryConfig.{field}: expected an http:// or https:// URL with a host, or host:port for "
                    f"grpc, got {shown_url(value)}"
                )
            if target["port"] is not None and not 0 < int(target["port"]) <= 65535:
                raise ValueError(f"TelemetryConfig.{field}: has an invalid port, got {value!r}")
            return target[0]
        return check_http_url("TelemetryConfig", field, value, base=base)[0]

    return parse


#: The OTLP transports the official Python exporters offer.
OTLP_PROTOCOLS = ("grpc", "http/protobuf")


def _parse_protocol(field: str, value: object) -> str:
    # Enum values are case-insensitive in the OpenTelemetry specification; http/json is a protocol it defines that
    # the Python exporters do not implement, so it gets its own message.
    text = value.strip().lower() if isinstance(value, str) else value
    if text == "http/json":
        raise _bad(
            field,
            value,
            "http/json is not supported (the OpenTelemetry Python exporters send protobuf only); "
            "use http/protobuf or grpc",
        )
    if not isinstance(text, str) or text not in OTLP_PROTOCOLS:
        raise _bad(field, value, f"expected one of {', '.join(OTLP_PROTOCOLS)}")
    return text


def _parse_otel_bool(field: str, value: object) -> bool:
    """An OpenTelemetry boolean: only ``true`` (any case) is true; anything else is false, with a warning unless it
    is ``false`` (the specification's rule for its boolean variables)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise _bad(field, value, "expected true or false")
    text = value.strip().lower()
    if text not in ("true", "false"):
        _logger.warning("TelemetryConfig.%s: %r is not true or false; read as false", field, value)
    return text == "true"


def _choice(*options: str) -> Parser:
    def parse(field: str, value: object) -> str:
        if not isinstance(value, str) or value.strip() not in options:
            raise _bad(field, value, f"expected one of {', '.join(options)}")
        return value.strip()

    return Parser(" or ".join(f"`{option}`" for option in options), parse)


_NO_THRESHOLDS: Mapping[str, tuple[float, float]] = MappingProxyType({})


def _parse_thresholds(field: str, value: object) -> Mapping[str, tuple[float, float]]:
    """``{"cpu": (80, 95), ...}`` or the text form ``"cpu=80,95;tick_rate=58,55"`` (warning, critical).

    The text form and the known names are the alert module's own (:func:`parse_thresholds`). A pair ordered
    against its default (warning beyond critical) is refused here, as :func:`default_rules` would refuse it later.
    """
    if isinstance(value, str):
        try:
            value = parse_thresholds(value)
        except ValueError as error:
            raise _bad(field, value, str(error)) from None
    if not isinstance(value, Mapping):
        raise _bad(field, value, "expected a mapping of metric to (warning, critical) thresholds")
    parsed: dict[str, tuple[float, float]] = {}
    for key, pair in value.items():
        if key not in DEFAULT_THRESHOLDS:
            raise _bad(field, value, f"unknown threshold {key!r} (known: {', '.join(DEFAULT_THRESHOLDS)})")
        try:
            warning, critical = (float(x) for x in pair)
        except (TypeError, ValueError):
            raise _bad(field, value, f"{key} needs two numbers (warning, critical)") from None
        if not (math.isfinite(warning) and math.isfinite(critical)):
            raise _bad(field, value, f"{key} thresholds must be finite")
        # The defaults say the direction: warning above critical means the alert fires below (tick_rate).
        default_warning, default_critical = DEFAULT_THRESHOLDS[key]
        below = default_warning > default_critical
        if (warning < critical) if below else (warning > critical):
            side = "below" if below else "above"
            raise _bad(field, value, f"{key}: the warning threshold is {side} the critical one (inverted)")
        parsed[key] = (warning, critical)
    return MappingProxyType(parsed)


_SECONDS = Parser("duration", _parse_seconds, unit="seconds", numeric=True)
_INTEGER = Parser("integer", _parse_int, numeric=True)
_NUMBER = Parser("number", _parse_number, numeric=True)
_BOOLEAN = Parser("boolean", _parse_bool)
_TEXT = Parser("non-empty string", _parse_text)
_PATH = Parser("non-empty path", _parse_text)


def _parse_prom_path(field: str, value: object) -> str:
    path = _parse_text(field, value)
    if not path.endswith(".prom"):
        raise _bad(field, value, "must end in .prom (the textfile collector reads only those)")
    return path


_PROM_PATH = Parser("non-empty path ending in `.prom`", _parse_prom_path)
_TOKEN = Parser("non-empty string (never shown)", _parse_token)
_URL = Parser("`http://` or `https://` URL with a host, no credentials, query or fragment", _parse_url)
_OTEL_BOOLEAN = Parser("`true` or `false` (anything else is false, with a warning)", _parse_otel_bool)
_OTLP_BASE = Parser(
    "`http://` or `https://` URL with a host, no credentials, query or fragment; or `host:port` for grpc",
    _otlp_endpoint_parser(base=True),
)
_OTLP_SIGNAL = Parser(
    "`http://` or `https://` URL with a host, no credentials; or `host:port` for grpc",
    _otlp_endpoint_parser(base=False),
)
_PROTOCOL = Parser("`grpc` or `http/protobuf` (any case; `http/json` is refused)", _parse_protocol)
_FILE_FORMAT = _choice("jsonl", "otlp")
_THRESHOLDS = Parser(
    "`cpu=80,95;tick_rate=58,55` or a mapping; keys " + ", ".join(f"`{key}`" for key in DEFAULT_THRESHOLDS),
    _parse_thresholds,
)

_INTERVAL = Bounds(0.01, 3600)
_COUNT = Bounds(1, 1_000_000)
_DELAY = Bounds(0, 86400)


def _resource_attributes(environ: Mapping[str, str]) -> dict[str, str]:
    """Parse ``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, values percent-decoded)."""
    attributes: dict[str, str] = {}
    for item in environ.get(env.OTEL_RESOURCE_ATTRIBUTES, "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    return attributes


def _instance_id_or_host_name(environ: Mapping[str, str]) -> str | None:
    return _resource_attributes(environ).get("service.instance.id") or socket.gethostname() or None


def _resource_service_name(environ: Mapping[str, str]) -> str | None:
    return _resource_attributes(environ).get("service.name") or None


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the configuration table: a :class:`TelemetryConfig` field and everything about it.

    ``variables`` are read in order, the first one present wins (``inverted`` negates a boolean read from them:
    ``OTEL_SDK_DISABLED``). Without a keyword or a variable, ``fallback(environ)`` gives the default when it returns
    a value, else ``default``; ``default_doc`` is how the docs show a default that differs per machine. ``secret``
    values are shown as ``"***"``.
    """

    name: str
    variables: tuple[str, ...]
    default: object
    parser: Parser
    doc: str
    bounds: Bounds | None = None
    fallback: Callable[[Mapping[str, str]], object | None] | None = None
    default_doc: str | None = None
    inverted: bool = False
    secret: bool = False

    def __post_init__(self) -> None:
        if self.parser.numeric != (self.bounds is not None):
            raise ValueError(f"Setting {self.name}: bounds go with numeric parsers, and every numeric one has them")
        if self.bounds is not None and not self.bounds.admits(self.default):
            raise ValueError(f"Setting {self.name}: the default {self.default!r} is out of its bounds")

    @property
    def accepts(self) -> str:
        """The accepted values in words, bounds included (the docs' "Accepted values")."""
        if self.bounds is None:
            return self.parser.accepts
        return f"{self.parser.accepts} {self.bounds.describe(self.parser.unit)}"

    def read(self, value: object) -> object:
        """``value`` (a keyword argument or an environment string) parsed and checked against the bounds.

        ``ValueError`` names the field and ``value`` as given (never a secret's)."""
        parsed = self.parser.parse(self.name, value)
        if self.bounds is not None and not self.bounds.admits(parsed):
            raise _bad(self.name, value, f"must be {self.bounds.describe(self.parser.unit)}")
        return parsed

    def source(self, given: object, environ: Mapping[str, str]) -> str | None:
        """The variable :meth:`resolve` reads (None: the keyword ``given``, or no variable is set). An empty value
        counts as unset, as the OpenTelemetry specification says of its variables; ours follow the same rule."""
        if given is not None:
            return None
        return next((variable for variable in self.variables if environ.get(variable, "") != ""), None)

    def resolve(self, given: object, environ: Mapping[str, str]) -> object:
        """The value from the keyword ``given`` (unless ``None``), else the first variable set in ``environ`` (an
        empty value is unset), else the default. An error from the environment also names the variable."""
        if given is not None:
            return self.read(given)
        variable = self.source(given, environ)
        if variable is not None:
            try:
                value = self.read(environ[variable])
            except ValueError as error:
                raise ValueError(f"{error} (from environment variable {variable})") from None
            return not value if self.inverted else value
        found = self.fallback(environ) if self.fallback is not None else None
        return self.default if found is None else found


#: The configuration table, one row per :class:`TelemetryConfig` field, in documentation order.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "server_id",
        (env.SERVER_ID,),
        "game-server",
        _TEXT,
        "This server's id: resource attribute `service.instance.id`, label `service_instance_id` in a fleet",
        fallback=_instance_id_or_host_name,
        default_doc="`service.instance.id` from `OTEL_RESOURCE_ATTRIBUTES`, else the host name",
    ),
    Setting(
        "service_name",
        (env.OTEL_SERVICE_NAME,),
        "game-server",
        _TEXT,
        "Resource attribute `service.name` (else `service.name` from `OTEL_RESOURCE_ATTRIBUTES`)",
        fallback=_resource_service_name,
    ),
    Setting(
        "collection_interval",
        (env.COLLECTION_INTERVAL,),
        1.0,
        _SECONDS,
        "Seconds between collections; rates are per second over the real interval",
        bounds=_INTERVAL,
    ),
    Setting(
        "api_send_interval",
        (env.API_SEND_INTERVAL,),
        5.0,
        _SECONDS,
        "Seconds between pushes to the API principal",
        bounds=_INTERVAL,
    ),
    Setting(
        "historical_retention",
        (env.HISTORICAL_RETENTION,),
        300,
        _INTEGER,
        "Snapshots kept in `get_history()`",
        bounds=_COUNT,
    ),
    Setting(
        "enable_prometheus_endpoint",
        (env.ENABLE_PROMETHEUS_ENDPOINT,),
        False,
        _BOOLEAN,
        "Serve `/metrics` and the health routes",
    ),
    Setting("prometheus_host", (env.PROMETHEUS_HOST,), "0.0.0.0", _TEXT, "Address the endpoint binds to"),
    Setting(
        "prometheus_port",
        (env.PROMETHEUS_PORT,),
        9090,
        _INTEGER,
        "Port of the endpoint; 0 picks a free one (`telemetry.prometheus_port`)",
        bounds=Bounds(0, 65535),
    ),
    Setting(
        "api_endpoint",
        (env.API_ENDPOINT,),
        None,
        _URL,
        "Base URL of the API principal; the push is off while unset",
    ),
    Setting(
        "server_token",
        (env.SERVER_TOKEN,),
        None,
        _TOKEN,
        "Bearer token sent to the API principal",
        secret=True,
    ),
    Setting(
        "target_tick_rate",
        (env.TARGET_TICK_RATE,),
        60.0,
        _NUMBER,
        "Ticks per second the loop aims for",
        bounds=Bounds(0, 10000, low_open=True),
    ),
    Setting(
        "percentile_window",
        (env.PERCENTILE_WINDOW,),
        60.0,
        _SECONDS,
        "Window of the in-process min/max/avg and percentiles",
        bounds=Bounds(0, 86400, low_open=True),
    ),
    Setting(
        "max_tracked_players",
        (env.MAX_TRACKED_PLAYERS,),
        2000,
        _INTEGER,
        "Players tracked individually (per-player ping series, sessions)",
        bounds=_COUNT,
    ),
    Setting(
        "attribute_limit",
        (env.ATTRIBUTE_LIMIT,),
        100,
        _INTEGER,
        "Distinct maps, entity types or ECS systems per attribute before `_overflow`",
        bounds=_COUNT,
    ),
    Setting(
        "enable_hardware_metrics",
        (env.ENABLE_HARDWARE_METRICS,),
        True,
        _BOOLEAN,
        "Sample CPU, memory, disk and network interfaces with psutil",
    ),
    Setting(
        "enable_metrics",
        (env.ENABLE_METRICS,),
        True,
        _BOOLEAN,
        "Record the statsd-style `telemetry.metrics` calls (off: each returns at once; `metrics.enabled` "
        "switches it at run time)",
    ),
    Setting(
        "export_player_series",
        (env.EXPORT_PLAYER_SERIES,),
        False,
        _BOOLEAN,
        "Export one ping series per player to Prometheus and OTLP (they always stay in `ServerMetrics` and the "
        "JSON payload); costs one series per tracked player on every scrape and export",
    ),
    Setting(
        "series_budget",
        (env.SERIES_BUDGET,),
        1000,
        _INTEGER,
        "Exported series (buckets included) this server may create; new ones beyond it are refused and counted "
        'in `telemetry_dropped_total{reason="cardinality"}`',
        bounds=Bounds(10, 1_000_000),
    ),
    Setting(
        "otlp_endpoint",
        (env.OTEL_EXPORTER_OTLP_ENDPOINT,),
        None,
        _OTLP_BASE,
        "Base endpoint of every signal without one of its own (HTTP appends `/v1/metrics`, `/v1/traces`, "
        "`/v1/logs`); OTLP is off while no endpoint is set (see the notes)",
    ),
    Setting(
        "otlp_metrics_endpoint",
        (env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,),
        None,
        _OTLP_SIGNAL,
        "Metrics go here, used as is (no path appended); else `otlp_endpoint`",
    ),
    Setting(
        "otlp_traces_endpoint",
        (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,),
        None,
        _OTLP_SIGNAL,
        "Spans (`@traced`) go here, used as is; else `otlp_endpoint`",
    ),
    Setting(
        "otlp_logs_endpoint",
        (env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,),
        None,
        _OTLP_SIGNAL,
        "Log records (events) go here, used as is; else `otlp_endpoint`",
    ),
    Setting(
        "otlp_protocol",
        (env.OTEL_EXPORTER_OTLP_PROTOCOL,),
        "http/protobuf",
        _PROTOCOL,
        "OTLP transport of every signal without a protocol of its own",
    ),
    Setting(
        "otlp_metrics_protocol",
        (env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,),
        None,
        _PROTOCOL,
        "OTLP transport of metrics; else `otlp_protocol`",
    ),
    Setting(
        "otlp_traces_protocol",
        (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,),
        None,
        _PROTOCOL,
        "OTLP transport of spans; else `otlp_protocol`",
    ),
    Setting(
        "otlp_logs_protocol",
        (env.OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,),
        None,
        _PROTOCOL,
        "OTLP transport of log records; else `otlp_protocol`",
    ),
    Setting(
        "api_buffer_size",
        (env.API_BUFFER_SIZE,),
        120,
        _INTEGER,
        "Payloads kept for the API principal while it is unreachable",
        bounds=_COUNT,
    ),
    Setting(
        "snapshot_file",
        (env.SNAPSHOT_FILE,),
        None,
        _PATH,
        "Append every snapshot to this file (rotated by size); off while unset",
    ),
    Setting(
        "snapshot_file_format",
        (env.SNAPSHOT_FILE_FORMAT,),
        "jsonl",
        _FILE_FORMAT,
        "One JSON payload per line, or length-delimited OTLP protobuf",
    ),
    Setting(
        "prometheus_textfile",
        (env.PROMETHEUS_TEXTFILE,),
        None,
        _PROM_PATH,
        "Write the Prometheus text exposition (the bytes `/metrics` serves) to this file every "
        "`file_export_interval`, replaced atomically, for node_exporter's textfile collector; off while unset",
    ),
    Setting(
        "json_export_file",
        (env.JSON_EXPORT_FILE,),
        None,
        _PATH,
        "Write every series of the frame as one JSON document to this file every `file_export_interval`, replaced "
        "atomically; off while unset",
    ),
    Setting(
        "file_export_interval",
        (env.FILE_EXPORT_INTERVAL,),
        30.0,
        _SECONDS,
        "Seconds between writes of `prometheus_textfile` and `json_export_file` (at most one per collection)",
        bounds=_INTERVAL,
    ),
    Setting(
        "allow_insecure_token",
        (env.ALLOW_INSECURE_TOKEN,),
        False,
        _BOOLEAN,
        "Allow sending `server_token` over plain `http://` to a host that is not loopback (refused otherwise)",
    ),
    Setting(
        "enable_alerts",
        (env.ENABLE_ALERTS,),
        True,
        _BOOLEAN,
        "Evaluate the spec's alert rules in process (see [alerting](alerting.md))",
    ),
    Setting(
        "alert_thresholds",
        (env.ALERT_THRESHOLDS,),
        _NO_THRESHOLDS,
        _THRESHOLDS,
        "Overrides of the spec's (warning, critical) thresholds; a pair ordered against the spec's is refused",
    ),
    Setting(
        "alert_for",
        (env.ALERT_FOR,),
        10.0,
        _SECONDS,
        "How long a condition must hold before its alert fires (Prometheus `for`)",
        bounds=_DELAY,
    ),
    Setting(
        "alert_cooldown",
        (env.ALERT_COOLDOWN,),
        300.0,
        _SECONDS,
        "Least time between repeated notifications of a firing alert",
        bounds=_DELAY,
    ),
    Setting(
        "enabled",
        (env.OTEL_SDK_DISABLED,),
        True,
        _OTEL_BOOLEAN,
        "Off: nothing is collected or exported; every call stays safe and cheap",
        inverted=True,
    ),
)

#: The names of every field, in documentation order.
CONFIG_FIELDS: tuple[str, ...] = tuple(setting.name for setting in SETTINGS)

#: The rows by field name.
_ROWS: Mapping[str, Setting] = MappingProxyType({row.name: row for row in SETTINGS})


# --- OTLP: one destination per signal, as the OpenTelemetry specification resolves it ------------------------------
#: The signals this SDK exports over OTLP.
Signal = Literal["metrics", "traces", "logs"]
OTLP_SIGNALS: tuple[Signal, ...] = ("metrics", "traces", "logs")

#: The specification's default ``OTEL_EXPORTER_OTLP_ENDPOINT`` per protocol.
OTLP_DEFAULT_ENDPOINTS: Mapping[str, str] = MappingProxyType(
    {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
)


@dataclass(frozen=True, slots=True)
class OtlpDestination:
    """Where one signal is exported over OTLP (:func:`otlp_destination`).

    ``endpoint`` is the URL to POST to (``http/protobuf``) or the gRPC target, as the official exporter takes it.
    ``insecure`` (gRPC): True for an ``http://`` endpoint, False for ``https://``, None for a scheme-less
    ``host:port``, which leaves it to the exporter (``OTEL_EXPORTER_OTLP_INSECURE`` and its per-signal forms, TLS
    unless one is ``true``). ``field`` names the setting the endpoint came from.
    """

    signal: Signal
    protocol: str
    endpoint: str
    insecure: bool | None
    field: str


def _has_scheme(endpoint: str) -> bool:
    return "://" in endpoint


def otlp_destination(config: TelemetryConfig, signal: Signal) -> OtlpDestination | None:
    """Where ``signal`` goes over OTLP for ``config``, or None when OTLP is off (no endpoint at all).

    As the OpenTelemetry specification ("OTLP Exporter", "Endpoint URLs for OTLP/HTTP") says: the signal's own
    protocol, else ``otlp_protocol``; the signal's own endpoint used as is (the root path ``/`` when it has no
    path), else ``otlp_endpoint`` with ``/v1/<signal>`` appended over HTTP (gRPC targets take no path).
    """
    own = getattr(config, f"otlp_{signal}_endpoint")
    base = config.otlp_endpoint
    if own is None and base is None:
        return None
    protocol = getattr(config, f"otlp_{signal}_protocol") or config.otlp_protocol
    field = f"otlp_{signal}_endpoint" if own is not None else "otlp_endpoint"
    endpoint = own if own is not None else base
    assert endpoint is not None
    insecure = None
    if protocol == "grpc":
        scheme = urlsplit(endpoint).scheme if _has_scheme(endpoint) else ""
        insecure = {"http": True, "https": False}.get(scheme)
    elif own is not None:
        endpoint = endpoint if urlsplit(endpoint).path else endpoint + "/"
    else:
        endpoint = f"{endpoint.rstrip('/')}/v1/{signal}"
    return OtlpDestination(signal, protocol, endpoint, insecure, field)


def _complete_otlp(config: TelemetryConfig, given: Mapping[str, object], environ: Mapping[str, str]) -> None:
    """The rules across the OTLP rows: with only signal endpoints set, ``otlp_endpoint`` takes the specification's
    default (the other signals go there, as the specification says); a scheme-less ``host:port`` is for gRPC only."""
    signal_endpoints = [getattr(config, f"otlp_{signal}_endpoint") for signal in OTLP_SIGNALS]
    if config.otlp_endpoint is None and any(endpoint is not None for endpoint in signal_endpoints):
        object.__setattr__(config, "otlp_endpoint", OTLP_DEFAULT_ENDPOINTS[config.otlp_protocol])
    for signal in OTLP_SIGNALS:
        destination = otlp_destination(config, signal)
        if destination is None or destination.protocol == "grpc":
            continue
        value = getattr(config, destination.field)
        if not _has_scheme(value):
            variable = _ROWS[destination.field].source(given[destination.field], environ)
            origin = f" (from environment variable {variable})" if variable else ""
            raise ValueError(
                f"TelemetryConfig.{destination.field}: {signal} are sent over {destination.protocol}, which needs an "
                f"http:// or https:// URL; host:port is for grpc, got {value!r}{origin}"
            )


class TelemetryConfig:
    """Settings for :func:`setup_telemetry`, immutable once built.

    Every argument is optional. For each one the value comes from, in order: the keyword argument, the environment
    variable named in the configuration reference (``GAME_TELEMETRY_*`` for ours, the standard ``OTEL_*`` ones
    where OpenTelemetry defines them), then the spec's default. Invalid or out-of-range values raise
    :class:`ValueError` naming the field and the value, whether they came from code or from the environment. The
    server token is never shown in ``repr()``, logs or error messages. Each field is a row of :data:`SETTINGS`.

    Durations are seconds (``float``) or :class:`datetime.timedelta`.
    """

    __slots__ = CONFIG_FIELDS

    server_id: str
    service_name: str
    collection_interval: float
    api_send_interval: float
    historical_retention: int
    enable_prometheus_endpoint: bool
    prometheus_host: str
    prometheus_port: int
    api_endpoint: str | None
    server_token: str | None
    target_tick_rate: float
    percentile_window: float
    max_tracked_players: int
    attribute_limit: int
    enable_hardware_metrics: bool
    enable_metrics: bool
    export_player_series: bool
    series_budget: int
    otlp_endpoint: str | None
    otlp_metrics_endpoint: str | None
    otlp_traces_endpoint: str | None
    otlp_logs_endpoint: str | None
    otlp_protocol: str
    otlp_metrics_protocol: str | None
    otlp_traces_protocol: str | None
    otlp_logs_protocol: str | None
    api_buffer_size: int
    snapshot_file: str | None
    snapshot_file_format: str
    prometheus_textfile: str | None
    json_export_file: str | None
    file_export_interval: float
    allow_insecure_token: bool
    enable_alerts: bool
    alert_thresholds: Mapping[str, tuple[float, float]]
    alert_for: float
    alert_cooldown: float
    enabled: bool

    def __init__(
        self,
        *,
        server_id: str | None = None,
        service_name: str | None = None,
        collection_interval: float | timedelta | None = None,
        api_send_interval: float | timedelta | None = None,
        historical_retention: int | None = None,
        enable_prometheus_endpoint: bool | None = None,
        prometheus_host: str | None = None,
        prometheus_port: int | None = None,
        api_endpoint: str | None = None,
        server_token: str | None = None,
        target_tick_rate: float | None = None,
        percentile_window: float | timedelta | None = None,
        max_tracked_players: int | None = None,
        attribute_limit: int | None = None,
        enable_hardware_metrics: bool | None = None,
        enable_metrics: bool | None = None,
        export_player_series: bool | None = None,
        series_budget: int | None = None,
        otlp_endpoint: str | None = None,
        otlp_metrics_endpoint: str | None = None,
        otlp_traces_endpoint: str | None = None,
        otlp_logs_endpoint: str | None = None,
        otlp_protocol: str | None = None,
        otlp_metrics_protocol: str | None = None,
        otlp_traces_protocol: str | None = None,
        otlp_logs_protocol: str | None = None,
        api_buffer_size: int | None = None,
        snapshot_file: str | None = None,
        snapshot_file_format: str | None = None,
        prometheus_textfile: str | None = None,
        json_export_file: str | None = None,
        file_export_interval: float | timedelta | None = None,
        allow_insecure_token: bool | None = None,
        enable_alerts: bool | None = None,
        alert_thresholds: Mapping[str, tuple[float, float]] | str | None = None,
        alert_for: float | timedelta | None = None,
        alert_cooldown: float | timedelta | None = None,
        enabled: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # The keyword arguments by name: the signature lists the table's fields (a test pins that), so each row
        # finds its own keyword here.
        given = dict(locals())
        environ = os.environ if environ is None else environ
        for setting in SETTINGS:
            object.__setattr__(self, setting.name, setting.resolve(given[setting.name], environ))
        _complete_otlp(self, given, environ)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"TelemetryConfig is immutable; use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("TelemetryConfig is immutable")

    def replace(self, **changes: Any) -> TelemetryConfig:
        """A copy with ``changes`` applied as keyword arguments (which win over the environment)."""
        unknown = set(changes) - set(CONFIG_FIELDS)
        if unknown:
            raise TypeError(f"TelemetryConfig has no field(s) {sorted(unknown)}")
        values: dict[str, Any] = {name: getattr(self, name) for name in CONFIG_FIELDS}
        values.update(changes)
        # Every field is already resolved: the environment must not refill the ones that are None.
        return TelemetryConfig(**values, environ={})

    def as_dict(self, *, include_secrets: bool = False) -> dict[str, object]:
        """The resolved settings; the token is replaced by ``"***"`` unless ``include_secrets``."""
        values = {setting.name: getattr(self, setting.name) for setting in SETTINGS}
        if not include_secrets:
            for setting in SETTINGS:
                if setting.secret and values[setting.name] is not None:
                    values[setting.name] = "***"
        return values

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelemetryConfig):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in CONFIG_FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(repr(getattr(self, n)) for n in CONFIG_FIELDS))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"TelemetryConfig({shown})"
