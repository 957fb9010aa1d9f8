"""Tracing: the TracerProvider wiring (by argument or ``OTEL_TRACES_*``) and the server span.

Tracing is on only when ``instrument(app, tracing=True)`` is passed or
``OTEL_TRACES_EXPORTER`` is set explicitly; otherwise nothing here is imported. An
application that already set a global SDK TracerProvider keeps it: its spans, processors and
sampler are used as they are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_QUERY, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from starlette.types import Scope

from otelkit import instruments
from otelkit.config import env_str, parse_names

logger = logging.getLogger(__name__)

TRACES_EXPORTER_NAMES = frozenset({"otlp", "console", "none"})
DEFAULT_TRACES_EXPORTER = "otlp"
"""What ``tracing=True`` exports to when ``OTEL_TRACES_EXPORTER`` is unset (as the SDK's)."""

INSTRUMENTATION_NAME = "otelkit"


def tracing_requested(tracing: bool | None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to trace: the argument when given, else whether ``OTEL_TRACES_EXPORTER`` is
    set to something other than ``none``."""
    if tracing is not None:
        return tracing
    return bool(parse_traces_exporters(None, environ, default=()))


def parse_traces_exporters(
    value: str | Sequence[str] | None,
    environ: Mapping[str, str] | None = None,
    *,
    default: tuple[str, ...] = (DEFAULT_TRACES_EXPORTER,),
) -> tuple[str, ...]:
    """Span exporter names from the argument or ``OTEL_TRACES_EXPORTER``.

    Raises:
        ValueError: an unknown exporter name; the message names the variable or argument.
    """
    source = "traces_exporters"
    if value is None:
        value = env_str("OTEL_TRACES_EXPORTER", environ)
        source = "OTEL_TRACES_EXPORTER"
        if value is None:
            return default
    return parse_names(value, source, TRACES_EXPORTER_NAMES)


@dataclass
class TracingSetup:
    """The tracer provider requests are traced with, and whether otelkit built it."""

    tracer_provider: TracerProvider
    owned: bool
    """Built by :func:`setup_tracing` (so flushed and shut down with the app)."""

    def shutdown(self, timeout_seconds: float) -> None:
        """Flush pending spans and stop, if otelkit built the provider, within
        ``timeout_seconds`` even when the backend is unreachable.

        The span processor's shutdown waits for an export in progress, retries included, so it
        runs in a daemon thread that is waited for no longer than the budget.
        """
        if not self.owned:
            return
        provider: Any = self.tracer_provider
        millis = int(timeout_seconds * 1000)

        def flush_and_stop() -> None:
            provider.force_flush(timeout_millis=millis)
            provider.shutdown()

        stopping = threading.Thread(target=flush_and_stop, name="otelkit-tracing-shutdown")
        stopping.daemon = True
        stopping.start()
        stopping.join(timeout_seconds)
        if stopping.is_alive():
            logger.warning(
                "otelkit: spans not exported within %.1f s of shutdown were dropped",
                timeout_seconds,
            )


def setup_tracing(
    *,
    service_name: str | None = None,
    exporters: str | Sequence[str] | None = None,
    tracer_provider: TracerProvider | None = None,
    environ: Mapping[str, str] | None = None,
) -> TracingSetup:
    """The provider to trace requests with.

    Args:
        service_name: ``service.name`` of a provider built here (default
            ``OTEL_SERVICE_NAME``, then ``OTEL_RESOURCE_ATTRIBUTES``).
        exporters: ``otlp``, ``console``, ``none`` or several (default
            ``OTEL_TRACES_EXPORTER``, then ``otlp``). Ignored when a provider is passed or
            already set globally.
        tracer_provider: use this provider (it is not made global).
        environ: where ``OTEL_TRACES_EXPORTER`` is read (default ``os.environ``); the SDK
            reads its sampler (``OTEL_TRACES_SAMPLER[_ARG]``) and the OTLP endpoint from
            ``os.environ``.

    A provider built here becomes the global one when none was set, so the application's
    own spans (``trace.get_tracer(__name__)``) nest under the request's span.
    """
    if tracer_provider is not None:
        return TracingSetup(tracer_provider, owned=False)
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    current = trace.get_tracer_provider()
    if isinstance(current, SdkTracerProvider):
        logger.info("otelkit: tracing with the application's own TracerProvider")
        return TracingSetup(current, owned=False)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes = {SERVICE_NAME: service_name} if service_name is not None else {}
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for name in parse_traces_exporters(exporters, environ):
        exporter: Any = ConsoleSpanExporter() if name == "console" else _otlp_span_exporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return TracingSetup(provider, owned=True)


def _otlp_span_exporter() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:  # pragma: no cover - exercised only without the extra installed
        raise ValueError(
            "the otlp traces exporter needs the OTLP/HTTP exporter: pip install 'otelkit[otlp]'"
        ) from None
    return OTLPSpanExporter()


class _HeaderGetter(Getter[Scope]):
    """Reads W3C headers (``traceparent``, ``tracestate``, ``baggage``) from an ASGI scope."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier["headers"] if k == wanted]
        if len(values) > 1 and wanted == b"baggage":
            # Several baggage headers are one list; the propagator reads only the first value.
            return [",".join(values)]
        return values or None

    def keys(self, carrier: Scope) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier["headers"]]


_GETTER = _HeaderGetter()


class ServerSpans:
    """Starts and ends the SERVER span of each request, by the HTTP semantic conventions.

    The span continues the incoming W3C trace context (and baggage), through the global
    propagators (``OTEL_PROPAGATORS``), and is the current span while the application runs
    and while the request's duration is recorded, so the histogram's exemplar links to it.
    Sensitive query parameters (signatures, credentials) are redacted in ``url.query``.
    """

    def __init__(self, tracer_provider: TracerProvider) -> None:
        from otelkit import __version__

        self._tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        self._upstream_logged = False

    def upstream_span_active(self) -> bool:
        """Whether something outside already traces this request, so no second span starts.

        FastAPI releases with native telemetry start their own SERVER span whenever a global
        TracerProvider is set, and the OpenTelemetry ASGI middleware does the same. The
        request is then recorded inside that span: exemplars and pushed ids link to it.
        """
        if not trace.get_current_span().is_recording():
            return False
        if not self._upstream_logged:
            self._upstream_logged = True
            logger.info(
                "otelkit: requests already have a span from another instrumentation (e.g. "
                "FastAPI's own telemetry); exemplars and pushed ids link to it"
            )
        return True

    def start(self, scope: Scope) -> tuple[Span, object]:
        """Start the request's span and make it current; returns it and the context token."""
        parent = propagate.extract(scope, getter=_GETTER)
        raw_method = scope["method"]
        method = instruments.normalize_method(raw_method)
        attributes: dict[str, Any] = {
            HTTP_REQUEST_METHOD: method,
            URL_PATH: scope["path"],
            URL_SCHEME: scope.get("scheme", "http"),
        }
        if method != raw_method:
            attributes[HTTP_REQUEST_METHOD_ORIGINAL] = raw_method
        query = scope.get("query_string")
        if query:
            attributes[URL_QUERY] = redact_query(query.decode("latin-1"))
        address, port = _server_address(scope)
        if address:
            attributes[SERVER_ADDRESS] = address
        if port is not None:
            attributes[SERVER_PORT] = port
        version = scope.get("http_version")
        if version:
            attributes[NETWORK_PROTOCOL_VERSION] = version
        client = scope.get("client")
        if client:
            attributes[CLIENT_ADDRESS] = client[0]
        for name, value in scope["headers"]:
            if name == b"user-agent":
                attributes[USER_AGENT_ORIGINAL] = value.decode("latin-1")
                break
        span = self._tracer.start_span(
            _span_name(method, None), parent, kind=SpanKind.SERVER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        return span, token

    @staticmethod
    def finish_attributes(
        span: Span, method: str, route: str | None, status: int, error: BaseException | None
    ) -> None:
        """Name the span by its route and set the outcome (before the duration is recorded)."""
        if route is not None:
            span.update_name(_span_name(method, route))
            span.set_attribute(HTTP_ROUTE, route)
        span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
        if error is not None:
            span.record_exception(error)
            span.set_attribute(ERROR_TYPE, type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        elif status >= 500:
            # Server spans leave 4xx unset: the client's error, not the server's.
            span.set_attribute(ERROR_TYPE, str(status))
            span.set_status(Status(StatusCode.ERROR))

    @staticmethod
    def end(span: Span, token: object) -> None:
        """End the span and restore the context that was current before it."""
        span.end()
        context.detach(token)  # type: ignore[arg-type]


SENSITIVE_QUERY_PARAMETERS = frozenset(
    {"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature", "X-Amz-Signature",
     "X-Amz-Credential", "X-Amz-Security-Token"}
)  # fmt: skip
"""Query parameters whose values the HTTP semantic conventions say to redact."""


def redact_query(query: str) -> str:
    """``query`` with the value of each sensitive parameter replaced by ``REDACTED``."""
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}=REDACTED" if equals and name in SENSITIVE_QUERY_PARAMETERS else part)
    return "&".join(parts)


def _span_name(method: str, route: str | None) -> str:
    # The conventions: "{method} {route}", the method alone without a route, and "HTTP"
    # for a method outside the known set.
    name = "HTTP" if method == instruments.OTHER_METHOD else method
    return f"{name} {route}" if route is not None else name


def _server_address(scope: Scope) -> tuple[str | None, int | None]:
    """The host and port the client addressed (``Host`` header), else the listening socket."""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            if host.startswith("["):  # [IPv6]:port
                address, _, rest = host[1:].partition("]")
                port_text = rest.removeprefix(":")
            else:
                address, _, port_text = host.partition(":")
            return address or None, int(port_text) if port_text.isdigit() else None
    server = scope.get("server")
    if server:
        return server[0], server[1]
    return None, None


def current_trace_ids() -> tuple[str, str] | None:
    """The current span's (trace id, span id) in hex, when it is valid and sampled."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
