"""JSON numbers into arrays: µs per request in-process, with and without the fast path.

Times what the server does with a JSON body once it has its bytes (parse, decode into a Call,
compute, encode the answer), without sockets, best of ``--rounds`` rounds of ``--repeat``
requests each, for each body both ways:

    plain   orjson makes a Python number of each value, ``np.asarray`` an array of them
    fast    long numeric arrays cut out and read by simdjson into arrays
            (service/lossd/api/rest/jsonnumbers.py); small bodies are not searched

Bodies: V2 JSON and native REST, mse 100x1000 float32 (values written as float64 text, as
``ndarray.tolist()`` gives them: about 4 MB) and cross_entropy 32x10 (small).

    python -m bench.json_numbers
    python -m bench.json_numbers --rounds 5 --repeat 20
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from unittest import mock

import numpy as np
import orjson

from lossd.api.rest import jsonbody, jsonnumbers
from lossd.api.rest.native import decode_call, encode_answer
from lossd.api.rest.v2 import InferRequest
from lossd.codec import Limits
from lossd.losses import compute
from lossd.settings import Settings


def bodies() -> dict[str, tuple[str, str, bytes]]:
    """name -> (protocol, loss, body)."""
    rng = np.random.default_rng(0)
    x, y = (rng.normal(size=(100, 1000)).astype(np.float32) for _ in range(2))
    logits = rng.normal(size=(32, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 32)

    def v2(inputs: dict[str, tuple[str, np.ndarray]]) -> bytes:
        return orjson.dumps({"inputs": [
            {"name": name, "datatype": datatype, "shape": list(a.shape),
             "data": a.ravel().tolist()} for name, (datatype, a) in inputs.items()]})

    def native(inputs: dict[str, np.ndarray]) -> bytes:
        return orjson.dumps({"inputs": {name: a.tolist() for name, a in inputs.items()}})

    return {
        "v2 mse 100x1000": ("v2", "mse", v2({"input": ("FP32", x), "target": ("FP32", y)})),
        "v2 cross_entropy 32x10": ("v2", "cross_entropy", v2(
            {"input": ("FP32", logits), "target": ("INT64", labels)})),
        "native mse 100x1000": ("native", "mse", native({"input": x, "target": y})),
        "native cross_entropy 32x10": ("native", "cross_entropy", native(
            {"input": logits, "target": labels})),
    }


def handler(protocol: str, loss: str, body: bytes, settings: Settings) -> Callable[[], Any]:
    """One request's work once its body is in: parse, decode, compute, encode."""
    limits = Limits.of(settings)
    if protocol == "v2":
        def v2() -> Any:
            request = InferRequest(loss, None, body, None, settings)
            return request.answer(compute(loss, request.call.arrays, request.call.options))
        return v2

    def native() -> Any:
        call = decode_call(loss, jsonbody.loads(body, settings.max_json_depth), limits)
        return encode_answer(call, compute(loss, call.arrays, call.options))
    return native


def best_us(works: dict[str, tuple[AbstractContextManager[Any], Callable[[], Any]]],
            rounds: int, repeat: int) -> dict[str, float]:
    """Best of ``rounds`` rounds, each the mean of ``repeat`` calls, in µs per call, for each
    (context, work); the ways take turns in each round, so that load on a shared machine
    hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(rounds):
        for name, (context, work) in works.items():
            with context:
                work()  # warm
                start = time.perf_counter()
                for _ in range(repeat):
                    work()
                times[name].append((time.perf_counter() - start) / repeat)
    return {name: min(t) * 1e6 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10, help="requests per round (large "
                        "bodies); small bodies take 100 times as many")
    args = parser.parse_args()
    settings = Settings()
    print(f"{'body':28} {'bytes':>9} {'plain µs':>10} {'fast µs':>10} {'plain/fast':>10}")
    for name, (protocol, loss, body) in bodies().items():
        repeat = args.repeat if len(body) >= jsonnumbers.MIN_BODY else 100 * args.repeat
        work = handler(protocol, loss, body, settings)
        result = best_us({"plain": (mock.patch.object(jsonnumbers, "MIN_BODY", math.inf), work),
                          "fast": (nullcontext(), work)}, args.rounds, repeat)
        print(f"{name:28} {len(body):>9} {result['plain']:>10.0f} {result['fast']:>10.0f} "
              f"{result['plain'] / result['fast']:>10.2f}")


if __name__ == "__main__":
    main()
