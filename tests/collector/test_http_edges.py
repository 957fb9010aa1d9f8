"""The collector's HTTP edges: bodies declared as anything but JSON get 415, every error has
the same ``detail``/``message`` shape, and CORS is off unless origins are named."""

from __future__ import annotations

import json

import httpx
import pytest

from otelkit_collector.settings import CollectorSettings
from tests.conftest import AppFactory, CollectorProbe, open_client

pytestmark = pytest.mark.anyio

REPORT = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.1}
BODY = json.dumps(REPORT).encode()
ORIGIN = "https://status.example.com"
TOKEN = "s3cret"


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text"),
        pytest.param("application/x-www-form-urlencoded", id="curl-default-form"),
        pytest.param("multipart/form-data; boundary=x", id="multipart"),
        pytest.param("application/xml", id="xml"),
        pytest.param("application/jsonp", id="json-lookalike"),
    ],
)
@pytest.mark.parametrize(
    ("path", "kind"),
    [
        pytest.param("/api/metrics/http", "http", id="http"),
        pytest.param("/api/metrics/http/batch", "http", id="batch"),
        pytest.param("/api/health/courses", "health", id="health"),
        pytest.param("/api/metrics/users", "users", id="users"),
    ],
)
async def test_a_body_declared_as_another_type_gets_415_naming_json(
    client: httpx.AsyncClient, content_type: str, path: str, kind: str
) -> None:
    """415 names application/json and the type sent; nothing changes; it counts as rejected."""
    probe = CollectorProbe(client)
    before = await probe.snapshot()
    response = await client.post(path, content=BODY, headers={"content-type": content_type})

    assert response.status_code == 415
    body = response.json()
    assert body["message"] == body["detail"]
    assert "application/json" in body["detail"]
    assert repr(content_type.split(";")[0]) in body["detail"]
    assert response.headers["accept"] == "application/json"
    after = await probe.snapshot()
    assert after.state == before.state
    assert after.count(kind, "rejected") == before.count(kind, "rejected") + 1


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json", id="json"),
        pytest.param("Application/JSON; charset=utf-8", id="json-any-case-with-charset"),
        pytest.param("application/vnd.otelkit+json", id="structured-json"),
        pytest.param(None, id="none-read-as-json"),
    ],
)
async def test_json_bodies_are_accepted(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    """JSON, however it is spelled, and a body with no declared type are read as JSON."""
    headers = {"content-type": content_type} if content_type is not None else {}
    request = client.build_request("POST", "/api/metrics/http", content=BODY, headers=headers)
    if content_type is None:
        request.headers.pop("content-type", None)
    assert ("content-type" in request.headers) is (content_type is not None)
    response = await client.send(request)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("overrides", "method", "path", "body", "status"),
    [
        pytest.param({"max_body_bytes": 1024}, "POST", "/api/metrics/http", b"[" + b" " * 2000,
                     413, id="413-too-large"),
        pytest.param({"token": TOKEN}, "POST", "/api/metrics/http", BODY, 401, id="401-no-token"),
        pytest.param({}, "GET", "/api/nowhere", None, 404, id="404"),
        pytest.param({}, "PUT", "/api/metrics/http", BODY, 405, id="405"),
        pytest.param({}, "POST", "/api/metrics/http", b"{", 422, id="422-unparsable"),
        pytest.param({}, "POST", "/api/metrics/http", b"{}", 422, id="422-missing-fields"),
        pytest.param({}, "POST", "/api/metrics/http", BODY, 415, id="415"),
    ],
)  # fmt: skip
async def test_every_error_has_detail_and_message(
    make_app: AppFactory,
    overrides: dict[str, object],
    method: str,
    path: str,
    body: bytes | None,
    status: int,
) -> None:
    """Whatever refused it, the error body is JSON with ``detail`` and a string ``message``."""
    content_type = "text/plain" if status == 415 else "application/json"
    async with open_client(make_app(**overrides)) as http:
        response = await http.request(
            method, path, content=body, headers={"content-type": content_type}
        )
    assert response.status_code == status
    payload = response.json()
    assert set(payload) == {"detail", "message"}
    assert isinstance(payload["message"], str)
    assert payload["message"]


async def preflight(http: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await http.options(
        "/api/metrics/http",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    """Without OTELKIT_CORS_ORIGINS, no answer lets a browser page on another origin read it."""
    response = await preflight(client, ORIGIN)
    assert "access-control-allow-origin" not in response.headers
    posted = await client.post("/api/metrics/http", json=REPORT, headers={"origin": ORIGIN})
    assert posted.status_code == 200
    assert "access-control-allow-origin" not in posted.headers


async def test_named_origins_may_push_from_a_browser(make_app: AppFactory) -> None:
    """A named origin's preflight passes without the token; its requests, refusals included,
    carry the CORS headers; the token is still required on writes."""
    app = make_app(cors_origins=(ORIGIN,), token=TOKEN)
    async with open_client(app) as http:
        allowed = await preflight(http, ORIGIN)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert {"authorization", "content-type"} <= {
            h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")
        }

        unauthorised = await http.post("/api/metrics/http", json=REPORT, headers={"origin": ORIGIN})
        assert unauthorised.status_code == 401
        assert unauthorised.headers["access-control-allow-origin"] == ORIGIN

        pushed = await http.post(
            "/api/metrics/http",
            json=REPORT,
            headers={"origin": ORIGIN, "authorization": f"Bearer {TOKEN}"},
        )
        assert pushed.status_code == 200
        assert pushed.headers["access-control-allow-origin"] == ORIGIN

        other = await preflight(http, "https://evil.example.com")
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("https://a.example.com", ("https://a.example.com",), id="one"),
        pytest.param(" https://a.example.com/ , http://localhost:3000", (
            "https://a.example.com", "http://localhost:3000"), id="list-trimmed"),
        pytest.param("*", ("*",), id="any"),
    ],
)  # fmt: skip
def test_cors_origins_from_the_environment(value: str, expected: tuple[str, ...]) -> None:
    """OTELKIT_CORS_ORIGINS is a comma-separated list of origins."""
    settings = CollectorSettings.from_env(environ={"OTELKIT_CORS_ORIGINS": value})
    assert settings.cors_origins == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a.example.com", id="no-scheme"),
        pytest.param("https://a.example.com/page", id="with-path"),
        pytest.param("ftp://a.example.com", id="other-scheme"),
    ],
)
def test_a_malformed_origin_is_refused_naming_the_variable(value: str) -> None:
    """A value that is not an origin fails at start, naming OTELKIT_CORS_ORIGINS."""
    with pytest.raises(ValueError, match="OTELKIT_CORS_ORIGINS"):
        CollectorSettings.from_env(environ={"OTELKIT_CORS_ORIGINS": value})
