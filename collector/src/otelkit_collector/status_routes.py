"""HTTP routes of the status page: ``/``, ``/services/{name}``, ``/api/status`` and the page's
own script, style and icon. Read-only and open, like ``/metrics``."""

from __future__ import annotations

from importlib import resources
from typing import Annotated, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from otelkit.reports import MAX_SERVICE_LENGTH
from otelkit_collector import status_page
from otelkit_collector.status import StatusSource, StatusView, snapshot, stamp

router = APIRouter()

ASSETS: dict[str, tuple[str, bytes]] = {
    name: (media_type, (resources.files("otelkit_collector") / "assets" / name).read_bytes())
    for name, media_type in (
        ("status.css", "text/css; charset=utf-8"),
        ("status.js", "text/javascript; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    )
}
"""The page's files, read once: served from memory, never from another host."""


async def get_status_source(request: Request) -> StatusSource:
    """The app's status source (set by ``create_app``)."""
    return cast(StatusSource, request.app.state.status)


StatusDep = Annotated[StatusSource, Depends(get_status_source)]


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=dict(status_page.SECURITY_HEADERS))


@router.get("/", response_class=HTMLResponse, tags=["status page"])
async def home(source: StatusDep) -> HTMLResponse:
    """The status page: every service's health, users, traffic and routes; the collector."""
    view = snapshot(source, route_figures=False)
    return _html(status_page.render_home(view, stamp(source), source.trends))


@router.get("/services/{service:path}", response_class=HTMLResponse, tags=["status page"])
async def service_page(
    service: str,
    source: StatusDep,
    name: Annotated[
        str | None,
        Query(
            max_length=MAX_SERVICE_LENGTH,
            description="The service, for names a path cannot carry ('.', '..')",
        ),
    ] = None,
) -> HTMLResponse:
    """One service: its health and figures, each route with a chart of the kept history.
    ``/services/`` is the reports that named no service."""
    chosen = name if name is not None else service
    view = snapshot(source, only=chosen)
    if not view.services:
        return _html(status_page.render_missing(chosen), status_code=404)
    history = source.history
    keys = {(key.method, key.route): key for key in history.routes() if key.service == chosen}
    charts = {labels: history.chart([key]) for labels, key in keys.items()}
    return _html(status_page.render_service(view, stamp(source), charts))


@router.get("/api/status", response_model=StatusView, tags=["read"])
async def status_json(source: StatusDep) -> StatusView:
    """Everything the status page shows, as JSON."""
    return snapshot(source)


@router.get("/api/status/stamp", tags=["read"])
async def status_stamp(source: StatusDep) -> JSONResponse:
    """Changes whenever the status page may have: the page polls it, and reloads on change."""
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    return JSONResponse({"stamp": stamp(source)}, headers=headers)


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    """The page's script, style and icon."""
    found = ASSETS.get(name)
    if found is None:
        raise HTTPException(status_code=404, detail="Not Found")
    media_type, body = found
    headers = {**status_page.SECURITY_HEADERS, "Cache-Control": "public, max-age=300"}
    return Response(body, media_type=media_type, headers=headers)
