"""Waiting for an observable state, never for a length of time.

A test that sleeps "long enough" for a server to get busy, a queue to fill or a process to go
is slow where it is generous and flaky where it is not. These poll a condition (a metric's
value, a count, an HTTP answer) until it holds, up to a deadline that only a broken test
reaches; the short pause between polls is not what the test waits for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL = 0.01  # seconds between two looks


def wait_until(condition: Callable[[], T], *, what: str, timeout: float = 30) -> T:
    """Call ``condition`` until it returns something truthy and return that; raise
    ``TimeoutError`` naming ``what`` after ``timeout`` seconds. ``condition`` may raise to stop
    waiting (a process that died)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(POLL)
    return result


async def wait_until_async(condition: Callable[[], Awaitable[T] | T], *, what: str,
                           timeout: float = 30, every: float = POLL) -> T:
    """:func:`wait_until` on the running event loop, for a coroutine function or a plain one
    (state the loop's other tasks change: between looks they run). ``every=0`` looks at every
    turn of the loop, for a state that may last only a turn or two."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(every)


def metric(text: str, name: str, *labels: str) -> float:
    """The sum of every sample of ``name`` in a Prometheus exposition whose labels include each
    of ``labels`` (``'protocol="grpc"'``; none: all its samples)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " ")
               and all(label in line for label in labels))
