"""Attaching a monitor to a meter provider, for the entry-point instrumentors.

Observable instruments go on the provider's meter. Histograms and per-player gauges have no OpenTelemetry
instrument (the monitors keep their own accumulators), so on an SDK ``MeterProvider`` every reader is hooked
(:func:`otel_telemetry._otel.hook_reader`) to receive them with each collection: one
:class:`~otel_telemetry.producer.HistogramProducer` per monitor, merged with the reader's own histogram temporality
and, for delta readers, the reader's own previous totals. This is what makes ``opentelemetry-instrument`` with a
plain SDK provider (``opentelemetry-distro``) export the monitors' histograms.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from opentelemetry.metrics import MeterProvider, get_meter_provider

from instrumentations._base import Monitor

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader

    from otel_telemetry.producer import HistogramProducer

__all__ = ["SCOPE_NAME", "attach_monitor", "detach_monitor", "instrument_monitor"]

_logger = logging.getLogger(__name__)

#: Instrumentation scope name shared by every monitor's meter.
SCOPE_NAME = "otel_telemetry.instrumentations"

_M = TypeVar("_M", bound=Monitor)


class _ProviderHook:
    """The monitors attached to one SDK provider, and the transform every reader of it runs on each collection.

    Thread-safety: monitors are added and removed under a lock by swapping a new tuple; a collection reads the
    tuple once and holds only its own reader's lock while it merges.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Every monitor ever attached keeps its producer (and each delta reader its previous totals for it), so
        # that attaching it again continues its series instead of sending everything since start a second time.
        self._producers: dict[Monitor, HistogramProducer] = {}
        self._active: tuple[HistogramProducer, ...] = ()
        self._hooked: weakref.WeakSet[MetricReader] = weakref.WeakSet()

    def add(self, provider: SdkMeterProvider, monitor: Monitor) -> None:
        """Produce ``monitor``'s histograms and gauges for every reader of ``provider`` (hooking new readers)."""
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from instrumentations import __version__
        from otel_telemetry._otel import hook_reader, provider_readers
        from otel_telemetry.producer import HistogramProducer, ReaderMerge

        with self._lock:
            producer = self._producers.get(monitor)
            if producer is None:
                producer = self._producers[monitor] = HistogramProducer(InstrumentationScope(SCOPE_NAME, __version__))
                producer.add_source(monitor.histograms)
                producer.add_gauge_source(monitor.produced_gauges)
            if producer not in self._active:
                self._active = (*self._active, producer)
            for reader in provider_readers(provider):
                if reader not in self._hooked:
                    self._hooked.add(reader)
                    hook_reader(reader, ReaderMerge(lambda: self._active))

    def remove(self, monitor: Monitor) -> None:
        """Stop producing ``monitor``'s metrics (a collection with no monitor left passes through unchanged)."""
        with self._lock:
            producer = self._producers.get(monitor)
            self._active = tuple(active for active in self._active if active is not producer)

    def refresh_monitors(self) -> None:
        """Bring every attached monitor's derived values up to date now (before a final collection)."""
        with self._lock:
            monitors = [monitor for monitor, producer in self._producers.items() if producer in self._active]
        for monitor in monitors:
            try:
                monitor.refresh(force=True)
            except Exception:
                _logger.exception("refreshing %s before exit failed", type(monitor).__name__)


_hooks: weakref.WeakKeyDictionary[SdkMeterProvider, _ProviderHook] = weakref.WeakKeyDictionary()
_instrumented: weakref.WeakKeyDictionary[MeterProvider, dict[type[Monitor], Monitor]] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()
_exit_refresh_registered = False


def _refresh_before_exit() -> None:
    """Refresh every attached monitor, so that the final collection of an SDK provider that shuts down at exit
    exports everything recorded until then, not the state of the last throttled refresh (up to
    ``refresh_interval`` old). atexit runs handlers last-registered first, and a provider registers its own
    shutdown when it is built, before any monitor can be attached to it: this one runs before that."""
    with _registry_lock:
        hooks = list(_hooks.values())
    for hook in hooks:
        hook.refresh_monitors()


def _provider(meter_provider: MeterProvider | None) -> MeterProvider:
    return meter_provider or get_meter_provider()


def instrument_monitor(kind: type[_M], meter_provider: MeterProvider | None, make: Callable[[], _M]) -> _M:
    """The ``kind`` monitor of ``meter_provider`` (the global one when None), attached to it.

    The first time, ``make()`` builds it. Later (after an uninstrument) the same monitor is attached again:
    OpenTelemetry keeps the first instrument of a name, with its callbacks, for the life of the provider, so a new
    monitor's instruments would never report; the old one continues its cumulative series instead.
    """
    provider = _provider(meter_provider)
    with _registry_lock:
        known = _instrumented.setdefault(provider, {})
        monitor = known.get(kind)
        if monitor is None:
            monitor = known[kind] = make()
    attach_monitor(monitor, provider)
    assert isinstance(monitor, kind)
    return monitor


def attach_monitor(monitor: Monitor, meter_provider: MeterProvider | None) -> None:
    """Create ``monitor``'s observable instruments on ``meter_provider`` (the global one when None), and with an SDK
    ``MeterProvider`` have every one of its readers receive the monitor's histograms and per-player gauges too.

    Readers registered on the provider after this call are hooked by the next ``attach_monitor`` on it only.
    Any other provider (the API's proxy or no-op one) gets the observable instruments alone, with a warning.
    """
    from instrumentations import __version__

    provider = _provider(meter_provider)
    monitor.attach(provider.get_meter(SCOPE_NAME, __version__))
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    if not isinstance(provider, SdkMeterProvider):
        _logger.warning(
            "%s is not an OpenTelemetry SDK MeterProvider: %s reports its gauges and counters, but its histograms "
            "and per-player gauges need an SDK provider (set one before instrumenting)",
            type(provider).__name__,
            type(monitor).__name__,
        )
        return
    global _exit_refresh_registered
    with _registry_lock:
        hook = _hooks.get(provider)
        if hook is None:
            hook = _hooks[provider] = _ProviderHook()
        if not _exit_refresh_registered:
            atexit.register(_refresh_before_exit)
            _exit_refresh_registered = True
    hook.add(provider, monitor)


def detach_monitor(monitor: Monitor) -> None:
    """Stop ``monitor`` reporting: its callbacks yield nothing and hooked readers no longer receive its metrics."""
    monitor.detach()
    with _registry_lock:
        hooks = list(_hooks.values())
    for hook in hooks:
        hook.remove(monitor)
