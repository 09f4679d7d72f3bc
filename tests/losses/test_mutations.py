"""The suite catches a corrupted core: a mutation smoke check run as a test.

Each deliberate corruption is applied in-process by monkeypatching the core (undone after the
test) and must make the existing checks fail — the golden comparison of tests/losses/
test_golden.py (``check_row``, no torch needed) and, where it applies, the finite-difference
check of tests/losses/test_gradcheck.py — on at least one row of the loss it corrupts, while the
real core passes every one of those rows:

* a wrong reduction: ``mean`` reduced as ``sum`` (and ``sum`` as ``mean``);
* a dropped gradient: cross_entropy forgets its class weight's gradient, mse its target's;
* a loss value scaled by ``1 + 1e-9`` (mse): caught only because float64 is compared at the
  agreement measured with torch (rel 1e-12, docs/exactness.md), not at the contract's 1e-6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from lossd.losses import REGISTRY, Terms, _compute
from tests.golden import load
from tests.losses import test_gradcheck as gradcheck
from tests.losses.test_golden import check_row
from tests.reference import FAMILIES

ROWS = {row["id"]: row for family in FAMILIES for row in load(family)}


def _wrong_reduction(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _compute.reduce
    swapped = {"mean": "sum", "sum": "mean"}

    def reduce(terms: Terms, reduction: str, **kwargs: Any) -> np.ndarray:  # noqa: ANN401
        return real(terms, swapped.get(reduction, reduction), **kwargs)

    monkeypatch.setattr(_compute, "reduce", reduce)


def _dropping(loss: str, tensor: str) -> Callable[[pytest.MonkeyPatch], None]:
    def mutate(monkeypatch: pytest.MonkeyPatch) -> None:
        spec = REGISTRY[loss]
        real = spec.grad
        assert real is not None

        def grad(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:  # noqa: ANN401
            grads = real(*args, **kwargs)
            grads.pop(tensor, None)
            return grads

        monkeypatch.setitem(REGISTRY, loss, replace(spec, grad=grad))
    return mutate


def _scaled(loss: str, factor: float) -> Callable[[pytest.MonkeyPatch], None]:
    def mutate(monkeypatch: pytest.MonkeyPatch) -> None:
        spec = REGISTRY[loss]
        real = spec.fn

        def fn(*args: Any, **kwargs: Any) -> Terms:  # noqa: ANN401
            terms = real(*args, **kwargs)
            return replace(terms, values=terms.values * terms.values.dtype.type(factor))

        monkeypatch.setitem(REGISTRY, loss, replace(spec, fn=fn))
    return mutate


# name -> (corruption, the losses whose rows are checked, whether finite differences apply)
MUTATIONS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], tuple[str, ...], bool]] = {
    "wrong reduction": (_wrong_reduction, ("mse", "cross_entropy", "ctc"), False),
    "dropped class-weight gradient": (_dropping("cross_entropy", "weight"),
                                      ("cross_entropy",), False),
    "dropped target gradient": (_dropping("mse", "target"), ("mse",), True),
    "1e-9 relative scale": (_scaled("mse", 1 + 1e-9), ("mse",), False),
}


def _golden_failures(losses: tuple[str, ...]) -> tuple[int, list[str]]:
    rows = [row for row in ROWS.values() if row["loss"] in losses]
    failed = []
    for row in rows:
        try:
            check_row(row)
        except AssertionError:
            failed.append(row["id"])
    return len(rows), failed


def _gradcheck_failures(losses: tuple[str, ...]) -> tuple[int, list[str]]:
    cases = [p.values[0] for p in gradcheck.CASES if p.values[0].loss in losses]
    failed = []
    for case in cases:
        try:
            gradcheck.test_central_differences(case)
        except AssertionError:
            failed.append(case.name)
    return len(cases), failed


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_the_real_core_passes_the_checks_the_mutations_use(name: str) -> None:
    _, losses, finite_differences = MUTATIONS[name]
    checked, failed = _golden_failures(losses)
    assert checked and not failed, failed[:5]
    if finite_differences:
        checked, failed = _gradcheck_failures(losses)
        assert checked and not failed, failed[:5]


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_fails_the_checks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mutate, losses, finite_differences = MUTATIONS[name]
    mutate(monkeypatch)
    checked, failed = _golden_failures(losses)
    assert failed, f"{name}: all {checked} golden rows of {losses} still pass"
    if finite_differences:
        checked, failed = _gradcheck_failures(losses)
        assert failed, f"{name}: all {checked} finite-difference cases still pass"
