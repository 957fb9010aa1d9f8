"""Response models of the collector's JSON API (they document ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from otelkit.instruments import SERVICE_HEALTH_STATUS
from otelkit_collector.state import EffectiveStatus


class ServiceHealth(BaseModel):
    """One service's health as Prometheus scrapes it."""

    service: str
    status: EffectiveStatus = Field(description="Last reported status, or 'stale' past the TTL")
    value: int = Field(description=f"{SERVICE_HEALTH_STATUS.prometheus_name}: 1 healthy, else 0")
    last_report: float = Field(description="Unix time of the last health report")
    age_seconds: float = Field(description="Seconds since the last health report")


class ActiveUsers(BaseModel):
    """An active-user count (service is null when the report named none)."""

    service: str | None
    count: int
    last_report: float


class HttpSeries(BaseModel):
    """One http_request_duration_seconds series."""

    service: str | None
    method: str
    route: str
    status: str
    count: int
    sum: float = Field(description="Total seconds")
    mean: float | None = Field(description="sum / count, null when count is 0")
    buckets: dict[str, int] = Field(description="Cumulative count per upper bound ('le')")
    trace_id: str | None = Field(
        default=None,
        description="Trace of the series' latest exemplar (the latest report received with a "
        "trace_id), null when none",
    )


class ReportCount(BaseModel):
    """otelkit_collector_reports_total for one kind and outcome."""

    kind: str
    outcome: str
    count: int


class MetricsView(BaseModel):
    """The collector's state as JSON: the same numbers /metrics shows."""

    services: list[ServiceHealth]
    active_users: list[ActiveUsers]
    http: list[HttpSeries]
    reports: list[ReportCount]
    health_ttl_seconds: float


class Accepted(BaseModel):
    """Answer to a write: what was recorded."""

    accepted: int = Field(description="Reports recorded")
    overflowed: int = Field(default=0, description="Of those, folded into an overflow series")


class Forgotten(BaseModel):
    """Answer to DELETE /api/health/{service}."""

    service: str
    forgotten: bool = Field(description="Whether the collector knew the service")


class ValidationIssue(BaseModel):
    """One rule a request broke: where (``loc``), what (``msg``) and the rule's ``type``."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx answer: ``detail`` is a message, or the list of broken rules (422)."""

    detail: str | list[ValidationIssue]
    message: str = Field(description="What was refused and why, in one line, to show as it is")
