"""The status page at / and /services/{name}: what it shows, that it agrees with /api/metrics and
/metrics, that hostile names stay text, and the headers it is served with."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from otelkit_collector.settings import CollectorSettings
from tests.collector.status_helpers import Page, Row, close, reference_quantile
from tests.conftest import AppFactory, FakeClock, open_client

pytestmark = pytest.mark.anyio

HOSTILE = [
    pytest.param("<script>window.__pwned=1</script>", id="script-tag"),
    pytest.param('<img src=x onerror="window.__pwned=1">', id="img-onerror"),
    pytest.param('"><svg onload="window.__pwned=1">', id="attribute-breaker"),
    pytest.param("'><a href='javascript:alert(1)'>x", id="single-quote-breaker"),
    pytest.param("</script><script>window.__pwned=1</script>", id="script-close-in-json"),
    pytest.param("<svg><script>window.__pwned=1</script></svg>", id="svg-script"),
    pytest.param("</title><script>window.__pwned=1</script>", id="svg-title-breaker"),
    pytest.param("&lt;b&gt; &amp; &#x3c;", id="pre-escaped-entities"),
    pytest.param("javascript:window.__pwned=1", id="javascript-url"),
]


def http_report(service: str | None, route: str, status: int, duration: float) -> dict[str, Any]:
    report: dict[str, Any] = {"method": "GET", "route": route, "status": status}
    if service is not None:
        report["service"] = service
    return {**report, "duration": duration}


async def push(client: httpx.AsyncClient, reports: list[dict[str, Any]]) -> None:
    response = await client.post("/api/metrics/http/batch", json={"reports": reports})
    assert response.status_code == 200, response.text


async def health(client: httpx.AsyncClient, service: str, status: str) -> None:
    response = await client.post(f"/api/health/{quote(service, safe='')}", json={"status": status})
    assert response.status_code == 200, response.text


async def users(client: httpx.AsyncClient, service: str, count: int) -> None:
    response = await client.post("/api/metrics/users", json={"service": service, "count": count})
    assert response.status_code == 200, response.text


def tick(app: FastAPI, clock: FakeClock, seconds: float = 10.0) -> None:
    clock.advance(seconds)
    app.state.status.take_tick()


async def page(client: httpx.AsyncClient, path: str = "/") -> Page:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return Page(response.text)


def service_rows(body: Page) -> dict[str, Row]:
    return {row.cells[0]: row for row in body.rows_of("service")}


async def test_every_service_shows_its_health_word_and_those_needing_attention_come_first(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Stale, down, unhealthy, degraded, unknown, healthy: each word is on the page (readable
    without colour), in that order."""
    await health(client, "e-gone", "healthy")
    clock.advance(91)  # past the 90 s TTL
    await health(client, "a-fine", "healthy")
    await health(client, "b-slow", "degraded")
    await health(client, "c-sick", "unhealthy")
    await health(client, "d-off", "down")
    await users(client, "f-quiet", 3)
    rows = (await page(client)).rows_of("service")
    assert [(r.cells[0], r.cells[1], r.attrs["data-health"]) for r in rows] == [
        ("e-gone", "stale", "stale"),
        ("d-off", "down", "down"),
        ("c-sick", "unhealthy", "unhealthy"),
        ("b-slow", "degraded", "degraded"),
        ("f-quiet", "unknown", "unknown"),
        ("a-fine", "healthy", "healthy"),
    ]
    assert rows[0].cells[2] == "1 min"  # the stale one's last report, 91 s ago


async def test_an_empty_collector_says_how_to_fill_the_page(client: httpx.AsyncClient) -> None:
    """Before any report, the page says what to do instead of showing an empty table."""
    body = await page(client)
    assert not body.rows_of("service")
    assert "No service has reported yet" in body.all_text()


async def test_service_figures_agree_with_api_metrics_and_metrics(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Users, health and age match /api/metrics; requests, 5xx ratio, p50 and p95 match the
    counts and buckets /metrics exposes for the same state (all of it inside the window)."""
    durations = [0.003, 0.02, 0.02, 0.07, 0.3, 0.3, 0.6, 1.5, 4.0, 12.0]
    await push(client, [http_report("shop", "/a/{id}", 200, d) for d in durations])
    await push(client, [http_report("shop", "/b", 503, 0.04) for _ in range(3)])
    await push(client, [http_report(None, "/c", 200, 0.01)])
    await health(client, "shop", "degraded")
    await users(client, "shop", 42)
    tick(app, clock)
    clock.advance(4)

    row = service_rows(await page(client))["shop"]
    api = (await client.get("/api/metrics")).json()
    exposition = (await client.get("/metrics")).text
    shop_health = next(s for s in api["services"] if s["service"] == "shop")
    shop_users = next(u for u in api["active_users"] if u["service"] == "shop")
    assert row.cells[1] == shop_health["status"] == "degraded"
    assert row.cells[2] == f"{shop_health['age_seconds']:.0f} s" == "14 s"
    users_shown, rate, errors, p50, p95 = (v[0] if v else None for v in row.values[3:8])
    assert users_shown == shop_users["count"] == 42

    buckets = scraped_buckets(exposition, service="shop")
    total = scraped_count(exposition, service="shop")
    five_xx = scraped_count(exposition, service="shop", five_xx=True)
    assert buckets[-1] == total
    assert total == 13
    assert five_xx == 3
    assert close(rate, total / 10.0)
    assert close(errors, five_xx / total)
    assert close(p50, reference_quantile(0.5, buckets))
    assert close(p95, reference_quantile(0.95, buckets))

    status = (await client.get("/api/status")).json()
    shop = next(s for s in status["services"] if s["service"] == "shop")
    assert shop["window"]["requests"] == total
    assert close(shop["window"]["p95_seconds"], p95)
    unnamed = next(s for s in status["services"] if s["service"] is None)
    assert [r["route"] for r in unnamed["routes"]] == ["/c"]


async def test_route_rows_agree_with_metrics_and_draw_their_chart(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Each route's requests, 5xx ratio, p50 and p95 match its buckets on /metrics, and its
    chart is drawn once two ticks exist."""
    await push(client, [http_report("shop", "/a", 200, d) for d in (0.02, 0.2, 2.0)])
    tick(app, clock)
    await push(client, [http_report("shop", "/a", 500, 0.08)])
    tick(app, clock)
    body = await page(client, "/services/shop")
    (row,) = body.rows_of("route")
    requests, rate, errors, p50, p95 = (v[0] if v else None for v in row.values[2:7])
    buckets = scraped_buckets((await client.get("/metrics")).text, service="shop")
    assert requests == buckets[-1] == 4
    assert close(rate, 4 / 20)
    assert close(errors, 1 / 4)
    assert close(p50, reference_quantile(0.5, buckets))
    assert close(p95, reference_quantile(0.95, buckets))
    polylines = [e for e in body.elements if e.tag == "polyline"]
    assert [e.attrs["class"] for e in polylines] == ["line-rate", "line-p95"]
    for line in polylines:
        assert len((line.attrs["points"] or "").split()) == 2


async def test_the_home_page_names_each_services_routes_and_links_its_page(
    client: httpx.AsyncClient,
) -> None:
    """The home page lists every route of a service and links to the service's own page."""
    await push(
        client,
        [http_report("shop", route, 200, 0.01) for route in ("/a", "/b/{id}", "/c")]
        + [http_report("a/b", "/x", 200, 0.01)],
    )
    rows = service_rows(await page(client))
    assert "3 routes" in rows["shop"].cells[-1]
    for route in ("GET /a", "GET /b/{id}", "GET /c"):
        assert route in rows["shop"].cells[-1]
    assert rows["shop"].links == ["/services/shop"]
    assert rows["a/b"].links == ["/services/a%2Fb"]
    detail = await page(client, rows["a/b"].links[0])
    assert [r.cells[1] for r in detail.rows_of("route")] == ["/x"]


@pytest.mark.parametrize("name", [".", ".."])
async def test_a_service_named_like_a_dot_segment_is_reached_by_query(
    client: httpx.AsyncClient, name: str
) -> None:
    """Browsers rewrite /services/.. to /; such names link with ?name= instead."""
    await push(client, [http_report(name, "/x", 200, 0.01)])
    (link,) = service_rows(await page(client))[name].links
    assert link == f"/services/?name={quote(name, safe='')}"
    detail = await page(client, link)
    assert detail.rows_of("route")[0].cells[1] == "/x"


async def test_reports_without_a_service_have_their_own_page(client: httpx.AsyncClient) -> None:
    """Reports that named no service are listed as such, at /services/."""
    await push(client, [http_report(None, "/x", 200, 0.01)])
    row = service_rows(await page(client))["(no service)"]
    assert row.links == ["/services/"]
    assert (await page(client, "/services/")).rows_of("route")[0].cells[1] == "/x"


async def test_an_unknown_service_is_a_404_page_with_the_name_as_text(
    client: httpx.AsyncClient,
) -> None:
    """A service the collector never heard of answers 404, escaped, with the page's headers."""
    response = await client.get("/services/" + quote("<b>nope</b>", safe=""))
    assert response.status_code == 404
    assert "&lt;b&gt;nope&lt;/b&gt;" in response.text
    assert "<b>" not in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("payload", HOSTILE)
async def test_hostile_names_stay_text_everywhere_they_appear(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock, payload: str
) -> None:
    """A service and a route named with markup add no element, attribute or script to either
    page; each shows exactly as typed (in the table, the route list, the chart titles)."""
    await health(client, payload, "unhealthy")
    await users(client, payload, 1)
    await push(client, [http_report(payload, payload, 200, 0.01)])
    tick(app, clock)
    await push(client, [http_report(payload, payload, 500, 0.2)])
    tick(app, clock)
    home = await client.get("/")
    row = service_rows(Page(home.text))[payload]
    (link,) = row.links
    detail = await client.get(link)
    assert detail.status_code == 200
    for body in (Page(home.text), Page(detail.text)):
        tags = {e.tag for e in body.elements}
        assert tags <= SAFE_TAGS, tags - SAFE_TAGS
        scripts = [e for e in body.elements if e.tag == "script"]
        assert [s.attrs for s in scripts] == [{"src": "/assets/status.js", "defer": None}]
        assert not "".join(body.script_text)
        for element in body.elements:
            assert not any(name.startswith("on") for name in element.attrs), element
            for name in ("href", "src"):
                assert not (element.attrs.get(name) or "/").lower().startswith("javascript:")
        assert payload in body.all_text()
    titles = [e for e in Page(detail.text).elements if e.attrs.get("role") == "img"]
    assert titles
    assert all(payload in (t.attrs.get("aria-label") or "") for t in titles)


SAFE_TAGS = {
    *("html", "head", "meta", "title", "link", "script", "noscript", "body", "header", "nav"),
    *("a", "p", "main", "h1", "h2", "table", "thead", "tbody", "tr", "th", "td", "caption"),
    *("span", "data", "time", "details", "summary", "ul", "li", "code", "section", "div"),
    *("dl", "dt", "dd", "svg", "polyline", "line", "text"),
}
"""Every element the page itself writes: a payload that became markup adds another."""


async def test_pages_and_assets_are_served_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    """Scripts only from the collector (no inline), no framing, no sniffing, no referrer."""
    await push(client, [http_report("shop", "/a", 200, 0.01)])
    for path in ("/", "/services/shop", "/assets/status.js", "/assets/status.css"):
        response = await client.get(path)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["script-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert (
        (await client.get("/assets/status.js"))
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert (await client.get("/assets/nothing.js")).status_code == 404


async def test_nothing_on_the_page_comes_from_another_host(client: httpx.AsyncClient) -> None:
    """Every address the page, its style and its script load is the collector's own."""
    await push(client, [http_report("shop", "/a", 200, 0.01)])
    for path in ("/", "/services/shop"):
        for element in (await page(client, path)).elements:
            for name in ("src", "href"):
                value = element.attrs.get(name)
                if value is not None and element.tag != "a":
                    assert value.startswith("/"), value
                    assert not value.startswith("//"), value
    css = (await client.get("/assets/status.css")).text
    js = (await client.get("/assets/status.js")).text
    assert "url(" not in css
    assert "@import" not in css
    assert "http://" not in js
    assert "https://" not in js


async def test_the_page_is_open_and_read_only_while_writes_need_the_token(
    make_app: AppFactory,
) -> None:
    """With a token set, the page, its assets and /api/status need none; writes still do."""
    async with open_client(make_app(token="s3cret")) as client:
        for path in ("/", "/services/", "/api/status", "/api/status/stamp", "/assets/status.js"):
            assert (await client.get(path)).status_code in {200, 404}, path
        assert (await client.get("/")).status_code == 200
        refused = await client.post("/api/health/x", json={"status": "healthy"})
        assert refused.status_code == 401


async def test_the_stamp_changes_with_what_the_page_shows_and_only_then(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A report, a tick and a service turning stale each change the stamp; time alone does
    not."""

    async def stamp() -> str:
        response = await client.get("/api/status/stamp")
        assert response.headers["cache-control"] == "no-store"
        return str(response.json()["stamp"])

    first = await stamp()
    clock.advance(1)
    assert await stamp() == first
    await health(client, "shop", "healthy")
    after_report = await stamp()
    assert after_report != first
    tick(app, clock)
    after_tick = await stamp()
    assert after_tick != after_report
    clock.advance(100)
    assert await stamp() != after_tick


async def test_api_status_lists_what_the_page_lists_in_the_same_order(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The JSON view is the page's data: same services, same order, same words."""
    await health(client, "old", "healthy")
    clock.advance(95)
    await health(client, "new", "healthy")
    await push(client, [http_report("web", "/", 200, 0.01)])
    rows = (await page(client)).rows_of("service")
    status = (await client.get("/api/status")).json()
    assert [(s["service"], s["health"]) for s in status["services"]] == [
        (r.cells[0], r.cells[1]) for r in rows
    ]
    assert status["collector"]["reports"]["accepted"] == 3


async def test_the_collector_section_shows_reports_caps_and_version(
    make_app: AppFactory,
) -> None:
    """Accepted, overflowed, rejected and unauthorized reports, series and services against
    their caps, and the version."""
    async with open_client(make_app(max_series=1)) as client:
        await push(client, [http_report("a", "/x", 200, 0.01), http_report("a", "/y", 200, 0.01)])
        assert (await client.post("/api/metrics/users", json={"count": -1})).status_code == 422
        body = await page(client)
    outcomes = ("accepted", "overflowed", "rejected", "unauthorized")
    reports = {
        r.cells[0]: r.values[1][0] for r in body.rows if r.cells[:1] in ([o] for o in outcomes)
    }
    text = body.all_text()
    assert reports == {"accepted": 1, "overflowed": 1, "rejected": 1, "unauthorized": 0}
    assert "1 of 1" in text
    assert "Services with HTTP series1 of 1,000" in text
    assert re.search(r"Version\d+\.\d+", text)


def scraped_buckets(exposition: str, *, service: str) -> list[float]:
    """The cumulative bucket counts of ``service``'s series on /metrics, summed over routes
    and statuses, ``+Inf`` last."""
    totals: dict[float, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("service") == service:
                le = float(sample.labels["le"])
                totals[le] = totals.get(le, 0.0) + sample.value
    return [totals[le] for le in sorted(totals)]


def scraped_count(exposition: str, *, service: str, five_xx: bool = False) -> float:
    """``service``'s requests on /metrics (only 5xx ones, with ``five_xx``)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "http_request_duration_seconds_count"
        and sample.labels.get("service") == service
        and (not five_xx or sample.labels["status"].startswith("5"))
    )


def test_history_settings_are_bounded_and_named() -> None:
    """A history longer than 720 ticks (memory grows with ticks) is refused by name; the
    variables are read from the environment."""
    with pytest.raises(ValueError, match=r"OTELKIT_HISTORY_SECONDS.*at most 720 ticks, got 900"):
        CollectorSettings(history_seconds=900, history_resolution_seconds=1)
    with pytest.raises(ValueError, match=r"history_resolution_seconds must be >= 0\.01"):
        CollectorSettings(history_resolution_seconds=0.001)
    settings = CollectorSettings.from_env(
        environ={"OTELKIT_HISTORY_SECONDS": "60", "OTELKIT_HISTORY_RESOLUTION_SECONDS": "2"}
    )
    assert (settings.history_ticks, settings.window_ticks) == (30, 30)
    assert (CollectorSettings().history_ticks, CollectorSettings().window_ticks) == (90, 30)
