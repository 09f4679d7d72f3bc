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


def assert_result(case: Case, loss: np.ndarray, grads: dict[str, np.ndarray],
                  expected_loss: np.ndarray, expected_grads: dict[str, np.ndarray]) -> None:
    assert_close(loss, expected_loss, what=f"{case.name} loss", rtol=case.rtol, atol=case.atol)
    assert set(grads) == set(expected_grads), (
        f"{case.name}: gradients for {sorted(grads)}, torch has {sorted(expected_grads)}")
    for name, expected in expected_grads.items():
        assert_close(grads[name], expected, what=f"{case.name} grad {name}",
                     rtol=case.grad_rtol or case.rtol, atol=case.grad_atol or case.atol)
