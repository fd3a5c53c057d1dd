"""A frame as OTLP protobuf bytes (``ExportMetricsServiceRequest``), and back, with the official classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.sdk.metrics.export import MetricsData


def encode_otlp_metrics(metrics_data: MetricsData) -> bytes:
    """``metrics_data`` as the bytes an OTLP/HTTP exporter would POST."""
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    return encode_metrics(metrics_data).SerializeToString()  # type: ignore[no-any-return]


def decode_otlp_metrics(data: bytes) -> ExportMetricsServiceRequest:
    """Read back OTLP protobuf bytes (from :meth:`Telemetry.current_metrics_otlp`) with the official classes."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request: ExportMetricsServiceRequest = ExportMetricsServiceRequest.FromString(data)
    return request
