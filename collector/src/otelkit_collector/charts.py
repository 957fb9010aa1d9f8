"""Inline SVG charts for the status page, drawn on the server: no script, no chart library.

Every text that reaches the SVG is passed in already escaped by the caller or made here from
numbers; colours come from classes the page's stylesheet defines (the page's
Content-Security-Policy allows no inline style).
"""

from __future__ import annotations

from collections.abc import Sequence

from otelkit_collector.history import Point


def _coordinates(values: Sequence[float], width: float, height: float, top: float) -> str:
    """Polyline points for ``values`` spread over ``width``, scaled to their maximum."""
    peak = max(values) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(
        f"{index * step:.1f},{top + height - value / peak * height:.1f}"
        for index, value in enumerate(values)
    )


def sparkline(values: Sequence[float], *, title: str, width: int = 120, height: int = 24) -> str:
    """A one-line trend of ``values`` (oldest first); ``title`` must be escaped already."""
    if len(values) < 2:
        return '<span class="muted">no data yet</span>'
    points = _coordinates(values, width, height - 2, 1)
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{title}"><title>{title}</title>'
        f'<polyline class="line-rate" fill="none" points="{points}"/></svg>'
    )


def route_chart(
    points: Sequence[Point], *, title: str, rate_label: str, p95_label: str, width: int = 300
) -> str:
    """Requests per second (above) and p95 latency (below) over the kept ticks.

    ``title``, ``rate_label`` and ``p95_label`` (each pane's peak, as text) must be escaped
    already.
    """
    if len(points) < 2:
        return '<span class="muted">no data yet</span>'
    pane, gap = 28, 14
    height = 2 * pane + 2 * gap
    rates = [point.rate for point in points]
    latencies = [point.p95 or 0.0 for point in points]
    rate_line = _coordinates(rates, width, pane, gap)
    p95_line = _coordinates(latencies, width, pane, 2 * gap + pane)
    return (
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<text class="axis" x="0" y="10">req/s, peak {rate_label}</text>'
        f'<line class="baseline" x1="0" y1="{gap + pane}" x2="{width}" y2="{gap + pane}"/>'
        f'<polyline class="line-rate" fill="none" points="{rate_line}"/>'
        f'<text class="axis" x="0" y="{gap + pane + 11}">p95, peak {p95_label}</text>'
        f'<line class="baseline" x1="0" y1="{height}" x2="{width}" y2="{height}"/>'
        f'<polyline class="line-p95" fill="none" points="{p95_line}"/>'
        "</svg>"
    )
