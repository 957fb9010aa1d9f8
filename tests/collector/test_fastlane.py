"""The ingest fast lane: valid HTTP reports skip the framework, everything else is replayed.

Its contract is that a client cannot tell it is there: the same answers, byte for byte, and
the same recorded state and self-metrics as the full FastAPI route.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.types import Receive, Scope, Send

from otelkit_collector.app import build_meter_provider
from otelkit_collector.cardinality import CardinalityGuard
from otelkit_collector.fastlane import IngestFastLane, is_json_content_type
from otelkit_collector.recorder import Recorder
from otelkit_collector.settings import CollectorSettings
from otelkit_collector.state import ServiceState
from tests.conftest import AppFactory, CollectorProbe, FakeClock, open_client, samples

pytestmark = pytest.mark.anyio

REPORT = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.045}
BATCH = {"reports": [REPORT, {**REPORT, "status": 503, "service": "courses"}]}
IDS = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}
TRACED_BATCH = {
    "reports": [
        {**REPORT, **IDS},
        {**REPORT, "duration": 0.046},
        {**REPORT, "status": 503, "service": "courses", "trace_id": "f" * 32},
    ]
}
OPENMETRICS = {"accept": "application/openmetrics-text; version=1.0.0"}
# FastAPI parses ``application/*+json`` as JSON; the lane leaves it to the full route, which
# makes it a way to ask the full route for the answer the lane must reproduce.
FULL_ROUTE = {"content-type": "application/vnd.otelkit+json"}
LANE = {"content-type": "application/json"}


class FullRoute:
    """Stands in for the application behind the lane and remembers what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"full route"})


def lane_and_recorder() -> tuple[IngestFastLane, FullRoute, Recorder, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = CollectorSettings.from_env(environ={})
    recorder = Recorder(
        build_meter_provider(registry, settings),
        state=ServiceState(health_ttl_seconds=90.0, max_services=10, clock=FakeClock()),
        guard=CardinalityGuard(max_services=10, max_routes_per_service=10, max_series=100),
    )
    full = FullRoute()
    return IngestFastLane(full, recorder=recorder), full, recorder, registry


async def post(lane: Any, path: str, body: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=lane), base_url="http://collector"
    ) as http:
        return await http.post(
            path, content=body, headers={"content-type": "application/json", **headers}
        )


def count_of(registry: CollectorRegistry) -> float:
    return sum(
        value
        for (name, _labels), value in samples(generate_latest(registry).decode()).items()
        if name == "http_request_duration_seconds_count"
    )


@pytest.mark.parametrize(
    ("path", "body", "reports"),
    [
        ("/api/metrics/http", REPORT, 1),
        ("/api/metrics/http/batch", BATCH, 2),
        ("/api/metrics/http", {**REPORT, **IDS}, 1),
        ("/api/metrics/http/batch", TRACED_BATCH, 3),
    ],
    ids=["single", "batch", "single-with-ids", "batch-with-ids"],
)
async def test_valid_reports_are_recorded_without_the_full_route(
    path: str, body: dict[str, Any], reports: int
) -> None:
    lane, full, _recorder, registry = lane_and_recorder()

    response = await post(lane, path, json.dumps(body).encode())

    assert response.status_code == 200
    assert response.content == f'{{"accepted":{reports},"overflowed":0}}'.encode()
    assert full.bodies == []
    assert count_of(registry) == reports


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/api/metrics/http", b'{"method": "GET"', {}),
        ("/api/metrics/http", json.dumps({**REPORT, "duration": -1}).encode(), {}),
        ("/api/metrics/http", b"", {}),
        ("/api/metrics/http", b'{"route": "\\ud800"}', {}),
        ("/api/metrics/http", b"[" * 100_000, {}),
        ("/api/metrics/http/batch", json.dumps({"reports": [REPORT, {}]}).encode(), {}),
        ("/api/metrics/http", json.dumps({**REPORT, "trace_id": "0" * 32}).encode(), {}),
        ("/api/metrics/http", json.dumps({**REPORT, "span_id": IDS["span_id"]}).encode(), {}),
        ("/api/metrics/http", json.dumps(REPORT).encode(), {"content-type": "text/plain"}),
        ("/api/metrics/http", json.dumps(REPORT).encode(), FULL_ROUTE),
        ("/api/metrics/users", json.dumps({"count": 3}).encode(), {}),
    ],
    ids=[
        "truncated-json",
        "broken-rule",
        "empty-body",
        "lone-surrogate",
        "too-deep",
        "one-bad-report-in-batch",
        "all-zeros-trace-id",
        "span-id-without-trace-id",
        "not-json-content-type",
        "json-suffix-content-type",
        "other-endpoint",
    ],
)
async def test_everything_else_reaches_the_full_route_with_its_body(
    path: str, body: bytes, headers: dict[str, str]
) -> None:
    lane, full, _recorder, registry = lane_and_recorder()

    response = await post(lane, path, body, **headers)

    assert (response.status_code, response.content) == (418, b"full route")
    assert full.bodies == [body]
    assert count_of(registry) == 0


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        (None, True),
        (b"application/json", True),
        (b"Application/JSON; charset=utf-8", True),
        (b" application/json ;charset=latin-1", True),
        (b"application/jsonx", False),
        (b"application/problem+json", False),
        (b"text/json", False),
        (b"", False),
    ],
)
def test_json_content_types_the_lane_takes(value: bytes | None, taken: bool) -> None:
    assert is_json_content_type(value) is taken


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/metrics/http", {**REPORT, "service": "courses"}),
        ("/api/metrics/http/batch", BATCH),
        ("/api/metrics/http", {**REPORT, "status": 200.5}),
        ("/api/metrics/http", {**REPORT, "method": "G E T"}),
        ("/api/metrics/http/batch", {"reports": [REPORT] * 1_001}),
        ("/api/metrics/http/batch", {"reports": [{**REPORT, "method": "get"}, REPORT]}),
        ("/api/metrics/http/batch", {"reports": [{**REPORT, "service": None}, REPORT]}),
        ("/api/metrics/http", {**REPORT, "duration": 1}),
        ("/api/metrics/http/batch", {"reports": [{**REPORT, "duration": 0}, REPORT]}),
        ("/api/metrics/http", {**REPORT, **IDS}),
        ("/api/metrics/http", {**REPORT, "service": "courses", "trace_id": IDS["trace_id"]}),
        ("/api/metrics/http/batch", TRACED_BATCH),
        ("/api/metrics/http/batch", {"reports": [{**REPORT, **IDS}, {**REPORT, "trace_id": None}]}),
        (
            "/api/metrics/http/batch",
            {"reports": [{**REPORT, **IDS, "duration": d} for d in (0.01, 0.02, 0.03)]},
        ),
        # Floats added in another order can sum to another float: 1e-16 + 1.0 + 1e-16 is 1.0,
        # 1e-16 + 1e-16 + 1.0 is not. Each body's reports share one series as validated.
        (
            "/api/metrics/http/batch",
            {
                "reports": [
                    {**REPORT, "method": "get", "duration": 1e-16},
                    {**REPORT, "method": "GET", "duration": 1.0},
                    {**REPORT, "method": "get", "duration": 1e-16},
                ]
            },
        ),
        (
            "/api/metrics/http/batch",
            {
                "reports": [
                    {**REPORT, "duration": 1e-16},
                    {**REPORT, "service": None, "duration": 1.0},
                    {**REPORT, "duration": 1e-16},
                ]
            },
        ),
    ],
    ids=[
        "single",
        "batch",
        "float-status",
        "bad-method",
        "batch-too-long",
        "get-and-GET",
        "service-null-and-absent",
        "int-duration",
        "int-duration-in-batch",
        "single-with-ids",
        "trace-id-and-service",
        "batch-with-ids",
        "null-trace-id-in-batch",
        "latest-exemplar-in-batch",
        "get-GET-get-sum-order",
        "absent-null-absent-service-sum-order",
    ],
)
async def test_answers_and_state_match_the_full_route(
    make_app: AppFactory, path: str, body: dict[str, Any]
) -> None:
    """Through the lane and through FastAPI: same status, headers, body, state, exemplars and
    self-metrics."""
    data = json.dumps(body).encode()
    through_lane = await answers_and_state(make_app, path, data, LANE)
    through_route = await answers_and_state(make_app, path, data, FULL_ROUTE)

    assert through_lane == through_route


async def answers_and_state(
    make_app: AppFactory, path: str, body: bytes, headers: dict[str, str]
) -> tuple[Any, ...]:
    """What a fresh collector answers to one POST, and what it shows afterwards."""
    async with open_client(make_app()) as http:
        response = await http.post(path, content=body, headers=headers)
        snapshot = await CollectorProbe(http).snapshot()
        openmetrics = await http.get("/metrics", headers=OPENMETRICS)
    return (
        response.status_code,
        response.headers["content-type"],
        response.content,
        snapshot.series,
        snapshot.view,
        snapshot.reports,
        openmetrics.text,
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(
            "/api/metrics/http",
            b'{"method": "GET", "method": "POST", "route": "/api/courses", "status": 200,'
            b' "duration": 0.045}',
            id="duplicate-method",
        ),
        pytest.param(
            "/api/metrics/http",
            b'{"method": "GET", "route": "/a", "status": 200, "duration": 0.5, "duration": 0.25,'
            b' "service": "courses", "service": null}',
            id="duplicate-duration-and-service",
        ),
        pytest.param(
            "/api/metrics/http",
            b'{"method": "GET", "route": "/a", "status": 200, "status": 200.0, "duration": 0.5}',
            id="duplicate-status-last-is-float",
        ),
        pytest.param(
            "/api/metrics/http/batch",
            b'{"reports": [], "reports": [{"method": "GET", "route": "/a", "status": 200,'
            b' "duration": 0.5}]}',
            id="duplicate-reports",
        ),
        pytest.param(
            "/api/metrics/http/batch",
            b'{"reports": [{"method": "GET", "route": "/caf\\u00e9", "status": 200,'
            b' "duration": 0.5, "service": "\\ud83d\\ude00"}]}',
            id="escaped-unicode",
        ),
    ],
)
async def test_raw_json_text_answers_and_state_match_the_full_route(
    make_app: AppFactory, path: str, body: bytes
) -> None:
    """Bodies only hand-written JSON can be (duplicate keys, escapes) fare as through FastAPI."""
    lane = await answers_and_state(make_app, path, body, LANE)
    full = await answers_and_state(make_app, path, body, FULL_ROUTE)

    assert lane == full


async def test_lane_is_inside_auth_and_the_body_cap(make_app: AppFactory) -> None:
    """A valid report without the token, or past the cap, is refused before the lane."""
    app = make_app(token="s3cret", max_body_bytes=1024)
    async with open_client(app) as http:
        unauthorised = await http.post("/api/metrics/http", json=REPORT)
        too_big = await http.post(
            "/api/metrics/http",
            json={**REPORT, "route": "/" + "x" * 1100},
            headers={"authorization": "Bearer s3cret"},
        )
        accepted = await http.post(
            "/api/metrics/http", json=REPORT, headers={"authorization": "Bearer s3cret"}
        )
        snapshot = await CollectorProbe(http).snapshot()

    assert (unauthorised.status_code, too_big.status_code, accepted.status_code) == (401, 413, 200)
    assert snapshot.count("http", "unauthorized") == 1
    assert snapshot.count("http", "rejected") == 1
    assert snapshot.count("http", "accepted") == 1
