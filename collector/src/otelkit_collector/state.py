"""Last-value state the collector keeps per service: health with a TTL, and active users.

Pure and clock-injected: nothing here knows about HTTP, OpenTelemetry or files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from otelkit.reports import HealthStatus

Clock = Callable[[], float]
EffectiveStatus = HealthStatus | Literal["stale"]


@dataclass(frozen=True, slots=True)
class HealthEntry:
    """The last health a service reported, and when (unix seconds)."""

    status: HealthStatus
    reported_at: float


@dataclass(frozen=True, slots=True)
class UsersEntry:
    """The last active-user count reported (``service`` is ``None`` when unnamed)."""

    count: int
    reported_at: float


@dataclass(frozen=True, slots=True)
class HealthView:
    """A service's health as scraped: stale once the TTL has passed without a report."""

    service: str
    status: EffectiveStatus
    value: int
    reported_at: float
    age_seconds: float


class CapacityError(Exception):
    """A new service would exceed the configured number of services."""


class ServiceState:
    """Health and active users per service, bounded by ``max_services``.

    Args:
        health_ttl_seconds: reports older than this read as ``stale`` (value 0).
        max_services: distinct named services kept; a new one past the cap is refused.
        clock: returns unix time in seconds; injectable so tests need not sleep.
    """

    def __init__(
        self, *, health_ttl_seconds: float, max_services: int, clock: Clock = time.time
    ) -> None:
        self.health_ttl_seconds = health_ttl_seconds
        self.max_services = max_services
        self.clock = clock
        self._health: dict[str, HealthEntry] = {}
        self._users: dict[str | None, UsersEntry] = {}
        self._named: set[str] = set()
        self.version = 0
        """Bumped on every change, so a saver can tell whether there is anything to write."""

    def _admit(self, service: str | None) -> None:
        if service is None or service in self._named:
            return
        if len(self._named) >= self.max_services:
            raise CapacityError(
                f"service refused: the collector already tracks "
                f"max_services={self.max_services} services (OTELKIT_MAX_SERVICES; "
                f"forgotten services keep their slot until restart)"
            )
        self._named.add(service)

    def set_health(self, service: str, status: HealthStatus) -> None:
        """Record a health report now; raises :class:`CapacityError` past the cap."""
        self._admit(service)
        self._health[service] = HealthEntry(status, self.clock())
        self.version += 1

    def set_users(self, service: str | None, count: int) -> None:
        """Record an active-user count now; raises :class:`CapacityError` past the cap."""
        self._admit(service)
        self._users[service] = UsersEntry(count, self.clock())
        self.version += 1

    def forget(self, service: str) -> bool:
        """Drop everything known about ``service``; return whether anything was there.

        The name keeps its ``max_services`` slot until restart: the OpenTelemetry SDK keeps
        every attribute set an observable gauge ever reported, so freeing the slot would let
        a stream of newcomers grow that memory without bound (and, on SDKs with a per-metric
        limit, push the gauges into ``otel_metric_overflow``).
        """
        found = self._health.pop(service, None) is not None
        found = self._users.pop(service, None) is not None or found
        if found:
            self.version += 1
        return found

    def health_views(self) -> Iterator[HealthView]:
        """Each service's health as of now, with the TTL applied."""
        now = self.clock()
        for service, entry in self._health.items():
            age = max(0.0, now - entry.reported_at)
            if age > self.health_ttl_seconds:
                yield HealthView(service, "stale", 0, entry.reported_at, age)
            else:
                value = 1 if entry.status == "healthy" else 0
                yield HealthView(service, entry.status, value, entry.reported_at, age)

    def users(self) -> Iterator[tuple[str | None, UsersEntry]]:
        """Every active-user count, keyed by service (``None`` when unnamed)."""
        yield from self._users.items()

    @property
    def named_count(self) -> int:
        """Named services holding a ``max_services`` slot."""
        return len(self._named)

    def health_entries(self) -> Iterator[tuple[str, HealthEntry]]:
        """Raw last health reports, for persistence."""
        yield from self._health.items()

    def restore(self, health: dict[str, HealthEntry], users: dict[str | None, UsersEntry]) -> None:
        """Replace the state with a saved one, keeping at most ``max_services`` services."""
        self._health = dict(list(health.items())[: self.max_services])
        self._named = set(self._health)
        self._users = {}
        for service, entry in users.items():
            try:
                self._admit(service)
            except CapacityError:
                continue
            self._users[service] = entry
        self.version += 1
