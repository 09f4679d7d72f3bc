"""Comparing the core's answers with a reference, at the tolerances measured against torch
(``RTOL``/``ATOL`` for values, ``GRAD_RTOL``/``GRAD_ATOL`` for gradients: tests/reference)."""

from __future__ import annotations

import numpy as np

from . import ATOL, GRAD_ATOL, GRAD_RTOL, RTOL, Case

WIDEST_FIRST = ("float64", "float32", "float16")


def assert_close(actual: np.ndarray, expected: np.ndarray, *, what: str,
                 rtol: float | None = None, atol: float | None = None,
                 gradient: bool = False) -> None:
    """Same dtype, shape, nan/inf pattern, and values within rtol/atol (by default the
    dtype's, for a loss value or for a ``gradient``)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    key = expected.dtype.name
    rtols, atols = (GRAD_RTOL, GRAD_ATOL) if gradient else (RTOL, ATOL)
    np.testing.assert_allclose(
        actual.astype(np.float64), expected.astype(np.float64), equal_nan=True,
        rtol=rtols.get(key, RTOL["float64"]) if rtol is None else rtol,
        atol=atols.get(key, ATOL["float64"]) if atol is None else atol, err_msg=what)


def _narrowest(case: Case) -> str | None:
    """With floats of several widths in one call, the narrowest sets the tolerance: torch
    rounds part of the arithmetic in it (e.g. float32 log_softmax before a float64 product)
    where lossd promotes first, so a float64 result carries float32 rounding."""
    widths = {v.dtype.name for v in case.inputs.values() if v.dtype.kind == "f"}
    if len(widths) < 2:
        return None
    return max(widths, key=WIDEST_FIRST.index)


def assert_result(case: Case, loss: np.ndarray, grads: dict[str, np.ndarray],
                  expected_loss: np.ndarray, expected_grads: dict[str, np.ndarray]) -> None:
    """The loss and exactly the expected gradients (by name), each within its tolerance."""
    narrowest = _narrowest(case)
    rtol = case.rtol or (RTOL[narrowest] if narrowest else None)
    atol = case.atol or (ATOL[narrowest] if narrowest else None)
    assert_close(loss, expected_loss, what=f"{case.name} loss", rtol=rtol, atol=atol)
    assert set(grads) == set(expected_grads), (
        f"{case.name}: gradients for {sorted(grads)}, torch has {sorted(expected_grads)}")
    grad_rtol = case.grad_rtol or case.rtol or (GRAD_RTOL[narrowest] if narrowest else None)
    grad_atol = case.grad_atol or case.atol or (GRAD_ATOL[narrowest] if narrowest else None)
    for name, expected in expected_grads.items():
        assert_close(grads[name], expected, what=f"{case.name} grad {name}",
                     rtol=grad_rtol, atol=grad_atol, gradient=True)
