"""Every error code of the design's table, on both transports, against real servers."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import httpx
import numpy as np
import pytest

from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from lossd.client import GrpcClient, LossdError, grpc_request
from tests.support.slow import SMALL_MSE, slow_ctc_body
from tests.support.waiting import metric, wait_until, wait_until_async


def _raw_call(target: str, method: str, payload: bytes, **kwargs) -> bytes:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return call(payload, timeout=10, **kwargs)


# --- INVALID_ARGUMENT ---------------------------------------------------------------------------

def test_rest_invalid_argument_names_field(server) -> None:
    r = httpx.post(f"{server.url}/v1/losses/cross_entropy", json={"inputs": {
        "input": [[1.0, 2.0, 3.0]] * 4, "target": [0, 1, 2]}})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert error["field"] == "inputs.target"
    assert "(4,)" in error["message"] and "(3,)" in error["message"]


def test_rest_class_index_out_of_range(server) -> None:
    r = httpx.post(f"{server.url}/v1/losses/cross_entropy", json={"inputs": {
        "input": [[1.0, 2.0, 3.0]], "target": [3]}})
    assert r.status_code == 400 and "out of range" in r.json()["error"]["message"]


def test_rest_option_out_of_bounds(server) -> None:
    r = httpx.post(f"{server.url}/v1/losses/smooth_l1", json={**SMALL_MSE,
                                                              "options": {"beta": -1}})
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "options.beta"


def test_grpc_invalid_argument_names_field(server) -> None:
    with GrpcClient(server.grpc_target) as client:
        with pytest.raises(LossdError) as caught:
            client.compute("mse", input=np.zeros(3), target=np.zeros(4))
    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.field == "inputs.target"


def test_rest_malformed_json_is_422(server) -> None:
    r = httpx.post(f"{server.url}/v1/losses/mse", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_ARGUMENT"
    r = httpx.post(f"{server.url}/v1/losses/mse", json={"inputs": [1, 2]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "inputs"


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x0a\x05mse", b"\x12\x80\x80\x80"],
                         ids=["garbage", "truncated-string", "truncated-map"])
def test_grpc_garbage_protobuf_is_invalid_argument(server, payload: bytes) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _raw_call(server.grpc_target, "/lossd.v1.LossService/Compute", payload)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert httpx.get(f"{server.url}/livez").status_code == 200


# --- NOT_FOUND -----------------------------------------------------------------------------------

def test_unknown_loss_not_found(server) -> None:
    r = httpx.post(f"{server.url}/v1/losses/nope", json=SMALL_MSE)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    assert httpx.get(f"{server.url}/v1/losses/nope").status_code == 404
    with GrpcClient(server.grpc_target) as client:
        with pytest.raises(LossdError) as caught:
            client.compute("nope", input=np.zeros(3), target=np.zeros(3))
    assert caught.value.code == "NOT_FOUND"


# --- PAYLOAD_TOO_LARGE -----------------------------------------------------------------------

def test_body_limits(spawn) -> None:
    s = spawn("--max-body-bytes", "4096")
    big = {"inputs": {"input": [0.5] * 2000, "target": [0.5] * 2000}}
    r = httpx.post(f"{s.url}/v1/losses/mse", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"inputs": {"input": ['
        for _ in range(1000):
            yield b"0.5, "
        yield b'0.5], "target": [0.5]}}'
    r = httpx.post(f"{s.url}/v1/losses/mse", content=chunks())
    assert r.status_code == 413
    with GrpcClient(s.grpc_target, retries=0) as client:  # the refusals themselves
        with pytest.raises(LossdError) as caught:
            client.compute("mse", input=np.zeros(2000), target=np.zeros(2000))
    assert caught.value.code == "PAYLOAD_TOO_LARGE"  # RESOURCE_EXHAUSTED, named as REST names it
    r = httpx.post(f"{s.url}/v1/losses/mse", json=SMALL_MSE)
    assert r.status_code == 200


def test_element_limit(spawn) -> None:
    s = spawn("--max-tensor-elements", "100")
    r = httpx.post(f"{s.url}/v1/losses/mse", json={"inputs": {
        "input": {"dtype": "float32", "shape": [1000], "data": [0.0] * 1000},
        "target": [0.0]}})
    assert r.status_code == 413 and "elements" in r.json()["error"]["message"]


# --- UNAVAILABLE and DEADLINE_EXCEEDED ------------------------------------------------------

def test_queue_full_rejects_at_once(spawn) -> None:
    s = spawn("--max-queue", "2")

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=s.url, timeout=60) as client:
            slow = asyncio.create_task(client.post("/v1/losses/ctc", json=slow_ctc_body()))
            await _until_computing_async(client)  # the worker is busy with it now
            started = time.perf_counter()
            quick = await asyncio.gather(*(client.post("/v1/losses/mse", json=SMALL_MSE)
                                           for _ in range(20)))
            assert time.perf_counter() - started < 30
            return [await slow, *quick]

    responses = asyncio.run(flood())
    codes = [r.status_code for r in responses]
    assert codes[0] == 200 and 503 in codes and 200 in codes[1:]
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1"
    assert rejected.json()["error"]["code"] == "UNAVAILABLE"
    assert httpx.post(f"{s.url}/v1/losses/mse", json=SMALL_MSE).status_code == 200
    metrics = httpx.get(f"{s.url}/metrics").text
    assert 'lossd_rejections_total{reason="queue_full"}' in metrics


def _computing(metrics: str) -> bool:
    """A request is accepted and taken from the queue: being computed."""
    return (metric(metrics, "lossd_in_flight") >= 1
            and metric(metrics, "lossd_queue_depth") == 0)


def _until_computing(url: str) -> None:
    """Wait (polling /metrics) until the slow request is accepted and being computed."""
    wait_until(lambda: _computing(httpx.get(f"{url}/metrics").text),
               what="the slow request being computed")


async def _until_computing_async(client: httpx.AsyncClient) -> None:
    """:func:`_until_computing` with the test's own client, on its event loop."""
    async def computing() -> bool:
        return _computing((await client.get("/metrics")).text)

    await wait_until_async(computing, what="the slow request being computed")


def test_grpc_queue_full_is_unavailable(spawn) -> None:
    s = spawn("--max-queue", "1")
    with GrpcClient(s.grpc_target, retries=0) as client:  # the refusals themselves
        slow = threading.Thread(target=lambda: httpx.post(f"{s.url}/v1/losses/ctc",
                                                          json=slow_ctc_body(), timeout=60))
        slow.start()
        _until_computing(s.url)
        codes = []
        threads = [threading.Thread(target=lambda: codes.append(_grpc_code(client)))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        slow.join()
    assert "UNAVAILABLE" in codes


def _grpc_code(client: GrpcClient) -> str:
    try:
        client.compute("mse", input=np.zeros(3), target=np.ones(3))
        return "OK"
    except LossdError as error:
        return error.code


def test_deadline_expired_in_queue(spawn) -> None:
    s = spawn()

    async def run() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=s.url, timeout=60) as client:
            slow = asyncio.create_task(client.post("/v1/losses/ctc", json=slow_ctc_body()))
            await _until_computing_async(client)
            late = await client.post("/v1/losses/mse", json=SMALL_MSE,
                                     headers={"x-request-timeout": "0.01"})
            return await slow, late

    slow, late = asyncio.run(run())
    assert slow.status_code == 200
    assert late.status_code == 504 and late.json()["error"]["code"] == "DEADLINE_EXCEEDED"
    with GrpcClient(s.grpc_target, timeout=0.05) as client:
        slow_thread = threading.Thread(target=lambda: httpx.post(
            f"{s.url}/v1/losses/ctc", json=slow_ctc_body(), timeout=60))
        slow_thread.start()
        _until_computing(s.url)
        assert _grpc_code(client) == "DEADLINE_EXCEEDED"
        slow_thread.join()
    metrics = httpx.get(f"{s.url}/metrics").text

    def rejected(reason: str) -> float:
        prefix = f'lossd_rejections_total{{reason="{reason}"}}'
        return float(next(x for x in metrics.splitlines() if x.startswith(prefix)).split()[-1])
    # gRPC cancels the handler at the deadline itself, so the server sees either its own
    # deadline or the cancellation first; both drop the request before compute.
    assert rejected("deadline") >= 1 and rejected("deadline") + rejected("cancelled") >= 2


def test_bad_timeout_header(server) -> None:
    r = httpx.post(f"{server.url}/v1/losses/mse", json=SMALL_MSE,
                   headers={"x-request-timeout": "soon"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "x-request-timeout"


# --- UNAUTHENTICATED -------------------------------------------------------------------------

def test_api_keys(spawn) -> None:
    s = spawn(env={"LOSSD_API_KEYS": "k1,k2"})
    assert httpx.post(f"{s.url}/v1/losses/mse", json=SMALL_MSE).status_code == 401
    wrong = httpx.post(f"{s.url}/v1/losses/mse", json=SMALL_MSE,
                       headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHENTICATED"
    ok = httpx.post(f"{s.url}/v1/losses/mse", json=SMALL_MSE,
                    headers={"authorization": "Bearer k2"})
    assert ok.status_code == 200
    assert httpx.get(f"{s.url}/readyz").status_code == 200  # health stays open
    assert httpx.get(f"{s.url}/metrics").status_code == 200
    request = grpc_request("mse", False, {"input": np.zeros(2), "target": np.ones(2)})
    with grpc.insecure_channel(s.grpc_target) as channel:
        stub = pb_grpc.LossServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Compute(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        response = stub.Compute(request, timeout=10, metadata=[("authorization", "Bearer k1")])
        assert np.frombuffer(response.loss.raw, "<f8")[0] == 1.0


# --- INTERNAL --------------------------------------------------------------------------------

def test_internal_error_is_500_and_logged(tmp_path) -> None:
    """A loss that crashes (a bug) answers INTERNAL on both transports, and the server lives."""
    from tests.support.inprocess import broken_loss_server

    with broken_loss_server() as (url, target, logs):
        r = httpx.post(f"{url}/v1/losses/broken_for_test", json={"inputs": {"input": [1.0]}})
        assert r.status_code == 500 and r.json()["error"]["code"] == "INTERNAL"
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.LossServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Compute(pb.ComputeRequest(loss="broken_for_test", inputs={
                    "input": pb.Tensor(dtype=pb.FLOAT64, shape=[1], double_data=[1.0])}),
                    timeout=10)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert httpx.post(f"{url}/v1/losses/mse", json=SMALL_MSE).status_code == 200
        assert "ZeroDivisionError" in logs.getvalue()
