"""Batch invariance: a batch split into parts and reduced part by part gives exactly the
answers of each part computed alone (losses, every reduction, and gradients).

Gradients are compared by name: each part alone gets exactly the gradients torch gives (the
goldens name them), and the batch gives each part those of its batched tensors. A per-request
constant's gradient (a class weight's) sums over the whole call and cannot be split: the engine
computes such calls alone when a gradient is asked for (tests/engine/test_option_gradients.py).
"""

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
from tests.golden import gradient_names
from tests.reference import Case, all_cases
from tests.reference.compare import assert_close

GOLDEN_GRADS = gradient_names()


def _batchable(case: Case) -> bool:
    return batch_axes(prepare(case.loss, case.inputs, case.options)) is not None


# the valid cases in a batchable form; the others (an unbatched sample, broadcast tensors) the
# engine computes alone, so there is nothing to split
CASES = [pytest.param(c, id=c.name) for c in all_cases(0) if c.error is None and _batchable(c)]


def _parts(n: int, rng: np.random.Generator) -> list[int]:
    cuts = sorted(rng.choice(np.arange(1, n), size=min(n - 1, 2), replace=False)) if n > 1 else []
    bounds = [0, *cuts, n]
    return [b - a for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("case", CASES)
def test_split_batch_equals_parts_alone(case) -> None:
    whole = prepare(case.loss, case.inputs, case.options)
    axes = batch_axes(whole)
    assert axes is not None
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
                        axes, sizes)
    torch_gives = GOLDEN_GRADS[case.name]
    for i, (inputs, piece) in enumerate(zip(parts_inputs, pieces)):
        alone = compute(case.loss, inputs, case.options, grad=True)
        reduction = parts[i].reduction
        assert_close(reduce(piece, reduction, empty_mean=whole.spec.empty_mean).astype(
            alone.loss.dtype), alone.loss, what=f"part {i} loss")
        assert set(alone.grads) == torch_gives, f"part {i} alone: {sorted(alone.grads)}"
        assert set(grads[i]) == torch_gives & set(axes), f"part {i} batched: {sorted(grads[i])}"
        for name, g in grads[i].items():
            assert_close(g.astype(alone.grads[name].dtype), alone.grads[name],
                         what=f"part {i} grad {name}", gradient=True)
