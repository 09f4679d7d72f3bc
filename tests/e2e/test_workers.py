"""``lossd serve --workers 2``: both ports shared (SO_REUSEPORT), requests answered by more than
one process with correct answers, and ``/metrics`` of any worker counts every worker's requests."""

from __future__ import annotations

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from lossd.client import GrpcClient

TARGET = [0.0, 0.0]


def _mse(i: int) -> float:
    return (i * i + 4.0) / 2.0  # mean((input - target)**2) with input [i, 2], target [0, 0]


def _requests_total(text: str) -> dict[str, float]:
    """``lossd_requests_total`` of mse, code OK, by protocol."""
    return {s.labels["protocol"]: s.value
            for family in text_string_to_metric_families(text) if family.name == "lossd_requests"
            for s in family.samples
            if s.name == "lossd_requests_total" and s.labels["loss"] == "mse"
            and s.labels["code"] == "OK"}


def test_workers_share_both_ports(spawn) -> None:
    server = spawn("--workers", "2")
    pids: set[str] = set()
    rest_calls = 0
    # a new connection per request: the kernel spreads connections over the workers by hash
    while rest_calls < 16 or (len(pids) < 2 and rest_calls < 200):
        response = httpx.post(f"{server.url}/v1/losses/mse",
                              json={"inputs": {"input": [float(rest_calls), 2.0],
                                               "target": TARGET}})
        assert response.status_code == 200, response.text
        assert response.json()["loss"] == _mse(rest_calls)
        pids.add(response.headers["x-lossd-pid"])
        rest_calls += 1
    assert len(pids) == 2, f"{rest_calls} requests all answered by {pids}"
    assert str(server.process.pid) not in pids  # the workers answer, not the parent

    grpc_calls = 8
    for i in range(grpc_calls):  # a new channel (connection) per call
        with GrpcClient(server.grpc_target) as client:
            out = client.compute("mse", input=np.array([float(i), 2.0]), target=np.array(TARGET))
        assert float(out.loss) == _mse(i)

    scraped_by: set[str] = set()
    for _ in range(40):  # every worker's /metrics counts the requests of both
        response = httpx.get(f"{server.url}/metrics")
        assert _requests_total(response.text) == {"rest": rest_calls, "grpc": grpc_calls}
        series = [line.rsplit(" ", 1)[0] for line in response.text.splitlines()
                  if not line.startswith("#")]
        assert len(series) == len(set(series)), "a series is exported twice"
        scraped_by.add(response.headers["x-lossd-pid"])
        if scraped_by == pids:
            break
    assert scraped_by == pids
    assert server.terminate() == 0, server.log()


def test_grpc_client_round_robins_over_resolved_addresses(spawn) -> None:
    """What the headless Service gives a client in Kubernetes: one name, several pods."""
    servers = [spawn(), spawn()]
    target = "ipv4:" + ",".join(s.grpc_target for s in servers)
    with GrpcClient(target) as client:
        for i in range(8):
            out = client.compute("mse", input=np.array([float(i), 2.0]), target=np.array(TARGET))
            assert float(out.loss) == _mse(i)
    served = [_requests_total(httpx.get(f"{s.url}/metrics").text).get("grpc", 0) for s in servers]
    assert sum(served) == 8 and min(served) > 0, served
