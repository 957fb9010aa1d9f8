"""otelkit.instrument(app): /metrics on the app, module-level reporters, the lifespan-driven
heartbeat, and push end-to-end into a real collector under uvicorn."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import otelkit
from collector.app import create_app
from collector.settings import CollectorSettings
from otelkit import instrumentation
from otelkit.instruments import ACTIVE_USERS, HTTP_REQUEST_DURATION, SERVICE_HEALTH_STATUS
from tests.otelkit.conftest import (
    Labels,
    Samples,
    TestClient,
    asgi_client,
    counts,
    samples,
    series,
    serve_in_thread,
)

pytestmark = pytest.mark.anyio

PUSHED_REQUESTS = 50


@pytest.fixture(autouse=True)
def restore_default_reporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """instrument() remembers the last reporter; put back whatever was there before."""
    monkeypatch.setattr(instrumentation, "_default_reporter", instrumentation._default_reporter)


def scrape_until(client: TestClient, key: tuple[str, Labels], path: str = "/metrics") -> Samples:
    """Scrape the app until ``key`` appears (the heartbeat runs in the background), or 5 s."""
    scraped: Samples = {}
    deadline = time.monotonic() + 5
    while key not in scraped and time.monotonic() < deadline:
        scraped = samples(client.get(path).text)
        time.sleep(0.02)
    return scraped


def courses_app(**fastapi_options: Any) -> FastAPI:
    app = FastAPI(**fastapi_options)

    @app.get("/api/courses/{course_id}")
    async def get_course(course_id: int) -> dict[str, int]:
        return {"id": course_id}

    @app.post("/api/courses/{course_id}/enrol")
    async def enrol(course_id: int) -> dict[str, int]:
        otelkit.report_active_users(7)
        return {"id": course_id}

    return app


DURATION_COUNT = f"{HTTP_REQUEST_DURATION.prometheus_name}_count"


async def test_app_serves_metrics(registry: CollectorRegistry) -> None:
    """After a few requests GET /metrics shows the seed series; /metrics itself isn't counted."""
    app = courses_app()
    setup = otelkit.instrument(
        app,
        service_name="courses",
        exporters="prometheus",
        registry=registry,
        heartbeat_interval=None,
    )
    assert setup.registry is registry
    async with asgi_client(app) as http:
        for course_id in (1, 2, 3):
            assert (await http.get(f"/api/courses/{course_id}")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    scraped = samples(response.text)
    labels = series("GET", "/api/courses/{course_id}", 200)
    assert scraped[(DURATION_COUNT, labels)] == 3
    assert {dict(key)["route"] for name, key in scraped if name == DURATION_COUNT} == {
        "/api/courses/{course_id}"
    }


async def test_metrics_in_openmetrics_when_asked(registry: CollectorRegistry) -> None:
    """A scraper asking for OpenMetrics gets OpenMetrics."""
    app = courses_app()
    otelkit.instrument(app, exporters="prometheus", registry=registry, heartbeat_interval=None)
    async with asgi_client(app) as http:
        await http.get("/api/courses/1")
        response = await http.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


@pytest.mark.parametrize(
    ("metrics_path", "served_at"),
    [
        pytest.param("/internal/metrics", "/internal/metrics", id="custom-path"),
        pytest.param(None, None, id="not-served"),
    ],
)
async def test_metrics_path(
    registry: CollectorRegistry, metrics_path: str | None, served_at: str | None
) -> None:
    """metrics_path moves the endpoint (and excludes it), or None serves no endpoint."""
    app = courses_app()
    otelkit.instrument(
        app,
        exporters="prometheus",
        registry=registry,
        metrics_path=metrics_path,
        heartbeat_interval=None,
    )
    async with asgi_client(app) as http:
        assert (await http.get("/metrics")).status_code == 404
        if served_at is not None:
            response = await http.get(served_at)
            assert response.status_code == 200
            routes = {dict(key)["route"] for name, key in samples(response.text)}
            assert served_at not in routes


async def test_with_a_meter_provider(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """Given a provider, instrument records into it and builds no provider or endpoint itself."""
    app = courses_app()
    result = otelkit.instrument(
        app, service_name="courses", meter_provider=meter_provider, heartbeat_interval=None
    )
    assert result.setup is None
    assert result.meter_provider is meter_provider
    async with asgi_client(app) as http:
        assert (await http.get("/api/courses/9")).status_code == 200
        assert (await http.get("/metrics")).status_code == 404
    assert counts(reader) == {series("GET", "/api/courses/{course_id}", 200): 1}


async def test_with_a_meter_provider_and_registry(
    meter_provider: MeterProvider, registry: CollectorRegistry
) -> None:
    """Given a provider and a registry, /metrics serves that registry as it is."""
    app = courses_app()
    otelkit.instrument(
        app, meter_provider=meter_provider, registry=registry, heartbeat_interval=None
    )
    async with asgi_client(app) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.text == ""


async def test_module_reporters_go_to_the_last_instrumented_app() -> None:
    """report_health and report_active_users land in the most recently instrumented app."""
    first, second = courses_app(), courses_app()
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    otelkit.instrument(
        first, exporters="prometheus", registry=first_registry, heartbeat_interval=None
    )
    otelkit.instrument(
        second, exporters="prometheus", registry=second_registry, heartbeat_interval=None
    )
    otelkit.report_health("courses", "healthy")
    otelkit.report_active_users(127)
    async with asgi_client(second) as http:
        scraped = samples((await http.get("/metrics")).text)
        await http.post("/api/courses/1/enrol")
        after_enrol = samples((await http.get("/metrics")).text)
    assert (
        scraped[(SERVICE_HEALTH_STATUS.prometheus_name, frozenset({("service", "courses")}))] == 1
    )
    assert scraped[(ACTIVE_USERS.prometheus_name, frozenset())] == 127
    assert after_enrol[(ACTIVE_USERS.prometheus_name, frozenset())] == 7
    async with asgi_client(first) as http:
        untouched = samples((await http.get("/metrics")).text)
    assert not [name for name, _ in untouched if name.startswith(("service_", "active_"))]


def test_lifespan_runs_the_heartbeat_and_the_apps_own_lifespan(
    registry: CollectorRegistry,
) -> None:
    """Under a server's lifespan the heartbeat reports healthy and the app's lifespan still runs."""
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.x = "ready"
        events.append("startup")
        yield
        events.append("shutdown")

    app = courses_app(lifespan=lifespan)
    otelkit.instrument(
        app,
        service_name="courses",
        exporters="prometheus",
        registry=registry,
        heartbeat_interval=0.05,
    )
    health_key = (SERVICE_HEALTH_STATUS.prometheus_name, frozenset({("service", "courses")}))
    with TestClient(app) as client:
        assert app.state.x == "ready"
        scraped = scrape_until(client, health_key)
        assert scraped[health_key] == 1
        assert client.get("/api/courses/1").status_code == 200
    assert events == ["startup", "shutdown"]


def test_plain_starlette_app(registry: CollectorRegistry) -> None:
    """instrument() works on a Starlette app without FastAPI: templates, /metrics, heartbeat."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello/{name}", hello)])
    otelkit.instrument(
        app,  # type: ignore[arg-type]
        service_name="greeter",
        exporters="prometheus",
        registry=registry,
        heartbeat_interval=0.05,
    )
    health_key = (SERVICE_HEALTH_STATUS.prometheus_name, frozenset({("service", "greeter")}))
    with TestClient(app) as client:
        assert client.get("/hello/ann").status_code == 200
        scraped = scrape_until(client, health_key)
    assert scraped[(DURATION_COUNT, series("GET", "/hello/{name}", 200))] == 1
    assert scraped[health_key] == 1


@pytest.mark.parametrize(
    ("health_check", "value"),
    [
        pytest.param(lambda: "degraded", 0, id="degraded"),
        pytest.param(lambda: True, 1, id="healthy"),
    ],
)
def test_heartbeat_reports_the_health_check(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch, health_check: Any, value: int
) -> None:
    """The heartbeat reports the user's check for the service named by OTEL_SERVICE_NAME."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "courses")
    app = courses_app()
    otelkit.instrument(
        app,
        exporters="prometheus",
        registry=registry,
        heartbeat_interval=0.05,
        health_check=health_check,
    )
    health_key = (SERVICE_HEALTH_STATUS.prometheus_name, frozenset({("service", "courses")}))
    with TestClient(app) as client:
        scraped = scrape_until(client, health_key)
    assert scraped[health_key] == value


TOKEN = "s3cret"


@pytest.fixture
def collector_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real collector under uvicorn on a free loopback port (requiring a token if asked)."""
    environ = {"OTELKIT_COLLECTOR_TOKEN": TOKEN} if getattr(request, "param", False) else {}
    collector = create_app(
        CollectorSettings.from_env(environ=environ), registry=CollectorRegistry()
    )
    with serve_in_thread(collector) as url:
        yield url


@pytest.mark.parametrize(
    ("collector_url", "token_from"),
    [
        pytest.param(False, None, id="open-collector"),
        pytest.param(True, "argument", id="token-argument"),
        pytest.param(True, "environment", id="token-from-OTELKIT_COLLECTOR_TOKEN"),
    ],
    indirect=["collector_url"],
)
def test_push_reaches_a_real_collector(
    collector_url: str,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
    token_from: str | None,
) -> None:
    """Every request, the heartbeat and the users report reach the collector; counts match."""
    if token_from == "environment":
        monkeypatch.setenv("OTELKIT_COLLECTOR_TOKEN", TOKEN)
    app = courses_app()
    result = otelkit.instrument(
        app,
        service_name="courses",
        exporters="prometheus",
        registry=registry,
        collector_url=collector_url,
        collector_token=TOKEN if token_from == "argument" else None,
        heartbeat_interval=30,
    )
    assert result.push is not None
    with TestClient(app) as client:
        for index in range(PUSHED_REQUESTS):
            assert client.get(f"/api/courses/{index}").status_code == 200
        assert client.post("/api/courses/1/enrol").status_code == 200
        local = samples(client.get("/metrics").text)
    labels = series("GET", "/api/courses/{course_id}", 200)
    assert local[(DURATION_COUNT, labels)] == PUSHED_REQUESTS

    stats = result.push.stats()
    assert stats.queued == 0
    assert stats.dropped == 0
    assert stats.delivered == stats.generated == PUSHED_REQUESTS + 1 + 2  # + enrol, health, users

    view = httpx.get(f"{collector_url}/api/metrics", timeout=5).json()
    pushed = {
        (entry["service"], entry["method"], entry["route"], entry["status"]): entry["count"]
        for entry in view["http"]
    }
    assert pushed == {
        ("courses", "GET", "/api/courses/{course_id}", "200"): PUSHED_REQUESTS,
        ("courses", "POST", "/api/courses/{course_id}/enrol", "200"): 1,
    }
    assert [(s["service"], s["status"]) for s in view["services"]] == [("courses", "healthy")]
    assert [(u["service"], u["count"]) for u in view["active_users"]] == [("courses", 7)]
