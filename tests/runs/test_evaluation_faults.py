"""Exactly-once under faults: lossd is SIGKILLed at random moments while writers add batches to
a run (each retrying its batch until acknowledged, then re-sending some acknowledged ones), with
the SQLite store and with Redis; and two lossd processes sharing Redis serve one run to many
concurrent writers. Every time the run's aggregate must equal a direct computation over each
batch once: no batch lost, none counted twice.

The Redis tests start their own ``redis-server`` on a free loopback port (installing it with apt
when missing) and skip only when that is impossible.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from lossd.client import Client, LossdError
from lossd.losses import compute
from tests.support.server import RunningServer, start_server
from tests.support.waiting import wait_until

WEIGHT = np.array([0.5, 1.0, 2.0, 1.5])


def batch(i: int) -> dict[str, np.ndarray]:
    """Batch ``i`` of the dataset: weighted 4-class cross-entropy, 3 to 9 samples."""
    rng = np.random.default_rng(1000 + i)
    n = 3 + i % 7
    return {"input": rng.normal(size=(n, 4)), "target": rng.integers(0, 4, n)}


def expected(ids: list[int]) -> float:
    parts = [batch(i) for i in ids]
    return float(compute("cross_entropy", {
        "input": np.concatenate([p["input"] for p in parts]),
        "target": np.concatenate([p["target"] for p in parts]), "weight": WEIGHT}).loss)


class Current:
    """The URL of whichever lossd is up now (the killer swaps it)."""

    def __init__(self, server: RunningServer) -> None:
        self.server, self.lock = server, threading.Lock()

    @property
    def url(self) -> str:
        with self.lock:
            return self.server.url


def writer(current: Current, run_id: str, worker: str, ids: list[int], acked: dict[int, bool],
           retried: list[int], stop_at: float) -> None:
    """Add each batch until acknowledged (any failure: retry the same id), then re-send every
    third acknowledged one (must answer counted=false)."""
    resend = ids[::3]
    url = current.url
    client = Client(url, timeout=10)
    try:
        for i in [*ids, *resend]:
            while time.monotonic() < stop_at:
                if current.url != url:
                    client.close()
                    url = current.url
                    client = Client(url, timeout=10)
                try:
                    answer = client.add_batch(run_id, f"batch-{i}", worker=worker, **batch(i))
                except (httpx.HTTPError, LossdError) as error:
                    if isinstance(error, LossdError) and error.status not in (None, 503):
                        raise
                    retried.append(i)
                    time.sleep(0.02)  # the writer's own retry back-off, as a client's
                    continue
                if i in acked:
                    assert not answer["counted"] or not acked[i], f"batch {i} counted twice"
                acked[i] = acked.get(i, False) or answer["counted"]
                break
    finally:
        client.close()


def kill_under_load(tmp_path: Path, env: dict[str, str], kills: int, batches: int = 80,
                    workers: int = 4) -> None:
    server = start_server(tmp_path, env=env)
    current = Current(server)
    started = [server]
    try:
        with Client(server.url) as client:
            run_id = client.create_run("cross_entropy", weight=WEIGHT)["run_id"]
        acked: dict[int, bool] = {}
        retried: list[int] = []
        ids = list(range(batches))
        stop_at = time.monotonic() + 90
        threads = [threading.Thread(target=writer, args=(current, run_id, f"w{k}",
                                                         ids[k::workers], acked, retried,
                                                         stop_at))
                   for k in range(workers)]
        for t in threads:
            t.start()
        rng = random.Random(7)
        for k in range(kills):
            # kill at a random moment while writers are mid-run, however fast the machine is
            target = (k + 1) * batches // (kills + 2) + rng.randrange(batches // (kills + 2))
            wait_until(lambda: len(acked) >= target, what=f"{target} batches acknowledged",
                       timeout=max(0.0, stop_at - time.monotonic()))
            current.server.process.send_signal(signal.SIGKILL)
            current.server.process.wait(10)
            replacement = start_server(tmp_path, env=env)
            started.append(replacement)
            with current.lock:
                current.server = replacement
        for t in threads:
            t.join(100)
        assert sorted(acked) == ids, f"unacknowledged: {sorted(set(ids) - set(acked))}"
        assert retried, "no kill interrupted a writer: not under load"
        print(f"\n{kills} SIGKILLs, {len(retried)} failed attempts retried, {batches} batches "
              f"each counted once")
        with Client(current.url) as client:
            run = client.run(run_id)
        assert run["aggregate"]["batches"] == batches
        assert run["workers"] == {f"w{k}": batches // workers for k in range(workers)}
        assert float(run["aggregate"]["value"]) == pytest.approx(expected(ids), rel=1e-9)
        assert run["aggregate"]["samples"] == sum(len(batch(i)["target"]) for i in ids)
    finally:
        for s in started:
            if s.process.poll() is None:
                s.process.kill()
            s.terminate()


def test_sigkill_under_load_sqlite(tmp_path: Path) -> None:
    kill_under_load(tmp_path, {"LOSSD_RUNS_DIR": str(tmp_path / "runs")}, kills=3)


# --- Redis -------------------------------------------------------------------------------------

def test_sigkill_under_load_redis(tmp_path: Path, redis_url: str) -> None:
    kill_under_load(tmp_path, {"LOSSD_RUNS_STORE": "redis", "LOSSD_REDIS_URL": redis_url},
                    kills=3)


def test_two_processes_share_a_run_through_redis(spawn, redis_url: str) -> None:
    """Eight writers over two lossd processes; every batch id is sent to *both* at once, so
    each id races itself across processes: exactly one of the pair counts it."""
    env = {"LOSSD_RUNS_STORE": "redis", "LOSSD_REDIS_URL": redis_url}
    servers = [spawn(env=env), spawn(env=env)]
    with Client(servers[0].url) as client:
        run_id = client.create_run("cross_entropy", weight=WEIGHT, expected_batches=80)["run_id"]
    counted: dict[int, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def send(k: int) -> None:
        try:
            clients = [Client(s.url) for s in servers]
            for i in range(k, 80, 8):
                answers: list[bool] = []
                pair = [threading.Thread(target=lambda c=c: answers.append(c.add_batch(
                    run_id, f"b{i}", worker=f"w{k}", **batch(i))["counted"])) for c in clients]
                for t in pair:
                    t.start()
                for t in pair:
                    t.join()
                with lock:
                    counted[i] = sum(answers)
            for c in clients:
                c.close()
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert counted == {i: 1 for i in range(80)}
    for server in servers:  # both processes read the same run
        with Client(server.url) as client:
            run = client.run(run_id)
        assert run["complete"] and run["aggregate"]["batches"] == 80
        assert run["workers"] == {f"w{k}": 10 for k in range(8)}
        assert float(run["aggregate"]["value"]) == pytest.approx(expected(list(range(80))),
                                                                 rel=1e-9)
