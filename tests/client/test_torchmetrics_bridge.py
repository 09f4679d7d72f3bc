"""lossd.torchmetrics: RemoteLossMetric gives the loss one torch call on the concatenation of
every batch gives — fed by several ranks, with retried and replayed updates counted once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lossd.torchmetrics as bridge
from lossd import Client, GrpcClient
from lossd.errors import InvalidArgument, Unavailable
from tests.support.server import ROOT, free_port

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")
pytestmark = pytest.mark.torch

CLASSES = 5
WEIGHT = np.array([1.0, 2.0, 0.5, 1.5, 1.0], dtype=np.float32)
OPTIONS = {"label_smoothing": 0.1}
WORLD = 4


def shard(rank: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rank ``rank``'s batches: ragged (2 + rank batches of 1 to 7 samples), float32 logits."""
    rng = np.random.default_rng(100 + rank)
    return [(rng.standard_normal((n, CLASSES)).astype(np.float32), rng.integers(0, CLASSES, n))
            for n in rng.integers(1, 8, size=2 + rank)]


def torch_on_concatenation(batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    logits = torch.from_numpy(np.concatenate([b[0] for b in batches]))
    labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    return float(torch.nn.functional.cross_entropy(logits, labels, torch.from_numpy(WEIGHT),
                                                   **OPTIONS))


class LostAnswers:
    """A client whose every other add_batch is counted by the server but answered with an
    error, as when a connection drops after the server committed."""

    def __init__(self, client: Client) -> None:
        self.client, self.calls = client, 0

    def add_batch(self, *args, **kwargs):
        answer = self.client.add_batch(*args, **kwargs)
        self.calls += 1
        if self.calls % 2:
            raise Unavailable("connection reset (the batch was counted)")
        return answer

    def __getattr__(self, name):
        return getattr(self.client, name)


def update_until_acknowledged(metric, *tensors) -> None:
    """What a training loop does with a failed update: call it again with the same batch."""
    while True:
        try:
            return metric.update(*tensors)
        except Unavailable:
            continue


def feed(url: str, init: str, rank: int) -> None:
    """One rank of the distributed test: a gloo group, updates whose answers get lost, a
    replay of the first batches by a restarted worker, two evaluations (reset between)."""
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        with Client(url) as client:
            metric = bridge.RemoteLossMetric("cross_entropy", LostAnswers(client),
                                             weight=torch.from_numpy(WEIGHT), **OPTIONS)
            for logits, labels in shard(rank):
                update_until_acknowledged(metric, torch.from_numpy(logits),
                                          torch.from_numpy(labels))
            if rank == 2:  # a restarted worker replays its shard's first batches
                again = bridge.RemoteLossMetric("cross_entropy", client, run_id=metric.run_id,
                                                rank=rank, weight=torch.from_numpy(WEIGHT),
                                                **OPTIONS)
                for logits, labels in shard(rank)[:2]:
                    again.update(torch.from_numpy(logits), torch.from_numpy(labels))
            first, first_run = metric.compute(), metric.run_id
            metric.reset()
            logits, labels = shard(rank)[-1]
            update_until_acknowledged(metric, torch.from_numpy(logits), torch.from_numpy(labels))
            second = metric.compute()
            print(json.dumps({"rank": rank, "runs": [first_run, metric.run_id],
                              "values": [float(first), float(second)],
                              "dtype": str(first.dtype), "batches": int(metric.batches)}))
    finally:
        torch.distributed.destroy_process_group()


def test_four_ranks_with_lost_answers_and_replays_equal_torch_on_the_concatenation(server):
    init = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
    ranks = [subprocess.Popen(
        [sys.executable, "-c", "from tests.client.test_torchmetrics_bridge import feed; "
         f"feed({server.url!r}, {init!r}, {rank})"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(WORLD)]
    outputs = [rank.communicate(timeout=180) for rank in ranks]
    for rank, (out, err) in zip(ranks, outputs):
        assert rank.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    assert len({tuple(r["runs"]) for r in results}) == 1, results  # one run per evaluation
    first_run, second_run = results[0]["runs"]
    assert second_run == f"{first_run}.1"
    everything = torch_on_concatenation([b for rank in range(WORLD) for b in shard(rank)])
    last_batches = torch_on_concatenation([shard(rank)[-1] for rank in range(WORLD)])
    for r in results:
        assert r["dtype"] == "torch.float32"
        assert r["values"][0] == pytest.approx(everything, rel=1e-5)
        assert r["values"][1] == pytest.approx(last_batches, rel=1e-5)
        assert r["batches"] == 1  # this rank's own count again after compute's sync
    with Client(server.url) as client:
        run = client.run(first_run)
    assert run["aggregate"]["batches"] == sum(len(shard(rank)) for rank in range(WORLD))
    assert run["workers"] == {f"rank-{rank}": len(shard(rank)) for rank in range(WORLD)}


@pytest.fixture(params=["rest", "grpc"])
def client(server, request):
    with (Client(server.url) if request.param == "rest" else GrpcClient(server.grpc_target)) as c:
        yield c


def test_ranks_without_a_process_group_share_a_run_by_id(client) -> None:
    run_id = f"metric-{os.getpid()}-{free_port()}"
    ranks = [bridge.RemoteLossMetric("cross_entropy", client, run_id=run_id, rank=rank,
                                     weight=torch.from_numpy(WEIGHT), **OPTIONS)
             for rank in range(2)]
    for rank, metric in enumerate(ranks):
        for logits, labels in shard(rank):
            metric.update(torch.from_numpy(logits), torch.from_numpy(labels))
    expected = torch_on_concatenation(shard(0) + shard(1))
    for metric in ranks:  # every process's batches are in: each reads the whole run
        value = metric.compute()
        assert value.dtype == torch.float32 and float(value) == pytest.approx(expected, rel=1e-5)
    assert client.run(run_id)["workers"] == {"rank-0": 2, "rank-1": 3}


def test_an_update_that_raised_is_sent_again_under_its_batch_id(client) -> None:
    metric = bridge.RemoteLossMetric("mse", LostAnswers(client), reduction="sum")
    x, y = torch.arange(6.0, dtype=torch.float64).reshape(3, 2), torch.zeros(3, 2,
                                                                              dtype=torch.float64)
    with pytest.raises(Unavailable):
        metric.update(x, y)
    metric.update(x, y)  # the retry: counted:false, the same batch
    update_until_acknowledged(metric, x[:1], y[:1])
    value = metric.compute()
    assert value.dtype == torch.float64 and float(value) == 55.0 + 1.0
    assert client.run(metric.run_id)["aggregate"]["batches"] == 2


def test_forward_returns_the_batch_loss_and_reset_starts_a_new_run(client) -> None:
    metric = bridge.RemoteLossMetric("l1", client)
    x, y = torch.tensor([1.0, -2.0, 3.0]), torch.zeros(3)
    batch = metric(x, y)
    assert batch.dtype == torch.float32 and float(batch) == pytest.approx(2.0)
    metric(x[:1], y[:1])
    assert float(metric.compute()) == pytest.approx(7.0 / 4)
    first = metric.run_id
    metric.reset()
    assert metric.run_id == f"{first}.1" and int(metric.batches) == 0
    metric.update(x[1:], y[1:])
    assert float(metric.compute()) == pytest.approx(2.5)


def test_refusals(client, monkeypatch) -> None:
    with pytest.raises(InvalidArgument, match="reduction 'mean', 'sum' or 'batchmean'"):
        bridge.RemoteLossMetric("generalized_box_iou", client)  # its default is 'none'
    with pytest.raises(InvalidArgument, match="unknown option"):
        bridge.RemoteLossMetric("mse", client, smoothing=0.1)
    metric = bridge.RemoteLossMetric("mse", client)
    with pytest.raises(TypeError, match="tensors only"):
        metric.update(torch.zeros(2), torch.zeros(2), reduction="sum")
    monkeypatch.setenv("WORLD_SIZE", "4")  # several processes, no process group, no run id
    with pytest.raises(InvalidArgument, match="run_id="):
        bridge.RemoteLossMetric("mse", client).update(torch.zeros(2), torch.zeros(2))
