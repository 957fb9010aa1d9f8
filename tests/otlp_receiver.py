"""A real OTLP/HTTP receiver on a loopback port: decodes and keeps every metrics and traces
export, as an OpenTelemetry backend would receive them."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

LOOPBACK = "127.0.0.1"


class OtlpReceiver:
    """Serves ``/v1/metrics`` and ``/v1/traces``; any other path answers 404."""

    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.trace_requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                known = self.path in ("/v1/metrics", "/v1/traces")
                with receiver._lock:
                    receiver.paths.append(self.path)
                    if self.path == "/v1/metrics":
                        metrics = ExportMetricsServiceRequest()
                        metrics.ParseFromString(body)
                        receiver.requests.append(metrics)
                    elif self.path == "/v1/traces":
                        spans = ExportTraceServiceRequest()
                        spans.ParseFromString(body)
                        receiver.trace_requests.append(spans)
                self.send_response(200 if known else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.endpoint = f"http://{LOOPBACK}:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def metrics(self, name: str) -> list[Metric]:
        """Every exported metric called ``name``, oldest first."""
        with self._lock:
            requests = list(self.requests)
        return [
            metric
            for request in requests
            for resource_metrics in request.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
            if metric.name == name
        ]

    def spans(self) -> list[Span]:
        """Every exported span, oldest first."""
        with self._lock:
            requests = list(self.trace_requests)
        return [
            span
            for request in requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def span_resources(self) -> list[dict[str, Any]]:
        """The resource attributes of every traces export."""
        with self._lock:
            requests = list(self.trace_requests)
        return [
            attributes(resource_spans.resource.attributes)
            for request in requests
            for resource_spans in request.resource_spans
        ]

    def resource(self) -> dict[str, str]:
        """The resource attributes of the last metrics export."""
        (resource_metrics, *_) = self.requests[-1].resource_metrics
        return {k: str(v) for k, v in attributes(resource_metrics.resource.attributes).items()}


def value_of(value: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue`` (string, int, float or bool)."""
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


def attributes(pairs: Sequence[KeyValue]) -> dict[str, Any]:
    """OTLP key-value pairs as a dict."""
    return {pair.key: value_of(pair.value) for pair in pairs}


@contextlib.contextmanager
def running_otlp_receiver() -> Iterator[OtlpReceiver]:
    """An :class:`OtlpReceiver` serving until the block ends."""
    receiver = OtlpReceiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        receiver.thread.join(timeout=5)
