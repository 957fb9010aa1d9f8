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
from otelkit import instrumentation
from otelkit.instruments import ACTIVE_USERS, HTTP_REQUEST_DURATION, SERVICE_HEALTH_STATUS
from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings
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


async def test_module_reporters_reach_the_one_instrumented_app(registry: CollectorRegistry) -> None:
    """With one instrumented app, report_health and report_active_users land in its /metrics."""
    app = courses_app()
    otelkit.instrument(app, exporters="prometheus", registry=registry, heartbeat_interval=None)
    otelkit.report_health("courses", "healthy")
    otelkit.report_active_users(127)
    async with asgi_client(app) as http:
        scraped = samples((await http.get("/metrics")).text)
        await http.post("/api/courses/1/enrol")
        after_enrol = samples((await http.get("/metrics")).text)
    health_key = (SERVICE_HEALTH_STATUS.prometheus_name, frozenset({("service", "courses")}))
    assert scraped[health_key] == 1
    assert scraped[(ACTIVE_USERS.prometheus_name, frozenset())] == 127
    assert after_enrol[(ACTIVE_USERS.prometheus_name, frozenset())] == 7


async def test_each_app_reports_to_its_own_metrics() -> None:
    """With two instrumented apps, each Instrumentation's reports reach its own app only, and
    the module functions refuse, naming the fix, instead of guessing."""
    first, second = FastAPI(), FastAPI()
    first_setup = otelkit.instrument(
        first, exporters="prometheus", registry=CollectorRegistry(), heartbeat_interval=None
    )
    second_setup = otelkit.instrument(
        second, exporters="prometheus", registry=CollectorRegistry(), heartbeat_interval=None
    )
    assert first.state.otelkit is first_setup
    assert second.state.otelkit is second_setup

    first_setup.report_health("courses", "healthy")
    second_setup.report_health("grades", "degraded")
    second_setup.report_active_users(127)
    with pytest.raises(RuntimeError, match=r"2 instrumented apps.*Instrumentation"):
        otelkit.report_health("courses", "down")
    with pytest.raises(RuntimeError, match=r"app\.state\.otelkit"):
        otelkit.report_active_users(1)

    async with asgi_client(first) as http:
        first_scraped = samples((await http.get("/metrics")).text)
    async with asgi_client(second) as http:
        second_scraped = samples((await http.get("/metrics")).text)
    health = SERVICE_HEALTH_STATUS.prometheus_name
    assert {key: value for key, value in first_scraped.items() if key[0] == health} == {
        (health, frozenset({("service", "courses")})): 1
    }
    assert {key: value for key, value in second_scraped.items() if key[0] == health} == {
        (health, frozenset({("service", "grades")})): 0
    }
    assert (ACTIVE_USERS.prometheus_name, frozenset()) not in first_scraped
    assert second_scraped[(ACTIVE_USERS.prometheus_name, frozenset())] == 127


async def test_module_reporters_follow_the_apps_that_are_alive() -> None:
    """Once the second app is gone, the module functions reach the one left."""
    kept, dropped = FastAPI(), FastAPI()
    for app in (kept, dropped):
        otelkit.instrument(
            app, exporters="prometheus", registry=CollectorRegistry(), heartbeat_interval=None
        )
    del app, dropped
    otelkit.report_active_users(5)
    async with asgi_client(kept) as http:
        scraped = samples((await http.get("/metrics")).text)
    assert scraped[(ACTIVE_USERS.prometheus_name, frozenset())] == 5


async def test_instrumenting_twice_changes_nothing(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A second instrument() on the same app logs a warning and returns the first call's
    Instrumentation: /metrics keeps serving every HTTP series, each request counted once."""
    app = courses_app()
    first = otelkit.instrument(
        app, exporters="prometheus", registry=registry, heartbeat_interval=None
    )
    with caplog.at_level("WARNING", logger="otelkit.instrumentation"):
        second = otelkit.instrument(
            app, exporters="prometheus", registry=CollectorRegistry(), heartbeat_interval=None
        )
    assert second is first
    assert [record.getMessage() for record in caplog.records if "already" in record.getMessage()]
    async with asgi_client(app) as http:
        for course_id in (1, 2):
            await http.get(f"/api/courses/{course_id}")
        scraped = samples((await http.get("/metrics")).text)
    assert scraped[(DURATION_COUNT, series("GET", "/api/courses/{course_id}", 200))] == 2


def test_no_service_name_warns_once_naming_the_fix(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without service_name or OTEL_SERVICE_NAME there is no heartbeat, and one warning says
    how to get it; with a name, or with the heartbeat turned off, nothing is logged."""
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    with caplog.at_level("WARNING", logger="otelkit.instrumentation"):
        unnamed = otelkit.instrument(courses_app(), exporters="prometheus", registry=registry)
        otelkit.instrument(
            courses_app(), exporters="prometheus", registry=CollectorRegistry(), service_name="a"
        )
        otelkit.instrument(
            courses_app(),
            exporters="prometheus",
            registry=CollectorRegistry(),
            heartbeat_interval=None,
        )
    warnings = [record.getMessage() for record in caplog.records]
    assert unnamed.heartbeat is None
    assert len(warnings) == 1
    assert "service_name" in warnings[0]
    assert "OTEL_SERVICE_NAME" in warnings[0]


@pytest.mark.parametrize(
    ("environ", "parent", "workers"),
    [
        pytest.param({"WEB_CONCURRENCY": "4"}, [], 4, id="web-concurrency"),
        pytest.param({}, ["uvicorn", "app:app", "--workers", "3"], 3, id="uvicorn-workers"),
        pytest.param({}, ["uvicorn", "app:app", "--workers=2"], 2, id="workers-equals"),
        pytest.param({}, ["gunicorn", "-w", "5", "app:app"], 5, id="gunicorn-w"),
        pytest.param({}, ["uvicorn", "app:app", "--reload"], 1, id="reload-is-one"),
        pytest.param({}, [], 1, id="nothing-said"),
    ],
)
def test_declared_workers(environ: dict[str, str], parent: list[str], workers: int) -> None:
    """The worker count comes from WEB_CONCURRENCY, else the parent server's command line."""
    assert instrumentation.declared_workers(environ, parent) == workers


def test_several_workers_in_scrape_mode_warn_at_start(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scraped under several workers, the app logs one warning at start pointing to push mode;
    under one worker it logs none."""
    for concurrency, expected in (("1", 0), ("2", 1)):
        monkeypatch.setenv("WEB_CONCURRENCY", concurrency)
        caplog.clear()
        app = courses_app()
        otelkit.instrument(
            app, exporters="prometheus", registry=CollectorRegistry(), heartbeat_interval=None
        )
        with caplog.at_level("WARNING", logger="otelkit.instrumentation"), TestClient(app):
            pass
        warnings = [r.getMessage() for r in caplog.records if "worker" in r.getMessage()]
        assert len(warnings) == expected, concurrency
        if expected:
            assert "OTELKIT_COLLECTOR_URL" in warnings[0]
            assert "2 worker processes" in warnings[0]


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
