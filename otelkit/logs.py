"""Log correlation: the current trace and span ids on the service's log records.

Opt-in (``instrument(app, log_correlation=True)`` or ``OTEL_PYTHON_LOG_CORRELATION=true``):
every record then carries ``trace_id`` and ``span_id`` (32 and 16 hex digits, ``"0"`` outside
a sampled span), and the same values under the names OpenTelemetry's logging
instrumentation uses (``otelTraceID``, ``otelSpanID``, ``otelTraceSampled``), so a format such
as ``"%(levelname)s [trace_id=%(trace_id)s span_id=%(span_id)s] %(message)s"`` works for
every logger, uvicorn's included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace

from otelkit.config import env_str

NO_ID = "0"
"""What ``trace_id`` and ``span_id`` read outside a valid span (as OpenTelemetry's logging
instrumentation writes it)."""

_TRUE = frozenset({"true", "1", "yes", "on"})


def log_correlation_requested(
    log_correlation: bool | None, environ: Mapping[str, str] | None = None
) -> bool:
    """The argument when given, else ``OTEL_PYTHON_LOG_CORRELATION`` (true, 1, yes, on)."""
    if log_correlation is not None:
        return log_correlation
    return (env_str("OTEL_PYTHON_LOG_CORRELATION", environ) or "").lower() in _TRUE


def add_trace_context(record: logging.LogRecord) -> None:
    """Set the current span's ids on ``record``."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        trace_id = format(span_context.trace_id, "032x")
        span_id = format(span_context.span_id, "016x")
        sampled = span_context.trace_flags.sampled
    else:
        trace_id = span_id = NO_ID
        sampled = False
    record.trace_id = record.otelTraceID = trace_id
    record.span_id = record.otelSpanID = span_id
    record.otelTraceSampled = sampled


class TraceContextFilter(logging.Filter):
    """A logging filter putting the current trace and span ids on each record it passes.

    Attach it to a handler (``handler.addFilter(TraceContextFilter())``) to correlate only
    what that handler writes; :func:`install_log_correlation` covers every record instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        add_trace_context(record)
        return True


_installed: Callable[..., logging.LogRecord] | None = None


def install_log_correlation() -> None:
    """Put the trace context on every log record created from now on (idempotent)."""
    global _installed
    factory = logging.getLogRecordFactory()
    if _installed is not None and factory is _installed:
        return

    def record_with_trace_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        add_trace_context(record)
        return record

    _installed = record_with_trace_context
    logging.setLogRecordFactory(record_with_trace_context)
