"""Cardinality caps for HTTP histogram series, enforced before anything is recorded.

Whatever clients send, the number of series stays within the caps plus a fixed overflow
reserve, and every folded report is reported back so it can be counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, NamedTuple

from otelkit.instruments import OTHER_METHOD, OVERFLOW_VALUE

UNNAMED_SERVICE: Final = ""
"""Label value for reports that name no service (Prometheus treats it as an absent label)."""

OVERFLOW_RESERVE_STATUSES: Final = 500
"""Distinct status codes (100-599): the most series the global overflow fold can add past
``max_series``."""


class SeriesKey(NamedTuple):
    """The label values of one ``http_request_duration_seconds`` series."""

    service: str
    method: str
    route: str
    status: int


class CardinalityGuard:
    """Maps a report's labels onto a bounded set of series.

    * a service past ``max_services`` is recorded as ``service="__other__"``;
    * a route past ``max_routes_per_service`` for its service becomes ``route="__other__"``;
    * a series past ``max_series`` folds into ``{service="__other__", method="_OTHER",
      route="__other__"}``, keeping its status so error ratios stay meaningful.

    Overflow series are a reserve outside the caps: at most one per service for routes, and
    one per status code (500) for the global fold.
    """

    def __init__(self, *, max_services: int, max_routes_per_service: int, max_series: int) -> None:
        self.max_services = max_services
        self.max_routes_per_service = max_routes_per_service
        self.max_series = max_series
        self._routes: dict[str, set[str]] = {}
        self._series: set[SeriesKey] = set()

    def admit(self, key: SeriesKey) -> tuple[SeriesKey, bool]:
        """Return the series to record ``key`` under, and whether it was folded."""
        if key in self._series:
            return key, False
        service, method, route, status = key
        overflowed = False
        routes = self._routes.get(service)
        if routes is None:
            if len(self._routes) >= self.max_services:
                service, overflowed = OVERFLOW_VALUE, True
            routes = self._routes.setdefault(service, set())
        if route not in routes:
            if len(routes) >= self.max_routes_per_service:
                route, overflowed = OVERFLOW_VALUE, True
            else:
                routes.add(route)
        folded = SeriesKey(service, method, route, status)
        if folded in self._series:
            return folded, overflowed
        if len(self._series) >= self.max_series:
            return SeriesKey(OVERFLOW_VALUE, OTHER_METHOD, OVERFLOW_VALUE, status), True
        self._series.add(folded)
        return folded, overflowed

    @property
    def series_bound(self) -> int:
        """The most distinct series :meth:`admit` can ever answer: ``max_series`` (route
        overflow series included) plus one global overflow series per status code."""
        return self.max_series + OVERFLOW_RESERVE_STATUSES

    @property
    def service_count(self) -> int:
        """Services with HTTP series (the overflow service included once it exists)."""
        return len(self._routes)

    def series(self) -> Iterator[SeriesKey]:
        """Every series admitted under the caps (overflow folds not included)."""
        return iter(self._series)

    @property
    def series_count(self) -> int:
        """Distinct series admitted under the caps (the overflow reserve excluded)."""
        return len(self._series)
