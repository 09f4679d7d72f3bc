"""Cases and torch oracle for service/losses/regression.py."""

from __future__ import annotations

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
    raise KeyError(name)


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
                                {"input": r.normal((4, 3), dtype), "target": r.normal((4, 3), dtype),
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
    return out
