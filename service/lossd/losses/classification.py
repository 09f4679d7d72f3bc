"""Classification losses: softmax, log-probability and sigmoid (binary / multi-label) losses.

Shapes follow torch: a class-scored ``input`` is ``(C,)`` (one unbatched sample), ``(N, C)`` or
``(N, C, d1, ..., dK)`` with the classes on axis 1; class-index targets drop that axis
(``()``, ``(N,)``, ``(N, d1, ..., dK)``). The binary losses are elementwise on ``(*)``.
Every function returns :class:`Terms` whose ``values`` are torch's ``reduction='none'`` output;
gradients are vector-Jacobian products with ``upstream`` (shaped like ``values``).

``cross_entropy`` and ``poly1_cross_entropy`` take either class indices or class probabilities
as ``target``; like torch, a target with the input's shape holds probabilities. The registry
casts every non-index tensor to the compute dtype, so index targets arrive here as exact
floating-point integers (validated beforehand: in ``[0, C)`` or equal to ``ignore_index``) and
are turned back into int64 by :func:`_labels`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ._checks import (
    broadcast_shape,
    check_index_range,
    check_min_ndim,
    check_range,
    check_same_dtype,
    check_same_shape,
    check_shape,
    dtype_name,
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
    BFLOAT16,
    CLASS_INDEX,
    FLOAT_DTYPES,
    LOG_PROBABILITY,
    NUMERIC_DTYPES,
    PROBABILITY,
    Kind,
    LossSpec,
    OptionSpec,
    TensorSpec,
    Values,
    reduction_option,
    register,
)

FAMILY = "classification"
INT64_RANGE: dict[str, Any] = {"minimum": float(-2**63), "maximum": float(2**63 - 1)}

# --- helpers: class axis, labels, softmax ------------------------------------------------------


SMALL_CLASSES = 32
CLASS_MAJOR_ROWS = 1024  # below this, the transposed copies cost more than they save


def _batched(input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C, *d)`` input and its target; an unbatched ``(C,)`` sample gets N = 1."""
    if input.ndim == 1:
        return input[None], target[None]
    return input, target


def _class_major(input: np.ndarray) -> bool:
    return (input.ndim == 2 and input.shape[1] < SMALL_CLASSES
            and input.shape[0] >= CLASS_MAJOR_ROWS)


def _layout(input: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, C, *d)`` logits and target for the softmax losses (see :func:`_batched`).

    A 2-D input with fewer than ``SMALL_CLASSES`` classes and at least ``CLASS_MAJOR_ROWS``
    rows is laid out class-major as ``(1, C, N)`` (one transposed copy): NumPy reduces short
    rows one at a time, but long contiguous rows in vectorised passes, which is several times
    faster there.
    """
    if _class_major(input):
        y = np.ascontiguousarray(target.T)[None] if target.ndim == 2 else target[None]
        return np.ascontiguousarray(input.T)[None], y
    return _batched(input, target)


def _per_position(values: np.ndarray, input: np.ndarray) -> np.ndarray:
    """Per-position values in torch's 'none' shape: ``()``, ``(N,)`` or ``(N, d1, ..., dK)``."""
    return values.reshape(input.shape[:1] + input.shape[2:] if input.ndim > 1 else ())


def _like_input(grad: np.ndarray, input: np.ndarray) -> np.ndarray:
    """A gradient computed in :func:`_layout` back in input's shape."""
    return grad[0].T if _class_major(input) else grad.reshape(input.shape)


def _is_probability(input: np.ndarray, target: np.ndarray) -> bool:
    """torch's rule: a target with the input's shape holds class probabilities."""
    return target.shape == input.shape


def _no_classes(input: np.ndarray, target: np.ndarray) -> bool:
    """Class indices over zero classes: the check lets that through only when every target is
    ``ignore_index``, and torch then gives 0 per position, a mean over no targets (nan) and an
    empty gradient."""
    return not _is_probability(input, target) and input.shape[min(1, input.ndim - 1)] == 0


def _classless(fn: Callable[..., Terms]) -> Callable[..., Terms]:
    """``fn`` answering :func:`_no_classes` calls itself: its gathers (class 0 for an ignored
    target, see :func:`_labels`) have no class to read there."""

    @functools.wraps(fn)
    def loss(input: np.ndarray, target: np.ndarray, **options: Any) -> Terms:  # noqa: ANN401
        if not _no_classes(input, target):
            return fn(input, target, **options)
        # label smoothing spreads ε over the C = 0 classes: torch's ε/C is inf, times 0 nan
        fill = np.nan if options.get("label_smoothing", 0.0) > 0 else 0.0
        return Terms(np.full(target.shape, fill, input.dtype),
                     weights=np.zeros(target.shape, input.dtype))

    return loss


def _classless_grad(*weights: str) -> Callable[[Callable[..., dict[str, np.ndarray]]],
                                              Callable[..., dict[str, np.ndarray]]]:
    """The gradient of a :func:`_classless` loss for :func:`_no_classes` calls: input's and
    that of each named per-class tensor given, all empty."""

    def decorate(fn: Callable[..., dict[str, np.ndarray]]) -> Callable[..., dict[str, np.ndarray]]:
        @functools.wraps(fn)
        def grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray,
                 **options: Any) -> dict[str, np.ndarray]:  # noqa: ANN401
            if not _no_classes(input, target):
                return fn(upstream, input, target, **options)
            given = {k: options[k] for k in weights if options.get(k) is not None}
            return {k: np.zeros(v.shape, v.dtype) for k, v in {"input": input, **given}.items()}

        return grad

    return decorate


def _labels(target: np.ndarray, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels ``(N, 1, *d)`` int64 safe to gather with, ``valid`` mask ``(N, *d)``).

    Ignored positions gather class 0; every caller zeroes their contribution with ``valid``.
    The comparison with ``ignore_index`` is exact in the target's dtype: valid classes are small
    integers and ignore_index was matched against the original integers in the check.
    """
    valid = np.asarray(target != ignore_index)
    labels = target if valid.all() else np.where(valid, target, 0)
    return labels.astype(np.int64, copy=False)[:, None], valid


def _flat_index(shape: tuple[int, ...], labels: np.ndarray) -> np.ndarray:
    """Indices into a C-contiguous ``(N, C, *d)`` array, flattened, of ``[n, labels[n], ...]``
    (``labels`` as from :func:`_labels`): one ``take``/``put`` instead of the slower
    ``take_along_axis``/``put_along_axis``."""
    inner = labels[:, 0].size // max(shape[0], 1)
    if inner == 1:  # (N, C): row starts plus labels
        starts = np.arange(0, shape[0] * shape[1], shape[1])
        flat: np.ndarray = starts.reshape(labels[:, 0].shape) + labels[:, 0]
        return flat
    index = labels.reshape(shape[0], inner) * inner
    index += np.arange(shape[0]).reshape(-1, 1) * (shape[1] * inner)
    index += np.arange(inner)
    return index.reshape(labels[:, 0].shape)


def _pick(array: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``array[n, labels[n], ...]`` along the class axis 1 (no one-hot matrix)."""
    if not array.flags.c_contiguous:
        return np.take_along_axis(array, labels, axis=1)[:, 0]
    return np.take(array.reshape(-1), _flat_index(array.shape, labels))


def _ones_or(valid: np.ndarray, weight: np.ndarray | None, dtype: np.dtype
             ) -> np.ndarray | None:
    """The mean's weights of index targets: the picked class weights (or 1) where valid, else
    0; ``None`` (one per value) when there is neither a class weight nor an ignored target."""
    if weight is None:
        return None if valid.all() else valid.astype(dtype)
    return keep(weight, valid)


def _class_sum(array: np.ndarray, vector: np.ndarray | None = None) -> np.ndarray:
    """``Σ_c vector_c · array[:, c, ...]`` (vector defaults to ones); einsum sums short rows
    several times faster than ``sum(axis=1)``."""
    total: np.ndarray = (np.einsum("nc...->n...", array) if vector is None
                         else np.einsum("nc...,c->n...", array, vector))
    return total


def _max_shifted(x: np.ndarray) -> np.ndarray:
    """``x - max`` along the class axis 1: the shift that keeps exp finite in softmax.

    A row holding +inf or only -inf gives nan (inf - inf), as torch's log_softmax does.
    ``initial`` makes the max of an empty class axis -inf instead of an error; rows of a
    non-empty 2-D array are reduced with ``reduceat`` over the flat data (faster than per row).
    """
    if x.ndim == 2 and x.size and x.flags.c_contiguous:
        top = np.maximum.reduceat(x.ravel(), np.arange(0, x.size, x.shape[1]))[:, None]
    else:
        top = x.max(axis=1, keepdims=True, initial=-np.inf)
    shifted: np.ndarray = np.subtract(x, top)
    return shifted


def _shifted_exp(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - max, exp(x - max), Σ exp) along the class axis 1 (the sum keeps that axis)."""
    shifted = _max_shifted(x)
    exp = np.exp(shifted)
    return shifted, exp, _class_sum(exp)[:, None]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """log softmax along axis 1, computed as torch does: ``(x - max) - log Σ exp(x - max)``."""
    shifted = _max_shifted(x)
    shifted -= np.log(_class_sum(np.exp(shifted)))[:, None]
    return shifted


def _class_total(array: np.ndarray) -> np.ndarray:
    """``(C,)``: the sum of ``(N, C, *d)`` over every axis but the class axis 1 (a class
    weight's gradient)."""
    total: np.ndarray = array.sum(axis=(0, *range(2, array.ndim)))
    return total


def _class_vector(vector: np.ndarray, ndim: int) -> np.ndarray:
    """A per-class ``(C,)`` vector shaped to broadcast against ``(N, C, *d)``."""
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


def _log_sigmoid_pair(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log σ(x), log σ(-x)) without overflow: ``min(±x, 0) - log1p(exp(-|x|))``."""
    tail = _log_sigmoid_tail(x)
    return _at_most_zero(x) - tail, _at_most_zero(-x) - tail


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log σ(x) alone, as :func:`_log_sigmoid_pair` computes it."""
    log_sig: np.ndarray = _at_most_zero(x) - _log_sigmoid_tail(x)
    return log_sig


def _log_sigmoid_tail(x: np.ndarray) -> np.ndarray:
    tail = np.asarray(np.abs(x))
    np.negative(tail, out=tail)
    np.exp(tail, out=tail)
    np.log1p(tail, out=tail)
    return tail


def _at_most_zero(x: np.ndarray) -> np.ndarray:
    """``min(x, 0)``, nan kept (``clip`` is several times faster than ``minimum`` with 0)."""
    clipped: np.ndarray = np.clip(x, -np.inf, 0)
    return clipped


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + exp(-x)) as torch computes it; exp overflowing to inf gives the exact
    limit 0, so no branch is needed."""
    out: np.ndarray = np.negative(x, out=np.empty_like(x))
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out


# --- checks ------------------------------------------------------------------------------------

CLASS_INPUT = "(C), (N, C) or (N, C, d1, ..., dK)"
CLASS_INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.uint8))


def _check_class_weight(name: str, weight: np.ndarray | None, classes: int) -> None:
    if weight is not None:
        check_shape(name, weight, (classes,), f"the {classes} classes of input")


def _check_classes(arrays: dict[str, np.ndarray], options: dict[str, Any], *,
                   probabilities: bool = True, weight: str = "weight") -> None:
    """input ``(C)``, ``(N, C)`` or ``(N, C, *d)``; targets, class weights and indices."""
    input, target = arrays["input"], arrays["target"]
    check_min_ndim("input", input, 1, CLASS_INPUT)
    classes = input.shape[1] if input.ndim > 1 else input.shape[0]
    ignore_index = options.get("ignore_index")
    if probabilities and _is_probability(input, target):
        if target.dtype.kind != "f":
            raise fail("target", f"class probabilities (input's shape "
                                 f"{shape_str(input.shape)}) must be floating point; got "
                                 f"{target.dtype}")
        if ignore_index is not None and ignore_index >= 0:
            raise fail("ignore_index", f"is not supported for class probabilities; expected "
                                       f"a negative value; got {ignore_index}", option=True)
    else:
        expected = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()

        def why() -> str:
            shown = shape_str(input.shape)
            also = f", or {shown} for class probabilities" if probabilities else ""
            return f"input {shown} (class indices{also})"
        check_shape("target", target, expected, why)
        if target.dtype not in CLASS_INDEX_DTYPES:
            raise fail("target", f"class indices must be int64 or uint8; got {target.dtype}")
        if target.dtype == np.uint8 and input.ndim > 2:  # torch's nll_loss2d takes int64 only
            raise fail("target", "class indices for a K-dimensional input must be int64 "
                                 "(uint8 only for (C) and (N, C) inputs); got uint8")
        check_index_range("target", target.astype(np.int64, copy=False), 0, classes,
                          ignore=ignore_index)
        given = arrays.get(weight)
        if weight == "weight" and given is not None:  # torch's nll kernel needs input's dtype
            check_same_dtype("weight", given, "input", input)
    _check_class_weight(weight, arrays.get(weight), classes)


def _check_elementwise_weights(arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    """Each named tensor broadcasts to input's shape (torch multiplies in place into it)."""
    shape = arrays["input"].shape
    for name in names:
        if name in arrays and broadcast_shape(name, arrays[name], "input",
                                              arrays["input"]) != shape:
            raise fail(name, f"must broadcast to input's shape {shape_str(shape)}; "
                             f"got {shape_str(arrays[name].shape)}")


def _no_batch_axis(*names: str) -> Callable[[dict[str, np.ndarray]], bool]:
    """Batchable when the broadcast tensors ``names`` do not reach the batch axis 0."""
    def batchable(arrays: dict[str, np.ndarray]) -> bool:
        ndim = arrays["input"].ndim
        return all(arrays[n].ndim < ndim for n in names if n in arrays)
    return batchable


# --- cross entropy -----------------------------------------------------------------------------


@_classless
def cross_entropy(input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None = None,
                  ignore_index: int = -100, label_smoothing: float = 0.0) -> Terms:
    """Softmax cross-entropy (torch.nn.CrossEntropyLoss) on logits, class axis 1.

    Class indices ``y`` (shape of input without the class axis; ``()`` for a ``(C,)`` input),
    with ``p = softmax(x)``, ``ε = label_smoothing`` and class weights ``w`` (default 1)::

        l_i = (1 - ε)·w_{y_i}·(-log p_{i,y_i}) + (ε/C)·Σ_c w_c·(-log p_{ic}),   0 if ignored
        mean = Σ l_i / Σ_{non-ignored} w_{y_i}       (all ignored: 0/0 = nan, like torch)

    and, as torch, the two parts of ``l`` are reduced apart and then added (``Terms.addend``):
    with class weights summing to 0 over the targets, ``inf - inf`` gives nan.

    Class probabilities ``y`` (input's shape): ``y ← (1 - ε)·y + ε/C``, then
    ``l_i = -Σ_c w_c·y_ic·log p_ic`` and ``mean = Σ l_i / (N·d1⋯dK)``, not normalised by w.
    A negative ``label_smoothing`` counts as 0 (torch ignores it silently).

    Edge cases as torch: a +inf logit gives nan; -inf at the target class gives inf, at another
    class a finite loss unless ε > 0 (then inf).

    Example:
        >>> cross_entropy(np.array([[0., 0.]]), np.array([1])).values  # log 2
        array([0.6931...])
    """
    eps = max(label_smoothing, 0.0)
    x, y = _layout(input, target)
    classes = x.shape[1]
    uniform = eps / max(classes, 1)  # ε/C (an empty class axis has nothing to smooth)
    if _is_probability(input, target):
        if eps > 0:
            y = y * (1 - eps) + uniform
        if weight is not None:
            y = y * _class_vector(weight, x.ndim)
        values = _class_sum(_log_softmax(x) * y)
        np.negative(values, out=values)
        # torch's mean divides by input.numel() / C, which is nan over zero classes
        nothing = None if classes else _per_position(np.zeros_like(values), input)
        return Terms(_per_position(values, input), weights=nothing)
    labels, valid = _labels(y, ignore_index)
    shifted = _max_shifted(x)
    picked = _pick(shifted, labels)
    shifted_dot = _class_sum(shifted, weight) if eps > 0 else None
    log_total = np.log(_class_sum(np.exp(shifted, out=shifted)))
    values = log_total - picked  # -log p_y = log Σ exp(x - max) - (x_y - max), as torch rounds
    class_weight = None if weight is None else weight[labels[:, 0]]
    if class_weight is not None:
        values *= class_weight
    smooth = None
    if shifted_dot is not None:
        # -Σ_c w_c log p_c = W·log Σ exp(x - max) - Σ_c w_c (x_c - max); torch reduces
        # (1 - ε)·nll and ε/C·smooth apart and adds them (Terms.addend)
        smooth = log_total * (classes if weight is None else weight.sum())
        smooth -= shifted_dot
        smooth *= uniform
        values *= 1 - eps
    weights = _ones_or(valid, class_weight, x.dtype)
    if weights is not None:  # torch writes 0 for ignored targets, whatever the logits
        for part in (values, smooth):
            if part is not None:
                np.copyto(part, 0, where=~valid)
    return Terms(_per_position(values, input),
                 weights=None if weights is None else _per_position(weights, input),
                 addend=None if smooth is None else _per_position(smooth, input))


@_classless_grad()
def cross_entropy_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                       weight: np.ndarray | None = None, ignore_index: int = -100,
                       label_smoothing: float = 0.0) -> dict[str, np.ndarray]:
    """Through log-softmax: with ``q_c`` the weight of ``-log p_c`` in ``l``,
    ``∂l/∂x = p·Σ_c q_c - q``; probability targets also get ``∂l/∂y_c = -(1 - ε)·w_c·log p_c``
    and, with class weights, ``∂l/∂w_c = -Σ_positions y'_c·log p_c`` (``y'`` the smoothed
    target; the mean divides by the positions, not by w). Torch does not differentiate the
    weight of index targets (its nll kernel refuses), so neither does lossd.
    """
    eps = max(label_smoothing, 0.0)
    x, y = _layout(input, target)
    g = upstream.reshape((x.shape[0],) + x.shape[2:])[:, None]
    classes = x.shape[1]
    uniform = eps / max(classes, 1)
    class_weight = None if weight is None else _class_vector(weight, x.ndim)
    if _is_probability(input, target):
        log_p = _log_softmax(x)
        q = y * (1 - eps) + uniform if eps > 0 else y
        if class_weight is not None:
            q = q * class_weight
        grad_x = np.exp(log_p) * _class_sum(q)[:, None]
        grad_x -= q
        grad_x *= g
        grad_y = log_p * (-(1 - eps) * g)
        grads = {"input": _like_input(grad_x, input)}
        if class_weight is not None:
            grad_y *= class_weight
            smoothed = y * (1 - eps) + uniform if eps > 0 else y
            grads["weight"] = -_class_total(smoothed * log_p * g)
        grads["target"] = _like_input(grad_y, input)
        return grads
    labels, valid = _labels(y, ignore_index)
    _, grad_x, total = _shifted_exp(x)
    g = np.where(valid[:, None], g, 0).astype(x.dtype, copy=False)
    # in torch's order, so that an infinite upstream (a zero Σ w_y) gives its inf and nan:
    # G = g·q per class (the nll part at the label, the smoothing part on every class), then
    # the log-softmax backward p·Σ_c G_c - G
    picked = g * (1 - eps) if weight is None else g * (1 - eps) * weight[labels]
    if eps > 0:
        q = np.empty_like(grad_x)
        q[...] = g * uniform
        if class_weight is not None:
            q *= class_weight
        at_label = np.take_along_axis(q, labels, axis=1)
        at_label += picked
        np.put_along_axis(q, labels, at_label, axis=1)
        grad_x *= _class_sum(q)[:, None] / total
        grad_x -= q
    else:
        grad_x *= picked / total
        at_label = np.take_along_axis(grad_x, labels, axis=1)
        at_label -= picked
        np.put_along_axis(grad_x, labels, at_label, axis=1)
    return {"input": _like_input(grad_x, input)}


# --- negative log-likelihood -------------------------------------------------------------------


@_classless
def nll_loss(input: np.ndarray, target: np.ndarray, *, weight: np.ndarray | None = None,
             ignore_index: int = -100) -> Terms:
    """Negative log-likelihood (torch.nn.NLLLoss; also NLLLoss2d): ``l_i = -w_{y_i}·x_{i,y_i}``.

    ``input`` holds log-probabilities (not checked, like torch) in the shapes of
    :func:`cross_entropy`; ``target`` holds class indices. Ignored targets give 0 and
    ``mean = Σ l_i / Σ_{non-ignored} w_{y_i}`` (nan when that is 0, e.g. all-zero weights).

    Example:
        >>> nll_loss(np.log([[0.25, 0.75]]), np.array([1])).values  # -log 0.75
        array([0.2876...])
    """
    x, y = _batched(input, target)
    labels, valid = _labels(y, ignore_index)
    class_weight = None if weight is None else weight[labels[:, 0]]
    values = np.negative(_pick(x, labels))
    if class_weight is not None:
        values *= class_weight
    if not valid.all():
        values = keep(values, valid)  # torch writes 0 for ignored targets, whatever the input
    weights = _ones_or(valid, class_weight, x.dtype)
    return Terms(_per_position(values, input),
                 weights=None if weights is None else _per_position(weights, input))


@_classless_grad()
def nll_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                  weight: np.ndarray | None = None, ignore_index: int = -100
                  ) -> dict[str, np.ndarray]:
    """``∂l_i/∂x_{i,y_i} = -w_{y_i}``, 0 elsewhere and at ignored positions."""
    x, y = _batched(input, target)
    labels, valid = _labels(y, ignore_index)
    picked = keep(np.negative(upstream.reshape(valid.shape)), valid)
    if weight is not None:
        picked *= weight[labels[:, 0]]
    grad = np.zeros(x.shape, x.dtype)
    np.put(grad.reshape(-1), _flat_index(x.shape, labels), picked)
    return {"input": grad.reshape(input.shape)}


# --- KL divergence -----------------------------------------------------------------------------


def kl_div(input: np.ndarray, target: np.ndarray, *, log_target: bool = False) -> Terms:
    """Pointwise KL divergence (torch.nn.KLDivLoss) with ``input`` as log-probabilities.

    ``log_target=False``: ``l = xlogy(y, y) - y·x`` — a zero target gives 0, a negative one
    nan. ``log_target=True``: ``l = exp(y)·(y - x)``. Shapes ``(*)``; ``target`` broadcasts to
    input's shape. ``batchmean`` divides the sum by ``input.shape[0]`` (not for 0-d input);
    ``mean`` is the plain elementwise mean (torch warns that it is not the true KL).
    """
    def formula(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        values: np.ndarray
        if log_target:
            values = np.exp(y) * (y - x)
        else:
            values = np.where(y == 0, 0, y * np.log(y)) - y * x  # xlogy
        return values

    return Terms(piecewise(formula, input, target))


def kl_div_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                log_target: bool = False) -> dict[str, np.ndarray]:
    """Torch's autograd of its formula: ``∂/∂x = -y``, ``∂/∂y = log y + y/y - x``
    (xlogy's derivative, nan where y = 0 or y < 0); with log targets ``-eʸ`` and
    ``eʸ·(y - x + 1)``."""
    def formula(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if log_target:
            exp = np.exp(y)
            return -exp * g, exp * (y - x + 1) * g
        return -y * g, (np.log(y) + y / y - x) * g

    grad_x, grad_y = piecewise(formula, input, target, upstream, outputs=2)
    return {"input": unbroadcast(grad_x, input.shape), "target": unbroadcast(grad_y, target.shape)}


def _check_kl_div(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    """``target`` broadcasts to input's shape; so batchmean divides by the batch it shows."""
    _check_elementwise_weights(arrays, ("target",))


# --- binary cross entropy ----------------------------------------------------------------------


BCE_EPS = float(np.float32(1e-12))  # torch's EPSILON, a float constant (Loss.cpp)


def binary_cross_entropy(input: np.ndarray, target: np.ndarray, *,
                         weight: np.ndarray | None = None) -> Terms:
    """Binary cross-entropy on probabilities (torch.nn.BCELoss)::

        l = -w·[y·max(log x, -100) + (1 - y)·max(log(1 - x), -100)]

    Torch clamps each log at -100, so x = 0 with y = 1 gives 100, not inf. ``input`` and
    ``target`` have one shape and dtype with values in [0, 1]; ``weight`` broadcasts to it.
    """
    log_x = np.maximum(np.log(input), -100)
    log_1mx = np.maximum(np.log1p(-input), -100)  # torch's kernel uses log1p(-x)
    values = (target - 1) * log_1mx
    values -= target * log_x
    if weight is not None:
        values *= weight
    return Terms(np.asarray(values))


def binary_cross_entropy_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                              weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Torch's backward: ``∂/∂x = w·(x - y) / max(x·(1 - x), ε)`` (±1e12 at the clamp)
    and ``∂/∂y = -w·logit(x) = -w·log(x / (1 - x))`` (±inf at x = 0 or 1).

    ε is torch's EPSILON (Loss.cpp), a float constant: 1e-12 rounded to float32, also in a
    float64 call (where the clamp is reached, the gradient shows the rounding: 3.00000001e11).
    """
    scale = upstream if weight is None else upstream * weight
    grad_x = (input - target) / np.maximum((1 - input) * input, input.dtype.type(BCE_EPS))
    grad_x *= scale
    grad_y = np.log(input / (1 - input))
    grad_y *= -scale
    return {"input": grad_x, "target": grad_y}


def _check_binary_cross_entropy(arrays: dict[str, np.ndarray], options: dict[str, Any]
                                ) -> dict[str, np.ndarray]:
    """Same shape and dtype, values in [0, 1] (nan refused); weight computed in input's dtype."""
    input, target = arrays["input"], arrays["target"]
    check_same_shape("target", target, "input", input)
    check_same_dtype("target", target, "input", input)
    check_range("input", input, 0.0, 1.0)
    check_range("target", target, 0.0, 1.0)
    _check_elementwise_weights(arrays, ("weight",))
    if "weight" in arrays:
        arrays["weight"] = arrays["weight"].astype(input.dtype, copy=False)
    return arrays


def binary_cross_entropy_with_logits(input: np.ndarray, target: np.ndarray, *,
                                     weight: np.ndarray | None = None,
                                     pos_weight: np.ndarray | None = None) -> Terms:
    """Binary cross-entropy on logits (torch.nn.BCEWithLogitsLoss), in torch's stable form::

        l = w·[(1 - y)·x - (1 + (p - 1)·y)·log σ(x)]     (p = pos_weight, default 1)

    which equals ``-w·[p·y·log σ(x) + (1 - y)·log σ(-x)]``. There is no -100 clamp
    (x = -200, y = 1 gives 200) and y is not range-checked. ``weight`` and ``pos_weight``
    broadcast to input's shape (pos_weight ``(C,)`` for ``(N, C)``). Torch's own infinities:
    x = ±inf gives nan where ``0·inf`` appears in this formula (e.g. x = inf, y = 1).
    """
    def formula(x: np.ndarray, y: np.ndarray, *weights: np.ndarray) -> np.ndarray:
        log_sig = _log_sigmoid(x)
        if pos_weight is not None:
            log_sig *= (weights[-1] - 1) * y + 1
        values: np.ndarray = (1 - y) * x
        values -= log_sig
        if weight is not None:
            values *= weights[0]
        return values

    extra = [w for w in (weight, pos_weight) if w is not None]
    return Terms(piecewise(formula, input, target, *extra))


def binary_cross_entropy_with_logits_grad(upstream: np.ndarray, input: np.ndarray,
                                          target: np.ndarray, *,
                                          weight: np.ndarray | None = None,
                                          pos_weight: np.ndarray | None = None
                                          ) -> dict[str, np.ndarray]:
    """Torch's backward: ``∂/∂x = w·[(p·y + 1 - y)·σ(x) - p·y]`` (``σ(x) - y`` without p) and
    ``∂/∂y = w·[log σ(-x) - p·log σ(x)]`` (``-x`` without p)."""
    def formula(x: np.ndarray, y: np.ndarray, g: np.ndarray, *weights: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        scale = g if weight is None else g * weights[0]
        if pos_weight is None:
            grad_x = _sigmoid(x) - y
            grad_y = -x * scale
        else:
            py = weights[-1] * y
            grad_x = (py + 1 - y) * _sigmoid(x) - py
            log_sig, log_sig_neg = _log_sigmoid_pair(x)
            grad_y = (log_sig_neg - weights[-1] * log_sig) * scale
        grad_x *= scale
        return grad_x, grad_y

    extra = [w for w in (weight, pos_weight) if w is not None]
    grad_x, grad_y = piecewise(formula, input, target, upstream, *extra, outputs=2)
    return {"input": grad_x, "target": grad_y}


def _check_binary_with_logits(arrays: dict[str, np.ndarray], options: dict[str, Any]
                              ) -> dict[str, np.ndarray]:
    """Target has input's shape and a dtype at least as wide; weights broadcast to input.

    Torch computes this loss in place in the target's dtype, so a float64 input with a float32
    target gives a float32 loss with float64 gradients; lossd refuses that narrowing instead.
    """
    input, target = arrays["input"], arrays["target"]
    check_same_shape("target", target, "input", input)
    target_dtype, input_dtype = dtype_name(target), dtype_name(input)
    if np.promote_types(input.dtype, target.dtype) != target.dtype or (
            target_dtype == BFLOAT16 != input_dtype):  # bfloat16 holds no other float dtype
        raise fail("target", f"dtype must be at least as wide as input's ({input_dtype}); "
                             f"got {target_dtype}")
    _check_elementwise_weights(arrays, ("weight", "pos_weight"))
    for name in ("weight", "pos_weight"):
        if name in arrays:
            arrays[name] = arrays[name].astype(target.dtype, copy=False)
    return arrays


# --- multi-label soft margin -------------------------------------------------------------------


def multilabel_soft_margin_loss(input: np.ndarray, target: np.ndarray, *,
                                weight: np.ndarray | None = None) -> Terms:
    """Multi-label one-vs-all logistic loss (torch.nn.MultiLabelSoftMarginLoss)::

        l_i = -(1/C)·Σ_c w_c·[y_ic·log σ(x_ic) + (1 - y_ic)·log σ(-x_ic)]

    Classes are on the last axis: ``(N, C) -> (N,)``, ``(C,) -> ()``, ``(N, d, C) -> (N, d)``.
    ``target`` (labels in {0, 1}, any numeric dtype) and ``weight`` (usually ``(C,)``)
    broadcast to input's shape. With C = 0 the loss is 0/0 = nan, as in torch.
    """
    def formula(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        log_sig, log_sig_neg = _log_sigmoid_pair(x)
        log_sig *= y
        log_sig_neg *= 1 - y
        log_sig += log_sig_neg
        return log_sig

    terms = piecewise(formula, input, target)
    if weight is not None:
        terms *= weight
    values = np.einsum("...c->...", terms)  # several times faster than sum(axis=-1) on short rows
    values /= -input.shape[-1]
    return Terms(np.asarray(values))


def multilabel_soft_margin_loss_grad(upstream: np.ndarray, input: np.ndarray,
                                     target: np.ndarray, *, weight: np.ndarray | None = None
                                     ) -> dict[str, np.ndarray]:
    """``∂l_i/∂x_ic = w_c·(σ(x_ic) - y_ic)/C``, ``∂l_i/∂y_ic = -w_c·x_ic/C`` and
    ``∂l_i/∂w_c = -[y_ic·log σ(x_ic) + (1 - y_ic)·log σ(-x_ic)]/C`` (summed where w
    broadcasts)."""
    per_sample = np.asarray(upstream)[..., None] / input.shape[-1]
    scale = per_sample if weight is None else per_sample * weight
    grad_x = _sigmoid(input) - target
    grad_x *= scale
    grads = {"input": grad_x, "target": unbroadcast(-input * scale, target.shape)}
    if weight is not None:
        log_sig, log_sig_neg = _log_sigmoid_pair(input)
        terms = target * log_sig + (1 - target) * log_sig_neg
        grads["weight"] = unbroadcast(-terms * per_sample, weight.shape)
    return grads


def _check_multilabel_soft_margin(arrays: dict[str, np.ndarray], options: dict[str, Any]
                                  ) -> None:
    check_min_ndim("input", arrays["input"], 1, "(C), (N, C) or (N, *, C)")
    _check_elementwise_weights(arrays, ("target", "weight"))


def _multilabel_batchable(arrays: dict[str, np.ndarray]) -> bool:
    return (arrays["target"].shape == arrays["input"].shape
            and _no_batch_axis("weight")(arrays))


# --- beyond torch: PolyLoss and softmax focal loss ---------------------------------------------


@_classless
def poly1_cross_entropy(input: np.ndarray, target: np.ndarray, *, epsilon: float = 2.0,
                        ignore_index: int = -100) -> Terms:
    """Poly-1 cross-entropy (Leng et al. 2022, "PolyLoss", arXiv:2204.12511; as Optax's
    ``poly_loss_cross_entropy(logits, labels, epsilon=2.0)`` with the class axis at 1)::

        l_i = -Σ_c y_ic·log p_ic + ε·Σ_c y_ic·(1 - p_ic),   p = softmax(x)

    ``target`` is either class indices (as :func:`cross_entropy`; then ``l_i = -log p_y +
    ε·(1 - p_y)``, 0 where ``target == ignore_index``, and mean divides by the non-ignored
    count) or class probabilities with input's shape (mean over all positions). No class
    weights and no label smoothing (smooth the probabilities instead).
    """
    x, y = _layout(input, target)
    if _is_probability(input, target):
        log_p = _log_softmax(x)
        term = np.exp(log_p)
        np.subtract(1, term, out=term)
        term *= epsilon
        term -= log_p
        return Terms(_per_position(_class_sum(term * y), input))
    labels, valid = _labels(y, ignore_index)
    log_p = _pick(_log_softmax(x), labels)
    values = (1 - np.exp(log_p)) * epsilon
    values -= log_p
    np.copyto(values, 0, where=~valid)
    return Terms(_per_position(values, input),
                 weights=_per_position(valid.astype(x.dtype), input))


@_classless_grad()
def poly1_cross_entropy_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                             epsilon: float = 2.0, ignore_index: int = -100
                             ) -> dict[str, np.ndarray]:
    """With ``r_c = y_c·(1 + ε·p_c)`` (the weight on ``-log p_c``): ``∂l/∂x = p·Σ_c r_c - r``;
    probability targets also get ``∂l/∂y_c = -log p_c + ε·(1 - p_c)``."""
    x, y = _layout(input, target)
    g = upstream.reshape((x.shape[0],) + x.shape[2:])[:, None]
    log_p = _log_softmax(x)
    p = np.exp(log_p)
    if _is_probability(input, target):
        r = y * (1 + epsilon * p)
        grad_x = p * _class_sum(r)[:, None]
        grad_x -= r
        grad_x *= g
        grad_y = (1 - p) * epsilon
        grad_y -= log_p
        grad_y *= g
        return {"input": _like_input(grad_x, input), "target": _like_input(grad_y, input)}
    labels, valid = _labels(y, ignore_index)
    g = np.where(valid[:, None], g, 0).astype(x.dtype, copy=False)
    g *= 1 + epsilon * np.take_along_axis(p, labels, axis=1)
    grad_x = np.multiply(p, g, out=p)
    at_label = np.take_along_axis(grad_x, labels, axis=1)
    at_label -= g
    np.put_along_axis(grad_x, labels, at_label, axis=1)
    return {"input": _like_input(grad_x, input)}


@_classless
def softmax_focal_loss(input: np.ndarray, target: np.ndarray, *, alpha: np.ndarray | None = None,
                       gamma: float = 2.0, ignore_index: int = -100) -> Terms:
    """Multi-class (softmax) focal loss (Lin et al. 2017, "Focal Loss for Dense Object
    Detection", arXiv:1708.02002; the per-class-alpha form of e.g. MONAI's
    ``FocalLoss(use_softmax=True)`` and Kornia's ``focal_loss``, reduced per sample)::

        l_i = -α_{y_i}·(1 - p_{i,y_i})^γ·log p_{i,y_i},   p = softmax(x),  α default 1

    ``target`` holds class indices in the shapes of :func:`cross_entropy`; ignored positions
    give 0 and ``mean = Σ l_i / #non-ignored`` (not divided by Σα, unlike weighted CE).
    ``1 - p`` is computed as ``-expm1(log p)`` for accuracy when p is near 1. γ = 0 is
    cross-entropy with class weights α (but the mean is over the non-ignored count).
    """
    x, y = _layout(input, target)
    labels, valid = _labels(y, ignore_index)
    log_p = _pick(_log_softmax(x), labels)
    values = np.power(-np.expm1(log_p), gamma)
    values *= -log_p
    if alpha is not None:
        values *= alpha[labels[:, 0]]
    np.copyto(values, 0, where=~valid)
    return Terms(_per_position(values, input),
                 weights=_per_position(valid.astype(x.dtype), input))


@_classless_grad("alpha")
def softmax_focal_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                            alpha: np.ndarray | None = None, gamma: float = 2.0,
                            ignore_index: int = -100) -> dict[str, np.ndarray]:
    """With ``q = 1 - p_y`` and ``ℓ = log p_y``:
    ``∂l/∂ℓ = -α_y·[q^γ - γ·q^(γ-1)·p_y·ℓ]`` and ``∂ℓ/∂x = onehot(y) - p``
    (γ = 0 drops the second term, as torch's pow backward does); ``∂l/∂α_c`` sums
    ``-q^γ·ℓ`` over the non-ignored positions of class c (the mean divides by their count,
    not by α)."""
    x, y = _layout(input, target)
    labels, valid = _labels(y, ignore_index)
    shifted, p, total = _shifted_exp(x)
    shifted -= np.log(total)
    p /= total
    log_p = np.take_along_axis(shifted, labels, axis=1)
    q = -np.expm1(log_p)
    d_log_p = np.power(q, gamma)
    grads: dict[str, np.ndarray] = {}
    g = upstream.reshape(valid.shape)[:, None]
    if alpha is not None:
        per_position = np.where(valid[:, None], -d_log_p * log_p * g, 0)[:, 0]
        grads["alpha"] = np.bincount(labels[:, 0].ravel(), per_position.ravel(),
                                     minlength=alpha.shape[0]).astype(alpha.dtype, copy=False)
    if gamma != 0:
        d_log_p -= gamma * np.power(q, gamma - 1) * np.exp(log_p) * log_p
    if alpha is not None:
        d_log_p *= alpha[labels]
    coef = np.where(valid[:, None], -d_log_p * g, 0).astype(x.dtype, copy=False)
    grad_x = np.multiply(p, -coef, out=p)
    at_label = np.take_along_axis(grad_x, labels, axis=1)
    at_label += coef
    np.put_along_axis(grad_x, labels, at_label, axis=1)
    grads["input"] = _like_input(grad_x, input)
    return grads


# --- registry ----------------------------------------------------------------------------------

REDUCTION = reduction_option()
IGNORE_INDEX = OptionSpec("ignore_index", int, -100, "target value that contributes nothing "
                          "(class indices only)", **INT64_RANGE)

CLASS_DIMS = (("N", "C"), ("C",), ("N", "C", ANY))
INDEX_DIMS = (("N",), (), ("N", ANY))
MULTILABEL_DIMS = (("N", "C"), ("C",), ("N", ANY, "C"))  # classes on the last axis
LOGITS = TensorSpec("input", "input", CLASS_INPUT, differentiable=True, batch_ndim=2,
                    description="unnormalised class scores (logits), classes on axis 1",
                    dims=CLASS_DIMS)
CLASS_TARGET = TensorSpec(
    "target", "target", "class indices (), (N) or (N, d1, ..., dK); or probabilities with "
    "input's shape", kind=Kind.REAL, dtypes=FLOAT_DTYPES + ("int64", "uint8"),
    differentiable=True, description="class indices (int64/uint8) or class probabilities "
    "(float, same shape as input; these get a gradient)", dims=INDEX_DIMS + CLASS_DIMS,
    values=CLASS_INDEX)
INDEX_TARGET = TensorSpec("target", "target", "(), (N) or (N, d1, ..., dK)", kind=Kind.INDEX,
                          dtypes=("int64", "uint8"), description="class indices",
                          dims=INDEX_DIMS, values=CLASS_INDEX)
CLASS_WEIGHT = TensorSpec("weight", "weight", "(C)", optional=True, batch_axis=None,
                          description="per-class rescaling weight", dims=(("C",),))
# torch differentiates cross_entropy's class weight with probability targets only
CE_WEIGHT = replace(CLASS_WEIGHT, differentiable=True,
                    description="per-class rescaling weight (gets a gradient with class "
                    "probabilities; torch gives none with class indices)")
BINARY_TARGET = TensorSpec("target", "target", "same shape as input", differentiable=True,
                           description="probability of the positive class in [0, 1]",
                           dims=ANY_SHAPE, values=PROBABILITY)


def _check_cross_entropy(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    _check_classes(arrays, options)
    _check_no_classes_view(arrays)


def _check_nll(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    _check_classes(arrays, options, probabilities=False)
    _check_no_classes_view(arrays)


def _check_poly1(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    _check_classes(arrays, options)  # no torch kernel, so no _check_no_classes_view


def _check_no_classes_view(arrays: dict[str, np.ndarray]) -> None:
    """torch 2.13's nll kernel views an ``(N, C, d1, ..., dK)`` input with K = 1 or K >= 3 as
    4-D; with zero classes and some (all ignored) targets that view fails, so torch refuses."""
    input, target = arrays["input"], arrays["target"]
    if (input.ndim == 3 or input.ndim >= 5) and input.shape[1] == 0 and target.size \
            and not _is_probability(input, target):
        raise fail("input", f"zero classes with class-index targets need a (C), (N, C) or "
                            f"(N, C, d1, d2) input (torch refuses the others); got "
                            f"{shape_str(input.shape)} with target {shape_str(target.shape)}")


def _check_focal(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    _check_classes(arrays, options, probabilities=False, weight="alpha")


register(LossSpec(
    "cross_entropy", cross_entropy, (LOGITS, CLASS_TARGET, CE_WEIGHT),
    (REDUCTION, IGNORE_INDEX,
     OptionSpec("label_smoothing", float, 0.0, "mix ε of the uniform distribution into the "
                "target (negative values count as 0, like torch)", maximum=1.0)),
    torch="torch.nn.functional.cross_entropy", family=FAMILY, check=_check_cross_entropy,
    grad=cross_entropy_grad))

register(LossSpec(
    "nll", nll_loss,
    (TensorSpec("input", "input", CLASS_INPUT, differentiable=True, batch_ndim=2,
                description="log-probabilities, classes on axis 1", dims=CLASS_DIMS,
                values=LOG_PROBABILITY),
     INDEX_TARGET, CLASS_WEIGHT),
    (REDUCTION, IGNORE_INDEX), torch="torch.nn.functional.nll_loss", family=FAMILY,
    check=_check_nll, grad=nll_loss_grad))

KL_DIV_MEAN = ("reduction: 'mean' divides the total loss by both the batch size and the support "
               "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
               "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
               "major release.")  # torch's text, run-on sentences included


def _kl_div_mean_warning(arrays: Mapping[str, np.ndarray], options: Mapping[str, Any]
                         ) -> tuple[str, ...]:
    """torch warns of every ``mean`` kl_div (its default) that it is not the KL divergence."""
    return (KL_DIV_MEAN,) if options["reduction"] == "mean" else ()


register(LossSpec(
    "kl_div", kl_div,
    (TensorSpec("input", "input", "(*)", differentiable=True, description="log-probabilities",
                dims=ANY_SHAPE, values=LOG_PROBABILITY),
     TensorSpec("target", "target", "(*), broadcastable to input's shape", differentiable=True,
                description="probabilities (log-probabilities with log_target)",
                dims=ANY_SHAPE, values=PROBABILITY)),
    (reduction_option(("none", "mean", "sum", "batchmean")),
     OptionSpec("log_target", bool, False, "target is given as log-probabilities")),
    torch="torch.nn.functional.kl_div", family=FAMILY, check=_check_kl_div, grad=kl_div_grad,
    batchable=same_shapes, warn=_kl_div_mean_warning))

register(LossSpec(
    "binary_cross_entropy", binary_cross_entropy,
    (TensorSpec("input", "input", "(*)", differentiable=True,
                description="probabilities in [0, 1]", dims=ANY_SHAPE, values=PROBABILITY),
     BINARY_TARGET,
     TensorSpec("weight", "weight", "broadcastable to input's shape", kind=Kind.REAL,
                optional=True, batch_axis=None,
                description="elementwise rescaling weight; integers and bool promoted",
                dims=ANY_SHAPE)),
    (REDUCTION,), torch="torch.nn.functional.binary_cross_entropy", family=FAMILY,
    check=_check_binary_cross_entropy, grad=binary_cross_entropy_grad,
    batchable=_no_batch_axis("weight")))

register(LossSpec(
    "binary_cross_entropy_with_logits", binary_cross_entropy_with_logits,
    (TensorSpec("input", "input", "(*)", differentiable=True, description="logits",
                dims=ANY_SHAPE),
     BINARY_TARGET,
     TensorSpec("weight", "weight", "broadcastable to input's shape", kind=Kind.REAL,
                optional=True, batch_axis=None,
                description="elementwise rescaling weight; integers and bool promoted",
                dims=ANY_SHAPE),
     TensorSpec("pos_weight", "weight", "broadcastable to input's shape, e.g. (C)",
                kind=Kind.REAL, dtypes=NUMERIC_DTYPES, optional=True, batch_axis=None,
                description="weight of the positive term; integers promoted (bool is not)",
                dims=(("C",), (ANY,)))),
    (REDUCTION,), torch="torch.nn.functional.binary_cross_entropy_with_logits", family=FAMILY,
    check=_check_binary_with_logits, grad=binary_cross_entropy_with_logits_grad,
    batchable=_no_batch_axis("weight", "pos_weight")))

register(LossSpec(
    "multilabel_soft_margin", multilabel_soft_margin_loss,
    (TensorSpec("input", "input", "(C), (N, C) or (N, *, C)", differentiable=True,
                batch_ndim=2, description="logits, classes on the last axis",
                dims=MULTILABEL_DIMS),
     TensorSpec("target", "target", "broadcastable to input's shape", kind=Kind.REAL,
                dtypes=FLOAT_DTYPES + ("int8", "int16", "int32", "int64", "uint8"),
                differentiable=True, batch_ndim=2, description="labels in {0, 1}",
                dims=MULTILABEL_DIMS, values=Values(choices=(0, 1))),
     TensorSpec("weight", "weight", "(C), broadcastable to input's shape", kind=Kind.REAL,
                optional=True, differentiable=True, batch_axis=None,
                description="per-class rescaling weight; integers and bool promoted",
                dims=(("C",), (ANY,)))),
    (REDUCTION,), torch="torch.nn.functional.multilabel_soft_margin_loss", family=FAMILY,
    check=_check_multilabel_soft_margin, grad=multilabel_soft_margin_loss_grad,
    batchable=_multilabel_batchable))

register(LossSpec(
    "poly1_cross_entropy", poly1_cross_entropy, (LOGITS, CLASS_TARGET),
    (REDUCTION, IGNORE_INDEX,
     OptionSpec("epsilon", float, 2.0, "coefficient ε of the first polynomial term (1 - p_t)")),
    torch="none (Leng et al. 2022 PolyLoss; optax.poly_loss_cross_entropy)", family=FAMILY,
    check=_check_poly1, grad=poly1_cross_entropy_grad))

register(LossSpec(
    "softmax_focal", softmax_focal_loss,
    (LOGITS, INDEX_TARGET,
     TensorSpec("alpha", "weight", "(C)", kind=Kind.REAL, optional=True, differentiable=True,
                batch_axis=None, description="per-class balancing factor α_t; integers and "
                                             "bool promoted",
                dims=(("C",),))),
    (REDUCTION, IGNORE_INDEX,
     OptionSpec("gamma", float, 2.0, "focusing exponent γ of (1 - p_t)", minimum=0.0)),
    torch="none (Lin et al. 2017 focal loss with softmax; MONAI FocalLoss(use_softmax=True))",
    family=FAMILY, check=_check_focal, grad=softmax_focal_loss_grad))
