"""The one REST guard: every route's errors, statuses, request ids, metrics and logs.

:class:`Guard` runs a handler and turns whatever it raises into an answer, once for all routes:

    LossdError           its status from :data:`HTTP_STATUS` (422 for a malformed request),
                         ``Retry-After`` on 503; logged at info
    CancelledError       the client went away: counted as CANCELLED, nothing answered
    any other exception  a bug: 500 INTERNAL, the traceback logged

Each request gets an ``X-Request-Id`` (the client's, cut to :data:`MAX_REQUEST_ID` printable
characters, or a fresh one) and one count in ``lossd_requests`` by loss, protocol and code.
Native routes answer errors as ``{"error": {"code", "message", "field"}}``; V2 routes as the
protocol's ``{"error": "<message>"}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ...errors import ErrorCode, InternalError, LossdError, MalformedRequest
from ...metrics import PROTOCOL, Metrics

log = logging.getLogger("lossd.rest")
JSON = "application/json"
REQUEST_ID = "x-request-id"
MAX_REQUEST_ID = 128

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FAILED_PRECONDITION: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.INTERNAL: 500,
    ErrorCode.CANCELLED: 499,
    ErrorCode.UNKNOWN: 500,
}

Headers = dict[str, str]
Render = Callable[[LossdError, Headers], Response]


def http_status(error: LossdError) -> int:
    """The status of ``error``: 422 for a request not of the API's form, else by its code."""
    return 422 if isinstance(error, MalformedRequest) else HTTP_STATUS[error.code]


def json_response(body: Any, status: int = 200, headers: Headers | None = None) -> Response:
    """``body`` as JSON (NumPy arrays serialized natively by orjson)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status, headers,
                    media_type=JSON)


def _error_headers(error: LossdError, headers: Headers) -> Headers:
    return {**headers, "Retry-After": "1"} if error.code is ErrorCode.UNAVAILABLE else headers


def native_error(error: LossdError, headers: Headers | None = None) -> Response:
    """``{"error": {"code", "message", "field"}}`` with the error's status."""
    return json_response({"error": error.to_dict()}, http_status(error),
                         _error_headers(error, headers or {}))


def v2_error(error: LossdError, headers: Headers | None = None) -> Response:
    """The Open Inference Protocol's ``{"error": "<message>"}`` with the status of its code
    (the protocol has no 422: a malformed request is a 400)."""
    return json_response({"error": error.message}, HTTP_STATUS[error.code],
                         _error_headers(error, headers or {}))


def request_id(request: Request) -> str:
    """The client's ``X-Request-Id`` when it is short and printable, else a fresh one."""
    given = request.headers.get(REQUEST_ID)
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable() and given.isascii():
        return given
    return os.urandom(16).hex()


class Guard:
    """Runs handlers of one protocol (``"rest"``, ``"v2-rest"``) under the rules above."""

    def __init__(self, metrics: Metrics, protocol: str, render: Render = native_error) -> None:
        self.metrics, self.protocol, self.render = metrics, protocol, render

    async def __call__(self, label: str, request: Request,
                       handler: Callable[[], Awaitable[Response]]) -> Response:
        """Answer ``request`` with ``handler()``; ``label`` is the loss (or "runs", "batch")
        counted in the metrics."""
        started = time.perf_counter()
        rid = request_id(request)
        headers = {"X-Request-Id": rid}
        code = ErrorCode.INTERNAL.value
        protocol = PROTOCOL.set(self.protocol)  # labels the engine's metrics of this request
        try:
            response = await handler()
            response.headers.update(headers)
            code = "OK"
            return response
        except LossdError as error:
            code = error.code.value
            log.info("request %s %s refused: %s %s", rid, label[:64], code,
                     error.message[:200])
            return self.render(error, headers)
        except asyncio.CancelledError:  # the client went away (see disconnect.py)
            code = "CANCELLED"
            raise
        except Exception:
            log.exception("request %s %s failed", rid, label[:64])
            return self.render(InternalError(), headers)
        finally:
            PROTOCOL.reset(protocol)
            self.metrics.answered(label, self.protocol, code, time.perf_counter() - started)
