"""Reads the Prometheus registry: the /metrics text and the HTTP series for the JSON view.

Both come from the same collection, so the JSON view cannot disagree with what Prometheus
scrapes. Exemplars are attached to what the OpenMetrics encoder renders, never to the text
format 0.0.4, which has none: its body and cost stay what they are without them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from otelkit.instruments import COLLECTOR_REPORTS, HTTP_REQUEST_DURATION
from otelkit_collector.exemplars import HttpExemplars
from otelkit_collector.render import FastRenderer
from otelkit_collector.schemas import HttpSeries, ReportCount

_RENDERER = FastRenderer()
"""Shared by every registry: its cache is a pure function of label sets (and bounded)."""

OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text"


def render(
    registry: CollectorRegistry, accept: str | None, exemplars: HttpExemplars | None = None
) -> tuple[bytes, str]:
    """The exposition in the format ``accept`` asks for (OpenMetrics or text 0.0.4).

    Byte for byte what prometheus_client's encoders produce, rendered by
    :class:`collector.render.FastRenderer`. OpenMetrics carries ``exemplars``, when given.
    """
    encoder, content_type = _RENDERER.choose(accept)
    if exemplars is not None and content_type.startswith(OPENMETRICS_CONTENT_TYPE):
        return encoder(exemplars.collector(registry)), content_type
    return encoder(registry), content_type


def _families(registry: Collector, name: str) -> Iterable[Metric]:
    return (family for family in registry.collect() if family.name == name)


def http_series(
    registry: CollectorRegistry, exemplars: HttpExemplars | None = None
) -> list[HttpSeries]:
    """Every ``http_request_duration_seconds`` series with count, sum, mean and buckets, and
    the trace id of its latest exemplar when ``exemplars`` holds one."""
    source: Collector = registry if exemplars is None else exemplars.collector(registry)
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for family in _families(source, HTTP_REQUEST_DURATION.prometheus_name):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            entry = series.setdefault(
                tuple(sorted(labels.items())),
                {"labels": labels, "buckets": {}, "trace_id": None, "received": -math.inf},
            )
            if sample.name.endswith("_bucket"):
                entry["buckets"][sample.labels["le"]] = int(sample.value)
                exemplar = sample.exemplar
                if exemplar is not None and _received(exemplar) >= entry["received"]:
                    entry["received"], entry["trace_id"] = (
                        _received(exemplar),
                        exemplar.labels.get("trace_id"),
                    )
            elif sample.name.endswith("_count"):
                entry["count"] = int(sample.value)
            elif sample.name.endswith("_sum"):
                entry["sum"] = float(sample.value)
    result = []
    for entry in series.values():
        labels = entry["labels"]
        count, total = entry.get("count", 0), entry.get("sum", 0.0)
        result.append(
            HttpSeries(
                service=labels.get("service") or None,
                method=labels.get("method", ""),
                route=labels.get("route", ""),
                status=labels.get("status", ""),
                count=count,
                sum=total,
                mean=total / count if count else None,
                buckets=entry["buckets"],
                trace_id=entry["trace_id"],
            )
        )
    return result


def _received(exemplar: Exemplar) -> float:
    """When an exemplar was observed (exemplars without a time sort first)."""
    return -math.inf if exemplar.timestamp is None else float(exemplar.timestamp)


def report_counts(registry: CollectorRegistry) -> list[ReportCount]:
    """``otelkit_collector_reports_total`` per kind and outcome."""
    # prometheus_client names counter families without the _total suffix.
    family_name = COLLECTOR_REPORTS.prometheus_name.removesuffix("_total")
    return [
        ReportCount(
            kind=sample.labels.get("kind", ""),
            outcome=sample.labels.get("outcome", ""),
            count=int(sample.value),
        )
        for family in _families(registry, family_name)
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
