"""otelkit: OpenTelemetry metrics for Python services, scraped by Prometheus or pushed."""

from otelkit.instruments import CATALOGUE, DURATION_BUCKETS_SECONDS, MetricSpec
from otelkit.reports import HealthReport, HttpReport, HttpReportBatch, UsersReport

__version__ = "0.1.0"

__all__ = [
    "CATALOGUE",
    "DURATION_BUCKETS_SECONDS",
    "HealthReport",
    "HttpReport",
    "HttpReportBatch",
    "MetricSpec",
    "UsersReport",
    "__version__",
]
