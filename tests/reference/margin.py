"""Cases and torch oracle for service/lossd/losses/margin.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import Case, Rand

REDUCTIONS = ["none", "mean", "sum"]
DTYPES = ["float64", "float32"]
NAN, INF = np.nan, np.inf

Inputs = dict[str, np.ndarray]


def _reduce(values, reduction: str):
    return {"none": values, "sum": values.sum(), "mean": values.mean()}[reduction]


def _hinge_oracle(x, target, squared: bool, reduction: str):
    """Keras's hinge in torch ops: labels cast to x's dtype, all-0/1 labels mapped to ±1.

    The labels are detached: they are discrete classes (±1, or 0/1 mapped by a test of every
    value), so lossd's hinge gives them no gradient, as torch gives none to the ±1 labels of
    hinge_embedding and cosine_embedding; the oracle states that choice rather than
    differentiating ``2y - 1``."""
    import torch

    y = target.detach().to(x.dtype)
    if bool(((y == 0) | (y == 1)).all()):
        y = 2 * y - 1
    h = torch.clamp_min(1 - y * x, 0)
    return _reduce((h * h if squared else h).mean(-1), reduction)


def torch_loss(name: str, t: dict[str, Any], options: dict[str, Any]):
    import torch.nn.functional as F

    o = dict(options)
    reduction = o.pop("reduction", "mean")
    if name == "hinge_embedding":
        return F.hinge_embedding_loss(t["input"], t["target"], reduction=reduction, **o)
    if name == "soft_margin":
        return F.soft_margin_loss(t["input"], t["target"], reduction=reduction)
    if name == "margin_ranking":
        return F.margin_ranking_loss(t["input1"], t["input2"], t["target"],
                                     reduction=reduction, **o)
    if name == "cosine_embedding":
        return F.cosine_embedding_loss(t["input1"], t["input2"], t["target"],
                                       reduction=reduction, **o)
    if name in ("multi_margin", "multilabel_margin"):
        fn = F.multi_margin_loss if name == "multi_margin" else F.multilabel_margin_loss
        extra = {**o, "weight": t.get("weight")} if name == "multi_margin" else {}
        if t["input"].ndim == 2 and t["input"].shape[0] == 0:
            # torch returns uninitialised memory for an empty batch's mean and sum; lossd
            # reduces the (correct, empty) 'none' output like every other loss: nan and 0
            return _reduce(fn(t["input"], t["target"], reduction="none", **extra), reduction)
        return fn(t["input"], t["target"], reduction=reduction, **extra)
    if name == "triplet_margin":
        return F.triplet_margin_loss(t["anchor"], t["positive"], t["negative"],
                                     reduction=reduction, **o)
    if name == "triplet_margin_with_distance":
        distance = o.pop("distance_function", "pairwise_distance")
        functions = {"pairwise_distance": None,
                     "cosine": lambda a, b: 1 - F.cosine_similarity(a, b, dim=-1)}
        if distance not in functions:
            raise ValueError(f"no distance named {distance!r}")
        return F.triplet_margin_with_distance_loss(
            t["anchor"], t["positive"], t["negative"], distance_function=functions[distance],
            reduction=reduction, **o)
    if name in ("hinge", "squared_hinge"):
        return _hinge_oracle(t["input"], t["target"], name == "squared_hinge", reduction)
    raise KeyError(name)


# --- valid shape forms per loss: (tag, inputs(r, dtype)) ---------------------------------------

Form = tuple[str, Callable[[Rand, str], Inputs]]


def _scores_labels(shape: tuple[int, ...], label_shape: tuple[int, ...] | None = None) -> Form:
    return (f"{shape}", lambda r, d: {"input": r.normal(shape, d, 2.0),
                                      "target": r.signs(label_shape or shape, d)})


def _pair(shape: tuple[int, ...], label_shape: tuple[int, ...]) -> Form:
    return (f"{shape}", lambda r, d: {"input1": r.normal(shape, d), "input2": r.normal(shape, d),
                                      "target": r.signs(label_shape, d)})


def _multi(n: int | None, c: int, label_shape: tuple[int, ...] | None = None) -> Form:
    shape = (c,) if n is None else (n, c)
    labels = label_shape if label_shape is not None else (() if n is None else (n,))
    return (f"{shape}-target{labels}",
            lambda r, d: {"input": r.normal(shape, d), "target": r.integers(0, c, labels)})


def _multilabel_target(r: Rand, shape: tuple[int, ...]) -> np.ndarray:
    """Random labels with duplicates, a -1 at a random slot, and junk (valid values) after it."""
    c = shape[-1]
    target = r.integers(0, c, shape)
    stop = r.integers(0, c + 1, shape[:-1] + (1,))
    slot = np.arange(c)
    junk = r.integers(-1, c, shape)
    return np.where(slot < stop, target, np.where(slot == stop, -1, junk)).astype(np.int64)


def _multilabel(shape: tuple[int, ...]) -> Form:
    return (f"{shape}", lambda r, d: {"input": r.normal(shape, d),
                                      "target": _multilabel_target(r, shape)})


def _triplet(shape: tuple[int, ...]) -> Form:
    return (f"{shape}", lambda r, d: {k: r.normal(shape, d)
                                      for k in ("anchor", "positive", "negative")})


FORMS: dict[str, list[Form]] = {
    "hinge_embedding": [_scores_labels(s) for s in [(), (5,), (4, 3), (2, 3, 4), (0, 3)]],
    "soft_margin": [_scores_labels(s) for s in [(), (5,), (4, 3), (2, 3, 4), (0, 3)]],
    "margin_ranking": [_pair(s, s) for s in [(), (5,), (0,)]],
    "cosine_embedding": [_pair((4, 3), (4,)), _pair((5,), ()), _pair((0, 3), (0,)),
                         _pair((3, 0), (3,))],
    "multi_margin": [_multi(4, 5), _multi(None, 5), _multi(None, 5, (1,)), _multi(0, 5),
                     _multi(3, 1)],
    "multilabel_margin": [_multilabel(s) for s in [(4, 5), (6,), (0, 5), (3, 1)]],
    "triplet_margin": [_triplet(s) for s in [(4, 3), (5,), (2, 3, 4), (0, 3), (3, 0)]],
    "triplet_margin_with_distance": [_triplet(s) for s in [(4, 3), (5,), (2, 3, 4), (0, 3)]],
    "hinge": [_scores_labels(s) for s in [(4, 3), (5,), (2, 3, 4), (0, 3), (3, 0)]],
    "squared_hinge": [_scores_labels(s) for s in [(4, 3), (5,), (2, 3, 4), (0, 3), (3, 0)]],
}

OPTIONS: dict[str, list[dict[str, Any]]] = {
    "hinge_embedding": [{"margin": 2.0}, {"margin": -0.5}],
    "soft_margin": [],
    "margin_ranking": [{"margin": 0.5}, {"margin": -0.5}],
    "cosine_embedding": [{"margin": 0.3}, {"margin": -0.5}],
    "multi_margin": [{"p": 2}, {"margin": 0.5}, {"margin": -1.0}, {"p": 2, "margin": 2.0}],
    "multilabel_margin": [],
    "triplet_margin": [{"margin": 0.5}, {"p": 1.0}, {"p": 3.5}, {"p": 0.5}, {"p": INF},
                       {"eps": 0.0}, {"eps": 1e-3}, {"swap": True},
                       {"swap": True, "p": 1.0, "margin": 2.0}],
    "triplet_margin_with_distance": [{"distance_function": "cosine"}, {"margin": 0.5},
                                     {"swap": True},
                                     {"distance_function": "cosine", "swap": True,
                                      "margin": 0.2}],
    "hinge": [],
    "squared_hinge": [],
}


def _grid(r: Rand) -> list[Case]:
    """Every shape form x dtype x reduction with default options; then each non-default option
    set on the first form x dtype x reduction."""
    out = []
    for loss, forms in FORMS.items():
        for tag, make in forms:
            for dtype in DTYPES:
                for reduction in REDUCTIONS:
                    out.append(Case(f"default-{tag}-{dtype}-{reduction}", loss, make(r, dtype),
                                    {"reduction": reduction}))
        tag, make = forms[0]
        for opts in OPTIONS[loss]:
            name = "-".join(f"{k}={v}" for k, v in opts.items())
            for dtype in DTYPES:
                for reduction in REDUCTIONS:
                    out.append(Case(f"{name}-{tag}-{dtype}-{reduction}", loss, make(r, dtype),
                                    {**opts, "reduction": reduction}))
    # float16 is computed in float32 and rounded, like torch's CPU half kernels
    for loss, forms in FORMS.items():
        if loss not in ("multi_margin", "multilabel_margin"):
            out.append(Case("float16", loss, forms[0][1](r, "float16"), {}))
    return out


def _hinge_embedding(r: Rand) -> list[Case]:
    loss = "hinge_embedding"
    x = np.array([0.3, -0.4, 1.5, 0.2, 2.0, 0.7])
    return [
        # labels other than ±1 get both terms
        Case("other-labels", loss, {"input": x, "target": np.array([1., -1., 0., 2., NAN, -1.])},
             {"reduction": "none"}),
        Case("int-labels", loss, {"input": x.astype("float32"),
                                  "target": np.array([1, -1, 0, 1, -1, 3])}),
        Case("bool-labels", loss, {"input": x, "target": np.array([True, False] * 3)},
             {"reduction": "sum"}),
        Case("mixed-f32-f64", loss, {"input": r.normal((6,), "float32"),
                                     "target": r.signs((6,), "float64")}),
        Case("broadcast-target", loss, {"input": r.normal((4, 3)), "target": r.signs((3,))},
             {"reduction": "none"}),
        Case("broadcast-input", loss, {"input": r.normal((3,)), "target": r.signs((4, 3))},
             {"reduction": "none"}),
        Case("nan-inf", loss, {"input": np.array([NAN, NAN, INF, -INF, INF, -INF]),
                               "target": np.array([1., -1., 1., 1., -1., -1.])},
             {"reduction": "none"}, finite_diff=False),
        # x = margin with y = -1: the gradient passes at the kink
        Case("kink", loss, {"input": np.array([1.0, 2.0, 1.0]),
                            "target": np.array([-1., -1., 0.])},
             {"reduction": "sum"}, finite_diff=False),
        Case("int-input", loss, {"input": r.integers(0, 3, (4,)), "target": r.signs((4,))},
             error="input: dtype int64 is not accepted"),
        Case("no-broadcast", loss, {"input": r.normal((4, 3)), "target": r.signs((4, 2))},
             error=r"target: shape \(4, 2\) cannot be broadcast with input \(4, 3\)"),
        Case("bad-reduction", loss, {"input": r.normal((4,)), "target": r.signs((4,))},
             {"reduction": "average"}, error="reduction: expected one of"),
    ]


def _soft_margin(r: Rand) -> list[Case]:
    loss = "soft_margin"
    return [
        Case("broadcast-target", loss, {"input": r.normal((4, 3)), "target": r.signs((3,))},
             {"reduction": "none"}),
        Case("int-target", loss, {"input": r.normal((6,), "float32"),
                                  "target": r.signs((6,), "int64")}),
        Case("soft-labels", loss, {"input": r.normal((6,)), "target": r.normal((6,))}),
        Case("mixed-f32-f64", loss, {"input": r.normal((6,), "float32"),
                                     "target": r.signs((6,), "float64")}),
        # torch computes log1p(exp(-y x)) literally: overflow gives inf, and a nan gradient
        Case("overflow", loss, {"input": np.array([-1000., 1000., 30., -30., NAN, INF, -INF]),
                                "target": np.ones(7)}, {"reduction": "none"},
             finite_diff=False),
        Case("overflow-f32", loss, {"input": np.array([-100., 100., 20., -20.], "float32"),
                                    "target": np.ones(4, "float32")}, {"reduction": "none"},
             finite_diff=False),
        Case("target-larger", loss, {"input": r.normal((3,)), "target": r.signs((4, 3))},
             error=r"target: must broadcast to input's shape \(3,\); got \(4, 3\)"),
        Case("int-input", loss, {"input": r.integers(0, 3, (4,)), "target": r.signs((4,))},
             error="input: dtype int64 is not accepted"),
    ]


def _margin_ranking(r: Rand) -> list[Case]:
    loss = "margin_ranking"
    return [
        Case("zero-label", loss, {"input1": r.normal((4,)), "input2": r.normal((4,)),
                                  "target": np.array([0., 1., -1., 0.])},
             {"reduction": "none", "margin": 0.5}),
        Case("broadcast", loss, {"input1": r.normal((4,)), "input2": r.normal((1,)),
                                 "target": r.signs((4,))}, {"reduction": "none"}),
        Case("2d", loss, {"input1": r.normal((3, 1)), "input2": r.normal((1, 2)),
                          "target": r.signs((3, 2))}),
        Case("int-input1", loss, {"input1": r.integers(-3, 3, (5,)),
                                  "input2": r.normal((5,), "float32"),
                                  "target": r.signs((5,), "float32")}),
        Case("all-int", loss, {"input1": r.integers(-3, 3, (5,)),
                               "input2": r.integers(-3, 3, (5,)),
                               "target": r.signs((5,), "int64")}, {"margin": 0.5}),
        Case("mixed-f32-f64", loss, {"input1": r.normal((5,), "float32"),
                                     "input2": r.normal((5,), "float32"),
                                     "target": r.signs((5,), "float64")}),
        Case("nan-inf", loss, {"input1": np.array([NAN, 1., INF, -INF]),
                               "input2": np.array([0., NAN, 1., 1.]),
                               "target": np.array([1., -1., 1., 1.])},
             {"reduction": "none"}, finite_diff=False),
        # -y (x1 - x2) + margin = 0: the gradient passes at the kink
        Case("kink", loss, {"input1": np.array([1., 2., 0.5]), "input2": np.array([1., 1., 1.]),
                            "target": np.array([1., 1., -1.])},
             {"reduction": "sum", "margin": 1.0}, finite_diff=False),
        Case("0d-target-1d-inputs", loss, {"input1": r.normal((3,)), "input2": r.normal((3,)),
                                           "target": np.array(1.0)},
             error="target: input1, input2 and target must have the same ndim"),
        Case("no-broadcast", loss, {"input1": r.normal((4,)), "input2": r.normal((3,)),
                                    "target": r.signs((4,))},
             error="target: .* cannot be broadcast together"),
    ]


def _cosine_embedding(r: Rand) -> list[Case]:
    loss = "cosine_embedding"
    return [
        Case("other-labels", loss, {"input1": r.normal((4, 3)), "input2": r.normal((4, 3)),
                                    "target": np.array([0., 2., 1., -1.])},
             {"reduction": "none"}),
        Case("int-labels", loss, {"input1": r.normal((4, 3), "float32"),
                                  "input2": r.normal((4, 3), "float32"),
                                  "target": np.array([1, -1, 0, 1])}),
        # the labels take no part in promotion: float32 result
        Case("f64-labels", loss, {"input1": r.normal((4, 3), "float32"),
                                  "input2": r.normal((4, 3), "float32"),
                                  "target": r.signs((4,), "float64")}),
        Case("mixed-f32-f64", loss, {"input1": r.normal((4, 3), "float32"),
                                     "input2": r.normal((4, 3), "float64"),
                                     "target": r.signs((4,))}),
        # a zero vector has cos 0 (the 1e-12 in the sqrt); its gradient is ~1e6, so no FD
        Case("zero-vector", loss, {"input1": np.array([[0., 0., 0.], [0., 0., 0.]]),
                                   "input2": r.normal((2, 3)), "target": np.array([1., -1.])},
             {"reduction": "none"}, finite_diff=False),
        # orthogonal with y = -1 and margin 0: cos - margin = 0, the clamp passes the gradient
        Case("kink", loss, {"input1": np.array([[1., 0.], [2., 1.]]),
                            "input2": np.array([[0., 1.], [1., -2.]]),
                            "target": np.array([-1., -1.])}, {"reduction": "sum"},
             finite_diff=False),
        Case("nan", loss, {"input1": np.array([[NAN, 1.], [1., 2.]]),
                           "input2": r.normal((2, 2)), "target": np.array([1., 0.])},
             {"reduction": "none"}, finite_diff=False),
        Case("3d", loss, {"input1": r.normal((2, 3, 4)), "input2": r.normal((2, 3, 4)),
                          "target": r.signs((2,))},
             error=r"input1: expected \(N, D\) or \(D\) \(1-D or 2-D\); got 3-D"),
        Case("0d-target-2d-inputs", loss, {"input1": r.normal((3, 4)),
                                           "input2": r.normal((3, 4)),
                                           "target": np.array(1.0)},
             error=r"target: must have shape \(3,\) to match input1 \(3, 4\); got \(\)"),
        Case("1d-target-1d-inputs", loss, {"input1": r.normal((4,)), "input2": r.normal((4,)),
                                           "target": np.array([1.0])},
             error=r"target: must have shape \(\) to match input1 \(4,\); got \(1,\)"),
        Case("feature-mismatch", loss, {"input1": r.normal((3, 4)), "input2": r.normal((3, 5)),
                                        "target": r.signs((3,))},
             error=r"input2: must have shape \(3, 4\) to match input1 \(3, 4\); got \(3, 5\)"),
        # torch broadcasts input2 against input1; lossd asks for equal shapes (one pair per row)
        Case("broadcast-inputs", loss, {"input1": r.normal((3, 4)), "input2": r.normal((1, 4)),
                                        "target": r.signs((3,))},
             error=r"input2: must have shape \(3, 4\)", torch_accepts=True),
        # torch promotes integer embeddings (no gradient for them)
        Case("int-input", loss, {"input1": r.integers(-2, 3, (3, 4)),
                                 "input2": r.normal((3, 4)), "target": r.signs((3,))}),
    ]


def _multi_margin(r: Rand) -> list[Case]:
    loss = "multi_margin"
    x = r.normal((4, 5))
    y = np.array([0, 2, 4, 1])
    out = []
    for dtype in DTYPES:
        for reduction in REDUCTIONS:
            for p in (1, 2):
                out.append(Case(f"weight-p={p}-{dtype}-{reduction}", loss,
                                {"input": r.normal((4, 5), dtype), "target": y,
                                 "weight": r.uniform((5,), dtype, 0.1, 2.0)},
                                {"p": p, "reduction": reduction}))
    return out + [
        Case("weight-1d", loss, {"input": r.normal((5,)), "target": np.array(3),
                                 "weight": r.uniform((5,), "float64", 0.1, 2.0)},
             {"reduction": "none"}),
        # nan scores add nothing (the kernel counts a term only when z > 0)
        Case("nan", loss, {"input": np.array([[1., 0., 2., NAN], [NAN, 1., 0.5, 0.]]),
                           "target": np.array([0, 1])}, {"reduction": "none"},
             finite_diff=False),
        # z = margin - x_y + x_i = 0 exactly: no gradient at the kink
        Case("kink", loss, {"input": np.array([[1., 0., 2., -3.], [0., 1., 0.5, 0.]]),
                            "target": np.array([0, 1])}, {"reduction": "sum", "p": 1},
             finite_diff=False),
        Case("kink-p2", loss, {"input": np.array([[1., 0., 2., -3.], [0., 1., 0.5, 0.]]),
                               "target": np.array([0, 1])}, {"reduction": "sum", "p": 2},
             finite_diff=False),
        Case("int32-target", loss, {"input": x, "target": y.astype(np.int32)},
             error="target: dtype int32 is not accepted"),
        Case("float16-input", loss, {"input": x.astype(np.float16), "target": y},
             error="input: dtype float16 is not accepted"),
        Case("target-too-large", loss, {"input": x, "target": np.array([0, 5, 1, 1])},
             error=r"target: class index out of range: expected values in \[0, 4\]; got 5"),
        Case("target-negative", loss, {"input": x, "target": np.array([0, -1, 1, 1])},
             error=r"target: class index out of range: expected values in \[0, 4\]; got -1"),
        Case("3d-input", loss, {"input": r.normal((2, 3, 4)), "target": np.array([0, 1])},
             error=r"input: expected \(N, C\) or \(C\)"),
        Case("no-classes", loss, {"input": r.normal((2, 0)), "target": np.array([0, 0])},
             error="input: needs at least one class"),
        Case("target-2d", loss, {"input": x, "target": y[:, None]},
             error=r"target: must have shape \(4,\) to match input \(4, 5\); got \(4, 1\)"),
        Case("p=3", loss, {"input": x, "target": y}, {"p": 3},
             error="p: expected one of 1, 2; got 3"),
        Case("weight-2d", loss, {"input": x, "target": y, "weight": np.ones((4, 5))},
             error=r"weight: expected \(C\) \(1-D\); got 2-D"),
        Case("weight-size", loss, {"input": x, "target": y, "weight": np.ones(3)},
             error=r"weight: must have shape \(5,\) to match input \(4, 5\); got \(3,\)"),
        Case("weight-dtype", loss, {"input": x, "target": y, "weight": np.ones(5, "float32")},
             error=r"weight: dtype must equal input's \(float64\); got float32"),
    ]


def _multilabel_margin(r: Rand) -> list[Case]:
    loss = "multilabel_margin"
    x = r.normal((2, 4))
    return [
        # torch's documentation example: 0.85
        Case("doc-example", loss, {"input": np.array([[0.1, 0.2, 0.4, 0.8]]),
                                   "target": np.array([[3, 0, -1, 1]])}),
        Case("leading-minus-one", loss, {"input": x, "target": np.array([[-1, 0, 1, 2],
                                                                           [2, -1, 0, 1]])},
             {"reduction": "none"}),
        Case("duplicates", loss, {"input": x, "target": np.array([[1, 1, 2, -1],
                                                                   [3, 3, 3, 3]])},
             {"reduction": "none"}),
        Case("all-targets", loss, {"input": x, "target": np.array([[0, 1, 2, 3],
                                                                    [3, 2, 1, 0]])},
             {"reduction": "none"}),
        Case("nan", loss, {"input": np.array([[1., 0., 2., NAN], [NAN, 1., 0.5, 0.]]),
                           "target": np.array([[0, 3, -1, 1], [1, 1, -1, 0]])},
             {"reduction": "none"}, finite_diff=False),
        # z = 1 - x_y + x_i = 0 exactly: no gradient at the kink
        Case("kink", loss, {"input": np.array([[1., 0., 2., 5.], [0., 1., 0.5, 0.]]),
                            "target": np.array([[0, 3, -1, 1], [1, 1, -1, 0]])},
             {"reduction": "sum"}, finite_diff=False),
        Case("shape-mismatch", loss, {"input": x, "target": np.array([[1, -1, 0], [0, 1, 2]])},
             error=r"target: must have shape \(2, 4\) to match input \(2, 4\); got \(2, 3\)"),
        Case("target-too-large", loss, {"input": x, "target": np.array([[1, 4, -1, 0]] * 2)},
             error=r"target: class index out of range: expected values in \[-1, 3\]; got 4"),
        # torch range-checks the slots after the first -1 as well
        Case("junk-after-minus-one", loss, {"input": x,
                                            "target": np.array([[1, -1, 7, 0]] * 2)},
             error=r"target: class index out of range: expected values in \[-1, 3\]; got 7"),
        Case("minus-two", loss, {"input": x, "target": np.array([[1, -2, 0, 0]] * 2)},
             error=r"target: class index out of range: expected values in \[-1, 3\]; got -2"),
        Case("int32-target", loss, {"input": x, "target": np.zeros((2, 4), np.int32)},
             error="target: dtype int32 is not accepted"),
        Case("float16-input", loss, {"input": x.astype(np.float16),
                                     "target": np.zeros((2, 4), np.int64)},
             error="input: dtype float16 is not accepted"),
        Case("3d-input", loss, {"input": r.normal((2, 2, 4)),
                                "target": np.zeros((2, 2, 4), np.int64)},
             error=r"input: expected \(N, C\) or \(C\)"),
        Case("no-classes", loss, {"input": r.normal((2, 0)),
                                  "target": np.zeros((2, 0), np.int64)},
             error="input: needs at least one class"),
    ]


def _triplets(r: Rand, loss: str) -> list[Case]:
    def triple(shape, dtype="float64"):
        return {k: r.normal(shape, dtype) for k in ("anchor", "positive", "negative")}

    a = r.normal((3, 4))
    out = [
        Case("mixed-f32-f64", loss, {"anchor": r.normal((3, 4), "float32"),
                                     "positive": r.normal((3, 4), "float64"),
                                     "negative": r.normal((3, 4), "float32")}),
        # positive == anchor: with swap d(a, n) = d(p, n), torch's minimum splits the gradient
        Case("swap-tie", loss, {"anchor": a, "positive": a.copy(), "negative": r.normal((3, 4))},
             {"swap": True, "reduction": "sum", "margin": 5.0}, finite_diff=False),
        Case("nan", loss, {"anchor": np.array([[NAN, 1.], [1., 2.]]),
                           "positive": r.normal((2, 2)), "negative": r.normal((2, 2))},
             {"reduction": "none"}, finite_diff=False),
        Case("margin-zero", loss, triple((3, 4)), {"margin": 0.0},
             error=r"margin: expected a value > 0; got 0.0"),
        Case("margin-negative", loss, triple((3, 4)), {"margin": -1.0},
             error=r"margin: expected a value > 0; got -1.0"),
        Case("mixed-ndim", loss, {"anchor": r.normal((3, 4)), "positive": r.normal((4,)),
                                  "negative": r.normal((3, 4))},
             error="anchor: anchor, positive and negative must have the same ndim"),
        # torch broadcasts equal-ndim tensors and reads a 0-D tensor as one feature; lossd asks
        # for equal shapes with a feature axis (one triplet per row)
        Case("broadcast", loss, {"anchor": r.normal((3, 4)), "positive": r.normal((1, 4)),
                                 "negative": r.normal((3, 4))},
             error=r"positive: must have shape \(3, 4\)", torch_accepts=True),
        Case("0d", loss, {k: np.array(1.0) for k in ("anchor", "positive", "negative")},
             error=r"anchor: expected \(N, D\), \(D\) or \(\*, D\) with a feature axis",
             torch_accepts=True),
        # torch promotes integer embeddings (no gradient for them)
        Case("int-anchor", loss, {"anchor": r.integers(-2, 3, (3, 4)),
                                  "positive": r.normal((3, 4)), "negative": r.normal((3, 4))}),
    ]
    if loss == "triplet_margin":
        out += [
            # p = 1, eps = 0: d(a, p) - d(a, n) + margin = 1 - 2 + 1 = 0, the clamp passes
            Case("kink", loss, {"anchor": np.array([[0.]]), "positive": np.array([[1.]]),
                                "negative": np.array([[2.]])},
                 {"p": 1.0, "eps": 0.0, "reduction": "sum"}, finite_diff=False),
            # a tie for the inf-norm's maximum shares the gradient
            Case("p=inf-tie", loss, {"anchor": np.array([[1., -1., 0.5]]),
                                     "positive": np.array([[0., 0., 0.]]),
                                     "negative": np.array([[0., 0.2, 0.]])},
                 {"p": INF, "eps": 0.0, "reduction": "sum"}, finite_diff=False),
            Case("p=0.5-zero-diff", loss, {"anchor": np.array([[1., 2., 0.5]]),
                                           "positive": np.array([[1., 0., 0.]]),
                                           "negative": np.array([[0., 0.2, 0.]])},
                 {"p": 0.5, "eps": 0.0, "reduction": "sum", "margin": 9.0},
                 finite_diff=False),
            Case("p=0", loss, triple((3, 4)), {"p": 0.0},
                 error=r"p: expected a value > 0; got 0.0", torch_accepts=True),
        ]
    else:
        out += [
            # a zero vector: cosine_similarity clamps its norm to 1e-8 (gradient ~1e8, no FD)
            Case("cosine-zero-vector", loss, {"anchor": np.zeros((2, 3)),
                                              "positive": r.normal((2, 3)),
                                              "negative": r.normal((2, 3))},
                 {"distance_function": "cosine", "reduction": "none"}, finite_diff=False),
            Case("cosine-tiny-vector", loss, {"anchor": np.full((2, 3), 1e-9),
                                              "positive": r.normal((2, 3)),
                                              "negative": r.normal((2, 3))},
                 {"distance_function": "cosine", "reduction": "none"}, finite_diff=False),
            Case("unknown-distance", loss, triple((3, 4)), {"distance_function": "l3"},
                 error="distance_function: expected one of 'pairwise_distance', 'cosine'"),
        ]
    return out


def _hinges(r: Rand, loss: str) -> list[Case]:
    return [
        # all labels 0/1: converted to ±1 (Keras)
        Case("01-labels", loss, {"input": r.normal((4, 3)),
                                 "target": r.integers(0, 2, (4, 3)).astype("float64")},
             {"reduction": "none"}),
        Case("01-int-labels", loss, {"input": r.normal((4, 3), "float32"),
                                     "target": r.integers(0, 2, (4, 3))}),
        Case("bool-labels", loss, {"input": r.normal((4, 3)),
                                   "target": r.integers(0, 2, (4, 3)).astype(bool)}),
        # a -1 among them: not binary, nothing converted (a 0 label gives max(0, 1) = 1)
        Case("mixed-labels", loss, {"input": r.normal((2, 3)),
                                    "target": np.array([[0., 1., -1.], [1., 0., 1.]])},
             {"reduction": "none"}),
        Case("mixed-f32-f64", loss, {"input": r.normal((4, 3), "float32"),
                                     "target": r.signs((4, 3), "float64")}),
        Case("nan-inf", loss, {"input": np.array([[NAN, 1.], [INF, -INF]]),
                               "target": np.array([[1., -1.], [1., 1.]])},
             {"reduction": "none"}, finite_diff=False),
        # y x = 1: the gradient passes at the kink
        Case("kink", loss, {"input": np.array([[1., -1., 0.5]]),
                            "target": np.array([[1., -1., 1.]])},
             {"reduction": "sum"}, finite_diff=False),
        Case("shape-mismatch", loss, {"input": r.normal((4, 3)), "target": r.signs((4, 2))},
             error=r"target: must have shape \(4, 3\) to match input \(4, 3\); got \(4, 2\)"),
        # the torch-ops oracle would broadcast; lossd wants one label per score
        Case("broadcast-target", loss, {"input": r.normal((4, 3)), "target": r.signs((3,))},
             error=r"target: must have shape \(4, 3\)", torch_accepts=True),
        # a 0-D score has no last axis to average over
        Case("0d", loss, {"input": np.array(0.5), "target": np.array(1.0)},
             error=r"input: expected \(N, D\), \(D\) or \(\*, D\) with a feature axis",
             torch_accepts=True),
    ]


def cases(seed: int) -> list[Case]:
    r = Rand(seed)
    return (_grid(r) + _hinge_embedding(r) + _soft_margin(r) + _margin_ranking(r)
            + _cosine_embedding(r) + _multi_margin(r) + _multilabel_margin(r)
            + _triplets(r, "triplet_margin") + _triplets(r, "triplet_margin_with_distance")
            + _hinges(r, "hinge") + _hinges(r, "squared_hinge"))
