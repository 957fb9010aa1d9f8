"""The status page as HTML: the home page (every service) and one service's page.

Service names and routes come from anyone who can push, so every one goes through
:func:`text` (HTML-escaped, quotes included) before it reaches markup, attribute or SVG. The
page carries no inline script or style: ``status.js`` and ``status.css`` come from the
collector, under a Content-Security-Policy that allows nothing else.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import quote

from otelkit_collector import charts
from otelkit_collector.history import Point
from otelkit_collector.status import RouteStatus, ServiceStatus, StatusView, Window

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Headers of every page and asset: only the collector's own script and style run, nothing
frames the page, nothing is sniffed into another type."""

REFRESH_MILLISECONDS = 5_000
"""How often the page's script asks whether anything changed."""

UNNAMED = "(no service)"
"""How reports that named no service are listed."""


def text(value: str) -> str:
    """``value`` as HTML text or attribute value: nothing in it is markup."""
    return html.escape(value, quote=True)


def service_href(service: str | None) -> str:
    """The service page's address (a query for names a path cannot carry)."""
    if service is None:
        return "/services/"
    if service in {".", ".."}:
        return "/services/?name=" + quote(service, safe="")
    return "/services/" + quote(service, safe="")


def service_label(service: str | None) -> str:
    return text(service) if service is not None else f'<span class="muted">{UNNAMED}</span>'


def number(value: float | None, shown: str) -> str:
    """A figure as a ``<data>`` element: exact value for machines, ``shown`` for people."""
    if value is None:
        return '<span class="muted">—</span>'
    return f'<data value="{value!r}">{shown}</data>'


def count(value: int | None) -> str:
    return number(value, f"{value:,}" if value is not None else "")


def rate(value: float | None) -> str:
    if value is None:
        return number(None, "")
    return number(value, f"{value:.2f}/s" if value < 10 else f"{value:,.1f}/s")


def ratio(value: float | None) -> str:
    if value is None:
        return number(None, "")
    percent = value * 100
    shown = "&lt;0.1 %" if 0 < percent < 0.1 else f"{percent:.1f} %"
    return number(value, shown)


def latency(value: float | None) -> str:
    if value is None:
        return number(None, "")
    milliseconds = value * 1000
    if milliseconds < 10:
        return number(value, f"{milliseconds:.1f} ms")
    if milliseconds < 1000:
        return number(value, f"{milliseconds:.0f} ms")
    return number(value, f"{value:.2f} s")


def age_text(seconds: float) -> str:
    """``12 s``, ``3 min``, ``2 h``, ``4 d`` (status.js writes ages the same way)."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h"
    return f"{seconds // 86400:.0f} d"


def age(service: ServiceStatus) -> str:
    if service.last_report is None or service.age_seconds is None:
        return number(None, "")
    return (
        f'<span class="age" data-at="{service.last_report!r}">'
        f"{age_text(service.age_seconds)}</span>"
    )


def health(word: str) -> str:
    return f'<span class="health health-{word}">{word}</span>'


def _document(title: str, body: str, view: StatusView, stamp: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title>"
        '<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/assets/status.css">'
        '<script src="/assets/status.js" defer></script>'
        # Without scripts the page still refreshes, more slowly.
        '<noscript><meta http-equiv="refresh" content="30"></noscript>'
        "</head><body>"
        '<header><a class="brand" href="/">otelkit collector</a>'
        '<nav><a href="/metrics">/metrics</a> <a href="/api/status">/api/status</a> '
        '<a href="/api/metrics">/api/metrics</a> <a href="/docs">/docs</a></nav>'
        '<p id="refresh-state" class="muted">as of '
        f"{time.strftime('%H:%M:%S UTC', time.gmtime(view.generated_at))}</p></header>"
        f'<main id="status" data-stamp="{text(stamp)}" data-generated="{view.generated_at!r}" '
        f'data-refresh-ms="{REFRESH_MILLISECONDS}">{body}</main></body></html>\n'
    )


def _window_cells(window: Window) -> str:
    return (
        f'<td class="num">{rate(window.rate)}</td>'
        f'<td class="num">{ratio(window.error_ratio)}</td>'
        f'<td class="num">{latency(window.p50_seconds)}</td>'
        f'<td class="num">{latency(window.p95_seconds)}</td>'
    )


def _route_names(routes: Sequence[RouteStatus]) -> str:
    if not routes:
        return '<span class="muted">no requests reported</span>'
    items = "".join(
        f'<li><span class="method">{text(r.method)}</span> <code>{text(r.route)}</code></li>'
        for r in routes
    )
    noun = "route" if len(routes) == 1 else "routes"
    return f"<details><summary>{len(routes)} {noun}</summary><ul>{items}</ul></details>"


def _counts(view: StatusView) -> str:
    tally: dict[str, int] = {}
    for service in view.services:
        tally[service.health] = tally.get(service.health, 0) + 1
    parts = ", ".join(f"{count} {word}" for word, count in tally.items())
    noun = "service" if len(view.services) == 1 else "services"
    return f"{len(view.services)} {noun}" + (f": {parts}" if parts else "")


def render_home(view: StatusView, stamp: str, trend: Callable[[str, str], str]) -> str:
    """The home page: every service (those needing attention first), then the collector.

    ``trend`` draws a service's sparkline from its name (``""``: unnamed) and escaped title.
    """
    rows = []
    for service in view.services:
        name = service.service
        escaped = text(name) if name is not None else None
        label = escaped if escaped is not None else service_label(None)
        drawn = trend(name or "", f"traffic trend, {escaped or UNNAMED}")
        href = text(service_href(name))
        rows.append(
            f'<tr class="service" data-health="{service.health}" data-key="{href}">'
            f'<th scope="row"><a href="{href}">{label}</a></th>'
            f"<td>{health(service.health)}</td><td>{age(service)}</td>"
            f'<td class="num">{count(service.active_users)}</td>'
            f"{_window_cells(service.window)}<td>{drawn}</td>"
            f"<td>{_route_names(service.routes)}</td></tr>"
        )
    window = age_text(view.collector.history_seconds)
    table = (
        '<table class="services"><thead><tr><th scope="col">Service</th>'
        '<th scope="col">Health</th><th scope="col">Last health report</th>'
        '<th scope="col">Users</th><th scope="col">Requests</th><th scope="col">5xx</th>'
        '<th scope="col">p50</th><th scope="col">p95</th>'
        f'<th scope="col">Trend, {window}</th><th scope="col">Routes</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="empty">No service has reported yet. Push a report (see '
        '<a href="/docs">/docs</a>) and it appears here.</p>'
    )
    body = (
        f'<h1>Services</h1><p class="summary">{_counts(view)}. Requests, 5xx and latency over '
        f"{_window_text(view)}.</p>{table}{_collector_section(view)}"
    )
    return _document("otelkit collector", body, view, stamp)


def render_service(
    view: StatusView, stamp: str, charts_by_route: Mapping[tuple[str, str], Sequence[Point]]
) -> str:
    """One service's page: its health and figures, and each route with its chart."""
    service = view.services[0]
    name = service.service
    rows = []
    for route in service.routes:
        points = charts_by_route.get((route.method, route.route), ())
        chart = charts.route_chart(
            points,
            title=f"requests per second and p95 latency, {text(route.method)} {text(route.route)}",
            rate_label=_peak_rate(points),
            p95_label=_peak_p95(points),
        )
        rows.append(
            f'<tr class="route"><td class="method">{text(route.method)}</td>'
            f'<th scope="row"><code>{text(route.route)}</code></th>'
            f'<td class="num">{count(route.window.requests)}</td>'
            f"{_window_cells(route.window)}<td>{chart}</td></tr>"
        )
    table = (
        '<table class="routes"><thead><tr><th scope="col">Method</th>'
        '<th scope="col">Route</th><th scope="col">Requests</th><th scope="col">Rate</th>'
        '<th scope="col">5xx</th><th scope="col">p50</th><th scope="col">p95</th>'
        f'<th scope="col">Last {age_text(view.collector.history_seconds)}</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="empty">No HTTP report names this service.</p>'
    )
    body = (
        f'<p><a href="/">← all services</a></p><h1>{service_label(name)}</h1>'
        f'<dl class="facts"><dt>Health</dt><dd>{health(service.health)}</dd>'
        f"<dt>Last health report</dt><dd>{age(service)}</dd>"
        f"<dt>Active users</dt><dd>{count(service.active_users)}</dd>"
        f"<dt>Requests</dt><dd>{rate(service.window.rate)}</dd>"
        f"<dt>5xx</dt><dd>{ratio(service.window.error_ratio)}</dd>"
        f"<dt>p95</dt><dd>{latency(service.window.p95_seconds)}</dd></dl>"
        f'<h2>Routes</h2><p class="summary">Figures over {_window_text(view)}.</p>{table}'
    )
    return _document(f"{text(name or UNNAMED)} · otelkit collector", body, view, stamp)


def render_missing(service: str) -> str:
    """The body of a 404 for a service the collector does not know."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Unknown service · otelkit collector</title>"
        '<link rel="stylesheet" href="/assets/status.css"></head><body><main>'
        f"<h1>No service named <code>{text(service)}</code></h1>"
        '<p>It has sent no report since the collector started. <a href="/">All services</a></p>'
        "</main></body></html>\n"
    )


def _collector_section(view: StatusView) -> str:
    collector = view.collector
    reports = "".join(
        f'<tr><th scope="row">{text(outcome)}</th><td class="num">{count(reports)}</td></tr>'
        for outcome, reports in collector.reports.items()
    )
    return (
        '<section class="collector"><h2>Collector</h2><div class="panels">'
        f'<table class="reports"><caption>Reports</caption><tbody>{reports}</tbody></table>'
        '<dl class="facts">'
        f"<dt>HTTP series</dt><dd>{_in_use(collector.series, collector.max_series)}</dd>"
        f"<dt>Services with health or users</dt>"
        f"<dd>{_in_use(collector.services, collector.max_services)}</dd>"
        f"<dt>Services with HTTP series</dt>"
        f"<dd>{_in_use(collector.http_services, collector.max_services)}</dd>"
        f"<dt>Routes per service, at most</dt><dd>{collector.max_routes_per_service:,}</dd>"
        f"<dt>Health TTL</dt><dd>{age_text(collector.health_ttl_seconds)}</dd>"
        f"<dt>Uptime</dt><dd>{number(collector.uptime_seconds, age_text(collector.uptime_seconds))}"
        f"</dd><dt>Version</dt><dd>{text(collector.version)}</dd></dl></div></section>"
    )


def _in_use(used: int, cap: int) -> str:
    full = ' class="full"' if used >= cap else ""
    return f"<span{full}>{number(used, f'{used:,}')} of {cap:,}</span>"


def _window_text(view: StatusView) -> str:
    seconds = view.collector.window_seconds
    if seconds <= 0:
        return "the window (no tick taken yet)"
    return f"the last {age_text(seconds)}"


def _peak_rate(points: Iterable[Point]) -> str:
    return f"{max((p.rate for p in points), default=0.0):.2f}/s"


def _peak_p95(points: Iterable[Point]) -> str:
    peak = max((p.p95 or 0.0 for p in points), default=0.0)
    return f"{peak * 1000:.0f} ms" if peak < 1 else f"{peak:.2f} s"
