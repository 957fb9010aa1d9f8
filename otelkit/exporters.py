"""MeterProvider and reader wiring: Prometheus pull, OTLP push or the console, by argument or
``OTEL_*``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.environment_variables import OTEL_METRICS_EXEMPLAR_FILTER
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, ExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from otelkit.config import env_int, env_str, parse_names

EXPORTER_NAMES = frozenset({"prometheus", "otlp", "console", "none"})
DEFAULT_PROMETHEUS_HOST = "localhost"


def new_registry() -> CollectorRegistry:
    """A fresh registry carrying prometheus_client's process, platform and GC collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def prometheus_reader(
    registry: CollectorRegistry, *, exemplars: bool = False
) -> PrometheusMetricReader:
    """A Prometheus reader with stable labels: no ``otel_scope_*`` labels, no ``target_info``.

    With ``exemplars``, each histogram bucket carries its latest sampled exemplar on the
    OpenMetrics exposition (:mod:`otelkit.exemplars`); the text format is unchanged.
    """
    if exemplars:
        from otelkit.exemplars import exemplar_reader

        reader: PrometheusMetricReader = exemplar_reader(
            registry, disable_target_info=True, scope_info_enabled=False
        )
        return reader
    return PrometheusMetricReader(
        disable_target_info=True, scope_info_enabled=False, registry=registry
    )


def parse_exporters(
    value: str | Sequence[str] | None, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Exporter names from the argument or ``OTEL_METRICS_EXPORTER`` (default ``prometheus``).

    Raises:
        ValueError: an unknown exporter name; the message names the variable or argument.
    """
    source = "exporters"
    if value is None:
        value = env_str("OTEL_METRICS_EXPORTER", environ) or "prometheus"
        source = "OTEL_METRICS_EXPORTER"
    return parse_names(value, source, EXPORTER_NAMES)


@dataclass
class MetricsSetup:
    """What :func:`setup_metrics` built: the provider, and where Prometheus reads from."""

    meter_provider: MeterProvider
    registry: CollectorRegistry | None
    """Registry the Prometheus reader feeds (``None`` without the Prometheus exporter)."""
    exporters: tuple[str, ...]
    prometheus_port: int | None = None
    """Port of the side HTTP server, when one was started."""
    _server: Any = field(default=None, repr=False)

    def shutdown(self) -> None:
        """Flush and stop the provider, and the side server if there is one."""
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._server = None
        self.meter_provider.shutdown()


def setup_metrics(
    *,
    service_name: str | None = None,
    exporters: str | Sequence[str] | None = None,
    registry: CollectorRegistry | None = None,
    prometheus_port: int | None = None,
    prometheus_host: str | None = None,
    otlp_endpoint: str | None = None,
    export_interval_millis: float | None = None,
    resource_attributes: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    tracing: bool = False,
) -> MetricsSetup:
    """Build a MeterProvider that exports the catalogue.

    Args:
        service_name: ``service.name`` of the resource; default ``OTEL_SERVICE_NAME``, then
            ``OTEL_RESOURCE_ATTRIBUTES``.
        exporters: ``"prometheus"``, ``"otlp"``, ``"console"`` (JSON lines on stdout every
            export interval), ``"none"`` or several; default ``OTEL_METRICS_EXPORTER``, then
            ``prometheus``.
        registry: the Prometheus registry to feed; default a fresh one with process metrics.
        prometheus_port: also serve the registry on this side port (default
            ``OTEL_EXPORTER_PROMETHEUS_PORT``; unset: no side server, the app serves /metrics).
        prometheus_host: side server address (``OTEL_EXPORTER_PROMETHEUS_HOST``, ``localhost``).
        otlp_endpoint: OTLP/HTTP base endpoint; default the standard ``OTEL_EXPORTER_OTLP_*``.
        export_interval_millis: OTLP and console export interval (default
            ``OTEL_METRIC_EXPORT_INTERVAL``, then 60 s).
        resource_attributes: extra resource attributes.
        environ: where otelkit reads ``OTEL_METRICS_EXPORTER`` and the Prometheus port and
            host (default ``os.environ``). The OpenTelemetry SDK itself reads
            ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_EXPORTER_OTLP_*``
            from ``os.environ``.
        tracing: requests are traced, so sample exemplars (``OTEL_METRICS_EXEMPLAR_FILTER``,
            default ``trace_based``) and expose them on OpenMetrics ``/metrics``.
    """
    chosen = parse_exporters(exporters, environ)
    exemplar_filter = _exemplar_filter(chosen, tracing=tracing)
    attributes: dict[str, str] = dict(resource_attributes or {})
    if service_name is not None:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)
    readers: list[MetricReader] = []
    prom_registry: CollectorRegistry | None = None
    server = None
    port: int | None = None
    if "prometheus" in chosen:
        prom_registry = registry if registry is not None else new_registry()
        readers.append(prometheus_reader(prom_registry, exemplars=exemplar_filter is None))
        port = prometheus_port
        if port is None:
            port = env_int("OTEL_EXPORTER_PROMETHEUS_PORT", environ, minimum=0, maximum=65_535)
        if port is not None:
            host = prometheus_host or env_str("OTEL_EXPORTER_PROMETHEUS_HOST", environ)
            server = start_http_server(
                port, addr=host or DEFAULT_PROMETHEUS_HOST, registry=prom_registry
            )
            port = server[0].server_port
    if "otlp" in chosen:
        readers.append(_otlp_reader(otlp_endpoint, export_interval_millis))
    if "console" in chosen:
        readers.append(
            PeriodicExportingMetricReader(
                ConsoleMetricExporter(), export_interval_millis=export_interval_millis
            )
        )
    provider = MeterProvider(
        resource=resource, metric_readers=readers, exemplar_filter=exemplar_filter
    )
    return MetricsSetup(provider, prom_registry, chosen, port, server)


def _exemplar_filter(exporters: Sequence[str], *, tracing: bool) -> ExemplarFilter | None:
    """No exemplar sampling unless something can link them to traces.

    Without tracing, OTLP or ``OTEL_METRICS_EXEMPLAR_FILTER``, no span is current when a
    request is recorded, so sampling exemplars (a trace-context lookup on every record) is
    pure cost. Otherwise the SDK's own choice stands (``None``: the variable, else
    ``trace_based``).
    """
    if tracing or "otlp" in exporters or os.environ.get(OTEL_METRICS_EXEMPLAR_FILTER):
        return None
    return AlwaysOffExemplarFilter()


def _otlp_reader(endpoint: str | None, interval_millis: float | None) -> MetricReader:
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError:  # pragma: no cover - exercised only without the extra installed
        raise ValueError(
            "the otlp exporter needs the OTLP/HTTP exporter: pip install 'otelkit[otlp]'"
        ) from None
    if endpoint is not None:
        endpoint = endpoint.rstrip("/") + "/v1/metrics"
    return PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint), export_interval_millis=interval_millis
    )
