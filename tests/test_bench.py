"""The benchmark harness runs (no timing is asserted: figures live in docs/benchmarks.md).

One short closed-loop run per transport against a real lossd and its floors, the mixed workload
included; the decode floors' decoding checked against the arrays sent; the plots drawn from a
small results file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bench import floor, serve


@pytest.mark.parametrize(("workload", "transport", "server"), [
    (serve.small(), "grpc", "lossd"), (serve.small(), "v2-grpc", "lossd"),
    (serve.mixed(), "rest", "lossd"), (serve.mixed(), "grpc", "lossd"),
    (serve.large(10_000), "rest", "lossd"), (serve.mixed(), "grpc", "floor"),
    (serve.large(10_000), "rest", "floor"), (serve.small(), "v2-grpc", "decode"),
    (serve.mixed(), "grpc", "decode"), (serve.mixed(), "rest", "decode"),
    (serve.large(10_000), "rest", "decode")])
def test_load_runs_without_errors(workload: serve.Workload, transport: str, server: str) -> None:
    result = serve.measure(workload, transport, server, concurrency=2, seconds=0.3, flags=[])
    assert result["requests"] > 0 and result["errors"] == 0


@pytest.mark.parametrize("workload", [serve.small(), serve.mixed(), serve.large(1000)],
                         ids=["small", "mixed", "large"])
def test_decode_floors_read_the_arrays_sent(workload: serve.Workload) -> None:
    """What the decode floors do per request is the real decoding, not a no-op."""
    for transport, decode in (("grpc", floor.decode_native), ("v2-grpc", floor.decode_v2),
                              ("rest", floor.decode_json)):
        payloads = {"grpc": workload.grpc_bytes, "v2-grpc": workload.v2_grpc_bytes,
                    "rest": workload.rest_bytes}[transport]()
        for payload, (_, arrays) in zip(payloads, workload.calls, strict=True):
            got = decode(payload)
            assert got.keys() == arrays.keys()
            for name, want in arrays.items():
                if transport == "rest" and workload.rest_encoding == "list" and (
                        want.dtype.kind == "f"):
                    want = want.astype(np.float64)  # JSON numbers: float32 values, exactly
                np.testing.assert_array_equal(got[name], want, err_msg=f"{transport} {name}")


def test_plots_draw_from_results(tmp_path, monkeypatch) -> None:
    from bench import plots
    run = {"requests": 10, "errors": 0, "seconds": 1.0, "rps": 10.0, "bytes": 1000,
           "p50_ms": 1.0, "p99_ms": 2.0, "payload_bytes": 100}
    rows = [{"scenario": name, "workload": "w", "transport": transport, "concurrency": c,
             "flags": "", "floor": run, "decode": run, "lossd": run, "ratio_rps": 1.0}
            for name, transport, c in (("small grpc", "grpc", 1), ("small rest", "rest", 32),
                                       ("large grpc", "grpc", 2), ("size rest", "rest", 2))]
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
        "throughput.png", "latency.png", "bandwidth.png", "core_vs_torch.png"}


def test_soak_runs() -> None:
    """A few seconds of the soak (too short for its RSS verdict: only that it runs clean)."""
    out = subprocess.run([sys.executable, "-m", "bench.soak", "--seconds", "3"],
                         capture_output=True, text=True, timeout=120, cwd=serve.ROOT)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["requests"] > 0 and report["errors"] == 0 and report["server_exit"] == 0
