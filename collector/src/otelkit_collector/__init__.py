"""The otelkit collector: JSON push reports from any language, recorded into OpenTelemetry."""

from otelkit_collector.app import create_app
from otelkit_collector.settings import CollectorSettings

__all__ = ["CollectorSettings", "create_app"]
