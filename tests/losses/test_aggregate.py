"""Dataset-level aggregates: the statistics of random batch splits, added up, give the core's
answer on the concatenated data (float64 rel 1e-9), for every loss and dataset reduction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossd.errors import InvalidArgument
from lossd.losses import (
    REGISTRY,
    Aggregate,
    Stats,
    batch_axes,
    compute,
    evaluate,
    prepare,
    signature,
)
from lossd.losses._stats import exact_sum
from tests.reference import Case, all_cases
from tests.reference.compare import assert_close

DATASET_RTOL = {"float64": 1e-9, "float32": 1e-5, "float16": 2e-3}


def _batchable(case: Case) -> bool:
    if case.error is not None:
        return False
    call = prepare(case.loss, case.inputs, case.options)
    axes = batch_axes(call)
    return axes is not None and call.arrays[next(iter(axes))].shape[axes[next(iter(axes))]] > 1


# hinge and squared_hinge turn all-0/1 labels into ±1 per call (as Keras does per batch): with
# 0, 1 and -1 mixed in one batch, a split can convert a part that the whole would not
PER_CALL_LABELS = {"hinge-mixed-labels", "squared_hinge-mixed-labels"}
CASES = [pytest.param(c, id=c.name) for c in all_cases(0)
         if _batchable(c) and c.name not in PER_CALL_LABELS]


def split(case: Case, rng: np.random.Generator, parts: int) -> list[dict[str, np.ndarray]]:
    """``case.inputs`` cut along each tensor's batch axis into ``parts`` random batches."""
    call = prepare(case.loss, case.inputs, case.options)
    axes = batch_axes(call)
    assert axes is not None
    n = call.arrays[next(iter(axes))].shape[axes[next(iter(axes))]]
    cuts = sorted(rng.choice(np.arange(1, n), size=min(parts, n) - 1, replace=False).tolist())
    bounds = [0, *cuts, n]
    tensors = call.spec.tensor_map
    return [{k: (np.take(v, range(a, b), axis=tensors[k].batch_axis) if k in axes else v)
             for k, v in case.inputs.items()} for a, b in zip(bounds, bounds[1:])]


def test_every_loss_aggregates() -> None:
    assert {c.values[0].loss for c in CASES} == set(REGISTRY)


@pytest.mark.parametrize("case", CASES)
def test_random_splits_equal_the_concatenation(case: Case) -> None:
    spec = REGISTRY[case.loss]
    rng = np.random.default_rng(11)
    for reduction in [r for r in spec.reductions if r != "none"]:
        options = {**case.options, "reduction": reduction}
        expected = compute(case.loss, case.inputs, options).loss
        for parts in (1, 2, 5):
            batches = split(case, rng, parts)
            calls = [prepare(case.loss, b, options) for b in batches]
            assert len({signature(c).key for c in calls}) == 1
            stats = [Stats.of(evaluate(c)) for c in calls]
            rng.shuffle(stats)  # order-independent
            got = Aggregate.of(case.loss, reduction, stats, dtype=signature(calls[0]).dtype,
                               empty_mean=spec.empty_mean)
            assert got.batches == len(batches)
            dtype = expected.dtype.name
            assert_close(got.value, expected, what=f"{reduction} over {parts} batches",
                         rtol=case.rtol or DATASET_RTOL[dtype], atol=case.atol or 1e-12)


def test_none_aggregates_as_mean() -> None:
    x, y = np.arange(6.0).reshape(3, 2), np.zeros((3, 2))
    stats = Stats.of(evaluate(prepare("mse", {"input": x, "target": y}, {"reduction": "none"})))
    got = Aggregate.of("mse", "none", [stats], dtype="float64")
    assert got.reduction == "mean" and got.value == np.mean(x ** 2)


def test_weighted_mean_is_not_a_mean_of_batch_means() -> None:
    """cross_entropy with class weights: Σ losses / Σ target weights over all batches."""
    logits = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]))
    target, weight = np.array([0, 1, 1]), np.array([1.0, 3.0])
    parts = [Stats.of(evaluate(prepare("cross_entropy", {"input": logits[s], "target": target[s],
                                                         "weight": weight})))
             for s in (slice(0, 1), slice(1, 3))]
    got = Aggregate.of("cross_entropy", "mean", parts, dtype="float64").value
    whole = compute("cross_entropy", {"input": logits, "target": target, "weight": weight}).loss
    batch_means = np.mean([compute("cross_entropy", {"input": logits[s], "target": target[s],
                                                     "weight": weight}).loss
                           for s in (slice(0, 1), slice(1, 3))])
    assert got == pytest.approx(whole, rel=1e-12) and got != pytest.approx(batch_means)


def test_empty_aggregates_follow_torch() -> None:
    assert math.isnan(Aggregate.of("mse", "mean", [], dtype="float32").value)
    assert Aggregate.of("mse", "sum", [], dtype="float32").value == 0
    assert Aggregate.of("box_iou", "mean", [], dtype="float32", empty_mean=0.0).value == 0


def test_exact_sum_is_order_independent_and_ieee_at_the_edges() -> None:
    values = [1e16, 1.0, -1e16, 1e-3] * 50
    assert exact_sum(values) == exact_sum(reversed(values)) == pytest.approx(50 * 1.001)
    assert math.isnan(exact_sum([1.0, math.nan]))
    assert math.isnan(exact_sum([math.inf, -math.inf]))
    assert exact_sum([math.inf, 1.0]) == math.inf
    assert exact_sum([1e308, 1e308]) == math.inf


def test_signature_names_the_mismatch_and_refuses_unbatched_calls() -> None:
    a = signature(prepare("mse", {"input": np.zeros((2, 3)), "target": np.zeros((2, 3))}))
    b = signature(prepare("mse", {"input": np.zeros((5, 3)), "target": np.zeros((5, 3))}))
    c = signature(prepare("mse", {"input": np.zeros((2, 4)), "target": np.zeros((2, 4))}))
    d = signature(prepare("mse", {"input": np.zeros((2, 3), np.float32),
                                  "target": np.zeros((2, 3), np.float32)}))
    assert a.key == b.key and len({a.key, c.key, d.key}) == 3
    assert a.text == "mse(reduction='mean') input float64[N, 3]; target float64[N, 3]"
    assert d.dtype == "float32"
    with pytest.raises(InvalidArgument, match="batched form"):
        signature(prepare("cross_entropy", {"input": np.zeros(3), "target": np.array(1)}))
    with pytest.raises(InvalidArgument, match="batched form"):  # broadcasting target
        signature(prepare("mse", {"input": np.zeros((2, 3)), "target": np.zeros(3)}))
