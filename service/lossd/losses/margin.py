"""Margin losses: hinge-type penalties on scores, pairs, rankings and embeddings.

Every function returns :class:`Terms` whose ``values`` are torch's ``reduction='none'`` output
(all of these losses' means are plain means); gradients are vector-Jacobian products with
``upstream``. Where torch clamps with ``clamp_min`` the gradient passes at the kink (its backward
is ``where(x >= 0, grad, 0)``); the C kernels of multi_margin and multilabel_margin only count a
term when ``z > 0``, so their gradient is 0 there, and a nan score contributes nothing.

Labels of ``hinge_embedding`` and ``cosine_embedding`` are only ever compared with ±1, so the
checks turn them into codes {1, -1, 0 (= anything else)}: exact, and they then take no part in
dtype promotion (torch's result has the inputs' dtype whatever the labels' dtype is).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._checks import (
    broadcast_shape,
    check_index_range,
    check_min_ndim,
    check_ndim,
    check_same_dtype,
    check_same_shape,
    check_shape,
    fail,
    same_shapes,
    shape_str,
    unbroadcast,
)
from ._parallel import keep, piecewise
from ._reduce import Terms
from ._spec import (
    ANY,
    ANY_SHAPE,
    CLASS_INDEX,
    NUMERIC_DTYPES,
    SIGNS,
    Kind,
    LossSpec,
    OptionSpec,
    TensorSpec,
    Values,
    reduction_option,
    register,
)

FAMILY = "margin"
REDUCTION = reduction_option()
SCORE_DTYPES = ("float32", "float64")  # torch's multi(label)_margin kernels have no float16

Arrays = dict[str, np.ndarray]


def _label_codes(labels: np.ndarray) -> np.ndarray:
    """1 where the label is 1, -1 where it is -1, 0 for anything else (nan included)."""
    codes: np.ndarray = (labels == 1).astype(np.int8) - (labels == -1).astype(np.int8)
    return codes


def _expand(per_sample: np.ndarray, ndim: int) -> np.ndarray:
    """Append unit axes so a per-sample array broadcasts against ``ndim``-D features."""
    return per_sample.reshape(per_sample.shape + (1,) * (ndim - per_sample.ndim))


def _relu(z: np.ndarray) -> np.ndarray:
    """``max(z, 0)`` with nan kept (``clip`` is several times faster than ``maximum``)."""
    return np.asarray(np.clip(z, 0, np.inf))


def _clamp_pass(z: np.ndarray) -> np.ndarray:
    """Mask of torch's ``clamp_min(z, 0)`` backward: 1 where ``z >= 0`` (kink included)."""
    return (z >= 0).astype(z.dtype)


# --- hinge_embedding --------------------------------------------------------------------------

def _check_hinge_embedding(arrays: Arrays, options: dict[str, Any]) -> Arrays:
    broadcast_shape("target", arrays["target"], "input", arrays["input"])
    arrays["target"] = _label_codes(arrays["target"])
    return arrays


def hinge_embedding_loss(input: np.ndarray, target: np.ndarray, *,
                         margin: float = 1.0) -> Terms:
    """Hinge embedding (torch.nn.HingeEmbeddingLoss): ``x`` where ``y = 1``, ``max(0, m - x)``
    where ``y = -1``.

    Shapes: ``input`` ``(*)``, ``target`` broadcastable with it (torch broadcasts both ways).
    Any label other than ±1 (0, 2, nan) gets BOTH terms, ``x + max(0, m - x)``, as in torch.

    Example:
        >>> hinge_embedding_loss(np.array([0.3, 0.3]), np.array([1., -1.])).values
        array([0.3, 0.7])
    """
    own = keep(input, target != -1)
    own += keep(_relu(margin - input), target != 1)
    return Terms(own)


def hinge_embedding_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                              margin: float = 1.0) -> dict[str, np.ndarray]:
    """``1{y != -1} - 1{y != 1}·1{m - x >= 0}``: the gradient passes at the kink ``x = m``."""
    passes = (target != 1) & (margin - input >= 0)
    local = np.subtract(target != -1, passes, dtype=input.dtype)
    local *= upstream
    return {"input": unbroadcast(local, input.shape)}


# --- soft_margin ------------------------------------------------------------------------------

def _check_soft_margin(arrays: Arrays, options: dict[str, Any]) -> Arrays:
    """torch writes the result into input's shape and dtype: target must broadcast to input."""
    x, y = arrays["input"], arrays["target"]
    if broadcast_shape("target", y, "input", x) != x.shape:
        raise fail("target", f"must broadcast to input's shape {shape_str(x.shape)}; "
                             f"got {shape_str(y.shape)}")
    arrays["target"] = y.astype(x.dtype, copy=False)
    return arrays


def soft_margin_loss(input: np.ndarray, target: np.ndarray) -> Terms:
    """Soft margin (torch.nn.SoftMarginLoss): ``log(1 + exp(-y·x))`` elementwise.

    Shapes: ``input`` ``(*)``, ``target`` broadcastable to it; the mean is over all elements.
    Computed literally as torch does, NOT in the stable softplus form: ``-y·x`` beyond the
    exp range overflows to inf exactly where torch's does (x = -1000, y = 1 gives inf).
    """
    def formula(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        values: np.ndarray = np.log1p(np.exp(-(x * y)))
        return values

    return Terms(piecewise(formula, input, target))


def soft_margin_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray
                          ) -> dict[str, np.ndarray]:
    """``-y·z/(1 + z)`` with ``z = exp(-y·x)`` (torch's backward; nan where z overflows)."""
    def formula(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
        z = np.exp(-(x * y))
        grad: np.ndarray = -y * z / (1 + z) * g
        return grad

    return {"input": piecewise(formula, input, target, upstream)}


# --- margin_ranking ---------------------------------------------------------------------------

def _check_margin_ranking(arrays: Arrays, options: dict[str, Any]) -> None:
    x1, x2, y = arrays["input1"], arrays["input2"], arrays["target"]
    if not x1.ndim == x2.ndim == y.ndim:
        raise fail("target", f"input1, input2 and target must have the same ndim; got "
                             f"{shape_str(x1.shape)}, {shape_str(x2.shape)} and "
                             f"{shape_str(y.shape)}")
    try:
        np.broadcast_shapes(x1.shape, x2.shape, y.shape)
    except ValueError:
        raise fail("target", f"input1 {shape_str(x1.shape)}, input2 {shape_str(x2.shape)} and "
                             f"target {shape_str(y.shape)} cannot be broadcast together"
                   ) from None


def margin_ranking_loss(input1: np.ndarray, input2: np.ndarray, target: np.ndarray, *,
                        margin: float = 0.0) -> Terms:
    """Margin ranking (torch.nn.MarginRankingLoss): ``max(0, -y·(x1 - x2) + margin)``.

    Shapes: ``(N)`` or ``()`` (torch accepts any shapes of equal ndim and broadcasts them).
    ``y = 0`` gives ``margin``.

    Example:
        >>> margin_ranking_loss(np.array([1.]), np.array([2.]), np.array([1.])).values
        array([1.])
    """
    return Terms(_relu(-target * (input1 - input2) + margin))


def margin_ranking_loss_grad(upstream: np.ndarray, input1: np.ndarray, input2: np.ndarray,
                             target: np.ndarray, *, margin: float = 0.0
                             ) -> dict[str, np.ndarray]:
    """torch differentiates all three tensors, the target too: ``-(x1 - x2)`` where active."""
    diff = input1 - input2
    g = _clamp_pass(-target * diff + margin) * upstream
    return {"input1": unbroadcast(-target * g, input1.shape),
            "input2": unbroadcast(target * g, input2.shape),
            "target": unbroadcast(-diff * g, target.shape)}


# --- cosine_embedding -------------------------------------------------------------------------

# torch adds EPSILON (Loss.cpp) to each squared norm inside the sqrt; it is a float constant,
# so a float64 call adds 1e-12 rounded to float32 (9.99999996e-13), which a zero vector shows
COSINE_EPS = float(np.float32(1e-12))


def _check_cosine_embedding(arrays: Arrays, options: dict[str, Any]) -> Arrays:
    x1, x2, y = arrays["input1"], arrays["input2"], arrays["target"]
    check_ndim("input1", x1, (1, 2), "(N, D) or (D)")
    check_same_shape("input2", x2, "input1", x1)
    check_shape("target", y, x1.shape[:-1], f"input1 {shape_str(x1.shape)}")
    arrays["target"] = _label_codes(y)
    return arrays


def _cosine(input1: np.ndarray, input2: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cos, denominator, ‖x1‖² + eps, ‖x2‖² + eps) over the last axis, as torch computes."""
    dot = np.einsum("...d,...d->...", input1, input2)
    sq1 = np.einsum("...d,...d->...", input1, input1) + COSINE_EPS
    sq2 = np.einsum("...d,...d->...", input2, input2) + COSINE_EPS
    denominator = np.sqrt(sq1 * sq2)
    return np.asarray(dot / denominator), denominator, sq1, sq2


def cosine_embedding_loss(input1: np.ndarray, input2: np.ndarray, target: np.ndarray, *,
                          margin: float = 0.0) -> Terms:
    """Cosine embedding (torch.nn.CosineEmbeddingLoss): ``1 - cos`` where ``y = 1``,
    ``max(0, cos - margin)`` where ``y = -1``, 0 for any other label.

    ``cos = Σ x1·x2 / sqrt((‖x1‖² + 1e-12)(‖x2‖² + 1e-12))``, so a zero vector has cos 0.
    Shapes: ``input1``, ``input2`` ``(N, D)`` with ``target`` ``(N)``, or ``(D)`` with ``()``.
    """
    cos = _cosine(input1, input2)[0]
    zero = cos.dtype.type(0)
    return Terms(np.asarray(np.where(target == 1, 1 - cos, zero)
                            + np.where(target == -1, np.maximum(cos - margin, 0), zero)))


def cosine_embedding_loss_grad(upstream: np.ndarray, input1: np.ndarray, input2: np.ndarray,
                               target: np.ndarray, *, margin: float = 0.0
                               ) -> dict[str, np.ndarray]:
    """``∂cos/∂x1 = x2/den - cos·x1/(‖x1‖² + eps)`` (and symmetrically for x2); the labels get
    no gradient (torch only compares them)."""
    cos, denominator, sq1, sq2 = _cosine(input1, input2)
    dcos = (np.where(target == -1, _clamp_pass(cos - margin), 0) - (target == 1)) * upstream
    g, cos = _expand(dcos, input1.ndim), _expand(cos, input1.ndim)
    den, sq1, sq2 = (_expand(a, input1.ndim) for a in (denominator, sq1, sq2))
    return {"input1": g * (input2 / den - cos * input1 / sq1),
            "input2": g * (input1 / den - cos * input2 / sq2)}


# --- multi_margin -----------------------------------------------------------------------------

def _check_multi_margin(arrays: Arrays, options: dict[str, Any]) -> None:
    x, y, weight = arrays["input"], arrays["target"], arrays.get("weight")
    check_ndim("input", x, (1, 2), "(N, C) or (C)")
    if x.shape[-1] == 0:
        raise fail("input", f"needs at least one class; got shape {shape_str(x.shape)}")
    if x.ndim == 2:
        check_shape("target", y, x.shape[:1], f"input {shape_str(x.shape)}")
    elif y.shape not in ((), (1,)):
        raise fail("target", f"must have shape () or (1,) to match input "
                             f"{shape_str(x.shape)}; got {shape_str(y.shape)}")
    check_index_range("target", y, 0, x.shape[-1])
    if weight is not None:
        check_ndim("weight", weight, (1,), "(C)")
        check_shape("weight", weight, x.shape[-1:], f"input {shape_str(x.shape)}")
        check_same_dtype("weight", weight, "input", x)


def _multi_margin_terms(input: np.ndarray, target: np.ndarray, margin: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (N, C), targets (N,), z = margin - x_y + x_i with the target column at 0)."""
    scores = input.reshape(-1, input.shape[-1])
    labels = target.reshape(-1)
    rows = np.arange(labels.size)
    z = (margin - scores[rows, labels])[:, None] + scores
    z[rows, labels] = 0  # the sum runs over i != y
    return scores, labels, z


def multi_margin_loss(input: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None,
                      *, p: int = 1, margin: float = 1.0) -> Terms:
    """Multi-class margin (torch.nn.MultiMarginLoss):
    ``Σ_{i != y} w_y·max(0, margin - x_y + x_i)^p / C``.

    Shapes: ``input`` ``(N, C)`` with ``target`` ``(N)`` int64, or ``(C)`` with ``()``
    (or ``(1,)``, as torch allows). ``weight`` ``(C)``. The mean is a plain mean over samples,
    not normalised by the weights. torch's kernel adds a term only when ``z > 0``, so nan scores
    contribute 0 (``np.fmax`` drops nan the same way).
    """
    _, labels, z = _multi_margin_terms(input, target, margin)
    h = np.fmax(z, 0, out=z)
    if p == 2:
        h *= h
    if weight is not None:
        h *= weight[labels][:, None]
    return Terms((h.sum(axis=1) / input.dtype.type(input.shape[-1])).reshape(target.shape))


def multi_margin_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray,
                           weight: np.ndarray | None = None, *, p: int = 1,
                           margin: float = 1.0) -> dict[str, np.ndarray]:
    """``∂/∂x_i = w_y·p·z^(p-1)/C`` where ``z > 0`` (0 at the kink, like torch); ``∂/∂x_y`` is
    minus their sum. ``weight`` gets no gradient (torch refuses to differentiate it)."""
    scores, labels, z = _multi_margin_terms(input, target, margin)
    local = 2 * np.fmax(z, 0) if p == 2 else (z > 0).astype(z.dtype)
    scale = upstream.reshape(-1) / scores.dtype.type(scores.shape[1])
    if weight is not None:
        scale = scale * weight[labels]
    local *= scale[:, None]
    local[np.arange(labels.size), labels] = -local.sum(axis=1)
    return {"input": local.reshape(input.shape)}


# --- multilabel_margin ------------------------------------------------------------------------

def _check_multilabel_margin(arrays: Arrays, options: dict[str, Any]) -> None:
    x, y = arrays["input"], arrays["target"]
    check_ndim("input", x, (1, 2), "(N, C) or (C)")
    if x.shape[-1] == 0:
        raise fail("input", f"needs at least one class; got shape {shape_str(x.shape)}")
    check_same_shape("target", y, "input", x)
    # torch range-checks every entry, also those after the first -1
    check_index_range("target", y, -1, x.shape[-1])


def _multilabel_margins(input: np.ndarray, target: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``z = 1 - x_{y_j} + x_i`` for every target slot ``j``, class ``i`` and sample.

    Returns (z (L, C, M), labels (L, M)), samples last so that every operation runs along the
    long axis: ``M`` samples, the ``L`` slots the longest sample reads (up to its first -1).
    ``z`` is -inf or nan, never counted, where ``i`` is one of the sample's targets or where
    ``j`` is past its first -1 (padded with the extra label ``C``, whose score is +inf), so
    ``z > 0`` marks exactly the terms torch's kernel counts.
    """
    classes = input.shape[-1]
    scores = np.ascontiguousarray(input.reshape(-1, classes).T)
    labels = np.ascontiguousarray(target.reshape(-1, classes).T)
    slot = np.arange(classes)[:, None]
    # slots are read up to each sample's first -1 (a min over axis 0 stays vectorized where a
    # cumulative mask along it would not)
    first = np.where(labels == -1, slot, classes).min(axis=0, initial=classes)
    width = int(first.max(initial=0))
    labels = np.where(slot[:width] < first, labels[:width], classes)
    infinity = scores.dtype.type(np.inf)
    padded = np.concatenate([scores, np.full((1, scores.shape[1]), infinity)], axis=0)
    z_label = 1 - np.take_along_axis(padded, labels, axis=0)
    np.put_along_axis(padded, labels, -infinity, axis=0)  # a target never plays the i side
    return z_label[:, None, :] + padded[None, :classes, :], labels


def multilabel_margin_loss(input: np.ndarray, target: np.ndarray) -> Terms:
    """Multi-label margin (torch.nn.MultiLabelMarginLoss):
    ``Σ_{j ∈ T} Σ_{i ∉ T} max(0, 1 - (x_{y_j} - x_i)) / C``.

    Shapes: ``input`` ``(N, C)`` or ``(C)``; ``target`` the same shape, int64 class indices read
    up to the first -1 (a leading -1 gives 0). Duplicate targets are counted twice, as in torch.
    An empty batch's mean is nan (torch returns uninitialised memory there). Vectorized over an
    ``(L, C, N)`` block, ``L`` the longest target list: memory grows as torch's time does.
    """
    z = _multilabel_margins(input, target)[0]
    total = np.fmax(z, 0, out=z).sum(axis=(0, 1))  # fmax: a nan z counts 0, like z > 0
    return Terms((total / input.dtype.type(input.shape[-1])).reshape(input.shape[:-1]))


def multilabel_margin_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray
                                ) -> dict[str, np.ndarray]:
    """``+1/C`` to ``x_i`` and ``-1/C`` to ``x_{y_j}`` per counted term (0 at the kink)."""
    classes = input.shape[-1]
    z, labels = _multilabel_margins(input, target)
    counted = z > 0
    samples = labels.shape[1]
    # how often each class was the target side, duplicates accumulating (row C: padding)
    as_target = np.bincount((labels * samples + np.arange(samples)).ravel(),
                            weights=counted.sum(axis=1).ravel(),
                            minlength=(classes + 1) * samples).reshape(classes + 1, samples)
    counts = (counted.sum(axis=0) - as_target[:classes]).astype(input.dtype)
    counts *= upstream.reshape(1, -1) / input.dtype.type(classes)
    return {"input": counts.T.reshape(input.shape)}


# --- triplet margin ---------------------------------------------------------------------------

TRIPLET = ("anchor", "positive", "negative")


def _check_triplet(arrays: Arrays, options: dict[str, Any]) -> None:
    a, pos, neg = (arrays[k] for k in TRIPLET)
    if not a.ndim == pos.ndim == neg.ndim:
        raise fail("anchor", f"anchor, positive and negative must have the same ndim; got "
                             f"{shape_str(a.shape)}, {shape_str(pos.shape)} and "
                             f"{shape_str(neg.shape)}")
    check_min_ndim("anchor", a, 1, "(N, D), (D) or (*, D) with a feature axis")
    check_same_shape("positive", pos, "anchor", a)
    check_same_shape("negative", neg, "anchor", a)
    if options.get("p") == math.inf and a.shape[-1] == 0:  # torch's vector_norm refuses too
        raise fail("anchor", f"the inf norm needs a feature axis D > 0 (the max of nothing "
                             f"has no value); got {shape_str(a.shape)}")


Vjp = Callable[[np.ndarray], np.ndarray]
PairVjp = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _norm(v: np.ndarray, p: float) -> tuple[np.ndarray, Vjp]:
    """‖v‖_p over the last axis, and its vector-Jacobian product (computed only on demand)
    with torch's choices (linalg_vector_norm_backward): 0 where the norm is 0, and for
    ``p = inf`` the gradient shared by the entries that attain the maximum."""
    ndim = v.ndim
    if p == 2:
        norm = np.sqrt(np.einsum("...d,...d->...", v, v))

        def vjp_2(g: np.ndarray) -> np.ndarray:
            grad: np.ndarray = v * _expand(np.divide(g, norm, out=np.zeros_like(norm),
                                                     where=norm != 0), ndim)
            return grad
        return norm, vjp_2
    absolute = np.abs(v)
    if p == 1:
        return absolute.sum(axis=-1), lambda g: np.sign(v) * _expand(g, ndim)
    if p == np.inf:
        norm = absolute.max(axis=-1, initial=0)

        def vjp_max(g: np.ndarray) -> np.ndarray:
            hits = (absolute == _expand(norm, ndim)) | np.isnan(v)
            grad: np.ndarray = (np.sign(v) * hits * _expand(g, ndim)
                                / hits.sum(axis=-1, keepdims=True))
            return grad
        return norm, vjp_max
    norm = np.power(np.power(absolute, p).sum(axis=-1), 1 / p)

    def vjp(g: np.ndarray) -> np.ndarray:
        scaled = np.sign(v) * np.power(absolute, p - 1, out=np.zeros_like(v), where=v != 0)
        n = np.power(norm, p - 1)
        grad: np.ndarray = scaled * _expand(np.divide(g, n, out=np.zeros_like(n),
                                                      where=norm != 0), ndim)
        return grad
    return norm, vjp


def _pairwise(x1: np.ndarray, x2: np.ndarray, p: float, eps: float
              ) -> tuple[np.ndarray, PairVjp]:
    """F.pairwise_distance ``‖x1 - x2 + eps‖_p`` and its vjp onto (x1, x2)."""
    diff = x1 - x2
    diff += eps
    dist, vjp = _norm(diff, p)

    def pair_vjp(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grad = vjp(g)
        return grad, -grad
    return dist, pair_vjp


COSINE_SIMILARITY_EPS = 1e-8  # F.cosine_similarity's default eps
DISTANCES = ("pairwise_distance", "cosine")


def _cosine_distance(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, PairVjp]:
    """``1 - F.cosine_similarity(x1, x2, dim=-1, eps=1e-8)`` and its vjp onto (x1, x2).

    torch divides each vector by ``max(‖x‖, eps)``, the clamp done under no_grad: the
    gradient uses the clamped value but differentiates the norm as if unclamped.
    """
    norm1, vjp1 = _norm(x1, 2)
    norm2, vjp2 = _norm(x2, 2)
    n1 = np.maximum(norm1, COSINE_SIMILARITY_EPS)
    n2 = np.maximum(norm2, COSINE_SIMILARITY_EPS)
    dot = np.einsum("...d,...d->...", x1, x2)

    def pair_vjp(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # d = 1 - dot/(n1 n2): ∂d/∂dot = -1/(n1 n2) and ∂d/∂n1 = dot/(n1² n2) = -c·dot/n1
        c = -g / (n1 * n2)
        return (x2 * _expand(c, x1.ndim) + vjp1(-c * dot / n1),
                x1 * _expand(c, x1.ndim) + vjp2(-c * dot / n2))
    return np.asarray(1 - dot / (n1 * n2)), pair_vjp


def _distance(name: str, x1: np.ndarray, x2: np.ndarray, p: float, eps: float
              ) -> tuple[np.ndarray, PairVjp]:
    return _cosine_distance(x1, x2) if name == "cosine" else _pairwise(x1, x2, p, eps)


def _triplet_values(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                    distance: str, p: float, eps: float, margin: float, swap: bool,
                    upstream: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``max(0, margin + d(a, p) - d(a, n))`` and, given ``upstream``, its gradients.

    With ``swap``, ``d(a, n) <- min(d(a, n), d(p, n))``; torch's minimum sends the gradient to
    the smaller one and splits it in half on a tie.
    """
    d_pos, vjp_pos = _distance(distance, anchor, positive, p, eps)
    d_neg, vjp_neg = _distance(distance, anchor, negative, p, eps)
    d_far = d_neg
    if swap:
        d_swap, vjp_swap = _distance(distance, positive, negative, p, eps)
        d_far = np.minimum(d_neg, d_swap)
    z = margin + d_pos - d_far
    if upstream is None:
        return np.asarray(np.maximum(z, 0)), {}
    g = _clamp_pass(z) * upstream
    far = -g
    if swap:
        far = np.where(d_neg == d_swap, far / 2, far)
        far, far_swap = np.where(d_neg > d_swap, 0, far), np.where(d_neg < d_swap, 0, far)
    a_pos, p_pos = vjp_pos(g)
    a_neg, n_neg = vjp_neg(far)
    grads = {"anchor": a_pos + a_neg, "positive": p_pos, "negative": n_neg}
    if swap:
        p_swap, n_swap = vjp_swap(far_swap)
        grads["positive"] += p_swap
        grads["negative"] += n_swap
    return np.asarray(np.maximum(z, 0)), grads


def triplet_margin_loss(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray, *,
                        margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                        swap: bool = False) -> Terms:
    """Triplet margin (torch.nn.TripletMarginLoss): ``max(0, d(a, p) - d(a, n) + margin)``.

    ``d(x, y) = ‖x - y + eps‖_p`` over the last axis (F.pairwise_distance). With ``swap``,
    ``d(a, n)`` becomes ``min(d(a, n), d(p, n))``. Shapes: all three ``(N, D)`` -> ``(N)``,
    ``(D)`` -> ``()``, ``(*, D)`` -> ``(*)``.
    """
    return Terms(_triplet_values(anchor, positive, negative, "pairwise_distance", p, eps,
                                 margin, swap)[0])


def triplet_margin_loss_grad(upstream: np.ndarray, anchor: np.ndarray, positive: np.ndarray,
                             negative: np.ndarray, *, margin: float = 1.0, p: float = 2.0,
                             eps: float = 1e-6, swap: bool = False) -> dict[str, np.ndarray]:
    """Gradients of all three tensors; the clamp passes at the kink."""
    return _triplet_values(anchor, positive, negative, "pairwise_distance", p, eps, margin,
                           swap, upstream)[1]


def triplet_margin_with_distance_loss(anchor: np.ndarray, positive: np.ndarray,
                                      negative: np.ndarray, *,
                                      distance_function: str = "pairwise_distance",
                                      margin: float = 1.0, swap: bool = False) -> Terms:
    """Triplet margin with a named distance (torch.nn.TripletMarginWithDistanceLoss).

    A callable cannot cross the wire, so ``distance_function`` names one:

    * ``pairwise_distance`` (torch's default for ``None``): ``F.pairwise_distance(x, y)``,
      i.e. ``‖x - y + 1e-6‖_2``;
    * ``cosine``: ``1 - F.cosine_similarity(x, y, dim=-1)`` (eps 1e-8 on each norm).

    Loss ``max(0, margin + d(a, p) - d(a, n))``; shapes as :func:`triplet_margin_loss`.
    """
    return Terms(_triplet_values(anchor, positive, negative, distance_function, 2.0, 1e-6,
                                 margin, swap)[0])


def triplet_margin_with_distance_loss_grad(upstream: np.ndarray, anchor: np.ndarray,
                                           positive: np.ndarray, negative: np.ndarray, *,
                                           distance_function: str = "pairwise_distance",
                                           margin: float = 1.0, swap: bool = False
                                           ) -> dict[str, np.ndarray]:
    """Gradients of all three tensors through the named distance."""
    return _triplet_values(anchor, positive, negative, distance_function, 2.0, 1e-6, margin,
                           swap, upstream)[1]


# --- hinge and squared hinge (Keras / Optax) --------------------------------------------------

def _check_hinge(arrays: Arrays, options: dict[str, Any]) -> Arrays:
    """Keras ``convert_binary_labels_to_hinge``: labels are cast to the input's dtype and, when
    EVERY label of the call is 0 or 1, mapped to ±1 by ``2y - 1``. Done here, per call, so that
    batching calls together cannot change the decision."""
    x, y = arrays["input"], arrays["target"]
    check_min_ndim("input", x, 1, "(N, D), (D) or (*, D) with a feature axis")
    check_same_shape("target", y, "input", x)
    y = y.astype(x.dtype)
    if np.all((y == 0) | (y == 1)):
        y = 2 * y - 1
    arrays["target"] = y
    return arrays


def _hinge_margins(input: np.ndarray, target: np.ndarray) -> np.ndarray:
    return _relu(1 - target * input)


def hinge_loss(input: np.ndarray, target: np.ndarray) -> Terms:
    """Hinge (Keras ``Hinge``; Optax ``hinge_loss`` averaged): ``mean_last(max(0, 1 - y·x))``.

    Not in torch. Per sample, the mean over the last axis: ``(N, D)`` -> ``(N)``, ``(D)`` ->
    ``()``, ``(*, D)`` -> ``(*)``; then ``mean`` over samples equals Keras's
    ``sum_over_batch_size``. Labels are ±1; labels that are all 0/1 become ±1 as in Keras
    (keras/src/losses/losses.py ``hinge`` and ``convert_binary_labels_to_hinge``; Optax's
    ``hinge_loss`` in optax/losses/_classification.py is the unaveraged elementwise term). The
    labels get no gradient. ``D = 0`` gives nan (mean of nothing).

    Example:
        >>> hinge_loss(np.array([[0.5, -2.]]), np.array([[1., -1.]])).values
        array([0.25])
    """
    margins = _hinge_margins(input, target)
    # einsum sums short rows several times faster than sum(axis=-1)
    return Terms(np.asarray(np.einsum("...d->...", margins) / input.dtype.type(input.shape[-1])))


def hinge_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """``-y/D`` where ``1 - y·x >= 0`` (the gradient passes at the kink, like clamp_min and TF's
    maximum, which sends ties to its first argument)."""
    local = -target * _clamp_pass(1 - target * input)
    return {"input": local * _expand(upstream / input.dtype.type(input.shape[-1]), input.ndim)}


def squared_hinge_loss(input: np.ndarray, target: np.ndarray) -> Terms:
    """Squared hinge (Keras ``SquaredHinge``): ``mean_last(max(0, 1 - y·x)²)``.

    Not in torch; shapes, labels and citations as :func:`hinge_loss`
    (keras/src/losses/losses.py ``squared_hinge``).
    """
    margins = _hinge_margins(input, target)
    return Terms(np.asarray(np.einsum("...d,...d->...", margins, margins)
                            / input.dtype.type(input.shape[-1])))


def squared_hinge_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray
                            ) -> dict[str, np.ndarray]:
    """``-2y·max(0, 1 - y·x)/D``; 0 where ``1 - y·x`` is nan (clamp_min's backward masks it)."""
    margins = 1 - target * input
    local = keep(-2 * target * margins, margins >= 0)
    return {"input": local * _expand(upstream / input.dtype.type(input.shape[-1]), input.ndim)}


# --- registry ---------------------------------------------------------------------------------

LABELS: dict[str, Any] = dict(kind=Kind.REAL, values=SIGNS, sets_dtype=False,
                              description="labels, ±1 (compared only; no gradient)")
PER_SAMPLE = (("N",), ())
SCORES = (("N", "C"), ("C",))
EMBEDDINGS = (("N", "D"), ("D",), (ANY, "D"))
MARGIN_0 = OptionSpec("margin", float, 0.0, "margin of the hinge")
MARGIN_1 = OptionSpec("margin", float, 1.0, "margin of the hinge")
POSITIVE_MARGIN = OptionSpec("margin", float, 1.0, "margin between the two distances (> 0)",
                             minimum=0.0, exclusive_minimum=True)
SWAP = OptionSpec("swap", bool, False, "use min(d(a, n), d(p, n)) as the negative distance")
TRIPLET_TENSORS = tuple(
    TensorSpec(name, name, "(N, D), (D) or (*, D)", kind=Kind.REAL, dtypes=NUMERIC_DTYPES,
               differentiable=True, batch_ndim=2,
               description=f"{name} embeddings; integers promoted", dims=EMBEDDINGS)
    for name in TRIPLET)

register(LossSpec(
    "hinge_embedding", hinge_embedding_loss,
    (TensorSpec("input", "input", "(*)", differentiable=True, description="distances or scores",
                dims=ANY_SHAPE),
     TensorSpec("target", "target", "(*), broadcastable with input", dims=ANY_SHAPE,
                **LABELS)),
    (REDUCTION, MARGIN_1), torch="torch.nn.functional.hinge_embedding_loss", family=FAMILY,
    check=_check_hinge_embedding, grad=hinge_embedding_loss_grad, batchable=same_shapes))

register(LossSpec(
    "soft_margin", soft_margin_loss,
    (TensorSpec("input", "input", "(*)", differentiable=True, description="scores",
                dims=ANY_SHAPE),
     TensorSpec("target", "target", "(*), broadcastable to input", kind=Kind.REAL,
             description="labels, ±1 (torch does not differentiate them)", dims=ANY_SHAPE,
             values=SIGNS, sets_dtype=False)),
    (REDUCTION,), torch="torch.nn.functional.soft_margin_loss", family=FAMILY,
    check=_check_soft_margin, grad=soft_margin_loss_grad, batchable=same_shapes))

register(LossSpec(
    "margin_ranking", margin_ranking_loss,
    (TensorSpec("input1", "input", "(N) or ()", kind=Kind.REAL, dtypes=NUMERIC_DTYPES,
             differentiable=True,
             description="scores of the first items", dims=PER_SAMPLE),
     TensorSpec("input2", "input", "(N) or ()", kind=Kind.REAL, dtypes=NUMERIC_DTYPES,
             differentiable=True,
             description="scores of the second items", dims=PER_SAMPLE),
     TensorSpec("target", "target", "(N) or ()", kind=Kind.REAL, dtypes=NUMERIC_DTYPES,
             differentiable=True,
             description="1 if input1 should rank higher, -1 otherwise (torch differentiates "
                         "it too)", dims=PER_SAMPLE, values=SIGNS)),
    (REDUCTION, MARGIN_0), torch="torch.nn.functional.margin_ranking_loss", family=FAMILY,
    check=_check_margin_ranking, grad=margin_ranking_loss_grad, batchable=same_shapes))

register(LossSpec(
    "cosine_embedding", cosine_embedding_loss,
    (TensorSpec("input1", "input", "(N, D) or (D)", kind=Kind.REAL, differentiable=True,
             batch_ndim=2, description="first embeddings; integers and bool promoted",
             dims=EMBEDDINGS[:2]),
     TensorSpec("input2", "input", "(N, D) or (D)", kind=Kind.REAL, differentiable=True,
             batch_ndim=2, description="second embeddings; integers and bool promoted",
             dims=EMBEDDINGS[:2]),
     TensorSpec("target", "target", "(N) or ()", dims=PER_SAMPLE, **LABELS)),
    (REDUCTION, MARGIN_0), torch="torch.nn.functional.cosine_embedding_loss", family=FAMILY,
    check=_check_cosine_embedding, grad=cosine_embedding_loss_grad))

register(LossSpec(
    "multi_margin", multi_margin_loss,
    (TensorSpec("input", "input", "(N, C) or (C)", dtypes=SCORE_DTYPES, differentiable=True,
             batch_ndim=2, description="class scores", dims=SCORES),
     TensorSpec("target", "target", "(N) or ()", kind=Kind.INDEX, dtypes=("int64",),
             description="class indices in [0, C)", dims=PER_SAMPLE, values=CLASS_INDEX),
     TensorSpec("weight", "weight", "(C)", dtypes=SCORE_DTYPES, optional=True, batch_axis=None,
             description="per-class weight of each target's terms (input's dtype)",
             dims=(("C",),))),
    (REDUCTION,
     OptionSpec("p", int, 1, "exponent of the hinge (1 or 2)", choices=(1, 2)),
     MARGIN_1), torch="torch.nn.functional.multi_margin_loss", family=FAMILY,
    check=_check_multi_margin, grad=multi_margin_loss_grad))

register(LossSpec(
    "multilabel_margin", multilabel_margin_loss,
    (TensorSpec("input", "input", "(N, C) or (C)", dtypes=SCORE_DTYPES, differentiable=True,
             batch_ndim=2, description="class scores", dims=SCORES),
     TensorSpec("target", "target", "same shape as input", kind=Kind.INDEX, dtypes=("int64",),
             batch_ndim=2, description="target classes, read up to the first -1",
             dims=SCORES, values=Values(-1, "C", high_open=True, integer=True))),
    (REDUCTION,), torch="torch.nn.functional.multilabel_margin_loss", family=FAMILY,
    check=_check_multilabel_margin, grad=multilabel_margin_loss_grad))

register(LossSpec(
    "triplet_margin", triplet_margin_loss, TRIPLET_TENSORS,
    (REDUCTION, POSITIVE_MARGIN,
     OptionSpec("p", float, 2.0, "norm degree of the pairwise distance (> 0, inf allowed)",
                minimum=0.0, exclusive_minimum=True),
     OptionSpec("eps", float, 1e-6, "added to the difference before the norm"),
     SWAP), torch="torch.nn.functional.triplet_margin_loss", family=FAMILY,
    check=_check_triplet, grad=triplet_margin_loss_grad))

register(LossSpec(
    "triplet_margin_with_distance", triplet_margin_with_distance_loss, TRIPLET_TENSORS,
    (REDUCTION,
     OptionSpec("distance_function", str, "pairwise_distance",
                "named distance: pairwise_distance (torch's default) or cosine "
                "(1 - cosine_similarity)", choices=DISTANCES),
     POSITIVE_MARGIN, SWAP),
    torch="torch.nn.functional.triplet_margin_with_distance_loss", family=FAMILY,
    check=_check_triplet, grad=triplet_margin_with_distance_loss_grad))

HINGE_TENSORS = (
    TensorSpec("input", "input", "(N, D), (D) or (*, D)", differentiable=True, batch_ndim=2,
            description="scores", dims=EMBEDDINGS),
    TensorSpec("target", "target", "same shape as input", kind=Kind.REAL, batch_ndim=2,
            description="labels ±1, or all 0/1 (converted to ±1 like Keras); no gradient",
            dims=EMBEDDINGS, values=SIGNS, sets_dtype=False))

register(LossSpec(
    "hinge", hinge_loss, HINGE_TENSORS, (REDUCTION,),
    torch="none (Keras Hinge / optax.hinge_loss); oracle: clamp_min(1 - y*x, 0).mean(-1)",
    family=FAMILY, check=_check_hinge, grad=hinge_loss_grad))

register(LossSpec(
    "squared_hinge", squared_hinge_loss, HINGE_TENSORS, (REDUCTION,),
    torch="none (Keras SquaredHinge); oracle: clamp_min(1 - y*x, 0).pow(2).mean(-1)",
    family=FAMILY, check=_check_hinge, grad=squared_hinge_loss_grad))
