"""Per-handler telemetry: ``@traced`` and ``timer``, bound to one telemetry handle or to the process default.

Decoration often happens at import time, long before telemetry is set up, so a decorated function holds no tracer
and no meter: it reads, at *call* time, where it records (one attribute load):

* ``@telemetry.traced`` / ``telemetry.timer(...)`` (:meth:`HandlerTelemetry.traced`, :meth:`HandlerTelemetry.timer`)
  record into that handle only, whatever other handles exist, until it shuts down
  (:meth:`HandlerTelemetry.close`); then they call through.
* the module-level ``@traced`` / ``timer(...)`` (``otel_telemetry.traced``, ``otel_telemetry.timer``) record into
  the process's **default** handle. The default is the first handle set up while no default is alive
  (:func:`claim_default`); a handle set up later never takes it over while it is alive. When the default shuts
  down, the module-level decorators go quiet (they call through, nothing raised) until the next
  ``setup_telemetry()`` makes a new default. Handles that were set up in between do not take over.

With nothing to record into (telemetry disabled, not set up yet, or shut down) the wrapper calls through. When
recording, each call gets a span named after the handler, and records ``handler.duration`` (s),
``handler.requests`` and ``handler.errors`` (``{request}``), all with the ``handler`` attribute, plus
``error_type`` on failure.

The handler's own exceptions propagate unchanged (the same object). Failures of the telemetry code itself
never reach the caller: they are caught, counted in :attr:`HandlerTelemetry.errors` and logged once per place.

Each attribute set a handle records is a new series: a handler's successful calls cost 28 series of the handle's
series budget (:class:`~otel_telemetry.series.SeriesRegistry`: 27 for the ``handler.duration`` histogram, 1 for
``handler.requests``), each exception class of it 29 (``handler.errors`` too), each timer 27. An attribute set the
budget refuses is recorded under ``{"handler": "_overflow"}`` (``error_type`` too for failures;
``{"timer": "_overflow"}`` for timers), so request totals stay exact, and each such call is counted in the
registry's ``refused_series``. The four names are the handle's: a facade name that would collide with them on
``/metrics`` is refused by the registry.

As in OpenTelemetry's ``use_span``, only :class:`Exception` subclasses mark a call as failed;
``BaseException`` (``asyncio.CancelledError``, ``KeyboardInterrupt``, ``SystemExit``) ends the span and counts
the request, without an error. Generator functions are not supported: the span would time the creation of the
generator only.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.metrics import Meter, NoOpMeter
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from otel_telemetry.recording.timing import BlockTimer, TimerGate
from otel_telemetry.series import OVERFLOW_VALUE, SeriesRegistry, histogram_cost

__all__ = [
    "HANDLER_DURATION",
    "HANDLER_DURATION_BOUNDARIES",
    "HANDLER_ERRORS",
    "HANDLER_REQUESTS",
    "TIMER_DURATION",
    "HandlerTelemetry",
    "bind_handler_telemetry",
    "bound_handler_telemetry",
    "claim_default",
    "release_default",
    "timer",
    "traced",
]

_logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Histogram of handler call durations, in seconds.
HANDLER_DURATION = "handler.duration"
#: Counter of handler calls (successful and failed), ``{request}``.
HANDLER_REQUESTS = "handler.requests"
#: Counter of handler calls that raised an :class:`Exception`, ``{request}``.
HANDLER_ERRORS = "handler.errors"
#: Histogram of :class:`timer` blocks, in seconds.
TIMER_DURATION = "timer.duration"
#: Advisory bucket boundaries of both duration histograms (seconds): 50 µs to 10 s, dense around 16.7 ms.
HANDLER_DURATION_BOUNDARIES: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.010, 0.0125, 0.015, 0.01667, 0.020,
    0.025, 0.0333, 0.050, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

_ATTR_HANDLER = "handler"
_ATTR_ERROR_TYPE = "error_type"
_ATTR_TIMER = "timer"

#: A series key: an attribute set in canonical form.
_Key = tuple[tuple[str, str], ...]
_HISTOGRAM_COST = histogram_cost(len(HANDLER_DURATION_BOUNDARIES))
#: Series of one attribute set: a successful call's (duration, requests), a failure's (also errors), a timer's.
_OK_COST = _HISTOGRAM_COST + 1
_ERROR_COST = _HISTOGRAM_COST + 2
_TIMER_COST = _HISTOGRAM_COST
_OVERFLOW_OK: dict[str, str] = {_ATTR_HANDLER: OVERFLOW_VALUE}
_OVERFLOW_ERROR: dict[str, str] = {_ATTR_HANDLER: OVERFLOW_VALUE, _ATTR_ERROR_TYPE: OVERFLOW_VALUE}
_OVERFLOW_TIMER: dict[str, str] = {_ATTR_TIMER: OVERFLOW_VALUE}
_OWNER = "handlers"


def _key(attributes: Mapping[str, str]) -> _Key:
    return tuple(sorted(attributes.items()))


# Where decorated functions and timers record: ``binding.target`` is one HandlerTelemetry, or None (they call
# through). Read without a lock at each call (an attribute load is atomic); written under ``_default_lock`` for
# the process default, by HandlerTelemetry.close() for a handle's own.
_Binding = TimerGate["HandlerTelemetry"]


# The process default: what the module-level ``traced`` and ``timer`` record into.
_DEFAULT: _Binding = TimerGate()
_default_lock = threading.Lock()


class HandlerTelemetry:
    """The tracer and the four instruments of one telemetry handle, and its ``traced`` and ``timer``.

    The instruments are created once, here. Recording is thread-safe (the OpenTelemetry SDK instruments are).
    ``errors`` counts failures of the telemetry code itself (never the handlers' own exceptions), each place
    logged once. :meth:`traced` and :meth:`timer` record into this object only, until :meth:`close`; every method
    may be called from any thread.

    Args:
        tracer: where the handler spans go.
        meter: where ``handler.duration``, ``handler.requests``, ``handler.errors`` and ``timer.duration`` go.
        series: the handle's :class:`~otel_telemetry.series.SeriesRegistry` (namespace and series budget shared
            with the monitors and the facade); None gives this object a registry of its own (default budget).
    """

    def __init__(self, tracer: Tracer, meter: Meter, *, series: SeriesRegistry | None = None) -> None:
        self.tracer = tracer
        #: The namespace and series budget the handler series are counted in.
        self.series = series if series is not None else SeriesRegistry()
        for name, unit, kind in (
            (HANDLER_DURATION, "s", "histogram"),
            (HANDLER_REQUESTS, "{request}", "counter"),
            (HANDLER_ERRORS, "{request}", "counter"),
            (TIMER_DURATION, "s", "histogram"),
        ):
            self.series.claim(name, unit, kind, _OWNER)  # type: ignore[arg-type]
        # Attribute sets admitted in the series budget (bounded by it), and the overflow sets already reserved.
        self._admitted: set[_Key] = set()
        self._overflow_reserved: set[_Key] = set()
        self._series_lock = threading.Lock()
        self.duration_histogram = meter.create_histogram(
            HANDLER_DURATION,
            unit="s",
            description="Duration of traced handler calls",
            explicit_bucket_boundaries_advisory=HANDLER_DURATION_BOUNDARIES,
        )
        self.request_counter = meter.create_counter(
            HANDLER_REQUESTS, unit="{request}", description="Traced handler calls, failed or not"
        )
        self.error_counter = meter.create_counter(
            HANDLER_ERRORS, unit="{request}", description="Traced handler calls that raised an exception"
        )
        self.timer_histogram = meter.create_histogram(
            TIMER_DURATION,
            unit="s",
            description="Duration of timed blocks",
            explicit_bucket_boundaries_advisory=HANDLER_DURATION_BOUNDARIES,
        )
        self.errors = 0
        self._errors_lock = threading.Lock()
        self._warned: set[str] = set()
        self._closed = False
        # What this handle's decorators read at each call; emptied by close(), so that functions decorated with
        # a shut-down handle neither record nor keep its providers alive.
        self._binding: _Binding = TimerGate(self)

    @classmethod
    def disabled(cls) -> HandlerTelemetry:
        """A closed HandlerTelemetry on no-op providers: its ``traced`` and ``timer`` always call through.

        For a disabled telemetry handle, so that ``@telemetry.traced`` works the same with telemetry off.
        """
        handlers = cls(trace.NoOpTracer(), NoOpMeter("otel_telemetry.handlers"))
        handlers.close()
        return handlers

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: this handle's decorators and timers call through."""
        return self._closed

    def close(self) -> None:
        """Stop recording: calls and blocks starting from now call through; those running finish as they began.

        Also gives up the process default if this handle holds it (:func:`release_default`): the module-level
        ``traced`` and ``timer`` then go quiet until the next :func:`claim_default`. Idempotent, thread-safe.
        """
        self._closed = True
        self._binding.target = None
        release_default(self)

    @overload
    def traced(self, fn: Callable[_P, _R], /) -> Callable[_P, _R]: ...

    @overload
    def traced(
        self, name: str | None = None, /, *, attributes: Mapping[str, str] | None = None
    ) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...

    @overload
    def traced(
        self, /, *, name: str | None = None, attributes: Mapping[str, str] | None = None
    ) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...

    def traced(
        self,
        fn_or_name: Callable[_P, _R] | str | None = None,
        /,
        *,
        name: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Callable[_P, _R] | Callable[[Callable[_P, _R]], Callable[_P, _R]]:
        """The module-level :func:`traced`, recording into this handle only (until :meth:`close`).

        Same forms (``@telemetry.traced``, ``@telemetry.traced("name", attributes={...})``, ...), same spans and
        metrics, same cost; a handle set up later, or the process default, changes nothing here.
        """
        return _traced(self._binding, fn_or_name, name, attributes)

    def timer(self, name: str, attributes: Mapping[str, str] | None = None) -> _Timer:
        """The module-level :class:`timer`, recording into this handle only (until :meth:`close`)."""
        return timer._on(self._binding, name, attributes)

    def _attributes(self, key: _Key, attributes: dict[str, str], overflow: dict[str, str], cost: int) -> dict[str, str]:
        """``attributes`` when their series are admitted in the budget (already or now), else ``overflow``."""
        if key in self._admitted:
            return attributes
        with self._series_lock:
            if key in self._admitted:
                return attributes
            if self.series.admit(cost, _OWNER):
                self._admitted.add(key)
                return attributes
            overflow_key = _key(overflow)
            if overflow_key not in self._overflow_reserved:
                self._overflow_reserved.add(overflow_key)
                self.series.reserve(cost, _OWNER)  # each overflow set is one series set: always admitted
        return overflow

    def _failed(self, where: str) -> None:
        """Count a telemetry failure (call from an ``except`` block); log the first one per place."""
        with self._errors_lock:
            self.errors += 1
            first = where not in self._warned
            self._warned.add(where)
        if first:
            _logger.exception("handler telemetry failed in %s (logged once; counted in errors)", where)


def claim_default(handlers: HandlerTelemetry) -> bool:
    """Make ``handlers`` the process default unless a live default exists; True when it is the default now.

    The default is what the module-level :func:`traced` and :class:`timer` record into. It is never taken from
    a live (not closed) default: the first handle set up keeps it until it shuts down. A closed ``handlers`` is
    never made the default. Thread-safe: of handles claiming at once, exactly one wins.
    """
    with _default_lock:
        current = _DEFAULT.target
        if current is handlers:
            return True
        if (current is not None and not current.closed) or handlers.closed:
            return False
        _DEFAULT.target = handlers
        return True


def release_default(handlers: HandlerTelemetry) -> None:
    """Give up the process default if ``handlers`` holds it (else nothing): module-level decorators go quiet.

    No other live handle takes over; the next :func:`claim_default` makes a new default. Thread-safe.
    """
    with _default_lock:
        if _DEFAULT.target is handlers:
            _DEFAULT.target = None


def bind_handler_telemetry(ht: HandlerTelemetry | None) -> None:
    """Make ``ht`` the process default, replacing whatever holds it; None leaves no default. Thread-safe.

    The low-level override, for tests and benchmarks that build a :class:`HandlerTelemetry` by hand;
    ``setup_telemetry()`` uses :func:`claim_default`, which never takes the default from a live handle. Takes
    effect for calls starting after it returns; calls already running finish with the default they began with.
    """
    with _default_lock:
        _DEFAULT.target = ht


def bound_handler_telemetry() -> HandlerTelemetry | None:
    """The process default (what the module-level ``traced`` and ``timer`` record into), or None."""
    return _DEFAULT.target


class _Handler:
    """What one decorated function records: its name and its precomputed attribute sets (with their keys)."""

    __slots__ = ("error_attributes", "name", "ok_attributes", "ok_key", "span_attributes")

    def __init__(self, name: str, attributes: Mapping[str, str]) -> None:
        self.name = name
        self.span_attributes: dict[str, str] = dict(attributes)
        self.ok_attributes: dict[str, str] = {**attributes, _ATTR_HANDLER: name}
        self.ok_key: _Key = _key(self.ok_attributes)
        # One attribute dict per exception class seen: failures allocate nothing after the first of a kind.
        self.error_attributes: dict[type[BaseException], tuple[dict[str, str], _Key]] = {}

    def failure_attributes(self, exc: BaseException) -> tuple[dict[str, str], _Key]:
        cls = type(exc)
        found = self.error_attributes.get(cls)
        if found is None:
            attributes = {**self.ok_attributes, _ATTR_ERROR_TYPE: cls.__name__}
            found = (attributes, _key(attributes))
            if len(self.error_attributes) < 64:  # bounded: exception classes are few, but never trust that
                self.error_attributes[cls] = found
        return found

    def begin(self, ht: HandlerTelemetry) -> tuple[Span, object, float] | None:
        """Start the span and make it current; None when that failed (counted)."""
        try:
            span = ht.tracer.start_span(self.name, attributes=self.span_attributes)
        except Exception:
            ht._failed(f"starting the span of {self.name}")
            return None
        try:
            token = context_api.attach(trace.set_span_in_context(span))
        except Exception:
            ht._failed(f"attaching the span of {self.name}")
            try:
                span.end()
            except Exception:
                ht._failed(f"ending the span of {self.name}")
            return None
        return span, token, time.perf_counter()

    def end(self, ht: HandlerTelemetry, started: tuple[Span, object, float], exc: BaseException | None) -> None:
        """Record the outcome, detach the context and end the span. Never raises."""
        span, token, start = started
        elapsed = time.perf_counter() - start
        try:
            if isinstance(exc, Exception):
                failure, key = self.failure_attributes(exc)
                attributes = ht._attributes(key, failure, _OVERFLOW_ERROR, _ERROR_COST)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                ht.error_counter.add(1, attributes)
            else:
                attributes = ht._attributes(self.ok_key, self.ok_attributes, _OVERFLOW_OK, _OK_COST)
            ht.duration_histogram.record(elapsed, attributes)
            ht.request_counter.add(1, attributes)
        except Exception:
            ht._failed(f"recording {self.name}")
        try:
            context_api.detach(token)  # type: ignore[arg-type]
        except Exception:
            ht._failed(f"detaching the context of {self.name}")
        try:
            span.end()
        except Exception:
            ht._failed(f"ending the span of {self.name}")


def _unwrap_descriptor(
    fn: object,
) -> tuple[Callable[..., Any], type[staticmethod[Any, Any]] | type[classmethod[Any, Any, Any]] | None]:
    if isinstance(fn, staticmethod):
        return fn.__func__, staticmethod
    if isinstance(fn, classmethod):
        return fn.__func__, classmethod
    return cast("Callable[..., Any]", fn), None


def _decorate(
    binding: _Binding, fn: Callable[_P, _R], name: str | None, attributes: Mapping[str, str] | None
) -> Callable[_P, _R]:
    func, descriptor = _unwrap_descriptor(fn)
    if not callable(func):
        raise TypeError(f"@traced needs a function, got {fn!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"@traced name must be a string, got {name!r}")
    handler_name = name or func.__qualname__  # short and stable: the label users see on dashboards
    handler = _Handler(handler_name, attributes or {})

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(func):
        coroutine_function = cast("Callable[..., Awaitable[Any]]", func)

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            ht = binding.target
            if ht is None:
                return await coroutine_function(*args, **kwargs)
            started = handler.begin(ht)
            if started is None:
                return await coroutine_function(*args, **kwargs)
            try:
                result = await coroutine_function(*args, **kwargs)
            except BaseException as exc:
                handler.end(ht, started, exc)
                raise
            handler.end(ht, started, None)
            return result

        wrapper = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            ht = binding.target
            if ht is None:
                return func(*args, **kwargs)
            started = handler.begin(ht)
            if started is None:
                return func(*args, **kwargs)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                handler.end(ht, started, exc)
                raise
            handler.end(ht, started, None)
            return result

        wrapper = sync_wrapper
    if descriptor is not None:
        return cast("Callable[_P, _R]", descriptor(wrapper))
    return cast("Callable[_P, _R]", wrapper)


def _traced(
    binding: _Binding,
    fn_or_name: Callable[_P, _R] | str | None,
    name: str | None,
    attributes: Mapping[str, str] | None,
) -> Callable[_P, _R] | Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """The forms of ``traced`` (bare, or with a name and attributes), recording into ``binding``."""
    if callable(fn_or_name) or isinstance(fn_or_name, (staticmethod, classmethod)):
        return _decorate(binding, fn_or_name, name, attributes)
    if fn_or_name is not None and not isinstance(fn_or_name, str):
        raise TypeError(f"@traced takes a function or a name, got {fn_or_name!r}")
    if fn_or_name is not None and name is not None:
        raise TypeError("@traced takes the name positionally or as name=, not both")
    chosen = fn_or_name if fn_or_name is not None else name

    def decorator(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        return _decorate(binding, fn, chosen, attributes)

    return decorator


@overload
def traced(fn: Callable[_P, _R], /) -> Callable[_P, _R]: ...


@overload
def traced(
    name: str | None = None, /, *, attributes: Mapping[str, str] | None = None
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...


@overload
def traced(
    *, name: str | None = None, attributes: Mapping[str, str] | None = None
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...


def traced(
    fn_or_name: Callable[_P, _R] | str | None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Callable[_P, _R] | Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Trace and measure every call of a sync or async function or method, into the process default handle.

    Usable as ``@traced``, ``@traced()``, ``@traced("name")`` and
    ``@traced(name="x", attributes={"k": "v"})``. The span name and the ``handler`` attribute default to
    the function's ``__qualname__`` (``on_chat``, ``Room.enter``). ``attributes`` (static, so of bounded
    cardinality) go on the span and on the three
    metrics. The wrapper keeps the function's signature, name, docstring and coroutine-ness. ``@traced`` may
    sit above or below ``@staticmethod``/``@classmethod``.

    Where it records: the process default, read at each call. That is the first handle set up while no default
    is alive; a later handle never takes it over; once the default shuts down, calls run quietly unrecorded
    until the next ``setup_telemetry()`` makes a new default. To record into one handle whatever else exists,
    use ``@telemetry.traced`` (:meth:`HandlerTelemetry.traced`).

    Cost: with nothing to record into, one attribute read and the call. Thread-safe; each call keeps its state
    in locals.

    Raises:
        TypeError: at decoration time, when the target is not callable or the name not a string.
    """
    return _traced(_DEFAULT, fn_or_name, name, attributes)


class timer(BlockTimer[HandlerTelemetry, tuple[dict[str, str], _Key]]):  # lowercase: reads as a function
    """Time a block (``with timer("physics"):``, ``async with``) or every call of a function (``@timer("physics")``).

    Records the elapsed seconds into ``timer.duration`` of the process default handle (the same rule as
    :func:`traced`: the first handle set up while no default is alive; quiet once it shut down, until the next
    ``setup_telemetry()``), with the attribute ``timer`` = ``name`` plus ``attributes``. ``telemetry.timer(...)``
    (:meth:`HandlerTelemetry.timer`) records into that handle instead. Where it records is decided when each
    block or call starts; with nothing there, nothing is measured (``elapsed`` stays None). Exceptions in the
    block are not suppressed; its duration is recorded anyway.

    One instance times one block at a time (``elapsed`` holds the last). The decorator form keeps its state in
    locals, so a decorated function may run on many threads and tasks at once.
    """

    __slots__ = ("name",)

    def __init__(self, name: str, attributes: Mapping[str, str] | None = None) -> None:
        BlockTimer.__init__(self, _DEFAULT, _record_timer, _timer_key(name, attributes))
        self.name = name

    @classmethod
    def _on(cls, binding: _Binding, name: str, attributes: Mapping[str, str] | None) -> timer:
        """A timer recording into ``binding`` (a handle's own) instead of the process default."""
        instance = cls.__new__(cls)
        BlockTimer.__init__(instance, binding, _record_timer, _timer_key(name, attributes))
        instance.name = name
        return instance


def _timer_key(name: str, attributes: Mapping[str, str] | None) -> tuple[dict[str, str], _Key]:
    """A timer's attribute set and its key, computed once per timer."""
    merged = {**(attributes or {}), _ATTR_TIMER: name}
    return merged, _key(merged)


def _record_timer(ht: HandlerTelemetry, key: tuple[dict[str, str], _Key], seconds: float) -> None:
    try:
        ht.timer_histogram.record(seconds, ht._attributes(key[1], key[0], _OVERFLOW_TIMER, _TIMER_COST))
    except Exception:
        ht._failed(f"recording timer {key[0][_ATTR_TIMER]}")


# The return type of HandlerTelemetry.timer: in that class body the name ``timer`` is the method itself.
_Timer = timer
