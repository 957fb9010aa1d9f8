"""The recent past of the HTTP histogram, per route: requests, 5xx and latency buckets per tick.

Fed by sampling the histogram's cumulative bucket counts every ``resolution`` seconds (see
:mod:`otelkit_collector.sampling`), never from the ingest path, so it costs reports nothing.
Memory is fixed per route: one ``array('I')`` of ``slots`` ticks by ``WIDTH`` counters, kept
only for routes that have recorded something, and at most ``max_series`` of them.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from otelkit.instruments import DURATION_BUCKETS_SECONDS
from otelkit_collector.state import Clock

SeriesLabels = tuple[str, str, str, int]
"""A histogram series' (service, method, route, status); ``""`` is the unnamed service."""

BUCKETS = len(DURATION_BUCKETS_SECONDS) + 1
"""Counters per tick for latency: one per finite bucket, and ``+Inf``."""

ERRORS = BUCKETS
"""Index, within a tick, of the count of 5xx responses."""

WIDTH = BUCKETS + 1
"""Counters per tick and route."""

TOTAL = WIDTH
"""Index, within a window sum, of all requests (a tick's total is the sum of its buckets)."""

_COUNTER_MAX = 2**32 - 1
"""``array('I')`` holds 32 bits: a tick's count is clamped there (4 billion per 10 s)."""


class RouteKey(NamedTuple):
    """One route of one service: what the page shows a row and a chart for."""

    service: str
    method: str
    route: str


@dataclass(frozen=True, slots=True)
class Figures:
    """A route's (or service's) traffic over a window.

    ``rate`` is requests per second; ``error_ratio`` is 5xx / all; ``p50`` and ``p95`` are in
    seconds, interpolated within buckets as Prometheus' ``histogram_quantile`` does. Each is
    ``None`` when there was no request to compute it from.
    """

    requests: int
    errors: int
    seconds: float
    rate: float | None
    error_ratio: float | None
    p50: float | None
    p95: float | None


@dataclass(frozen=True, slots=True)
class Point:
    """One tick of a chart: its end time, requests, requests per second and p95 (``None``: no
    request)."""

    at: float
    requests: int
    rate: float
    p95: float | None


def quantile(q: float, counts: Sequence[int], bounds: Sequence[float]) -> float | None:
    """The ``q`` quantile of per-bucket (not cumulative) ``counts`` with upper ``bounds``.

    Prometheus' ``histogram_quantile``: linear interpolation within the bucket the rank falls
    in, from 0 for the first bucket; a rank in ``+Inf`` answers the largest finite bound.
    """
    total = sum(counts[:BUCKETS])
    if total == 0:
        return None
    rank = q * total
    below = 0
    for index, bound in enumerate(bounds):
        count = counts[index]
        if below + count >= rank and count:
            start = bounds[index - 1] if index else 0.0
            return start + (bound - start) * (rank - below) / count
        below += count
    return bounds[-1]


class History:
    """Per route, the last ``slots`` ticks of requests, 5xx and latency buckets.

    Args:
        slots: ticks kept (90: 15 minutes at 10 s).
        window_slots: ticks the page's figures cover (30: the last 5 minutes at 10 s).
        max_series: histogram series followed at most (the caps bound them anyway; this
            keeps the history bounded whatever it is fed).
        clock: unix time; the first tick counts from when the history was made.
    """

    def __init__(
        self,
        *,
        slots: int = 90,
        window_slots: int = 30,
        max_series: int = 2_500,
        clock: Clock = time.time,
    ) -> None:
        if not 1 <= window_slots <= slots:
            raise ValueError(f"window_slots must be within 1-{slots}, got {window_slots}")
        self.slots = slots
        self.window_slots = window_slots
        self.max_series = max_series
        self.bounds: tuple[float, ...] = DURATION_BUCKETS_SECONDS
        self._clock = clock
        self.samples = 0
        """Ticks taken so far."""
        # times[t % (slots + 1)] is when tick t ended; the one before the oldest kept tick
        # is still there, so every kept tick has a start.
        self._times = array("d", [clock()] * (slots + 1))
        self._previous: dict[SeriesLabels, array[int]] = {}
        self._routes: dict[RouteKey, _Route] = {}
        # Requests per tick and service, for the home page's trends.
        self._services: dict[str, array[int]] = {}
        self._zero_tick = array("I", bytes(4 * WIDTH))

    def sample(self, series: Iterable[tuple[SeriesLabels, Sequence[int]]]) -> None:
        """Take one tick from each series' cumulative per-bucket counts (``BUCKETS`` each,
        not cumulative across buckets: the count within each bucket since start)."""
        tick = self.samples
        slot = (tick % self.slots) * WIDTH
        leaving = tick - self.window_slots
        leaving_slot = (leaving % self.slots) * WIDTH if leaving >= 0 else None
        zero = self._zero_tick
        for kept in self._routes.values():
            if leaving_slot is not None and kept.window[TOTAL]:
                _subtract(kept.window, kept.ring, leaving_slot)
            kept.ring[slot : slot + WIDTH] = zero
        service_slot = tick % self.slots
        for totals in self._services.values():
            totals[service_slot] = 0
        for labels, counts in series:
            delta = self._delta(labels, counts)
            if delta is None:
                continue
            service, method, route_name, status = labels
            key = RouteKey(service, method, route_name)
            route = self._routes.get(key)
            if route is None:
                route = self._routes[key] = _Route(self.slots)
                if service not in self._services:
                    self._services[service] = array("I", bytes(4 * self.slots))
            ring, window = route.ring, route.window
            added = 0
            for index, count in enumerate(delta):
                if count:
                    before = ring[slot + index]
                    after = ring[slot + index] = min(_COUNTER_MAX, before + count)
                    window[index] += after - before
                    added += after - before
            if status >= 500:
                before = ring[slot + ERRORS]
                after = ring[slot + ERRORS] = min(_COUNTER_MAX, before + added)
                window[ERRORS] += after - before
            window[TOTAL] += added
            totals = self._services[service]
            totals[service_slot] = min(_COUNTER_MAX, totals[service_slot] + added)
        self._times[(tick + 1) % (self.slots + 1)] = self._clock()
        self.samples = tick + 1

    def _delta(self, labels: SeriesLabels, counts: Sequence[int]) -> list[int] | None:
        """What ``labels`` recorded since the previous tick; ``None`` when nothing."""
        previous = self._previous.get(labels)
        if previous is None:
            if len(self._previous) >= self.max_series:
                return None
            previous = self._previous[labels] = array("Q", bytes(8 * BUCKETS))
        delta = [now - before for now, before in zip(counts, previous, strict=True)]
        if min(delta) < 0:
            # The histogram restarted: everything it holds is new.
            delta = list(counts)
        previous[:] = array("Q", counts)
        return delta if any(delta) else None

    @property
    def window_seconds(self) -> float:
        """How long the figures' window is, as of the latest tick (shorter at first)."""
        newest = self.samples
        oldest = max(0, newest - self.window_slots)
        return self._time(newest) - self._time(oldest)

    def _time(self, tick: int) -> float:
        return self._times[tick % (self.slots + 1)]

    def routes(self) -> Iterable[RouteKey]:
        """Every route that has recorded a request since the collector started."""
        return self._routes.keys()

    def figures(self, keys: Iterable[RouteKey], seconds: float | None = None) -> Figures:
        """The window's figures for ``keys`` together (one route, or a service's routes);
        ``seconds``: :attr:`window_seconds`, when the caller has it already."""
        windows = [route.window for key in keys if (route := self._routes.get(key)) is not None]
        if len(windows) == 1:
            summed: Sequence[int] = windows[0]
        else:
            summed = [sum(column) for column in zip(*windows, strict=True)] or [0] * (WIDTH + 1)
        return self._figures(summed, self.window_seconds if seconds is None else seconds)

    def _figures(self, counts: Sequence[int], seconds: float) -> Figures:
        requests, errors = counts[TOTAL], counts[ERRORS]
        p50 = p95 = None
        if requests:
            p50, p95 = quantile(0.5, counts, self.bounds), quantile(0.95, counts, self.bounds)
        return Figures(
            requests=requests,
            errors=errors,
            seconds=seconds,
            rate=requests / seconds if seconds > 0 and self.samples else None,
            error_ratio=errors / requests if requests else None,
            p50=p50,
            p95=p95,
        )

    def chart(self, keys: Iterable[RouteKey]) -> list[Point]:
        """The kept ticks for ``keys`` together, oldest first."""
        rings = [r.ring for key in keys if (r := self._routes.get(key)) is not None]
        first = max(0, self.samples - self.slots)
        points = []
        for tick in range(first, self.samples):
            slot = (tick % self.slots) * WIDTH
            if len(rings) == 1:
                counts: Sequence[int] = rings[0][slot : slot + WIDTH]
            else:
                tick_slices = [ring[slot : slot + WIDTH] for ring in rings]
                counts = [sum(column) for column in zip(*tick_slices, strict=True)] or [0] * WIDTH
            seconds = self._time(tick + 1) - self._time(tick)
            requests = sum(counts[:BUCKETS])
            points.append(
                Point(
                    at=self._time(tick + 1),
                    requests=requests,
                    rate=requests / seconds if seconds > 0 else 0.0,
                    p95=quantile(0.95, counts, self.bounds) if requests else None,
                )
            )
        return points

    def service_totals(self, service: str) -> list[int]:
        """A service's requests per kept tick, oldest first (empty when it has none)."""
        totals = self._services.get(service)
        if totals is None:
            return []
        if self.samples <= self.slots:
            return totals[: self.samples].tolist()
        start = self.samples % self.slots
        return totals[start:].tolist() + totals[:start].tolist()

    @property
    def route_count(self) -> int:
        """Routes kept."""
        return len(self._routes)


class _Route:
    """One route's ticks (``ring``) and their running sum over the window (``window``: the
    buckets, then 5xx, then all requests)."""

    __slots__ = ("ring", "window")

    def __init__(self, slots: int) -> None:
        self.ring = array("I", bytes(4 * slots * WIDTH))
        self.window = array("Q", bytes(8 * (WIDTH + 1)))


def _subtract(window: array[int], ring: array[int], slot: int) -> None:
    """Take one tick, about to leave the window, out of its running sum."""
    total = 0
    for index in range(BUCKETS):
        count = ring[slot + index]
        window[index] -= count
        total += count
    window[ERRORS] -= ring[slot + ERRORS]
    window[TOTAL] -= total
