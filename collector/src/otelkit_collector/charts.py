"""Inline SVG charts for the status page, drawn on the server: no script, no chart library.

Every text that reaches the SVG is passed in already escaped by the caller or made here from
numbers; colours come from classes the page's stylesheet defines (the page's
Content-Security-Policy allows no inline style).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import chain
from operator import add

from otelkit_collector.history import History, Point


@functools.cache
def _points_format(count: int) -> str:
    """``"%d,-%d %d,-%d ..."`` for ``count`` points: one ``%`` formats them all."""
    return " ".join(["%d,-%d"] * count)


def _pane(values: Sequence[int], *, x: int, y: int, width: int, height: int, line: str) -> str:
    """``values`` (oldest first) as a polyline in a nested SVG scaled to fit its box.

    The points are the raw integers, ``index,-value``; the pane's ``viewBox`` maps them onto
    its box (``preserveAspectRatio="none"``), so nothing is scaled or formatted as a float
    here: a page of 1,000 sparklines costs a join, not 90,000 float conversions.
    """
    peak = max(1, max(values))
    points = _points_format(len(values)) % tuple(chain.from_iterable(enumerate(values)))
    return (
        f'<svg x="{x}" y="{y}" width="{width}" height="{height}" '
        f'viewBox="0 -{peak} {len(values) - 1} {peak}" preserveAspectRatio="none">'
        f'<polyline class="{line}" fill="none" vector-effect="non-scaling-stroke" '
        f'points="{points}"/></svg>'
    )


class TrendCache:
    """Each service's sparkline on the home page, drawn once per history tick.

    A page of 1,000 services would otherwise format 90,000 coordinates on every load. Holds
    one drawing per service the history knows (bounded as the history is), all dropped at
    each new tick.
    """

    def __init__(self, history: History) -> None:
        self._history = history
        self._tick = -1
        self._drawn: dict[str, str] = {}

    def __call__(self, service: str, title: str) -> str:
        """``service``'s sparkline (``""``: unnamed); ``title`` must be escaped already."""
        if self._history.samples != self._tick:
            self._drawn.clear()
            self._tick = self._history.samples
        drawn = self._drawn.get(service)
        if drawn is None:
            values = coarsen(self._history.service_totals(service), SPARKLINE_POINTS)
            drawn = self._drawn[service] = sparkline(values, title=title)
        return drawn


SPARKLINE_POINTS = 45
"""Points a home-page sparkline draws at most: 120 pixels show no more, and each point costs
every page of 1,000 services a thousand formatted numbers."""


def coarsen(values: Sequence[int], most: int) -> list[int]:
    """``values`` summed in runs of equal length so that at most ``most`` remain; the runs end
    at the newest value, so the latest tick is always a point of its own run."""
    if len(values) <= most:
        return list(values)
    run = -(-len(values) // most)
    start = len(values) % run
    # Column by column (run passes of map, not one sum() per point): this runs for every
    # service of the home page once per tick.
    sums = list(values[start::run])
    for offset in range(1, run):
        sums = list(map(add, sums, values[start + offset :: run]))
    return [sum(values[:start]), *sums] if start else sums


def sparkline(values: Sequence[int], *, title: str, width: int = 120, height: int = 24) -> str:
    """A one-line trend of ``values`` (oldest first); ``title`` must be escaped already."""
    if len(values) < 2:
        return '<span class="muted">no data yet</span>'
    pane = _pane(values, x=0, y=1, width=width, height=height - 2, line="line-rate")
    return (
        f'<svg class="spark" width="{width}" height="{height}" role="img" '
        f'aria-label="{title}"><title>{title}</title>{pane}</svg>'
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
    # Requests per tick draw the rate (ticks are evenly spaced); p95 in tenths of a millisecond.
    requests = [point.requests for point in points]
    latencies = [round((point.p95 or 0.0) * 10_000) for point in points]
    rate_pane = _pane(requests, x=0, y=gap, width=width, height=pane, line="line-rate")
    p95_pane = _pane(latencies, x=0, y=2 * gap + pane, width=width, height=pane, line="line-p95")
    return (
        f'<svg class="chart" width="{width}" height="{height}" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        f'<text class="axis" x="0" y="10">req/s, peak {rate_label}</text>'
        f'<line class="baseline" x1="0" y1="{gap + pane}" x2="{width}" y2="{gap + pane}"/>'
        f"{rate_pane}"
        f'<text class="axis" x="0" y="{gap + pane + 11}">p95, peak {p95_label}</text>'
        f'<line class="baseline" x1="0" y1="{height}" x2="{width}" y2="{height}"/>'
        f"{p95_pane}</svg>"
    )
