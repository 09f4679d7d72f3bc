"""torch's warnings travel with the answer: ``Result.warnings`` holds the texts torch 2.13 warns.

torch 2.13 warns, among the losses lossd implements, of a target whose size differs from the
input's in l1, mse, smooth_l1 and huber (and l2's ``mse`` variant, which is mse_loss), and of
kl_div's ``mean`` reduction (its default). Every reference case is compared with the warnings
torch raises for it when torch is installed; the texts are also written out here, as torch
prints them, for the runs without it.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from lossd.losses import compute
from tests.reference import Case, all_cases, torch_module_for

TORCH_ONLY = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="no torch")

BROADCAST = ("Using a target size (torch.Size([3, 1])) that is different to the input size "
             "(torch.Size([3, 4])). This will likely lead to incorrect results due to "
             "broadcasting. Please ensure they have the same size.")
KL_DIV_MEAN = ("reduction: 'mean' divides the total loss by both the batch size and the support "
               "size.'batchmean' divides only by the batch size, and aligns with the KL div "
               "math definition.'mean' will be changed to behave the same as 'batchmean' in the "
               "next major release.")


@pytest.mark.parametrize(("loss", "options"), [
    ("mse", {}), ("l1", {}), ("smooth_l1", {}), ("huber", {}), ("l2", {"variant": "mse"})])
def test_a_broadcast_target_warns_as_torch(loss: str, options: dict) -> None:
    x, y = np.zeros((3, 4)), np.zeros((3, 1))
    assert compute(loss, {"input": x, "target": y}, options).warnings == (BROADCAST,)
    assert compute(loss, {"input": x, "target": np.zeros((3, 4))}, options).warnings == ()


def test_the_other_l2_variants_do_not_warn() -> None:
    assert compute("l2", {"input": np.zeros((3, 4)), "target": np.zeros((3, 1))},
                   {"variant": "sse"}).warnings == ()


@pytest.mark.parametrize(("reduction", "expected"), [
    ("mean", (KL_DIV_MEAN,)), ("batchmean", ()), ("sum", ()), ("none", ())])
def test_kl_div_mean_warns_as_torch(reduction: str, expected: tuple[str, ...]) -> None:
    p = np.full((2, 3), 1 / 3)
    assert compute("kl_div", {"input": np.log(p), "target": p},
                   {"reduction": reduction}).warnings == expected


def torch_warnings(case: Case) -> tuple[str, ...] | None:
    """The texts of the warnings torch raises for ``case`` (None if torch refuses it)."""
    import torch

    tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in case.inputs.items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch_module_for(case.loss).torch_loss(case.loss, tensors, dict(case.options))
        except Exception:  # noqa: BLE001 - refused: no answer to carry warnings
            return None
    return tuple(str(w.message) for w in caught if issubclass(w.category, UserWarning))


@TORCH_ONLY
@pytest.mark.torch
def test_every_reference_case_warns_as_torch() -> None:
    checked = 0
    for case in all_cases(0):
        if case.error is not None:
            continue
        expected = torch_warnings(case)
        if expected is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got = compute(case.loss, case.inputs, case.options).warnings
        assert got == expected, case.name
        checked += 1
    assert checked > 1000
