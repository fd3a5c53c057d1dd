"""Alerts evaluated in process on every frame: rules, their lifecycle, notifiers, PromQL and the ``ALERTS`` gauge.

* :mod:`~otel_telemetry.alerts.model`: :class:`Severity`, :class:`AlertState`, :class:`AlertRule`, :class:`Alert`
  (with :mod:`~otel_telemetry.alerts.paths`, :mod:`~otel_telemetry.alerts.names`, the ``ServerMetrics`` paths and
  the metric names a rule may watch, and :mod:`~otel_telemetry.alerts.templates`);
* :mod:`~otel_telemetry.alerts.rules`: :func:`default_rules`, the spec's ten (thresholds from the configuration);
* :mod:`~otel_telemetry.alerts.manager`: :class:`AlertManager`, the pending/firing/resolved lifecycle, manual
  resolution and ``check_metric``; :mod:`~otel_telemetry.alerts.stats`: :class:`AlertStats`;
* :mod:`~otel_telemetry.alerts.sources` and :mod:`~otel_telemetry.alerts.samples`: a metric-name rule's statistic,
  read from the frame's metrics and histograms, over its window;
* :mod:`~otel_telemetry.alerts.notifiers`: :class:`Notifier`, :class:`CallbackNotifier`, :class:`LogNotifier`,
  :class:`WebhookNotifier`;
* :mod:`~otel_telemetry.alerts.evaluator`: :class:`AlertEvaluator` (the frame listener), and the ``alerts`` gauge
  (:func:`alert_metrics` for a frame, :func:`register_alert_metric` for a meter);
* :mod:`~otel_telemetry.alerts.promql`: :func:`promql_expression` and :func:`rule_promql`, derived from the catalog
  and the exported names. Evaluating rules needs no PromQL: the module loads on the first use of either name.

The Prometheus rules file is a tool, not runtime: :func:`prometheus_rules_yaml` and :func:`write_rules_file` live in
:mod:`otel_telemetry.tools.rules` (``otel-telemetry rules``). They stay importable from here for compatibility,
loaded from there on first use only: importing this package never loads the tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_telemetry._lazy import lazy_names
from otel_telemetry.alerts.evaluator import AlertEvaluator, alert_metrics, register_alert_metric
from otel_telemetry.alerts.manager import AlertManager
from otel_telemetry.alerts.model import Alert, AlertRule, AlertState, Severity
from otel_telemetry.alerts.notifiers import CallbackNotifier, LogNotifier, Notifier, WebhookNotifier
from otel_telemetry.alerts.rules import DEFAULT_THRESHOLDS, default_rules, parse_thresholds

if TYPE_CHECKING:
    from otel_telemetry.alerts.promql import promql_expression, rule_promql
    from otel_telemetry.alerts.stats import AlertCounts, AlertStats, DurationStats
    from otel_telemetry.tools.rules import prometheus_rules_yaml, write_rules_file

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Alert",
    "AlertCounts",
    "AlertEvaluator",
    "AlertManager",
    "AlertRule",
    "AlertState",
    "AlertStats",
    "CallbackNotifier",
    "DurationStats",
    "LogNotifier",
    "Notifier",
    "Severity",
    "WebhookNotifier",
    "alert_metrics",
    "default_rules",
    "parse_thresholds",
    "prometheus_rules_yaml",
    "promql_expression",
    "register_alert_metric",
    "rule_promql",
    "write_rules_file",
]

#: Names loaded only when asked for: the PromQL derivation and the statistics' types (neither is needed to evaluate
#: rules), and the names the tools layer defines (no module of alerts/ imports otel_telemetry.tools).
_LAZY: dict[str, str] = {
    **dict.fromkeys(("promql_expression", "rule_promql"), "otel_telemetry.alerts.promql"),
    **dict.fromkeys(("AlertCounts", "AlertStats", "DurationStats"), "otel_telemetry.alerts.stats"),
    **dict.fromkeys(("prometheus_rules_yaml", "write_rules_file"), "otel_telemetry.tools.rules"),
}

__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY, __all__)
