"""Health is a last value with a TTL: a service that stops reporting turns 0 ("stale")."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import AppFactory, CollectorProbe, FakeClock, open_client

pytestmark = pytest.mark.anyio

AUTH = frozenset({("service", "auth")})
STATUS = ("service_health_status", AUTH)
LAST_REPORT = ("service_health_last_report_timestamp_seconds", AUTH)


async def report(http: httpx.AsyncClient, status: str, service: str = "auth") -> None:
    response = await http.post(f"/api/health/{service}", json={"status": status})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "elapsed",
    [
        pytest.param(0, id="at-once"),
        pytest.param(89.9, id="just-before"),
        pytest.param(90, id="at"),
    ],
)
async def test_healthy_within_ttl_reads_one(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock, elapsed: float
) -> None:
    """Up to and including the TTL (90 s by default), a healthy report reads 1."""
    await report(client, "healthy")
    clock.advance(elapsed)

    series = await probe.series()
    assert series[STATUS] == 1
    [service] = (await probe.view())["services"]
    assert service["status"] == "healthy"
    assert service["value"] == 1
    assert service["age_seconds"] == pytest.approx(elapsed)


@pytest.mark.parametrize(
    "elapsed", [pytest.param(90.001, id="just-after"), pytest.param(86_400, id="a-day-after")]
)
async def test_past_ttl_reads_zero_and_stale(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock, elapsed: float
) -> None:
    """Past the TTL the gauge reads 0 and the JSON says stale; the last-report time stays put."""
    await report(client, "healthy")
    reported_at = clock.now
    clock.advance(elapsed)

    series = await probe.series()
    assert series[STATUS] == 0
    assert series[LAST_REPORT] == reported_at
    [service] = (await probe.view())["services"]
    assert service == {
        "service": "auth",
        "status": "stale",
        "value": 0,
        "last_report": reported_at,
        "age_seconds": pytest.approx(elapsed),
    }


async def test_new_report_revives_a_stale_service(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock
) -> None:
    """A report after going stale makes the service read 1 again with the new report time."""
    await report(client, "healthy")
    clock.advance(120)
    assert (await probe.series())[STATUS] == 0

    await report(client, "HEALTHY")

    series = await probe.series()
    assert series[STATUS] == 1
    assert series[LAST_REPORT] == clock.now
    assert (await probe.view())["services"][0]["status"] == "healthy"


@pytest.mark.parametrize("status", ["unhealthy", "degraded", "down"])
async def test_unhealthy_reads_zero_before_and_after_ttl(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock, status: str
) -> None:
    """A non-healthy status reads 0 within the TTL (keeping its name) and 0 (stale) after it."""
    await report(client, status)

    assert (await probe.series())[STATUS] == 0
    assert (await probe.view())["services"][0]["status"] == status

    clock.advance(91)

    assert (await probe.series())[STATUS] == 0
    assert (await probe.view())["services"][0]["status"] == "stale"


async def test_ttl_applies_per_service(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock
) -> None:
    """Only the service that stopped reporting goes stale; one that keeps reporting stays 1."""
    await report(client, "healthy", "auth")
    await report(client, "healthy", "courses")
    for _ in range(4):
        clock.advance(30)
        await report(client, "healthy", "courses")

    series = await probe.series()
    assert series[STATUS] == 0
    assert series[("service_health_status", frozenset({("service", "courses")}))] == 1


async def test_ttl_comes_from_settings(make_app: AppFactory, clock: FakeClock) -> None:
    """health_ttl_seconds sets when a report goes stale, and the JSON view states it."""
    app: FastAPI = make_app(health_ttl_seconds=5)
    async with open_client(app) as http:
        probe = CollectorProbe(http)
        await report(http, "healthy")
        clock.advance(5)
        assert (await probe.series())[STATUS] == 1
        clock.advance(0.5)
        assert (await probe.series())[STATUS] == 0
        assert (await probe.view())["health_ttl_seconds"] == 5


async def test_stale_service_can_be_forgotten(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock
) -> None:
    """A stale service is still known and DELETE removes it for good."""
    await report(client, "healthy")
    clock.advance(1_000)

    assert (await client.delete("/api/health/auth")).json()["forgotten"] is True
    assert await probe.series() == {}


async def test_users_do_not_expire(
    client: httpx.AsyncClient, probe: CollectorProbe, clock: FakeClock
) -> None:
    """Active users are a plain last value: the health TTL does not touch them."""
    assert (await client.post("/api/metrics/users", json={"count": 12})).status_code == 200
    clock.advance(10_000)

    assert (await probe.series())[("active_users_total", frozenset())] == 12
