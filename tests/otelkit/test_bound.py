"""otelkit.bound against the SDK's own ``Histogram.record()``: same points, same fallbacks.

Every exactness test builds two providers the same way: a *twin* recorded through
``Histogram.record()`` only, and a *bound* one recorded once publicly per attribute set, then
through :func:`otelkit.bound.bind`'s series (mixed with more public records). Every field of
every collected data point must then be equal, the sum bit for bit.

The same tests run on every SDK release in ``VERIFIED_SDK_VERSIONS``; where a release lacks
what a test needs (reader registration, meter configuration, the cardinality limit) that test
is skipped there, and where ``record()`` itself behaves differently (non-finite values) the
test expects what the installed release does.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import opentelemetry.sdk.metrics._internal as sdk_metrics_internal
import opentelemetry.sdk.version
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.metrics import Histogram, NoOpMeterProvider
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.metrics.view import (
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    SumAggregation,
    View,
)

import otelkit.bound
from otelkit.bound import (
    VERIFIED_SDK_VERSIONS,
    BoundSeries,
    bind,
    fast_path_available,
    fast_path_description,
)
from otelkit.instruments import (
    DURATION_BUCKETS_SECONDS,
    HTTP_REQUEST_DURATION,
    METER_NAME,
    create_http_duration_histogram,
)

NAME: Final = HTTP_REQUEST_DURATION.name
CUMULATIVE: Final = AggregationTemporality.CUMULATIVE
DELTA: Final = AggregationTemporality.DELTA

SDK_VERSION: Final = opentelemetry.sdk.version.__version__
CI_SDK_VERSIONS: Final = frozenset({"1.40.0", "1.45.2"})
"""The oldest and newest SDK the project declares, on which CI runs the suite."""


def release(version: str) -> tuple[int, ...]:
    """The leading numeric parts of ``version``: ``"1.45.2"`` -> ``(1, 45, 2)``."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


RECORD_DROPS_NON_FINITE: Final = release(SDK_VERSION) >= (1, 44)
"""``record()`` drops NaN and infinities from SDK 1.44 on (and raises OverflowError on an int
too large for a float); up to 1.43 it aggregates NaN, +inf and such ints."""
CLEANS_ATTRIBUTES: Final = release(SDK_VERSION) >= (1, 45)
"""``record()`` cleans the attributes from SDK 1.45 on (e.g. drops an empty key)."""
HAS_READER_REGISTRATION: Final = hasattr(MeterProvider, "add_metric_reader")
HAS_CARDINALITY_LIMIT: Final = "aggregation_cardinality_limit" in inspect.signature(View).parameters
DISABLE_METER: Final[Any] = getattr(sdk_metrics_internal, "_disable_meter_configurator", None)
DEFAULT_METER: Final[Any] = getattr(sdk_metrics_internal, "_default_meter_configurator", None)
OVERFLOW_ATTRIBUTE: Final = ("otel.metric.overflow", "True")
"""How the SDK's overflow series is labelled, as :func:`snapshot` spells attributes."""

needs_reader_registration = pytest.mark.skipif(
    not HAS_READER_REGISTRATION, reason="add/remove_metric_reader arrived in SDK 1.43"
)
needs_meter_configuration = pytest.mark.skipif(
    DISABLE_METER is None, reason="meter configuration arrived in SDK 1.41"
)
needs_cardinality_limit = pytest.mark.skipif(
    not HAS_CARDINALITY_LIMIT, reason="the cardinality limit arrived in SDK 1.45.2"
)

GET_COURSE: Final = {"method": "GET", "route": "/api/courses/{course_id}", "status": "200"}
POST_COURSE: Final = {"method": "POST", "route": "/api/courses/{course_id}", "status": "201"}
HEALTH_DOWN: Final = {"method": "GET", "route": "/healthz", "status": "503"}
ATTRIBUTE_SETS: Final[tuple[dict[str, str], ...]] = (GET_COURSE, POST_COURSE, HEALTH_DOWN, {})
"""Series the property tests record into; two share a route, one has no attributes at all."""

EDGE_VALUES: Final[tuple[float, ...]] = (
    0.0,
    -0.0,
    5e-324,
    86_400.0,
    *DURATION_BUCKETS_SECONDS,
    *(math.nextafter(bound, math.inf) for bound in DURATION_BUCKETS_SECONDS),
    *(math.nextafter(bound, 0.0) for bound in DURATION_BUCKETS_SECONDS),
)
"""Zero (both signs), the smallest subnormal, a day, each bucket boundary and its neighbours."""

VALUES = st.one_of(
    st.sampled_from(EDGE_VALUES),
    st.floats(min_value=0.0, max_value=86_400.0),
    st.floats(min_value=0.0, max_value=1.0),
    st.integers(min_value=0, max_value=86_400),
)
INVALID_VALUES: Final = (
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(-0.5, id="negative"),
    pytest.param(-5e-324, id="smallest-negative"),
)

Labels = frozenset[tuple[str, str]]
ReaderFactory = Callable[[], list[InMemoryMetricReader]]
ViewFactory = Callable[[], list[View]]


@dataclass(frozen=True, slots=True)
class Point:
    """Every field of a histogram point that bound recording may touch, sum/min/max exactly.

    Sum, min and max are compared through ``exact``, which tells them apart at least as
    strictly and also equates NaN with NaN (SDKs up to 1.43 aggregate NaN).
    """

    count: int
    sum: float = field(compare=False)
    bucket_counts: tuple[int, ...]
    explicit_bounds: tuple[float, ...]
    min: float = field(compare=False)
    max: float = field(compare=False)
    exemplars: int
    exact: tuple[str, str, str]
    """``repr`` of sum, min and max: tells -0.0 from 0.0 and an int from a float."""


PointKey = tuple[str, AggregationTemporality, Labels]


def snapshot(reader: InMemoryMetricReader) -> dict[PointKey, Point]:
    """Collect ``reader`` now: each histogram point by (metric name, temporality, attributes).

    Only otelkit's meter counts: SDK 1.41 also reports each reader's own collection durations.
    """
    data = reader.get_metrics_data()
    points: dict[PointKey, Point] = {}
    if data is None:
        return points
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != METER_NAME:
                continue
            for metric in scope_metrics.metrics:
                temporality = metric.data.aggregation_temporality  # type: ignore[union-attr]
                for point in metric.data.data_points:
                    assert isinstance(point, HistogramDataPoint)
                    labels = frozenset((k, str(v)) for k, v in (point.attributes or {}).items())
                    key = (metric.name, temporality, labels)
                    assert key not in points, f"two points for {key}"
                    points[key] = Point(
                        count=point.count,
                        sum=point.sum,
                        bucket_counts=tuple(point.bucket_counts),
                        explicit_bounds=tuple(point.explicit_bounds),
                        min=point.min,
                        max=point.max,
                        exemplars=len(point.exemplars),
                        exact=(repr(point.sum), repr(point.min), repr(point.max)),
                    )
    return points


def cumulative_readers() -> list[InMemoryMetricReader]:
    return [InMemoryMetricReader()]


def delta_readers() -> list[InMemoryMetricReader]:
    return [InMemoryMetricReader(preferred_temporality={SdkHistogram: DELTA})]


def cumulative_and_delta_readers() -> list[InMemoryMetricReader]:
    return [*cumulative_readers(), *delta_readers()]


READER_SETUPS: Final = (
    pytest.param(cumulative_readers, id="cumulative"),
    pytest.param(delta_readers, id="delta"),
    pytest.param(cumulative_and_delta_readers, id="cumulative-and-delta"),
)


@dataclass(slots=True)
class Setup:
    """One provider, its readers and its ``http_request_duration`` histogram."""

    provider: MeterProvider
    readers: list[InMemoryMetricReader]
    histogram: Histogram

    def snapshots(self) -> list[dict[PointKey, Point]]:
        return [snapshot(reader) for reader in self.readers]


@contextlib.contextmanager
def open_setup(
    readers: Sequence[InMemoryMetricReader],
    *,
    views: Sequence[View] = (),
) -> Iterator[Setup]:
    """A provider over ``readers`` and ``views``, with an AlwaysOff exemplar filter."""
    provider = MeterProvider(
        metric_readers=list(readers),
        exemplar_filter=AlwaysOffExemplarFilter(),
        views=list(views),
        shutdown_on_exit=False,
    )
    try:
        histogram = create_http_duration_histogram(provider.get_meter(METER_NAME))
        yield Setup(provider, list(readers), histogram)
    finally:
        provider.shutdown()


@contextlib.contextmanager
def open_twins(readers: ReaderFactory, views: ViewFactory = list) -> Iterator[tuple[Setup, Setup]]:
    """Two providers built identically: (public-only twin, bound)."""
    with (
        open_setup(readers(), views=views()) as twin,
        open_setup(readers(), views=views()) as bound,
    ):
        yield twin, bound


def bound_series(setup: Setup, attributes: Mapping[str, str], seed: float = 0.5) -> BoundSeries:
    """Record ``seed`` publicly for ``attributes``, then bind (which must succeed)."""
    setup.histogram.record(seed, dict(attributes))
    series = bind(setup.histogram, attributes)
    assert series is not None
    return series


def assert_same(twin: Setup, bound: Setup) -> None:
    """Collect both providers reader by reader; the points must be identical."""
    for twin_points, bound_points in zip(twin.snapshots(), bound.snapshots(), strict=True):
        assert bound_points == twin_points


# --- Exactness against the public path (property tests) -------------------------------------


@dataclass(frozen=True, slots=True)
class RecordOne:
    series: int
    value: float


@dataclass(frozen=True, slots=True)
class RecordMany:
    series: int
    values: list[float]


@dataclass(frozen=True, slots=True)
class RecordPublic:
    series: int
    value: float


@dataclass(frozen=True, slots=True)
class Collect:
    pass


Operation = RecordOne | RecordMany | RecordPublic | Collect

SERIES_INDEX = st.integers(min_value=0, max_value=len(ATTRIBUTE_SETS) - 1)
OPERATIONS = st.lists(
    st.one_of(
        st.builds(RecordOne, SERIES_INDEX, VALUES),
        st.builds(RecordMany, SERIES_INDEX, st.lists(VALUES, max_size=8)),
        st.builds(RecordPublic, SERIES_INDEX, VALUES),
        st.just(Collect()),
    ),
    max_size=30,
)


def replay(
    twin: Setup,
    bound: Setup,
    operations: Sequence[Operation],
    *,
    filtered: bool = False,
    limited: bool = False,
) -> None:
    """Run ``operations`` on both: public-only on ``twin``, bound where possible on ``bound``.

    A series is bound right after its first public record. Unless views ``filtered`` the
    attributes (then another set may already have created the aggregation), never before:
    ``bind`` must give ``None`` for an attribute set nothing was recorded for yet. Under a
    cardinality limit (``limited``) a set ``record()`` folded into the overflow series is not
    bound either: it is recorded publicly, and bound once a record gives it its own series.
    """
    series: dict[int, BoundSeries] = {}

    def record_publicly(index: int, values: Sequence[float]) -> None:
        for value in values:
            bound.histogram.record(value, ATTRIBUTE_SETS[index])
        if index not in series:
            bound_now = bind(bound.histogram, ATTRIBUTE_SETS[index])
            if values and not limited:
                assert bound_now is not None
            elif not values and not filtered:
                assert bound_now is None
            if bound_now is not None:
                series[index] = bound_now

    for operation in operations:
        match operation:
            case Collect():
                assert_same(twin, bound)
                continue
            case RecordOne(index, value) | RecordPublic(index, value):
                values = [value]
            case RecordMany(index, values):
                pass
        for value in values:
            twin.histogram.record(value, ATTRIBUTE_SETS[index])
        if isinstance(operation, RecordPublic) or index not in series:
            record_publicly(index, values)
        elif isinstance(operation, RecordOne):
            assert series[index].record(values[0]) is True
        else:
            assert series[index].record_many(values) is True
    assert_same(twin, bound)


@pytest.mark.parametrize("readers", READER_SETUPS)
@given(operations=OPERATIONS)
@settings(max_examples=60, deadline=None)
def test_bound_recording_matches_record(
    readers: ReaderFactory, operations: list[Operation]
) -> None:
    """Bound record/record_many give every point field record() gives, collections interleaved."""
    with open_twins(readers) as (twin, bound):
        replay(twin, bound, operations)


def route_view() -> list[View]:
    return [View(instrument_name=NAME, attribute_keys={"route"})]


def no_attributes_view() -> list[View]:
    return [View(instrument_name=NAME, attribute_keys=set())]


def custom_buckets_view() -> list[View]:
    aggregation = ExplicitBucketHistogramAggregation(
        boundaries=(0.0, 1.0, 100.0), record_min_max=False
    )
    return [View(instrument_name=NAME, aggregation=aggregation)]


def no_buckets_view() -> list[View]:
    aggregation = ExplicitBucketHistogramAggregation(boundaries=())
    return [View(instrument_name=NAME, aggregation=aggregation)]


def two_streams_views() -> list[View]:
    return [
        View(instrument_name=NAME, name="by_route", attribute_keys={"route"}),
        View(instrument_name=NAME, name="all_labels"),
    ]


def dropped_and_kept_views() -> list[View]:
    return [
        View(instrument_name=NAME, aggregation=DropAggregation()),
        View(instrument_name=NAME, name="by_method", attribute_keys={"method"}),
    ]


VIEW_SETUPS: Final = (
    pytest.param(route_view, id="attribute-keys-route"),
    pytest.param(no_attributes_view, id="attribute-keys-empty"),
    pytest.param(custom_buckets_view, id="custom-buckets-without-min-max"),
    pytest.param(no_buckets_view, id="no-buckets"),
    pytest.param(two_streams_views, id="two-streams"),
    pytest.param(dropped_and_kept_views, id="dropped-and-kept-streams"),
)


@pytest.mark.parametrize("views", VIEW_SETUPS)
@given(operations=OPERATIONS)
@settings(max_examples=25, deadline=None)
def test_bound_recording_matches_record_under_views(
    views: ViewFactory, operations: list[Operation]
) -> None:
    """Under views that keep explicit buckets, bound recording still matches record() exactly."""
    with open_twins(cumulative_and_delta_readers, views) as (twin, bound):
        replay(twin, bound, operations, filtered=True)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([0.0, -0.0], id="zero-then-negative-zero"),
        pytest.param([-0.0, 0.0], id="negative-zero-then-zero"),
        pytest.param([0.25, 0, 0.0], id="lowest-int-then-equal-float"),
        pytest.param([86_400, 86_400.0], id="highest-int-then-equal-float"),
        pytest.param([86_400.0, 0, 86_400, 0.0], id="both-ends"),
    ],
)
def test_ties_keep_the_value_record_keeps(values: list[float]) -> None:
    """On equal values (0.0 and -0.0, 0 and 0.0) min and max keep the one record() keeps."""
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        many = bound_series(bound, GET_COURSE)
        twin.histogram.record(0.5, POST_COURSE)
        one_by_one = bound_series(bound, POST_COURSE)
        for value in values:
            twin.histogram.record(value, GET_COURSE)
            twin.histogram.record(value, POST_COURSE)
            assert one_by_one.record(value) is True
        assert many.record_many(values) is True
        assert_same(twin, bound)


def test_series_survive_delta_collections() -> None:
    """A series bound before a delta collection keeps recording into the next interval."""
    with open_twins(delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert_same(twin, bound)
        assert_same(twin, bound)  # an interval without records: no point on either side
        for value in (0.005, 7.5, 86_400.0):
            twin.histogram.record(value, GET_COURSE)
        assert series.record(0.005) is True
        assert series.record_many([7.5, 86_400.0]) is True
        points = bound.snapshots()[0]
        assert [point.count for point in points.values()] == [3]
        twin_points = twin.snapshots()[0]
        assert points == twin_points


# --- Cardinality limit (SDK 1.45.2 on) ------------------------------------------------------

LIMIT: Final = 2
"""A cardinality limit small enough that ATTRIBUTE_SETS overflow it."""


def limited_view() -> list[View]:
    """A view that sets the limit (a keyword SDKs before 1.45.2 do not take)."""
    kwargs: dict[str, Any] = {"aggregation_cardinality_limit": LIMIT}
    return [View(instrument_name=NAME, **kwargs)]


def limited_readers(temporality: AggregationTemporality) -> list[InMemoryMetricReader]:
    """A reader that sets the limit for histograms (a keyword SDKs before 1.45.2 do not take)."""
    kwargs: dict[str, Any] = {"cardinality_limits": {SdkHistogram: LIMIT}}
    return [InMemoryMetricReader(preferred_temporality={SdkHistogram: temporality}, **kwargs)]


LIMITED_SETUPS: Final = (
    pytest.param(cumulative_readers, limited_view, id="cumulative-view-limit"),
    pytest.param(delta_readers, limited_view, id="delta-view-limit"),
    pytest.param(cumulative_and_delta_readers, limited_view, id="both-view-limit"),
    pytest.param(lambda: limited_readers(CUMULATIVE), list, id="cumulative-reader-limit"),
    pytest.param(lambda: limited_readers(DELTA), list, id="delta-reader-limit"),
)


def overflow_points(points: Mapping[PointKey, Point]) -> list[Point]:
    """The points of the SDK's overflow series among ``points``."""
    return [point for (_, _, labels), point in points.items() if OVERFLOW_ATTRIBUTE in labels]


@needs_cardinality_limit
@pytest.mark.parametrize(("readers", "views"), LIMITED_SETUPS)
@given(operations=OPERATIONS)
@settings(max_examples=40, deadline=None)
def test_bound_recording_matches_record_past_the_cardinality_limit(
    readers: ReaderFactory, views: ViewFactory, operations: list[Operation]
) -> None:
    """With more attribute sets than the limit, bound recording still matches record()."""
    with open_twins(readers, views) as (twin, bound):
        replay(twin, bound, operations, limited=True)


@needs_cardinality_limit
@pytest.mark.parametrize(("readers", "views"), LIMITED_SETUPS)
def test_no_binding_for_a_set_folded_into_overflow(
    readers: ReaderFactory, views: ViewFactory
) -> None:
    """A set first recorded past the limit lands in the overflow series: bind gives None."""
    with open_twins(readers, views) as (twin, bound):
        for setup in (twin, bound):
            for attributes in (GET_COURSE, POST_COURSE, HEALTH_DOWN):
                setup.histogram.record(0.5, attributes)
        assert bind(bound.histogram, HEALTH_DOWN) is None
        get_series = bind(bound.histogram, GET_COURSE)
        post_series = bind(bound.histogram, POST_COURSE)
        assert get_series is not None
        assert post_series is not None
        assert get_series.record(0.25) is True
        assert post_series.record_many([1.5, 30.0]) is True
        bound.histogram.record(7.5, HEALTH_DOWN)
        for value, attributes in (
            (0.25, GET_COURSE),
            (1.5, POST_COURSE),
            (30.0, POST_COURSE),
            (7.5, HEALTH_DOWN),
        ):
            twin.histogram.record(value, attributes)
        for twin_points, points in zip(twin.snapshots(), bound.snapshots(), strict=True):
            assert points == twin_points
            (overflow,) = overflow_points(points)
            assert overflow.count == 2
            assert len(points) == LIMIT + 1


@needs_cardinality_limit
@pytest.mark.parametrize(
    "views", [pytest.param(limited_view, id="view-limit"), pytest.param(list, id="reader-limit")]
)
def test_delta_series_overflow_where_record_overflows(views: ViewFactory) -> None:
    """Under delta, each collection forgets the sets: a bound series that finds the limit
    reached by others in a later interval records into the overflow series, as record()."""

    def readers() -> list[InMemoryMetricReader]:
        if views is limited_view:
            return delta_readers()
        return limited_readers(DELTA)

    with open_twins(readers, views) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert_same(twin, bound)

        for setup in (twin, bound):
            setup.histogram.record(1.0, POST_COURSE)
            setup.histogram.record(2.0, HEALTH_DOWN)
        twin.histogram.record(0.25, GET_COURSE)
        twin.histogram.record(3.0, GET_COURSE)
        twin.histogram.record(4.0, GET_COURSE)
        assert series.record(0.25) is True
        assert series.record_many([3.0, 4.0]) is True
        (points,) = bound.snapshots()
        assert points == twin.snapshots()[0]
        (overflow,) = overflow_points(points)
        assert overflow.count == 3
        assert overflow.exact[0] == repr(0.25 + 3.0 + 4.0)

        twin.histogram.record(0.125, GET_COURSE)
        assert series.record(0.125) is True  # a new interval: GET has its own series again
        (points,) = bound.snapshots()
        assert points == twin.snapshots()[0]
        assert overflow_points(points) == []
        assert [point.count for point in points.values()] == [1]


@pytest.mark.parametrize("readers", READER_SETUPS)
def test_default_cardinality_limit(readers: ReaderFactory) -> None:
    """Past 2,000 sets (the SDK's default limit from 1.45.2) a new set is folded and not bound;
    an SDK without the limit gives it its own series, which binds."""
    others = [{"method": "GET", "route": f"/r/{k}", "status": "200"} for k in range(2_000)]
    with open_twins(readers) as (twin, bound):
        for setup in (twin, bound):
            for attributes in others:
                setup.histogram.record(0.5, attributes)
            setup.histogram.record(0.5, GET_COURSE)
        series = bind(bound.histogram, GET_COURSE)
        first = bind(bound.histogram, others[0])
        assert first is not None
        assert first.record(2.0) is True
        twin.histogram.record(2.0, others[0])
        if HAS_CARDINALITY_LIMIT:
            assert series is None
            bound.histogram.record(0.25, GET_COURSE)
        else:
            assert series is not None
            assert series.record(0.25) is True
        twin.histogram.record(0.25, GET_COURSE)
        for twin_points, bound_points in zip(twin.snapshots(), bound.snapshots(), strict=True):
            assert bound_points == twin_points
            assert len(overflow_points(bound_points)) == int(HAS_CARDINALITY_LIMIT)


# --- Fallbacks: bind gives None --------------------------------------------------------------


@pytest.mark.parametrize(
    "exemplar_filter",
    [
        pytest.param(None, id="default-trace-based"),
        pytest.param(TraceBasedExemplarFilter(), id="trace-based"),
        pytest.param(AlwaysOnExemplarFilter(), id="always-on"),
    ],
)
def test_no_binding_with_an_exemplar_filter_that_may_sample(
    exemplar_filter: ExemplarFilter | None,
) -> None:
    """Only an AlwaysOff exemplar filter is bound: any other could owe the reservoir a value."""
    provider = MeterProvider(
        metric_readers=[InMemoryMetricReader()],
        exemplar_filter=exemplar_filter,  # None: the SDK default (trace based)
        shutdown_on_exit=False,
    )
    try:
        histogram = create_http_duration_histogram(provider.get_meter(METER_NAME))
        histogram.record(0.5, GET_COURSE)
        assert bind(histogram, GET_COURSE) is None
    finally:
        provider.shutdown()


def test_no_binding_for_a_non_sdk_histogram() -> None:
    """A histogram from the API's no-op provider is not bound."""
    histogram = create_http_duration_histogram(NoOpMeterProvider().get_meter(METER_NAME))
    histogram.record(0.5, GET_COURSE)
    assert bind(histogram, GET_COURSE) is None


def exponential_view() -> tuple[list[InMemoryMetricReader], list[View]]:
    aggregation = ExponentialBucketHistogramAggregation()
    return cumulative_readers(), [View(instrument_name=NAME, aggregation=aggregation)]


def explicit_and_exponential_views() -> tuple[list[InMemoryMetricReader], list[View]]:
    aggregation = ExponentialBucketHistogramAggregation()
    views = [
        View(instrument_name=NAME, name="explicit"),
        View(instrument_name=NAME, name="exponential", aggregation=aggregation),
    ]
    return cumulative_readers(), views


def sum_view() -> tuple[list[InMemoryMetricReader], list[View]]:
    return cumulative_readers(), [View(instrument_name=NAME, aggregation=SumAggregation())]


def explicit_and_exponential_readers() -> tuple[list[InMemoryMetricReader], list[View]]:
    exponential = InMemoryMetricReader(
        preferred_aggregation={SdkHistogram: ExponentialBucketHistogramAggregation()}
    )
    return [*cumulative_readers(), exponential], []


@pytest.mark.parametrize(
    "configure",
    [
        pytest.param(exponential_view, id="exponential-view"),
        pytest.param(explicit_and_exponential_views, id="explicit-and-exponential-views"),
        pytest.param(sum_view, id="sum-view"),
        pytest.param(explicit_and_exponential_readers, id="reader-preferring-exponential"),
    ],
)
def test_no_binding_when_another_aggregation_is_chosen(
    configure: Callable[[], tuple[list[InMemoryMetricReader], list[View]]],
) -> None:
    """A view or reader choosing another aggregation for any stream gives no binding."""
    readers, views = configure()
    with open_setup(readers, views=views) as setup:
        setup.histogram.record(0.5, GET_COURSE)
        assert bind(setup.histogram, GET_COURSE) is None


@pytest.mark.parametrize(
    "recorded",
    [
        pytest.param(None, id="nothing-recorded"),
        pytest.param(POST_COURSE, id="another-set-recorded"),
        pytest.param({**GET_COURSE, "extra": "x"}, id="superset-recorded"),
    ],
)
def test_no_binding_for_an_attribute_set_never_recorded(recorded: dict[str, str] | None) -> None:
    """Before its first record() an attribute set has no aggregation, so it is not bound."""
    with open_setup(cumulative_and_delta_readers()) as setup:
        if recorded is not None:
            setup.histogram.record(0.5, recorded)
        assert bind(setup.histogram, GET_COURSE) is None


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param({**GET_COURSE, "": "empty key"}, id="empty-key"),
        pytest.param({**GET_COURSE, "status": 200}, id="int-value"),
    ],
)
def test_attributes_the_sdk_may_clean_are_not_bound_where_it_cleans(
    attributes: dict[str, Any],
) -> None:
    """From SDK 1.45 record() cleans attributes before keying the series (an empty key is
    dropped): only str keys and values, kept as they are, are bound there. Up to 1.44 the set
    is keyed as given and binds. Either way the points match record()'s."""
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        for setup in (twin, bound):
            setup.histogram.record(0.5, attributes)
        series = bind(bound.histogram, attributes)
        assert (series is None) is CLEANS_ATTRIBUTES
        twin.histogram.record(2.5, attributes)
        if series is None:
            bound.histogram.record(2.5, attributes)
        else:
            assert series.record(2.5) is True
        assert_same(twin, bound)


@needs_reader_registration
def test_no_binding_for_a_reader_that_has_not_seen_the_set() -> None:
    """A reader added after the first record() holds no aggregation yet: no binding until then."""
    with open_setup(cumulative_readers()) as setup:
        setup.histogram.record(0.5, GET_COURSE)
        late = InMemoryMetricReader()
        setup.provider.add_metric_reader(late)
        assert bind(setup.histogram, GET_COURSE) is None
        setup.histogram.record(0.25, GET_COURSE)
        assert bind(setup.histogram, GET_COURSE) is not None


@pytest.mark.parametrize("version", ["1.39.1", "1.45.3", "1.46.0", "2.0.0", "1.45.2.dev0"])
def test_no_binding_on_an_sdk_version_not_verified(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """An SDK version outside VERIFIED_SDK_VERSIONS gives no binding, even for a bindable set."""
    assert version not in VERIFIED_SDK_VERSIONS
    with open_setup(cumulative_readers()) as setup:
        setup.histogram.record(0.5, GET_COURSE)
        assert bind(setup.histogram, GET_COURSE) is not None
        monkeypatch.setattr(otelkit.bound, "SDK_VERSION", version)
        assert bind(setup.histogram, GET_COURSE) is None
        assert fast_path_available() is False
        description = fast_path_description()
        assert version in description
        assert "Histogram.record()" in description


def test_installed_sdk_version_binds_exactly_when_verified() -> None:
    """On the installed SDK, bind() binds a bindable set if and only if its version is verified,
    and the fast-path helpers say so, naming the version."""
    verified = SDK_VERSION in VERIFIED_SDK_VERSIONS
    with open_setup(cumulative_readers()) as setup:
        setup.histogram.record(0.5, GET_COURSE)
        assert (bind(setup.histogram, GET_COURSE) is not None) is verified
    assert fast_path_available() is verified
    assert SDK_VERSION in fast_path_description()
    assert ("not verified" in fast_path_description()) is not verified


def test_the_sdk_versions_ci_runs_are_verified() -> None:
    """The declared floor and the newest release CI installs both take the bound path."""
    assert CI_SDK_VERSIONS <= VERIFIED_SDK_VERSIONS


# --- Views -----------------------------------------------------------------------------------


def test_attribute_keys_view_records_into_the_filtered_series() -> None:
    """Under attribute_keys={"route"} bound series land in the route-only series, as record()."""
    with open_twins(cumulative_readers, route_view) as (twin, bound):
        get_series = bound_series(bound, GET_COURSE, seed=0.1)
        post_series = bound_series(bound, POST_COURSE, seed=2.5)
        health_series = bound_series(bound, HEALTH_DOWN, seed=10.0)
        for value, attributes in ((0.1, GET_COURSE), (2.5, POST_COURSE), (10.0, HEALTH_DOWN)):
            twin.histogram.record(value, attributes)
        assert get_series.record(0.05) is True
        assert post_series.record_many([0.75, 11.0]) is True
        assert health_series.record(0.0) is True
        for value, attributes in ((0.05, GET_COURSE), (0.75, POST_COURSE), (11.0, POST_COURSE)):
            twin.histogram.record(value, attributes)
        twin.histogram.record(0.0, HEALTH_DOWN)
        points = bound.snapshots()[0]
        assert points == twin.snapshots()[0]
        courses = (NAME, CUMULATIVE, frozenset({("route", "/api/courses/{course_id}")}))
        health = (NAME, CUMULATIVE, frozenset({("route", "/healthz")}))
        assert set(points) == {courses, health}
        assert points[courses].count == 5
        assert points[health].count == 2


def test_drop_view_binds_a_series_that_records_nothing() -> None:
    """Under a DropAggregation view the series accepts values and, like the SDK, keeps none."""
    views = [View(instrument_name=NAME, aggregation=DropAggregation())]
    with open_setup(cumulative_and_delta_readers(), views=views) as setup:
        setup.histogram.record(0.5, GET_COURSE)
        series = bind(setup.histogram, GET_COURSE)
        assert series is not None
        assert series.record(0.5) is True
        assert series.record_many([0.1, 2.0]) is True
        assert setup.snapshots() == [{}, {}]


# --- Readers added or removed ----------------------------------------------------------------


@needs_reader_registration
def test_reader_added_after_binding_invalidates_the_series() -> None:
    """After add_metric_reader the series adds nothing (False); a rebound one feeds both readers."""
    with open_twins(cumulative_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        twin_late = InMemoryMetricReader()
        bound_late = InMemoryMetricReader()
        twin.provider.add_metric_reader(twin_late)
        bound.provider.add_metric_reader(bound_late)
        twin.readers.append(twin_late)
        bound.readers.append(bound_late)

        assert series.record(0.25) is False
        assert series.record_many([0.25, 1.0]) is False
        assert_same(twin, bound)
        first, late = bound.snapshots()
        assert [point.count for point in first.values()] == [1]
        assert late == {}

        for setup in (twin, bound):
            setup.histogram.record(3.0, GET_COURSE)
        rebound = bind(bound.histogram, GET_COURSE)
        assert rebound is not None
        assert series.record(0.25) is False
        assert rebound.record(0.25) is True
        assert rebound.record_many([0.005, 20.0]) is True
        for value in (0.25, 0.005, 20.0):
            twin.histogram.record(value, GET_COURSE)
        assert_same(twin, bound)
        first, late = bound.snapshots()
        assert [point.count for point in first.values()] == [5]
        assert [point.count for point in late.values()] == [4]


@needs_reader_registration
def test_reader_removed_after_binding_invalidates_the_series() -> None:
    """After remove_metric_reader the series adds nothing (False) to the readers left."""
    readers = cumulative_and_delta_readers()
    with open_setup(readers) as setup:
        series = bound_series(setup, GET_COURSE)
        setup.provider.remove_metric_reader(readers[1])
        assert series.record(0.25) is False
        assert series.record_many([0.25]) is False
        points = snapshot(readers[0])
        assert [point.count for point in points.values()] == [1]


# --- Invalid values --------------------------------------------------------------------------


@pytest.mark.parametrize("value", INVALID_VALUES)
def test_record_refuses_an_invalid_value(value: float) -> None:
    """A value that is not finite and >= 0 is refused: False, nothing changed.

    The caller then uses record(), which drops it (SDK 1.44 on) or aggregates NaN and +inf
    (up to 1.43): either way both sides end up equal.
    """
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert series.record(value) is False
        assert_same(twin, bound)
        twin.histogram.record(value, GET_COURSE)
        bound.histogram.record(value, GET_COURSE)  # what a caller does on False
        assert_same(twin, bound)


@pytest.mark.parametrize("value", INVALID_VALUES)
@pytest.mark.parametrize(
    "position",
    [pytest.param(0, id="first"), pytest.param(1, id="middle"), pytest.param(2, id="last")],
)
def test_record_many_is_all_or_nothing(value: float, position: int) -> None:
    """One invalid value anywhere in record_many makes it add nothing at all and return False."""
    values = [0.1, 2.5]
    values.insert(position, value)
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert series.record_many(values) is False
        assert_same(twin, bound)


def test_record_many_of_nothing_changes_nothing() -> None:
    """record_many([]) returns True and leaves no trace, not even an empty delta point."""
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert_same(twin, bound)
        assert series.record_many([]) is True
        assert series.record_many(()) is True
        cumulative, delta = bound.snapshots()
        assert [point.count for point in cumulative.values()] == [1]
        assert delta == {}


HUGE_INT: Final = 10**400
"""An int (so a valid ``float`` argument) beyond float's range: record() raises OverflowError
on it from SDK 1.44 on (``math.isfinite``); up to 1.43 it aggregates the int as it is."""


def accepts(record: Callable[[], bool]) -> bool:
    """What a bound call answered (an OverflowError, as record() raises, would fail the test)."""
    return record()


def test_record_refuses_an_int_too_large_for_a_float() -> None:
    """An int beyond float's range is refused and changes nothing; record() then raises on it
    (SDK 1.44 on), or takes it and the next cumulative collection raises (up to 1.43)."""
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert_same(twin, bound)  # the collection resets the running sums to the int 0
        assert accepts(lambda: series.record(HUGE_INT)) is False
        assert_same(twin, bound)
        if RECORD_DROPS_NON_FINITE:
            with pytest.raises(OverflowError):
                twin.histogram.record(HUGE_INT, GET_COURSE)
            assert_same(twin, bound)
        else:
            for setup in (twin, bound):  # bound: what a caller does on False
                setup.histogram.record(HUGE_INT, GET_COURSE)
                with pytest.raises(OverflowError):
                    setup.snapshots()


def test_record_many_with_an_int_too_large_for_a_float_adds_nothing() -> None:
    """record_many stays all or nothing when an int beyond float's range follows valid values."""
    with open_twins(cumulative_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert accepts(lambda: series.record_many([0.25, HUGE_INT])) is False
        assert_same(twin, bound)


# --- Disabled meter --------------------------------------------------------------------------


@needs_meter_configuration
def test_disabled_meter_records_nothing_until_enabled_again() -> None:
    """A disabled meter: the series returns True and keeps nothing, as record(); then resumes."""
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert_same(twin, bound)
        for setup in (twin, bound):
            setup.provider._set_meter_configurator(meter_configurator=DISABLE_METER)

        twin.histogram.record(0.25, GET_COURSE)
        bound.histogram.record(0.25, GET_COURSE)
        assert series.record(0.25) is True
        assert series.record_many([0.1, 3.0]) is True
        assert_same(twin, bound)
        cumulative, delta = bound.snapshots()
        assert [point.count for point in cumulative.values()] == [1]
        assert delta == {}

        for setup in (twin, bound):
            setup.provider._set_meter_configurator(meter_configurator=DEFAULT_METER)
        for value in (0.25, 0.1, 3.0):
            twin.histogram.record(value, GET_COURSE)
        assert series.record(0.25) is True
        assert series.record_many([0.1, 3.0]) is True
        assert_same(twin, bound)


# --- Threads ---------------------------------------------------------------------------------


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Let the interpreter switch threads every few microseconds, so races show up quickly."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_concurrent_recording_and_delta_collection_lose_nothing() -> None:
    """Bound and public records racing delta collections add up to exactly what was recorded."""
    chunk = [k / 4 for k in range(400)]  # quarter seconds up to 100: every partial sum is exact
    rounds = 10
    batch = chunk * 50  # long enough for collections to run while one record_many goes on
    with open_twins(delta_readers) as (twin, bound):
        series = bound_series(bound, GET_COURSE, seed=0.0)
        twin.histogram.record(0.0, GET_COURSE)
        collected: list[dict[PointKey, Point]] = []
        done = threading.Event()

        def many() -> None:
            for _ in range(2):
                assert series.record_many(batch) is True

        def one_by_one() -> None:
            for _ in range(rounds):
                for value in chunk:
                    assert series.record(value) is True

        def public() -> None:
            for _ in range(rounds):
                for value in chunk:
                    bound.histogram.record(value, GET_COURSE)

        def collect() -> None:
            while not done.is_set():
                collected.append(bound.snapshots()[0])

        collector = threading.Thread(target=collect)
        workers = [threading.Thread(target=work) for work in (many, one_by_one, public)]
        collector.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.set()
        collector.join()
        collected.append(bound.snapshots()[0])

        for value in [*batch, *batch, *(chunk * 2 * rounds)]:
            twin.histogram.record(value, GET_COURSE)
        (expected,) = twin.snapshots()[0].values()
        points = [point for snap in collected for point in snap.values()]
        assert len(points) > 1, "no collection ran while the workers recorded"
        assert sum(point.count for point in points) == expected.count
        assert sum(point.sum for point in points) == expected.sum
        buckets = [sum(column) for column in zip(*(p.bucket_counts for p in points), strict=True)]
        assert buckets == list(expected.bucket_counts)
        assert min(point.min for point in points) == expected.min
        assert max(point.max for point in points) == expected.max


# --- SDK version pin -------------------------------------------------------------------------


def test_installed_sdk_version_is_verified() -> None:
    """The installed opentelemetry-sdk is one bound.py's internals were verified against."""
    installed = opentelemetry.sdk.version.__version__
    assert installed in VERIFIED_SDK_VERSIONS, (
        f"opentelemetry-sdk {installed} is not in otelkit.bound.VERIFIED_SDK_VERSIONS "
        f"{sorted(VERIFIED_SDK_VERSIONS)}: until it is, bind() returns None and every record "
        "takes the slow public path. Re-verify each internal listed in otelkit/bound.py's module "
        "docstring against the new SDK's source (instrument, measurement_consumer, "
        "metric_reader_storage, _view_instrument_match, aggregation), add the version, and run "
        "tests/otelkit/test_bound.py."
    )
