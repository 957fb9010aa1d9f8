"""Records validated reports into the catalogue's OpenTelemetry instruments.

Knows nothing about HTTP: routes validate, then call one method here. Every report, whatever
its outcome, is counted in ``otelkit_collector_reports_total{kind,outcome}``. A report that
carries a trace id also becomes its bucket's exemplar (:mod:`otelkit_collector.exemplars`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from otelkit import instruments
from otelkit.bound import BoundSeries, bind
from otelkit.instruments import ReportKind, ReportOutcome
from otelkit.reports import HealthStatus, HttpReport
from otelkit_collector.cardinality import UNNAMED_SERVICE, CardinalityGuard, SeriesKey
from otelkit_collector.exemplars import HttpExemplars
from otelkit_collector.state import ServiceState


class Recorder:
    """The collector's core: OpenTelemetry instruments, service state and cardinality caps.

    Args:
        meter_provider: where the instruments live.
        state: per-service health and users, read by the gauges at collection time; its
            clock also stamps exemplars with the time reports are received.
        guard: cardinality caps applied to HTTP series before recording.
        exemplars: where reports with a trace id leave their exemplar; by default, room for
            every series ``guard`` can admit.
    """

    def __init__(
        self,
        meter_provider: MeterProvider,
        *,
        state: ServiceState,
        guard: CardinalityGuard,
        exemplars: HttpExemplars | None = None,
    ) -> None:
        self.state = state
        self.guard = guard
        self.exemplars = exemplars if exemplars is not None else HttpExemplars(guard.series_bound)
        meter = meter_provider.get_meter(instruments.METER_NAME)
        self._duration = instruments.create_http_duration_histogram(meter)
        self._reports = instruments.create_counter(meter, instruments.COLLECTOR_REPORTS)
        instruments.create_gauge(meter, instruments.SERVICE_HEALTH_STATUS, self._observe_health)
        instruments.create_gauge(
            meter, instruments.SERVICE_HEALTH_LAST_REPORT, self._observe_last_report
        )
        instruments.create_gauge(meter, instruments.ACTIVE_USERS, self._observe_users)
        # Attribute dicts for the self-metric are built once; the hot path only looks them up.
        self._outcome_attributes = {
            (kind, outcome): {"kind": kind, "outcome": outcome}
            for kind in instruments.REPORT_KINDS
            for outcome in instruments.REPORT_OUTCOMES
        }
        # Counts not yet added to the counter: added with the buffered durations.
        self._counts = dict.fromkeys(self._outcome_attributes, 0)
        # Counts already added to the counter, so the status page need not collect it.
        self._added = dict.fromkeys(self._outcome_attributes, 0)

        # Each recorded series: its attributes, built once, and its binding (otelkit.bound).
        self._series: dict[SeriesKey, _Series] = {}
        # Report labels the guard admitted as they are, straight to their series.
        self._admitted: dict[ReportLabels, _Series] = {}
        # Guards every series' buffer: collections may run on another thread.
        self._buffers_lock = threading.Lock()
        meter.create_observable_gauge(
            COLLECTION_HOOK,
            callbacks=[self._flush_before_collection],
            description=(
                "Never has a value: its callback moves buffered durations into the histogram "
                "before each collection."
            ),
        )

    def count(self, kind: ReportKind, outcome: ReportOutcome, amount: int = 1) -> None:
        """Add ``amount`` reports of ``kind`` with ``outcome`` to the self-metrics."""
        if amount > 0:
            with self._buffers_lock:
                self._counts[(kind, outcome)] += amount

    def record_http_reports(self, reports: Sequence[HttpReport]) -> int:
        """Record validated HTTP reports; return how many were folded into overflow series.

        Each report with a ``trace_id`` becomes the exemplar of its bucket, in report order
        (the latest one wins).
        """
        durations: dict[ReportLabels, list[float]] = {}
        traced: list[TracedReport] = []
        for report in reports:
            labels = (report.service, report.method, report.route, report.status)
            values = durations.get(labels)
            if values is None:
                durations[labels] = [report.duration]
            else:
                values.append(report.duration)
            if report.trace_id is not None:
                traced.append((labels, report.duration, report.trace_id, report.span_id))
        return self.record_http_durations(durations, traced)

    def record_http_durations(
        self,
        durations: Mapping[ReportLabels, Sequence[float]],
        traced: Sequence[TracedReport] = (),
    ) -> int:
        """Record validated durations, grouped by their report's labels, in order within each
        group; return how many were folded into overflow series.

        Durations wait in their series' buffer until it would pass ``FLUSH_AT`` or a reader
        collects, whichever comes first: every collection sees every duration recorded
        before it, and the per-series work is paid once per buffer, not once per batch.

        ``traced`` lists the reports among them that carry a trace id, in report order: each
        becomes its bucket's exemplar in the series its labels were recorded in.
        """
        reports = overflowed = 0
        # Where each label set was recorded, only when exemplars need to know.
        placed: dict[ReportLabels, _Series] | None = {} if traced else None
        with self._buffers_lock:
            for labels, values in durations.items():
                reports += len(values)
                series = self._admitted.get(labels)
                if series is None:
                    series, folded = self._series_for(labels)
                    overflowed += len(values) if folded else 0
                if placed is not None:
                    placed[labels] = series
                filled = series.filled
                if filled + len(values) > FLUSH_AT:
                    self._flush(series)
                    filled = 0
                    if len(values) > FLUSH_AT:
                        self._record(series, values)
                        continue
                end = filled + len(values)
                series.buffer[filled:end] = values
                series.filled = end
            self._counts[("http", "accepted")] += reports - overflowed
            self._counts[("http", "overflowed")] += overflowed
        if placed is not None:
            self.exemplars.offer(
                (
                    (placed[labels].attributes, duration, trace_id, span_id)
                    for labels, duration, trace_id, span_id in traced
                ),
                timestamp=self.state.clock(),
            )
        return overflowed

    def flush(self) -> None:
        """Record every buffered duration and count (run before each collection)."""
        with self._buffers_lock:
            for series in self._series.values():
                if series.filled:
                    self._flush(series)
            for key, amount in self._counts.items():
                if amount:
                    self._reports.add(amount, self._outcome_attributes[key])
                    self._added[key] += amount
                    self._counts[key] = 0

    def report_totals(self) -> dict[tuple[ReportKind, ReportOutcome], int]:
        """Reports counted per (kind, outcome): what the next collection of
        ``otelkit_collector_reports_total`` will show."""
        with self._buffers_lock:
            return {key: added + self._counts[key] for key, added in self._added.items()}

    def _flush_before_collection(self, options: CallbackOptions) -> Iterable[Observation]:
        # Collections run every observable callback before reading any aggregation.
        self.flush()
        return ()

    def _series_for(self, labels: ReportLabels) -> tuple[_Series, bool]:
        """The series a report's labels are recorded in under the caps, and whether folded."""
        service, method, route, status = labels
        key = SeriesKey(service if service is not None else UNNAMED_SERVICE, method, route, status)
        key, folded = self.guard.admit(key)
        series = self._series.get(key)
        if series is None:
            # Bounded: the guard admits at most max_series keys plus their overflow folds.
            series = self._series[key] = _Series(_attributes_of(key))
        if not folded:
            # The guard's answer for admitted labels never changes: skip it from now on.
            # (Folded ones are not kept, so hostile label sets cannot grow this map.)
            self._admitted[labels] = series
        return series, folded

    def _flush(self, series: _Series) -> None:
        """Move a series' buffer into the histogram (the caller holds the buffers lock)."""
        values = series.buffer[: series.filled]
        series.filled = 0
        self._record(series, values)

    def _record(self, series: _Series, values: Sequence[float]) -> None:
        """Record through the bound series, else ``Histogram.record()`` (then try binding)."""
        bound = series.bound
        if bound is not None and bound.record_many(values):
            return
        for value in values:
            # An explicit empty context: the collector's own context is no report's (their
            # trace ids become exemplars in self.exemplars), and looking up the current one
            # on every record is measurable at batch rates.
            self._duration.record(value, series.attributes, _NO_TRACE_CONTEXT)
        if series.bindable:
            series.bound = bind(self._duration, series.attributes)
            series.bindable = series.bound is not None

    def record_health(self, service: str, status: HealthStatus) -> None:
        """Set a service's health; raises ``CapacityError`` for a new service past the cap."""
        self.state.set_health(service, status)
        self.count("health", "accepted")

    def record_users(self, service: str | None, count: int) -> None:
        """Set active users; raises ``CapacityError`` for a new service past the cap."""
        self.state.set_users(service, count)
        self.count("users", "accepted")

    def forget_service(self, service: str) -> bool:
        """Forget a service's health, last report and users; return whether it was known.

        Its HTTP series stay (the histogram keeps every series it has recorded), and so do
        their exemplars.
        """
        return self.state.forget(service)

    def _observe_health(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v.value, {"service": v.service}) for v in self.state.health_views()]

    def _observe_last_report(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(entry.reported_at, {"service": service})
            for service, entry in self.state.health_entries()
        ]

    def _observe_users(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(entry.count, {"service": service} if service is not None else {})
            for service, entry in self.state.users()
        ]


_NO_TRACE_CONTEXT = Context()

ReportLabels = tuple[str | None, str, str, int]
"""A validated report's (service, method, route, status)."""

TracedReport = tuple[ReportLabels, float, str, str | None]
"""A validated report with a trace id: (labels, duration, trace_id, span_id)."""


FLUSH_AT = 32
"""Durations a series buffers at most before they are recorded (sooner if a reader collects)."""

COLLECTION_HOOK = "otelkit.collector.flush"
"""An observable gauge that never observes anything (so it is never exported): its callback
flushes the buffered durations. This relies on the SDK running every observable callback of
a collection before it reads any aggregation (``SynchronousMeasurementConsumer.collect`` in
opentelemetry-sdk 1.44); tests/collector/test_recorder_buffers.py checks every collection
sees every recorded duration, with one reader or two, cumulative or delta."""


class _Series:
    """One series of the duration histogram: attributes, durations not yet recorded, binding."""

    __slots__ = ("attributes", "bindable", "bound", "buffer", "filled")

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        # Allocated once, at full size: a buffer grown and shrunk as durations come and go
        # would leave its blocks scattered over the allocator's arenas, and keep them.
        self.buffer: list[float] = [0.0] * FLUSH_AT
        self.filled = 0
        self.bound: BoundSeries | None = None
        # False once bind() has said no: the SDK setup only allows record().
        self.bindable = True


def _attributes_of(key: SeriesKey) -> dict[str, str]:
    attributes = {"method": key.method, "route": key.route, "status": str(key.status)}
    if key.service:
        attributes["service"] = key.service
    return attributes
