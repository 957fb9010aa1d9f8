"""Bearer-token guard for every write endpoint, checked before the body is read.

With a token configured, ``POST``/``PUT``/``PATCH``/``DELETE`` need
``Authorization: Bearer <token>``; anything else gets 401 and changes nothing. Reads
(``/metrics``, ``/api/metrics``, ``/healthz``, ``/docs``) stay open for Prometheus.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from otelkit_collector.limits import send_json_error

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="otelkit-collector"')]


class BearerAuthMiddleware:
    """Refuse writes that do not carry the configured bearer token.

    Args:
        app: the wrapped ASGI application.
        token: the shared secret.
        on_reject: called with the request path for each refused write (for self-metrics).
    """

    def __init__(
        self, app: ASGIApp, *, token: str, on_reject: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self._expected = b"Bearer " + token.encode()
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                presented = value
                break
        # compare_digest takes the same time wherever the first difference is.
        if hmac.compare_digest(presented, self._expected):
            await self.app(scope, receive, send)
            return
        if self.on_reject is not None:
            self.on_reject(scope["path"])
        detail = (
            "missing Authorization header: this collector requires 'Bearer <token>' on writes"
            if not presented
            else "invalid bearer token"
        )
        await send_json_error(send, 401, detail, _CHALLENGE)
