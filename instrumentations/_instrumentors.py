"""The ``opentelemetry_instrumentor`` entry points: one ``BaseInstrumentor`` per monitor.

They live apart from the monitors so that importing a monitor (or ``setup_telemetry``) does not load
OpenTelemetry's instrumentation machinery; each monitor module still exposes its instrumentor by name
(``instrumentations.game.GameInstrumentor``), loaded on first access.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

if TYPE_CHECKING:  # the monitor modules load this one on demand: import them back only when instrumenting
    from instrumentations.game import GameMonitor
    from instrumentations.hardware import HardwareMonitor
    from instrumentations.network import NetworkMonitor
    from instrumentations.performance import PerformanceMonitor

__all__ = ["GameInstrumentor", "HardwareInstrumentor", "NetworkInstrumentor", "PerformanceInstrumentor"]


class HardwareInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Entry-point instrumentor: ``instrument(meter_provider=...)`` attaches a :class:`HardwareMonitor`.

    On an OpenTelemetry SDK ``MeterProvider`` (the one ``opentelemetry-instrument`` configures, for example) every
    reader also receives the monitor's histograms; see :mod:`instrumentations._wiring`. The monitor is published on
    the class as :attr:`monitor` (``HardwareInstrumentor.monitor``) until ``uninstrument()``; instrumenting again on
    the same provider resumes the same monitor.
    """

    monitor: HardwareMonitor | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("psutil >= 5.9",)

    def _instrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import instrument_monitor
        from instrumentations.hardware import HardwareMonitor

        # Published on the class: the instrumentor is a singleton and its monitor process-wide.
        type(self).monitor = instrument_monitor(HardwareMonitor, kwargs.get("meter_provider"), HardwareMonitor)

    def _uninstrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import detach_monitor

        monitor = type(self).monitor
        if monitor is not None:
            detach_monitor(monitor)
            type(self).monitor = None


class NetworkInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Entry-point instrumentor: ``instrument(meter_provider=...)`` attaches a :class:`NetworkMonitor`.

    ``setup_telemetry()`` wires its own monitors per handle; this class serves ``opentelemetry-instrument`` style
    auto-instrumentation, where one process-wide monitor is published as :attr:`monitor`.

    On an OpenTelemetry SDK ``MeterProvider`` (the one ``opentelemetry-instrument`` configures, for example) every
    reader also receives the monitor's histograms; see :mod:`instrumentations._wiring`. The monitor is published on
    the class as :attr:`monitor` (``NetworkInstrumentor.monitor``) until ``uninstrument()``; instrumenting again on
    the same provider resumes the same monitor.
    """

    monitor: NetworkMonitor | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import instrument_monitor
        from instrumentations.network import NetworkMonitor

        # Published on the class: the instrumentor is a singleton and its monitor process-wide.
        type(self).monitor = instrument_monitor(NetworkMonitor, kwargs.get("meter_provider"), NetworkMonitor)

    def _uninstrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import detach_monitor

        monitor = type(self).monitor
        if monitor is not None:
            detach_monitor(monitor)
            type(self).monitor = None


class PerformanceInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Entry-point instrumentor: ``instrument(meter_provider=..., target_tick_rate=60)`` attaches a
    :class:`PerformanceMonitor`.

    On an OpenTelemetry SDK ``MeterProvider`` (the one ``opentelemetry-instrument`` configures, for example) every
    reader also receives the monitor's histograms; see :mod:`instrumentations._wiring`. The monitor is published on
    the class as :attr:`monitor` (``PerformanceInstrumentor.monitor``) until ``uninstrument()``; instrumenting again
    on the same provider resumes the same monitor.
    """

    monitor: PerformanceMonitor | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import instrument_monitor
        from instrumentations.performance import PerformanceMonitor, _target_tick_rate

        target = _target_tick_rate(kwargs.get("target_tick_rate", 60.0))
        monitor = instrument_monitor(
            PerformanceMonitor, kwargs.get("meter_provider"), lambda: PerformanceMonitor(target_tick_rate=target)
        )
        monitor.target_tick_rate = target  # a monitor instrumented again takes this call's target
        # Published on the class: the instrumentor is a singleton and its monitor process-wide.
        type(self).monitor = monitor

    def _uninstrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import detach_monitor

        monitor = type(self).monitor
        if monitor is not None:
            detach_monitor(monitor)
            type(self).monitor = None


class GameInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Entry-point instrumentor: ``instrument(meter_provider=...)`` attaches a :class:`GameMonitor`.

    On an OpenTelemetry SDK ``MeterProvider`` (the one ``opentelemetry-instrument`` configures, for example) every
    reader also receives the monitor's histograms; see :mod:`instrumentations._wiring`. The monitor is published on
    the class as :attr:`monitor` (``GameInstrumentor.monitor``) until ``uninstrument()``; instrumenting again on the
    same provider resumes the same monitor.
    """

    monitor: GameMonitor | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import instrument_monitor
        from instrumentations.game import GameMonitor

        # Published on the class: the instrumentor is a singleton and its monitor process-wide.
        type(self).monitor = instrument_monitor(GameMonitor, kwargs.get("meter_provider"), GameMonitor)

    def _uninstrument(self, **kwargs: Any) -> None:
        from instrumentations._wiring import detach_monitor

        monitor = type(self).monitor
        if monitor is not None:
            detach_monitor(monitor)
            type(self).monitor = None
