"""otel-telemetry: complete, cheap, trustworthy OpenTelemetry telemetry for multiplayer game servers.

One call gives a server every documented metric::

    from otel_telemetry import setup_telemetry

    telemetry = setup_telemetry(server_id="server-001", enable_prometheus_endpoint=True)
    with telemetry.performance.tick():
        telemetry.network.packet_received(512)
    telemetry.shutdown()
"""

from otel_telemetry._bootstrap import Telemetry, __version__, setup_telemetry
from otel_telemetry._config import TelemetryConfig
from otel_telemetry.catalog import CATALOG, MetricSpec

__all__ = [
    "CATALOG",
    "MetricSpec",
    "Telemetry",
    "TelemetryConfig",
    "__version__",
    "setup_telemetry",
]
