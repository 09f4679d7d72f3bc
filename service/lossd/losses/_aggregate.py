"""Dataset-level losses from per-batch sufficient statistics (pure; no I/O).

A batch's :class:`Terms` reduce through five numbers, and those numbers add across batches:

    total     Σ values                   (sum)
    scaled    Σ values·scale             (mean's numerator; = total without a scale)
    weight    Σ weights                  (mean's denominator; = elements without weights)
    rows      batch size, values.shape[0] (batchmean's denominator)
    elements  values.size                (empty mean; the denominator without weights)
    addend    Σ addend                   (a two-part loss's second part; None without one)

so the reduction over the concatenation of batches B₁ … Bₖ is

    sum        Σₖ totalₖ                   (+ Σₖ addendₖ)
    mean       Σₖ scaledₖ / Σₖ weightₖ     (+ Σₖ addendₖ / Σₖ weightₖ; ``empty_mean`` when
                                            Σₖ elementsₖ = 0)
    batchmean  Σₖ totalₖ / Σₖ rowsₖ        (+ Σₖ addendₖ / Σₖ rowsₖ)

exactly what one call on the concatenated arrays gives (torch's weighted cross-entropy mean is
Σ losses / Σ target weights across *all* batches, CTC's mean divides each sequence by its own
target length, batchmean divides by the whole dataset's batch size) — not a mean of batch means.
Per-batch numbers are float64; batches are added with :func:`exact_sum` (``math.fsum``), which
is correctly rounded and therefore independent of the order batches arrive in.

Batches may only be added up when they are the same computation: :func:`signature` names the
loss, reduction, options, dtypes and per-sample shapes of a prepared call.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument
from ._batch import batch_axes, batch_key
from ._compute import Prepared
from ._reduce import Reduction
from ._stats import Stats


def dataset_reduction(reduction: str) -> str:
    """The reduction of a dataset aggregate: the call's own, or torch's default ``mean`` for
    ``none`` (whose per-batch answers are the per-sample values)."""
    return Reduction.MEAN.value if reduction == Reduction.NONE else str(reduction)


@dataclass(frozen=True)
class Signature:
    """What batches must share to be added up.

    Attributes:
        key: stable digest of loss, reduction, options (tensor options by value), dtypes and
            per-sample shapes; equal across processes and restarts.
        text: the same for humans, e.g. ``"mse(reduction='mean') input float32[N, 3], ..."``.
        dtype: torch's result dtype of the loss (the aggregate's dtype).
    """

    key: str
    text: str
    dtype: str


def signature(call: Prepared) -> Signature:
    """The signature of a validated call; raises ``InvalidArgument`` when its tensors have no
    common batch axis (an unbatched sample, broadcasting, or batch sizes that disagree), since
    such a call has no well-defined concatenation with others."""
    axes = batch_axes(call)
    if axes is None:
        shapes = ", ".join(f"{name} {list(a.shape)}" for name, a in call.arrays.items())
        raise InvalidArgument(
            f"inputs: a dataset batch needs every tensor in batched form with one batch size "
            f"and no broadcasting, so that batches concatenate; got {shapes}", field="inputs")
    key = hashlib.blake2b(repr((call.reduction, batch_key(call, axes))).encode(),
                          digest_size=16).hexdigest()
    tensors = []
    for name in (t.name for t in call.spec.tensors if t.name in call.arrays):
        array = call.arrays[name]
        dims = [("N" if i == axes[name] else str(d)) for i, d in enumerate(array.shape)] if (
            name in axes) else [str(d) for d in array.shape]
        fixed = "" if name in axes else " (fixed)"
        tensors.append(f"{name} {call.dtypes[name].name}[{', '.join(dims)}]{fixed}")
    options = ", ".join(f"{k}={v!r}" for k, v in
                        sorted({**call.options, "reduction": call.reduction}.items()))
    return Signature(key, f"{call.spec.name}({options}) {'; '.join(tensors)}",
                     call.out_dtype.name)


@dataclass(frozen=True)
class Aggregate:
    """A dataset-level loss: ``value`` (0-d, torch's result dtype) and what it was made of."""

    loss: str
    reduction: str
    value: np.ndarray
    stats: Stats
    batches: int

    @classmethod
    def of(cls, loss: str, reduction: str, parts: Iterable[Stats], *, dtype: str,
           empty_mean: float = math.nan) -> Aggregate:
        """Add up ``parts`` and reduce (``reduction='none'`` aggregates as ``mean``)."""
        parts = list(parts)
        stats = Stats.combine(parts)
        reduction = dataset_reduction(reduction)
        value = np.asarray(stats.reduce(reduction, empty_mean=empty_mean), dtype=dtype)
        return cls(loss, reduction, value, stats, len(parts))
