"""A REST client that goes away is not an error.

``read_body`` (a hang-up mid-body) and ``run_watching_client`` (a hang-up while the request waits
in the queue or computes) raise ``asyncio.CancelledError`` so that the work is dropped and each
frontend counts the request as CANCELLED. :class:`QuietDisconnect` then ends that request without
an answer, instead of letting the server log "Exception in ASGI application" with a traceback.
A cancellation of the task itself (server shutdown) still propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class QuietDisconnect:
    """ASGI middleware: swallow the CancelledError raised for a departed client."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task is being cancelled, not just one request abandoned
