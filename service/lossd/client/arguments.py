"""What every client shares: keyword arguments -> tensors and options, answers -> results.

The transports (:mod:`.rest`, :mod:`.rpc`) only move bytes; both call these, so a call gives the
same result, dtypes and errors over either.

Tensors or options? The loss's registry entry says (:data:`lossd.losses.REGISTRY`, installed
with the client): its tensors are tensors whatever their Python type (a float, a tuple, a NumPy
scalar, a torch tensor), its options are options. For a loss this client does not know (a newer
server), array-likes are tensors and the rest options; the server refuses what is wrong.

    >>> tensors, options = split("cross_entropy", {"input": [[1.0, 2.0]], "target": (1,),
    ...                                            "label_smoothing": np.float32(0.25)})
    >>> {k: (v.dtype.name, v.shape) for k, v in tensors.items()}, options
    ({'input': ('float64', (1, 2)), 'target': ('int64', (1,))}, {'label_smoothing': 0.25})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SHOWN, InvalidArgument, cut
from ..losses import REGISTRY


@dataclass(frozen=True)
class LossResult:
    """One answer: ``loss`` (0-d unless ``reduction="none"``, torch's result dtype; bfloat16
    answers as float32 holding bfloat16 values), ``grads`` by tensor name (with grad=True) and
    ``warnings``, the texts of what torch warns of the call (a target broadcast to another
    size, kl_div's ``mean``)."""

    loss: np.ndarray
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """A dataset-level loss: ``loss`` (0-d, torch's dtype) over every batch, equal to one call
    on the concatenated batches; ``results`` are the per-batch answers in order."""

    loss: np.ndarray
    reduction: str
    batches: int
    samples: int
    elements: int
    sum: float
    weight: float
    results: list[LossResult] = field(default_factory=list)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a loss: ``role`` (input, target, weight, ...), ``shape`` in words, the
    accepted ``dtypes``, whether lossd returns its gradient and whether it may be left out."""

    name: str
    role: str
    shape: str
    dtypes: tuple[str, ...]
    differentiable: bool
    optional: bool


@dataclass(frozen=True)
class LossInfo:
    """One loss as a server describes it: ``options`` maps each option to its JSON Schema (with
    torch's default); ``torch`` names the torch function that gives the same numbers."""

    name: str
    summary: str
    family: str
    torch: str
    tensors: tuple[TensorInfo, ...]
    options: dict[str, dict[str, Any]]


def _array_like(value: object) -> bool:
    return isinstance(value, (np.ndarray, np.generic, list, tuple)) or hasattr(
        value, "__array__") or hasattr(value, "__dlpack__")


def to_array(name: str, value: object) -> np.ndarray:
    """``value`` as a NumPy array: arrays, NumPy and Python scalars, (nested) lists and
    tuples, anything with ``__array__`` or ``__dlpack__`` (torch tensors on CPU, also ones that
    require grad; JAX arrays)."""
    if isinstance(value, np.ndarray):
        return value
    detach = getattr(value, "detach", None)  # torch: no gradient tracking on the wire
    if callable(detach):
        value = detach()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            raise InvalidArgument(f"{cut(name, SHOWN)}: a torch bfloat16 tensor has no NumPy "
                                  "form; send .float() (lossd computes float32)",
                                  field=f"inputs.{name}")
        cpu = getattr(value, "cpu", None)
        if callable(cpu) and getattr(getattr(value, "device", None), "type", "cpu") != "cpu":
            value = cpu()
    try:
        if hasattr(value, "__array__") or not hasattr(value, "__dlpack__"):
            array = np.asarray(value)
        else:
            array = np.from_dlpack(value)
    except (TypeError, ValueError, RuntimeError, BufferError) as exc:
        raise InvalidArgument(f"{cut(name, SHOWN)}: expected an array-like (NumPy array, "
                              f"number, list, tensor); got {type(value).__name__} "
                              f"({str(exc)[:120]})", field=f"inputs.{name}") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise InvalidArgument(f"{cut(name, SHOWN)}: expected numbers; got an array of "
                              f"{array.dtype} (ragged lists or text?)",
                              field=f"inputs.{name}")
    return array


def to_option(name: str, value: object) -> object:
    """``value`` as a JSON-ready option: NumPy scalars and 0-d arrays (and 0-d tensors) become
    Python numbers and bools; bool, int, float, str and None pass."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        return item()
    raise InvalidArgument(f"{cut(name, SHOWN)}: expected an option value (bool, number, string "
                          f"or null); got {type(value).__name__}", field=f"options.{name}")


def split(loss: str, arguments: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Keyword arguments -> (tensors as arrays, options as plain values), by ``loss``'s
    registry entry when known (else array-likes are tensors)."""
    spec = REGISTRY.get(loss)
    if spec is None:
        def is_tensor(key: str, value: object) -> bool:
            return _array_like(value)
    else:
        names = spec.tensor_map
        options = spec.option_map

        def is_tensor(key: str, value: object) -> bool:
            return key in names or (key not in options and _array_like(value))
    tensors: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for key, value in arguments.items():
        if is_tensor(key, value):
            tensors[key] = to_array(key, value)
        else:
            scalars[key] = to_option(key, value)
    return tensors, scalars


def tensors_only(arguments: dict[str, Any]) -> dict[str, np.ndarray]:
    """A run batch's tensors (every argument is a tensor)."""
    return {key: to_array(key, value) for key, value in arguments.items()}


def scalar(value: object, dtype: str) -> np.ndarray:
    """A 0-d answer of ``dtype`` from a JSON number (or "NaN"/"Infinity"/"-Infinity")."""
    number = float(value) if isinstance(value, str) else value
    if dtype == "bfloat16":
        dtype = "float32"
    return np.asarray(number, dtype=dtype)


def loss_info(described: dict[str, Any]) -> LossInfo:
    """A :class:`LossInfo` from ``/v1/losses``' JSON (``ListLosses`` is converted to it too)."""
    return LossInfo(
        described["name"], described.get("summary", ""), described.get("family", ""),
        described.get("torch", ""),
        tuple(TensorInfo(t["name"], t["role"], t["shape"], tuple(t["dtypes"]),
                         t["differentiable"], t["optional"]) for t in described["tensors"]),
        dict(described["options"].get("properties", {})))
