"""Pushed trace ids become exemplars: on OpenMetrics /metrics, in the bucket and series the
report was recorded in, the latest per bucket; the text format stays as it was."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from otelkit.exemplars import ExemplarCollector
from otelkit.instruments import HTTP_REQUEST_DURATION, OTHER_METHOD, OVERFLOW_VALUE
from otelkit_collector.exemplars import HttpExemplars
from tests.conftest import (
    AppFactory,
    CollectorProbe,
    FakeClock,
    build_seeded_app,
    error_message,
    open_client,
    post_json_text,
)

pytestmark = pytest.mark.anyio

OPENMETRICS = {"accept": "application/openmetrics-text; version=1.0.0"}
FAMILY = HTTP_REQUEST_DURATION.prometheus_name
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
OTHER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
OTHER_SPAN_ID = "b7ad6b7169203331"
COURSES = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.042}

Labels = frozenset[tuple[str, str]]
Exemplars = dict[tuple[Labels, str], Exemplar]


def labels(**values: str) -> Labels:
    return frozenset(values.items())


def exemplars_in(exposition: str) -> Exemplars:
    """Each HTTP bucket's exemplar, by (series labels without empty values, le), its timestamp
    as a float."""
    found: Exemplars = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != FAMILY:
            continue
        for sample in family.samples:
            if sample.exemplar is not None:
                series = frozenset((k, v) for k, v in sample.labels.items() if k != "le" and v)
                ids, value, timestamp = sample.exemplar
                when = None if timestamp is None else float(timestamp)
                found[(series, sample.labels["le"])] = Exemplar(ids, value, when)
    return found


async def openmetrics(http: httpx.AsyncClient) -> str:
    response = await http.get("/metrics", headers=OPENMETRICS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    return response.text


async def exemplars(http: httpx.AsyncClient) -> Exemplars:
    """The exemplars OpenMetrics /metrics shows (its body parsed by prometheus_client)."""
    return exemplars_in(await openmetrics(http))


def exemplar(trace_id: str, span_id: str | None, value: float, timestamp: float) -> Exemplar:
    ids = {"trace_id": trace_id} if span_id is None else {"trace_id": trace_id, "span_id": span_id}
    return Exemplar(ids, value, timestamp)


async def test_single_report_ids_become_its_buckets_exemplar(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """One report with ids: its bucket (and only it) carries them, its value and receive time."""
    report = {**COURSES, "service": "courses", "trace_id": TRACE_ID, "span_id": SPAN_ID}

    response = await client.post("/api/metrics/http", json=report)

    assert response.status_code == 200
    series = labels(method="GET", route="/api/courses", status="200", service="courses")
    assert await exemplars(client) == {
        (series, "0.05"): exemplar(TRACE_ID, SPAN_ID, 0.042, clock.now)
    }
    line = next(line for line in (await openmetrics(client)).splitlines() if "# {" in line)
    assert line == (
        'http_request_duration_seconds_bucket{le="0.05",method="GET",route="/api/courses",'
        'service="courses",status="200"} 1.0 '
        f'# {{span_id="{SPAN_ID}",trace_id="{TRACE_ID}"}} 0.042 {clock.now}'
    )


async def test_trace_id_alone_gives_an_exemplar_without_span(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A report with a trace_id and no span_id gives an exemplar labelled with the trace alone."""
    assert (
        await client.post("/api/metrics/http", json={**COURSES, "trace_id": TRACE_ID})
    ).is_success

    series = labels(method="GET", route="/api/courses", status="200")
    assert await exemplars(client) == {(series, "0.05"): exemplar(TRACE_ID, None, 0.042, clock.now)}


async def test_batch_reports_give_each_series_and_bucket_its_exemplar(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """In a batch, each traced report marks its own series and bucket; untraced ones none."""
    reports = [
        {**COURSES, "duration": 0.003, "trace_id": TRACE_ID, "span_id": SPAN_ID},
        {**COURSES, "duration": 0.3},
        {**COURSES, "status": 500, "duration": 12.0, "trace_id": OTHER_TRACE_ID},
        {"method": "post", "route": "/login", "status": 401, "duration": 0.1, "service": "auth",
         "trace_id": OTHER_TRACE_ID, "span_id": OTHER_SPAN_ID},
    ]  # fmt: skip

    response = await client.post("/api/metrics/http/batch", json={"reports": reports})

    assert response.json() == {"accepted": 4, "overflowed": 0}
    now = clock.now
    assert await exemplars(client) == {
        (labels(method="GET", route="/api/courses", status="200"), "0.005"): exemplar(
            TRACE_ID, SPAN_ID, 0.003, now
        ),
        (labels(method="GET", route="/api/courses", status="500"), "+Inf"): exemplar(
            OTHER_TRACE_ID, None, 12.0, now
        ),
        (labels(method="POST", route="/login", status="401", service="auth"), "0.1"): exemplar(
            OTHER_TRACE_ID, OTHER_SPAN_ID, 0.1, now
        ),
    }


async def test_latest_report_wins_its_bucket(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """A later report in the same bucket replaces the exemplar; other buckets keep theirs."""
    first = {**COURSES, "duration": 0.041, "trace_id": TRACE_ID, "span_id": SPAN_ID}
    elsewhere = {**COURSES, "duration": 2.0, "trace_id": TRACE_ID, "span_id": SPAN_ID}
    assert (
        await client.post("/api/metrics/http/batch", json={"reports": [first, elsewhere]})
    ).is_success
    clock.advance(7)
    later = {**COURSES, "duration": 0.049, "trace_id": OTHER_TRACE_ID, "span_id": OTHER_SPAN_ID}
    untraced = {**COURSES, "duration": 0.045}

    assert (
        await client.post("/api/metrics/http/batch", json={"reports": [later, untraced]})
    ).is_success

    series = labels(method="GET", route="/api/courses", status="200")
    assert await exemplars(client) == {
        (series, "0.05"): exemplar(OTHER_TRACE_ID, OTHER_SPAN_ID, 0.049, clock.now),
        (series, "2.5"): exemplar(TRACE_ID, SPAN_ID, 2.0, clock.now - 7),
    }


async def test_latest_report_in_a_batch_wins_its_bucket(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Within one batch, the last traced report of a bucket is its exemplar."""
    reports = [
        {**COURSES, "duration": 0.03, "trace_id": "1" * 32},
        {**COURSES, "method": "get", "duration": 0.04, "trace_id": "2" * 32},
        {**COURSES, "duration": 0.045},
    ]

    assert (await client.post("/api/metrics/http/batch", json={"reports": reports})).is_success

    series = labels(method="GET", route="/api/courses", status="200")
    assert await exemplars(client) == {(series, "0.05"): exemplar("2" * 32, None, 0.04, clock.now)}


async def test_reports_without_ids_give_no_exemplar(client: httpx.AsyncClient) -> None:
    """Reports without ids leave OpenMetrics /metrics without a single exemplar."""
    reports = [COURSES, {**COURSES, "service": "courses", "duration": 3.0}]
    assert (await client.post("/api/metrics/http/batch", json={"reports": reports})).is_success
    assert (await client.post("/api/metrics/http", json=COURSES)).is_success

    body = await openmetrics(client)

    assert exemplars_in(body) == {}
    assert " # {" not in body
    assert (await client.get("/api/metrics")).json()["http"][0]["trace_id"] is None


async def test_unnamed_service_exemplar_follows_its_padded_labels(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A report naming no service keeps its exemplar once another service's series pads it
    with service=""."""
    traced = {**COURSES, "trace_id": TRACE_ID}
    assert (await client.post("/api/metrics/http", json=traced)).is_success
    alone = await exemplars(client)
    named = {**COURSES, "service": "courses", "duration": 0.2, "trace_id": OTHER_TRACE_ID}

    assert (await client.post("/api/metrics/http", json=named)).is_success

    body = await openmetrics(client)
    unnamed = labels(method="GET", route="/api/courses", status="200")
    assert alone == {(unnamed, "0.05"): exemplar(TRACE_ID, None, 0.042, clock.now)}
    assert exemplars_in(body) == {
        **alone,
        (unnamed | {("service", "courses")}, "0.25"): exemplar(
            OTHER_TRACE_ID, None, 0.2, clock.now
        ),
    }
    assert 'service="",status="200"} 1.0 # {trace_id="' + TRACE_ID in body


@pytest.mark.parametrize("endpoint", ["single", "batch"])
async def test_text_format_is_the_same_with_and_without_ids(
    make_app: AppFactory, endpoint: str
) -> None:
    """The text format 0.0.4 body is byte for byte the same whether reports carried ids."""
    reports = [
        {**COURSES, "duration": 0.003},
        {**COURSES, "service": "courses", "duration": 0.3},
        {**COURSES, "status": 503, "duration": 12.0},
    ]
    traced = [
        {**report, "trace_id": f"{index + 1:032x}", "span_id": SPAN_ID}
        for index, report in enumerate(reports)
    ]
    bodies = []
    for sent in (reports, traced):
        async with open_client(make_app()) as http:
            if endpoint == "single":
                for report in sent:
                    assert (await http.post("/api/metrics/http", json=report)).is_success
            else:
                batch = {"reports": sent}
                assert (await http.post("/api/metrics/http/batch", json=batch)).is_success
            response = await http.get("/metrics")
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            bodies.append(response.content)
            assert len(exemplars_in(await openmetrics(http))) == (3 if sent is traced else 0)

    assert bodies[0] == bodies[1]
    assert b"trace_id" not in bodies[1]


async def test_only_openmetrics_scrapes_read_the_exemplars(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text scrapes render the registry as it is; exemplars are read for OpenMetrics alone."""
    report = {**COURSES, "trace_id": TRACE_ID}
    assert (await client.post("/api/metrics/http", json=report)).is_success
    reads: list[str] = []
    collector = HttpExemplars.collector

    def counted(self: HttpExemplars, registry: Collector) -> ExemplarCollector:
        reads.append("attach")
        return collector(self, registry)

    monkeypatch.setattr(HttpExemplars, "collector", counted)

    for accept in (None, "text/plain", "text/plain; version=0.0.4", "*/*"):
        headers = {} if accept is None else {"accept": accept}
        assert (await client.get("/metrics", headers=headers)).status_code == 200
    assert reads == []
    assert exemplars_in(await openmetrics(client))
    assert reads == ["attach"]


@pytest.mark.parametrize(
    ("caps", "report", "series"),
    [
        pytest.param(
            {"max_series": 1},
            {**COURSES, "route": "/other", "status": 404, "service": "courses"},
            labels(service=OVERFLOW_VALUE, method=OTHER_METHOD, route=OVERFLOW_VALUE, status="404"),
            id="past-max-series",
        ),
        pytest.param(
            {"max_routes_per_service": 1},
            {**COURSES, "route": "/other", "service": "courses"},
            labels(service="courses", method="GET", route=OVERFLOW_VALUE, status="200"),
            id="past-max-routes",
        ),
        pytest.param(
            {"max_services": 1},
            {**COURSES, "service": "billing"},
            labels(service=OVERFLOW_VALUE, method="GET", route="/api/courses", status="200"),
            id="past-max-services",
        ),
    ],
)
async def test_folded_report_exemplar_goes_to_its_overflow_series(
    make_app: AppFactory,
    clock: FakeClock,
    caps: dict[str, int],
    report: dict[str, Any],
    series: Labels,
) -> None:
    """A report folded past a cap gives its exemplar to the overflow series it was counted in."""
    async with open_client(make_app(**caps)) as http:
        first = {**COURSES, "service": "courses"}
        assert (await http.post("/api/metrics/http", json=first)).is_success
        folded = {**report, "duration": 0.7, "trace_id": TRACE_ID, "span_id": SPAN_ID}

        response = await http.post("/api/metrics/http/batch", json={"reports": [folded]})

        assert response.json() == {"accepted": 1, "overflowed": 1}
        assert await exemplars(http) == {
            (series, "0.75"): exemplar(TRACE_ID, SPAN_ID, 0.7, clock.now)
        }


OVERFLOW_SERIES = 500
"""One overflow series per status code the contract admits (100 to 599)."""


async def test_exemplars_stay_within_the_series_the_caps_allow(make_app: AppFactory) -> None:
    """However many label sets arrive with ids, exemplars are kept for at most the series the
    caps admit (max_series plus one overflow series per status): reports with every status
    fill exactly that many."""
    app = make_app(max_series=5, max_routes_per_service=3)
    recorder = app.state.recorder
    assert recorder.exemplars.max_series == 5 + OVERFLOW_SERIES
    reports = [
        {**COURSES, "route": f"/r{index}", "service": f"s{index % 7}", "status": 100 + index % 500,
         "trace_id": f"{index + 1:032x}"}
        for index in range(1_000)
    ]  # fmt: skip
    async with open_client(app) as http:
        response = await http.post("/api/metrics/http/batch", json={"reports": reports})
        shown = await exemplars(http)

    assert response.json()["accepted"] == 1_000
    assert len(recorder.exemplars) == 5 + OVERFLOW_SERIES
    assert len({series for series, _le in shown}) == 5 + OVERFLOW_SERIES


def test_the_oldest_series_is_dropped_past_the_bound() -> None:
    """A store full of series drops the oldest one's exemplars for a new series."""
    store = HttpExemplars(max_series=2)
    for route in ("/a", "/b", "/c"):
        attributes = {"method": "GET", "route": route, "status": "200"}
        store.offer([(attributes, 0.1, TRACE_ID, None)], timestamp=1.0)

    assert len(store) == 2


async def test_json_view_shows_each_series_latest_trace_id(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """/api/metrics names the trace of each series' latest exemplar, null for untraced ones."""
    reports = [
        {**COURSES, "duration": 0.003, "trace_id": TRACE_ID},
        {**COURSES, "status": 500},
    ]
    assert (await client.post("/api/metrics/http/batch", json={"reports": reports})).is_success
    clock.advance(1)
    later = {**COURSES, "duration": 5.0, "trace_id": OTHER_TRACE_ID, "span_id": SPAN_ID}
    assert (await client.post("/api/metrics/http", json=later)).is_success

    view = (await client.get("/api/metrics")).json()["http"]

    assert {series["status"]: series["trace_id"] for series in view} == {
        "200": OTHER_TRACE_ID,
        "500": None,
    }


async def test_forgetting_a_service_keeps_its_http_series_and_exemplars(
    client: httpx.AsyncClient,
) -> None:
    """DELETE /api/health/{service} leaves HTTP series in place, and their exemplars with them."""
    report = {**COURSES, "service": "courses", "trace_id": TRACE_ID}
    assert (await client.post("/api/metrics/http", json=report)).is_success
    assert (await client.post("/api/health/courses", json={"status": "healthy"})).is_success
    before = await exemplars(client)

    assert (await client.delete("/api/health/courses")).json()["forgotten"] is True

    assert before
    assert await exemplars(client) == before


async def test_openapi_documents_the_ids(client: httpx.AsyncClient) -> None:
    """The OpenAPI schema of an HTTP report documents trace_id and span_id as hex patterns."""
    schema = (await client.get("/openapi.json")).json()
    report = schema["components"]["schemas"]["HttpReport"]["properties"]

    for field, digits in (("trace_id", 32), ("span_id", 16)):
        branches = report[field].get("anyOf", [report[field]])
        documented = next(branch for branch in branches if branch.get("type") == "string")
        assert documented["pattern"] == f"^[0-9a-f]{{{digits}}}$"
        assert documented["minLength"] == documented["maxLength"] == digits
        assert field in report[field]["description"] or "hex" in report[field]["description"]


# --- Hostile ids ------------------------------------------------------------------------------


def hostile(field: str, digits: int) -> list[Any]:
    """Ids that must be refused, each for one reason: (value, rule) pairs with readable ids."""
    valid = (TRACE_ID if digits == 32 else SPAN_ID)[1:]
    cases = [
        ("too-short", valid, "at least"),
        ("too-long", valid + "ab", "at most"),
        ("upper-case", "A" + valid.upper(), "lowercase hex"),
        ("non-hex-g", "g" + valid, "lowercase hex"),
        ("space", " " + valid, "lowercase hex"),
        ("fullwidth-digit", "\uff10" + valid, "lowercase hex"),
        ("arabic-indic-digit", "\u0663" + valid, "lowercase hex"),
        ("all-zeros", "0" * digits, "all zeros"),
        ("number", 1, "valid string"),
        ("huge-number", 4**70, "valid string"),
        ("null", None, "leave the field out"),
        ("list", [TRACE_ID], "valid string"),
        ("object", {"id": TRACE_ID}, "valid string"),
    ]
    return [
        pytest.param(
            {field: value} if field == "trace_id" else {"trace_id": TRACE_ID, field: value},
            field,
            rule,
            id=f"{field}-{name}",
        )
        for name, value, rule in cases
    ]


HOSTILE_IDS = [
    *hostile("trace_id", 32),
    *hostile("span_id", 16),
    pytest.param({"span_id": SPAN_ID}, None, "span_id needs trace_id", id="span-without-trace"),
]


@pytest.fixture(scope="module")
def seeded_app() -> FastAPI:
    """A seeded collector already holding one exemplar, shared by the refusal cases below."""
    app = build_seeded_app()
    app.state.recorder.exemplars.offer(
        [({"method": "GET", "route": "/api/courses", "status": "200"}, 0.1, TRACE_ID, SPAN_ID)],
        timestamp=1_700_000_000.0,
    )
    return app


@pytest.fixture
async def seeded(seeded_app: FastAPI) -> AsyncIterator[CollectorProbe]:
    async with open_client(seeded_app) as http:
        yield CollectorProbe(http)


@pytest.mark.parametrize(("ids", "field", "rule"), HOSTILE_IDS)
@pytest.mark.parametrize("endpoint", ["single", "batch"])
async def test_hostile_ids_are_refused_and_record_nothing(
    seeded: CollectorProbe, endpoint: str, ids: dict[str, Any], field: str | None, rule: str
) -> None:
    """A bad id gets 422 naming the field (and batch index) and rule; nothing is recorded, no
    exemplar changes, both formats still render, and the refusal is counted."""
    http = seeded.http
    before, exemplars_before = await seeded.snapshot(), await exemplars(http)
    report = json.dumps({**COURSES, "duration": 0.5, **ids})
    if endpoint == "single":
        response = await post_json_text(http, "/api/metrics/http", report)
        location = "body"
    else:
        good = json.dumps({**COURSES, "trace_id": OTHER_TRACE_ID})
        batch = '{"reports":[' + ",".join([good] * 3 + [report, good]) + "]}"
        response = await post_json_text(http, "/api/metrics/http/batch", batch)
        location = "body.reports.3"
    if field is not None:
        location += f".{field}"

    assert response.status_code == 422
    message = error_message(response)
    assert message.startswith(f"{location}: ")
    assert rule in message
    after = await seeded.snapshot()
    assert after.state == before.state
    assert await exemplars(http) == exemplars_before
    assert after.count("http", "rejected") == before.count("http", "rejected") + (
        1 if endpoint == "single" else 5
    )
    assert after.count("http", "accepted") == before.count("http", "accepted")
    assert (await http.get("/metrics")).status_code == 200
