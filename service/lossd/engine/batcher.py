"""The dynamic batcher: validated calls -> bounded queue -> batches by BatchKey -> compute off the
event loop -> split -> per-request reduction.

* Validation happens in :meth:`Engine.prepare`, before a call is queued: a bad request never
  fails its neighbours.
* Compute runs on a thread pool, off the event loop (NumPy releases the GIL on big arrays),
  unless a thread hop would cost more than the work: batches of at most
  ``inline_compute_elements`` input elements, or predicted to take at most
  ``inline_compute_us`` (from their loss's measured time per element), are computed inline.
* Delay 0 by default: requests that become ready in the same turn of the event loop form one
  batch. Every request is queued; the first one of a turn schedules one dispatch with
  ``call_soon``, which runs once the turn's other ready callbacks (the requests that one read
  from the sockets decoded) have queued theirs, and takes them all. No timer: an idle server
  answers at once, and under load batches grow with the load: the HTTP requests that arrived
  while the event loop computed are read and decoded in one turn afterwards (grpc.aio hands its
  calls over one at a time, so gRPC calls seldom meet). While the compute threads are busy
  requests wait in the queue, and the batch that finishes dispatches the next.
  ``max_batch_delay_us`` trades latency for batch size (the dispatch waits that long).
  Batches are capped by request count (``max_batch_requests=1`` turns batching off) and by
  input elements.
* The queue is bounded: a full queue rejects at once (``Unavailable``). A request whose deadline
  passes while queued, or whose caller went away, is dropped before compute.
* :meth:`Engine.drain` refuses new work, finishes what was accepted, then stops the compute
  threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Collection, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..calls import Call
from ..errors import DeadlineExceeded, InternalError, Unavailable
from ..losses import (
    Prepared,
    Result,
    Stats,
    Terms,
    backward,
    batch_axes,
    batch_key,
    batch_size,
    concat,
    evaluate,
    finish,
    prepare,
    reduce,
    split_grads,
    split_terms,
)
from ..metrics import IN_PROCESS, PROTOCOL, Metrics
from ..settings import Settings

log = logging.getLogger("lossd.engine")
RATE_MIN_ELEMENTS = 4096  # smaller batches are mostly per-call overhead: they teach no rate


@dataclass(eq=False)
class _Pending:
    call: Prepared
    grad: bool
    future: asyncio.Future[Result]
    enqueued: float
    elements: int
    dropped: bool = False  # deadline passed or caller left: never compute
    key: Hashable = field(default=None)
    axes: dict[str, int] | None = None
    stats: bool = False  # also return the call's sufficient statistics (Result.stats)
    protocol: str = IN_PROCESS  # the frontend's (metrics.PROTOCOL), for the metrics


class Engine:
    """Batching compute engine shared by every frontend of one process."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._queue: deque[_Pending] = deque()
        self._idle = asyncio.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch_handle: asyncio.Handle | None = None  # the dispatch scheduled, if any
        self._computing = 0  # batches on the compute threads
        self._in_flight = 0
        self._running = False
        self._draining = False
        self._singletons = 0
        self._seconds_per_element: dict[tuple[str, bool], float] = {}  # see _learn

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the compute threads."""
        self._pool = ThreadPoolExecutor(self.settings.compute_threads,
                                        thread_name_prefix="lossd-compute")
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._idle.set()

    @property
    def ready(self) -> bool:
        """Running, not draining, and the queue not near full (readiness)."""
        return self._running and not self._draining and self.pressure < 0.9

    @property
    def live(self) -> bool:
        """Started and not yet stopped (liveness)."""
        return self._running

    @property
    def draining(self) -> bool:
        """:meth:`drain` has begun: new work is refused."""
        return self._draining

    @property
    def pressure(self) -> float:
        """Fraction of the queue in use."""
        return len(self._queue) / self.settings.max_queue

    async def drain(self, grace: float | None = None) -> bool:
        """Refuse new work, finish accepted work (within ``grace`` seconds), stop.

        Returns whether everything accepted was answered in time.
        """
        self._draining = True
        grace = self.settings.drain_seconds if grace is None else grace
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
            finished = True
        except TimeoutError:
            finished = False
        self._running = False
        if self._dispatch_handle is not None:
            self._dispatch_handle.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        return finished

    # --- requests -------------------------------------------------------------------------

    @staticmethod
    def prepare(loss: str, arrays: Mapping[str, np.ndarray],
                options: Mapping[str, Any] | None = None, *,
                bfloat16: Collection[str] = ()) -> Prepared:
        """Validate fully (raises NotFound / InvalidArgument) — before anything is queued;
        ``bfloat16`` names the tensors that came as bfloat16."""
        return prepare(loss, arrays, options, bfloat16=bfloat16)

    async def compute(self, loss: str, arrays: Mapping[str, np.ndarray],
                      options: Mapping[str, Any] | None = None, *, grad: bool = False,
                      timeout: float | None = None) -> Result:
        """Validate, queue and compute one call: :meth:`prepare` then :meth:`submit`."""
        return await self.submit(self.prepare(loss, arrays, options), grad=grad,
                                 timeout=timeout)

    async def run(self, call: Call) -> Result:
        """Compute a frontend's decoded :class:`~lossd.calls.Call`."""
        return await self.submit(prepare(call.loss, call.arrays, call.options,
                                         bfloat16=call.bfloat16),
                                 grad=call.grad, timeout=call.timeout)

    async def submit(self, call: Prepared, *, grad: bool = False,
                     timeout: float | None = None, stats: bool = False) -> Result:
        """Queue a validated call and wait for its result (with ``Result.stats`` when
        ``stats``: the call's sufficient statistics, for dataset-level aggregates).

        Raises ``Unavailable`` (queue full, draining) at once, ``DeadlineExceeded`` when
        ``timeout`` seconds pass before the answer.
        """
        if self._draining or not self._running:
            self.metrics.rejections.labels("draining").inc()
            raise Unavailable("server is draining; retry on another replica")
        if len(self._queue) >= self.settings.max_queue:
            self.metrics.rejections.labels("queue_full").inc()
            raise Unavailable(f"queue full ({self.settings.max_queue} requests waiting); "
                              f"retry later")
        loop = asyncio.get_running_loop()
        item = _Pending(call, grad, loop.create_future(), time.perf_counter(),
                        sum(a.size for a in call.arrays.values()), stats=stats,
                        protocol=PROTOCOL.get())
        self._queue.append(item)
        self.metrics.queue_depth.set(len(self._queue))
        self._schedule_dispatch(loop)
        self._in_flight += 1
        self._idle.clear()
        self.metrics.in_flight.inc()
        # a timer, not wait_for(shield(...)): no extra tasks on the hot path
        expiry = None if timeout is None else loop.call_later(timeout, self._expire, item,
                                                              timeout)
        try:
            return await item.future
        except asyncio.CancelledError:
            if not item.dropped:  # an expired request's gRPC cancellation is not counted twice
                self.metrics.rejections.labels("cancelled").inc()
            item.dropped = True
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
            self._in_flight -= 1
            self.metrics.in_flight.dec()
            if self._in_flight == 0:
                self._idle.set()

    def _expire(self, item: _Pending, timeout: float) -> None:
        """The deadline passed before the answer: drop the request (never computed if queued)."""
        if item.future.done():
            return
        item.dropped = True
        self.metrics.rejections.labels("deadline").inc()
        item.future.set_exception(DeadlineExceeded(
            f"deadline of {timeout:.3g} s expired before the answer"))

    # --- dispatch -------------------------------------------------------------------------

    def _schedule_dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Dispatch once this turn's requests are queued (after ``max_batch_delay_us`` when it
        is set, unless a full batch is already waiting)."""
        handle = self._dispatch_handle
        delay = self.settings.max_batch_delay_us
        if handle is None:
            self._dispatch_handle = (loop.call_later(delay / 1e6, self._dispatch) if delay
                                     else loop.call_soon(self._dispatch))
        elif delay and len(self._queue) >= self.settings.max_batch_requests:
            handle.cancel()
            self._dispatch_handle = loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Start batches while a compute thread is free: a small batch is computed right here
        (a thread hop would cost more than the compute, and NumPy holds the GIL on small
        arrays anyway), a bigger one on a compute thread, whose end dispatches again."""
        if self._dispatch_handle is not None:
            self._dispatch_handle.cancel()
            self._dispatch_handle = None
        while self._running and self._queue and (
                self._computing < self.settings.compute_threads):
            taken = self._take()
            self.metrics.queue_depth.set(len(self._queue))
            if not taken:
                continue
            groups = self._group(taken)
            started = time.perf_counter()
            for item in taken:
                self.metrics.queued(item.call.spec.name, item.protocol, started - item.enqueued)
            if self._computes_inline(taken):
                self._answer(self._compute_groups(groups))
            else:
                assert self._loop is not None
                self._computing += 1
                future = self._loop.run_in_executor(self._pool, self._compute_groups, groups)
                future.add_done_callback(self._computed)

    def _computed(self, future: asyncio.Future[list[tuple[_Pending, Result | BaseException]]]
                  ) -> None:
        """A compute thread finished a batch: answer it and start the next."""
        self._computing -= 1
        if not future.cancelled():
            self._answer(future.result())
        self._dispatch()

    @staticmethod
    def _answer(outcomes: list[tuple[_Pending, Result | BaseException]]) -> None:
        for item, outcome in outcomes:
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    def _take(self) -> list[_Pending]:
        """Pop up to the batch caps (at least one live request), skipping dropped ones."""
        taken: list[_Pending] = []
        elements = 0
        while self._queue and len(taken) < self.settings.max_batch_requests:
            item = self._queue[0]
            if item.dropped or item.future.done():
                self._queue.popleft()
                continue
            if taken and elements + item.elements > self.settings.max_batch_elements:
                break
            taken.append(self._queue.popleft())
            elements += item.elements
        return taken

    def _group(self, items: list[_Pending]) -> list[list[_Pending]]:
        """Split taken requests into batches of one BatchKey (order kept within a batch)."""
        if len(items) == 1:  # a batch of one needs no key (nor axes: see _compute_batch)
            return [items]
        groups: dict[Hashable, list[_Pending]] = {}
        for item in items:
            axes = batch_axes(item.call)
            differentiable_batched = axes is not None and all(
                name in axes for name in item.call.spec.differentiable if name in item.call.arrays)
            if axes is None or (item.grad and not differentiable_batched):
                self._singletons += 1
                key: Hashable = ("alone", self._singletons)
            else:
                key = (batch_key(item.call, axes), item.grad)
            item.axes = axes
            groups.setdefault(key, []).append(item)
        return list(groups.values())

    def _computes_inline(self, items: list[_Pending]) -> bool:
        """Whether to compute ``items`` on the event loop: few elements, or a prediction
        (each loss's measured seconds per element, with or without gradients) within
        ``inline_compute_us``. A loss not measured yet goes to the threads."""
        elements = sum(item.elements for item in items)
        if elements <= self.settings.inline_compute_elements:
            return True
        predicted = 0.0
        for item in items:
            rate = self._seconds_per_element.get((item.call.spec.name, item.grad))
            if rate is None:
                return False
            predicted += rate * item.elements
        return predicted * 1e6 <= self.settings.inline_compute_us

    def _learn(self, group: list[_Pending], seconds: float) -> None:
        """Update the loss's seconds per element (a moving average over batches big enough
        for the per-call overhead not to count)."""
        elements = sum(item.elements for item in group)
        if elements < RATE_MIN_ELEMENTS:
            return
        key = (group[0].call.spec.name, group[0].grad)
        rate = seconds / elements
        known = self._seconds_per_element.get(key)
        self._seconds_per_element[key] = rate if known is None else 0.8 * known + 0.2 * rate

    def _compute_groups(self, groups: list[list[_Pending]]
                        ) -> list[tuple[_Pending, Result | BaseException]]:
        """Runs in the compute thread."""
        outcomes: list[tuple[_Pending, Result | BaseException]] = []
        for group in groups:
            started = time.perf_counter()
            try:
                results = _compute_batch(group)
            except Exception:  # a bug, not a user error (inputs were validated)
                log.exception("compute failed for loss %s (batch of %d)",
                              group[0].call.spec.name, len(group))
                error = InternalError("internal error while computing; the incident is logged")
                results = [error] * len(group)
            seconds = time.perf_counter() - started
            self.metrics.compute_seconds.observe(seconds)
            self._learn(group, seconds)
            self.metrics.batched(group[0].call.spec.name, len(group))
            outcomes.extend(zip(group, results))
        return outcomes


def _compute_batch(group: list[_Pending]) -> list[Result | BaseException]:
    """Compute one batch and reduce each request on its own slice."""
    first = group[0]
    spec = first.call.spec
    if len(group) == 1:
        call = first.call
        terms = evaluate(call)
        loss = reduce(terms, call.reduction, empty_mean=spec.empty_mean)
        grads = backward(call, [(terms, call.reduction)]) if first.grad else {}
        return [_with_stats(first, finish(call, loss, grads), terms)]
    axes = first.axes
    assert axes is not None
    sizes = [batch_size(item.call, axes) for item in group]
    batched = concat([item.call for item in group], axes)
    pieces = split_terms(evaluate(batched), sizes)
    per_request_grads: list[dict[str, np.ndarray]] = [{} for _ in group]
    if first.grad:
        parts = [(piece, item.call.reduction) for piece, item in zip(pieces, group)]
        per_request_grads = split_grads(backward(batched, parts), axes, sizes)
    return [_with_stats(item, finish(item.call, reduce(piece, item.call.reduction,
                                                       empty_mean=spec.empty_mean), grads), piece)
            for item, piece, grads in zip(group, pieces, per_request_grads)]


def _with_stats(item: _Pending, result: Result, terms: Terms) -> Result:
    return replace(result, stats=Stats.of(terms)) if item.stats else result
