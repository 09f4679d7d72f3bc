"""Detection losses: IoU-family losses of paired boxes, and the sigmoid focal loss.

Boxes are ``(x1, y1, x2, y2)`` in the last axis, shape ``(..., 4)``, and compared **pairwise by
position** (``boxes1[i]`` with ``boxes2[i]``; not the N×M matrix of ``box_iou``). Values have
the boxes' shape without the last axis: ``(N, 4) -> (N,)``, ``(4,) -> ()``. As torchvision 0.28
does (``_upcast_non_float``), boxes of any dtype but float32/float64 — integers, bool, float16 —
are upcast to float32 and the result stays float32. float64 boxes2 with float32 boxes1 is an
error, as in torchvision. float64 boxes1 with float32 boxes2 answers in float64, with torch's
rounding: what torchvision computes from boxes2 alone (its widths, heights and area, its centre,
its aspect ratio and arctangent) is float32 arithmetic, and so is the backward of those steps
(each box tensor arrives here in its own dtype and NumPy promotes operation by operation, as
torch does; the gradient of each step reaches boxes2 rounded to float32). Inverted
boxes (x2 < x1) are not rejected; the result is finite but meaningless, as in torchvision. The
mean of zero boxes is 0, not nan (torchvision returns ``0.0 * loss.sum()``).

Gradients are vector-Jacobian products that follow torch autograd through torchvision's
formulas step by step, so that ties and degenerate boxes get torch's answers:

* ``max``/``min`` of two coordinates split the gradient in halves at a tie (identical edges)
  and pass it to both sides when either is nan (torch's ``maximum``/``minimum`` backward);
* the intersection is written through a boolean mask, so where the boxes do not overlap its
  corners get exactly zero gradient;
* every division ``a / b`` differentiates as ``g / b`` and ``-g·((a / b) / b)`` (nan and inf
  where torch has them, e.g. zero-height boxes in CIoU).

Focal loss (Lin et al. 2017, https://arxiv.org/abs/1708.02002, as ``torchvision.ops.
sigmoid_focal_loss``) takes logits ``inputs`` and ``targets`` of the same shape ``(*)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._checks import check_same_shape, fail, shape_str
from ._reduce import Terms
from ._spec import (
    ANY,
    ANY_SHAPE,
    NON_NEGATIVE,
    PROBABILITY,
    GradFn,
    Kind,
    LossFn,
    LossSpec,
    OptionSpec,
    TensorSpec,
    reduction_option,
    register,
)

FAMILY = "boxes"
EPS = 1e-7  # torchvision's default eps, and the eps CIoU's inner DIoU always uses
ASPECT = 4 / math.pi ** 2  # CIoU's normalisation of the squared arctangent difference

Corners = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _corners(boxes: np.ndarray) -> Corners:
    """x1, y1, x2, y2 as contiguous 1-D arrays (leading axes flattened: NumPy turns results of
    0-d operands into scalars). One transposing copy costs less than the strided reads of
    every later operation on views of the last axis (measured: 2x for float64)."""
    x1, y1, x2, y2 = np.ascontiguousarray(boxes.reshape(-1, 4).T)
    return x1, y1, x2, y2


def _values(loss: np.ndarray, boxes: np.ndarray) -> Terms:
    """The per-pair losses in the boxes' leading shape."""
    return Terms(loss.reshape(boxes.shape[:-1]))


def _masked(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.where(mask, values, 0)``. NumPy's ``where`` is ~30x slower than a multiply, and
    ``values * mask`` is exact wherever it is finite (x·1 = x, x·0 = 0); only an inf or nan
    under a false mask (inf·0 = nan) needs the real ``where``."""
    out = values * mask
    return out if np.isfinite(out).all() else np.where(mask, values, 0)


def _select(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.where(mask, a, b)`` by the same exact arithmetic as :func:`_masked`."""
    out = a * mask
    out += b * ~mask
    return out if np.isfinite(out).all() else np.where(mask, a, b)


# --- shared geometry --------------------------------------------------------------------------

class _Pair:
    """Forward quantities of paired boxes, shared by the losses and their gradients.

    ``inter`` is torchvision's ``_loss_inter_union``: the overlap area where both sides of the
    overlap are > 0, else 0; ``union = A1 + A2 - inter``. The enclosing box and the centre
    offsets are computed on first use.
    """

    def __init__(self, boxes1: np.ndarray, boxes2: np.ndarray) -> None:
        self.b1, self.b2 = _corners(boxes1), _corners(boxes2)
        x1, y1, x2, y2 = self.b1
        x1g, y1g, x2g, y2g = self.b2
        self.w1, self.h1 = x2 - x1, y2 - y1
        self.w2, self.h2 = x2g - x1g, y2g - y1g
        self.iw = np.minimum(x2, x2g)
        self.iw -= np.maximum(x1, x1g)
        self.ih = np.minimum(y2, y2g)
        self.ih -= np.maximum(y1, y1g)
        self.overlap = (self.ih > 0) & (self.iw > 0)
        # torchvision writes the product only where both sides are positive
        self.inter = _masked(self.overlap, self.iw * self.ih)
        self.union = self.w1 * self.h1
        self.union += self.w2 * self.h2
        self.union -= self.inter
        self._enclosing: tuple[np.ndarray, np.ndarray] | None = None
        self._offsets: tuple[np.ndarray, np.ndarray] | None = None

    def iou(self, eps: float) -> np.ndarray:
        """``inter / (union + eps)`` (a new array)."""
        iou: np.ndarray = self.inter / (self.union + eps)
        return iou

    @property
    def enclosing(self) -> tuple[np.ndarray, np.ndarray]:
        """Width and height of the smallest box enclosing both."""
        if self._enclosing is None:
            cw = np.maximum(self.b1[2], self.b2[2])
            cw -= np.minimum(self.b1[0], self.b2[0])
            ch = np.maximum(self.b1[3], self.b2[3])
            ch -= np.minimum(self.b1[1], self.b2[1])
            self._enclosing = cw, ch
        return self._enclosing

    @property
    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre minus centre, ``(x2 + x1)/2 - (x1g + x2g)/2`` and the same in y."""
        if self._offsets is None:
            (x1, y1, x2, y2), (x1g, y1g, x2g, y2g) = self.b1, self.b2
            self._offsets = ((x2 + x1) / 2 - (x1g + x2g) / 2, (y2 + y1) / 2 - (y1g + y2g) / 2)
        return self._offsets

    def diou(self, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """torchvision's ``_diou_iou_loss``: (``1 - iou + ρ²/(c² + eps)``, iou, ρ², c² + eps)
        with ρ² the squared distance between the centres and c² the enclosing diagonal."""
        iou = self.iou(eps)
        cw, ch = self.enclosing
        diag = cw * cw
        diag += ch * ch
        diag += eps
        dx, dy = self.offsets
        dist = dx * dx
        dist += dy * dy
        loss = 1 - iou
        loss += dist / diag
        return loss, iou, dist, diag


def _aspect(w: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w / h, atan(w / h)) in the sizes' dtype. A float32 arctangent is taken in float64 and
    rounded once: NumPy's float32 ``arctan`` is off by up to 1.6 ulp and disagrees with torch's
    (within 0.51 ulp) on about a quarter of inputs; rounded from float64 it differs on about 1
    in 10,000 (measured over 10⁶ ratios in [0.1, 10]), and CIoU's gradient is proportional to the
    difference of two arctangents."""
    r = w / h
    return r, np.arctan(r, dtype=np.float64).astype(r.dtype, copy=False)


# --- reverse mode of the geometry -------------------------------------------------------------

def _edge_grads(a: np.ndarray, b: np.ndarray, g_max: np.ndarray | None,
                g_min: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Gradients to ``a`` and ``b`` of ``max(a, b)`` (upstream ``g_max``) plus ``min(a, b)``
    (upstream ``g_min``; ``None`` is zero), as torch's ``maximum``/``minimum`` backward gives
    them: the winner takes the gradient, a tie splits it in halves, a nan passes it to both."""
    below, above = a < b, a > b
    if (below | above).all():  # no tie, no nan: each side wins exactly one of max and min
        if g_min is None:
            assert g_max is not None
            return _masked(above, g_max), _masked(below, g_max)
        if g_max is None:
            return _masked(below, g_min), _masked(above, g_min)
        return _select(below, g_min, g_max), _select(below, g_max, g_min)
    if g_max is None or g_min is None:
        zero = np.zeros_like(g_min if g_max is None else g_max)
        g_max, g_min = (zero, g_min) if g_max is None else (g_max, zero)
    assert g_max is not None and g_min is not None
    equal = a == b
    half_max = np.where(equal, g_max / 2, g_max)
    half_min = np.where(equal, g_min / 2, g_min)
    ga = np.where(below, 0, half_max) + np.where(above, 0, half_min)
    gb = np.where(above, 0, half_max) + np.where(below, 0, half_min)
    return ga, gb


def _backward(pair: _Pair, shape: tuple[int, ...], g_inter: np.ndarray, g_union: np.ndarray,
              g_enclosing: tuple[np.ndarray, np.ndarray] | None = None,
              g_offsets: tuple[np.ndarray, np.ndarray] | None = None,
              g_sizes: tuple[np.ndarray, ...] | None = None) -> dict[str, np.ndarray]:
    """Gradients of both box tensors from those of the pair's quantities.

    ``g_enclosing`` = (g_cw, g_ch), ``g_offsets`` = (g_dx, g_dy) and ``g_sizes`` =
    (g_w1, g_h1, g_w2, g_h2) (CIoU's aspect ratios; each in its box tensor's dtype) are
    optional.

    Each corner's gradient adds up its parts as torch autograd adds them, so that float32
    rounds as in torch: torchvision takes the boxes apart (``unbind``) once for the
    intersection and union (parts: the overlap's edge, the area), once more for the enclosing
    box and the centres (the enclosing box's edge, the centre) and, in CIoU, once more for the
    aspect ratio; torch sums each unbind's parts, then the unbinds, the latest first. With
    float64 boxes1 and float32 boxes2, what torch computes from boxes2 alone (its area, centre
    and aspect ratio) and those steps' backward are float32 arithmetic: a gradient from a
    float64 step reaches them rounded to float32 (torch casts it at the promotion).
    """
    g_inter = g_inter - g_union  # union = A1 + A2 - inter
    # inter = iw·ih where both are positive; elsewhere the masked write gives no gradient
    g_sides = (_masked(pair.overlap, g_inter * pair.ih),
               _masked(pair.overlap, g_inter * pair.iw))
    # (name, its corners, its width and height, the sign of its centre in the offsets)
    boxes = (("boxes1", pair.b1, (pair.w1, pair.h1), 1),
             ("boxes2", pair.b2, (pair.w2, pair.h2), -1))
    g_unions = [g_union.astype(b[0].dtype, copy=False) for _, b, _, _ in boxes]
    # built as (4, M) rows and transposed once at the end, like the corners
    grads = {name: np.empty((4, pair.inter.size), b[0].dtype) for name, b, _, _ in boxes}
    for axis in (0, 1):  # x, then y
        lo, hi = axis, axis + 2
        g_side = g_sides[axis]
        g_span = None if g_enclosing is None else g_enclosing[axis]
        # the overlap starts at the max of the low edges and ends at the min of the high ones;
        # the enclosing box the other way round
        overlap = (_edge_grads(pair.b1[lo], pair.b2[lo], -g_side, None),
                   _edge_grads(pair.b1[hi], pair.b2[hi], None, g_side))
        enclosing = None if g_span is None else (
            _edge_grads(pair.b1[lo], pair.b2[lo], None, -g_span),
            _edge_grads(pair.b1[hi], pair.b2[hi], g_span, None))
        for k, (name, corners, sizes, sign) in enumerate(boxes):
            dtype = corners[0].dtype
            # the width (height) is high - low: its gradient goes to each edge, signed
            g_size = g_unions[k] * sizes[1 - axis]
            # each centre is (low + high) / 2; boxes2's enters the offset with a minus
            g_centre = (None if g_offsets is None
                        else g_offsets[axis].astype(dtype, copy=False) / (2 * sign))
            for i, (edge, low) in enumerate(((lo, True), (hi, False))):
                row = grads[name][edge]
                # the first unbind's parts: the overlap's edge and the size (low edges: -)
                (np.subtract if low else np.add)(overlap[i][k].astype(dtype, copy=False),
                                                 g_size, out=row)
                # the later unbinds' (enclosing box and centre, then CIoU's aspect ratio),
                # added up first
                later = None if enclosing is None else enclosing[i][k].astype(dtype, copy=False)
                if g_centre is not None:
                    later = g_centre if later is None else g_centre + later
                if g_sizes is not None:
                    aspect = g_sizes[2 * k + axis]
                    later = ((-aspect if low else aspect) if later is None
                             else later - aspect if low else aspect + later)
                if later is not None:
                    row += later
    return {name: np.ascontiguousarray(g.T).reshape(shape) for name, g in grads.items()}


# --- IoU-family losses ------------------------------------------------------------------------

def box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, *, eps: float = EPS) -> Terms:
    """Plain IoU loss ``1 - inter / (union + eps)`` of paired boxes.

    torchvision has ``box_iou`` (an N×M matrix, no eps) but no IoU loss; this is the loss with
    torchvision's loss conventions (eps, pairing, upcast, empty mean 0). Boxes that do not
    overlap give exactly 1 and zero gradient — why GIoU, DIoU and CIoU exist.

    Shapes: ``(..., 4), (..., 4) -> (...)``.

    Example:
        >>> box_iou_loss(np.array([0., 0, 2, 2]), np.array([1., 1, 3, 3])).values  # 1 - 1/7
        array(0.857...)
    """
    iou = _Pair(boxes1, boxes2).iou(eps)
    return _values(np.subtract(1, iou, out=iou), boxes1)


def _iou_grads(pair: _Pair, g_iou: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(g_inter, g_union) of ``iou = inter / (union + eps)``."""
    union = pair.union + eps
    g_inter = g_iou / union
    return g_inter, -g_iou * pair.inter / (union * union)


def box_iou_loss_grad(upstream: np.ndarray, boxes1: np.ndarray, boxes2: np.ndarray, *,
                      eps: float = EPS) -> dict[str, np.ndarray]:
    """Through ``inter`` and ``union`` to both boxes (no gradient where they do not overlap)."""
    pair = _Pair(boxes1, boxes2)
    return _backward(pair, boxes1.shape, *_iou_grads(pair, -upstream.reshape(-1), eps))


def generalized_box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, *,
                             eps: float = EPS) -> Terms:
    """GIoU loss (Rezatofighi et al. 2019), as ``torchvision.ops.generalized_box_iou_loss``.

    ``1 - iou + (Ac - union) / (Ac + eps)`` with ``iou = inter / (union + eps)`` and ``Ac`` the
    area of the smallest enclosing box. Identical boxes give ≈2.5e-8 (eps), zero-area
    identical boxes 1.

    Shapes: ``(..., 4), (..., 4) -> (...)``.
    """
    pair = _Pair(boxes1, boxes2)
    miou = pair.iou(eps)
    cw, ch = pair.enclosing
    area_c = cw * ch
    penalty = area_c - pair.union
    penalty /= np.add(area_c, eps, out=area_c)
    miou -= penalty
    return _values(np.subtract(1, miou, out=miou), boxes1)


def generalized_box_iou_loss_grad(upstream: np.ndarray, boxes1: np.ndarray,
                                  boxes2: np.ndarray, *, eps: float = EPS
                                  ) -> dict[str, np.ndarray]:
    """The IoU term's gradient plus the penalty's, through the union and the enclosing box."""
    g = upstream.reshape(-1)
    pair = _Pair(boxes1, boxes2)
    cw, ch = pair.enclosing
    area_c = cw * ch
    denominator = area_c + eps
    # loss = 1 - iou + (Ac - union) / (Ac + eps)
    g_penalty = g / denominator
    g_area_c = g_penalty - g * (area_c - pair.union) / (denominator * denominator)
    g_inter, g_union = _iou_grads(pair, -g, eps)
    return _backward(pair, boxes1.shape, g_inter, g_union - g_penalty,
                     g_enclosing=(g_area_c * ch, g_area_c * cw))


def distance_box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, *,
                          eps: float = EPS) -> Terms:
    """DIoU loss (Zheng et al. 2020), as ``torchvision.ops.distance_box_iou_loss``.

    ``1 - iou + ρ² / (c² + eps)``: ρ² the squared distance between the centres, c² the squared
    diagonal of the smallest enclosing box. Zero-area identical boxes give 1.

    Shapes: ``(..., 4), (..., 4) -> (...)``.
    """
    return _values(_Pair(boxes1, boxes2).diou(eps)[0], boxes1)


def _diou_grads(pair: _Pair, g: np.ndarray, eps: float) -> dict[str, Any]:
    """``_backward``'s arguments for the DIoU loss with upstream ``g``."""
    _, _, dist, diag = pair.diou(eps)
    g_dist = g / diag
    g_diag = -g * dist / (diag * diag)
    cw, ch = pair.enclosing
    dx, dy = pair.offsets
    g_inter, g_union = _iou_grads(pair, -g, eps)
    return {"g_inter": g_inter, "g_union": g_union,
            "g_enclosing": (g_diag * (2 * cw), g_diag * (2 * ch)),
            "g_offsets": (g_dist * (2 * dx), g_dist * (2 * dy))}


def distance_box_iou_loss_grad(upstream: np.ndarray, boxes1: np.ndarray, boxes2: np.ndarray,
                               *, eps: float = EPS) -> dict[str, np.ndarray]:
    """The IoU term's gradient plus ``ρ²/(c² + eps)``'s, through the centres and the enclosing
    box."""
    pair = _Pair(boxes1, boxes2)
    return _backward(pair, boxes1.shape, **_diou_grads(pair, upstream.reshape(-1), eps))


def _ciou_parts(pair: _Pair, eps: float) -> tuple[np.ndarray, ...]:
    """(DIoU loss at eps=1e-7, α, atan difference s, r1 = w1/h1, r2 = w2/h2) with
    ``v = (4/π²)·s²`` and ``α = v / (1 - iou + v + eps)``."""
    diou, iou, _, _ = pair.diou(EPS)  # torchvision's quirk: the inner DIoU keeps eps=1e-7
    r1, atan1 = _aspect(pair.w1, pair.h1)
    r2, atan2 = _aspect(pair.w2, pair.h2)  # boxes2's dtype: float32 beside float64 boxes1
    s = np.subtract(atan2, atan1, out=atan1)  # into boxes1's: the wider
    v = s * s
    v *= ASPECT
    alpha = np.subtract(1, iou, out=iou)
    alpha += v
    alpha += eps
    np.divide(v, alpha, out=alpha)
    return diou, alpha, s, r1, r2


def complete_box_iou_loss(boxes1: np.ndarray, boxes2: np.ndarray, *,
                          eps: float = EPS) -> Terms:
    """CIoU loss (Zheng et al. 2020), as ``torchvision.ops.complete_box_iou_loss``.

    ``DIoU + α·v`` with ``v = (4/π²)(atan(w_g/h_g) - atan(w_p/h_p))²`` (``boxes2`` is the
    ground truth g) and ``α = v / (1 - iou + v + eps)``. torchvision's quirk is kept: the inner
    DIoU (and the iou in α) always use eps=1e-7; ``eps`` only reaches α. Zero-area identical
    boxes give nan (``atan(0/0)``).

    Shapes: ``(..., 4), (..., 4) -> (...)``.
    """
    loss, alpha, s, _, _ = _ciou_parts(_Pair(boxes1, boxes2), eps)
    v = np.multiply(s, s, out=s)
    v *= ASPECT
    loss += np.multiply(alpha, v, out=v)
    return _values(loss, boxes1)


def complete_box_iou_loss_grad(upstream: np.ndarray, boxes1: np.ndarray, boxes2: np.ndarray,
                               *, eps: float = EPS) -> dict[str, np.ndarray]:
    """α is computed under ``no_grad`` in torchvision: a constant here too."""
    g = upstream.reshape(-1)
    pair = _Pair(boxes1, boxes2)
    _, alpha, s, r1, r2 = _ciou_parts(pair, eps)
    g_s = g * alpha * ASPECT * (2 * s)
    g_r1 = -g_s / (r1 * r1 + 1)  # atan' = 1/(1 + r²); atan1 enters with a minus
    # boxes2's atan is float32 beside float64 boxes1: its backward too
    g_r2 = g_s.astype(r2.dtype, copy=False) / (r2 * r2 + 1)
    # torch's division backward: g / b and -g·((a / b) / b), with r = w / h
    g_sizes = (g_r1 / pair.h1, -g_r1 * (r1 / pair.h1),
               g_r2 / pair.h2, -g_r2 * (r2 / pair.h2))
    return _backward(pair, boxes1.shape, **_diou_grads(pair, g, EPS), g_sizes=g_sizes)


# --- sigmoid focal loss -----------------------------------------------------------------------

def _focal_parts(inputs: np.ndarray, targets: np.ndarray, alpha: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(p = σ(x), ce = BCE-with-logits, q = 1 - p_t, α_t or None when alpha < 0), flat (NumPy
    turns results of 0-d operands into scalars). In place where possible: at 1e6 elements
    fresh temporaries cost as much as the arithmetic."""
    x, t = inputs.reshape(-1), targets.reshape(-1)
    # torch's sigmoid, 1 / (1 + e^-x): e^-x overflows to inf for very negative x, giving 0
    p = np.negative(x)
    np.exp(p, out=p)
    p += 1
    np.reciprocal(p, out=p)
    # torch's BCE-with-logits: (1 - t)·x - log σ(x), log σ(x) = min(x, 0) - log1p(e^-|x|)
    not_t = np.subtract(1, t)
    ce = np.multiply(not_t, x)
    scratch = np.abs(x)
    np.negative(scratch, out=scratch)
    np.exp(scratch, out=scratch)
    ce += np.log1p(scratch, out=scratch)
    ce -= np.minimum(x, 0, out=scratch)
    # q = 1 - (p·t + (1 - p)(1 - t)), rounded as torch rounds it
    q = np.multiply(p, t)
    one_minus_p = np.subtract(1, p, out=scratch)
    q += np.multiply(one_minus_p, not_t, out=one_minus_p)
    np.subtract(1, q, out=q)
    if alpha < 0:
        return p, ce, q, None
    alpha_t = np.multiply(not_t, 1 - alpha, out=not_t)
    alpha_t += np.multiply(t, alpha, out=scratch)
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
    _, loss, q, alpha_t = _focal_parts(inputs, targets, alpha)
    q **= gamma
    loss *= q
    if alpha_t is not None:
        loss *= alpha_t
    return Terms(loss.reshape(inputs.shape))


def sigmoid_focal_loss_grad(upstream: np.ndarray, inputs: np.ndarray, targets: np.ndarray, *,
                            alpha: float = 0.25, gamma: float = 2.0) -> dict[str, np.ndarray]:
    """torch autograd through torchvision's formula: BCE-with-logits' own backward
    (``σ(x) - t`` for x, ``-x`` for t), ``pow``'s (zero gradient when γ = 0) and sigmoid's
    (``p(1 - p)``)."""
    shape = inputs.shape
    p, ce, q, alpha_t = _focal_parts(inputs, targets, alpha)
    x, t, upstream = inputs.reshape(-1), targets.reshape(-1), upstream.reshape(-1)
    not_t, one_minus_p = 1 - t, 1 - p
    modulator = q ** gamma
    g_loss = upstream if alpha_t is None else upstream * alpha_t
    g_ce = g_loss * modulator
    if gamma == 0:
        g_pt = np.zeros_like(q)
    else:  # p_t = p·t + (1 - p)(1 - t), q = 1 - p_t
        g_pt = g_loss * ce
        g_pt *= -gamma * q ** (gamma - 1)
    # through p: (g·t - g·(1 - t)), then sigmoid's backward g·(1 - p)·p, grouped as torch does
    g_p = g_pt * t
    g_p -= np.multiply(g_pt, not_t, out=not_t)
    g_p *= one_minus_p
    g_p *= p
    # targets through p_t: g·p - g·(1 - p)
    g_t = g_pt * p
    g_t -= np.multiply(g_pt, one_minus_p, out=one_minus_p)
    # BCE-with-logits' own backward: (σ(x) - t)·g for x, -x·g for t
    g_inputs = np.subtract(p, t, out=p)
    g_inputs *= g_ce
    g_inputs += g_p
    g_targets = np.multiply(g_ce, x, out=g_ce)
    np.negative(g_targets, out=g_targets)
    g_targets += g_t
    if alpha_t is not None:  # α_t = α·t + (1 - α)(1 - t)
        g_alpha_t = np.multiply(ce, modulator, out=ce)
        g_alpha_t *= upstream
        g_t = g_alpha_t * alpha
        g_t -= np.multiply(g_alpha_t, 1 - alpha, out=g_alpha_t)
        g_targets += g_t
    return {"inputs": g_inputs.reshape(shape), "targets": g_targets.reshape(shape)}


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


def _register_box_loss(name: str, fn: LossFn, grad: GradFn, torch: str) -> None:
    tensors = tuple(
        TensorSpec(key, role, "(..., 4) xyxy; (N, 4), (4,) or any leading dims", kind=Kind.REAL,
                   differentiable=True, batch_ndim=2,
                   description=f"{role} boxes (x1, y1, x2, y2) with 0 <= x1 < x2 and "
                               "0 <= y1 < y2; integers and float16 are upcast to float32",
                   dims=(("N", 4), (4,), (ANY, 4)), values=NON_NEGATIVE)
        for key, role in (("boxes1", "input"), ("boxes2", "target")))
    register(LossSpec(name, fn, tensors, (REDUCTION, BOX_EPS), torch=torch, family=FAMILY,
                      check=_check_boxes, grad=grad, empty_mean=0.0, keeps_dtypes=True))


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
    (TensorSpec("inputs", "input", "(*)", differentiable=True, description="logits",
                dims=ANY_SHAPE),
     TensorSpec("targets", "target", "same shape as inputs", differentiable=True,
                description="binary (or soft) labels in [0, 1]", dims=ANY_SHAPE,
                values=PROBABILITY)),
    (REDUCTION,
     OptionSpec("alpha", float, 0.25, "weight of the positive class in [0, 1]; -1 disables "
                "the weighting"),
     OptionSpec("gamma", float, 2.0, "exponent of the modulating factor (1 - p_t)")),
    torch="torchvision.ops.sigmoid_focal_loss", family=FAMILY, check=_check_focal,
    grad=sigmoid_focal_loss_grad))
