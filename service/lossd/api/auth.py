"""API-key authentication (off unless keys are configured), for both transports.

REST: ``Authorization: Bearer <key>``; gRPC: ``authorization: Bearer <key>`` metadata. Keys are
compared in constant time. Health endpoints stay open; ``/metrics`` is open unless
``metrics_auth``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import orjson

from ..errors import Unauthenticated

OPEN_PATHS = ("/livez", "/readyz", "/v2/health/")
OPEN_GRPC = ("/grpc.health.v1.", "/grpc.reflection.")


def authorized(header: str | None, keys: frozenset[str]) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    token = header[len("Bearer "):].strip().encode()
    # compare with every key so the time taken does not depend on which one matched
    return any([hmac.compare_digest(token, key.encode()) for key in keys])


def _refusal() -> Unauthenticated:
    return Unauthenticated("missing or invalid API key: send 'Authorization: Bearer <key>'",
                           field="authorization")


class RestAuth:
    """ASGI middleware refusing unauthenticated requests with 401."""

    def __init__(self, app: Callable[..., Awaitable[None]], keys: frozenset[str],
                 metrics_open: bool) -> None:
        self.app, self.keys = app, keys
        self.open = OPEN_PATHS + (("/metrics",) if metrics_open else ())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.open) or scope[
                "path"] in ("/v2/health/live", "/v2/health/ready"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        header = headers.get(b"authorization", b"").decode("latin-1") or None
        if authorized(header, self.keys):
            return await self.app(scope, receive, send)
        body = orjson.dumps({"error": _refusal().to_dict()})
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class GrpcAuth(grpc.aio.ServerInterceptor):
    """Refuses calls without a valid ``authorization`` metadata entry (UNAUTHENTICATED)."""

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _refusal().message)

        async def deny_stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _refusal().message)

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny_stream)

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails
                                ) -> Any:
        if details.method.startswith(OPEN_GRPC):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        if authorized(metadata.get("authorization"), self.keys):
            return await continuation(details)
        return self._deny_stream if details.method.endswith("Stream") else self._deny
