"""Cases and torch oracle for service/lossd/losses/segmentation.py.

The losses are beyond torch, so the oracle is their definition written in torch ops after
segmentation_models_pytorch's ``soft_{dice,jaccard,tversky}_score`` (FP and FN summed
literally, not derived from TP), evaluated in float64 and rounded to the result dtype.
Invalid calls have no torch loss to refuse them: they carry ``torch_accepts=True``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import Case, Rand

LOSSES = ("dice", "jaccard", "tversky")
REDUCTIONS = ["none", "mean", "sum"]
DTYPES = ["float64", "float32"]
# (N, C, *spatial): no spatial axes, 1-D, 2-D, an empty batch and an empty spatial axis
SHAPES = [(4, 3), (2, 3, 5), (2, 3, 4, 2), (0, 3, 4), (2, 3, 0)]


def torch_loss(name: str, t: dict[str, Any], options: dict[str, Any]):
    import torch
    import torch.nn.functional as F

    x, y = t["input"], t["target"]
    masks_given = y.ndim == x.ndim
    dtype = torch.promote_types(x.dtype, y.dtype) if (
        masks_given and y.is_floating_point()) else x.dtype
    n, c = x.shape[:2]
    flat = (n, c, math.prod(x.shape[2:]))
    p = x.to(torch.float64)
    activation = options.get("activation", "none")
    if activation == "sigmoid":
        p = torch.sigmoid(p)
    elif activation == "softmax":
        p = torch.softmax(p, dim=1)
    p = p.reshape(flat)
    if masks_given:
        m = y.to(torch.float64).reshape(flat)
    elif c == 0:  # F.one_hot cannot be told 0 classes: every index is then out of range
        if y.numel():
            raise IndexError("class index out of range for 0 classes")
        m = torch.zeros(flat, dtype=torch.float64)
    else:
        m = F.one_hot(y.long(), c).movedim(-1, 1).to(torch.float64).reshape(flat)
    smooth, eps = options.get("smooth", 1e-5), options.get("eps", 1e-7)
    tp = (p * m).sum(2)
    if name == "dice":
        score = (2 * tp + smooth) / ((p + m).sum(2) + smooth).clamp_min(eps)
        per = 1 - score
    elif name == "jaccard":
        union = (p + m).sum(2) - tp
        per = 1 - (tp + smooth) / (union + smooth).clamp_min(eps)
    elif name == "tversky":
        fp = (p * (1 - m)).sum(2)
        fn = ((1 - p) * m).sum(2)
        alpha, beta = options.get("alpha", 0.5), options.get("beta", 0.5)
        score = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(eps)
        per = (1 - score) ** options.get("gamma", 1.0)
    else:
        raise KeyError(name)
    reduction = options.get("reduction", "mean")
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction].to(dtype)


def _inputs(r: Rand, shape: tuple[int, ...], dtype: str, activation: str, target: str
            ) -> dict[str, np.ndarray]:
    """Probabilities (activation none) or logits, and targets of the named form."""
    x = (r.uniform(shape, dtype, 0.05, 0.95) if activation == "none"
         else r.normal(shape, dtype, 2.0))
    index_shape = shape[:1] + shape[2:]
    if target == "index":
        y = r.integers(0, shape[1], index_shape)
    elif target == "soft":
        y = r.uniform(shape, dtype)
    else:  # one-hot masks: "onehot" in input's dtype, or of the named dtype
        labels = r.integers(0, shape[1], index_shape)
        onehot = labels[:, None] == np.arange(shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2))
        y = onehot.astype(dtype if target == "onehot" else target)
    return {"input": x, "target": y}


def cases(seed: int) -> list[Case]:
    r = Rand(seed)
    out: list[Case] = []
    option_sets = {
        "dice": [{}, {"smooth": 0.0}, {"smooth": 1.0, "eps": 1e-3}],
        "jaccard": [{}, {"smooth": 0.0}, {"smooth": 1.0, "eps": 1e-3}],
        "tversky": [{}, {"alpha": 0.3, "beta": 0.7}, {"alpha": 1.0, "beta": 1.0, "smooth": 0.5},
                    {"alpha": 0.7, "beta": 0.3, "gamma": 0.75},
                    {"alpha": 0.2, "beta": 0.8, "gamma": 2.0, "smooth": 0.0}],
    }
    turn = 0
    for loss in LOSSES:
        # every activation x target form x shape; dtype and reduction take turns
        for activation in ("none", "sigmoid", "softmax"):
            for target in ("soft", "index", "onehot"):
                for shape in SHAPES:
                    dtype, reduction = DTYPES[turn % 2], REDUCTIONS[turn % 3]
                    turn += 1
                    out.append(Case(f"{activation}-{target}-{shape}-{dtype}-{reduction}", loss,
                                    _inputs(r, shape, dtype, activation, target),
                                    {"activation": activation, "reduction": reduction}))
        # every option set x reduction x dtype
        for opts in option_sets[loss]:
            tag = "-".join(f"{k}={v}" for k, v in opts.items()) or "default"
            for reduction in REDUCTIONS:
                for dtype in DTYPES:
                    activation = r.choice(["none", "sigmoid", "softmax"])
                    target = r.choice(["soft", "index"])
                    out.append(Case(f"{tag}-{activation}-{target}-{dtype}-{reduction}", loss,
                                    _inputs(r, (2, 3, 4), dtype, activation, target),
                                    {**opts, "activation": activation,
                                     "reduction": reduction}))
        out += _edge_cases(r, loss)
    return out


def _edge_cases(r: Rand, loss: str) -> list[Case]:
    out: list[Case] = []
    # mask dtypes without a gradient, and promotion
    for target in ("uint8", "bool"):
        out.append(Case(f"mask-{target}", loss, _inputs(r, (2, 3, 4), "float64", "softmax",
                                                         target), {"activation": "softmax"}))
    out.append(Case("index-uint8", loss,
                    {"input": r.normal((2, 3, 4), "float64"),
                     "target": r.integers(0, 3, (2, 4), "uint8")}, {"activation": "softmax"}))
    out.append(Case("mixed-f32-input-f64-target", loss,
                    {"input": r.normal((2, 3, 4), "float32"),
                     "target": r.uniform((2, 3, 4))}, {"activation": "sigmoid"}))
    out.append(Case("float16", loss, _inputs(r, (2, 3, 4), "float16", "softmax", "soft"),
                    {"activation": "softmax"}))
    out.append(Case("float16-index", loss, _inputs(r, (2, 3, 4), "float16", "sigmoid", "index"),
                    {"activation": "sigmoid"}))
    # a class absent from the target and predicted absent: smooth/max(smooth, eps) -> loss 0
    # by default; smooth=0 gives 0/eps -> loss 1 (the clamp blocks the denominator's gradient)
    empty = {"input": np.array([[[0.9, 0.8, 0.1], [0.0, 0.0, 0.0], [0.1, 0.2, 0.9]]]),
             "target": np.array([[0, 0, 2]])}
    for opts in ({}, {"smooth": 0.0}, {"smooth": 0.0, "eps": 0.0}):
        tag = "-".join(f"{k}={v}" for k, v in opts.items()) or "default"
        out.append(Case(f"empty-class-{tag}", loss, empty, {**opts, "reduction": "none"},
                        finite_diff=False))
    # perfect prediction: loss 0 everywhere (with smooth 0)
    onehot = np.eye(3)[[0, 2, 1, 1]].T[None]  # (1, 3, 4)
    out.append(Case("perfect", loss, {"input": onehot, "target": onehot.copy()},
                    {"smooth": 0.0, "reduction": "none"}))
    # nan and inf logits: softmax of +inf is nan; sigmoid saturates
    logits = r.normal((1, 3, 4))
    logits[0, 0, 1], logits[0, 2, 3], logits[0, 1, 2] = np.inf, -np.inf, np.nan
    for activation in ("sigmoid", "softmax"):
        out.append(Case(f"nan-inf-{activation}", loss,
                        {"input": logits, "target": r.integers(0, 3, (1, 4))},
                        {"activation": activation, "reduction": "none"}, finite_diff=False))
    # invalid calls: no torch loss exists to refuse them (the oracle is lossd's definition)
    invalid = [
        ("input-1d", {"input": r.uniform((3,)), "target": r.uniform((3,))}, {},
         r"input: expected \(N, C, \*spatial\) \(at least 2-D\); got 1-D shape \(3,\)"),
        ("target-wrong-shape", {"input": r.uniform((2, 3, 4)), "target": r.uniform((2, 3, 5))},
         {}, r"target: must have shape \(2, 3, 4\) to match input \(2, 3, 4\); got \(2, 3, 5\)"),
        ("index-wrong-shape", {"input": r.uniform((2, 3, 4)), "target": r.integers(0, 3, (2, 5))},
         {}, r"target: must have shape \(2, 4\) to match input \(2, 3, 4\) without its class"),
        ("target-ndim", {"input": r.uniform((2, 3, 4, 5)), "target": r.integers(0, 3, (2, 4))},
         {}, (r"target: expected masks of input's shape \(2, 3, 4, 5\) or class indices of "
              r"shape \(2, 4, 5\); got \(2, 4\)")),
        ("index-float", {"input": r.uniform((2, 3, 4)), "target": r.uniform((2, 4))}, {},
         r"target: class indices \(shape \(2, 4\)\) must be int64 or uint8; got float64"),
        ("index-int32", {"input": r.uniform((2, 3, 4)),
                         "target": r.integers(0, 3, (2, 4), "int32")}, {},
         r"target: dtype int32 is not accepted"),
        ("index-too-large", {"input": r.uniform((2, 3, 4)),
                             "target": np.array([[0, 1, 3, 2], [0, 0, 0, 0]])}, {},
         r"target: class index out of range: expected values in \[0, 2\]; got 3"),
        ("index-negative", {"input": r.uniform((2, 3, 4)),
                            "target": np.array([[0, 1, -1, 2], [0, 0, 0, 0]])}, {},
         r"target: class index out of range: expected values in \[0, 2\]; got -1"),
        ("input-int", {"input": r.integers(0, 2, (2, 3, 4)), "target": r.uniform((2, 3, 4))},
         {}, r"input: dtype int64 is not accepted"),
        ("bad-activation", {"input": r.uniform((2, 3, 4)), "target": r.uniform((2, 3, 4))},
         {"activation": "relu"}, r"activation: expected one of 'none', 'sigmoid', 'softmax'"),
        ("smooth-negative", {"input": r.uniform((2, 3, 4)), "target": r.uniform((2, 3, 4))},
         {"smooth": -1.0}, r"smooth: expected a value >= 0; got -1.0"),
        ("bad-reduction", {"input": r.uniform((2, 3, 4)), "target": r.uniform((2, 3, 4))},
         {"reduction": "batchmean"}, r"reduction: expected one of"),
    ]
    if loss == "tversky":
        invalid += [
            ("gamma-zero", {"input": r.uniform((2, 3, 4)), "target": r.uniform((2, 3, 4))},
             {"gamma": 0.0}, r"gamma: expected a value > 0; got 0.0"),
            ("alpha-negative", {"input": r.uniform((2, 3, 4)), "target": r.uniform((2, 3, 4))},
             {"alpha": -0.5}, r"alpha: expected a value >= 0; got -0.5"),
        ]
    for tag, inputs, opts, error in invalid:
        out.append(Case(tag, loss, inputs, opts, error=error, torch_accepts=True))
    return out
