"""One timer for every "time this block" API: ``with``, ``async with`` and decorator (sync or async).

:class:`BlockTimer` is what :class:`otel_telemetry.recording.tracing.timer` (and ``Telemetry.timer``) and
:meth:`otel_telemetry.recording.facade.MetricsFacade.timer` are made of; each owner passes two things:

* a :class:`TimerGate`, read when each block or call starts: ``gate.target`` is where its duration goes (any
  object), or None to measure nothing (the clock is not even read). A plain attribute, so a timer with nothing
  to record into costs one attribute load, not a call;
* ``record(target, key, seconds)``, called once when that block or call ends, whether it raised or not, with
  the ``key`` given at construction (what the owner records under: attributes, a name and tags). A plain
  function, so making a timer allocates no closure. It is the owner's hot path and must not raise (both owners
  catch and count their own failures).

Exceptions of the block or function propagate unchanged; the timer never suppresses them.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, cast

__all__ = ["BlockTimer", "TimerGate"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
_K = TypeVar("_K")


class TimerGate(Generic[_T]):
    """Where timers record right now: :attr:`target`, or None (they measure nothing).

    Read without a lock at the start of each block or call (an attribute load is atomic); the owner sets it.
    """

    __slots__ = ("target",)

    def __init__(self, target: _T | None = None) -> None:
        self.target = target


class BlockTimer(Generic[_T, _K]):
    """Times a block (``with``/``async with``) or every call of a function it decorates (sync or async).

    Durations are in seconds (``time.perf_counter``). As a context manager one instance times one block at a
    time and keeps the last duration in :attr:`elapsed`. As a decorator it keeps each call's state in locals, so
    the decorated function may run on many threads and tasks at once; the wrapper keeps the function's
    signature, name, docstring and coroutine-ness (``functools.wraps``).

    Args:
        gate: read at the start of each block or call: ``gate.target`` to record into, or None.
        record: called with that target, ``key`` and the elapsed seconds at the end; must not raise.
        key: passed to ``record`` as is.
    """

    __slots__ = ("_began", "_gate", "_key", "_record", "_target", "elapsed")

    def __init__(self, gate: TimerGate[_T], record: Callable[[_T, _K, float], None], key: _K) -> None:
        self._gate = gate
        self._record = record
        self._key = key
        self._target: _T | None = None
        self._began = 0.0
        #: Seconds the last block took, or None when it was not measured (``gate.target`` was None at its start).
        self.elapsed: float | None = None

    def __enter__(self) -> Self:
        target = self._target = self._gate.target
        if target is not None:
            self._began = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        target = self._target
        if target is None:
            self.elapsed = None
            return
        self._target = None
        elapsed = self.elapsed = time.perf_counter() - self._began
        self._record(target, self._key, elapsed)

    async def __aenter__(self) -> Self:
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
        gate, record, key, clock = self._gate, self._record, self._key, time.perf_counter
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):
            coroutine_function = cast("Callable[..., Awaitable[Any]]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                target = gate.target
                if target is None:
                    return await coroutine_function(*args, **kwargs)
                began = clock()
                try:
                    return await coroutine_function(*args, **kwargs)
                finally:
                    record(target, key, clock() - began)

            wrapper = async_wrapper
        else:
            func = cast("Callable[..., Any]", fn)

            @functools.wraps(fn)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                target = gate.target
                if target is None:
                    return func(*args, **kwargs)
                began = clock()
                try:
                    return func(*args, **kwargs)
                finally:
                    record(target, key, clock() - began)

            wrapper = sync_wrapper
        return cast("Callable[_P, _R]", wrapper)
