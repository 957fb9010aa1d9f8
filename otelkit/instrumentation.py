"""``instrument(app)``: one call wires middleware, /metrics, push, reporters and the heartbeat.

What only some setups use (the SDK wiring, push delivery, the reporters) is imported when
``instrument`` runs, so ``import otelkit`` stays cheap for a service that imports it early.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from otelkit.config import env_float, env_str
from otelkit.middleware import DEFAULT_EXCLUDED_PATHS, MetricsMiddleware

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette

    from otelkit.exporters import MetricsSetup
    from otelkit.push import PushClient
    from otelkit.reporters import HealthCheck, HealthHeartbeat, Reporter
    from otelkit.tracing import TracingSetup

logger = logging.getLogger(__name__)

PUSH_SHUTDOWN_SECONDS = 3.0
_FROM_ENV: Any = object()

STATE_KEY = "otelkit"
"""Where an instrumented app keeps its :class:`Instrumentation`: ``app.state.otelkit``."""

_live: weakref.WeakSet[Instrumentation] = weakref.WeakSet()
"""Every instrumentation whose app is still alive: the module functions report to the one."""
_fallback_reporter: Reporter | None = None


@dataclass(eq=False)
class Instrumentation:
    """Everything :func:`instrument` attached to an app (also at ``app.state.otelkit``).

    Report through its methods when a process serves several instrumented apps: each app's
    reports then reach that app's own ``/metrics`` and collector.
    """

    meter_provider: MeterProvider
    registry: CollectorRegistry | None
    reporter: Reporter
    push: PushClient | None
    heartbeat: HealthHeartbeat | None
    setup: MetricsSetup | None
    """Set when ``instrument`` built the provider itself (and so shuts it down)."""
    service_name: str | None = None
    tracing: TracingSetup | None = None
    """Set when requests are traced: the provider their spans come from."""

    def report_health(self, service: str, status: str) -> None:
        """Report ``service``'s health (healthy, degraded, unhealthy or down) for this app."""
        self.reporter.report_health(service, status)

    def report_active_users(self, count: int, service: str | None = None) -> None:
        """Report this app's number of active users (per ``service`` when given)."""
        self.reporter.report_active_users(count, service)


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Any]:
    """A route handler rendering ``registry`` (OpenMetrics when the scraper asks)."""
    from prometheus_client.exposition import choose_encoder

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(content=encoder(registry), media_type=content_type)

    return metrics


def instrument(
    app: Starlette,
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
    tracing: bool | None = None,
    tracer_provider: TracerProvider | None = None,
    log_correlation: bool | None = None,
) -> Instrumentation:
    """Instrument a FastAPI or Starlette app with the otelkit catalogue.

    Calling it again on the same app changes nothing: it logs a warning and returns the
    first call's :class:`Instrumentation`.

    Args:
        app: the application; call before it starts.
        service_name: names the service (default ``OTEL_SERVICE_NAME``); needed for the
            heartbeat and named in pushed reports.
        meter_provider: use this provider instead of building one (then ``registry`` is
            what ``/metrics`` serves, if given).
        registry: the Prometheus registry to feed and serve (default: a fresh one).
        exporters: ``prometheus``, ``otlp``, ``console``, ``none`` or several (default
            ``OTEL_METRICS_EXPORTER``, then ``prometheus``).
        metrics_path: where the app serves its metrics; ``None`` to not serve them.
        excluded_paths: paths not recorded (default ``/metrics`` and ``/healthz``).
        collector_url: also push every report to this collector (default
            ``OTELKIT_COLLECTOR_URL``; unset: no push). Needs ``otelkit[push]``.
        collector_token: bearer token for the collector (default ``OTELKIT_COLLECTOR_TOKEN``).
        heartbeat_interval: seconds between health reports (default
            ``OTELKIT_HEARTBEAT_SECONDS``, then 30); ``None`` for no heartbeat.
        health_check: sync or async callable whose result the heartbeat reports.
        tracing: trace each request with a SERVER span, continuing an incoming
            ``traceparent``, and put exemplars on the latency histogram (default: on when
            ``OTEL_TRACES_EXPORTER`` is set to something other than ``none``). Spans are
            exported by ``OTEL_TRACES_EXPORTER`` (``otlp``, the default, needs
            ``otelkit[otlp]``; or ``console``), unless the application already set a
            TracerProvider, which is then used as it is.
        tracer_provider: trace with this provider (implies ``tracing=True``).
        log_correlation: put ``trace_id`` and ``span_id`` on every log record (default
            ``OTEL_PYTHON_LOG_CORRELATION``); see :mod:`otelkit.logs`.
    """
    existing = getattr(app.state, STATE_KEY, None)
    if isinstance(existing, Instrumentation):
        logger.warning(
            "otelkit: instrument() was already called on this app; this call changes nothing "
            "and returns the first call's Instrumentation (also at app.state.%s)",
            STATE_KEY,
        )
        return existing

    from otelkit.exporters import setup_metrics
    from otelkit.logs import install_log_correlation, log_correlation_requested
    from otelkit.reporters import DEFAULT_HEARTBEAT_SECONDS, HealthHeartbeat, Reporter
    from otelkit.tracing import tracing_requested

    service_name = service_name or env_str("OTEL_SERVICE_NAME")
    traced = tracer_provider is not None or tracing_requested(tracing)
    if heartbeat_interval is _FROM_ENV:
        from_env = env_float("OTELKIT_HEARTBEAT_SECONDS", minimum=0.001)
        heartbeat_interval = from_env if from_env is not None else DEFAULT_HEARTBEAT_SECONDS
    setup: MetricsSetup | None = None
    if meter_provider is None:
        setup = setup_metrics(
            service_name=service_name, exporters=exporters, registry=registry, tracing=traced
        )
        meter_provider, registry = setup.meter_provider, setup.registry
    tracing_setup: TracingSetup | None = None
    if traced:
        from otelkit.tracing import setup_tracing

        tracing_setup = setup_tracing(service_name=service_name, tracer_provider=tracer_provider)
    if log_correlation_requested(log_correlation):
        install_log_correlation()
    push = _push_client(collector_url, collector_token, service_name)
    if push is not None:
        push.register_metrics(meter_provider)
    reporter = Reporter(meter_provider=meter_provider, push=push)
    heartbeat = None
    if heartbeat_interval is not None:
        if service_name is not None:
            heartbeat = HealthHeartbeat(
                reporter, service_name, interval=heartbeat_interval, check=health_check
            )
        else:
            logger.warning(
                "otelkit: no service name, so no health heartbeat (and the collector's "
                "'service down' alert cannot cover this service): pass "
                "instrument(app, service_name=...) or set OTEL_SERVICE_NAME"
            )

    excluded = tuple(excluded_paths if excluded_paths is not None else DEFAULT_EXCLUDED_PATHS)
    if metrics_path is not None and metrics_path not in excluded:
        excluded += (metrics_path,)
    app.add_middleware(
        MetricsMiddleware,
        meter_provider=meter_provider,
        excluded_paths=excluded,
        on_request=push.submit_http if push is not None else None,
        tracer_provider=tracing_setup.tracer_provider if tracing_setup is not None else None,
    )
    serves_metrics = setup is None or setup.prometheus_port is None
    if metrics_path is not None and registry is not None and serves_metrics:
        app.add_route(metrics_path, metrics_endpoint(registry), include_in_schema=False)

    instrumentation = Instrumentation(
        meter_provider, registry, reporter, push, heartbeat, setup, service_name, tracing_setup
    )
    setattr(app.state, STATE_KEY, instrumentation)
    _live.add(instrumentation)
    # Scraped (a Prometheus registry is fed) and not pushed: each worker would be scraped alone.
    _wrap_lifespan(app, instrumentation, warn_workers=registry is not None and push is None)
    return instrumentation


def _push_client(url: str | None, token: str | None, service_name: str | None) -> PushClient | None:
    """The push client for ``url`` or ``OTELKIT_COLLECTOR_URL``; ``None`` when neither is set."""
    if url is None and env_str("OTELKIT_COLLECTOR_URL") is None:
        return None
    try:
        from otelkit.push import PushClient
    except ImportError as exc:
        raise ValueError(
            f"pushing to a collector needs an HTTP client ({exc.name} is missing): "
            "pip install 'otelkit[push]'"
        ) from None
    return PushClient.from_env(url=url, token=token, service=service_name)


def _wrap_lifespan(app: Starlette, instrumentation: Instrumentation, *, warn_workers: bool) -> None:
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(inner_app: Any) -> AsyncIterator[Any]:
        if warn_workers:
            _warn_if_several_workers()
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
            if instrumentation.tracing is not None:
                await asyncio.to_thread(instrumentation.tracing.shutdown, PUSH_SHUTDOWN_SECONDS)
            if instrumentation.setup is not None:
                instrumentation.setup.shutdown()

    app.router.lifespan_context = lifespan


def declared_workers(
    environ: dict[str, str] | None = None, parent_cmdline: Sequence[str] | None = None
) -> int:
    """How many worker processes the server was asked for, as far as this process can tell.

    Read from ``WEB_CONCURRENCY`` (uvicorn and gunicorn honour it), else from the parent
    process's ``--workers N`` / ``-w N`` (uvicorn and gunicorn start workers as children).
    """
    env = os.environ if environ is None else environ
    concurrency = env.get("WEB_CONCURRENCY", "").strip()
    if concurrency.isdigit():
        return int(concurrency)
    argv = list(parent_cmdline) if parent_cmdline is not None else _parent_cmdline()
    for index, arg in enumerate(argv):
        value = None
        if arg in ("--workers", "-w") and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        if value is not None and value.strip().isdigit():
            return int(value)
    return 1


def _parent_cmdline() -> list[str]:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as cmdline:
            return cmdline.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _warn_if_several_workers() -> None:
    workers = declared_workers()
    if workers > 1:
        logger.warning(
            "otelkit: this server runs %d worker processes and each keeps its own numbers, so "
            "every scrape of /metrics sees one worker only. Push to the otelkit collector "
            "instead (set OTELKIT_COLLECTOR_URL; see the README's scale-out section), or export "
            "OTLP.",
            workers,
        )


def default_reporter() -> Reporter:
    """The reporter of the one instrumented app, else one on the global provider.

    Raises:
        RuntimeError: several instrumented apps are alive, so a module-level report would be
            ambiguous; report through each app's :class:`Instrumentation` instead.
    """
    global _fallback_reporter
    if len(_live) > 1:
        gc.collect()  # apps already dropped may still sit in reference cycles
    live = list(_live)
    if len(live) == 1:
        return live[0].reporter
    if len(live) > 1:
        raise RuntimeError(
            f"{len(live)} instrumented apps are alive in this process, so "
            "otelkit.report_health() / report_active_users() cannot tell which one you mean: "
            "call the method of the same name on the Instrumentation that instrument(app) "
            "returned (also at app.state.otelkit)"
        )
    if _fallback_reporter is None:
        from otelkit.reporters import Reporter

        _fallback_reporter = Reporter()
    return _fallback_reporter


def report_health(service: str, status: str) -> None:
    """Report ``service``'s health: healthy, degraded, unhealthy or down.

    For a process with one instrumented app; with several, use each app's
    :meth:`Instrumentation.report_health`.
    """
    default_reporter().report_health(service, status)


def report_active_users(count: int, service: str | None = None) -> None:
    """Report the number of active users.

    For a process with one instrumented app; with several, use each app's
    :meth:`Instrumentation.report_active_users`.
    """
    default_reporter().report_active_users(count, service)
