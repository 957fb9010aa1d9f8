"""setup_metrics and parse_exporters: Prometheus through a registry or a side port, OTLP to a
real OTLP/HTTP receiver, service identity from arguments or the standard OTEL_* variables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from otelkit.exporters import _exemplar_filter, parse_exporters, setup_metrics
from otelkit.instruments import (
    DURATION_BUCKETS_SECONDS,
    HTTP_REQUEST_DURATION,
    METER_NAME,
    create_http_duration_histogram,
)
from otelkit.middleware import MetricsMiddleware
from tests.otelkit.conftest import LOOPBACK, asgi_client
from tests.otlp_receiver import OtlpReceiver, attributes, running_otlp_receiver

pytestmark = pytest.mark.anyio


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with running_otlp_receiver() as receiver:
        yield receiver


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        pytest.param(None, {}, ("prometheus",), id="default-prometheus"),
        pytest.param(None, {"OTEL_METRICS_EXPORTER": "  "}, ("prometheus",), id="blank-env"),
        pytest.param(None, {"OTEL_METRICS_EXPORTER": "otlp"}, ("otlp",), id="env-otlp"),
        pytest.param(
            None,
            {"OTEL_METRICS_EXPORTER": "otlp, Prometheus"},
            ("otlp", "prometheus"),
            id="env-comma-list",
        ),
        pytest.param(None, {"OTEL_METRICS_EXPORTER": "none"}, (), id="env-none"),
        pytest.param("prometheus", {}, ("prometheus",), id="argument"),
        pytest.param(
            "otlp", {"OTEL_METRICS_EXPORTER": "prometheus"}, ("otlp",), id="argument-beats-env"
        ),
        pytest.param(["prometheus", "otlp"], {}, ("prometheus", "otlp"), id="argument-list"),
        pytest.param("prometheus,PROMETHEUS", {}, ("prometheus",), id="duplicates-folded"),
        pytest.param("none", {}, (), id="argument-none"),
        pytest.param("none,prometheus", {}, ("prometheus",), id="none-with-another"),
    ],
)
def test_parse_exporters(
    value: str | list[str] | None, environ: Mapping[str, str], expected: tuple[str, ...]
) -> None:
    """Exporters come from the argument, else OTEL_METRICS_EXPORTER, else prometheus."""
    assert parse_exporters(value, environ) == expected


@pytest.mark.parametrize(
    ("value", "environ", "named"),
    [
        pytest.param("zipkin", {}, "exporters", id="argument"),
        pytest.param(["prometheus", "jaeger"], {}, "exporters", id="argument-list"),
        pytest.param(None, {"OTEL_METRICS_EXPORTER": "zipkin"}, "OTEL_METRICS_EXPORTER", id="env"),
        pytest.param(
            None,
            {"OTEL_METRICS_EXPORTER": "prometheus,xyz"},
            "OTEL_METRICS_EXPORTER",
            id="env-list",
        ),
    ],
)
def test_unknown_exporter_raises_naming_the_source(
    value: str | list[str] | None, environ: Mapping[str, str], named: str
) -> None:
    """An unknown exporter name raises ValueError naming the argument or the variable."""
    with pytest.raises(ValueError, match=named):
        parse_exporters(value, environ)


def test_unknown_exporter_in_setup_metrics_raises() -> None:
    """setup_metrics rejects a bad OTEL_METRICS_EXPORTER at construction."""
    with pytest.raises(ValueError, match="OTEL_METRICS_EXPORTER"):
        setup_metrics(environ={"OTEL_METRICS_EXPORTER": "statsd"})


def render(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_prometheus_registry_renders_the_catalogue_without_scope_labels(
    registry: CollectorRegistry,
) -> None:
    """Recorded durations render as http_request_duration_seconds with only our labels."""
    setup = setup_metrics(environ={}, exporters="prometheus", registry=registry)
    try:
        assert setup.registry is registry
        assert setup.exporters == ("prometheus",)
        assert setup.prometheus_port is None
        histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
        histogram.record(
            0.2, {"method": "GET", "route": "/api/courses/{course_id}", "status": "200"}
        )
        families = {
            family.name: family for family in text_string_to_metric_families(render(registry))
        }
    finally:
        setup.shutdown()
    assert "target_info" not in families
    family = families[HTTP_REQUEST_DURATION.prometheus_name]
    assert family.type == "histogram"
    label_sets = {frozenset(sample.labels) for sample in family.samples}
    assert label_sets <= {
        frozenset({"method", "route", "status"}),
        frozenset({"method", "route", "status", "le"}),
    }
    first_bucket = next(s for s in family.samples if s.name.endswith("_bucket"))
    assert first_bucket.labels["le"] == "0.005"
    count = next(s for s in family.samples if s.name.endswith("_count"))
    assert count.value == 1


def test_default_registry_carries_process_metrics() -> None:
    """Without a registry, setup_metrics builds one with prometheus_client's process metrics."""
    setup = setup_metrics(environ={}, exporters="prometheus")
    try:
        assert setup.registry is not None
        names = {family.name for family in text_string_to_metric_families(render(setup.registry))}
    finally:
        setup.shutdown()
    assert {"process_cpu_seconds", "python_gc_objects_collected", "python_info"} <= names


def test_none_exporter_builds_a_provider_without_readers() -> None:
    """exporters="none" gives a working provider that exports nowhere and has no registry."""
    setup = setup_metrics(environ={}, exporters="none")
    try:
        assert setup.exporters == ()
        assert setup.registry is None
        histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
        histogram.record(0.1, {"method": "GET", "route": "/", "status": "200"})
    finally:
        setup.shutdown()


@pytest.mark.parametrize(
    "via",
    [pytest.param("arguments", id="arguments"), pytest.param("environ", id="environment")],
)
def test_prometheus_side_port_serves_the_registry(registry: CollectorRegistry, via: str) -> None:
    """A side port serves the registry over real HTTP until shutdown stops it."""
    if via == "arguments":
        setup = setup_metrics(
            environ={},
            exporters="prometheus",
            registry=registry,
            prometheus_port=0,
            prometheus_host=LOOPBACK,
        )
    else:
        setup = setup_metrics(
            environ={
                "OTEL_EXPORTER_PROMETHEUS_PORT": "0",
                "OTEL_EXPORTER_PROMETHEUS_HOST": LOOPBACK,
            },
            exporters="prometheus",
            registry=registry,
        )
    try:
        assert setup.prometheus_port
        url = f"http://{LOOPBACK}:{setup.prometheus_port}/metrics"
        histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
        histogram.record(0.01, {"method": "GET", "route": "/", "status": "200"})
        response = httpx.get(url, timeout=5)
        assert response.status_code == 200
        names = {family.name for family in text_string_to_metric_families(response.text)}
        assert HTTP_REQUEST_DURATION.prometheus_name in names
    finally:
        setup.shutdown()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=5)


def test_bad_prometheus_port_variable_raises_naming_it() -> None:
    """A malformed OTEL_EXPORTER_PROMETHEUS_PORT raises ValueError naming the variable."""
    with pytest.raises(ValueError, match="OTEL_EXPORTER_PROMETHEUS_PORT"):
        setup_metrics(environ={"OTEL_EXPORTER_PROMETHEUS_PORT": "ninety"}, exporters="prometheus")


def export_once(receiver: OtlpReceiver, **options: Any) -> None:
    """Build an OTLP-only setup, record one request and flush it to ``receiver``."""
    options.setdefault("otlp_endpoint", receiver.endpoint)
    setup = setup_metrics(exporters="otlp", export_interval_millis=60_000, **options)
    histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
    histogram.record(0.1, {"method": "GET", "route": "/", "status": "200"})
    setup.shutdown()


@pytest.mark.parametrize(
    ("service_name", "env", "expected"),
    [
        pytest.param("courses", {}, {"service.name": "courses"}, id="argument"),
        pytest.param(
            None, {"OTEL_SERVICE_NAME": "from-env"}, {"service.name": "from-env"}, id="env"
        ),
        pytest.param(
            None,
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=test"},
            {"service.name": "from-attrs", "deployment.environment": "test"},
            id="resource-attributes",
        ),
        pytest.param(
            "argument",
            {"OTEL_SERVICE_NAME": "env", "OTEL_RESOURCE_ATTRIBUTES": "service.name=attrs"},
            {"service.name": "argument"},
            id="argument-beats-env",
        ),
    ],
)
def test_service_name_reaches_the_resource(
    otlp_receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    service_name: str | None,
    env: dict[str, str],
    expected: dict[str, str],
) -> None:
    """service.name comes from the argument, else OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    export_once(otlp_receiver, service_name=service_name)
    resource = otlp_receiver.resource()
    assert {key: resource.get(key) for key in expected} == expected


def test_resource_attributes_argument(otlp_receiver: OtlpReceiver) -> None:
    """Extra resource attributes given as an argument are exported with the service name."""
    export_once(otlp_receiver, service_name="courses", resource_attributes={"team": "learning"})
    assert otlp_receiver.resource()["team"] == "learning"
    assert otlp_receiver.resource()["service.name"] == "courses"


def test_otlp_endpoint_from_standard_variable(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit endpoint, OTEL_EXPORTER_OTLP_ENDPOINT decides where OTLP goes."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    export_once(otlp_receiver, otlp_endpoint=None, service_name="courses")
    assert otlp_receiver.paths == ["/v1/metrics"]
    assert otlp_receiver.metrics(HTTP_REQUEST_DURATION.name)


async def test_otlp_receives_the_middleware_histogram(otlp_receiver: OtlpReceiver) -> None:
    """Requests recorded by the middleware reach an OTLP receiver with buckets, labels, resource."""
    setup = setup_metrics(
        exporters="otlp",
        otlp_endpoint=otlp_receiver.endpoint,
        service_name="courses",
        export_interval_millis=200,
    )
    app = FastAPI()

    @app.get("/api/courses/{course_id}")
    async def get_course(course_id: int) -> dict[str, int]:
        return {"id": course_id}

    app.add_middleware(MetricsMiddleware, meter_provider=setup.meter_provider)
    try:
        async with asgi_client(app) as http:
            for course_id in range(5):
                assert (await http.get(f"/api/courses/{course_id}")).status_code == 200
    finally:
        setup.shutdown()  # flushes the last export

    assert set(otlp_receiver.paths) == {"/v1/metrics"}
    metric = otlp_receiver.metrics(HTTP_REQUEST_DURATION.name)[-1]
    assert metric.unit == "s"
    (point,) = metric.histogram.data_points
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS_SECONDS
    assert attributes(point.attributes) == {
        "method": "GET",
        "route": "/api/courses/{course_id}",
        "status": "200",
    }
    assert point.count == 5
    assert sum(point.bucket_counts) == 5
    assert otlp_receiver.resource()["service.name"] == "courses"


def test_otlp_and_prometheus_together(
    otlp_receiver: OtlpReceiver, registry: CollectorRegistry
) -> None:
    """With both exporters the same observation is scraped locally and pushed over OTLP."""
    setup = setup_metrics(
        exporters="prometheus,otlp",
        registry=registry,
        otlp_endpoint=otlp_receiver.endpoint,
        service_name="courses",
        export_interval_millis=60_000,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(setup.shutdown)
        histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
        histogram.record(0.3, {"method": "POST", "route": "/api/x", "status": "201"})
        assert "http_request_duration_seconds_count" in render(registry)
    (point,) = otlp_receiver.metrics(HTTP_REQUEST_DURATION.name)[-1].histogram.data_points
    assert point.count == 1


def test_otlp_keeps_trace_exemplars(otlp_receiver: OtlpReceiver) -> None:
    """Recorded inside a sampled span, an observation reaches OTLP with that span's exemplar."""
    setup = setup_metrics(
        exporters="otlp",
        otlp_endpoint=otlp_receiver.endpoint,
        service_name="courses",
        export_interval_millis=60_000,
    )
    tracer = TracerProvider().get_tracer("test")
    with contextlib.ExitStack() as stack:
        stack.callback(setup.shutdown)
        histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
        with tracer.start_as_current_span("request") as span:
            histogram.record(0.2, {"method": "GET", "route": "/", "status": "200"})
            trace_id = span.get_span_context().trace_id

    (point,) = otlp_receiver.metrics(HTTP_REQUEST_DURATION.name)[-1].histogram.data_points
    assert [int.from_bytes(e.trace_id, "big") for e in point.exemplars] == [trace_id]


@pytest.mark.parametrize(
    ("exporters", "variable", "tracing", "sampling"),
    [
        pytest.param(("prometheus",), None, False, False, id="prometheus-only"),
        pytest.param((), None, False, False, id="none"),
        pytest.param(("prometheus", "otlp"), None, False, True, id="with-otlp"),
        pytest.param(("prometheus",), "always_on", False, True, id="variable-set"),
        pytest.param(("prometheus",), None, True, True, id="tracing"),
    ],
)
def test_exemplars_are_sampled_only_where_they_can_link_to_a_trace(
    monkeypatch: pytest.MonkeyPatch,
    exporters: tuple[str, ...],
    variable: str | None,
    tracing: bool,
    sampling: bool,
) -> None:
    """Without tracing, OTLP or the variable, no span can be current: nothing samples them."""
    if variable is None:
        monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", variable)

    chosen = _exemplar_filter(exporters, tracing=tracing)

    assert (chosen is None) is sampling
    if chosen is not None:
        assert isinstance(chosen, AlwaysOffExemplarFilter)
