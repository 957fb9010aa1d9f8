"""/docs and /redoc work offline: every script, style and icon they load is served by the
collector itself, and nothing is fetched from another host."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.anyio

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
ANY_HOST = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        pytest.param("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}, id="swagger-ui"),
        pytest.param("/redoc", {"redoc.standalone.js"}, id="redoc"),
    ],
)
async def test_docs_page_loads_only_from_the_collector(
    client: httpx.AsyncClient, page: str, assets: set[str]
) -> None:
    """The page names no other host, and each asset it loads is served here, non-empty."""
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert ANY_HOST.findall(response.text) == []

    urls = ASSET.findall(response.text)
    assert {url.rsplit("/", 1)[-1] for url in urls} >= assets
    for url in urls:
        assert url.startswith("/"), url
        served = await client.get(url)
        assert served.status_code == 200, url
        assert len(served.content) > 1_000, url


async def test_the_openapi_document_the_docs_read_is_served(client: httpx.AsyncClient) -> None:
    """The schema the pages render comes from the collector too."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "/api/metrics/http" in response.json()["paths"]
