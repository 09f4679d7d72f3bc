"""Comparing the core's answers with a reference, at the project's tolerances."""

from __future__ import annotations

import numpy as np

from . import ATOL, RTOL, Case


def assert_close(actual: np.ndarray, expected: np.ndarray, *, what: str,
                 rtol: float | None = None, atol: float | None = None) -> None:
    """Same dtype, shape, nan/inf pattern, and values within rtol/atol of the dtype."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    key = expected.dtype.name
    np.testing.assert_allclose(
        actual.astype(np.float64), expected.astype(np.float64), equal_nan=True,
        rtol=RTOL.get(key, 1e-6) if rtol is None else rtol,
        atol=ATOL.get(key, 1e-10) if atol is None else atol, err_msg=what)


def _mixed_precision(case: Case) -> tuple[float | None, float | None]:
    """With floats of several widths in one call, the narrowest sets the tolerance: torch
    rounds part of the arithmetic in it (e.g. float32 log_softmax before a float64 product)
    where lossd promotes first, so a float64 result carries float32 rounding."""
    widths = {v.dtype.name for v in case.inputs.values() if v.dtype.kind == "f"}
    if len(widths) < 2:
        return None, None
    narrowest = max(widths, key=lambda name: RTOL.get(name, 0.0))
    return RTOL[narrowest], ATOL[narrowest]


def assert_result(case: Case, loss: np.ndarray, grads: dict[str, np.ndarray],
                  expected_loss: np.ndarray, expected_grads: dict[str, np.ndarray]) -> None:
    mixed_rtol, mixed_atol = _mixed_precision(case)
    rtol, atol = case.rtol or mixed_rtol, case.atol or mixed_atol
    assert_close(loss, expected_loss, what=f"{case.name} loss", rtol=rtol, atol=atol)
    assert set(grads) == set(expected_grads), (
        f"{case.name}: gradients for {sorted(grads)}, torch has {sorted(expected_grads)}")
    for name, expected in expected_grads.items():
        assert_close(grads[name], expected, what=f"{case.name} grad {name}",
                     rtol=case.grad_rtol or rtol, atol=case.grad_atol or atol)
