"""Cases and torch oracle for service/lossd/losses/classification.py.

The torch losses are called as they are; the two losses beyond torch (poly1_cross_entropy,
softmax_focal) are written here from their published formulas in torch ops, so autograd gives
their reference gradients, and refuse what lossd refuses with explicit checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import Case, Rand

REDUCTIONS = ["none", "mean", "sum"]
DTYPES = ["float64", "float32"]
C = 4
# (input shape, index target shape): unbatched, batched, K = 1 and K = 2, empty batch
CLASS_SHAPES = [((C,), ()), ((5, C), (5,)), ((3, C, 2), (3, 2)), ((2, C, 2, 3), (2, 2, 3)),
                ((0, C), (0,))]
ELEMENT_SHAPES = [(), (5,), (4, 3), (2, 3, 2), (0, 3)]


def tag(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def options_tag(options: dict[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in options.items()) or "default"


# --- oracle ------------------------------------------------------------------------------------


def _reduce(loss, reduction: str, count=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction != "mean":
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return loss.sum() / (loss.numel() if count is None else count)


def _class_labels(x, y, ignore_index: int):
    """(labels safe to gather with (N, 1, *d), valid mask) after torch-style checks."""
    import torch

    if y.dtype not in (torch.int64, torch.uint8):
        raise TypeError(f"expected class indices, got {y.dtype}")
    if y.shape != x.shape[:1] + x.shape[2:]:
        raise ValueError(f"target shape {tuple(y.shape)} does not match {tuple(x.shape)}")
    valid = y != ignore_index
    labels = torch.where(valid, y.long(), 0)
    if ((labels < 0) | (labels >= x.shape[1]))[valid].any():
        raise IndexError("target out of bounds")
    return labels.unsqueeze(1), valid


def _gather(log_p, labels):
    """``log_p[n, labels[n], ...]``; over zero classes (every target ignored) a zero that
    keeps the graph (gather has no class 0 to read)."""
    if log_p.shape[1] == 0:
        return log_p.sum(1)
    return log_p.gather(1, labels).squeeze(1)


def _poly1(x, y, epsilon: float, ignore_index: int, reduction: str):
    """Optax's poly_loss_cross_entropy with the class axis at 1: CE + ε·Σ y·(1 - softmax)."""
    import torch
    import torch.nn.functional as F

    unbatched = x.ndim == 1
    if unbatched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    log_p = F.log_softmax(x, 1)
    if y.shape == x.shape:
        if not y.is_floating_point() or ignore_index >= 0:
            raise ValueError("probabilities must be float, without ignore_index")
        loss = -(y * log_p).sum(1) + epsilon * (y * (1 - F.softmax(x, 1))).sum(1)
        count = None
    else:
        labels, valid = _class_labels(x, y, ignore_index)
        picked = _gather(log_p, labels)
        loss = torch.where(valid, -picked + epsilon * (1 - picked.exp()), 0.0)
        count = valid.sum()
    return _reduce(loss.squeeze(0) if unbatched else loss, reduction, count)


def _softmax_focal(x, y, alpha, gamma: float, ignore_index: int, reduction: str):
    """Lin et al. 2017 with softmax: -α_y·(1 - p_y)^γ·log p_y, mean over non-ignored."""
    import torch
    import torch.nn.functional as F

    unbatched = x.ndim == 1
    if unbatched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if gamma < 0:
        raise ValueError("gamma must be >= 0")
    labels, valid = _class_labels(x, y, ignore_index)
    # an ignored target's log p is replaced before the focal term, so that its nan gradient
    # (γ < 1 at p = 1, or inf logits) stays out of the where below: ignored adds nothing
    picked = torch.where(valid, _gather(F.log_softmax(x, 1), labels), 0.0)
    loss = -(-torch.expm1(picked)).pow(gamma) * picked
    if alpha is not None:
        if alpha.shape != (x.shape[1],):
            raise ValueError("alpha must have shape (C,)")
        loss = loss * (alpha[labels.squeeze(1)] if alpha.numel() else alpha.sum())
    loss = torch.where(valid, loss, 0.0)
    return _reduce(loss.squeeze(0) if unbatched else loss, reduction, valid.sum())


def torch_loss(name: str, t: dict[str, Any], options: dict[str, Any]):
    """torch.nn.functional's loss with the case's options passed through as keywords."""
    import torch.nn.functional as F

    x, y = t["input"], t["target"]
    weights = {k: v for k, v in t.items() if k not in ("input", "target")}
    torch_fn = {"cross_entropy": F.cross_entropy, "nll": F.nll_loss, "kl_div": F.kl_div,
                "binary_cross_entropy": F.binary_cross_entropy,
                "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
                "multilabel_soft_margin": F.multilabel_soft_margin_loss}.get(name)
    if torch_fn is not None:
        return torch_fn(x, y, **weights, **options)
    reduction = options.pop("reduction", "mean")
    ignore_index = options.pop("ignore_index", -100)
    if name == "poly1_cross_entropy":
        return _poly1(x, y, options.pop("epsilon", 2.0), ignore_index, reduction, **options)
    if name == "softmax_focal":
        return _softmax_focal(x, y, weights.get("alpha"), options.pop("gamma", 2.0),
                              ignore_index, reduction, **options)
    raise KeyError(name)


# --- cases -------------------------------------------------------------------------------------


def _probabilities(r: Rand, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Rows of class probabilities along the class axis (1, or 0 for an unbatched sample)."""
    axis = 1 if len(shape) > 1 else 0
    raw = r.uniform(shape, "float64", 0.05, 1.0)
    return (raw / raw.sum(axis=axis, keepdims=True)).astype(dtype)


def _softmax_class_cases(r: Rand) -> list[Case]:
    """cross_entropy, poly1_cross_entropy, softmax_focal and nll over shapes/dtypes/options."""
    out: list[Case] = []
    grids: dict[str, list[dict[str, Any]]] = {
        "cross_entropy": [{}, {"weight": True}, {"ignore": True},
                          {"label_smoothing": 0.2}, {"label_smoothing": 0.3, "weight": True,
                                                     "ignore": True}],
        "nll": [{}, {"weight": True}, {"ignore": True}],
        "poly1_cross_entropy": [{}, {"epsilon": -1.0, "ignore": True}, {"epsilon": 0.5}],
        "softmax_focal": [{}, {"gamma": 0.0}, {"gamma": 0.5, "alpha": True, "ignore": True},
                          {"gamma": 3.5, "alpha": True}],
    }
    for loss, grid in grids.items():
        for spec in grid:
            for shape, target_shape in CLASS_SHAPES:
                for dtype in DTYPES:
                    for reduction in REDUCTIONS:
                        inputs = {"input": r.normal(shape, dtype, 2.0),
                                  "target": r.integers(0, C, target_shape)}
                        if loss == "nll":
                            inputs["input"] = np.log(_probabilities(r, shape, dtype))
                        if spec.get("ignore") and inputs["target"].size > 1:
                            inputs["target"].flat[0] = -100
                        if spec.get("weight"):
                            inputs["weight"] = r.uniform((C,), dtype, 0.2, 2.0)
                        if spec.get("alpha"):
                            inputs["alpha"] = r.uniform((C,), dtype, 0.1, 1.0)
                        options = {k: v for k, v in spec.items()
                                   if k not in ("weight", "ignore", "alpha")}
                        out.append(Case(f"{options_tag(spec)}-{tag(shape)}-{dtype}-{reduction}",
                                        loss, inputs, {**options, "reduction": reduction}))
    # probability targets (same shape as input): cross_entropy and poly1
    for loss, grid in (("cross_entropy", [{}, {"weight": True}, {"label_smoothing": 0.25},
                                          {"label_smoothing": 0.1, "weight": True}]),
                       ("poly1_cross_entropy", [{}, {"epsilon": 1.0}])):
        for spec in grid:
            for shape, _ in CLASS_SHAPES:
                for dtype in DTYPES:
                    for reduction in REDUCTIONS:
                        inputs = {"input": r.normal(shape, dtype, 2.0),
                                  "target": _probabilities(r, shape, dtype)}
                        if spec.get("weight"):
                            inputs["weight"] = r.uniform((C,), dtype, 0.2, 2.0)
                        options = {k: v for k, v in spec.items() if k != "weight"}
                        out.append(Case(f"probs-{options_tag(spec)}-{tag(shape)}-{dtype}-"
                                        f"{reduction}", loss, inputs,
                                        {**options, "reduction": reduction}))
    return out


def _cross_entropy_edges(r: Rand) -> list[Case]:
    out: list[Case] = []
    logits = r.normal((4, 3))
    for reduction in REDUCTIONS:
        for smoothing in (0.0, 0.2):
            # every target ignored: mean is 0/0 = nan (also weighted, also smoothed); sum is 0
            out.append(Case(f"all-ignored-ls={smoothing}-{reduction}", "cross_entropy",
                            {"input": logits, "target": np.full((4,), -100),
                             "weight": r.uniform((3,), "float64", 0.5, 2.0)},
                            {"reduction": reduction, "label_smoothing": smoothing},
                            finite_diff=reduction != "mean"))
    out.append(Case("ignore-in-range", "cross_entropy",
                    {"input": r.normal((6, 3)), "target": np.array([0, 1, 2, 1, 1, 0])},
                    {"ignore_index": 1}))
    out.append(Case("ignore-other-negative", "cross_entropy",
                    {"input": r.normal((4, 3)), "target": np.array([0, -1, 2, -1])},
                    {"ignore_index": -1, "label_smoothing": 0.1}))
    out.append(Case("smoothing-negative-is-zero", "cross_entropy",
                    {"input": r.normal((4, 3)), "target": r.integers(0, 3, (4,))},
                    {"label_smoothing": -0.3}))
    out.append(Case("smoothing-one", "cross_entropy",
                    {"input": r.normal((4, 3)), "target": r.integers(0, 3, (4,)),
                     "weight": r.uniform((3,), "float64", 0.5, 2.0)},
                    {"label_smoothing": 1.0, "reduction": "mean"}))
    out.append(Case("uint8-target", "cross_entropy",
                    {"input": r.normal((5, 3)), "target": r.integers(0, 3, (5,), "uint8")}))
    out.append(Case("negative-weights", "cross_entropy",
                    {"input": r.normal((5, 3)), "target": r.integers(0, 3, (5,)),
                     "weight": np.array([1.0, -0.5, 2.0])}, {"label_smoothing": 0.1}))
    for smoothing in (0.0, 0.1):  # Σ w_y = 2 - 4·0.5 = 0 exactly: torch's inf and nan
        out.append(Case(f"zero-weight-sum-smoothing-{smoothing}", "cross_entropy",
                        {"input": np.linspace(-2.0, 3.0, 18).reshape(6, 3),
                         "target": np.array([2, 1, 1, 1, 1, -100]),
                         "weight": np.array([1.0, -0.5, 2.0])}, {"label_smoothing": smoothing},
                        finite_diff=False))
    out.append(Case("probs-unnormalised-nan", "cross_entropy",
                    {"input": r.normal((3, 3)),
                     "target": np.array([[2.0, 0.5, 0.0], [np.nan, 0.2, 0.1], [0.0, 0.0, 0.0]])},
                    {"reduction": "none"}, finite_diff=False))
    out.append(Case("probs-mixed-f32-f64", "cross_entropy",
                    {"input": r.normal((3, 4), "float32"),
                     "target": _probabilities(r, (3, 4), "float64"),
                     "weight": r.uniform((4,), "float64", 0.5, 2.0)}))
    out.append(Case("probs-empty-classes", "cross_entropy",
                    {"input": r.normal((2, 0)), "target": r.normal((2, 0))},
                    {"reduction": "none"}))
    out.append(Case("empty-spatial", "cross_entropy",
                    {"input": r.normal((2, 3, 0)), "target": r.integers(0, 3, (2, 0))}))
    for dtype_target in ("int64", "float16"):
        shape = (6, 5)
        target = (r.integers(0, 5, (6,)) if dtype_target == "int64"
                  else _probabilities(r, shape, "float16"))
        out.append(Case(f"float16-{dtype_target}", "cross_entropy",
                        {"input": r.normal(shape, "float16"), "target": target}))
    out.append(Case("float16-nll", "nll", {"input": np.log(_probabilities(r, (6, 5), "float16")),
                                           "target": r.integers(0, 5, (6,))}))
    # infinite logits: +inf -> nan; -inf at the target -> inf; -inf elsewhere -> finite, but
    # inf once label smoothing puts mass on that class
    inf_logits = np.array([[np.inf, 0.0, 1.0], [-np.inf, 0.5, 1.0], [0.2, -np.inf, 1.0],
                           [-np.inf, -np.inf, -np.inf]])
    for smoothing in (0.0, 0.1):
        for loss in ("cross_entropy", "poly1_cross_entropy", "softmax_focal"):
            options: dict[str, Any] = {"reduction": "none"}
            if loss == "cross_entropy":
                options["label_smoothing"] = smoothing
            elif smoothing:
                continue
            out.append(Case(f"inf-logits-ls={smoothing}", loss,
                            {"input": inf_logits, "target": np.array([0, 0, 0, 2])}, options,
                            finite_diff=False))
    out.append(Case("nan-logit-ignored", "cross_entropy",
                    {"input": np.array([[np.nan, 0.0, 1.0], [0.3, 0.5, 1.0]]),
                     "target": np.array([-100, 1])}, {"reduction": "none"}, finite_diff=False))
    # nll: weights summing to zero -> nan mean; input not checked to be log-probabilities
    for reduction in ("mean", "sum"):
        out.append(Case(f"zero-weights-{reduction}", "nll",
                        {"input": r.normal((4, 3)), "target": r.integers(0, 3, (4,)),
                         "weight": np.zeros(3)}, {"reduction": reduction},
                        finite_diff=reduction != "mean"))  # a nan mean has no finite differences
    out.append(Case("negative-weights", "nll",
                    {"input": r.normal((4, 3)), "target": np.array([0, 1, 2, 1]),
                     "weight": np.array([1.0, -2.0, 0.5])}))
    out.append(Case("uint8-target-unbatched", "nll",
                    {"input": r.normal((3,)), "target": np.array(2, "uint8")}))
    for loss in ("nll", "cross_entropy"):
        out.append(Case("uint8-target-4d", loss,
                        {"input": r.normal((2, 3, 2, 2)),
                         "target": r.integers(0, 3, (2, 2, 2), "uint8")},
                        error=r"target: class indices for a K-dimensional input must be int64"))
    # focal: a saturated sample (p_y = 1 exactly) with γ < 1 gives torch's 0·inf = nan gradient
    out.append(Case("saturated-gamma-0.5", "softmax_focal",
                    {"input": np.array([[0.0, -800.0, -800.0], [0.3, 0.1, -0.2]]),
                     "target": np.array([0, 1])}, {"gamma": 0.5, "reduction": "sum"},
                    finite_diff=False))
    out.append(Case("saturated-gamma-2", "softmax_focal",
                    {"input": np.array([[0.0, -800.0, -800.0], [0.3, 0.1, -0.2]]),
                     "target": np.array([0, 1])}, {"reduction": "sum"}, finite_diff=False))
    out.append(Case("all-ignored", "softmax_focal",
                    {"input": r.normal((3, 4)), "target": np.full((3,), 7)},
                    {"ignore_index": 7}, finite_diff=False))
    out.append(Case("float16", "softmax_focal", {"input": r.normal((6, 5), "float16"),
                                                 "target": r.integers(0, 5, (6,))}))
    out.append(Case("float16", "poly1_cross_entropy", {"input": r.normal((6, 5), "float16"),
                                                       "target": r.integers(0, 5, (6,))}))
    return out


def _class_errors(r: Rand) -> list[Case]:
    out: list[Case] = []
    x = r.normal((4, 3))
    good = r.integers(0, 3, (4,))
    for loss in ("cross_entropy", "nll", "poly1_cross_entropy", "softmax_focal"):
        out.append(Case("int32-target", loss, {"input": x, "target": good.astype("int32")},
                        error=r"target: (dtype int32 is not accepted|class indices must be)"))
        out.append(Case("target-too-large", loss, {"input": x, "target": np.array([0, 3, 1, 2])},
                        error=r"target: class index out of range: expected values in \[0, 2\] "
                              r"or -100 \(ignore_index\); got 3"))
        out.append(Case("target-negative", loss, {"input": x, "target": np.array([0, -1, 1, 2])},
                        error=r"target: class index out of range.*got -1"))
        out.append(Case("batch-mismatch", loss, {"input": x, "target": good[:3]},
                        error=r"target: must have shape \(4,\) to match input \(4, 3\)"))
        out.append(Case("spatial-mismatch", loss, {"input": r.normal((2, 3, 4)),
                                                   "target": r.integers(0, 3, (2, 5))},
                        error=r"target: must have shape \(2, 4\) to match input \(2, 3, 4\)"))
        out.append(Case("scalar-input", loss, {"input": np.array(1.0),
                                               "target": np.array(0)},
                        error=r"input: expected \(C\), \(N, C\) or \(N, C, d1, \.\.\., dK\) "
                              r"\(at least 1-D\); got 0-D"))
        # torch accepts a (1,) target for a (C,) input; lossd wants the documented () shape
        out.append(Case("unbatched-target-1d", loss, {"input": r.normal((3,)),
                                                      "target": np.array([1])},
                        error=r"target: must have shape \(\) to match input \(3,\)",
                        torch_accepts=True))
        out.append(Case("bad-reduction", loss, {"input": x, "target": good},
                        {"reduction": "batchmean"}, error="reduction: expected one of"))
        out.append(Case("int-input", loss, {"input": r.integers(0, 3, (4, 3)), "target": good},
                        error="input: dtype int64 is not accepted"))
    for loss in ("cross_entropy", "nll"):
        out.append(Case("weight-wrong-size", loss, {"input": x, "target": good,
                                                    "weight": np.ones(4)},
                        error=r"weight: must have shape \(3,\) to match the 3 classes of input; "
                              r"got \(4,\)"))
        out.append(Case("weight-2d", loss, {"input": x, "target": good,
                                            "weight": np.ones((1, 3))},
                        error=r"weight: must have shape \(3,\)"))
        out.append(Case("weight-dtype", loss, {"input": x.astype("float32"), "target": good,
                                               "weight": np.ones(3)},
                        error=r"weight: dtype must equal input's \(float32\); got float64"))
        out.append(Case("empty-classes", loss, {"input": r.normal((2, 0)),
                                                "target": np.zeros(2, "int64")},
                        error=r"target: class index out of range: expected values in \[0, -1\]"))
    for loss in ("cross_entropy", "poly1_cross_entropy"):
        out.append(Case("float-index-target", loss, {"input": x, "target": good.astype(float)},
                        error=r"target: class indices must be int64 or uint8; got float64"))
        out.append(Case("int-probabilities", loss, {"input": x, "target": np.ones((4, 3), "int64")},
                        error=r"target: class probabilities \(input's shape \(4, 3\)\) must be "
                              r"floating point; got int64"))
        out.append(Case("ignore-index-with-probabilities", loss,
                        {"input": x, "target": _probabilities(r, (4, 3), "float64")},
                        {"ignore_index": 0},
                        error=r"ignore_index: is not supported for class probabilities"))
    out.append(Case("smoothing-above-one", "cross_entropy", {"input": x, "target": good},
                    {"label_smoothing": 1.5}, error=r"label_smoothing: expected a value <= 1; "
                                                    r"got 1.5"))
    out.append(Case("probability-target", "nll", {"input": x, "target": r.uniform((4, 3))},
                    error=r"target: dtype float64 is not accepted; expected one of int64, uint8"))
    out.append(Case("label-smoothing-option", "nll", {"input": x, "target": good},
                    {"label_smoothing": 0.1}, error=r"label_smoothing: unknown option"))
    out.append(Case("gamma-negative", "softmax_focal", {"input": x, "target": good},
                    {"gamma": -1.0}, error=r"gamma: expected a value >= 0; got -1.0"))
    out.append(Case("alpha-wrong-size", "softmax_focal", {"input": x, "target": good,
                                                          "alpha": np.ones(5)},
                    error=r"alpha: must have shape \(3,\) to match the 3 classes of input"))
    out.append(Case("probability-target", "softmax_focal",
                    {"input": x, "target": _probabilities(r, (4, 3), "float64")},
                    error=r"target: dtype float64 is not accepted"))
    return out


def _kl_div_cases(r: Rand) -> list[Case]:
    out: list[Case] = []
    for log_target in (False, True):
        for shape in ELEMENT_SHAPES:
            for dtype in DTYPES:
                for reduction in ("none", "mean", "sum", "batchmean"):
                    if reduction == "batchmean" and shape and not shape[0]:
                        continue  # needs _reduce.cotangent to allow an empty batch (1/0)
                    target = (r.normal(shape, dtype, 0.5) if log_target
                              else r.uniform(shape, dtype, 0.05, 1.0))
                    out.append(Case(f"log_target={log_target}-{tag(shape)}-{dtype}-{reduction}",
                                    "kl_div", {"input": r.normal(shape, dtype), "target": target},
                                    {"reduction": reduction, "log_target": log_target}))
    # xlogy: a zero target gives 0 (its gradient nan), a negative one nan
    out.append(Case("zero-and-negative-target", "kl_div",
                    {"input": r.normal((4,)), "target": np.array([0.0, -0.5, 0.3, 0.0])},
                    {"reduction": "none"}, finite_diff=False))
    out.append(Case("zero-target-inf-input", "kl_div",
                    {"input": np.array([-np.inf, 0.5]), "target": np.array([0.0, 0.2])},
                    {"reduction": "sum"}, finite_diff=False))
    for reduction in ("batchmean", "mean"):
        out.append(Case(f"broadcast-target-{reduction}", "kl_div",
                        {"input": r.normal((4, 3)), "target": r.uniform((3,), "float64", 0.1, 1)},
                        {"reduction": reduction}))
    out.append(Case("mixed-f32-f64", "kl_div", {"input": r.normal((5,), "float32"),
                                                "target": r.uniform((5,), "float64", 0.1, 1)},
                    {"reduction": "sum"}))
    out.append(Case("float16", "kl_div", {"input": r.normal((6,), "float16"),
                                          "target": r.uniform((6,), "float16", 0.1, 1)},
                    {"reduction": "sum"}))
    out.append(Case("int-target", "kl_div", {"input": r.normal((3,)),
                                             "target": np.array([0, 1, 0])},
                    error="target: dtype int64 is not accepted"))
    # torch broadcasts input up to a larger target (and batchmean then divides by input's
    # size(0), not the result's); lossd keeps the result in input's shape
    out.append(Case("target-larger-than-input", "kl_div",
                    {"input": r.normal((3,)), "target": r.uniform((2, 3))},
                    error=r"target: must broadcast to input's shape \(3,\); got \(2, 3\)",
                    torch_accepts=True))
    out.append(Case("no-broadcast", "kl_div", {"input": r.normal((4, 3)),
                                               "target": r.uniform((4, 2))},
                    error=r"target: shape \(4, 2\) cannot be broadcast with input \(4, 3\)"))
    out.append(Case("bad-reduction", "kl_div", {"input": r.normal((3,)), "target": r.uniform((3,))},
                    {"reduction": "average"}, error="reduction: expected one of"))
    return out


def _binary_cases(r: Rand) -> list[Case]:
    out: list[Case] = []
    bce, bcel = "binary_cross_entropy", "binary_cross_entropy_with_logits"
    for shape in ELEMENT_SHAPES:
        for dtype in DTYPES:
            for reduction in REDUCTIONS:
                suffix = f"{tag(shape)}-{dtype}-{reduction}"
                target = r.uniform(shape, dtype)
                out.append(Case(suffix, bce, {"input": r.uniform(shape, dtype, 0.02, 0.98),
                                              "target": target}, {"reduction": reduction}))
                out.append(Case(suffix, bcel, {"input": r.normal(shape, dtype, 2.0),
                                               "target": target}, {"reduction": reduction}))
    for dtype in DTYPES:
        for reduction in REDUCTIONS:
            suffix = f"{dtype}-{reduction}"
            x01, x = r.uniform((4, 3), dtype, 0.02, 0.98), r.normal((4, 3), dtype, 2.0)
            y = r.uniform((4, 3), dtype)
            w_full, w_class = r.uniform((4, 3), dtype, 0.1, 2), r.uniform((3,), dtype, 0.1, 2)
            out.append(Case(f"weight-full-{suffix}", bce,
                            {"input": x01, "target": y, "weight": w_full},
                            {"reduction": reduction}))
            out.append(Case(f"weight-class-{suffix}", bce,
                            {"input": x01, "target": y, "weight": w_class},
                            {"reduction": reduction}))
            out.append(Case(f"weight-{suffix}", bcel, {"input": x, "target": y, "weight": w_full},
                            {"reduction": reduction}))
            out.append(Case(f"pos_weight-{suffix}", bcel,
                            {"input": x, "target": y, "pos_weight": w_class},
                            {"reduction": reduction}))
            out.append(Case(f"both-weights-{suffix}", bcel,
                            {"input": x, "target": y, "weight": w_class[None, :],
                             "pos_weight": w_full}, {"reduction": reduction}))
    out.append(Case("pos_weight-channels", bcel,
                    {"input": r.normal((2, 3, 2, 2)), "target": r.uniform((2, 3, 2, 2)),
                     "pos_weight": r.uniform((3, 1, 1), "float64", 0.5, 3)}))
    out.append(Case("scalar-weight", bce, {"input": r.uniform((5,), "float64", 0.1, 0.9),
                                           "target": r.uniform((5,)), "weight": np.array(2.5)}))
    out.append(Case("weight-f64-input-f32", bce,
                    {"input": r.uniform((5,), "float32", 0.1, 0.9),
                     "target": r.uniform((5,), "float32"), "weight": r.uniform((5,))}))
    out.append(Case("weights-f64-input-f32", bcel,
                    {"input": r.normal((2, 3), "float32"), "target": r.uniform((2, 3), "float32"),
                     "weight": r.uniform((3,)), "pos_weight": r.uniform((3,), "float64", 0.5, 2)}))
    out.append(Case("target-f64-input-f32", bcel, {"input": r.normal((2, 3), "float32"),
                                                   "target": r.uniform((2, 3), "float64")}))
    for loss in (bce, bcel):
        out.append(Case("float16", loss, {"input": r.uniform((8,), "float16", 0.05, 0.95),
                                          "target": r.uniform((8,), "float16")}))
    # the -100 clamp: x = 0 with y = 1 gives 100; gradients ±1e12 (input) and ±inf (target)
    out.append(Case("clamp", bce, {"input": np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-50]),
                                   "target": np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.3])},
                    {"reduction": "none"}, finite_diff=False))
    out.append(Case("clamp-f32", bce, {"input": np.array([0.0, 1.0, 0.0, 1.0], "float32"),
                                       "target": np.array([0.0, 1.0, 0.3, 0.3], "float32")},
                    {"reduction": "sum"}, finite_diff=False))
    # no clamp with logits; targets outside [0, 1] are fine; torch's nan for ±inf logits
    out.append(Case("large-logits", bcel, {"input": np.array([-200.0, 200.0, 0.0, 3.0]),
                                           "target": np.array([1.0, 0.0, 2.0, -0.5])},
                    {"reduction": "none"}))
    for with_pos in (False, True):
        inputs = {"input": np.array([np.inf, -np.inf, np.inf, -np.inf, np.nan, 1.0]),
                  "target": np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.5])}
        if with_pos:
            inputs["pos_weight"] = np.array([2.0, 2.0, 0.0, 0.0, 1.0, 0.5])
        out.append(Case(f"inf-logits-pos_weight={with_pos}", bcel, inputs, {"reduction": "none"},
                        finite_diff=False))
    # invalid calls
    for loss in (bce, bcel):
        out.append(Case("target-shape", loss, {"input": r.uniform((2, 3)),
                                               "target": r.uniform((3,))},
                        error=r"target: must have shape \(2, 3\) to match input \(2, 3\); "
                              r"got \(3,\)"))
        out.append(Case("int-target", loss, {"input": r.uniform((3,)),
                                             "target": np.array([0, 1, 1])},
                        error="target: dtype int64 is not accepted"))
        out.append(Case("weight-not-broadcastable", loss,
                        {"input": r.uniform((2, 3)), "target": r.uniform((2, 3)),
                         "weight": r.uniform((4,))},
                        error=r"weight: shape \(4,\) cannot be broadcast with input \(2, 3\)"))
        out.append(Case("weight-expands-input", loss,
                        {"input": r.uniform((2, 3)), "target": r.uniform((2, 3)),
                         "weight": r.uniform((2, 1, 3))},
                        error=r"weight: must broadcast to input's shape \(2, 3\); got \(2, 1, 3\)"))
        out.append(Case("bad-reduction", loss, {"input": r.uniform((3,)),
                                                "target": r.uniform((3,))},
                        {"reduction": "batchmean"}, error="reduction: expected one of"))
    for what, x, y in (("input-above-one", [0.2, 1.5], [0.0, 1.0]),
                       ("input-negative", [-0.1, 0.5], [0.0, 1.0]),
                       ("input-nan", [np.nan, 0.5], [0.0, 1.0]),
                       ("target-above-one", [0.2, 0.5], [0.0, 1.5]),
                       ("target-nan", [0.2, 0.5], [np.nan, 1.0])):
        name = what.split("-")[0]
        out.append(Case(what, bce, {"input": np.array(x), "target": np.array(y)},
                        error=rf"{name}: expected every value in \[0, 1\]; got "))
    out.append(Case("dtype-mismatch", bce, {"input": r.uniform((3,), "float32"),
                                            "target": r.uniform((3,), "float64")},
                    error=r"target: dtype must equal input's \(float32\); got float64"))
    out.append(Case("pos_weight-wrong-size", bcel, {"input": r.normal((2, 3)),
                                                    "target": r.uniform((2, 3)),
                                                    "pos_weight": r.uniform((4,))},
                    error=r"pos_weight: shape \(4,\) cannot be broadcast"))
    # torch computes in place in the target's dtype: f64 input + f32 target gives a f32 loss;
    # lossd refuses the narrowing rather than silently dropping precision
    out.append(Case("target-narrower-than-input", bcel,
                    {"input": r.normal((3,)), "target": r.uniform((3,), "float32")},
                    error=r"target: dtype must be at least as wide as input's \(float64\); "
                          r"got float32", torch_accepts=True))
    return out


def _multilabel_cases(r: Rand) -> list[Case]:
    out: list[Case] = []
    loss = "multilabel_soft_margin"
    for shape in [(C,), (5, C), (3, 2, C), (0, C)]:
        for dtype in DTYPES:
            for reduction in REDUCTIONS:
                for weighted in (False, True):
                    inputs = {"input": r.normal(shape, dtype, 2.0),
                              "target": r.integers(0, 2, shape).astype(dtype)}
                    if weighted:
                        inputs["weight"] = r.uniform((C,), dtype, 0.2, 2.0)
                    out.append(Case(f"weight={weighted}-{tag(shape)}-{dtype}-{reduction}", loss,
                                    inputs, {"reduction": reduction}))
    out.append(Case("soft-targets", loss, {"input": r.normal((4, 3)), "target": r.uniform((4, 3))},
                    {"reduction": "none"}))
    out.append(Case("int-target", loss, {"input": r.normal((4, 3)),
                                         "target": r.integers(0, 2, (4, 3))}))
    out.append(Case("broadcast-target", loss, {"input": r.normal((4, 3)),
                                               "target": np.array([1.0, 0.0, 1.0])}))
    out.append(Case("weight-full", loss, {"input": r.normal((4, 3)), "target": r.uniform((4, 3)),
                                          "weight": r.uniform((4, 3))}, {"reduction": "sum"}))
    out.append(Case("empty-classes", loss, {"input": r.normal((2, 0)), "target": r.normal((2, 0))},
                    {"reduction": "none"}))
    out.append(Case("large-logits", loss, {"input": np.array([[200.0, -200.0, np.inf]]),
                                           "target": np.array([[0.0, 1.0, 0.0]])},
                    {"reduction": "none"}, finite_diff=False))
    out.append(Case("mixed-f32-f64", loss, {"input": r.normal((3, 4), "float64"),
                                            "target": r.uniform((3, 4), "float32")}))
    out.append(Case("float16", loss, {"input": r.normal((4, 5), "float16"),
                                      "target": r.integers(0, 2, (4, 5)).astype("float16")}))
    out.append(Case("scalar-input", loss, {"input": np.array(1.0), "target": np.array(1.0)},
                    error=r"input: expected \(C\), \(N, C\) or \(N, \*, C\) \(at least 1-D\)"))
    out.append(Case("bool-target", loss, {"input": r.normal((2, 3)),
                                          "target": np.ones((2, 3), bool)},
                    error="target: dtype bool is not accepted"))
    out.append(Case("target-not-broadcastable", loss,
                    {"input": r.normal((2, 3)), "target": r.uniform((2, 2))},
                    error=r"target: shape \(2, 2\) cannot be broadcast with input \(2, 3\)"))
    out.append(Case("weight-not-broadcastable", loss,
                    {"input": r.normal((2, 3)), "target": r.uniform((2, 3)),
                     "weight": r.uniform((4,))},
                    error=r"weight: shape \(4,\) cannot be broadcast with input \(2, 3\)"))
    # torch would broadcast the input up and sum over input's last axis of the result
    out.append(Case("target-larger-than-input", loss,
                    {"input": r.normal((3,)), "target": r.uniform((2, 3))},
                    error=r"target: must broadcast to input's shape \(3,\); got \(2, 3\)",
                    torch_accepts=True))
    return out


def cases(seed: int) -> list[Case]:
    r = Rand(seed)
    return (_softmax_class_cases(r) + _cross_entropy_edges(r) + _class_errors(r)
            + _kl_div_cases(r) + _binary_cases(r) + _multilabel_cases(r))
