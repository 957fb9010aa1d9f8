"""Bad input on every write endpoint: a 4xx naming the field and the rule, nothing recorded."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from otelkit.reports import check_label_text
from tests.conftest import (
    CollectorProbe,
    build_seeded_app,
    error_message,
    open_client,
    post_json_text,
    recorded_samples,
)

pytestmark = pytest.mark.anyio

GOOD_HTTP = {"method": '"GET"', "route": '"/api/courses"', "status": "200", "duration": "0.1"}
"""A valid HTTP report, each value written as JSON text."""


def http_text(**fields: str | None) -> str:
    """An HTTP report as JSON text; each value is JSON text, ``None`` leaves the field out."""
    merged = {**GOOD_HTTP, **fields}
    return "{" + ",".join(f'"{key}":{value}' for key, value in merged.items() if value) + "}"


def users_text(**fields: str | None) -> str:
    """A users report as JSON text, built like :func:`http_text`."""
    merged: dict[str, str | None] = {"count": "5", **fields}
    return "{" + ",".join(f'"{key}":{value}' for key, value in merged.items() if value) + "}"


def text(value: str) -> str:
    """``value`` as a JSON string literal (control characters and surrogates escaped)."""
    return json.dumps(value)


@pytest.fixture(scope="module")
def seeded_app() -> FastAPI:
    """One seeded collector shared by the refusal cases below (each checks it is unchanged)."""
    return build_seeded_app()


@pytest.fixture
async def seeded(seeded_app: FastAPI) -> AsyncIterator[CollectorProbe]:
    """A probe (and its ``http`` client) on the shared seeded collector."""
    async with open_client(seeded_app) as http:
        yield CollectorProbe(http)


BAD_HTTP_REPORTS = [
    # numbers
    pytest.param(http_text(duration="NaN"), "duration", "finite", id="nan-duration"),
    pytest.param(http_text(duration="Infinity"), "duration", "finite", id="infinity-duration"),
    pytest.param(http_text(duration="-Infinity"), "duration", "finite", id="-infinity-duration"),
    pytest.param(http_text(duration="1e400"), "duration", "finite", id="overflowing-duration"),
    pytest.param(http_text(duration="-1e400"), "duration", "finite", id="-overflowing-duration"),
    pytest.param(
        http_text(duration="-0.001"),
        "duration",
        "greater than or equal to 0",
        id="negative-duration",
    ),
    pytest.param(
        http_text(duration="86400.5"),
        "duration",
        "less than or equal to 86400",
        id="duration-over-a-day",
    ),
    pytest.param(http_text(duration='"0.1"'), "duration", "valid number", id="string-duration"),
    pytest.param(http_text(duration="true"), "duration", "valid number", id="bool-duration"),
    pytest.param(http_text(duration="[0.1]"), "duration", "valid number", id="list-duration"),
    pytest.param(http_text(duration='{"s":0.1}'), "duration", "valid number", id="object-duration"),
    pytest.param(http_text(duration="null"), "duration", "valid number", id="null-duration"),
    pytest.param(http_text(status="99"), "status", "greater than or equal to 100", id="status-99"),
    pytest.param(http_text(status="600"), "status", "less than or equal to 599", id="status-600"),
    pytest.param(http_text(status='"200"'), "status", "valid integer", id="string-status"),
    pytest.param(http_text(status="200.0"), "status", "valid integer", id="float-status"),
    pytest.param(http_text(status="true"), "status", "valid integer", id="bool-status"),
    pytest.param(
        http_text(status=str(10**30)), "status", "less than or equal to 599", id="huge-status"
    ),
    pytest.param(http_text(status="[200]"), "status", "valid integer", id="list-status"),
    pytest.param(http_text(status="null"), "status", "valid integer", id="null-status"),
    # methods
    pytest.param(http_text(method='"G3T"'), "method", "HTTP method token", id="digit-in-method"),
    pytest.param(http_text(method='"GET "'), "method", "HTTP method token", id="space-in-method"),
    pytest.param(
        http_text(method=text("GÉT")), "method", "HTTP method token", id="non-ascii-method"
    ),
    pytest.param(http_text(method='""'), "method", "at least 1 character", id="empty-method"),
    pytest.param(
        http_text(method=text("A" * 17)), "method", "at most 16 characters", id="long-method"
    ),
    pytest.param(http_text(method="7"), "method", "valid string", id="number-method"),
    # strings that become label values
    pytest.param(http_text(route=text("/a\nb")), "route", "control characters", id="newline-route"),
    pytest.param(http_text(route=text("/a\tb")), "route", "control characters", id="tab-route"),
    pytest.param(http_text(route=text("/a\x00b")), "route", "control characters", id="nul-route"),
    pytest.param(http_text(route=text("/a\x7fb")), "route", "control characters", id="del-route"),
    pytest.param(http_text(route=text("/a\x85b")), "route", "control characters", id="nel-route"),
    pytest.param(http_text(route=r'"\ud800"'), "route", "unicode", id="lone-surrogate-route"),
    pytest.param(http_text(route=r'"/a\udfffb"'), "route", "unicode", id="low-surrogate-route"),
    pytest.param(
        http_text(route=text("/" + "x" * 256)),
        "route",
        "at most 256 characters",
        id="route-257-chars",
    ),
    pytest.param(http_text(route='""'), "route", "at least 1 character", id="empty-route"),
    pytest.param(http_text(route="null"), "route", "valid string", id="null-route"),
    pytest.param(http_text(route='["/a"]'), "route", "valid string", id="list-route"),
    pytest.param(http_text(service='""'), "service", "at least 1 character", id="empty-service"),
    pytest.param(
        http_text(service=text("s" * 129)),
        "service",
        "at most 128 characters",
        id="service-129-chars",
    ),
    pytest.param(
        http_text(service=text("a\nb")), "service", "control characters", id="newline-service"
    ),
    pytest.param(http_text(service=r'"\ud800"'), "service", "unicode", id="lone-surrogate-service"),
    pytest.param(http_text(service='{"name":"a"}'), "service", "valid string", id="object-service"),
    # shape
    pytest.param(http_text(duration=None), "duration", "Field required", id="missing-duration"),
    pytest.param(http_text(method=None), "method", "Field required", id="missing-method"),
    pytest.param(http_text(route=None), "route", "Field required", id="missing-route"),
    pytest.param(http_text(status=None), "status", "Field required", id="missing-status"),
    pytest.param(
        http_text(extra='"x"'), "extra", "Extra inputs are not permitted", id="unknown-field"
    ),
    pytest.param(
        http_text(labels='{"a":"b"}'),
        "labels",
        "Extra inputs are not permitted",
        id="nested-unknown-field",
    ),
]


@pytest.mark.parametrize(("body", "field", "rule"), BAD_HTTP_REPORTS)
@pytest.mark.parametrize("endpoint", ["single", "batch"])
async def test_bad_http_report_is_rejected_untouched(
    seeded: CollectorProbe,
    endpoint: str,
    body: str,
    field: str,
    rule: str,
) -> None:
    """A bad HTTP report gets 422 naming field and rule, changes nothing, and counts as rejected."""
    before = await seeded.snapshot()
    if endpoint == "single":
        response = await post_json_text(seeded.http, "/api/metrics/http", body)
        location = f"body.{field}"
    else:
        batch = "[" + ",".join([http_text()] * 3 + [body]) + "]"
        response = await post_json_text(
            seeded.http, "/api/metrics/http/batch", f'{{"reports":{batch}}}'
        )
        location = f"body.reports.3.{field}"

    assert response.status_code == 422
    message = error_message(response)
    assert location in message
    assert rule in message
    after = await seeded.snapshot()
    assert after.state == before.state
    assert after.count("http", "rejected") == before.count("http", "rejected") + (
        1 if endpoint == "single" else 4
    )


BAD_BODIES = [
    pytest.param("{", "JSON decode error", id="invalid-json"),
    pytest.param('{"method":"GET",}', "JSON decode error", id="trailing-comma"),
    pytest.param(b"\xff\xfe{}", "JSON decode error", id="invalid-utf8"),
    pytest.param("", "Field required", id="empty-body"),
    # FastAPI releases before 0.129 read a JSON null as no body at all.
    pytest.param("null", ("valid dictionary", "Field required"), id="null-body"),
    pytest.param("[]", "valid dictionary", id="list-body"),
    pytest.param("[" + http_text() + "]", "valid dictionary", id="report-in-a-list"),
    pytest.param('"report"', "valid dictionary", id="string-body"),
    pytest.param("42", "valid dictionary", id="number-body"),
    pytest.param("true", "valid dictionary", id="bool-body"),
]


@pytest.mark.parametrize(("body", "rule"), BAD_BODIES)
@pytest.mark.parametrize(
    ("url", "kind"),
    [
        pytest.param("/api/metrics/http", "http", id="http"),
        pytest.param("/api/metrics/http/batch", "http", id="batch"),
        pytest.param("/api/health/auth", "health", id="health"),
        pytest.param("/api/metrics/users", "users", id="users"),
    ],
)
async def test_malformed_body_is_rejected_untouched(
    seeded: CollectorProbe,
    url: str,
    kind: str,
    body: str | bytes,
    rule: str | tuple[str, ...],
) -> None:
    """A body that is not a JSON object gets 422 naming the body, and changes nothing."""
    before = await seeded.snapshot()

    response = await post_json_text(seeded.http, url, body)

    assert response.status_code == 422
    message = error_message(response)
    assert message.startswith("body")
    assert any(words in message for words in ((rule,) if isinstance(rule, str) else rule))
    after = await seeded.snapshot()
    assert after.state == before.state
    assert after.count(kind, "rejected") == before.count(kind, "rejected") + 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * 50_000, id="deep-list"),
        pytest.param('{"a":' * 50_000, id="deep-object"),
        pytest.param('{"reports":' + "[" * 50_000, id="deep-reports"),
    ],
)
@pytest.mark.parametrize(
    ("url", "kind"),
    [
        pytest.param("/api/metrics/http", "http", id="http"),
        pytest.param("/api/metrics/http/batch", "http", id="batch"),
        pytest.param("/api/health/auth", "health", id="health"),
        pytest.param("/api/metrics/users", "users", id="users"),
    ],
)
async def test_deeply_nested_json_is_a_client_error(
    seeded: CollectorProbe, url: str, kind: str, body: str
) -> None:
    """JSON nested past the parser's recursion limit gets a 4xx (never a 5xx) and is counted."""
    before = await seeded.snapshot()

    response = await post_json_text(seeded.http, url, body)

    assert response.status_code == 400
    assert "nested at most" in error_message(response)
    after = await seeded.snapshot()
    assert after.state == before.state
    assert after.count(kind, "rejected") == before.count(kind, "rejected") + 1


@pytest.mark.parametrize(
    ("body", "location", "rule"),
    [
        pytest.param('{"reports":[]}', "body.reports", "at least 1 item", id="empty-batch"),
        pytest.param(
            '{"reports":[' + ",".join([http_text()] * 1001) + "]}",
            "body.reports",
            "at most 1000 items",
            id="batch-of-1001",
        ),
        pytest.param(
            '{"reports":' + http_text() + "}", "body.reports", "valid list", id="object-reports"
        ),
        pytest.param('{"reports":null}', "body.reports", "valid list", id="null-reports"),
        pytest.param("{}", "body.reports", "Field required", id="missing-reports"),
        pytest.param(
            '{"reports":[' + http_text() + '],"service":"a"}',
            "body.service",
            "Extra inputs are not permitted",
            id="unknown-batch-field",
        ),
        pytest.param(
            '{"reports":[' + http_text() + ",7]}",
            "body.reports.1",
            "valid dictionary",
            id="number-in-batch",
        ),
    ],
)
async def test_bad_batch_shape_is_rejected_untouched(
    seeded: CollectorProbe, body: str, location: str, rule: str
) -> None:
    """A batch of the wrong shape gets 422 naming where and why, and records none of its reports."""
    before = await seeded.snapshot()

    response = await post_json_text(seeded.http, "/api/metrics/http/batch", body)

    assert response.status_code == 422
    message = error_message(response)
    assert location in message
    assert rule in message
    assert (await seeded.snapshot()).state == before.state


async def test_rejected_batch_counts_each_report(seeded: CollectorProbe) -> None:
    """A batch of five with one bad report adds five rejected reports and no accepted one."""
    before = await seeded.snapshot()
    reports = [http_text()] * 3 + [http_text(status="99"), http_text()]

    response = await post_json_text(
        seeded.http, "/api/metrics/http/batch", '{"reports":[' + ",".join(reports) + "]}"
    )

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [
        ["body", "reports", 3, "status"]
    ]
    after = await seeded.snapshot()
    assert after.state == before.state
    assert after.count("http", "rejected") == before.count("http", "rejected") + 5
    assert after.count("http", "accepted") == before.count("http", "accepted")


TOO_MANY_DIGITS = "1" + "0" * 5_000
"""An integer literal JSON allows and Python's json cannot read (past 4300 digits): the body
gets a 400, not a 422, yet the error still names where the literal is."""


def batch_text(*reports: str) -> str:
    return '{"reports":[' + ",".join(reports) + "]}"


UNREADABLE_INTEGERS = [
    pytest.param(
        "/api/metrics/http", http_text(duration=TOO_MANY_DIGITS), "body.duration", id="http"
    ),
    pytest.param(
        "/api/metrics/http/batch",
        batch_text(http_text(), http_text(), http_text(status=TOO_MANY_DIGITS), http_text()),
        "body.reports.2.status",
        id="batch-index-2",
    ),
    pytest.param(
        "/api/metrics/http/batch",
        batch_text(http_text(duration=TOO_MANY_DIGITS), http_text()),
        "body.reports.0.duration",
        id="batch-index-0",
    ),
    pytest.param("/api/metrics/users", users_text(count=TOO_MANY_DIGITS), "body.count", id="users"),
]


@pytest.mark.parametrize(("url", "body", "location"), UNREADABLE_INTEGERS)
async def test_unreadable_integer_is_a_400_naming_where_it_is(
    seeded: CollectorProbe, url: str, body: str, location: str
) -> None:
    """A body with an integer literal too long for Python gets 400 naming the field (in a
    batch, under the bad report's index) and the rule; nothing of it is recorded."""
    kind = "users" if url.endswith("users") else "http"
    before = await seeded.snapshot()

    response = await post_json_text(seeded.http, url, body)

    assert response.status_code == 400
    rule = "integer literals may have at most 4300 digits (Python's int conversion limit)"
    assert error_message(response) == f"{location}: {rule}"
    assert response.json()["detail"] == error_message(response)
    after = await seeded.snapshot()
    assert after.state == before.state
    assert after.count(kind, "rejected") == before.count(kind, "rejected") + 1
    assert after.count(kind, "accepted") == before.count(kind, "accepted")


BAD_USERS_REPORTS = [
    pytest.param(
        users_text(count="-1"), "count", "greater than or equal to 0", id="negative-count"
    ),
    pytest.param(users_text(count="1.5"), "count", "valid integer", id="fractional-count"),
    pytest.param(users_text(count="3.0"), "count", "valid integer", id="float-count"),
    pytest.param(users_text(count='"3"'), "count", "valid integer", id="string-count"),
    pytest.param(users_text(count="true"), "count", "valid integer", id="bool-count"),
    pytest.param(
        users_text(count=str(10**12 + 1)), "count", "less than or equal to", id="count-over-cap"
    ),
    pytest.param(
        users_text(count=str(10**40)), "count", "less than or equal to", id="huge-int-count"
    ),
    pytest.param(users_text(count="NaN"), "count", "valid integer", id="nan-count"),
    pytest.param(users_text(count="1e400"), "count", "valid integer", id="overflowing-count"),
    pytest.param(users_text(count="[3]"), "count", "valid integer", id="list-count"),
    pytest.param(users_text(count='{"n":3}'), "count", "valid integer", id="object-count"),
    pytest.param(users_text(count="null"), "count", "valid integer", id="null-count"),
    pytest.param(users_text(count=None), "count", "Field required", id="missing-count"),
    pytest.param(users_text(service='""'), "service", "at least 1 character", id="empty-service"),
    pytest.param(
        users_text(service=text("s" * 129)),
        "service",
        "at most 128 characters",
        id="service-129-chars",
    ),
    pytest.param(
        users_text(service=text("a\tb")), "service", "control characters", id="tab-service"
    ),
    pytest.param(
        users_text(service=text("a\x00")), "service", "control characters", id="nul-service"
    ),
    pytest.param(
        users_text(service=r'"\ud800"'), "service", "unicode", id="lone-surrogate-service"
    ),
    pytest.param(users_text(service="5"), "service", "valid string", id="number-service"),
    pytest.param(
        users_text(users="5"), "users", "Extra inputs are not permitted", id="unknown-field"
    ),
]


@pytest.mark.parametrize(("body", "field", "rule"), BAD_USERS_REPORTS)
async def test_bad_users_report_is_rejected_untouched(
    seeded: CollectorProbe, body: str, field: str, rule: str
) -> None:
    """A bad users report gets 422 naming field and rule, changes nothing, and is counted."""
    before = await seeded.snapshot()

    response = await post_json_text(seeded.http, "/api/metrics/users", body)

    assert response.status_code == 422
    message = error_message(response)
    assert f"body.{field}" in message
    assert rule in message
    after = await seeded.snapshot()
    assert after.state == before.state
    assert after.count("users", "rejected") == before.count("users", "rejected") + 1


BAD_HEALTH_STATUSES = [
    pytest.param('"sick"', id="unknown-status"),
    pytest.param('""', id="empty-status"),
    pytest.param('" healthy"', id="padded-status"),
    pytest.param('"stale"', id="stale-is-not-reportable"),
    pytest.param("1", id="number-status"),
    pytest.param("true", id="bool-status"),
    pytest.param("null", id="null-status"),
    pytest.param('["healthy"]', id="list-status"),
]


@pytest.mark.parametrize("status", BAD_HEALTH_STATUSES)
async def test_bad_health_status_lists_the_allowed_ones(
    seeded: CollectorProbe, status: str
) -> None:
    """A health status outside the closed set gets 422 listing all four allowed statuses."""
    before = await seeded.snapshot()

    response = await post_json_text(seeded.http, "/api/health/auth", f'{{"status":{status}}}')

    assert response.status_code == 422
    message = error_message(response)
    assert message.startswith("body.status: ")
    for allowed in ("healthy", "degraded", "unhealthy", "down"):
        assert f"'{allowed}'" in message
    after = await seeded.snapshot()
    assert after.state == before.state
    assert after.count("health", "rejected") == before.count("health", "rejected") + 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("{}", "body.status: Field required", id="missing-status"),
        pytest.param(
            '{"status":"down","service":"x"}',
            "body.service: Extra inputs are not permitted",
            id="unknown-field",
        ),
    ],
)
async def test_bad_health_body_shape_is_rejected(
    seeded: CollectorProbe, body: str, message: str
) -> None:
    """A health body without status, or with another field, gets 422 naming that field."""
    before = await seeded.snapshot()

    response = await post_json_text(seeded.http, "/api/health/auth", body)

    assert response.status_code == 422
    assert error_message(response) == message
    assert (await seeded.snapshot()).state == before.state


BAD_SERVICE_PATHS = [
    pytest.param("a%0Ab", "control characters", id="newline"),
    pytest.param("a%09b", "control characters", id="tab"),
    pytest.param("a%00b", "control characters", id="nul"),
    pytest.param("a%7Fb", "control characters", id="del"),
    pytest.param("a%C2%85b", "control characters", id="nel"),
    pytest.param("s" * 129, "at most 128 characters", id="129-chars"),
]


@pytest.mark.parametrize(("service", "rule"), BAD_SERVICE_PATHS)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_bad_service_in_path_is_rejected(
    seeded: CollectorProbe, method: str, service: str, rule: str
) -> None:
    """A service path parameter that cannot be a label value gets 422 naming it; nothing changes."""
    before = await seeded.snapshot()

    response = await seeded.http.request(
        method, f"/api/health/{service}", json={"status": "healthy"} if method == "POST" else None
    )

    assert response.status_code == 422
    message = error_message(response)
    assert "path.service" in message
    assert rule in message
    assert (await seeded.snapshot()).state == before.state


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_empty_service_in_path_is_not_found(seeded: CollectorProbe, method: str) -> None:
    """``/api/health/`` (no service) is a 4xx that changes nothing."""
    before = await seeded.snapshot()

    response = await seeded.http.request(
        method, "/api/health/", json={"status": "healthy"} if method == "POST" else None
    )

    assert response.status_code in (404, 405)
    assert (await seeded.snapshot()).state == before.state


async def test_invalid_utf8_in_path_still_renders(
    client: httpx.AsyncClient, probe: CollectorProbe
) -> None:
    """Invalid UTF-8 percent-escapes in the path arrive as U+FFFD, so /metrics keeps rendering."""
    response = await client.post("/api/health/a%ED%A0%80", json={"status": "healthy"})

    assert response.status_code == 200
    series = await probe.series()
    assert series[("service_health_status", frozenset({("service", "a\ufffd\ufffd\ufffd")}))] == 1


EXOTIC_VALUES = [
    pytest.param('say "hi"', id="double-quotes"),
    pytest.param("it's", id="single-quote"),
    pytest.param("C:\\Temp\\x", id="backslashes"),
    pytest.param("\\n is not a newline", id="escaped-looking-newline"),
    pytest.param("rocket 🚀 fire 🔥", id="emoji"),
    pytest.param("👩‍💻", id="zwj-sequence"),
    pytest.param("課程の一覧", id="cjk"),
    pytest.param("مرحبا بالعالم", id="rtl-arabic"),
    pytest.param("\u202eevil", id="rtl-override"),
    pytest.param("e\u0301te\u0301", id="combining-marks"),
    pytest.param("line\u2028separator", id="line-separator"),
    pytest.param("non\u00a0breaking", id="nbsp"),
    pytest.param("a=b,c} # not a comment", id="exposition-syntax"),
    pytest.param(" padded ", id="surrounding-spaces"),
    pytest.param("x" * 128, id="longest-service"),
]


@pytest.mark.parametrize("value", EXOTIC_VALUES)
async def test_exotic_label_values_round_trip(
    client: httpx.AsyncClient, probe: CollectorProbe, value: str
) -> None:
    """Accepted exotic strings come back exactly, as route, service and health path label values."""
    route = "/" + value
    report = {"method": "GET", "route": route, "status": 200, "duration": 0.2, "service": value}
    assert (await client.post("/api/metrics/http", json=report)).status_code == 200
    assert (
        await client.post("/api/metrics/users", json={"count": 9, "service": value})
    ).status_code == 200
    health = await client.post(f"/api/health/{quote(value, safe='')}", json={"status": "down"})
    assert health.status_code == 200

    series = await probe.series()
    labels = {"method": "GET", "route": route, "status": "200", "service": value}
    assert series[("http_request_duration_seconds_count", frozenset(labels.items()))] == 1
    assert series[("active_users_total", frozenset({("service", value)}))] == 9
    assert series[("service_health_status", frozenset({("service", value)}))] == 0
    view = await probe.view()
    assert [(s["service"], s["route"]) for s in view["http"]] == [(value, route)]
    assert [s["service"] for s in view["services"]] == [value]
    assert [u["service"] for u in view["active_users"]] == [value]


async def test_exotic_values_survive_openmetrics(client: httpx.AsyncClient) -> None:
    """The OpenMetrics rendering of awkward label values parses back to the same values."""
    routes = ['/say "hi"', "/C:\\x", "/🚀", "/e\u0301", "/課程"]
    for route in routes:
        report = {"method": "GET", "route": route, "status": 200, "duration": 0.2}
        assert (await client.post("/api/metrics/http", json=report)).status_code == 200

    response = await client.get(
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    seen = {
        sample.labels["route"]
        for family in text_string_to_metric_families(response.text)
        if family.name == "http_request_duration_seconds"
        for sample in family.samples
    }
    assert seen == set(routes)


async def test_metrics_render_after_every_kind_of_rejection(seeded: CollectorProbe) -> None:
    """After hostile label values are refused, /metrics still parses and holds only the seed."""
    before = await seeded.series()
    for value in ["\ud800", "a\nb", "a\x00", "x" * 300]:
        body = http_text(route=text(value), service=text(value))
        assert (await post_json_text(seeded.http, "/api/metrics/http", body)).status_code == 422

    response = await seeded.http.get("/metrics")

    assert response.status_code == 200
    assert recorded_samples(response.text) == before


def test_label_check_refuses_exactly_the_control_characters() -> None:
    """Every code point of Unicode category Cc is refused, naming it; every other one passes."""
    for code_point in range(sys.maxunicode + 1):
        if 0xD800 <= code_point <= 0xDFFF:
            continue  # lone surrogates: refused as invalid UTF-8, checked elsewhere
        char = chr(code_point)
        if unicodedata.category(char) == "Cc":
            with pytest.raises(ValueError, match=f"U\\+{code_point:04X}"):
                check_label_text(f"a{char}b")
        else:
            assert check_label_text(char) == char
