"""Records validated reports into the catalogue's OpenTelemetry instruments.

Knows nothing about HTTP: routes validate, then call one method here. Every report, whatever
its outcome, is counted in ``otelkit_collector_reports_total{kind,outcome}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from collector.cardinality import UNNAMED_SERVICE, CardinalityGuard, SeriesKey
from collector.state import ServiceState
from otelkit import instruments
from otelkit.instruments import ReportKind, ReportOutcome
from otelkit.reports import HealthStatus, HttpReport


class Recorder:
    """The collector's core: OpenTelemetry instruments, service state and cardinality caps.

    Args:
        meter_provider: where the instruments live.
        state: per-service health and users, read by the gauges at collection time.
        guard: cardinality caps applied to HTTP series before recording.
    """

    def __init__(
        self, meter_provider: MeterProvider, *, state: ServiceState, guard: CardinalityGuard
    ) -> None:
        self.state = state
        self.guard = guard
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

        # The attributes of each admitted series, built once (the same mapping every time).
        self._series_attributes: dict[SeriesKey, dict[str, str]] = {}

    def count(self, kind: ReportKind, outcome: ReportOutcome, amount: int = 1) -> None:
        """Add ``amount`` reports of ``kind`` with ``outcome`` to the self-metrics."""
        if amount > 0:
            self._reports.add(amount, self._outcome_attributes[(kind, outcome)])

    def record_http_reports(self, reports: Sequence[HttpReport]) -> int:
        """Record validated HTTP reports; return how many were folded into overflow series."""
        overflowed = 0
        for report in reports:
            key = SeriesKey(
                report.service if report.service is not None else UNNAMED_SERVICE,
                report.method,
                report.route,
                report.status,
            )
            key, folded = self.guard.admit(key)
            overflowed += folded
            attributes = self._series_attributes.get(key)
            if attributes is None:
                attributes = _attributes_of(key)
                # Bounded: the guard admits at most max_series keys plus their overflow folds.
                self._series_attributes[key] = attributes
            # An explicit empty context: pushed reports carry no trace context, and looking up
            # the current one on every record is measurable at batch rates.
            self._duration.record(report.duration, attributes, _NO_TRACE_CONTEXT)
        self.count("http", "accepted", len(reports) - overflowed)
        self.count("http", "overflowed", overflowed)
        return overflowed

    def record_health(self, service: str, status: HealthStatus) -> None:
        """Set a service's health; raises ``CapacityError`` for a new service past the cap."""
        self.state.set_health(service, status)
        self.count("health", "accepted")

    def record_users(self, service: str | None, count: int) -> None:
        """Set active users; raises ``CapacityError`` for a new service past the cap."""
        self.state.set_users(service, count)
        self.count("users", "accepted")

    def forget_service(self, service: str) -> bool:
        """Forget a service's health, last report and users; return whether it was known."""
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


def _attributes_of(key: SeriesKey) -> dict[str, str]:
    attributes = {"method": key.method, "route": key.route, "status": str(key.status)}
    if key.service:
        attributes["service"] = key.service
    return attributes
