"""Pushed trace ids as exemplars: the latest one per bucket of each HTTP series.

A report carrying a ``trace_id`` makes its duration the exemplar of the bucket it falls in,
in the series it was recorded in: after the cardinality caps, so a folded report's exemplar
belongs to its overflow series. :meth:`HttpExemplars.collector` puts them on the
``http_request_duration_seconds_bucket`` samples that OpenMetrics ``/metrics`` renders; the
text format 0.0.4 has no exemplars, and is rendered without them.

Held in memory only, bounded by the series the caps allow: like the histograms they decorate,
they start empty when the collector restarts (the state file holds health and users only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.registry import Collector

from otelkit.exemplars import ExemplarCollector, ExemplarStore
from otelkit.instruments import DURATION_BUCKETS_SECONDS, HTTP_REQUEST_DURATION

FAMILY = HTTP_REQUEST_DURATION.prometheus_name


class HttpExemplars:
    """The latest exemplar per bucket of each ``http_request_duration_seconds`` series.

    Args:
        max_series: series kept at most (past it the oldest is dropped); the recorder sizes
            it to every series its cardinality caps can admit.
    """

    def __init__(self, max_series: int) -> None:
        self._store = ExemplarStore(max_series)

    @property
    def max_series(self) -> int:
        """Series kept at most."""
        return self._store.max_series

    def __len__(self) -> int:
        """Series holding at least one exemplar."""
        return len(self._store)

    def offer(
        self,
        reports: Iterable[tuple[Mapping[str, str], float, str, str | None]],
        *,
        timestamp: float,
    ) -> None:
        """Make each report the exemplar of its bucket, in order (the latest one wins).

        Args:
            reports: (series attributes as recorded, duration, trace_id, span_id) of each.
            timestamp: when the reports were received, in Unix seconds.
        """
        offer, family, boundaries = self._store.offer, FAMILY, DURATION_BUCKETS_SECONDS
        for attributes, duration, trace_id, span_id in reports:
            offer(
                family,
                attributes,
                boundaries,
                duration,
                trace_id=trace_id,
                span_id=span_id,
                timestamp=timestamp,
            )

    def collector(self, registry: Collector) -> ExemplarCollector:
        """``registry``'s families, the HTTP histogram's buckets carrying their exemplars.

        The exporter pads a series that lacks a label its family has with ``""`` (a report
        naming no service reads ``service=""`` once another names one); the store treats an
        empty label as absent, so such a series finds the exemplars it was recorded with.
        """
        return ExemplarCollector(registry, self._store)
