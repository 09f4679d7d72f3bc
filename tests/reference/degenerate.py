"""The degenerate-shape sweep: every loss's valid reference cases cut to degenerate shapes.

Each valid reference case (seed 0) of a loss is shrunk, one named dim at a time, to size zero
(zero classes, zero batch, zero-length sequences, empty trailing dims), with every target
ignored where the loss has ``ignore_index``, and to 0-d where every tensor allows it. The dims
come from the registry's forms, so a new loss is swept without a line here.
tests/losses/test_degenerate.py compares lossd with torch on these calls (live, or through
``tests/golden/degenerate.json``: ``python -m tests.golden.generate degenerate``).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Any

import numpy as np

from lossd.losses import ANY, REGISTRY, Form, LossSpec

from . import Case, family


def known(case: Case) -> str | None:
    """Why ``case`` is a difference from torch the sweep found and left (None: it is not).
    Each must still differ in the sweep: a fix shows up as a failure asking to drop it."""
    inputs = case.inputs
    if case.loss == "cosine_embedding" and inputs["input1"].dtype == np.float16 and (
            inputs["input1"].shape[-1] == 0):
        # torch adds its 1e-12 to the squared norms in float16, where it rounds to 0: an empty
        # (or all-zero) float16 vector gives 0/0 = nan; lossd computes float16 in float32
        return "float16 eps of torch's cosine"
    if case.loss == "cross_entropy" and case.options.get("label_smoothing", 0) > 0 and (
            inputs["input"].shape[min(1, inputs["input"].ndim - 1)] == 0
            and inputs["target"].size == 0 and case.options.get("reduction") == "sum"
            and inputs["target"].shape != inputs["input"].shape):  # class indices
        # torch's ε/C over zero classes is inf, and inf·0 is nan even summed over no target;
        # lossd's sum over no target is 0 (Terms cannot say nan without a value)
        return "sum of nothing times eps/0"
    return None


Label = str  # a dim name ("N", "C"), "*k" for the k-th dim an ANY covers, "#k" for a fixed size


def _labels(form: Form, ndim: int) -> list[Label] | None:
    """Per-axis labels of a tensor of ``ndim`` dims in ``form`` (None if it cannot match)."""
    if ANY not in form:
        return [d if isinstance(d, str) else f"#{d}" for d in form] if len(form) == ndim else None
    at = form.index(ANY)
    covered = ndim - (len(form) - 1)
    if covered < 0:
        return None
    head = [d if isinstance(d, str) else f"#{d}" for d in form[:at]]
    tail = [d if isinstance(d, str) else f"#{d}" for d in form[at + 1:]]
    return head + [f"*{k}" for k in range(covered)] + tail


def _bind(spec: LossSpec, inputs: dict[str, np.ndarray]) -> dict[str, list[Label]] | None:
    """Labels of every axis of every tensor: of the combinations of forms whose named dims
    agree on sizes, the one with the fewest distinct labels (the most dims shared: a soft
    ``(N, C, S)`` target of an ``(N, C, S)`` input is ``(N, C, ANY)``, not ``(N, H, W)``)."""
    names = list(inputs)
    options = [[labels for form in spec.tensor_map[name].dims
                if (labels := _labels(form, inputs[name].ndim)) is not None]
               for name in names]
    best: tuple[tuple[int, int], dict[str, list[Label]]] | None = None
    for combination in itertools.product(*options):
        sizes: dict[Label, int] = {}
        agree = True
        for name, labels in zip(names, combination):
            for label, size in zip(labels, inputs[name].shape):
                if label.startswith("#"):
                    agree = agree and int(label[1:]) == size
                else:
                    agree = agree and sizes.setdefault(label, size) == size
        # fewest labels; then the most ANY dims (an (N, d1) index target of an (N, C, d1)
        # input, not an (N, C) target whose ANY covers nothing)
        key = (len(sizes), -sum(lab.startswith("*") for labs in combination for lab in labs))
        if agree and (best is None or key < best[0]):
            best = key, dict(zip(names, combination))
    return None if best is None else best[1]


def _shrink(spec: LossSpec, case: Case, labels: dict[str, list[Label]], zero: frozenset[Label]
            ) -> dict[str, np.ndarray]:
    """The case with every axis labelled in ``zero`` cut to size 0; a value bounded above by
    a dim cut to 0 (a sequence length) is clipped to the new size."""
    out = {}
    for name, array in case.inputs.items():
        index = tuple(slice(0, 0) if lab in zero else slice(None) for lab in labels[name])
        array = array[index]
        values = spec.tensor_map[name].values
        if values is not None and values.high in zero and not values.high_open:
            array = np.minimum(array, 0).astype(array.dtype)
        out[name] = array
    return out


def _ignore_all(spec: LossSpec, inputs: dict[str, np.ndarray], options: dict[str, Any]
                ) -> dict[str, np.ndarray] | None:
    """Every class-index target set to ``ignore_index`` (None when the loss has none)."""
    if "ignore_index" not in spec.option_map:
        return None
    target = inputs["target"]
    if target.dtype.kind not in "iu":
        return None  # probability targets ignore nothing
    ignore = options.get("ignore_index", spec.option_map["ignore_index"].default)
    if not np.can_cast(np.min_scalar_type(ignore), target.dtype):
        return None  # -100 is no uint8
    return {**inputs, "target": np.full_like(target, ignore)}


def _zero_d(spec: LossSpec, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Every tensor as its first element, 0-d, where every tensor's forms allow ``()``."""
    if not all(any(f in ((), (ANY,)) for f in spec.tensor_map[n].dims) for n in inputs):
        return None
    if any(a.size == 0 for a in inputs.values()):
        return None
    return {n: a.reshape(-1)[:1].reshape(()) for n, a in inputs.items()}


@lru_cache(maxsize=None)
def cases(loss: str) -> tuple[tuple[Case, dict[str, list[Label]]], ...]:
    """The loss's valid reference cases (seed 0) with their axis labels."""
    spec = REGISTRY[loss]
    out = []
    for case in family(spec.family).cases(0):
        if case.loss != loss or case.error is not None:
            continue
        labels = _bind(spec, case.inputs)
        if labels is not None:  # None: broadcast shapes (margin_ranking's (N,) with (1,))
            out.append((case, labels))
    return tuple(out)


def shrinkable(labels: dict[str, list[Label]]) -> list[Label]:
    return sorted({lab for labs in labels.values() for lab in labs if not lab.startswith("#")})


def degenerate(case: Case, labels: dict[str, list[Label]], zero: frozenset[Label],
               ignore: bool, zero_d: bool) -> Case | None:
    spec = REGISTRY[case.loss]
    inputs = _shrink(spec, case, labels, zero)
    what = "-".join(sorted(zero)) or "full"
    if ignore:
        ignored = _ignore_all(spec, inputs, case.options)
        if ignored is None:
            return None
        inputs, what = ignored, what + "-ignored"
    if zero_d:
        scalar = _zero_d(spec, inputs)
        if scalar is None:
            return None
        inputs, what = scalar, what + "-0d"
    return Case(f"{case.id}-{what}", case.loss, inputs, dict(case.options), grad=case.grad)


def sweep(loss: str) -> list[Case]:
    """Every case of ``loss`` with each dim zeroed in turn, all targets ignored, 0-d: one
    case per (reference shape signature, degeneracy), so the sweep stays fast."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for case, labels in cases(loss):
        options = tuple(sorted((k, repr(v)) for k, v in case.options.items()))
        signature = (options, tuple((n, a.dtype.name, a.ndim) for n, a in case.inputs.items()))
        if signature in seen:
            continue
        seen.add(signature)
        choices = [(frozenset({lab}), False, False) for lab in shrinkable(labels)]
        choices += [(frozenset(), True, False), (frozenset({"C"}), True, False),
                    (frozenset(), False, True)]
        for zero, ignore, zero_d in choices:
            made = degenerate(case, labels, zero, ignore, zero_d)
            if made is not None:
                out.append(made)
    return out
