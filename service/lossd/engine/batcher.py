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
  while the event loop computed are read and decoded in one turn afterwards.
* Under load a batch also waits for the requests that usually join it (:class:`BatchTarget`),
  for at most ``batch_wait_us``: grpc.aio hands its calls over one at a time, a turn or more
  apart, so without waiting gRPC calls seldom meet. The engine learns how many requests arrive
  together from the batches it forms; a lone request does not wait, but for a probe now and
  then. ``max_batch_delay_us`` instead makes every dispatch wait that long.
* While the compute threads are busy requests wait in the queue, and the batch that finishes
  dispatches the next. Batches are capped by request count (``max_batch_requests=1`` turns
  batching off) and by input elements.
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
PROBE_EVERY = 0.25  # seconds between tries of a batch bigger than usual
MIN_WAITED_BATCH = 3  # a batch worth waiting for: two callers wait for each other's requests
# at a cost (each waits while the other's is read) that their batch does not pay back


class BatchTarget:
    """How many requests the next batch waits for: the engine's estimate of how many arrive
    together under the current load (1: none, dispatch at once).

    After a batch that waited:

    * as many requests came as it waited for: the next waits for half as many more (at least
      one);
    * its wait ran out while requests still came (the last sooner than 1.5 of their mean
      interval before the end): the load fills whole waits, and the next waits for one more
      than came;
    * its wait ran out after the requests stopped coming: the next waits for as many as came,
      and the target grows again only after :data:`PROBE_EVERY` seconds;
    * fewer than :data:`MIN_WAITED_BATCH` came, twice in a row (once may be bad luck): stop
      waiting.

    While not waiting, every :data:`PROBE_EVERY` seconds one batch waits for
    :data:`MIN_WAITED_BATCH` requests (a probe: a lone caller's request waits out the wait once
    in a while).

    >>> target = BatchTarget(cap=64)
    >>> now = target.hold_until  # the first probe
    >>> target.wanted(now)
    3
    >>> target.formed(3, ran_out=False, now=now); target.wanted(now)
    4
    >>> target.formed(8, ran_out=False, now=now); target.wanted(now)
    12
    >>> target.formed(9, ran_out=True, now=now + 0.002, arrivals=(now, now + 0.0019))
    >>> target.wanted(now)  # requests came until the end of the wait
    10
    >>> target.formed(9, ran_out=True, now=now + 0.002, arrivals=(now, now + 0.0008))
    >>> target.wanted(now)  # they stopped coming: wait for as many, and do not grow for now
    9
    >>> target.formed(9, ran_out=False, now=now); target.wanted(now)
    9
    >>> target.formed(2, ran_out=True, now=now); target.wanted(now)  # one miss: once more
    3
    >>> target.formed(1, ran_out=True, now=now); target.wanted(now + 0.1), target.wanted(now + 1)
    (1, 3)
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap  # max_batch_requests
        self.size = 1
        self.hold_until = time.perf_counter() + PROBE_EVERY  # no growth (nor probe) before
        self.misses = 0  # batches in a row that waited and were smaller than worth it

    def wanted(self, now: float) -> int:
        """Requests the next batch waits for (a probe when it is time for one)."""
        if self.size == 1 and now >= self.hold_until and self.cap >= MIN_WAITED_BATCH:
            self.size = MIN_WAITED_BATCH
        return self.size

    def formed(self, count: int, ran_out: bool, now: float, arrivals: tuple[float, float] = (0, 0)
               ) -> None:
        """A batch of ``count`` requests was taken at ``now``; ``ran_out``: its wait ended
        first; ``arrivals``: when its first and its last request were queued."""
        if self.size == 1:
            return
        if count < MIN_WAITED_BATCH:  # twice in a row: stop waiting
            self.misses += 1
            self.size = 1 if self.misses >= 2 else MIN_WAITED_BATCH
            self.hold_until = now + PROBE_EVERY
            return
        self.misses = 0
        first, last = arrivals
        if ran_out and now - last < 1.5 * (last - first) / (count - 1):
            self.size = min(self.cap, count + 1)  # requests came until the end: the load
            # fills whole waits, so the next batch waits its whole wait too
        elif ran_out or count < self.size:
            self.size = count
            self.hold_until = now + PROBE_EVERY
        else:
            grown = max(count + 1, count * 3 // 2) if now >= self.hold_until else count
            self.size = min(self.cap, grown)


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
        self.target = BatchTarget(settings.max_batch_requests)
        # seconds a batch may wait for its target (0: never; a fixed delay replaces it)
        self._batch_wait = 0 if settings.max_batch_delay_us else settings.batch_wait_us / 1e6
        self._waiting_for = 0  # requests the scheduled dispatch waits for (0: not waiting)
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
        is set), or at once when the batch being waited for is complete."""
        handle = self._dispatch_handle
        delay = self.settings.max_batch_delay_us
        if handle is None:
            self._dispatch_handle = (loop.call_later(delay / 1e6, self._dispatch) if delay
                                     else loop.call_soon(self._dispatch))
        elif self._waiting_for and len(self._queue) >= self._waiting_for or (
                delay and len(self._queue) >= self.settings.max_batch_requests):
            handle.cancel()
            self._waiting_for = 0
            self._dispatch_handle = loop.call_soon(self._dispatch)

    def _wait_for_batch(self) -> bool:
        """Whether the dispatch waits for more requests (:class:`BatchTarget`); when it does,
        a timer ends the wait ``batch_wait_us`` after the oldest request was queued."""
        queue = self._queue
        if not self._batch_wait or not queue or self._draining or (
                self._computing >= self.settings.compute_threads):
            return False
        now = time.perf_counter()
        wanted = self.target.wanted(now)
        if len(queue) >= wanted:
            return False
        left = queue[0].enqueued + self._batch_wait - now
        if left <= 0 or 2 * queue[0].elements > self.settings.max_batch_elements:
            return False  # waited enough, or no other request could join it
        assert self._loop is not None
        self._waiting_for = wanted
        self._dispatch_handle = self._loop.call_later(left, self._dispatch, True)  # ran out
        return True

    def _dispatch(self, ran_out: bool = False) -> None:
        """Start batches while a compute thread is free: a small batch is computed right here
        (a thread hop would cost more than the compute, and NumPy holds the GIL on small
        arrays anyway), a bigger one on a compute thread, whose end dispatches again.
        ``ran_out``: the timer of a batch's wait (:meth:`_wait_for_batch`) ended it."""
        if self._dispatch_handle is not None:
            self._dispatch_handle.cancel()
            self._dispatch_handle = None
        self._waiting_for = 0
        if not ran_out and self._wait_for_batch():
            return
        first = True
        while self._running and self._queue and (
                self._computing < self.settings.compute_threads):
            taken = self._take()
            self.metrics.queue_depth.set(len(self._queue))
            if not taken:
                continue
            started = time.perf_counter()
            if first and self.target.size > 1:  # the batch that waited
                self.target.formed(len(taken), ran_out, started,
                                   (taken[0].enqueued, taken[-1].enqueued))
            first = False
            groups = self._group(taken)
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
