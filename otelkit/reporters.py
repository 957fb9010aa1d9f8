"""Health and active-user reporting: local gauges, optional push, and a health heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, get_args

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from otelkit import instruments
from otelkit.reports import HEALTH_STATUSES, HealthStatus, check_label_text

if TYPE_CHECKING:
    from otelkit.push import PushClient

logger = logging.getLogger(__name__)

HealthCheckResult = HealthStatus | bool | None
HealthCheck = Callable[[], HealthCheckResult | Awaitable[HealthCheckResult]]
DEFAULT_HEARTBEAT_SECONDS = 30.0


def _health_status(status: str) -> HealthStatus:
    lowered = status.lower()
    for allowed in get_args(HealthStatus):
        if lowered == allowed:
            return allowed  # type: ignore[no-any-return]
    raise ValueError(f"health status must be one of {', '.join(HEALTH_STATUSES)}, got {status!r}")


class Reporter:
    """Keeps a service's last reported health and active users, and exposes them as gauges.

    Args:
        meter_provider: where the gauges live (default: the global provider).
        push: also send every report to the collector through this client.
    """

    def __init__(
        self, *, meter_provider: MeterProvider | None = None, push: PushClient | None = None
    ) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter(instruments.METER_NAME)
        self.push = push
        self._health: dict[str, HealthStatus] = {}
        self._users: dict[str | None, int] = {}
        instruments.create_gauge(meter, instruments.SERVICE_HEALTH_STATUS, self._observe_health)
        instruments.create_gauge(meter, instruments.ACTIVE_USERS, self._observe_users)

    def report_health(self, service: str, status: str) -> None:
        """Record ``service``'s health (healthy, degraded, unhealthy or down).

        Raises:
            ValueError: an unknown status or an unusable service name (a programming error).
        """
        check_label_text(service)
        checked = _health_status(status)
        self._health[service] = checked
        if self.push is not None:
            self.push.submit_health(service, checked)

    def report_active_users(self, count: int, service: str | None = None) -> None:
        """Record the number of active users (per ``service`` when given).

        Raises:
            ValueError: a negative or non-integer count.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"active users must be an integer >= 0, got {count!r}")
        if service is not None:
            check_label_text(service)
        self._users[service] = count
        if self.push is not None:
            self.push.submit_users(count, service)

    def _observe_health(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(1 if status == "healthy" else 0, {"service": service})
            for service, status in list(self._health.items())
        ]

    def _observe_users(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {"service": service} if service is not None else {})
            for service, count in list(self._users.items())
        ]


class HealthHeartbeat:
    """Reports a service's health every ``interval`` seconds, from an optional check.

    The check may be sync or async and returns a status string, ``True``/``None`` (healthy)
    or ``False`` (unhealthy); a check that raises or times out reports ``unhealthy``.

    Args:
        reporter: where reports go.
        service: the service reported on.
        interval: seconds between reports (default 30; the collector's TTL is 90).
        check: the health check; without one the service reports healthy while it runs.
    """

    def __init__(
        self,
        reporter: Reporter,
        service: str,
        *,
        interval: float = DEFAULT_HEARTBEAT_SECONDS,
        check: HealthCheck | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be > 0, got {interval}")
        check_label_text(service)
        self.reporter = reporter
        self.service = service
        self.interval = interval
        self.check = check
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> HealthStatus:
        """Run the check once and report its result; return the status reported."""
        status: HealthStatus = "healthy"
        if self.check is not None:
            try:
                result = self.check()
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, timeout=self.interval)
                status = _result_status(result)
            except Exception:
                logger.warning("otelkit: health check of %s failed", self.service, exc_info=True)
                status = "unhealthy"
        self.reporter.report_health(self.service, status)
        return status

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start beating on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop beating."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _result_status(result: object) -> HealthStatus:
    if result is None or result is True:
        return "healthy"
    if result is False:
        return "unhealthy"
    if isinstance(result, str):
        return _health_status(result)
    raise ValueError(f"health check returned {result!r}; expected a status or a bool")
