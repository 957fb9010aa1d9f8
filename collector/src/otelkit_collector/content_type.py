"""Request bodies must be JSON: any other declared ``Content-Type`` gets 415 naming the one
expected, before FastAPI would answer it with a confusing validation error.

A body without a ``Content-Type`` is read as JSON, as FastAPI reads it; ``application/json``
and the structured ``application/*+json`` types pass, with any parameters.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from otelkit_collector.limits import send_json_error

EXPECTED = "application/json"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def media_type(value: bytes) -> str:
    """The media type of a ``Content-Type`` value, lower-cased, without parameters."""
    return value.split(b";", 1)[0].strip().decode("latin-1").lower()


def is_json(value: str) -> bool:
    """Whether FastAPI parses a body of this media type as JSON."""
    kind, _, subtype = value.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


class JsonContentTypeMiddleware:
    """Answer 415 to a write under ``path_prefix`` whose body is declared as something else.

    Args:
        app: the wrapped ASGI application.
        path_prefix: where the JSON endpoints live.
        on_reject: called with the request path for each refused body (for self-metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        path_prefix: str = "/api/",
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.path_prefix = path_prefix
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _BODY_METHODS
            and scope["path"].startswith(self.path_prefix)
        ):
            declared = next((v for k, v in scope["headers"] if k == b"content-type"), None)
            if declared is not None and not is_json(media_type(declared)):
                if self.on_reject is not None:
                    self.on_reject(scope["path"])
                detail = f"Content-Type must be {EXPECTED}, got {media_type(declared) or 'empty'!r}"
                await send_json_error(send, 415, detail, [(b"accept", EXPECTED.encode())])
                return
        await self.app(scope, receive, send)
