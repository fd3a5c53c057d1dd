"""A real OTLP/HTTP receiver on 127.0.0.1, decoding requests with the official protobuf classes (shared by tests)."""

from __future__ import annotations

import gzip
import http.server
import threading

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class OtlpReceiver(http.server.ThreadingHTTPServer):
    """Keeps every metrics request (``requests``) and trace request (``spans``); answers 200 to every POST.

    Used as an HTTP proxy (a request for an absolute URL), it answers as the destination would and keeps the URL
    in ``proxied``.
    """

    daemon_threads = True
    requests: list[ExportMetricsServiceRequest]
    spans: list[ExportTraceServiceRequest]
    proxied: list[str]

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = []
        self.spans = []
        self.proxied = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="test-otlp-receiver", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        """Stop serving and close the socket (bounded)."""
        self.shutdown()
        self.server_close()
        self._thread.join(5)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        path = self.path
        if path.startswith("http://"):  # asked as a proxy
            self.server.proxied.append(path)
            path = "/" + path.split("/", 3)[3]
        if path == "/v1/metrics":
            self.server.requests.append(ExportMetricsServiceRequest.FromString(body))
        elif path == "/v1/traces":
            self.server.spans.append(ExportTraceServiceRequest.FromString(body))
        reply = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass
