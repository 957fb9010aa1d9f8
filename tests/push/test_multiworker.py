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
    """2,000 requests over two workers: each worker's /metrics counts only the requests it
    served (the workers seen add up to at most the total, and to exactly it once every worker
    was seen), and after SIGTERM the collector counts exactly 2,000.

    How the kernel spreads connections over the workers, and which worker a scrape lands on,
    is the machine's business (on a busy machine one worker may take them all): the test
    asserts only what holds however they are spread.
    """
    collector = launcher.collector()
    service = launcher.service(collector.url, workers=WORKERS)

    assert send_requests(service.url, BULK_REQUESTS) == [200] * BULK_REQUESTS
    # A worker is told apart by its start time and its count (no request arrives between
    # the scrapes, so each worker shows one count throughout; two workers started in the
    # same 10 ms differ by count); each scrape lands on one.
    workers: set[tuple[float | None, int]] = set()
    for _ in range(LOCAL_SCRAPES):
        samples = scrape(service.url)
        workers.add((value(samples, START_TIME), request_counts(samples).get(SERIES, 0)))
    assert send_requests(service.url, TAIL_REQUESTS) == [200] * TAIL_REQUESTS
    service.terminate()  # the parent SIGTERMs its workers; each flushes its own queue

    local_counts = [count for _, count in workers]
    assert len(workers) <= WORKERS, workers
    if len(workers) == WORKERS:
        assert sum(local_counts) == BULK_REQUESTS, workers
    else:
        assert sum(local_counts) <= BULK_REQUESTS, workers
    total = request_counts(scrape(collector.url), service=SERVICE_NAME)
    assert total == {SERIES: N_REQUESTS}
    assert "Traceback" not in service.stderr(), service.output()
