"""Pure ASGI middleware recording ``http_request_duration_seconds{method,route,status}``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otelkit import instruments

if TYPE_CHECKING:
    from otelkit.bound import BoundSeries
    from otelkit.tracing import ServerSpans

logger = logging.getLogger(__name__)

UNMATCHED_ROUTE = "__unmatched__"
"""Route label shared by every request no route matched (404s, scanners)."""

DEFAULT_EXCLUDED_PATHS = ("/metrics", "/healthz")

_RECORDING = "otelkit.recording"
"""Scope key marking a request an otelkit middleware is already recording."""

RequestHook = Callable[[str, str, int, float], None]
"""Called with (method, route, status, duration seconds) after each recorded request."""

_METHOD_LABELS = {method: method for method in instruments.HTTP_METHODS}

_SERIES_CACHE_SIZE = 4_096
"""Label sets kept ready to record: every (method, route, status) an app serves, bounded so
that an app answering with arbitrary statuses cannot grow it."""

_Series = tuple[dict[str, str], "BoundSeries | None"]
"""A label set's attributes, and its bound series (``None`` where it cannot be bound)."""


def _flatten(routes: Iterable[Any]) -> list[Any]:
    # Newer FastAPI releases nest included routers in the route list; their
    # iter_route_contexts flattens them into contexts that carry the full template (prefixes
    # included). Older ones copy the routes in flat, and plain Starlette has no such nesting.
    # An app can only hold FastAPI routes once FastAPI is imported, so it is not imported here.
    fastapi_routing = sys.modules.get("fastapi.routing")
    flatten = getattr(fastapi_routing, "iter_route_contexts", None)
    return list(flatten(list(routes))) if flatten is not None else list(routes)


def _template(route: Any) -> str | None:
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def match_route_template(routes: Iterable[Any], scope: Scope) -> str | None:
    """The template of the route ``scope`` matches, prefixed by the templates of its mounts."""
    for route in _flatten(routes):
        match, child_scope = route.matches(scope)
        if match != Match.FULL:
            continue
        original = getattr(route, "original_route", route)
        if isinstance(original, Mount):
            if original.routes:
                inner = match_route_template(original.routes, {**scope, **child_scope})
                return original.path + inner if inner is not None else None
            return original.path or None
        return _template(route)
    return None


def route_templates(routes: Iterable[Any]) -> dict[int, str | None]:
    """Full template per route object (``None`` when one object serves several templates)."""
    templates: dict[int, str | None] = {}
    for context in _flatten(routes):
        original = getattr(context, "original_route", context)
        if isinstance(original, Mount):
            continue
        template = _template(context)
        key = id(original)
        templates[key] = template if templates.get(key, template) == template else None
    return templates


_path_logged = False


def _log_recording_path_once() -> None:
    """Say once per process which path histogram values take on the installed SDK."""
    global _path_logged
    if _path_logged:
        return
    _path_logged = True
    from otelkit.bound import fast_path_available, fast_path_description

    level = logging.INFO if fast_path_available() else logging.WARNING
    logger.log(level, "otelkit: %s", fast_path_description())


class MetricsMiddleware:
    """Records every HTTP request's duration in the catalogue's histogram.

    * ``route`` is the route template (``/api/courses/{course_id}``), mounts included;
      requests no route matches share ``route="__unmatched__"``.
    * methods outside the standard set are recorded as ``_OTHER``.
    * an exception is recorded as status 500 and re-raised untouched.
    * the duration ends when the last byte of the response body is sent.

    Args:
        app: the wrapped ASGI application.
        meter_provider: where the histogram lives (default: the global provider).
        excluded_paths: exact paths not recorded (default ``/metrics`` and ``/healthz``).
        on_request: called after each recorded request, e.g. to push it to the collector;
            it must not raise (if it does, the error is logged once and ignored). With
            tracing on, the request's span is still the current one when it is called.
        tracer_provider: trace each request with a SERVER span from this provider (see
            :mod:`otelkit.tracing`); ``None``, the default, traces nothing and costs nothing.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        meter_provider: MeterProvider | None = None,
        excluded_paths: Sequence[str] = DEFAULT_EXCLUDED_PATHS,
        on_request: RequestHook | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.app = app
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self._histogram = instruments.create_http_duration_histogram(
            provider.get_meter(instruments.METER_NAME)
        )
        self.excluded_paths = frozenset(excluded_paths)
        _log_recording_path_once()
        self.on_request = on_request
        self._hook_failed = False
        # Full template per route object of the top-level app, rebuilt when its routes change.
        self._templates: dict[int, str | None] = {}
        self._templates_app = 0
        self._templates_count = -1
        # Per (request method, route, status): the attributes, built once, and the series
        # bound to the SDK's aggregation (see otelkit.bound), which skips record()'s pipeline.
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._spans: ServerSpans | None = None
        if tracer_provider is not None:
            from otelkit.tracing import ServerSpans

            self._spans = ServerSpans(tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.excluded_paths
            # An outer MetricsMiddleware (e.g. around the app this one is mounted in)
            # already records this request, with the full template.
            or _RECORDING in scope
        ):
            await self.app(scope, receive, send)
            return
        scope[_RECORDING] = True
        if self._spans is not None and not self._spans.upstream_span_active():
            await self._traced(scope, receive, send, self._spans)
            return

        entry_root_path = scope.get("root_path", "")
        # Added with add_middleware, the app is in the scope; wrapped around an app
        # directly (``MetricsMiddleware(app)``), the wrapped app holds the routes.
        entry_app = scope.get("app", self.app)
        entry_path = scope["path"]
        status = 500  # preset: an exception before the response starts counts as 500
        ended_at: float | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, ended_at
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended_at = perf_counter()
            await send(message)

        started_at = perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            # The client got no complete response: a server error, whatever was started.
            # (After the last body byte, e.g. in a background task, the status stands.)
            if ended_at is None:
                status = 500
            raise
        finally:
            # Recorded in finally so exceptions count too.
            duration = (ended_at if ended_at is not None else perf_counter()) - started_at
            self._finish(scope, entry_root_path, entry_app, entry_path, status, duration)

    async def _traced(self, scope: Scope, receive: Receive, send: Send, spans: ServerSpans) -> None:
        """:meth:`__call__` inside the request's SERVER span, current until it is recorded."""
        entry_root_path = scope.get("root_path", "")
        entry_app = scope.get("app", self.app)
        entry_path = scope["path"]
        status = 500
        ended_at: float | None = None
        error: BaseException | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, ended_at
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended_at = perf_counter()
            await send(message)

        try:
            span, token = spans.start(scope)
        except Exception:
            self._log_failure_once()
            span, token = None, None
        started_at = perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            error = exc
            if ended_at is None:
                status = 500
            raise
        finally:
            duration = (ended_at if ended_at is not None else perf_counter()) - started_at
            # Recorded while the span is current: the bucket's exemplar is this span.
            template = self._finish(scope, entry_root_path, entry_app, entry_path, status, duration)
            if span is not None:
                try:
                    method = _METHOD_LABELS.get(scope["method"]) or instruments.normalize_method(
                        scope["method"]
                    )
                    route = template if template != UNMATCHED_ROUTE else None
                    spans.finish_attributes(span, method, route, status, error)
                finally:
                    spans.end(span, token)

    def _finish(
        self,
        scope: Scope,
        entry_root_path: str,
        entry_app: Any,
        entry_path: str,
        status: int,
        duration: float,
    ) -> str:
        """Resolve the route template and record the request; never raises. Returns the
        template.

        One call per request on purpose: this is the whole per-request cost otelkit adds
        besides the histogram itself, and each Python call layer costs a measurable share.
        """
        try:
            template: str | None = None
            route = scope.get("route")
            if route is not None and scope.get("root_path", "") == entry_root_path:
                routes = getattr(entry_app, "routes", None)
                if routes is not None:
                    if self._templates_count != len(routes) or self._templates_app != id(entry_app):
                        self._templates = route_templates(routes)
                        self._templates_app, self._templates_count = id(entry_app), len(routes)
                    template = self._templates.get(id(route))
            if template is None:
                template = self._route(scope, entry_root_path, entry_app, entry_path)
        except Exception:
            # Never let label resolution replace the application's own outcome.
            self._log_failure_once()
            template = UNMATCHED_ROUTE
        try:
            key = (scope["method"], template, status)
            series = self._series.get(key)
            if series is None or series[1] is None or not series[1].record(duration):
                series = self._record_series(key, series, duration)
            if self.on_request is not None:
                self.on_request(series[0]["method"], template, status, duration)
        except Exception:
            self._log_failure_once()
        return template

    def _route(self, scope: Scope, entry_root_path: str, entry_app: Any, entry_path: str) -> str:
        """The template when the kept table does not know the route object."""
        route = scope.get("route")
        routes = getattr(entry_app, "routes", None)
        if routes is None:
            return (_template(route) if route is not None else None) or UNMATCHED_ROUTE
        # Served inside a mount, by a route object used under several prefixes, or by a
        # stack that copied the scope: match against the top-level routes. Only such
        # requests and unmatched ones pay for this.
        entry_scope = {**scope, "path": entry_path, "root_path": entry_root_path}
        entry_scope.pop("route", None)
        entry_scope["path_params"] = {}
        return match_route_template(routes, entry_scope) or UNMATCHED_ROUTE

    def _record_series(
        self, key: tuple[str, str, int], series: _Series | None, duration: float
    ) -> _Series:
        """Record through ``Histogram.record()``; keep the label set, bound when it can be.

        Reached for a label set's first request, for every request of one the SDK setup
        does not let :mod:`otelkit.bound` bind, and after readers were added or removed.
        """
        if series is not None:
            attributes = series[0]
        else:
            raw_method, route, status = key
            method = _METHOD_LABELS.get(raw_method) or instruments.normalize_method(raw_method)
            attributes = {"method": method, "route": route, "status": str(status)}
        self._histogram.record(duration, attributes)
        if series is not None and series[1] is None:
            return series
        if series is None and len(self._series) >= _SERIES_CACHE_SIZE:
            return (attributes, None)
        # Imported here, on a label set's first request: it loads the SDK, which an app that
        # only imports otelkit does not need yet.
        from otelkit.bound import bind

        series = (attributes, bind(self._histogram, attributes))
        self._series[key] = series
        return series

    def _log_failure_once(self) -> None:
        if not self._hook_failed:
            self._hook_failed = True
            logger.exception("otelkit: recording a request failed; further failures are silent")
