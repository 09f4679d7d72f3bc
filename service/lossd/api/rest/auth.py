"""REST API keys: an ASGI middleware that answers 401 before any route runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.types import Receive, Scope, Send

from ..auth import OPEN_PATHS, authorized, refusal


class RestAuth:
    """ASGI middleware refusing unauthenticated requests with 401."""

    def __init__(self, app: Callable[..., Awaitable[None]], keys: frozenset[str],
                 metrics_open: bool) -> None:
        self.app, self.keys = app, keys
        self.open = OPEN_PATHS | ({"/metrics"} if metrics_open else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass open paths and authorized requests to the app; answer the rest with 401."""
        if scope["type"] != "http" or scope["path"] in self.open:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        header = headers.get(b"authorization", b"").decode("latin-1") or None
        if authorized(header, self.keys):
            return await self.app(scope, receive, send)
        body = orjson.dumps({"error": refusal().to_dict()})
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
