"""Attaching a monitor to a meter provider, for the entry-point instrumentors."""

from __future__ import annotations

from opentelemetry.metrics import MeterProvider, get_meter_provider

from instrumentations._base import Monitor

#: Instrumentation scope name shared by every monitor's meter.
SCOPE_NAME = "otel_telemetry.instrumentations"


def attach_monitor(monitor: Monitor, meter_provider: MeterProvider | None) -> None:
    """Create ``monitor``'s observable instruments on ``meter_provider`` (the global one when None).

    Histograms reach readers only through the SDK's producer; with a plain provider, use
    ``otel_telemetry.setup_telemetry`` (which wires both) to export them.
    """
    from instrumentations import __version__

    provider = meter_provider or get_meter_provider()
    monitor.attach(provider.get_meter(SCOPE_NAME, __version__))
