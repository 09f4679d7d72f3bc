"""Redis out of reach is UNAVAILABLE, never INTERNAL: a lossd whose Redis stops answers every run
call with 503 / UNAVAILABLE (which clients retry), and carries on once Redis is back (with its
data: an append-only file), each batch still counted once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import lossd
from lossd.errors import Unavailable
from tests.runs.conftest import _redis_server_binary, wait_for_redis
from tests.support import tools
from tests.support.server import RunningServer, free_port


class Redis:
    """A redis-server with an append-only file that the test stops and starts again."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(self.url, self.process)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    binary = _redis_server_binary()
    if binary is None:
        tools.missing("redis-server is not installed and apt-get cannot install it here")
    server = Redis(binary, tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def test_redis_outage_is_unavailable_then_runs_go_on(spawn, redis_server: Redis) -> None:
    s: RunningServer = spawn(env={"LOSSD_RUNS_STORE": "redis", "LOSSD_REDIS_URL": redis_server.url})
    batch = {"input": np.arange(3.0), "target": np.zeros(3)}
    with lossd.Client(s.url, retries=0) as client, \
            lossd.GrpcClient(s.grpc_target, retries=0) as grpc_client:
        client.create_run("mse", run_id="outage", reduction="sum")
        assert client.add_batch("outage", "b0", **batch)["counted"]
        redis_server.stop()
        for call in (lambda: client.run("outage"), lambda: grpc_client.run("outage"),
                     lambda: client.add_batch("outage", "b1", **batch),
                     lambda: grpc_client.add_batch("outage", "b1", **batch)):
            with pytest.raises(Unavailable, match="run store unavailable"):
                call()
        answer = httpx.get(f"{s.url}/v1/runs/outage")
        assert answer.status_code == 503, answer.text
        redis_server.start()
        # a retrying client rides over the reconnection
        with lossd.Client(s.url) as retrying:
            assert retrying.add_batch("outage", "b1", **batch)["counted"]
            assert not retrying.add_batch("outage", "b0", **batch)["counted"]
            run = retrying.run("outage")
    assert run["aggregate"]["batches"] == 2 and run["aggregate"]["value"] == 10.0
