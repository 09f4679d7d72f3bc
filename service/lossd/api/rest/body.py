"""Reading REST requests: bodies within their size limit, JSON objects, NDJSON lines, and the
``x-request-timeout`` header.

A body is refused (413) as soon as it passes ``max_body_bytes``, declared or streamed; JSON is
parsed as it streams in (:mod:`.jsonstream`: ``b64`` strings decoded while hot in cache, no
joined copy of the body), after its nesting depth is checked without parsing (:mod:`.depth`).
A client that hangs up mid-body raises ``CancelledError`` (see :mod:`.disconnect`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request

from ...errors import InvalidArgument, MalformedRequest, PayloadTooLarge, shown
from ...settings import Settings
from ..numbers import parse_int, parse_seconds
from . import jsonbody, jsonstream

TIMEOUT_HEADER = "x-request-timeout"  # seconds; the request is dropped if not computed by then


def declared_length(request: Request) -> int | None:
    """The ``Content-Length`` header as a number (``None`` when absent; the HTTP server has
    refused a malformed one before the app sees it)."""
    declared = request.headers.get("content-length")
    try:
        return None if declared is None else parse_int(declared, field="content-length")
    except InvalidArgument:
        return None  # e.g. beyond int64: the streamed size decides


async def receive_body(request: Request, limit: int, feed: Callable[[bytes], object],
                       declared: int | None) -> None:
    """Hand the body's chunks to ``feed`` as they arrive, refused as soon as it passes
    ``limit`` bytes (``declared``, the :func:`declared_length`, or streamed). A compressed body
    is refused: lossd reads uncompressed bodies only."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", ""):
        raise InvalidArgument(f"content-encoding: {shown(encoding)} is not supported; send the "
                              f"body uncompressed", field="content-encoding")
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body: at most {limit} bytes; got {declared}", field="body")
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body: at most {limit} bytes; got more", field="body")
            feed(chunk)
    except ClientDisconnect:  # hung up mid-body: nothing to answer (see disconnect.py)
        raise asyncio.CancelledError("client disconnected") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body (see :func:`receive_body`)."""
    chunks: list[bytes] = []
    await receive_body(request, limit, chunks.append, declared_length(request))
    return b"".join(chunks)


async def read_json(request: Request, settings: Settings) -> dict[str, Any]:
    """The body as a JSON object, parsed as its chunks arrive."""
    declared = declared_length(request)
    stream = jsonstream.JsonStream(settings.max_json_depth, declared)
    await receive_body(request, settings.max_body_bytes, stream.feed, declared)
    return json_object(stream.finish())


def parse_json(body: bytes, settings: Settings) -> dict[str, Any]:
    """``body`` (already read) as a JSON object."""
    return json_object(jsonbody.loads(body, settings.max_json_depth))


def json_object(obj: Any) -> dict[str, Any]:
    """``obj`` if it is a JSON object, else a 422."""
    if not isinstance(obj, dict):
        raise MalformedRequest("body: expected a JSON object", field="body")
    return obj


async def ndjson_lines(request: Request, limit: int) -> AsyncIterator[bytes]:
    """Non-empty lines of the body as they arrive; one line may be at most ``limit`` bytes."""
    pending = bytearray()
    async for chunk in request.stream():
        start = len(pending)
        pending += chunk
        while (cut := pending.find(b"\n", start)) >= 0:
            line = bytes(pending[:cut])
            del pending[:cut + 1]
            start = 0
            if line.strip():
                yield line
        if len(pending) > limit:
            raise PayloadTooLarge(f"body: a line is at most {limit} bytes", field="body")
    if bytes(pending).strip():
        yield bytes(pending)


def request_timeout(request: Request) -> float | None:
    """Seconds from the ``x-request-timeout`` header (``None`` when absent)."""
    raw = request.headers.get(TIMEOUT_HEADER)
    return None if raw is None else parse_seconds(raw, field=TIMEOUT_HEADER)
