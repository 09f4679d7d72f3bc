"""Adaptive batching on a real server: gRPC calls (which grpc.aio hands to lossd one at a time,
turns apart) meet in batches under load, and every answer equals the computation of that call
alone, bit for bit; a lone caller afterwards is not kept waiting for a batch (the queue times
in ``/metrics``)."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np

from lossd.client import AsyncGrpcClient
from lossd.losses import compute
from tests.support.waiting import metric


def _total(url: str, name: str, *labels: str) -> float:
    return metric(httpx.get(f"{url}/metrics").text, name, *labels)


def _batches(url: str) -> tuple[float, float]:
    """(batches, requests in them) from ``/metrics``, over every loss."""
    return _total(url, "lossd_batch_size_count"), _total(url, "lossd_batch_size_sum")


def _queued_within_1ms(url: str) -> float:
    """gRPC calls that waited at most 1 ms in the queue, so far."""
    return _total(url, "lossd_queue_duration_seconds_bucket", 'le="0.001"',
                  'protocol="grpc"')


def test_grpc_calls_under_load_meet_in_batches_and_answer_as_alone(spawn) -> None:
    s = spawn()
    rng = np.random.default_rng(30)
    requests = [{"input": rng.standard_normal((int(n), 10)).astype(np.float32),
                 "target": rng.integers(0, 10, int(n))} for n in rng.integers(1, 33, 200)]

    async def load(seconds: float) -> list[tuple[int, np.ndarray]]:
        answers: list[tuple[int, np.ndarray]] = []
        stop = time.perf_counter() + seconds
        async with AsyncGrpcClient(s.grpc_target, timeout=30) as client:
            async def caller(first: int) -> None:
                i = first
                while time.perf_counter() < stop:
                    result = await client.compute("cross_entropy", **requests[i % 200])
                    answers.append((i % 200, result.loss))
                    i += 7
            await asyncio.gather(*(caller(i) for i in range(32)))
        return answers

    answers = asyncio.run(load(2.0))
    batches, served = _batches(s.url)
    print(f"\nbatching: {served:.0f} gRPC calls from 32 callers in {batches:.0f} batches "
          f"(mean {served / batches:.1f})")
    assert served >= len(answers) > 500
    assert served / batches >= 3
    for i, loss in answers:
        assert loss.tobytes() == compute("cross_entropy", requests[i]).loss.tobytes()

    async def alone() -> None:
        async with AsyncGrpcClient(s.grpc_target, timeout=30) as client:
            for i in range(50):
                await client.compute("cross_entropy", **requests[i])

    before = _queued_within_1ms(s.url)
    asyncio.run(alone())
    # the batch it waited for does not come: two waits, maybe a probe, then none
    assert _queued_within_1ms(s.url) - before >= 50 - 4
