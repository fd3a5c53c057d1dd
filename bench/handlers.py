"""Handler benchmark: ``@traced``, ``timer`` and the metrics facade against hand-written OpenTelemetry.

Prints a table and one JSON line. Every figure is compared with a named baseline measured in the same run:

* module-level ``@traced`` and ``timer`` with no default handle, and ``telemetry.traced`` of a handle that has
  shut down, against the undecorated call (what a server pays with telemetry off);
* ``telemetry.traced`` of a live handle (real SDK providers: ``TracerProvider`` with a span processor that
  discards, and a ``MeterProvider`` with an ``InMemoryMetricReader``) against the same work written by hand: a
  current span, ``Histogram.record`` and ``Counter.add`` (module-level ``@traced`` on the default handle runs the
  same code);
* ``telemetry.timer`` of a live handle against a hand-written ``perf_counter`` + ``Histogram.record``;
* facade ``increment``/``timing`` against OTel ``Counter.add``/``Histogram.record`` (same attributes).

Run: ``python bench/handlers.py [--quick]`` (with the project installed, or ``PYTHONPATH=.``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from otel_telemetry.recording.facade import MetricsFacade
from otel_telemetry.recording.tracing import HandlerTelemetry, bound_handler_telemetry, timer, traced


def per_call_ns(fn: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Best-of-``repeat`` nanoseconds per call of ``fn`` (best: the least disturbed by a noisy machine)."""
    return min(timeit.Timer(fn).repeat(repeat=repeat, number=number)) / number * 1e9


class _DiscardingProcessor(SpanProcessor):
    """Receives every span and keeps none: the SDK's span work without an exporter's."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        pass


def handler(player_id: int, dx: float) -> float:
    """The game work: deliberately tiny, so the figures are the instrumentation's cost."""
    return player_id + dx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (for a smoke run)")
    args = parser.parse_args(argv)
    number = 10_000 if args.quick else 100_000
    slow = number // 10  # the SDK paths are ~100x slower: fewer iterations, same wall time

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(_DiscardingProcessor())
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer = tracer_provider.get_tracer("bench")
    meter = meter_provider.get_meter("bench")
    telemetry = HandlerTelemetry(tracer, meter)

    # Module level with no default handle (none is claimed here); the handle's own forms, bound to it.
    traced_handler = traced(name="bench.handler")(handler)
    timed_handler = timer("bench.timer")(handler)
    handle_traced = telemetry.traced(name="bench.handler")(handler)
    handle_timed = telemetry.timer("bench.timer")(handler)
    # A shut-down handle (what a disabled or shut-down Telemetry holds): its decorated functions call through.
    shut_down_traced = HandlerTelemetry.disabled().traced(name="bench.handler")(handler)

    # The hand-written equivalent of @traced: what an engineer would write without the decorator.
    otel_histogram = meter.create_histogram("manual.duration", unit="s")
    otel_counter = meter.create_counter("manual.requests", unit="{request}")
    attributes = {"handler": "bench.handler"}

    def hand_written() -> float:
        with tracer.start_as_current_span("bench.handler"):
            start = time.perf_counter()
            result = handler(7, 1.5)
            otel_histogram.record(time.perf_counter() - start, attributes)
            otel_counter.add(1, attributes)
        return result

    def hand_written_timer() -> float:
        start = time.perf_counter()
        result = handler(7, 1.5)
        otel_histogram.record(time.perf_counter() - start, {"timer": "bench.timer"})
        return result

    results: dict[str, float] = {}
    assert bound_handler_telemetry() is None, "the module-level rows need no default handle"
    results["undecorated_ns"] = per_call_ns(lambda: handler(7, 1.5), number)
    results["traced_unbound_ns"] = per_call_ns(lambda: traced_handler(7, 1.5), number)
    results["timer_unbound_ns"] = per_call_ns(lambda: timed_handler(7, 1.5), number)
    results["traced_closed_handle_ns"] = per_call_ns(lambda: shut_down_traced(7, 1.5), number)
    results["traced_bound_ns"] = per_call_ns(lambda: handle_traced(7, 1.5), slow)
    results["timer_bound_ns"] = per_call_ns(lambda: handle_timed(7, 1.5), slow)
    telemetry.close()
    results["hand_written_otel_ns"] = per_call_ns(hand_written, slow)
    results["hand_written_timer_ns"] = per_call_ns(hand_written_timer, slow)

    facade = MetricsFacade(meter)
    tags = {"event_type": "/live/track/renamed"}
    counter = meter.create_counter("otel.events")
    histogram = meter.create_histogram("otel.latency", unit="s")
    results["facade_increment_ns"] = per_call_ns(lambda: facade.increment("events.processed"), number)
    results["facade_increment_tagged_ns"] = per_call_ns(lambda: facade.increment("events.by_type", tags=tags), number)
    results["facade_timing_ns"] = per_call_ns(lambda: facade.timing("event.processing", 0.0052), number)
    results["facade_timing_tagged_ns"] = per_call_ns(
        lambda: facade.timing("event.processing.by_type", 0.0052, tags=tags), number
    )
    results["otel_counter_add_ns"] = per_call_ns(lambda: counter.add(1), slow)
    results["otel_counter_add_attributes_ns"] = per_call_ns(lambda: counter.add(1, tags), slow)
    results["otel_histogram_record_ns"] = per_call_ns(lambda: histogram.record(0.0052), slow)
    results["otel_histogram_record_attributes_ns"] = per_call_ns(lambda: histogram.record(0.0052, tags), slow)
    facade.enabled = False
    results["facade_disabled_increment_ns"] = per_call_ns(lambda: facade.increment("events.processed"), number)
    facade.enabled = True
    tracer_provider.shutdown()
    meter_provider.shutdown()

    # label, measured key, baseline key, baseline name
    rows = [
        ("@traced, no default handle", "traced_unbound_ns", "undecorated_ns", "undecorated call"),
        ("timer decorator, no default handle", "timer_unbound_ns", "undecorated_ns", "undecorated call"),
        ("telemetry.traced, handle shut down", "traced_closed_handle_ns", "undecorated_ns", "undecorated call"),
        ("telemetry.traced (span + 3 metrics)", "traced_bound_ns", "hand_written_otel_ns", "hand-written OTel"),
        ("telemetry.timer decorator", "timer_bound_ns", "hand_written_timer_ns", "hand-written record"),
        ("facade increment(name)", "facade_increment_ns", "otel_counter_add_ns", "OTel Counter.add"),
        ("facade increment(name, tags)", "facade_increment_tagged_ns", "otel_counter_add_attributes_ns",
         "Counter.add(attrs)"),
        ("facade timing(name, s)", "facade_timing_ns", "otel_histogram_record_ns", "OTel Histogram.record"),
        ("facade timing(name, s, tags)", "facade_timing_tagged_ns", "otel_histogram_record_attributes_ns",
         "Histogram.record(attrs)"),
        ("facade increment, disabled", "facade_disabled_increment_ns", "otel_counter_add_ns", "OTel Counter.add"),
    ]  # fmt: skip
    out = sys.stdout
    print(f"{'call':36} {'ns/call':>9} {'baseline':>24} {'ns/call':>9} {'ratio':>7} {'x cheaper':>9}", file=out)
    for label, key, base, base_name in rows:
        ratio = results[key] / results[base]
        print(
            f"{label:36} {results[key]:9.0f} {base_name:>24} {results[base]:9.0f} {ratio:7.2f} {1 / ratio:9.1f}",
            file=out,
        )
        results[f"{key[:-3]}_vs_{base[:-3]}"] = ratio
    results["traced_unbound_overhead_ns"] = results["traced_unbound_ns"] - results["undecorated_ns"]
    results["traced_closed_handle_overhead_ns"] = results["traced_closed_handle_ns"] - results["undecorated_ns"]
    print(
        f"@traced with no default adds {results['traced_unbound_overhead_ns']:.0f} ns to a call; "
        f"telemetry.traced of a shut-down handle {results['traced_closed_handle_overhead_ns']:.0f} ns",
        file=out,
    )
    print(json.dumps({"benchmark": "handlers", **{k: round(v, 4) for k, v in results.items()}}), file=out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
