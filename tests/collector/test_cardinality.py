"""Cardinality caps over HTTP: overflow values, refusals, self-metrics and bounded series."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import AppFactory, CollectorProbe, Samples, open_client

pytestmark = pytest.mark.anyio

COUNT = "http_request_duration_seconds_count"


@pytest.fixture
async def capped(make_app: AppFactory) -> AsyncIterator[CollectorProbe]:
    """A collector capped at 3 routes per service, 2 services and 10 series."""
    app = make_app(max_routes_per_service=3, max_services=2, max_series=10)
    async with open_client(app) as http:
        yield CollectorProbe(http)


def report(
    service: str | None, route: str, status: int = 200, method: str = "GET"
) -> dict[str, Any]:
    body: dict[str, Any] = {"method": method, "route": route, "status": status, "duration": 0.1}
    if service is not None:
        body["service"] = service
    return body


def counts(series: Samples) -> dict[frozenset[tuple[str, str]], float]:
    """``_count`` per label set."""
    return {labels: value for (name, labels), value in series.items() if name == COUNT}


def key(service: str, method: str, route: str, status: int) -> frozenset[tuple[str, str]]:
    return frozenset(
        {"service": service, "method": method, "route": route, "status": str(status)}.items()
    )


async def send(http: httpx.AsyncClient, reports: list[dict[str, Any]]) -> dict[str, int]:
    response = await http.post("/api/metrics/http/batch", json={"reports": reports})
    assert response.status_code == 200
    body: dict[str, int] = response.json()
    return body


async def test_routes_past_the_cap_become_other(capped: CollectorProbe) -> None:
    """A service's fourth and later routes are recorded as route="__other__" and counted."""
    answer = await send(capped.http, [report("a", f"/r{i}") for i in range(5)])

    assert answer == {"accepted": 5, "overflowed": 2}
    assert counts(await capped.series()) == {
        key("a", "GET", "/r0", 200): 1,
        key("a", "GET", "/r1", 200): 1,
        key("a", "GET", "/r2", 200): 1,
        key("a", "GET", "__other__", 200): 2,
    }
    snapshot = await capped.snapshot()
    assert snapshot.count("http", "accepted") == 3
    assert snapshot.count("http", "overflowed") == 2


async def test_admitted_routes_keep_their_label(capped: CollectorProbe) -> None:
    """Once a route is admitted, later reports for it are never folded, even past the cap."""
    await send(capped.http, [report("a", f"/r{i}") for i in range(4)])

    answer = await send(capped.http, [report("a", "/r1"), report("a", "/r1", status=500)])

    assert answer == {"accepted": 2, "overflowed": 0}
    found = counts(await capped.series())
    assert found[key("a", "GET", "/r1", 200)] == 2
    assert found[key("a", "GET", "/r1", 500)] == 1


async def test_route_caps_are_per_service(capped: CollectorProbe) -> None:
    """Each service has its own route budget."""
    answer = await send(capped.http, [report(s, f"/r{i}") for s in ("a", "b") for i in range(3)])

    assert answer == {"accepted": 6, "overflowed": 0}
    assert len(counts(await capped.series())) == 6


async def test_services_past_the_cap_become_other(capped: CollectorProbe) -> None:
    """The third and later services are recorded as service="__other__" and counted."""
    answer = await send(capped.http, [report(s, "/x") for s in ("a", "b", "c", "d")])

    assert answer == {"accepted": 4, "overflowed": 2}
    assert counts(await capped.series()) == {
        key("a", "GET", "/x", 200): 1,
        key("b", "GET", "/x", 200): 1,
        key("__other__", "GET", "/x", 200): 2,
    }
    assert (await capped.snapshot()).count("http", "overflowed") == 2


async def test_series_past_the_cap_fold_keeping_status(capped: CollectorProbe) -> None:
    """Past max_series, reports fold into {__other__, _OTHER, __other__} with their own status."""
    reports = [report("a", f"/r{r}", 200 + s) for r in range(3) for s in range(4)]

    answer = await send(capped.http, reports)

    assert answer == {"accepted": 12, "overflowed": 2}
    found = counts(await capped.series())
    assert len(found) == 12
    assert found[key("__other__", "_OTHER", "__other__", 202)] == 1
    assert found[key("__other__", "_OTHER", "__other__", 203)] == 1
    assert key("a", "GET", "/r2", 202) not in found


async def test_hostile_flood_stays_bounded_and_fully_counted(capped: CollectorProbe) -> None:
    """Whatever is sent: each report counted once, no observation lost, series bounded."""
    statuses = (200, 404, 500)
    reports = [
        report(f"svc{s}", f"/route/{r}", status, method)
        for s, r, status, method in itertools.product(
            range(6), range(8), statuses, ("GET", "POST", "PURGE")
        )
    ]
    answers = [await send(capped.http, reports[i : i + 100]) for i in range(0, len(reports), 100)]

    sent = len(reports)
    assert sum(a["accepted"] for a in answers) == sent
    snapshot = await capped.snapshot()
    accepted, overflowed = snapshot.count("http", "accepted"), snapshot.count("http", "overflowed")
    assert accepted + overflowed == sent
    assert overflowed == sum(a["overflowed"] for a in answers)
    found = counts(snapshot.series)
    assert sum(found.values()) == sent
    assert len(found) <= 10 + len(statuses)
    exposition = (await capped.http.get("/metrics")).text
    assert "otel_metric_overflow" not in exposition


async def test_unnamed_service_counts_as_one_service(capped: CollectorProbe) -> None:
    """Reports naming no service share one service slot, so two named ones overflow the third."""
    answer = await send(capped.http, [report(None, "/x"), report("a", "/x"), report("b", "/x")])

    assert answer == {"accepted": 3, "overflowed": 1}
    assert counts(await capped.series()) == {
        frozenset({("method", "GET"), ("route", "/x"), ("status", "200")}): 1,
        key("a", "GET", "/x", 200): 1,
        key("__other__", "GET", "/x", 200): 1,
    }


@pytest.mark.parametrize(
    ("url", "body", "kind"),
    [
        pytest.param("/api/health/c", {"status": "healthy"}, "health", id="health"),
        pytest.param("/api/metrics/users", {"count": 1, "service": "c"}, "users", id="users"),
    ],
)
async def test_new_service_past_the_cap_is_refused(
    capped: CollectorProbe, url: str, body: dict[str, Any], kind: str
) -> None:
    """Health or users for a third service get 422 naming max_services, change nothing, count."""
    assert (await capped.http.post("/api/health/a", json={"status": "healthy"})).is_success
    assert (
        await capped.http.post("/api/metrics/users", json={"count": 2, "service": "b"})
    ).is_success
    before = await capped.snapshot()

    response = await capped.http.post(url, json=body)

    assert response.status_code == 422
    assert "max_services=2" in response.json()["detail"]
    after = await capped.snapshot()
    assert after.state == before.state
    assert after.count(kind, "rejected") == before.count(kind, "rejected") + 1
    assert after.count(kind, "accepted") == before.count(kind, "accepted")


async def test_known_services_and_unnamed_users_pass_a_full_cap(capped: CollectorProbe) -> None:
    """At the cap, known services still report and users without a service are still accepted."""
    http = capped.http
    assert (await http.post("/api/health/a", json={"status": "healthy"})).is_success
    assert (await http.post("/api/health/b", json={"status": "healthy"})).is_success

    assert (await http.post("/api/health/a", json={"status": "down"})).status_code == 200
    assert (await http.post("/api/metrics/users", json={"count": 3, "service": "b"})).is_success
    assert (await http.post("/api/metrics/users", json={"count": 4})).status_code == 200

    series = await capped.series()
    assert series[("service_health_status", frozenset({("service", "a")}))] == 0
    assert series[("active_users_total", frozenset({("service", "b")}))] == 3
    assert series[("active_users_total", frozenset())] == 4


async def test_forgetting_never_pushes_gauges_into_sdk_overflow(capped: CollectorProbe) -> None:
    """After services are forgotten, gauges never fold into otel_metric_overflow.

    The SDK remembers every attribute set an observable gauge reported, so a forgotten
    service keeps its slot: a newcomer is refused (422) rather than silently mislabelled.
    """
    http = capped.http
    for service in ("a", "b"):
        assert (await http.post(f"/api/health/{service}", json={"status": "healthy"})).is_success
        body = {"count": 1, "service": service}
        assert (await http.post("/api/metrics/users", json=body)).is_success
    assert (await http.post("/api/metrics/users", json={"count": 1})).is_success
    await capped.series()  # the SDK sees a and b
    for service in ("a", "b"):
        assert (await http.delete(f"/api/health/{service}")).json()["forgotten"] is True
    await capped.series()

    refused = await http.post("/api/health/c", json={"status": "healthy"})
    welcome_back = await http.post("/api/health/b", json={"status": "healthy"})

    assert refused.status_code == 422
    assert "max_services=2" in refused.json()["detail"]
    assert welcome_back.status_code == 200
    exposition = (await http.get("/metrics")).text
    assert "otel_metric_overflow" not in exposition
    assert set(await capped.series()) == {
        ("service_health_status", frozenset({("service", "b")})),
        ("service_health_last_report_timestamp_seconds", frozenset({("service", "b")})),
        ("active_users_total", frozenset()),
    }


async def test_the_caps_decide_not_the_sdks_own_limit(make_app: AppFactory) -> None:
    """Past the SDK's default of 2,000 attribute sets per metric (opentelemetry-sdk 1.45), every
    series the caps admit is still its own series: nothing is folded into
    ``otel_metric_overflow``, and the caps' own overflow still works past them."""
    admitted = 2_100
    app = make_app(max_routes_per_service=admitted + 10, max_services=2, max_series=admitted)
    async with open_client(app) as http:
        probe = CollectorProbe(http)
        for start in range(0, admitted, 700):
            await send(http, [report("a", f"/r{i}") for i in range(start, start + 700)])
        answer = await send(http, [report("a", f"/late{i}") for i in range(3)])
        scraped = await probe.series()
        text = (await http.get("/metrics")).text

    assert answer == {"accepted": 3, "overflowed": 3}
    assert "otel_metric_overflow" not in text
    recorded = counts(scraped)
    assert sum(1 for labels in recorded if ("service", "a") in labels) == admitted
    assert recorded[key("__other__", "_OTHER", "__other__", 200)] == 3
