"""Soak: steady mixed load on one lossd for a bounded time; RSS must not grow.

    python -m bench.soak [--seconds 300] [--concurrency 16]

Drives small requests (eight losses in turn) and medium ones (ctc, mse on 1e5 elements) over
gRPC and REST from separate load processes, samples the server's RSS every few seconds, and
compares the last samples with the level after warm-up (the first fifth of the run). Exit
status 1 if RSS grew by 5% or more. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.serve import ROOT, Workload, free_port, large, mixed, small, wait_ready


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def medium() -> Workload:
    rng = np.random.default_rng(2)
    return Workload("ctc 50x16x20", [("ctc", {
        "log_probs": np.log(rng.dirichlet(np.ones(20), (50, 16))).astype(np.float32),
        "targets": rng.integers(1, 20, (16, 10)), "input_lengths": np.full(16, 50),
        "target_lengths": rng.integers(1, 11, 16)})], "b64")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    http, grpc_port = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "lossd", "serve", "--host", "127.0.0.1",
                               "--http-port", str(http), "--grpc-port", str(grpc_port),
                               "--log-level", "warning"], cwd=ROOT)
    wait_ready(server, f"http://127.0.0.1:{http}/readyz", http, timeout=60)
    workloads = [("grpc", mixed(), grpc_port), ("rest", small(), http),
                 ("grpc", medium(), grpc_port), ("rest", large(100_000), http)]
    loads: list[subprocess.Popen] = []
    files: list[str] = []
    try:
        for transport, workload, port in workloads:
            names = []
            for payload in (workload.grpc_bytes() if transport == "grpc"
                            else workload.rest_bytes()):
                with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
                    f.write(payload)
                names.append(f.name)
            files += names
            cmd = [sys.executable, "-m", "bench.load", transport, f"127.0.0.1:{port}",
                   ",".join(names), str(max(1, args.concurrency // len(workloads))),
                   str(args.seconds), ",".join(workload.paths(transport))]
            loads.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True))
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        while any(p.poll() is None for p in loads):
            samples.append((time.monotonic() - started, rss_bytes(server.pid)))
            time.sleep(2.0)
        results = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in loads]
    finally:
        server.terminate()
        server.wait(60)
        for name in files:
            Path(name).unlink(missing_ok=True)
    warm = [rss for t, rss in samples if args.seconds * 0.2 <= t <= args.seconds * 0.3]
    end = [rss for _, rss in samples[-5:]]
    baseline, final = float(np.median(warm or samples[:1])), float(np.median(end))
    growth = final / baseline - 1
    requests = sum(r["requests"] for r in results)
    errors = sum(r["errors"] for r in results)
    print(json.dumps({"seconds": args.seconds, "requests": requests, "errors": errors,
                      "rss_after_warmup_mb": baseline / 2**20, "rss_end_mb": final / 2**20,
                      "growth": growth, "server_exit": server.returncode}))
    sys.exit(0 if growth < 0.05 and errors == 0 and server.returncode == 0 else 1)


if __name__ == "__main__":
    main()
