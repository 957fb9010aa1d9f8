"""Collector memory: RSS of a real collector process idle, with 10,000 series, after abuse.

Caps are set so the 10,000 series fit (see :data:`CAPS`). Stages, each read from
``/proc/<pid>/status`` once the collector has settled: after startup, after a first scrape,
after 10,000 series (pushed, then scraped), and after the hostile-cardinality load (100,000
distinct routes over 10,000 services through the batch endpoint, then scraped), when the
caps must have kept the series bounded.

    python -m bench.memory [--quick]
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from bench.common import (
    LOOPBACK,
    MIB,
    PYTHON,
    Target,
    bench_env,
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
from otelkit import instruments
from otelkit.reports import MAX_BATCH_REPORTS

IDLE_TARGET_MIB = 60.0
SETTLE_SECONDS = 1.0
SERIES = 10_000
HOSTILE_ROUTES = 100_000
HOSTILE_SERVICES = 10_000
CAPS = {
    "OTELKIT_MAX_SERIES": "20000",
    "OTELKIT_MAX_SERVICES": "1000",
    "OTELKIT_MAX_ROUTES_PER_SERVICE": "200",
}
"""Set explicitly so 10,000 series fit whatever the defaults are; the hostile load still
overflows every one of them."""
STAGES = (
    "startup",
    "first scrape",
    f"{SERIES:,} series pushed",
    f"{SERIES:,} series + scrape",
    "hostile load pushed",
    "hostile load + scrape",
)


def normal_reports() -> Iterator[dict[str, Any]]:
    """10,000 distinct series: 50 services x 100 routes x 2 statuses."""
    for index in range(SERIES):
        yield {
            "method": "GET",
            "route": f"/api/resource{(index // 2) % 100:03d}/{{id}}",
            "status": (200, 500)[index % 2],
            "duration": 0.01 + index % 13 * 0.007,
            "service": f"svc-{index // 200:03d}",
        }


def hostile_reports() -> Iterator[dict[str, Any]]:
    """100,000 distinct routes spread over 10,000 services: what the caps exist for."""
    for index in range(HOSTILE_ROUTES):
        yield {
            "method": "POST",
            "route": f"/hostile/{index:06d}/{secrets.token_hex(4)}",
            "status": 200 + index % 300,
            "duration": 0.001 * (index % 1000),
            "service": f"hostile-{index % HOSTILE_SERVICES:05d}",
        }


def push_all(client: httpx.Client, reports: Iterator[dict[str, Any]]) -> dict[str, int]:
    """Send ``reports`` in full batches; return accepted and overflowed totals."""
    totals = {"accepted": 0, "overflowed": 0}
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        response = client.post("/api/metrics/http/batch", json={"reports": batch})
        response.raise_for_status()
        body = response.json()
        totals["accepted"] += body["accepted"]
        totals["overflowed"] += body.get("overflowed", 0)
        batch.clear()

    for report in reports:
        batch.append(report)
        if len(batch) == MAX_BATCH_REPORTS:
            flush()
    if batch:
        flush()
    return totals


def scrape(client: httpx.Client) -> int:
    """GET /metrics as Prometheus would; return how many duration series it exposes."""
    response = client.get("/metrics")
    response.raise_for_status()
    prefix = f"{instruments.HTTP_REQUEST_DURATION.prometheus_name}_count{{"
    return sum(1 for line in response.text.splitlines() if line.startswith(prefix))


def run_once() -> dict[str, Any]:
    """One fresh collector through every stage."""
    token = secrets.token_urlsafe(24)
    port = free_port()
    base_url = f"http://{LOOPBACK}:{port}"
    rss: dict[str, float] = {}
    exposed: dict[str, int] = {}
    pushed: dict[str, dict[str, int]] = {}
    argv = [PYTHON, "-m", "otelkit_collector", "--host", LOOPBACK, "--port", str(port)]
    with managed_process(
        [*argv, "--log-level", "warning"], env=bench_env(OTELKIT_COLLECTOR_TOKEN=token, **CAPS)
    ) as proc:
        wait_until_ready(f"{base_url}/healthz", proc)

        def snapshot(stage: str) -> None:
            time.sleep(SETTLE_SECONDS)
            rss[stage] = memory_bytes(proc.pid)["rss"] / MIB

        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
            snapshot(STAGES[0])
            exposed[STAGES[1]] = scrape(client)
            snapshot(STAGES[1])
            pushed["normal"] = push_all(client, normal_reports())
            snapshot(STAGES[2])
            exposed[STAGES[3]] = scrape(client)
            snapshot(STAGES[3])
            pushed["hostile"] = push_all(client, hostile_reports())
            snapshot(STAGES[4])
            exposed[STAGES[5]] = scrape(client)
            snapshot(STAGES[5])
        peak = memory_bytes(proc.pid)["peak"] / MIB
    return {"rss_mib": rss, "peak_mib": peak, "series_exposed": exposed, "pushed": pushed}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the memory benchmark."""
    args = parse_args(__doc__ or "", argv)
    runs_wanted = 1 if args.quick else 3
    started = time.monotonic()
    runs = [run_once() for _ in range(runs_wanted)]
    print(
        f"collector memory: {runs_wanted} fresh collector process(es), bearer auth on, "
        f"{' '.join(f'{k}={v}' for k, v in CAPS.items())}; RSS read {SETTLE_SECONDS:.0f} s "
        "after each stage; "
        f"{time.monotonic() - started:.0f} s"
    )
    rss = {stage: median([run["rss_mib"][stage] for run in runs]) for stage in STAGES}
    last = runs[-1]
    rows = [
        [
            stage,
            fmt(rss[stage]),
            last["series_exposed"].get(stage, "-"),
        ]
        for stage in STAGES
    ]
    rows.append(["peak (VmHWM)", fmt(median([run["peak_mib"] for run in runs])), "-"])
    print_table("RSS MiB (median over runs)", ["stage", "RSS MiB", "duration series exposed"], rows)
    for kind, totals in last["pushed"].items():
        print(
            f"{kind} load: {totals['accepted']:,} reports acknowledged, "
            f"{totals['overflowed']:,} folded into overflow series"
        )
    targets = [
        Target(
            "collector RSS idle (after first scrape)", rss[STAGES[1]], IDLE_TARGET_MIB, "<=", "MiB"
        )
    ]
    print_targets(targets)
    emit_json(
        "memory",
        quick=args.quick,
        figures={
            "rss_mib": {stage: round(value, 2) for stage, value in rss.items()},
            "peak_mib": round(median([run["peak_mib"] for run in runs]), 2),
            "series_exposed": last["series_exposed"],
            "pushed": last["pushed"],
            "runs": len(runs),
        },
        targets=targets,
    )


if __name__ == "__main__":
    main()
