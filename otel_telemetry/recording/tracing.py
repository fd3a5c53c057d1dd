"""Per-handler telemetry: the ``@traced`` decorator and the ``timer`` context manager.

Decoration happens at import time, long before telemetry is set up, so neither ``@traced`` nor
:class:`timer` holds a tracer or a meter. Both read the process-wide binding (:func:`bind_handler_telemetry`)
at *call* time:

* unbound (telemetry disabled or not set up yet): the wrapper reads one module global and calls through;
* bound: each call gets a span named after the handler, and records ``handler.duration`` (s),
  ``handler.requests`` and ``handler.errors`` (``{request}``), all with the ``handler`` attribute, plus
  ``error_type`` on failure.

The handler's own exceptions propagate unchanged (the same object). Failures of the telemetry code itself
never reach the caller: they are caught, counted in :attr:`HandlerTelemetry.errors` and logged once per place.

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
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import Span, Status, StatusCode, Tracer

__all__ = [
    "HANDLER_DURATION",
    "HANDLER_DURATION_BOUNDARIES",
    "HANDLER_ERRORS",
    "HANDLER_REQUESTS",
    "TIMER_DURATION",
    "HandlerTelemetry",
    "bind_handler_telemetry",
    "bound_handler_telemetry",
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


class HandlerTelemetry:
    """The tracer and the four instruments ``@traced`` and :class:`timer` record into.

    The instruments are created once, here. Recording is thread-safe (the OpenTelemetry SDK instruments are).
    ``errors`` counts failures of the telemetry code itself (never the handlers' own exceptions), each place
    logged once.

    Args:
        tracer: where the handler spans go.
        meter: where ``handler.duration``, ``handler.requests``, ``handler.errors`` and ``timer.duration`` go.
    """

    def __init__(self, tracer: Tracer, meter: Meter) -> None:
        self.tracer = tracer
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

    def _failed(self, where: str) -> None:
        """Count a telemetry failure (call from an ``except`` block); log the first one per place."""
        with self._errors_lock:
            self.errors += 1
            first = where not in self._warned
            self._warned.add(where)
        if first:
            _logger.exception("handler telemetry failed in %s (logged once; counted in errors)", where)


# The process-wide binding. Readers load the module global without a lock (atomic); writers serialise.
_current: HandlerTelemetry | None = None
_bind_lock = threading.Lock()


def bind_handler_telemetry(ht: HandlerTelemetry | None) -> None:
    """Make ``ht`` the telemetry every ``@traced`` and :class:`timer` records into; None unbinds. Thread-safe.

    Takes effect for calls starting after it returns; calls already running finish with the binding they began
    with.
    """
    global _current
    with _bind_lock:
        _current = ht


def bound_handler_telemetry() -> HandlerTelemetry | None:
    """The current binding, or None."""
    return _current


class _Handler:
    """What one decorated function records: its name and its precomputed attribute sets."""

    __slots__ = ("error_attributes", "name", "ok_attributes", "span_attributes")

    def __init__(self, name: str, attributes: Mapping[str, str]) -> None:
        self.name = name
        self.span_attributes: dict[str, str] = dict(attributes)
        self.ok_attributes: dict[str, str] = {**attributes, _ATTR_HANDLER: name}
        # One attribute dict per exception class seen: failures allocate nothing after the first of a kind.
        self.error_attributes: dict[type[BaseException], dict[str, str]] = {}

    def failure_attributes(self, exc: BaseException) -> dict[str, str]:
        cls = type(exc)
        found = self.error_attributes.get(cls)
        if found is None:
            found = {**self.ok_attributes, _ATTR_ERROR_TYPE: cls.__name__}
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
                attributes = self.failure_attributes(exc)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                ht.error_counter.add(1, attributes)
            else:
                attributes = self.ok_attributes
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


def _decorate(fn: Callable[_P, _R], name: str | None, attributes: Mapping[str, str] | None) -> Callable[_P, _R]:
    func, descriptor = _unwrap_descriptor(fn)
    if not callable(func):
        raise TypeError(f"@traced needs a function, got {fn!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"@traced name must be a string, got {name!r}")
    handler_name = name or f"{func.__module__}.{func.__qualname__}"
    handler = _Handler(handler_name, attributes or {})

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(func):
        coroutine_function = cast("Callable[..., Awaitable[Any]]", func)

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            ht = _current
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
            ht = _current
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
    """Trace and measure every call of a sync or async function or method.

    Usable as ``@traced``, ``@traced()``, ``@traced("name")`` and
    ``@traced(name="x", attributes={"k": "v"})``. The span name and the ``handler`` attribute default to
    ``module.qualname``. ``attributes`` (static, so of bounded cardinality) go on the span and on the three
    metrics. The wrapper keeps the function's signature, name, docstring and coroutine-ness. ``@traced`` may
    sit above or below ``@staticmethod``/``@classmethod``.

    Cost: with nothing bound, one global read and the call. Thread-safe; each call keeps its state in locals.

    Raises:
        TypeError: at decoration time, when the target is not callable or the name not a string.
    """
    if callable(fn_or_name) or isinstance(fn_or_name, (staticmethod, classmethod)):
        return _decorate(fn_or_name, name, attributes)
    if fn_or_name is not None and not isinstance(fn_or_name, str):
        raise TypeError(f"@traced takes a function or a name, got {fn_or_name!r}")
    if fn_or_name is not None and name is not None:
        raise TypeError("@traced takes the name positionally or as name=, not both")
    chosen = fn_or_name if fn_or_name is not None else name

    def decorator(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        return _decorate(fn, chosen, attributes)

    return decorator


class timer:  # lowercase: it reads as a function at the call site, like contextlib's helpers
    """Time a block (``with timer("physics"):``) or every call of a function (``@timer("physics")``).

    Records the elapsed seconds into ``timer.duration`` of the bound :class:`HandlerTelemetry`, with the
    attribute ``timer`` = ``name`` plus ``attributes``. With nothing bound at entry, nothing is measured
    (``elapsed`` stays None). Exceptions in the block are not suppressed; its duration is recorded anyway.

    One instance times one block at a time (``elapsed`` holds the last). The decorator form keeps its state in
    locals, so a decorated function may run on many threads and tasks at once.
    """

    __slots__ = ("_attributes", "_ht", "_start", "elapsed", "name")

    def __init__(self, name: str, attributes: Mapping[str, str] | None = None) -> None:
        self.name = name
        self._attributes: dict[str, str] = {**(attributes or {}), _ATTR_TIMER: name}
        self._ht: HandlerTelemetry | None = None
        self._start = 0.0
        #: Seconds the last block took, or None when it was not measured.
        self.elapsed: float | None = None

    def _record(self, ht: HandlerTelemetry, elapsed: float) -> None:
        try:
            ht.timer_histogram.record(elapsed, self._attributes)
        except Exception:
            ht._failed(f"recording timer {self.name}")

    def __enter__(self) -> timer:
        self._ht = _current
        if self._ht is not None:
            self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ht = self._ht
        if ht is None:
            self.elapsed = None
            return
        self._ht = None
        self.elapsed = time.perf_counter() - self._start
        self._record(ht, self.elapsed)

    async def __aenter__(self) -> timer:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[_P, _R]) -> Callable[_P, _R]:
        """Decorate ``fn`` (sync or async): every call is timed, with fresh state per call."""
        record = self._record
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):
            coroutine_function = cast("Callable[..., Awaitable[Any]]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                ht = _current
                if ht is None:
                    return await coroutine_function(*args, **kwargs)
                start = time.perf_counter()
                try:
                    return await coroutine_function(*args, **kwargs)
                finally:
                    record(ht, time.perf_counter() - start)

            wrapper = async_wrapper
        else:
            func = cast("Callable[..., Any]", fn)

            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                ht = _current
                if ht is None:
                    return func(*args, **kwargs)
                start = time.perf_counter()
                try:
                    return func(*args, **kwargs)
                finally:
                    record(ht, time.perf_counter() - start)

            wrapper = sync_wrapper
        return cast("Callable[_P, _R]", wrapper)
