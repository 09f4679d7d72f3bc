"""Health, readiness, reflection, metrics and SIGTERM drain, against real servers."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import grpc
import httpx
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lossd.client import AsyncGrpcClient, GrpcClient, LossdError
from tests.support.scale_load import HEALTH_CHECKED
from tests.support.slow import SMALL_MSE, slow_ctc_body
from tests.support.waiting import metric, wait_until, wait_until_async


def _health(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_endpoints(server) -> None:
    assert httpx.get(f"{server.url}/livez").json() == {"status": "alive"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert _health(server.grpc_target) == health_pb2.HealthCheckResponse.SERVING
    assert _health(server.grpc_target, "lossd.v1.LossService") == \
        health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(server) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    names = {s.name for s in response.list_services_response.service}
    assert {"lossd.v1.LossService", "grpc.health.v1.Health"} <= names


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else "")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
        elif not labels and line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    assert want is not None
    return total


def test_metrics_move(server) -> None:
    before = httpx.get(f"{server.url}/metrics").text
    assert httpx.post(f"{server.url}/v1/losses/mse", json=SMALL_MSE).status_code == 200
    assert httpx.post(f"{server.url}/v1/losses/mse", json={"inputs": {}}).status_code == 400
    v2 = {"inputs": [{"name": name, "datatype": "FP64", "shape": [2], "data": [1.0, 2.0]}
                     for name in ("input", "target")]}
    assert httpx.post(f"{server.url}/v2/models/l1/infer", json=v2).status_code == 200
    after = httpx.get(f"{server.url}/metrics").text
    for name, labels in [("lossd_requests_total", {"loss": "mse", "protocol": "rest",
                                                   "code": "OK"}),
                         ("lossd_requests_total", {"code": "INVALID_ARGUMENT"}),
                         ("lossd_request_duration_seconds_count", {"loss": "mse",
                                                                   "protocol": "rest"}),
                         ("lossd_request_duration_seconds_count", {"loss": "l1",
                                                                   "protocol": "v2-rest"}),
                         ("lossd_queue_duration_seconds_count", {"loss": "mse",
                                                                 "protocol": "rest"}),
                         ("lossd_queue_duration_seconds_count", {"loss": "l1",
                                                                 "protocol": "v2-rest"}),
                         ("lossd_compute_duration_seconds_count", {}),
                         ("lossd_batch_size_count", {})]:
        assert _metric(after, name, **labels) > _metric(before, name, **labels), name
    for family in ("lossd_queue_depth", "lossd_in_flight", "lossd_rejections_total",
                   "lossd_request_duration_seconds_bucket{le=\"0.0001\""):
        assert family in after, family


async def _gauge_reaches(client: httpx.AsyncClient, name: str, value: float) -> None:
    """Wait (polling /metrics) until the gauge ``name`` is at least ``value``."""
    async def reached() -> bool:
        return metric((await client.get("/metrics")).text, name) >= value

    await wait_until_async(reached, what=f"{name} at {value:g}", timeout=10)


def test_sigterm_drains_under_load(spawn) -> None:
    """Every accepted request completes, new ones are refused, health flips, exit code 0."""
    s = spawn()

    async def run():
        async with httpx.AsyncClient(base_url=s.url, timeout=60) as client, \
                AsyncGrpcClient(s.grpc_target) as grpc_client:
            await grpc_client.compute("mse", input=np.ones(3), target=np.zeros(3))  # connect
            await client.get("/livez")
            slow = asyncio.create_task(client.post("/v1/losses/ctc", json=slow_ctc_body()))
            await _gauge_reaches(client, "lossd_in_flight", 1)
            queued = [asyncio.create_task(client.post("/v1/losses/mse", json=SMALL_MSE))
                      for _ in range(20)]
            queued_grpc = [asyncio.create_task(grpc_client.compute(
                "mse", input=np.ones(3), target=np.zeros(3))) for _ in range(20)]
            await _gauge_reaches(client, "lossd_queue_depth", 40)  # behind the slow one
            s.process.send_signal(signal.SIGTERM)

            async def refusing() -> httpx.Response | None:  # the signal is handled
                answer = await client.get("/readyz")
                return None if answer.status_code == 200 else answer

            ready = await wait_until_async(refusing, what="/readyz refusing after SIGTERM",
                                           timeout=5)
            health = _health(s.grpc_target)
            late = await client.post("/v1/losses/mse", json=SMALL_MSE)
            try:
                await grpc_client.compute("mse", input=np.ones(3), target=np.zeros(3))
                late_grpc = "OK"
            except LossdError as error:
                late_grpc = error.code
            return (await slow, await asyncio.gather(*queued), await asyncio.gather(*queued_grpc),
                    ready, health, late, late_grpc)

    slow, queued, queued_grpc, ready, health, late, late_grpc = asyncio.run(run())
    assert slow.status_code == 200
    assert all(r.status_code == 200 and r.json()["loss"] == 2.5 for r in queued)
    assert all(float(r.loss) == 1.0 for r in queued_grpc)
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert health == health_pb2.HealthCheckResponse.NOT_SERVING
    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    assert late_grpc == "UNAVAILABLE"
    started = time.monotonic()
    assert s.terminate(timeout=30) == 0
    assert time.monotonic() - started < 30



def test_sigterm_keeps_answering_until_clients_moved_away(spawn) -> None:
    """A SIGTERMed replica stays open for ``shutdown_delay_s``: health NOT_SERVING, new calls
    UNAVAILABLE (not refused, not CANCELLED); a health-checking round-robin client over two
    replicas moves to the other one and none of its calls fails."""
    leaving = spawn(env={"LOSSD_SHUTDOWN_DELAY_S": "1.5"})
    staying = spawn()
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()

    def load() -> None:
        with GrpcClient(f"ipv4:{leaving.grpc_target},{staying.grpc_target}", timeout=10,
                        options=[("grpc.service_config", HEALTH_CHECKED)]) as client:
            while not stop.is_set():
                try:
                    answer = client.compute("mse", input=np.ones(3), target=np.zeros(3))
                    outcomes.append((time.monotonic(), "OK" if answer.loss == 1.0 else "wrong"))
                except LossdError as error:
                    outcomes.append((time.monotonic(), error.code.name))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(outcomes) >= 200, what="200 calls over both replicas")
        signalled = time.monotonic()
        leaving.process.send_signal(signal.SIGTERM)
        wait_until(lambda: (_health(leaving.grpc_target)
                            == health_pb2.HealthCheckResponse.NOT_SERVING),
                   what="health NOT_SERVING after SIGTERM", timeout=10)
        with GrpcClient(leaving.grpc_target, retries=0, timeout=5) as direct:
            try:
                direct.compute("mse", input=np.ones(3), target=np.zeros(3))
                late = "OK"
            except LossdError as error:
                late = error.code.name
        assert leaving.process.wait(30) == 0
        closed = time.monotonic()
        wait_until(lambda: sum(t > closed for t, _ in outcomes) >= 100,  # and on, with one
                   what="100 calls after the replica closed")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert late == "UNAVAILABLE"
    assert closed - signalled >= 1.5
    codes = {code for _, code in outcomes}
    assert codes == {"OK"}, [o for o in outcomes if o[1] != "OK"][:5]
    assert sum(signalled < t < closed for t, _ in outcomes) > 0  # served by the other one


def test_repeated_sigterm_still_exits_0(spawn) -> None:
    """SIGTERM again and again (an impatient supervisor): one drain, exit code 0, even for a
    signal that arrives while the process exits."""
    s = spawn()
    signals = 0
    while s.process.poll() is None:
        s.process.send_signal(signal.SIGTERM)
        signals += 1
        time.sleep(0.005)  # the subject: an impatient supervisor, a SIGTERM every 5 ms
    assert s.process.returncode == 0, s.log()
    assert signals > 1 and s.log().count("draining (grace") == 1
