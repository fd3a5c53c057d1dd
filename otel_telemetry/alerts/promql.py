"""PromQL for ``ServerMetrics`` fields and alert rules, derived from the catalog.

Each catalog entry says which ``ServerMetrics`` fields it fills (:func:`~otel_telemetry.catalog.snapshot_fields`),
with what scale, attribute filter, key and statistic; that is all it takes to read the same number back from the
names this SDK exports:

* a gauge or counter field is its series, filtered by the entry's ``where`` (and ``selector``) attributes, times
  its scale: ``server_tick_duration_avg_seconds * 1000``; a field keyed by an attribute takes the key as a label
  matcher: ``server_game_map_players{map="map-001"}``;
* a percentage over the last collection interval whose entry names the counters behind it (``rate_counter`` over
  ``percent_of``) is the ratio of their rates over the range, so a rule sees every packet of the last five minutes
  rather than one interval's sample: ``sum by (service_instance_id) (rate(server_network_packets_lost_total[5m]))
  / sum by (service_instance_id) (rate(server_network_packets_total{direction="sent"}[5m])) * 100``;
* a histogram's percentiles are ``histogram_quantile`` over the rate of its ``_bucket`` series, its average the
  rate of ``_sum`` over the rate of ``_count``, its count the increase of ``_count``, summed by the labels that
  tell servers apart;
* the minimum and maximum of a histogram's window have no PromQL equivalent: buckets do not carry them.

Rules on any metric by name (:func:`rule_promql`) read the names ``/metrics`` shows: the catalog's, the ``@traced``
handlers', those of a frame given, and names already in Prometheus form. ``value`` is ``sum(x{match})``, ``rate``
``sum(rate(x_total{match}[window]))`` (``irate`` over the range without a window: since the previous sample, as the
SDK compares since the previous frame), ``ratio`` the ratio of two such sums (no result while the denominator does
not increase), quantiles ``histogram_quantile`` over the buckets' rate, ``mean`` and ``count`` as above; every sum
``by`` the labels that tell servers apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Literal

from otel_telemetry.alerts.model import _RANGE, _WINDOWED, HISTOGRAM_STATISTICS, QUANTILES, AlertRule, _fmt
from otel_telemetry.alerts.names import KNOWN_METRICS, ExportedName, PrometheusKind, is_prometheus_name
from otel_telemetry.catalog import Instrument, MetricSpec, SnapshotField, lookup, snapshot_fields
from otel_telemetry.snapshot.model import Distribution, Percentiles

__all__ = [
    "DEFAULT_BY",
    "NO_PROMQL_REASON",
    "is_prometheus_duration",
    "prometheus_duration",
    "promql_expression",
    "rule_expression",
    "rule_promql",
]


@dataclass(frozen=True, slots=True)
class _Source:
    """How one ``ServerMetrics`` path reads in PromQL.

    ``value``: the series itself; ``quantile``: ``histogram_quantile`` over the buckets' rate; ``avg``: rate of
    ``_sum`` over rate of ``_count``; ``count``: increase of ``_count``; ``ratio``: rate of the counter ``name``
    over the rate of the counter ``over`` (selected by ``over_matchers``). ``scale`` converts the exported unit to
    the snapshot's (1000: seconds to milliseconds; 100 for a ratio in percent). ``wildcard`` names the label a
    mapping key selects.
    """

    kind: Literal["value", "quantile", "avg", "count", "ratio"]
    name: str
    scale: float = 1.0
    q: float = 0.0
    matchers: tuple[tuple[str, str], ...] = ()
    wildcard: str | None = None
    over: str = ""
    over_matchers: tuple[tuple[str, str], ...] = ()


#: What each statistic of a histogram window is in PromQL (None: nothing; min and max are not in the buckets).
_STATS: Mapping[str, tuple[Literal["quantile", "avg", "count"], float] | None] = MappingProxyType(
    {
        "count": ("count", 0.0),
        "avg": ("avg", 0.0),
        "min": None,
        "max": None,
        "p50": ("quantile", 0.5),
        "p95": ("quantile", 0.95),
        "p99": ("quantile", 0.99),
    }
)


def _sources(spec: MetricSpec, item: SnapshotField) -> dict[str, _Source]:
    """The PromQL sources of one catalog field, by ``ServerMetrics`` path (``*`` for the key of a mapping)."""
    # A mapping field's key is a label; the selector picks the entry's series out of a shared instrument, except
    # for the label the key itself varies (every phase of ``server.tick.phase.duration`` is ``phase_time_ms``).
    matchers = (*((k, v) for k, v in spec.selector.items() if k != item.key), *item.where.items())
    prefix = f"{item.path}.*" if item.key is not None else item.path
    name = spec.prometheus_name

    def source(kind: Literal["value", "quantile", "avg", "count"], scale: float, q: float = 0.0) -> _Source:
        return _Source(kind, name, scale, q, matchers, item.key)

    histogram = spec.instrument is Instrument.HISTOGRAM
    if spec.rate_counter is not None and spec.percent_of is not None and item.key is None:
        numerator, denominator = lookup(spec.rate_counter), lookup(spec.percent_of)
        return {
            prefix: _Source(
                "ratio",
                numerator.prometheus_name,
                100.0 * item.scale,
                matchers=tuple(spec.rate_where.items()),
                over=denominator.prometheus_name,
                over_matchers=tuple(spec.percent_of_where.items()),
            )
        }
    if item.stat == "value":
        if histogram:
            raise RuntimeError(f"catalog entry {spec.id}: histogram field {item.path!r} needs a stat")
        return {prefix: source("value", item.scale)}
    if item.stat in ("avg", "min", "max"):
        stat = _STATS[item.stat]
        return {} if stat is None else {prefix: source(stat[0], item.scale, stat[1])}
    record: type = {"percentiles": Percentiles, "distribution": Distribution}[item.stat]
    found: dict[str, _Source] = {}
    for part in (f.name for f in fields(record)):
        if part not in _STATS:
            raise RuntimeError(f"{record.__name__}.{part}: no PromQL statistic for it")
        stat = _STATS[part]
        if stat is not None:
            kind, q = stat
            found[f"{prefix}.{part}"] = source(kind, 1.0 if kind == "count" else item.scale, q)
    return found


def _build_table() -> dict[str, _Source]:
    table: dict[str, _Source] = {}
    for spec, item in snapshot_fields():
        if item.ordered:
            continue  # a tuple (per core, load average): not a path a rule can name
        table.update(_sources(spec, item))
    return table


#: ``ServerMetrics`` path (``*`` = any mapping key) -> its PromQL source.
_PROMQL: Mapping[str, _Source] = MappingProxyType(_build_table())
_WILDCARDS: tuple[tuple[tuple[str, ...], _Source], ...] = tuple(
    (tuple(path.split(".")), source) for path, source in _PROMQL.items() if "*" in path
)
#: Why a path has no PromQL equivalent: the extremes of a histogram's window are not in its buckets.
NO_PROMQL_REASON = "histograms do not carry min/max; in-process only"
_DURATION = re.compile(r"(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?")
#: Histogram statistics are summed by the label that tells servers apart. collector-config/prometheus.yml puts
#: ``service_instance_id`` on every series, whether Prometheus scrapes servers directly (a target label) or the
#: gateway Collector (``resource_to_telemetry_conversion``).
DEFAULT_BY: tuple[str, ...] = ("service_instance_id",)


def is_prometheus_duration(text: str) -> bool:
    """True for a non-empty Prometheus duration such as ``"5m"`` or ``"1h30m"``."""
    return bool(text) and _DURATION.fullmatch(text) is not None


def _source(path: str) -> tuple[_Source, tuple[tuple[str, str], ...]] | None:
    found = _PROMQL.get(path)
    if found is not None:
        return found, found.matchers
    parts = tuple(path.split("."))
    for pattern, source in _WILDCARDS:
        if len(pattern) == len(parts) and all(p in ("*", s) for p, s in zip(pattern, parts, strict=True)):
            key = parts[pattern.index("*")]
            assert source.wildcard is not None
            return source, (*source.matchers, (source.wildcard, key))
    return None


def _label_value(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def prometheus_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: ``90`` -> ``"1m30s"``, ``0.25`` -> ``"250ms"``, ``0`` -> ``"0s"``."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Expr:
    text: str
    atomic: bool

    def wrapped(self) -> str:
        return self.text if self.atomic else f"({self.text})"


def _render_source(
    source: _Source, matchers: tuple[tuple[str, str], ...], by: Sequence[str], range_: str, offset: str
) -> _Expr:
    selector = source.name
    if matchers:
        selector += "{" + ", ".join(f"{k}={_label_value(v)}" for k, v in matchers) + "}"
    off = f" offset {offset}" if offset else ""
    scale = "" if source.scale == 1 else f" * {_fmt(source.scale)}"

    def summed(suffix: str, function: str, extra: tuple[str, ...] = (), series: str = "") -> str:
        bucketed = series or selector.replace(source.name, source.name + suffix, 1)
        labels = ", ".join((*extra, *by))
        clause = f"sum by ({labels}) " if labels else "sum "
        return f"{clause}({function}({bucketed}[{range_}]{off}))"

    if source.kind == "value":
        return _Expr(f"{selector}{off}{scale}", atomic=not scale)
    if source.kind == "quantile":
        inner = summed("_bucket", "rate", ("le",))
        return _Expr(f"histogram_quantile({_fmt(source.q)}, {inner}){scale}", atomic=not scale)
    if source.kind == "avg":
        ratio = f"{summed('_sum', 'rate')} / {summed('_count', 'rate')}"
        return _Expr(f"{ratio}{scale}", atomic=False)
    if source.kind == "ratio":
        whole = source.over
        if source.over_matchers:
            whole += "{" + ", ".join(f"{k}={_label_value(v)}" for k, v in source.over_matchers) + "}"
        ratio = f"{summed('', 'rate')} / {summed('', 'rate', series=whole)}"
        return _Expr(f"{ratio}{scale}", atomic=False)
    return _Expr(summed("_count", "increase"), atomic=True)


def promql_expression(
    path: str, *, quantile_range: str = "5m", by: Sequence[str] = DEFAULT_BY, offset: str = ""
) -> str | None:
    """The PromQL that reads ``ServerMetrics`` field ``path`` from this SDK's Prometheus names, in the snapshot's
    units (milliseconds where the snapshot has milliseconds); None when it has no PromQL equivalent.

    Histogram statistics use ``rate(..._bucket[quantile_range])`` summed ``by`` these labels (``le`` added).
    """
    found = _source(path)
    if found is None:
        return None
    source, matchers = found
    return _render_source(source, matchers, by, quantile_range, offset).text


def rule_expression(
    rule: AlertRule,
    quantile_range: str = "5m",
    by: Sequence[str] = DEFAULT_BY,
    *,
    metrics: Mapping[str, ExportedName] | None = None,
) -> str | None:
    """The PromQL condition of ``rule`` (``server_cpu_usage_percent > 80``), the same test the SDK runs in process;
    None when it has no PromQL equivalent (:func:`rule_promql` says why)."""
    return rule_promql(rule, quantile_range, by, metrics=metrics)[0]


def rule_promql(
    rule: AlertRule,
    quantile_range: str = "5m",
    by: Sequence[str] = DEFAULT_BY,
    *,
    metrics: Mapping[str, ExportedName] | None = None,
) -> tuple[str | None, str]:
    """``(expression, "")`` for a rule PromQL can express, ``(None, why not)`` otherwise.

    A metric-name rule's metric is looked up in ``metrics`` (a frame's names: ``FrameView(frame).exported()``),
    then among the metrics every handle exports (:data:`~otel_telemetry.alerts.names.KNOWN_METRICS`); without
    ``metrics``, a name in Prometheus form is taken as it is (``_total`` added for ``rate``/``ratio``). With
    ``metrics``, a name in neither is not on ``/metrics`` (a :meth:`AlertManager.check_metric` name) and is skipped.
    """
    if not rule.reads_snapshot:
        return _name_rule(rule, quantile_range, by, metrics)
    found = _source(rule.metric)
    if found is None:
        return None, f"{rule.metric} has no PromQL equivalent ({NO_PROMQL_REASON})"
    source, matchers = found
    expr = _render_source(source, matchers, by, quantile_range, "")
    kind = rule.kind
    if kind in _WINDOWED:
        assert rule.window is not None and rule.threshold is not None
        window = prometheus_duration(rule.window)
        past = _render_source(source, matchers, by, quantile_range, window)
        change = f"({expr.wrapped()} - {past.wrapped()})"
        if kind == "percent_change":
            value = f"{change} / abs({past.wrapped()} != 0) * 100"
        else:
            value = f"{change} / {_fmt(rule.window)}"
        op = ">" if rule.threshold >= 0 else "<"
        return f"{value} {op} {_fmt(rule.threshold)}", ""
    return _condition(rule, expr.text), ""


def _condition(rule: AlertRule, expr: str) -> str:
    kind = rule.kind
    if kind in _RANGE:
        assert rule.low is not None and rule.high is not None
        if kind == "between":
            return f"({expr} >= {_fmt(rule.low)}) <= {_fmt(rule.high)}"
        return f"{expr} < {_fmt(rule.low)} or {expr} > {_fmt(rule.high)}"
    assert rule.threshold is not None
    return f"{expr} {'>' if kind == 'above' else '<'} {_fmt(rule.threshold)}"


_LABEL_CHARACTERS = re.compile(r"[^A-Za-z0-9_]")


def _label_name(attribute: str) -> str:
    """An attribute name as the exporter writes it as a label (``error.type`` -> ``error_type``)."""
    name = _LABEL_CHARACTERS.sub("_", attribute)
    return f"key_{name}" if name[:1].isdigit() else name


def _selector(name: str, match: Mapping[str, str]) -> str:
    if not match:
        return name
    return name + "{" + ", ".join(f"{_label_name(k)}={_label_value(v)}" for k, v in match.items()) + "}"


def _resolve(name: str, statistic: str, metrics: Mapping[str, ExportedName] | None) -> tuple[str, PrometheusKind] | str:
    """``(Prometheus name, kind)`` of metric ``name``, or why it cannot be written in PromQL."""
    found = (metrics or {}).get(name) or KNOWN_METRICS.get(name)
    if found is not None:
        return found.prometheus, found.kind
    if metrics is not None:
        return f"{name} is not on /metrics of the frame given (a check_metric name?); in-process only"
    if not is_prometheus_name(name):
        return (
            f"no Prometheus name known for {name!r} (not in the catalog): name the metric as /metrics shows it "
            "(e.g. 'api_latency_seconds'), or generate with the frame"
        )
    if statistic in ("rate", "ratio"):
        return (name if name.endswith("_total") else name + "_total"), "counter"
    return name, "histogram" if statistic in HISTOGRAM_STATISTICS else "gauge"


def _name_rule(
    rule: AlertRule, quantile_range: str, by: Sequence[str], metrics: Mapping[str, ExportedName] | None
) -> tuple[str | None, str]:
    statistic = rule.statistic
    if rule.kind in _WINDOWED:
        return None, f"{rule.kind} of a metric-name rule is evaluated in process only"
    if statistic in ("min", "max"):
        return None, f"{statistic} of {rule.metric}: {NO_PROMQL_REASON}"
    resolved = _resolve(rule.metric, statistic, metrics)
    if isinstance(resolved, str):
        return None, resolved
    name, kind = resolved
    wanted: PrometheusKind = (
        "counter" if statistic in ("rate", "ratio") else "histogram" if statistic in HISTOGRAM_STATISTICS else kind
    )
    if kind != wanted or (statistic == "value" and kind == "histogram"):
        return None, f"statistic {statistic!r} does not apply to {rule.metric}, a {kind}"
    range_ = prometheus_duration(rule.window) if rule.window is not None else quantile_range
    function = "rate" if rule.window is not None else "irate"

    def summed(inner: str, extra: tuple[str, ...] = ()) -> str:
        labels = ", ".join((*extra, *by))
        return f"sum by ({labels}) ({inner})" if labels else f"sum({inner})"

    selector = _selector(name, rule.match)
    if statistic == "value":
        expr = summed(selector)
    elif statistic == "rate":
        expr = summed(f"{function}({selector}[{range_}])")
    elif statistic == "ratio":
        assert rule.denominator is not None
        other = _resolve(rule.denominator, "ratio", metrics)
        if isinstance(other, str):
            return None, f"denominator: {other}"
        if other[1] != "counter":
            return None, f"denominator {rule.denominator} is a {other[1]}, not a counter"
        whole = _selector(other[0], rule.denominator_match)
        expr = f"{summed(f'{function}({selector}[{range_}])')} / ({summed(f'{function}({whole}[{range_}])')} > 0)"
    elif statistic in QUANTILES:
        buckets = _selector(name + "_bucket", rule.match)
        expr = f"histogram_quantile({_fmt(QUANTILES[statistic])}, {summed(f'rate({buckets}[{range_}])', ('le',))})"
    elif statistic == "mean":
        total, count = _selector(name + "_sum", rule.match), _selector(name + "_count", rule.match)
        expr = f"{summed(f'rate({total}[{range_}])')} / {summed(f'rate({count}[{range_}])')}"
    else:
        expr = summed(f"increase({_selector(name + '_count', rule.match)}[{range_}])")
    return _condition(rule, expr), ""
