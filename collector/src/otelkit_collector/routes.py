"""HTTP routes of the collector: validate, call the recorder, answer. Nothing else."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import AfterValidator
from starlette.convertors import Convertor, register_url_convertor

from otelkit.reports import (
    LABEL_TEXT_PATTERN,
    MAX_SERVICE_LENGTH,
    HealthReport,
    HttpReport,
    HttpReportBatch,
    UsersReport,
    check_label_text,
)
from otelkit_collector import exposition
from otelkit_collector.recorder import Recorder
from otelkit_collector.schemas import (
    Accepted,
    ActiveUsers,
    ErrorBody,
    Forgotten,
    MetricsView,
    ServiceHealth,
)
from otelkit_collector.state import CapacityError

router = APIRouter()

ServicePath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_SERVICE_LENGTH,
        description="Service name",
        json_schema_extra={"pattern": LABEL_TEXT_PATTERN},
    ),
    AfterValidator(check_label_text),
]


# Dependencies are ``async def``: a plain ``def`` would be run in a thread pool on every
# request, which cost more than the whole lookup.
async def get_recorder(request: Request) -> Recorder:
    """The app's recorder (set by ``create_app``)."""
    return cast(Recorder, request.app.state.recorder)


async def get_registry(request: Request) -> CollectorRegistry:
    """The registry ``/metrics`` renders (set by ``create_app``)."""
    return cast(CollectorRegistry, request.app.state.registry)


# Every answer a write can give is documented, so the OpenAPI schema is one clients (and
# schemathesis) can hold the collector to.
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "Missing or wrong bearer token (only when OTELKIT_COLLECTOR_TOKEN is set)",
    },
}
_REFUSED_PATH: dict[int | str, dict[str, Any]] = {
    **_UNAUTHORIZED,
    422: {"model": ErrorBody, "description": "The service name breaks a rule (named in detail)"},
}
_REFUSED_BODY: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "The body is not UTF-8 JSON (or is nested too deeply), or Content-Length "
        "is not an integer",
    },
    **_UNAUTHORIZED,
    413: {
        "model": ErrorBody,
        "description": "The body is larger than max_body_bytes (OTELKIT_MAX_BODY_BYTES)",
    },
    415: {
        "model": ErrorBody,
        "description": "The body is declared as something other than JSON (Content-Type)",
    },
    422: {
        "model": ErrorBody,
        "description": "A field breaks a rule (detail and message name both), or a new service "
        "would pass max_services",
    },
}
_EXPOSITION: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text format 0.0.4, or OpenMetrics 1.0 when Accept asks for it",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/openmetrics-text": {"schema": {"type": "string"}},
        },
    },
}

RecorderDep = Annotated[Recorder, Depends(get_recorder)]
RegistryDep = Annotated[CollectorRegistry, Depends(get_registry)]


@router.get("/metrics", response_class=Response, responses=_EXPOSITION, tags=["scrape"])
async def metrics(request: Request, registry: RegistryDep, recorder: RecorderDep) -> Response:
    """Prometheus exposition (OpenMetrics, with exemplars, when the Accept header asks)."""
    body, content_type = exposition.render(
        registry, request.headers.get("accept"), recorder.exemplars
    )
    return Response(content=body, media_type=content_type)


@router.get("/api/metrics", response_model=MetricsView, tags=["read"])
async def metrics_json(recorder: RecorderDep, registry: RegistryDep) -> MetricsView:
    """The same state as /metrics, as JSON."""
    state = recorder.state
    return MetricsView(
        services=[
            ServiceHealth(
                service=view.service,
                status=view.status,
                value=view.value,
                last_report=view.reported_at,
                age_seconds=view.age_seconds,
            )
            for view in state.health_views()
        ],
        active_users=[
            ActiveUsers(service=service, count=entry.count, last_report=entry.reported_at)
            for service, entry in state.users()
        ],
        http=exposition.http_series(registry, recorder.exemplars),
        reports=exposition.report_counts(registry),
        health_ttl_seconds=state.health_ttl_seconds,
    )


class ServiceNameConvertor(Convertor[str]):
    """The rest of the path, whatever it holds: a service name may contain "/", sent as %2F
    (the push client does) and decoded by the server before routing, where one path segment
    would answer 404 and lose the report; and control characters must reach validation, to
    be refused by name, which Starlette's ``path`` (``.*``: no newline) would not let them."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("service_name", ServiceNameConvertor())


@router.post(
    "/api/health/{service:service_name}",
    response_model=Accepted,
    responses=_REFUSED_BODY,
    tags=["write"],
)
async def report_health(
    service: ServicePath, report: HealthReport, recorder: RecorderDep
) -> Accepted:
    """Set a service's health; only ``healthy`` reads as 1."""
    try:
        recorder.record_health(service, report.status)
    except CapacityError as exc:
        recorder.count("health", "rejected")
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return Accepted(accepted=1)


@router.delete(
    "/api/health/{service:service_name}",
    response_model=Forgotten,
    responses=_REFUSED_PATH,
    tags=["write"],
)
async def forget_service(service: ServicePath, recorder: RecorderDep) -> Forgotten:
    """Forget a service: its health, last-report and users series disappear."""
    return Forgotten(service=service, forgotten=recorder.forget_service(service))


@router.post("/api/metrics/http", response_model=Accepted, responses=_REFUSED_BODY, tags=["write"])
async def report_http(report: HttpReport, recorder: RecorderDep) -> Accepted:
    """Record one request's duration (seconds) in http_request_duration_seconds."""
    return _record_http(recorder, [report])


@router.post(
    "/api/metrics/http/batch", response_model=Accepted, responses=_REFUSED_BODY, tags=["write"]
)
async def report_http_batch(batch: HttpReportBatch, recorder: RecorderDep) -> Accepted:
    """Record many requests at once; one bad report rejects the whole batch."""
    return _record_http(recorder, batch.reports)


def _record_http(recorder: Recorder, reports: list[HttpReport]) -> Accepted:
    overflowed = recorder.record_http_reports(reports)
    return Accepted(accepted=len(reports), overflowed=overflowed)


@router.post("/api/metrics/users", response_model=Accepted, responses=_REFUSED_BODY, tags=["write"])
async def report_users(report: UsersReport, recorder: RecorderDep) -> Accepted:
    """Set the number of active users (per service when one is named)."""
    try:
        recorder.record_users(report.service, report.count)
    except CapacityError as exc:
        recorder.count("users", "rejected")
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return Accepted(accepted=1)


@router.get("/healthz", tags=["read"])
async def healthz() -> JSONResponse:
    """Liveness of the collector itself."""
    return JSONResponse({"status": "ok"})
