"""The seed's PromQL queries, answered by a real Prometheus scraping real collectors.

Two collectors run in this process under real uvicorn: ``collector`` (default TTL) receives
known traffic; ``collector-ttl`` (TTL 3 s) shows a silent service turning 0. Prometheus
scrapes both every second. Counters get a first scrape before most of the traffic arrives,
so ``rate()`` sees a real increase rather than a series that was born at its final value.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import yaml

from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings
from tests.e2e.servers import (
    CollectorThread,
    ManagedProcess,
    poll,
    require_binary,
    running_collector_thread,
    running_prometheus,
)

pytestmark = pytest.mark.prometheus

SETTLE_SECONDS = 30.0
TTL_SECONDS = 3.0
OK_REPORT = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.1}
ERROR_REPORT = {"method": "GET", "route": "/api/courses", "status": 500, "duration": 0.3}
# 40 successes and 10 errors, in two phases with the same 4:1 mix: the first phase creates
# the series and is scraped; the second is what rate() measures.
FIRST_OK, FIRST_ERRORS = 8, 2
TOTAL_OK, TOTAL_ERRORS = 40, 10

Vector = dict[str, float]


@dataclass(frozen=True)
class Stack:
    """The running Prometheus and the two collectors it scrapes."""

    prometheus: ManagedProcess
    collector: CollectorThread
    ttl_collector: CollectorThread

    def query(self, promql: str, key: str, job: str = "collector") -> Vector:
        """Instant query; the result for ``job`` as {value of label ``key``: sample value}."""
        response = httpx.get(
            f"{self.prometheus.url}/api/v1/query", params={"query": promql}, timeout=5
        )
        payload: dict[str, Any] = response.json()
        assert payload["status"] == "success", payload
        assert payload["data"]["resultType"] == "vector", payload
        return {
            item["metric"].get(key, ""): float(item["value"][1])
            for item in payload["data"]["result"]
            if item["metric"].get("job") == job
        }

    def await_query(self, promql: str, key: str, expected: Vector, job: str = "collector") -> None:
        """Poll until ``promql`` returns exactly ``expected`` for ``job``."""
        last: list[Vector] = []

        def settled() -> bool | None:
            last[:] = [self.query(promql, key, job)]
            return True if last[0] == expected else None

        poll(
            settled,
            timeout=SETTLE_SECONDS,
            interval=0.25,
            what=f"{promql} == {expected} (job={job})",
            diagnostics=lambda: f"last result: {last}\n{self.prometheus.output()}",
        )


def prometheus_config(targets: dict[str, str]) -> str:
    """A prometheus.yml scraping each ``{job: base URL}`` every second."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [url.removeprefix("http://")]}]}
            for job, url in targets.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Prometheus scraping two in-process collectors; everything stopped after the module."""
    require_binary("promtool")  # CI installs both; a machine with only one is misconfigured
    base = CollectorSettings.from_env(environ={})
    with (
        running_collector_thread(create_app(base)) as collector,
        running_collector_thread(
            create_app(replace(base, health_ttl_seconds=TTL_SECONDS))
        ) as ttl_collector,
    ):
        config = prometheus_config({"collector": collector.url, "collector-ttl": ttl_collector.url})
        with running_prometheus(config, tmp_path_factory.mktemp("prometheus")) as prometheus:
            yield Stack(prometheus, collector, ttl_collector)


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> Stack:
    """The known traffic, recorded by the collector and scraped until Prometheus agrees."""
    stack.await_query("up", "job", {"collector": 1})
    with httpx.Client(base_url=stack.collector.url, timeout=5) as http:
        first = [OK_REPORT] * FIRST_OK + [ERROR_REPORT] * FIRST_ERRORS
        # One batch is recorded atomically: both series are born in the same scrape.
        assert http.post("/api/metrics/http/batch", json={"reports": first}).status_code == 200
        assert http.post("/api/health/auth", json={"status": "healthy"}).status_code == 200
        assert http.post("/api/health/payment", json={"status": "unhealthy"}).status_code == 200
        assert http.post("/api/metrics/users", json={"count": 127}).status_code == 200
        stack.await_query(
            "http_request_duration_seconds_count", "status", {"200": FIRST_OK, "500": FIRST_ERRORS}
        )
        rest = {"reports": [OK_REPORT] * (TOTAL_OK - FIRST_OK)}
        assert http.post("/api/metrics/http/batch", json=rest).status_code == 200
        for _ in range(TOTAL_ERRORS - FIRST_ERRORS):
            assert http.post("/api/metrics/http", json=ERROR_REPORT).status_code == 200
    stack.await_query(
        "http_request_duration_seconds_count", "status", {"200": TOTAL_OK, "500": TOTAL_ERRORS}
    )
    return stack


def test_up(seeded: Stack) -> None:
    """Prometheus scrapes the collector successfully: `up` is 1."""
    assert seeded.query("up", "job") == {"collector": 1}


def test_service_health_status(seeded: Stack) -> None:
    """`service_health_status` is 1 for the healthy service and 0 for the unhealthy one."""
    assert seeded.query("service_health_status", "service") == {"auth": 1, "payment": 0}


def test_request_rate(seeded: Stack) -> None:
    """`rate(..._count[5m])` is positive per status, in the pushed 4:1 proportion."""
    rates = seeded.query("rate(http_request_duration_seconds_count[5m])", "status")
    assert rates.keys() == {"200", "500"}
    assert rates["200"] > 0
    assert rates["500"] > 0
    assert rates["500"] / rates["200"] == pytest.approx(TOTAL_ERRORS / TOTAL_OK, rel=1e-6)
    counts = seeded.query("http_request_duration_seconds_count", "status")
    assert counts == {"200": TOTAL_OK, "500": TOTAL_ERRORS}


def test_average_response_time(seeded: Stack) -> None:
    """rate(sum)/rate(count) gives each status's mean duration in seconds."""
    mean_duration = (
        "rate(http_request_duration_seconds_sum[5m])"
        " / rate(http_request_duration_seconds_count[5m])"
    )
    means = seeded.query(mean_duration, "status")
    assert means.keys() == {"200", "500"}
    assert means["200"] == pytest.approx(OK_REPORT["duration"], rel=1e-6)
    assert means["500"] == pytest.approx(ERROR_REPORT["duration"], rel=1e-6)


def test_error_rate(seeded: Stack) -> None:
    """The error-rate query selects only the 5xx series, with a positive rate."""
    errors = seeded.query('rate(http_request_duration_seconds_count{status=~"5.."}[5m])', "status")
    assert errors.keys() == {"500"}
    assert errors["500"] > 0
    assert math.isfinite(errors["500"])


def test_active_users(seeded: Stack) -> None:
    """`active_users_total` is the last pushed count."""
    assert seeded.query("active_users_total", "job") == {"collector": 127}


def test_silent_service_turns_zero_after_ttl(stack: Stack) -> None:
    """A service that stops reporting reads 0 once the TTL passes; a heartbeating one stays 1."""
    job = "collector-ttl"
    stop = threading.Event()
    failures: list[BaseException] = []

    def heartbeat() -> None:
        with httpx.Client(base_url=stack.ttl_collector.url, timeout=2) as http:
            while not stop.is_set():
                try:
                    http.post("/api/health/auth", json={"status": "healthy"}).raise_for_status()
                except httpx.HTTPError as exc:  # pragma: no cover - reported below
                    failures.append(exc)
                stop.wait(0.5)

    url = stack.ttl_collector.url
    assert httpx.post(f"{url}/api/health/billing", json={"status": "healthy"}).status_code == 200
    reported_at = time.time()
    beat = threading.Thread(target=heartbeat, name="auth-heartbeat", daemon=True)
    beat.start()
    try:
        stack.await_query("service_health_status", "service", {"auth": 1, "billing": 0}, job)
        # billing was scraped as healthy before it went stale, and auth never lapsed.
        seen = stack.query("max_over_time(service_health_status[1m])", "service", job)
        assert seen == {"auth": 1, "billing": 1}
        assert stack.query("min_over_time(service_health_status[1m])", "service", job) == {
            "auth": 1,
            "billing": 0,
        }
        silence = stack.query(
            'time() - service_health_last_report_timestamp_seconds{service="billing"}',
            "service",
            job,
        )
        assert silence.keys() == {"billing"}
        assert TTL_SECONDS < silence["billing"] < time.time() - reported_at + 5
    finally:
        stop.set()
        beat.join(timeout=5)
    assert not failures
