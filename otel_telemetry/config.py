"""``TelemetryConfig``: the spec's settings, resolved keyword > environment > default, validated on entry."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, TypeVar

from otel_telemetry import environment as env
from otel_telemetry.delivery import check_http_url

_T = TypeVar("_T")

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
    if not math.isfinite(seconds) or seconds <= 0:
        raise _bad(field, value, "must be a positive, finite number of seconds")
    return seconds


def _parse_nonnegative_seconds(field: str, value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0.0"):
        return 0.0
    return _parse_seconds(field, value)


_NO_THRESHOLDS: Mapping[str, tuple[float, float]] = MappingProxyType({})


def _parse_thresholds(field: str, value: object) -> Mapping[str, tuple[float, float]]:
    """``{"cpu": (80, 95), ...}`` or the text form ``"cpu=80,95;tick_rate=58,55"`` (warning, critical).

    The text form and the known names are the alert module's own (:func:`parse_thresholds`).
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
        parsed[key] = (warning, critical)
    return MappingProxyType(parsed)


def _parse_int(field: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise _bad(field, value, "expected an integer")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _bad(field, value, "expected an integer") from None
    if not isinstance(value, int):
        raise _bad(field, value, "expected an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise _bad(field, value, f"must be {bounds}")
    return value


def _parse_bool(field: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _bad(field, value, "expected true or false")


def _parse_rate(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _bad(field, value, "expected a number")
    try:
        rate = float(value)
    except ValueError:
        raise _bad(field, value, "expected a number") from None
    if not math.isfinite(rate) or rate <= 0:
        raise _bad(field, value, "must be a positive, finite number")
    return rate


def _parse_url(field: str, value: object) -> str:
    return check_http_url("TelemetryConfig", field, value)[0]


def _parse_text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(field, value, "expected a non-empty string")
    return value.strip()


_PROTOCOLS = ("grpc", "http/protobuf")
_FILE_FORMATS = ("jsonl", "otlp")


def _parse_file_format(field: str, value: object) -> str:
    if not isinstance(value, str) or value.strip() not in _FILE_FORMATS:
        raise _bad(field, value, f"expected one of {', '.join(_FILE_FORMATS)}")
    return value.strip()


def _parse_protocol(field: str, value: object) -> str:
    if not isinstance(value, str) or value.strip() not in _PROTOCOLS:
        raise _bad(field, value, f"expected one of {', '.join(_PROTOCOLS)}")
    return value.strip()


def _parse_token(value: object) -> str:
    # The token itself never appears in an error message.
    if not isinstance(value, str) or not value.strip():
        raise ValueError("TelemetryConfig.server_token: expected a non-empty string (value not shown)")
    return value.strip()


def _resource_attributes_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Parse ``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, values percent-decoded)."""
    from urllib.parse import unquote

    attributes: dict[str, str] = {}
    for item in environ.get(env.OTEL_RESOURCE_ATTRIBUTES, "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    return attributes


_FIELDS: tuple[str, ...] = (
    "server_id",
    "service_name",
    "collection_interval",
    "api_send_interval",
    "historical_retention",
    "enable_prometheus_endpoint",
    "prometheus_host",
    "prometheus_port",
    "api_endpoint",
    "server_token",
    "target_tick_rate",
    "percentile_window",
    "max_tracked_players",
    "attribute_limit",
    "enable_hardware_metrics",
    "otlp_endpoint",
    "otlp_protocol",
    "api_buffer_size",
    "snapshot_file",
    "snapshot_file_format",
    "enable_alerts",
    "alert_thresholds",
    "alert_for",
    "alert_cooldown",
    "enabled",
)


class TelemetryConfig:
    """Settings for :func:`setup_telemetry`, immutable once built.

    Every argument is optional. For each one the value comes from, in order: the keyword argument, the environment
    variable named in the configuration reference (``GAME_TELEMETRY_*`` for ours, the standard ``OTEL_*`` ones
    where OpenTelemetry defines them), then the spec's default. Invalid values raise :class:`ValueError` naming the
    field and the value, whether they came from code or from the environment. The server token is never shown
    in ``repr()``, logs or error messages.

    Durations are seconds (``float``) or :class:`datetime.timedelta`.
    """

    __slots__ = _FIELDS

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
    otlp_endpoint: str | None
    otlp_protocol: str
    api_buffer_size: int
    snapshot_file: str | None
    snapshot_file_format: str
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
        otlp_endpoint: str | None = None,
        otlp_protocol: str | None = None,
        api_buffer_size: int | None = None,
        snapshot_file: str | None = None,
        snapshot_file_format: str | None = None,
        enable_alerts: bool | None = None,
        alert_thresholds: Mapping[str, tuple[float, float]] | str | None = None,
        alert_for: float | timedelta | None = None,
        alert_cooldown: float | timedelta | None = None,
        enabled: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ

        def pick(
            field: str, given: object, variable: str | None, default: _T, parse: Callable[[str, object], _T]
        ) -> _T:
            if given is not None:
                return parse(field, given)
            if variable is not None and variable in environ:
                try:
                    return parse(field, environ[variable])
                except ValueError as error:
                    raise ValueError(f"{error} (from environment variable {variable})") from None
            return default

        set_ = object.__setattr__
        resource_env = _resource_attributes_from_env(environ)
        set_(
            self,
            "server_id",
            pick(
                "server_id",
                server_id,
                env.SERVER_ID,
                resource_env.get("service.instance.id") or socket.gethostname() or "game-server",
                _parse_text,
            ),
        )
        set_(
            self,
            "service_name",
            pick(
                "service_name",
                service_name,
                env.OTEL_SERVICE_NAME,
                resource_env.get("service.name", "game-server"),
                _parse_text,
            ),
        )
        set_(
            self,
            "collection_interval",
            pick("collection_interval", collection_interval, env.COLLECTION_INTERVAL, 1.0, _parse_seconds),
        )
        set_(
            self,
            "api_send_interval",
            pick("api_send_interval", api_send_interval, env.API_SEND_INTERVAL, 5.0, _parse_seconds),
        )
        set_(
            self,
            "historical_retention",
            pick(
                "historical_retention",
                historical_retention,
                env.HISTORICAL_RETENTION,
                300,
                lambda f, v: _parse_int(f, v, 1),
            ),
        )
        set_(
            self,
            "enable_prometheus_endpoint",
            pick(
                "enable_prometheus_endpoint",
                enable_prometheus_endpoint,
                env.ENABLE_PROMETHEUS_ENDPOINT,
                False,
                _parse_bool,
            ),
        )
        set_(
            self,
            "prometheus_host",
            pick("prometheus_host", prometheus_host, env.PROMETHEUS_HOST, "0.0.0.0", _parse_text),
        )
        set_(
            self,
            "prometheus_port",
            pick(
                "prometheus_port",
                prometheus_port,
                env.PROMETHEUS_PORT,
                9090,
                lambda f, v: _parse_int(f, v, 0, 65535),
            ),
        )
        set_(self, "api_endpoint", pick("api_endpoint", api_endpoint, env.API_ENDPOINT, None, _parse_url))
        set_(
            self,
            "server_token",
            pick("server_token", server_token, env.SERVER_TOKEN, None, lambda _f, v: _parse_token(v)),
        )
        set_(
            self,
            "target_tick_rate",
            pick("target_tick_rate", target_tick_rate, env.TARGET_TICK_RATE, 60.0, _parse_rate),
        )
        set_(
            self,
            "percentile_window",
            pick("percentile_window", percentile_window, env.PERCENTILE_WINDOW, 60.0, _parse_seconds),
        )
        set_(
            self,
            "max_tracked_players",
            pick(
                "max_tracked_players",
                max_tracked_players,
                env.MAX_TRACKED_PLAYERS,
                2000,
                lambda f, v: _parse_int(f, v, 1),
            ),
        )
        set_(
            self,
            "attribute_limit",
            pick("attribute_limit", attribute_limit, env.ATTRIBUTE_LIMIT, 100, lambda f, v: _parse_int(f, v, 1)),
        )
        set_(
            self,
            "enable_hardware_metrics",
            pick(
                "enable_hardware_metrics",
                enable_hardware_metrics,
                env.ENABLE_HARDWARE_METRICS,
                True,
                _parse_bool,
            ),
        )
        # OTLP: the standard variables, metrics-specific first. None means OTLP export is off.
        otlp_env = env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT
        if otlp_env not in environ:
            otlp_env = env.OTEL_EXPORTER_OTLP_ENDPOINT
        set_(self, "otlp_endpoint", pick("otlp_endpoint", otlp_endpoint, otlp_env, None, _parse_url))
        protocol_env = env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL
        if protocol_env not in environ:
            protocol_env = env.OTEL_EXPORTER_OTLP_PROTOCOL
        set_(
            self,
            "otlp_protocol",
            pick("otlp_protocol", otlp_protocol, protocol_env, "http/protobuf", _parse_protocol),
        )
        set_(
            self,
            "api_buffer_size",
            pick("api_buffer_size", api_buffer_size, env.API_BUFFER_SIZE, 120, lambda f, v: _parse_int(f, v, 1)),
        )
        set_(self, "snapshot_file", pick("snapshot_file", snapshot_file, env.SNAPSHOT_FILE, None, _parse_text))
        set_(
            self,
            "snapshot_file_format",
            pick("snapshot_file_format", snapshot_file_format, env.SNAPSHOT_FILE_FORMAT, "jsonl", _parse_file_format),
        )
        set_(self, "enable_alerts", pick("enable_alerts", enable_alerts, env.ENABLE_ALERTS, True, _parse_bool))
        set_(
            self,
            "alert_thresholds",
            pick("alert_thresholds", alert_thresholds, env.ALERT_THRESHOLDS, _NO_THRESHOLDS, _parse_thresholds),
        )
        set_(self, "alert_for", pick("alert_for", alert_for, env.ALERT_FOR, 10.0, _parse_nonnegative_seconds))
        set_(
            self,
            "alert_cooldown",
            pick("alert_cooldown", alert_cooldown, env.ALERT_COOLDOWN, 300.0, _parse_nonnegative_seconds),
        )
        # OTEL_SDK_DISABLED=true turns the SDK off; the keyword wins over it, as everywhere.
        if enabled is not None:
            set_(self, "enabled", _parse_bool("enabled", enabled))
        else:
            set_(self, "enabled", not _parse_bool("enabled", environ.get(env.OTEL_SDK_DISABLED, "false")))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"TelemetryConfig is immutable; use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("TelemetryConfig is immutable")

    def replace(self, **changes: Any) -> TelemetryConfig:
        """A copy with ``changes`` applied as keyword arguments (which win over the environment)."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise TypeError(f"TelemetryConfig has no field(s) {sorted(unknown)}")
        values: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        values.update(changes)
        # Every field is already resolved: the environment must not refill the ones that are None.
        return TelemetryConfig(**values, environ={})

    def as_dict(self, *, include_secrets: bool = False) -> dict[str, object]:
        """The resolved settings; the token is replaced by ``"***"`` unless ``include_secrets``."""
        values = {name: getattr(self, name) for name in _FIELDS}
        if not include_secrets and values["server_token"] is not None:
            values["server_token"] = "***"
        return values

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelemetryConfig):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(repr(getattr(self, n)) for n in _FIELDS))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"TelemetryConfig({shown})"


#: The names of every field, in documentation order.
CONFIG_FIELDS = _FIELDS
