"""Component health: manual statuses, periodic checks with thresholds and dependencies, and the ``/health`` endpoints.

What a component shows is its effective status (:mod:`otel_telemetry.recording.health_status`): its own, made worse
by an unhealthy or degraded dependency (``depends_on``), a non-critical component (``critical=False``) weighing at
most degraded. Aggregation: the worst effective status; healthy with no components. ``/health`` answers 200 while
healthy or degraded and 503 when unhealthy; ``/health/live`` answers 200 while the process can answer at all.

``/health/ready`` answers 200 when the server declared itself ready (:meth:`HealthRegistry.set_ready`) and no
component it needs is unhealthy, else 503. Which components it needs: those named with
:meth:`HealthRegistry.set_readiness_checks` (each must have reported and not be unhealthy), or, by default, every
critical component (the aggregate is not unhealthy). Degraded counts as ready: a server answering slowly still
serves better than one taken out of rotation. The body, ``{"ready", "status", "declared_ready", "failing"}``,
lists the failing components (``name``, ``status``, ``message``).

The ``/health`` body has the shape common health-check servers answer (``status`` spelled ``Healthy``,
``Degraded`` or ``Unhealthy``; ``details`` with the same ``status``, ``uptime_seconds`` (whole seconds since the
registry was created, i.e. since the telemetry handle was set up) and ``components``: ``name``, ``status``,
``message`` (null when empty) and ``timestamp`` (whole Unix epoch seconds of the last change), plus ours:
``dependencies``, ``consecutive_failures`` and ``critical``). In Python the statuses stay :class:`HealthStatus`
members (lowercase values); :func:`status_label` gives the spelling.

A check's run fails when it returns unhealthy, raises, returns an invalid result or times out. With
``failure_threshold=n`` the component stays degraded ("1 of 3 failures: ...") until n runs in a row failed, then
turns unhealthy; the first run that does not fail resets the count.

What ``/health`` shows of a check is its status and the message the check chose (``(status, message)``). A check
that raises shows as unhealthy with the exception's type only (``"raised RuntimeError"``), never its text, which
may hold a connection string or a password and would be served to anyone who can reach the port (``0.0.0.0`` by
default); the text and traceback go to the log, once per check and kind of failure (logged again after the check
recovered, or when the exception type changes). ``register_check(..., error_details=True)`` shows the text too.

Checks run periodically on a scheduler thread (:meth:`HealthRegistry.start`). Each run of a check executes in a
daemon thread of its own, so a hung check delays no other check: when it exceeds its timeout it is reported
as failed ("timed out"), and it is not started again until the hung run returns (so at most one thread per check
is ever stuck; Python cannot kill it). A result that arrives after the timeout is discarded. A check shows in
``/health`` from its first finished run on; telemetry's own check (``"telemetry"``) runs once during setup.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from otel_telemetry.recording.health_status import (
    ComponentHealth,
    HealthCheck,
    HealthStatus,
    aggregate,
    component_names,
    effective,
    find_cycle,
    parse_result,
    parse_status,
    readiness_failures,
    status_label,
    unknown_dependencies,
)

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
#: Readiness: 200 when declared ready and no needed component is unhealthy, else 503 (JSON).
READY_PATH = "/health/ready"

_JSON = ("Content-Type", "application/json")
_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_NO_STORE = ("Cache-Control", "no-store")


class _Run:
    """One execution of a check. ``done`` and ``timed_out`` change under the registry's lock only."""

    __slots__ = ("deadline", "done", "timed_out")

    def __init__(self, started: float, timeout: float) -> None:
        self.deadline = started + timeout
        self.done = threading.Event()
        self.timed_out = False  # reported failed for passing its deadline; its result will be discarded


class _Check:
    __slots__ = (
        "critical",
        "depends_on",
        "error_details",
        "failure_threshold",
        "failures",
        "fn",
        "interval",
        "name",
        "next_due",
        "run",
        "timeout",
    )

    def __init__(
        self,
        name: str,
        fn: HealthCheck,
        interval: float,
        timeout: float,
        error_details: bool,
        failure_threshold: int,
        depends_on: tuple[str, ...],
        critical: bool,
    ) -> None:
        self.name = name
        self.fn = fn
        self.interval = interval
        self.timeout = timeout
        self.error_details = error_details
        self.failure_threshold = failure_threshold
        self.depends_on = depends_on
        self.critical = critical
        self.failures = 0  # consecutive failed runs
        self.next_due = -math.inf
        self.run: _Run | None = None  # the run in flight, if any


_REGISTER = "HealthRegistry.register_check"


def _positive(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{_REGISTER}: {field} must be a positive number of seconds, got {value!r}")
    return float(value)


class HealthRegistry:
    """Component health for the ``/health`` endpoints: set by hand or by periodic checks.

    Thread-safe: every method may be called from any thread. Components and checks are kept in maps that are
    replaced, never mutated, under one lock; readers take them without the lock.

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
        self._readiness: tuple[str, ...] | None = None
        self._scheduler: threading.Thread | None = None
        self._stopping = False
        self._logged: dict[str, tuple[str, str]] = {}  # check name -> the failure last logged for it
        self._unknown_logged: set[tuple[str, str]] = set()
        #: Check runs that raised, returned a bad result or timed out.
        self.check_failures = 0
        self._runs: dict[str, tuple[int, float]] = {}  # check name -> (runs finished, seconds the last one took)

    # -- manual status ----------------------------------------------------------------------------------------
    def set(self, name: str, status: HealthStatus | str, message: str = "") -> ComponentHealth:
        """Set a component's health now (a check registered under the same name overwrites it at its next run).

        Raises:
            ValueError: on an unknown status or a non-string name (a programming error, raised where it is made).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"HealthRegistry.set: name must be a non-empty string, got {name!r}")
        component = ComponentHealth(name, parse_status(status), str(message), time.time())
        with self._lock:
            self._components = {**self._components, name: component}
        return component

    def remove(self, name: str) -> None:
        """Forget a component (and its check, if any). Components depending on it then show it as unknown."""
        with self._lock:
            self._components = {k: v for k, v in self._components.items() if k != name}
            self._checks = {k: v for k, v in self._checks.items() if k != name}

    # -- readiness ----------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the server declared itself ready for traffic (default True)."""
        return self._ready

    def set_ready(self, ready: bool) -> None:
        """Declare the server ready (or not) for traffic."""
        self._ready = bool(ready)

    @property
    def readiness_checks(self) -> tuple[str, ...] | None:
        """The components readiness needs (:meth:`set_readiness_checks`), or None: every critical component."""
        return self._readiness

    def set_readiness_checks(self, names: Iterable[str] | None) -> None:
        """Make ``/health/ready`` depend on the components ``names`` (checks or components set by hand): ready
        only when each has reported and is not unhealthy (degraded is ready). None restores the default (every
        critical component: the aggregate is not unhealthy); an empty iterable means the declaration alone.

        Names need not exist yet (a component that has not reported counts as not ready).

        Raises:
            ValueError: when ``names`` is a string or holds anything but non-empty strings.
        """
        chosen = None if names is None else component_names("HealthRegistry.set_readiness_checks", "names", names)
        self._readiness = chosen

    def readiness_document(self) -> dict[str, object]:
        """The ``/health/ready`` JSON body: ``{"ready": bool, "status": <aggregate, lowercase>, "declared_ready":
        bool, "failing": [{"name", "status", "message"}]}``; ``status`` of a needed component that has not reported
        is ``"missing"``."""
        components = self._effective()
        failing = readiness_failures(components, self._readiness)
        return {
            "ready": self._ready and not failing,
            "status": aggregate(components.values()).value,
            "declared_ready": self._ready,
            "failing": failing,
        }

    # -- reading ------------------------------------------------------------------------------------------------
    def _effective(self) -> dict[str, ComponentHealth]:
        return effective(self._components, self._checks.keys())

    @property
    def check_names(self) -> tuple[str, ...]:
        """The names of the registered checks, sorted."""
        return tuple(sorted(self._checks))

    def check_runs(self) -> dict[str, tuple[int, float]]:
        """Per check: ``(runs finished, seconds the last run took)``; a run that hangs counts when it returns."""
        return dict(self._runs)

    def components(self) -> list[ComponentHealth]:
        """Every component's latest health, sorted by name, with its effective status (dependencies applied)."""
        components = self._effective()
        return [components[name] for name in sorted(components)]

    def status(self) -> HealthStatus:
        """The aggregate: the worst effective status (a non-critical component weighs degraded at most);
        healthy when there is no component."""
        return aggregate(self._effective().values())

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
        failure_threshold: int = 1,
        depends_on: Iterable[str] = (),
        critical: bool = True,
        error_details: bool = False,
    ) -> None:
        """Run ``fn`` every ``interval`` seconds (once started) and record its result as component ``name``.

        ``fn`` returns a :class:`HealthStatus` or ``(status, message)``; the message is shown as is. Raising makes
        the run fail with the message ``"raised <ExceptionType>"`` (the exception's text too only with
        ``error_details=True``; it always goes to the log); an invalid result fails with "returned an invalid
        result (<type>)"; running longer than ``timeout`` seconds fails with "timed out after <timeout> s".
        A failed run (those, or an unhealthy result) turns the component unhealthy once ``failure_threshold``
        runs in a row failed; before that it is degraded with "<n> of <threshold> failures: <message>".

        ``depends_on`` names the components this one needs (see the module docs for what they change);
        ``critical=False`` makes this component weigh at most degraded in the aggregate and on its dependents.
        Registering a name again replaces its check (and resets its failure count). A dependency unknown at the
        check's first run is reported (unhealthy, "unknown dependency 'x'") and logged once.

        Raises:
            ValueError: on a bad name, a non-callable ``fn``, a non-positive interval or timeout, a
                ``failure_threshold`` below 1, bad ``depends_on`` names, or a dependency cycle (named in order).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{_REGISTER}: name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise ValueError(f"{_REGISTER}: fn must be callable, got {fn!r}")
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(
                f"{_REGISTER}: failure_threshold must be an integer of at least 1, got {failure_threshold!r}"
            )
        dependencies = component_names(_REGISTER, "depends_on", depends_on)
        check = _Check(
            name,
            fn,
            _positive("interval", interval),
            _positive("timeout", timeout),
            bool(error_details),
            failure_threshold,
            dependencies,
            bool(critical),
        )
        with self._wake:
            graph = {n: c.depends_on for n, c in self._checks.items()}
            graph[name] = dependencies
            cycle = find_cycle(graph, name)
            if cycle is not None:
                raise ValueError(f"{_REGISTER}: depends_on of {name!r} makes a cycle: {' -> '.join(cycle)}")
            self._checks = {**self._checks, name: check}
            self._wake.notify_all()

    def _launch(self, check: _Check, now: float) -> _Run:
        """Start one run of ``check`` on a thread of its own. Call with ``_lock`` held."""
        run = _Run(now, check.timeout)
        check.run = run
        check.next_due = now + check.interval
        thread = threading.Thread(
            target=self._execute, args=(check, run), name=f"otel-telemetry-health-check-{check.name}", daemon=True
        )
        thread.start()
        return run

    def _execute(self, check: _Check, run: _Run) -> None:
        failure: BaseException | None = None
        what = "raised"
        started = time.perf_counter()
        try:
            result = check.fn()
        except BaseException as exc:  # even SystemExit: the run must still complete below
            status, message, failure = HealthStatus.UNHEALTHY, f"raised {type(exc).__name__}", exc
            if check.error_details:
                message = f"{message}: {exc}"
        else:
            try:
                status, message = parse_result(result)
            except Exception as exc:  # the value the check returned is shown in the log only
                status, message, failure = (
                    HealthStatus.UNHEALTHY,
                    f"returned an invalid result ({type(result).__name__})",
                    exc,
                )
                what = "returned an invalid result"
        took = time.perf_counter() - started
        with self._wake:
            runs = self._runs.get(check.name, (0, 0.0))[0] + 1
            self._runs = {**self._runs, check.name: (runs, took)}
            if check.run is run:
                check.run = None
            if failure is not None:
                self._count_failure(check.name, what, failure)
            elif not run.timed_out:
                self._logged.pop(check.name, None)  # recovered: its next failure is logged again
            if not run.timed_out and self._clock() > run.deadline:
                self._time_out(check, run)  # finished late before anyone noticed: still a timeout
            if not run.timed_out:
                self._record(check, status, message)
            run.done.set()
            self._wake.notify_all()
        self._log_unknown(check)

    def _record(self, check: _Check, status: HealthStatus, message: str) -> None:
        """Store the result of one run of ``check`` through its failure threshold. Call with ``_lock`` held."""
        if self._checks.get(check.name) is not check:
            return  # replaced or removed meanwhile
        if status is HealthStatus.UNHEALTHY:
            check.failures += 1
            if check.failures < check.failure_threshold:
                status = HealthStatus.DEGRADED
                count = f"{check.failures} of {check.failure_threshold} failures"
                message = f"{count}: {message}" if message else count
        else:
            check.failures = 0
        component = ComponentHealth(
            check.name, status, message, time.time(), check.depends_on, check.failures, check.critical
        )
        self._components = {**self._components, component.name: component}

    def _log_unknown(self, check: _Check) -> None:
        """Log, once per check and name, a dependency that is neither a component nor a check."""
        component = self._components.get(check.name)
        if component is None:
            return
        known = self._components.keys() | self._checks.keys()
        for dependency in unknown_dependencies(component, known):
            key = (check.name, dependency)
            with self._lock:
                first = key not in self._unknown_logged
                self._unknown_logged.add(key)
            if first:
                _logger.warning("health check %r depends on unknown component %r (logged once)", check.name, dependency)

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
        """Report ``check``'s run failed because ``run`` passed its deadline. Call with ``_lock`` held."""
        if run.timed_out or run.done.is_set():
            return
        run.timed_out = True
        self._count_failure(check.name, "timed out")
        self._record(check, HealthStatus.UNHEALTHY, f"timed out after {check.timeout:g} s")

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
            self._scheduler = threading.Thread(target=self._schedule, name="otel-telemetry-health", daemon=True)
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
        3600, "components": [{"name", "status", "message", "timestamp", "dependencies", "consecutive_failures",
        "critical"}]}}`` (see the module docstring)."""
        components = self.components()
        status = status_label(aggregate(components))
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
                readiness = self.readiness_document()
                code = 200 if readiness["ready"] else 503
                return code, [_JSON, _NO_STORE], json.dumps(readiness).encode("utf-8")
            return None
        except Exception:
            _logger.exception("answering %r failed", path)
            return 500, [_TEXT, _NO_STORE], b"internal error\n"
