"""Component health: manual statuses, periodic checks, the aggregate status and the ``/health`` endpoints.

Aggregation: any component unhealthy → unhealthy; else any degraded → degraded; else (or with no components)
healthy. ``/health`` answers 200 while healthy or degraded and 503 when unhealthy; ``/health/live`` answers 200
while the process can answer at all; ``/health/ready`` answers 200 when the server declared itself ready and is
not unhealthy, else 503.

The ``/health`` body has the shape common health-check servers answer (``status`` spelled ``Healthy``,
``Degraded`` or ``Unhealthy``; ``details`` with the same ``status``, ``uptime_seconds`` (whole seconds since the
registry was created, i.e. since the telemetry handle was set up) and ``components``: ``name``, ``status``,
``message`` (null when empty) and ``timestamp`` (whole Unix epoch seconds of the last change)). In Python the
statuses stay :class:`HealthStatus` members (lowercase values); :func:`status_label` gives the spelling.

What ``/health`` shows of a check is its status and the message the check chose (``(status, message)``). A check
that raises shows as unhealthy with the exception's type only (``"raised RuntimeError"``), never its text, which
may hold a connection string or a password and would be served to anyone who can reach the port (``0.0.0.0`` by
default); the text and traceback go to the log, once per check and kind of failure (logged again after the check
recovered, or when the exception type changes). ``register_check(..., error_details=True)`` shows the text too.

Checks run periodically on a scheduler thread (:meth:`HealthRegistry.start`). Each run of a check executes in a
daemon thread of its own, so a hung check delays no other check: when it exceeds its timeout it is reported
unhealthy ("timed out"), and it is not started again until the hung run returns (so at most one thread per check
is ever stuck; Python cannot kill it). A result that arrives after the timeout is discarded.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

__all__ = [
    "HEALTH_PATH",
    "LIVE_PATH",
    "READY_PATH",
    "ComponentHealth",
    "HealthCheck",
    "HealthRegistry",
    "HealthStatus",
    "status_label",
]

_logger = logging.getLogger(__name__)

#: The aggregate health, with every component (JSON).
HEALTH_PATH = "/health"
#: Liveness: 200 "ok" while the process answers.
LIVE_PATH = "/health/live"
#: Readiness: 200 when ready and not unhealthy, else 503 (JSON).
READY_PATH = "/health/ready"

_JSON = ("Content-Type", "application/json")
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_NO_STORE = ("Cache-Control", "no-store")


class HealthStatus(str, Enum):
    """The health of a component or of the whole server."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


_LABELS = {HealthStatus.HEALTHY: "Healthy", HealthStatus.DEGRADED: "Degraded", HealthStatus.UNHEALTHY: "Unhealthy"}


def status_label(status: HealthStatus) -> str:
    """The spelling ``/health`` uses for ``status``: ``"Healthy"``, ``"Degraded"`` or ``"Unhealthy"``."""
    return _LABELS[status]


_SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}

#: What a check function returns: a status, or a status and a message.
HealthCheck = Callable[[], HealthStatus | tuple[HealthStatus, str]]


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One component's latest health. ``timestamp`` is when it was set (Unix epoch seconds)."""

    name: str
    status: HealthStatus
    message: str
    timestamp: float

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping, as ``/health`` shows it: status spelled by :func:`status_label`, an empty message
        as None, the timestamp in whole seconds."""
        return {
            "name": self.name,
            "status": status_label(self.status),
            "message": self.message or None,
            "timestamp": int(self.timestamp),
        }


def _status(value: object) -> HealthStatus:
    """``value`` as a status (a member or its value, any case). Raises ValueError naming the value."""
    if isinstance(value, HealthStatus):
        return value
    if isinstance(value, str):
        try:
            return HealthStatus(value.strip().lower())
        except ValueError:
            pass
    raise ValueError(f"health status must be one of {[s.value for s in HealthStatus]}, got {value!r}")


class _Run:
    """One execution of a check. ``done`` and ``timed_out`` change under the registry's lock only."""

    __slots__ = ("deadline", "done", "timed_out")

    def __init__(self, started: float, timeout: float) -> None:
        self.deadline = started + timeout
        self.done = threading.Event()
        self.timed_out = False  # reported unhealthy for passing its deadline; its result will be discarded


class _Check:
    __slots__ = ("error_details", "fn", "interval", "name", "next_due", "run", "timeout")

    def __init__(self, name: str, fn: HealthCheck, interval: float, timeout: float, error_details: bool) -> None:
        self.name = name
        self.fn = fn
        self.interval = interval
        self.timeout = timeout
        self.error_details = error_details
        self.next_due = -math.inf
        self.run: _Run | None = None  # the run in flight, if any


def _positive(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"HealthRegistry.register_check: {field} must be a positive number of seconds, got {value!r}")
    return float(value)


class HealthRegistry:
    """Component health for the ``/health`` endpoints: set by hand or by periodic checks.

    Thread-safe: every method may be called from any thread. Components are kept in a map that is replaced,
    never mutated, under one lock; readers take it without the lock.

    Args:
        clock: monotonic seconds, for scheduling checks and the uptime.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._components: dict[str, ComponentHealth] = {}
        self._checks: dict[str, _Check] = {}
        self._ready = True
        self._scheduler: threading.Thread | None = None
        self._stopping = False
        self._logged: dict[str, tuple[str, str]] = {}  # check name -> the failure last logged for it
        #: Check runs that raised, returned a bad result or timed out.
        self.check_failures = 0

    # -- manual status ----------------------------------------------------------------------------------------
    def set(self, name: str, status: HealthStatus | str, message: str = "") -> ComponentHealth:
        """Set a component's health now (a check registered under the same name overwrites it at its next run).

        Raises:
            ValueError: on an unknown status or a non-string name (a programming error, raised where it is made).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"HealthRegistry.set: name must be a non-empty string, got {name!r}")
        component = ComponentHealth(name, _status(status), str(message), time.time())
        with self._lock:
            self._components = {**self._components, name: component}
        return component

    def remove(self, name: str) -> None:
        """Forget a component (and its check, if any)."""
        with self._lock:
            self._components = {k: v for k, v in self._components.items() if k != name}
            self._checks.pop(name, None)

    # -- readiness ----------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the server declared itself ready for traffic (default True)."""
        return self._ready

    def set_ready(self, ready: bool) -> None:
        """Declare the server ready (or not) for traffic."""
        self._ready = bool(ready)

    # -- reading ------------------------------------------------------------------------------------------------
    def components(self) -> list[ComponentHealth]:
        """Every component's latest health, sorted by name."""
        components = self._components
        return [components[name] for name in sorted(components)]

    def status(self) -> HealthStatus:
        """The aggregate: the worst component status; healthy when there is none."""
        return _aggregate(self._components.values())

    @property
    def uptime_seconds(self) -> float:
        """Seconds since this registry was created (with the telemetry handle)."""
        return max(0.0, self._clock() - self._started)

    # -- checks -------------------------------------------------------------------------------------------------
    def register_check(
        self,
        name: str,
        fn: HealthCheck,
        *,
        interval: float = 10.0,
        timeout: float = 2.0,
        error_details: bool = False,
    ) -> None:
        """Run ``fn`` every ``interval`` seconds (once started) and record its result as component ``name``.

        ``fn`` returns a :class:`HealthStatus` or ``(status, message)``; the message is shown as is. Raising makes
        the component unhealthy with the message ``"raised <ExceptionType>"`` (the exception's text too only with
        ``error_details=True``; it always goes to the log); an invalid result makes it unhealthy, "returned an
        invalid result (<type>)"; running longer than ``timeout`` seconds makes it unhealthy, "timed out".
        Registering a name again replaces its check.

        Raises:
            ValueError: on a bad name, a non-callable ``fn``, or a non-positive interval or timeout.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"HealthRegistry.register_check: name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise ValueError(f"HealthRegistry.register_check: fn must be callable, got {fn!r}")
        check = _Check(name, fn, _positive("interval", interval), _positive("timeout", timeout), bool(error_details))
        with self._wake:
            self._checks[name] = check
            self._wake.notify_all()

    def _launch(self, check: _Check, now: float) -> _Run:
        """Start one run of ``check`` on a thread of its own. Call with ``_lock`` held."""
        run = _Run(now, check.timeout)
        check.run = run
        check.next_due = now + check.interval
        thread = threading.Thread(
            target=self._execute, args=(check, run), name=f"health-check-{check.name}", daemon=True
        )
        thread.start()
        return run

    def _execute(self, check: _Check, run: _Run) -> None:
        failure: BaseException | None = None
        what = "raised"
        try:
            result = check.fn()
        except BaseException as exc:  # even SystemExit: the run must still complete below
            status, message, failure = HealthStatus.UNHEALTHY, f"raised {type(exc).__name__}", exc
            if check.error_details:
                message = f"{message}: {exc}"
        else:
            try:
                status, message = _result(result)
            except Exception as exc:  # the value the check returned is shown in the log only
                status, message, failure = (
                    HealthStatus.UNHEALTHY,
                    f"returned an invalid result ({type(result).__name__})",
                    exc,
                )
                what = "returned an invalid result"
        with self._wake:
            if check.run is run:
                check.run = None
            if failure is not None:
                self._count_failure(check.name, what, failure)
            elif not run.timed_out:
                self._logged.pop(check.name, None)  # recovered: its next failure is logged again
            if not run.timed_out and self._clock() > run.deadline:
                self._time_out(check, run)  # finished late before anyone noticed: still a timeout
            if not run.timed_out and self._checks.get(check.name) is check:
                self._put(ComponentHealth(check.name, status, message, time.time()))
            run.done.set()
            self._wake.notify_all()

    def _put(self, component: ComponentHealth) -> None:
        """Store ``component``. Call with ``_lock`` held."""
        self._components = {**self._components, component.name: component}

    def _count_failure(self, name: str, what: str, exc: BaseException | None = None) -> None:
        """Count a failed run; log it when it differs from the failure last logged for this check (its kind and
        exception type), with the details /health does not show. Call with ``_lock`` held."""
        self.check_failures += 1
        signature = (what, type(exc).__qualname__ if exc is not None else "")
        if self._logged.get(name) != signature:
            self._logged[name] = signature
            _logger.warning(
                "health check %r %s%s (logged once until it changes or recovers)",
                name,
                what,
                f": {type(exc).__name__}: {exc}" if exc is not None else "",
                exc_info=exc,
            )

    def _time_out(self, check: _Check, run: _Run) -> None:
        """Report ``check`` unhealthy because ``run`` passed its deadline. Call with ``_lock`` held."""
        if run.timed_out or run.done.is_set():
            return
        run.timed_out = True
        self._count_failure(check.name, "timed out")
        if self._checks.get(check.name) is check:
            message = f"timed out after {check.timeout:g} s"
            self._put(ComponentHealth(check.name, HealthStatus.UNHEALTHY, message, time.time()))

    def run_checks(self) -> list[ComponentHealth]:
        """Run every registered check once now (in parallel) and wait for them, each up to its timeout.

        A check still running from the background is waited for instead of started again. Returns
        :meth:`components`.
        """
        with self._lock:
            now = self._clock()
            runs = [(check, check.run or self._launch(check, now)) for check in self._checks.values()]
        for check, run in runs:
            remaining = run.deadline - self._clock()
            if not run.done.wait(max(0.0, remaining)):
                with self._lock:
                    self._time_out(check, run)
        return self.components()

    # -- scheduler ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the scheduler thread that runs the checks periodically (the first runs start now)."""
        with self._lock:
            if self._scheduler is not None and self._scheduler.is_alive():
                return
            self._stopping = False
            self._scheduler = threading.Thread(target=self._schedule, name="health-scheduler", daemon=True)
            self._scheduler.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the scheduler; True when it ended within ``timeout`` seconds. Runs in flight are abandoned."""
        with self._wake:
            self._stopping = True
            scheduler = self._scheduler
            self._wake.notify_all()
        if scheduler is None:
            return True
        scheduler.join(timeout)
        stopped = not scheduler.is_alive()
        if stopped:
            with self._lock:
                if self._scheduler is scheduler:
                    self._scheduler = None
        return stopped

    def _schedule(self) -> None:
        with self._wake:
            while not self._stopping:
                now = self._clock()
                wake_at = math.inf
                for check in list(self._checks.values()):
                    if check.run is None and now >= check.next_due:
                        try:
                            self._launch(check, now)
                        except Exception:  # e.g. no more threads: try again next interval
                            _logger.exception("could not start health check %r", check.name)
                            check.run = None
                            check.next_due = now + check.interval
                    run = check.run
                    if run is None:
                        wake_at = min(wake_at, check.next_due)
                    elif not run.timed_out:
                        if now >= run.deadline:
                            self._time_out(check, run)
                        else:
                            wake_at = min(wake_at, run.deadline)
                    # A run that timed out and is still hung notifies us when it returns.
                self._wake.wait(None if wake_at == math.inf else max(0.0, wake_at - now))

    # -- HTTP -------------------------------------------------------------------------------------------------
    def health_document(self) -> dict[str, object]:
        """The ``/health`` JSON body: ``{"status": "Healthy", "details": {"status": "Healthy", "uptime_seconds":
        3600, "components": [{"name", "status", "message", "timestamp"}]}}`` (see the module docstring)."""
        components = self.components()
        status = status_label(_aggregate(components))
        return {
            "status": status,
            "details": {
                "status": status,
                "uptime_seconds": int(self.uptime_seconds),
                "components": [c.as_dict() for c in components],
            },
        }

    def handle(self, path: str) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """Answer a GET of ``path``: ``(status code, headers, body)``, or None when the path is not ours.

        The query string and one trailing slash are ignored. Never raises (an internal error answers 500).
        """
        try:
            route = urlsplit(path).path
            if len(route) > 1:
                route = route.rstrip("/")
            if route == HEALTH_PATH:
                document = self.health_document()
                code = 503 if document["status"] == status_label(HealthStatus.UNHEALTHY) else 200
                return code, [_JSON, _NO_STORE], json.dumps(document).encode("utf-8")
            if route == LIVE_PATH:
                return 200, [_TEXT, _NO_STORE], b"ok\n"
            if route == READY_PATH:
                status = self.status()
                ready = self._ready and status is not HealthStatus.UNHEALTHY
                body = json.dumps({"ready": ready, "status": status.value}).encode("utf-8")
                return (200 if ready else 503), [_JSON, _NO_STORE], body
            return None
        except Exception:
            _logger.exception("answering %r failed", path)
            return 500, [_TEXT, _NO_STORE], b"internal error\n"


def _result(result: object) -> tuple[HealthStatus, str]:
    """A check's result as ``(status, message)``. Raises ValueError (naming the value, for the log) when invalid."""
    if isinstance(result, tuple) and len(result) == 2:
        return _status(result[0]), str(result[1])
    return _status(result), ""


def _aggregate(components: Iterable[ComponentHealth]) -> HealthStatus:
    worst = HealthStatus.HEALTHY
    for component in components:
        if _SEVERITY[component.status] > _SEVERITY[worst]:
            worst = component.status
    return worst
