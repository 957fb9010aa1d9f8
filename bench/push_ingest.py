"""Push ingest over loopback: the collector (one report, and 100 per batch) vs Pushgateway.

A real collector process (validation, caps and bearer auth on) and a real
``prometheus-pushgateway`` take the same ``wrk`` load (same threads, connections and
duration) from a separate process, rounds interleaved. Reports requests/s, reports/s,
server CPU and RSS, and checks the collector counted exactly what wrk saw acknowledged.
The batches are sent twice: as a service without tracing sends them, and with a
``trace_id`` and ``span_id`` on every report (each becomes its bucket's exemplar), as a
traced service's push client sends them.

    python -m bench.push_ingest [--quick]
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

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
from bench.wrk import FULL, QUICK, WRK, Load, run_wrk, wrk_script
from otelkit import instruments

PUSHGATEWAY = "prometheus-pushgateway"
BATCH_SIZE = 100
ROUTES = tuple(f"/api/resource{index:02d}/{{id}}" for index in range(20))
STATUSES = (200, 404, 500)
SERVICE = "bench-svc"
SINGLE_TARGET_RATIO = 2.5
SINGLE = "collector single"
BATCH = f"collector batch x{BATCH_SIZE}"
BATCH_WITH_IDS = f"collector batch x{BATCH_SIZE} with trace ids"
GATEWAY = "pushgateway one-sample push"
BATCH_TARGET_REPORTS = 200_000.0
SETTLE_SECONDS = 0.5
"""Wait after wrk exits: requests it abandoned mid-flight may still be finishing server-side."""


@dataclass(frozen=True)
class Scenario:
    """One load: which server, the requests wrk cycles through, reports per request."""

    name: str
    server: str
    requests: list[tuple[str, str]]
    """(path, body) pairs wrk cycles through."""
    headers: dict[str, str]
    reports_per_request: int


# -- payloads ---------------------------------------------------------------------------------


def _series() -> Iterator[tuple[str, int]]:
    """20 routes x 3 statuses: a realistic small set of series, cycled."""
    while True:
        for route in ROUTES:
            for status in STATUSES:
                yield route, status


def http_reports(count: int, offset: int = 0) -> list[dict[str, Any]]:
    """``count`` HTTP reports cycling over the series with varied durations."""
    series = _series()
    for _ in range(offset % (len(ROUTES) * len(STATUSES))):
        next(series)
    return [
        {
            "method": "GET",
            "route": route,
            "status": status,
            "duration": round(0.002 + (offset + index) % 97 * 0.0031, 4),
            "service": SERVICE,
        }
        for index, (route, status) in zip(range(count), series, strict=False)
    ]


def random_id(digits: int) -> str:
    """A random W3C trace-context id: ``digits`` lowercase hex digits, not all zeros."""
    while True:
        value = secrets.token_hex(digits // 2)
        if int(value, 16):
            return value


def with_ids(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``reports``, each with a random ``trace_id`` and ``span_id`` of its own."""
    return [{**report, "trace_id": random_id(32), "span_id": random_id(16)} for report in reports]


def scenarios(token: str) -> list[Scenario]:
    """Single reports and batches (with and without trace ids) to the collector; one-sample
    pushes to Pushgateway. Every body is built here, before any load starts."""
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    single = [
        ("/api/metrics/http", json.dumps(report, separators=(",", ":")))
        for report in http_reports(240)
    ]
    batch = [
        (
            "/api/metrics/http/batch",
            json.dumps({"reports": http_reports(BATCH_SIZE, offset=7 * k)}, separators=(",", ":")),
        )
        for k in range(10)
    ]
    batch_with_ids = [
        (
            "/api/metrics/http/batch",
            json.dumps(
                {"reports": with_ids(http_reports(BATCH_SIZE, offset=7 * k))},
                separators=(",", ":"),
            ),
        )
        for k in range(10)
    ]
    pushes = [
        (f"/metrics/job/bench/instance/i{k % 60:02d}", f"bench_metric {0.002 + k * 0.0031:.4f}\n")
        for k in range(240)
    ]
    return [
        Scenario(SINGLE, "collector", single, auth, 1),
        Scenario(BATCH, "collector", batch, auth, BATCH_SIZE),
        Scenario(BATCH_WITH_IDS, "collector", batch_with_ids, auth, BATCH_SIZE),
        Scenario(
            GATEWAY,
            "pushgateway",
            pushes,
            {"Content-Type": "text/plain; version=0.0.4"},
            1,
        ),
    ]


# -- measuring --------------------------------------------------------------------------------


def collector_counts(base_url: str) -> dict[str, float]:
    """``otelkit_collector_reports_total{kind="http"}`` per outcome, from /metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    sample_name = instruments.COLLECTOR_REPORTS.prometheus_name
    counts: dict[str, float] = dict.fromkeys(instruments.REPORT_OUTCOMES, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and sample.labels.get("kind") == "http":
                counts[sample.labels["outcome"]] = sample.value
    return counts


def measure(
    scenario: Scenario, url: str, pid: int, script: Path, load: Load, base_url: str | None
) -> dict[str, Any]:
    """One wrk run against one server: throughput, CPU, memory and (collector) counts."""
    before = collector_counts(base_url) if base_url is not None else None
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    wrk = run_wrk(url, script, load)
    cpu_used, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
    seconds = wrk["duration_us"] / 1e6
    result: dict[str, Any] = {
        "requests": wrk["requests"],
        "requests_per_s": wrk["requests"] / seconds,
        "reports_per_s": wrk["requests"] * scenario.reports_per_request / seconds,
        "server_cpu_cores": cpu_used / wall,
        "rss_mib": memory_bytes(pid)["rss"] / MIB,
        "latency_p50_ms": wrk["latency_p50_us"] / 1000,
        "latency_p99_ms": wrk["latency_p99_us"] / 1000,
        "non_2xx": max(wrk["non_2xx"], wrk["status_errors"]),
        "socket_errors": sum(
            wrk[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
    }
    if before is not None and base_url is not None:
        time.sleep(SETTLE_SECONDS)
        after = collector_counts(base_url)
        delta = {outcome: after[outcome] - before[outcome] for outcome in after}
        acknowledged = (wrk["requests"] - result["non_2xx"]) * scenario.reports_per_request
        counted = delta["accepted"] + delta["overflowed"]
        result.update(
            acknowledged_reports=acknowledged,
            counted_reports=counted,
            refused_reports=delta["rejected"] + delta["unauthorized"],
            # wrk stops mid-flight: requests the server finished but wrk never read count
            # server-side only, at most one per connection.
            unacknowledged=counted - acknowledged,
            unacknowledged_limit=load.connections * scenario.reports_per_request,
        )
    return result


def exact_count_check(base_url: str, token: str, singles: int, batches: int) -> dict[str, Any]:
    """Send a known number of reports one by one; the counter must move by exactly that."""
    before = collector_counts(base_url)
    headers = {"Authorization": f"Bearer {token}"}
    sent = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        for report in http_reports(singles):
            client.post("/api/metrics/http", json=report).raise_for_status()
            sent += 1
        for k in range(batches):
            body = {"reports": http_reports(BATCH_SIZE, offset=k)}
            client.post("/api/metrics/http/batch", json=body).raise_for_status()
            sent += BATCH_SIZE
    after = collector_counts(base_url)
    counted = after["accepted"] + after["overflowed"] - before["accepted"] - before["overflowed"]
    return {"sent": sent, "counted": counted, "mismatch": counted - sent}


# -- main -------------------------------------------------------------------------------------


def start_collector(stack: ExitStack, token: str) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``python -m otelkit_collector`` with auth on a free loopback port.

    Returns its URL and process.
    """
    port = free_port()
    argv = [PYTHON, "-m", "otelkit_collector", "--host", LOOPBACK, "--port", str(port)]
    proc = stack.enter_context(
        managed_process(
            [*argv, "--log-level", "warning"], env=bench_env(OTELKIT_COLLECTOR_TOKEN=token)
        )
    )
    url = f"http://{LOOPBACK}:{port}"
    wait_until_ready(f"{url}/healthz", proc)
    return url, proc


def start_pushgateway(stack: ExitStack) -> tuple[str, subprocess.Popen[bytes]]:
    """Start Pushgateway on a free loopback port, no persistence file; return URL and process."""
    port = free_port()
    proc = stack.enter_context(
        managed_process(
            [PUSHGATEWAY, f"--web.listen-address={LOOPBACK}:{port}", "--log.level=warn"],
            env=bench_env(),
        )
    )
    url = f"http://{LOOPBACK}:{port}"
    wait_until_ready(f"{url}/-/ready", proc)
    return url, proc


def main(argv: Sequence[str] | None = None) -> None:
    """Run the push-ingest benchmark."""
    args = parse_args(__doc__ or "", argv)
    load = QUICK if args.quick else FULL
    for binary in (WRK, PUSHGATEWAY):
        if shutil.which(binary) is None:
            raise SystemExit(
                f"push_ingest needs {binary} on PATH (Debian: apt-get install {binary})"
            )
    token = secrets.token_urlsafe(24)
    all_scenarios = scenarios(token)
    results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in all_scenarios}
    started = time.monotonic()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="otelkit-bench-") as tmp:
        collector_url, collector = start_collector(stack, token)
        gateway_url, gateway = start_pushgateway(stack)
        servers = {
            "collector": (collector_url, collector.pid),
            "pushgateway": (gateway_url, gateway.pid),
        }
        scripts: dict[str, Path] = {}
        for scenario in all_scenarios:
            scripts[scenario.name] = Path(tmp, f"{len(scripts)}.lua")
            scripts[scenario.name].write_text(
                wrk_script(scenario.name, scenario.requests, scenario.headers)
            )
        idle = {name: memory_bytes(pid)["rss"] / MIB for name, (_, pid) in servers.items()}
        for round_index in range(load.rounds):
            shift = round_index % len(all_scenarios)
            for scenario in all_scenarios[shift:] + all_scenarios[:shift]:
                base_url, pid = servers[scenario.server]
                first_path = scenario.requests[0][0]
                results[scenario.name].append(
                    measure(
                        scenario,
                        base_url + first_path,
                        pid,
                        scripts[scenario.name],
                        load,
                        base_url if scenario.server == "collector" else None,
                    )
                )
        exact = exact_count_check(
            servers["collector"][0], token, singles=60 if args.quick else 300, batches=5
        )
    report(args.quick, load, all_scenarios, results, idle, exact, time.monotonic() - started)


def report(
    quick: bool,
    load: Load,
    all_scenarios: list[Scenario],
    results: dict[str, list[dict[str, Any]]],
    idle: dict[str, float],
    exact: dict[str, Any],
    elapsed: float,
) -> None:
    """Print the tables and the JSON line."""
    print(
        f"push ingest: wrk -t{load.threads} -c{load.connections} -d{load.seconds}s, "
        f"{load.rounds} interleaved round(s) per scenario; collector with validation, caps and "
        f"bearer auth; pushgateway defaults (no persistence file); {elapsed:.0f} s"
    )
    figures: dict[str, Any] = {"load": load.__dict__, "idle_rss_mib": idle, "scenarios": {}}
    rows = []
    keys = (
        "requests_per_s",
        "reports_per_s",
        "server_cpu_cores",
        "rss_mib",
        "latency_p50_ms",
        "latency_p99_ms",
    )
    for scenario in all_scenarios:
        runs = results[scenario.name]
        summary = {key: median([run[key] for run in runs]) for key in keys}
        summary["reports_per_cpu_s"] = median(
            [run["reports_per_s"] / run["server_cpu_cores"] for run in runs]
        )
        summary["non_2xx"] = sum(run["non_2xx"] for run in runs)
        summary["socket_errors"] = sum(run["socket_errors"] for run in runs)
        figures["scenarios"][scenario.name] = {
            **{key: round(value, 2) for key, value in summary.items()},
            "runs": runs,
        }
        rows.append(
            [
                scenario.name,
                fmt(summary["requests_per_s"]),
                fmt(summary["reports_per_s"]),
                fmt(summary["server_cpu_cores"]),
                fmt(summary["reports_per_cpu_s"]),
                fmt(summary["rss_mib"]),
                f"{fmt(summary['latency_p50_ms'])} / {fmt(summary['latency_p99_ms'])}",
                summary["non_2xx"],
                summary["socket_errors"],
            ]
        )
    print_table(
        "throughput (medians over rounds)",
        [
            "scenario",
            "requests/s",
            "reports/s",
            "server CPU (cores)",
            "reports/CPU-s",
            "RSS MiB",
            "p50 / p99 ms",
            "non-2xx",
            "socket errors",
        ],
        rows,
    )

    count_rows = []
    worst_unacknowledged = 0.0
    over_limit = False
    refused = 0.0
    for scenario in all_scenarios:
        for index, run in enumerate(results[scenario.name]):
            if "counted_reports" not in run:
                continue
            worst_unacknowledged = max(worst_unacknowledged, abs(run["unacknowledged"]))
            in_limit = 0 <= run["unacknowledged"] <= run["unacknowledged_limit"]
            over_limit = over_limit or not in_limit
            refused += run["refused_reports"]
            count_rows.append(
                [
                    f"{scenario.name} #{index + 1}",
                    fmt(run["acknowledged_reports"]),
                    fmt(run["counted_reports"]),
                    f"{run['unacknowledged']:+.0f}",
                    f"0..{run['unacknowledged_limit']}",
                    "ok" if in_limit else "MISMATCH",
                ]
            )
    count_rows.append(
        [
            "exact check (sequential httpx)",
            exact["sent"],
            fmt(exact["counted"]),
            f"{exact['mismatch']:+.0f}",
            "0",
            "ok" if exact["mismatch"] == 0 else "MISMATCH",
        ]
    )
    print_table(
        "collector counted vs acknowledged (otelkit_collector_reports_total{kind=http}, "
        "accepted + overflowed)",
        ["run", "acknowledged", "counted", "counted-ack", "allowed", "result"],
        count_rows,
    )
    print(
        "wrk counts only responses it read before stopping; the server may finish the "
        "requests in flight (at most one per connection) without wrk seeing them."
    )
    figures["count_check"] = {
        "exact": exact,
        "worst_unacknowledged_under_load": worst_unacknowledged,
        "refused_reports": refused,
    }

    single = results[SINGLE]
    batch = results[BATCH]
    gateway = results[GATEWAY]
    ratios = [
        mine["requests_per_s"] / theirs["requests_per_s"]
        for mine, theirs in zip(single, gateway, strict=True)
    ]
    figures["single_over_pushgateway"] = round(median(ratios), 3)
    with_ids_ratio = median(
        [
            traced["reports_per_s"] / plain["reports_per_s"]
            for traced, plain in zip(results[BATCH_WITH_IDS], batch, strict=True)
        ]
    )
    figures["batch_with_ids_over_batch"] = round(with_ids_ratio, 3)
    print(
        f"batch ingest with trace ids on every report: {with_ids_ratio:.2f}x the reports/s "
        "of the same batches without (median of the per-round ratios)"
    )
    total_non_2xx = sum(
        run["non_2xx"] + run["socket_errors"] for runs in results.values() for run in runs
    )
    targets = [
        Target(
            "single-report ingest vs Pushgateway requests/s",
            median(ratios),
            SINGLE_TARGET_RATIO,
            ">=",
            "x",
        ),
        Target(
            f"batch ingest (x{BATCH_SIZE}) reports/s",
            median([run["reports_per_s"] for run in batch]),
            BATCH_TARGET_REPORTS,
            ">=",
            "reports/s",
        ),
        Target("check: non-2xx responses and socket errors", total_non_2xx, 0, "<="),
        Target(
            "check: collector count mismatches (exact, under load, refused)",
            abs(exact["mismatch"]) + (1 if over_limit else 0) + refused,
            0,
            "<=",
        ),
    ]
    print_targets(targets)
    emit_json("push_ingest", quick=quick, figures=figures, targets=targets)


if __name__ == "__main__":
    main()
