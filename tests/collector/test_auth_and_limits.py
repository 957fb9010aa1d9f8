"""Bearer-token auth on writes and the request body cap: refusals change nothing and count."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import (
    AppFactory,
    CollectorProbe,
    build_seeded_app,
    error_message,
    open_client,
)

pytestmark = pytest.mark.anyio

TOKEN = "s3cret"
GOOD = {"authorization": f"Bearer {TOKEN}"}
REPORT = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.1}

WRITES = [
    pytest.param("POST", "/api/metrics/http", REPORT, "http", id="http"),
    pytest.param("POST", "/api/metrics/http/batch", {"reports": [REPORT] * 2}, "http", id="batch"),
    pytest.param("POST", "/api/health/auth", {"status": "down"}, "health", id="health"),
    pytest.param("DELETE", "/api/health/auth", None, "health", id="forget"),
    pytest.param("POST", "/api/metrics/users", {"count": 5}, "users", id="users"),
]


@pytest.fixture(scope="module")
def guarded_app() -> FastAPI:
    """A token-protected collector holding one report of every kind, shared by the refusals."""
    return build_seeded_app(token=TOKEN)


@pytest.fixture
async def guarded(guarded_app: FastAPI) -> AsyncIterator[CollectorProbe]:
    async with open_client(guarded_app) as http:
        yield CollectorProbe(http)


@pytest.fixture
async def fresh_guarded(make_app: AppFactory) -> AsyncIterator[CollectorProbe]:
    """A token-protected collector of its own holding one health and one users report."""
    async with open_client(make_app(token=TOKEN)) as http:
        health = await http.post("/api/health/auth", json={"status": "healthy"}, headers=GOOD)
        assert health.is_success
        assert (await http.post("/api/metrics/users", json={"count": 3}, headers=GOOD)).is_success
        yield CollectorProbe(http)


async def write(
    http: httpx.AsyncClient, method: str, url: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await http.request(method, url, json=body, headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"authorization": "Bearer wrong"}, id="wrong-token"),
        pytest.param({"authorization": f"Bearer {TOKEN}x"}, id="token-prefix"),
        pytest.param({"authorization": f"Bearer {TOKEN[:-1]}"}, id="truncated-token"),
        pytest.param({"authorization": "Basic czNjcmV0OnMzY3JldA=="}, id="basic"),
        pytest.param({"authorization": f"bearer {TOKEN}"}, id="lower-case-scheme"),
        pytest.param({"authorization": f"BEARER {TOKEN}"}, id="upper-case-scheme"),
        pytest.param({"authorization": TOKEN}, id="bare-token"),
        pytest.param({"authorization": "Bearer"}, id="scheme-only"),
        pytest.param({"authorization": ""}, id="empty-header"),
        pytest.param({"x-token": TOKEN}, id="other-header"),
    ],
)
@pytest.mark.parametrize(("method", "url", "body", "kind"), WRITES)
async def test_write_without_the_token_is_refused(
    guarded: CollectorProbe,
    method: str,
    url: str,
    body: Any,
    kind: str,
    headers: dict[str, str],
) -> None:
    """A write lacking exactly 'Bearer <token>' gets 401 + challenge, changes nothing, counts."""
    before = await guarded.snapshot()

    response = await write(guarded.http, method, url, body, headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "token" in error_message(response)
    after = await guarded.snapshot()
    assert after.state == before.state
    assert after.count(kind, "unauthorized") == before.count(kind, "unauthorized") + 1
    assert after.count(kind, "accepted") == before.count(kind, "accepted")


@pytest.mark.parametrize(("method", "url", "body", "kind"), WRITES)
async def test_write_with_the_token_is_accepted(
    fresh_guarded: CollectorProbe, method: str, url: str, body: Any, kind: str
) -> None:
    """Every write endpoint works, and changes state, with the right bearer token."""
    before = await fresh_guarded.snapshot()

    response = await write(fresh_guarded.http, method, url, body, GOOD)

    assert response.status_code == 200
    after = await fresh_guarded.snapshot()
    assert after.state != before.state
    assert after.count(kind, "unauthorized") == 0


@pytest.mark.parametrize("url", ["/metrics", "/api/metrics", "/healthz", "/openapi.json"])
async def test_reads_stay_open(guarded: CollectorProbe, url: str) -> None:
    """Reads need no token, so Prometheus can scrape a protected collector."""
    assert (await guarded.http.get(url)).status_code == 200


async def test_missing_header_is_told_apart_from_a_wrong_token(guarded: CollectorProbe) -> None:
    """The 401 says whether the header was missing or the token was wrong."""
    missing = await guarded.http.post("/api/metrics/users", json={"count": 1})
    wrong = await guarded.http.post(
        "/api/metrics/users", json={"count": 1}, headers={"authorization": "Bearer nope"}
    )

    assert "missing Authorization header" in error_message(missing)
    assert error_message(wrong) == "invalid bearer token"
    assert TOKEN not in missing.text + wrong.text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="invalid-json"),
        pytest.param(b'{"count": -1}', id="invalid-report"),
        pytest.param(b" " * 300_000, id="oversized"),
    ],
)
async def test_auth_is_checked_before_the_body(guarded: CollectorProbe, body: bytes) -> None:
    """An unauthenticated write gets 401 whatever its body, and is not counted as rejected."""
    before = await guarded.snapshot()

    response = await guarded.http.post(
        "/api/metrics/users", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 401
    after = await guarded.snapshot()
    assert after.state == before.state
    assert after.count("users", "unauthorized") == before.count("users", "unauthorized") + 1
    assert after.count("users", "rejected") == before.count("users", "rejected")


async def test_authenticated_bad_body_is_a_validation_error(guarded: CollectorProbe) -> None:
    """With the token, a bad body reaches validation: 422, counted as rejected, not unauthorized."""
    before = await guarded.snapshot()

    response = await guarded.http.post(
        "/api/metrics/users",
        content=b"{not json",
        headers={**GOOD, "content-type": "application/json"},
    )

    assert response.status_code == 422
    after = await guarded.snapshot()
    assert after.state == before.state
    assert after.count("users", "rejected") == before.count("users", "rejected") + 1
    assert after.count("users", "unauthorized") == before.count("users", "unauthorized")


CAP = 2048


def padded(document: object, size: int) -> bytes:
    """``document`` as JSON padded with trailing spaces to exactly ``size`` bytes."""
    text = json.dumps(document).encode()
    assert len(text) <= size
    return text + b" " * (size - len(text))


async def chunks(body: bytes, size: int = 500) -> AsyncIterator[bytes]:
    """Stream ``body`` in pieces, so the request has no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture
async def small(make_app: AppFactory) -> AsyncIterator[CollectorProbe]:
    """A collector whose body cap is 2048 bytes, holding one report of every kind."""
    async with open_client(make_app(max_body_bytes=CAP)) as http:
        assert (await http.post("/api/metrics/http", json=REPORT)).is_success
        assert (await http.post("/api/health/auth", json={"status": "healthy"})).is_success
        assert (await http.post("/api/metrics/users", json={"count": 3})).is_success
        yield CollectorProbe(http)


BODY_WRITES = [
    pytest.param("/api/metrics/http", REPORT, "http", id="http"),
    pytest.param("/api/metrics/http/batch", {"reports": [REPORT]}, "http", id="batch"),
    pytest.param("/api/health/auth", {"status": "down"}, "health", id="health"),
    pytest.param("/api/metrics/users", {"count": 5}, "users", id="users"),
]


@pytest.mark.parametrize(
    "streamed", [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")]
)
@pytest.mark.parametrize(("url", "document", "kind"), BODY_WRITES)
async def test_body_over_the_cap_gets_413(
    small: CollectorProbe, url: str, document: object, kind: str, streamed: bool
) -> None:
    """One byte over max_body_bytes gets 413 naming the limit, changes nothing, and is counted."""
    before = await small.snapshot()
    body = padded(document, CAP + 1)
    headers = {"content-type": "application/json"}

    if streamed:
        response = await small.http.post(url, content=chunks(body), headers=headers)
    else:
        response = await small.http.post(url, content=body, headers=headers)

    assert response.status_code == 413
    assert "max_body_bytes=2048" in error_message(response)
    after = await small.snapshot()
    assert after.state == before.state
    assert after.count(kind, "rejected") == before.count(kind, "rejected") + 1


@pytest.mark.parametrize(
    "streamed", [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")]
)
@pytest.mark.parametrize(("url", "document", "kind"), BODY_WRITES)
async def test_body_at_the_cap_is_processed(
    small: CollectorProbe, url: str, document: object, kind: str, streamed: bool
) -> None:
    """A body of exactly max_body_bytes is read whole and recorded normally."""
    before = await small.snapshot()
    body = padded(document, CAP)
    headers = {"content-type": "application/json"}

    if streamed:
        response = await small.http.post(url, content=chunks(body, 7), headers=headers)
    else:
        response = await small.http.post(url, content=body, headers=headers)

    assert response.status_code == 200
    after = await small.snapshot()
    assert after.state != before.state
    assert after.count(kind, "accepted") == before.count(kind, "accepted") + 1


async def test_invalid_body_at_the_cap_is_a_validation_error(small: CollectorProbe) -> None:
    """A body of exactly the cap that is not valid gets the usual 422, not 413."""
    body = padded({"count": -1}, CAP)

    response = await small.http.post(
        "/api/metrics/users", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert "body.count" in error_message(response)


async def test_declared_length_alone_triggers_413(small: CollectorProbe) -> None:
    """A Content-Length above the cap is refused before any of the body is read."""
    received = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal received
        for _ in range(10):
            received += 1
            yield b" " * 1000

    response = await small.http.post(
        "/api/metrics/users",
        content=body(),
        headers={"content-type": "application/json", "content-length": "10000"},
    )

    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    assert received == 0


async def test_malformed_content_length_is_a_client_error(small: CollectorProbe) -> None:
    """A Content-Length that is not a number gets 400, changes nothing, and counts as rejected."""
    before = await small.snapshot()

    response = await small.http.post(
        "/api/metrics/users",
        content=b'{"count": 1}',
        headers={"content-type": "application/json", "content-length": "twelve"},
    )

    assert response.status_code == 400
    assert "Content-Length" in error_message(response)
    after = await small.snapshot()
    assert after.state == before.state
    assert after.count("users", "rejected") == before.count("users", "rejected") + 1


async def test_body_cap_does_not_touch_reads_or_deletes(small: CollectorProbe) -> None:
    """GET and DELETE pass the body guard untouched."""
    assert (await small.http.get("/metrics")).status_code == 200
    response = await small.http.delete("/api/health/auth")

    assert response.status_code == 200
    assert response.json()["forgotten"] is True


async def test_default_cap_accepts_a_full_batch(client: httpx.AsyncClient) -> None:
    """The default cap (256 KiB) leaves room for the largest batch of ordinary reports."""
    reports = [{**REPORT, "route": f"/api/courses/{{id}}/lessons/{i}"} for i in range(1000)]

    response = await client.post("/api/metrics/http/batch", json={"reports": reports})

    assert response.status_code == 200
    assert response.json()["accepted"] == 1000
