"""The fast renderer writes exactly what prometheus_client's encoders write, scrape after scrape.

Every comparison says which families the renderer handed to prometheus_client's encoders (its
fallback), so none of them can pass by comparing prometheus_client with itself: the property
tests build families the fast path renders (plain names, no exemplars, an escaping scheme it
takes) and assert that none was handed over; names outside the plain set are checked to go
to the fallback, and escaping schemes the fast path does not take to be delegated whole.
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    Summary,
)
from prometheus_client import exposition as text_format
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Timestamp
from prometheus_client.utils import floatToGoString

from otelkit.reports import HttpReport
from otelkit_collector import render
from otelkit_collector.app import build_meter_provider
from otelkit_collector.cardinality import CardinalityGuard
from otelkit_collector.recorder import Recorder
from otelkit_collector.render import FastRenderer
from otelkit_collector.settings import CollectorSettings
from otelkit_collector.state import ServiceState
from tests.conftest import FakeClock

FAST_ESCAPINGS = (openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8)
"""The escaping schemes the fast path renders (render's module docstring)."""
OTHER_ESCAPINGS = (openmetrics.DOTS, openmetrics.VALUES)
"""The schemes it hands to prometheus_client whole."""
VERSIONS = ("1.0.0", "2.0.0")
PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
"""Metric and sample names the fast path renders (render's module docstring)."""
OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0"

HOSTILE = (
    'quote " here',
    "back\\slash",
    "new\nline",
    "tab\there",
    "",
    "ünïcødé ✓ 日本 𝄞",
    "a,b=c}",
)
ACCEPTED_HOSTILE = ('quote " here', "back\\slash", "ünïcødé ✓ 日本 𝄞", "a,b=c}", "/a/{id}")
"""What the collector accepts as label values (no control characters, not empty)."""


class Timestamped(Collector):
    """A custom collector with timestamps and families the client libraries rarely emit."""

    def collect(self) -> list[GaugeMetricFamily | GaugeHistogramMetricFamily]:
        gauge = GaugeMetricFamily("with_timestamp", "Help with \\ and\nnewline", labels=["k"])
        gauge.add_metric(["v"], 1.5, timestamp=1_700_000_000.25)
        gauge_histogram = GaugeHistogramMetricFamily("queue_wait", "Gauge histogram")
        gauge_histogram.add_metric([], [("1.0", 3), ("+Inf", 5)], gsum_value=7.0)
        return [gauge, gauge_histogram]


def ids(index: int) -> dict[str, str]:
    """Trace ids for the ``index``-th route's reports: none, a trace, or a trace and a span."""
    trace = {"trace_id": f"{index + 1:032x}"}
    return [{}, trace, {**trace, "span_id": f"{index + 1:016x}"}][index % 3]


def recorded_registry(*, traced: bool) -> tuple[CollectorRegistry, Recorder]:
    """The collector's own registry after reports with hostile label values (with trace ids on
    most of them, when ``traced``), and its recorder."""
    registry = CollectorRegistry()
    recorder = Recorder(
        build_meter_provider(registry, CollectorSettings.from_env(environ={})),
        state=ServiceState(health_ttl_seconds=90.0, max_services=100, clock=FakeClock()),
        guard=CardinalityGuard(max_services=100, max_routes_per_service=100, max_series=1_000),
    )
    reports = [
        HttpReport(
            method="GET",
            route=route,
            status=status,
            duration=duration,
            service=service,
            **(ids(index) if traced else {}),
        )
        for index, route in enumerate(ACCEPTED_HOSTILE)
        for status, duration, service in ((200, 0.004, None), (503, 2.0, 'svc \\ "x"'))
    ]
    recorder.record_http_reports(reports)
    for service in ("a", 'b"q', "c\\d"):
        recorder.record_health(service, "healthy")
        recorder.record_users(service, 3)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry, recorder


def collector_registry() -> CollectorRegistry:
    """The collector's own registry after reports with hostile label values."""
    return recorded_registry(traced=False)[0]


def traced_registry() -> Collector:
    """The collector's registry after reports with trace ids, as OpenMetrics /metrics reads it:
    the HTTP histogram's buckets carrying exemplars."""
    registry, recorder = recorded_registry(traced=True)
    return recorder.exemplars.collector(registry)


def library_registry() -> CollectorRegistry:
    """Every prometheus_client metric type, exemplars, odd names and hostile values (on a family
    with exemplars and on one without)."""
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs done", ["queue"], registry=registry)
    for value in HOSTILE:
        counter.labels(value).inc(2)
    counter.labels("x").inc(1, exemplar={"trace_id": "abc"})
    hostile = Gauge("hostile", "No exemplar: the fast path's", ["value"], registry=registry)
    for value in HOSTILE:
        hostile.labels(value).set(1)
    Gauge("temperature_celsius", "Now", registry=registry).set(-3.25)
    Gauge("big", "Exponent formatting", registry=registry).set(1.5e20)
    Gauge("not_a_number", "NaN", registry=registry).set(float("nan"))
    Gauge("my.dotted:metric", "A UTF-8 name", ["label.with.dots"], registry=registry).labels(
        "v"
    ).set(1)
    Summary("latency_seconds", "Summary", registry=registry).observe(0.2)
    histogram = Histogram("size_bytes", "Histogram", ["kind"], registry=registry)
    histogram.labels("a").observe(12)
    histogram.labels("b").observe(0.3, exemplar={"trace_id": "def"})
    Info("build", "Build info", registry=registry).info({"version": "1.2", "commit": 'a"b'})
    Enum("phase", "Stateset", states=["up", "down"], registry=registry).state("down")
    registry.register(Timestamped())
    return registry


class Frozen(Collector):
    """One collection of a registry, so both encoders see the same values (process metrics
    move between two collections)."""

    def __init__(self, registry: Collector) -> None:
        self.families = list(registry.collect())

    def collect(self) -> list[Metric]:
        return self.families


class Families(Collector):
    """A custom collector returning fixed families."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


def registry_of(families: Sequence[Metric]) -> CollectorRegistry:
    """A fresh registry holding ``families`` through a custom collector."""
    registry = CollectorRegistry()
    registry.register(Families(families))
    return registry


Handed = list[tuple[Collector, tuple[Any, ...]]]


@contextlib.contextmanager
def watched_fallback() -> Iterator[Handed]:
    """What the renderer hands to prometheus_client's encoders while the block runs: one
    (collector, further arguments) per call, the collector a single family or a whole
    registry."""
    handed: Handed = []
    text_latest, openmetrics_latest = text_format.generate_latest, render._openmetrics_latest

    def text_spy(registry: Collector, *args: Any) -> bytes:
        handed.append((registry, args))
        return text_latest(registry, *args)

    def openmetrics_spy(registry: Collector, *args: Any) -> bytes:
        handed.append((registry, args))
        return openmetrics_latest(registry, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_format, "generate_latest", text_spy)
        patch.setattr(render, "_openmetrics_latest", openmetrics_spy)
        yield handed


def handed_names(handed: Handed) -> set[str]:
    """The names of the families handed to prometheus_client's encoders."""
    return {family.name for collector, _ in handed for family in collector.collect()}


def assert_fast_path_renders(families: Sequence[Metric], escaping: str) -> None:
    """The conditions of render's module docstring under which a family is rendered without
    prometheus_client's encoders."""
    assert escaping in FAST_ESCAPINGS
    for family in families:
        assert PLAIN_NAME.fullmatch(family.name), family.name
        for sample in family.samples:
            assert PLAIN_NAME.fullmatch(sample.name), sample.name
            assert sample.exemplar is None
            assert sample.native_histogram is None


Outcome = bytes | tuple[type[BaseException], tuple[Any, ...]]


def outcome(encode: Callable[[], bytes]) -> Outcome:
    """What ``encode`` returns, or the type and arguments of what it raises."""
    try:
        return encode()
    except Exception as exception:
        return type(exception), exception.args


# -- registries: the collector's own and every prometheus_client metric type ---------------------


REGISTRIES = {
    "collector": collector_registry,
    "collector-with-exemplars": traced_registry,
    "library": library_registry,
}
HANDED_OVER = {
    # (registry, format): the families prometheus_client renders, and why
    ("collector", "text"): set(),
    ("collector", "openmetrics"): set(),
    # exemplars, which the text format has none of
    ("collector-with-exemplars", "text"): {"http_request_duration_seconds"},
    ("collector-with-exemplars", "openmetrics"): set(),
    # exemplars (text) and a name outside the plain set (both)
    ("library", "text"): {"jobs", "size_bytes", "my.dotted:metric"},
    ("library", "openmetrics"): {"my.dotted:metric"},
}


@pytest.mark.parametrize("escaping", FAST_ESCAPINGS)
@pytest.mark.parametrize("name", list(REGISTRIES))
def test_text_is_byte_for_byte_prometheus_client(name: str, escaping: str) -> None:
    """Only the families the module docstring names are handed over, and the whole body (fast
    families spliced with handed-over ones) is prometheus_client's."""
    registry = REGISTRIES[name]()
    renderer = FastRenderer()
    for _ in range(3):  # the first render fills the caches, later ones use them
        frozen = Frozen(registry)
        expected = text_format.generate_latest(frozen, escaping)
        with watched_fallback() as handed:
            assert renderer.text(frozen, escaping) == expected
        assert handed_names(handed) == HANDED_OVER[name, "text"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("escaping", FAST_ESCAPINGS)
@pytest.mark.parametrize("name", list(REGISTRIES))
def test_openmetrics_is_byte_for_byte_prometheus_client(
    name: str, escaping: str, version: str
) -> None:
    registry = REGISTRIES[name]()
    renderer = FastRenderer()
    for _ in range(3):
        frozen = Frozen(registry)
        expected = openmetrics.generate_latest(frozen, escaping, version)
        with watched_fallback() as handed:
            assert renderer.openmetrics(frozen, escaping, version) == expected
        assert handed_names(handed) == HANDED_OVER[name, "openmetrics"]


@pytest.mark.parametrize("escaping", OTHER_ESCAPINGS)
def test_other_escapings_are_handed_to_prometheus_client_whole(escaping: str) -> None:
    """No family of a registry is rendered by the fast path under dots or values: the registry
    goes to prometheus_client's encoder as it is, with the scheme and version asked for."""
    registry = library_registry()
    renderer = FastRenderer()

    with watched_fallback() as handed:
        text = renderer.text(registry, escaping)
        body = renderer.openmetrics(registry, escaping, "2.0.0")

    assert handed == [(registry, (escaping,)), (registry, (escaping, "2.0.0"))]
    assert text.startswith(b"# HELP ")
    assert body.endswith(b"# EOF\n")


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "text/plain",
        "text/plain; version=0.0.4",
        "text/plain;version=1.0.0;escaping=allow-utf-8",
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0",
        "application/openmetrics-text;version=1.0.0;escaping=underscores,text/plain;q=0.5",
        "application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
        "encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5",
    ],
)
def test_negotiation_matches_prometheus_client(accept: str | None) -> None:
    registry = library_registry()
    expected_encoder, expected_type = text_format.choose_encoder(accept or "")

    encoder, content_type = FastRenderer().choose(accept)

    assert content_type == expected_type
    assert encoder(registry) == expected_encoder(registry)


# -- any family the fast path renders ------------------------------------------------------------

# Characters every escaping or sorting rule has to get right, drawn often; then any character
# at all but lone surrogates, which no encoder can write as UTF-8 (see
# test_lone_surrogate_fails_as_with_prometheus_client).
HOSTILE_CHARACTERS = '\n"\\\t\r\x00\x7f\x85\u2028\ufeff{},= é日𝄞'
any_character = st.one_of(
    st.sampled_from(HOSTILE_CHARACTERS), st.characters(exclude_categories=("Cs",))
)


def texts(min_size: int = 0, max_size: int = 6) -> st.SearchStrategy[str]:
    """Strings of ``any_character``. (``st.text`` would merge the alphabet into one range of
    code points, drawing the hostile characters almost never.)"""
    return st.lists(any_character, min_size=min_size, max_size=max_size).map("".join)


label_values = st.one_of(st.sampled_from(HOSTILE), texts())
help_texts = texts()

SPECIAL_VALUES = (
    math.inf,
    -math.inf,
    math.nan,
    -0.0,
    0.0,
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,  # the smallest normal
    sys.float_info.max,
    -sys.float_info.max,
    0.1,
    1e21,
    1.5e20,
    123456789.0,  # where floatToGoString switches to an exponent
    float(2**53 + 2),
    float(2**64),
    -(2**63),
)
sample_values = st.one_of(
    st.sampled_from(SPECIAL_VALUES),
    st.floats(),  # nan, ±inf, subnormals, -0.0 included
    st.integers(min_value=-(2**70), max_value=2**70),  # ints, as counters may hold them
    st.integers(min_value=2**53, max_value=2**1000).map(float),  # big ints as floats
)
timestamps = st.one_of(
    st.none(),
    st.floats(min_value=-1e10, max_value=1e10),
    st.builds(Timestamp, st.integers(0, 2**33), st.integers(0, 999_999_999)),
)

# Names that sort next to le (where it is spliced in), reserved ones, one-letter ones.
SPECIAL_LABEL_NAMES = ("le", "l", "la", "lf", "le_", "LE", "_", "__name__", "a", "z", "quantile")
plain_label_names = st.one_of(
    st.sampled_from(SPECIAL_LABEL_NAMES),
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True),
)
plain_metric_names = st.one_of(
    st.sampled_from(("a", "_", "le", "x_total", "process_cpu_seconds", "Z9")),
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True),
).filter(lambda name: name != "_total")  # a counter named so would be left with no name
ODD_NAMES = ("my.dotted:metric", "a:b", "9lives", "é", "a-b", "a b", 'q"uote', "new\nline", "")


def odd(names: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return names.filter(lambda name: PLAIN_NAME.fullmatch(name) is None)


odd_metric_names = odd(st.one_of(st.sampled_from(ODD_NAMES[:-1]), texts(min_size=1, max_size=8)))
odd_label_names = odd(st.one_of(st.sampled_from(ODD_NAMES), texts()))

KINDS = (
    "counter",
    "gauge",
    "unknown",
    "summary",
    "histogram",
    "gaugehistogram",
    "info",
    "stateset",
)
UNITS = ("", "seconds", "bytes")


@st.composite
def families(
    draw: st.DrawFn,
    names: st.SearchStrategy[str] = plain_metric_names,
    label_names: st.SearchStrategy[str] = plain_label_names,
) -> Metric:
    """One family of any type, built with prometheus_client's metrics_core classes: up to two
    series of up to three labels, any label values, help text and sample values."""
    kind = draw(st.sampled_from(KINDS))
    name, documentation = draw(names), draw(help_texts)
    unit = draw(st.sampled_from(UNITS))
    labelnames = draw(st.lists(label_names, max_size=3, unique=True))
    size = len(labelnames)
    series = draw(st.lists(st.lists(label_values, min_size=size, max_size=size), max_size=2))

    def value() -> Any:
        return draw(sample_values)

    def timestamp() -> Any:
        return draw(timestamps)

    def buckets(bounds: list[str]) -> list[tuple[str, Any]]:
        return [(bound, value()) for bound in bounds] + [("+Inf", value())]

    family: Metric
    if kind == "counter":
        family = CounterMetricFamily(name, documentation, labels=labelnames, unit=unit)
        for values in series:
            created = draw(st.none() | sample_values)
            family.add_metric(values, value(), created=created, timestamp=timestamp())
    elif kind in ("gauge", "unknown"):
        cls = GaugeMetricFamily if kind == "gauge" else UnknownMetricFamily
        family = cls(name, documentation, labels=labelnames, unit=unit)
        for values in series:
            family.add_metric(values, value(), timestamp=timestamp())
    elif kind == "summary":
        family = SummaryMetricFamily(name, documentation, labels=labelnames, unit=unit)
        for values in series:
            family.add_metric(values, value(), value(), timestamp=timestamp())
    elif kind == "histogram":
        family = HistogramMetricFamily(name, documentation, labels=labelnames, unit=unit)
        finite = st.floats(allow_nan=False, allow_infinity=False)
        for values in series:
            # le as prometheus_client writes it (this class parses the first one: negative
            # buckets mean no _count and _sum)
            bounds = [
                floatToGoString(bound) for bound in sorted(draw(st.lists(finite, max_size=3)))
            ]
            family.add_metric(values, buckets(bounds), value(), timestamp())
    elif kind == "gaugehistogram":
        family = GaugeHistogramMetricFamily(name, documentation, labels=labelnames, unit=unit)
        for values in series:  # le any label value: this class does not parse it
            bounds = draw(st.lists(label_values, max_size=3))
            family.add_metric(values, buckets(bounds), value(), timestamp())
    elif kind == "info":
        family = InfoMetricFamily(name, documentation, labels=labelnames)
        info = st.dictionaries(label_names, label_values, max_size=2)
        for values in series:
            family.add_metric(values, draw(info), timestamp=timestamp())
    else:
        family = StateSetMetricFamily(name, documentation, labels=labelnames)
        states = st.dictionaries(label_values, st.booleans(), min_size=1, max_size=3)
        for values in series:
            family.add_metric(values, draw(states), timestamp=timestamp())
    return family


def assert_rendered_as_prometheus_client(
    registry: CollectorRegistry, escaping: str, version: str
) -> Handed:
    """Both formats, twice with one renderer (the second render from its caches); what was
    handed to prometheus_client's encoders."""
    text = text_format.generate_latest(registry, escaping)
    body = openmetrics.generate_latest(registry, escaping, version)
    renderer = FastRenderer()
    with watched_fallback() as handed:
        for _ in range(2):
            assert renderer.text(registry, escaping) == text
            assert renderer.openmetrics(registry, escaping, version) == body
    return handed


@given(
    rendered=st.lists(families(), min_size=1, max_size=3),
    escaping=st.sampled_from(FAST_ESCAPINGS),
    version=st.sampled_from(VERSIONS),
)
@settings(max_examples=150, deadline=None)
def test_fast_path_renders_any_family_as_prometheus_client_does(
    rendered: list[Metric], escaping: str, version: str
) -> None:
    """Any type, label values (newline, quote, backslash, tab, empty, non-BMP...), help text,
    sample values (±inf, nan, subnormal, huge, ints, -0.0), timestamps, and plain metric and
    label names (le spliced wherever it sorts among them): rendered by the fast path itself,
    byte for byte prometheus_client's."""
    assert_fast_path_renders(rendered, escaping)

    handed = assert_rendered_as_prometheus_client(registry_of(rendered), escaping, version)

    assert handed == []


@given(
    before=families(),
    handed_over=families(names=odd_metric_names),
    odd_labels=families(label_names=odd_label_names),
    escaping=st.sampled_from(FAST_ESCAPINGS),
    version=st.sampled_from(VERSIONS),
)
@settings(max_examples=60, deadline=None)
def test_names_outside_the_plain_set_render_as_prometheus_client_does(
    before: Metric, handed_over: Metric, odd_labels: Metric, escaping: str, version: str
) -> None:
    """A metric name outside ``[a-zA-Z_][a-zA-Z0-9_]*`` sends its family, and only it, to
    prometheus_client's encoder, spliced between fast families; label names outside it stay
    on the fast path (escaped by ``escape_label_name``), byte for byte the same too."""
    assert_fast_path_renders([before, odd_labels], escaping)
    assert PLAIN_NAME.fullmatch(handed_over.name) is None

    registry = registry_of([before, handed_over, odd_labels])
    handed = assert_rendered_as_prometheus_client(registry, escaping, version)

    handed_families = [family for collector, _ in handed for family in collector.collect()]
    assert len(handed_families) == 4  # each format, twice
    assert all(family is handed_over for family in handed_families)


# -- values that cannot be rendered --------------------------------------------------------------

UNRENDERABLE: dict[str, Any] = {
    "None": None,
    "empty-string": "",
    "word": "x",
    "list": [1.0],
    "dict": {"value": 1.0},
}


def broken_family(where: str, value: Any) -> Metric:
    """A family with ``value`` in one sample, after samples that render."""
    if where == "gauge":
        gauge = GaugeMetricFamily("broken", "h", labels=["k"])
        gauge.add_metric(["v"], 1.0)
        gauge.add_metric(["w"], value)
        return gauge
    if where == "histogram-bucket":
        histogram = HistogramMetricFamily("broken", "h", labels=["k"])
        histogram.add_metric(["v"], [("0.5", 1.0), ("1.0", value), ("+Inf", 2.0)], 3.0)
        return histogram
    # _created: rendered after the family in the text format, with the gauges it defers
    family = CounterMetricFamily("broken", "h", labels=["k"])
    family.add_metric(["v"], 1.0)
    family.add_sample("broken_created", {"k": "v"}, value)  # add_metric drops a None
    return family


@pytest.mark.parametrize("value", list(UNRENDERABLE.values()), ids=list(UNRENDERABLE))
@pytest.mark.parametrize("where", ["gauge", "histogram-bucket", "counter-created"])
@pytest.mark.parametrize("escaping", FAST_ESCAPINGS)
@pytest.mark.parametrize("fmt", ["text", "openmetrics"])
def test_unrenderable_value_fails_as_with_prometheus_client(
    fmt: str, escaping: str, where: str, value: Any
) -> None:
    """The same exception type and arguments, the broken family last so that the log names
    it (or, for None in OpenMetrics, the same bytes: that encoder writes no value)."""
    broken = broken_family(where, value)
    good = GaugeMetricFamily("good", "h", value=1.0)
    assert_fast_path_renders([good, broken, good], escaping)
    registry = registry_of([good, broken, good])
    renderer = FastRenderer()
    if fmt == "text":
        expected = outcome(lambda: text_format.generate_latest(registry, escaping))
        with watched_fallback() as handed:
            rendered = outcome(lambda: renderer.text(registry, escaping))
    else:
        expected = outcome(lambda: openmetrics.generate_latest(registry, escaping))
        with watched_fallback() as handed:
            rendered = outcome(lambda: renderer.openmetrics(registry, escaping))

    assert rendered == expected
    assert handed == []
    if fmt == "text" or value is not None:
        assert isinstance(expected, tuple)
        assert expected[1][-1] is broken
        assert isinstance(rendered, tuple)
        assert rendered[1][-1] is broken


@pytest.mark.parametrize("escaping", FAST_ESCAPINGS)
@pytest.mark.parametrize("fmt", ["text", "openmetrics"])
def test_lone_surrogate_fails_as_with_prometheus_client(fmt: str, escaping: str) -> None:
    """prometheus_client cannot write a lone surrogate as UTF-8: both raise the same
    UnicodeEncodeError (which carries the whole rendered text, so that is the same too)."""
    family = GaugeMetricFamily("g", "h", labels=["k"])
    family.add_metric(["before \ud800 after"], 1.0)
    registry = registry_of([family])
    assert_fast_path_renders([family], escaping)
    renderer = FastRenderer()
    if fmt == "text":
        expected = outcome(lambda: text_format.generate_latest(registry, escaping))
        rendered = outcome(lambda: renderer.text(registry, escaping))
    else:
        expected = outcome(lambda: openmetrics.generate_latest(registry, escaping))
        rendered = outcome(lambda: renderer.openmetrics(registry, escaping))

    assert isinstance(expected, tuple)
    assert expected[0] is UnicodeEncodeError
    assert rendered == expected


# -- the collector's /metrics --------------------------------------------------------------------


async def push_hostile_reports(http: httpx.AsyncClient, *, traced: bool) -> None:
    """HTTP, health and users reports with every label value the collector accepts."""
    reports = [
        {
            "method": "GET",
            "route": route,
            "status": status,
            "duration": duration,
            **({"service": service} if service else {}),
            **(ids(index) if traced else {}),
        }
        for index, route in enumerate(ACCEPTED_HOSTILE)
        for status, duration, service in ((200, 0.004, None), (503, 2.0, 'svc \\ "x"'))
    ]
    response = await http.post("/api/metrics/http/batch", json={"reports": reports})
    assert response.status_code == 200, response.text
    for service in ("a", 'b"q', "c\\d", "ü 𝄞"):
        path = f"/api/health/{quote(service, safe='')}"
        assert (await http.post(path, json={"status": "healthy"})).status_code == 200
        users = {"count": 3, "service": service}
        assert (await http.post("/api/metrics/users", json=users)).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("traced", [False, True], ids=["reports", "traced-reports"])
@pytest.mark.parametrize("accept", [None, OPENMETRICS_ACCEPT], ids=["text", "openmetrics"])
async def test_metrics_endpoint_is_byte_for_byte_prometheus_client(
    app: FastAPI, client: httpx.AsyncClient, accept: str | None, traced: bool
) -> None:
    """GET /metrics, rendered by the fast path, is prometheus_client's rendering of the app's
    registry (in OpenMetrics, with the exemplars the endpoint puts on it)."""
    await push_hostile_reports(client, traced=traced)
    headers = {"accept": accept} if accept else {}

    with watched_fallback() as handed:
        response = await client.get("/metrics", headers=headers)

    assert response.status_code == 200
    registry: CollectorRegistry = app.state.registry
    if accept is None:
        expected = text_format.generate_latest(registry)
    elif traced:
        with_exemplars = app.state.recorder.exemplars.collector(registry)
        expected = openmetrics.generate_latest(with_exemplars)
        assert b' # {span_id="' in expected
    else:
        expected = openmetrics.generate_latest(registry)
    assert response.content == expected
    assert b'route="back\\\\slash"' in expected
    assert response.headers["content-type"] == text_format.choose_encoder(accept or "")[1]
    assert handed == []


# -- caches and exemplars --------------------------------------------------------------------------


def test_output_stays_exact_past_the_name_cache_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "MAX_CACHED_NAMES", 2)
    registry = collector_registry()
    renderer = FastRenderer()

    for _ in range(3):
        frozen = Frozen(registry)
        assert renderer.text(frozen) == text_format.generate_latest(frozen)


def test_each_series_label_block_is_rendered_once_per_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Buckets, _count, _sum and _created of a series share one rendered block."""
    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "h", ["route", "status"], registry=registry)
    for index in range(200):
        histogram.labels(f"/r{index}", "200").observe(0.01)
    rendered: list[tuple[tuple[str, str], ...]] = []
    original = render.LabelBlocks._render

    def counting(self: render.LabelBlocks, items: tuple[tuple[str, str], ...]) -> tuple[str, int]:
        rendered.append(items)
        return original(self, items)

    monkeypatch.setattr(render.LabelBlocks, "_render", counting)
    renderer = FastRenderer()

    for scrape in range(1, 3):
        assert renderer.text(registry) == text_format.generate_latest(registry)
        assert len(rendered) == 200 * scrape


@pytest.mark.parametrize("escaping", FAST_ESCAPINGS)
def test_exemplars_are_rendered_without_prometheus_clients_encoder(escaping: str) -> None:
    """The collector's families with exemplars take the fast path, byte for byte the same."""
    frozen = Frozen(traced_registry())
    expected = openmetrics.generate_latest(frozen, escaping)
    assert b' # {span_id="' in expected

    with watched_fallback() as handed:
        assert FastRenderer().openmetrics(frozen, escaping) == expected
    assert handed == []


def test_exemplar_where_openmetrics_allows_none_fares_as_with_prometheus_client() -> None:
    """An exemplar on a gauge is handed to prometheus_client: the renderer refuses it with the
    same error where that release refuses it (0.26), and renders the same bytes where it does
    not (0.23)."""
    gauge = GaugeMetricFamily("g", "g")
    gauge.add_sample("g", {}, 1.0, exemplar=Exemplar({"trace_id": "a"}, 1.0))
    registry = registry_of([gauge])

    expected = outcome(lambda: openmetrics.generate_latest(registry))
    with watched_fallback() as handed:
        assert outcome(lambda: FastRenderer().openmetrics(registry)) == expected
    assert handed_names(handed) == {"g"}
