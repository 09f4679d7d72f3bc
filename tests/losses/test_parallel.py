"""The piecewise, multi-threaded path of lossd/losses/_parallel.py gives the same bits as one
whole-array call, keeps the caller's floating-point error settings (no warning from a worker
thread), and ``keep`` is ``where(mask, x, 0)`` exactly.

The reference cases are small and never reach the threshold, so these use arrays above it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lossd.losses import _parallel, compute

SIZE = _parallel.THRESHOLD + 3 * _parallel.PIECE + 17  # several pieces, a ragged last one


def _values(rng: np.random.Generator, dtype: str, low: float = -3.0, high: float = 3.0
            ) -> np.ndarray:
    """Values with some 0, ±inf and nan sprinkled in (the paths where errstate matters)."""
    x = rng.uniform(low, high, SIZE)
    x[rng.integers(0, SIZE, 40)] = 0.0
    x[rng.integers(0, SIZE, 10)] = np.inf
    x[rng.integers(0, SIZE, 10)] = -np.inf
    x[rng.integers(0, SIZE, 10)] = np.nan
    return x.astype(dtype)


def _pair(rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
    return {"input": _values(rng, dtype), "target": _values(rng, dtype)}


def _binary(rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
    return {"input": _values(rng, dtype).reshape(-1, 1),
            "target": (rng.random((SIZE, 1)) < 0.5).astype(dtype)}


def _labels(rng: np.random.Generator, dtype: str) -> dict[str, np.ndarray]:
    return {"input": _values(rng, dtype), "target": np.where(rng.random(SIZE) < 0.5, -1.0, 1.0)}


CALLS: list[tuple[str, Any, dict[str, Any]]] = [
    ("l1", _pair, {}), ("mse", _pair, {}), ("l2", _pair, {}), ("smooth_l1", _pair, {}),
    ("smooth_l1", _pair, {"beta": 0.0}), ("huber", _pair, {"delta": 0.5}),
    ("poisson_nll", _pair, {}), ("poisson_nll", _pair, {"log_input": False, "full": True}),
    ("log_cosh", _pair, {}), ("mape", _pair, {}), ("msle", _pair, {}),
    ("binary_cross_entropy_with_logits", _binary, {}), ("multilabel_soft_margin", _binary, {}),
    ("soft_margin", _labels, {}), ("hinge_embedding", _labels, {}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("loss", "make", "options"), CALLS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_threads_give_the_whole_array_bits(loss: str, make: Any, options: dict[str, Any],
                                           dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make(np.random.default_rng(0), dtype)
    split = compute(loss, arrays, {"reduction": "none", **options}, grad=True)
    monkeypatch.setattr(_parallel, "THRESHOLD", 1 << 62)
    whole = compute(loss, arrays, {"reduction": "none", **options}, grad=True)
    np.testing.assert_array_equal(split.loss, whole.loss)
    assert split.grads.keys() == whole.grads.keys()
    for name, grad in whole.grads.items():
        np.testing.assert_array_equal(split.grads[name], grad)


def test_gaussian_nll_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    arrays = {**_pair(rng, "float64"), "var": rng.uniform(0.0, 2.0, SIZE)}
    split = compute("gaussian_nll", arrays, {"reduction": "none"}, grad=True)
    monkeypatch.setattr(_parallel, "THRESHOLD", 1 << 62)
    whole = compute("gaussian_nll", arrays, {"reduction": "none"}, grad=True)
    np.testing.assert_array_equal(split.loss, whole.loss)
    for name, grad in whole.grads.items():
        np.testing.assert_array_equal(split.grads[name], grad)


def test_elementwise_outputs_and_broadcasting() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(SIZE), rng.standard_normal(SIZE)

    def kernel(a: np.ndarray, b: np.ndarray, total: np.ndarray, product: np.ndarray) -> None:
        np.add(a, b, out=total)
        np.multiply(a, b, out=product)

    total, product = _parallel.elementwise(kernel, x, y, outputs=2)
    np.testing.assert_array_equal(total, x + y)
    np.testing.assert_array_equal(product, x * y)
    column = rng.standard_normal((SIZE // 4, 1))
    total, product = _parallel.elementwise(kernel, x[:SIZE // 4 * 4].reshape(-1, 4), column,
                                           outputs=2)  # broadcasting: one whole-array call
    np.testing.assert_array_equal(total, x[:SIZE // 4 * 4].reshape(-1, 4) + column)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_keep_is_where(dtype: str) -> None:
    x = np.array([1.5, -0.0, np.inf, -np.inf, np.nan, 2.0], dtype)
    mask = np.array([True, True, True, False, True, False])
    expected = np.where(mask, x, 0)
    got = _parallel.keep(x, mask)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, expected)
    assert np.signbit(got[1]) and not np.signbit(got[3])  # the bits themselves
    np.testing.assert_array_equal(_parallel.keep(x[:, None], mask), np.where(mask, x[:, None], 0))
