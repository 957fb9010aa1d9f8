"""Multi-worker services: each uvicorn worker's /metrics shows only that worker, while push
mode gives the collector the exact fleet total."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from otelkit.instruments import PROCESS_METRIC_PREFIXES
from tests.push.conftest import SERVICE_NAME, Launcher, request_counts, scrape, value

WORKERS = 2
N_REQUESTS = 2_000
TAIL_REQUESTS = 50
"""Sent just before SIGTERM: they reach the collector only through the workers' flush."""
BULK_REQUESTS = N_REQUESTS - TAIL_REQUESTS
CONCURRENCY = 4
LOCAL_SCRAPES = 30
ROUTE = "/api/courses"
SERIES = ("GET", ROUTE, "200")
START_TIME = f"{PROCESS_METRIC_PREFIXES[0]}start_time_seconds"


def send_requests(base_url: str, n: int) -> list[int]:
    """``n`` GETs of :data:`ROUTE` from :data:`CONCURRENCY` threads at once, each request on
    a new connection so the kernel spreads them over the workers; return the status codes.

    Threads with sync clients: on two cores httpx's async client costs more CPU per
    request than the service does, and would slow the test by half again.
    """

    def send(count: int) -> list[int]:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=base_url, timeout=30, limits=limits) as http:
            return [http.get(ROUTE).status_code for _ in range(count)]

    shares = [n // CONCURRENCY + (i < n % CONCURRENCY) for i in range(CONCURRENCY)]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return [status for statuses in pool.map(send, shares) for status in statuses]


def test_workers_push_exact_fleet_totals(launcher: Launcher) -> None:
    """2,000 requests over two workers: no worker's /metrics shows them all (the workers'
    counts add up to them), and after SIGTERM the collector counts exactly 2,000."""
    collector = launcher.collector()
    service = launcher.service(collector.url, workers=WORKERS)

    assert send_requests(service.url, BULK_REQUESTS) == [200] * BULK_REQUESTS
    # A worker is told apart by its start time and its count; each scrape lands on one.
    per_worker: dict[tuple[float | None, int], int] = {}
    for _ in range(LOCAL_SCRAPES):
        samples = scrape(service.url)
        worker = (value(samples, START_TIME), request_counts(samples).get(SERIES, 0))
        per_worker[worker] = per_worker.get(worker, 0) + 1
    assert send_requests(service.url, TAIL_REQUESTS) == [200] * TAIL_REQUESTS
    service.terminate()  # the parent SIGTERMs its workers; each flushes its own queue

    local_counts = sorted(count for _, count in per_worker)
    assert all(count < BULK_REQUESTS for count in local_counts), (
        f"one worker's /metrics showed the fleet's count: {per_worker}"
    )
    if len(per_worker) == 1:
        # Two workers look alike only if they started in the same 10 ms and split evenly.
        assert local_counts == [BULK_REQUESTS // WORKERS], per_worker
    else:
        assert len(per_worker) == WORKERS, per_worker
        assert sum(local_counts) == BULK_REQUESTS, per_worker
    total = request_counts(scrape(collector.url), service=SERVICE_NAME)
    assert total == {SERIES: N_REQUESTS}
    assert "Traceback" not in service.stderr(), service.output()
