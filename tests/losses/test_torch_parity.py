"""Live parity: randomized cases per loss against torch 2.13 itself (``make parity``)."""

from __future__ import annotations

import pytest

from lossd.errors import InvalidArgument
from lossd.losses import compute
from tests.reference import all_cases
from tests.reference.compare import assert_result

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SEEDS = (1, 2, 3)
CASES = [pytest.param(case, id=f"seed{seed}-{case.name}") for seed in SEEDS
         for case in all_cases(seed)]


@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case) -> None:
    from tests.reference.oracle import run_torch

    if case.error is not None:
        with pytest.raises(InvalidArgument, match=case.error):
            compute(case.loss, case.inputs, case.options)
        if not case.torch_accepts:
            with pytest.raises(Exception):
                run_torch(case)
        return
    expected_loss, expected_grads = run_torch(case)
    result = compute(case.loss, case.inputs, case.options, grad=bool(expected_grads))
    assert_result(case, result.loss, result.grads, expected_loss, expected_grads)
