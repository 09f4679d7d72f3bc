"""Batch invariance: a batch split into parts and reduced part by part gives exactly the
answers of each part computed alone (losses, every reduction, and gradients)."""

from __future__ import annotations

import numpy as np
import pytest

from lossd.losses import (
    backward,
    batch_axes,
    compute,
    concat,
    evaluate,
    prepare,
    reduce,
    split_grads,
    split_terms,
)
from tests.reference import all_cases
from tests.reference.compare import assert_close

CASES = [pytest.param(c, id=c.name) for c in all_cases(0) if c.error is None]


def _parts(n: int, rng: np.random.Generator) -> list[int]:
    cuts = sorted(rng.choice(np.arange(1, n), size=min(n - 1, 2), replace=False)) if n > 1 else []
    bounds = [0, *cuts, n]
    return [b - a for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("case", CASES)
def test_split_batch_equals_parts_alone(case) -> None:
    whole = prepare(case.loss, case.inputs, case.options)
    axes = batch_axes(whole)
    if axes is None:
        pytest.skip("not in a batchable form")
    n = whole.arrays[next(iter(axes))].shape[axes[next(iter(axes))]]
    sizes = _parts(n, np.random.default_rng(7))
    starts = np.cumsum([0, *sizes])
    parts_inputs = [{k: (np.take(v, range(a, b), axis=whole.spec.tensor_map[k].batch_axis)
                         if k in axes else v) for k, v in case.inputs.items()}
                    for a, b in zip(starts, starts[1:])]
    parts = [prepare(case.loss, p, case.options) for p in parts_inputs]
    batched = concat(parts, axes)
    terms = evaluate(batched)
    pieces = split_terms(terms, sizes)
    grads = split_grads(backward(batched, [(t, part.reduction) for t, part in zip(pieces, parts)]),
                        axes, sizes) if whole.spec.grad else [{}] * len(sizes)
    for i, (inputs, piece) in enumerate(zip(parts_inputs, pieces)):
        alone = compute(case.loss, inputs, case.options, grad=whole.spec.grad is not None)
        reduction = parts[i].reduction
        assert_close(reduce(piece, reduction, empty_mean=whole.spec.empty_mean).astype(
            alone.loss.dtype), alone.loss, what=f"part {i} loss")
        for name, g in grads[i].items():
            if name in alone.grads:
                assert_close(g.astype(alone.grads[name].dtype), alone.grads[name],
                             what=f"part {i} grad {name}")
