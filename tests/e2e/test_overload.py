"""Overload, deadlines and cancellation against a real server, with the compute worker held
busy by a slow CTC request: a flood past the queue bound is refused at once (503 with
Retry-After / UNAVAILABLE) while /readyz reports the pressure, accepted requests still answer
correctly, and the server recovers; requests that expire or whose caller leaves while queued are
never computed (``lossd_batch_size_sum`` counts every computed request)."""

from __future__ import annotations

import asyncio
import socket
import time

import grpc
import httpx
import numpy as np
import orjson

from lossd._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from lossd.client import AsyncGrpcClient, LossdError, grpc_request
from tests.support.slow import slow_ctc_body
from tests.support.waiting import wait_until_async


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def _until(url: str, name: str, at_least: float) -> None:
    """Wait (polling /metrics) until the gauge ``name`` reaches ``at_least``."""
    async with httpx.AsyncClient(timeout=10) as client:
        async def reached() -> bool:
            text = (await client.get(f"{url}/metrics")).text
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith(name)) >= at_least

        await wait_until_async(reached, what=f"{name} at {at_least:g}", timeout=10)


async def _busy(url: str) -> None:
    """Wait until the slow request is being computed (in flight, nothing queued)."""
    await _until(url, "lossd_in_flight", 1)


def _mse(i: int) -> dict:
    """A request whose answer says which request it was: loss = i^2 / 2."""
    return {"inputs": {"input": [float(i), 0.0], "target": [0.0, 0.0]}}


def test_flood_rejects_at_once_answers_the_accepted_and_recovers(spawn) -> None:
    s = spawn("--max-queue", "10")
    n = 60

    async def timed(coro) -> tuple[object, float]:
        started = time.perf_counter()
        try:
            out = await coro
        except LossdError as error:
            out = error
        return out, time.perf_counter() - started

    async def run():
        async with httpx.AsyncClient(base_url=s.url, timeout=60) as client, \
                AsyncGrpcClient(s.grpc_target, retries=0) as grpc_client:
            await client.get("/livez")
            await grpc_client.compute("mse", input=np.zeros(1), target=np.zeros(1))
            slow = asyncio.create_task(timed(client.post("/v1/losses/ctc",
                                                         json=slow_ctc_body())))
            await _busy(s.url)
            rest = [asyncio.create_task(timed(client.post("/v1/losses/mse", json=_mse(i))))
                    for i in range(n)]
            grpc_calls = [asyncio.create_task(timed(grpc_client.compute(
                "mse", input=np.array([float(i), 0.0]), target=np.zeros(2))))
                for i in range(n)]
            await _until(s.url, "lossd_queue_depth", 10)  # full
            ready = await client.get("/readyz")
            return (await slow, await asyncio.gather(*rest), await asyncio.gather(*grpc_calls),
                    ready)

    (slow, slow_seconds), rest, grpc_calls, ready = asyncio.run(run())
    assert slow.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["status"] == "overloaded" and ready.json()["queue_pressure"] >= 0.9
    accepted = rejected = 0
    rejection_seconds = []
    for i, (response, seconds) in enumerate(rest):
        if response.status_code == 200:
            accepted += 1
            assert response.json() == {"loss": i * i / 2, "dtype": "float64"}
        else:
            rejected += 1
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "UNAVAILABLE"
            rejection_seconds.append(seconds)
    for i, (result, seconds) in enumerate(grpc_calls):
        if isinstance(result, LossdError):
            rejected += 1
            assert result.code == "UNAVAILABLE"
            rejection_seconds.append(seconds)
        else:
            accepted += 1
            assert float(result.loss) == i * i / 2
    assert accepted + rejected == 2 * n and rejected >= 2 * n - 10 - 2
    # refused at once: well before the busy worker frees a queue slot
    assert max(rejection_seconds) < slow_seconds, (max(rejection_seconds), slow_seconds)
    print(f"\nflood: {2 * n} requests at a queue of 10 behind a {slow_seconds:.2f} s compute: "
          f"{accepted} answered correctly, {rejected} refused, slowest refusal "
          f"{max(rejection_seconds) * 1000:.0f} ms")
    # recovery: ready again, every request answered
    assert httpx.get(f"{s.url}/readyz").json()["status"] == "ready"
    for i in range(20):
        answer = httpx.post(f"{s.url}/v1/losses/mse", json=_mse(i)).json()
        assert answer == {"loss": i * i / 2, "dtype": "float64"}
    assert _metric(s.url, 'lossd_rejections_total{reason="queue_full"}') == rejected


def test_expired_in_queue_is_never_computed(spawn) -> None:
    s = spawn()
    httpx.post(f"{s.url}/v1/losses/mse", json=_mse(1))
    computed_before = _metric(s.url, "lossd_batch_size_sum")

    async def run():
        async with httpx.AsyncClient(base_url=s.url, timeout=60) as client, \
                AsyncGrpcClient(s.grpc_target, timeout=0.05, retries=0) as grpc_client:
            slow = asyncio.create_task(client.post("/v1/losses/ctc", json=slow_ctc_body()))
            await _busy(s.url)
            late = [asyncio.create_task(client.post(
                "/v1/losses/mse", json=_mse(i), headers={"x-request-timeout": "0.05"}))
                for i in range(20)]

            async def grpc_late(i: int) -> str:
                try:
                    await grpc_client.compute("mse", input=np.array([float(i)]),
                                              target=np.zeros(1))
                    return "OK"
                except LossdError as error:
                    return error.code
            late_grpc = [asyncio.create_task(grpc_late(i)) for i in range(20)]
            return await slow, await asyncio.gather(*late), await asyncio.gather(*late_grpc)

    slow, late, late_grpc = asyncio.run(run())
    assert slow.status_code == 200
    assert [(r.status_code, r.json()["error"]["code"]) for r in late] == [
        (504, "DEADLINE_EXCEEDED")] * 20
    assert late_grpc == ["DEADLINE_EXCEEDED"] * 20
    answer = httpx.post(f"{s.url}/v1/losses/mse", json=_mse(3)).json()
    assert answer == {"loss": 4.5, "dtype": "float64"}
    # computed: the slow CTC and the last mse; none of the 40 that expired in the queue
    assert _metric(s.url, "lossd_batch_size_sum") - computed_before == 2
    dropped = (_metric(s.url, 'lossd_rejections_total{reason="deadline"}')
               + _metric(s.url, 'lossd_rejections_total{reason="cancelled"}'))
    # every REST one was queued and dropped; a gRPC call may expire before its handler runs
    assert 20 <= dropped <= 40


def test_departed_callers_are_dropped_from_the_queue(spawn) -> None:
    """HTTP clients that hang up and gRPC calls that are cancelled while queued are dropped; a
    client that hangs up mid-body is no error either."""
    s = spawn()
    httpx.post(f"{s.url}/v1/losses/mse", json=_mse(1))
    computed_before = _metric(s.url, "lossd_batch_size_sum")
    body = orjson.dumps(_mse(2))

    def head(length: int) -> bytes:
        return (f"POST /v1/losses/mse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                f"\r\nContent-Length: {length}\r\n\r\n").encode()

    async def run():
        async with httpx.AsyncClient(base_url=s.url, timeout=60) as client:
            slow = asyncio.create_task(client.post("/v1/losses/ctc", json=slow_ctc_body()))
            await _busy(s.url)
            for i in range(10):  # a whole request; hang up once it is queued
                with socket.create_connection(("127.0.0.1", s.http_port)) as sock:
                    sock.sendall(head(len(body)) + body)
                    await _until(s.url, "lossd_queue_depth", i + 1)
            with socket.create_connection(("127.0.0.1", s.http_port)) as sock:
                sock.sendall(head(len(body) + 100) + body)  # hang up mid-body
            async with grpc.aio.insecure_channel(s.grpc_target) as channel:
                stub = pb_grpc.LossServiceStub(channel)
                calls = [stub.Compute(grpc_request("mse", False, {
                    "input": np.ones(2), "target": np.zeros(2)}), timeout=60) for _ in range(10)]
                await _until(s.url, "lossd_queue_depth", 20)
                for call in calls:
                    call.cancel()
                await _until(s.url, 'lossd_rejections_total{reason="cancelled"}', 20)
            return await slow

    slow = asyncio.run(run())
    assert slow.status_code == 200
    answer = httpx.post(f"{s.url}/v1/losses/mse", json=_mse(3)).json()
    assert answer == {"loss": 4.5, "dtype": "float64"}
    # computed: the slow CTC and the last mse; none of the 20 whose callers left
    assert _metric(s.url, "lossd_batch_size_sum") - computed_before == 2
    assert _metric(s.url, 'lossd_requests_total{code="CANCELLED"') >= 11
    assert _metric(s.url, 'lossd_requests_total{code="INTERNAL"') == 0
    assert "Traceback" not in s.log() and "Exception in ASGI" not in s.log(), s.log()
