"""Request body cap: bodies past ``max_body_bytes`` get 413 without being read further.

Starlette reads whatever a client sends; this pure-ASGI guard buffers at most the cap (every
collector endpoint reads its whole body anyway), answers 413 as soon as the declared length
or the bytes received pass it, and replays the buffered body to the application.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
BODY_SCOPE_KEY = "otelkit.body"
"""Scope key under which the guard leaves the whole body it read, for error messages that
must point into it."""


async def send_json_error(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a complete JSON error response, shaped as every other: ``detail`` and ``message``."""
    body = json.dumps({"detail": detail, "message": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimitMiddleware:
    """Answer 413 for request bodies larger than ``max_body_bytes``.

    Args:
        app: the wrapped ASGI application.
        max_body_bytes: the largest body accepted.
        on_reject: called with the request path for each refused body (for self-metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.on_reject = on_reject
        self._detail = (
            f"request body exceeds max_body_bytes={max_body_bytes} (OTELKIT_MAX_BODY_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    if self.on_reject is not None:
                        self.on_reject(scope["path"])
                    await send_json_error(send, 400, "Content-Length header is not an integer")
                    return
                if declared > self.max_body_bytes:
                    await self._reject(scope, send)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away before sending its body: nothing to answer.
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._reject(scope, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        scope[BODY_SCOPE_KEY] = body
        await self.app(scope, replay_body(body, receive), send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject(scope["path"])
        await send_json_error(send, 413, self._detail, [(b"connection", b"close")])


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the application a body already read, then the real stream."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
