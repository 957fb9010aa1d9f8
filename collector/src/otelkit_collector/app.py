"""The collector's app factory: wires settings, OpenTelemetry, the recorder and the guards."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import multiprocessing
import time
from collections.abc import AsyncIterator
from functools import partial
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from otelkit_collector import persistence
from otelkit_collector.auth import BearerAuthMiddleware
from otelkit_collector.cardinality import OVERFLOW_RESERVE_STATUSES, CardinalityGuard
from otelkit_collector.charts import TrendCache
from otelkit_collector.content_type import JsonContentTypeMiddleware
from otelkit_collector.errors import (
    UNPARSABLE_BODY,
    describe,
    report_kind,
    reports_in,
    unparsable_body_detail,
)
from otelkit_collector.fastlane import IngestFastLane
from otelkit_collector.history import History
from otelkit_collector.limits import BODY_SCOPE_KEY, BodySizeLimitMiddleware
from otelkit_collector.recorder import Recorder
from otelkit_collector.routes import router
from otelkit_collector.sampling import (
    SamplingPrometheusReader,
    SeriesSource,
    registry_series,
    sample_periodically,
)
from otelkit_collector.settings import CollectorSettings
from otelkit_collector.state import Clock, ServiceState
from otelkit_collector.status import StatusSource
from otelkit_collector.status_routes import router as status_router

logger = logging.getLogger(__name__)

COLLECTOR_VERSION = metadata.version("otelkit-collector")

MULTI_PROCESS_MESSAGE = (
    "the otelkit collector must run as exactly one process: each worker would keep its own "
    "numbers and every scrape would see only one of them. Run one collector per process "
    "(several collectors, each scraped by Prometheus, behind a load balancer that routes "
    "by service) or export OTLP to an OpenTelemetry Collector instead."
)


def sdk_cardinality_limit(settings: CollectorSettings) -> int:
    """The attribute sets per metric the SDK must keep apart for the caps to hold.

    The largest metrics are the HTTP histogram (``max_series`` plus one global overflow series
    per status code) and the per-service gauges (``max_services`` plus ``__other__``). The SDK
    folds the attribute set that would reach its limit into ``otel_metric_overflow="true"``,
    hence the one to spare.
    """
    http_series = settings.max_series + OVERFLOW_RESERVE_STATUSES
    service_series = settings.max_services + 1
    return max(http_series, service_series) + 1


def build_reader(
    registry: CollectorRegistry, settings: CollectorSettings
) -> SamplingPrometheusReader:
    """The collector's Prometheus reader, feeding ``registry`` with stable label sets.

    Scope labels and ``target_info`` are off: dashboards and rules rely on exactly the
    catalogue's labels. ``settings``' caps, enforced before recording, decide what is folded
    and counted. SDKs from 1.45 fold past 2,000 attribute sets per metric on their own; where
    the reader takes a limit, it is set from the caps (:func:`sdk_cardinality_limit`), so that
    SDK fold never happens first.
    """
    options: dict[str, Any] = {}
    if "cardinality_limits" in inspect.signature(PrometheusMetricReader).parameters:
        limit = sdk_cardinality_limit(settings)
        options["cardinality_limits"] = dict.fromkeys(
            (
                Counter,
                Histogram,
                ObservableCounter,
                ObservableGauge,
                ObservableUpDownCounter,
                UpDownCounter,
            ),
            limit,
        )
    return SamplingPrometheusReader(
        disable_target_info=True, scope_info_enabled=False, registry=registry, **options
    )


def build_meter_provider(
    registry: CollectorRegistry,
    settings: CollectorSettings,
    *,
    reader: SamplingPrometheusReader | None = None,
) -> SdkMeterProvider:
    """A MeterProvider exporting to ``registry`` through ``reader`` (:func:`build_reader`'s,
    by default).

    The SDK's exemplar sampling is off: the collector's own trace context is no report's, and
    the Prometheus exporter drops exemplars anyway, so sampling them is pure cost on every
    record (pushed trace ids become exemplars through the recorder's
    :class:`~otelkit_collector.exemplars.HttpExemplars` instead).
    """
    reader = reader if reader is not None else build_reader(registry, settings)
    return SdkMeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())


def create_app(
    settings: CollectorSettings | None = None,
    *,
    meter_provider: MeterProvider | None = None,
    registry: CollectorRegistry | None = None,
    clock: Clock = time.time,
) -> FastAPI:
    """Build a collector application.

    Args:
        settings: defaults to ``CollectorSettings.from_env()``.
        meter_provider: where instruments are created; by default a new SDK provider whose
            Prometheus reader feeds ``registry``.
        registry: what ``/metrics`` renders; by default a new registry that also carries
            prometheus_client's process, platform and GC collectors.
        clock: unix time source for health TTLs (tests inject a fake one).
    """
    settings = settings if settings is not None else CollectorSettings.from_env()
    owns_registry = registry is None
    registry = registry if registry is not None else CollectorRegistry()
    if owns_registry:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    owned_provider: SdkMeterProvider | None = None
    series_source: SeriesSource = partial(registry_series, registry)
    if meter_provider is None:
        # The history reads the collector's own reader: no translation into families.
        reader = build_reader(registry, settings)
        owned_provider = build_meter_provider(registry, settings, reader=reader)
        meter_provider = owned_provider
        series_source = reader.series

    state = ServiceState(
        health_ttl_seconds=settings.health_ttl_seconds,
        max_services=settings.max_services,
        clock=clock,
    )
    if settings.state_file is not None:
        persistence.load_state_file(settings.state_file, state)
    guard = CardinalityGuard(
        max_services=settings.max_services,
        max_routes_per_service=settings.max_routes_per_service,
        max_series=settings.max_series,
    )
    recorder = Recorder(meter_provider, state=state, guard=guard)
    history = History(
        slots=settings.history_ticks,
        window_slots=settings.window_ticks,
        max_series=guard.series_bound,
        clock=clock,
    )

    status = StatusSource(
        recorder=recorder,
        history=history,
        series=series_source,
        settings=settings,
        started_at=clock(),
        version=COLLECTOR_VERSION,
        trends=TrendCache(history),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if multiprocessing.parent_process() is not None:
            raise RuntimeError(MULTI_PROCESS_MESSAGE)
        saver = lock = None
        sampler = asyncio.create_task(
            sample_periodically(status.take_tick, settings.history_resolution_seconds)
        )
        if settings.state_file is not None:
            lock = persistence.lock_state_file(settings.state_file)
            saver = asyncio.create_task(
                persistence.save_periodically(
                    settings.state_file, state, settings.state_save_interval_seconds
                )
            )
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            if saver is not None:
                saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await saver
            if lock is not None:
                lock.close()
            if owned_provider is not None:
                owned_provider.shutdown()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the collector itself
    # (/static-offline-docs), never from a CDN, so they work on a machine without internet.
    app = FastAPIOffline(
        title="otelkit collector",
        summary="Push reports from any language into OpenTelemetry instruments, "
        "scraped by Prometheus at /metrics.",
        version=COLLECTOR_VERSION,
        lifespan=lifespan,
        # A trailing slash must not redirect: POST /api/health/a%2F would be sent on to
        # /api/health/a, recording the health of a service the client did not name.
        redirect_slashes=False,
        # The collector's metrics are its own instruments; FastAPI's native telemetry would
        # add spans and a second duration metric to every push whenever a global provider
        # is set, and costs a provider lookup per request even when none is.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.recorder = recorder
    app.state.registry = registry
    app.state.status = status
    app.include_router(router)
    app.include_router(status_router)

    def count_refused(outcome: Any) -> Any:
        def on_reject(path: str) -> None:
            kind = report_kind(path)
            if kind is not None:
                recorder.count(kind, outcome)

        return on_reject

    # Innermost: the fast lane sees only authorised requests with bodies under the cap.
    app.add_middleware(IngestFastLane, recorder=recorder)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        on_reject=count_refused("rejected"),
    )
    app.add_middleware(JsonContentTypeMiddleware, on_reject=count_refused("rejected"))
    if settings.token is not None:
        app.add_middleware(
            BearerAuthMiddleware, token=settings.token, on_reject=count_refused("unauthorized")
        )
    if settings.cors_origins:
        # Outermost: a browser's preflight carries no token, and every answer, refusals
        # included, needs the headers that let the page read it.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 for a body json cannot even parse (e.g. nested too deeply):
        # a rejected report like any other, so it is counted like one.
        if exc.status_code == 400:
            kind = report_kind(request.url.path)
            if kind is not None:
                recorder.count(kind, "rejected")
            if exc.detail == UNPARSABLE_BODY:
                detail = unparsable_body_detail(exc.__cause__, request.scope.get(BODY_SCOPE_KEY))
                return JSONResponse(status_code=400, content={"detail": detail, "message": detail})
        response = await http_exception_handler(request, exc)
        if isinstance(exc.detail, str) and isinstance(response, JSONResponse):
            # Every error carries the same shape: detail, and a message to show as it is.
            content = {"detail": exc.detail, "message": exc.detail}
            return JSONResponse(content, status_code=exc.status_code, headers=exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
        kind = report_kind(request.url.path)
        if kind is not None:
            recorder.count(kind, "rejected", reports_in(exc.body))
        errors = [describe(error) for error in exc.errors()]
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return JSONResponse(status_code=422, content={"detail": errors, "message": message})

    return app
