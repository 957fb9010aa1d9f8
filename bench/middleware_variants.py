"""The apps middleware_cost compares: the FastAPI app, each instrumentation, the worker.

A worker (``python -m bench.middleware_variants VARIANT``) builds one variant in a fresh
process, checks it records what it should, then answers ``run <n>`` on stdin with one JSON
line of µs per request per route (thread CPU time and wall time).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

UNMATCHED = "__unmatched__"

ROUTES: dict[str, tuple[str, str, bytes]] = {
    "list": ("GET", "/api/courses", b""),
    "item": ("GET", "/api/courses/7", b""),
    "create": ("POST", "/api/courses", b'{"title": "Observability 101", "credits": 5}'),
}
"""Route name -> (method, path, body): a list route, a path-parameter route, a POST route."""

VARIANTS: dict[str, str] = {
    "bare": "FastAPI app, no instrumentation",
    "otelkit": "otelkit.instrument(registry=fresh, exporters='prometheus', no push/heartbeat)",
    "otelkit+spans": "the same with tracer_provider=SDK TracerProvider and no span exporter: a "
    "SERVER span per request, every request sampled, exemplars on the histogram",
    "prometheus-fastapi-instrumentator": "Instrumentator(should_group_status_codes=False, "
    "registry=fresh).instrument(app): its default metric set (requests_total{handler,method,"
    "status}, request/response sizes, two duration histograms), route templates on, status "
    "per code rather than its default 2xx grouping",
    "starlette-exporter": "PrometheusMiddleware(group_paths=True), defaults (global REGISTRY, "
    "alone in its process)",
    "otel-fastapi": "FastAPIInstrumentor.instrument_app(meter_provider=SDK + InMemoryMetricReader, "
    "tracer_provider=NoOp): metrics only, tracing off",
    "otel-fastapi+spans": "the same with an SDK TracerProvider and no span exporter "
    "(informational: what tracing users pay)",
    "raw-otel-floor": "minimal pure-ASGI middleware, one OTel histogram through the public "
    "Histogram.record() (catalogue buckets, Prometheus reader, fresh registry)",
    "prometheus-client-floor": "the same with one prometheus_client Histogram (fresh registry)",
}


class NewCourse(BaseModel):
    """The POST route's body."""

    title: str = Field(min_length=1, max_length=200)
    credits: int = Field(ge=0, le=30)


COURSES = [{"id": i, "title": f"Course {i}", "credits": 3 + i % 3} for i in range(10)]


def build_app() -> FastAPI:
    """The FastAPI app every variant instruments: list, path-parameter and POST routes."""
    app = FastAPI()

    @app.get("/api/courses", response_model=None)
    async def list_courses() -> list[dict[str, Any]]:
        return COURSES

    @app.get("/api/courses/{course_id}", response_model=None)
    async def get_course(course_id: int) -> dict[str, Any]:
        return COURSES[course_id % len(COURSES)]

    @app.post("/api/courses", status_code=201, response_model=None)
    async def create_course(course: NewCourse) -> dict[str, Any]:
        return {"id": len(COURSES), **course.model_dump()}

    return app


def http_scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    """An ASGI HTTP scope as uvicorn would build it for a loopback request."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if body:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 54321),
    }


class FloorMiddleware:
    """A route-templated duration histogram at its simplest: pure ASGI, one record call."""

    def __init__(self, app: Any, *, record: Callable[[str, str, str, float], None]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = getattr(scope.get("route"), "path_format", None) or UNMATCHED
            self.record(scope["method"], template, str(status), time.perf_counter() - started)


def instrument(variant: str, app: Any) -> Callable[[], str]:
    """Instrument ``app`` as ``variant`` does; return a check of what it recorded.

    The check returns evidence (a recorded series) that the path-parameter route was
    recorded under its template, and raises if it was not: a variant that silently records
    nothing, or records raw paths, would make the comparison meaningless.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    def prometheus_check(registry: Any, needle: str) -> Callable[[], str]:
        def check() -> str:
            text = generate_latest(registry).decode()
            for line in text.splitlines():
                if needle in line and ("_count{" in line or "_total{" in line):
                    return line.split(" ")[0]
            raise RuntimeError(f"{variant}: no series with {needle} in its exposition")

        return check

    if variant == "bare":
        return lambda: "-"
    if variant in ("otelkit", "otelkit+spans"):
        import otelkit

        registry = CollectorRegistry()
        traced = variant.endswith("+spans")
        if traced:
            from opentelemetry.sdk.trace import TracerProvider

            tracing = {"tracer_provider": TracerProvider()}
        otelkit.instrument(
            app,
            registry=registry,
            exporters="prometheus",
            heartbeat_interval=None,
            collector_url=None,
            **(tracing if traced else {}),
        )
        check = prometheus_check(registry, 'route="/api/courses/{course_id}"')
        return _with_exemplar_check(variant, registry, check) if traced else check
    if variant == "prometheus-fastapi-instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        registry = CollectorRegistry()
        Instrumentator(should_group_status_codes=False, registry=registry).instrument(app)
        return prometheus_check(registry, 'handler="/api/courses/{course_id}"')
    if variant == "starlette-exporter":
        from prometheus_client import REGISTRY
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware, group_paths=True)
        return prometheus_check(REGISTRY, 'path="/api/courses/{course_id}"')
    if variant in ("otel-fastapi", "otel-fastapi+spans"):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace import NoOpTracerProvider

        reader = InMemoryMetricReader()
        tracer_provider = TracerProvider() if variant.endswith("+spans") else NoOpTracerProvider()
        FastAPIInstrumentor.instrument_app(
            app,
            meter_provider=MeterProvider(metric_readers=[reader]),
            tracer_provider=tracer_provider,
        )
        return lambda: _otel_check(variant, reader)
    if variant == "raw-otel-floor":
        from opentelemetry.sdk.metrics import MeterProvider

        from otelkit import instruments
        from otelkit.exporters import prometheus_reader

        registry = CollectorRegistry()
        provider = MeterProvider(metric_readers=[prometheus_reader(registry)])
        histogram = instruments.create_http_duration_histogram(
            provider.get_meter(instruments.METER_NAME)
        )

        def record_otel(method: str, route: str, status: str, duration: float) -> None:
            histogram.record(duration, {"method": method, "route": route, "status": status})

        app.add_middleware(FloorMiddleware, record=record_otel)
        return prometheus_check(registry, 'route="/api/courses/{course_id}"')
    if variant == "prometheus-client-floor":
        from prometheus_client import Histogram

        from otelkit import instruments

        registry = CollectorRegistry()
        spec = instruments.HTTP_REQUEST_DURATION
        native = Histogram(
            spec.prometheus_name.removesuffix("_seconds"),
            spec.description,
            ("method", "route", "status"),
            unit="seconds",
            buckets=instruments.DURATION_BUCKETS_SECONDS,
            registry=registry,
        )

        def record_native(method: str, route: str, status: str, duration: float) -> None:
            native.labels(method, route, status).observe(duration)

        app.add_middleware(FloorMiddleware, record=record_native)
        return prometheus_check(registry, 'route="/api/courses/{course_id}"')
    raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def _with_exemplar_check(
    variant: str, registry: Any, check: Callable[[], str]
) -> Callable[[], str]:
    """``check``, and that the OpenMetrics exposition links a latency bucket to a trace."""
    from prometheus_client.openmetrics.exposition import generate_latest

    def checked() -> str:
        evidence = check()
        text = generate_latest(registry).decode()
        if '# {span_id="' not in text:
            raise RuntimeError(f"{variant}: no exemplar on the OpenMetrics exposition")
        return evidence + " + exemplars"

    return checked


def _otel_check(variant: str, reader: Any) -> str:
    # With the default (old) HTTP semantic conventions the template is in http.target; with
    # OTEL_SEMCONV_STABILITY_OPT_IN=http it is http.route.
    template = "/api/courses/{course_id}"
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    for key in ("http.route", "http.target"):
                        if point.attributes.get(key) == template:
                            return f"{metric.name}{{{key}={template}}}"
    raise RuntimeError(f"{variant}: no data point with http.route or http.target={template}")


async def _discard(message: Any) -> None:
    return None


def _receiver(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    return receive


async def _check_statuses(app: Any) -> None:
    expected = {"list": 200, "item": 200, "create": 201}
    for name, (method, path, body) in ROUTES.items():
        seen: list[int] = []

        async def send(message: Any, seen: list[int] = seen) -> None:
            if message["type"] == "http.response.start":
                seen.append(message["status"])

        await app(http_scope(method, path, body), _receiver(body), send)
        if seen != [expected[name]]:
            raise RuntimeError(f"{method} {path} answered {seen}, expected {expected[name]}")


async def _time_route(app: Any, route: str, requests: int) -> tuple[float, float]:
    """µs per request of ``route``: (thread CPU time, wall time)."""
    method, path, body = ROUTES[route]
    scope = http_scope(method, path, body)
    receive = _receiver(body)
    gc.collect()
    wall_started = time.perf_counter_ns()
    cpu_started = time.thread_time_ns()
    for _ in range(requests):
        # The app adds keys to the scope; each request gets its own shallow copy, as in a server.
        await app(dict(scope), receive, _discard)
    cpu = (time.thread_time_ns() - cpu_started) / requests / 1000
    return cpu, (time.perf_counter_ns() - wall_started) / requests / 1000


def run_worker(variant: str) -> None:
    """Serve ``run <n>`` commands on stdin: time n requests per route, answer one JSON line."""
    app = build_app()
    check = instrument(variant, app)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_check_statuses(app))
    for route in ROUTES:
        loop.run_until_complete(_time_route(app, route, 300))
    print(json.dumps({"ready": variant, "evidence": check()}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        requests = int(command[1])
        timings = {
            route: loop.run_until_complete(_time_route(app, route, requests)) for route in ROUTES
        }
        result = {
            "cpu": {route: cpu for route, (cpu, _) in timings.items()},
            "wall": {route: wall for route, (_, wall) in timings.items()},
        }
        print(json.dumps(result), flush=True)
    loop.close()


if __name__ == "__main__":
    run_worker(sys.argv[1])
