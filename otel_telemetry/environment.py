"""Every environment variable the SDK reads, as documented constants.

Our own variables share one prefix, ``GAME_TELEMETRY_``. The standard OpenTelemetry variables
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SDK_DISABLED``, ``OTEL_EXPORTER_OTLP_*``) keep their
standard names and meanings. Precedence everywhere: keyword argument, then environment, then default. An empty
value is the same as an unset variable, for ours as for the standard ones (as the OpenTelemetry specification says of
its own: "The SDK MUST interpret an empty value of an environment variable the same way as when the variable is
unset").
"""

from __future__ import annotations

PREFIX = "GAME_TELEMETRY_"

#: ``TelemetryConfig.server_id``; also exported as the ``service.instance.id`` resource attribute.
SERVER_ID = PREFIX + "SERVER_ID"
#: ``TelemetryConfig.collection_interval`` in seconds (spec default 1).
COLLECTION_INTERVAL = PREFIX + "COLLECTION_INTERVAL"
#: ``TelemetryConfig.api_send_interval`` in seconds (spec default 5).
API_SEND_INTERVAL = PREFIX + "API_SEND_INTERVAL"
#: ``TelemetryConfig.historical_retention``, a number of snapshots (spec default 300).
HISTORICAL_RETENTION = PREFIX + "HISTORICAL_RETENTION"
#: ``TelemetryConfig.enable_prometheus_endpoint`` (true/false, spec default false).
ENABLE_PROMETHEUS_ENDPOINT = PREFIX + "ENABLE_PROMETHEUS_ENDPOINT"
#: ``TelemetryConfig.prometheus_host``.
PROMETHEUS_HOST = PREFIX + "PROMETHEUS_HOST"
#: ``TelemetryConfig.prometheus_port`` (spec default 9090; 0 picks a free port).
PROMETHEUS_PORT = PREFIX + "PROMETHEUS_PORT"
#: ``TelemetryConfig.api_endpoint``, the API principal's base URL.
API_ENDPOINT = PREFIX + "API_ENDPOINT"
#: ``TelemetryConfig.server_token``, the bearer token for the API principal. Never logged.
SERVER_TOKEN = PREFIX + "SERVER_TOKEN"
#: ``TelemetryConfig.target_tick_rate`` in ticks per second (default 60).
TARGET_TICK_RATE = PREFIX + "TARGET_TICK_RATE"
#: ``TelemetryConfig.percentile_window`` in seconds (default 60).
PERCENTILE_WINDOW = PREFIX + "PERCENTILE_WINDOW"
#: ``TelemetryConfig.max_tracked_players`` (default 2000).
MAX_TRACKED_PLAYERS = PREFIX + "MAX_TRACKED_PLAYERS"
#: ``TelemetryConfig.attribute_limit`` (default 100).
ATTRIBUTE_LIMIT = PREFIX + "ATTRIBUTE_LIMIT"
#: ``TelemetryConfig.enable_hardware_metrics`` (true/false, default true).
ENABLE_HARDWARE_METRICS = PREFIX + "ENABLE_HARDWARE_METRICS"
#: ``TelemetryConfig.enable_metrics`` (true/false, default true): record the statsd-style ``telemetry.metrics``.
ENABLE_METRICS = PREFIX + "ENABLE_METRICS"

#: ``TelemetryConfig.export_player_series`` (true/false, default false): export one series per player (ping).
EXPORT_PLAYER_SERIES = PREFIX + "EXPORT_PLAYER_SERIES"
#: ``TelemetryConfig.series_budget``: exported series this server may create (default 1000).
SERIES_BUDGET = PREFIX + "SERIES_BUDGET"

#: ``TelemetryConfig.api_buffer_size``: payloads kept for the API principal while it is unreachable (default 120).
API_BUFFER_SIZE = PREFIX + "API_BUFFER_SIZE"
#: ``TelemetryConfig.snapshot_file``: append every snapshot to this file (rotated by size); unset = off.
SNAPSHOT_FILE = PREFIX + "SNAPSHOT_FILE"
#: ``TelemetryConfig.snapshot_file_format``: ``jsonl`` (the JSON payload per line) or ``otlp`` (length-delimited).
SNAPSHOT_FILE_FORMAT = PREFIX + "SNAPSHOT_FILE_FORMAT"
#: ``TelemetryConfig.prometheus_textfile``: write the Prometheus text exposition to this ``.prom`` file; unset = off.
PROMETHEUS_TEXTFILE = PREFIX + "PROMETHEUS_TEXTFILE"
#: ``TelemetryConfig.json_export_file``: write the frame as one JSON document to this file; unset = off.
JSON_EXPORT_FILE = PREFIX + "JSON_EXPORT_FILE"
#: ``TelemetryConfig.file_export_interval``: seconds between writes of those two files (default 30).
FILE_EXPORT_INTERVAL = PREFIX + "FILE_EXPORT_INTERVAL"

#: ``TelemetryConfig.allow_insecure_token`` (true/false, default false): send the token over plain http to a
#: host that is not loopback.
ALLOW_INSECURE_TOKEN = PREFIX + "ALLOW_INSECURE_TOKEN"

#: ``TelemetryConfig.enable_alerts`` (true/false, default true): evaluate the alert rules in process.
ENABLE_ALERTS = PREFIX + "ENABLE_ALERTS"
#: ``TelemetryConfig.alert_thresholds``: overrides of the spec's thresholds, ``cpu=80,95;tick_rate=58,55``.
ALERT_THRESHOLDS = PREFIX + "ALERT_THRESHOLDS"
#: ``TelemetryConfig.alert_for``: seconds a condition must hold before an alert fires (default 10).
ALERT_FOR = PREFIX + "ALERT_FOR"
#: ``TelemetryConfig.alert_cooldown``: seconds between repeated notifications of a firing alert (default 300).
ALERT_COOLDOWN = PREFIX + "ALERT_COOLDOWN"

# Standard OpenTelemetry variables we honour.
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
#: The base endpoint of every signal: ``/v1/metrics``, ``/v1/traces``, ``/v1/logs`` are appended over HTTP.
OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
#: A signal's own endpoint, used as is (the specification's "per-signal" endpoints).
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTEL_EXPORTER_OTLP_LOGS_ENDPOINT = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
#: The transport of every signal (``grpc`` or ``http/protobuf``), and each signal's own, which wins over it.
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
OTEL_EXPORTER_OTLP_LOGS_PROTOCOL = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"

#: Every variable with our prefix, in the order the configuration reference lists them.
OWN_VARIABLES = (
    SERVER_ID,
    COLLECTION_INTERVAL,
    API_SEND_INTERVAL,
    HISTORICAL_RETENTION,
    ENABLE_PROMETHEUS_ENDPOINT,
    PROMETHEUS_HOST,
    PROMETHEUS_PORT,
    API_ENDPOINT,
    SERVER_TOKEN,
    TARGET_TICK_RATE,
    PERCENTILE_WINDOW,
    MAX_TRACKED_PLAYERS,
    ATTRIBUTE_LIMIT,
    ENABLE_HARDWARE_METRICS,
    ENABLE_METRICS,
    EXPORT_PLAYER_SERIES,
    SERIES_BUDGET,
    API_BUFFER_SIZE,
    SNAPSHOT_FILE,
    SNAPSHOT_FILE_FORMAT,
    PROMETHEUS_TEXTFILE,
    JSON_EXPORT_FILE,
    FILE_EXPORT_INTERVAL,
    ALLOW_INSECURE_TOKEN,
    ENABLE_ALERTS,
    ALERT_THRESHOLDS,
    ALERT_FOR,
    ALERT_COOLDOWN,
)
