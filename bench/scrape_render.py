"""Scrape render: the collector's /metrics with 1,000 and 10,000 histogram series vs native.

The collector (built in-process by ``create_app`` on a fresh registry, fed through its batch
endpoint over ``httpx.ASGITransport``) and a native prometheus_client Histogram holding the
same observations (same labels, catalogue buckets) are rendered alternately; reports time,
bytes and lines, and the time ratio.

    python -m bench.scrape_render [--quick]
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import (
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)

from bench.common import (
    Target,
    emit_json,
    fmt,
    median,
    parse_args,
    print_table,
    print_targets,
)
from otelkit import instruments
from otelkit.reports import MAX_BATCH_REPORTS
from otelkit_collector import exposition
from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings

TARGET_SERIES = 1_000
TARGET_RATIO = 0.8
OBSERVATIONS_PER_SERIES = 3
ROUTES_PER_SERVICE = 100
STATUSES = (200, 500)
NATIVE_LIKE_FOR_LIKE = "native, no _created"
"""Native without its per-series ``_created`` line, which the OTel exporter does not emit."""
TEXT_FORMAT = None
"""What Prometheus' text format 0.0.4 is negotiated from: no Accept header."""


@dataclass(frozen=True)
class Size:
    """One measured size: how many renders per side, and whether to warm up / go over ASGI."""

    series: int
    renders: int
    warm_up: bool
    over_asgi: bool
    """Also time GET /metrics through the app (routing and response included)."""


QUICK = (
    Size(1_000, 5, warm_up=True, over_asgi=False),
    Size(10_000, 1, warm_up=False, over_asgi=False),
)
FULL = (
    Size(1_000, 21, warm_up=True, over_asgi=True),
    Size(10_000, 3, warm_up=True, over_asgi=False),
)


def series_labels(count: int) -> list[dict[str, str]]:
    """``count`` distinct label sets: 100 routes x 2 statuses per service, as many services."""
    per_service = ROUTES_PER_SERVICE * len(STATUSES)
    return [
        {
            "method": "GET",
            "route": f"/api/resource{(index // len(STATUSES)) % ROUTES_PER_SERVICE:03d}/{{id}}",
            "status": str(STATUSES[index % len(STATUSES)]),
            "service": f"svc-{index // per_service:03d}",
        }
        for index in range(count)
    ]


def observations(labels: list[dict[str, str]]) -> list[tuple[dict[str, str], float]]:
    """Three observations per series, landing in different buckets."""
    return [
        (label_set, duration)
        for index, label_set in enumerate(labels)
        for duration in (0.003 + index % 7 * 0.001, 0.04 + index % 5 * 0.01, 0.3 + index % 3 * 0.2)
    ]


async def fill_collector(app: Any, data: list[tuple[dict[str, str], float]]) -> None:
    """Push every observation through the batch endpoint, as services would."""
    reports = [
        {
            "method": label_set["method"],
            "route": label_set["route"],
            "status": int(label_set["status"]),
            "duration": duration,
            "service": label_set["service"],
        }
        for label_set, duration in data
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
        for start in range(0, len(reports), MAX_BATCH_REPORTS):
            chunk = reports[start : start + MAX_BATCH_REPORTS]
            response = await client.post("/api/metrics/http/batch", json={"reports": chunk})
            response.raise_for_status()
            if response.json().get("overflowed", 0):
                raise RuntimeError("a cap folded series: raise the caps in CollectorSettings")


def native_registry(data: list[tuple[dict[str, str], float]]) -> CollectorRegistry:
    """The same observations in a plain prometheus_client Histogram."""
    registry = CollectorRegistry()
    spec = instruments.HTTP_REQUEST_DURATION
    histogram = Histogram(
        spec.prometheus_name.removesuffix("_seconds"),
        spec.description,
        ("method", "route", "status", "service"),
        unit="seconds",
        buckets=instruments.DURATION_BUCKETS_SECONDS,
        registry=registry,
    )
    for label_set, duration in data:
        histogram.labels(**label_set).observe(duration)
    return registry


def count_series(body: bytes) -> int:
    """How many ``http_request_duration_seconds`` series a text exposition carries."""
    prefix = f"{instruments.HTTP_REQUEST_DURATION.prometheus_name}_count{{".encode()
    return sum(1 for line in body.splitlines() if line.startswith(prefix))


def time_call(render: Callable[[], bytes]) -> tuple[float, bytes]:
    """CPU milliseconds one render takes (thread time: the machine is shared; render is CPU)."""
    gc.collect()
    started = time.thread_time_ns()
    body = render()
    return (time.thread_time_ns() - started) / 1e6, body


def measure_size(size: Size) -> dict[str, Any]:
    """Build both sides with ``size.series`` series and time their renders, alternating."""
    settings = CollectorSettings(
        max_series=max(size.series * 2, 20_000),
        max_services=max(size.series // 100, 1_000),
        max_routes_per_service=1_000,
    )
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry)
    data = observations(series_labels(size.series))
    fill_started = time.monotonic()
    asyncio.run(fill_collector(app, data))
    fill_seconds = time.monotonic() - fill_started
    native = native_registry(data)

    def render_collector() -> bytes:
        return exposition.render(registry, TEXT_FORMAT)[0]

    def render_native() -> bytes:
        return generate_latest(native)

    def render_native_without_created() -> bytes:
        # prometheus_client's switch is module-global; it is restored right after the render.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        try:
            return generate_latest(native)
        finally:
            enable_created_metrics()  # type: ignore[no-untyped-call]

    transport = httpx.ASGITransport(app=app)

    async def scrape_http() -> bytes:
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            response = await client.get("/metrics")
            response.raise_for_status()
            return response.content

    loop = asyncio.new_event_loop()

    def render_over_asgi() -> bytes:
        return loop.run_until_complete(scrape_http())

    sides: dict[str, Callable[[], bytes]] = {
        "collector": render_collector,
        "native": render_native,
        NATIVE_LIKE_FOR_LIKE: render_native_without_created,
    }
    if size.over_asgi:
        sides["collector GET /metrics"] = render_over_asgi
    times: dict[str, list[float]] = {name: [] for name in sides}
    bodies: dict[str, bytes] = {}
    if size.warm_up:
        for name, render in sides.items():
            bodies[name] = time_call(render)[1]
    for index in range(size.renders):
        order = list(sides.items())
        if index % 2:
            order.reverse()
        for name, render in order:
            elapsed, bodies[name] = time_call(render)
            times[name].append(elapsed)
    loop.close()
    ratios = [
        mine / theirs for mine, theirs in zip(times["collector"], times["native"], strict=True)
    ]
    found = {name: count_series(body) for name, body in bodies.items()}
    if set(found.values()) != {size.series}:
        raise RuntimeError(f"expected {size.series} series on every side, found {found}")
    return {
        "series": size.series,
        "renders": size.renders,
        "fill_seconds": fill_seconds,
        "ms": {name: median(values) for name, values in times.items()},
        "time_ratio": median(ratios),
        "time_ratio_like_for_like": median(
            [
                mine / theirs
                for mine, theirs in zip(
                    times["collector"], times[NATIVE_LIKE_FOR_LIKE], strict=True
                )
            ]
        ),
        "bytes": {name: len(body) for name, body in bodies.items()},
        "lines": {name: body.count(b"\n") for name, body in bodies.items()},
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Run the scrape-render benchmark."""
    args = parse_args(__doc__ or "", argv)
    started = time.monotonic()
    results = [measure_size(size) for size in (QUICK if args.quick else FULL)]
    fills = ", ".join(f"{r['fill_seconds']:.1f} s" for r in results)
    print(
        f"scrape render: text format 0.0.4, {OBSERVATIONS_PER_SERIES} observations per series, "
        f"renders alternated collector/native, CPU time; {time.monotonic() - started:.0f} s "
        f"(filling the collector through its batch endpoint took {fills})"
    )
    rows = []
    for result in results:
        for side in result["ms"]:
            is_native = side == "native"
            # The collector's ratio is the median of paired renders (the target's figure).
            time_ratio = (
                result["time_ratio"]
                if side == "collector"
                else result["ms"][side] / result["ms"]["native"]
            )
            rows.append(
                [
                    f"{result['series']:,}",
                    side,
                    fmt(result["ms"][side]),
                    f"{fmt(time_ratio)}x",
                    f"{result['bytes'][side]:,}",
                    "1x"
                    if is_native
                    else f"{fmt(result['bytes'][side] / result['bytes']['native'])}x",
                    f"{result['lines'][side]:,}",
                ]
            )
    print_table(
        f"render CPU time (median of {', '.join(str(r['renders']) for r in results)} renders)",
        ["series", "side", "ms", "vs native", "bytes", "vs native", "lines"],
        rows,
    )
    print(
        "collector = otelkit_collector.exposition.render() of the whole registry (the histogram "
        "plus the collector's counters and gauges); GET /metrics (full run, 1,000 series) adds "
        "routing and the response over ASGITransport. native = generate_latest() with "
        "prometheus_client's defaults (the target's reference), which adds a _created line per "
        "series; 'native, no _created' renders the same samples as the collector (like for like)."
    )
    by_size = {result["series"]: result for result in results}
    targets = [
        Target(
            f"/metrics render time for {TARGET_SERIES:,} series vs native prometheus_client",
            by_size[TARGET_SERIES]["time_ratio"],
            TARGET_RATIO,
            "<=",
            "x",
        )
    ]
    print_targets(targets)
    figures = {
        str(result["series"]): {
            "ms": {k: round(v, 3) for k, v in result["ms"].items()},
            "time_ratio": round(result["time_ratio"], 3),
            "time_ratio_like_for_like": round(result["time_ratio_like_for_like"], 3),
            "bytes": result["bytes"],
            "bytes_ratio": round(result["bytes"]["collector"] / result["bytes"]["native"], 3),
            "lines": result["lines"],
            "renders": result["renders"],
        }
        for result in results
    }
    emit_json("scrape_render", quick=args.quick, figures=figures, targets=targets)


if __name__ == "__main__":
    main()
