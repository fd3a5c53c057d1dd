"""How ``otel-telemetry top`` draws a :class:`~otel_telemetry.snapshot.dashboard.Dashboard` as text.

Lines never exceed the width; ANSI styles are emitted only with ``color``. Good values are green, worrying ones
yellow, bad ones red (tick rate against its target, tick p99 against the tick budget, ping, CPU, memory, handler
error ratios, cache hit rate, status widgets, firing alerts). Sections the dashboard lacks (no database, no cache,
no handlers, no widgets) take no line. Pure functions: safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from otel_telemetry.snapshot.dashboard import Dashboard, WidgetValue

__all__ = ["render", "render_error"]

_RESET = "\x1b[0m"
_STYLES = {"bold": "\x1b[1m", "dim": "\x1b[2m", "green": "\x1b[32m", "yellow": "\x1b[33m", "red": "\x1b[1;31m"}
_LEVELS = {"ok": "green", "warn": "yellow", "critical": "red"}
_MAX_ALERT_LINES = 8
_MAX_HANDLER_LINES = 8
_MAX_TABLE_LINES = 5
_LABEL = 12
_SPARK = " .:-=+*#%@"

_Segment = tuple[str, str | None]  # text, style name


def _line(segments: Sequence[_Segment], *, color: bool, width: int) -> str:
    """Join styled segments, cut to ``width`` visible characters; styles become ANSI codes only with ``color``."""
    out: list[str] = []
    room = width
    for text, style in segments:
        if room <= 0:
            break
        text = text[:room]
        room -= len(text)
        out.append(f"{_STYLES[style]}{text}{_RESET}" if color and style and text else text)
    return "".join(out).rstrip()


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _level(value: float | None, warn: float, bad: float) -> str | None:
    """green / yellow / red for a value where higher is worse."""
    if value is None:
        return None
    return "red" if value >= bad else "yellow" if value >= warn else "green"


def _bar(percent: float | None, size: int) -> str:
    if percent is None or size <= 0:
        return ""
    filled = round(max(0.0, min(100.0, percent)) / 100 * size)
    return "[" + "#" * filled + "." * (size - filled) + "]"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    size, unit = float(value), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def _with_unit(value: float | None, unit: str) -> str:
    """A widget value in its unit: seconds as milliseconds, bytes scaled, annotations (``{player}``) dropped."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.2f} ms"
    if unit == "By":
        return _bytes(value)
    suffix = "" if not unit or unit.startswith("{") or unit == "1" else f" {unit}"
    return f"{value:,.6g}{suffix}"


def _spark(history: Sequence[float | None]) -> str:
    values = [v for v in history if v is not None]
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = high - low
    steps = len(_SPARK) - 1
    return "".join(
        " " if v is None else _SPARK[round((v - low) / span * steps) if span else steps // 2] for v in history
    )


def _head(text: str) -> _Segment:
    return (text.ljust(_LABEL), "bold")


def _tick_lines(dashboard: Dashboard) -> list[list[_Segment]]:
    tick = dashboard.tick_loop
    target, budget = tick.target_fps, tick.budget_ms
    rate_style = None
    if tick.tick_rate_fps is not None and target:
        shortfall = tick.tick_rate_fps / target
        rate_style = "green" if shortfall >= 0.98 else "yellow" if shortfall >= 0.9 else "red"
    window = f"last {tick.window_seconds:.1f} s" if tick.window_seconds is not None else "since start"
    lines: list[list[_Segment]] = [
        [
            _head("Tick rate"),
            (_fmt(tick.tick_rate_fps, ".1f", " fps"), rate_style),
            (f"   target {_fmt(target, 'g', ' fps')}", None),
            (f"   budget {_fmt(budget, '.2f', ' ms')} per tick", "dim"),
        ]
    ]
    tick_line: list[_Segment] = [_head("Tick time")]
    if tick.tick_p50_ms is None or tick.tick_p95_ms is None or tick.tick_p99_ms is None:
        tick_line.append(("-", None))
    else:
        p99_style = None if budget is None else _level(tick.tick_p99_ms, 0.8 * budget, budget)
        tick_line += [
            (f"p50 {tick.tick_p50_ms:.2f} ms   p95 {tick.tick_p95_ms:.2f} ms   ", None),
            (f"p99 {tick.tick_p99_ms:.2f} ms", p99_style),
            (f"   ({window})", "dim"),
        ]
        if tick.late_ticks:
            tick_line.append((f"   {tick.late_ticks} late", "yellow"))
    lines.append(tick_line)
    players: list[_Segment] = [_head("Players"), (_fmt(dashboard.system.players, ".0f"), None)]
    if tick.entities is not None:
        players.append((f"   entities {tick.entities:,}   maps {_fmt(tick.active_maps, 'd')}", "dim"))
    lines.append(players)
    return lines


def _network_lines(dashboard: Dashboard) -> list[list[_Segment]]:
    net = dashboard.network
    ping_line: list[_Segment] = [
        _head("Ping"),
        (f"avg {_fmt(net.avg_ping_ms, '.1f', ' ms')}", _level(net.avg_ping_ms, 100, 200)),
    ]
    if net.ping_p50_ms is not None and net.ping_p95_ms is not None and net.ping_p99_ms is not None:
        ping_line += [
            (f"   p50 {net.ping_p50_ms:.1f} ms   p95 {net.ping_p95_ms:.1f} ms   ", None),
            (f"p99 {net.ping_p99_ms:.1f} ms", _level(net.ping_p99_ms, 150, 250)),
        ]
    packets = f"in {_fmt(net.packets_in_per_second, ',.0f')}   out {_fmt(net.packets_out_per_second, ',.0f')}"
    return [ping_line, [_head("Packets/s"), (packets, None)]]


def _host_lines(dashboard: Dashboard, width: int) -> list[list[_Segment]]:
    system = dashboard.system
    bar = max(0, min(30, width - _LABEL - 12))
    lines: list[list[_Segment]] = []
    for name, percent in (("CPU", system.cpu_percent), ("Memory", system.memory_percent)):
        style = _level(percent, 75, 90)
        line: list[_Segment] = [_head(name), (_fmt(percent, "5.1f", " %"), style), (f"  {_bar(percent, bar)}", style)]
        if name == "Memory" and system.memory_bytes is not None:
            line.append((f"  {_bytes(system.memory_bytes)}", "dim"))
        lines.append(line)
    return lines


def _storage_lines(dashboard: Dashboard) -> list[list[_Segment]]:
    lines: list[list[_Segment]] = []
    db = dashboard.database
    if db is not None:
        pool = ""
        if db.pool_in_use is not None and db.pool_size is not None:
            pool = f"   pool {db.pool_in_use:g}/{db.pool_size:g} ({_fmt(db.pool_utilization_percent, '.0f', ' %')})"
        lines.append(
            [
                _head("Database"),
                (f"{_fmt(db.queries_per_second, ',.1f')} q/s   avg {_fmt(db.latency_avg_ms, '.2f', ' ms')}   ", None),
                (f"p95 {_fmt(db.latency_p95_ms, '.2f', ' ms')}   p99 {_fmt(db.latency_p99_ms, '.2f', ' ms')}", None),
                (
                    f"   failed {db.failed_queries:,.0f}" if db.failed_queries is not None else "",
                    "yellow" if db.failed_queries else None,
                ),
                (pool, None),
            ]
        )
    cache = dashboard.cache
    if cache is not None:
        hit = cache.hit_rate_percent
        hit_style = None if hit is None else "red" if hit < 50 else "yellow" if hit < 80 else "green"
        lines.append(
            [
                _head("Cache"),
                (f"hit {_fmt(hit, '.1f', ' %')}", hit_style),
                (f"   {_fmt(cache.lookups_per_second, ',.1f')} lookups/s", None),
                (f"   items {cache.items:,.0f}" if cache.items is not None else "", None),
                (f"   {_bytes(cache.size_bytes)}" if cache.size_bytes is not None else "", None),
            ]
        )
    return lines


def _handler_lines(dashboard: Dashboard) -> list[list[_Segment]]:
    if not dashboard.handlers:
        return []
    lines: list[list[_Segment]] = [
        [
            _head("Handlers"),
            (f"{'name':<20} {'req/s':>8} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}", "dim"),
        ]
    ]
    for row in dashboard.handlers[:_MAX_HANDLER_LINES]:
        ratio = row.error_ratio
        style = None if ratio is None else _level(ratio, 0.01, 0.05)
        percent = None if ratio is None else ratio * 100
        latency = " ".join(f"{_fmt(v, '.2f'):>8}" for v in (row.latency_p50_ms, row.latency_p95_ms, row.latency_p99_ms))
        lines.append(
            [
                ("".ljust(_LABEL), None),
                (f"{row.handler[:20]:<20} {_fmt(row.requests_per_second, '.1f'):>8} ", None),
                (f"{_fmt(percent, '.1f', '%'):>7}", style),
                (f" {latency}", None),
            ]
        )
    hidden = len(dashboard.handlers) - _MAX_HANDLER_LINES + dashboard.handlers_omitted
    if hidden > 0:
        lines.append([("".ljust(_LABEL), None), (f"... {hidden} more", "dim")])
    return lines


def _widget_lines(widget: WidgetValue) -> list[list[_Segment]]:
    head = _head(widget.title[: _LABEL - 1])
    value = _with_unit(widget.value, widget.unit)
    if widget.kind == "status":
        status = widget.status or "unknown"
        return [[head, (f"{status.upper():8} ", _LEVELS.get(status, "dim")), (f"{value}  ({widget.metric})", None)]]
    if widget.kind == "chart":
        return [[head, (value, None), (f"  {_spark(widget.history)}", "dim")]]
    lines: list[list[_Segment]] = [[head, (f"{widget.metric} {widget.statistic}", "dim")]]
    for row in widget.rows[:_MAX_TABLE_LINES]:
        labels = ",".join(f"{k}={v}" for k, v in row.attributes.items()) or "(no attributes)"
        lines.append([("".ljust(_LABEL), None), (f"{labels[:30]:<30} {_with_unit(row.value, widget.unit)}", None)])
    hidden = len(widget.rows) - _MAX_TABLE_LINES + widget.rows_omitted
    if hidden > 0:
        lines.append([("".ljust(_LABEL), None), (f"... {hidden} more", "dim")])
    return lines


def _alert_lines(dashboard: Dashboard) -> list[list[_Segment]]:
    alerts = dashboard.alerts
    if not alerts:
        return [[_head("Alerts"), ("none", "green")]]
    lines: list[list[_Segment]] = []
    for i, alert in enumerate(alerts[:_MAX_ALERT_LINES]):
        severity = f"  severity={alert.severity}" if alert.severity else ""
        value = f"  value={alert.value:g}" if alert.value is not None else ""
        style = "red" if alert.state == "firing" else "yellow"
        text = f"{alert.state.upper():8} {alert.name}{severity}"
        lines.append([_head("Alerts" if i == 0 else ""), (text, style), (value, "dim")])
    hidden = len(alerts) - _MAX_ALERT_LINES + dashboard.alerts_omitted
    if hidden > 0:
        lines.append([("".ljust(_LABEL), None), (f"... {hidden} more", "dim")])
    return lines


def render(dashboard: Dashboard, *, color: bool, width: int = 80, source: str = "") -> str:
    """The dashboard as text lines no wider than ``width``; ANSI colours only when ``color`` (never otherwise).

    ``source`` (where the dashboard came from) is shown, dimmed, in the header.
    """
    system = dashboard.system
    server = system.server_id or (f"{system.servers} servers" if system.servers > 1 else "unknown server")
    lines: list[list[_Segment]] = [
        [("otel-telemetry top", "bold"), (f"  {server}", "bold"), (f"  {source}", "dim")],
        [("-" * width, "dim")],
        *_tick_lines(dashboard),
        *_network_lines(dashboard),
        *_host_lines(dashboard, width),
        *_storage_lines(dashboard),
        *_handler_lines(dashboard),
    ]
    for widget in dashboard.widgets:
        lines += _widget_lines(widget)
    lines += _alert_lines(dashboard)
    return "\n".join(_line(segments, color=color, width=width) for segments in lines) + "\n"


def render_error(source: str, error: str, *, color: bool, width: int = 80) -> str:
    """The block shown when a refresh failed after earlier ones succeeded."""
    segments: list[_Segment] = [("otel-telemetry top", "bold"), (f"  {source}", "dim")]
    message: list[_Segment] = [(f"cannot read the endpoint: {error} (retrying)", "red")]
    return "\n".join(_line(s, color=color, width=width) for s in (segments, message)) + "\n"
