"""The otelkit collector: JSON push reports from any language, recorded into OpenTelemetry."""

from collector.app import create_app
from collector.settings import CollectorSettings

__all__ = ["CollectorSettings", "create_app"]
