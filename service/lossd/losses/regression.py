"""Regression losses: elementwise distances between predictions and targets.

Shapes: ``input`` and ``target`` are any shape ``(*)``; like torch, ``target`` broadcasts
against ``input`` (``gaussian_nll``'s ``var`` follows torch's own rules). Every function returns
:class:`Terms` whose ``values`` are torch's ``reduction='none'`` output; gradients are
vector-Jacobian products with ``upstream``. ``log_cosh``, ``mape`` and ``msle`` are beyond torch
(Keras / Optax definitions, cited in each docstring): elementwise, reduced like torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from ._checks import (
    broadcast_shape,
    check_shape,
    fail,
    same_shapes,
    shape_str,
    target_size_warning,
    unbroadcast,
)
from ._parallel import elementwise, piecewise
from ._reduce import Terms
from ._spec import (
    ANY_SHAPE,
    NON_NEGATIVE,
    NUMERIC_DTYPES,
    Check,
    GradFn,
    Kind,
    LossFn,
    LossSpec,
    OptionSpec,
    TensorSpec,
    Values,
    Warn,
    reduction_option,
    register,
)

FAMILY = "regression"

INPUT = TensorSpec("input", "input", "(*)", differentiable=True, description="predictions",
                   dims=ANY_SHAPE)
# torch promotes an integer (or bool) input against a float target for these (not for huber)
REAL_INPUT = TensorSpec("input", "input", "(*)", kind=Kind.REAL, differentiable=True,
                        description="predictions; integers are promoted like torch does",
                        dims=ANY_SHAPE)
TARGET = TensorSpec("target", "target", "(*), broadcastable to input", kind=Kind.REAL,
                    differentiable=True, description="ground truth", dims=ANY_SHAPE)
# torch's l1 and mse kernels subtract input and target as they are: no bool
NUMERIC_INPUT = replace(REAL_INPUT, dtypes=NUMERIC_DTYPES)
NUMERIC_TARGET = replace(TARGET, dtypes=NUMERIC_DTYPES)
WEIGHT = TensorSpec("weight", "weight", "same shape as input", kind=Kind.REAL, optional=True,
                    differentiable=True,
                    description="per-element weight (torch 2.x functional `weight=`); "
                                "integers and bool are promoted",
                    dims=ANY_SHAPE)


def _check_pair(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
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


def _diff(input: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.asarray(np.subtract(input, target, dtype=np.result_type(input, target)))


def _pair_vjp(local: Callable[..., None], upstream: np.ndarray, input: np.ndarray,
              target: np.ndarray, *extra: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of a loss of ``input - target``: ``local(x, y, *extra, out)`` writes its
    local derivative (``extra``: further same-shaped arrays such as a weight); run piecewise
    (see :func:`elementwise`) together with the product by ``upstream``."""
    def kernel(x: np.ndarray, y: np.ndarray, g: np.ndarray, *rest: np.ndarray) -> None:
        *more, grad_x, grad_y = rest
        local(x, y, *more, grad_x)
        grad_x *= g
        np.negative(grad_x, out=grad_y)

    grad_x, grad_y = elementwise(kernel, input, target, upstream, *extra, outputs=2)
    return {"input": unbroadcast(grad_x, input.shape), "target": unbroadcast(grad_y, target.shape)}


def _abs_diff(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    np.subtract(x, y, out=out)
    np.abs(out, out=out)


def _sign_diff(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    """torch.sign(x - y): 0 at 0 and at nan."""
    _torch_sign(np.subtract(x, y), out=out)


def _weight_grad(loss: Callable[..., None], upstream: np.ndarray, input: np.ndarray,
                 target: np.ndarray) -> np.ndarray:
    """d(Σ upstream·w·l)/dw = upstream·l for a loss ``l`` weighted elementwise."""
    unweighted = elementwise(loss, input, target)
    grad: np.ndarray = np.multiply(unweighted, upstream, out=unweighted)
    return grad


def _weighted(local: Callable[..., None]) -> Callable[..., None]:
    """``local`` times a same-shaped weight (the kernel's argument before ``out``)."""
    def kernel(x: np.ndarray, y: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
        local(x, y, out)
        out *= w
    return kernel


# --- L1 ---------------------------------------------------------------------------------------

def l1_loss(input: np.ndarray, target: np.ndarray, *,
            weight: np.ndarray | None = None) -> Terms:
    """Absolute error ``|x - y|`` (torch.nn.L1Loss); weighted mean ``Σ w·l / Σ w``.

    Example:
        >>> l1_loss(np.array([1., -2.]), np.array([0., 0.])).values
        array([1., 2.])
    """
    values = elementwise(_abs_diff, input, target)
    if weight is None:
        return Terms(values)
    return Terms(np.multiply(values, weight, out=values), weights=weight)


def l1_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                 weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """d|x-y|/dx = sign(x - y), 0 at 0 (torch's choice at the kink) and 0 at nan (torch's sgn);
    d/dw = |x - y| (the mean's normaliser Σw is differentiated generically)."""
    if weight is None:
        return _pair_vjp(_sign_diff, upstream, input, target)
    grads = _pair_vjp(_weighted(_sign_diff), upstream, input, target, weight)
    return {**grads, "weight": _weight_grad(_abs_diff, upstream, input, target)}


# --- MSE --------------------------------------------------------------------------------------

def mse_loss(input: np.ndarray, target: np.ndarray, *,
             weight: np.ndarray | None = None) -> Terms:
    """Squared error ``(x - y)²`` (torch.nn.MSELoss); weighted mean ``Σ w·l / Σ w``.

    Example:
        >>> mse_loss(np.array([1., -2.]), np.array([0., 0.])).values
        array([1., 4.])
    """
    values = elementwise(_squared_diff, input, target)
    if weight is None:
        return Terms(values)
    return Terms(np.multiply(values, weight, out=values), weights=weight)


def mse_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                  weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """d(x-y)²/dx = 2(x - y)."""
    if weight is None:
        return _pair_vjp(_twice_diff, upstream, input, target)
    grads = _pair_vjp(_weighted(_twice_diff), upstream, input, target, weight)
    return {**grads, "weight": _weight_grad(_squared_diff, upstream, input, target)}


def _squared_diff(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    np.subtract(x, y, out=out)
    np.multiply(out, out, out=out)


def _twice_diff(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
    np.subtract(x, y, out=out)
    out *= 2


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
    if variant == "mse":
        return Terms(elementwise(_squared_diff, input, target))
    d = _diff(input, target)
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
    if variant == "mse":
        return _pair_vjp(_twice_diff, upstream, input, target)
    d = _diff(input, target)
    per_sample = upstream.reshape(upstream.shape + (1,) * (d.ndim - upstream.ndim))
    if variant == "sse":
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
    if beta == 0:
        return Terms(elementwise(_abs_diff, input, target))
    return Terms(elementwise(partial(_smooth_l1, beta=beta), input, target))


def _huber(x: np.ndarray, y: np.ndarray, out: np.ndarray, *, delta: float) -> None:
    """``(|d| - ½c)·c`` with ``c = min(|d|, δ)``: ``½d²`` inside, ``δ(|d| - ½δ)`` outside,
    both rounded as torch's two branches (no per-element branch; nan stays nan)."""
    _abs_diff(x, y, out)
    clipped = np.clip(out, 0, delta)
    out -= clipped * 0.5
    out *= clipped


def _smooth_l1(x: np.ndarray, y: np.ndarray, out: np.ndarray, *, beta: float) -> None:
    """``(|d| - ½c)·(c/β)`` with ``c = min(|d|, β)``: torch's ``|d| - ½β`` exactly outside the
    band (c/β = 1), ``½d²/β`` to an ulp inside it."""
    _abs_diff(x, y, out)
    clipped = np.clip(out, 0, beta)
    out -= clipped * 0.5
    clipped /= beta
    out *= clipped


def smooth_l1_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                        beta: float = 1.0) -> dict[str, np.ndarray]:
    """d/β inside the band, sign(d) outside; at ``|d| = β`` both give ±1."""
    if beta == 0:  # torch dispatches to l1_loss: its sign, 0 at nan
        return _pair_vjp(_sign_diff, upstream, input, target)

    def local(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
        np.subtract(x, y, out=out)
        out /= out.dtype.type(beta)
        np.clip(out, -1, 1, out=out)

    return _pair_vjp(local, upstream, input, target)


def _check_huber(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> dict[str, np.ndarray]:
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
    values = elementwise(partial(_huber, delta=delta), input, target)
    return Terms(values if weight is None else np.multiply(values, weight, out=values))


def huber_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                    delta: float = 1.0, weight: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
    """d clipped to [-δ, δ]."""
    def local(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
        np.subtract(x, y, out=out)
        np.clip(out, -delta, delta, out=out)

    if weight is None:
        return _pair_vjp(local, upstream, input, target)
    grads = _pair_vjp(_weighted(local), upstream, input, target, weight)
    return {**grads, "weight": _weight_grad(partial(_huber, delta=delta), upstream, input,
                                            target)}


REDUCTION = reduction_option()


def _register_pair(name: str, fn: LossFn, grad: GradFn, tensors: tuple[TensorSpec, ...],
                   options: tuple[OptionSpec, ...] = (), torch: str = "",
                   check: Check = _check_pair, weights_tensor: str | None = None,
                   warn: Warn | None = None) -> None:
    """Register a loss of (input, target[, weight]) with torch's broadcasting rules."""
    register(LossSpec(name, fn, tensors, (REDUCTION, *options),
                      torch=torch or f"torch.nn.functional.{name}_loss", family=FAMILY,
                      check=check, grad=grad, batchable=same_shapes,
                      weights_tensor=weights_tensor, warn=warn))


def _l2_warning(arrays: Mapping[str, np.ndarray], options: Mapping[str, Any]
                ) -> tuple[str, ...]:
    """l2's ``mse`` variant is torch's mse_loss, and warns as it does."""
    return target_size_warning(arrays, options) if options["variant"] == "mse" else ()


# their weighted mean is Σ w·l / Σ w: the normaliser depends on the weight too
_register_pair("l1", l1_loss, l1_loss_grad, (NUMERIC_INPUT, NUMERIC_TARGET, WEIGHT),
               weights_tensor="weight", warn=target_size_warning)
_register_pair("mse", mse_loss, mse_loss_grad, (NUMERIC_INPUT, NUMERIC_TARGET, WEIGHT),
               weights_tensor="weight", warn=target_size_warning)
_register_pair("l2", l2_loss, l2_loss_grad, (REAL_INPUT, TARGET),
               (OptionSpec("variant", str, "mse", "which L2: mse, sse, half_sse or norm",
                           choices=L2_VARIANTS),),
               torch="torch.nn.functional.mse_loss (variant='mse')", warn=_l2_warning)
_register_pair("smooth_l1", smooth_l1_loss, smooth_l1_loss_grad, (REAL_INPUT, TARGET),
               (OptionSpec("beta", float, 1.0, "threshold between the squared and the L1 term",
                           minimum=0.0),), warn=target_size_warning)
_register_pair("huber", huber_loss, huber_loss_grad, (INPUT, TARGET, WEIGHT),
               (OptionSpec("delta", float, 1.0, "threshold between the squared and the "
                           "delta-scaled L1 term", minimum=0.0, exclusive_minimum=True),),
               check=_check_huber, warn=target_size_warning)


# --- Poisson and Gaussian negative log likelihood --------------------------------------------

# torch promotes integer inputs and targets of these two; gaussian_nll refuses bool (no `-` on
# bool), poisson_nll takes it beside a floating tensor
COUNTS = replace(TARGET, values=NON_NEGATIVE,
                 description="observed counts, >= 0 (not checked, as in torch); integers and "
                             "bool promoted")
VAR = TensorSpec("var", "variance", "input's shape; or input's shape without its last dim; or "
                 "input's ndim with exactly one mismatching dim of size 1", differentiable=True,
                 description="positive variances (0 is accepted and clamped to eps)",
                 dims=ANY_SHAPE, values=Values(low=0, low_open=True))


def _grads(upstream: np.ndarray, local: Callable[..., tuple[np.ndarray, ...]],
           **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """Vector-Jacobian products in each array's shape: ``local(*arrays)`` returns the local
    derivative of each array (in order); it runs piecewise, times ``upstream``."""
    def formula(g: np.ndarray, *pieces: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(np.multiply(d, g) for d in local(*pieces))

    grads = piecewise(formula, upstream, *arrays.values(), outputs=len(arrays))
    return {name: unbroadcast(grad, array.shape)
            for (name, array), grad in zip(arrays.items(), grads)}


def _check_poisson(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    """target broadcasts against input (integers alone are fine: torch computes in float32)."""
    broadcast_shape("target", arrays["target"], "input", arrays["input"])


def poisson_nll_loss(input: np.ndarray, target: np.ndarray, *, log_input: bool = True,
                     full: bool = False, eps: float = 1e-8) -> Terms:
    """Poisson negative log likelihood (torch.nn.PoissonNLLLoss), elementwise.

    ``log_input``: ``exp(x) - y·x`` (x is the log-rate); otherwise ``x - y·log(x + eps)``.
    ``full`` adds the Stirling term ``y·log y - y + ½·log(2πy)`` where ``y > 1`` only (torch
    masks ``y <= 1`` to 0, so a nan target stays nan). Targets are not range-checked.

    Example:
        >>> poisson_nll_loss(np.array([0.]), np.array([2.])).values
        array([1.])
    """
    def formula(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        values: np.ndarray = np.exp(x) - y * x if log_input else x - y * np.log(x + eps)
        if full:
            stirling = y * np.log(y) - y + 0.5 * np.log((2 * np.pi) * y)
            values = values + np.where(y <= 1, 0, stirling).astype(values.dtype)
        return values

    return Terms(piecewise(formula, input, target))


def poisson_nll_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                          log_input: bool = True, full: bool = False, eps: float = 1e-8
                          ) -> dict[str, np.ndarray]:
    """x: ``exp(x) - y`` or ``1 - y/(x + eps)``; y: ``-x`` or ``-log(x + eps)``, plus with
    ``full`` ``log y + 1/(2y)`` where ``y > 1``. Where torch masks the Stirling term autograd
    still multiplies 0 by ``log y``: the target gradient is nan where ``y <= 0``, as torch's."""
    def local(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if log_input:
            d_input, d_target = np.exp(x) - y, -x
        else:
            d_input, d_target = 1 - y / (x + eps), -np.log(x + eps)
        if full:
            d_stirling = np.where(y > 1, np.log(y) + 0.5 / y,
                                  np.where(y > 0, 0, np.nan)).astype(y.dtype, copy=False)
            d_target = d_target + d_stirling
        return d_input, d_target

    return _grads(upstream, local, input=input, target=target)


def _as_broadcast_var(var: np.ndarray, input: np.ndarray) -> np.ndarray:
    """var in a shape that broadcasts like torch's: one dim short of input -> unsqueezed."""
    if var.shape != input.shape and var.shape == input.shape[:-1]:
        return var[..., np.newaxis]
    return var


def _check_gaussian(arrays: dict[str, np.ndarray], options: dict[str, Any]) -> None:
    """torch's var rules: non-negative; input's shape, input's shape minus the last dim
    (unsqueezed), or input's ndim with the mismatching dims of var summing to 1 (one size-1
    dim). A 0-d var fits only a 0-d or 1-D input, as in torch. All three must broadcast."""
    input, target, var = arrays["input"], arrays["target"], arrays["var"]
    if var.size and np.any(var < 0):
        raise fail("var", f"expected non-negative variances; got {float(var[var < 0].flat[0])!r}")
    if var.shape != input.shape and var.shape != input.shape[:-1] and not (
            var.ndim == input.ndim
            and sum(v for i, v in zip(input.shape, var.shape) if i != v) == 1):
        raise fail("var", f"expected shape {shape_str(input.shape)}, "
                          f"{shape_str(input.shape[:-1])}, or {input.ndim}-D with one dim of "
                          f"size 1 where input's differs; got {shape_str(var.shape)}")
    shape = broadcast_shape("target", target, "input", input)
    try:
        np.broadcast_shapes(shape, _as_broadcast_var(var, input).shape)
    except ValueError:
        raise fail("var", f"shape {shape_str(var.shape)} cannot be broadcast with input and "
                          f"target {shape_str(shape)}") from None


def _same_batch_axis(arrays: dict[str, np.ndarray]) -> bool:
    """Batchable when input and target have one shape and var shares their batch axis (as
    input's shape, input's shape minus the last dim, or a size-1 dim past axis 0)."""
    input, var = arrays["input"], arrays["var"]
    return (arrays["target"].shape == input.shape and var.shape[:1] == input.shape[:1]
            and var.ndim >= 1 and var.ndim in (input.ndim, input.ndim - 1))


HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_nll_loss(input: np.ndarray, target: np.ndarray, var: np.ndarray, *,
                      full: bool = False, eps: float = 1e-6) -> Terms:
    """Gaussian negative log likelihood (torch.nn.GaussianNLLLoss), elementwise.

    ``½·(log v + (x - y)² / v)`` with ``v = max(var, eps)``, plus ``½·log 2π`` if ``full``.
    Shapes broadcast; a var one dim short of input is unsqueezed at the end first (torch's
    homoscedastic form). 'mean' averages every element.

    Example:
        >>> gaussian_nll_loss(np.array([1.]), np.array([0.]), np.array([1.])).values
        array([0.5])
    """
    def formula(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        v = np.clip(w, eps, np.inf)  # max(var, eps): nan stays nan
        d = np.subtract(x, y)
        values: np.ndarray = 0.5 * (np.log(v) + d * d / v)
        return values + HALF_LOG_2PI if full else values

    return Terms(piecewise(formula, input, target, _as_broadcast_var(var, input)))


def gaussian_nll_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray,
                           var: np.ndarray, *, full: bool = False, eps: float = 1e-6
                           ) -> dict[str, np.ndarray]:
    """x: ``d/v``; y: ``-d/v``; var: ``½·(1/v - d²/v²)``. torch clamps var under no_grad, so
    the var gradient passes straight through the clamp (it is taken at ``v``, never masked)."""
    def local(x: np.ndarray, y: np.ndarray, w: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v = np.clip(w, eps, np.inf)
        ratio = np.subtract(x, y) / v
        return ratio, -ratio, 0.5 * (1 / v - ratio * ratio)

    grads = _grads(upstream, local, input=input, target=target,
                   var=_as_broadcast_var(var, input))
    grads["var"] = grads["var"].reshape(var.shape)
    return grads


# --- Beyond torch: log-cosh, MAPE, MSLE (elementwise, torch's reduction semantics) -----------

LOG2 = math.log(2.0)


def log_cosh_loss(input: np.ndarray, target: np.ndarray) -> Terms:
    """Log-cosh ``log cosh(x - y)`` elementwise (Keras ``keras.losses.LogCosh``,
    ``optax.losses.log_cosh``).

    Computed as ``logaddexp(d, -d) - log 2`` (Optax's form): ``cosh`` overflows for
    ``|d| > ~89`` in float32, the log-sum-exp does not. The log-sum-exp is written out as
    NumPy's ``logaddexp`` evaluates it, ``|d| + log1p(exp(-2|d|))``, in vectorised passes
    (NumPy's own loop is not vectorised and ten times slower). Keras averages over the last axis
    before its batch reduction; lossd keeps one value per element and reduces like torch.

    Example:
        >>> log_cosh_loss(np.array([0., 1.]), np.array([0., 0.])).values
        array([0.    , 0.4338])
    """
    def formula(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.abs(np.subtract(x, y))
        values: np.ndarray = d + np.log1p(np.exp(-2 * d)) - LOG2
        return values

    return Terms(piecewise(formula, input, target))


def log_cosh_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray
                       ) -> dict[str, np.ndarray]:
    """d log cosh(d) / dd = tanh(d) (±1 at ±inf)."""
    def local(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
        np.subtract(x, y, out=out)
        np.tanh(out, out=out)

    return _pair_vjp(local, upstream, input, target)


def _torch_sign(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """torch.sign: 0 at 0 and at nan (what abs() backpropagates), as ``(x > 0) - (x < 0)``
    (faster than ``np.sign`` and its nan fix-up; ``np.sign`` in place is 10x slower still)."""
    x = np.asarray(x)
    return np.subtract(x > 0, x < 0, out=out, dtype=x.dtype)


def mape_loss(input: np.ndarray, target: np.ndarray, *, eps: float = 1e-7) -> Terms:
    """Absolute percentage error ``100·|y - x| / max(|y|, eps)`` elementwise (Keras
    ``keras.losses.MeanAbsolutePercentageError``; ``eps`` is Keras's ``backend.epsilon()``,
    1e-7). Keras averages over the last axis first; lossd reduces like torch.

    Example:
        >>> mape_loss(np.array([1., 3.]), np.array([2., 2.])).values
        array([50., 50.])
    """
    def formula(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        values: np.ndarray = 100 * np.abs(np.subtract(y, x)) / _at_least(np.abs(y), eps)
        return values

    return Terms(piecewise(formula, input, target))


def _at_least(x: np.ndarray, low: float) -> np.ndarray:
    """``max(x, low)``, nan kept; ``clip`` is several times faster than ``maximum`` with a
    scalar."""
    clipped: np.ndarray = np.clip(x, low, np.inf)
    return clipped


def mape_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                   eps: float = 1e-7) -> dict[str, np.ndarray]:
    """x: ``-100·sign(y - x)/m`` with ``m = max(|y|, eps)``. y: ``100·sign(y - x)/eps`` where
    ``|y| < eps``, else ``100·(sign(y - x)/|y| - |y - x|·sign(y)/y²)``, which simplifies to
    ``100·sign(y - x)·sign(y)·x/y²`` — the form used, free of the two terms' cancellation
    (``|y| = eps`` counts as unclamped: torch's clamp passes the gradient at equality). An
    infinite y makes the loss inf/inf = nan, and its gradient nan, as autograd's."""
    def local(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = _at_least(np.abs(y), eps)
        sign = _torch_sign(np.subtract(y, x))
        d_input = -100 * sign / scale
        unclamped = np.where(np.isinf(y), np.nan, _torch_sign(y) * x / (y * y))
        d_target = 100 * sign * np.where(np.abs(y) >= eps, unclamped, 1 / scale)
        return d_input, d_target.astype(scale.dtype)

    return _grads(upstream, local, input=input, target=target)


def msle_loss(input: np.ndarray, target: np.ndarray, *, eps: float = 1e-7) -> Terms:
    """Squared logarithmic error ``(log(1 + max(x, eps)) - log(1 + max(y, eps)))²``
    elementwise (Keras ``keras.losses.MeanSquaredLogarithmicError``).

    Keras clips both tensors at ``backend.epsilon()`` (1e-7) before the log, so negative values
    count as eps; that clipping is kept. The log is ``log1p`` (Keras writes ``log(· + 1)``: the
    same function, without float32 cancellation near 0). Keras averages over the last axis
    first; lossd reduces like torch.

    Example:
        >>> msle_loss(np.array([np.e - 1]), np.array([0.])).values  # ~1: y is clipped at eps
        array([1.000])
    """
    def formula(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.log1p(_at_least(x, eps)) - np.log1p(_at_least(y, eps))
        values: np.ndarray = d * d
        return values

    return Terms(piecewise(formula, input, target))


def msle_loss_grad(upstream: np.ndarray, input: np.ndarray, target: np.ndarray, *,
                   eps: float = 1e-7) -> dict[str, np.ndarray]:
    """x: ``2·d/(1 + max(x, eps))`` where ``x >= eps``, else 0 (the clip); y likewise with -d.
    A nan is outside the clip's pass-through (torch's clamp backward), so it gets 0."""
    def local(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cx, cy = _at_least(x, eps), _at_least(y, eps)
        twice = 2 * (np.log1p(cx) - np.log1p(cy))
        d_input = np.where(x >= eps, twice / (1 + cx), 0).astype(twice.dtype, copy=False)
        d_target = np.where(y >= eps, -twice / (1 + cy), 0).astype(twice.dtype, copy=False)
        return d_input, d_target

    return _grads(upstream, local, input=input, target=target)


def _eps_option(default: float, what: str) -> OptionSpec:
    return OptionSpec("eps", float, default, what, minimum=0.0)


register(LossSpec("poisson_nll", poisson_nll_loss, (REAL_INPUT, COUNTS),
                  (REDUCTION,
                   OptionSpec("log_input", bool, True, "input is the log of the rate"),
                   OptionSpec("full", bool, False, "add the Stirling term where target > 1"),
                   OptionSpec("eps", float, 1e-8, "added to input before the log when "
                              "log_input is false")),
                  torch="torch.nn.functional.poisson_nll_loss", family=FAMILY,
                  check=_check_poisson, grad=poisson_nll_loss_grad, batchable=same_shapes))
register(LossSpec("gaussian_nll", gaussian_nll_loss, (NUMERIC_INPUT, NUMERIC_TARGET, VAR),
                  (REDUCTION,
                   OptionSpec("full", bool, False, "add the constant ½·log 2π"),
                   OptionSpec("eps", float, 1e-6, "var is clamped to at least eps")),
                  torch="torch.nn.functional.gaussian_nll_loss", family=FAMILY,
                  check=_check_gaussian, grad=gaussian_nll_loss_grad,
                  batchable=_same_batch_axis))
_register_pair("log_cosh", log_cosh_loss, log_cosh_loss_grad, (REAL_INPUT, TARGET),
               torch="none (keras.losses.LogCosh, optax.losses.log_cosh; elementwise)")
_register_pair("mape", mape_loss, mape_loss_grad, (REAL_INPUT, TARGET),
               (_eps_option(1e-7, "lower bound of |target| in the denominator (Keras "
                                  "backend.epsilon())"),),
               torch="none (keras.losses.MeanAbsolutePercentageError; elementwise)")
# what MSLE is meant for; a negative value is accepted and counts as eps
_register_pair("msle", msle_loss, msle_loss_grad,
               (replace(REAL_INPUT, values=NON_NEGATIVE), replace(TARGET, values=NON_NEGATIVE)),
               (_eps_option(1e-7, "input and target are clipped to at least eps before the "
                                  "log (Keras backend.epsilon())"),),
               torch="none (keras.losses.MeanSquaredLogarithmicError; elementwise)")
