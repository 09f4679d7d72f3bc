"""lossd against the bare transport floor and its peers, side by side in one run (``make bench``).

    python -m bench.serve [--full] [--seconds S] [--repeat N] [--no-write]
                          [--peers NAME,... | --no-peers] [--smoke]

Each round of a scenario starts its servers together (lossd; the floor server that only receives
the same bytes; the decode floor, which also turns them into arrays with the plain library
calls: see bench/floor.py; and, on the V2 transports, each peer: see bench/peers/), then drives
each in turn from a separate load process (bench/load.py) for S seconds per concurrency, the
others idle, and stops them; N rounds per scenario, and each row reports the round with the
median lossd/floor ratio, with the ranges of the ratios beside it (the load generator and the
servers share this machine's cores). Figures are ratios against the floor measured in the same
run, with absolute numbers beside them. Results go to stdout, bench/results/serve.json and the
"Results" section of docs/benchmarks.md.

Every server gets the same request bytes: lossd's native gRPC and REST bodies go to lossd and the
floors; V2 bodies (ModelInfer with raw_input_contents; V2 JSON with ``data`` lists) go to lossd,
the floors and every peer (MLServer, KServe's ModelServer, PyTriton), which serve the same losses
with minimal NumPy functions. A peer that cannot be installed or started is skipped with a
message.

Scenarios (quick): small = cross_entropy on (32, 10) float32 at concurrency 1 and 32, over gRPC
(raw tensors), V2 gRPC, REST (JSON lists) and V2 REST (JSON); large = mse on 1M float32 pairs
over gRPC (raw), V2 gRPC and REST (b64). ``--full`` adds concurrency 8 and 128, mse on 100,000
float32 pairs as V2 JSON (4 MB bodies), batching off, lossd with ``--workers 2`` beside the
1-worker rows, 16M-element mse, a mixed workload (eight small calls of different losses in turn)
and MB/s vs payload size (mse from 1e3 to 4e6 elements per tensor).

``--smoke`` only starts lossd and each peer and sends each one V2 REST and one V2 gRPC call of
each loss, checking that every peer's loss equals lossd's.
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
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench import peers as peer_servers
from lossd.client import grpc_request

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-serve:begin -->", "<!-- bench-serve:end -->"
SWEEP = (1_000, 100_000, 4_000_000)  # mse elements per tensor, beside large(1M)
V2 = ("v2-grpc", "v2-rest")  # the transports the peers speak
SECONDS, FULL_SECONDS = 3.0, 1.5  # per load run: --full has 135 of them per round, peers included
LARGE_BYTES = 500_000  # a request whose arrays hold more is loaded twice as long (tens of rps)


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

    def seconds(self, seconds: float) -> float:
        """How long to load this workload: ``seconds``, or twice that for large requests."""
        size = max(sum(a.nbytes for a in arrays.values()) for _, arrays in self.calls)
        return 2 * seconds if size > LARGE_BYTES else seconds

    def v2_rest_bytes(self) -> list[bytes]:
        """The same calls as V2 JSON infer bodies (``data`` lists: every peer reads them)."""
        from lossd.api.v2 import V2_DATATYPES
        return [json.dumps({"inputs": [
            {"name": name, "shape": list(a.shape), "datatype": V2_DATATYPES[a.dtype.name],
             "data": a.ravel().tolist()} for name, a in arrays.items()]}).encode()
            for _, arrays in self.calls]

    def payloads(self, transport: str) -> list[bytes]:
        return {"grpc": self.grpc_bytes, "v2-grpc": self.v2_grpc_bytes,
                "rest": self.rest_bytes, "v2-rest": self.v2_rest_bytes}[transport]()

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
        if transport == "v2-rest":
            return [f"/v2/models/{loss}/infer" for loss, _ in self.calls]
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


def wait_ready(proc: subprocess.Popen, url: str | None, port: int,
                timeout: float = 30) -> None:
    """Until ``url`` answers, or (no url: a gRPC floor) ``port`` accepts a connection."""
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if url:
                httpx.get(url, timeout=1)
            else:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except (httpx.HTTPError, OSError):
            time.sleep(0.05)
    raise RuntimeError("server did not start")


@dataclass
class Started:
    """A server process launched by :func:`launch`; ``ready()`` waits until it serves."""

    server: str  # what start() was given
    proc: subprocess.Popen
    http: int
    grpc: int

    def ready(self) -> None:
        peer = peer_servers.BY_NAME.get(self.server)
        if peer:
            peer_servers.wait_ready(peer, self.proc, self.http)
        elif self.server == "lossd":
            wait_ready(self.proc, f"http://127.0.0.1:{self.http}/readyz", self.http)
        elif self.server.startswith("grpc"):
            wait_ready(self.proc, None, self.grpc)
        else:
            wait_ready(self.proc, f"http://127.0.0.1:{self.http}/", self.http)

    def stop(self, *, signalled: bool = False) -> None:
        if self.server in peer_servers.BY_NAME:
            peer_servers.stop(self.proc, signalled=signalled)
            return
        if not signalled:
            self.proc.terminate()
        self.proc.wait(30)


def launch(server: str, flags: list[str]) -> Started:
    """``server``: "lossd", a floor of bench/floor.py ("grpc", "rest-decode", ...) or a peer's
    name (bench/peers/); returns at once (see Started.ready)."""
    http, grpc_port = free_port(), free_port()
    if server in peer_servers.BY_NAME:
        proc = peer_servers.launch(peer_servers.BY_NAME[server], http, grpc_port)
        return Started(server, proc, http, grpc_port)
    if server == "lossd":
        cmd = [sys.executable, "-m", "lossd", "serve", "--host", "127.0.0.1",
               "--http-port", str(http), "--grpc-port", str(grpc_port), "--log-level", "warning",
               *flags]
    elif server.startswith("grpc"):
        cmd = [sys.executable, "-m", "bench.floor", server, str(grpc_port)]
    else:
        cmd = [sys.executable, "-m", "bench.floor", server, str(http)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Started(server, proc, http, grpc_port)


def start(server: str, flags: list[str]) -> Started:
    started = launch(server, flags)
    started.ready()
    return started


def stop_all(servers: list[Started]) -> None:
    """SIGTERM to every server at once, then wait for each."""
    for started in servers:
        started.proc.terminate()
    for started in servers:
        started.stop(signalled=True)


SERVERS = ("floor", "decode", "lossd")  # measured in turn for every row; peers beside them on V2


def _kind(server: str, transport: str) -> str:
    """What :func:`start` starts for ``server`` on ``transport``."""
    floor = "rest" if transport in ("rest", "v2-rest") else "grpc"
    return {"floor": floor, "decode": f"{floor}-decode"}.get(server, server)


def batch_totals(http: int) -> tuple[float, float]:
    """lossd's ``lossd_batch_size`` histogram from /metrics: (sum, count) over every loss."""
    totals = {"lossd_batch_size_sum": 0.0, "lossd_batch_size_count": 0.0}
    for line in httpx.get(f"http://127.0.0.1:{http}/metrics", timeout=10).text.splitlines():
        name = line.partition("{")[0].partition(" ")[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals["lossd_batch_size_sum"], totals["lossd_batch_size_count"]


def _load(workload: Workload, transport: str, files: list[str], port: int, concurrency: int,
          seconds: float) -> dict:
    kind = "rest" if transport in ("rest", "v2-rest") else "grpc"
    cmd = [sys.executable, "-m", "bench.load", kind, f"127.0.0.1:{port}", ",".join(files),
           str(concurrency), str(seconds), ",".join(workload.paths(transport))]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=seconds + 120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_round(workload: Workload, transport: str, servers: list[str],
                  concurrencies: list[int], seconds: float, flags: list[str]
                  ) -> dict[int, dict[str, dict]]:
    """One round: start ``servers`` (SERVERS and peers; ``flags`` are lossd's) together, load
    each in turn at each concurrency (the others idle), stop them. A peer that does not start
    is left out of the round with a message."""
    payloads = workload.payloads(transport)
    started: dict[str, Started] = {}
    files: list[str] = []
    try:
        for server in servers:  # all at once: their start-ups overlap
            started[server] = launch(_kind(server, transport),
                                     flags if server == "lossd" else [])
        for server in list(started):
            try:
                started[server].ready()
            except RuntimeError as error:
                if server not in peer_servers.BY_NAME:
                    raise
                print(f"peers: {server} skipped in this round: {error}", flush=True)
                started.pop(server).stop(signalled=True)
        for payload in payloads:
            with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
                f.write(payload)
            files.append(f.name)
        out: dict[int, dict[str, dict]] = {c: {} for c in concurrencies}
        for c in concurrencies:
            for server, s in started.items():
                before = batch_totals(s.http) if server == "lossd" else None
                port = s.http if transport in ("rest", "v2-rest") else s.grpc
                try:
                    result = _load(workload, transport, files, port, c, seconds)
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                    if server not in peer_servers.BY_NAME:
                        raise
                    print(f"peers: {server} left out at concurrency {c} in this round: the "
                          f"load failed: {getattr(error, 'stderr', '')!s:.500}", flush=True)
                    continue
                result["payload_bytes"] = sum(map(len, payloads)) // len(payloads)
                if before is not None:
                    after = batch_totals(s.http)
                    count = after[1] - before[1]
                    result["batch_mean"] = (after[0] - before[0]) / count if count else None
                out[c][server] = result
        return out
    finally:
        for name in files:
            os.unlink(name)
        stop_all(list(started.values()))


def measure(workload: Workload, transport: str, server: str, concurrency: int, seconds: float,
            flags: list[str]) -> dict:
    """One load run against one server (one of SERVERS, or a peer's name)."""
    return measure_round(workload, transport, [server], [concurrency], seconds,
                         flags)[concurrency][server]


def scenarios(full: bool) -> list[tuple[str, Workload, str, list[int], list[str]]]:
    """(name, workload, transport, concurrencies, lossd flags)."""
    conc = [1, 8, 32, 128] if full else [1, 32]
    out = []
    for transport in ("grpc", "v2-grpc", "rest", "v2-rest"):
        out.append((f"small {transport}", small(), transport, conc, []))
    for transport in ("grpc", "v2-grpc", "rest"):
        out.append((f"large {transport}", large(1_000_000), transport, [2], []))
    if full:
        out.append(("large v2-rest", large(100_000), "v2-rest", [4], []))  # 4 MB of JSON
        out.append(("small grpc, batching off", small(), "grpc", [128],
                    ["--max-batch-requests", "1"]))
        for transport, concurrencies in (("grpc", [32, 128]), ("rest", [32])):
            out.append((f"small {transport}, 2 workers", small(), transport, concurrencies,
                        ["--workers", "2"]))
        big = ["--max-body-bytes", str(400 * 2**20), "--max-tensor-elements", str(2**25)]
        out.append(("16M grpc", large(16_000_000), "grpc", [1], big))
        for transport in ("grpc", "rest"):
            out.append((f"mixed {transport}", mixed(), transport, [1, 32], []))
        for transport in ("grpc", "rest"):  # MB/s vs payload size (1M is "large" above)
            for n in SWEEP:
                out.append((f"size {transport}", large(n), transport, [2], []))
    return out


# seconds to start and stop each server (a round starts and stops its servers together, so the
# slowest counts), and per load run beside its S seconds (the load process's start-up and
# warm-up): measured on this machine, 2 cores
START_STOP_SECONDS = {"floor": 1.5, "decode": 1.5, "lossd": 2.5, "mlserver": 6.0,
                      "kserve": 4.0, "pytriton": 14.0}
LOAD_OVERHEAD = 1.0


def estimate(full: bool, seconds: float, repeat: int, peers: list[str]) -> float:
    """Seconds a run takes: per scenario, rounds x (slowest start and stop + servers x
    concurrencies x (its load seconds + overhead))."""
    total = 0.0
    for _, workload, transport, concurrencies, _ in scenarios(full):
        servers = [*SERVERS, *(peers if transport in V2 else [])]
        total += repeat * (max(START_STOP_SECONDS.get(s, 5.0) for s in servers)
                           + len(servers) * len(concurrencies)
                           * (workload.seconds(seconds) + LOAD_OVERHEAD))
    return total


def _ratio(result: dict, floor: dict) -> float:
    return result["rps"] / floor["rps"] if floor["rps"] else float("nan")


def _median(values: list[float]) -> tuple[float, float, float]:
    """(median, lowest, highest); the upper median of an even count."""
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[0], ordered[-1]


def summarize(scenario: tuple[str, Workload, str, list[int], list[str]], concurrency: int,
              rounds: list[dict[str, dict]], peers: list[str]) -> dict:
    """One row from its rounds (server -> load result; a peer may be missing from a round): the
    round with the median lossd/floor ratio, the ranges of the ratios, and per peer the median
    lossd/peer ratio (the peer's figures from the round that gave it) and lossd / best peer
    (per round, lossd against the fastest peer of that round)."""
    name, workload, transport, _, flags = scenario
    rounds = sorted(rounds, key=lambda r: _ratio(r["lossd"], r["floor"]))
    median = rounds[len(rounds) // 2]
    ratio, low, high = _median([_ratio(r["lossd"], r["floor"]) for r in rounds])
    decode, decode_low, decode_high = _median([_ratio(r["decode"], r["floor"]) for r in rounds])
    row = {"scenario": name, "workload": workload.name, "transport": transport,
           "concurrency": concurrency, "flags": " ".join(flags), "floor": median["floor"],
           "decode": median["decode"],
           "lossd": {**median["lossd"], "errors": sum(r["lossd"]["errors"] for r in rounds)},
           "ratio_rps": ratio, "ratio_range": [low, high],
           "decode_ratio": decode, "decode_range": [decode_low, decode_high], "peers": {}}
    for peer in peers:
        present = sorted((r for r in rounds if peer in r),
                         key=lambda r: _ratio(r["lossd"], r[peer]))
        if not present:
            continue
        mid = present[len(present) // 2][peer]
        value, low, high = _median([_ratio(r["lossd"], r[peer]) for r in present])
        row["peers"][peer] = {**mid, "errors": sum(r[peer]["errors"] for r in present),
                              "ratio": value, "range": [low, high]}
    fastest = [(r, max((p for p in peers if p in r), key=lambda p: r[p]["rps"]))
               for r in rounds if any(p in r for p in peers)]
    best = [(_ratio(r["lossd"], r[p]), p) for r, p in fastest]
    if best:
        best.sort()
        value, who = best[len(best) // 2]
        row["best_peer"] = {"peer": who, "ratio": value,
                            "range": [best[0][0], best[-1][0]]}
    return row


def run(full: bool, seconds: float, repeat: int, peers: list[str]) -> list[dict]:
    """Each scenario: ``repeat`` rounds of floor, decode floor, lossd and (on V2) the peers;
    one row per concurrency (:func:`summarize`)."""
    rows = []
    for scenario in scenarios(full):
        name, workload, transport, concurrencies, flags = scenario
        servers = [*SERVERS, *(peers if transport in V2 else [])]
        rounds = [measure_round(workload, transport, servers, concurrencies,
                                workload.seconds(seconds), flags) for _ in range(repeat)]
        for c in concurrencies:
            row = summarize(scenario, c, [r[c] for r in rounds],
                            peers if transport in V2 else [])
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _mbs(r: dict) -> float:
    return r["bytes"] / r["seconds"] / 1e6


def _batch(r: dict) -> str:
    return "-" if r.get("batch_mean") is None else f"{r['batch_mean']:.1f}"


def _line(row: dict) -> str:
    f, lo = row["floor"], row["lossd"]
    low, high = row["ratio_range"]
    decode_low, decode_high = row["decode_range"]
    peers = "".join(f" {p['rps']:.0f} {name} (lossd/{name} {p['ratio']:.2f}) |"
                    for name, p in row.get("peers", {}).items())
    return (f"| {row['scenario']} | {row['workload']} | {row['concurrency']} | "
            f"{lo['rps']:.0f} | {f['rps']:.0f} | **{row['ratio_rps']:.2f}** "
            f"({low:.2f}-{high:.2f}) | {row['decode_ratio']:.2f} "
            f"({decode_low:.2f}-{decode_high:.2f}) | "
            f"{_mbs(lo):.0f} / {_mbs(f):.0f} | {lo['p50_ms']:.2f} / {lo['p99_ms']:.2f} | "
            f"{f['p50_ms']:.2f} / {f['p99_ms']:.2f} | {_batch(lo)} | {lo['errors']} |"
            + peers)


def _peer_cell(peer: dict | None) -> str:
    if peer is None:
        return "- | -"
    low, high = peer["range"]
    errors = f", {peer['errors']} errors" if peer["errors"] else ""
    return f"{peer['rps']:.0f} | {peer['ratio']:.2f} ({low:.2f}-{high:.2f}){errors}"


def _peer_line(row: dict, peers: list[str]) -> str:
    best = row.get("best_peer")
    best_cell = (f"**{best['ratio']:.2f}** ({best['range'][0]:.2f}-{best['range'][1]:.2f}), "
                 f"{peer_servers.BY_NAME[best['peer']].label}" if best else "-")
    return (f"| {row['scenario']} | {row['workload']} | {row['concurrency']} | "
            f"{row['floor']['rps']:.0f} | {row['lossd']['rps']:.0f} ({row['ratio_rps']:.2f}) | "
            + " | ".join(_peer_cell(row["peers"].get(p)) for p in peers)
            + f" | {best_cell} |")


def peer_table(rows: list[dict]) -> str:
    """lossd beside each peer, on the rows the peers speak (V2)."""
    peers = [p.name for p in peer_servers.PEERS
             if any(p.name in r.get("peers", {}) for r in rows)]
    if not peers:
        return ""
    head = ("| scenario | workload | conc. | floor rps | lossd rps (/floor) | "
            + " | ".join(f"{peer_servers.BY_NAME[p].label} rps | lossd/{p} (range)"
                         for p in peers)
            + " | lossd / best peer (range), best |\n|" + "---|" * (6 + 2 * len(peers)))
    notes = "".join(f"\n\n{peer_servers.BY_NAME[p].note}." for p in peers
                    if peer_servers.BY_NAME[p].note)
    return (f"\nlossd beside its peers on the V2 rows (the same requests; each peer serves the "
            f"two losses with a minimal NumPy function and no validation: bench/peers/). "
            f"Each lossd/peer ratio is the median over the rounds, with its range; lossd / best "
            f"peer divides, in each round, by the fastest peer of that round.{notes}\n\n{head}\n"
            + "\n".join(_peer_line(r, peers) for r in rows if r.get("peers")) + "\n")


def workers_table(rows: list[dict]) -> str:
    """lossd with ``--workers 2`` beside the same rows with one worker."""
    plain = {(r["workload"], r["transport"], r["concurrency"]): r for r in rows
             if not r["flags"]}
    lines = []
    for r in rows:
        one = plain.get((r["workload"], r["transport"], r["concurrency"]))
        if r["flags"] != "--workers 2" or one is None:
            continue
        lines.append(f"| {r['transport']} | {r['workload']} | {r['concurrency']} | "
                     f"{one['lossd']['rps']:.0f} ({one['ratio_rps']:.2f}) | "
                     f"{r['lossd']['rps']:.0f} ({r['ratio_rps']:.2f}) | "
                     f"{r['lossd']['rps'] / one['lossd']['rps']:.2f} |")
    if not lines:
        return ""
    return ("\nlossd's `--workers` (processes sharing the ports), each figure with its ratio to "
            "the floor of its own row:\n\n| transport | workload | conc. | 1 worker rps | "
            "2 workers rps | 2 / 1 |\n|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")


def table(rows: list[dict], command: str) -> str:
    head = ("| scenario | workload | conc. | lossd rps | floor rps | lossd/floor (range) | "
            "decode floor/floor (range) | MB/s lossd / floor | lossd p50 / p99 ms | "
            "floor p50 / p99 ms | lossd batch | errors |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    main_lines = "\n".join(_line({**r, "peers": {}}) for r in rows)
    return (f"Command: `{command}` — {stamp}, {machine}; client and servers share the "
            f"machine. Each row is the median of back-to-back rounds of floor, decode floor, "
            f"lossd and, on V2, the peers (lowest and highest ratios in brackets); errors are "
            f"lossd's, summed over all rounds; lossd batch is the mean of lossd_batch_size "
            f"over the median round. The decode floor only turns each request into arrays with "
            f"the libraries lossd uses too (bench/floor.py): on small requests its ratio is a "
            f"ceiling for lossd.\n\n{head}\n{main_lines}\n"
            + peer_table(rows) + workers_table(rows))


def write_doc(text: str) -> None:
    DOC.parent.mkdir(exist_ok=True)
    body = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    section = f"{BEGIN}\n{text}{END}"
    if BEGIN in body:
        body = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, body,
                      flags=re.S)
    else:
        body = body.rstrip() + "\n\n## Results\n\n" + section + "\n"
    DOC.write_text(body)


def _v2_loss(transport: str, port: int, loss: str, payload: bytes) -> float:
    """The loss a V2 server answers to one request."""
    if transport == "v2-rest":
        answer = httpx.post(f"http://127.0.0.1:{port}/v2/models/{loss}/infer", content=payload,
                            headers={"Content-Type": "application/json"}, timeout=60)
        answer.raise_for_status()
        return float(np.ravel(answer.json()["outputs"][0]["data"])[0])
    import grpc

    from lossd._proto.inference import grpc_predict_v2_pb2 as v2
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = v2.ModelInferResponse.FromString(channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer")(payload, timeout=60))
    if reply.raw_output_contents:
        return float(np.frombuffer(reply.raw_output_contents[0], np.float32)[0])
    return float(reply.outputs[0].contents.fp32_contents[0])


def smoke(peers: list[str]) -> bool:
    """Start lossd and each peer once; one V2 REST and one V2 gRPC call of each loss to each;
    every peer's loss must equal lossd's (float32 rounding apart)."""
    workloads = [small(), large(1_000)]
    ok = True
    answers: dict[tuple[str, str], float] = {}
    for server in ["lossd", *peers]:
        begun = time.monotonic()
        try:
            started = start(server, [])
        except RuntimeError as error:
            print(f"smoke: {server} skipped: {error}", flush=True)
            ok = False
            continue
        try:
            print(f"smoke: {server} ready in {time.monotonic() - begun:.1f} s", flush=True)
            for transport, port in (("v2-rest", started.http), ("v2-grpc", started.grpc)):
                for workload in workloads:
                    (loss, _), = workload.calls
                    value = _v2_loss(transport, port, loss, workload.payloads(transport)[0])
                    want = answers.setdefault((transport, loss), value)
                    same = bool(np.isclose(value, want, rtol=1e-5, atol=0))
                    ok &= same
                    print(f"smoke: {server} {transport} {workload.name}: loss {value:.7g}"
                          + ("" if same else f" != lossd's {want:.7g}"), flush=True)
        except Exception as error:  # noqa: BLE001 - a smoke run reports every server
            print(f"smoke: {server} failed: {error!r}", flush=True)
            ok = False
        finally:
            started.stop()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--seconds", type=float,
                        help=f"per load run (default {SECONDS:g}; with --full {FULL_SECONDS:g}, "
                             f"which keeps make bench, peers included, under 25 minutes)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds (floor, decode floor, lossd, peers) per row; the median "
                             "is reported")
    parser.add_argument("--peers", default=",".join(p.name for p in peer_servers.PEERS),
                        help="peers beside lossd on the V2 rows, by name (installed on first "
                             "use into .venv/peers/<name>)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="only start lossd and each peer and check one call of each loss")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    names = [] if args.no_peers else [n for n in args.peers.split(",") if n]
    unknown = set(names) - set(peer_servers.BY_NAME)
    if unknown:
        parser.error(f"unknown peer {sorted(unknown)[0]!r}; peers: "
                     f"{', '.join(peer_servers.BY_NAME)}")
    default_seconds = FULL_SECONDS if args.full else SECONDS
    seconds = args.seconds or default_seconds
    peers = [p.name for p in peer_servers.available(names)]
    if args.smoke:
        raise SystemExit(0 if smoke(peers) else 1)
    command = "python -m bench.serve" + (" --full" if args.full else "") + (
        f" --seconds {seconds:g}" if seconds != default_seconds else "") + (
        f" --repeat {args.repeat}" if args.repeat != 3 else "") + (
        " --no-peers" if args.no_peers else
        f" --peers {','.join(names)}" if len(names) < len(peer_servers.PEERS) else "")
    print(f"{command}: about {estimate(args.full, seconds, args.repeat, peers) / 60:.0f} "
          f"minutes (peers: {', '.join(peers) or 'none'})", flush=True)
    rows = run(args.full, seconds, args.repeat, peers)
    text = table(rows, command)
    print(text)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "serve.json").write_text(json.dumps(rows, indent=1))
    if not args.no_write:
        write_doc(text)


if __name__ == "__main__":
    main()
