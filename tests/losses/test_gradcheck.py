"""Gradients against central finite differences in float64 (away from kinks).

Every gradient torch gives for the case (the committed goldens name them) must come back, and
no other: an empty or partial gradient dict fails here, not only the gradients returned.
"""

from __future__ import annotations

import numpy as np
import pytest

from lossd.losses import REGISTRY, compute
from tests.golden import gradient_names
from tests.reference import all_cases

EPS = 1e-6
GOLDEN_GRADS = gradient_names()


def _finite_loss(case) -> bool:
    """Finite differences of a nan loss (an empty batch's mean) are nan: nothing to compare."""
    return bool(np.isfinite(compute(case.loss, case.inputs, case.options).loss).all())


CASES = [pytest.param(c, id=c.name) for c in all_cases(0)
         if c.error is None and c.finite_diff and c.grad
         and all(v.dtype == np.float64 for k, v in c.inputs.items()
                 if REGISTRY[c.loss].tensor_map[k].differentiable)
         and sum(v.size for v in c.inputs.values()) <= 200 and _finite_loss(c)]


def _scalar(case, inputs) -> float:
    loss = compute(case.loss, inputs, case.options).loss
    return float(np.sum(loss))


@pytest.mark.parametrize("case", CASES)
def test_central_differences(case) -> None:
    result = compute(case.loss, case.inputs, case.options, grad=True)
    assert case.name in GOLDEN_GRADS, f"{case.name}: no golden row (run make golden)"
    assert set(result.grads) == GOLDEN_GRADS[case.name], (
        f"{case.name}: gradients for {sorted(result.grads)}, torch gives "
        f"{sorted(GOLDEN_GRADS[case.name])}")
    for name, grad in result.grads.items():
        base = case.inputs[name]
        numeric = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[index] += EPS
            minus[index] -= EPS
            numeric[index] = (_scalar(case, {**case.inputs, name: plus})
                              - _scalar(case, {**case.inputs, name: minus})) / (2 * EPS)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6,
                                   err_msg=f"{case.name} grad {name}")
