"""The seed's curl examples, sent over real HTTP to a real ``python -m otelkit_collector``
process."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import samples
from tests.e2e.conftest import StartCollector
from tests.e2e.servers import ManagedProcess, require_binary, running_collector

SEED_HTTP_REPORT = {"method": "GET", "route": "/api/courses", "status": 200, "duration": 0.045}
SEED_HEALTH = ("my-service", {"status": "healthy"})
SEED_USERS = {"count": 127}
SEED_SERIES = frozenset({"method": "GET", "route": "/api/courses", "status": "200"}.items())
KNOWN_LINT = "active_users_total"
"""A gauge with a ``_total`` suffix: the seed's name, kept verbatim for its dashboards."""
CONTRACT_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10
)  # fmt: skip
"""The histogram's buckets as README's catalogue states them."""
MiB = 1024 * 1024
RSS_FLOOR = 16 * MiB
RSS_CEILING = 256 * MiB
"""README measures the idle collector at 56.8 MiB; the seed's three reports must leave it in
the same range (a fraction of that is not a running collector, many times it is a leak)."""
RSS_AGREEMENT = 0.25
"""How far the collector's own process_resident_memory_bytes may be from /proc's VmRSS
(read a moment apart)."""
DOCUMENTED_FAMILIES = frozenset(
    {
        "http_request_duration_seconds",
        "service_health_status",
        "service_health_last_report_timestamp_seconds",
        "active_users_total",
        "otelkit_collector_reports_total",
        "python_info",
    }
)
"""README's catalogue as /metrics types it (besides the process_* and python_gc_* defaults)."""


def send_seed_examples(base_url: str) -> list[httpx.Response]:
    """The seed's three curl examples, as the same JSON POSTs."""
    service, health = SEED_HEALTH
    with httpx.Client(base_url=base_url, timeout=5) as http:
        return [
            http.post("/api/metrics/http", json=SEED_HTTP_REPORT),
            http.post(f"/api/health/{service}", json=health),
            http.post("/api/metrics/users", json=SEED_USERS),
        ]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """One collector process that has received the seed's three examples, once."""
    with running_collector(tmp_path_factory.mktemp("seed")) as collector:
        responses = send_seed_examples(collector.url)
        assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
        yield collector


def scrape(collector: ManagedProcess, accept: str | None = None) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(f"{collector.url}/metrics", headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return response


def test_seed_writes_are_each_one_accepted_report(tmp_path: Path) -> None:
    """Each of the seed's writes answers 200 with one accepted report."""
    with running_collector(tmp_path) as collector:
        responses = send_seed_examples(collector.url)
    assert [r.json() for r in responses] == [{"accepted": 1, "overflowed": 0}] * 3


def test_seed_series_are_scraped_under_the_seed_names(seeded: ManagedProcess) -> None:
    """/metrics carries the seed's series, names and label sets verbatim, buckets in seconds."""
    body = scrape(seeded).text
    families = {family.name: family for family in text_string_to_metric_families(body)}

    histogram = families["http_request_duration_seconds"]
    assert histogram.type == "histogram"
    label_sets = {
        frozenset((k, v) for k, v in s.labels.items() if k != "le") for s in histogram.samples
    }
    assert label_sets == {SEED_SERIES}, "one series, labelled exactly method, route and status"
    buckets = {s.labels["le"]: s.value for s in histogram.samples if s.name.endswith("_bucket")}
    finite = sorted((le for le in buckets if le != "+Inf"), key=float)
    assert finite[0] == "0.005"
    assert tuple(float(le) for le in finite) == CONTRACT_BUCKETS_SECONDS
    assert (buckets["0.025"], buckets["0.05"], buckets["+Inf"]) == (0, 1, 1)

    parsed = samples(body)
    assert parsed[("http_request_duration_seconds_count", SEED_SERIES)] == 1
    assert parsed[("http_request_duration_seconds_sum", SEED_SERIES)] == pytest.approx(0.045)
    assert families["service_health_status"].type == "gauge"
    assert parsed[("service_health_status", frozenset({("service", "my-service")}))] == 1
    assert families["active_users_total"].type == "gauge"
    assert parsed[("active_users_total", frozenset())] == 127
    assert parsed[("process_cpu_seconds_total", frozenset())] > 0
    assert parsed[("process_resident_memory_bytes", frozenset())] > 0
    assert "target_info" not in families
    assert not [name for name, labels in parsed if any(k.startswith("otel_") for k, _ in labels)]


def test_json_view_shows_the_scraped_numbers(seeded: ManagedProcess) -> None:
    """GET /api/metrics reports the same health, users and histogram numbers as /metrics."""
    parsed = samples(scrape(seeded).text)
    view: dict[str, Any] = httpx.get(f"{seeded.url}/api/metrics", timeout=5).json()

    [health] = view["services"]
    assert (health["service"], health["status"], health["value"]) == ("my-service", "healthy", 1)
    scraped_last = parsed[
        ("service_health_last_report_timestamp_seconds", frozenset({("service", "my-service")}))
    ]
    assert health["last_report"] == pytest.approx(scraped_last, abs=1e-3)
    assert [(u["service"], u["count"]) for u in view["active_users"]] == [(None, 127)]

    [http] = view["http"]
    assert (http["service"], http["method"], http["route"], http["status"]) == (
        None,
        "GET",
        "/api/courses",
        "200",
    )
    assert http["count"] == parsed[("http_request_duration_seconds_count", SEED_SERIES)] == 1
    assert http["sum"] == pytest.approx(parsed[("http_request_duration_seconds_sum", SEED_SERIES)])
    assert http["mean"] == pytest.approx(0.045)
    assert http["buckets"] == {
        le: int(parsed[("http_request_duration_seconds_bucket", SEED_SERIES | {("le", le)})])
        for le in http["buckets"]
    }
    assert len(http["buckets"]) == 15
    accepted = {(r["kind"], r["outcome"]): r["count"] for r in view["reports"]}
    assert accepted == {
        ("http", "accepted"): 1,
        ("health", "accepted"): 1,
        ("users", "accepted"): 1,
    }


def test_openmetrics_is_served_when_asked(seeded: ManagedProcess) -> None:
    """An OpenMetrics Accept header gets a parseable OpenMetrics exposition ending in # EOF."""
    response = scrape(seeded, accept="application/openmetrics-text; version=1.0.0")
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = openmetrics_families(response.text)  # type: ignore[no-untyped-call]
    names = {s.name for family in families for s in family.samples}
    assert {"http_request_duration_seconds_bucket", "service_health_status"} <= names


@pytest.mark.prometheus
def test_promtool_finds_only_the_known_lint(seeded: ManagedProcess) -> None:
    """`promtool check metrics` reports nothing but the seed's `active_users_total` gauge name."""
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=scrape(seeded).content,
        capture_output=True,
        timeout=30,
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    problems = [line.strip() for line in output.splitlines() if line.strip()]
    assert len(problems) == 1, output
    assert problems[0].startswith(f"{KNOWN_LINT} "), output
    assert '"_total" suffix' in problems[0], output
    assert result.returncode == 3, f"promtool exit {result.returncode} (3 = lint problems only)"


def test_seed_curl_examples_with_real_curl(start_collector: StartCollector) -> None:
    """The seed's curl command lines, run by the real curl binary, land in /metrics."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed; the same requests are sent with httpx above")
    collector = start_collector()
    service, health = SEED_HEALTH
    writes = [
        ("/api/metrics/http", SEED_HTTP_REPORT),
        (f"/api/health/{service}", health),
        ("/api/metrics/users", SEED_USERS),
    ]
    for path, body in writes:
        result = subprocess.run(
            [
                *(curl, "-sS", "-f", "-X", "POST", f"{collector.url}{path}"),
                *("-H", "Content-Type: application/json", "-d", json.dumps(body)),
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert json.loads(result.stdout)["accepted"] == 1
    result = subprocess.run(
        [curl, "-sS", "-f", f"{collector.url}/metrics"], capture_output=True, timeout=30, check=True
    )
    parsed = samples(result.stdout.decode())
    assert parsed[("http_request_duration_seconds_count", SEED_SERIES)] == 1
    assert parsed[("service_health_status", frozenset({("service", "my-service")}))] == 1
    assert parsed[("active_users_total", frozenset())] == 127


def seed_sample_lines() -> set[str]:
    """The otelkit sample lines /metrics must hold after the seed's three examples, exactly
    (the last-report timestamp's value left out)."""
    series = 'method="GET",route="/api/courses",status="200"'
    name = "http_request_duration_seconds"
    buckets = [(str(float(le)), 1.0 if le >= 0.045 else 0.0) for le in CONTRACT_BUCKETS_SECONDS]
    return {
        *(f'{name}_bucket{{le="{le}",{series}}} {value}' for le, value in buckets),
        f'{name}_bucket{{le="+Inf",{series}}} 1.0',
        f"{name}_count{{{series}}} 1.0",
        f"{name}_sum{{{series}}} 0.045",
        'service_health_status{service="my-service"} 1.0',
        'service_health_last_report_timestamp_seconds{service="my-service"}',
        "active_users_total 127.0",
        *(
            f'otelkit_collector_reports_total{{kind="{kind}",outcome="accepted"}} 1.0'
            for kind in ("http", "health", "users")
        ),
    }


def test_footprint_after_seed_traffic(seeded: ManagedProcess) -> None:
    """After the seed traffic, /metrics holds the seed's series and nothing else besides
    prometheus_client's defaults, and the collector's resident memory is in the documented
    range and what its own process_resident_memory_bytes says."""
    body = scrape(seeded).text
    status = Path(f"/proc/{seeded.pid}/status").read_text()
    [rss_line] = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    rss = int(rss_line.split()[1]) * 1024
    lines = body.splitlines()
    print(f"\nseed footprint: /metrics {len(lines)} lines; collector pid {seeded.pid} RSS {rss} B")

    names = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    defaults = {name for name in names if name.startswith(("process_", "python_gc_"))}
    assert names - defaults == DOCUMENTED_FAMILIES
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= defaults
    ours = {
        line.split(" ")[0] if line.startswith("service_health_last_report") else line
        for line in lines
        if line and not line.startswith(("#", "process_", "python_"))
    }
    assert ours == seed_sample_lines()

    assert RSS_FLOOR <= rss <= RSS_CEILING, f"RSS {rss / MiB:.1f} MiB"
    reported = samples(body)[("process_resident_memory_bytes", frozenset())]
    assert reported == pytest.approx(rss, rel=RSS_AGREEMENT)
