"""Shared input checks. Each raises ``InvalidArgument`` naming the field, expected vs got."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgument


def field(name: str) -> str:
    """Wire field of a tensor argument."""
    return f"inputs.{name}"


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def torch_size(shape: Sequence[int]) -> str:
    """A shape as torch prints it in its messages: ``torch.Size([4, 3])``."""
    return f"torch.Size([{', '.join(str(d) for d in shape)}])"


def target_size_warning(arrays: Mapping[str, np.ndarray], options: Mapping[str, Any]
                        ) -> tuple[str, ...]:
    """torch's warning when a target broadcasts against an input of another size (its
    elementwise losses: l1, mse, smooth_l1, huber)."""
    input, target = arrays["input"].shape, arrays["target"].shape
    if input == target:
        return ()
    return (f"Using a target size ({torch_size(target)}) that is different to the input size "
            f"({torch_size(input)}). This will likely lead to incorrect results due to "
            f"broadcasting. Please ensure they have the same size.",)


def fail(name: str, message: str, *, option: bool = False) -> InvalidArgument:
    """An ``InvalidArgument`` about tensor (or option) ``name``, for the caller to raise.

    Usage: ``raise fail("target", "...")``.
    """
    return InvalidArgument(f"{name}: {message}", field=f"options.{name}" if option else field(name))


def check_ndim(name: str, array: np.ndarray, allowed: Iterable[int], pattern: str) -> None:
    allowed = tuple(allowed)
    if array.ndim not in allowed:
        raise fail(name, f"expected {pattern} ({' or '.join(f'{n}-D' for n in allowed)}); "
                         f"got {array.ndim}-D shape {shape_str(array.shape)}")


def check_min_ndim(name: str, array: np.ndarray, minimum: int, pattern: str) -> None:
    if array.ndim < minimum:
        raise fail(name, f"expected {pattern} (at least {minimum}-D); "
                         f"got {array.ndim}-D shape {shape_str(array.shape)}")


def check_shape(name: str, array: np.ndarray, expected: Sequence[int],
                why: str | Callable[[], str]) -> None:
    """``target must have shape (4,) to match input (4, 10); got (3,)``; ``why`` may be a
    function, called only to word the error (formatting costs more than the check)."""
    if tuple(array.shape) != tuple(expected):
        reason = why if isinstance(why, str) else why()
        raise fail(name, f"must have shape {shape_str(expected)} to match {reason}; "
                         f"got {shape_str(array.shape)}")


def check_same_shape(name: str, array: np.ndarray, other_name: str, other: np.ndarray) -> None:
    check_shape(name, array, other.shape, lambda: f"{other_name} {shape_str(other.shape)}")


def broadcast_shape(name: str, array: np.ndarray, other_name: str,
                    other: np.ndarray) -> tuple[int, ...]:
    """The broadcast shape of two tensors (torch broadcasts elementwise losses), or an error."""
    try:
        return np.broadcast_shapes(array.shape, other.shape)
    except ValueError:
        raise fail(name, f"shape {shape_str(array.shape)} cannot be broadcast with "
                         f"{other_name} {shape_str(other.shape)}") from None


def check_index_range(name: str, array: np.ndarray, low: int, high: int, *,
                      ignore: int | None = None) -> None:
    """Every value in [low, high) (values equal to ``ignore`` excepted)."""
    if array.size == 0:
        return
    smallest, largest = array.min(), array.max()
    if low <= smallest and largest < high:
        return  # the common case: two passes, no copy
    values = array if ignore is None else array[array != ignore]
    if values.size == 0:
        return
    smallest, largest = values.min(), values.max()
    if smallest < low or largest >= high:
        bad = smallest if smallest < low else largest
        extra = f" or {ignore} (ignore_index)" if ignore is not None else ""
        raise fail(name, f"class index out of range: expected values in [{low}, {high - 1}]"
                         f"{extra}; got {int(bad)}")


def check_range(name: str, array: np.ndarray, low: float, high: float) -> None:
    """Every value in [low, high]; nan fails (torch's BCE refuses it too)."""
    if array.size == 0:
        return
    # min and max propagate nan, and a nan fails both comparisons
    if low <= array.min() and array.max() <= high:
        return
    ok = (array >= low) & (array <= high)
    bad = array[~ok].flat[0]
    raise fail(name, f"expected every value in [{low:g}, {high:g}]; got {float(bad)!r}")


WIRE_DTYPE = "wire_dtype"
"""Key of the dtype metadata that marks an array widened from a wire dtype NumPy lacks
(bfloat16 travels as float32): ``prepare`` marks such arrays for the checks."""


def dtype_name(array: np.ndarray) -> str:
    """The array's wire dtype: ``"bfloat16"`` for a marked widened array, else NumPy's name."""
    metadata = array.dtype.metadata
    return metadata[WIRE_DTYPE] if metadata and WIRE_DTYPE in metadata else array.dtype.name


def check_same_dtype(name: str, array: np.ndarray, other_name: str, other: np.ndarray) -> None:
    """torch's kernel computes both in one dtype (bfloat16 beside float32 is refused too)."""
    given, expected = dtype_name(array), dtype_name(other)
    if given != expected:
        raise fail(name, f"dtype must equal {other_name}'s ({expected}); got {given}")


def same_shapes(arrays: dict[str, np.ndarray]) -> bool:
    """A ``batchable`` predicate: every tensor has one shape (a broadcast tensor has no batch
    axis of its own, so concatenating it along axis 0 would be wrong)."""
    return len({a.shape for a in arrays.values()}) == 1


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    return grad.sum(axis=axes, keepdims=False).reshape(shape) if axes else grad.reshape(shape)
