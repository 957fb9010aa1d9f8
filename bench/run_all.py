"""Run every bench in turn (``make bench``) and summarise every target: figure, limit, verdict.

    python -m bench.run_all [--quick] [--strict]

Each bench runs in its own process with its output passed through; the summary is built
from the JSON line each one prints last. Exit status 1 when a bench crashed, or with
``--strict`` when a target failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from bench.common import JSON_PREFIX, PYTHON, REPO_ROOT, bench_env, fmt, print_table, stop_process

BENCHES = ("middleware_cost", "push_ingest", "scrape_render", "memory", "status_page")
TIMEOUT_SECONDS = {True: 300, False: 1_200}
"""Per bench, quick and full: far above their expected run time, to bound a hung run."""


def run_bench(name: str, quick: bool) -> dict[str, Any] | None:
    """Run ``bench.<name>``, echo its output, return its JSON line (``None`` if it failed)."""
    argv = [PYTHON, "-m", f"bench.{name}", *(["--quick"] if quick else [])]
    print(f"\n######## {' '.join(argv[1:])}", flush=True)
    proc = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=bench_env(), stdout=subprocess.PIPE, text=True, bufsize=1
    )
    timeout = TIMEOUT_SECONDS[quick]
    # SIGTERM makes the bench unwind (see common.parse_args), stopping what it started.
    watchdog = threading.Timer(timeout, stop_process, args=(proc,))
    watchdog.start()
    last_json: dict[str, Any] | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith(JSON_PREFIX):
                last_json = json.loads(line)
        returncode = proc.wait()
    finally:
        watchdog.cancel()
        stop_process(proc)
    if returncode != 0:
        print(f"bench.{name} failed (exit status {returncode}; time limit {timeout} s)")
        return None
    return last_json


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benches and print the summary table and a combined JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every bench")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = {name: run_bench(name, args.quick) for name in BENCHES}

    rows = []
    for name, result in results.items():
        if result is None:
            rows.append([name, "(bench failed)", "-", "-", "CRASHED"])
            continue
        for target in result["targets"]:
            figure = target["figure"] if target["figure"] is not None else float("nan")
            unit = target["unit"]
            rows.append(
                [
                    name,
                    target["name"],
                    f"{fmt(figure)} {unit}".strip(),
                    f"{target['op']} {fmt(target['limit'])} {unit}".strip(),
                    "pass" if target["pass"] else "FAIL",
                ]
            )
    mode = "quick" if args.quick else "full"
    print_table(
        f"summary of every target ({mode} run, {time.monotonic() - started:.0f} s)",
        ["bench", "target", "figure", "limit", "result"],
        rows,
    )
    crashed = [name for name, result in results.items() if result is None]
    failed = [row[1] for row in rows if row[4] == "FAIL"]
    print(
        json.dumps(
            {
                "bench": "all",
                "quick": args.quick,
                "targets": [
                    {"bench": name, **target}
                    for name, result in results.items()
                    if result is not None
                    for target in result["targets"]
                ],
                "crashed": crashed,
                "pass": not crashed and not failed,
            }
        )
    )
    if crashed or (args.strict and failed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
