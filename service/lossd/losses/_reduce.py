"""Reduction, kept apart from the losses so that batching is exact.

Every loss returns :class:`Terms`: torch's ``reduction='none'`` output plus what its mean
divides by. Reducing a slice of the terms along axis 0 gives exactly the answer the slice would
have had alone, which is what lets the engine batch requests and reduce each one afterwards.

    none       values
    sum        Σ values
    mean       Σ values·scale / Σ weights      (scale defaults to 1, weights to one per value)
    batchmean  Σ values / values.shape[0]      (KLDiv; a 0-d value is not divided)

A loss whose torch formula adds two separately reduced parts (cross-entropy with label
smoothing: ``(1 - ε)·nll + ε/C·smooth``) gives the second one as ``addend``: each part is
reduced as above and the results added, so a zero ``Σ weights`` gives torch's ``inf - inf = nan``
rather than one infinity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np


class Reduction(str, Enum):
    """torch's ``reduction`` values, plus KLDiv's ``batchmean`` (see the table above)."""

    NONE = "none"
    MEAN = "mean"
    SUM = "sum"
    BATCHMEAN = "batchmean"


@dataclass(frozen=True)
class Terms:
    """Per-sample loss values and the mean's normaliser.

    Attributes:
        values: torch's ``reduction='none'`` output; axis 0 is the batch axis when it has one.
        weights: same shape as ``values``; the mean divides by their sum (e.g. the class weight
            of each target in weighted cross-entropy, 0 where ignored). ``None``: one per value.
        scale: same shape as ``values``; the mean sums ``values * scale`` (CTC divides each
            sequence by its target length). ``None``: 1.
        addend: same shape as ``values``; a second part, reduced like ``values`` on its own
            and added after the reduction (``values + addend`` unreduced). ``None``: none.
            Never given together with ``scale`` (dataset aggregates rely on it).

    Example:
        Weighted cross-entropy's values are already ``w·l``; its mean divides by ``Σ w``:

        >>> terms = Terms(np.array([2.0, 4.0]), weights=np.array([1.0, 3.0]))
        >>> reduce(terms, "mean")  # (2 + 4) / (1 + 3)
        array(1.5)
        >>> terms.slice(1, 2)
        Terms(values=array([4.]), weights=array([3.]), scale=None, addend=None)
    """

    values: np.ndarray
    weights: np.ndarray | None = None
    scale: np.ndarray | None = None
    addend: np.ndarray | None = None

    def slice(self, start: int, stop: int) -> Terms:
        """The terms of samples ``start:stop`` along axis 0."""
        cut = slice(start, stop)
        return Terms(
            self.values[cut],
            None if self.weights is None else self.weights[cut],
            None if self.scale is None else self.scale[cut],
            None if self.addend is None else self.addend[cut],
        )

    def total(self) -> np.ndarray:
        """The unreduced loss: ``values`` plus ``addend``."""
        return self.values if self.addend is None else self.values + self.addend


def reduce(terms: Terms, reduction: str, *, empty_mean: float = math.nan) -> np.ndarray:
    """Reduce ``terms`` as torch does; returns a 0-d array unless ``reduction='none'``.

    An empty mean is ``empty_mean`` (nan, like ``torch.mean``; 0 for torchvision's box losses).

    Example:
        >>> terms = Terms(np.array([1.0, 2.0, 6.0]))
        >>> reduce(terms, "sum"), reduce(terms, "mean")
        (array(9.), array(3.))
        >>> reduce(Terms(np.array([[1.0, 2.0], [3.0, 4.0]])), "batchmean")  # Σ / N, N = 2
        array(5.)
        >>> reduce(Terms(np.array([], dtype=np.float32)), "mean")
        array(nan, dtype=float32)
    """
    if reduction == Reduction.NONE:
        return terms.total()
    reduced = _reduce_part(terms.values, terms, reduction, empty_mean)
    if terms.addend is None:
        return reduced
    with np.errstate(all="ignore"):
        return np.asarray(reduced + _reduce_part(terms.addend, terms, reduction, empty_mean))


def _reduce_part(values: np.ndarray, terms: Terms, reduction: str, empty_mean: float
                 ) -> np.ndarray:
    """:func:`reduce` of one part (``values`` or ``addend``) with the terms' weights and scale."""
    dtype = values.dtype
    with np.errstate(all="ignore"):
        if reduction == Reduction.SUM:
            return np.asarray(values.sum(dtype=dtype))
        if reduction == Reduction.BATCHMEAN:
            total = values.sum(dtype=dtype)
            return np.asarray(total / dtype.type(values.shape[0]) if values.ndim else total)
        if reduction == Reduction.MEAN:
            if values.size == 0:
                return np.asarray(empty_mean, dtype=dtype)
            numerator = values.sum(dtype=dtype) if terms.scale is None else np.vdot(
                values.ravel(), terms.scale.ravel())
            denominator = (dtype.type(values.size) if terms.weights is None
                           else terms.weights.sum(dtype=dtype))
            return np.asarray(numerator / denominator, dtype=dtype)
    raise ValueError(f"{reduction!r} is not a valid value for reduction")


def weights_cotangent(terms: Terms, reduction: str) -> np.ndarray | None:
    """d(reduced loss)/d(weights) (``None`` without weights): ``-mean / Σ weights`` for a
    weighted mean, whose normaliser depends on the weights; 0 for the other reductions."""
    if terms.weights is None:
        return None
    if reduction != Reduction.MEAN:
        return np.zeros_like(terms.weights)
    with np.errstate(all="ignore"):
        mean = reduce(terms, reduction)
        return np.full_like(terms.weights, -mean / terms.weights.sum(dtype=mean.dtype))


def cotangent(terms: Terms, reduction: str) -> np.ndarray:
    """d(reduced loss)/d(values), the same for ``addend``: what the gradient functions multiply
    by (shape of values)."""
    values = terms.values
    dtype = values.dtype
    with np.errstate(all="ignore"):
        if reduction in (Reduction.NONE, Reduction.SUM):
            return np.ones_like(values)
        if reduction == Reduction.BATCHMEAN:
            rows = values.shape[0] if values.ndim else 1
            return np.full_like(values, 1.0 / rows if rows else 0.0)
        if reduction == Reduction.MEAN:
            denominator = (values.size if terms.weights is None
                           else terms.weights.sum(dtype=dtype))
            if terms.scale is None:
                return np.full_like(values, dtype.type(1) / dtype.type(denominator))
            return (terms.scale / denominator).astype(dtype, copy=False)
    raise ValueError(f"{reduction!r} is not a valid value for reduction")
