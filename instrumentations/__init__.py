"""Game-server instrumentations: one monitor per spec section.

* :class:`~instrumentations.hardware.HardwareMonitor` — CPU, memory, disk, NIC (psutil).
* :class:`~instrumentations.network.NetworkMonitor` — packets, bytes, latency, ping, connections, reliability.
* :class:`~instrumentations.performance.PerformanceMonitor` — tick loop: rate, durations, phases.
* :class:`~instrumentations.game.GameMonitor` — players, entities, world, database, ECS.

Monitors write cheap in-process accumulators on the hot path; OpenTelemetry reads them at collection time.
Each has a ``BaseInstrumentor`` registered under the ``opentelemetry_instrumentor`` entry-point group.
"""

__version__ = "0.1.0"
