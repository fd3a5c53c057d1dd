"""The spec's ten alert rules: five metrics, each with a warning and a critical threshold.

========================  ==================  ==================
metric                    warning             critical
========================  ==================  ==================
CPU usage                 > 80 %              > 95 %
memory usage              > 85 %              > 95 %
tick rate                 < 58 FPS            < 55 FPS
player ping p95           > 100 ms            > 200 ms
packet loss               > 1 %               > 5 %
========================  ==================  ==================

The thresholds and their text form (``"cpu=70,90;tick_rate=50,45"``) are configuration: ``DEFAULT_THRESHOLDS`` and
``parse_thresholds`` live in :mod:`otel_telemetry.config` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from otel_telemetry.alerts.model import AlertRule, Kind, Severity, _threshold
from otel_telemetry.config import DEFAULT_THRESHOLDS, parse_thresholds

__all__ = ["DEFAULT_THRESHOLDS", "default_rules", "parse_thresholds"]


class _Default:
    """One of the spec's five metrics: threshold key, rule name stem, ``ServerMetrics`` path, kind, label, unit."""

    # A plain class: a dataclass would cost a millisecond at import for five rows of a private table.
    __slots__ = ("base", "key", "kind", "label", "metric", "unit")

    def __init__(self, key: str, base: str, metric: str, kind: Kind, label: str, unit: str) -> None:
        self.key = key
        self.base = base
        self.metric = metric
        self.kind = kind
        self.label = label
        self.unit = unit


_DEFAULTS: tuple[_Default, ...] = (
    _Default("cpu", "HighCpuUsage", "hardware.cpu_usage_percent", "above", "CPU usage", "%"),
    _Default("memory", "HighMemoryUsage", "hardware.memory_usage_percent", "above", "Memory usage", "%"),
    _Default("tick_rate", "LowTickRate", "performance.tick_rate_fps", "below", "Tick rate", " FPS"),
    _Default(
        "player_ping_p95", "HighPlayerPing", "network.player_ping_percentiles.p95", "above", "Player ping p95", " ms"
    ),
    _Default("packet_loss", "HighPacketLoss", "network.packet_loss_percent", "above", "Packet loss", "%"),
)


def default_rules(
    thresholds: Mapping[str, tuple[float, float]] | None = None,
    for_: float = 0.0,
    *,
    keep_firing_for: float = 0.0,
    cooldown: float = 0.0,
) -> list[AlertRule]:
    """The spec's ten rules: five metrics, each with a warning and a critical rule.

    ``thresholds`` overrides ``(warning, critical)`` per key: ``"cpu"``, ``"memory"`` (percent), ``"tick_rate"``
    (FPS, fires below), ``"player_ping_p95"`` (milliseconds), ``"packet_loss"`` (percent). ``for_``,
    ``keep_firing_for`` and ``cooldown`` apply to every rule. Raises ``ValueError`` for an unknown key, a value
    that is not two numbers, or a warning threshold beyond the critical one.
    """
    chosen = dict(DEFAULT_THRESHOLDS)
    for key, pair in (thresholds or {}).items():
        if key not in chosen:
            raise ValueError(f"default_rules: unknown threshold key {key!r}; known: {', '.join(DEFAULT_THRESHOLDS)}")
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"default_rules: thresholds[{key!r}] must be (warning, critical), got {pair!r}")
        warning = _threshold("default_rules", f"thresholds[{key!r}][0]", pair[0])
        critical = _threshold("default_rules", f"thresholds[{key!r}][1]", pair[1])
        chosen[key] = (warning, critical)
    rules: list[AlertRule] = []
    for spec in _DEFAULTS:
        warning, critical = chosen[spec.key]
        inverted = warning < critical if spec.kind == "below" else warning > critical
        if inverted:
            side = "below" if spec.kind == "below" else "above"
            raise ValueError(
                f"default_rules: thresholds[{spec.key!r}] = ({warning!r}, {critical!r}): the warning threshold is "
                f"{side} the critical one (inverted)"
            )
        word = "below" if spec.kind == "below" else "above"
        for severity, limit in ((Severity.WARNING, warning), (Severity.CRITICAL, critical)):
            rules.append(
                AlertRule(
                    name=f"{spec.base}{severity.value.capitalize()}",
                    metric=spec.metric,
                    kind=spec.kind,
                    threshold=limit,
                    severity=severity,
                    for_=for_,
                    keep_firing_for=keep_firing_for,
                    cooldown=cooldown,
                    annotations={
                        "summary": f"{spec.label} {word} {{threshold:g}}{spec.unit}",
                        "description": (
                            f"{spec.label} is {{value:.1f}}{spec.unit} ({{severity}} {word} {{threshold:g}}{spec.unit})"
                        ),
                    },
                )
            )
    return rules
