"""One small HTTP server per telemetry handle: ``/metrics`` (Prometheus) plus extra routes (health).

``/metrics`` is prometheus_client's own WSGI app over the handle's registry, so content negotiation
(OpenMetrics, gzip, ``name[]`` filters) is exactly prometheus_client's. Other routes are plain functions
``path -> (status, headers, body) | None``. The server runs on a daemon thread and never blocks the game loop.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

_logger = logging.getLogger(__name__)

#: A route: given the request path, a response ``(status, headers, body)`` or None when not handled.
Route = Callable[[str], "tuple[int, list[tuple[str, str]], bytes] | None"]

_REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Access logs are not written: a scrape every few seconds would flood the game's logs."""


class MetricsHTTPServer:
    """Serves ``/metrics`` from ``registry`` and any ``routes`` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, routes: Iterable[Route] = ()) -> None:
        self._metrics_app = make_wsgi_app(registry)
        self._routes = list(routes)
        server_class = _Server6 if ":" in host else _Server
        self._server = make_server(host, port, self._app, server_class=server_class, handler_class=_QuietHandler)
        self.host = host
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="otel-telemetry-http", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL of the server (``http://host:port``), with a loopback host when bound to all interfaces."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def add_route(self, route: Route) -> None:
        """Serve ``route`` too (checked in the order added, before ``/metrics``)."""
        self._routes.append(route)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        for route in self._routes:
            try:
                response = route(path)
            except Exception:
                _logger.exception("route for %s failed", path)
                response = (500, [("Content-Type", "text/plain; charset=utf-8")], b"internal error\n")
            if response is not None:
                status, headers, body = response
                start_response(f"{status} {_REASONS.get(status, 'Status')}", headers)
                return [body]
        if path in ("/metrics", "/metrics/"):
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"otel-telemetry: see /metrics\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found\n"]

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop serving and close the socket (bounded by ``timeout``)."""
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout)
        self._server.server_close()
        self._thread.join(max(0.0, timeout))
