"""MetricsMiddleware on real FastAPI and Starlette apps, read through an in-memory reader."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import string
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from otelkit.bound import fast_path_available
from otelkit.instruments import HTTP_REQUEST_DURATION
from otelkit.middleware import UNMATCHED_ROUTE, MetricsMiddleware
from tests.otelkit.conftest import (
    TestClient,
    asgi_client,
    counts,
    duration_points,
    metrics_named,
    series,
)

pytestmark = pytest.mark.anyio

STREAM_PAUSE_SECONDS = 0.2
BACKGROUND_SECONDS = 0.3


class Boom(Exception):
    """The error a handler raises; tests check this very object comes back out."""


BOOM = Boom("handler failed")


def build_app() -> FastAPI:
    """A FastAPI app with every routing shape the middleware must name by template."""
    app = FastAPI()

    @app.get("/api/courses/{course_id}")
    async def get_course(course_id: int) -> dict[str, int]:
        if course_id == 404:
            raise HTTPException(status_code=404, detail="no such course")
        return {"id": course_id}

    @app.get("/boom")
    async def boom() -> None:
        raise BOOM

    @app.get("/healthz")
    async def healthz() -> str:
        return "ok"

    @app.get("/metrics")
    async def metrics() -> str:
        return "metrics"

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(3):
                if index:
                    await asyncio.sleep(STREAM_PAUSE_SECONDS)
                yield b"chunk\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> str:
        tasks.add_task(asyncio.sleep, BACKGROUND_SECONDS)
        return "accepted"

    lessons = APIRouter(prefix="/lessons")

    @lessons.get("/{lesson_id}")
    async def get_lesson(lesson_id: str) -> dict[str, str]:
        return {"id": lesson_id}

    quizzes = APIRouter(prefix="/quizzes")

    @quizzes.get("/{quiz_id}")
    async def get_quiz(quiz_id: str) -> dict[str, str]:
        return {"id": quiz_id}

    v2 = APIRouter(prefix="/v2")
    v2.include_router(quizzes, prefix="/courses/{course_id}")
    app.include_router(lessons, prefix="/api")
    app.include_router(v2, prefix="/api")

    shared = APIRouter()

    @shared.get("/export/{fmt}")
    async def export(fmt: str) -> dict[str, str]:
        return {"format": fmt}

    app.include_router(shared, prefix="/v1")
    app.include_router(shared, prefix="/v2")

    sub = FastAPI()

    @sub.get("/items/{item_id}")
    async def get_item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    app.mount("/sub/{tenant}", sub)

    async def report(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["report_id"])

    app.mount("/reports", Router(routes=[Route("/{report_id}", report)]))
    return app


TEMPLATE_CASES = [
    pytest.param("/api/courses/7", "/api/courses/{course_id}", id="path-param"),
    pytest.param("/api/lessons/abc", "/api/lessons/{lesson_id}", id="router-prefix"),
    pytest.param(
        "/api/v2/courses/3/quizzes/9",
        "/api/v2/courses/{course_id}/quizzes/{quiz_id}",
        id="nested-router",
    ),
    pytest.param("/v1/export/csv", "/v1/export/{fmt}", id="router-included-twice-first"),
    pytest.param("/v2/export/csv", "/v2/export/{fmt}", id="router-included-twice-second"),
    pytest.param("/sub/acme/items/42", "/sub/{tenant}/items/{item_id}", id="mounted-fastapi"),
    pytest.param("/reports/q3", "/reports/{report_id}", id="mounted-starlette-router"),
]


@pytest.mark.parametrize(("path", "route"), TEMPLATE_CASES)
async def test_route_is_the_template(
    meter_provider: MeterProvider, reader: InMemoryMetricReader, path: str, route: str
) -> None:
    """The route label is the full template, prefixes of routers and mounts included."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert counts(reader) == {series("GET", route, 200): 1}


@pytest.mark.parametrize(("path", "route"), TEMPLATE_CASES)
async def test_route_is_the_template_when_wrapping_the_app(
    meter_provider: MeterProvider, reader: InMemoryMetricReader, path: str, route: str
) -> None:
    """Wrapped around the app directly (no add_middleware), the labels are the same."""
    app = MetricsMiddleware(build_app(), meter_provider=meter_provider)
    async with asgi_client(app) as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert counts(reader) == {series("GET", route, 200): 1}


@pytest.mark.parametrize(("path", "route"), TEMPLATE_CASES)
async def test_route_is_the_template_behind_a_root_path(
    meter_provider: MeterProvider, reader: InMemoryMetricReader, path: str, route: str
) -> None:
    """Served under a root_path (behind a proxy prefix), the template leaves the prefix out."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app, root_path="/gateway") as http:
        response = await http.get("/gateway" + path)
        assert (await http.get("/gateway/nowhere")).status_code == 404
    assert response.status_code == 200
    assert counts(reader) == {series("GET", route, 200): 1, series("GET", UNMATCHED_ROUTE, 404): 1}


async def test_plain_starlette_app(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """A Starlette app without FastAPI gets templates for routes and mounts, and one unmatched."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(
        routes=[
            Route("/hello/{name}", hello),
            Mount("/admin", routes=[Route("/users/{user_id}", hello)]),
        ]
    )
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        assert (await http.get("/hello/ann")).status_code == 200
        assert (await http.get("/admin/users/5")).status_code == 200
        assert (await http.get("/nowhere")).status_code == 404
    assert counts(reader) == {
        series("GET", "/hello/{name}", 200): 1,
        series("GET", "/admin/users/{user_id}", 200): 1,
        series("GET", UNMATCHED_ROUTE, 404): 1,
    }


async def test_unmatched_paths_share_one_series(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """A thousand random unmatched paths make exactly one series, not a thousand."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    rng = random.Random(3)
    async with asgi_client(app) as http:
        for _ in range(1_000):
            path = "/" + "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))
            assert (await http.get(path)).status_code == 404
    assert counts(reader) == {series("GET", UNMATCHED_ROUTE, 404): 1_000}


async def test_method_not_allowed_keeps_the_template(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """A 405 is recorded under the route the path matched, not as unmatched."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        assert (await http.delete("/api/courses/1")).status_code == 405
    assert counts(reader) == {series("DELETE", "/api/courses/{course_id}", 405): 1}


async def _call(app: Any, scope: Scope) -> list[Message]:
    """Call an ASGI app with a hand-built scope and an empty body; return what it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http_scope(path: str, method: str = "GET") -> Scope:
    """A minimal HTTP scope as a server would build it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"service")],
        "client": ("127.0.0.1", 50000),
        "server": ("service", 80),
    }


@pytest.mark.parametrize(
    ("method", "label"),
    [
        pytest.param("GET", "GET", id="standard"),
        pytest.param("get", "GET", id="lower-case"),
        pytest.param("Options", "OPTIONS", id="mixed-case"),
        pytest.param("PURGE", "_OTHER", id="non-standard"),
        pytest.param("purge", "_OTHER", id="non-standard-lower-case"),
    ],
)
async def test_method_label(
    meter_provider: MeterProvider, reader: InMemoryMetricReader, method: str, label: str
) -> None:
    """Methods are upper-cased and anything outside the standard set becomes _OTHER."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    middleware = MetricsMiddleware(app, meter_provider=meter_provider)
    sent = await _call(middleware, http_scope("/anything", method))
    assert sent[0]["status"] == 200
    assert counts(reader) == {series(label, UNMATCHED_ROUTE, 200): 1}


async def test_non_standard_method_over_http(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """A PURGE sent by a real client is recorded as _OTHER under the matched template."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        response = await http.request("PURGE", "/api/courses/1")
    assert response.status_code == 405
    assert counts(reader) == {series("_OTHER", "/api/courses/{course_id}", 405): 1}


async def test_exception_is_recorded_as_500_and_propagates(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """A handler's exception is recorded as 500 and the same object leaves the app."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        with pytest.raises(Boom) as raised:
            await http.get("/boom")
    assert raised.value is BOOM
    assert counts(reader) == {series("GET", "/boom", 500): 1}


async def test_exception_propagates_from_the_raw_asgi_call(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """Called as a bare ASGI callable, the middleware re-raises the handler's own exception."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise BOOM

    middleware = MetricsMiddleware(app, meter_provider=meter_provider)
    with pytest.raises(Boom) as raised:
        await _call(middleware, http_scope("/anything"))
    assert raised.value is BOOM
    assert counts(reader) == {series("GET", UNMATCHED_ROUTE, 500): 1}


async def test_http_exception_records_its_status(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """An HTTPException(404) from a matched route records 404 under the template."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        assert (await http.get("/api/courses/404")).status_code == 404
    assert counts(reader) == {series("GET", "/api/courses/{course_id}", 404): 1}


async def test_streaming_duration_ends_at_the_last_body_byte(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """A streamed response is timed until its last chunk, not until its headers."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        started = time.perf_counter()
        response = await http.get("/stream")
        elapsed = time.perf_counter() - started
    assert response.text == "chunk\n" * 3
    point = duration_points(reader)[series("GET", "/stream", 200)]
    assert point.count == 1
    assert 2 * STREAM_PAUSE_SECONDS <= point.sum <= elapsed


async def test_duration_excludes_background_tasks(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """Background tasks run after the body is sent, so the duration does not include them."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        started = time.perf_counter()
        assert (await http.get("/background")).status_code == 200
        elapsed = time.perf_counter() - started
    point = duration_points(reader)[series("GET", "/background", 200)]
    assert elapsed >= BACKGROUND_SECONDS
    assert point.sum < BACKGROUND_SECONDS


async def test_exception_after_the_body_keeps_the_sent_status(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """An app that fails after its last body byte was sent is recorded with the sent status."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        raise BOOM

    middleware = MetricsMiddleware(app, meter_provider=meter_provider)
    with pytest.raises(Boom):
        await _call(middleware, http_scope("/anything"))
    assert counts(reader) == {series("GET", UNMATCHED_ROUTE, 200): 1}


async def test_exception_mid_body_records_500(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """An app that fails after starting but before finishing its body is recorded as 500."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise BOOM

    middleware = MetricsMiddleware(app, meter_provider=meter_provider)
    with pytest.raises(Boom):
        await _call(middleware, http_scope("/anything"))
    assert counts(reader) == {series("GET", UNMATCHED_ROUTE, 500): 1}


async def test_instrumented_sub_app_is_recorded_once(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """A mounted app with its own middleware does not record the request a second time."""
    sub = FastAPI()

    @sub.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    sub.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    app = FastAPI()
    app.mount("/sub", sub)
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        assert (await http.get("/sub/items/7")).status_code == 200
    assert counts(reader) == {series("GET", "/sub/items/{item_id}", 200): 1}


@pytest.mark.parametrize(
    ("excluded", "recorded_paths"),
    [
        pytest.param(None, ["/api/courses/1"], id="default-metrics-and-healthz"),
        pytest.param(
            ["/api/courses/1"], ["/metrics", "/healthz"], id="custom-list-replaces-default"
        ),
        pytest.param([], ["/metrics", "/healthz", "/api/courses/1"], id="nothing-excluded"),
    ],
)
async def test_excluded_paths_are_not_recorded(
    meter_provider: MeterProvider,
    reader: InMemoryMetricReader,
    excluded: list[str] | None,
    recorded_paths: list[str],
) -> None:
    """Excluded paths are served but not recorded; the default excludes /metrics and /healthz."""
    app = build_app()
    options: dict[str, Any] = {} if excluded is None else {"excluded_paths": excluded}
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider, **options)
    async with asgi_client(app) as http:
        for path in ("/metrics", "/healthz", "/api/courses/1"):
            assert (await http.get(path)).status_code == 200
    routes = {
        "/metrics": "/metrics",
        "/healthz": "/healthz",
        "/api/courses/1": "/api/courses/{course_id}",
    }
    assert counts(reader) == {series("GET", routes[path], 200): 1 for path in recorded_paths}


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
async def test_non_http_scopes_pass_through_untouched(
    meter_provider: MeterProvider, reader: InMemoryMetricReader, scope_type: str
) -> None:
    """Websocket and lifespan scopes reach the app with the very same scope, receive and send."""
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        return {"type": f"{scope_type}.connect"}

    async def send(message: Message) -> None:
        return None

    scope: Scope = {"type": scope_type, "asgi": {"version": "3.0"}, "path": "/ws"}
    await MetricsMiddleware(app, meter_provider=meter_provider)(scope, receive, send)
    assert len(seen) == 1
    assert seen[0][0] is scope
    assert seen[0][1] is receive
    assert seen[0][2] is send
    assert counts(reader) == {}


def test_websocket_and_lifespan_work_under_the_middleware(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """A real websocket round trip and the app's lifespan run and record nothing."""
    events: list[str] = []
    app = FastAPI()

    @app.websocket("/ws/{room}")
    async def echo(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        await websocket.send_text(f"{room}:{await websocket.receive_text()}")
        await websocket.close()

    app.router.on_startup.append(lambda: events.append("startup"))
    app.router.on_shutdown.append(lambda: events.append("shutdown"))
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    with TestClient(app) as client, client.websocket_connect("/ws/lobby") as websocket:
        websocket.send_text("hi")
        assert websocket.receive_text() == "lobby:hi"
    assert events == ["startup", "shutdown"]
    assert counts(reader) == {}


async def test_bucket_boundaries_are_the_catalogue_buckets(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """The histogram uses the catalogue's second-based boundaries, not the SDK's defaults."""
    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider)
    async with asgi_client(app) as http:
        await http.get("/api/courses/1")
    (metric,) = metrics_named(reader, HTTP_REQUEST_DURATION.name)
    assert metric.unit == "s"
    (point,) = metric.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert tuple(point.explicit_bounds) == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
    )  # fmt: skip  # README's catalogue, literally


async def test_on_request_hook_gets_what_was_recorded(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """The hook is called with (method, route, status, duration) of each recorded request."""
    calls: list[tuple[str, str, int, float]] = []
    app = build_app()
    app.add_middleware(
        MetricsMiddleware,
        meter_provider=meter_provider,
        on_request=lambda *args: calls.append(args),
    )
    async with asgi_client(app) as http:
        await http.get("/api/courses/1")
        await http.get("/nope")
        await http.get("/metrics")
    assert [call[:3] for call in calls] == [
        ("GET", "/api/courses/{course_id}", 200),
        ("GET", UNMATCHED_ROUTE, 404),
    ]
    point = duration_points(reader)[series("GET", "/api/courses/{course_id}", 200)]
    assert calls[0][3] == pytest.approx(point.sum)


async def test_failing_hook_does_not_break_requests(
    meter_provider: MeterProvider, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises leaves responses intact and is logged once, not per request."""

    def hook(method: str, route: str, status: int, duration: float) -> None:
        raise RuntimeError("hook broke")

    app = build_app()
    app.add_middleware(MetricsMiddleware, meter_provider=meter_provider, on_request=hook)
    with caplog.at_level(logging.DEBUG, logger="otelkit"):
        async with asgi_client(app) as http:
            for _ in range(3):
                assert (await http.get("/api/courses/1")).status_code == 200
    failures = [record for record in caplog.records if record.name == "otelkit.middleware"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert counts(reader) == {series("GET", "/api/courses/{course_id}", 200): 3}


class CountingMeterProvider(MeterProvider):
    """The SDK provider, counting how often a meter is asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meters_requested = 0

    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        self.meters_requested += 1
        return super().get_meter(*args, **kwargs)


async def test_instruments_are_created_once(
    reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    """One middleware serving 100 requests creates one histogram, at construction."""
    provider = CountingMeterProvider(metric_readers=[reader])
    try:
        app = MetricsMiddleware(build_app(), meter_provider=provider)
        assert provider.meters_requested == 1
        with caplog.at_level(logging.WARNING, logger="opentelemetry"):
            async with asgi_client(app) as http:
                for course_id in range(100):
                    await http.get(f"/api/courses/{course_id}")
        assert provider.meters_requested == 1
        assert not [r for r in caplog.records if "instrument" in r.getMessage().lower()]
        (metric,) = metrics_named(reader, HTTP_REQUEST_DURATION.name)
        (point,) = metric.data.data_points
        assert isinstance(point, HistogramDataPoint)
        assert point.count == 100
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("exemplar_filter", "bound"),
    [
        pytest.param(AlwaysOffExemplarFilter(), True, id="exemplars-off"),
        pytest.param(None, False, id="trace-based-exemplars"),
    ],
)
async def test_label_sets_are_bound_when_exemplars_are_off(
    reader: InMemoryMetricReader,
    monkeypatch: pytest.MonkeyPatch,
    exemplar_filter: AlwaysOffExemplarFilter | None,
    bound: bool,
) -> None:
    """With exemplars off, each label set records through a bound series after its first
    request: the SDK's Histogram.record() runs once for it, and every request is counted.
    With exemplars sampled, every request goes through Histogram.record()."""
    recorded: list[float] = []
    sdk_record = SdkHistogram.record

    def counting_record(self: SdkHistogram, amount: float, *args: Any, **kwargs: Any) -> None:
        recorded.append(amount)
        sdk_record(self, amount, *args, **kwargs)

    monkeypatch.setattr(SdkHistogram, "record", counting_record)
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=exemplar_filter)
    try:
        middleware = MetricsMiddleware(build_app(), meter_provider=provider)
        async with asgi_client(middleware) as http:
            for course_id in range(5):
                await http.get(f"/api/courses/{course_id}")
            await http.get("/api/courses/404")
        assert counts(reader) == {
            series("GET", "/api/courses/{course_id}", 200): 5,
            series("GET", "/api/courses/{course_id}", 404): 1,
        }
    finally:
        provider.shutdown()
    binds = bound and fast_path_available()
    assert len(recorded) == (2 if binds else 6)


async def _request(app: Any, method: str) -> None:
    """One bare ASGI request to ``app``."""
    scope = {"type": "http", "method": method, "path": "/x", "root_path": "", "headers": []}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    await app(scope, receive, send)


async def test_endless_distinct_methods_do_not_grow_memory(reader: InMemoryMetricReader) -> None:
    """Clients sending ever new method names (all recorded as ``_OTHER``) cannot grow the
    middleware without bound: past the label sets it keeps ready, 5,000 more new names add
    almost nothing to the memory Python holds (each kept one would cost hundreds of bytes)."""

    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOffExemplarFilter())
    middleware = MetricsMiddleware(ok, meter_provider=provider)
    tracemalloc.start()
    try:
        for index in range(5_000):
            await _request(middleware, f"M{index}")
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for index in range(5_000, 10_000):
            await _request(middleware, f"M{index}")
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        provider.shutdown()
    assert counts(reader) == {series("_OTHER", UNMATCHED_ROUTE, 200): 10_000}
    assert growth < 64 * 1024, f"{growth:,} bytes more for 5,000 more method names"


async def test_a_reader_added_later_gets_the_requests_after_it(
    meter_provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    """Adding a reader mid-way: the first reader keeps counting, the new one counts from then."""
    middleware = MetricsMiddleware(build_app(), meter_provider=meter_provider)
    late = InMemoryMetricReader()
    async with asgi_client(middleware) as http:
        for _ in range(3):
            await http.get("/api/courses/1")
        meter_provider.add_metric_reader(late)
        for _ in range(4):
            await http.get("/api/courses/1")

    assert counts(reader) == {series("GET", "/api/courses/{course_id}", 200): 7}
    assert counts(late) == {series("GET", "/api/courses/{course_id}", 200): 4}


def test_the_recording_path_is_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first middleware of a process logs which path values take on the installed SDK,
    naming its version; later ones log nothing; an unverified SDK is a warning."""
    import opentelemetry.sdk.version

    import otelkit.bound
    import otelkit.middleware

    monkeypatch.setattr(otelkit.middleware, "_path_logged", False)
    with caplog.at_level("INFO", logger="otelkit.middleware"):
        for _ in range(3):
            MetricsMiddleware(FastAPI(), meter_provider=NoOpMeterProvider())
    (record,) = [r for r in caplog.records if "opentelemetry-sdk" in r.getMessage()]
    assert opentelemetry.sdk.version.__version__ in record.getMessage()
    assert record.levelname == "INFO"

    caplog.clear()
    monkeypatch.setattr(otelkit.middleware, "_path_logged", False)
    monkeypatch.setattr(otelkit.bound, "fast_path_available", lambda: False)
    with caplog.at_level("INFO", logger="otelkit.middleware"):
        MetricsMiddleware(FastAPI(), meter_provider=NoOpMeterProvider())
    (record,) = [r for r in caplog.records if "opentelemetry-sdk" in r.getMessage()]
    assert record.levelname == "WARNING"
