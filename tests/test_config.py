"""TelemetryConfig: spec defaults, precedence keyword > environment > default, validation, secrecy."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from otel_telemetry import TelemetryConfig
from otel_telemetry import environment as env


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
    """The metrics-specific OTLP variables win over the generic ones."""
    config = TelemetryConfig(
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
    )
    assert config.otlp_endpoint == "http://metrics:4318"
    assert config.otlp_protocol == "grpc"


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
