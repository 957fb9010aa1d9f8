"""Exemplars on the Prometheus exposition: the latest sampled one per histogram bucket.

The OpenTelemetry Prometheus exporter drops exemplars. :class:`ExemplarStore` keeps, per
histogram series, the latest exemplar of each bucket (filled from the SDK's collected data
points, or by the collector from pushed reports), and :meth:`ExemplarStore.attach` puts them
on the ``_bucket`` samples prometheus_client's OpenMetrics encoder renders. The text format
0.0.4 has no exemplars, so what it renders does not change.

Kept across collections on purpose: the SDK's bucket reservoir is emptied by each collection,
while a scrape should show each bucket's latest exemplar even when no request fell in it
since the previous scrape.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricsData
    from prometheus_client import CollectorRegistry

DEFAULT_MAX_SERIES = 10_000
"""Histogram series an exemplar store holds at most; past it the oldest series is dropped.
Each costs one exemplar per bucket (15 for the catalogue's histogram), however much traffic."""

SeriesLabels = tuple[tuple[str, str], ...]
"""A series' labels, sorted by name, without ``le`` and without empty values."""


def _series_labels(labels: Iterable[tuple[str, str]]) -> SeriesLabels:
    # An empty label value is an absent label to Prometheus, and the exporter pads every
    # series of a family with "" for the labels it lacks: both name the same series.
    return tuple(sorted((k, v) for k, v in labels if v and k != "le"))


def trace_id_hex(trace_id: int) -> str:
    """A W3C trace id as its 32 lowercase hex digits."""
    return format(trace_id, "032x")


def span_id_hex(span_id: int) -> str:
    """A W3C span id as its 16 lowercase hex digits."""
    return format(span_id, "016x")


class ExemplarStore:
    """The latest exemplar per bucket of each histogram series, bounded in series.

    Args:
        max_series: series kept at most; a new series past it evicts the oldest one.
    """

    def __init__(self, max_series: int = DEFAULT_MAX_SERIES) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series}")
        self.max_series = max_series
        # (family, series labels) -> (bucket upper bounds, latest exemplar per bucket)
        self._series: dict[
            tuple[str, SeriesLabels], tuple[tuple[float, ...], list[Exemplar | None]]
        ] = {}
        self._families: set[str] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Series holding at least one exemplar."""
        return len(self._series)

    def offer(
        self,
        family: str,
        labels: Mapping[str, str],
        boundaries: Sequence[float],
        value: float,
        *,
        trace_id: str,
        span_id: str | None,
        timestamp: float,
    ) -> None:
        """Make this observation the exemplar of the bucket ``value`` falls in.

        Args:
            family: the histogram's family name as exposed (``http_request_duration_seconds``).
            labels: the series' labels as exposed, ``le`` excluded.
            boundaries: the histogram's finite bucket upper bounds, ascending.
            value: the observed value.
            trace_id: 32 lowercase hex digits.
            span_id: 16 lowercase hex digits, when known.
            timestamp: when it was observed, in Unix seconds.
        """
        exemplar_labels = {"trace_id": trace_id}
        if span_id is not None:
            exemplar_labels["span_id"] = span_id
        exemplar = Exemplar(exemplar_labels, value, timestamp)
        # A bucket counts the values up to and including its bound, as the SDK's does.
        index = bisect_left(boundaries, value)
        key = (family, _series_labels(labels.items()))
        with self._lock:
            entry = self._series.get(key)
            if entry is None:
                if len(self._series) >= self.max_series:
                    del self._series[next(iter(self._series))]
                entry = (tuple(boundaries), [None] * (len(boundaries) + 1))
                self._series[key] = entry
                self._families.add(family)
            entry[1][index] = exemplar

    def offer_metrics(self, metrics_data: MetricsData) -> None:
        """Take the exemplars that carry trace context from an SDK collection."""
        from opentelemetry.sdk.metrics.export import Histogram

        for resource_metrics in metrics_data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if not isinstance(metric.data, Histogram):
                        continue
                    family: str | None = None
                    for point in metric.data.data_points:
                        if not point.exemplars:
                            continue
                        if family is None:
                            family = exposed_name(metric.name, metric.unit)
                        labels = {
                            exposed_label(key): _label_value(value)
                            for key, value in (point.attributes or {}).items()
                        }
                        for exemplar in point.exemplars:
                            if not exemplar.trace_id or not exemplar.span_id:
                                continue  # no trace to link to
                            self.offer(
                                family,
                                labels,
                                point.explicit_bounds,
                                exemplar.value,
                                trace_id=trace_id_hex(exemplar.trace_id),
                                span_id=span_id_hex(exemplar.span_id),
                                timestamp=exemplar.time_unix_nano / 1e9,
                            )

    def forget(self, family: str, labels: Mapping[str, str]) -> None:
        """Drop a series' exemplars (it is no longer exposed)."""
        with self._lock:
            self._series.pop((family, _series_labels(labels.items())), None)

    def attach(self, families: Iterable[Metric]) -> Iterator[Metric]:
        """``families``, each histogram bucket carrying its latest exemplar (copies, when
        any changes)."""
        for family in families:
            if family.type != "histogram" or family.name not in self._families:
                yield family
                continue
            yield self._with_exemplars(family)

    def _with_exemplars(self, family: Metric) -> Metric:
        samples = []
        entry: tuple[tuple[float, ...], list[Exemplar | None]] | None = None
        in_buckets = False
        with self._lock:
            for sample in family.samples:
                if not sample.name.endswith("_bucket"):
                    in_buckets = False
                    samples.append(sample)
                    continue
                if not in_buckets:
                    # A series' buckets come together, up to +Inf: its labels are read once.
                    in_buckets = True
                    key = (family.name, _series_labels(sample.labels.items()))
                    entry = self._series.get(key)
                le = sample.labels["le"]
                if entry is not None and sample.exemplar is None:
                    exemplar = entry[1][bisect_left(entry[0], float(le))]
                    if exemplar is not None:
                        sample = sample._replace(exemplar=exemplar)
                samples.append(sample)
                if le == "+Inf":  # a series' last bucket
                    in_buckets = False
        decorated = copy.copy(family)
        decorated.samples = samples
        return decorated


class ExemplarCollector(Collector):
    """A prometheus_client collector: ``source``'s families with ``store``'s exemplars."""

    def __init__(self, source: Any, store: ExemplarStore) -> None:
        self.source = source
        self.store = store

    def collect(self) -> Iterator[Metric]:
        return self.store.attach(self.source.collect())

    def describe(self) -> list[Metric]:
        # Nothing to describe: registering must not trigger a collection.
        return []


def exposed_name(name: str, unit: str | None) -> str:
    """The family name the OpenTelemetry Prometheus exporter gives an instrument."""
    try:
        from opentelemetry.exporter.prometheus._mapping import map_unit, sanitize_full_name
    except ImportError:  # pragma: no cover - the module exists in every supported exporter
        family, suffix = name, unit or ""
    else:
        family, suffix = sanitize_full_name(name), map_unit(unit or "")
    # prometheus_client appends the unit to a family name that lacks it.
    if suffix and not family.endswith("_" + suffix):
        family += "_" + suffix
    return family


def exposed_label(key: str) -> str:
    """The label name the OpenTelemetry Prometheus exporter gives an attribute key."""
    try:
        from opentelemetry.exporter.prometheus._mapping import sanitize_attribute
    except ImportError:  # pragma: no cover - the module exists in every supported exporter
        return key
    return sanitize_attribute(key)


def _label_value(value: object) -> str:
    """An attribute value as the exporter writes it as a label value."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def exemplar_reader(registry: CollectorRegistry, **options: Any) -> Any:
    """A Prometheus reader feeding ``registry`` with each bucket's latest exemplar.

    ``options`` are passed to :class:`~opentelemetry.exporter.prometheus.PrometheusMetricReader`.
    The reader fills a registry of its own; ``registry`` gets a collector that serves those
    families with the exemplars attached, and loses it when the reader shuts down.
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    class ExemplarPrometheusReader(PrometheusMetricReader):
        """Takes each collection's exemplars before the exporter translates (and drops) them."""

        def _receive_metrics(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> None:
            if metrics_data is not None:
                store.offer_metrics(metrics_data)
            super()._receive_metrics(metrics_data, timeout_millis, **kwargs)

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            with contextlib.suppress(KeyError):  # already unregistered
                registry.unregister(collector)
            super().shutdown(timeout_millis, **kwargs)

    store = ExemplarStore()
    own = CollectorRegistry()
    reader = ExemplarPrometheusReader(registry=own, **options)
    collector = ExemplarCollector(own, store)
    registry.register(collector)
    return reader
