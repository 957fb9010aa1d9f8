"""The metric catalogue: every metric name, unit, description, bucket set and label key.

No other module spells a metric name; the collector, the middleware, dashboards and alert
rules all read them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    ObservableCounter,
    ObservableGauge,
    Observation,
)

METER_NAME: Final = "otelkit"

DURATION_BUCKETS_SECONDS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
"""Histogram boundaries in seconds (the SDK's defaults are millisecond-scale)."""

OVERFLOW_VALUE: Final = "__other__"
"""Label value that collects whatever exceeds a cardinality cap."""

OTHER_METHOD: Final = "_OTHER"
"""Method label for anything outside :data:`HTTP_METHODS` (OpenTelemetry's convention)."""

HTTP_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)

MetricKind = Literal["histogram", "gauge", "counter"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One catalogue entry: the OpenTelemetry instrument and the name Prometheus scrapes."""

    name: str
    """OpenTelemetry instrument name."""
    prometheus_name: str
    """Family name as it appears in the Prometheus exposition."""
    kind: MetricKind
    unit: str
    description: str
    label_keys: tuple[str, ...]


HTTP_REQUEST_DURATION: Final = MetricSpec(
    name="http_request_duration",
    prometheus_name="http_request_duration_seconds",
    kind="histogram",
    unit="s",
    description="Duration of HTTP requests",
    label_keys=("method", "route", "status", "service"),
)
SERVICE_HEALTH_STATUS: Final = MetricSpec(
    name="service_health_status",
    prometheus_name="service_health_status",
    kind="gauge",
    unit="",
    description="Health status of services (1 = healthy; 0 = degraded, unhealthy, down or stale)",
    label_keys=("service",),
)
SERVICE_HEALTH_LAST_REPORT: Final = MetricSpec(
    name="service_health_last_report_timestamp_seconds",
    prometheus_name="service_health_last_report_timestamp_seconds",
    kind="gauge",
    unit="s",
    description="Unix time of the last health report received from a service",
    label_keys=("service",),
)
ACTIVE_USERS: Final = MetricSpec(
    name="active_users_total",
    prometheus_name="active_users_total",
    kind="gauge",
    unit="",
    description="Total number of active users",
    label_keys=("service",),
)
COLLECTOR_REPORTS: Final = MetricSpec(
    name="otelkit_collector_reports",
    prometheus_name="otelkit_collector_reports_total",
    kind="counter",
    unit="",
    description="Reports received by the collector, by kind and outcome",
    label_keys=("kind", "outcome"),
)

PUSH_REPORTS: Final = MetricSpec(
    name="otelkit_push_reports",
    prometheus_name="otelkit_push_reports_total",
    kind="counter",
    unit="",
    description="Reports a service's push client generated, delivered to the collector or dropped",
    label_keys=("outcome",),
)
PUSH_QUEUE_SIZE: Final = MetricSpec(
    name="otelkit_push_queue_size",
    prometheus_name="otelkit_push_queue_size",
    kind="gauge",
    unit="",
    description="Reports waiting in a service's push queue or in flight to the collector",
    label_keys=(),
)

CATALOGUE: Final[tuple[MetricSpec, ...]] = (
    HTTP_REQUEST_DURATION,
    SERVICE_HEALTH_STATUS,
    SERVICE_HEALTH_LAST_REPORT,
    ACTIVE_USERS,
    COLLECTOR_REPORTS,
    PUSH_REPORTS,
    PUSH_QUEUE_SIZE,
)

PROCESS_METRIC_PREFIXES: Final = ("process_", "python_gc_", "python_info")
"""Families contributed by prometheus_client's default collectors (not OpenTelemetry)."""

ReportKind = Literal["http", "health", "users"]
ReportOutcome = Literal["accepted", "overflowed", "rejected", "unauthorized"]
REPORT_KINDS: Final[tuple[ReportKind, ...]] = ("http", "health", "users")
REPORT_OUTCOMES: Final[tuple[ReportOutcome, ...]] = (
    "accepted",
    "overflowed",
    "rejected",
    "unauthorized",
)
PushOutcome = Literal["generated", "delivered", "dropped"]
PUSH_OUTCOMES: Final[tuple[PushOutcome, ...]] = ("generated", "delivered", "dropped")

ObservationCallback = Callable[[CallbackOptions], Iterable[Observation]]


def create_http_duration_histogram(meter: Meter) -> Histogram:
    """Create ``http_request_duration`` with the catalogue's second-based buckets."""
    spec = HTTP_REQUEST_DURATION
    return meter.create_histogram(
        spec.name,
        unit=spec.unit,
        description=spec.description,
        explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_SECONDS),
    )


def create_gauge(meter: Meter, spec: MetricSpec, callback: ObservationCallback) -> ObservableGauge:
    """Create an observable gauge for a catalogue entry, read through ``callback``."""
    if spec.kind != "gauge":
        raise ValueError(f"{spec.name} is a {spec.kind}, not a gauge")
    return meter.create_observable_gauge(
        spec.name, callbacks=[callback], unit=spec.unit, description=spec.description
    )


def create_observable_counter(
    meter: Meter, spec: MetricSpec, callback: ObservationCallback
) -> ObservableCounter:
    """Create an observable (monotonic) counter for a catalogue entry, read through ``callback``."""
    if spec.kind != "counter":
        raise ValueError(f"{spec.name} is a {spec.kind}, not a counter")
    return meter.create_observable_counter(
        spec.name, callbacks=[callback], unit=spec.unit, description=spec.description
    )


def create_counter(meter: Meter, spec: MetricSpec) -> Counter:
    """Create a counter for a catalogue entry."""
    if spec.kind != "counter":
        raise ValueError(f"{spec.name} is a {spec.kind}, not a counter")
    return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)


def normalize_method(method: str) -> str:
    """Upper-case a request method, folding anything non-standard into ``_OTHER``."""
    upper = method.upper()
    return upper if upper in HTTP_METHODS else OTHER_METHOD


def prometheus_names(specs: Sequence[MetricSpec] = CATALOGUE) -> frozenset[str]:
    """Every family name the catalogue exposes to Prometheus."""
    return frozenset(spec.prometheus_name for spec in specs)
