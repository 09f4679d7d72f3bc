"""Every gradient torch gives, and only those.

For every reference case (each loss with each option set, shape and dtype of ``cases(0)``),
torch is asked which tensors it differentiates — every floating tensor, inputs and tensor
options (``weight``, ``pos_weight``, ``alpha``, ``var``) alike, is made a leaf that requires
grad; a tensor torch refuses or leaves without ``.grad`` is not differentiated — and:

* lossd, asked for gradients, returns exactly those tensors' gradients, equal to torch's;
* the registry's ``differentiable`` flags are exactly the tensors torch differentiates in at
  least one case of the loss (a flag means "may get a gradient": cross_entropy's ``weight`` gets
  one with class probabilities, none with class indices, as in torch).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from lossd.losses import REGISTRY, compute
from tests.reference import PROMOTED_BACKWARD, Case, all_cases
from tests.reference.compare import assert_result

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

CASES = {case.name: case for case in all_cases(0) if case.error is None}



@lru_cache(maxsize=None)
def torch_differentiates(name: str) -> frozenset[str]:
    from tests.reference.oracle import differentiated

    return frozenset(t for t, how in differentiated(CASES[name]).items() if how == "grad")


def _promoted(case: Case) -> Case:
    """``case`` with its target cast to input's dtype, as lossd computes it."""
    dtype = case.inputs["input"].dtype
    inputs = {k: v.astype(dtype) if k in ("input", "target") else v
              for k, v in case.inputs.items()}
    return Case(case.id, case.loss, inputs, case.options)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_are_exactly_torchs(name: str) -> None:
    from tests.reference.oracle import run_torch

    case = CASES[name]
    result = compute(case.loss, case.inputs, case.options, grad=True)
    if name in PROMOTED_BACKWARD:
        assert torch_differentiates(name) == frozenset(), "torch's huber backward works now"
        promoted = _promoted(case)
        expected_loss, expected_grads = run_torch(promoted)
        expected_grads = {k: g for k, g in expected_grads.items()  # an int target gets none
                          if k in PROMOTED_BACKWARD[name]}
        grads = {k: g.astype(expected_grads[k].dtype) for k, g in result.grads.items()}
        assert_result(case, result.loss, grads, expected_loss, expected_grads)
        return
    expected_loss, expected_grads = run_torch(case)
    assert set(expected_grads) == torch_differentiates(name)
    assert_result(case, result.loss, result.grads, expected_loss, expected_grads)


@pytest.mark.parametrize("loss", sorted(REGISTRY))
def test_registry_flags_are_what_torch_differentiates(loss: str) -> None:
    spec = REGISTRY[loss]
    cases = [name for name, case in CASES.items() if case.loss == loss]
    assert cases, f"no reference case for {loss}"
    by_torch = set().union(*(torch_differentiates(name) for name in cases))
    floating = {k for name in cases for k, v in CASES[name].inputs.items() if v.dtype.kind == "f"}
    assert set(spec.differentiable) & floating == by_torch, (
        f"{loss}: the registry marks {sorted(spec.differentiable)}, torch differentiates "
        f"{sorted(by_torch)}")
    never_floating = set(spec.differentiable) - floating
    assert not never_floating, f"{loss}: no case sends {sorted(never_floating)} as floats"


def test_option_tensor_gradients_are_checked() -> None:
    """The gradients torch gives beyond inputs and targets are among the cases checked above."""
    found = {(CASES[name].loss, t) for name in CASES for t in torch_differentiates(name)
             if t not in ("input", "target")}
    assert {("cross_entropy", "weight"), ("multilabel_soft_margin", "weight"),
            ("softmax_focal", "alpha"), ("mse", "weight"), ("l1", "weight"),
            ("huber", "weight"), ("gaussian_nll", "var")} <= found


def test_cross_entropy_weight_gradient_by_hand() -> None:
    """∂/∂w_c of probability-target cross-entropy, smoothed: -Σ_n y'_nc·log p_nc / N (mean)."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((5, 4)), rng.uniform(0.5, 2.0, 4)
    y = rng.dirichlet(np.ones(4), 5)
    eps = 0.2
    smoothed = y * (1 - eps) + eps / 4
    log_p = x - np.log(np.exp(x).sum(1, keepdims=True))
    got = compute("cross_entropy", {"input": x, "target": y, "weight": w},
                  {"label_smoothing": eps}, grad=True).grads["weight"]
    np.testing.assert_allclose(got, -(smoothed * log_p).sum(0) / 5, rtol=1e-13)
