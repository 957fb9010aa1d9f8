"""Where the time goes: py-spy profiles of otelkit's middleware and the collector's ingest.

* middleware: ``MetricsMiddleware`` around a trivial inner app (so every sample is the
  middleware's own cost), looping in a child process;
* ingest: a real collector (auth on) under ``wrk`` load, single reports and batches of 100.

Each profile is summarised as self time per package and per function, and inclusive time of
the functions worth optimising, as percentages of the sampled CPU time.

    python -m bench.hotpaths [--quick]
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import PYTHON, bench_env, managed_process, parse_args, print_table
from bench.middleware_variants import build_app, http_scope
from bench.push_ingest import scenarios, start_collector
from bench.wrk import QUICK, Load, wrk_argv, wrk_script

PY_SPY = str(Path(PYTHON).with_name("py-spy"))
SAMPLE_RATE = 250
TOP = 15

PACKAGES = (
    ("otelkit collector", "/collector/"),
    ("otelkit library", "/otelkit/"),
    ("OTel SDK", "/opentelemetry/sdk/"),
    ("OTel exporter", "/opentelemetry/exporter/"),
    ("OTel API", "/opentelemetry/"),
    ("pydantic", "/pydantic"),
    ("FastAPI", "/fastapi/"),
    ("Starlette", "/starlette/"),
    ("uvicorn", "/uvicorn/"),
    ("h11", "/h11/"),
    ("httptools", "/httptools/"),
    ("asyncio", "/asyncio/"),
    ("json", "/json/"),
    ("prometheus_client", "/prometheus_client/"),
    ("bench harness", "/bench/"),
)


def package_of(path: str) -> str:
    """The package a source path belongs to (first match in :data:`PACKAGES`)."""
    for name, marker in PACKAGES:
        if marker in path:
            return name
    return "other (stdlib, C)"


# -- the middleware loop (child process) ------------------------------------------------------


def middleware_loop(seconds: float) -> None:
    """Call ``MetricsMiddleware`` around a trivial app for ``seconds``; print µs per call."""
    from otelkit.exporters import setup_metrics
    from otelkit.middleware import MetricsMiddleware

    app = build_app()
    route = next(r for r in app.routes if getattr(r, "path", "") == "/api/courses/{course_id}")
    start = {"type": "http.response.start", "status": 200, "headers": []}
    body = {"type": "http.response.body", "body": b"{}"}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = route  # what FastAPI's router leaves in the scope
        await send(start)
        await send(body)

    async def discard(message: Any) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    setup = setup_metrics(exporters="prometheus")
    middleware = MetricsMiddleware(inner, meter_provider=setup.meter_provider)
    scope = {**http_scope("GET", "/api/courses/7", b""), "app": app}

    async def loop(target: Any, seconds: float) -> tuple[int, float]:
        calls, cpu_started = 0, time.thread_time_ns()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(1000):
                await target(dict(scope), receive, discard)
            calls += 1000
        return calls, (time.thread_time_ns() - cpu_started) / calls / 1000

    _, bare_us = asyncio.run(loop(inner, 0.5))
    calls, wrapped_us = asyncio.run(loop(middleware, seconds))
    print(
        f"{calls} calls; {wrapped_us:.2f} µs per call, "
        f"{wrapped_us - bare_us:.2f} µs over the bare inner app"
    )


# -- py-spy -----------------------------------------------------------------------------------


def record(pid: int, seconds: int, output: Path) -> None:
    """Sample ``pid`` with py-spy for ``seconds`` into a raw (collapsed stacks) file."""
    argv = [PY_SPY, "record", "-p", str(pid), "-d", str(seconds), "-r", str(SAMPLE_RATE)]
    # --gil: only samples holding the GIL, i.e. CPU work; idle pool threads parked in
    # Condition.wait would otherwise count as busy.
    argv += ["-f", "raw", "--gil", "--threads", "--full-filenames", "--nolineno", "-o", str(output)]
    subprocess.run(argv, check=True, capture_output=True, timeout=seconds + 60)


def parse_stacks(raw: str) -> list[tuple[list[tuple[str, str]], int]]:
    """Collapsed stacks: ([(function, file), ...] root first, sample count)."""
    stacks = []
    for line in raw.splitlines():
        frames_text, _, count = line.rpartition(" ")
        if not frames_text or not count.isdigit():
            continue
        frames = []
        for frame in frames_text.split(";"):
            function, _, rest = frame.partition(" (")
            frames.append((function, rest.rstrip(")")))
        stacks.append((frames, int(count)))
    return stacks


def summarise(
    title: str,
    stacks: list[tuple[list[tuple[str, str]], int]],
    focus: Sequence[str],
    within: str | None = None,
) -> dict[str, Any]:
    """Print self time per package and function, and inclusive time of ``focus`` functions.

    Args:
        title: names the profile in the tables.
        stacks: from :func:`parse_stacks`.
        focus: function names (as py-spy prints them) whose inclusive share is reported.
        within: keep only samples whose stack contains this function, and only the frames
            from it down (e.g. the middleware's own frames, not the harness loop).
    """
    if within is not None:
        trimmed = []
        for frames, count in stacks:
            names = [function for function, _ in frames]
            if within in names:
                trimmed.append((frames[names.index(within) :], count))
        stacks = trimmed
    total = sum(count for _, count in stacks) or 1
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        function, path = frames[-1]
        by_package[package_of(path)] += count
        by_function[f"{function} [{package_of(path)}]"] += count
        for name in {function for function, _ in frames}:
            if name in focus:
                inclusive[name] += count
    print(f"\n#### {title}: {total} samples at {SAMPLE_RATE} Hz")
    print_table(
        "self time by package",
        ["package", "%"],
        [[name, f"{100 * n / total:.1f}"] for name, n in by_package.most_common()],
    )
    print_table(
        f"self time, top {TOP} functions",
        ["function [package]", "%"],
        [[name, f"{100 * n / total:.1f}"] for name, n in by_function.most_common(TOP)],
    )
    print_table(
        "inclusive time of the functions worth optimising (those sampled)",
        ["function", "%"],
        [[name, f"{100 * inclusive[name] / total:.1f}"] for name in focus if inclusive[name]],
    )
    return {
        "samples": total,
        "self_by_package": {k: round(100 * v / total, 1) for k, v in by_package.most_common()},
        "self_top_functions": {
            k: round(100 * v / total, 1) for k, v in by_function.most_common(TOP)
        },
        "inclusive": {name: round(100 * inclusive[name] / total, 1) for name in focus},
    }


MIDDLEWARE_FOCUS = (
    "MetricsMiddleware._record",
    "Histogram.record",
    "Measurement.__post_init__",
    "__create_fn__.<locals>.__init__",
    "_clean_attribute_value",
    "SynchronousMeasurementConsumer.consume_measurement",
    "MetricReaderStorage.consume_measurement",
    "_ViewInstrumentMatch.consume_measurement",
    "_hash_attributes",
    "_ExplicitBucketHistogramAggregation.aggregate",
    "TraceBasedExemplarFilter.should_sample",
    "MetricsMiddleware._route",
    "MetricsMiddleware.__call__.<locals>.send_wrapper",
)
"""Inclusive shares reported for the middleware (``__create_fn__`` = dataclass __init__)."""

INGEST_FOCUS = (
    "H11Protocol.data_received",
    "RequestResponseCycle.send",
    "_IncludedRouter._match",
    "NativeTelemetry.enabled",
    "get_recorder",
    "get_registry",
    "solve_dependencies",
    "run_in_threadpool",
    "Request.json",
    "request_body_to_args",
    "TypeAdapter.validate_python",
    "check_label_text",
    "_check_method",
    "Recorder.record_http_reports",
    "CardinalityGuard.admit",
    "Histogram.record",
    "Counter.add",
    "Measurement.__post_init__",
    "__create_fn__.<locals>.__init__",
    "_hash_attributes",
    "_clean_attribute_value",
    "serialize_response",
    "Response.__call__",
)
"""Inclusive shares reported for the collector (wrappers' shares include what they wrap)."""


def profile_middleware(seconds: int, tmp: Path) -> dict[str, Any]:
    """py-spy over the middleware loop in a child process."""
    output = tmp / "middleware.txt"
    argv = [PYTHON, "-m", "bench.hotpaths", "--middleware-loop", str(seconds + 3)]
    with managed_process(argv, env=bench_env(), stdout=subprocess.PIPE) as proc:
        time.sleep(1.5)  # imports and warm-up before sampling
        record(proc.pid, seconds, output)
        out, _ = proc.communicate(timeout=seconds * 3 + 60)
    print(f"\nmiddleware loop: {out.decode().strip()}")
    return {"loop": out.decode().strip()} | summarise(
        "otelkit MetricsMiddleware (own cost only: the inner app is trivial)",
        parse_stacks(output.read_text()),
        MIDDLEWARE_FOCUS,
        within="MetricsMiddleware.__call__",
    )


def profile_ingest(seconds: int, tmp: Path) -> dict[str, Any]:
    """py-spy over a real collector under wrk load, single reports then batches."""
    token = secrets.token_urlsafe(24)
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        url, collector = start_collector(stack, token)
        for scenario in scenarios(token)[:2]:
            script = tmp / f"{len(results)}.lua"
            script.write_text(wrk_script(scenario.name, scenario.requests, scenario.headers))
            output = tmp / f"ingest-{len(results)}.txt"
            load = Load(QUICK.threads, QUICK.connections, seconds + 3, 1)
            wrk_url = url + scenario.requests[0][0]
            with managed_process(wrk_argv(wrk_url, script, load)):
                time.sleep(1.0)
                record(collector.pid, seconds, output)
            results[scenario.name] = summarise(
                f"collector ingest, {scenario.name} (under wrk -c{load.connections})",
                parse_stacks(output.read_text()),
                INGEST_FOCUS,
            )
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Profile both hot paths (or run a helper mode used by the profiles)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--middleware-loop"]:
        middleware_loop(float(argv[1]))
        return
    args = parse_args(__doc__ or "", argv)
    seconds = 6 if args.quick else 20
    with tempfile.TemporaryDirectory(prefix="otelkit-hotpaths-") as tmp:
        middleware = profile_middleware(seconds, Path(tmp))
        ingest = profile_ingest(seconds, Path(tmp))
    print(
        json.dumps(
            {"bench": "hotpaths", "quick": args.quick, "middleware": middleware, "ingest": ingest}
        )
    )


if __name__ == "__main__":
    main()
