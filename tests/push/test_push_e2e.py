"""Push end to end: the example service under real uvicorn pushes to a real collector, and
the collector ends up with exactly the counts the service recorded itself."""

from __future__ import annotations

from collections import Counter
from itertools import cycle, islice

import httpx

from otelkit.instruments import ACTIVE_USERS, COLLECTOR_REPORTS, SERVICE_HEALTH_STATUS
from tests.push.conftest import SERVICE_NAME, Launcher, Series, request_counts, scrape, value

N_REQUESTS = 300
TRAFFIC: tuple[tuple[str, str, str], ...] = (
    # (method, path sent, route template recorded)
    ("GET", "/api/courses", "/api/courses"),
    ("GET", "/api/courses/1", "/api/courses/{course_id}"),
    ("GET", "/api/courses/99", "/api/courses/{course_id}"),  # 404
    ("GET", "/api/flaky?failure_rate=0.5", "/api/flaky"),  # 200 or 500
    ("POST", "/api/courses/2/enrol", "/api/courses/{course_id}/enrol"),  # 201, pushes users
)
ENROL_PATH = TRAFFIC[-1][1]
DOCUMENTED_FLUSH_SECONDS = 3.0
"""The README: push mode's "Shutdown flushes for at most 3 s". With a healthy collector the
whole stop, uvicorn's own shutdown and the interpreter's exit included, keeps within it."""


def send_traffic(base_url: str, n: int) -> Counter[Series]:
    """Send ``n`` requests cycling through :data:`TRAFFIC`; count them as recorded."""
    sent: Counter[Series] = Counter()
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for method, path, route in islice(cycle(TRAFFIC), n):
            response = http.request(method, path)
            sent[(method, route, str(response.status_code))] += 1
    return sent


def test_collector_counts_equal_the_service_counts(launcher: Launcher) -> None:
    """After N requests and a SIGTERM (whose lifespan flushes the push queue), every series'
    ``_count`` at the collector equals the service's own count, health and users included."""
    collector = launcher.collector()
    service = launcher.service(collector.url)

    sent = send_traffic(service.url, N_REQUESTS)
    local = request_counts(scrape(service.url))  # /metrics is excluded from recording
    stop_seconds = service.terminate()

    assert local == dict(sent), "the service's own /metrics should count every request once"
    assert sum(local.values()) == N_REQUESTS
    assert {status for _, _, status in local} >= {"200", "201", "404", "500"}
    at_collector = scrape(collector.url)
    assert request_counts(at_collector, service=SERVICE_NAME) == local
    enrolments = sum(1 for _, path, _ in islice(cycle(TRAFFIC), N_REQUESTS) if path == ENROL_PATH)
    assert value(at_collector, ACTIVE_USERS.prometheus_name, service=SERVICE_NAME) == enrolments
    assert value(at_collector, SERVICE_HEALTH_STATUS.prometheus_name, service=SERVICE_NAME) == 1
    accepted_http = value(
        at_collector, COLLECTOR_REPORTS.prometheus_name, kind="http", outcome="accepted"
    )
    assert accepted_http == N_REQUESTS
    assert "Traceback" not in service.stderr(), service.output()
    assert stop_seconds < DOCUMENTED_FLUSH_SECONDS, f"the flush took {stop_seconds:.1f}s"
