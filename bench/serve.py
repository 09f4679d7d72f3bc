"""lossd against the bare transport floor, side by side in one run (``make bench``).

    python -m bench.serve [--full] [--seconds S] [--repeat N] [--no-write]

Each scenario starts a server (lossd; the floor server that only receives the same bytes; or the
decode floor, which also turns them into arrays with the plain library calls: see bench/floor.py),
drives it from a separate load process (bench/load.py) for S seconds, and stops it; the three
take turns N times per row and the median ratios are reported with their ranges (the load
generator and the server share this machine's cores). Figures are ratios against the floor
measured in the same run, with absolute numbers beside them. Results go to stdout,
bench/results/serve.json and the "Service vs floor" section of docs/benchmarks.md.

Scenarios (quick): small = cross_entropy on (32, 10) float32 at concurrency 1 and 32, over gRPC
(raw tensors), V2 gRPC and REST (JSON lists); large = mse on 1M float32 pairs over gRPC (raw),
V2 and REST (b64). ``--full`` adds concurrency 8 and 128, batching off, ``--workers 2``,
16M-element mse, a mixed workload (eight small calls of different losses in turn) and MB/s vs
payload size (mse from 1e3 to 4e6 elements per tensor).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from lossd.client import grpc_request

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-serve:begin -->", "<!-- bench-serve:end -->"
SWEEP = (1_000, 10_000, 100_000, 4_000_000)  # mse elements per tensor, beside large(1M)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Workload:
    """One or more loss calls (a mixed workload when several): each caller cycles through them."""

    name: str
    calls: list[tuple[str, dict[str, np.ndarray]]]  # (loss, arrays)
    rest_encoding: str  # "list" or "b64"

    def grpc_bytes(self) -> list[bytes]:
        return [grpc_request(loss, False, dict(arrays)).SerializeToString()
                for loss, arrays in self.calls]

    def v2_grpc_bytes(self) -> list[bytes]:
        """The same calls as Open Inference Protocol ModelInfer with raw_input_contents."""
        from lossd._proto.inference import grpc_predict_v2_pb2 as v2
        from lossd.api.v2 import V2_DATATYPES
        out = []
        for loss, arrays in self.calls:
            request = v2.ModelInferRequest(model_name=loss)
            for name, array in arrays.items():
                request.inputs.add(name=name, datatype=V2_DATATYPES[array.dtype.name],
                                   shape=array.shape)
                request.raw_input_contents.append(
                    array.astype(array.dtype.newbyteorder("<")).tobytes())
            out.append(request.SerializeToString())
        return out

    def rest_bytes(self) -> list[bytes]:
        def enc(a: np.ndarray):
            if self.rest_encoding == "list":
                return a.tolist()
            return {"dtype": a.dtype.name, "shape": list(a.shape),
                    "b64": base64.b64encode(a.tobytes()).decode()}
        return [json.dumps({"inputs": {k: enc(v) for k, v in arrays.items()}}).encode()
                for _, arrays in self.calls]

    def paths(self, transport: str) -> list[str]:
        if transport == "rest":
            return [f"/v1/losses/{loss}" for loss, _ in self.calls]
        return ["/inference.GRPCInferenceService/ModelInfer" if transport == "v2-grpc" else
                "/lossd.v1.LossService/Compute"]


def small() -> Workload:
    rng = np.random.default_rng(0)
    return Workload("cross_entropy 32x10", [("cross_entropy", {
        "input": rng.standard_normal((32, 10)).astype(np.float32),
        "target": rng.integers(0, 10, 32)})], "list")


def large(n: int) -> Workload:
    rng = np.random.default_rng(1)
    label = f"mse {n // 1_000_000}M float32" if n >= 1_000_000 else f"mse {n:,} float32"
    return Workload(label, [("mse", {"input": rng.standard_normal(n).astype(np.float32),
                                     "target": rng.standard_normal(n).astype(np.float32)})],
                    "b64")


def mixed() -> Workload:
    """Eight small calls of different losses, families and shapes, sent in turn."""
    rng = np.random.default_rng(2)

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)
    calls = [
        ("cross_entropy", {"input": normal(32, 10), "target": rng.integers(0, 10, 32)}),
        ("mse", {"input": normal(64, 8), "target": normal(64, 8)}),
        ("binary_cross_entropy_with_logits", {"input": normal(32, 5), "target": (
            rng.random((32, 5)) > 0.5).astype(np.float32)}),
        ("smooth_l1", {"input": normal(256), "target": normal(256)}),
        ("triplet_margin", {"anchor": normal(16, 32), "positive": normal(16, 32),
                            "negative": normal(16, 32)}),
        ("generalized_box_iou", {"boxes1": np.sort(rng.random((32, 4)), axis=1).astype(
            np.float32)[:, [0, 1, 2, 3]], "boxes2": np.sort(rng.random((32, 4)), axis=1
                                                            ).astype(np.float32)}),
        ("dice", {"input": normal(2, 3, 8, 8), "target": rng.integers(0, 3, (2, 8, 8))}),
        ("kl_div", {"input": np.log(rng.dirichlet(np.ones(10), 32)).astype(np.float32),
                    "target": rng.dirichlet(np.ones(10), 32).astype(np.float32)}),
    ]
    return Workload("8 losses, small", calls, "list")


@dataclass
class Run:
    scenario: str
    transport: str
    server: str
    concurrency: int
    result: dict = field(default_factory=dict)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def start(server: str, flags: list[str]) -> tuple[subprocess.Popen, int, int]:
    """``server``: "lossd", or a floor of bench/floor.py ("grpc", "rest-decode", ...)."""
    http, grpc_port = free_port(), free_port()
    if server == "lossd":
        cmd = [sys.executable, "-m", "lossd", "serve", "--host", "127.0.0.1",
               "--http-port", str(http), "--grpc-port", str(grpc_port), "--log-level", "warning",
               *flags]
        probe = f"http://127.0.0.1:{http}/readyz"
    elif server.startswith("grpc"):
        cmd = [sys.executable, "-m", "bench.floor", server, str(grpc_port)]
        probe = None
    else:
        cmd = [sys.executable, "-m", "bench.floor", server, str(http)]
        probe = f"http://127.0.0.1:{http}/"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe:
        _wait_ready(probe, proc)
    else:
        time.sleep(1.0)
    return proc, http, grpc_port


SERVERS = ("floor", "decode", "lossd")  # measured in turn for every row


def measure(workload: Workload, transport: str, server: str, concurrency: int, seconds: float,
            flags: list[str]) -> dict:
    """One load run against ``server`` (one of SERVERS; ``flags`` are lossd's)."""
    floor = "rest" if transport == "rest" else "grpc"
    kind = {"floor": floor, "decode": f"{floor}-decode", "lossd": "lossd"}[server]
    proc, http, grpc_port = start(kind, flags if server == "lossd" else [])
    files: list[str] = []
    try:
        payloads = {"grpc": workload.grpc_bytes, "v2-grpc": workload.v2_grpc_bytes,
                    "rest": workload.rest_bytes}[transport]()
        for payload in payloads:
            with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
                f.write(payload)
            files.append(f.name)
        target = f"127.0.0.1:{http if transport == 'rest' else grpc_port}"
        kind_arg = "rest" if transport == "rest" else "grpc"
        cmd = [sys.executable, "-m", "bench.load", kind_arg, target, ",".join(files),
               str(concurrency), str(seconds), ",".join(workload.paths(transport))]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True,
                             timeout=seconds + 120)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["payload_bytes"] = sum(map(len, payloads)) // len(payloads)
        return result
    finally:
        for name in files:
            os.unlink(name)
        proc.terminate()
        proc.wait(30)


def scenarios(full: bool) -> list[tuple[str, Workload, str, list[int], list[str]]]:
    """(name, workload, transport, concurrencies, lossd flags)."""
    conc = [1, 8, 32, 128] if full else [1, 32]
    out = []
    for transport in ("grpc", "v2-grpc", "rest"):
        out.append((f"small {transport}", small(), transport, conc, []))
    for transport in ("grpc", "v2-grpc", "rest"):
        out.append((f"large {transport}", large(1_000_000), transport, [2], []))
    if full:
        out.append(("small grpc, batching off", small(), "grpc", [128],
                    ["--max-batch-requests", "1"]))
        out.append(("small grpc, 2 workers", small(), "grpc", [32, 128], ["--workers", "2"]))
        big = ["--max-body-bytes", str(400 * 2**20), "--max-tensor-elements", str(2**25)]
        out.append(("16M grpc", large(16_000_000), "grpc", [1], big))
        for transport in ("grpc", "rest"):
            out.append((f"mixed {transport}", mixed(), transport, [1, 32], []))
        for transport in ("grpc", "rest"):  # MB/s vs payload size (1M is "large" above)
            for n in SWEEP:
                out.append((f"size {transport}", large(n), transport, [2], []))
    return out


def _ratio(result: dict, floor: dict) -> float:
    return result["rps"] / floor["rps"] if floor["rps"] else float("nan")


def run(full: bool, seconds: float, repeat: int) -> list[dict]:
    """Each row: ``repeat`` back-to-back rounds of floor, decode floor and lossd; the round with
    the median lossd/floor ratio is reported, with the lowest and highest ratios of lossd and of
    the decode floor beside it (the machine is shared)."""
    rows = []
    for name, workload, transport, concurrencies, flags in scenarios(full):
        for c in concurrencies:
            rounds = sorted(
                ({server: measure(workload, transport, server, c, seconds, flags)
                  for server in SERVERS} for _ in range(repeat)),
                key=lambda r: _ratio(r["lossd"], r["floor"]))
            median = rounds[len(rounds) // 2]
            lossd_ratios = [_ratio(r["lossd"], r["floor"]) for r in rounds]
            decode_ratios = sorted(_ratio(r["decode"], r["floor"]) for r in rounds)
            errors = sum(r["lossd"]["errors"] for r in rounds)
            row = {"scenario": name, "workload": workload.name, "transport": transport,
                   "concurrency": c, "flags": " ".join(flags), "floor": median["floor"],
                   "decode": median["decode"], "lossd": {**median["lossd"], "errors": errors},
                   "ratio_rps": lossd_ratios[len(rounds) // 2],
                   "ratio_range": [lossd_ratios[0], lossd_ratios[-1]],
                   "decode_ratio": decode_ratios[len(rounds) // 2],
                   "decode_range": [decode_ratios[0], decode_ratios[-1]]}
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _mbs(r: dict) -> float:
    return r["bytes"] / r["seconds"] / 1e6


def _line(row: dict) -> str:
    f, lo = row["floor"], row["lossd"]
    low, high = row["ratio_range"]
    decode_low, decode_high = row["decode_range"]
    return (f"| {row['scenario']} | {row['workload']} | {row['concurrency']} | "
            f"{lo['rps']:.0f} | {f['rps']:.0f} | **{row['ratio_rps']:.2f}** "
            f"({low:.2f}-{high:.2f}) | {row['decode_ratio']:.2f} "
            f"({decode_low:.2f}-{decode_high:.2f}) | "
            f"{_mbs(lo):.0f} / {_mbs(f):.0f} | {lo['p50_ms']:.2f} / {lo['p99_ms']:.2f} | "
            f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} | {lo['errors']} |")


def table(rows: list[dict], command: str) -> str:
    head = ("| scenario | workload | conc. | lossd rps | floor rps | lossd/floor (range) | "
            "decode floor/floor (range) | MB/s lossd / floor | lossd p50 / p99 ms | "
            "floor p50 / p99 ms | errors |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return (f"Command: `{command}` — {stamp}, {machine}; client and server share the "
            f"machine. Each row is the median of back-to-back rounds of floor, decode floor and "
            f"lossd (lowest and highest ratios in brackets); errors are lossd's, summed over all "
            f"rounds. The decode floor only turns each request into arrays with the libraries "
            f"lossd uses too (bench/floor.py): on small requests its ratio is a ceiling for "
            f"lossd.\n\n{head}\n"
            + "\n".join(_line(r) for r in rows) + "\n")


def write_doc(text: str) -> None:
    DOC.parent.mkdir(exist_ok=True)
    body = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    section = f"{BEGIN}\n{text}{END}"
    if BEGIN in body:
        body = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, body,
                      flags=re.S)
    else:
        body = body.rstrip() + "\n\n## Service vs floor\n\n" + section + "\n"
    DOC.write_text(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds (floor, decode floor, lossd) per row; the median is "
                             "reported")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    command = "python -m bench.serve" + (" --full" if args.full else "") + (
        f" --seconds {args.seconds:g}" if args.seconds != 3.0 else "") + (
        f" --repeat {args.repeat}" if args.repeat != 3 else "")
    rows = run(args.full, args.seconds, args.repeat)
    text = table(rows, command)
    print(text)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "serve.json").write_text(json.dumps(rows, indent=1))
    if not args.no_write:
        write_doc(text)


if __name__ == "__main__":
    main()
