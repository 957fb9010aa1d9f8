"""setup_metrics and parse_exporters: Prometheus through a registry or a side port, OTLP to a
real OTLP/HTTP receiver, service identity from arguments or the standard OTEL_* variables."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from otelkit.exporters import parse_exporters, setup_metrics
from otelkit.instruments import (
    HTTP_REQUEST_DURATION,
    METER_NAME,
    create_http_duration_histogram,
)
from otelkit.middleware import MetricsMiddleware
from tests.e2e.servers import clean_env
from tests.otelkit.conftest import LOOPBACK, asgi_client, metrics_named
from tests.otlp_receiver import OtlpReceiver, attributes, running_otlp_receiver

pytestmark = pytest.mark.anyio

CONTRACT_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
)  # fmt: skip
"""The histogram's buckets as README's catalogue states them."""


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


_RECORD_ONE = """
from otelkit.exporters import setup_metrics
from otelkit.instruments import METER_NAME, create_http_duration_histogram

setup = setup_metrics(
    environ={{}}, exporters={exporters!r}, service_name="courses", export_interval_millis=60_000
)
histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
histogram.record(0.3, {{"method": "POST", "route": "/api/x", "status": "201"}})
setup.shutdown()
"""


def printed_when_recording(exporters: str) -> str:
    """What a fresh interpreter prints on stdout recording one value with ``exporters`` and
    shutting down (the console exporter writes to the stdout it found at import)."""
    result = subprocess.run(
        [sys.executable, "-c", _RECORD_ONE.format(exporters=exporters)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after the other in ``text``."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while text[position:].strip():
        position += len(text[position:]) - len(text[position:].lstrip())
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    return documents


def test_none_exporter_builds_a_provider_without_readers(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """exporters="none" gives a working provider that exports nowhere and has no registry:
    a recorded value reaches no OTLP endpoint the environment names, and stdout stays empty,
    yet a reader added to the provider sees what is recorded after it."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    setup = setup_metrics(environ={}, exporters="none", export_interval_millis=10)
    attributes = {"method": "GET", "route": "/", "status": "200"}
    late = InMemoryMetricReader()
    try:
        assert setup.exporters == ()
        assert setup.registry is None
        histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
        histogram.record(0.1, attributes)
        assert setup.meter_provider.force_flush()
        setup.meter_provider.add_metric_reader(late)
        histogram.record(0.3, attributes)
        (metric,) = metrics_named(late, HTTP_REQUEST_DURATION.name)
    finally:
        setup.shutdown()
    (point,) = metric.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert (dict(point.attributes or {}), point.count, point.sum) == (attributes, 1, 0.3)
    assert otlp_receiver.paths == []
    assert printed_when_recording("none") == ""


def test_console_exporter_prints_the_recorded_value() -> None:
    """exporters="console" prints each export as JSON on stdout, the recorded value in it."""
    documents = json_documents(printed_when_recording("console"))
    points = [
        point
        for document in documents
        for resource in document["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
        if metric["name"] == HTTP_REQUEST_DURATION.name
        for point in metric["data"]["data_points"]
    ]
    assert points
    point = points[-1]
    assert point["attributes"] == {"method": "POST", "route": "/api/x", "status": "201"}
    assert (point["count"], point["sum"]) == (1, 0.3)
    resource = documents[-1]["resource_metrics"][0]["resource"]
    assert resource["attributes"]["service.name"] == "courses"


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
        scraped = {
            (sample.name, sample.labels.get("le")): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
        name = HTTP_REQUEST_DURATION.prometheus_name
        assert scraped[(f"{name}_count", None)] == 1
        assert scraped[(f"{name}_sum", None)] == 0.01
        assert (scraped[(f"{name}_bucket", "0.005")], scraped[(f"{name}_bucket", "0.01")]) == (0, 1)
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
    assert tuple(point.explicit_bounds) == CONTRACT_BUCKETS_SECONDS
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
        pytest.param("prometheus", None, False, False, id="prometheus-only"),
        pytest.param("none", None, False, False, id="none"),
        pytest.param("prometheus,otlp", None, False, True, id="with-otlp"),
        pytest.param("prometheus", "always_on", False, True, id="variable-set"),
        pytest.param("prometheus", None, True, True, id="tracing"),
    ],
)
def test_exemplars_are_sampled_only_where_they_can_link_to_a_trace(
    monkeypatch: pytest.MonkeyPatch,
    otlp_receiver: OtlpReceiver,
    exporters: str,
    variable: str | None,
    tracing: bool,
    sampling: bool,
) -> None:
    """Without tracing, OTLP or the variable, no span can be current: nothing samples them.

    A value recorded inside a sampled span carries that span as its exemplar, in a reader's
    data points and (with the Prometheus exporter) on the OpenMetrics exposition, exactly when
    sampling is on.
    """
    if variable is None:
        monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    else:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", variable)
    registry = CollectorRegistry()
    setup = setup_metrics(
        environ={},
        exporters=exporters,
        registry=registry,
        otlp_endpoint=otlp_receiver.endpoint,
        export_interval_millis=60_000,
        tracing=tracing,
    )
    reader = InMemoryMetricReader()
    tracer = TracerProvider().get_tracer("test")
    with contextlib.ExitStack() as stack:
        stack.callback(setup.shutdown)
        setup.meter_provider.add_metric_reader(reader)
        histogram = create_http_duration_histogram(setup.meter_provider.get_meter(METER_NAME))
        with tracer.start_as_current_span("request") as span:
            histogram.record(0.2, {"method": "GET", "route": "/", "status": "200"})
            trace_id = span.get_span_context().trace_id
        (metric,) = metrics_named(reader, HTTP_REQUEST_DURATION.name)
        exposed = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]

    (point,) = metric.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert point.count == 1
    assert [exemplar.trace_id for exemplar in point.exemplars] == ([trace_id] if sampling else [])
    if "prometheus" in exporters:
        shown = [
            sample.exemplar.labels["trace_id"]
            for family in openmetrics_families(exposed)  # type: ignore[no-untyped-call]
            for sample in family.samples
            if sample.exemplar is not None
        ]
        assert shown == ([f"{trace_id:032x}"] if sampling else [])
