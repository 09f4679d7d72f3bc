"""The benchmark harness runs (no timing is asserted: figures live in docs/benchmarks.md).

One short closed-loop run per transport against a real lossd and its floors, the mixed workload
included; the decode floors' decoding checked against the arrays sent; the peers' loss functions
against torch and naive loops (the peers themselves run in ``python -m bench.serve --smoke``,
not here: each needs its own venv); the rows, ratios and tables from made-up rounds; the plots
drawn from a small results file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from bench import floor, serve
from bench.peers import PEERS, losses


@pytest.mark.parametrize(("workload", "transport", "server"), [
    (serve.small(), "grpc", "lossd"), (serve.small(), "v2-grpc", "lossd"),
    (serve.mixed(), "rest", "lossd"), (serve.mixed(), "grpc", "lossd"),
    (serve.large(10_000), "rest", "lossd"), (serve.mixed(), "grpc", "floor"),
    (serve.large(10_000), "rest", "floor"), (serve.small(), "v2-grpc", "decode"),
    (serve.mixed(), "grpc", "decode"), (serve.mixed(), "rest", "decode"),
    (serve.large(10_000), "rest", "decode"), (serve.small(), "v2-rest", "lossd"),
    (serve.large(10_000), "v2-rest", "floor"), (serve.small(), "v2-rest", "decode")])
def test_load_runs_without_errors(workload: serve.Workload, transport: str, server: str) -> None:
    result = serve.measure(workload, transport, server, concurrency=2, seconds=0.3, flags=[])
    assert result["requests"] > 0 and result["errors"] == 0


@pytest.mark.parametrize("workload", [serve.small(), serve.mixed(), serve.large(1000)],
                         ids=["small", "mixed", "large"])
def test_decode_floors_read_the_arrays_sent(workload: serve.Workload) -> None:
    """What the decode floors do per request is the real decoding, not a no-op."""
    for transport, decode in (("grpc", floor.decode_native), ("v2-grpc", floor.decode_v2),
                              ("rest", floor.decode_json), ("v2-rest", floor.decode_v2_json)):
        for payload, (_, arrays) in zip(workload.payloads(transport), workload.calls,
                                        strict=True):
            got = decode(payload)
            assert got.keys() == arrays.keys()
            for name, want in arrays.items():
                if transport == "rest" and workload.rest_encoding == "list" and (
                        want.dtype.kind == "f"):
                    want = want.astype(np.float64)  # JSON numbers: float32 values, exactly
                if transport == "v2-rest":  # the V2 datatype names the dtype
                    assert got[name].dtype == want.dtype
                np.testing.assert_array_equal(got[name], want, err_msg=f"{transport} {name}")


def _naive_cross_entropy(logits: np.ndarray, target: np.ndarray) -> float:
    total = 0.0
    for row, t in zip(logits.astype(np.float64), target, strict=True):
        total += math.log(sum(math.exp(v) for v in row)) - row[t]
    return total / len(target)


def _naive_mse(x: np.ndarray, y: np.ndarray) -> float:
    return sum((float(a) - float(b)) ** 2 for a, b in zip(x.ravel(), y.ravel(), strict=True)
               ) / x.size


def _logits(shape: tuple[int, int], scale: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(sum(shape))
    logits = (rng.standard_normal(shape) * scale).astype(np.float32)
    return logits, rng.integers(0, shape[1], shape[0])


def _pair(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    x, y = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    return x, y


CE_SHAPES = pytest.mark.parametrize("shape", [(32, 10), (1, 3), (64, 1000)])
CE_SCALES = pytest.mark.parametrize("scale", [1.0, 100.0])
MSE_SIZES = pytest.mark.parametrize("n", [1, 1000, 100_000])


@CE_SHAPES
@CE_SCALES
def test_peer_cross_entropy(shape: tuple[int, int], scale: float) -> None:
    """The function every peer serves for cross_entropy: a naive float64 loop's value to float32
    rounding (torch's: the test below, also with logits far from 0, where exp overflows float32
    unless the row maximum is taken out first)."""
    logits, target = _logits(shape, scale)
    got = losses.cross_entropy(logits, target)
    assert got.dtype == np.float32
    if scale == 1.0:  # the naive loop's exp overflows at scale 100
        np.testing.assert_allclose(got, _naive_cross_entropy(logits, target), rtol=2e-6)


@pytest.mark.torch
@CE_SHAPES
@CE_SCALES
def test_peer_cross_entropy_equals_torch(shape: tuple[int, int], scale: float) -> None:
    torch = pytest.importorskip("torch")
    logits, target = _logits(shape, scale)
    want = torch.nn.functional.cross_entropy(torch.from_numpy(logits),
                                             torch.from_numpy(target)).numpy()
    np.testing.assert_allclose(losses.cross_entropy(logits, target), want, rtol=2e-6)


@MSE_SIZES
def test_peer_mse(n: int) -> None:
    x, y = _pair(n)
    got = losses.mse(x, y)
    assert got.dtype == np.float32
    if n <= 1000:
        np.testing.assert_allclose(got, _naive_mse(x, y), rtol=2e-6)


@pytest.mark.torch
@MSE_SIZES
def test_peer_mse_equals_torch(n: int) -> None:
    torch = pytest.importorskip("torch")
    x, y = _pair(n)
    want = torch.nn.functional.mse_loss(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(losses.mse(x, y), want, rtol=2e-6)


def test_peers_serve_the_bench_losses_by_lossd_names() -> None:
    """One request serves lossd and every peer: the models are named as lossd's losses, with
    lossd's input names, and each peer is pinned in its own constraints file."""
    assert set(losses.LOSSES) == {loss for w in (serve.small(), serve.large(10))
                                  for loss, _ in w.calls}
    for workload in (serve.small(), serve.large(10)):
        for _, arrays in workload.calls:
            assert set(arrays) == {"input", "target"}
    for peer in PEERS:
        pins = peer.constraints.read_text().split()
        assert peer.requirement in pins, f"{peer.name}: {peer.requirement} not pinned"


def test_a_peer_that_cannot_be_installed_is_skipped(tmp_path, monkeypatch, capsys) -> None:
    from bench import peers

    def refuse(cmd: list[str], **_: object) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")
    monkeypatch.setattr(peers, "VENVS", tmp_path)
    monkeypatch.setattr(peers.subprocess, "run", refuse)
    assert peers.available(["kserve", "pytriton"]) == []
    out = capsys.readouterr().out
    assert "KServe 0.21 skipped" in out and "PyTriton 0.7 skipped" in out
    assert "No matching distribution" in out and "RLock" not in out  # no note: it did not run


def _result(rps: float, errors: int = 0) -> dict:
    return {"requests": int(rps), "errors": errors, "seconds": 1.0, "rps": rps,
            "bytes": int(rps) * 100, "p50_ms": 1.0, "p99_ms": 2.0, "payload_bytes": 100}


def _rounds() -> list[dict[str, dict]]:
    """Three rounds; lossd/floor 0.5, 0.6 and 0.4; kserve missing from the last round."""
    return [
        {"floor": _result(1000), "decode": _result(900), "lossd": _result(500),
         "mlserver": _result(250), "kserve": _result(400)},
        {"floor": _result(1000), "decode": _result(800), "lossd": _result(600, errors=1),
         "mlserver": _result(200), "kserve": _result(600)},
        {"floor": _result(1000), "decode": _result(950), "lossd": _result(400),
         "mlserver": _result(100)},
    ]


def test_summarize_takes_medians_and_best_peer() -> None:
    scenario = ("small v2-grpc", serve.small(), "v2-grpc", [8], [])
    row = serve.summarize(scenario, 8, _rounds(), ["mlserver", "kserve", "pytriton"])
    assert row["ratio_rps"] == pytest.approx(0.5) and row["ratio_range"] == [0.4, 0.6]
    assert row["lossd"]["rps"] == 500 and row["lossd"]["errors"] == 1  # the median round's
    assert row["decode_ratio"] == pytest.approx(0.9)
    # lossd/mlserver per round: 2.0, 3.0, 4.0; the figures of the round that gave the median
    assert row["peers"]["mlserver"]["ratio"] == pytest.approx(3.0)
    assert row["peers"]["mlserver"]["range"] == [2.0, 4.0]
    assert row["peers"]["mlserver"]["rps"] == 200
    # two rounds only: 1.25 and 1.0, the upper median
    assert row["peers"]["kserve"]["ratio"] == pytest.approx(1.25)
    assert "pytriton" not in row["peers"]
    # per round, the fastest peer: kserve 400 (1.25), kserve 600 (1.0), mlserver 100 (4.0)
    assert row["best_peer"] == {"peer": "kserve", "ratio": pytest.approx(1.25),
                                "range": [pytest.approx(1.0), pytest.approx(4.0)]}


def test_summarize_survives_a_peer_that_answered_nothing() -> None:
    rounds = [{**r, "kserve": _result(0, errors=5)} for r in _rounds()]
    row = serve.summarize(("small v2-rest", serve.small(), "v2-rest", [1], []), 1, rounds,
                          ["kserve"])
    assert math.isnan(row["peers"]["kserve"]["ratio"]) and row["peers"]["kserve"]["errors"] == 15
    assert "errors" in serve.peer_table([row])


def test_tables_show_peers_and_workers() -> None:
    v2 = serve.summarize(("small v2-grpc", serve.small(), "v2-grpc", [8], []), 8, _rounds(),
                         ["mlserver", "kserve"])
    one = serve.summarize(("small grpc", serve.small(), "grpc", [32], []), 32,
                          [{k: r[k] for k in serve.SERVERS} for r in _rounds()], [])
    two_rounds = [{**r, "lossd": _result(r["lossd"]["rps"] * 1.5)} for r in _rounds()]
    two = serve.summarize(("small grpc, 2 workers", serve.small(), "grpc", [32],
                           ["--workers", "2"]), 32,
                          [{k: r[k] for k in serve.SERVERS} for r in two_rounds], [])
    text = serve.table([v2, one, two], "python -m bench.serve --full")
    main, peers = text.split("lossd beside its peers")
    assert main.count("\n| small ") == 3 and "MLServer" not in main
    assert "| MLServer 1.7.1 rps | lossd/mlserver (range) | KServe 0.21 rps |" in peers
    assert ("| small v2-grpc | cross_entropy 32x10 | 8 | 1000 | 500 (0.50) | 200 | 3.00 "
            "(2.00-4.00) | 400 | 1.25 (1.00-1.25) | **1.25** (1.00-4.00), KServe 0.21 |") in peers
    assert "| grpc | cross_entropy 32x10 | 32 | 500 (0.50) | 750 (0.75) | 1.50 |" in peers
    assert "PyTriton" not in text  # no row ran it: no column, no note


def test_full_bench_fits_its_time_budget() -> None:
    """make bench, peers included, stays under 25 minutes by the bench's own estimate (its
    start-up and overhead figures were measured here)."""
    peers = [p.name for p in PEERS]
    assert serve.estimate(True, serve.FULL_SECONDS, 3, peers) < 25 * 60


def test_plots_draw_from_results(tmp_path, monkeypatch) -> None:
    from bench import plots
    run = {"requests": 10, "errors": 0, "seconds": 1.0, "rps": 10.0, "bytes": 1000,
           "p50_ms": 1.0, "p99_ms": 2.0, "payload_bytes": 100}
    rows = [{"scenario": name, "workload": "w", "transport": transport, "concurrency": c,
             "flags": "", "floor": run, "decode": run, "lossd": {**run, "batch_mean": 1.5},
             "ratio_rps": 1.0, "peers": peers}
            for name, transport, c, peers in (
                ("small grpc", "grpc", 1, {}), ("small rest", "rest", 32, {}),
                ("small v2-rest", "v2-rest", 8, {"mlserver": run, "pytriton": run}),
                ("large grpc", "grpc", 2, {}), ("size rest", "rest", 2, {}))]
    core = {"dtype": "float32", "rows": [
        {"loss": "mse", "shape": "10", "size": 1000, "core": 1.0, "torch": 2.0,
         "core_grad": 1.0, "torch_grad": 1.0, "torch_1": 1.0, "torch_1_grad": 1.0}]}
    (tmp_path / "serve.json").write_text(json.dumps(rows))
    (tmp_path / "core.json").write_text(json.dumps(core))
    monkeypatch.setattr(plots, "RESULTS", tmp_path / "serve.json")
    monkeypatch.setattr(plots, "CORE", tmp_path / "core.json")
    monkeypatch.setattr(plots, "IMG", tmp_path / "img")
    plots.main()
    assert {p.name for p in (tmp_path / "img").iterdir()} == {
        "throughput.png", "latency.png", "bandwidth.png", "batch.png", "core_vs_torch.png"}


def test_soak_runs() -> None:
    """A few seconds of the soak (too short for its RSS verdict: only that it runs clean)."""
    out = subprocess.run([sys.executable, "-m", "bench.soak", "--seconds", "3"],
                         capture_output=True, text=True, timeout=120, cwd=serve.ROOT)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["requests"] > 0 and report["errors"] == 0 and report["server_exit"] == 0
