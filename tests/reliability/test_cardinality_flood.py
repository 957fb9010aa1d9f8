"""Item 4: hostile cardinality against a real collector process.

Two waves of distinct routes and services go through the batch endpoint. The series stay
within the caps plus the overflow reserve, every report is accounted for, and the
collector's resident memory stays bounded: the second wave, all new names, costs ~nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from otelkit.instruments import COLLECTOR_REPORTS, HTTP_REQUEST_DURATION
from otelkit.reports import MAX_BATCH_REPORTS
from otelkit_collector.app import OVERFLOW_RESERVE_STATUSES
from otelkit_collector.settings import CollectorSettings
from tests.e2e.servers import ManagedProcess, poll, running_collector
from tests.reliability.conftest import SCALE, MiB, Scale, parse_text, record_figure, rss_bytes

HISTORY_RSS_BUDGET = 20 * MiB
"""The status page's history at full caps (README: under 20 MiB), allocated as routes first
record: part of what the first wave may cost, none of what the second may."""
FIRST_WAVE_RSS_BUDGET = 20 * MiB + HISTORY_RSS_BUDGET
HISTORY_ENV = {"OTELKIT_HISTORY_RESOLUTION_SECONDS": "1", "OTELKIT_HISTORY_SECONDS": "90"}
"""Ticks every second (90 of them, as many as the defaults keep), so that each measurement
can wait for the tick that allocates what a wave added to the history."""
SECOND_WAVE_RSS_BUDGET = 2 * MiB
"""At full scale (``make reliability``): a second wave of all-new names costs at most this."""
SECOND_WAVE_SHARE = 0.25
"""At CI scale, on a shared machine where the allocator's arenas move by a few MiB: the second
wave costs at most this share of the first (or the fixed budget, if larger). Memory that grew
with every new name would make the second wave cost about what the first did."""
HOT_SERVICES = 100
"""Half of each wave lands on this few services, so the per-service route cap is hit too."""
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PURGE", "BREW", "get")
REJECTED_EVERY = 10
"""After every tenth batch a small invalid batch is sent, so rejections are counted too."""
REJECTED_BATCH_SIZE = 10
WARMUP_REPORTS = 20


def hostile_reports(wave: str, routes: int, services: int) -> Iterator[dict[str, Any]]:
    """``routes`` reports, each with a new route, spread over ``services`` services.

    Even reports spread evenly over every service; odd ones pile onto a few hot services,
    whose routes pass ``max_routes_per_service``. Methods and statuses vary as well.
    """
    for i in range(routes):
        service = i // 2 % services if i % 2 == 0 else i // 2 % HOT_SERVICES
        yield {
            "method": METHODS[i % len(METHODS)],
            "route": f"/{wave}/route/{i}",
            "status": 100 + (i * 37) % 500,
            "duration": (i % 1000) / 1000,
            "service": f"{wave}-svc-{service}",
        }


def invalid_batch(wave: str, index: int) -> list[dict[str, Any]]:
    """A batch whose last report has a control character in its route: all of it is refused."""
    batch = [
        {"method": "GET", "route": f"/{wave}/bad/{index}/{i}", "status": 200, "duration": 0.1}
        for i in range(REJECTED_BATCH_SIZE)
    ]
    batch[-1]["route"] += "\n"
    return batch


@dataclass
class Tally:
    """What the batch answers said about the reports sent."""

    sent: int = 0
    accepted: int = 0
    """Recorded under their own labels (the answer's ``accepted`` minus ``overflowed``)."""
    overflowed: int = 0
    rejected: int = 0

    def add(self, other: Tally) -> None:
        self.sent += other.sent
        self.accepted += other.accepted
        self.overflowed += other.overflowed
        self.rejected += other.rejected


def push_wave(http: httpx.Client, wave: str, routes: int, services: int) -> Tally:
    """Send one wave in full batches; return the tally of the answers."""
    tally = Tally()
    batch: list[dict[str, Any]] = []
    batches = 0

    def send(reports: list[dict[str, Any]]) -> None:
        response = http.post("/api/metrics/http/batch", json={"reports": reports})
        tally.sent += len(reports)
        if response.status_code == 200:
            body = response.json()
            assert body["accepted"] == len(reports)
            tally.accepted += body["accepted"] - body["overflowed"]
            tally.overflowed += body["overflowed"]
        else:
            assert response.status_code == 422, response.text
            tally.rejected += len(reports)

    for report in hostile_reports(wave, routes, services):
        batch.append(report)
        if len(batch) == MAX_BATCH_REPORTS:
            send(batch)
            batch = []
            batches += 1
            if batches % REJECTED_EVERY == 0:
                send(invalid_batch(wave, batches))
    if batch:
        send(batch)
    return tally


@dataclass(frozen=True)
class SeriesCensus:
    """The HTTP series /metrics shows, and the self-metric's count of HTTP reports."""

    series: int
    services: int
    max_routes_per_service: int
    reports: dict[str, int]
    scrape_seconds: float
    rss: int
    """Collector RSS right after the scrape (a production collector is scraped, so the
    memory a scrape takes counts too)."""


def ticks(http: httpx.Client) -> int:
    """History ticks the collector has taken (the stamp is ``version.ticks.stale``)."""
    return int(http.get("/api/status/stamp").json()["stamp"].split(".")[1])


def after_a_tick(http: httpx.Client) -> None:
    """Wait until the collector has taken a tick since now: what the last wave added to the
    history is allocated by then, so the RSS read next includes it whatever the timing."""
    seen = ticks(http)
    poll(lambda: ticks(http) > seen or None, timeout=30, what="a history tick")


def scraped_rss(collector: ManagedProcess, http: httpx.Client) -> int:
    """Collector RSS right after a tick and a scrape."""
    after_a_tick(http)
    assert http.get("/metrics", timeout=300).status_code == 200
    return rss_bytes(collector.pid)


def census(collector: ManagedProcess, http: httpx.Client) -> SeriesCensus:
    """After a tick, scrape once; count series, services and routes per service; read the
    RSS."""
    after_a_tick(http)
    response = http.get("/metrics", timeout=300)
    rss = rss_bytes(collector.pid)
    assert response.status_code == 200
    count_name = HTTP_REQUEST_DURATION.prometheus_name + "_count"
    reports_name = COLLECTOR_REPORTS.prometheus_name
    # One _count per series is all this needs: parsing only those lines (and the self-metric)
    # keeps prometheus_client's pure-Python parser from spending seconds on every bucket.
    wanted = (count_name, reports_name, "# ")
    lines = [line for line in response.text.splitlines() if line.startswith(wanted)]
    samples = parse_text("\n".join(lines) + "\n")
    series = [dict(labels) for (name, labels) in samples if name == count_name]
    routes_per_service: dict[str, set[str]] = {}
    for labels in series:
        routes_per_service.setdefault(labels.get("service", ""), set()).add(labels["route"])
    reports = {
        dict(labels)["outcome"]: int(value)
        for (name, labels), value in samples.items()
        if name == reports_name and dict(labels)["kind"] == "http"
    }
    return SeriesCensus(
        series=len(series),
        services=len(routes_per_service),
        max_routes_per_service=max(map(len, routes_per_service.values()), default=0),
        reports=reports,
        scrape_seconds=response.elapsed.total_seconds(),
        rss=rss,
    )


@pytest.mark.timeout(SCALE.test_timeout)
def test_hostile_cardinality_stays_bounded(tmp_path: Path, scale: Scale) -> None:
    """Two waves of new routes and services: series capped, every report counted, RSS flat."""
    caps = CollectorSettings.from_env(environ={})
    with (
        running_collector(tmp_path, HISTORY_ENV) as collector,
        httpx.Client(base_url=collector.url, timeout=60) as http,
    ):
        # Warm-up: a first batch and scrape load code and caches; a few series only.
        push_wave(http, "warmup", WARMUP_REPORTS, WARMUP_REPORTS)
        baseline = census(collector, http)
        expected = Tally(sent=sum(baseline.reports.values()))

        first = push_wave(http, "first", scale.routes, scale.services)
        first_rss = scraped_rss(collector, http)
        second = push_wave(http, "second", scale.routes, scale.services)
        after_second = census(collector, http)

    expected.add(first)
    expected.add(second)
    series_bound = caps.max_series + OVERFLOW_RESERVE_STATUSES
    counted = after_second.reports
    counted_total = sum(counted.get(o, 0) for o in ("accepted", "overflowed", "rejected"))
    first_growth = first_rss - baseline.rss
    second_growth = after_second.rss - first_rss
    second_budget = (
        SECOND_WAVE_RSS_BUDGET
        if scale.name == "full"
        else max(SECOND_WAVE_RSS_BUDGET, int(first_growth * SECOND_WAVE_SHARE))
    )
    sent = first.sent + second.sent

    record_figure(
        "4 cardinality: series",
        f"{after_second.series} series, "
        f"{after_second.services} service values, at most "
        f"{after_second.max_routes_per_service} routes per service, after "
        f"{scale.routes:,} routes x 2 waves over {scale.services:,} services x 2; "
        f"full scrape took {after_second.scrape_seconds:.2f} s",
        f"series <= max_series {caps.max_series} + overflow reserve "
        f"{OVERFLOW_RESERVE_STATUSES} = {series_bound}; services <= max_services + 2",
        after_second.series <= series_bound and after_second.services <= caps.max_services + 2,
    )
    record_figure(
        "4 cardinality: accounting",
        f"sent {sent:,}: answers say {first.accepted + second.accepted:,} accepted + "
        f"{first.overflowed + second.overflowed:,} overflowed + "
        f"{first.rejected + second.rejected:,} rejected; reports_total counted "
        f"{counted_total - sum(baseline.reports.values()):,} of them",
        "accepted + overflowed + rejected == sent (answers and reports_total)",
        first.accepted + first.overflowed + first.rejected == first.sent
        and second.accepted + second.overflowed + second.rejected == second.sent
        and counted_total == expected.sent,
    )
    record_figure(
        "4 cardinality: RSS",
        f"wave 1 ({scale.routes:,} routes): +{first_growth / MiB:.1f} MiB; "
        f"wave 2 (different {scale.routes:,}): {second_growth / MiB:+.1f} MiB "
        f"(baseline {baseline.rss / MiB:.1f} MiB)",
        f"<= {FIRST_WAVE_RSS_BUDGET // MiB} MiB, then <= {second_budget / MiB:.1f} MiB",
        first_growth <= FIRST_WAVE_RSS_BUDGET and second_growth <= second_budget,
    )

    assert after_second.series <= series_bound
    assert after_second.services <= caps.max_services + 2  # + __other__ and the unnamed service
    assert after_second.max_routes_per_service <= caps.max_routes_per_service + 1  # + __other__
    assert first.accepted + first.overflowed + first.rejected == first.sent
    assert second.accepted + second.overflowed + second.rejected == second.sent
    assert counted_total == expected.sent
    assert counted.get("accepted", 0) - baseline.reports.get("accepted", 0) == (
        first.accepted + second.accepted
    )
    assert counted.get("overflowed", 0) - baseline.reports.get("overflowed", 0) == (
        first.overflowed + second.overflowed
    )
    assert counted.get("rejected", 0) - baseline.reports.get("rejected", 0) == (
        first.rejected + second.rejected
    )
    assert first.overflowed > 0, "the wave never reached a cap: it proves nothing"
    assert first_growth <= FIRST_WAVE_RSS_BUDGET
    assert second_growth <= second_budget
