"""Sufficient statistics of a batch's :class:`Terms`: five numbers that add across batches
(see :mod:`._aggregate` for how they reduce to a dataset-level loss)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

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
