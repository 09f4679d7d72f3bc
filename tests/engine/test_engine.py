"""The batching engine in-process: the calls of one turn of the event loop form one batch,
batches form under load, batched answers equal unbatched, incompatible requests never share a
batch, an invalid request fails alone.

Small batches are computed on the event loop; the tests of the compute threads turn that off
(``inline_compute_elements=0, inline_compute_us=0``)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from lossd.engine import Engine
from lossd.engine.batcher import _Pending
from lossd.errors import InvalidArgument
from lossd.losses import compute
from lossd.metrics import PROTOCOL
from lossd.settings import Settings
from tests.reference.compare import assert_close
from tests.support.waiting import wait_until_async

QUEUED = Settings(inline_compute_elements=0, inline_compute_us=0)


def _ce(rng: np.random.Generator, n: int, c: int = 10, dtype: str = "float64") -> dict:
    return {"input": rng.standard_normal((n, c)).astype(dtype),
            "target": rng.integers(0, c, n)}


async def _with_engine(settings: Settings, body) -> object:
    engine = Engine(settings)
    await engine.start()
    try:
        return await body(engine)
    finally:
        await engine.drain(5)


def _batch_sizes(engine: Engine) -> list[float]:
    """(batches, requests in them) over every loss."""
    return [_summed(engine, "lossd_batch_size_count"), _summed(engine, "lossd_batch_size_sum")]


def _summed(engine: Engine, name: str, **labels: str) -> float:
    """A sample of ``name`` summed over the ``loss`` label (batch sizes are per loss)."""
    return sum(sample.value for metric in engine.metrics.registry.collect()
               for sample in metric.samples if sample.name == name
               and all(sample.labels.get(k) == v for k, v in labels.items()))


def test_concurrent_requests_share_batches_and_match_unbatched() -> None:
    rng = np.random.default_rng(0)
    requests = [(_ce(rng, int(rng.integers(1, 9))), {"reduction": r, "label_smoothing": 0.1})
                for r in ["mean", "sum", "none"] * 40]

    async def body(engine: Engine):
        results = await asyncio.gather(*(engine.compute("cross_entropy", a, o, grad=True)
                                         for a, o in requests))
        return results, _batch_sizes(engine)

    results, (batches, served) = asyncio.run(_with_engine(QUEUED, body))
    assert served == len(requests) and batches < len(requests), "no batch ever formed"
    for (arrays, options), result in zip(requests, results):
        alone = compute("cross_entropy", arrays, options, grad=True)
        assert_close(result.loss, alone.loss, what="loss")
        assert_close(result.grads["input"], alone.grads["input"], what="grad")


def test_incompatible_requests_never_share_a_batch() -> None:
    rng = np.random.default_rng(1)
    calls = [("cross_entropy", _ce(rng, 4), {}), ("cross_entropy", _ce(rng, 4, 7), {}),
             ("cross_entropy", _ce(rng, 4, dtype="float32"), {}),
             ("cross_entropy", _ce(rng, 4), {"label_smoothing": 0.2}),
             ("mse", {"input": rng.standard_normal(4), "target": rng.standard_normal(4)}, {})]

    async def body(engine: Engine):
        groups = engine._group([_pending(engine, *c) for c in calls])
        return [len(g) for g in groups]

    assert asyncio.run(_with_engine(Settings(), body)) == [1, 1, 1, 1, 1]


def _pending(engine: Engine, loss: str, arrays: dict, options: dict):
    from lossd.engine.batcher import _Pending
    call = engine.prepare(loss, arrays, options)
    return _Pending(call, False, asyncio.get_running_loop().create_future(), 0.0, 0)


def test_invalid_request_fails_alone() -> None:
    rng = np.random.default_rng(2)
    good = [_ce(rng, 3) for _ in range(10)]
    bad = {"input": rng.standard_normal((3, 10)), "target": np.array([0, 1, 10])}

    async def body(engine: Engine):
        return await asyncio.gather(*(engine.compute("cross_entropy", a) for a in good[:5]),
                                    engine.compute("cross_entropy", bad),
                                    *(engine.compute("cross_entropy", a) for a in good[5:]),
                                    return_exceptions=True)

    results = asyncio.run(_with_engine(QUEUED, body))
    assert isinstance(results[5], InvalidArgument)
    for arrays, result in zip(good, results[:5] + results[6:]):
        assert_close(result.loss, compute("cross_entropy", arrays).loss, what="loss")


def test_batch_caps_and_delay() -> None:
    rng = np.random.default_rng(3)
    settings = Settings(max_batch_requests=4, max_batch_delay_us=2000, inline_compute_elements=0,
                        inline_compute_us=0)

    async def body(engine: Engine):
        await asyncio.gather(*(engine.compute("cross_entropy", _ce(rng, 2)) for _ in range(16)))
        return _summed(engine, "lossd_batch_size_bucket", le="4.0"), _batch_sizes(engine)

    le4, (batches, served) = asyncio.run(_with_engine(settings, body))
    assert le4 == batches and served == 16  # no batch above the cap


def test_drain_finishes_accepted_and_refuses_new() -> None:
    rng = np.random.default_rng(4)

    async def body():
        engine = Engine(QUEUED)
        await engine.start()
        accepted = [asyncio.create_task(engine.compute("cross_entropy", _ce(rng, 5)))
                    for _ in range(50)]
        sample = engine.metrics.registry.get_sample_value
        await wait_until_async(  # each call in flight or already answered
            lambda: sample("lossd_in_flight") + sum(t.done() for t in accepted) == 50,
            what="50 calls accepted", every=0)
        drained = asyncio.create_task(engine.drain(10))
        await wait_until_async(lambda: engine.draining, what="the engine draining", every=0)
        with pytest.raises(Exception, match="draining"):
            await engine.compute("cross_entropy", _ce(rng, 5))
        results = await asyncio.gather(*accepted)
        return results, await drained

    results, finished = asyncio.run(body())
    assert finished and len(results) == 50


def _record_compute_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that compute each batch, appended as batches run."""
    threads: list[str] = []
    original = Engine._compute_groups

    def recording(self: Engine, groups):
        threads.append(threading.current_thread().name)
        return original(self, groups)

    monkeypatch.setattr(Engine, "_compute_groups", recording)
    return threads


def test_calls_of_one_turn_form_one_batch_on_the_event_loop(monkeypatch) -> None:
    """N calls submitted in one turn of the event loop are one batch of N, computed on the
    loop (no timer, no thread), with the answers each call gets alone, bit for bit."""
    rng = np.random.default_rng(5)
    calls = [_ce(rng, int(rng.integers(1, 9))) for _ in range(16)]
    threads = _record_compute_threads(monkeypatch)

    async def body(engine: Engine):
        results = await asyncio.gather(*(engine.compute("cross_entropy", a, grad=True)
                                         for a in calls))
        return results, _batch_sizes(engine)

    results, (batches, served) = asyncio.run(_with_engine(Settings(), body))
    assert (batches, served) == (1, 16)
    assert threads == [threading.main_thread().name]
    for arrays, result in zip(calls, results):
        alone = compute("cross_entropy", arrays, grad=True)
        assert np.array_equal(result.loss, alone.loss)
        assert np.array_equal(result.grads["input"], alone.grads["input"])


def test_an_idle_engine_answers_a_lone_call_in_its_turn() -> None:
    """No timer: a call on an idle engine is a batch of one, answered without waiting."""
    rng = np.random.default_rng(6)

    async def body(engine: Engine):
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(engine.compute("cross_entropy", _ce(rng, 4)))
        turns = 0
        while not task.done():  # count the turns of the event loop until the answer
            await asyncio.sleep(0)  # the subject: one turn of the loop, not a wait
            turns += 1
        timers = len(loop._scheduled)  # type: ignore[attr-defined]
        return task.result(), turns, timers, _batch_sizes(engine)

    result, turns, timers, sizes = asyncio.run(_with_engine(Settings(), body))
    assert result.loss.shape == () and sizes == [1, 1]
    assert turns <= 3 and timers == 0


def test_max_batch_requests_1_turns_batching_off() -> None:
    rng = np.random.default_rng(8)

    async def body(engine: Engine):
        await asyncio.gather(*(engine.compute("cross_entropy", _ce(rng, 3)) for _ in range(8)))
        return _batch_sizes(engine)

    assert asyncio.run(_with_engine(Settings(max_batch_requests=1), body)) == [8, 8]


def test_calls_wait_while_the_threads_compute_then_batch() -> None:
    """While a batch computes on the thread, later calls queue (counted in lossd_queue_depth);
    the batch's end dispatches them, as one batch."""
    rng = np.random.default_rng(9)
    big = _ce(rng, 4000)  # 44,000 elements: over the inline limit, so on the thread

    async def body(engine: Engine):
        sample = engine.metrics.registry.get_sample_value
        first = asyncio.create_task(engine.compute("cross_entropy", big))
        await wait_until_async(lambda: engine._computing, what="the big call on the thread",
                               every=0)
        later = [asyncio.create_task(engine.compute("cross_entropy", _ce(rng, 3)))
                 for _ in range(10)]
        await wait_until_async(lambda: first.done() or sample("lossd_queue_depth") == 10,
                               what="the later calls queued", every=0)
        depth = sample("lossd_queue_depth") if not first.done() else None
        await asyncio.gather(first, *later)
        return depth, _batch_sizes(engine)

    depth, sizes = asyncio.run(_with_engine(Settings(), body))
    assert depth in (10.0, None)  # None: the thread finished before the look
    assert sizes == [2, 11]


def test_latencies_by_loss_and_protocol() -> None:
    """Queue time is labelled with the call's loss and the protocol its frontend's guard set
    (metrics.PROTOCOL; "in-process" for a call made in the process itself); request time
    with the loss (or "unknown") and the protocol."""
    rng = np.random.default_rng(10)

    async def body(engine: Engine):
        await engine.compute("cross_entropy", _ce(rng, 3))

        async def over_grpc():
            PROTOCOL.set("grpc")  # as the gRPC guard does, in the RPC's own task
            await asyncio.gather(*(engine.compute("cross_entropy", _ce(rng, 3))
                                   for _ in range(3)))
        await asyncio.create_task(over_grpc())
        engine.metrics.answered("cross_entropy", "v2-rest", "OK", 1e-4)
        engine.metrics.answered("no_such_loss", "v2-rest", "NOT_FOUND", 1e-4)
        sample = engine.metrics.registry.get_sample_value
        queued = {protocol: sample("lossd_queue_duration_seconds_count",
                                   {"loss": "cross_entropy", "protocol": protocol})
                  for protocol in ("in-process", "grpc", "rest")}
        answered = {loss: sample("lossd_request_duration_seconds_count",
                                 {"loss": loss, "protocol": "v2-rest"})
                    for loss in ("cross_entropy", "unknown")}
        return queued, answered, _batch_sizes(engine)

    queued, answered, sizes = asyncio.run(_with_engine(Settings(), body))
    assert queued == {"in-process": 1.0, "grpc": 3.0, "rest": None}
    assert answered == {"cross_entropy": 1.0, "unknown": 1.0}
    assert sizes == [2, 4]  # the three calls of one turn were one batch


def test_measured_cheap_losses_compute_on_the_loop(monkeypatch) -> None:
    """Over inline_compute_elements, a call goes to a compute thread until its loss's time per
    element is measured; then one predicted within inline_compute_us stays on the event loop,
    and a loss not measured yet still goes to the threads."""
    rng = np.random.default_rng(7)
    threads = _record_compute_threads(monkeypatch)
    medium = {"input": rng.standard_normal(50_000), "target": rng.standard_normal(50_000)}

    async def body(engine: Engine):
        for loss in ("mse", "mse", "huber"):
            await engine.compute(loss, medium)
        return dict(engine._seconds_per_element)

    settings = Settings(inline_compute_elements=16_384, inline_compute_us=50_000)
    rates = asyncio.run(_with_engine(settings, body))
    assert [name == threading.main_thread().name for name in threads] == [False, True, False]
    assert set(rates) == {("mse", False), ("huber", False)}


def test_inline_prediction_uses_the_budget() -> None:
    engine = Engine(Settings(inline_compute_elements=1_000, inline_compute_us=100))
    engine._seconds_per_element[("mse", False)] = 1e-9  # 1 ns per element
    call = engine.prepare("mse", {"input": np.zeros(40_000), "target": np.zeros(40_000)})

    def item(grad: bool = False):
        return _Pending(call, grad, None, 0.0, 80_000)  # type: ignore[arg-type]

    assert engine._computes_inline([item()])  # 80 us predicted
    assert not engine._computes_inline([item(), item()])  # 160 us
    assert not engine._computes_inline([item(grad=True)])  # with gradients: not measured


async def _staggered_load(engine: Engine, callers: int, seconds: float, seed: int
                          ) -> list[tuple[dict, object]]:
    """``callers`` closed-loop callers for ``seconds``, let in one every other turn of the
    event loop (as grpc.aio hands over its calls: one at a time, each a turn or more after the
    last). Returns every (arrays, result)."""
    rng = np.random.default_rng(seed)
    answered: list[tuple[dict, object]] = []
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    waiting: asyncio.Queue[asyncio.Event] = asyncio.Queue()

    async def let_in() -> None:
        while loop.time() < stop or not waiting.empty():
            (await waiting.get()).set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def caller() -> None:
        while loop.time() < stop:
            gate = asyncio.Event()
            waiting.put_nowait(gate)
            await gate.wait()
            arrays = _ce(rng, int(rng.integers(1, 5)), dtype="float32")
            answered.append((arrays, await engine.compute("cross_entropy", arrays)))

    door = asyncio.create_task(let_in())
    await asyncio.gather(*(caller() for _ in range(callers)))
    door.cancel()
    return answered


@pytest.mark.parametrize("wait_us", [2000, 0])
def test_callers_a_few_turns_apart_meet_in_batches_once_the_engine_learns_the_load(
        wait_us: int) -> None:
    """Calls that reach the engine turns apart never share a turn; once a probe finds them
    arriving together (within 0.25 s), batches wait for them (``batch_wait_us``). Every answer
    equals the unbatched computation, bit for bit."""
    async def body(engine: Engine):
        answered = await _staggered_load(engine, callers=16, seconds=1.0, seed=20)
        return answered, _batch_sizes(engine)

    answered, (batches, served) = asyncio.run(
        _with_engine(Settings(batch_wait_us=wait_us), body))
    assert served == len(answered) > 100
    for arrays, result in answered:
        assert result.loss.tobytes() == compute("cross_entropy", arrays).loss.tobytes()
    if wait_us:
        assert served / batches >= 3
    else:  # no waiting: no two calls share a turn
        assert served == batches


def test_a_lone_caller_after_the_load_waits_at_most_twice_then_once_per_probe() -> None:
    """When the load stops, the batch being waited for does not come: after two waits that
    ran out the engine stops waiting, but for a probe every quarter second."""
    async def body(engine: Engine):
        await _staggered_load(engine, callers=16, seconds=0.6, seed=21)
        assert engine.target.size > 1  # waiting for the load's batches
        rng = np.random.default_rng(22)
        waited, started = 0, asyncio.get_running_loop().time()
        for _ in range(400):
            before = asyncio.get_running_loop().time()
            await engine.compute("cross_entropy", _ce(rng, 2))
            waited += asyncio.get_running_loop().time() - before > 0.0009
        elapsed = asyncio.get_running_loop().time() - started
        return waited, elapsed

    waited, elapsed = asyncio.run(_with_engine(Settings(), body))
    assert waited <= 2 + elapsed / 0.25 + 1
