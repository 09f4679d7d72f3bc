"""Load for tests/e2e/test_scale.py: one client process, started inside the client host's
network namespace, that calls lossd until a stop file appears and writes what happened to a
JSON file.

    python -m tests.support.scale_load CONFIG_JSON

CONFIG: {"role": ..., "out": path, "stop": path, "seed": int, ...}. Roles:

- ``rest`` / ``grpc`` (``lossd.Client`` / ``lossd.GrpcClient`` to ``target``; with
  ``health_check``, gRPC's client-side health checking on, for a target listing the replicas
  themselves) and ``v2-http`` / ``v2-grpc`` (tritonclient): a steady mix of small (``mse``, 4x3
  float64) and large (``cross_entropy``, 256x64 float32 with its gradient) computes, each answer
  checked against ``lossd.losses.compute`` in this process. Every call is recorded: start, end,
  outcome, and the failed attempts the client retried (lossd's clients retry UNAVAILABLE and
  refused connections with backoff within the call's deadline; for tritonclient, which does not
  retry, this module retries the same: 502/503/UNAVAILABLE and refused connections).
- ``runs``: an evaluation run fed by ``workers`` threads (half REST, half gRPC), each sending
  its own batches ``w<k>/<i>`` one after another; a batch that fails for any reason is sent
  again (``add_batch`` is idempotent per batch id) until acknowledged. At the end the run's
  aggregate is read and compared with ``compute`` on the concatenation of every acknowledged
  batch.
- ``bench``: ``threads`` threads of small computes for ``seconds``; the count of answers.
- ``redis-loss-prepare`` / ``redis-loss-check``: a run with two batches; after Redis lost its
  data, the run must be gone loudly (NOT_FOUND on read and on add), never half there.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lossd import Client, GrpcClient, LossdError
from lossd.client.connection import Deadline, Retry
from lossd.losses import compute

TIMEOUT = 20.0  # every call's deadline, seconds
_local = threading.local()


class CountingRetry(Retry):
    """lossd's retry policy, recording the failed attempts it retried (codes)."""

    def call(self, attempt: Callable[[], Any], deadline: Deadline) -> Any:
        failures: list[str] = []
        _local.failures = failures

        def counted() -> Any:
            try:
                return attempt()
            except LossdError as error:
                failures.append(error.code.name)
                raise
        return super().call(counted, deadline)


def counting(client: Any) -> Any:
    client.retry = CountingRetry(client.retry.retries, client.retry.base, client.retry.cap)
    return client


# --- the workload ---------------------------------------------------------------------------

def cases(seed: int) -> list[dict[str, Any]]:
    """Eight calls (six small, two large) with their expected answers."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(8):
        if i % 4 == 3:
            x = rng.normal(size=(256, 64)).astype(np.float32)
            t = rng.integers(0, 64, size=256).astype(np.int64)
            loss, arrays, grad = "cross_entropy", {"input": x, "target": t}, True
        else:
            x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
            loss, arrays, grad = "mse", {"input": x, "target": t}, bool(i % 2)
        want = compute(loss, arrays, {}, grad=grad)
        out.append({"loss": loss, "arrays": arrays, "grad": grad, "size": x.size,
                    "want": want.loss, "want_grad": want.grads.get("input")})
    return out


def close(got: np.ndarray, want: np.ndarray) -> bool:
    got = np.asarray(got)
    rtol = 1e-5 if want.dtype == np.float32 else 1e-10
    return got.dtype == want.dtype and got.shape == want.shape and bool(
        np.allclose(got, want, rtol=rtol, atol=1e-30))


# round_robin with client-side health checking (grpc.health.v1 Watch): a replica that reports
# NOT_SERVING (draining) gets no more calls from this client, before its connections close
HEALTH_CHECKED = json.dumps({"loadBalancingConfig": [{"round_robin": {}}],
                             "healthCheckConfig": {"serviceName": ""}})


def lossd_caller(kind: str, target: str, health_check: bool = False
                 ) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
    options = [("grpc.service_config", HEALTH_CHECKED)] if health_check else []
    client = counting(Client(target, timeout=TIMEOUT) if kind == "rest"
                      else GrpcClient(target, timeout=TIMEOUT, options=options))

    def call(case: dict[str, Any]) -> tuple[Any, Any]:
        result = client.compute(case["loss"], grad=case["grad"], **case["arrays"])
        return result.loss, result.grads.get("input")
    return call


def retriable_v2(error: BaseException) -> str | None:
    """The code of a V2 failure that lossd's own clients would retry (None: not retried).

    As lossd's REST client retries any transport failure (httpx's ``TransportError``, a
    connection closed without a whole answer included), so does this one: an HTTP connection
    that a killed replica's proxy closed before the whole answer came back
    (geventhttpclient's ``HTTPConnectionClosed``, an ``http.client.HTTPException``).
    """
    if isinstance(error, (ConnectionError, socket.timeout, OSError, http.client.HTTPException)):
        return "UNAVAILABLE"
    status = str(getattr(error, "status", lambda: "")() or "")
    if status in ("502", "503", "StatusCode.UNAVAILABLE"):
        return "UNAVAILABLE"
    return None


def v2_caller(kind: str, target: str) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
    from tritonclient.utils import np_to_triton_dtype
    if kind == "v2-http":
        import tritonclient.http as triton
        client: Any = triton.InferenceServerClient(target, connection_timeout=TIMEOUT,
                                                   network_timeout=TIMEOUT)
    else:
        import tritonclient.grpc as triton  # type: ignore[no-redef]
        client = triton.InferenceServerClient(target)
    policy = Retry()

    def once(case: dict[str, Any], deadline: Deadline) -> tuple[Any, Any]:
        inputs = [triton.InferInput(n, list(a.shape), np_to_triton_dtype(a.dtype))
                  .set_data_from_numpy(a) for n, a in case["arrays"].items()]
        params = {"grad": True} if case["grad"] else {}
        if kind == "v2-http":
            result = client.infer(case["loss"], inputs, parameters=params,
                                  timeout=int(deadline.remaining() * 1e6))
        else:
            result = client.infer(case["loss"], inputs, parameters=params,
                                  client_timeout=deadline.remaining())
        grad = result.as_numpy("grad_input") if case["grad"] else None
        return result.as_numpy("loss").reshape(()), grad

    def call(case: dict[str, Any]) -> tuple[Any, Any]:
        deadline = Deadline(TIMEOUT)
        failures: list[str] = []
        _local.failures = failures
        for n in range(policy.retries + 1):
            try:
                return once(case, deadline)
            except Exception as error:  # tritonclient's own, or the socket's
                code = retriable_v2(error)
                if code is None or n == policy.retries:
                    raise
                delay = policy.delay(n, None)
                if not deadline.allows(delay):
                    raise
                failures.append(code)
                time.sleep(delay)  # the retry policy's back-off, as lossd's clients wait
        raise AssertionError("unreachable")
    return call


def compute_role(config: dict[str, Any]) -> dict[str, Any]:
    kind = config["role"]
    pool = cases(config["seed"])
    call = (v2_caller(kind, config["target"]) if kind.startswith("v2")
            else lossd_caller(kind, config["target"], config.get("health_check", False)))
    stop = Path(config["stop"])
    calls = []
    i = 0
    while not stop.exists():
        case = pool[i % len(pool)]
        i += 1
        _local.failures = []
        start = time.time()
        record: dict[str, Any] = {"start": start, "large": case["size"] > 100}
        try:
            loss, grad = call(case)
            record["ok"] = True
            record["wrong"] = not (close(loss, case["want"]) and (
                not case["grad"] or close(grad, case["want_grad"])))
        except Exception as error:
            record.update(ok=False, wrong=False, error=type(error).__name__,
                          code=getattr(getattr(error, "code", None), "name", None)
                          if isinstance(error, LossdError) else None,
                          message=str(error)[:300])
        record["end"] = time.time()
        failures = list(getattr(_local, "failures", []))
        record["retried"] = failures if record["ok"] else failures[:-1]  # the last: not retried
        calls.append(record)
        if config.get("pace"):
            time.sleep(config["pace"])  # the load's rate: one call per pace
    return {"calls": calls}


# --- the evaluation run ---------------------------------------------------------------------

RUN_CLASSES = 5
RUN_WEIGHT = np.array([1.0, 2.0, 0.5, 1.0, 3.0])


def batch(worker: int, i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([worker, i])
    n = 16 + (worker + i) % 5  # batches of different sizes: a mean must weigh them
    return {"input": rng.normal(size=(n, RUN_CLASSES)) * 2,
            "target": rng.integers(0, RUN_CLASSES, size=n).astype(np.int64)}


def runs_role(config: dict[str, Any]) -> dict[str, Any]:
    run_id, stop = config["run_id"], Path(config["stop"])
    with counting(Client(config["rest"], timeout=TIMEOUT)) as admin:
        admin.create_run("cross_entropy", run_id=run_id, weight=RUN_WEIGHT)
    acked: list[list[int]] = [[] for _ in range(config["workers"])]
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        client = counting(Client(config["rest"], timeout=TIMEOUT) if k % 2 == 0
                          else GrpcClient(config["grpc"], timeout=TIMEOUT))
        i = 0
        while not stop.exists():
            record: dict[str, Any] = {"start": time.time(), "large": False, "retried": [],
                                      "resent": 0, "wrong": False, "worker": k}
            while True:  # until acknowledged: the same batch id, so it counts once
                _local.failures = []
                try:
                    answer = client.add_batch(run_id, f"w{k}/{i}", worker=f"w{k}",
                                              **batch(k, i))
                    record["retried"] += _local.failures
                    record["counted"] = answer["counted"]
                    break
                except LossdError as error:
                    record["retried"] += _local.failures[:-1]  # the last one is resent here
                    record["resent"] += 1
                    record.setdefault("resent_codes", []).append(error.code.name)
                    if time.time() - record["start"] > 120:
                        record["gave_up"] = True
                        break
                    time.sleep(0.2)  # a writer's back-off before it sends the batch again
            record["ok"] = "gave_up" not in record
            record["end"] = time.time()
            with lock:
                calls.append(record)
                if record["ok"]:
                    acked[k].append(i)
            i += 1
            time.sleep(config.get("pace", 0.1))  # the load's rate: one batch per pace
        client.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(config["workers"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batches = [batch(k, i) for k in range(config["workers"]) for i in acked[k]]
    want = compute("cross_entropy", {
        "input": np.concatenate([b["input"] for b in batches]),
        "target": np.concatenate([b["target"] for b in batches]), "weight": RUN_WEIGHT})
    with counting(Client(config["rest"], timeout=TIMEOUT)) as admin:
        run = admin.run(run_id)
        finished = admin.finish_run(run_id)
    agg = run["aggregate"]
    return {"calls": calls, "acked": sum(map(len, acked)),
            "samples": int(sum(len(b["target"]) for b in batches)),
            "want": float(want.loss), "got": float(agg["value"]),
            "run_batches": agg["batches"], "run_samples": agg["samples"],
            "workers": run["workers"], "state": finished["state"]}


# --- throughput, and Redis losing its data ----------------------------------------------------

def bench_role(config: dict[str, Any]) -> dict[str, Any]:
    large = config.get("size") == "large"
    pool = [c for c in cases(config["seed"]) if (c["size"] > 100) == large]
    counts = [0] * config["threads"]
    errors = [0] * config["threads"]
    codes: list[str] = []
    start = time.monotonic() + config.get("warmup", 1.0)
    end = start + config["seconds"]

    def loop(k: int) -> None:
        call = lossd_caller(config["kind"], config["target"])
        i = 0
        while (now := time.monotonic()) < end:
            case = pool[i % len(pool)]
            i += 1
            try:
                loss, grad = call(case)
                ok = close(loss, case["want"])
            except LossdError as error:
                ok = False
                codes.append(f"{time.time():.3f} {error}"[:200])
            if now >= start:
                counts[k] += ok
                errors[k] += not ok

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(config["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"answers": sum(counts), "errors": sum(errors), "seconds": config["seconds"],
            "failures": codes[:20]}


def redis_loss_role(config: dict[str, Any]) -> dict[str, Any]:
    run_id = config["run_id"]
    with Client(config["rest"], timeout=TIMEOUT) as client:
        if config["role"] == "redis-loss-prepare":
            client.create_run("cross_entropy", run_id=run_id, weight=RUN_WEIGHT)
            for i in range(2):
                client.add_batch(run_id, f"b{i}", **batch(0, i))
            return {"batches": client.run(run_id)["aggregate"]["batches"]}
        outcome: dict[str, Any] = {}
        for what, step in (("read", lambda: client.run(run_id)),
                           ("add", lambda: client.add_batch(run_id, "b2", **batch(0, 2)))):
            resent: list[str] = []
            for _ in range(20):  # resent on anything but an answer, as a run's workers do
                try:
                    outcome[what] = {"ok": True, "answer": str(step())[:200]}
                    break
                except LossdError as error:
                    outcome[what] = {"ok": False, "code": error.code.name,
                                     "message": str(error)[:200]}
                    if error.code.name == "NOT_FOUND":
                        break
                    resent.append(error.code.name)
                    time.sleep(0.2)  # a client's back-off before it tries the step again
            outcome[what]["resent"] = resent
        return outcome


def main() -> None:
    config = json.loads(sys.argv[1])
    role = config["role"]
    if role in ("rest", "grpc", "v2-http", "v2-grpc"):
        result = compute_role(config)
    elif role == "runs":
        result = runs_role(config)
    elif role == "bench":
        result = bench_role(config)
    else:
        result = redis_loss_role(config)
    tmp = config["out"] + ".tmp"
    Path(tmp).write_text(json.dumps(result))
    os.replace(tmp, config["out"])


if __name__ == "__main__":
    main()
