"""gRPC API keys: a server interceptor that answers UNAUTHENTICATED before any handler runs."""

from __future__ import annotations

from typing import Any

import grpc

from ..auth import OPEN_GRPC, authorized, refusal


class GrpcAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped: no stubs
    """Refuses calls without a valid ``authorization`` metadata entry (UNAUTHENTICATED)."""

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal().message)

        async def deny_stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal().message)

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny_stream)

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails
                                ) -> Any:
        """The method's handler if the call is open or authorized, else one that aborts
        with UNAUTHENTICATED."""
        if details.method in OPEN_GRPC:
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        if authorized(metadata.get("authorization"), self.keys):
            return await continuation(details)
        return self._deny_stream if details.method.endswith("Stream") else self._deny
