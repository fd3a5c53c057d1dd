"""Built-in health checks: functions that return a check callable for :meth:`HealthRegistry.register_check`.

* :func:`memory_check`: system memory use and this process's resident set size (psutil).
* :func:`tcp_check`: a TCP connect to a database, cache or any other server the game needs.
* :func:`threshold_check`: any number read on each run (a queue depth, failures since the last run ...), e.g. for
  the telemetry pipeline's own exporters.

Each returned check is safe to call from the registry's check threads; it returns ``(status, message)`` with the
figures it measured and raises only on a broken ``read`` (which the registry reports as ``"raised <Type>"``).
Every factory raises ``ValueError`` naming the field and the value on bad settings.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable

import psutil

from otel_telemetry.recording.health_status import HealthStatus, worse

__all__ = ["DEGRADED_FRACTION", "memory_check", "tcp_check", "threshold_check"]

#: A measured figure above this fraction of its limit makes a check degraded (above the limit: unhealthy).
DEGRADED_FRACTION = 0.9

_MIB = 1024 * 1024

#: What the factories return: a health check.
Check = Callable[[], tuple[HealthStatus, str]]


def _number(where: str, field: str, value: object, *, positive: bool = True, high: float = math.inf) -> float:
    """``value`` as a finite float (positive, and at most ``high``, unless told otherwise). Raises ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (positive and value <= 0)
        or value > high
    ):
        wanted = "a finite number" + (" above 0" if positive else "") + (f" up to {high:g}" if high < math.inf else "")
        raise ValueError(f"{where}: {field} must be {wanted}, got {value!r}")
    return float(value)


def _grade(value: float, limit: float) -> HealthStatus:
    if value > limit:
        return HealthStatus.UNHEALTHY
    if value > DEGRADED_FRACTION * limit:
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def memory_check(max_percent: float = 90.0, process_max_bytes: int | None = None) -> Check:
    """A check of memory: the system's used percentage against ``max_percent``, and this process's resident set
    size (RSS, bytes) against ``process_max_bytes`` when given. Each figure above 90 % of its limit makes it
    degraded, above the limit unhealthy. Message: ``"system memory 72.4 % (limit 90 %); process RSS 81.2 MiB
    (limit 512.0 MiB)"``.

    Raises:
        ValueError: on ``max_percent`` outside (0, 100] or a ``process_max_bytes`` that is not a positive integer.
    """
    limit = _number("memory_check", "max_percent", max_percent, high=100.0)
    if process_max_bytes is not None and (
        isinstance(process_max_bytes, bool) or not isinstance(process_max_bytes, int) or process_max_bytes < 1
    ):
        raise ValueError(
            f"memory_check: process_max_bytes must be a positive integer or None, got {process_max_bytes!r}"
        )

    def check() -> tuple[HealthStatus, str]:
        percent = float(psutil.virtual_memory().percent)
        rss = psutil.Process().memory_info().rss  # looked up per run: right after a fork too
        status = _grade(percent, limit)
        parts = [f"system memory {percent:.1f} % (limit {limit:g} %)"]
        if process_max_bytes is None:
            parts.append(f"process RSS {rss / _MIB:.1f} MiB")
        else:
            status = worse(status, _grade(rss, process_max_bytes))
            parts.append(f"process RSS {rss / _MIB:.1f} MiB (limit {process_max_bytes / _MIB:.1f} MiB)")
        return status, "; ".join(parts)

    check.__qualname__ = f"memory_check({max_percent!r}, {process_max_bytes!r})"
    return check


def tcp_check(host: str, port: int, timeout: float = 1.0) -> Check:
    """A check that opens (and closes) a TCP connection to ``host:port`` (a database, a cache server): healthy
    with the connect time (``"connected to db:5432 in 0.4 ms"``), unhealthy when the connection fails
    (``"cannot connect to db:5432: Connection refused"``) or takes longer than ``timeout`` seconds. Register it
    with a registry ``timeout`` above this one, so that the check's own answer is what is shown.

    Raises:
        ValueError: on an empty host, a port outside 1-65535, or a non-positive timeout.
    """
    if not isinstance(host, str) or not host:
        raise ValueError(f"tcp_check: host must be a non-empty string, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"tcp_check: port must be an integer in 1-65535, got {port!r}")
    seconds = _number("tcp_check", "timeout", timeout)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def check() -> tuple[HealthStatus, str]:
        started = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=seconds):
                elapsed = time.perf_counter() - started
        except TimeoutError:
            return HealthStatus.UNHEALTHY, f"cannot connect to {where}: timed out after {seconds:g} s"
        except OSError as exc:
            return HealthStatus.UNHEALTHY, f"cannot connect to {where}: {exc.strerror or type(exc).__name__}"
        return HealthStatus.HEALTHY, f"connected to {where} in {elapsed * 1000:.1f} ms"

    check.__qualname__ = f"tcp_check({where})"
    return check


def threshold_check(
    what: str,
    read: Callable[[], float],
    *,
    degraded_above: float,
    unhealthy_above: float | None = None,
    unit: str = "",
    increase: bool = False,
) -> Check:
    """A check of a number ``read()`` returns on each run: degraded above ``degraded_above``, unhealthy above
    ``unhealthy_above`` (when given). With ``increase=True`` the figure is the increase since the previous run (for
    counters such as export failures; the first run compares with the value read when the check was made).
    Message: ``"otlp queue 120 (degraded above 100, unhealthy above 1000)"``. Thread-safe.

    Raises:
        ValueError: on an empty ``what``, a non-callable ``read``, a non-finite threshold, or ``unhealthy_above``
            below ``degraded_above``. With ``increase=True``, whatever the first ``read()`` raises.
    """
    if not isinstance(what, str) or not what:
        raise ValueError(f"threshold_check: what must be a non-empty string, got {what!r}")
    if not callable(read):
        raise ValueError(f"threshold_check: read must be callable, got {read!r}")
    degraded = _number("threshold_check", "degraded_above", degraded_above, positive=False)
    unhealthy = None
    if unhealthy_above is not None:
        unhealthy = _number("threshold_check", "unhealthy_above", unhealthy_above, positive=False)
        if unhealthy < degraded:
            raise ValueError(
                f"threshold_check: unhealthy_above ({unhealthy_above!r}) is below degraded_above ({degraded_above!r})"
            )
    suffix = f" {unit}" if unit else ""
    limits = f"degraded above {degraded:g}" + ("" if unhealthy is None else f", unhealthy above {unhealthy:g}")
    lock = threading.Lock()
    previous = [_read_number(what, read)] if increase else [0.0]

    def check() -> tuple[HealthStatus, str]:
        value = _read_number(what, read)
        figure = value
        if increase:
            with lock:
                figure, previous[0] = value - previous[0], value
        if unhealthy is not None and figure > unhealthy:
            status = HealthStatus.UNHEALTHY
        elif figure > degraded:
            status = HealthStatus.DEGRADED
        else:
            status = HealthStatus.HEALTHY
        shown = f"+{figure:g}{suffix} since the last check" if increase else f"{figure:g}{suffix}"
        return status, f"{what} {shown} ({limits})"

    check.__qualname__ = f"threshold_check({what!r})"
    return check


def _read_number(what: str, read: Callable[[], float]) -> float:
    value = read()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"threshold_check({what!r}): read() must return a finite number, got {value!r}")
    return float(value)
