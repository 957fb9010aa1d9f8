"""Local demo: a collector, the example service and realistic traffic, plus a service that dies.

``make demo`` (or ``python -m examples.demo``) starts, on loopback:

* the collector on :9090 (health TTL 15 s, so a dead service shows within seconds);
* the ``courses`` example service on :8000, pushing to the collector;
* a second instance named ``billing`` on :8001 that is killed (``SIGKILL``) part-way through,
  so its health goes stale and the ServiceDown alert has something to fire on;

and sends a mix of requests: list and item routes, 404s, slow calls, a flaky route with 5xx,
enrolments that move the active-user count. Everything stops at the end or on Ctrl-C.

The traffic is traced: each request carries a W3C ``traceparent`` (as from a gateway in front),
the services continue it in a SERVER span, and every latency bucket on their OpenMetrics
``/metrics`` and the collector's links to its latest trace. With ``OTEL_EXPORTER_OTLP_ENDPOINT``
set, the services export their spans there over OTLP; otherwise each writes them, as JSON, to
a file the demo names at start.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

# (weight, method, path): a service's traffic is mostly reads, some writes, a few misses.
TRAFFIC: tuple[tuple[int, str, str], ...] = (
    (40, "GET", "/api/courses"),
    (25, "GET", "/api/courses/{id}"),
    (5, "GET", "/api/courses/404"),
    (10, "POST", "/api/courses/{id}/enrol"),
    (10, "GET", "/api/slow?ms={ms}"),
    (10, "GET", "/api/flaky?failure_rate=0.3"),
)


def pick_request(rng: random.Random) -> tuple[str, str]:
    """One (method, path) drawn from :data:`TRAFFIC`, with its parameters filled in."""
    weights = [weight for weight, _, _ in TRAFFIC]
    _, method, template = rng.choices(TRAFFIC, weights=weights)[0]
    path = template.format(id=rng.randint(1, 3), ms=rng.choice((20, 80, 300, 1200)))
    return method, path


async def generate_traffic(
    base_urls: Sequence[str], *, duration: float, rate: float, seed: int | None = None
) -> collections.Counter[tuple[str, int]]:
    """Send requests to ``base_urls`` for ``duration`` seconds at about ``rate`` per second.

    Returns how many requests got each (base URL, status); connection errors count as 0.
    """
    rng = random.Random(seed)  # noqa: S311 - demo traffic, not cryptography
    results: collections.Counter[tuple[str, int]] = collections.Counter()
    interval = 1.0 / rate
    deadline = time.monotonic() + duration
    pending: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=5.0) as client:

        async def one(base_url: str, method: str, path: str) -> None:
            # A sampled trace per request, as a gateway in front of the service would start.
            traceparent = f"00-{rng.getrandbits(128) or 1:032x}-{rng.getrandbits(64) or 1:016x}-01"
            try:
                response = await client.request(
                    method, base_url + path, headers={"traceparent": traceparent}
                )
                results[(base_url, response.status_code)] += 1
            except httpx.HTTPError:
                results[(base_url, 0)] += 1

        while time.monotonic() < deadline:
            method, path = pick_request(rng)
            task = asyncio.create_task(one(rng.choice(list(base_urls)), method, path))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(interval)
        if pending:
            await asyncio.wait(pending, timeout=10)
    return results


def start(
    argv: Sequence[str], env: Mapping[str, str], stdout: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a process in its own session, so it can be stopped with everything it spawned;
    its standard output goes to ``stdout`` when given."""
    if stdout is None:
        return subprocess.Popen(list(argv), env=dict(env), start_new_session=True)
    with stdout.open("wb") as output:
        return subprocess.Popen(list(argv), env=dict(env), stdout=output, start_new_session=True)


def tracing_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Tracing for the demo services: the caller's OTLP endpoint if set, else the console."""
    if environ.get("OTEL_TRACES_EXPORTER"):
        return {}
    exporter = "otlp" if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "console"
    return {"OTEL_TRACES_EXPORTER": exporter}


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop ``process`` by PID: ``sig``, then SIGKILL if it does not exit within 10 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_ready(url: str, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; raise ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def service_argv(port: int) -> list[str]:
    """The example service under uvicorn on loopback."""
    return [sys.executable, "-m", "uvicorn", "examples.courses.app:app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return a process exit code."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--collector-port", type=int, default=9090)
    parser.add_argument("--service-port", type=int, default=8000)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument(
        "--kill-after",
        type=float,
        default=None,
        help="seconds before billing dies (default: a third of the duration)",
    )
    args = parser.parse_args(argv)
    kill_after = args.kill_after if args.kill_after is not None else args.duration / 3

    collector_url = f"http://127.0.0.1:{args.collector_port}"
    env = dict(os.environ)
    collector_env = {**env, "OTELKIT_HEALTH_TTL_SECONDS": "15"}
    service_env = {
        **env,
        **tracing_env(env),
        "OTELKIT_COLLECTOR_URL": collector_url,
        "OTELKIT_HEARTBEAT_SECONDS": "5",
    }
    spans_dir = Path(tempfile.mkdtemp(prefix="otelkit-demo-"))
    to_console = service_env["OTEL_TRACES_EXPORTER"] == "console"
    processes = [
        start(
            [sys.executable, "-m", "otelkit_collector", "--port", str(args.collector_port)],
            collector_env,
        )
    ]
    try:
        wait_ready(collector_url + "/healthz")
        courses_url = f"http://127.0.0.1:{args.service_port}"
        billing_url = f"http://127.0.0.1:{args.service_port + 1}"
        courses = start(
            service_argv(args.service_port),
            {**service_env, "OTEL_SERVICE_NAME": "courses"},
            spans_dir / "courses-spans.json" if to_console else None,
        )
        billing = start(
            service_argv(args.service_port + 1),
            {**service_env, "OTEL_SERVICE_NAME": "billing"},
            spans_dir / "billing-spans.json" if to_console else None,
        )
        processes += [courses, billing]
        wait_ready(courses_url + "/healthz")
        wait_ready(billing_url + "/healthz")
        print(f"collector {collector_url}/metrics · courses {courses_url} · billing {billing_url}")
        print(
            f"{args.duration:.0f} s of traffic at {args.rate:.0f}/s; billing dies at "
            f"{kill_after:.0f} s"
        )
        if to_console:
            print(f"spans (JSON) in {spans_dir}; exemplars: curl -H 'Accept: "
                  f"application/openmetrics-text' {courses_url}/metrics")  # fmt: skip

        async def run() -> collections.Counter[tuple[str, int]]:
            traffic = asyncio.create_task(
                generate_traffic([courses_url, billing_url], duration=args.duration, rate=args.rate)
            )
            await asyncio.sleep(kill_after)
            stop(billing, signal.SIGKILL)
            print("billing killed: its health turns stale after the collector's 15 s TTL")
            return await traffic

        results = asyncio.run(run())
        for (url, status), count in sorted(results.items()):
            print(f"{url} {status or 'error'}: {count}")
    except KeyboardInterrupt:
        pass
    finally:
        for process in reversed(processes):
            stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
