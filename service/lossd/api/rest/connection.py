"""HTTP/1.1 connections with bounds: uvicorn's httptools protocol, plus a size limit on the
request line and headers and a timeout on requests that stop arriving.

uvicorn's httptools protocol keeps every header a client sends (no size limit: h11's
``h11_max_incomplete_event_size`` does not apply to it) and has no timeout while a request is
incomplete (its keep-alive timer runs only between requests). :func:`bounded_protocol` builds a
subclass from the settings:

* the request line and headers together may be at most ``http_max_header_bytes``; past that
  the client gets ``431 Request Header Fields Too Large`` (the native error body) and the
  connection is closed, before any of it reaches the app;
* a new connection, or a request whose line, headers or body are incomplete, that sends nothing
  for ``http_idle_timeout_s`` is closed (``408 Request Timeout`` when a request had begun).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ...errors import ErrorCode
from ...settings import Settings


def _response(status: bytes, code: ErrorCode, message: str) -> bytes:
    body = orjson.dumps({"error": {"code": code.value, "message": message}})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing (the 431 is already written)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol with :attr:`max_header_bytes` and :attr:`idle_timeout_s`."""

    max_header_bytes = 65_536
    idle_timeout_s = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start waiting for the first request (it must begin within the idle timeout)."""
        self._header_bytes = 0
        self._refused = False
        self._begun = False
        self._incomplete = True
        self._idle: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the idle timer with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Bytes arrived: an incomplete request is alive; nothing more is read once refused."""
        if self._refused:
            return
        if self._incomplete:
            self._arm()
        try:
            super().data_received(data)
        except _HeadersTooLarge:  # pragma: no cover - httptools wraps it; kept for h11-like use
            pass

    def send_400_response(self, msg: str) -> None:
        """uvicorn's 400 for a parse error, unless the 431 was the answer."""
        if not self._refused:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        """A request begins: count its header bytes, time its arrival."""
        super().on_message_begin()
        self._header_bytes = 0
        self._begun = self._incomplete = True
        self._arm()

    def on_url(self, url: bytes) -> None:
        """Part of the request line (counted)."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header (counted with its separators)."""
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        """The request is in: no idle timer until the next one begins."""
        self._incomplete = self._begun = False
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes and not self._refused:
            self._refused = True
            self._disarm()
            self.transport.write(_response(
                b"431 Request Header Fields Too Large", ErrorCode.PAYLOAD_TOO_LARGE,
                f"request line and headers: at most {self.max_header_bytes} bytes "
                f"(http_max_header_bytes)"))
            self.transport.close()
            raise _HeadersTooLarge

    def _arm(self) -> None:
        self._disarm()
        self._idle = self.loop.call_later(self.idle_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _expired(self) -> None:
        self._idle = None
        if self.transport.is_closing() or not self._incomplete:
            return
        if self.flow.read_paused:  # the app is behind reading the body, not the client
            self._arm()
            return
        if self._begun and (self.cycle is None or not self.cycle.response_started):
            self.transport.write(_response(
                b"408 Request Timeout", ErrorCode.DEADLINE_EXCEEDED,
                f"request: nothing arrived for {self.idle_timeout_s:g} s before it was "
                f"complete (http_idle_timeout_s)"))
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app sees the client gone
        self.transport.close()


def bounded_protocol(settings: Settings) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=`` with the settings' limits."""
    attributes: dict[str, Any] = {"max_header_bytes": settings.http_max_header_bytes,
                                  "idle_timeout_s": settings.http_idle_timeout_s}
    return type("LossdHttpProtocol", (BoundedHttpToolsProtocol,), attributes)
