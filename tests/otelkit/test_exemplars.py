"""ExemplarStore: the latest exemplar per bucket of each histogram series, bounded, attached
to prometheus_client families without changing them; the reader that feeds it from the SDK."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from otelkit.exemplars import ExemplarCollector, ExemplarStore, exemplar_reader

FAMILY = "latency_seconds"
BOUNDS = (0.1, 1.0)
TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def histogram_registry(*labels: str) -> CollectorRegistry:
    """A registry with one histogram named :data:`FAMILY`, one series per ``route`` label."""
    registry = CollectorRegistry()
    histogram = Histogram("latency", "Latency.", ["route"], unit="seconds", buckets=BOUNDS,
                          registry=registry)  # fmt: skip
    for label in labels:
        histogram.labels(route=label).observe(0.05)
    return registry


def bucket_exemplars(source: Collector) -> dict[tuple[str, str], tuple[str, float]]:
    """{(route, le): (trace_id, value)} of every bucket that carries an exemplar."""
    text = generate_latest(source).decode()  # type: ignore[arg-type]
    return {
        (sample.labels["route"], sample.labels["le"]): (
            sample.exemplar.labels["trace_id"],
            sample.exemplar.value,
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.exemplar is not None
    }


def offer(store: ExemplarStore, route: str, value: float, trace: str = TRACE) -> None:
    store.offer(FAMILY, {"route": route}, BOUNDS, value, trace_id=trace, span_id=SPAN,
                timestamp=1_700_000_000.0)  # fmt: skip


@pytest.mark.parametrize(
    ("value", "le"),
    [
        pytest.param(0.0, "0.1", id="zero"),
        pytest.param(0.1, "0.1", id="on-a-bound-counts-below"),
        pytest.param(0.5, "1.0", id="between"),
        pytest.param(7.0, "+Inf", id="past-the-last-bound"),
    ],
)
def test_exemplar_lands_in_the_bucket_that_counts_its_value(value: float, le: str) -> None:
    """A bucket counts values up to and including its bound, as its exemplar does."""
    store = ExemplarStore()
    offer(store, "/a", value)
    found = bucket_exemplars(ExemplarCollector(histogram_registry("/a"), store))
    assert found == {("/a", le): (TRACE, value)}


def test_the_latest_exemplar_of_a_bucket_wins() -> None:
    """Two observations in one bucket: the later one is its exemplar; others keep theirs."""
    store = ExemplarStore()
    offer(store, "/a", 0.05, trace="1" * 32)
    offer(store, "/a", 0.5, trace="2" * 32)
    offer(store, "/a", 0.07, trace="3" * 32)
    found = bucket_exemplars(ExemplarCollector(histogram_registry("/a"), store))
    assert found == {("/a", "0.1"): ("3" * 32, 0.07), ("/a", "1.0"): ("2" * 32, 0.5)}


def test_store_is_bounded_in_series_dropping_the_oldest() -> None:
    """Past max_series, each new series evicts the oldest one."""
    store = ExemplarStore(max_series=2)
    for route in ("/a", "/b", "/c"):
        offer(store, route, 0.05)
    assert len(store) == 2
    found = bucket_exemplars(ExemplarCollector(histogram_registry("/a", "/b", "/c"), store))
    assert {route for route, _ in found} == {"/b", "/c"}


def test_attach_leaves_families_without_exemplars_untouched() -> None:
    """Families the store knows nothing of are passed on as the same objects, unchanged."""
    registry = histogram_registry("/a")
    store = ExemplarStore()
    offer(store, "/a", 0.05)
    families = list(registry.collect())
    attached = list(store.attach(families))
    assert attached[0] is not families[0]  # a copy carries the exemplars...
    assert all(sample.exemplar is None for sample in families[0].samples)  # ...not the original
    offer_elsewhere = ExemplarStore()
    assert list(offer_elsewhere.attach(families)) == families


def test_max_series_must_be_positive() -> None:
    """A store that can hold nothing is a configuration error."""
    with pytest.raises(ValueError, match="max_series"):
        ExemplarStore(max_series=0)


def test_reader_shutdown_removes_its_families_from_the_registry() -> None:
    """The collector the reader registered leaves the registry with it."""
    from opentelemetry.sdk.metrics import MeterProvider

    registry = CollectorRegistry()
    reader = exemplar_reader(registry, disable_target_info=True)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("t").create_histogram("latency", unit="s").record(0.2)
    assert "latency_seconds_bucket" in generate_latest(registry).decode()
    provider.shutdown()
    assert "latency_seconds" not in generate_latest(registry).decode()


def test_a_series_padded_with_empty_labels_keeps_its_exemplar() -> None:
    """A series recorded without a label its family pads with "" is the same series."""
    store = ExemplarStore()
    store.offer(FAMILY, {"route": "/a"}, BOUNDS, 0.05, trace_id=TRACE, span_id=SPAN,
                timestamp=1.0)  # fmt: skip
    registry = CollectorRegistry()
    histogram = Histogram("latency", "Latency.", ["route", "service"], unit="seconds",
                          buckets=BOUNDS, registry=registry)  # fmt: skip
    histogram.labels(route="/a", service="").observe(0.05)
    histogram.labels(route="/a", service="billing").observe(0.05)
    text = generate_latest(ExemplarCollector(registry, store)).decode()  # type: ignore[arg-type]
    linked = [
        sample.labels["service"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.exemplar is not None
    ]
    assert linked == [""]


def test_adjacent_series_without_count_samples_keep_their_own_exemplars() -> None:
    """Series whose buckets follow one another directly are still told apart."""
    from prometheus_client.metrics_core import HistogramMetricFamily

    store = ExemplarStore()
    offer(store, "/b", 0.05)
    family = HistogramMetricFamily("latency", "Latency.", labels=["route"], unit="seconds")
    for route in ("/a", "/b"):
        family.add_metric([route], [("0.1", 1.0), ("1.0", 1.0), ("+Inf", 1.0)], sum_value=None)
    (decorated,) = store.attach([family])
    linked = {s.labels["route"] for s in decorated.samples if s.exemplar is not None}
    assert linked == {"/b"}
