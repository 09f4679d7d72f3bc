"""Detection losses: IoU-family losses of paired boxes, and the sigmoid focal loss.

Boxes are ``(x1, y1, x2, y2)`` in the last axis, shape ``(..., 4)``, and compared **pairwise by
position** (``boxes1[i]`` with ``boxes2[i]``; not the N×M matrix of ``box_iou``). Values have
the boxes' shape without the last axis: ``(N, 4) -> (N,)``, ``(4,) -> ()``. As torchvision 0.28
does (``_upcast_non_float``), boxes of any dtype but float32/float64 — integers, bool, float16 —
are upcast to float32 and the result stays float32; float64 boxes2 with float32 boxes1 is an
error, as in torchvision (float64 boxes1 with float32 boxes2 computes in float64). Inverted boxes (x2 < x1) are not rejected;
the result is finite but meaningless, as in torchvision. The mean of zero boxes is 0, not nan
(torchvision returns ``0.0 * loss.sum()``).

Gradients are vector-Jacobian products that follow torch autograd through torchvision's
formulas step by step, so that ties and degenerate boxes get torch's answers:

* ``max``/``min`` of two coordinates split the gradient in halves at a tie (identical edges)
  and pass it to both sides when either is nan (torch's ``maximum``/``minimum`` backward);
* the intersection is written through a boolean mask, so where the boxes do not overlap its
  corners get exactly zero gradient;
* every division ``a / b`` differentiates as ``g / b`` and ``-g·a / (b·b)`` (nan and inf where
  torch has them, e.g. zero-height boxes in CIoU).

Focal loss (Lin et al. 2017, https://arxiv.org/abs/1708.02002, as ``torchvision.ops.
sigmoid_focal_loss``) takes logits ``inputs`` and ``targets`` of the same shape ``(*)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._checks import check_same_shape, fail, shape_str
from ._reduce import Terms
from ._spec import Kind, LossSpec, OptionSpec, TensorSpec, reduction_option, register

FAMILY = "boxes"
EPS = 1e-7  # torchvision's default eps, and the eps CIoU's inner DIoU always uses
ASPECT = 4 / math.pi ** 2  # CIoU's normalisation of the squared arctangent difference

Corners = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _corners(boxes: np.ndarray) -> Corners:
    """x1, y1, x2, y2 as 1-D views of the last axis (leading axes flattened: NumPy would turn
    the results of 0-d operands into scalars)."""
    rows = boxes.reshape(-1, 4)
    return rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]


def _values(loss: np.ndarray, boxes: np.ndarray) -> Terms:
    """The per-pair losses in the boxes' leading shape."""
    return Terms(loss.reshape(boxes.shape[:-1]))


# --- shared geometry --------------------------------------------------------------------------

def _inter_union(b1: Corners, b2: Corners) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's ``_loss_inter_union``: overlap area (0 unless both sides are > 0) and
    ``A1 + A2 - inter``."""
    x1, y1, x2, y2 = b1
    x1g, y1g, x2g, y2g = b2
    iw = np.minimum(x2, x2g)
    iw -= np.maximum(x1, x1g)
    ih = np.minimum(y2, y2g)
    ih -= np.maximum(y1, y1g)
    overlap = (ih > 0) & (iw > 0)
    inter = np.multiply(iw, ih, out=iw)
    inter[~overlap] = 0  # torchvision writes the product only where both sides are positive
    union = (x2 - x1) * (y2 - y1)
    union += (x2g - x1g) * (y2g - y1g)
    union -= inter
    return inter, union


def _enclosing(b1: Corners, b2: Corners) -> tuple[np.ndarray, np.ndarray]:
    """Width and height of the smallest box enclosing both."""
    cw = np.maximum(b1[2], b2[2])
    cw -= np.minimum(b1[0], b2[0])
    ch = np.maximum(b1[3], b2[3])
    ch -= np.minimum(b1[1], b2[1])
    return cw, ch


def _centre_distance(b1: Corners, b2: Corners) -> np.ndarray:
    """Squared distance between the centres, ``((x2+x1)/2 - (x1g+x2g)/2)² + (same in y)``."""
    dx = (b1[2] + b1[0]) / 2 - (b2[0] + b2[2]) / 2
    dy = (b1[3] + b1[1]) / 2 - (b2[1] + b2[3]) / 2
    return dx * dx + dy * dy


def _diou_iou(b1: Corners, b2: Corners, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's ``_diou_iou_loss``: (``1 - iou + ρ²/(c² + eps)``, ``iou``)."""
    inter, union = _inter_union(b1, b2)
    union += eps
    iou = np.divide(inter, union, out=inter)
    cw, ch = _enclosing(b1, b2)
    diag = np.multiply(cw, cw, out=cw)
    diag += ch * ch
    diag += eps
    ratio = np.divide(_centre_distance(b1, b2), diag, out=diag)
    loss = 1 - iou
    loss += ratio
    return loss, iou


# --- reverse mode of the geometry -------------------------------------------------------------

def _max_grad(g: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch's ``maximum`` backward: halves at a tie, the larger side gets ``g`` (both on nan)."""
    tie = a == b
    half = np.where(tie, g / 2, g)
    return np.where(a < b, 0, half), np.where(a > b, 0, half)


def _min_grad(g: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch's ``minimum`` backward: halves at a tie, the smaller side gets ``g`` (both on
    nan); ``max`` with the operands swapped masks exactly these positions."""
    return _max_grad(g, b, a)


class _Grads:
    """Gradient accumulators for both box tensors, addressed by corner."""

    def __init__(self, boxes: np.ndarray) -> None:
        self.shape = boxes.shape
        self.boxes1 = np.zeros((boxes.size // 4, 4), boxes.dtype)
        self.boxes2 = np.zeros_like(self.boxes1)
        self.g1 = _corners(self.boxes1)
        self.g2 = _corners(self.boxes2)

    def span(self, g: np.ndarray, grads: Corners, low: int, high: int) -> None:
        """Backward of ``high - low`` (a width or height) for one box."""
        grads[high][...] += g
        grads[low][...] -= g

    def edge_max(self, g: np.ndarray, b1: Corners, b2: Corners, i: int) -> None:
        """Backward of ``max(b1[i], b2[i])``."""
        g1, g2 = _max_grad(g, b1[i], b2[i])
        self.g1[i][...] += g1
        self.g2[i][...] += g2

    def edge_min(self, g: np.ndarray, b1: Corners, b2: Corners, i: int) -> None:
        """Backward of ``min(b1[i], b2[i])``."""
        g1, g2 = _min_grad(g, b1[i], b2[i])
        self.g1[i][...] += g1
        self.g2[i][...] += g2

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"boxes1": self.boxes1.reshape(self.shape),
                "boxes2": self.boxes2.reshape(self.shape)}


def _inter_union_grad(acc: _Grads, g_inter: np.ndarray, g_union: np.ndarray, b1: Corners,
                      b2: Corners) -> None:
    """Backward of ``_inter_union`` given the gradients of inter and union."""
    x1, y1, x2, y2 = b1
    x1g, y1g, x2g, y2g = b2
    # union = A1 + A2 - inter, with A = (x2 - x1)(y2 - y1)
    acc.span(g_union * (y2 - y1), acc.g1, 0, 2)
    acc.span(g_union * (x2 - x1), acc.g1, 1, 3)
    acc.span(g_union * (y2g - y1g), acc.g2, 0, 2)
    acc.span(g_union * (x2g - x1g), acc.g2, 1, 3)
    g_inter = g_inter - g_union
    # inter = iw·ih where both are positive; elsewhere the masked write gives no gradient
    iw = np.minimum(x2, x2g) - np.maximum(x1, x1g)
    ih = np.minimum(y2, y2g) - np.maximum(y1, y1g)
    overlap = (ih > 0) & (iw > 0)
    g_iw = np.where(overlap, g_inter * ih, 0)
    g_ih = np.where(overlap, g_inter * iw, 0)
    acc.edge_min(g_iw, b1, b2, 2)
    acc.edge_max(-g_iw, b1, b2, 0)
    acc.edge_min(g_ih, b1, b2, 3)
    acc.edge_max(-g_ih, b1, b2, 1)


def _enclosing_grad(acc: _Grads, g_cw: np.ndarray, g_ch: np.ndarray, b1: Corners,
                    b2: Corners) -> None:
    """Backward of ``_enclosing``."""
    acc.edge_max(g_cw, b1, b2, 2)
    acc.edge_min(-g_cw, b1, b2, 0)
    acc.edge_max(g_ch, b1, b2, 3)
    acc.edge_min(-g_ch, b1, b2, 1)


def _iou_grad(acc: _Grads, g_iou: np.ndarray, g_union: np.ndarray | float, b1: Corners,
              b2: Corners, eps: float) -> None:
    """Backward of ``iou = inter / (union + eps)`` plus an extra gradient of ``union``."""
    inter, union = _inter_union(b1, b2)
    union += eps
    g_inter = g_iou / union
    g_union = g_union - g_iou * inter / (union * union)
    _inter_union_grad(acc, g_inter, g_union, b1, b2)


def _diou_grad(acc: _Grads, g: np.ndarray, b1: Corners, b2: Corners, eps: float) -> None:
    """Backward of the loss of ``_diou_iou`` (``1 - iou + ρ²/c²``) with upstream ``g``."""
    _iou_grad(acc, -g, 0.0, b1, b2, eps)
    cw, ch = _enclosing(b1, b2)
    diag = cw * cw + ch * ch + eps
    dist = _centre_distance(b1, b2)
    g_dist = g / diag
    g_diag = -g * dist / (diag * diag)
    _enclosing_grad(acc, g_diag * (2 * cw), g_diag * (2 * ch), b1, b2)
    for i, j in ((0, 2), (1, 3)):  # d/dx of ((x2+x1)/2 - (x1g+x2g)/2)², then in y
        d = (b1[j] + b1[i]) / 2 - (b2[i] + b2[j]) / 2
        half = g_dist * (2 * d) / 2
        acc.g1[i][...] += half
        acc.g1[j][...] += half
        acc.g2[i][...] -= half
        acc.g2[j][...] -= half


# --- IoU-family losses ------------------------------------------------------------------------

def box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, *, eps: float = EPS) -> Terms:
    """Plain IoU loss ``1 - inter / (union + eps)`` of paired boxes.

    torchvision has ``box_iou`` (an N×M matrix, no eps) but no IoU loss; this is the loss with
    torchvision's loss conventions (eps, pairing, upcast, empty mean 0). Boxes that do not
    overlap give exactly 1 and zero gradient — why GIoU, DIoU and CIoU exist.

    Shapes: ``(..., 4), (..., 4) -> (...)``.
    Example: ``box_iou_loss(np.array([0., 0, 2, 2]), np.array([1., 1, 3, 3])) -> 1 - 1/7``.
    """
    inter, union = _inter_union(_corners(boxes1), _corners(boxes2))
    union += eps
    iou = np.divide(inter, union, out=inter)
    return _values(np.subtract(1, iou, out=iou), boxes1)


def box_iou_loss_grad(upstream: np.ndarray, boxes1: np.ndarray, boxes2: np.ndarray, *,
                      eps: float = EPS) -> dict[str, np.ndarray]:
    acc = _Grads(boxes1)
    upstream = upstream.reshape(-1)  # like the corners' flat views
    _iou_grad(acc, -upstream, 0.0, _corners(boxes1), _corners(boxes2), eps)
    return acc.as_dict()


def generalized_box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, *,
                             eps: float = EPS) -> Terms:
    """GIoU loss (Rezatofighi et al. 2019), as ``torchvision.ops.generalized_box_iou_loss``.

    ``1 - iou + (Ac - union) / (Ac + eps)`` with ``iou = inter / (union + eps)`` and ``Ac`` the
    area of the smallest enclosing box. Identical boxes give ≈2.5e-8 (eps), zero-area
    identical boxes 1.

    Shapes: ``(..., 4), (..., 4) -> (...)``.
    """
    b1, b2 = _corners(boxes1), _corners(boxes2)
    inter, union = _inter_union(b1, b2)
    iou = inter / (union + eps)
    cw, ch = _enclosing(b1, b2)
    area_c = np.multiply(cw, ch, out=cw)
    penalty = area_c - union
    penalty /= np.add(area_c, eps, out=area_c)
    miou = np.subtract(iou, penalty, out=iou)
    return _values(np.subtract(1, miou, out=miou), boxes1)


def generalized_box_iou_loss_grad(upstream: np.ndarray, boxes1: np.ndarray,
                                  boxes2: np.ndarray, *, eps: float = EPS
                                  ) -> dict[str, np.ndarray]:
    b1, b2 = _corners(boxes1), _corners(boxes2)
    acc = _Grads(boxes1)
    upstream = upstream.reshape(-1)  # like the corners' flat views
    _, union = _inter_union(b1, b2)
    cw, ch = _enclosing(b1, b2)
    area_c = cw * ch
    denominator = area_c + eps
    # loss = 1 - iou + (Ac - union) / (Ac + eps)
    g_penalty = upstream / denominator
    g_area_c = g_penalty - upstream * (area_c - union) / (denominator * denominator)
    _iou_grad(acc, -upstream, -g_penalty, b1, b2, eps)
    _enclosing_grad(acc, g_area_c * ch, g_area_c * cw, b1, b2)
    return acc.as_dict()


def distance_box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, *,
                          eps: float = EPS) -> Terms:
    """DIoU loss (Zheng et al. 2020), as ``torchvision.ops.distance_box_iou_loss``.

    ``1 - iou + ρ² / (c² + eps)``: ρ² the squared distance between the centres, c² the squared
    diagonal of the smallest enclosing box. Zero-area identical boxes give 1.

    Shapes: ``(..., 4), (..., 4) -> (...)``.
    """
    loss, _ = _diou_iou(_corners(boxes1), _corners(boxes2), eps)
    return _values(loss, boxes1)


def distance_box_iou_loss_grad(upstream: np.ndarray, boxes1: np.ndarray, boxes2: np.ndarray,
                               *, eps: float = EPS) -> dict[str, np.ndarray]:
    acc = _Grads(boxes1)
    upstream = upstream.reshape(-1)  # like the corners' flat views
    _diou_grad(acc, upstream, _corners(boxes1), _corners(boxes2), eps)
    return acc.as_dict()


def _aspect(b: Corners) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(w, h, atan(w / h)) of one set of boxes."""
    w, h = b[2] - b[0], b[3] - b[1]
    return w, h, np.arctan(w / h)


def complete_box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, *,
                          eps: float = EPS) -> Terms:
    """CIoU loss (Zheng et al. 2020), as ``torchvision.ops.complete_box_iou_loss``.

    ``DIoU + α·v`` with ``v = (4/π²)(atan(w_g/h_g) - atan(w_p/h_p))²`` (``boxes2`` is the
    ground truth g) and ``α = v / (1 - iou + v + eps)``. torchvision's quirk is kept: the inner
    DIoU (and the iou in α) always use eps=1e-7; ``eps`` only reaches α. Zero-area identical
    boxes give nan (``atan(0/0)``).

    Shapes: ``(..., 4), (..., 4) -> (...)``.
    """
    b1, b2 = _corners(boxes1), _corners(boxes2)
    loss, iou = _diou_iou(b1, b2, EPS)
    v = _aspect(b2)[2] - _aspect(b1)[2]
    v *= v
    v *= ASPECT
    alpha = 1 - iou
    alpha += v
    alpha += eps
    np.divide(v, alpha, out=alpha)
    loss += np.multiply(alpha, v, out=v)
    return _values(loss, boxes1)


def complete_box_iou_loss_grad(upstream: np.ndarray, boxes1: np.ndarray, boxes2: np.ndarray,
                               *, eps: float = EPS) -> dict[str, np.ndarray]:
    """α is computed under ``no_grad`` in torchvision: a constant here too."""
    b1, b2 = _corners(boxes1), _corners(boxes2)
    acc = _Grads(boxes1)
    upstream = upstream.reshape(-1)  # like the corners' flat views
    _diou_grad(acc, upstream, b1, b2, EPS)
    _, iou = _diou_iou(b1, b2, EPS)
    wp, hp, atan_p = _aspect(b1)
    wg, hg, atan_g = _aspect(b2)
    s = atan_g - atan_p
    v = ASPECT * (s * s)
    alpha = v / (1 - iou + v + eps)
    g_s = upstream * alpha * ASPECT * (2 * s)
    for grads, w, h, sign in ((acc.g2, wg, hg, 1), (acc.g1, wp, hp, -1)):
        r = w / h
        g_r = sign * g_s / (r * r + 1)  # atan' and the sign of the difference
        acc.span(g_r / h, grads, 0, 2)
        acc.span(-g_r * w / (h * h), grads, 1, 3)
    return acc.as_dict()


# --- sigmoid focal loss -----------------------------------------------------------------------

def _sigmoid_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(σ(x), log σ(x)) without overflow: both from ``e = exp(-|x|)`` (torch's log_sigmoid is
    ``min(x, 0) - log1p(e)``)."""
    e = np.exp(-np.abs(x))
    p = np.where(x >= 0, 1, e) / (1 + e)
    log_p = np.minimum(x, 0) - np.log1p(e)
    return p.astype(x.dtype, copy=False), log_p


def _focal_parts(inputs: np.ndarray, targets: np.ndarray, alpha: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(p, ce, 1 - p_t, α_t) with ce = BCE-with-logits; α_t is 1 when alpha < 0."""
    p, log_p = _sigmoid_parts(inputs)
    ce = (1 - targets) * inputs - log_p
    q = 1 - (p * targets + (1 - p) * (1 - targets))
    alpha_t = (alpha * targets + (1 - alpha) * (1 - targets) if alpha >= 0
               else np.ones_like(inputs))
    return p, ce, q, alpha_t


def sigmoid_focal_loss(inputs: np.ndarray, targets: np.ndarray, *, alpha: float = 0.25,
                       gamma: float = 2.0) -> Terms:
    """Sigmoid focal loss, as ``torchvision.ops.sigmoid_focal_loss``.

    ``α_t · BCEWithLogits(x, t) · (1 - p_t)^γ`` with ``p = σ(x)``, ``p_t = p·t + (1-p)(1-t)``
    and ``α_t = α·t + (1-α)(1-t)``; ``α = -1`` drops the α_t factor (α=-1, γ=0 is exactly
    BCEWithLogits). Soft targets are allowed. Unlike the box losses the mean of an empty input
    is nan (a plain ``mean``).

    Shapes: ``inputs`` ``(*)``, ``targets`` the same shape; values ``(*)``.
    """
    _, ce, q, alpha_t = _focal_parts(inputs, targets, alpha)
    loss = ce * q ** gamma
    if alpha >= 0:
        loss *= alpha_t
    return Terms(np.asarray(loss))


def sigmoid_focal_loss_grad(upstream: np.ndarray, inputs: np.ndarray, targets: np.ndarray, *,
                            alpha: float = 0.25, gamma: float = 2.0) -> dict[str, np.ndarray]:
    """torch autograd through torchvision's formula: BCE-with-logits' own backward
    (``σ(x) - t`` for x, ``-x`` for t) and ``pow``'s (zero gradient when γ = 0)."""
    p, ce, q, alpha_t = _focal_parts(inputs, targets, alpha)
    modulator = q ** gamma
    g_loss = upstream * alpha_t
    g_q = (np.zeros_like(q) if gamma == 0
           else g_loss * ce * (gamma * q ** (gamma - 1)))
    g_ce = g_loss * modulator
    g_pt = -g_q
    g_p = g_pt * targets - g_pt * (1 - targets)
    g_inputs = g_ce * (p - targets) + g_p * ((1 - p) * p)
    g_targets = g_ce * -inputs + (g_pt * p - g_pt * (1 - p))
    if alpha >= 0:
        g_alpha_t = upstream * (ce * modulator)
        g_targets += g_alpha_t * alpha - g_alpha_t * (1 - alpha)
    return {"inputs": g_inputs, "targets": g_targets}


# --- registration -----------------------------------------------------------------------------

def _check_boxes(arrays: dict[str, np.ndarray], options: dict[str, Any]
                 ) -> dict[str, np.ndarray]:
    """Both (..., 4) with the same shape; non-float32/64 dtypes upcast to float32 (torchvision's
    ``_upcast_non_float``, so an int or float16 call answers in float32)."""
    for name in ("boxes1", "boxes2"):
        boxes = arrays[name]
        if boxes.ndim == 0 or boxes.shape[-1] != 4:
            raise fail(name, f"expected xyxy boxes of shape (..., 4); got "
                             f"{shape_str(boxes.shape)}")
    # torchvision pairs boxes by position; it broadcasts only by accident, and fails when
    # boxes1 is the smaller one, so lossd asks for equal shapes
    check_same_shape("boxes2", arrays["boxes2"], "boxes1", arrays["boxes1"])
    upcast = {name: (a if a.dtype in (np.float32, np.float64) else a.astype(np.float32))
              for name, a in arrays.items()}
    if upcast["boxes1"].dtype == np.float32 and upcast["boxes2"].dtype == np.float64:
        # torchvision writes the float64 intersection into a float32 tensor made like boxes1
        # and fails ("Index put requires the source and destination dtypes match")
        raise fail("boxes2", f"float64 boxes2 needs float64 boxes1; got boxes1 "
                             f"{arrays['boxes1'].dtype}")
    return upcast


def _check_focal(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    """targets has inputs' shape (BCE-with-logits); alpha in [0, 1] or exactly -1."""
    check_same_shape("targets", arrays["targets"], "inputs", arrays["inputs"])
    alpha = options["alpha"]
    if not 0 <= alpha <= 1 and alpha != -1:
        raise fail("alpha", f"expected a value in [0, 1], or -1 to disable the weighting; "
                            f"got {alpha!r}", option=True)


REDUCTION = reduction_option(default="none")
BOX_EPS = OptionSpec("eps", float, EPS, "small number added to denominators")


def _register_box_loss(name: str, fn, grad, torch: str) -> None:
    tensors = tuple(
        TensorSpec(key, role, "(..., 4) xyxy; (N, 4), (4,) or any leading dims", kind=Kind.REAL,
                   differentiable=True, batch_ndim=2,
                   description=f"{role} boxes (x1, y1, x2, y2); integers and float16 are "
                               "upcast to float32")
        for key, role in (("boxes1", "input"), ("boxes2", "target")))
    register(LossSpec(name, fn, tensors, (REDUCTION, BOX_EPS), torch=torch, family=FAMILY,
                      check=_check_boxes, grad=grad, empty_mean=0.0))


_register_box_loss("box_iou", box_iou_loss, box_iou_loss_grad,
                   "1 - inter / (union + eps) from torchvision.ops._utils._loss_inter_union "
                   "(torchvision has no plain IoU loss)")
_register_box_loss("generalized_box_iou", generalized_box_iou_loss,
                   generalized_box_iou_loss_grad, "torchvision.ops.generalized_box_iou_loss")
_register_box_loss("distance_box_iou", distance_box_iou_loss, distance_box_iou_loss_grad,
                   "torchvision.ops.distance_box_iou_loss")
_register_box_loss("complete_box_iou", complete_box_iou_loss, complete_box_iou_loss_grad,
                   "torchvision.ops.complete_box_iou_loss")

register(LossSpec(
    "sigmoid_focal", sigmoid_focal_loss,
    (TensorSpec("inputs", "input", "(*)", differentiable=True, description="logits"),
     TensorSpec("targets", "target", "same shape as inputs", differentiable=True,
                description="binary (or soft) labels in [0, 1]")),
    (REDUCTION,
     OptionSpec("alpha", float, 0.25, "weight of the positive class in [0, 1]; -1 disables "
                "the weighting"),
     OptionSpec("gamma", float, 2.0, "exponent of the modulating factor (1 - p_t)")),
    torch="torchvision.ops.sigmoid_focal_loss", family=FAMILY, check=_check_focal,
    grad=sigmoid_focal_loss_grad))
