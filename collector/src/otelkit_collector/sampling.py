"""Where the status page's history comes from: the HTTP histogram's counts, every tick.

The collector's own Prometheus reader (:class:`SamplingPrometheusReader`) can hand one
collection's data points straight to the history, without translating every series into
prometheus_client families: for 2,000 series that is ~40 ms a tick instead of ~300 ms.
That overrides ``_receive_metrics``, the method every ``MetricReader`` subclass implements
(as ``otelkit.exemplars.exemplar_reader`` does); an app given a provider of its own samples
the registry instead (:func:`registry_series`), the public path.
tests/collector/test_history.py checks both give the same series, on every version CI runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData
from prometheus_client.registry import Collector

from otelkit.instruments import HTTP_REQUEST_DURATION
from otelkit_collector.history import SeriesLabels

logger = logging.getLogger(__name__)

SeriesSource = Callable[[], Iterable[tuple[SeriesLabels, Sequence[int]]]]
"""Each HTTP histogram series with its cumulative count per bucket (``+Inf`` last)."""


class SamplingPrometheusReader(PrometheusMetricReader):
    """A Prometheus reader that can also collect for the history, without exporting."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._capture_lock = threading.Lock()
        self._captured: MetricsData | None = None
        self._capturing = False

    def capture(self) -> MetricsData | None:
        """Collect once and return the data, leaving the Prometheus registry untouched."""
        with self._capture_lock:
            self._capturing, self._captured = True, None
            try:
                self.collect()
                return self._captured
            finally:
                self._capturing, self._captured = False, None

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        if self._capturing:
            self._captured = metrics_data
            return
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)

    def series(self) -> Iterator[tuple[SeriesLabels, Sequence[int]]]:
        """The HTTP histogram's series, from one capture."""
        data = self.capture()
        if data is None:
            return
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name != HTTP_REQUEST_DURATION.name:
                        continue
                    for point in metric.data.data_points:
                        if isinstance(point, HistogramDataPoint):
                            yield _labels(point.attributes), point.bucket_counts


def _labels(attributes: Any) -> SeriesLabels:
    status = str(attributes.get("status", "0"))
    return (
        str(attributes.get("service", "")),
        str(attributes.get("method", "")),
        str(attributes.get("route", "")),
        int(status) if status.isdigit() else 0,
    )


def registry_series(registry: Collector) -> Iterator[tuple[SeriesLabels, Sequence[int]]]:
    """The HTTP histogram's series as ``registry`` renders them (cumulative ``le`` counts
    turned back into per-bucket counts)."""
    family_name = HTTP_REQUEST_DURATION.prometheus_name
    for family in registry.collect():
        if family.name != family_name:
            continue
        buckets: dict[SeriesLabels, list[int]] = {}
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                labels = _labels(sample.labels)
                buckets.setdefault(labels, []).append(int(sample.value))
        for labels, cumulative in buckets.items():
            below = [0, *cumulative[:-1]]
            yield labels, [now - before for now, before in zip(cumulative, below, strict=True)]


async def sample_periodically(take_tick: Callable[[], None], resolution_seconds: float) -> None:
    """Call ``take_tick`` every ``resolution_seconds`` until cancelled.

    On the event loop, as ``/metrics`` renders: the gauges' callbacks read state that only
    the loop changes.
    """
    while True:
        await asyncio.sleep(resolution_seconds)
        try:
            take_tick()
        except Exception:  # a tick lost is better than a page that stops for good
            logger.exception("status history: a tick could not be taken")
