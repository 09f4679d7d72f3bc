"""Segmentation losses against a naive loop, their identities, and finite differences for
class-index targets (which the generic gradient check skips: their target is an integer)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossd.losses import compute

ACTIVATIONS = ("none", "sigmoid", "softmax")


def _naive(loss: str, x: np.ndarray, y: np.ndarray, *, activation: str = "none",
           smooth: float = 1e-5, eps: float = 1e-7, alpha: float = 0.5, beta: float = 0.5,
           gamma: float = 1.0) -> np.ndarray:
    """One (sample, class) at a time, one pixel at a time, in Python floats."""
    n, c = x.shape[:2]
    pixels = list(np.ndindex(x.shape[2:]))
    out = np.zeros((n, c))
    for i in range(n):
        for k in range(c):
            tp = fp = fn = 0.0
            for s in pixels:
                z = float(x[(i, k) + s])
                if activation == "sigmoid":
                    p = 1 / (1 + math.exp(-z))
                elif activation == "softmax":
                    column = [float(x[(i, j) + s]) for j in range(c)]
                    p = math.exp(z - max(column)) / sum(math.exp(v - max(column)) for v in column)
                else:
                    p = z
                t = float(y[(i, k) + s]) if y.ndim == x.ndim else float(y[(i,) + s] == k)
                tp, fp, fn = tp + p * t, fp + p * (1 - t), fn + (1 - p) * t
            if loss == "dice":
                score = (2 * tp + smooth) / max(2 * tp + fp + fn + smooth, eps)
            elif loss == "jaccard":
                score = (tp + smooth) / max(tp + fp + fn + smooth, eps)
            else:
                score = (tp + smooth) / max(tp + alpha * fp + beta * fn + smooth, eps)
            out[i, k] = (1 - score) ** gamma
    return out


def _sample(seed: int, activation: str, index: bool, shape=(2, 3, 4, 3)):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, shape) if activation == "none" else rng.normal(0, 2, shape)
    y = (rng.integers(0, shape[1], shape[:1] + shape[2:]) if index
         else rng.uniform(0, 1, shape))
    return x, y


@pytest.mark.parametrize("loss,options", [
    ("dice", {}), ("dice", {"smooth": 0.0}), ("jaccard", {"smooth": 1.0}),
    ("tversky", {"alpha": 0.3, "beta": 0.7}), ("tversky", {"gamma": 2.0, "smooth": 0.0}),
])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("index", [False, True], ids=["masks", "indices"])
def test_matches_naive_loop(loss, options, activation, index) -> None:
    x, y = _sample(3, activation, index)
    result = compute(loss, {"input": x, "target": y},
                     {**options, "activation": activation, "reduction": "none"})
    np.testing.assert_allclose(result.loss, _naive(loss, x, y, activation=activation,
                                                   **options), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_tversky_half_half_is_dice_and_one_one_is_jaccard(activation) -> None:
    """α = β = ½ is Dice with smooth and eps doubled; α = β = 1 is Jaccard (with gradients)."""
    x, y = _sample(5, activation, index=False)
    arrays = {"input": x, "target": y}
    base = {"activation": activation, "reduction": "none"}
    for tversky_opts, other, other_opts in (
        ({"alpha": 0.5, "beta": 0.5, "smooth": 0.25, "eps": 1e-3}, "dice",
         {"smooth": 0.5, "eps": 2e-3}),
        ({"alpha": 1.0, "beta": 1.0, "smooth": 0.25}, "jaccard", {"smooth": 0.25}),
    ):
        a = compute("tversky", arrays, {**base, **tversky_opts}, grad=True)
        b = compute(other, arrays, {**base, **other_opts}, grad=True)
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-12)
        for name in ("input", "target"):
            np.testing.assert_allclose(a.grads[name], b.grads[name], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("loss", ["dice", "jaccard", "tversky"])
def test_empty_class_scores_perfect_with_default_smoothing(loss) -> None:
    x = np.array([[[0.9, 0.1], [0.0, 0.0]]])  # class 1: never predicted, never present
    y = np.array([[0, 0]])
    default = compute(loss, {"input": x, "target": y}, {"reduction": "none"}).loss
    unsmoothed = compute(loss, {"input": x, "target": y},
                         {"reduction": "none", "smooth": 0.0}).loss
    assert default[0, 1] == 0.0 and unsmoothed[0, 1] == 1.0


@pytest.mark.parametrize("loss,options", [
    ("dice", {}), ("jaccard", {"smooth": 0.5}), ("tversky", {"alpha": 0.2, "beta": 0.9,
                                                           "gamma": 1.5}),
])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_index_target_gradient_central_differences(loss, options, activation, reduction
                                                   ) -> None:
    x, y = _sample(11, activation, index=True, shape=(2, 3, 4))
    opts = {**options, "activation": activation, "reduction": reduction}
    grad = compute(loss, {"input": x, "target": y}, opts, grad=True).grads["input"]
    step = 1e-6
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += step
        minus[i] -= step
        numeric[i] = (compute(loss, {"input": plus, "target": y}, opts).loss.sum()
                      - compute(loss, {"input": minus, "target": y}, opts).loss.sum()) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
