"""The seed's three writes land in /metrics (a first, in-process check)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import samples

pytestmark = pytest.mark.anyio


async def test_seed_writes_show_in_exposition(client: httpx.AsyncClient) -> None:
    """One HTTP report, one health report and one users report appear with the seed's names."""
    report = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.045}
    assert (await client.post("/api/metrics/http", json=report)).status_code == 200
    assert (await client.post("/api/health/auth", json={"status": "healthy"})).status_code == 200
    assert (await client.post("/api/metrics/users", json={"count": 127})).status_code == 200

    parsed = samples((await client.get("/metrics")).text)
    labels = frozenset({"method": "GET", "route": "/api/courses", "status": "200"}.items())
    assert parsed[("http_request_duration_seconds_count", labels)] == 1
    assert parsed[("http_request_duration_seconds_sum", labels)] == pytest.approx(0.045)
    assert parsed[("service_health_status", frozenset({("service", "auth")}))] == 1
    assert parsed[("active_users_total", frozenset())] == 127
