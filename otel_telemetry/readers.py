"""Metric readers that also receive the SDK's produced histograms and per-player series.

Pass them to ``setup_telemetry(metric_readers=[...])``. A plain OpenTelemetry reader would receive only the
observable instruments: the Python SDK has no MetricProducer hook, so our readers merge those metrics themselves.
"""

from otel_telemetry._readers import (
    LatestMetricsExporter,
    ProducingInMemoryReader,
    ProducingPeriodicReader,
    PrometheusReader,
)

__all__ = ["LatestMetricsExporter", "ProducingInMemoryReader", "ProducingPeriodicReader", "PrometheusReader"]
