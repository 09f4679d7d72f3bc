"""Box losses against per-pair loops written from the papers' formulas (independent of torch),
and CIoU's gradient against finite differences with α frozen, as autograd treats it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossd.losses import compute
from lossd.losses.boxes import _edge_grads

EPS = 1e-7


def _pair_terms(a: np.ndarray, b: np.ndarray, eps: float) -> dict[str, float]:
    """Everything the losses need for one pair of xyxy boxes, by hand."""
    x1, y1, x2, y2 = (float(v) for v in a)
    x1g, y1g, x2g, y2g = (float(v) for v in b)
    iw = min(x2, x2g) - max(x1, x1g)
    ih = min(y2, y2g) - max(y1, y1g)
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    cw = max(x2, x2g) - min(x1, x1g)
    ch = max(y2, y2g) - min(y1, y1g)
    centre = ((x1 + x2) / 2 - (x1g + x2g) / 2) ** 2 + ((y1 + y2) / 2 - (y1g + y2g) / 2) ** 2
    return {"iou": inter / (union + eps), "union": union, "area_c": cw * ch,
            "ratio": centre / (cw * cw + ch * ch + eps),
            "v": 4 / math.pi ** 2 * (math.atan((x2g - x1g) / (y2g - y1g))
                                      - math.atan((x2 - x1) / (y2 - y1))) ** 2}


def _naive(name: str, a: np.ndarray, b: np.ndarray, eps: float, alpha: float | None = None
           ) -> float:
    """One pair's loss; for CIoU ``alpha`` (if given) replaces the computed α."""
    t = _pair_terms(a, b, eps)
    if name == "box_iou":
        return 1 - t["iou"]
    if name == "generalized_box_iou":
        return 1 - t["iou"] + (t["area_c"] - t["union"]) / (t["area_c"] + eps)
    if name == "distance_box_iou":
        return 1 - t["iou"] + t["ratio"]
    inner = _pair_terms(a, b, EPS)  # CIoU's DIoU and α's iou always use eps=1e-7
    if alpha is None:
        alpha = inner["v"] / (1 - inner["iou"] + inner["v"] + eps)
    return 1 - inner["iou"] + inner["ratio"] + alpha * inner["v"]


def _boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    corner = rng.uniform(0, 10, (n, 2))
    b1 = np.concatenate([corner, corner + rng.uniform(0.5, 5, (n, 2))], axis=1)
    moved = b1 + rng.normal(0, 1.5, b1.shape)
    b2 = np.concatenate([np.minimum(moved[:, :2], moved[:, 2:]),
                         np.maximum(moved[:, :2], moved[:, 2:])], axis=1)
    b2[::4] += 15.0  # some pairs far apart
    return b1, b2


@pytest.mark.parametrize("eps", [EPS, 1e-2])
@pytest.mark.parametrize("name", ["box_iou", "generalized_box_iou", "distance_box_iou",
                                  "complete_box_iou"])
def test_matches_per_pair_loop(name: str, eps: float) -> None:
    b1, b2 = _boxes(np.random.default_rng(3), 40)
    got = compute(name, {"boxes1": b1, "boxes2": b2}, {"eps": eps}).loss
    expected = np.array([_naive(name, a, b, eps) for a, b in zip(b1, b2)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_ciou_gradient_treats_alpha_as_constant() -> None:
    b1, b2 = _boxes(np.random.default_rng(5), 6)
    result = compute("complete_box_iou", {"boxes1": b1, "boxes2": b2}, {"reduction": "sum"},
                     grad=True)
    alphas = []
    for a, b in zip(b1, b2):
        inner = _pair_terms(a, b, EPS)
        alphas.append(inner["v"] / (1 - inner["iou"] + inner["v"] + EPS))

    def total(p1: np.ndarray, p2: np.ndarray) -> float:
        return sum(_naive("complete_box_iou", a, b, EPS, alpha)
                   for a, b, alpha in zip(p1, p2, alphas))

    step = 1e-6
    for name, base in (("boxes1", b1), ("boxes2", b2)):
        numeric = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[index] += step
            minus[index] -= step
            args = ((plus, b2), (minus, b2)) if name == "boxes1" else ((b1, plus), (b1, minus))
            numeric[index] = (total(*args[0]) - total(*args[1])) / (2 * step)
        np.testing.assert_allclose(result.grads[name], numeric, rtol=1e-5, atol=1e-8,
                                   err_msg=name)


def test_edge_fast_path_equals_torch_rule() -> None:
    """The where-free path (no ties, no nan) gives what the tie/nan rule gives."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    g_max, g_min = rng.normal(size=50), rng.normal(size=50)
    fast = _edge_grads(a, b, g_max, g_min)
    a_tied = np.append(a, 0.0)
    b_tied = np.append(b, 0.0)
    rule = _edge_grads(a_tied, b_tied, np.append(g_max, 1.0), np.append(g_min, 1.0))
    for f, r in zip(fast, rule):
        np.testing.assert_array_equal(f, r[:-1])
        assert r[-1] == 1.0  # a tie: half of each


def test_docstring_example() -> None:
    loss = compute("box_iou", {"boxes1": np.array([0.0, 0, 2, 2]),
                               "boxes2": np.array([1.0, 1, 3, 3])}).loss
    assert loss.shape == () and loss == pytest.approx(1 - 1 / (7 + EPS), rel=1e-15)
