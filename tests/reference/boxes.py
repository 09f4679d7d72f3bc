"""Cases and torch oracle for service/lossd/losses/boxes.py.

torchvision is not installed next to torch here, so the oracle restates torchvision 0.28's
``torchvision/ops/{_utils,giou_loss,diou_loss,ciou_loss,focal_loss}.py`` in torch ops, line for
line (masked intersection write, ``torch.max``/``torch.min``, CIoU's alpha under ``no_grad``
and its inner DIoU at the default eps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ATOL, GRAD_RTOL, RTOL, Case, Rand

BOX_LOSSES = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
REDUCTIONS = ["none", "mean", "sum"]
BOX_SHAPES = [(6,), (), (2, 3), (0,)]  # leading shapes: (N, 4), (4,), (..., 4), empty


# --- the oracle -------------------------------------------------------------------------------

def _upcast_non_float(t):
    import torch

    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _loss_inter_union(boxes1, boxes2):
    import torch

    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xkis1 = torch.max(x1, x1g)
    ykis1 = torch.max(y1, y1g)
    xkis2 = torch.min(x2, x2g)
    ykis2 = torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    return intsctk, unionk


def _diou_iou_loss(boxes1, boxes2, eps=1e-7):
    import torch

    intsct, union = _loss_inter_union(boxes1, boxes2)
    iou = intsct / (union + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    x_p = (x2 + x1) / 2
    y_p = (y2 + y1) / 2
    x_g = (x1g + x2g) / 2
    y_g = (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    loss = 1 - iou + (centers_distance_squared / diagonal_distance_squared)
    return loss, iou


def _box_reduce(loss, reduction: str):
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"Invalid Value for arg 'reduction': '{reduction}'")


def _box_loss(name: str, boxes1, boxes2, eps: float):
    import torch

    boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    if name == "distance_box_iou":
        return _diou_iou_loss(boxes1, boxes2, eps)[0]
    if name == "complete_box_iou":
        diou_loss, iou = _diou_iou_loss(boxes1, boxes2)  # torchvision: eps not passed on
        x1, y1, x2, y2 = boxes1.unbind(dim=-1)
        x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
        w_pred, h_pred = x2 - x1, y2 - y1
        w_gt, h_gt = x2g - x1g, y2g - y1g
        v = (4 / (torch.pi ** 2)) * torch.pow(
            (torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
        with torch.no_grad():
            alpha = v / (1 - iou + v + eps)
        return diou_loss + alpha * v
    intsctk, unionk = _loss_inter_union(boxes1, boxes2)
    iouk = intsctk / (unionk + eps)
    if name == "box_iou":
        return 1 - iouk
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return 1 - miouk


def _sigmoid_focal_loss(inputs, targets, alpha: float, gamma: float, reduction: str):
    import torch
    import torch.nn.functional as F

    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"Invalid alpha value: {alpha}. alpha must be in the range [0,1] "
                         "or -1 for ignore.")
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"Invalid Value for arg 'reduction': '{reduction}'")


def torch_loss(name: str, t: dict[str, Any], options: dict[str, Any]):
    reduction = options.get("reduction", "none")
    if name == "sigmoid_focal":
        return _sigmoid_focal_loss(t["inputs"], t["targets"], options.get("alpha", 0.25),
                                   options.get("gamma", 2.0), reduction)
    if name in BOX_LOSSES:
        return _box_reduce(_box_loss(name, t["boxes1"], t["boxes2"],
                                     options.get("eps", 1e-7)), reduction)
    raise KeyError(name)


# --- cases ------------------------------------------------------------------------------------

def _random_boxes(r: Rand, lead: tuple[int, ...], dtype: str) -> np.ndarray:
    """Valid xyxy boxes: corner in [0, 10), sides in [0.5, 5)."""
    corner = r.uniform(lead + (2,), "float64", 0.0, 10.0)
    side = r.uniform(lead + (2,), "float64", 0.5, 5.0)
    return np.concatenate([corner, corner + side], axis=-1).astype(dtype)


def _partners(r: Rand, boxes: np.ndarray) -> np.ndarray:
    """Boxes near ``boxes`` (mostly overlapping), every third one far away (no overlap)."""
    moved = boxes.astype(np.float64) + r.normal(boxes.shape, "float64", 1.0)
    lo = np.minimum(moved[..., :2], moved[..., 2:])
    hi = np.maximum(moved[..., :2], moved[..., 2:])
    out = np.concatenate([lo, hi], axis=-1)
    far = (np.arange(out.size // 4).reshape(out.shape[:-1]) % 3) == 2
    out[far] += 20.0
    return out.astype(boxes.dtype)


def _box_cases(r: Rand) -> list[Case]:
    out: list[Case] = []
    for loss in BOX_LOSSES:
        # alpha of CIoU is a constant to autograd: finite differences differ (test_boxes.py)
        fd = loss != "complete_box_iou"
        for lead in BOX_SHAPES:
            for dtype in ("float64", "float32"):
                for reduction in REDUCTIONS:
                    b1 = _random_boxes(r, lead, dtype)
                    out.append(Case(f"{lead}-{dtype}-{reduction}", loss,
                                    {"boxes1": b1, "boxes2": _partners(r, b1)},
                                    {"reduction": reduction}, finite_diff=fd))
        for eps in (1e-3, 0.0):
            b1 = _random_boxes(r, (5,), "float64")
            out.append(Case(f"eps={eps}", loss, {"boxes1": b1, "boxes2": _partners(r, b1)},
                            {"eps": eps, "reduction": "sum"}, finite_diff=fd))
        # unbatched (4,): tests/losses/test_batching.py assumes a default reduction of 'mean'
        out.append(Case("default-reduction-none", loss,
                        {"boxes1": _random_boxes(r, (), "float64"),
                         "boxes2": _random_boxes(r, (), "float64")}, finite_diff=fd))
        out.extend(_box_edge_cases(r, loss))
    return out


def _box_edge_cases(r: Rand, loss: str) -> list[Case]:
    out: list[Case] = []
    b = _random_boxes(r, (3,), "float64")
    kink = {"reduction": "none"}
    # identical boxes: every max/min is a tie (torch splits the gradient in halves); ≈2.5e-8
    out.append(Case("identical", loss, {"boxes1": b, "boxes2": b.copy()}, kink,
                    finite_diff=False))
    # zero-area boxes: a point, a horizontal and a vertical segment (CIoU: nan)
    flat = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 3.0, 2.0], [2.0, 0.0, 2.0, 3.0]])
    out.append(Case("zero-area-identical", loss, {"boxes1": flat, "boxes2": flat.copy()},
                    kink, finite_diff=False))
    out.append(Case("zero-area-vs-box", loss, {"boxes1": flat, "boxes2": b}, kink,
                    finite_diff=False))
    # touching edges (no overlap, iw = 0), containment, shared edges, inverted boxes
    out.append(Case("touching", loss,
                    {"boxes1": np.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]]),
                     "boxes2": np.array([[2.0, 0.0, 4.0, 2.0], [2.0, 2.0, 3.0, 3.0]])},
                    kink, finite_diff=False))
    out.append(Case("contained", loss,
                    {"boxes1": np.array([[0.0, 0.0, 10.0, 8.0], [1.0, 1.0, 2.0, 2.0]]),
                     "boxes2": np.array([[2.0, 3.0, 5.0, 4.5], [0.5, 0.2, 3.5, 4.0]])}, kink,
                    finite_diff=loss != "complete_box_iou"))
    out.append(Case("shared-edge", loss,
                    {"boxes1": np.array([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 3.0, 5.0]]),
                     "boxes2": np.array([[0.0, 1.0, 3.0, 4.0], [1.0, 0.0, 2.0, 5.0]])},
                    kink, finite_diff=False))
    out.append(Case("inverted", loss,
                    {"boxes1": np.array([[4.0, 4.0, 1.0, 1.0], [0.0, 3.0, 2.0, 1.0]]),
                     "boxes2": np.array([[0.0, 0.0, 3.0, 3.0], [1.0, 0.0, 3.0, 2.5]])}, kink,
                    finite_diff=loss != "complete_box_iou"))
    nan_inf = _random_boxes(r, (4,), "float64")
    nan_inf[0, 2], nan_inf[1, 1], nan_inf[2, 3] = np.nan, -np.inf, np.inf
    out.append(Case("nan-inf", loss, {"boxes1": nan_inf, "boxes2": _partners(r, nan_inf)},
                    kink, finite_diff=False))
    # dtypes: ints, bool and float16 are upcast to float32 and the result stays float32
    ints = np.sort(r.integers(0, 8, (5, 2, 2)), axis=-1).transpose(0, 2, 1).reshape(5, 4)
    ints_b = np.sort(r.integers(0, 8, (5, 2, 2)), axis=-1).transpose(0, 2, 1).reshape(5, 4)
    out.append(Case("int64", loss, {"boxes1": ints, "boxes2": ints_b}, {"reduction": "mean"},
                    finite_diff=False))
    out.append(Case("int32-float32", loss, {"boxes1": ints.astype("int32"),
                                            "boxes2": _random_boxes(r, (5,), "float32")},
                    {"reduction": "none"}, finite_diff=False))
    half = _random_boxes(r, (6,), "float16")
    out.append(Case("float16", loss, {"boxes1": half, "boxes2": _partners(r, half)},
                    {"reduction": "none"}, finite_diff=False))
    mixed = {"finite_diff": False, **_mixed_tolerance(loss)}
    out.append(Case("float64-float16", loss, {"boxes1": _partners(r, half).astype("float64"),
                                              "boxes2": half}, {"reduction": "sum"}, **mixed))
    out.append(Case("float64-float32", loss,
                    {"boxes1": _random_boxes(r, (4,), "float64"),
                     "boxes2": _random_boxes(r, (4,), "float32")}, {"reduction": "mean"},
                    **mixed))
    out.append(Case("bool", loss, {"boxes1": np.array([[0, 0, 1, 1], [0, 0, 1, 1]], bool),
                                   "boxes2": np.array([[0, 0, 1, 1], [1, 0, 1, 1]], bool)},
                    finite_diff=False))
    out.append(Case("empty-mean", loss, {"boxes1": np.zeros((0, 4)),
                                         "boxes2": np.zeros((0, 4))}, {"reduction": "mean"}))
    out.append(Case("empty-mean-3d", loss, {"boxes1": np.zeros((2, 0, 4), "float32"),
                                            "boxes2": np.zeros((2, 0, 4), "float32")},
                    {"reduction": "mean"}))
    # invalid calls
    out.append(Case("last-dim-3", loss, {"boxes1": r.uniform((5, 3)), "boxes2": r.uniform((5, 3))},
                    error=r"boxes1: expected xyxy boxes of shape \(\.\.\., 4\); got \(5, 3\)"))
    out.append(Case("zero-d", loss, {"boxes1": np.array(1.0), "boxes2": np.array(1.0)},
                    error=r"boxes1: expected xyxy boxes of shape \(\.\.\., 4\); got \(\)"))
    out.append(Case("mismatched-n", loss, {"boxes1": b, "boxes2": b[:2]},
                    error=r"boxes2: must have shape \(3, 4\) to match boxes1 \(3, 4\); "
                          r"got \(2, 4\)"))
    out.append(Case("unbatched-vs-batched", loss, {"boxes1": b[0], "boxes2": b},
                    error=r"boxes2: must have shape \(4,\) to match boxes1"))
    # torchvision broadcasts a single boxes2 against N boxes1 by accident (the reverse fails);
    # lossd pairs by position and asks for equal shapes
    out.append(Case("broadcast-boxes2", loss, {"boxes1": b, "boxes2": b[0]},
                    error=r"boxes2: must have shape \(3, 4\) to match boxes1", torch_accepts=True))
    for cid, first in (("float32-float64", "float32"), ("float16-float64", "float16"),
                       ("int64-float64", "int64")):
        out.append(Case(cid, loss, {"boxes1": b.astype(first), "boxes2": b},
                        error=f"boxes2: float64 boxes2 needs float64 boxes1; got boxes1 {first}"))
    out.append(Case("bad-reduction", loss, {"boxes1": b, "boxes2": b},
                    {"reduction": "batchmean"}, error="reduction: expected one of"))
    out.append(Case("eps-string", loss, {"boxes1": b, "boxes2": b}, {"eps": "small"},
                    error=r"eps: expected float; got str"))
    out.append(Case("missing-boxes2", loss, {"boxes1": b},
                    error="boxes2: required tensor is missing"))
    return out


def _mixed_tolerance(loss: str) -> dict[str, float]:
    """float64 boxes1 beside float32 boxes2 (or boxes2 upcast to float32): torch computes what
    comes from boxes2 alone in float32, and lossd too (their gradients as well, added up in
    torch's order), so the float64 loss and boxes1 gradient meet float64's tolerances and
    boxes2's float32 gradient is torch's bit for bit. CIoU's float32 arctangent is torch's only
    to an ulp (torch's differs from the correctly rounded one on about 1 in 10⁴ ratios): values
    within rel 3.6e-9, gradients 6.0e-8 (measured over 300 seeds of 128 pairs)."""
    if loss == "complete_box_iou":
        return {"rtol": 1e-8, "atol": ATOL["float64"], "grad_rtol": 2e-7}
    return {"rtol": RTOL["float64"], "atol": ATOL["float64"], "grad_rtol": GRAD_RTOL["float64"]}


def _mixed_cases(r: Rand) -> list[Case]:
    """More float64 boxes1 beside narrower boxes2 (drawn after every other case, so that
    those keep their values): per pair, with every kind of pair (overlapping, apart, nested,
    centres nearly on each other, where the offsets' float32 rounding dominates), and integer
    boxes2."""
    out: list[Case] = []
    b1 = _random_boxes(r, (12,), "float64")
    b2 = _partners(r, b1).astype("float32")
    b2[3] = b1[3] + 0.25 * np.array([-1, -1, 1, 1])  # b1[3] inside, the same centre
    b2[4] = b1[4] + np.array([1e-4, -2e-4, 3e-4, 1e-4])  # centres 2e-4 apart
    ints = np.sort(r.integers(0, 9, (12, 2, 2)), axis=-1).transpose(0, 2, 1).reshape(12, 4)
    for loss in BOX_LOSSES:
        mixed = {"finite_diff": False, **_mixed_tolerance(loss)}
        out.append(Case("float64-float32-pairs", loss, {"boxes1": b1, "boxes2": b2},
                        {"reduction": "none"}, **mixed))
        out.append(Case("float64-int32", loss, {"boxes1": b1, "boxes2": ints.astype("int32")},
                        {"reduction": "sum"}, **mixed))
    return out


def _focal_cases(r: Rand) -> list[Case]:
    out: list[Case] = []
    grid = [{}, {"alpha": -1.0}, {"alpha": 0.0}, {"alpha": 1.0}, {"alpha": 0.7, "gamma": 0.0},
            {"gamma": 1.0}, {"gamma": 1.5}, {"alpha": 0.4, "gamma": 3.5},
            {"alpha": -1.0, "gamma": 0.0}]
    for opts in grid:
        tag = "-".join(f"{k}={v}" for k, v in opts.items()) or "default"
        for shape in [(), (5,), (4, 3), (2, 3, 4), (0, 3)]:
            for dtype in ("float64", "float32"):
                for reduction in REDUCTIONS:
                    # hard labels half the time, soft labels (allowed) otherwise
                    targets = (r.integers(0, 2, shape).astype(dtype) if r.choice([0, 1])
                               else r.uniform(shape, dtype))
                    out.append(Case(f"{tag}-{shape}-{dtype}-{reduction}", "sigmoid_focal",
                                    {"inputs": r.normal(shape, dtype, 2.0), "targets": targets},
                                    {**opts, "reduction": reduction}))
    # 0-d: tests/losses/test_batching.py assumes a default reduction of 'mean'
    out.append(Case("default-reduction-none", "sigmoid_focal",
                    {"inputs": r.normal(()), "targets": r.uniform(())}))
    out.append(Case("large-logits", "sigmoid_focal",
                    {"inputs": np.array([30.0, -30.0, 30.0, -30.0, 12.0, -12.0]),
                     "targets": np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.5])}, {"reduction": "sum"}))
    # (1 - p_t) is exactly 0: pow's gradient is inf for gamma < 1 (torch gives nan/inf too)
    out.append(Case("saturated-fractional-gamma", "sigmoid_focal",
                    {"inputs": np.array([40.0, -40.0, 1.0]), "targets": np.array([1.0, 0.0, 1.0])},
                    {"gamma": 0.5, "reduction": "none"}, finite_diff=False))
    nan_inf = r.normal((6,))
    nan_inf[1], nan_inf[3], nan_inf[4] = np.nan, np.inf, -np.inf
    out.append(Case("nan-inf", "sigmoid_focal",
                    {"inputs": nan_inf, "targets": np.array([0.0, 1.0, 1.0, 1.0, 0.0, 0.3])},
                    {"reduction": "none"}, finite_diff=False))
    out.append(Case("empty-mean-nan", "sigmoid_focal",
                    {"inputs": np.zeros((0,)), "targets": np.zeros((0,))}, {"reduction": "mean"}))
    out.append(Case("float16", "sigmoid_focal",
                    {"inputs": r.normal((8,), "float16"), "targets": r.uniform((8,), "float16")},
                    {"reduction": "none"}))
    # torch computes σ(x) in float32 before promoting: float64-level agreement is not possible
    out.append(Case("float32-float64", "sigmoid_focal",
                    {"inputs": r.normal((6,), "float32"), "targets": r.uniform((6,), "float64")},
                    {"reduction": "none"}, rtol=1e-5, atol=1e-7))
    x = r.normal((4,))
    bad = [("alpha-above-one", {"inputs": x, "targets": x}, {"alpha": 1.5},
            r"alpha: expected a value in \[0, 1\], or -1 to disable the weighting; got 1.5"),
           ("alpha-negative", {"inputs": x, "targets": x}, {"alpha": -0.5},
            r"alpha: expected a value in \[0, 1\].*got -0.5"),
           ("shape-mismatch", {"inputs": x, "targets": r.uniform((2, 4))}, {},
            r"targets: must have shape \(4,\) to match inputs \(4,\); got \(2, 4\)"),
           ("int-inputs", {"inputs": r.integers(-2, 3, (4,)), "targets": r.uniform((4,))}, {},
            r"inputs: dtype int64 is not accepted"),
           ("int-targets", {"inputs": x, "targets": r.integers(0, 2, (4,))}, {},
            r"targets: dtype int64 is not accepted"),
           ("bad-reduction", {"inputs": x, "targets": x}, {"reduction": "avg"},
            "reduction: expected one of")]
    for cid, inputs, opts, error in bad:
        out.append(Case(cid, "sigmoid_focal", inputs, opts, error=error))
    return out


def cases(seed: int) -> list[Case]:
    r = Rand(seed)
    return _box_cases(r) + _focal_cases(r) + _mixed_cases(r)
