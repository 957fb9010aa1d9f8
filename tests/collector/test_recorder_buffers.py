"""The recorder's buffers are invisible: every collection sees everything recorded before it.

``Recorder.record_http_durations`` keeps up to ``FLUSH_AT`` durations per series and the
self-metric counts in memory; the ``COLLECTION_HOOK`` gauge's callback flushes them before a
reader reads any aggregation. Each test here compares what readers collect with what was
recorded, or with a *twin* histogram fed the same values through ``Histogram.record()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from prometheus_client import CollectorRegistry, generate_latest

from otelkit.bound import bind
from otelkit.instruments import (
    ACTIVE_USERS,
    COLLECTOR_REPORTS,
    DURATION_BUCKETS_SECONDS,
    HTTP_REQUEST_DURATION,
    METER_NAME,
    OTHER_METHOD,
    OVERFLOW_VALUE,
    create_http_duration_histogram,
)
from otelkit.reports import HttpReport
from otelkit_collector.app import build_meter_provider
from otelkit_collector.cardinality import CardinalityGuard
from otelkit_collector.recorder import COLLECTION_HOOK, FLUSH_AT, Recorder, ReportLabels
from otelkit_collector.settings import CollectorSettings
from otelkit_collector.state import ServiceState
from tests.conftest import FakeClock, recorded_samples, samples

DURATION: Final = HTTP_REQUEST_DURATION.name
REPORTS: Final = COLLECTOR_REPORTS.name
DELTA: Final = AggregationTemporality.DELTA

COURSES: Final[ReportLabels] = ("courses", "GET", "/api/courses/{id}", 200)
UNNAMED: Final[ReportLabels] = (None, "POST", "/api/courses", 201)
DOWN: Final[ReportLabels] = ("auth", "GET", "/healthz", 503)
LABEL_SETS: Final = (COURSES, UNNAMED, DOWN)
FOLDED: Final[ReportLabels] = ("billing", "PUT", "/api/invoices", 404)
"""A fourth label set: folded into the overflow series when ``max_series`` is 3."""
OVERFLOW_ATTRIBUTES: Final = {
    "service": OVERFLOW_VALUE,
    "method": OTHER_METHOD,
    "route": OVERFLOW_VALUE,
    "status": "404",
}

Labels = frozenset[tuple[str, str]]
Durations = dict[ReportLabels, list[float]]


def attributes_of(labels: ReportLabels) -> dict[str, str]:
    """The attributes the recorder gives a series admitted as it is."""
    service, method, route, status = labels
    attributes = {"method": method, "route": route, "status": str(status)}
    if service:
        attributes["service"] = service
    return attributes


def delta_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader(preferred_temporality={SdkHistogram: DELTA, SdkCounter: DELTA})


def open_provider(
    reader: InMemoryMetricReader, setup: str = "always-off-exemplars"
) -> MeterProvider:
    """An SDK provider over ``reader``, set up as the collector's (exemplars off) or not:

    * ``always-off-exemplars``: as the collector builds its own, what bound series need;
    * ``sdk-default-exemplars``: no exemplar filter given, so the SDK's trace-based one;
    * ``exponential-view``: exemplars off, but a view picks another histogram aggregation.
    """
    if setup == "sdk-default-exemplars":
        return MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    views = []
    if setup == "exponential-view":
        aggregation = ExponentialBucketHistogramAggregation()
        views.append(View(instrument_name=DURATION, aggregation=aggregation))
    else:
        assert setup == "always-off-exemplars", setup
    return MeterProvider(
        metric_readers=[reader],
        exemplar_filter=AlwaysOffExemplarFilter(),
        views=views,
        shutdown_on_exit=False,
    )


def new_recorder(provider: Any, *, max_series: int = 100) -> Recorder:
    return Recorder(
        provider,
        state=ServiceState(health_ttl_seconds=90.0, max_services=10, clock=FakeClock()),
        guard=CardinalityGuard(max_services=10, max_routes_per_service=10, max_series=max_series),
    )


@dataclass
class Twins:
    """A recorder and a twin histogram on a provider built the same way, each with a reader."""

    recorder: Recorder
    reader: InMemoryMetricReader
    twin: Histogram
    twin_reader: InMemoryMetricReader
    twin_provider: MeterProvider

    def record(self, durations: Durations) -> int:
        """Record through the recorder, and value by value, in order, into the twin."""
        for labels, values in durations.items():
            for value in values:
                self.twin.record(value, attributes_of(labels))
        return self.recorder.record_http_durations(durations)

    def assert_same_points(self) -> None:
        """Collect both now: every histogram point field-for-field equal, sums bit for bit."""
        assert histogram_points(self.reader.get_metrics_data()) == histogram_points(
            self.twin_reader.get_metrics_data()
        )


@contextlib.contextmanager
def open_twins(setup: str = "always-off-exemplars") -> Iterator[Twins]:
    """A recorder and its twin, each on its own provider set up as ``setup`` says."""
    reader, twin_reader = InMemoryMetricReader(), InMemoryMetricReader()
    provider = open_provider(reader, setup)
    twin_provider = open_provider(twin_reader, setup)
    try:
        twin = create_http_duration_histogram(twin_provider.get_meter(METER_NAME))
        yield Twins(new_recorder(provider), reader, twin, twin_reader, twin_provider)
    finally:
        provider.shutdown()
        twin_provider.shutdown()


def metrics_of(data: MetricsData | None) -> Iterator[Any]:
    if data is None:
        return
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            yield from scope_metrics.metrics


def histogram_points(data: MetricsData | None) -> dict[Labels, dict[str, Any]]:
    """Each duration point by attributes: every field but the timestamps, plus the exact sum."""
    points: dict[Labels, dict[str, Any]] = {}
    for metric in metrics_of(data):
        if metric.name != DURATION:
            continue
        for point in metric.data.data_points:
            fields = dataclasses.asdict(point)
            for name in ("start_time_unix_nano", "time_unix_nano", "attributes"):
                fields.pop(name)
            fields["exact"] = (repr(point.sum), repr(point.min), repr(point.max))
            points[frozenset(point.attributes.items())] = fields
    return points


def counts_of(data: MetricsData | None) -> dict[tuple[str, str], int]:
    """``otelkit_collector_reports`` per (kind, outcome), as collected."""
    counts: dict[tuple[str, str], int] = {}
    for metric in metrics_of(data):
        if metric.name == REPORTS:
            for point in metric.data.data_points:
                counts[(point.attributes["kind"], point.attributes["outcome"])] = point.value
    return counts


def batch_of(size: int, start: int = 0) -> Durations:
    """``size`` durations over the three label sets, dyadic so any sum of them is exact."""
    durations: Durations = {}
    for index in range(start, start + size):
        labels = LABEL_SETS[index % len(LABEL_SETS)]
        durations.setdefault(labels, []).append((index % 640) / 64)
    return durations


# --- Exactness against the public path ----------------------------------------------------------


def test_buffered_durations_are_collected_before_and_after_a_flush() -> None:
    """Fewer than FLUSH_AT durations are all collected; crossing FLUSH_AT, still exact."""
    awkward = [0.1, 0.2, 0.3, 1e-16, 86_400.0, 0.0, 0.005, 0.005000000000000001, 7.5]
    with open_twins() as twins:
        twins.record({COURSES: awkward[:3], UNNAMED: [0.25]})
        points = histogram_points(twins.reader.get_metrics_data())
        assert {labels: point["count"] for labels, point in points.items()} == {
            frozenset(attributes_of(COURSES).items()): 3,
            frozenset(attributes_of(UNNAMED).items()): 1,
        }

        twins.record({COURSES: awkward * 4})  # 3 + 36: still buffered
        twins.assert_same_points()
        twins.record({COURSES: awkward * 3, DOWN: [0.5] * (FLUSH_AT - 1)})  # past FLUSH_AT
        twins.assert_same_points()
        twins.record({DOWN: [0.75]})  # exactly FLUSH_AT since the last collection
        twins.record({COURSES: awkward * 20, DOWN: [1e-16]})  # one batch of 3 x FLUSH_AT
        twins.assert_same_points()
        twins.assert_same_points()  # a collection with nothing new changes nothing


batches = st.dictionaries(
    st.sampled_from(LABEL_SETS),
    st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=86_400.0),
            st.floats(min_value=0.0, max_value=1.0),
            st.sampled_from((0.0, 1e-16, 0.005, 10.0)),
        ),
        max_size=FLUSH_AT + 8,
    ),
    max_size=3,
)


@given(steps=st.lists(st.one_of(batches, st.just("collect")), max_size=12))
@settings(max_examples=40, deadline=None)
def test_any_records_and_collections_match_the_public_path(
    steps: list[Durations | str],
) -> None:
    """Whatever batches and collections interleave, each collection equals the twin's."""
    with open_twins() as twins:
        for step in steps:
            if isinstance(step, str):
                twins.assert_same_points()
            else:
                twins.record(step)
        twins.assert_same_points()


def test_every_reader_sees_everything_whichever_collects_first() -> None:
    """With two readers, the one that did not trigger the flush still sees every duration."""
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[first, second],
        exemplar_filter=AlwaysOffExemplarFilter(),
        shutdown_on_exit=False,
    )
    recorder = new_recorder(provider)

    recorder.record_http_durations({COURSES: [0.5] * 10})
    from_first = histogram_points(first.get_metrics_data())
    recorder.record_http_durations({COURSES: [0.5] * 5})
    from_second = histogram_points(second.get_metrics_data())
    provider.shutdown()

    labels = frozenset(attributes_of(COURSES).items())
    assert (from_first[labels]["count"], from_second[labels]["count"]) == (10, 15)


@pytest.mark.parametrize(
    ("setup", "bindable"),
    [
        pytest.param("always-off-exemplars", True, id="bound"),
        pytest.param("sdk-default-exemplars", False, id="trace-based-exemplars"),
        pytest.param("exponential-view", False, id="exponential-histogram-view"),
    ],
)
def test_providers_that_cannot_be_bound_record_exactly_through_the_buffers(
    setup: str, bindable: bool
) -> None:
    """Where binding is impossible (the SDK's default trace-based exemplar filter, another
    aggregation), buffers flush through ``Histogram.record()``: collections match the twin."""
    with open_twins(setup) as twins:
        probe = create_http_duration_histogram(twins.twin_provider.get_meter("probe"))
        probe.record(0.1, attributes_of(COURSES))
        assert (bind(probe, attributes_of(COURSES)) is not None) is bindable

        twins.record({COURSES: [0.2] * 10, UNNAMED: [0.3]})
        twins.assert_same_points()
        for start in range(0, 400, 40):
            twins.record(batch_of(40, start))
        twins.assert_same_points()
        twins.record({COURSES: [0.1, 0.2, 0.3] * FLUSH_AT})
        twins.assert_same_points()


# --- What collections show besides the durations ------------------------------------------------


def test_the_collection_hook_is_never_collected() -> None:
    """The hook gauge has no point in any collection, before or after recording."""
    reader = InMemoryMetricReader()
    provider = open_provider(reader)
    recorder = new_recorder(provider)

    before = {metric.name for metric in metrics_of(reader.get_metrics_data())}
    recorder.record_http_durations({COURSES: [0.5]})
    recorder.record_users(None, 3)
    after = {metric.name for metric in metrics_of(reader.get_metrics_data())}
    again = {metric.name for metric in metrics_of(reader.get_metrics_data())}
    provider.shutdown()

    assert COLLECTION_HOOK not in before | after | again
    assert after == again == {DURATION, REPORTS, ACTIVE_USERS.name}


def test_the_collection_hook_is_not_in_the_exposition() -> None:
    """Scrapes of the collector's own provider never show the hook, not even as an empty family."""
    registry = CollectorRegistry()
    recorder = new_recorder(build_meter_provider(registry, CollectorSettings.from_env(environ={})))

    before = generate_latest(registry).decode()
    recorder.record_http_durations({COURSES: [0.5] * 3})
    after = generate_latest(registry).decode()

    for exposition in (before, after):
        assert "otelkit_collector_flush" not in exposition
        assert "Never has a value" not in exposition
    count = ("http_request_duration_seconds_count", frozenset(attributes_of(COURSES).items()))
    assert recorded_samples(after)[count] == 3


def reports_total(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """``otelkit_collector_reports_total`` per (kind, outcome), scraped now."""
    return {
        (labels["kind"], labels["outcome"]): value
        for (name, label_set), value in samples(generate_latest(registry).decode()).items()
        if name == COLLECTOR_REPORTS.prometheus_name
        for labels in (dict(label_set),)
    }


def test_self_metric_counts_are_exact_after_each_scrape() -> None:
    """Accepted, overflowed and other counts, buffered, all show in the next scrape."""
    registry = CollectorRegistry()
    provider = build_meter_provider(registry, CollectorSettings.from_env(environ={}))
    recorder = new_recorder(provider, max_series=3)

    first = recorder.record_http_durations(
        {COURSES: [0.1] * 3, UNNAMED: [0.3] * 2, DOWN: [0.4], FOLDED: [0.2] * 4}
    )
    recorder.count("http", "rejected", 5)
    recorder.count("http", "unauthorized")
    recorder.count("users", "rejected", 0)
    recorder.record_health("auth", "healthy")
    scraped = reports_total(registry)
    second = recorder.record_http_reports(
        [
            HttpReport(
                method="put", route="/api/invoices", status=404, duration=0.5, service="billing"
            ),
            HttpReport(method="GET", route="/healthz", status=503, duration=0.5, service="auth"),
            HttpReport(method="GET", route="/new", status=200, duration=0.5),
        ]
    )
    recorder.record_users("auth", 7)
    rescraped = reports_total(registry)
    overflow = (
        "http_request_duration_seconds_count",
        frozenset(OVERFLOW_ATTRIBUTES.items()),
    )
    overflow_count = recorded_samples(generate_latest(registry).decode())[overflow]

    assert (first, second) == (4, 2)
    assert scraped == {
        ("http", "accepted"): 6,
        ("http", "overflowed"): 4,
        ("http", "rejected"): 5,
        ("http", "unauthorized"): 1,
        ("health", "accepted"): 1,
    }
    assert rescraped == {
        ("http", "accepted"): 7,
        ("http", "overflowed"): 6,
        ("http", "rejected"): 5,
        ("http", "unauthorized"): 1,
        ("health", "accepted"): 1,
        ("users", "accepted"): 1,
    }
    assert overflow_count == 5


# --- Collections on other threads, and delta temporality ----------------------------------------


@dataclass
class Expected:
    """Per series: count, sum (exact: the workloads' durations are dyadic) and bucket counts."""

    counts: Counter[Labels] = dataclasses.field(default_factory=Counter)
    sums: defaultdict[Labels, float] = dataclasses.field(default_factory=lambda: defaultdict(float))
    buckets: dict[Labels, Counter[int]] = dataclasses.field(default_factory=dict)

    def add(self, durations: Durations) -> None:
        """Add recorded durations, FOLDED's in the overflow series (``max_series`` is 3)."""
        for labels, values in durations.items():
            attributes = OVERFLOW_ATTRIBUTES if labels == FOLDED else attributes_of(labels)
            key = frozenset(attributes.items())
            self.counts[key] += len(values)
            self.sums[key] += sum(values)
            buckets = self.buckets.setdefault(key, Counter())
            buckets.update(bisect_left(DURATION_BUCKETS_SECONDS, value) for value in values)

    def add_points(self, data: MetricsData | None) -> None:
        """Add a (delta) collection's histogram points."""
        for labels, point in histogram_points(data).items():
            self.counts[labels] += point["count"]
            self.sums[labels] += point["sum"]
            buckets = self.buckets.setdefault(labels, Counter())
            buckets.update({i: n for i, n in enumerate(point["bucket_counts"]) if n})


def workload(batches: int) -> Iterator[Durations]:
    """``batches`` batches of nine durations: eight over three series, one folded."""
    for index in range(batches):
        durations = batch_of(8, index * 8)
        durations[FOLDED] = [0.5]
        yield durations


@contextlib.contextmanager
def collecting(collect: Callable[[], object]) -> Iterator[list[int]]:
    """Run ``collect`` in a loop on another thread until the block ends; yields its tally.

    The block starts once the thread has collected once, so the two really overlap.
    """
    tally = [0]
    started, stop = threading.Event(), threading.Event()
    # Switch threads far more often than the default 5 ms, so that recording and collecting
    # interleave within record_http_durations and flush, not only between them.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)

    def loop() -> None:
        while not stop.is_set():
            collect()
            tally[0] += 1
            started.set()

    thread = threading.Thread(target=loop, name="collector-scrapes")
    thread.start()
    try:
        assert started.wait(timeout=10)
        yield tally
    finally:
        stop.set()
        thread.join(timeout=30)
        sys.setswitchinterval(interval)
        assert not thread.is_alive()


BATCHES: Final = 2_000


@pytest.mark.parametrize("scraper", ["in-memory-reader", "prometheus-registry"])
def test_collections_on_another_thread_lose_nothing(scraper: str) -> None:
    """While a thread collects in a loop, every duration and count still lands exactly once."""
    reader = InMemoryMetricReader()
    registry = CollectorRegistry()
    if scraper == "in-memory-reader":
        provider = open_provider(reader)
    else:
        provider = build_meter_provider(registry, CollectorSettings.from_env(environ={}))

    def collect() -> None:
        if scraper == "in-memory-reader":
            reader.get_metrics_data()
        else:
            generate_latest(registry)

    recorder = new_recorder(provider, max_series=3)
    expected = Expected()

    with collecting(collect) as tally:
        overflowed = 0
        for durations in workload(BATCHES):
            overflowed += recorder.record_http_durations(durations)
            expected.add(durations)

    if scraper == "in-memory-reader":
        data = reader.get_metrics_data()
        found = {labels: (p["count"], p["sum"]) for labels, p in histogram_points(data).items()}
        counts = counts_of(data)
    else:
        scraped = recorded_samples(generate_latest(registry).decode())
        found = {
            labels: (
                scraped[("http_request_duration_seconds_count", labels)],
                scraped[("http_request_duration_seconds_sum", labels)],
            )
            for labels in expected.counts
        }
        counts = reports_total(registry)
    provider.shutdown()

    assert tally[0] >= 1
    assert overflowed == BATCHES
    assert found == {
        labels: (expected.counts[labels], expected.sums[labels]) for labels in expected.counts
    }
    assert counts == {("http", "accepted"): BATCHES * 8, ("http", "overflowed"): BATCHES}


@pytest.mark.parametrize("concurrent", [False, True], ids=["between-batches", "on-a-thread"])
def test_delta_collections_add_up_to_what_was_recorded(concurrent: bool) -> None:
    """With delta temporality, the points of all collections add up to every duration and
    count recorded, exactly once each."""
    reader = delta_reader()
    provider = open_provider(reader)
    recorder = new_recorder(provider, max_series=3)
    expected, collected = Expected(), Expected()
    counted: Counter[tuple[str, str]] = Counter()

    def collect() -> None:
        data = reader.get_metrics_data()
        collected.add_points(data)
        counted.update(counts_of(data))

    batches = BATCHES // 4
    with collecting(collect) if concurrent else contextlib.nullcontext([0]):
        for index, durations in enumerate(workload(batches)):
            recorder.record_http_durations(durations)
            expected.add(durations)
            if not concurrent and index % 7 == 3:
                collect()
    collect()
    provider.shutdown()

    assert collected == expected
    assert counted == {("http", "accepted"): batches * 8, ("http", "overflowed"): batches}
