"""The status page in a real headless Chromium, served by a real collector process: what a
person sees (health words, order, figures, routes, charts), the live refresh, the page with
scripts off, hostile service and route names, and screenshots left for people to look at.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from tests.e2e.browser import console_errors, running_browser, save_screenshot
from tests.e2e.conftest import StartCollector
from tests.e2e.servers import ManagedProcess, poll

HISTORY_ENV = {"OTELKIT_HISTORY_RESOLUTION_SECONDS": "0.5", "OTELKIT_HISTORY_SECONDS": "60"}
"""A tick every half second, so figures and charts fill within a second or two."""
HEALTH_TTL_SECONDS = 2
HEARTBEAT_SECONDS = 0.25
REFRESH_TIMEOUT_SECONDS = 20.0
"""The page asks for changes every 5 s; a refresh cycle well within this."""

CHECKOUT_TRAFFIC = (
    # (method, route, status, duration, how many)
    ("GET", "/api/orders", 200, 0.04, 16),
    ("GET", "/api/orders", 503, 0.9, 4),
    ("POST", "/api/orders/{order_id}", 201, 0.12, 10),
)
LEDGER_TRAFFIC = (("GET", "/api/ledger", 200, 0.01, 5),)
CHECKOUT_ROUTES = ["GET /api/orders", "POST /api/orders/{order_id}"]

PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '"><svg onload="window.__pwned=1">',
    "</script><script>window.__pwned=1</script>",
    "<svg><script>window.__pwned=1</script></svg>",
    "javascript:window.__pwned=1",
)
"""Names that would run script if any reached the page as markup or as a link."""

Ready = Callable[[dict[str, dict[str, Any]], dict[str, Any]], bool]
"""A condition on ``/api/status``: (services by name, the whole view)."""

REFRESH_STATE = re.compile(r"^live · updated \d{2}:\d{2}:\d{2} UTC$")
AGE = re.compile(r"^\d+ s$")
FIGURE = re.compile(r"^\d+(\.\d+)? (ms|s)$")
IN_USE = re.compile(r"^[\d,]+ of [\d,]+$")

_CELLS = """
const cellsOf = (row, heads) => Object.fromEntries(Array.from(row.children, (cell, i) => {
  const data = cell.querySelector("data");
  return [heads[i], {text: cell.innerText.trim(), value: data ? data.getAttribute("value") : null}];
}));
const headsOf = (table) => Array.from(
  document.querySelectorAll(table + " thead th"), (th) => th.innerText.trim());
"""
READ_HOME = (
    _CELLS
    + """
const heads = headsOf("table.services");
return Array.from(document.querySelectorAll("table.services tbody tr.service"), (row) => {
  const link = row.querySelector("th a");
  const spark = row.querySelector("svg.spark polyline");
  return {
    name: link.innerText, href: link.href, health: row.dataset.health,
    cells: cellsOf(row, heads),
    routes: Array.from(row.querySelectorAll("details li"), (item) => item.textContent),
    spark: spark ? spark.getAttribute("points") : null,
  };
});
"""
)
"""Every service row as a person reads it, in one call: the page swaps its rows every few
seconds, so element-by-element reads could straddle a swap."""
READ_SERVICE = (
    _CELLS
    + """
const heads = headsOf("table.routes");
const health = document.querySelector("dl.facts .health");
return {
  title: document.title,
  heading: document.querySelector("main h1").innerText,
  health: health ? health.innerText : null,
  routes: Array.from(document.querySelectorAll("table.routes tr.route"), (row) => ({
    cells: cellsOf(row, heads),
    lines: Array.from(row.querySelectorAll("svg.chart polyline"), (line) => {
      const box = line.getBBox();
      return {kind: line.getAttribute("class"), points: line.getAttribute("points"),
              width: box.width, height: box.height};
    }),
  })),
};
"""
)
READ_SAFETY = """
return {
  pwned: typeof window.__pwned,
  text: document.body.innerText,
  title: document.title,
  scripts: Array.from(document.scripts, (script) => script.getAttribute("src")),
  injected: document.querySelectorAll(
    "[onload], [onerror], img, iframe, object, embed, svg script").length,
  scriptLinks: Array.from(document.links).filter((a) => a.protocol === "javascript:").length,
  refreshes: Number(document.documentElement.dataset.refreshes || 0),
};
"""
READ_REFRESH = """
return {
  names: Array.from(document.querySelectorAll("table.services tr.service th a"),
                    (link) => link.innerText),
  refreshes: Number(document.documentElement.dataset.refreshes || 0),
  sameDocument: window.__sameDocument === true,
  state: document.getElementById("refresh-state").textContent,
};
"""

READ_COLLECTOR = """
const section = document.querySelector("section.collector");
return {
  reports: Object.fromEntries(Array.from(section.querySelectorAll("table.reports tr"), (row) =>
    [row.querySelector("th").innerText, Number(row.querySelector("data").getAttribute("value"))])),
  facts: Object.fromEntries(Array.from(section.querySelectorAll("dl.facts dt"), (term) =>
    [term.innerText, term.nextElementSibling.innerText])),
};
"""


@dataclass(frozen=True)
class Cell:
    """One table cell as shown (``text``) and, for a figure, its exact value."""

    text: str
    value: float | None


@dataclass(frozen=True)
class ServiceRow:
    """One row of the home page's services table."""

    name: str
    href: str
    health: str
    cells: dict[str, Cell]
    routes: list[str]
    spark: str | None


@dataclass(frozen=True)
class ChartLine:
    """One ``polyline`` of a route's chart, with its rendered bounding box."""

    kind: str
    points: str
    width: float
    height: float


@dataclass(frozen=True)
class RouteRow:
    """One row of a service page's routes table."""

    cells: dict[str, Cell]
    lines: list[ChartLine]


@dataclass(frozen=True)
class ServicePage:
    """A service page as a person reads it."""

    title: str
    heading: str
    health: str | None
    routes: list[RouteRow]


def _cells(raw: Mapping[str, Any]) -> dict[str, Cell]:
    return {
        head: Cell(
            text=cell["text"], value=float(cell["value"]) if cell["value"] is not None else None
        )
        for head, cell in raw.items()
    }


def read_home(driver: webdriver.Chrome) -> list[ServiceRow]:
    """The services table, top to bottom."""
    rows: list[dict[str, Any]] = driver.execute_script(READ_HOME)
    return [
        ServiceRow(
            name=row["name"],
            href=row["href"],
            health=row["health"],
            cells=_cells(row["cells"]),
            routes=list(row["routes"]),
            spark=row["spark"],
        )
        for row in rows
    ]


def read_service(driver: webdriver.Chrome) -> ServicePage:
    """The service page shown in ``driver``."""
    page: dict[str, Any] = driver.execute_script(READ_SERVICE)
    return ServicePage(
        title=page["title"],
        heading=page["heading"],
        health=page["health"],
        routes=[
            RouteRow(
                cells=_cells(route["cells"]),
                lines=[ChartLine(**line) for line in route["lines"]],
            )
            for route in page["routes"]
        ],
    )


def by_name(rows: Sequence[ServiceRow]) -> dict[str, ServiceRow]:
    return {row.name: row for row in rows}


def push_traffic(
    http: httpx.Client, service: str, traffic: Sequence[tuple[str, str, int, float, int]]
) -> None:
    reports = [
        {"service": service, "method": method, "route": route, "status": status, "duration": d}
        for method, route, status, d, times in traffic
        for _ in range(times)
    ]
    response = http.post("/api/metrics/http/batch", json={"reports": reports})
    assert response.status_code == 200, response.text


def status_view(collector: ManagedProcess) -> dict[str, Any]:
    view: dict[str, Any] = httpx.get(f"{collector.url}/api/status", timeout=5).json()
    return view


def wait_for_status(
    collector: ManagedProcess, ready: Ready, *, what: str, timeout: float = 15.0
) -> dict[str, Any]:
    """Poll ``/api/status`` until ``ready(services by name, view)`` holds; return the view."""

    def probe() -> dict[str, Any] | None:
        view = status_view(collector)
        services = {s["service"]: s for s in view["services"]}
        return view if ready(services, view) else None

    return poll(
        probe,
        timeout=timeout,
        interval=0.2,
        what=what,
        diagnostics=lambda: f"{status_view(collector)}\n{collector.output()}",
    )


def wait_for_ticks(collector: ManagedProcess, ticks: int) -> None:
    wait_for_status(
        collector, lambda _, view: view["collector"]["ticks"] >= ticks, what=f"{ticks} ticks"
    )


def follow_link(driver: webdriver.Chrome, text: str, path: str) -> None:
    """Click the link reading ``text`` and wait for ``path`` to load (the page may swap its
    content between finding the link and clicking it: find it again then)."""

    def click() -> bool | None:
        try:
            driver.find_element(By.LINK_TEXT, text).click()
        except StaleElementReferenceException:
            return None
        return True

    poll(click, timeout=10, what=f"a clickable link {text!r}")
    poll(
        lambda: True if urlsplit(driver.current_url).path == path else None,
        timeout=10,
        what=f"{path} to load after clicking {text!r}",
    )


def open_route_lists(driver: webdriver.Chrome) -> None:
    """Click every service's route list open (again when the page swapped it meanwhile)."""
    closed = "table.services details:not([open]) > summary"

    def click_all() -> bool | None:
        try:
            for summary in driver.find_elements(By.CSS_SELECTOR, closed):
                summary.click()
        except StaleElementReferenceException:
            return None
        return True if not driver.find_elements(By.CSS_SELECTOR, closed) else None

    poll(click_all, timeout=10, what="every route list open")


def wait_until_live(driver: webdriver.Chrome) -> None:
    """Wait for the page's script to have started (it says so in ``#refresh-state``)."""
    poll(
        lambda: (
            True if REFRESH_STATE.match(driver.find_element(By.ID, "refresh-state").text) else None
        ),
        timeout=10,
        what="status.js to start",
    )


def assert_chart_drawn(route: RouteRow) -> None:
    """Both lines of ``route``'s chart have points and a rendered, non-empty box."""
    assert [line.kind for line in route.lines] == ["line-rate", "line-p95"]
    for line in route.lines:
        assert len(line.points.split()) >= 2, line
        assert line.width > 0, line
        assert line.height > 0, line


def assert_inert(driver: webdriver.Chrome, where: str) -> dict[str, Any]:
    """Nothing pushed ran or became an element on the page in ``driver``: only the collector's
    own script, no event-handler attribute, image, frame, SVG script or ``javascript:`` link.
    Return what was read (visible text, refresh count)."""
    safety: dict[str, Any] = driver.execute_script(READ_SAFETY)
    assert safety["pwned"] == "undefined", where
    assert safety["scripts"] == ["/assets/status.js"], where
    assert safety["injected"] == 0, where
    assert safety["scriptLinks"] == 0, where
    return safety


class Heartbeat:
    """Re-reports each service's health every ``HEARTBEAT_SECONDS`` from a thread, as a live
    service does; a service dropped from it goes stale once the TTL passes."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._statuses: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.errors: list[Exception] = []
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def report(self, service: str, status: str) -> None:
        """Report now, and from now on every beat."""
        with self._lock:
            self._statuses[service] = status
        response = httpx.post(
            f"{self._url}/api/health/{quote(service, safe='')}", json={"status": status}, timeout=5
        )
        assert response.status_code == 200, response.text

    def drop(self, service: str) -> None:
        """Stop reporting ``service``."""
        with self._lock:
            del self._statuses[service]

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=5) as http:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                with self._lock:
                    statuses = dict(self._statuses)
                for service, status in statuses.items():
                    try:
                        response = http.post(
                            f"/api/health/{quote(service, safe='')}", json={"status": status}
                        )
                        response.raise_for_status()
                    except httpx.HTTPError as exc:
                        self.errors.append(exc)
                        return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def heartbeat(collector: ManagedProcess) -> Iterator[Heartbeat]:
    """A running :class:`Heartbeat`, stopped on exit; its failures fail the test."""
    beat = Heartbeat(collector.url)
    beat.start()
    try:
        yield beat
    finally:
        beat.stop()
    assert beat.errors == []


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with scripts on; quit at teardown."""
    with running_browser(tmp_path) as driver:
        yield driver


@pytest.fixture
def browser_without_scripts(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with JavaScript turned off for every page; quit at teardown."""
    with running_browser(tmp_path, scripts=False) as driver:
        yield driver


def test_fleet_health_order_figures_routes_and_charts(
    start_collector: StartCollector, browser: webdriver.Chrome
) -> None:
    """Each service shows its health word, figures and routes; stale and unhealthy rows come
    before healthy ones; the healthy service's page draws both lines of each route's chart."""
    collector = start_collector(
        {**HISTORY_ENV, "OTELKIT_HEALTH_TTL_SECONDS": str(HEALTH_TTL_SECONDS)}
    )
    # Traffic after the first tick: every chart then has a tick without it, so no line is flat.
    wait_for_ticks(collector, 1)
    with heartbeat(collector) as beat, httpx.Client(base_url=collector.url, timeout=5) as http:
        for service in ("billing", "checkout", "ledger"):
            beat.report(service, "healthy")
        users = http.post("/api/metrics/users", json={"service": "checkout", "count": 42})
        assert users.status_code == 200, users.text
        push_traffic(http, "checkout", CHECKOUT_TRAFFIC)
        push_traffic(http, "ledger", LEDGER_TRAFFIC)
        wait_for_status(
            collector,
            lambda services, _: (
                services["checkout"]["window"]["requests"] == 30
                and services["ledger"]["window"]["requests"] == 5
            ),
            what="the reported traffic in the figures",
        )

        browser.get(collector.url + "/")
        wait_until_live(browser)
        rows = read_home(browser)
        assert [(row.name, row.health, row.cells["Health"].text) for row in rows] == [
            ("billing", "healthy", "healthy"),
            ("checkout", "healthy", "healthy"),
            ("ledger", "healthy", "healthy"),
        ]
        checkout, ledger, billing = (by_name(rows)[n] for n in ("checkout", "ledger", "billing"))
        assert checkout.cells["Users"] == Cell("42", 42.0)
        requests = checkout.cells["Requests"]
        assert requests.value is not None
        assert requests.value > 0
        assert requests.text.endswith("/s")
        assert checkout.cells["5xx"].value == pytest.approx(4 / 30)
        assert checkout.cells["5xx"].text == "13.3 %"
        p50, p95 = checkout.cells["p50"], checkout.cells["p95"]
        assert p50.value is not None
        assert p95.value is not None
        assert 0 < p50.value <= p95.value
        assert FIGURE.match(p50.text), p50
        assert FIGURE.match(p95.text), p95
        assert AGE.match(checkout.cells["Last health report"].text)
        assert checkout.routes == CHECKOUT_ROUTES
        assert checkout.cells["Routes"].text == "2 routes"
        assert checkout.spark is not None
        assert len(checkout.spark.split()) >= 2
        assert ledger.routes == ["GET /api/ledger"]
        assert ledger.cells["5xx"] == Cell("0.0 %", 0.0)
        assert billing.cells["Requests"] == Cell("0.00/s", 0.0)
        assert billing.cells["5xx"] == Cell("—", None)
        assert billing.cells["p95"] == Cell("—", None)
        assert billing.cells["Routes"].text == "no requests reported"
        collector_section: dict[str, Any] = browser.execute_script(READ_COLLECTOR)
        assert collector_section["reports"]["accepted"] > 0
        assert collector_section["reports"]["rejected"] == 0
        facts = collector_section["facts"]
        in_use = {term: value for term, value in facts.items() if re.match(IN_USE, value)}
        assert in_use["HTTP series"].startswith("4 of "), facts
        assert any(t.startswith("Services") and v.startswith("3 of ") for t, v in in_use.items())
        assert facts["Health TTL"] == f"{HEALTH_TTL_SECONDS} s"
        assert AGE.match(facts["Uptime"]), facts
        assert facts["Version"]
        save_screenshot(browser, "status-healthy-fleet")

        beat.report("ledger", "unhealthy")
        beat.drop("billing")
        wait_for_status(
            collector,
            lambda services, _: (
                services["billing"]["health"] == "stale"
                and services["ledger"]["health"] == "unhealthy"
            ),
            what="billing to turn stale and ledger unhealthy",
        )
        browser.get(collector.url + "/")
        wait_until_live(browser)
        rows = read_home(browser)
        assert [(row.name, row.health, row.cells["Health"].text) for row in rows] == [
            ("billing", "stale", "stale"),
            ("ledger", "unhealthy", "unhealthy"),
            ("checkout", "healthy", "healthy"),
        ]
        assert AGE.match(rows[0].cells["Last health report"].text)
        save_screenshot(browser, "status-one-stale")

        follow_link(browser, "checkout", "/services/checkout")
        page = read_service(browser)
        assert page.title == "checkout · otelkit collector"
        assert page.heading == "checkout"
        assert page.health == "healthy"
        assert [(r.cells["Method"].text, r.cells["Route"].text) for r in page.routes] == [
            ("GET", "/api/orders"),
            ("POST", "/api/orders/{order_id}"),
        ]
        assert [r.cells["Requests"].value for r in page.routes] == [20, 10]
        assert [r.cells["5xx"].value for r in page.routes] == [pytest.approx(0.2), 0.0]
        for route in page.routes:
            assert_chart_drawn(route)
        save_screenshot(browser, "service-checkout")
        assert console_errors(browser) == []


def test_page_refreshes_in_place(
    start_collector: StartCollector, browser: webdriver.Chrome
) -> None:
    """A service reported after the page loaded appears without a reload, the page counts the
    swap and says it is live, and the console holds no error or CSP violation."""
    collector = start_collector(HISTORY_ENV)
    first = httpx.post(f"{collector.url}/api/health/checkout", json={"status": "healthy"})
    assert first.status_code == 200, first.text
    browser.get(collector.url + "/")
    wait_until_live(browser)
    browser.execute_script("window.__sameDocument = true;")
    before: dict[str, Any] = browser.execute_script(READ_REFRESH)
    assert before["names"] == ["checkout"]

    with httpx.Client(base_url=collector.url, timeout=5) as http:
        late = http.post("/api/health/late-arrival", json={"status": "degraded"})
        assert late.status_code == 200, late.text
        users = http.post("/api/metrics/users", json={"service": "late-arrival", "count": 3})
        assert users.status_code == 200, users.text

    def refreshed() -> dict[str, Any] | None:
        state: dict[str, Any] = browser.execute_script(READ_REFRESH)
        return state if "late-arrival" in state["names"] else None

    after = poll(
        refreshed,
        timeout=REFRESH_TIMEOUT_SECONDS,
        interval=0.25,
        what="the new service on the page without a reload",
        diagnostics=lambda: str(browser.execute_script(READ_REFRESH)),
    )
    assert after["sameDocument"], "the page was reloaded instead of refreshed in place"
    assert after["refreshes"] > before["refreshes"]
    assert REFRESH_STATE.match(after["state"]), after["state"]
    row = by_name(read_home(browser))["late-arrival"]
    assert (row.health, row.cells["Health"].text) == ("degraded", "degraded")
    assert row.cells["Users"] == Cell("3", 3.0)
    assert console_errors(browser) == []


def test_page_without_scripts_shows_everything(
    start_collector: StartCollector, browser_without_scripts: webdriver.Chrome
) -> None:
    """With JavaScript off the server-rendered page still shows every service, its health
    word, figures and routes, and a service page still draws its charts."""
    browser = browser_without_scripts
    collector = start_collector(HISTORY_ENV)
    wait_for_ticks(collector, 1)
    with httpx.Client(base_url=collector.url, timeout=5) as http:
        for service, status in (("checkout", "healthy"), ("ledger", "unhealthy")):
            health = http.post(f"/api/health/{service}", json={"status": status})
            assert health.status_code == 200, health.text
        users = http.post("/api/metrics/users", json={"service": "checkout", "count": 42})
        assert users.status_code == 200, users.text
        push_traffic(http, "checkout", CHECKOUT_TRAFFIC)
    wait_for_status(
        collector,
        lambda services, _: services["checkout"]["window"]["requests"] == 30,
        what="the reported traffic in the figures",
    )

    browser.get(collector.url + "/")
    # <noscript> content is parsed as markup only when scripting is off: proof it is.
    assert len(browser.find_elements(By.CSS_SELECTOR, 'head meta[http-equiv="refresh"]')) == 1
    assert browser.find_element(By.ID, "refresh-state").text.startswith("as of ")
    rows = read_home(browser)
    assert [(row.name, row.cells["Health"].text) for row in rows] == [
        ("ledger", "unhealthy"),
        ("checkout", "healthy"),
    ]
    checkout = rows[1]
    assert checkout.cells["Users"] == Cell("42", 42.0)
    for figure in ("Requests", "5xx", "p50", "p95"):
        assert checkout.cells[figure].value is not None, figure
        assert checkout.cells[figure].text not in {"", "—"}, figure
    assert checkout.cells["5xx"].text == "13.3 %"
    assert AGE.match(checkout.cells["Last health report"].text)
    assert checkout.routes == CHECKOUT_ROUTES
    assert checkout.spark is not None

    browser.find_element(By.LINK_TEXT, "checkout").click()
    poll(
        lambda: True if urlsplit(browser.current_url).path == "/services/checkout" else None,
        timeout=10,
        what="the service page",
    )
    page = read_service(browser)
    assert page.health == "healthy"
    assert [r.cells["Route"].text for r in page.routes] == ["/api/orders", "/api/orders/{order_id}"]
    for route in page.routes:
        assert_chart_drawn(route)
    assert console_errors(browser) == []


def test_hostile_names_show_as_text(
    start_collector: StartCollector, browser: webdriver.Chrome
) -> None:
    """Service and route names made of markup and script URLs show as the very text pushed,
    on the home page and each service's page, before and after a refresh: nothing runs,
    nothing is parsed into elements, and the CSP reports nothing."""
    collector = start_collector(HISTORY_ENV)
    with httpx.Client(base_url=collector.url, timeout=5) as http:
        for payload in PAYLOADS:
            users = http.post("/api/metrics/users", json={"service": payload, "count": 1})
            assert users.status_code == 200, users.text
            push_traffic(http, payload, [("GET", payload, 200, 0.05, 3)])
            health = http.post(f"/api/health/{quote(payload, safe='')}", json={"status": "healthy"})
            assert health.status_code == 200, health.text
    wait_for_status(
        collector,
        lambda services, _: all(
            p in services and services[p]["window"]["requests"] == 3 for p in PAYLOADS
        ),
        what="every hostile service with its traffic",
    )

    browser.get(collector.url + "/")
    wait_until_live(browser)
    open_route_lists(browser)
    rows = read_home(browser)
    assert {row.name: row.routes for row in rows} == {p: [f"GET {p}"] for p in PAYLOADS}
    assert_inert(browser, "the home page")
    save_screenshot(browser, "status-hostile-names")
    pages: dict[str, str | None] = {browser.current_window_handle: None}
    for row in rows:
        browser.switch_to.new_window("tab")
        browser.get(row.href)
        assert_inert(browser, row.name)
        pages[browser.current_window_handle] = row.name

    def every_page_refreshed() -> bool | None:
        for handle in pages:
            browser.switch_to.window(handle)
            if browser.execute_script(READ_SAFETY)["refreshes"] < 1:
                return None
        return True

    poll(
        every_page_refreshed,
        timeout=REFRESH_TIMEOUT_SECONDS,
        interval=0.5,
        what="a refresh cycle on the home page and every service page",
    )
    for handle, service in pages.items():
        browser.switch_to.window(handle)
        where = service if service is not None else "the home page"
        safety = assert_inert(browser, where)
        if service is None:
            # The route lists opened before the refresh are still open after it.
            for payload in PAYLOADS:
                assert f"GET {payload}" in safety["text"], payload
        else:
            page = read_service(browser)
            assert page.title == f"{service} · otelkit collector"
            assert page.heading == service
            assert [r.cells["Route"].text for r in page.routes] == [service]
            assert service in safety["text"]
        assert console_errors(browser) == [], where
