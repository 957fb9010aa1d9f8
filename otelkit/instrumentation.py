"""``instrument(app)``: one call wires middleware, /metrics, push, reporters and the heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from opentelemetry.metrics import MeterProvider
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request

from otelkit.config import env_float, env_str
from otelkit.exporters import MetricsSetup, setup_metrics
from otelkit.middleware import DEFAULT_EXCLUDED_PATHS, MetricsMiddleware
from otelkit.push import PushClient
from otelkit.reporters import DEFAULT_HEARTBEAT_SECONDS, HealthCheck, HealthHeartbeat, Reporter

logger = logging.getLogger(__name__)

PUSH_SHUTDOWN_SECONDS = 3.0
_FROM_ENV: Any = object()

_default_reporter: Reporter | None = None


@dataclass
class Instrumentation:
    """Everything :func:`instrument` attached to an app."""

    meter_provider: MeterProvider
    registry: CollectorRegistry | None
    reporter: Reporter
    push: PushClient | None
    heartbeat: HealthHeartbeat | None
    setup: MetricsSetup | None
    """Set when ``instrument`` built the provider itself (and so shuts it down)."""


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Any]:
    """A route handler rendering ``registry`` (OpenMetrics when the scraper asks)."""

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(content=encoder(registry), media_type=content_type)

    return metrics


def instrument(
    app: FastAPI,
    *,
    service_name: str | None = None,
    meter_provider: MeterProvider | None = None,
    registry: CollectorRegistry | None = None,
    exporters: str | Sequence[str] | None = None,
    metrics_path: str | None = "/metrics",
    excluded_paths: Sequence[str] | None = None,
    collector_url: str | None = None,
    collector_token: str | None = None,
    heartbeat_interval: float | None = _FROM_ENV,
    health_check: HealthCheck | None = None,
) -> Instrumentation:
    """Instrument a FastAPI (or Starlette) app with the otelkit catalogue.

    Args:
        app: the application; call before it starts.
        service_name: names the service (default ``OTEL_SERVICE_NAME``); needed for the
            heartbeat and named in pushed reports.
        meter_provider: use this provider instead of building one (then ``registry`` is
            what ``/metrics`` serves, if given).
        registry: the Prometheus registry to feed and serve (default: a fresh one).
        exporters: ``prometheus``, ``otlp``, ``none`` or several (default
            ``OTEL_METRICS_EXPORTER``, then ``prometheus``).
        metrics_path: where the app serves its metrics; ``None`` to not serve them.
        excluded_paths: paths not recorded (default ``/metrics`` and ``/healthz``).
        collector_url: also push every report to this collector (default
            ``OTELKIT_COLLECTOR_URL``; unset: no push).
        collector_token: bearer token for the collector (default ``OTELKIT_COLLECTOR_TOKEN``).
        heartbeat_interval: seconds between health reports (default
            ``OTELKIT_HEARTBEAT_SECONDS``, then 30); ``None`` for no heartbeat.
        health_check: sync or async callable whose result the heartbeat reports.
    """
    global _default_reporter
    service_name = service_name or env_str("OTEL_SERVICE_NAME")
    if heartbeat_interval is _FROM_ENV:
        from_env = env_float("OTELKIT_HEARTBEAT_SECONDS", minimum=0.001)
        heartbeat_interval = from_env if from_env is not None else DEFAULT_HEARTBEAT_SECONDS
    setup: MetricsSetup | None = None
    if meter_provider is None:
        setup = setup_metrics(service_name=service_name, exporters=exporters, registry=registry)
        meter_provider, registry = setup.meter_provider, setup.registry
    push = PushClient.from_env(url=collector_url, token=collector_token, service=service_name)
    if push is not None:
        push.register_metrics(meter_provider)
    reporter = Reporter(meter_provider=meter_provider, push=push)
    _default_reporter = reporter
    heartbeat = None
    if service_name is not None and heartbeat_interval is not None:
        heartbeat = HealthHeartbeat(
            reporter, service_name, interval=heartbeat_interval, check=health_check
        )

    excluded = tuple(excluded_paths if excluded_paths is not None else DEFAULT_EXCLUDED_PATHS)
    if metrics_path is not None and metrics_path not in excluded:
        excluded += (metrics_path,)
    app.add_middleware(
        MetricsMiddleware,
        meter_provider=meter_provider,
        excluded_paths=excluded,
        on_request=push.submit_http if push is not None else None,
    )
    serves_metrics = setup is None or setup.prometheus_port is None
    if metrics_path is not None and registry is not None and serves_metrics:
        app.add_route(metrics_path, metrics_endpoint(registry), include_in_schema=False)

    instrumentation = Instrumentation(meter_provider, registry, reporter, push, heartbeat, setup)
    _wrap_lifespan(app, instrumentation)
    return instrumentation


def _wrap_lifespan(app: FastAPI, instrumentation: Instrumentation) -> None:
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(inner_app: Any) -> AsyncIterator[Any]:
        if instrumentation.push is not None:
            instrumentation.push.start()
        if instrumentation.heartbeat is not None:
            instrumentation.heartbeat.start()
        try:
            async with original(inner_app) as state:
                yield state
        finally:
            if instrumentation.heartbeat is not None:
                await instrumentation.heartbeat.stop()
            if instrumentation.push is not None:
                await asyncio.to_thread(instrumentation.push.shutdown, PUSH_SHUTDOWN_SECONDS)
            if instrumentation.setup is not None:
                instrumentation.setup.shutdown()

    app.router.lifespan_context = lifespan


def default_reporter() -> Reporter:
    """The reporter of the last ``instrument()`` call, else one on the global provider."""
    global _default_reporter
    if _default_reporter is None:
        _default_reporter = Reporter()
    return _default_reporter


def report_health(service: str, status: str) -> None:
    """Report ``service``'s health: healthy, degraded, unhealthy or down."""
    default_reporter().report_health(service, status)


def report_active_users(count: int, service: str | None = None) -> None:
    """Report the number of active users."""
    default_reporter().report_active_users(count, service)
