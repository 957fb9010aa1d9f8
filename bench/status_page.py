"""Status page: render time at full caps, the history's memory and tick cost, ingest with it open.

1. Render: a collector built in-process by ``create_app`` (default caps) is filled through
   its batch endpoint over ``httpx.ASGITransport`` to 1,000 services (each with a health
   report and an active-user count; 1 in 20 left stale) and the series cap full: 2,000 HTTP
   series (one service at the 200-routes-per-service cap, the rest 1 or 2 routes each), plus
   the 500 global overflow series (one per status code 100-599). After each round of
   reports the app takes a tick (``StatusSource.take_tick``, what its sampler calls) under a
   fake clock, until every kept tick of every route has data. Then ``GET /`` (through the
   ASGI app) and ``snapshot()`` + ``render_home()`` (in-process, what that route calls) are
   timed, each first after a tick (nothing cached yet) and again in the same tick; and
   ``GET /services/{name}`` (the 200-route service), ``GET /api/status`` and the stamp.
2. History: the memory a fresh ``History`` holds (tracemalloc, before vs after) once it has
   taken every kept tick of the same 2,500 series, checked against the arrays' sizes
   computed from its layout; and one tick at full caps, from the app's own source (its
   reader, ``SamplingPrometheusReader.series``), from the registry fallback
   (``registry_series``), and ``History.sample()`` alone.
3. Ingest with the page open: a real collector (bearer auth, default caps, a 1 s history
   resolution so ticks happen during the run) filled as above, then ``wrk`` pushing batches
   of 100 reports in alternating phases: nobody viewing (A), and the page open (B): a viewer
   polling the stamp as the page's script does and loading ``/`` whenever it changed.
   Reports each B phase's reports/s over the A phases beside it.

    python -m bench.status_page [--quick]
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import secrets
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from bench.common import (
    LOOPBACK,
    MIB,
    PYTHON,
    Target,
    bench_env,
    cpu_seconds,
    emit_json,
    fmt,
    free_port,
    managed_process,
    median,
    memory_bytes,
    parse_args,
    print_table,
    print_targets,
    wait_until_ready,
)
from bench.wrk import WRK, Load, run_wrk, wrk_script
from otelkit.reports import MAX_BATCH_REPORTS
from otelkit_collector.app import create_app
from otelkit_collector.cardinality import OVERFLOW_RESERVE_STATUSES
from otelkit_collector.history import BUCKETS, WIDTH, History, SeriesLabels
from otelkit_collector.sampling import SeriesSource, registry_series
from otelkit_collector.settings import MAX_HISTORY_TICKS, CollectorSettings
from otelkit_collector.status import StatusSource, snapshot, stamp
from otelkit_collector.status_page import REFRESH_MILLISECONDS, render_home

SETTINGS = CollectorSettings()
"""The defaults: 1,000 services, 200 routes per service, 2,000 series, 90 ticks of 10 s."""
SERVICES = SETTINGS.max_services
SERIES = SETTINGS.max_series
BIG_SERVICE_ROUTES = SETTINGS.max_routes_per_service
OVERFLOW_STATUSES = tuple(range(100, 100 + OVERFLOW_RESERVE_STATUSES))
STALE_EVERY = 20
"""One service in 20 reports its health before the ticks (fake time): stale by the end."""
HEALTH_WORDS = ("healthy",) * 6 + ("degraded", "unhealthy", "down")
RENDER_TARGET_MS = 100.0
MEMORY_TARGET_MIB = 20.0
INGEST_RATIO_TARGET = 0.9
WRK_BATCH = 100
VIEWER_POLL_SECONDS = REFRESH_MILLISECONDS / 1000
"""The viewer polls as the page's script does."""
SETTLE_SECONDS = 0.5
"""Wait after wrk exits: requests it abandoned mid-flight may still be finishing server-side."""


@dataclass(frozen=True)
class Mode:
    """What a quick or full run does."""

    renders: int
    """Renders of / per row: first after a tick and again, through ASGI and in-process."""
    other_renders: int
    ticks_timed: int
    """Ticks timed per series source."""
    extra_ticks: int
    """Ticks past a full ring, so the history has wrapped (and its window slid)."""
    traced_ticks: int | None
    """Ticks the memory measure takes under tracemalloc (None: all; the rest untraced)."""
    phase_seconds: int
    phases: str
    warm_up_seconds: int


QUICK = Mode(renders=5, other_renders=3, ticks_timed=2, extra_ticks=2, traced_ticks=2,
             phase_seconds=3, phases="ABAB", warm_up_seconds=1)  # fmt: skip
FULL = Mode(renders=21, other_renders=7, ticks_timed=11, extra_ticks=5, traced_ticks=None,
            phase_seconds=10, phases="ABABABABA", warm_up_seconds=3)  # fmt: skip


# -- the load: services, series, reports ------------------------------------------------------


def service_name(index: int) -> str:
    return f"svc-{index:04d}"


def series_plan() -> list[tuple[str, str, int]]:
    """The 2,000 series (service, route, status): svc-0000 holds 200 routes (the per-service
    cap); the other 1,800 spread over the other 999 services, one or two routes each."""
    statuses = (200, 200, 200, 404, 500)
    plan = [
        (service_name(0), f"/api/big/{index:03d}/{{id}}", statuses[index % len(statuses)])
        for index in range(BIG_SERVICE_ROUTES)
    ]
    others = SERVICES - 1
    for index in range(SERIES - BIG_SERVICE_ROUTES):
        route = f"/api/resource{index // others}/{{id}}"
        plan.append((service_name(1 + index % others), route, statuses[index % len(statuses)]))
    return plan


PLAN = series_plan()


def duration_of(index: int, tick: int) -> float:
    """Durations spread over the buckets, moving from tick to tick; now and then a slow one."""
    if (index + tick) % 97 == 0:
        return 1.3
    return round(0.002 * (1 + (index * 7 + tick * 3) % 60), 4)


def tick_reports(tick: int, *, overflow: bool = True) -> list[dict[str, Any]]:
    """One report for every planned series, then (``overflow``) one for each status code on
    a route the caps fold into the global overflow series."""
    reports: list[dict[str, Any]] = [
        {
            "method": "GET",
            "route": route,
            "status": status,
            "duration": duration_of(index, tick),
            "service": service,
        }
        for index, (service, route, status) in enumerate(PLAN)
    ]
    if overflow:
        # The series cap is full: each status code folds into one global overflow series.
        reports.extend(
            {
                "method": "POST",
                "route": "/overflow/{id}",
                "status": status,
                "duration": duration_of(status, tick),
                "service": service_name(SERVICES - 1),
            }
            for status in OVERFLOW_STATUSES
        )
    return reports


def batches(reports: list[dict[str, Any]], size: int = MAX_BATCH_REPORTS) -> Iterator[str]:
    for start in range(0, len(reports), size):
        yield json.dumps({"reports": reports[start : start + size]}, separators=(",", ":"))


def health_word(index: int) -> str:
    return HEALTH_WORDS[index % len(HEALTH_WORDS)]


def users_of(index: int) -> int:
    return index * 37 % 5_000


# -- 1. render, in-process --------------------------------------------------------------------


class FakeClock:
    """Unix time that moves only when told: 95 ticks of 10 s take no 16 minutes."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class InProcess:
    """The filled app and what the bench reads from it."""

    app: Any
    source: StatusSource
    registry: CollectorRegistry
    clock: FakeClock
    overflowed: int = 0
    tick: int = 0
    """Ticks' worth of reports pushed so far (each round's durations move with it)."""
    setup: dict[str, Any] = field(default_factory=dict)
    collected: dict[str, float] = field(default_factory=dict)
    """The garbage collector's share of GET / with the heap as the app has it."""

    async def push_and_tick(self, client: httpx.AsyncClient, seconds: float) -> None:
        """A round of reports, ``seconds`` of fake time, and the app's own tick."""
        self.overflowed += await push_tick(client, self.tick)
        self.tick += 1
        self.clock.now += seconds
        self.source.take_tick()


async def post_ok(client: httpx.AsyncClient, path: str, **kwargs: Any) -> httpx.Response:
    response = await client.post(path, **kwargs)
    response.raise_for_status()
    return response


async def push_tick(client: httpx.AsyncClient, tick: int) -> int:
    """Push one round of reports; return how many were folded into overflow series."""
    overflowed = 0
    headers = {"Content-Type": "application/json"}
    for body in batches(tick_reports(tick)):
        response = await post_ok(client, "/api/metrics/http/batch", content=body, headers=headers)
        overflowed += int(response.json().get("overflowed", 0))
    return overflowed


async def report_state(client: httpx.AsyncClient, indexes: Iterable[int]) -> None:
    """Each service's health and active users (``concurrency`` services at a time)."""
    pending = list(indexes)
    concurrency = 25
    for start in range(0, len(pending), concurrency):
        requests = []
        for index in pending[start : start + concurrency]:
            name = service_name(index)
            health = {"status": health_word(index)}
            users = {"service": name, "count": users_of(index)}
            requests.append(post_ok(client, f"/api/health/{name}", json=health))
            requests.append(post_ok(client, "/api/metrics/users", json=users))
        await asyncio.gather(*requests)


def asgi_client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://collector", timeout=60)


async def build_filled(extra_ticks: int) -> InProcess:
    """A default-caps app filled to full caps, every kept tick of every route with data.

    ``httpx.ASGITransport`` runs no lifespan, so the app's sampler never starts: the bench
    takes each tick itself through ``StatusSource.take_tick``, what the sampler calls.
    """
    clock = FakeClock()
    app = create_app(SETTINGS, clock=clock)
    source: StatusSource = app.state.status
    history = source.history
    filled = InProcess(app, source, app.state.registry, clock)
    started = time.monotonic()
    async with asgi_client(app) as client:
        await report_state(client, range(0, SERVICES, STALE_EVERY))
        for _ in range(history.slots + extra_ticks):
            await filled.push_and_tick(client, SETTINGS.history_resolution_seconds)
        await report_state(client, (i for i in range(SERVICES) if i % STALE_EVERY))
    fill_seconds = time.monotonic() - started
    view = snapshot(source, route_figures=False)
    guard = source.recorder.guard
    filled.setup = {
        "service_rows": len(view.services),
        "stale": sum(1 for s in view.services if s.health == "stale"),
        "series": guard.series_count,
        "history_series": sum(1 for _ in source.series()),
        "history_routes": history.route_count,
        "routes_of_biggest": max(len(s.routes) for s in view.services),
        "ticks": history.samples,
        "fill_seconds": round(fill_seconds, 2),
        "reports_folded": filled.overflowed,
    }
    return filled


@dataclass
class Timings:
    """Wall and CPU milliseconds of repeated calls, and the size of what they produced."""

    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    size: int = 0

    def add(self, wall_s: float, cpu_s: float) -> None:
        self.wall_ms.append(wall_s * 1000)
        self.cpu_ms.append(cpu_s * 1000)

    def summary(self) -> dict[str, float]:
        return {
            "median_ms": median(self.wall_ms),
            "max_ms": max(self.wall_ms),
            "cpu_median_ms": median(self.cpu_ms),
            "bytes": self.size,
        }


def clocks() -> tuple[float, float]:
    """Wall and thread CPU time, now."""
    return time.perf_counter(), time.thread_time()


def since(started: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - started[0], cpu - started[1]


TIMING_TICK_SECONDS = 1.0
"""Fake time per tick while timing: 40-odd ticks of 10 s would leave every service stale
(health TTL 90 s), which is not the page this bench is about."""

HOME_COLD = "GET / (ASGI), first after a tick"
HOME_WARM = "GET / (ASGI), again in the same tick"
PURE_COLD = "snapshot() + render_home(), first after a tick"
SNAPSHOT = "  of which snapshot()"
RENDER = "  of which stamp() + render_home()"
PURE_WARM = "snapshot() + render_home(), again in the same tick"
HOME_AS_APP = "GET / (ASGI), first after a tick, heap as the app's"
SERVICE_PAGE = f"GET /services/{service_name(0)} ({BIG_SERVICE_ROUTES} routes)"
API_STATUS = "GET /api/status"
API_STAMP = "GET /api/status/stamp"


async def time_renders(filled: InProcess, mode: Mode) -> dict[str, Timings]:
    """Time the page's answers: ``/`` through the ASGI app and in-process (what its route
    calls), each first after a tick (a round of reports pushed, untimed) and again; then
    ``/`` with the heap as the app has it (what the garbage collector took goes to
    ``filled.collected``)."""
    source = filled.source
    names = (HOME_COLD, HOME_WARM, PURE_COLD, SNAPSHOT, RENDER, PURE_WARM, HOME_AS_APP)
    results = {name: Timings() for name in (*names, SERVICE_PAGE, API_STATUS, API_STAMP)}
    async with asgi_client(filled.app) as client:

        async def get(name: str, path: str) -> None:
            gc.collect()
            started = clocks()
            response = await client.get(path)
            results[name].add(*since(started))
            response.raise_for_status()
            results[name].size = len(response.content)

        def pure_home(name: str, split: bool) -> None:
            """What GET / calls (status_routes.home), timed in its two parts."""
            gc.collect()
            started = clocks()
            view = snapshot(source, route_figures=False)
            middle = clocks()
            body = render_home(view, stamp(source), source.trends)
            if split:
                results[SNAPSHOT].add(middle[0] - started[0], middle[1] - started[1])
                results[RENDER].add(*since(middle))
            results[name].add(*since(started))
            results[name].size = len(body.encode())

        # One of each first, untimed: imports, caches and the first allocations settle.
        for path in ("/", "/api/status", f"/services/{service_name(0)}"):
            (await client.get(path)).raise_for_status()
        # After each tick, one side renders first (cold: the sparklines are drawn anew) and
        # the other again in the same tick (warm); the sides take turns.
        for index in range(2 * mode.renders):
            await filled.push_and_tick(client, TIMING_TICK_SECONDS)
            if index % 2 == 0:
                await get(HOME_COLD, "/")
                pure_home(PURE_WARM, split=False)
            else:
                pure_home(PURE_COLD, split=True)
                await get(HOME_WARM, "/")
        for _ in range(mode.other_renders):
            await get(SERVICE_PAGE, f"/services/{service_name(0)}")
            await get(API_STATUS, "/api/status")
            await get(API_STAMP, "/api/status/stamp")
        # As in the app: the heap not frozen, no collection beforehand, so the collections
        # a render's garbage sets off (now and then a full one) count in its time.
        gc.unfreeze()
        gc.collect()
        collecting = GcTime()
        for _ in range(mode.renders):
            await filled.push_and_tick(client, TIMING_TICK_SECONDS)
            gc.callbacks.append(collecting)
            try:
                started = clocks()
                response = await client.get("/")
                results[HOME_AS_APP].add(*since(started))
            finally:
                gc.callbacks.remove(collecting)
            results[HOME_AS_APP].size = len(response.content)
        gc.collect()
        gc.freeze()
    filled.collected = {
        "gc_ms_per_render": collecting.seconds / mode.renders * 1000,
        "full_collections": collecting.full,
        "renders": mode.renders,
    }
    return results


class GcTime:
    """A ``gc.callbacks`` entry: CPU time spent collecting, and how many full collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        self.seconds += time.thread_time() - self._started
        self.full += info["generation"] == 2


# -- 2. the history: memory and one tick ------------------------------------------------------


def history_layout_bytes(routes: int, series: int, services: int, slots: int) -> int:
    """The payload of the history's arrays, from its layout (history.py): per route a ring of
    ``slots`` x WIDTH 32-bit counters and a window of WIDTH + 1 64-bit sums; per series its
    previous BUCKETS 64-bit counts; per service ``slots`` 32-bit totals; the tick times."""
    per_route = slots * WIDTH * 4 + (WIDTH + 1) * 8
    return routes * per_route + series * BUCKETS * 8 + services * slots * 4 + (slots + 1) * 8


def measure_history_memory(
    labels: Sequence[SeriesLabels], slots: int, ticks: int, traced_ticks: int | None
) -> dict[str, Any]:
    """What a fresh History holds once ``labels`` have data in every kept tick (tracemalloc:
    traced memory after the first ``traced_ticks`` ticks minus before the History was made;
    every array it keeps is allocated at full size on its route's or series' first tick)."""
    cumulative = [[0] * BUCKETS for _ in labels]

    def feed(tick: int) -> Iterator[tuple[SeriesLabels, Sequence[int]]]:
        for index, (service, method, route, status) in enumerate(labels):
            counts = cumulative[index]
            counts[(index + tick) % BUCKETS] += 1 + tick % 3
            # A new tuple each tick, as the reader makes: the history keeps the first.
            yield (service, method, route, status), list(counts)

    traced_ticks = ticks if traced_ticks is None else min(ticks, traced_ticks)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = History(
            slots=slots, window_slots=SETTINGS.window_ticks, max_series=len(labels) + 1
        )
        for tick in range(traced_ticks):
            history.sample(feed(tick))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    for tick in range(traced_ticks, ticks):
        history.sample(feed(tick))
    services = {label[0] for label in labels}
    computed = history_layout_bytes(history.route_count, len(labels), len(services), slots)
    traced = after - before
    return {
        "traced_bytes": traced,
        "traced_ticks": traced_ticks,
        "computed_bytes": computed,
        "routes": history.route_count,
        "series": len(labels),
        "services": len(services),
        "ticks": history.samples,
        "overhead_per_route": (traced - computed) / history.route_count,
        "all_ticks_filled": all(
            len(totals) == slots and all(totals)
            for totals in (history.service_totals(name) for name in services)
        ),
    }


READER = "the app's own: SamplingPrometheusReader.series"
REGISTRY = "registry fallback: registry_series"
SAMPLE_ONLY = "  of which History.sample() (series read beforehand)"


async def time_ticks(filled: InProcess, mode: Mode) -> dict[str, list[float]]:
    """CPU time of one tick at full caps (a fresh report in every series before each,
    untimed), from the app's own source (its reader), from the registry fallback, and the
    history's part alone, in turn."""
    history = filled.source.history
    sources: dict[str, SeriesSource] = {
        READER: filled.source.series,
        REGISTRY: partial(registry_series, filled.registry),
        SAMPLE_ONLY: filled.source.series,
    }
    times: dict[str, list[float]] = {name: [] for name in sources}
    async with asgi_client(filled.app) as client:
        for _ in range(mode.ticks_timed):
            for name, source in sources.items():
                filled.overflowed += await push_tick(client, filled.tick)
                filled.tick += 1
                filled.clock.now += TIMING_TICK_SECONDS
                # SAMPLE_ONLY reads the series first, untimed: the SDK collection left out.
                series = list(source()) if name == SAMPLE_ONLY else None
                gc.collect()
                started = time.thread_time()
                history.sample(series if series is not None else source())
                times[name].append((time.thread_time() - started) * 1000)
    return times


# -- 3. ingest with the page open -------------------------------------------------------------


class Viewer(threading.Thread):
    """A reader of the page as status.js reads it: the stamp every 5 s, and ``/`` whenever
    the stamp changed."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.stopping = threading.Event()
        self.polls = 0
        self.page_ms: list[float] = []
        self.page_bytes = 0
        self.errors = 0

    def run(self) -> None:
        last = None
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self.stopping.is_set():
                try:
                    current = client.get("/api/status/stamp").json()["stamp"]
                    self.polls += 1
                    if current != last:
                        started = time.perf_counter()
                        page = client.get("/", headers={"Accept": "text/html"})
                        page.raise_for_status()
                        self.page_ms.append((time.perf_counter() - started) * 1000)
                        self.page_bytes = len(page.content)
                        last = current
                except httpx.HTTPError:
                    self.errors += 1
                # status.js waits its interval after each answer, not from each start.
                self.stopping.wait(VIEWER_POLL_SECONDS)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)


def wrk_bodies() -> list[tuple[str, str]]:
    """20 batches of 100 reports: every planned series once, none folded."""
    reports = tick_reports(0, overflow=False)
    for index, report in enumerate(reports):
        report["duration"] = duration_of(index * 13, index)
    return [("/api/metrics/http/batch", body) for body in batches(reports, WRK_BATCH)]


def read_stamp(client: httpx.Client) -> tuple[int, int]:
    """(ticks taken, reports counted) from ``/api/status`` (read outside the timed phases)."""
    collector = client.get("/api/status").json()["collector"]
    return int(collector["ticks"]), sum(int(n) for n in collector["reports"].values())


def fill_collector(collector: Collector) -> int:
    """Every service's health and users, and one round of every series (overflow included);
    return how many reports were folded. Over one keep-alive connection with the standard
    library's client: a third of httpx's cost per request, for 2,000 small ones."""
    connection = http.client.HTTPConnection(LOOPBACK, collector.port, timeout=60)
    headers = {"Content-Type": "application/json", **collector.auth}

    def post(path: str, body: str) -> dict[str, Any]:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {answer[:200]!r}")
        result: dict[str, Any] = json.loads(answer)
        return result

    try:
        for index in range(SERVICES):
            name = service_name(index)
            post(f"/api/health/{name}", json.dumps({"status": health_word(index)}))
            post("/api/metrics/users", json.dumps({"service": name, "count": users_of(index)}))
        return sum(
            int(post("/api/metrics/http/batch", body).get("overflowed", 0))
            for body in batches(tick_reports(0))
        )
    finally:
        connection.close()


@dataclass
class Collector:
    """The collector process the ingest phases load."""

    port: int
    proc: subprocess.Popen[bytes]
    token: str

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def start_collector(stack: ExitStack) -> Collector:
    """``python -m otelkit_collector``: bearer auth, default caps, a tick every second."""
    token = secrets.token_urlsafe(24)
    port = free_port()
    env = bench_env(
        OTELKIT_COLLECTOR_TOKEN=token,
        OTELKIT_HISTORY_RESOLUTION_SECONDS="1",
        # 90 ticks of 1 s: the default 900 s would be 900 ticks, past MAX_HISTORY_TICKS.
        OTELKIT_HISTORY_SECONDS="90",
    )
    argv = [PYTHON, "-m", "otelkit_collector", "--host", LOOPBACK, "--port", str(port)]
    proc = stack.enter_context(managed_process([*argv, "--log-level", "warning"], env=env))
    return Collector(port, proc, token)


def run_phase(
    kind: str, collector: Collector, client: httpx.Client, script: Path, load: Load
) -> dict[str, Any]:
    """One wrk run; in a B phase, with the viewer reading the page meanwhile."""
    url = f"{collector.base_url}/api/metrics/http/batch"
    ticks_before, reports_before = read_stamp(client)
    viewer = Viewer(collector.base_url) if kind == "B" else None
    cpu_before, wall_before = cpu_seconds(collector.proc.pid), time.monotonic()
    if viewer is not None:
        viewer.start()
    try:
        wrk = run_wrk(url, script, load)
    finally:
        if viewer is not None:
            viewer.stop()
    wall = time.monotonic() - wall_before
    cpu = max(1e-6, cpu_seconds(collector.proc.pid) - cpu_before) / wall
    time.sleep(SETTLE_SECONDS)
    ticks_after, reports_after = read_stamp(client)
    seconds = wrk["duration_us"] / 1e6
    non_2xx = max(wrk["non_2xx"], wrk["status_errors"])
    socket_errors = sum(
        wrk[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return {
        "phase": kind,
        "reports_per_s": wrk["requests"] * WRK_BATCH / seconds,
        "latency_p50_ms": wrk["latency_p50_us"] / 1000,
        "latency_p99_ms": wrk["latency_p99_us"] / 1000,
        "server_cpu_cores": cpu,
        # What the collector got done per second of CPU it was given: steadier than reports/s
        # on a shared machine, and what the page's renders take away from.
        "reports_per_cpu_s": wrk["requests"] * WRK_BATCH / seconds / cpu,
        "ticks": [ticks_before, ticks_after],
        "errors": non_2xx + socket_errors + (viewer.errors if viewer else 0),
        # Only these batches arrive meanwhile: every report the stamp counts is one of them.
        "unacknowledged": reports_after - reports_before - (wrk["requests"] - non_2xx) * WRK_BATCH,
        "unacknowledged_limit": load.connections * WRK_BATCH,
        "stamp_polls": viewer.polls if viewer else 0,
        "page_ms": viewer.page_ms if viewer else [],
        "page_bytes": viewer.page_bytes if viewer else 0,
    }


def run_ingest(collector: Collector, mode: Mode) -> dict[str, Any]:
    """Fill the collector, then the A/B phases; every figure per phase."""
    auth = collector.auth
    wait_until_ready(f"{collector.base_url}/healthz", collector.proc)
    fill_started = time.monotonic()
    overflowed = fill_collector(collector)
    fill_seconds = time.monotonic() - fill_started
    load = Load(threads=1, connections=16, seconds=mode.phase_seconds, rounds=1)
    phases = []
    with (
        tempfile.TemporaryDirectory(prefix="otelkit-bench-") as tmp,
        httpx.Client(base_url=collector.base_url, headers=auth, timeout=60) as client,
    ):
        script = Path(tmp, "batch.lua")
        headers = {"Content-Type": "application/json", **auth}
        script.write_text(wrk_script("status page ingest", wrk_bodies(), headers))
        url = f"{collector.base_url}/api/metrics/http/batch"
        run_wrk(url, script, replace(load, seconds=mode.warm_up_seconds))
        time.sleep(SETTLE_SECONDS)
        phases = [run_phase(kind, collector, client, script, load) for kind in mode.phases]
    rss = memory_bytes(collector.proc.pid)["rss"] / MIB
    return {
        "phases": phases,
        "fill_seconds": fill_seconds,
        "overflowed": overflowed,
        "rss": rss,
    }


def b_over_a(phases: list[dict[str, Any]], key: str = "reports_per_s") -> list[float]:
    """Each B phase's ``key`` over the mean of the A phases beside it."""
    ratios = []
    for index, phase in enumerate(phases):
        if phase["phase"] != "B":
            continue
        beside = [
            phases[i][key]
            for i in (index - 1, index + 1)
            if 0 <= i < len(phases) and phases[i]["phase"] == "A"
        ]
        if beside:
            ratios.append(phase[key] / statistics.fmean(beside))
    return ratios


# -- main -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Run the status page benchmark."""
    args = parse_args(__doc__ or "", argv)
    mode = QUICK if args.quick else FULL
    if shutil.which(WRK) is None:
        raise SystemExit(f"status_page needs {WRK} on PATH (Debian: apt-get install {WRK})")
    started = time.monotonic()
    stages: dict[str, float] = {}

    def stage(name: str, since_start: float) -> None:
        stages[name] = time.monotonic() - since_start

    with ExitStack() as stack:
        # Started first, so it is up by the time part 3 needs it (idle, it costs nothing).
        collector = start_collector(stack)

        async def in_process() -> tuple[InProcess, dict[str, Timings], dict[str, list[float]]]:
            at = time.monotonic()
            filled = await build_filled(mode.extra_ticks)
            # The filled app's objects move out of the collector's reach: the gc.collect()
            # before each timing then costs what was made since, not 0.1 s for the whole heap.
            gc.collect()
            gc.freeze()
            stage("fill in-process", at)
            at = time.monotonic()
            renders = await time_renders(filled, mode)
            stage("renders", at)
            at = time.monotonic()
            ticks = await time_ticks(filled, mode)
            stage("ticks", at)
            return filled, renders, ticks

        filled, renders, tick_times = asyncio.run(in_process())
        at = time.monotonic()
        labels = [labels for labels, _ in filled.source.series()]
        memory = measure_history_memory(
            labels,
            SETTINGS.history_ticks,
            SETTINGS.history_ticks + mode.extra_ticks,
            mode.traced_ticks,
        )
        stage("memory", at)
        at = time.monotonic()
        ingest = run_ingest(collector, mode)
        stage("ingest", at)
    print(
        f"status page bench took {time.monotonic() - started:.0f} s: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stages.items())
    )
    report(args.quick, mode, filled, renders, tick_times, memory, ingest)


def report(
    quick: bool,
    mode: Mode,
    filled: InProcess,
    renders: dict[str, Timings],
    tick_times: dict[str, list[float]],
    memory: dict[str, Any],
    ingest: dict[str, Any],
) -> None:
    """Print the tables, the targets and the JSON line."""
    setup = filled.setup
    print(
        f"status page: default caps (max_services={SERVICES:,}, max_routes_per_service="
        f"{BIG_SERVICE_ROUTES}, max_series={SERIES:,} + {OVERFLOW_RESERVE_STATUSES} overflow)"
    )
    print(
        f"in-process app: {setup['service_rows']:,} service rows ({SERVICES:,} services + the "
        f"global overflow one; {setup['stale']} stale), {setup['series']:,} series admitted, "
        f"{setup['history_series']:,} sampled ({setup['reports_folded']:,} reports folded into "
        f"overflow series), {setup['history_routes']:,} history routes (at most "
        f"{setup['routes_of_biggest']} for one service), {setup['ticks']} ticks into a ring of "
        f"{filled.source.history.slots}; filled through the batch endpoint, a tick from the "
        f"reader after each round, in {setup['fill_seconds']:.1f} s"
    )
    render_rows = [
        [
            name,
            len(timings.wall_ms),
            fmt(timings.summary()["median_ms"]),
            fmt(timings.summary()["max_ms"]),
            fmt(timings.summary()["cpu_median_ms"]),
            f"{timings.size:,}" if timings.size else "-",
        ]
        for name, timings in renders.items()
    ]
    print_table(
        "render time, server side (wall ms; CPU ms of the thread)",
        ["answer", "renders", "median ms", "max ms", "CPU median ms", "bytes"],
        render_rows,
    )
    collected = filled.collected
    print(
        f"{HOME_AS_APP!r}: no gc.collect() before it, nothing frozen; the garbage collector "
        f"took {collected['gc_ms_per_render']:.0f} ms CPU per render on average, with "
        f"{collected['full_collections']} full collection(s) of the heap in "
        f"{collected['renders']} renders"
    )
    print(
        "The targets take the CPU medians (thread time, as scrape_render does: the machine may "
        "be shared; a render is CPU on one thread, so wall time adds only what others took). "
        "GET rows go through the whole app over httpx.ASGITransport (the client runs in the "
        "same thread); the in-process rows call what GET / calls, without routing or "
        "response. A gc.collect() runs before each (the filled app frozen out of its reach)."
    )
    print_table(
        f"one history tick at full caps ({setup['history_series']:,} series, "
        f"{setup['history_routes']:,} routes; a fresh report in every series before each tick)",
        ["series source", "ticks", "CPU median ms", "CPU max ms"],
        [
            [name, len(values), fmt(median(values)), fmt(max(values))]
            for name, values in tick_times.items()
        ],
    )
    at_max = history_layout_bytes(
        memory["routes"], memory["series"], memory["services"], MAX_HISTORY_TICKS
    )
    print_table(
        f"history memory: a fresh History, {memory['series']:,} series over "
        f"{memory['routes']:,} routes and {memory['services']:,} services, {memory['ticks']} "
        f"ticks into a ring of {SETTINGS.history_ticks} (the first {memory['traced_ticks']} "
        f"traced); every kept tick of every service filled: {memory['all_ticks_filled']}",
        ["measure", "MiB", "note"],
        [
            [
                "tracemalloc: after - before",
                fmt(memory["traced_bytes"] / MIB),
                "made and filled while tracing",
            ],
            [
                "computed: the arrays' payload",
                fmt(memory["computed_bytes"] / MIB),
                "history.py's layout: count x length x itemsize",
            ],
            [
                "difference, per route",
                f"{memory['overhead_per_route']:,.0f} B",
                "objects, dict entries, array headers",
            ],
            [
                f"computed at {MAX_HISTORY_TICKS} ticks",
                fmt(at_max / MIB),
                "the most the settings allow (e.g. 2 h at 10 s)",
            ],
        ],
    )

    phases = ingest["phases"]
    print_table(
        f"ingest, wrk -t1 -c16 -d{mode.phase_seconds}s, batches of {WRK_BATCH}; A: nobody "
        f"viewing; B: the stamp every {VIEWER_POLL_SECONDS:.0f} s and / whenever it changed",
        [
            "phase",
            "reports/s",
            "p50 / p99 ms",
            "server CPU",
            "reports/CPU-s",
            "ticks",
            "stamp polls",
            "/ loads",
            "/ ms median / max",
            "counted-ack",
            "errors",
        ],
        [
            [
                f"{index + 1} {phase['phase']}",
                fmt(phase["reports_per_s"]),
                f"{fmt(phase['latency_p50_ms'])} / {fmt(phase['latency_p99_ms'])}",
                fmt(phase["server_cpu_cores"]),
                fmt(phase["reports_per_cpu_s"]),
                f"{phase['ticks'][0]}-{phase['ticks'][1]}",
                phase["stamp_polls"] if phase["phase"] == "B" else "-",
                len(phase["page_ms"]) if phase["phase"] == "B" else "-",
                f"{fmt(median(phase['page_ms']))} / {fmt(max(phase['page_ms']))}"
                if phase["page_ms"]
                else "-",
                f"{phase['unacknowledged']:+.0f}",
                phase["errors"],
            ]
            for index, phase in enumerate(phases)
        ],
    )
    ratios = b_over_a(phases)
    ratio = median(ratios)
    per_cpu = b_over_a(phases, "reports_per_cpu_s")
    page_bytes = max(phase["page_bytes"] for phase in phases)
    print(
        f"collector filled in {ingest['fill_seconds']:.1f} s ({ingest['overflowed']} reports "
        f"folded), RSS at the end {ingest['rss']:.1f} MiB; / under load was up to "
        f"{page_bytes:,} bytes"
    )
    # What a viewer costs the collector, from the CPU medians of the render table. Under
    # constant ingest the stamp changes at every poll, so each poll loads / again.
    cold = renders[HOME_COLD].summary()["cpu_median_ms"]
    warm = renders[HOME_WARM].summary()["cpu_median_ms"]
    poll = renders[API_STAMP].summary()["cpu_median_ms"]
    # The share of loads that come first after a tick (the rest find the sparklines drawn).
    first = min(1.0, REFRESH_MILLISECONDS / 1000 / SETTINGS.history_resolution_seconds)
    page_ms = cold * first + warm * (1 - first) + poll
    page_share = page_ms / (REFRESH_MILLISECONDS + page_ms)
    print(
        f"from the render table's CPU medians: under constant ingest one open page (a poll "
        f"every {REFRESH_MILLISECONDS / 1000:.0f} s and / reloaded at each, {first:.0%} of "
        f"them first after a {SETTINGS.history_resolution_seconds:.0f} s tick) takes about "
        f"{page_share:.1%} of the collector's core"
    )
    print(
        f"each B over the A phases beside it: reports/s {', '.join(f'{r:.3f}' for r in ratios)}"
        f" (median {ratio:.3f}); reports per server CPU-second "
        f"{', '.join(f'{r:.3f}' for r in per_cpu)} (median {median(per_cpu):.3f})"
    )

    home = renders[HOME_COLD].summary()
    pure = renders[PURE_COLD].summary()
    miscounted = sum(1 for p in phases if not 0 <= p["unacknowledged"] <= p["unacknowledged_limit"])
    targets = [
        Target(
            f"render / with {SERVICES:,} services and the series cap full (GET, first after "
            "a tick, median CPU)",
            home["cpu_median_ms"],
            RENDER_TARGET_MS,
            "<=",
            "ms",
        ),
        Target(
            "render / in-process, snapshot() + render_home() (first after a tick, median CPU)",
            pure["cpu_median_ms"],
            RENDER_TARGET_MS,
            "<=",
            "ms",
        ),
        Target(
            f"history memory, {memory['series']:,} series, every tick filled",
            memory["traced_bytes"] / MIB,
            MEMORY_TARGET_MIB,
            "<=",
            "MiB",
        ),
        Target(
            "ingest reports/s with the page open over nobody viewing",
            ratio,
            INGEST_RATIO_TARGET,
            ">=",
            "x",
        ),
        Target(
            "check: errors, count mismatches, unfilled history",
            sum(p["errors"] for p in phases)
            + miscounted
            + (0 if memory["all_ticks_filled"] else 1),
            0,
            "<=",
        ),
    ]
    print_targets(targets)
    emit_json(
        "status_page",
        quick=quick,
        figures={
            "setup": setup,
            "render_gc": {k: round(v, 2) for k, v in filled.collected.items()},
            "render": {
                name: {key: round(value, 3) for key, value in timings.summary().items()}
                for name, timings in renders.items()
            },
            "tick_cpu_ms": {name: round(median(values), 3) for name, values in tick_times.items()},
            "history": {
                "traced_mib": round(memory["traced_bytes"] / MIB, 3),
                "traced_ticks": memory["traced_ticks"],
                "computed_mib": round(memory["computed_bytes"] / MIB, 3),
                "overhead_bytes_per_route": round(memory["overhead_per_route"], 1),
                f"computed_mib_at_{MAX_HISTORY_TICKS}_ticks": round(at_max / MIB, 3),
            },
            "ingest": {
                "phases": [
                    {
                        **{k: v for k, v in phase.items() if k != "page_ms"},
                        "reports_per_s": round(phase["reports_per_s"], 1),
                        "server_cpu_cores": round(phase["server_cpu_cores"], 3),
                        "reports_per_cpu_s": round(phase["reports_per_cpu_s"], 1),
                        "page_ms": [round(ms, 1) for ms in phase["page_ms"]],
                    }
                    for phase in phases
                ],
                "one_page_core_share": round(page_share, 4),
                "b_over_a": [round(r, 4) for r in ratios],
                "b_over_a_per_cpu_s": [round(r, 4) for r in per_cpu],
                "fill_seconds": round(ingest["fill_seconds"], 2),
                "rss_mib": round(ingest["rss"], 2),
            },
        },
        targets=targets,
    )


if __name__ == "__main__":
    main()
