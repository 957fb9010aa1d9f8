"""Library fixtures: a fresh in-memory MeterProvider per test, and readers for what it holds."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Metric
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from otelkit.instruments import HTTP_REQUEST_DURATION

with warnings.catch_warnings():
    # Newer Starlette asks for the httpx2 fork behind its TestClient (a
    # StarletteDeprecationWarning, which older releases do not define); the httpx we test with
    # works the same for these tests, and the warning would otherwise fail collection.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient as TestClient

LOOPBACK = "127.0.0.1"
STARTUP_SECONDS = 10.0

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide the host's OTEL_* and OTELKIT_* variables: each test sees only what it sets."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "OTELKIT_")):
            monkeypatch.delenv(name)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture(params=["bound", "record"])
def meter_provider(
    request: pytest.FixtureRequest, reader: InMemoryMetricReader
) -> Iterator[MeterProvider]:
    """A MeterProvider of this test's own, read through ``reader``; never the global one.

    Twice: with exemplars off, histograms record through otelkit.bound's bound series; with
    the SDK's default (trace-based) exemplar filter, through ``Histogram.record()``.
    """
    if request.param == "bound":
        provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
    else:
        provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def metrics_named(reader: InMemoryMetricReader, name: str) -> list[Metric]:
    """Every metric called ``name`` the reader collects now (one per instrument)."""
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        metric
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == name
    ]


def duration_points(reader: InMemoryMetricReader) -> dict[Labels, HistogramDataPoint]:
    """The ``http_request_duration`` points the reader collects now, by attribute set."""
    points: dict[Labels, HistogramDataPoint] = {}
    for metric in metrics_named(reader, HTTP_REQUEST_DURATION.name):
        for point in metric.data.data_points:
            assert isinstance(point, HistogramDataPoint)
            points[frozenset((k, str(v)) for k, v in (point.attributes or {}).items())] = point
    return points


def series(method: str, route: str, status: int | str) -> Labels:
    """The attribute set the middleware records for one request."""
    return frozenset({("method", method), ("route", route), ("status", str(status))})


def counts(reader: InMemoryMetricReader) -> dict[Labels, int]:
    """Observation count per attribute set of ``http_request_duration``."""
    return {labels: point.count for labels, point in duration_points(reader).items()}


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server on a free loopback port; yield its base URL."""
    config = uvicorn.Config(app, host=LOOPBACK, port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.asynccontextmanager
async def asgi_client(app: Any, **transport_options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process HTTP client for ``app`` (ASGITransport: the lifespan does not run)."""
    transport = httpx.ASGITransport(app=app, **transport_options)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        yield http


def samples(exposition: str) -> Samples:
    """Parse a Prometheus text exposition into {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
