"""Scale-out with real parts (``make scale-test``, marker ``scale``, needs root).

On this machine, a network of its own (tests/support/netns.py): three lossd replicas, each in
its network namespace with an address of its own (10.77.0.11-13), a Redis host (10.77.0.5)
holding the evaluation runs (``LOSSD_RUNS_STORE=redis``), and a client host (10.77.0.2) running
Debian's HAProxy with ``deploy/haproxy/haproxy.cfg`` (REST over HTTP/1.1 on :8000, gRPC over
h2c on :50051, each replica's ``/readyz`` checked) and the load: client processes calling
through the balancer over REST, gRPC and V2 (tritonclient), one ``GrpcClient`` balancing on its
own (``ipv4:`` target listing every replica, ``round_robin`` with client-side health
checking; the replicas close gRPC connections after ``LOSSD_GRPC_MAX_CONNECTION_AGE_S``), and an
evaluation run fed by 8 workers.
Every answer is checked against ``lossd.losses.compute`` in the client.

First the throughput with 1, 2 and 3 replicas behind HAProxy (short runs, printed; on 2 cores
the clients, HAProxy and the replicas share the same two cores, so it cannot scale much). Then,
under load, one after another: a rolling restart (each replica leaves the balancer as a pod
leaves the endpoints, 1 s of "preStop", SIGTERM: it drains and exits 0, start it again, back in
once HAProxy sees it ready), a bare SIGTERM of one replica (no balancer drain first: lossd's
``LOSSD_SHUTDOWN_DELAY_S`` keeps it open, refusing, until HAProxy's checks and the round-robin
client's health checking have moved away), a SIGKILL of one replica (then restarted), a
partition of one (its switch port down for a few seconds), and a Redis restart (appendonly,
fsync always). Asserted: no call failed (every failure on the way was UNAVAILABLE or a refused
connection, retried by the client within its deadline; none CANCELLED), no answer wrong, every
replica drained and exited 0, the run's aggregate equals ``compute`` on the concatenation of
every acknowledged batch with each counted once. Last, Redis restarted *without* its data: the
run is gone loudly (NOT_FOUND when read and when a batch is added), never half there.

The test makes and removes its namespaces and processes itself (also when it fails), and skips
with a message where it cannot (not root, no ``ip netns``, no haproxy or redis-server:
``make scale-test`` installs them) — except in CI, where that fails (tests/support/tools.py).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import tools
from tests.support.netns import Network, Process, cannot_make_namespaces

pytestmark = [pytest.mark.scale, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
LB, REDIS = "10.77.0.2", "10.77.0.5"
REPLICAS = {"r1": "10.77.0.11", "r2": "10.77.0.12", "r3": "10.77.0.13"}
HTTP, GRPC = 8000, 50051
DRAIN_S = 10.0
# after SIGTERM the replicas stay open, refusing, this long: more than HAProxy needs to see
# /readyz fail twice (inter 1s fall 2), so that a bare SIGTERM loses nothing either
SHUTDOWN_DELAY_S = 3.0
MAX_AGE_S = 10.0  # short, so the test sees connections recycled under load
BENCH_S = 4.0
PRESTOP_S = 1.0  # the manifests' preStop sleep is 5 s; 1 s is enough for HAProxy here
# where the summary goes besides stdout (make scale-test keeps it for docs/deploy.md)
REPORT = os.environ.get("SCALE_TEST_REPORT")


def why_not() -> str | None:
    missing = [tool for tool in ("haproxy", "redis-server") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (make scale-test installs them with apt)"
    return cannot_make_namespaces()


@dataclass
class Cluster:
    net: Network
    dir: Path
    replicas: dict[str, Process] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    redis: Process | None = None
    haproxy: Process | None = None
    events: list[str] = field(default_factory=list)

    @property
    def sock(self) -> Path:
        return self.dir / "haproxy.sock"

    def note(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        self.events.append(line)
        print(line, flush=True)

    # --- processes ----------------------------------------------------------------------

    def start_replica(self, name: str) -> None:
        n = self.starts[name] = self.starts.get(name, -1) + 1
        self.replicas[name] = self.net.spawn(name, [
            sys.executable, "-m", "lossd", "serve", "--host", "0.0.0.0",
            "--http-port", str(HTTP), "--grpc-port", str(GRPC), "--no-log-json"],
            log=self.dir / f"{name}-{n}.log", cwd=ROOT, env={
                "LOSSD_RUNS_STORE": "redis", "LOSSD_REDIS_URL": f"redis://{REDIS}:6379/0",
                "LOSSD_DRAIN_SECONDS": str(DRAIN_S),
                "LOSSD_SHUTDOWN_DELAY_S": str(SHUTDOWN_DELAY_S),
                "LOSSD_GRPC_MAX_CONNECTION_AGE_S": str(MAX_AGE_S),
                "LOSSD_RUNS_DIR": str(self.dir / "runs"), "PYTHONUNBUFFERED": "1"})

    def wait_log(self, process: Process, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in process.text():
                return
            if process.popen.poll() is not None:
                raise AssertionError(f"{process.log.name} exited {process.popen.returncode}:"
                                     f"\n{process.text()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in {process.log.name} after {timeout} s:\n"
                             f"{process.text()[-3000:]}")

    def start_redis(self, persist: bool = True) -> None:
        data = self.dir / "redis"
        data.mkdir(exist_ok=True)
        args = ["--appendonly", "yes", "--appendfsync", "always"] if persist else [
            "--appendonly", "no"]
        self.redis = self.net.spawn("redis", [
            "redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no",
            "--dir", str(data), "--save", "", "--daemonize", "no", *args],
            log=self.dir / f"redis-{time.monotonic_ns()}.log")
        self.wait_log(self.redis, "Ready to accept connections")

    def start_haproxy(self) -> None:
        config = HAPROXY_CFG.read_text()
        config = config.replace("/run/haproxy/lossd.sock", str(self.sock))
        # the test's addition: log every request to its output (haproxy.log in the test's
        # directory: what went where, retries, termination states)
        config = config.replace("global\n", "global\n    log stdout format raw local0\n", 1)
        config = config.replace("defaults\n", "defaults\n    option httplog\n", 1)
        for name, address in REPLICAS.items():  # the shipped example uses these addresses
            config = re.sub(rf"(server {name} )[\d.]+:", rf"\g<1>{address}:", config)
        path = self.dir / "haproxy.cfg"
        path.write_text(config)
        check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.haproxy = self.net.spawn("lb", ["haproxy", "-f", str(path), "-db"],
                                      log=self.dir / "haproxy.log")

    # --- HAProxy's runtime API ----------------------------------------------------------

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        text = self.admin("show stat").lstrip("# ")
        return {(row["pxname"], row["svname"]): row for row in csv.DictReader(io.StringIO(text))}

    def wait_up(self, names: list[str], timeout: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(OSError):
                stats = self.stats()
                if all(stats[(b, n)]["status"] == "UP"
                       for n in names for b in ("lossd_rest", "lossd_grpc")):
                    return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"HAProxy does not see {names} up: "
                             f"{ {k: v['status'] for k, v in self.stats().items()} }")

    def haproxy_retries(self) -> dict[str, int]:
        stats = self.stats()
        return {key: sum(int(stats[(b, "BACKEND")][key] or 0)
                         for b in ("lossd_rest", "lossd_grpc"))
                for key in ("wretr", "wredis", "eresp", "econ", "hrsp_5xx")}

    # --- clients ------------------------------------------------------------------------

    def client(self, config: dict[str, Any], name: str) -> tuple[Process, Path]:
        out = self.dir / f"{name}.json"
        config = {"out": str(out), "stop": str(self.dir / "stop"), "seed": 0, **config}
        process = self.net.spawn("lb", [sys.executable, "-m", "tests.support.scale_load",
                                        json.dumps(config)],
                                 log=self.dir / f"{name}.log", cwd=ROOT)
        return process, out


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    reason = why_not()
    if reason:
        tools.missing(f"scale test needs root, ip netns, haproxy and redis-server: {reason}")
    net = Network.create()
    c = Cluster(net, tmp_path)
    try:
        net.add_host("lb", LB)
        net.add_host("redis", REDIS)
        for name, address in REPLICAS.items():
            net.add_host(name, address)
        c.start_redis()
        for name in REPLICAS:
            c.start_replica(name)
        for name in REPLICAS:
            c.wait_log(c.replicas[name], "lossd ready")
        c.start_haproxy()
        c.wait_up(list(REPLICAS))
        c.note(f"network {net.prefix}: lb {LB}, redis {REDIS}, replicas "
               f"{', '.join(REPLICAS.values())}; HAProxy up")
        yield c
    finally:
        left = net.destroy()
        assert not left, f"namespaces not removed: {left}"


def wait_json(process: Process, out: Path, timeout: float = 90.0) -> dict[str, Any]:
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{out.name}: no exit in {timeout} s\n{process.text()[-3000:]}")
    assert code == 0 and out.exists(), f"{out.name}: exit {code}\n{process.text()[-3000:]}"
    return json.loads(out.read_text())


def throughput(c: Cluster) -> dict[int, dict[str, float]]:
    """Answers per second with 1, 2, 3 replicas in HAProxy (the others in maintenance)."""
    figures = {}
    for n in (1, 2, 3):
        for i, name in enumerate(REPLICAS):
            state = "ready" if i < n else "maint"
            c.admin(f"set server lossd_rest/{name} state {state}")
        c.wait_up(list(REPLICAS)[:n])
        kinds = {"rest": ("rest", "small"), "grpc": ("grpc", "small"),
                 "grpc-large": ("grpc", "large")}
        clients = {key: c.client({"role": "bench", "kind": kind, "size": size, "threads": 4,
                                  "seconds": BENCH_S, "target": f"http://{LB}:{HTTP}"
                                  if kind == "rest" else f"{LB}:{GRPC}"}, f"bench-{n}-{key}")
                   for key, (kind, size) in kinds.items()}
        results = {key: wait_json(p, out) for key, (p, out) in clients.items()}
        figures[n] = {key: r["answers"] / r["seconds"] for key, r in results.items()}
        figures[n]["errors"] = {key: r["failures"] for key, r in results.items() if r["errors"]}
        c.note(f"throughput, {n} replica(s): REST small {figures[n]['rest']:.0f}/s, gRPC small "
               f"{figures[n]['grpc']:.0f}/s, gRPC large {figures[n]['grpc-large']:.0f}/s "
               f"(at once, 4 threads each, {BENCH_S:.0f} s)"
               + (f"; failed calls: {figures[n]['errors']}" if figures[n]["errors"] else ""))
    return figures


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0
    haproxy: dict[str, int] = field(default_factory=dict)


def summarize(phases: list[Phase], calls: dict[str, list[dict[str, Any]]]
              ) -> dict[str, dict[str, Any]]:
    """Per phase (a call belongs to the phase in which it ended): calls, failed, wrong, calls
    retried, failed attempts retried (by code), slowest call."""
    table: dict[str, dict[str, Any]] = {}
    for phase in phases:
        row: dict[str, Any] = {"calls": 0, "failed": 0, "wrong": 0, "retried_calls": 0,
                               "retries": 0, "retry_codes": {}, "resent": 0,
                               "resent_codes": {}, "max_s": 0.0, "haproxy": phase.haproxy}
        for who, records in calls.items():
            for r in records:
                if not phase.start <= r["end"] < phase.end:
                    continue
                row["calls"] += 1
                row["failed"] += not r["ok"]
                row["wrong"] += r["wrong"]
                row["retried_calls"] += bool(r["retried"])
                row["retries"] += len(r["retried"])
                for code in r["retried"]:
                    row["retry_codes"][code] = row["retry_codes"].get(code, 0) + 1
                row["resent"] += len(r.get("resent_codes", []))
                for code in r.get("resent_codes", []):
                    row["resent_codes"][code] = row["resent_codes"].get(code, 0) + 1
                row["max_s"] = max(row["max_s"], round(r["end"] - r["start"], 2))
                if not r["ok"]:
                    row.setdefault("failures", []).append({"client": who, **r})
        table[phase.name] = row
    return table


def test_scale_out_under_faults(cluster: Cluster) -> None:
    c = cluster
    started = time.monotonic()
    figures = throughput(c)

    # --- the load ---------------------------------------------------------------------------
    rest, grpc = f"http://{LB}:{HTTP}", f"{LB}:{GRPC}"
    direct = "ipv4:" + ",".join(f"{a}:{GRPC}" for a in REPLICAS.values())
    specs = {
        "rest-1": {"role": "rest", "target": rest, "seed": 1},
        "rest-2": {"role": "rest", "target": rest, "seed": 2, "pace": 0.01},
        "grpc-lb": {"role": "grpc", "target": grpc, "seed": 3},
        "grpc-rr": {"role": "grpc", "target": direct, "seed": 4, "health_check": True},
        "v2-http": {"role": "v2-http", "target": f"{LB}:{HTTP}", "seed": 5, "pace": 0.01},
        "v2-grpc": {"role": "v2-grpc", "target": grpc, "seed": 6, "pace": 0.01},
        "runs": {"role": "runs", "rest": rest, "grpc": grpc, "workers": 8,
                 "run_id": "scale-run", "pace": 0.1},
    }
    clients = {name: c.client(spec, name) for name, spec in specs.items()}
    phases: list[Phase] = []

    def phase(name: str) -> None:
        now = time.time()
        counters = c.haproxy_retries()
        if phases:
            phases[-1].end = now
            before = phases[-1].haproxy
            phases[-1].haproxy = {k: counters[k] - before[k] for k in counters}
        phases.append(Phase(name, now, haproxy=counters))
        c.note(f"phase: {name}")

    phase("warm-up")
    time.sleep(5)
    phase("baseline")
    time.sleep(3)

    drains = {}
    phase("rolling restart")
    for name in REPLICAS:
        # as a Deployment's rolling update does: the pod leaves the endpoints (here: the
        # balancer drains it) while preStop sleeps (PRESTOP_S), then SIGTERM: lossd drains
        # what it accepted and exits 0; the new pod is added once ready
        c.admin(f"set server lossd_rest/{name} state drain")
        time.sleep(PRESTOP_S)
        t0 = time.time()
        c.replicas[name].signal(signal.SIGTERM)
        code = c.replicas[name].wait(DRAIN_S + 10)
        drains[name] = (code, round(time.time() - t0, 2))
        c.note(f"{name}: out of the balancer, {PRESTOP_S} s later SIGTERM: exit {code} after "
               f"{drains[name][1]} s")
        c.start_replica(name)
        c.wait_log(c.replicas[name], "lossd ready")
        c.admin(f"set server lossd_rest/{name} state ready")
        c.note(f"{name}: restarted, HAProxy sees it up after {c.wait_up([name]):.1f} s more")
    time.sleep(2)

    phase("SIGTERM")
    # a bare SIGTERM (docker stop, a pod without preStop): the balancer and the round-robin
    # client learn it from lossd (readiness 503, health NOT_SERVING) while it stays open,
    # refusing, for SHUTDOWN_DELAY_S
    t0 = time.time()
    c.replicas["r1"].signal(signal.SIGTERM)
    code = c.replicas["r1"].wait(DRAIN_S + 10)
    drains["r1 bare"] = (code, round(time.time() - t0, 2))
    c.note(f"r1: SIGTERM (still in the balancer): exit {code} after {drains['r1 bare'][1]} s")
    c.start_replica("r1")
    c.wait_log(c.replicas["r1"], "lossd ready")
    c.note(f"r1: restarted, HAProxy sees it up after {c.wait_up(['r1']):.1f} s more")
    time.sleep(2)

    phase("SIGKILL")
    c.replicas["r2"].signal(signal.SIGKILL)
    c.replicas["r2"].wait(10)
    c.note("r2: SIGKILL")
    time.sleep(1)
    c.start_replica("r2")
    c.wait_log(c.replicas["r2"], "lossd ready")
    c.note(f"r2: restarted, HAProxy sees it up after {c.wait_up(['r2']):.1f} s more")
    time.sleep(2)

    phase("partition")
    c.net.cut("r3")
    c.note("r3: partitioned (its switch port down)")
    time.sleep(4)
    c.net.heal("r3")
    c.note(f"r3: healed, HAProxy sees it up after {c.wait_up(['r3']):.1f} s")
    time.sleep(2)

    phase("Redis restart")
    assert c.redis is not None
    assert c.redis.stop() == 0
    c.note("redis: stopped (SIGTERM)")
    time.sleep(1)
    c.start_redis()
    c.note("redis: restarted with its append-only file")
    time.sleep(4)

    phase("after")
    time.sleep(2)
    (c.dir / "stop").touch()
    results = {name: wait_json(p, out) for name, (p, out) in clients.items()}
    phase("end")
    phases.pop()

    # --- Redis losing its data: the run must fail loudly -----------------------------------
    p, out = c.client({"role": "redis-loss-prepare", "rest": rest, "run_id": "lost-run"},
                      "redis-loss-prepare")
    prepared = wait_json(p, out)
    assert c.redis.stop() == 0
    for f in (c.dir / "redis").iterdir():  # an emptyDir Redis, rescheduled
        if f.is_dir():
            shutil.rmtree(f)
        else:
            f.unlink()
    c.start_redis(persist=False)
    p, out = c.client({"role": "redis-loss-check", "rest": rest, "run_id": "lost-run"},
                      "redis-loss-check")
    lost = wait_json(p, out)
    c.note(f"Redis without its data: run with {prepared['batches']} batches -> read "
           f"{lost['read']}, add {lost['add']}")

    # --- report -------------------------------------------------------------------------
    calls = {name: r["calls"] for name, r in results.items()}
    table = summarize(phases, calls)
    run = results["runs"]
    for name, row in table.items():
        for r in row.get("failures", []):
            print(f"{name}: failed call {r}")
    print("\ncalls: ended in the phase; failed / wrong: calls; retried: calls the client "
          "retried (retries: attempts); HAProxy: its own retries / redispatches; resent: run "
          "batches a worker sent again after an error (codes)")
    print(f"{'phase':16} {'calls':>6} {'failed':>6} {'wrong':>5} {'retried':>7} "
          f"{'retries':>7} {'max s':>6} {'HAProxy':>8} {'resent':>6}  codes")
    for name, row in table.items():
        h = row["haproxy"]
        print(f"{name:16} {row['calls']:6} {row['failed']:6} {row['wrong']:5} "
              f"{row['retried_calls']:7} {row['retries']:7} {row['max_s']:6.2f} "
              f"{h.get('wretr', 0):>4}/{h.get('wredis', 0):<3} {row['resent']:6}  "
              f"{row['retry_codes'] or ''} {row['resent_codes'] or ''}")
    per_client = {name: len(r) for name, r in calls.items()}
    print(f"calls per client: {per_client}")
    print(f"run: {run['acked']} batches acknowledged ({run['samples']} samples), run counts "
          f"{run['run_batches']} batches / {run['run_samples']} samples, value {run['got']!r}"
          f" vs direct {run['want']!r}; per worker {run['workers']}")
    print(f"drains: {drains}; total {time.monotonic() - started:.0f} s")
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "throughput": figures, "phases": {k: {x: y for x, y in v.items()
                                                     if x != "failures"}
                                                 for k, v in table.items()},
               "run": {k: v for k, v in run.items() if k != "calls"}, "drains": drains,
               "redis_loss": lost, "calls_per_client": per_client, "events": c.events}
    (c.dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if REPORT:
        Path(REPORT).write_text(json.dumps(summary, indent=1))

    # --- acceptance -----------------------------------------------------------------------
    for name, (code, seconds) in drains.items():
        # open, refusing, until SHUTDOWN_DELAY_S after the signal; then closed promptly
        assert code == 0 and SHUTDOWN_DELAY_S <= seconds < DRAIN_S, (name, code, seconds)
    for name, row in table.items():
        assert row["calls"] > 0 or name == "warm-up", (name, row)
        assert row["failed"] == 0, (name, row.get("failures", [])[:5])
        assert row["wrong"] == 0, (name, row)
    for name, records in calls.items():
        if name == "runs":  # a run's batch is resent on any failure (counted once per id)
            continue
        # what the clients retried is what the protocol says is safe: UNAVAILABLE (a 503
        # before processing, a refused or reset connection), within the call's deadline
        assert all(set(r["retried"]) <= {"UNAVAILABLE"} for r in records), name
        assert all(r["end"] - r["start"] < 20.5 for r in records), name
    assert all(len(records) > 10 for records in calls.values()), per_client
    # the run: every acknowledged batch counted exactly once, the aggregate exact
    assert run["run_batches"] == run["acked"] == sum(run["workers"].values()), run
    assert run["run_samples"] == run["samples"], run
    assert run["got"] == pytest.approx(run["want"], rel=1e-9), run
    assert len(run["workers"]) == 8 and run["state"] == "finished", run
    # Redis without its data: loud, not silent
    assert prepared["batches"] == 2
    assert lost["read"]["ok"] is False and lost["read"]["code"] == "NOT_FOUND", lost
    assert lost["add"]["ok"] is False and lost["add"]["code"] == "NOT_FOUND", lost
    assert all(figures[n][key] > 0 for n in figures for key in ("rest", "grpc", "grpc-large"))
