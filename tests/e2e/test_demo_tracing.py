"""``make demo`` sends traced traffic: each request carries its own sampled W3C trace, and the
services trace to the caller's OTLP endpoint, else to a file of console spans."""

from __future__ import annotations

import asyncio
import re

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from examples.demo import generate_traffic, tracing_env
from tests.otelkit.conftest import serve_in_thread

TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-01")


def test_every_demo_request_starts_a_sampled_trace_of_its_own() -> None:
    """Each request of the demo traffic carries a valid, sampled and distinct traceparent."""
    seen: list[str] = []

    async def record(request: Request) -> PlainTextResponse:
        seen.append(request.headers.get("traceparent", ""))
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])
    with serve_in_thread(app) as base_url:
        results = asyncio.run(generate_traffic([base_url], duration=1.0, rate=30, seed=3))

    assert sum(results.values()) == len(seen) > 10
    assert all(TRACEPARENT.fullmatch(header) for header in seen), seen
    assert len({header.split("-")[1] for header in seen}) == len(seen)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, {"OTEL_TRACES_EXPORTER": "console"}, id="no-backend-console"),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
            {"OTEL_TRACES_EXPORTER": "otlp"},
            id="otlp-endpoint",
        ),
        pytest.param({"OTEL_TRACES_EXPORTER": "none"}, {}, id="caller-choice-kept"),
    ],
)
def test_demo_services_trace_to_the_callers_backend(
    environ: dict[str, str], expected: dict[str, str]
) -> None:
    """The services export spans over OTLP when an endpoint is set, else to the console."""
    assert tracing_env(environ) == expected
