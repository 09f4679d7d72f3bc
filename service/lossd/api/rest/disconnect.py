"""A REST client that goes away is not an error; it drops its work.

``read_body`` (a hang-up mid-body) and ``run_watching_client`` (a hang-up while the request waits
in the queue or computes) raise ``asyncio.CancelledError`` so that the work is dropped and each
frontend counts the request as CANCELLED. :class:`QuietDisconnect` then ends that request without
an answer, instead of letting the server log "Exception in ASGI application" with a traceback.
A cancellation of the task itself (server shutdown) still propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

T = TypeVar("T")
WATCH_AFTER = 0.05
"""Seconds a request waits for its answer before lossd watches for its client leaving (a watcher
per request cost about 10% of a small request's CPU under load at 2 ms)."""


class QuietDisconnect:
    """ASGI middleware: swallow the CancelledError raised for a departed client."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; a request cancelled because its client left ends without an answer."""
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task is being cancelled, not just one request abandoned


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_watching_client(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` in this task; if the HTTP client disconnects first, cancel it (dropping
    queued work) and raise ``CancelledError("client disconnected")``.

    The watcher task starts only once the work has waited :data:`WATCH_AFTER` seconds: most
    calls are answered sooner (under load too), and then no task is made at all; a departed
    client's work is still dropped if it waits longer.
    """
    owner = asyncio.current_task()
    assert owner is not None
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"finished": False, "left": False, "watcher": None}

    async def watch() -> None:
        try:
            await _until_disconnect(request)
        except Exception:  # a failed receive counts as the client gone
            pass
        if not state["finished"]:
            state["left"] = True
            owner.cancel()

    def start_watching() -> None:
        state["watcher"] = loop.create_task(watch())

    starting = loop.call_later(WATCH_AFTER, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if state["left"] and owner.uncancel() == 0:  # ours, not a shutdown's cancellation
            raise asyncio.CancelledError("client disconnected") from None
        raise
    finally:
        state["finished"] = True
        starting.cancel()
        if state["watcher"] is not None:
            state["watcher"].cancel()
