"""No cross-talk: many different requests (every loss, shapes, dtypes, options, with and
without gradients) sent concurrently over REST and gRPC share batches on a real server, and
every answer equals a direct computation of that request alone."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import httpx
import numpy as np

from lossd.client import AsyncClient, AsyncGrpcClient, LossdError, LossResult
from lossd.errors import InvalidArgument
from lossd.losses import REGISTRY, batch_axes, compute, prepare
from tests.reference import Case, all_cases
from tests.reference.compare import assert_close


def _requests(cases: int, variants: int) -> list[tuple[Case, bool, str]]:
    """``variants`` of each batchable case, its first tensor scaled by a factor in [0.9, 1] (so
    batch keys repeat but values differ: probabilities stay probabilities, boxes stay boxes),
    with or without gradients, over either transport, shuffled."""
    pool = [c for seed in (11, 12) for c in all_cases(seed) if c.error is None
            and all(np.size(a) for a in c.inputs.values())
            and {np.asarray(a).dtype.name for a in c.inputs.values()} <= {
                "float32", "float64", "int64", "int32", "bool", "uint8"}]
    pool = [c for c in pool if batch_axes(prepare(c.loss, c.inputs, c.options)) is not None]
    rng = random.Random(7)
    requests = []
    for case in rng.sample(pool, min(len(pool), cases)):
        first = REGISTRY[case.loss].tensors[0].name
        for _ in range(variants):
            inputs = {k: np.asarray(v) for k, v in case.inputs.items()}
            if inputs[first].dtype.kind == "f":
                inputs[first] = np.asarray(inputs[first] * rng.uniform(0.9, 1.0),
                                           dtype=inputs[first].dtype)
            options = {k: v.item() if isinstance(v, np.generic) else v
                       for k, v in case.options.items()}
            requests.append((replace(case, inputs=inputs, options=options), rng.random() < 0.5,
                             rng.choice(["rest", "grpc"])))
    rng.shuffle(requests)
    return requests


def _check(case: Case, grad: bool, got: LossResult | LossdError) -> None:
    try:
        want = compute(case.loss, case.inputs, case.options, grad=grad)
    except InvalidArgument as error:  # a scaled input may leave the domain: the same refusal
        assert isinstance(got, LossdError) and got.message == error.message, case.name
        return
    assert isinstance(got, LossResult), (case.name, got)
    assert_close(np.asarray(got.loss, dtype=want.loss.dtype), want.loss, what=case.name)
    assert set(got.grads) == set(want.grads), case.name
    for name, g in want.grads.items():
        assert_close(got.grads[name], g, what=f"{case.name} grad {name}")


def test_concurrent_mixed_requests_never_cross_talk(spawn) -> None:
    # every request through the queue (no inline compute on an idle engine): batches are shared
    s = spawn("--max-batch-delay-us", "20000", "--max-queue", "4096",
              "--inline-compute-elements", "0", "--inline-compute-us", "0")
    requests = _requests(cases=25, variants=12)

    async def run() -> list[LossResult | LossdError]:
        async with AsyncClient(s.url, timeout=120) as rest, \
                AsyncGrpcClient(s.grpc_target, timeout=120) as grpc_client:
            gate = asyncio.Semaphore(128)

            async def one(case: Case, grad: bool, transport: str
                          ) -> LossResult | LossdError:
                client = rest if transport == "rest" else grpc_client
                async with gate:
                    try:
                        return await client.compute(case.loss, grad=grad, **case.inputs,
                                                    **case.options)
                    except LossdError as error:
                        return error
            return await asyncio.gather(*(one(*r) for r in requests))

    results = asyncio.run(run())
    for (case, grad, _), got in zip(requests, results):
        _check(case, grad, got)
    metrics = httpx.get(f"{s.url}/metrics").text
    batches = sum(float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("lossd_batch_size_count"))  # summed over the losses
    print(f"\nisolation: {len(requests)} mixed requests ({len({c.loss for c, _, _ in requests})} "
          f"losses) in {batches:.0f} batches, every answer equal to its own computation")
    assert batches < len(requests), "no batch was shared"
