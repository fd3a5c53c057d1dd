"""Hooks: callbacks of the application on telemetry's own moments, each isolated.

``telemetry.add_hook(kind, callback)`` registers ``callback`` for one kind of moment:

========================  ========================================  =================================
kind                      called with                                on which thread
========================  ========================================  =================================
``"collection"``          the new :class:`~otel_telemetry.Frame`     the collecting thread, per frame
``"export"``              ``(exporter, ok)``: ``"otlp"``,            the exporter's thread, per attempt
                          ``"prometheus"``, ``"principal"``, a file
                          exporter's name; whether it succeeded
``"event"``               the recorded :class:`Event`                the thread that recorded it
========================  ========================================  =================================

A hook that raises is logged once (per hook) and counted in :attr:`HookRegistry.errors`; the other hooks and the
telemetry around them go on. A hook that takes longer than :data:`SLOW_HOOK` seconds is counted in
:attr:`HookRegistry.slow` and logged once: hooks run inline (a frame is not published to the next output until its
collection hooks returned), so they must be quick: hand slow work to a thread or a queue of your own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

__all__ = ["HOOK_KINDS", "SLOW_HOOK", "Hook", "HookRegistry"]

_logger = logging.getLogger(__name__)

#: The kinds of moment a hook can be registered for.
HOOK_KINDS: tuple[str, ...] = ("collection", "export", "event")
#: Seconds after which a hook call is counted as slow (and logged once).
SLOW_HOOK = 0.1

#: A hook: called with the moment's arguments (see the module docs); its return value is ignored.
Hook = Callable[..., object]


class HookRegistry:
    """The hooks of one telemetry handle, by kind. Thread-safe: registration swaps an immutable map, so firing
    needs no lock.

    Args:
        clock: monotonic seconds, for :attr:`slow`.
    """

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hooks: Mapping[str, tuple[Hook, ...]] = MappingProxyType({kind: () for kind in HOOK_KINDS})
        self._logged: set[tuple[str, int]] = set()
        #: Hook calls that raised, by kind.
        self.errors: dict[str, int] = dict.fromkeys(HOOK_KINDS, 0)
        #: Hook calls that took longer than :data:`SLOW_HOOK`, by kind.
        self.slow: dict[str, int] = dict.fromkeys(HOOK_KINDS, 0)
        #: Hook calls made, by kind.
        self.calls: dict[str, int] = dict.fromkeys(HOOK_KINDS, 0)

    @staticmethod
    def _kind(kind: object) -> str:
        if kind not in HOOK_KINDS:
            raise ValueError(f"add_hook: kind must be one of {', '.join(HOOK_KINDS)}, got {kind!r}")
        return str(kind)

    def add(self, kind: str, callback: Hook) -> None:
        """Call ``callback`` at every moment of ``kind`` (see the module docs). Registering twice calls it twice.

        Raises:
            ValueError: on an unknown ``kind`` or a ``callback`` that is not callable.
        """
        kind = self._kind(kind)
        if not callable(callback):
            raise ValueError(f"add_hook: callback must be callable, got {callback!r}")
        with self._lock:
            self._hooks = MappingProxyType({**self._hooks, kind: (*self._hooks[kind], callback)})

    def remove(self, kind: str, callback: Hook) -> bool:
        """Remove one registration of ``callback`` for ``kind``; False when it was not registered."""
        kind = self._kind(kind)
        with self._lock:
            hooks = list(self._hooks[kind])
            if callback not in hooks:
                return False
            hooks.remove(callback)
            self._hooks = MappingProxyType({**self._hooks, kind: tuple(hooks)})
            return True

    def hooks(self, kind: str) -> tuple[Hook, ...]:
        """The hooks of ``kind``, in registration order."""
        return self._hooks[self._kind(kind)]

    def fire(self, kind: str, *args: object) -> None:
        """Call every hook of ``kind`` with ``args``, each isolated. Never raises."""
        hooks = self._hooks.get(kind, ())
        for hook in hooks:
            started = self._clock()
            try:
                hook(*args)
            except Exception:
                self._count(self.errors, kind)
                self._log_once(kind, hook, "hook %s for %r failed (logged once; counted)", exc_info=True)
            elapsed = self._clock() - started
            self._count(self.calls, kind)
            if elapsed > SLOW_HOOK:
                self._count(self.slow, kind)
                self._log_once(kind, hook, f"hook %s for %r took {elapsed:.3f} s: hooks must be quick (logged once)")

    def _count(self, counts: dict[str, int], kind: str) -> None:
        with self._lock:
            counts[kind] = counts.get(kind, 0) + 1

    def _log_once(self, kind: str, hook: Hook, message: str, *, exc_info: bool = False) -> None:
        key = (message[:12] + kind, id(hook))
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        label = getattr(hook, "__qualname__", None) or repr(hook)
        _logger.warning(message, label, kind, exc_info=exc_info)
