"""Shared fixtures: fresh registries per test, an injectable clock, in-process HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from otelkit.instruments import (
    ACTIVE_USERS,
    HTTP_REQUEST_DURATION,
    SERVICE_HEALTH_LAST_REPORT,
    SERVICE_HEALTH_STATUS,
)
from otelkit.reports import HttpReport
from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings

SLOW_FIRST = ("tests/packaging/", "tests/stack/", "tests/push/", "tests/reliability/", "tests/e2e/")
"""Directories whose files take longest (real processes, installs, Prometheus, a browser)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the slow directories' files first: under ``pytest -n 2 --dist loadfile`` (make test)
    the long files start at once and the many short ones fill in after, so the workers finish
    together instead of one waiting for a long file handed out last. The order within each
    file, and of everything else, stays as collected."""

    def rank(item: pytest.Item) -> int:
        return next(
            (i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)),
            len(SLOW_FIRST),
        )

    items.sort(key=rank)


class FakeClock:
    """A unix clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> CollectorSettings:
    """Defaults, independent of the environment the tests run in."""
    return CollectorSettings.from_env(environ={})


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(settings: CollectorSettings, clock: FakeClock) -> AppFactory:
    """Build a collector with a fresh registry; keyword arguments override settings."""

    def factory(**overrides: Any) -> FastAPI:
        return create_app(replace(settings, **overrides), registry=CollectorRegistry(), clock=clock)

    return factory


@pytest.fixture
def app(make_app: AppFactory) -> FastAPI:
    return make_app()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse a text exposition into {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


# --- Collector state probes (shared by tests/collector) ---

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

RECORDED_FAMILIES = (
    HTTP_REQUEST_DURATION.prometheus_name,
    SERVICE_HEALTH_STATUS.prometheus_name,
    SERVICE_HEALTH_LAST_REPORT.prometheus_name,
    ACTIVE_USERS.prometheus_name,
)
"""What reports change; self-metrics and process metrics move on their own."""


def recorded_samples(exposition: str) -> Samples:
    """The samples reports set, with empty label values dropped as Prometheus drops them."""
    recorded: Samples = {}
    for (name, labels), value in samples(exposition).items():
        if name.startswith(RECORDED_FAMILIES):
            recorded[(name, frozenset(label for label in labels if label[1]))] = value
    return recorded


@dataclass(frozen=True)
class Snapshot:
    """What a collector shows at one moment: recorded series, JSON view, self-metrics."""

    series: Samples
    view: dict[str, Any]
    """``/api/metrics`` without ``reports``."""
    reports: dict[tuple[str, str], int]
    """``otelkit_collector_reports_total`` per (kind, outcome)."""

    @property
    def state(self) -> tuple[Samples, dict[str, Any]]:
        """Everything reports can change (self-metrics excluded)."""
        return self.series, self.view

    def count(self, kind: str, outcome: str) -> int:
        """Reports of ``kind`` counted with ``outcome`` (0 when none were)."""
        return self.reports.get((kind, outcome), 0)


class CollectorProbe:
    """Reads a collector's state over HTTP, for before/after comparisons."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def series(self) -> Samples:
        """Recorded samples from /metrics."""
        response = await self.http.get("/metrics")
        assert response.status_code == 200
        return recorded_samples(response.text)

    async def view(self) -> dict[str, Any]:
        """The /api/metrics JSON without its self-metrics."""
        return (await self.snapshot()).view

    async def snapshot(self) -> Snapshot:
        """Both read endpoints at once."""
        series = await self.series()
        response = await self.http.get("/api/metrics")
        assert response.status_code == 200
        view: dict[str, Any] = response.json()
        reports = {(r["kind"], r["outcome"]): r["count"] for r in view.pop("reports")}
        return Snapshot(series, view, reports)


@contextlib.asynccontextmanager
async def open_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for ``app`` (ASGITransport: the lifespan does not run)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http


@pytest.fixture
def probe(client: httpx.AsyncClient) -> CollectorProbe:
    return CollectorProbe(client)


async def post_json_text(
    http: httpx.AsyncClient, url: str, text: str | bytes, **headers: str
) -> httpx.Response:
    """POST raw JSON text (``json=`` cannot send NaN, 1e400 or escaped lone surrogates)."""
    content = text.encode() if isinstance(text, str) else text
    return await http.post(
        url, content=content, headers={"content-type": "application/json", **headers}
    )


def error_message(response: httpx.Response) -> str:
    """The human-readable error of a 4xx answer (validation errors carry ``message``)."""
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return str(body.get("detail") if isinstance(body, dict) else body)


def build_seeded_app(**overrides: Any) -> FastAPI:
    """A collector (default settings plus ``overrides``) holding one report of every kind.

    Meant for module-scoped fixtures shared by many refusal cases: each case checks that it
    left the collector exactly as it found it, and sharing spares FastAPI's per-app route
    setup (several milliseconds) on hundreds of cases.
    """
    app = create_app(
        CollectorSettings.from_env(environ={}, **overrides),
        registry=CollectorRegistry(),
        clock=FakeClock(),
    )
    recorder = app.state.recorder
    recorder.record_http_reports(
        [HttpReport(method="GET", route="/api/courses", status=200, duration=0.1)]
    )
    recorder.record_health("auth", "healthy")
    recorder.record_users(None, 3)
    return app
