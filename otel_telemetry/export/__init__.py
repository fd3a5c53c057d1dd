"""Outputs that read frames: the Prometheus endpoint, OTLP, the API principal push and self-telemetry."""
