"""Stacking compatible calls into one and splitting the results back, driven by the specs.

Two prepared calls may share a batch when they have the same :func:`batch_key`: the same loss,
options (``reduction`` aside), dtypes, per-sample shapes, and equal per-request constants (class
weights, by value). Their batched tensors are concatenated along each tensor's ``batch_axis``;
the loss's ``Terms`` come back with the batch on axis 0 and are sliced per request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import replace

import numpy as np

from ._compute import Prepared
from ._reduce import Terms


def batch_axes(call: Prepared) -> dict[str, int] | None:
    """Batch axis of each batched tensor, or ``None`` when the call cannot share a batch.

    A call is batchable when every tensor with a ``batch_axis`` is in its batched form
    (``ndim >= batch_ndim``), all of them agree on the batch size, and the spec's own
    ``batchable`` predicate (if any, e.g. "no broadcasting") holds.
    """
    spec = call.spec
    axes: dict[str, int] = {}
    size: int | None = None
    for name, array in call.arrays.items():
        tensor = spec.tensor_map[name]
        if tensor.batch_axis is None:
            continue
        if array.ndim < tensor.batch_ndim:
            return None
        n = array.shape[tensor.batch_axis]
        if size is not None and n != size:
            return None
        size = n
        axes[name] = tensor.batch_axis
    if size is None or (spec.batchable is not None and not spec.batchable(call.arrays)):
        return None
    return axes


def batch_size(call: Prepared, axes: dict[str, int]) -> int:
    name, axis = next(iter(axes.items()))
    size: int = call.arrays[name].shape[axis]
    return size


def batch_key(call: Prepared, axes: dict[str, int]) -> Hashable:
    """What two calls must share to be computed as one (everything but the batch size)."""
    parts: list[Hashable] = [call.spec.name, tuple(sorted(call.options.items()))]
    for name, array in sorted(call.arrays.items()):
        dtype = (call.dtypes[name].str, array.dtype.str)
        if name in axes:
            shape = array.shape[:axes[name]] + (-1,) + array.shape[axes[name] + 1:]
            parts.append((name, dtype, shape))
        else:
            digest = hashlib.blake2b(array.tobytes(), digest_size=16).digest()
            parts.append((name, dtype, array.shape, digest))
    return tuple(parts)


def concat(calls: Sequence[Prepared], axes: dict[str, int]) -> Prepared:
    """One call over the concatenation of ``calls`` (which share a batch key)."""
    first = calls[0]
    if len(calls) == 1:
        return first
    arrays = {name: (np.concatenate([c.arrays[name] for c in calls], axis=axes[name])
                     if name in axes else array)
              for name, array in first.arrays.items()}
    return replace(first, arrays=arrays)


def split_terms(terms: Terms, sizes: Sequence[int]) -> list[Terms]:
    """The per-call slices of batched ``terms`` (batch on axis 0)."""
    out, start = [], 0
    for n in sizes:
        out.append(terms.slice(start, start + n))
        start += n
    return out


def split_grads(grads: dict[str, np.ndarray], axes: dict[str, int],
                sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Per-call gradients from batched ones (non-batched tensors' gradients are summed
    contributions of every call and cannot be split; the engine never batches those)."""
    bounds = np.cumsum(sizes)[:-1]
    pieces = {name: np.split(g, bounds, axis=axes[name]) for name, g in grads.items()
              if name in axes}
    return [{name: parts[i] for name, parts in pieces.items()} for i in range(len(sizes))]
