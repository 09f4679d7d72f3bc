"""Cases and torch oracle for service/lossd/losses/regression.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import Case, Rand

SHAPES = [(), (5,), (4, 3), (2, 3, 4), (0, 3)]
REDUCTIONS = ["none", "mean", "sum"]


def torch_loss(name: str, t: dict[str, Any], options: dict[str, Any]):
    import torch
    import torch.nn.functional as F

    x, y, w = t["input"], t["target"], t.get("weight")
    reduction = options.get("reduction", "mean")
    if name == "l1":
        return F.l1_loss(x, y, reduction=reduction, weight=w)
    if name == "mse":
        return F.mse_loss(x, y, reduction=reduction, weight=w)
    if name == "smooth_l1":
        return F.smooth_l1_loss(x, y, reduction=reduction, beta=options.get("beta", 1.0))
    if name == "huber":
        return F.huber_loss(x, y, reduction=reduction, delta=options.get("delta", 1.0), weight=w)
    if name == "l2":
        variant = options.get("variant", "mse")
        if variant == "mse":
            return F.mse_loss(x, y, reduction=reduction)
        d = (x - y)
        rows = d.reshape(1, 1) if d.ndim == 0 else d.reshape(d.shape[0], int(np.prod(d.shape[1:])))
        per = {"sse": rows.pow(2).sum(1), "half_sse": 0.5 * rows.pow(2).sum(1),
               "norm": torch.linalg.vector_norm(rows, dim=1)}[variant]
        per = per.reshape(()) if d.ndim == 0 else per
        return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]
    if name == "poisson_nll":
        return F.poisson_nll_loss(x, y, log_input=options.get("log_input", True),
                                  full=options.get("full", False),
                                  eps=options.get("eps", 1e-8), reduction=reduction)
    if name == "gaussian_nll":
        return F.gaussian_nll_loss(x, y, t["var"], full=options.get("full", False),
                                   eps=options.get("eps", 1e-6), reduction=reduction)
    # beyond torch: the definitions written in torch ops (sources in the core's docstrings),
    # evaluated in float64 and rounded to the promoted dtype: the exact answer, not float32
    # autograd's (MAPE's target gradient cancels badly in float32 autograd)
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(torch.float64), y.to(torch.float64)
    eps = options.get("eps", 1e-7)
    if name == "log_cosh":
        d = x - y
        per = torch.logaddexp(d, -d) - math.log(2.0)
    elif name == "mape":
        per = 100 * (y - x).abs() / y.abs().clamp_min(eps)
    elif name == "msle":
        per = (torch.log1p(x.clamp_min(eps)) - torch.log1p(y.clamp_min(eps))).square()
    else:
        raise KeyError(name)
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction].to(dtype)


def cases(seed: int) -> list[Case]:
    r = Rand(seed)
    out: list[Case] = []
    options_grid = {
        "l1": [{}], "mse": [{}], "l2": [{"variant": v} for v in ("mse", "sse", "half_sse", "norm")],
        "smooth_l1": [{}, {"beta": 0.5}, {"beta": 0.0}, {"beta": 2.5}],
        "huber": [{}, {"delta": 0.5}, {"delta": 3.0}],
    }
    for loss, grid in options_grid.items():
        for opts in grid:
            for shape in SHAPES:
                for dtype in ("float64", "float32"):
                    for reduction in REDUCTIONS:
                        o = {**opts, "reduction": reduction}
                        tag = "-".join(f"{k}={v}" for k, v in opts.items()) or "default"
                        out.append(Case(f"{tag}-{shape}-{dtype}-{reduction}", loss,
                                        {"input": r.normal(shape, dtype, 2.0),
                                         "target": r.normal(shape, dtype, 2.0)}, o))
    # torch 2.x functional weight= on l1, mse, huber (huber's mean divides by numel)
    for loss in ("l1", "mse", "huber"):
        for reduction in REDUCTIONS:
            for dtype in ("float64", "float32"):
                out.append(Case(f"weight-{dtype}-{reduction}", loss,
                                {"input": r.normal((4, 3), dtype),
                                 "target": r.normal((4, 3), dtype),
                                 "weight": r.uniform((4, 3), dtype, 0.1, 2.0)},
                                {"reduction": reduction}))
        out.append(Case("weight-wrong-shape", loss,
                        {"input": r.normal((4, 3)), "target": r.normal((4, 3)),
                         "weight": r.uniform((3,))}, error=r"weight: must have shape \(4, 3\)"))
    for loss in options_grid:
        # broadcasting (torch warns, computes), integer targets promoted, mixed precision
        out.append(Case("broadcast-target", loss,
                        {"input": r.normal((4, 3)), "target": r.normal((3,))}, {}))
        # torch's huber backward fails on an int64 target ("Found dtype Long"): loss only
        out.append(Case("int-target", loss, {"input": r.normal((6,), "float32"),
                                             "target": r.integers(-2, 3, (6,))}, {},
                        grad=loss != "huber"))
        out.append(Case("mixed-f32-f64", loss, {"input": r.normal((6,), "float32"),
                                                "target": r.normal((6,), "float64")}, {},
                        grad=loss != "huber"))  # torch's huber backward refuses mixed dtypes
        out.append(Case("float16", loss, {"input": r.normal((8,), "float16"),
                                          "target": r.normal((8,), "float16")}, {}))
        nan_inf = r.normal((6,))
        nan_inf[1], nan_inf[3] = np.nan, np.inf
        out.append(Case("nan-inf", loss, {"input": nan_inf, "target": r.normal((6,))},
                        {"reduction": "none"}, finite_diff=False))
        out.append(Case("kink-zero-diff", loss, {"input": np.array([0.0, 1.0, -2.0]),
                                                 "target": np.array([0.0, 1.0, 1.0])},
                        {"reduction": "sum"}, finite_diff=False))
        # invalid calls
        out.append(Case("int-input-int-target", loss, {"input": r.integers(0, 3, (4,)),
                                                       "target": r.integers(0, 3, (4,))},
                        error="input: (dtype int64 is not accepted|expected floating point)"))
        if loss != "huber":
            out.append(Case("int-input-promoted", loss, {"input": r.integers(0, 3, (4,)),
                                                         "target": r.normal((4,), "float32")}))
        out.append(Case("no-broadcast", loss, {"input": r.normal((4, 3)),
                                               "target": r.normal((4, 2))},
                        error=r"target: shape \(4, 2\) cannot be broadcast with input \(4, 3\)"))
        out.append(Case("bad-reduction", loss, {"input": r.normal((4,)), "target": r.normal((4,))},
                        {"reduction": "average"}, error="reduction: expected one of"))
        out.append(Case("missing-target", loss, {"input": r.normal((4,))},
                        error="target: required tensor is missing", torch_accepts=True))
    out.append(Case("beta-negative", "smooth_l1", {"input": r.normal((4,)),
                                                   "target": r.normal((4,))},
                    {"beta": -0.5}, error=r"beta: expected a value >= 0; got -0.5"))
    out.append(Case("delta-zero", "huber", {"input": r.normal((4,)), "target": r.normal((4,))},
                    {"delta": 0.0}, error=r"delta: expected a value > 0; got 0.0"))
    # exactly at the smooth_l1 / huber boundary: torch's gradient choice there
    out.append(Case("boundary", "smooth_l1", {"input": np.array([1.0, -1.0, 0.5]),
                                              "target": np.array([0.0, 0.0, 0.0])},
                    {"reduction": "sum"}, finite_diff=False))
    out.append(Case("boundary", "huber", {"input": np.array([1.0, -1.0, 0.5]),
                                          "target": np.array([0.0, 0.0, 0.0])},
                    {"reduction": "sum"}, finite_diff=False))
    return out + likelihood_cases(seed) + beyond_torch_cases(seed)


def _grid(r: Rand, loss: str, grid: list[dict[str, Any]], make, *,
          finite_diff: bool = True) -> list[Case]:
    """Every option set x shape x dtype x reduction; ``make(shape, dtype, opts)`` -> inputs."""
    out = []
    for opts in grid:
        tag = "-".join(f"{k}={v}" for k, v in opts.items()) or "default"
        for shape in SHAPES:
            for dtype in ("float64", "float32"):
                for reduction in REDUCTIONS:
                    out.append(Case(f"{tag}-{shape}-{dtype}-{reduction}", loss,
                                    make(shape, dtype, opts), {**opts, "reduction": reduction},
                                    finite_diff=finite_diff))
    return out


def _var_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every var shape torch accepts for ``input`` of ``shape`` (besides ``shape`` itself)."""
    forms = [shape[:-1]] if shape else []
    forms += [shape[:i] + (1,) + shape[i + 1:] for i, n in enumerate(shape) if n != 1]
    return forms


def likelihood_cases(seed: int) -> list[Case]:
    """poisson_nll and gaussian_nll (torch's own losses)."""
    r = Rand(seed + 1000)
    out: list[Case] = []

    def poisson(shape, dtype, opts):
        log_input = opts.get("log_input", True)
        x = r.normal(shape, dtype) if log_input else r.uniform(shape, dtype, 0.2, 3.0)
        return {"input": x, "target": r.uniform(shape, dtype, 0.1, 4.0)}

    out += _grid(r, "poisson_nll", [{}, {"log_input": False}, {"full": True},
                                    {"log_input": False, "full": True, "eps": 1e-3}], poisson)

    def gaussian(shape, dtype, opts):
        return {"input": r.normal(shape, dtype), "target": r.normal(shape, dtype),
                "var": r.uniform(shape, dtype, 0.2, 2.0)}

    out += _grid(r, "gaussian_nll", [{}, {"full": True}], gaussian)
    # var below eps is clamped; its gradient passes through the clamp (not a finite difference)
    out += _grid(r, "gaussian_nll", [{"eps": 0.5}], gaussian, finite_diff=False)
    for shape in SHAPES:
        for var_shape in _var_shapes(shape):
            for dtype in ("float64", "float32"):
                out.append(Case(f"var{var_shape}-input{shape}-{dtype}", "gaussian_nll",
                                {"input": r.normal(shape, dtype), "target": r.normal(shape, dtype),
                                 "var": r.uniform(var_shape, dtype, 0.2, 2.0)},
                                {"reduction": r.choice(REDUCTIONS)}))

    def xy(x, y, **extra):
        return {"input": np.asarray(x, dtype=float), "target": np.asarray(y, dtype=float), **extra}

    # poisson: the Stirling term only where target > 1; target <= 0 gives a nan target gradient
    # (autograd multiplies the masked 0 by log(target)); targets are never checked
    out.append(Case("full-targets-around-1", "poisson_nll",
                    xy([0.3, -0.5, 1.2, 0.1, 2.0, 0.7], [0.0, -1.0, 1.0, 0.5, 1.5, 7.0]),
                    {"full": True, "reduction": "none"}, finite_diff=False))
    out.append(Case("full-not-log-input", "poisson_nll",
                    xy([0.3, 0.0, 1.2, 2.0], [0.0, 3.0, 1.0, 2.0]),
                    {"full": True, "log_input": False, "reduction": "sum"}, finite_diff=False))
    out.append(Case("negative-input-not-log", "poisson_nll", xy([-0.5, 0.5], [1.0, 2.0]),
                    {"log_input": False, "reduction": "none"}, finite_diff=False))
    out.append(Case("eps-negative-accepted", "poisson_nll", xy([0.5, 2.0], [1.0, 2.0]),
                    {"log_input": False, "eps": -0.1}))
    out.append(Case("int-input-int-target", "poisson_nll",  # torch computes these in float32
                    {"input": r.integers(0, 3, (4,)), "target": r.integers(0, 5, (4,))},
                    {"full": True, "log_input": False}))
    # gaussian: var below eps is clamped (the var gradient passes through the clamp), nan var
    out.append(Case("var-zero-and-tiny", "gaussian_nll",
                    {"input": r.normal((4,)), "target": r.normal((4,)),
                     "var": np.array([0.0, 1e-8, 0.5, 2.0])},
                    {"reduction": "none"}, finite_diff=False))
    out.append(Case("var-nan", "gaussian_nll",
                    {"input": r.normal((3,)), "target": r.normal((3,)),
                     "var": np.array([0.5, np.nan, 1.0])}, {"reduction": "none"},
                    finite_diff=False))
    out.append(Case("var-0d-input-0d", "gaussian_nll",
                    {"input": r.normal(()), "target": r.normal(()), "var": np.array(0.7)}))
    # torch unsqueezes a 0-d var against a 1-D input (input.shape[:-1] == ()): accepted
    out.append(Case("var-0d-input-1d", "gaussian_nll",
                    {"input": r.normal((5,)), "target": r.normal((5,)), "var": np.array(0.7)}))
    out.append(Case("target-broadcast", "gaussian_nll",
                    {"input": r.normal((2, 3)), "target": r.normal((3,)),
                     "var": r.uniform((2, 1), "float64", 0.2, 2.0)}, {"reduction": "none"}))
    out.append(Case("target-wider-than-input", "gaussian_nll",
                    {"input": r.normal((2, 3)), "target": r.normal((4, 2, 3)),
                     "var": r.uniform((2, 3), "float64", 0.2, 2.0)}))
    # torch takes log(var) in var's float16 before promoting; lossd computes it in float32
    out.append(Case("var-float16-input-float32", "gaussian_nll",
                    {"input": r.normal((4,), "float32"), "target": r.normal((4,), "float32"),
                     "var": r.uniform((4,), "float16", 0.2, 2.0)}, rtol=5e-4))
    out.append(Case("int-input-int-target", "gaussian_nll",
                    {"input": r.integers(-2, 3, (4,)), "target": r.integers(-2, 3, (4,)),
                     "var": r.uniform((4,), "float32", 0.2, 2.0)}))
    out.append(Case("empty-mean", "gaussian_nll",
                    {"input": r.normal((0, 3)), "target": r.normal((0, 3)),
                     "var": r.uniform((1, 3))}, finite_diff=False))  # nan loss
    bad_var = {"var-negative": (r.normal((2, 3)), np.array([[0.5, -0.1, 1.0]] * 2),
                                r"var: expected non-negative variances; got -0.1"),
               "var-0d-input-2d": (r.normal((2, 3)), np.array(0.7), r"var: expected shape"),
               "var-last-dim-only": (r.normal((2, 3)), r.uniform((3,)), r"var: expected shape"),
               "var-two-size-1-dims": (r.normal((2, 3)), r.uniform((1, 1)),
                                       r"var: expected shape"),
               "var-not-broadcastable": (r.normal((2, 3)), r.uniform((0, 1)),
                                         r"var: shape \(0, 1\) cannot be broadcast"),
               "var-int": (r.normal((3,)), np.array([1, 2, 3]),
                           r"var: dtype int64 is not accepted")}
    for tag, (x, var, error) in bad_var.items():
        out.append(Case(tag, "gaussian_nll", {"input": x, "target": r.normal(x.shape),
                                              "var": var}, error=error))
    out.append(Case("target-bool", "gaussian_nll",
                    {"input": r.normal((3,)), "target": np.array([True, False, True]),
                     "var": r.uniform((3,))}, error="target: dtype bool is not accepted"))
    out.append(Case("missing-var", "gaussian_nll", {"input": r.normal((3,)),
                                                    "target": r.normal((3,))},
                    error="var: required tensor is missing"))
    for loss in ("poisson_nll", "gaussian_nll"):
        extra = (lambda shape, dtype="float64": {"var": r.uniform(shape, dtype, 0.2, 2.0)}
                 ) if loss == "gaussian_nll" else (lambda shape, dtype="float64": {})
        out += _common_cases(r, loss, extra)
    return out


def _common_cases(r: Rand, loss: str, extra, *, torch_refuses: bool = True) -> list[Case]:
    """Broadcasting, promotion, float16, nan/inf and invalid calls, for any elementwise loss.
    ``extra(shape, dtype)`` adds the loss's other tensors."""
    out = []
    pos = loss in ("poisson_nll", "msle")  # counts and log-errors: non-negative data
    def sample(shape, dtype="float64"):
        return r.uniform(shape, dtype, 0.1, 3.0) if pos else r.normal(shape, dtype, 2.0)
    out.append(Case("broadcast-target", loss,
                    {"input": sample((4, 3)), "target": sample((3,)), **extra((4, 3))}))
    out.append(Case("int-target", loss, {"input": sample((6,), "float32"),
                                         "target": r.integers(1, 4, (6,)),
                                         **extra((6,), "float32")}))
    out.append(Case("mixed-f32-f64", loss, {"input": sample((6,), "float32"),
                                            "target": sample((6,), "float64"),
                                            **extra((6,), "float32")}))
    out.append(Case("float16", loss, {"input": sample((8,), "float16"),
                                      "target": sample((8,), "float16"),
                                      **extra((8,), "float16")}))
    nan_inf = sample((6,))
    nan_inf[1], nan_inf[3] = np.nan, np.inf
    out.append(Case("nan-inf-input", loss, {"input": nan_inf, "target": sample((6,)),
                                            **extra((6,))},
                    {"reduction": "none"}, finite_diff=False))
    out.append(Case("nan-inf-target", loss, {"input": sample((6,)), "target": nan_inf.copy(),
                                             **extra((6,))},
                    {"reduction": "none"}, finite_diff=False))
    invalid = [
        Case("no-broadcast", loss, {"input": sample((4, 3)), "target": sample((4, 2)),
                                    **extra((4, 3))},
             error=r"target: shape \(4, 2\) cannot be broadcast with input \(4, 3\)"),
        Case("bad-reduction", loss, {"input": sample((4,)), "target": sample((4,)),
                                     **extra((4,))},
             {"reduction": "average"}, error="reduction: expected one of"),
        Case("missing-target", loss, {"input": sample((4,)), **extra((4,))},
             error="target: required tensor is missing", torch_accepts=True),
    ]
    if not torch_refuses:  # no torch loss to refuse: the oracle is lossd's formula in torch ops
        for case in invalid:
            case.torch_accepts = True
    return out + invalid


def beyond_torch_cases(seed: int) -> list[Case]:
    """log_cosh, mape and msle: Keras/Optax definitions, elementwise, torch's reductions."""
    r = Rand(seed + 2000)
    out: list[Case] = []

    def normal(shape, dtype, opts):
        return {"input": r.normal(shape, dtype, 2.0), "target": r.normal(shape, dtype, 2.0)}

    def positive(shape, dtype, opts):  # some negatives: the clip at eps
        return {"input": r.uniform(shape, dtype, -0.5, 3.0),
                "target": r.uniform(shape, dtype, -0.5, 3.0)}

    out += _grid(r, "log_cosh", [{}], normal)
    out += _grid(r, "mape", [{}, {"eps": 0.5}], normal)
    out += _grid(r, "msle", [{}, {"eps": 0.25}], positive)
    for loss in ("log_cosh", "mape", "msle"):
        out += _common_cases(r, loss, lambda shape, dtype="float64": {}, torch_refuses=False)
        out.append(Case("int-input-int-target", loss, {"input": r.integers(0, 3, (4,)),
                                                       "target": r.integers(0, 3, (4,))},
                        error="input: expected floating point", torch_accepts=True))
        out.append(Case("int-input-promoted", loss, {"input": r.integers(0, 3, (4,)),
                                                     "target": r.uniform((4,), "float32", 1, 2)}))
    # log cosh: cosh(100) overflows float32, the logaddexp form does not
    out.append(Case("large-diff", "log_cosh",
                    {"input": np.array([100.0, -1000.0, 30.0, 0.0], dtype="float32"),
                     "target": np.zeros(4, dtype="float32")}, {"reduction": "none"}))
    # MAPE: |target| < eps divides by eps; eps=0 with a zero target gives inf (nan for 0/0)
    out.append(Case("zero-target", "mape", {"input": np.array([0.5, 0.0, -2.0]),
                                            "target": np.array([0.0, 0.0, 1e-9])},
                    {"reduction": "none"}, finite_diff=False))
    out.append(Case("zero-target-eps-0", "mape", {"input": np.array([0.5, 0.0, 1.0]),
                                                  "target": np.array([0.0, 0.0, 2.0])},
                    {"eps": 0.0, "reduction": "none"}, finite_diff=False))
    out.append(Case("equal-input-target", "mape", {"input": np.array([1.5, -2.0]),
                                                   "target": np.array([1.5, -2.0])},
                    {"reduction": "sum"}, finite_diff=False))
    # Keras's documented example: MeanAbsolutePercentageError()([[2, 1], [2, 3]],
    # [[1, 1], [1, 0]]) = 50 and MeanSquaredLogarithmicError()([[0, 1], [0, 0]],
    # [[1, 1], [1, 0]]) = 0.240 (Keras takes y_true first)
    # one pair is equal: the kink of |y - x|. The target gradient of (0, 3) is 0 in exact
    # arithmetic, 100/4·(1/3 - 3/9), which torch's autograd rounds to -1.8e-15 (a residue of
    # the array's scale, 8.3, times float64's epsilon): above the 1e-15 floor, so 1e-14 here
    out.append(Case("keras-example", "mape", {"input": np.array([[1.0, 1.0], [1.0, 0.0]]),
                                              "target": np.array([[2.0, 1.0], [2.0, 3.0]])},
                    finite_diff=False, grad_atol=1e-14))
    out.append(Case("keras-example", "msle", {"input": np.array([[1.0, 1.0], [1.0, 0.0]]),
                                              "target": np.array([[0.0, 1.0], [0.0, 0.0]])},
                    finite_diff=False))
    # MSLE at the clip: a value exactly eps still passes the gradient (torch's clamp rule)
    out.append(Case("at-clip", "msle", {"input": np.array([1e-7, 0.0, -3.0, 2.0]),
                                        "target": np.array([1e-7, 1.0, 0.5, -1.0])},
                    {"reduction": "none"}, finite_diff=False))
    for loss in ("mape", "msle"):
        out.append(Case("eps-negative", loss, {"input": r.normal((3,)), "target": r.normal((3,))},
                        {"eps": -1e-3}, error=r"eps: expected a value >= 0; got -0.001",
                        torch_accepts=True))
    return out
