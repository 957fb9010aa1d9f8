"""What the status page shows, as data: every service, its routes and the collector itself.

One snapshot feeds the HTML page and ``GET /api/status``, so the two cannot disagree. Built
from the state, the history and the recorder's counts; never from a registry collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from otelkit.instruments import REPORT_OUTCOMES
from otelkit_collector.history import Figures, History, RouteKey
from otelkit_collector.recorder import Recorder
from otelkit_collector.sampling import SeriesSource
from otelkit_collector.settings import CollectorSettings

HealthWord = Literal["stale", "down", "unhealthy", "degraded", "unknown", "healthy"]
"""A service's health on the page: a reported status, ``stale`` past the TTL, or ``unknown``
for a service that sends HTTP reports or users but has never reported its health."""

HEALTH_ORDER: dict[str, int] = {
    word: rank
    for rank, word in enumerate(("stale", "down", "unhealthy", "degraded", "unknown", "healthy"))
}
"""Rows sort by this first: what needs a person's eyes comes first."""


@dataclass(slots=True)
class Window:
    """Traffic over the page's window (the latest ``seconds``)."""

    requests: Annotated[int, Field(description="Requests reported in the window")]
    errors: Annotated[int, Field(description="Of those, with a 5xx status")]
    seconds: Annotated[
        float, Field(description="How long the window is (shorter just after start)")
    ]
    rate: Annotated[
        float | None, Field(description="Requests per second; null before the first tick")
    ]
    error_ratio: Annotated[
        float | None, Field(description="errors / requests; null without requests")
    ]
    p50_seconds: Annotated[float | None, Field(description="Median latency, as histogram_quantile")]
    p95_seconds: Annotated[float | None, Field(description="95th percentile latency")]


@dataclass(slots=True)
class RouteStatus:
    """One route of a service."""

    method: str
    route: str
    window: Window


@dataclass(slots=True)
class ServiceStatus:
    """One service: health, users and traffic (``service`` is null for unnamed reports)."""

    service: str | None
    health: HealthWord
    last_report: Annotated[float | None, Field(description="Unix time of the last health report")]
    age_seconds: Annotated[float | None, Field(description="Seconds since the last health report")]
    active_users: int | None
    window: Window
    routes: list[RouteStatus]


@dataclass(slots=True)
class CollectorStatus:
    """The collector itself."""

    version: str
    started_at: float
    uptime_seconds: float
    reports: Annotated[dict[str, int], Field(description="Reports of every kind, per outcome")]
    series: Annotated[int, Field(description="HTTP series admitted under the caps")]
    max_series: int
    services: Annotated[
        int, Field(description="Named services with health or users (max_services)")
    ]
    http_services: Annotated[int, Field(description="Services with HTTP series (max_services)")]
    max_services: int
    max_routes_per_service: int
    health_ttl_seconds: float
    history_seconds: Annotated[float, Field(description="How far back the page's charts reach")]
    resolution_seconds: Annotated[float, Field(description="One tick of that history")]
    window_seconds: Annotated[
        float, Field(description="What the figures cover, as of the latest tick")
    ]
    ticks: Annotated[int, Field(description="Ticks taken since the collector started")]


@dataclass(slots=True)
class StatusView:
    """Everything the status page shows."""

    generated_at: float
    services: Annotated[
        list[ServiceStatus], Field(description="Stale and unhealthy services first")
    ]
    collector: CollectorStatus


@dataclass(frozen=True, slots=True)
class StatusSource:
    """What a snapshot is read from; made once by the app factory."""

    recorder: Recorder
    history: History
    series: SeriesSource
    """Where each tick reads the HTTP histogram."""
    settings: CollectorSettings
    started_at: float
    version: str
    trends: Callable[[str, str], str]
    """Each service's home-page sparkline by name and escaped title (``charts.TrendCache``)."""

    def take_tick(self) -> None:
        """Add one tick to the history (the app does it every ``history_resolution_seconds``)."""
        self.history.sample(self.series())


NO_WINDOW = Window(
    requests=0,
    errors=0,
    seconds=0.0,
    rate=None,
    error_ratio=None,
    p50_seconds=None,
    p95_seconds=None,
)
"""A route's window where its figures were not asked for."""


def window_of(figures: Figures) -> Window:
    """A history window as the API shows it."""
    return Window(
        requests=figures.requests,
        errors=figures.errors,
        seconds=figures.seconds,
        rate=figures.rate,
        error_ratio=figures.error_ratio,
        p50_seconds=figures.p50,
        p95_seconds=figures.p95,
    )


def snapshot(
    source: StatusSource, *, only: str | None = None, route_figures: bool = True
) -> StatusView:
    """The status as of now; ``only`` keeps one service (``""``: the unnamed one).

    Without ``route_figures``, each route is named with an empty window (the home page shows
    only the service's figures and its routes' names).
    """
    state, history = source.recorder.state, source.history
    now = state.clock()
    seconds = history.window_seconds
    health = {view.service: view for view in state.health_views()}
    users = {service or "": entry.count for service, entry in state.users()}
    routes: dict[str, set[RouteKey]] = {}
    for key in history.routes():
        routes.setdefault(key.service, set()).add(key)
    # Series recorded since the latest tick are listed too, with no figures yet.
    for series in source.recorder.guard.series():
        key = RouteKey(series.service, series.method, series.route)
        routes.setdefault(key.service, set()).add(key)
    names: Iterable[str] = {*health, *users, *routes}
    if only is not None:
        names = [only] if only in names else []
    services = []
    for name in names:
        view = health.get(name)
        keys = sorted(routes.get(name, ()), key=lambda key: (key.route, key.method))
        services.append(
            ServiceStatus(
                service=name or None,
                health=view.status if view is not None else "unknown",
                last_report=view.reported_at if view is not None else None,
                age_seconds=view.age_seconds if view is not None else None,
                active_users=users.get(name),
                window=window_of(history.figures(keys, seconds)),
                routes=[
                    RouteStatus(
                        method=key.method,
                        route=key.route,
                        window=window_of(history.figures([key], seconds))
                        if route_figures
                        else NO_WINDOW,
                    )
                    for key in keys
                ],
            )
        )
    services.sort(key=lambda s: (HEALTH_ORDER[s.health], s.service or ""))
    return StatusView(generated_at=now, services=services, collector=collector_status(source))


def collector_status(source: StatusSource) -> CollectorStatus:
    """The collector's own figures: reports per outcome, caps in use, uptime."""
    recorder, settings = source.recorder, source.settings
    reports: dict[str, int] = dict.fromkeys(REPORT_OUTCOMES, 0)
    for (_, outcome), count in recorder.report_totals().items():
        reports[outcome] += count
    now = recorder.state.clock()
    return CollectorStatus(
        version=source.version,
        started_at=source.started_at,
        uptime_seconds=max(0.0, now - source.started_at),
        reports=reports,
        series=recorder.guard.series_count,
        max_series=settings.max_series,
        services=recorder.state.named_count,
        http_services=recorder.guard.service_count,
        max_services=settings.max_services,
        max_routes_per_service=settings.max_routes_per_service,
        health_ttl_seconds=settings.health_ttl_seconds,
        history_seconds=settings.history_seconds,
        resolution_seconds=settings.history_resolution_seconds,
        window_seconds=source.history.window_seconds,
        ticks=source.history.samples,
    )


def stamp(source: StatusSource) -> str:
    """Changes whenever what the page shows may have: a page polls it to know when to reload.

    A health or users report, a tick, a service turning stale change it. The collector's
    report counts alone do not: they change with every push, and the page shows them as of
    its latest reload (at the latest, the next tick's).
    """
    state = source.recorder.state
    stale = sum(1 for view in state.health_views() if view.status == "stale")
    return f"{state.version}.{source.history.samples}.{stale}"
