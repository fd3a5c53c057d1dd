"""Alerts evaluated in process on every frame: rules, their lifecycle, notifiers and the Prometheus rules file."""

from otel_telemetry.alerts.core import (
    DEFAULT_THRESHOLDS,
    Alert,
    AlertManager,
    AlertRule,
    AlertState,
    CallbackNotifier,
    LogNotifier,
    Notifier,
    Severity,
    WebhookNotifier,
    default_rules,
    parse_thresholds,
    prometheus_rules_yaml,
    promql_expression,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Alert",
    "AlertManager",
    "AlertRule",
    "AlertState",
    "CallbackNotifier",
    "LogNotifier",
    "Notifier",
    "Severity",
    "WebhookNotifier",
    "default_rules",
    "parse_thresholds",
    "prometheus_rules_yaml",
    "promql_expression",
]
