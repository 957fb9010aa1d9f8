"""The fast renderer writes exactly what prometheus_client's encoders write, scrape after scrape."""

from __future__ import annotations

import re

import pytest
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
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from otelkit.reports import HttpReport
from otelkit_collector import render
from otelkit_collector.app import build_meter_provider
from otelkit_collector.cardinality import CardinalityGuard
from otelkit_collector.recorder import Recorder
from otelkit_collector.render import FastRenderer
from otelkit_collector.settings import CollectorSettings
from otelkit_collector.state import ServiceState
from tests.conftest import FakeClock

ESCAPINGS = (openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8, openmetrics.DOTS, openmetrics.VALUES)
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
    """Every prometheus_client metric type, exemplars, odd names and hostile values."""
    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs done", ["queue"], registry=registry)
    for value in HOSTILE:
        counter.labels(value).inc(2)
    counter.labels("x").inc(1, exemplar={"trace_id": "abc"})
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


REGISTRIES = {
    "collector": collector_registry,
    "collector-with-exemplars": traced_registry,
    "library": library_registry,
}


@pytest.fixture(params=list(REGISTRIES))
def registry(request: pytest.FixtureRequest) -> Collector:
    return REGISTRIES[request.param]()


@pytest.mark.parametrize("escaping", ESCAPINGS)
def test_text_is_byte_for_byte_prometheus_client(registry: Collector, escaping: str) -> None:
    renderer = FastRenderer()
    for _ in range(3):  # the first render fills the caches, later ones use them
        frozen = Frozen(registry)
        assert renderer.text(frozen, escaping) == text_format.generate_latest(frozen, escaping)


@pytest.mark.parametrize("escaping", ESCAPINGS)
@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
def test_openmetrics_is_byte_for_byte_prometheus_client(
    registry: Collector, escaping: str, version: str
) -> None:
    renderer = FastRenderer()
    for _ in range(3):
        frozen = Frozen(registry)
        assert renderer.openmetrics(frozen, escaping, version) == openmetrics.generate_latest(
            frozen, escaping, version
        )


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


label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: name != "le" and not name.startswith("__")
)
label_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@given(
    labels=st.dictionaries(label_names, label_values, max_size=4),
    escaping=st.sampled_from(ESCAPINGS),
)
@settings(max_examples=200, deadline=None)
def test_any_label_set_renders_as_prometheus_client_does(
    labels: dict[str, str], escaping: str
) -> None:
    """Histogram buckets splice le in wherever it sorts among arbitrary label names."""
    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "h", list(labels), buckets=(0.1, 1.0), registry=registry)
    (histogram.labels(**labels) if labels else histogram).observe(0.5)
    gauge = Gauge("g", "g", list(labels), registry=registry)
    (gauge.labels(**labels) if labels else gauge).set(1)
    renderer = FastRenderer()

    for _ in range(2):
        assert renderer.text(registry, escaping) == text_format.generate_latest(registry, escaping)
        assert renderer.openmetrics(registry, escaping) == openmetrics.generate_latest(
            registry, escaping
        )


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


@pytest.mark.parametrize("escaping", [openmetrics.UNDERSCORES, openmetrics.ALLOWUTF8])
def test_exemplars_are_rendered_without_prometheus_clients_encoder(
    monkeypatch: pytest.MonkeyPatch, escaping: str
) -> None:
    """The collector's families with exemplars take the fast path, byte for byte the same."""
    frozen = Frozen(traced_registry())
    expected = openmetrics.generate_latest(frozen, escaping)
    assert b" # {span_id=" in expected
    handed_over: list[object] = []

    def encoder(registry: Collector, *args: object) -> bytes:
        handed_over.extend(family.name for family in registry.collect())
        return openmetrics.generate_latest(registry, *args)

    monkeypatch.setattr(render, "_openmetrics_latest", encoder)

    assert FastRenderer().openmetrics(frozen, escaping) == expected
    assert "http_request_duration_seconds" not in handed_over


def test_exemplar_where_openmetrics_allows_none_fares_as_with_prometheus_client() -> None:
    """An exemplar on a gauge is handed to prometheus_client: the renderer refuses it with the
    same error where that release refuses it (0.26), and renders the same bytes where it does
    not (0.23)."""
    gauge = GaugeMetricFamily("g", "g")
    gauge.add_sample("g", {}, 1.0, exemplar=Exemplar({"trace_id": "a"}, 1.0))
    frozen = Frozen(CollectorRegistry())
    frozen.families = [gauge]

    try:
        expected = openmetrics.generate_latest(frozen)
    except ValueError as refused:
        with pytest.raises(ValueError, match=re.escape(str(refused))):
            FastRenderer().openmetrics(frozen)
    else:
        assert FastRenderer().openmetrics(frozen) == expected
