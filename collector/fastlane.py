"""A fast lane for the hot writes: HTTP reports that are valid as sent.

``POST /api/metrics/http`` and ``/api/metrics/http/batch`` carry nearly all of a collector's
traffic, and nearly all of it is valid. Through FastAPI, each such request pays for routing,
dependency solving and response-model serialisation, which cost several times the recording
itself. This pure-ASGI lane, inside the auth and body-size guards, serves those requests
directly with the same parser and the same pydantic models FastAPI uses; everything it does
not accept (another content type, a body that does not parse or breaks a rule) is replayed,
body and all, through the full application, so every refusal is exactly the documented one,
counted in the self-metrics like any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.limits import replay_body
from collector.recorder import Recorder
from otelkit.reports import HttpReport, HttpReportBatch

_SINGLE = "/api/metrics/http"
_BATCH = "/api/metrics/http/batch"
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _single(report: HttpReport) -> list[HttpReport]:
    return [report]


def _batch(batch: HttpReportBatch) -> list[HttpReport]:
    return batch.reports


_LANES: dict[str, tuple[type[BaseModel], Callable[[Any], list[HttpReport]]]] = {
    _SINGLE: (HttpReport, _single),
    _BATCH: (HttpReportBatch, _batch),
}


def is_json_content_type(value: bytes | None) -> bool:
    """Whether FastAPI would parse a body with this Content-Type as JSON, for the plain cases.

    Only ``application/json`` (any case, any parameters) and a missing header qualify here;
    rarer forms FastAPI also parses (``application/*+json``) simply take the full route.
    """
    if value is None:
        return True
    media_type = value.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


class IngestFastLane:
    """Record valid HTTP reports without the framework round trip; replay anything else.

    Args:
        app: the full application, which answers every request this lane does not take.
        recorder: where accepted reports are recorded (the one the routes use).
    """

    def __init__(self, app: ASGIApp, *, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = _LANES.get(scope["path"]) if scope["type"] == "http" else None
        if lane is None or scope["method"] != "POST" or not _takes(scope):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body: nothing to answer
        if body:
            model, reports_of = lane
            try:
                parsed = model.model_validate(json.loads(body))
            except (ValueError, RecursionError, ValidationError):
                pass  # refused: the full route answers with the rule that was broken
            else:
                reports = reports_of(parsed)
                overflowed = self.recorder.record_http_reports(reports)
                answer = f'{{"accepted":{len(reports)},"overflowed":{overflowed}}}'.encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-length", str(len(answer)).encode()),
                            *_JSON_HEADERS,
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": answer})
                return
        await self.app(scope, replay_body(body, receive), send)


def _takes(scope: Scope) -> bool:
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
            break
    return is_json_content_type(content_type)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (already capped by the body-size guard); ``None`` on a disconnect."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
