"""How a client reaches a server: API key, TLS, deadlines and retries (both transports).

Retries: a call that failed with UNAVAILABLE (503, a full queue or a draining server; a refused
or reset connection) is sent again after ``min(cap, base * 2**attempt)`` seconds with full
jitter, or after the server's ``Retry-After`` when it gave one, at most ``retries`` times and
never past the call's deadline (the defaults ride out a few seconds of a restarting server).
Every call lossd offers is safe to repeat: computing is pure, batches are counted once per id,
and a run created without an id gets one from the client.

    >>> deadline = Deadline(2.0)
    >>> 0 < deadline.remaining() <= 2.0
    True
    >>> policy = Retry(retries=8, base=0.1, cap=1.0)
    >>> 0 <= policy.delay(0, None) <= 0.1, policy.delay(5, 0.5)
    (True, 0.5)
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import ErrorCode, LossdError

T = TypeVar("T")


@dataclass(frozen=True)
class Tls:
    """TLS for a connection: ``ca`` (PEM file; None: the system's roots), and ``cert`` +
    ``key`` (PEM files) for mutual TLS."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The REST client's context: verifies the server against ``ca`` or the system roots."""
        context = ssl.create_default_context(cafile=self.ca)
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context

    def pem(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(root certificates, private key, certificate chain) for gRPC's credentials."""
        def read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None
        return read(self.ca), read(self.key), read(self.cert)


def tls_settings(tls: bool | None, ca: str | None, cert: str | None, key: str | None,
                 default: bool) -> Tls | None:
    """The TLS to use: on when asked, when ``ca``/``cert`` are given, or by ``default`` (an
    ``https://`` URL); None for plain text."""
    if (cert is None) != (key is None):
        raise ValueError("TLS client authentication needs both cert= and key=")
    on = tls if tls is not None else (default or ca is not None or cert is not None)
    if not on:
        if ca or cert:
            raise ValueError("tls=False with ca= or cert=: drop them or turn TLS on")
        return None
    return Tls(ca, cert, key)


def auth_headers(api_key: str | None) -> dict[str, str]:
    """``{"authorization": "Bearer <key>"}`` when there is a key (REST header, gRPC metadata)."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


class Deadline:
    """A call's time budget (None: no deadline), shared by its attempts."""

    def __init__(self, timeout: float | None) -> None:
        """Start the clock: ``timeout`` seconds from now."""
        self.end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (at least a millisecond while the clock runs), None without deadline."""
        if self.end is None:
            return None
        return max(self.end - time.monotonic(), 0.001)

    def allows(self, delay: float) -> bool:
        """Whether waiting ``delay`` seconds still leaves time for another attempt."""
        return self.end is None or time.monotonic() + delay < self.end


@dataclass(frozen=True)
class Retry:
    """At most ``retries`` more attempts, exponential backoff with full jitter."""

    retries: int = 8
    base: float = 0.1
    cap: float = 1.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (the server's ``retry_after`` wins)."""
        if retry_after is not None:
            return min(retry_after, self.cap * 4)
        return random.uniform(0, min(self.cap, self.base * 2 ** attempt))

    def call(self, attempt: Callable[[], T], deadline: Deadline) -> T:
        """Run ``attempt`` until it answers, retrying what is safe to retry."""
        for n in range(self.retries + 1):
            try:
                return attempt()
            except LossdError as error:
                delay = self._wait(n, error, deadline)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(self, attempt: Callable[[], Awaitable[T]], deadline: Deadline) -> T:
        """:meth:`call` for coroutines."""
        for n in range(self.retries + 1):
            try:
                return await attempt()
            except LossdError as error:
                delay = self._wait(n, error, deadline)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, n: int, error: LossdError, deadline: Deadline) -> float:
        """The delay before retrying after ``error``; re-raises it when no retry is due."""
        if error.code is not ErrorCode.UNAVAILABLE or n >= self.retries:
            raise error
        delay = self.delay(n, error.retry_after)
        if not deadline.allows(delay):
            raise error
        return delay
