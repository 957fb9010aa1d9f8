"""Tracing end to end: the example service under real uvicorn, exporting spans and metrics
to a real OTLP/HTTP receiver and pushing to a real collector; a real Prometheus with exemplar
storage scrapes both and answers the trace ids that were sent.

One stack serves every test in this module: what it is fed is fixed before the first test
(traced requests with known trace ids, and one without), and each test reads one place it
must have reached.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from otelkit.instruments import HTTP_REQUEST_DURATION
from tests.e2e.servers import (
    LOOPBACK,
    ManagedProcess,
    clean_env,
    poll,
    running_collector,
    start_listening,
)
from tests.otlp_receiver import OtlpReceiver, running_otlp_receiver
from tests.stack.prometheus_api import host_port
from tests.stack.test_exemplar_storage import running_compose_prometheus

pytestmark = pytest.mark.prometheus

SETTLE_SECONDS = 30.0
TRACED_REQUESTS = 6
ROUTE = "/api/courses/{course_id}"
BUCKET = HTTP_REQUEST_DURATION.prometheus_name + "_bucket"
OPENMETRICS = {"accept": "application/openmetrics-text; version=1.0.0"}


@dataclass(frozen=True)
class TracedStack:
    """The running parts, and the trace context each traced request was sent with."""

    receiver: OtlpReceiver
    service: ManagedProcess
    collector: ManagedProcess
    prometheus: ManagedProcess
    sent: dict[str, str]
    """trace id -> parent span id of every request sent with a traceparent."""
    untraced_path: str
    """The path requested once without a traceparent."""


def service_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "examples.courses.app:app",
        "--host", LOOPBACK, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


def prometheus_config(service: ManagedProcess, collector: ManagedProcess) -> str:
    scrape = [
        {"job_name": name, "static_configs": [{"targets": [host_port(process.url)]}]}
        for name, process in (("service", service), ("collector", collector))
    ]
    return yaml.safe_dump(
        {"global": {"scrape_interval": "1s"}, "scrape_configs": scrape}, sort_keys=False
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedStack]:
    log_dir = tmp_path_factory.mktemp("tracing")
    rng = random.Random(12)
    with running_otlp_receiver() as receiver, running_collector(log_dir) as collector:
        service = start_listening(
            service_argv,
            ready_path="/api/courses",
            log_dir=log_dir,
            name="courses",
            env=clean_env(
                {
                    "OTEL_SERVICE_NAME": "courses",
                    "OTEL_TRACES_EXPORTER": "otlp",
                    "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                    "OTEL_BSP_SCHEDULE_DELAY": "100",
                    "OTEL_METRICS_EXPORTER": "prometheus,otlp",
                    "OTEL_METRIC_EXPORT_INTERVAL": "500",
                    "OTELKIT_COLLECTOR_URL": collector.url,
                }
            ),
        )
        try:
            with running_compose_prometheus(
                prometheus_config(service, collector), log_dir / "prometheus"
            ) as prometheus:
                sent = {}
                for index in range(TRACED_REQUESTS):
                    trace_id = f"{rng.getrandbits(128):032x}"
                    parent = f"{rng.getrandbits(64):016x}"
                    sent[trace_id] = parent
                    response = httpx.get(
                        f"{service.url}/api/courses/{index % 3 + 1}",
                        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
                        timeout=5,
                    )
                    assert response.status_code == 200
                # Another route: its bucket's latest exemplar must not replace a sent one.
                untraced_path = "/api/courses"
                assert httpx.get(service.url + untraced_path, timeout=5).status_code == 200
                yield TracedStack(receiver, service, collector, prometheus, sent, untraced_path)
        finally:
            service.stop()


def settle(what: str, probe: Any) -> Any:
    return poll(probe, timeout=SETTLE_SECONDS, interval=0.25, what=what)


def server_spans(receiver: OtlpReceiver) -> list[Any]:
    return [span for span in receiver.spans() if span.kind == span.SPAN_KIND_SERVER]


def test_server_span_continues_the_incoming_trace(stack: TracedStack) -> None:
    """Each traced request's SERVER span reaches OTLP with the sent trace id and parent."""

    def continued() -> dict[str, str] | None:
        found = {
            span.trace_id.hex(): span.parent_span_id.hex()
            for span in server_spans(stack.receiver)
            if span.trace_id.hex() in stack.sent
        }
        return found if len(found) == len(stack.sent) else None

    assert settle("a SERVER span per traced request", continued) == stack.sent
    spans = server_spans(stack.receiver)
    assert {span.name for span in spans} == {f"GET {ROUTE}", "GET /api/courses"}
    assert {"courses"} == {r.get("service.name") for r in stack.receiver.span_resources()}


def test_a_request_without_traceparent_starts_a_new_trace(stack: TracedStack) -> None:
    """Each request sent without trace context is the root of a new trace of its own."""

    def roots() -> list[Any] | None:
        found = [
            span
            for span in server_spans(stack.receiver)
            if span.trace_id.hex() not in stack.sent
            and any(a.key == "url.path" and a.value.string_value == stack.untraced_path
                    for a in span.attributes)
        ]  # fmt: skip
        return found or None

    # The readiness probes asked for the same path without trace context too.
    found = settle("the untraced requests' spans", roots)
    assert all(root.parent_span_id == b"" for root in found)
    assert all(root.trace_id != bytes(16) for root in found)
    assert len({root.trace_id for root in found}) == len(found)


def exemplar_trace_ids(body: str) -> set[str]:
    return {
        sample.exemplar.labels["trace_id"]
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == BUCKET and sample.exemplar is not None
    }


def test_service_openmetrics_buckets_link_to_sent_traces(stack: TracedStack) -> None:
    """The service's OpenMetrics /metrics carries exemplars of traces that were served."""

    def linked() -> set[str] | None:
        # Spans reach the receiver in batches: wait until each exemplar's trace is there.
        served = {span.trace_id.hex() for span in server_spans(stack.receiver)}
        body = httpx.get(stack.service.url + "/metrics", headers=OPENMETRICS, timeout=5).text
        found = exemplar_trace_ids(body)
        return found if found and found <= served else None

    assert settle("exemplars of exported spans", linked) & set(stack.sent)
    plain = httpx.get(stack.service.url + "/metrics", timeout=5).text
    assert " # {" not in plain


def test_otlp_metrics_carry_the_same_exemplars(stack: TracedStack) -> None:
    """The latency histogram exported over OTLP holds exemplars with the sent trace ids."""

    def exported() -> set[str] | None:
        found = {
            exemplar.trace_id.hex()
            for metric in stack.receiver.metrics(HTTP_REQUEST_DURATION.name)
            for point in metric.histogram.data_points
            for exemplar in point.exemplars
        }
        return found & set(stack.sent) or None

    assert settle("exemplars over OTLP", exported)


def test_collector_serves_the_pushed_ids_as_exemplars(stack: TracedStack) -> None:
    """Pushed reports carry the request's ids; the collector's OpenMetrics buckets link them."""

    def pushed() -> set[str] | None:
        body = httpx.get(stack.collector.url + "/metrics", headers=OPENMETRICS, timeout=5).text
        return exemplar_trace_ids(body) & set(stack.sent) or None

    assert settle("the collector's exemplars", pushed)


@pytest.mark.parametrize("job", ["service", "collector"])
def test_prometheus_answers_the_sent_trace_ids(stack: TracedStack, job: str) -> None:
    """Prometheus with exemplar storage returns, for each scraped job, trace ids that were sent."""

    def answered() -> set[str] | None:
        now = time.time()
        response = httpx.get(
            stack.prometheus.url + "/api/v1/query_exemplars",
            params={
                "query": f'{BUCKET}{{job="{job}",route="{ROUTE}"}}',
                "start": f"{now - 300:.3f}",
                "end": f"{now + 60:.3f}",
            },
            timeout=5,
        )
        payload = response.json()
        assert payload["status"] == "success", payload
        found = {
            exemplar["labels"]["trace_id"]
            for series in payload["data"]
            for exemplar in series["exemplars"]
        }
        return found & set(stack.sent) or None

    assert settle(f"exemplars of job {job} in Prometheus", answered)
