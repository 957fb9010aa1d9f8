"""otelkit.bound against the SDK's own ``Histogram.record()``: same points, same fallbacks.

Every exactness test builds two providers the same way: a *twin* recorded through
``Histogram.record()`` only, and a *bound* one recorded once publicly per attribute set, then
through :func:`otelkit.bound.bind`'s series (mixed with more public records). Every field of
every collected data point must then be equal, the sum bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

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
from opentelemetry.sdk.metrics._internal import (
    _default_meter_configurator,
    _disable_meter_configurator,
)
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
from otelkit.bound import VERIFIED_SDK_VERSIONS, BoundSeries, bind
from otelkit.instruments import (
    DURATION_BUCKETS_SECONDS,
    HTTP_REQUEST_DURATION,
    METER_NAME,
    create_http_duration_histogram,
)

NAME: Final = HTTP_REQUEST_DURATION.name
CUMULATIVE: Final = AggregationTemporality.CUMULATIVE
DELTA: Final = AggregationTemporality.DELTA

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
    """Every field of a histogram point that bound recording may touch, sum/min/max exactly."""

    count: int
    sum: float
    bucket_counts: tuple[int, ...]
    explicit_bounds: tuple[float, ...]
    min: float
    max: float
    exemplars: int
    exact: tuple[str, str, str]
    """``repr`` of sum, min and max: tells -0.0 from 0.0 and an int from a float."""


PointKey = tuple[str, AggregationTemporality, Labels]


def snapshot(reader: InMemoryMetricReader) -> dict[PointKey, Point]:
    """Collect ``reader`` now: each histogram point by (metric name, temporality, attributes)."""
    data = reader.get_metrics_data()
    points: dict[PointKey, Point] = {}
    if data is None:
        return points
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
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
    twin: Setup, bound: Setup, operations: Sequence[Operation], *, filtered: bool = False
) -> None:
    """Run ``operations`` on both: public-only on ``twin``, bound where possible on ``bound``.

    A series is bound right after its first public record. Unless views ``filtered`` the
    attributes (then another set may already have created the aggregation), never before:
    ``bind`` must give ``None`` for an attribute set nothing was recorded for yet.
    """
    series: dict[int, BoundSeries] = {}

    def record_publicly(index: int, values: Sequence[float]) -> None:
        for value in values:
            bound.histogram.record(value, ATTRIBUTE_SETS[index])
        if index not in series:
            bound_now = bind(bound.histogram, ATTRIBUTE_SETS[index])
            if values:
                assert bound_now is not None
            elif not filtered:
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


def test_no_binding_for_a_reader_that_has_not_seen_the_set() -> None:
    """A reader added after the first record() holds no aggregation yet: no binding until then."""
    with open_setup(cumulative_readers()) as setup:
        setup.histogram.record(0.5, GET_COURSE)
        late = InMemoryMetricReader()
        setup.provider.add_metric_reader(late)
        assert bind(setup.histogram, GET_COURSE) is None
        setup.histogram.record(0.25, GET_COURSE)
        assert bind(setup.histogram, GET_COURSE) is not None


def test_no_binding_on_an_sdk_version_not_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDK version outside VERIFIED_SDK_VERSIONS gives no binding, even for a bindable set."""
    with open_setup(cumulative_readers()) as setup:
        setup.histogram.record(0.5, GET_COURSE)
        assert bind(setup.histogram, GET_COURSE) is not None
        monkeypatch.setattr(otelkit.bound, "SDK_VERSION", "1.45.0")
        assert bind(setup.histogram, GET_COURSE) is None


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
    """A value record() would drop (NaN, infinite, negative) is refused: False, nothing changed."""
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        twin.histogram.record(value, GET_COURSE)
        assert series.record(value) is False
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
"""An int (so a valid ``float`` argument) beyond float's range: record() raises OverflowError."""


def accepts(record: Callable[[], bool]) -> bool:
    """What a bound call answered (an OverflowError, as record() raises, would fail the test)."""
    return record()


def test_record_refuses_an_int_too_large_for_a_float() -> None:
    """An int beyond float's range is refused (record() raises on it) and changes nothing."""
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert_same(twin, bound)  # the collection resets the running sums to the int 0
        with pytest.raises(OverflowError):
            twin.histogram.record(HUGE_INT, GET_COURSE)
        assert accepts(lambda: series.record(HUGE_INT)) is False
        assert_same(twin, bound)


def test_record_many_with_an_int_too_large_for_a_float_adds_nothing() -> None:
    """record_many stays all or nothing when an int beyond float's range follows valid values."""
    with open_twins(cumulative_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert accepts(lambda: series.record_many([0.25, HUGE_INT])) is False
        assert_same(twin, bound)


# --- Disabled meter --------------------------------------------------------------------------


def test_disabled_meter_records_nothing_until_enabled_again() -> None:
    """A disabled meter: the series returns True and keeps nothing, as record(); then resumes."""
    with open_twins(cumulative_and_delta_readers) as (twin, bound):
        twin.histogram.record(0.5, GET_COURSE)
        series = bound_series(bound, GET_COURSE)
        assert_same(twin, bound)
        for setup in (twin, bound):
            setup.provider._set_meter_configurator(meter_configurator=_disable_meter_configurator)

        twin.histogram.record(0.25, GET_COURSE)
        bound.histogram.record(0.25, GET_COURSE)
        assert series.record(0.25) is True
        assert series.record_many([0.1, 3.0]) is True
        assert_same(twin, bound)
        cumulative, delta = bound.snapshots()
        assert [point.count for point in cumulative.values()] == [1]
        assert delta == {}

        for setup in (twin, bound):
            setup.provider._set_meter_configurator(meter_configurator=_default_meter_configurator)
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
