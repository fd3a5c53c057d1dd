"""TelemetryConfig: spec defaults, precedence keyword > environment > default, validation, secrecy."""

from __future__ import annotations

import inspect
import logging
import math
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from otel_telemetry import TelemetryConfig
from otel_telemetry import environment as env
from otel_telemetry.config import CONFIG_FIELDS, SETTINGS, Setting, otlp_destination


def test_spec_defaults_when_nothing_is_set() -> None:
    """With no keyword and no environment, every field has the spec's default."""
    config = TelemetryConfig(environ={})
    assert config.collection_interval == 1.0
    assert config.api_send_interval == 5.0
    assert config.historical_retention == 300
    assert config.enable_prometheus_endpoint is False
    assert config.prometheus_port == 9090
    assert config.api_endpoint is None
    assert config.server_token is None
    assert config.target_tick_rate == 60.0
    assert config.enabled is True
    assert config.otlp_endpoint is None
    assert (config.prometheus_textfile, config.json_export_file, config.file_export_interval) == (None, None, 30.0)


def test_environment_overrides_default_and_keyword_overrides_environment() -> None:
    """A GAME_TELEMETRY_* variable beats the default; a keyword argument beats the variable."""
    environ = {env.COLLECTION_INTERVAL: "2.5", env.PROMETHEUS_PORT: "9100", env.ENABLE_PROMETHEUS_ENDPOINT: "true"}
    from_env = TelemetryConfig(environ=environ)
    assert (from_env.collection_interval, from_env.prometheus_port, from_env.enable_prometheus_endpoint) == (
        2.5,
        9100,
        True,
    )
    explicit = TelemetryConfig(collection_interval=timedelta(milliseconds=500), prometheus_port=0, environ=environ)
    assert explicit.collection_interval == 0.5
    assert explicit.prometheus_port == 0
    assert explicit.enable_prometheus_endpoint is True


def test_standard_otel_variables_are_honoured() -> None:
    """OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_SDK_DISABLED mean what the OTel spec says."""
    config = TelemetryConfig(
        environ={
            "OTEL_SERVICE_NAME": "arena",
            "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=eu-7,deployment.environment=prod",
            "OTEL_SDK_DISABLED": "true",
        }
    )
    assert config.service_name == "arena"
    assert config.server_id == "eu-7"
    assert config.enabled is False
    assert TelemetryConfig(enabled=True, environ={"OTEL_SDK_DISABLED": "true"}).enabled is True


def test_otlp_settings_come_from_the_standard_variables() -> None:
    """Each standard OTLP variable fills its own field; a signal's own endpoint and protocol win for that signal."""
    config = TelemetryConfig(
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        }
    )
    assert (config.otlp_endpoint, config.otlp_metrics_endpoint) == ("http://collector:4318", "http://metrics:4318")
    assert (config.otlp_protocol, config.otlp_traces_protocol, config.otlp_metrics_protocol) == (
        "grpc",
        "http/protobuf",
        None,
    )
    metrics, traces = otlp_destination(config, "metrics"), otlp_destination(config, "traces")
    assert metrics is not None and (metrics.protocol, metrics.endpoint) == ("grpc", "http://metrics:4318")
    assert traces is not None and (traces.protocol, traces.endpoint) == (
        "http/protobuf",
        "http://collector:4318/v1/traces",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("collection_interval", 0),
        ("collection_interval", -1.0),
        ("api_send_interval", float("nan")),
        ("historical_retention", 0),
        ("prometheus_port", 70000),
        ("prometheus_port", -1),
        ("api_endpoint", "not a url"),
        ("api_endpoint", "ftp://example.org"),
        ("api_endpoint", "http://"),
        ("target_tick_rate", 0),
        ("otlp_protocol", "carrier-pigeon"),
        ("enable_prometheus_endpoint", "maybe"),
        ("prometheus_textfile", "metrics.txt"),
        ("prometheus_textfile", ""),
        ("json_export_file", "   "),
    ],
)
def test_invalid_keyword_values_name_the_field_and_the_value(field: str, value: object) -> None:
    """Each invalid keyword raises ValueError mentioning the field and the value."""
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(environ={}, **{field: value})  # type: ignore[arg-type]
    message = str(raised.value)
    assert field in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        (env.COLLECTION_INTERVAL, "soon", "collection_interval"),
        (env.PROMETHEUS_PORT, "nine thousand", "prometheus_port"),
        (env.HISTORICAL_RETENTION, "1.5", "historical_retention"),
        (env.API_SEND_INTERVAL, "-5", "api_send_interval"),
        (env.TARGET_TICK_RATE, "fast", "target_tick_rate"),
        (env.PROMETHEUS_TEXTFILE, "/var/metrics/prometheus.txt", "prometheus_textfile"),
        (env.FILE_EXPORT_INTERVAL, "0", "file_export_interval"),
    ],
)
def test_invalid_environment_values_name_field_value_and_variable(variable: str, value: str, field: str) -> None:
    """A non-numeric or out-of-range environment value raises ValueError naming field, value and variable."""
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(environ={variable: value})
    message = str(raised.value)
    assert field in message and repr(value) in message and variable in message


def test_token_never_appears_in_repr_errors_or_dict(caplog: pytest.LogCaptureFixture) -> None:
    """The server token is hidden in repr(), as_dict() and in the error for a bad token."""
    token = "s3cr3t-token-value"
    config = TelemetryConfig(server_token=token, environ={})
    assert config.server_token == token
    assert token not in repr(config)
    assert token not in str(config.as_dict())
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(server_token="   ", environ={})
    assert "server_token" in str(raised.value)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("config: %r", config)
    assert token not in caplog.text


def test_replace_applies_keywords_and_keeps_the_rest() -> None:
    """replace() returns a new config; the original is immutable."""
    config = TelemetryConfig(server_id="a", environ={})
    other = config.replace(server_id="b", prometheus_port=0)
    assert (config.server_id, other.server_id, other.prometheus_port) == ("a", "b", 0)
    with pytest.raises(AttributeError):
        config.server_id = "c"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.replace(no_such_field=1)


def test_urls_with_credentials_are_refused_without_echoing_them() -> None:
    """api_endpoint with user:password@ is refused, and the password never appears in the error."""
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(api_endpoint="https://admin:hunter2@principal.example", environ={})
    assert "api_endpoint" in str(raised.value) and "hunter2" not in str(raised.value)


def test_alert_thresholds_from_keyword_or_environment_and_bad_ones_named() -> None:
    """alert_thresholds accepts a mapping or the text form; unknown names and non-numbers are clear errors."""
    assert TelemetryConfig(alert_thresholds={"cpu": (70, 90)}, environ={}).alert_thresholds == {"cpu": (70.0, 90.0)}
    from_env = TelemetryConfig(environ={env.ALERT_THRESHOLDS: "cpu=70,90;tick_rate=50,45"})
    assert from_env.alert_thresholds == {"cpu": (70.0, 90.0), "tick_rate": (50.0, 45.0)}
    for bad in ("gpu=1,2", "cpu=fast,slow", "cpu=1"):
        with pytest.raises(ValueError) as raised:
            TelemetryConfig(environ={env.ALERT_THRESHOLDS: bad})
        assert "alert_thresholds" in str(raised.value) and env.ALERT_THRESHOLDS in str(raised.value)
    with pytest.raises(ValueError, match="finite"):
        TelemetryConfig(alert_thresholds={"cpu": (float("inf"), 95)}, environ={})


# --- The table: every row drives precedence, validation, bounds, repr and replace() --------------------------------

#: Per field: an environment text, the value it gives, and a keyword value unlike it (each unlike the default).
_SAMPLES: dict[str, tuple[str, object, object]] = {
    "server_id": ("eu-7", "eu-7", "us-1"),
    "service_name": ("arena", "arena", "lobby"),
    "collection_interval": ("2.5", 2.5, 0.5),
    "api_send_interval": ("10", 10.0, 2.0),
    "historical_retention": ("60", 60, 10),
    "enable_prometheus_endpoint": ("yes", True, False),
    "prometheus_host": ("127.0.0.1", "127.0.0.1", "::1"),
    "prometheus_port": ("9100", 9100, 0),
    "api_endpoint": ("https://principal.example", "https://principal.example", "http://127.0.0.1:8080"),
    "server_token": ("env-token", "env-token", "keyword-token"),
    "target_tick_rate": ("30", 30.0, 64.0),
    "percentile_window": ("120", 120.0, 10.0),
    "max_tracked_players": ("50", 50, 5),
    "attribute_limit": ("20", 20, 3),
    "enable_hardware_metrics": ("off", False, True),
    "enable_metrics": ("false", False, True),
    "export_player_series": ("true", True, False),
    "series_budget": ("5000", 5000, 20),
    "otlp_endpoint": ("http://collector:4318/", "http://collector:4318", "http://keyword:4318"),
    "otlp_metrics_endpoint": ("http://m:4318/custom/", "http://m:4318/custom/", "http://keyword:4318/v1/metrics"),
    "otlp_traces_endpoint": ("https://t.example/v1/traces", "https://t.example/v1/traces", "http://keyword:1/t"),
    "otlp_logs_endpoint": ("http://l:4318/logs", "http://l:4318/logs", "http://keyword:1/l"),
    "otlp_protocol": ("grpc", "grpc", "http/protobuf"),
    "otlp_metrics_protocol": ("grpc", "grpc", "http/protobuf"),
    "otlp_traces_protocol": ("GRPC", "grpc", "http/protobuf"),
    "otlp_logs_protocol": ("http/protobuf", "http/protobuf", "grpc"),
    "api_buffer_size": ("10", 10, 500),
    "snapshot_file": ("env.jsonl", "env.jsonl", "keyword.jsonl"),
    "snapshot_file_format": ("otlp", "otlp", "jsonl"),
    "prometheus_textfile": ("env.prom", "env.prom", "keyword.prom"),
    "json_export_file": ("env.json", "env.json", "keyword.json"),
    "file_export_interval": ("60", 60.0, 5.0),
    "allow_insecure_token": ("true", True, False),
    "enable_alerts": ("false", False, True),
    "alert_thresholds": ("cpu=70,90", {"cpu": (70.0, 90.0)}, {"memory": (50.0, 60.0)}),
    "alert_for": ("0", 0.0, 30.0),
    "alert_cooldown": ("60", 60.0, 0.0),
    "enabled": ("true", False, True),  # OTEL_SDK_DISABLED=true
}

_NUMERIC = {
    "series_budget",
    "collection_interval",
    "api_send_interval",
    "historical_retention",
    "prometheus_port",
    "target_tick_rate",
    "percentile_window",
    "max_tracked_players",
    "attribute_limit",
    "api_buffer_size",
    "alert_for",
    "alert_cooldown",
    "file_export_interval",
}


def _given(name: str, value: object, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
    """A config with the keyword ``name=value``, isolated from os.environ unless ``environ`` is given."""
    keywords: dict[str, Any] = {name: value}
    return TelemetryConfig(environ={} if environ is None else environ, **keywords)


def _rows() -> list[object]:
    return [pytest.param(setting, id=setting.name) for setting in SETTINGS]


def _bounded_rows() -> list[Setting]:
    return [setting for setting in SETTINGS if setting.bounds is not None]


def _step(setting: Setting, value: float, direction: float) -> float:
    """The next value past ``value`` towards ``direction``: 1 for integer fields, one float ulp otherwise."""
    if isinstance(setting.default, int):
        return int(value + direction)
    return math.nextafter(value, direction * math.inf)


def _outside(setting: Setting) -> list[float]:
    """The nearest refused values on both sides of the row's bounds."""
    bounds = setting.bounds
    assert bounds is not None
    below = bounds.low if bounds.low_open else _step(setting, bounds.low, -1)
    above = bounds.high if bounds.high_open else _step(setting, bounds.high, 1)
    return [below, above]


def _edges(setting: Setting) -> list[float]:
    """The extreme accepted values of the row's bounds."""
    bounds = setting.bounds
    assert bounds is not None
    low = _step(setting, bounds.low, 1) if bounds.low_open else bounds.low
    high = _step(setting, bounds.high, -1) if bounds.high_open else bounds.high
    return [low, high]


def _as_text(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _out_of_bounds() -> list[object]:
    return [
        pytest.param(setting, value, id=f"{setting.name}={value!r}")
        for setting in _bounded_rows()
        for value in _outside(setting)
    ]


def test_the_table_has_one_row_per_keyword_and_attribute() -> None:
    """CONFIG_FIELDS, the constructor's keywords and the typed attributes are the table's rows, in order."""
    assert tuple(setting.name for setting in SETTINGS) == CONFIG_FIELDS
    assert len(set(CONFIG_FIELDS)) == len(CONFIG_FIELDS)
    assert list(inspect.signature(TelemetryConfig).parameters) == [*CONFIG_FIELDS, "environ"]
    assert list(TelemetryConfig.__annotations__) == list(CONFIG_FIELDS)
    assert set(_SAMPLES) == set(CONFIG_FIELDS)


def test_every_numeric_field_has_bounds_that_admit_its_default() -> None:
    """Exactly the numeric fields are bounded, and each default lies within its bounds."""
    assert {setting.name for setting in _bounded_rows()} == _NUMERIC
    for setting in _bounded_rows():
        assert setting.bounds is not None and setting.bounds.admits(setting.default), setting.name


def test_the_table_reads_the_environment_module_constants() -> None:
    """Every variable of the table is a constant of otel_telemetry.environment; OWN_VARIABLES are ours, in order."""
    constants = {getattr(env, name) for name in dir(env) if name.isupper() and name != "PREFIX"}
    variables = [variable for setting in SETTINGS for variable in setting.variables]
    assert set(variables) <= constants
    assert len(set(variables)) == len(variables)
    assert tuple(v for v in variables if v.startswith(env.PREFIX)) == env.OWN_VARIABLES


@pytest.mark.parametrize("setting", _rows())
def test_each_row_resolves_keyword_then_environment_then_default(setting: Setting) -> None:
    """Per row: nothing set gives the default, a variable beats it, the keyword beats the variable."""
    text, from_text, keyword = _SAMPLES[setting.name]
    name = setting.name
    default = getattr(TelemetryConfig(environ={}), name)
    if name == "server_id":  # the host name, different on every machine
        assert default == (socket.gethostname() or setting.default)
    else:
        assert default == setting.default
    assert from_text != default and keyword != from_text
    for variable in setting.variables:
        assert getattr(TelemetryConfig(environ={variable: text}), name) == from_text, variable
    first = setting.variables[0]
    assert getattr(_given(name, keyword, {first: text}), name) == keyword
    for later in setting.variables[1:]:  # the first variable present wins
        assert getattr(TelemetryConfig(environ={first: text, later: str(keyword)}), name) == from_text


@pytest.mark.parametrize("setting", _rows())
def test_each_row_survives_replace_and_replace_applies_it(setting: Setting) -> None:
    """replace() keeps every resolved value (the environment is not read again) and applies the keyword."""
    environ = {setting.variables[0]: _SAMPLES[setting.name][0] for setting in SETTINGS}
    config = TelemetryConfig(environ=environ)
    assert config.replace() == config
    keyword = _SAMPLES[setting.name][2]
    changed = config.replace(**{setting.name: keyword})
    assert getattr(changed, setting.name) == keyword
    assert all(getattr(changed, n) == getattr(config, n) for n in CONFIG_FIELDS if n != setting.name)


@pytest.mark.parametrize(("setting", "value"), _out_of_bounds())
def test_out_of_bounds_keyword_is_refused_naming_field_value_and_bounds(setting: Setting, value: float) -> None:
    """Just past either bound, the keyword is refused; the message names the field, the value and the range."""
    assert setting.bounds is not None
    with pytest.raises(ValueError) as raised:
        _given(setting.name, value)
    message = str(raised.value)
    assert f"TelemetryConfig.{setting.name}" in message and repr(value) in message
    assert setting.bounds.describe(setting.parser.unit) in message


@pytest.mark.parametrize(("setting", "value"), _out_of_bounds())
def test_out_of_bounds_environment_value_is_refused_naming_the_variable(setting: Setting, value: float) -> None:
    """The same values from the environment are refused too, naming field, value, range and variable."""
    assert setting.bounds is not None
    for variable in setting.variables:
        text = _as_text(value)
        with pytest.raises(ValueError) as raised:
            TelemetryConfig(environ={variable: text})
        message = str(raised.value)
        assert f"TelemetryConfig.{setting.name}" in message and repr(text) in message and variable in message
        assert setting.bounds.describe(setting.parser.unit) in message


@pytest.mark.parametrize("setting", [pytest.param(s, id=s.name) for s in _bounded_rows()])
def test_the_bounds_themselves_are_accepted(setting: Setting) -> None:
    """The extreme values inside the bounds are accepted, as keywords and from the environment."""
    for value in _edges(setting):
        assert getattr(_given(setting.name, value), setting.name) == value
        from_env = TelemetryConfig(environ={setting.variables[0]: _as_text(value)})
        assert getattr(from_env, setting.name) == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("collection_interval", 1e12),  # used to kill the collection thread with OverflowError
        ("collection_interval", 1e-9),  # used to burn a core
        ("api_send_interval", 1e12),
        ("api_send_interval", timedelta(hours=2)),
        ("percentile_window", 0),
        ("historical_retention", 10**9),
        ("target_tick_rate", 1e6),
        ("alert_for", -1),
        ("alert_cooldown", timedelta(days=2)),
        ("api_buffer_size", 0),
        ("max_tracked_players", 0),
        ("attribute_limit", 10**7),
        ("collection_interval", float("inf")),
    ],
)
def test_runaway_numbers_are_refused(field: str, value: object) -> None:
    """The values that used to break the background threads, and their like, are refused at setup."""
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(environ={}, **{field: value})  # type: ignore[arg-type]
    assert field in str(raised.value) and repr(value) in str(raised.value)


@pytest.mark.parametrize("setting", [pytest.param(s, id=s.name) for s in SETTINGS if s.secret])
def test_secret_rows_never_show_their_value(setting: Setting, caplog: pytest.LogCaptureFixture) -> None:
    """A secret from a keyword or the environment is hidden in repr(), str(), as_dict() and logs."""
    secret = "hunter2-very-secret"
    for config in (
        _given(setting.name, secret),
        TelemetryConfig(environ={setting.variables[0]: secret}),
    ):
        assert getattr(config, setting.name) == secret
        assert config.as_dict(include_secrets=True)[setting.name] == secret
        assert secret not in repr(config) and secret not in str(config) and secret not in str(config.as_dict())
        assert f"{setting.name}='***'" in repr(config)
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("test").info("config: %r %s", config, config)
    assert secret not in caplog.text
    with pytest.raises(ValueError) as raised:
        TelemetryConfig(environ={setting.variables[0]: "  "})
    assert setting.name in str(raised.value) and setting.variables[0] in str(raised.value)


@pytest.mark.parametrize(("pair", "key"), [((95, 80), "cpu"), ((50, 55), "tick_rate"), ((300, 100), "player_ping_p95")])
def test_inverted_thresholds_are_refused_by_the_config(pair: tuple[float, float], key: str) -> None:
    """A warning threshold beyond the critical one (below it for tick_rate) is refused, naming the field."""
    with pytest.raises(ValueError, match="inverted") as raised:
        TelemetryConfig(alert_thresholds={key: pair}, environ={})
    assert "alert_thresholds" in str(raised.value) and key in str(raised.value)
    text = f"{key}={pair[0]},{pair[1]}"
    with pytest.raises(ValueError, match="inverted") as raised:
        TelemetryConfig(environ={env.ALERT_THRESHOLDS: text})
    assert env.ALERT_THRESHOLDS in str(raised.value)


@pytest.mark.parametrize("setting", _rows())
def test_an_empty_variable_is_unset(setting: Setting) -> None:
    """For every row, ours and the standard ones alike, "" gives what an unset variable gives (the OpenTelemetry
    specification's rule: "The SDK MUST interpret an empty value ... the same way as when the variable is unset");
    an empty variable before a set one in the row's order is skipped."""
    for variable in setting.variables:
        assert TelemetryConfig(environ={variable: ""}) == TelemetryConfig(environ={}), variable


def test_whitespace_is_a_value_not_an_empty_one() -> None:
    """Only "" is unset: "  " is a value, refused where the row needs one (a mistake, not a way to unset)."""
    with pytest.raises(ValueError, match="server_id"):
        TelemetryConfig(environ={env.SERVER_ID: "  "})


@pytest.mark.parametrize(("text", "enabled"), [("true", False), ("TRUE", False), ("false", True), ("", True)])
def test_otel_sdk_disabled_is_an_opentelemetry_boolean(text: str, enabled: bool) -> None:
    """OTEL_SDK_DISABLED: only "true" (any case) disables; "false" and "" do not."""
    assert TelemetryConfig(environ={env.OTEL_SDK_DISABLED: text}).enabled is enabled


def test_otel_sdk_disabled_reads_any_other_value_as_false_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The specification allows no other true value: "1" or "yes" leave the SDK enabled, and a warning says so."""
    with caplog.at_level(logging.WARNING, logger="otel_telemetry.config"):
        assert TelemetryConfig(environ={env.OTEL_SDK_DISABLED: "1"}).enabled is True
    assert "'1' is not true or false" in caplog.text


def test_only_signal_endpoints_give_the_generic_endpoint_the_specifications_default() -> None:
    """A keyword or variable for one signal's endpoint turns OTLP on; the generic endpoint is the spec's default."""
    assert TelemetryConfig(otlp_traces_endpoint="http://t:4318/v1/traces", environ={}).otlp_endpoint == (
        "http://localhost:4318"
    )
    grpc = TelemetryConfig(otlp_logs_endpoint="logs:4317", otlp_protocol="grpc", environ={})
    assert grpc.otlp_endpoint == "http://localhost:4317"
    assert TelemetryConfig(environ={}).otlp_endpoint is None


@pytest.mark.parametrize("url", ["http://exa mple.com", "http://example.com/a b", "http://exa\tmple.com"])
def test_a_url_with_spaces_or_control_characters_is_refused(url: str) -> None:
    """A URL that no HTTP client could send is refused at the boundary, naming the field."""
    with pytest.raises(ValueError, match=r"api_endpoint: must not contain spaces"):
        TelemetryConfig(environ={}, api_endpoint=url)
