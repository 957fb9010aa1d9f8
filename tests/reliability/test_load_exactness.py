"""Item 6: exact numbers under load, from a real collector process.

An async client pushes single reports and batches at a steady rate for a while, from a
seeded generator whose every acknowledged report is remembered. Scrapes taken meanwhile
must each parse and never see a counter, bucket, count or sum go down; afterwards every
series must hold exactly what was sent: count, per-bucket counts and (to 1e-9) sum.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from otelkit.instruments import DURATION_BUCKETS_SECONDS, HTTP_REQUEST_DURATION
from tests.e2e.servers import running_collector
from tests.reliability.conftest import (
    SCALE,
    Labels,
    Scale,
    first,
    monotonic_samples,
    parse_text,
    record_figure,
)

REQUESTS_PER_SECOND = 25
"""Half single reports, half batches of 1-50: about 330 reports a second."""
MAX_IN_FLIGHT = 32
SUM_RELATIVE_TOLERANCE = 1e-9
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

METHODS = ("GET", "POST", "DELETE")
ROUTES = ("/api/courses", "/api/courses/{course_id}", "/")
STATUSES = (200, 404, 500, 503)
SERVICES = (None, "courses")
BINARY_FRACTIONS = (0.0, 0.0078125, 0.03125, 0.0625, 0.25, 0.5, 0.75, 1.0, 2.5, 7.5, 10.0, 96.0)
"""Exactly representable durations (several of them bucket boundaries)."""
BOUNDARIES = (*DURATION_BUCKETS_SECONDS,)


def durations(rng: random.Random) -> Iterator[float]:
    """Exact binary fractions, every bucket boundary and its neighbours, and arbitrary floats."""
    while True:
        pick = rng.randrange(6)
        if pick == 0:
            yield rng.choice(BINARY_FRACTIONS)
        elif pick == 1:
            yield rng.choice(BOUNDARIES)
        elif pick == 2:
            bound = rng.choice(BOUNDARIES)
            yield math.nextafter(bound, rng.choice((0.0, math.inf)))
        elif pick == 3:
            yield rng.uniform(0.0, 12.0)
        elif pick == 4:
            yield rng.expovariate(20.0)
        else:
            yield rng.random() * 86_400.0 if rng.random() < 0.01 else rng.random() / 7


def reports(rng: random.Random) -> Iterator[dict[str, Any]]:
    for duration in durations(rng):
        report: dict[str, Any] = {
            "method": rng.choice(METHODS),
            "route": rng.choice(ROUTES),
            "status": rng.choice(STATUSES),
            "duration": duration,
        }
        service = rng.choice(SERVICES)
        if service is not None:
            report["service"] = service
        yield report


def series_key(report: dict[str, Any]) -> Labels:
    labels = {"method": report["method"], "route": report["route"], "status": str(report["status"])}
    if "service" in report:
        labels["service"] = report["service"]
    return frozenset(labels.items())


@dataclass
class Expected:
    """What the collector acknowledged, per series."""

    durations: dict[Labels, list[float]] = field(default_factory=dict)
    requests: int = 0
    failures: list[str] = field(default_factory=list)

    def acknowledge(self, batch: list[dict[str, Any]]) -> None:
        self.requests += 1
        for report in batch:
            self.durations.setdefault(series_key(report), []).append(report["duration"])

    @property
    def reports(self) -> int:
        return sum(map(len, self.durations.values()))


@dataclass
class Scrapes:
    taken: int = 0
    problems: list[str] = field(default_factory=list)
    previous: dict[tuple[str, Labels], float] | None = None


async def scrape(http: httpx.AsyncClient, scrapes: Scrapes) -> None:
    """One text and one OpenMetrics scrape: both parse, and nothing went down since the last."""
    text = await http.get("/metrics")
    openmetrics = await http.get("/metrics", headers={"accept": OPENMETRICS})
    scrapes.taken += 1
    if text.status_code != 200 or openmetrics.status_code != 200:
        scrapes.problems.append(f"scrape {scrapes.taken}: {text.status_code}")
        return
    try:
        # Parsing is CPU work: off the event loop, so that pushes keep their pace.
        await asyncio.to_thread(lambda: list(openmetrics_families(openmetrics.text)))
        current = await asyncio.to_thread(monotonic_samples, text.text)
    except ValueError as exc:
        scrapes.problems.append(f"scrape {scrapes.taken} does not parse: {exc}")
        return
    if scrapes.previous is not None:
        for key, value in scrapes.previous.items():
            if key not in current:
                scrapes.problems.append(f"scrape {scrapes.taken}: {key} vanished")
            elif current[key] < value:
                scrapes.problems.append(f"scrape {scrapes.taken}: {key} {value} -> {current[key]}")
    scrapes.previous = current


@dataclass(frozen=True)
class Pace:
    """How steady the open-loop pushing was."""

    pushing_seconds: float
    """From the first push to the last one sent."""
    drain_seconds: float
    """From the last push sent until every answer was in."""
    worst_lag: float
    """Latest a push left after its due time (the client falling behind)."""


async def run_load(url: str, seconds: float, scrape_count: int) -> tuple[Expected, Scrapes, Pace]:
    """Push for ``seconds`` at a steady rate while scraping ``scrape_count`` times."""
    rng = random.Random(20_240_601)
    generator = reports(rng)
    expected = Expected()
    scrapes = Scrapes()
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT)
    async with (
        httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as push,
        httpx.AsyncClient(base_url=url, timeout=30) as scraper,
    ):

        async def send(batch: list[dict[str, Any]], single: bool) -> None:
            async with gate:
                try:
                    if single:
                        response = await push.post("/api/metrics/http", json=batch[0])
                    else:
                        body = {"reports": batch}
                        response = await push.post("/api/metrics/http/batch", json=body)
                except httpx.HTTPError as exc:
                    expected.failures.append(f"{type(exc).__name__}: {exc}")
                    return
            if response.status_code == 200 and response.json()["overflowed"] == 0:
                expected.acknowledge(batch)
            else:
                expected.failures.append(f"{response.status_code}: {response.text[:200]}")

        async def scrape_periodically(started: float) -> None:
            for i in range(1, scrape_count + 1):
                await asyncio.sleep(max(0.0, started + i * seconds / (scrape_count + 1) - now()))
                await scrape(scraper, scrapes)

        loop = asyncio.get_running_loop()
        now = loop.time
        started = now()
        scraping = asyncio.create_task(scrape_periodically(started))
        pending: set[asyncio.Task[None]] = set()
        tick = 0
        worst_lag = 0.0
        while (due := started + tick / REQUESTS_PER_SECOND) < started + seconds:
            await asyncio.sleep(max(0.0, due - now()))
            worst_lag = max(worst_lag, now() - due)
            single = tick % 2 == 0
            batch = [next(generator) for _ in range(1 if single else rng.randint(1, 50))]
            task = asyncio.create_task(send(batch, single))
            pending.add(task)
            task.add_done_callback(pending.discard)
            tick += 1
        pushed = now()
        await asyncio.gather(*pending)
        pace = Pace(pushed - started, now() - pushed, worst_lag)
        await scraping
        await scrape(scraper, scrapes)
    return expected, scrapes, pace


def check_series(
    exposition: dict[tuple[str, Labels], float], expected: Expected
) -> tuple[list[str], float]:
    """Mismatches between the final scrape and what was acknowledged; worst sum error."""
    name = HTTP_REQUEST_DURATION.prometheus_name
    buckets: dict[Labels, dict[float, float]] = {}
    for (sample, labels), value in exposition.items():
        if sample == f"{name}_bucket":
            le = dict(labels)["le"]
            buckets.setdefault(labels - {("le", le)}, {})[float(le)] = value
    problems: list[str] = []
    worst = 0.0
    seen = {labels for (sample, labels) in exposition if sample == f"{name}_count"}
    if seen != set(expected.durations):
        extra, missing = seen - set(expected.durations), set(expected.durations) - seen
        problems.append(f"series differ: extra {extra}, missing {missing}")
    bounds = [*BOUNDARIES, math.inf]
    for labels, values in expected.durations.items():
        count = exposition.get((f"{name}_count", labels))
        total = exposition.get((f"{name}_sum", labels), math.nan)
        exact = math.fsum(values)
        error = abs(total - exact) / exact if exact else abs(total)
        worst = max(worst, error)
        if count != len(values):
            problems.append(f"{dict(labels)}: _count {count} != {len(values)}")
        if not error <= SUM_RELATIVE_TOLERANCE:
            problems.append(f"{dict(labels)}: _sum {total!r} != {exact!r} (rel {error:.2e})")
        cumulative = [buckets.get(labels, {}).get(bound, math.nan) for bound in bounds]
        wanted = [float(sum(1 for v in values if v <= bound)) for bound in bounds]
        if cumulative != wanted:
            problems.append(f"{dict(labels)}: buckets {cumulative} != {wanted}")
        if any(b > a for a, b in zip(cumulative[1:], cumulative, strict=False)):
            problems.append(f"{dict(labels)}: buckets not monotonic {cumulative}")
        if cumulative[-1] != count:
            problems.append(f"{dict(labels)}: +Inf {cumulative[-1]} != _count {count}")
    return problems, worst


@pytest.mark.timeout(SCALE.test_timeout)
def test_numbers_stay_exact_under_load(tmp_path: Path, scale: Scale) -> None:
    """Under a steady push load, scrapes never go backwards and every series ends exact."""
    with running_collector(tmp_path, {}) as collector:
        expected, scrapes, pace = asyncio.run(
            run_load(collector.url, scale.load_seconds, scale.load_scrapes)
        )
        final = parse_text(httpx.get(f"{collector.url}/metrics", timeout=30).text)

    problems, worst = check_series(final, expected)
    passed = not (problems or scrapes.problems or expected.failures)
    record_figure(
        "6 load exactness",
        f"{expected.requests:,} requests ({expected.reports:,} reports, "
        f"{len(expected.durations)} series) over {pace.pushing_seconds:.1f} s = "
        f"{expected.requests / pace.pushing_seconds:.0f} req/s, "
        f"{expected.reports / pace.pushing_seconds:.0f} reports/s (worst client lag "
        f"{pace.worst_lag * 1000:.0f} ms, drain {pace.drain_seconds:.2f} s); "
        f"{len(problems)} series mismatches, worst _sum error {worst:.1e} relative; "
        f"{scrapes.taken} scrapes, {len(scrapes.problems)} decreases/parse errors; "
        f"{len(expected.failures)} failed pushes",
        "_count, buckets exact; _sum within 1e-9; +Inf == _count; "
        f"{scale.load_scrapes} scrapes parse, never decrease",
        passed,
    )
    assert not expected.failures, first(expected.failures)
    assert not scrapes.problems, first(scrapes.problems)
    assert not problems, first(problems)
    assert scrapes.taken == scale.load_scrapes + 1
