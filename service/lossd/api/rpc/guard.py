"""The one gRPC guard: every RPC's errors, statuses, metrics and logs.

:func:`guarded` wraps a unary handler ``(self, data, context, label)`` of a service that has
``metrics``; it maps what the handler raises, once for every service:

    LossdError           aborts with the status of :data:`GRPC_STATUS`, the message, and the
                         offending field in the ``lossd-field`` trailing metadata
    CancelledError       the caller cancelled or its deadline passed: counted as CANCELLED
    any other exception  a bug: INTERNAL, the traceback logged

and counts the call in ``lossd_requests`` under ``label.name`` (the handler sets it once it
knows the loss). :func:`stream_guarded` does the same around a stream handler as a whole
(per-message errors are the handler's own answers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeAlias, TypeVar

import grpc

from ...errors import ErrorCode, InternalError, LossdError
from ...metrics import PROTOCOL, Metrics

log = logging.getLogger("lossd.grpc")
MAX_FIELD = 200

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorCode.UNKNOWN: grpc.StatusCode.UNKNOWN,
}


@dataclass
class Label:
    """What a call is counted under: its loss once known (else "unknown"), or a fixed word."""

    name: str = "unknown"


class Service(Protocol):
    """What a guarded handler's service holds: the metrics its calls are counted in."""

    metrics: Metrics


S = TypeVar("S", bound=Service)
R = TypeVar("R")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Unary = Callable[[S, bytes, Context, Label], Awaitable[R]]


async def abort(context: Context, error: LossdError) -> NoReturn:
    """End the call with ``error``'s status and message (and field as trailing metadata)."""
    if error.field:  # metadata must be printable ASCII; field names echo the request
        field = error.field[:MAX_FIELD].encode("unicode_escape").decode("ascii")
        context.set_trailing_metadata((("lossd-field", field),))
    await context.abort(GRPC_STATUS[error.code], error.message)
    raise AssertionError("unreachable: abort raises")


def guarded(protocol: str | None, label: str = "unknown"
            ) -> Callable[[Unary[S, R]], Callable[[S, bytes, Context], Awaitable[R]]]:
    """Decorate a unary handler; ``protocol`` labels its metrics (``None``: not counted, as
    for health and metadata RPCs), ``label`` is the counted name until the handler sets one."""
    def wrap(handler: Unary[S, R]) -> Callable[[S, bytes, Context], Awaitable[R]]:
        async def rpc(self: S, data: bytes, context: Context) -> R:
            started, code, counted = time.perf_counter(), ErrorCode.INTERNAL.value, Label(label)
            if protocol is not None:  # labels the engine's metrics of this call
                PROTOCOL.set(protocol)  # (each RPC runs in a task, with a context, of its own)
            try:
                response = await handler(self, data, context, counted)
                code = "OK"
                return response
            except LossdError as error:
                code = error.code.value
                await abort(context, error)
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception:
                log.exception("%s failed (%s)", handler.__name__, counted.name[:64])
                await abort(context, InternalError())
            finally:
                if protocol is not None:
                    self.metrics.answered(counted.name, protocol, code,
                                          time.perf_counter() - started)
        rpc.__name__ = handler.__name__
        rpc.__doc__ = handler.__doc__
        return rpc
    return wrap


StreamHandler = Callable[[S, AsyncIterator[bytes], Context], AsyncIterator[R]]


def stream_guarded(protocol: str) -> Callable[[StreamHandler[S, R]], StreamHandler[S, R]]:
    """Decorate a stream handler: a bug anywhere in it ends the stream with INTERNAL;
    ``protocol`` labels the engine's metrics of its messages."""
    def wrap(handler: StreamHandler[S, R]) -> StreamHandler[S, R]:
        async def rpc(self: S, requests: AsyncIterator[bytes], context: Context
                      ) -> AsyncIterator[R]:
            PROTOCOL.set(protocol)
            try:
                async for response in handler(self, requests, context):
                    yield response
            except LossdError as error:
                await abort(context, error)
            except Exception:
                log.exception("%s failed", handler.__name__)
                await abort(context, InternalError())
        rpc.__name__ = handler.__name__
        rpc.__doc__ = handler.__doc__
        return rpc
    return wrap


def answered(metrics: Metrics, label: str, protocol: str, error: LossdError | None,
             started: float) -> None:
    """Count one message of a stream (answered OK or with ``error``)."""
    metrics.answered(label, protocol, "OK" if error is None else error.code.value,
                     time.perf_counter() - started)

