"""Gradients of tensor options (class ``weight``, ``alpha``) through the engine and over both
transports: a per-request constant's gradient sums over the whole call, so the engine computes
such calls alone instead of batching them, and REST and gRPC carry the gradient like any other.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import lossd
from lossd.engine import Engine
from lossd.losses import compute
from lossd.settings import Settings
from tests.reference.compare import assert_close

QUEUED = Settings(inline_compute_elements=0, inline_compute_us=0)


def _calls() -> list[tuple[str, dict[str, np.ndarray], dict[str, object]]]:
    rng = np.random.default_rng(20)
    probabilities = rng.dirichlet(np.ones(4), 6)
    weight = rng.uniform(0.5, 2.0, 4)
    return [
        ("cross_entropy", {"input": rng.standard_normal((6, 4)), "target": probabilities,
                           "weight": weight}, {"label_smoothing": 0.1}),
        ("cross_entropy", {"input": rng.standard_normal((6, 4)), "target": probabilities,
                           "weight": weight}, {"reduction": "sum"}),
        ("multilabel_soft_margin", {"input": rng.standard_normal((6, 4)),
                                    "target": rng.integers(0, 2, (6, 4)).astype(np.float64),
                                    "weight": weight}, {}),
        ("softmax_focal", {"input": rng.standard_normal((6, 4)),
                           "target": rng.integers(0, 4, 6), "alpha": weight}, {"gamma": 1.5}),
    ]


def _assert_same(what: str, grads: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                 option: str) -> None:
    assert option in expected
    assert set(grads) == set(expected), f"{what}: {sorted(grads)} != {sorted(expected)}"
    for name, g in expected.items():
        assert_close(np.asarray(grads[name]), g, what=f"{what} grad {name}")


def test_engine_keeps_option_gradients_under_load() -> None:
    calls = _calls() * 8

    async def body() -> list[lossd.losses.Result]:
        engine = Engine(QUEUED)
        await engine.start()
        try:
            return await asyncio.gather(*(engine.compute(loss, arrays, options, grad=True)
                                          for loss, arrays, options in calls))
        finally:
            await engine.drain(5)

    for (loss, arrays, options), result in zip(calls, asyncio.run(body())):
        alone = compute(loss, arrays, options, grad=True)
        assert_close(result.loss, alone.loss, what=f"{loss} loss")
        _assert_same(f"engine {loss}", result.grads, alone.grads,
                     "alpha" if loss == "softmax_focal" else "weight")


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_option_gradients_travel_over_both_transports(server, transport: str) -> None:
    client = (lossd.Client(server.url) if transport == "rest"
              else lossd.GrpcClient(server.grpc_target))
    with client:
        for loss, arrays, options in _calls():
            expected = compute(loss, arrays, options, grad=True)
            answer = client.compute(loss, grad=True, **arrays, **options)
            assert_close(np.asarray(answer.loss), expected.loss, what=f"{transport} {loss}")
            _assert_same(f"{transport} {loss}", dict(answer.grads), expected.grads,
                         "alpha" if loss == "softmax_focal" else "weight")
