"""The status page's history: ticks, the window, its bounds, and where it reads the histogram."""

from __future__ import annotations

import asyncio
import tracemalloc

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from otelkit.reports import HttpReport
from otelkit_collector.app import build_meter_provider, build_reader
from otelkit_collector.cardinality import CardinalityGuard
from otelkit_collector.history import BUCKETS, History, RouteKey, SeriesLabels, quantile
from otelkit_collector.recorder import Recorder
from otelkit_collector.sampling import registry_series
from otelkit_collector.settings import CollectorSettings
from otelkit_collector.state import ServiceState
from tests.conftest import AppFactory, FakeClock

pytestmark = pytest.mark.anyio

# The catalogue's buckets as the contract states them (seconds), then +Inf.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def counts(**by_bound: int) -> list[int]:
    """Per-bucket counts from ``le_0_01=3``-style keywords (``inf`` for +Inf)."""
    result = [0] * BUCKETS
    for name, value in by_bound.items():
        bound = name.removeprefix("le_").replace("_", ".")
        index = len(BOUNDS) if bound == "inf" else BOUNDS.index(float(bound))
        result[index] = value
    return result


GET_A: SeriesLabels = ("shop", "GET", "/a", 200)
GET_A_500: SeriesLabels = ("shop", "GET", "/a", 500)
POST_B: SeriesLabels = ("shop", "POST", "/b", 201)
ROUTE_A = RouteKey("shop", "GET", "/a")


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile() -> None:
    """Ten observations in (5 ms, 10 ms]: the median sits halfway, from the bucket's lower
    bound, as Prometheus' histogram_quantile puts it."""
    assert quantile(0.5, counts(le_0_01=10), BOUNDS) == pytest.approx(0.0075)
    assert quantile(0.95, counts(le_0_01=10), BOUNDS) == pytest.approx(0.00975)


def test_quantile_of_the_first_bucket_starts_from_zero() -> None:
    """The first bucket's lower bound is 0."""
    assert quantile(0.5, counts(le_0_005=4), BOUNDS) == pytest.approx(0.0025)


def test_quantile_in_the_infinite_bucket_answers_the_largest_finite_bound() -> None:
    """A rank that falls past 10 s answers 10 s, as histogram_quantile does."""
    assert quantile(0.95, counts(le_0_01=1, inf=9), BOUNDS) == 10


def test_quantile_skips_empty_buckets_below_the_rank() -> None:
    """Empty buckets between observations never become the answer."""
    assert quantile(0.5, counts(le_0_005=1, le_1=1), BOUNDS) == pytest.approx(0.005)
    assert quantile(0.75, counts(le_0_005=1, le_1=1), BOUNDS) == pytest.approx(0.875)


def test_quantile_of_nothing_is_none() -> None:
    """No observation, no percentile (never a made-up zero)."""
    assert quantile(0.95, [0] * BUCKETS, BOUNDS) is None


def test_a_tick_holds_what_each_series_recorded_since_the_previous_one(clock: FakeClock) -> None:
    """Ticks are deltas of the cumulative counts; 5xx count as errors; rates use the clock."""
    history = History(slots=6, window_slots=3, clock=clock)
    clock.advance(10)
    history.sample([(GET_A, counts(le_0_01=4)), (GET_A_500, counts(le_0_5=1))])
    clock.advance(10)
    history.sample([(GET_A, counts(le_0_01=10)), (GET_A_500, counts(le_0_5=1))])

    points = history.chart([ROUTE_A])
    assert [p.rate for p in points] == [pytest.approx(0.5), pytest.approx(0.6)]
    figures = history.figures([ROUTE_A])
    assert (figures.requests, figures.errors, figures.seconds) == (11, 1, 20)
    assert figures.rate == pytest.approx(11 / 20)
    assert figures.error_ratio == pytest.approx(1 / 11)
    assert history.service_totals("shop") == [5, 6]


def test_the_window_forgets_ticks_older_than_its_length(clock: FakeClock) -> None:
    """After window_slots more ticks, an old burst no longer counts in the figures, while the
    chart still shows it until the ring wraps."""
    history = History(slots=5, window_slots=2, clock=clock)
    total = 0
    for added in (7, 0, 0):
        total += added
        clock.advance(10)
        history.sample([(GET_A, counts(le_0_01=total))])
    assert history.figures([ROUTE_A]).requests == 0
    assert history.figures([ROUTE_A]).rate == 0
    assert history.figures([ROUTE_A]).p95 is None
    assert [p.rate for p in history.chart([ROUTE_A])] == [pytest.approx(0.7), 0, 0]
    for _ in range(3):
        clock.advance(10)
        history.sample([(GET_A, counts(le_0_01=total))])
    assert len(history.chart([ROUTE_A])) == 5
    assert all(p.rate == 0 for p in history.chart([ROUTE_A]))


def test_a_window_as_long_as_the_history_still_drops_the_overwritten_tick(
    clock: FakeClock,
) -> None:
    """window_slots == slots: the tick the ring overwrites leaves the window first."""
    history = History(slots=3, window_slots=3, clock=clock)
    total = 0
    for added in (5, 1, 1, 1):
        total += added
        clock.advance(1)
        history.sample([(GET_A, counts(le_0_01=total))])
    assert history.figures([ROUTE_A]).requests == 3
    assert history.window_seconds == 3


def test_a_histogram_restart_counts_its_new_totals_not_a_negative_delta(clock: FakeClock) -> None:
    """Counts that go down mean the source restarted: what it holds now is all new."""
    history = History(slots=4, window_slots=4, clock=clock)
    history.sample([(GET_A, counts(le_0_01=9))])
    history.sample([(GET_A, counts(le_0_01=2))])
    assert history.figures([ROUTE_A]).requests == 11


def test_routes_sum_into_their_service_and_stay_apart_from_other_services(
    clock: FakeClock,
) -> None:
    """A service's figures add its routes; another service's routes never leak in."""
    history = History(slots=4, window_slots=4, clock=clock)
    history.sample(
        [
            (GET_A, counts(le_0_01=3)),
            (POST_B, counts(le_1=1)),
            (("other", "GET", "/a", 200), counts(le_5=50)),
        ]
    )
    shop = [k for k in history.routes() if k.service == "shop"]
    assert sorted(shop) == [RouteKey("shop", "GET", "/a"), RouteKey("shop", "POST", "/b")]
    assert history.figures(shop).requests == 4
    assert history.figures(shop).p95 == pytest.approx(
        quantile(0.95, counts(le_0_01=3, le_1=1), BOUNDS)
    )


def test_series_past_the_bound_are_not_followed(clock: FakeClock) -> None:
    """Whatever it is fed, the history follows at most max_series series."""
    history = History(slots=2, window_slots=1, max_series=3, clock=clock)
    history.sample([(("s", "GET", f"/r{i}", 200), counts(le_0_01=1)) for i in range(10)])
    assert history.route_count == 3


def test_an_idle_series_takes_no_route_until_it_records() -> None:
    """Only series that recorded something get a route's arrays."""
    history = History(slots=2, window_slots=1)
    history.sample([(GET_A, [0] * BUCKETS)])
    assert history.route_count == 0


def test_window_slots_must_fit_the_history() -> None:
    """A window longer than the history is a configuration error naming the value."""
    with pytest.raises(ValueError, match="window_slots must be within 1-4, got 5"):
        History(slots=4, window_slots=5)


def test_memory_at_full_caps_stays_under_20_mib(clock: FakeClock) -> None:
    """2,000 series on distinct routes plus the 500 overflow series (one per status): the
    history holds under 20 MiB, as the README states, and later ticks allocate nothing more
    (every route's ticks are allocated at full size when it first records)."""
    series: list[SeriesLabels] = [(f"svc{i // 2}", "GET", f"/r{i % 2}", 200) for i in range(2_000)]
    series += [("__other__", "_OTHER", "__other__", status) for status in range(100, 600)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = History(slots=90, window_slots=30, max_series=2_500, clock=clock)
        history.sample([(labels, counts(le_0_01=1)) for labels in series])
        held = tracemalloc.get_traced_memory()[0] - before
        for tick in range(2, 5):
            history.sample([(labels, counts(le_0_01=tick)) for labels in series])
        grown = tracemalloc.get_traced_memory()[0] - before - held
    finally:
        tracemalloc.stop()
    assert history.route_count == 2_001
    assert held < 20 * 1024 * 1024, f"history holds {held / 2**20:.1f} MiB"
    assert grown < 256 * 1024, f"later ticks grew the history by {grown / 1024:.0f} KiB"


def test_the_collectors_reader_and_the_registry_give_the_same_series() -> None:
    """The reader's capture (the fast path) sees exactly the series and counts the registry
    renders (the public path), and a capture leaves /metrics as it was."""
    registry = CollectorRegistry()
    settings = CollectorSettings.from_env(environ={})
    reader = build_reader(registry, settings)
    provider = build_meter_provider(registry, settings, reader=reader)
    recorder = Recorder(
        provider,
        state=ServiceState(health_ttl_seconds=90, max_services=10),
        guard=CardinalityGuard(max_services=10, max_routes_per_service=10, max_series=100),
    )
    recorder.record_http_reports(
        [
            HttpReport(service="a", method="GET", route="/x", status=200, duration=0.003),
            HttpReport(service="a", method="GET", route="/x", status=200, duration=0.3),
            HttpReport(method="POST", route="/y", status=503, duration=12.0),
        ]
    )
    before = generate_latest(registry)
    captured = sorted((labels, list(c)) for labels, c in reader.series())
    assert generate_latest(registry) == before
    public = sorted((labels, list(c)) for labels, c in registry_series(registry))
    assert captured == public
    assert captured == [
        (("", "POST", "/y", 503), counts(inf=1)),
        (("a", "GET", "/x", 200), counts(le_0_005=1, le_0_5=1)),
    ]
    provider.shutdown()


async def test_the_app_samples_on_its_own_while_it_runs(make_app: AppFactory) -> None:
    """With a short resolution, the running app takes ticks by itself."""
    app = make_app(history_resolution_seconds=0.02, history_seconds=1.0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            await client.post(
                "/api/metrics/http",
                json={
                    "service": "s",
                    "method": "GET",
                    "route": "/",
                    "status": 200,
                    "duration": 0.1,
                },
            )
            for _ in range(200):
                if app.state.status.history.samples >= 2:
                    break
                await asyncio.sleep(0.02)
    assert app.state.status.history.samples >= 2
    assert app.state.status.history.figures([RouteKey("s", "GET", "/")]).requests == 1
