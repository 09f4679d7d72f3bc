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
from ._reduce import Reduction, Terms


def exact_sum(numbers: Iterable[float]) -> float:
    """Correctly rounded sum (order-independent); nan and ±inf propagate as in IEEE sums."""
    values = [float(x) for x in numbers]
    if all(math.isfinite(x) for x in values):
        try:
            return math.fsum(values)
        except OverflowError:  # the exact sum is beyond float64: it is ±inf
            pass
    with np.errstate(all="ignore"):
        return float(np.sum(np.asarray(values, dtype=np.float64)))


@dataclass(frozen=True)
class Stats:
    """Sufficient statistics of one or more batches (see the module docstring)."""

    total: float = 0.0
    scaled: float = 0.0
    weight: float = 0.0
    rows: int = 0
    elements: int = 0
    addend: float | None = None

    @classmethod
    def of(cls, terms: Terms) -> Stats:
        """Statistics of one batch's terms (batch on axis 0), accumulated in float64."""
        assert terms.addend is None or terms.scale is None, "an addend is never scaled"
        values = np.asarray(terms.values, dtype=np.float64)
        with np.errstate(all="ignore"):
            total = float(values.sum())
            scaled = total if terms.scale is None else float(np.vdot(
                values.ravel(), np.asarray(terms.scale, dtype=np.float64).ravel()))
            weight = (float(values.size) if terms.weights is None
                      else float(np.asarray(terms.weights, dtype=np.float64).sum()))
            addend = (None if terms.addend is None
                      else float(np.asarray(terms.addend, dtype=np.float64).sum()))
        return cls(total, scaled, weight, values.shape[0] if values.ndim else 1, values.size,
                   addend)

    @classmethod
    def combine(cls, parts: Iterable[Stats]) -> Stats:
        """The statistics of the concatenation of ``parts`` (exact, order-independent)."""
        parts = list(parts)
        addends = [p.addend for p in parts if p.addend is not None]
        return cls(exact_sum(p.total for p in parts), exact_sum(p.scaled for p in parts),
                   exact_sum(p.weight for p in parts), sum(p.rows for p in parts),
                   sum(p.elements for p in parts), exact_sum(addends) if addends else None)

    @property
    def loss_sum(self) -> float:
        """Σ of the loss values (both parts of a two-part loss)."""
        return self.total if self.addend is None else exact_sum((self.total, self.addend))

    def reduce(self, reduction: str, *, empty_mean: float = math.nan) -> float:
        """The dataset-level loss under ``reduction`` (``mean``, ``sum`` or ``batchmean``).

        Example:
            >>> Stats(total=3.0, scaled=3.0, weight=2.0, rows=2, elements=2).reduce("mean")
            1.5
        """
        divisors: dict[str, float] = {Reduction.SUM: 1.0, Reduction.BATCHMEAN: self.rows,
                                      Reduction.MEAN: self.weight}
        divisor = divisors.get(reduction)
        if divisor is not None:
            if reduction == Reduction.MEAN and self.elements == 0:
                return float(empty_mean)
            numerator = self.scaled if reduction == Reduction.MEAN else self.total
            parts = [numerator] if self.addend is None else [numerator, self.addend]
            with np.errstate(all="ignore"):  # each part divided, then added, as one call does
                return float(sum(np.float64(n) / np.float64(divisor) for n in parts))
        raise ValueError(f"{reduction!r} does not reduce a dataset; expected mean, sum or "
                         f"batchmean")


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
