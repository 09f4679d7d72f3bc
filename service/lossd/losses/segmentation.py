"""Segmentation overlap losses: soft Dice, Jaccard (IoU) and (focal) Tversky. Beyond torch.

Shapes: ``input`` is ``(N, C, *spatial)`` (``*spatial`` may be empty: ``(N, C)``) with the
classes on axis 1. ``target`` is either

* input's shape: per-class masks — one-hot, multi-label or soft, float (these get a gradient),
  uint8 or bool; values are not range-checked; or
* ``(N, *spatial)``: class indices (int64 or uint8, in ``[0, C)``), one-hot encoded over C.

The registry casts every non-index tensor to the compute dtype, so index targets arrive as
exact floating-point integers (validated first) and are turned back into labels here.

``activation`` turns ``input`` into probabilities ``p``: ``"none"`` (default: input already
holds probabilities, as MONAI's and Keras's defaults; not range-checked), ``"sigmoid"``
(elementwise; binary and multi-label) or ``"softmax"`` (over the class axis; multi-class).
With ``t`` the target masks, per sample ``n`` and class ``c`` and summed over the spatial axes
only (never over the batch)::

    TP = Σ p·t        FP = Σ p·(1 - t)        FN = Σ (1 - p)·t

Each loss is ``1 - (numerator + smooth) / max(denominator + smooth, eps)``: the score of
segmentation_models_pytorch's ``soft_{dice,jaccard,tversky}_score``
(``segmentation_models_pytorch/losses/_functional.py``: smoothing added to both terms, the
denominator clamped at eps) with MONAI's default smoothing ``smooth_nr = smooth_dr = 1e-5``
(``monai/losses/dice.py``). ``Terms.values`` has shape ``(N, C)`` — MONAI's
``DiceLoss(batch=False, reduction="none")`` layout — so ``mean`` averages over the N·C
(sample, class) pairs and a batch reduces exactly like its parts.

Empty classes (no target and no prediction in a sample) score ``smooth / max(smooth, eps)`` —
1 with the default smoothing, i.e. loss 0; with ``smooth=0`` the score is ``0/eps = 0`` and the
loss 1. SMP instead zeroes absent classes' losses and MONAI offers ``include_background``;
neither is done here (drop classes client-side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import check_index_range, check_min_ndim, check_shape, fail, shape_str
from ._reduce import Terms
from ._spec import (
    ANY,
    FLOAT_DTYPES,
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

FAMILY = "segmentation"
ACTIVATIONS = ("none", "sigmoid", "softmax")


# --- probabilities, masks and per-(sample, class) sums -----------------------------------------

def _flat(array: np.ndarray) -> np.ndarray:
    """``(N, C, *spatial)`` -> ``(N, C, S)`` (spatial axes flattened)."""
    return array.reshape(array.shape[:2] + (math.prod(array.shape[2:]),))


def _probabilities(input: np.ndarray, activation: str) -> np.ndarray:
    """``(N, C, S)`` probabilities from ``(N, C, S)`` scores (a new array unless "none")."""
    if activation == "sigmoid":
        # σ(x) = 1/(1 + e^-x) for x >= 0 and e^x/(1 + e^x) below: e^-|x| never overflows
        small = np.exp(-np.abs(input))
        sigmoid: np.ndarray = np.where(input >= 0, 1, small) / (1 + small)
        return sigmoid
    if activation == "softmax":
        # max-shift over the class axis; an all -inf column is nan, as torch.softmax
        p: np.ndarray = input - np.max(input, axis=1, keepdims=True, initial=-np.inf)
        np.exp(p, out=p)
        p /= p.sum(axis=1, keepdims=True)
        return p
    return input


def _activation_vjp(grad_p: np.ndarray, p: np.ndarray, activation: str) -> np.ndarray:
    """Gradient w.r.t. the scores from the gradient w.r.t. the probabilities (in place)."""
    if activation == "sigmoid":
        grad_p *= p * (1 - p)
    elif activation == "softmax":
        grad_p -= np.einsum("ncs,ncs->ns", grad_p, p)[:, None]
        grad_p *= p
    return grad_p


def _masks(target: np.ndarray, input: np.ndarray) -> np.ndarray:
    """``(N, C, S)`` target masks: as given, or the one-hot encoding of class indices."""
    if target.ndim == input.ndim:
        return _flat(target)
    labels = target.reshape(target.shape[0], 1, math.prod(target.shape[1:])).astype(np.intp)
    classes = np.arange(input.shape[1]).reshape(1, -1, 1)
    one_hot: np.ndarray = (labels == classes).astype(input.dtype)
    return one_hot


@dataclass(frozen=True)
class _Overlap:
    """A score ``(k·TP + smooth) / max(u·TP + a·Σp + b·Σt + smooth, eps)`` per (n, c).

    Dice: k=2, u=0, a=b=1. Jaccard: k=1, u=-1, a=b=1 (TP over the union). Tversky: k=1,
    u=1-α-β, a=α, b=β (TP + αFP + βFN with FP = Σp - TP and FN = Σt - TP).
    """

    k: float
    u: float
    a: float
    b: float

    def parts(self, p: np.ndarray, t: np.ndarray, smooth: float
              ) -> tuple[np.ndarray, np.ndarray]:
        """(numerator, denominator) before the clamp, each ``(N, C)``."""
        tp = np.einsum("ncs,ncs->nc", p, t)
        numerator = self.k * tp + smooth
        denominator = self.u * tp + self.a * p.sum(axis=2) + self.b * t.sum(axis=2) + smooth
        return numerator, denominator

    def loss(self, input: np.ndarray, target: np.ndarray, *, activation: str, smooth: float,
             eps: float, gamma: float = 1.0) -> Terms:
        x = _flat(input)
        numerator, denominator = self.parts(_probabilities(x, activation),
                                            _masks(target, input), smooth)
        values = 1 - numerator / np.maximum(denominator, eps)
        if gamma != 1:
            np.power(values, gamma, out=values)
        return Terms(values.astype(input.dtype, copy=False))

    def grad(self, upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
             activation: str, smooth: float, eps: float, gamma: float = 1.0
             ) -> dict[str, np.ndarray]:
        """Chain rule through the score, the clamp (passes where ``den >= eps``, torch's
        clamp_min) and the activation:
        ``∂L/∂p = g_TP·t + a·g_den`` and ``∂L/∂t = g_TP·p + b·g_den`` with
        ``g_TP = k·g_num + u·g_den``, ``g_num = -g/D``, ``g_den = g·num/D²`` (D clamped)."""
        x = _flat(input)
        p, t = _probabilities(x, activation), _masks(target, input)
        numerator, denominator = self.parts(p, t, smooth)
        clamped = np.maximum(denominator, eps)
        g = np.asarray(upstream, dtype=clamped.dtype)
        if gamma != 1:
            # d(1 - s)^γ/ds = -γ(1 - s)^(γ-1), torch's pow backward (inf at 0 when γ < 1)
            g = g * (gamma * np.power(1 - numerator / clamped, gamma - 1))
        g_num = -g / clamped
        g_den = np.where(denominator >= eps, g * numerator / (clamped * clamped), 0)
        g_tp = (self.k * g_num + self.u * g_den).astype(x.dtype, copy=False)[..., None]
        grad_p = g_tp * t
        grad_p += (self.a * g_den).astype(x.dtype, copy=False)[..., None]
        grads = {"input": _activation_vjp(grad_p, p, activation).reshape(input.shape)}
        if target.ndim == input.ndim:
            grad_t = g_tp * p
            grad_t += (self.b * g_den).astype(x.dtype, copy=False)[..., None]
            grads["target"] = grad_t.reshape(target.shape)
        return grads


# --- the three losses ----------------------------------------------------------------------------

_DICE = _Overlap(2, 0, 1, 1)
_JACCARD = _Overlap(1, -1, 1, 1)


def dice_loss(input: np.ndarray, target: np.ndarray, *, activation: str = "none",
              smooth: float = 1e-5, eps: float = 1e-7) -> Terms:
    """Soft Dice loss per (sample, class): ``1 - (2·TP + smooth) / max(Σp + Σt + smooth, eps)``.

    Sources: segmentation_models_pytorch ``soft_dice_score`` (with its clamp), MONAI
    ``DiceLoss(batch=False)`` (its smoothing default); Milletari et al. 2016 (V-Net) use
    ``Σp² + Σt²`` in the denominator — not this one. Shapes ``(N, C, *spatial)`` and targets as
    in the module docstring; values ``(N, C)``.

    Example:
        >>> dice_loss(np.array([[[1., 0.]]]), np.array([[[1., 1.]]]), smooth=0).values  # 1/3
        array([[0.333...]])
    """
    return _DICE.loss(input, target, activation=activation, smooth=smooth, eps=eps)


def dice_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                   activation: str = "none", smooth: float = 1e-5, eps: float = 1e-7
                   ) -> dict[str, np.ndarray]:
    """Vector-Jacobian product of :func:`dice_loss` (input, and float same-shape targets)."""
    return _DICE.grad(upstream, input, target, activation=activation, smooth=smooth, eps=eps)


def jaccard_loss(input: np.ndarray, target: np.ndarray, *, activation: str = "none",
                 smooth: float = 1e-5, eps: float = 1e-7) -> Terms:
    """Soft Jaccard (IoU) loss per (sample, class):
    ``1 - (TP + smooth) / max(Σp + Σt - TP + smooth, eps)``.

    Source: segmentation_models_pytorch ``soft_jaccard_score`` (union = cardinality −
    intersection, smoothing on both terms, clamp at eps). MONAI's ``DiceLoss(jaccard=True)``
    smooths ``2·TP`` over ``2·union`` instead (same loss at ``smooth=0``). Values ``(N, C)``.

    Example:
        >>> jaccard_loss(np.array([[[1., 0.]]]), np.array([[[1., 1.]]]), smooth=0).values
        array([[0.5]])
    """
    return _JACCARD.loss(input, target, activation=activation, smooth=smooth, eps=eps)


def jaccard_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                      activation: str = "none", smooth: float = 1e-5, eps: float = 1e-7
                      ) -> dict[str, np.ndarray]:
    """Vector-Jacobian product of :func:`jaccard_loss`."""
    return _JACCARD.grad(upstream, input, target, activation=activation, smooth=smooth,
                         eps=eps)


def tversky_loss(input: np.ndarray, target: np.ndarray, *, alpha: float = 0.5,
                 beta: float = 0.5, gamma: float = 1.0, activation: str = "none",
                 smooth: float = 1e-5, eps: float = 1e-7) -> Terms:
    """(Focal) Tversky loss per (sample, class):
    ``(1 - (TP + smooth) / max(TP + α·FP + β·FN + smooth, eps))^γ``.

    α weighs false positives, β false negatives (Salehi et al. 2017); α = β = 0.5 is Dice
    (with ``smooth`` and ``eps`` halved) and α = β = 1 is Jaccard. γ is the focal exponent of
    Abraham & Khan 2019 applied to each (sample, class) value; SMP's ``TverskyLoss(gamma)``
    raises the class *mean* to γ instead (the same for γ = 1). Sources: SMP
    ``soft_tversky_score``, MONAI ``TverskyLoss``, Keras ``Tversky``. Values ``(N, C)``.

    Example:
        >>> tversky_loss(np.array([[[1., 0.]]]), np.array([[[1., 1.]]]), alpha=0.3,
        ...              beta=0.7, smooth=0).values  # 1 - 1/1.7
        array([[0.4118]])
    """
    return _tversky(alpha, beta).loss(input, target, activation=activation, smooth=smooth,
                                      eps=eps, gamma=gamma)


def tversky_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                      alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0,
                      activation: str = "none", smooth: float = 1e-5, eps: float = 1e-7
                      ) -> dict[str, np.ndarray]:
    """Vector-Jacobian product of :func:`tversky_loss`."""
    return _tversky(alpha, beta).grad(upstream, input, target, activation=activation,
                                      smooth=smooth, eps=eps, gamma=gamma)


def _tversky(alpha: float, beta: float) -> _Overlap:
    return _Overlap(1, 1 - alpha - beta, alpha, beta)


# --- validation and registration -------------------------------------------------------------

def _check(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    """input ``(N, C, *spatial)``; target input's shape, or ``(N, *spatial)`` indices in
    ``[0, C)`` of an integer dtype."""
    input, target = arrays["input"], arrays["target"]
    check_min_ndim("input", input, 2, "(N, C, *spatial)")
    if target.ndim == input.ndim:
        check_shape("target", target, input.shape, f"input {shape_str(input.shape)}")
        return
    index_shape = input.shape[:1] + input.shape[2:]
    if target.ndim != input.ndim - 1:
        raise fail("target", f"expected masks of input's shape {shape_str(input.shape)} or "
                             f"class indices of shape {shape_str(index_shape)}; got "
                             f"{shape_str(target.shape)}")
    if target.dtype.kind not in "iu":
        raise fail("target", f"class indices (shape {shape_str(index_shape)}) must be int64 "
                             f"or uint8; got {target.dtype}")
    check_shape("target", target, index_shape, f"input {shape_str(input.shape)} without its "
                                               f"class axis")
    check_index_range("target", target, 0, input.shape[1])


REDUCTION = reduction_option()
INPUT = TensorSpec("input", "input", "(N, C, *spatial)", differentiable=True, batch_ndim=2,
                   description="probabilities, or scores for the chosen activation; "
                               "classes on axis 1",
                   dims=(("N", "C", "H", "W"), ("N", "C", ANY)), values=PROBABILITY)
TARGET = TensorSpec("target", "target", "(N, C, *spatial) masks or (N, *spatial) indices",
                    kind=Kind.REAL, dtypes=FLOAT_DTYPES + ("int64", "uint8", "bool"),
                    differentiable=True,
                    description="per-class masks with input's shape (float ones get a "
                                "gradient), or class indices (int64/uint8) in [0, C)",
                    dims=(("N", "C", "H", "W"), ("N", "H", "W"), ("N", "C", ANY), ("N", ANY)),
                    values=PROBABILITY)
OPTIONS = (
    OptionSpec("activation", str, "none", "applied to input first: none (probabilities), "
               "sigmoid, or softmax over the class axis", choices=ACTIVATIONS),
    OptionSpec("smooth", float, 1e-5, "added to the numerator and the denominator",
               minimum=0.0),
    OptionSpec("eps", float, 1e-7, "lower bound of the smoothed denominator", minimum=0.0),
)


def _register(name: str, fn: LossFn, grad: GradFn, source: str,
              extra: tuple[OptionSpec, ...] = ()) -> None:
    register(LossSpec(name, fn, (INPUT, TARGET), (REDUCTION, *extra, *OPTIONS),
                      torch=f"none ({source}; per (sample, class))", family=FAMILY,
                      check=_check, grad=grad))


_register("dice", dice_loss, dice_loss_grad,
          "segmentation_models_pytorch soft_dice_score, monai.losses.DiceLoss")
_register("jaccard", jaccard_loss, jaccard_loss_grad,
          "segmentation_models_pytorch soft_jaccard_score")
_register("tversky", tversky_loss, tversky_loss_grad,
          "segmentation_models_pytorch soft_tversky_score, monai.losses.TverskyLoss",
          (OptionSpec("alpha", float, 0.5, "weight of false positives", minimum=0.0),
           OptionSpec("beta", float, 0.5, "weight of false negatives", minimum=0.0),
           OptionSpec("gamma", float, 1.0, "focal exponent of each value (1: plain Tversky)",
                      minimum=0.0, exclusive_minimum=True)))
