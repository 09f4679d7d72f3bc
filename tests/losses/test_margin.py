"""multi_margin and multilabel_margin against naive loops that follow torch's C kernels line by
line (loss and gradient), including duplicates, -1 terminators, nan scores and kinks."""

from __future__ import annotations

import numpy as np
import pytest

from lossd.losses import compute


def _multilabel_loop(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """aten/src/ATen/native/LossMultiLabelMargin.cpp, one sample at a time."""
    loss, grad = np.zeros(x.shape[0]), np.zeros_like(x)
    c = x.shape[1]
    for n in range(x.shape[0]):
        targets = []
        for label in y[n]:
            if label == -1:
                break
            targets.append(int(label))
        for j in targets:
            for i in range(c):
                if i in targets:
                    continue
                z = 1 - x[n, j] + x[n, i]
                if z > 0:
                    loss[n] += z / c
                    grad[n, i] += 1 / c
                    grad[n, j] -= 1 / c
    return loss, grad


def _multi_margin_loop(x: np.ndarray, y: np.ndarray, p: int, margin: float,
                       weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """aten/src/ATen/native/LossMultiMargin.cpp, one sample at a time."""
    loss, grad = np.zeros(x.shape[0]), np.zeros_like(x)
    c = x.shape[1]
    for n in range(x.shape[0]):
        t = int(y[n])
        w = 1.0 if weight is None else weight[t]
        for i in range(c):
            if i == t:
                continue
            z = margin - x[n, t] + x[n, i]
            if z > 0:
                loss[n] += w * (z if p == 1 else z * z) / c
                d = w * (1 if p == 1 else 2 * z) / c
                grad[n, i] += d
                grad[n, t] -= d
    return loss, grad


def _scores(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    # half-integers make exact kinks (z = 0) and ties frequent
    x = rng.integers(-4, 5, (n, c)) / 2.0
    x[rng.random((n, c)) < 0.05] = np.nan
    return x


@pytest.mark.parametrize("seed", range(5))
def test_multilabel_margin_matches_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = 7, 6
    x = _scores(rng, n, c)
    y = rng.integers(-1, c, (n, c))
    expected, expected_grad = _multilabel_loop(x, y)
    result = compute("multilabel_margin", {"input": x, "target": y}, {"reduction": "none"},
                     grad=True)
    np.testing.assert_allclose(result.loss, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.grads["input"], expected_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_matches_loop(seed: int, p: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = 7, 5
    x = _scores(rng, n, c)
    y = rng.integers(0, c, n)
    weight = rng.uniform(0.5, 2.0, c) if seed % 2 else None
    margin = [1.0, 0.5, 2.0, 1.0, -0.5][seed]
    expected, expected_grad = _multi_margin_loop(x, y, p, margin, weight)
    inputs = {"input": x, "target": y} | ({} if weight is None else {"weight": weight})
    result = compute("multi_margin", inputs, {"reduction": "none", "p": p, "margin": margin},
                     grad=True)
    np.testing.assert_allclose(result.loss, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.grads["input"], expected_grad, rtol=1e-12, atol=1e-12)


def test_hinge_converts_binary_labels_per_call() -> None:
    """Keras converts 0/1 labels to ±1 only when every label of the call is 0 or 1."""
    x = np.array([[0.5, -2.0]])
    binary = compute("hinge", {"input": x, "target": np.array([[1.0, 0.0]])}).loss
    signed = compute("hinge", {"input": x, "target": np.array([[1.0, -1.0]])}).loss
    mixed = compute("hinge", {"input": x.repeat(2, 0), "target": np.array([[1.0, 0.0],
                                                                           [-1.0, 0.0]])},
                    {"reduction": "none"}).loss
    assert binary == signed == pytest.approx(0.25)
    # a -1 among the labels: nothing is converted, a 0 label gives max(0, 1 - 0) = 1
    np.testing.assert_allclose(mixed, [(0.5 + 1.0) / 2, (1.5 + 1.0) / 2])
