"""Regression losses: elementwise distances between predictions and targets.

Shapes: ``input`` and ``target`` are any shape ``(*)``; like torch, ``target`` broadcasts
against ``input``. Every function returns :class:`Terms` whose ``values`` are torch's
``reduction='none'`` output; gradients are vector-Jacobian products with ``upstream``.
"""

from __future__ import annotations

import numpy as np

from ._checks import broadcast_shape, check_shape, fail, shape_str, unbroadcast
from ._reduce import Terms
from ._spec import Kind, LossSpec, OptionSpec, TensorSpec, reduction_option, register

FAMILY = "regression"

INPUT = TensorSpec("input", "input", "(*)", differentiable=True, description="predictions")
# torch promotes an integer input against a float target for these (not for huber)
REAL_INPUT = TensorSpec("input", "input", "(*)", kind=Kind.REAL, differentiable=True,
                        description="predictions; integers are promoted like torch does")
TARGET = TensorSpec("target", "target", "(*), broadcastable to input", kind=Kind.REAL,
                    differentiable=True, description="ground truth")
WEIGHT = TensorSpec("weight", "weight", "same shape as input", optional=True,
                    description="per-element weight (torch 2.x functional `weight=`)")


def _check_pair(arrays: dict[str, np.ndarray], options: dict) -> None:
    """target broadcasts against input; a weight has exactly the broadcast (= input) shape."""
    if not any(arrays[k].dtype.kind == "f" for k in ("input", "target")):
        raise fail("input", f"expected floating point input or target; got "
                            f"{arrays['input'].dtype} and {arrays['target'].dtype}")
    shape = broadcast_shape("target", arrays["target"], "input", arrays["input"])
    weight = arrays.get("weight")
    if weight is not None:
        if shape != arrays["input"].shape:
            raise fail("weight", f"needs target to broadcast to input's shape "
                                 f"{shape_str(arrays['input'].shape)}; got {shape_str(shape)}")
        check_shape("weight", weight, arrays["input"].shape,
                    f"input {shape_str(arrays['input'].shape)}")


def _same_shapes(arrays: dict[str, np.ndarray]) -> bool:
    """Batchable only without broadcasting (a broadcast target has no batch axis of its own)."""
    return all(a.shape == arrays["input"].shape for a in arrays.values())


def _diff(input: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.asarray(np.subtract(input, target, dtype=np.result_type(input, target)))


def _pair_grads(local: np.ndarray, upstream: np.ndarray, input: np.ndarray,
                target: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of a loss of ``input - target`` whose local derivative is ``local``."""
    g = np.multiply(local, upstream, out=local)
    return {"input": unbroadcast(g, input.shape), "target": unbroadcast(-g, target.shape)}


# --- L1 ---------------------------------------------------------------------------------------

def l1_loss(input: np.ndarray, target: np.ndarray, *,
            weight: np.ndarray | None = None) -> Terms:
    """Absolute error ``|x - y|`` (torch.nn.L1Loss); weighted mean ``Σ w·l / Σ w``.

    Example: ``l1_loss(np.array([1., -2.]), np.array([0., 0.])).values -> [1., 2.]``
    """
    values = np.abs(_diff(input, target))
    if weight is None:
        return Terms(values)
    return Terms(np.multiply(values, weight, out=values), weights=weight)


def l1_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                 weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """d|x-y|/dx = sign(x - y), 0 at 0 (torch's choice at the kink) and 0 at nan (torch's sgn)."""
    local = np.asarray(np.nan_to_num(np.sign(_diff(input, target)), nan=0.0))
    if weight is not None:
        local *= weight
    return _pair_grads(local, upstream, input, target)


# --- MSE --------------------------------------------------------------------------------------

def mse_loss(input: np.ndarray, target: np.ndarray, *,
             weight: np.ndarray | None = None) -> Terms:
    """Squared error ``(x - y)²`` (torch.nn.MSELoss); weighted mean ``Σ w·l / Σ w``.

    Example: ``mse_loss(np.array([1., -2.]), np.array([0., 0.])).values -> [1., 4.]``
    """
    values = _diff(input, target)
    np.multiply(values, values, out=values)
    if weight is None:
        return Terms(values)
    return Terms(np.multiply(values, weight, out=values), weights=weight)


def mse_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                  weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """d(x-y)²/dx = 2(x - y)."""
    local = _diff(input, target)
    local *= 2
    if weight is not None:
        local *= weight
    return _pair_grads(local, upstream, input, target)


# --- L2 (explicit variants) -------------------------------------------------------------------

L2_VARIANTS = ("mse", "sse", "half_sse", "norm")


def l2_loss(input: np.ndarray, target: np.ndarray, *, variant: str = "mse") -> Terms:
    """"L2 loss" with its meaning pinned down by ``variant`` (libraries disagree on it).

    * ``mse``: elementwise ``(x - y)²`` — exactly ``F.mse_loss`` in every reduction (default).
    * ``sse``: per sample ``Σ_features (x - y)²``; with ``reduction='sum'`` the total SSE.
    * ``half_sse``: per sample ``½ Σ_features (x - y)²`` (``optax.l2_loss`` summed;
      ``tf.nn.l2_loss(x - y)`` with ``reduction='sum'``).
    * ``norm``: per sample ``‖x - y‖₂`` over the features (the L2 distance).

    For the per-sample variants axis 0 holds the samples and the other axes the features:
    ``(N, *) -> (N,)``; a 1-D input is N scalar samples, a 0-D one a single sample.
    """
    d = _diff(input, target)
    if variant == "mse":
        return Terms(np.multiply(d, d, out=d))
    rows = d.reshape(1, 1) if d.ndim == 0 else d.reshape(d.shape[0], -1 if d.size else 0)
    sse = np.einsum("ij,ij->i", rows, rows)
    if d.ndim == 0:
        sse = sse.reshape(())
    if variant == "sse":
        return Terms(sse)
    if variant == "half_sse":
        return Terms(np.multiply(sse, 0.5, out=sse))
    return Terms(np.sqrt(sse, out=sse))


def l2_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                 variant: str = "mse") -> dict[str, np.ndarray]:
    """2(x-y) for mse/sse, (x-y) for half_sse, (x-y)/‖x-y‖ for norm (0 where the norm is 0)."""
    d = _diff(input, target)
    per_sample = upstream.reshape(upstream.shape + (1,) * (d.ndim - upstream.ndim))
    if variant in ("mse", "sse"):
        local = np.multiply(d, 2 * per_sample)
    elif variant == "half_sse":
        local = np.multiply(d, per_sample)
    else:
        norm = np.sqrt(l2_loss(input, target, variant="sse").values)
        norm = norm.reshape(norm.shape + (1,) * (d.ndim - norm.ndim))
        local = np.divide(d * per_sample, norm, out=np.zeros_like(d), where=norm != 0)
    return {"input": unbroadcast(local, input.shape), "target": unbroadcast(-local, target.shape)}


# --- Smooth L1 and Huber ----------------------------------------------------------------------

def smooth_l1_loss(input: np.ndarray, target: np.ndarray, *, beta: float = 1.0) -> Terms:
    """Smooth L1 (torch.nn.SmoothL1Loss): ``0.5 d²/β`` where ``|d| < β``, else ``|d| - 0.5 β``.

    ``β = 0`` is exactly L1 (torch dispatches to l1_loss).
    """
    d = np.abs(_diff(input, target))
    if beta == 0:
        return Terms(d)
    return Terms(np.where(d < beta, (0.5 / beta) * d * d, d - 0.5 * beta).astype(d.dtype,
                                                                               copy=False))


def smooth_l1_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                        beta: float = 1.0) -> dict[str, np.ndarray]:
    """d/β inside the band, sign(d) outside; at ``|d| = β`` both give ±1."""
    d = _diff(input, target)
    local = np.asarray(np.sign(d) if beta == 0 else np.clip(d / d.dtype.type(beta), -1, 1))
    return _pair_grads(local, upstream, input, target)


def _check_huber(arrays: dict[str, np.ndarray], options: dict) -> dict[str, np.ndarray]:
    """torch's huber kernel computes in input's dtype: a float64 target beside a float32 input
    is rounded to float32 first (l1, mse and smooth_l1 promote instead)."""
    _check_pair(arrays, options)
    if arrays["input"].dtype.kind == "f":
        arrays["target"] = arrays["target"].astype(arrays["input"].dtype, copy=False)
    return arrays


def huber_loss(input: np.ndarray, target: np.ndarray, *, delta: float = 1.0,
               weight: np.ndarray | None = None) -> Terms:
    """Huber (torch.nn.HuberLoss): ``0.5 d²`` where ``|d| <= δ``, else ``δ(|d| - 0.5 δ)``.

    With ``weight`` torch 2.13's mean is ``mean(w·l)`` — it divides by the element count, not
    by ``Σ w`` as mse and l1 do. That inconsistency is torch's and is kept.
    """
    d = np.abs(_diff(input, target))
    values = np.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta)).astype(d.dtype,
                                                                                copy=False)
    return Terms(values if weight is None else values * weight)


def huber_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                    delta: float = 1.0, weight: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
    """d clipped to [-δ, δ]."""
    d = _diff(input, target)
    local = np.asarray(np.clip(d, -delta, delta))
    if weight is not None:
        local *= weight
    return _pair_grads(local, upstream, input, target)


REDUCTION = reduction_option()


def _register_pair(name: str, fn, grad, tensors: tuple[TensorSpec, ...],
                   options: tuple[OptionSpec, ...] = (), torch: str = "",
                   check=_check_pair) -> None:
    """Register a loss of (input, target[, weight]) with torch's broadcasting rules."""
    register(LossSpec(name, fn, tensors, (REDUCTION, *options),
                      torch=torch or f"torch.nn.functional.{name}_loss", family=FAMILY,
                      check=check, grad=grad, batchable=_same_shapes))


_register_pair("l1", l1_loss, l1_loss_grad, (REAL_INPUT, TARGET, WEIGHT))
_register_pair("mse", mse_loss, mse_loss_grad, (REAL_INPUT, TARGET, WEIGHT))
_register_pair("l2", l2_loss, l2_loss_grad, (REAL_INPUT, TARGET),
               (OptionSpec("variant", str, "mse", "which L2: mse, sse, half_sse or norm",
                           choices=L2_VARIANTS),),
               torch="torch.nn.functional.mse_loss (variant='mse')")
_register_pair("smooth_l1", smooth_l1_loss, smooth_l1_loss_grad, (REAL_INPUT, TARGET),
               (OptionSpec("beta", float, 1.0, "threshold between the squared and the L1 term",
                           minimum=0.0),))
_register_pair("huber", huber_loss, huber_loss_grad, (INPUT, TARGET, WEIGHT),
               (OptionSpec("delta", float, 1.0, "threshold between the squared and the "
                           "delta-scaled L1 term", minimum=0.0, exclusive_minimum=True),),
               check=_check_huber)
