"""The loss registry: each loss declared once, everything else derived from it.

A :class:`LossSpec` names the loss's tensors (role, dtypes, shape pattern, batch axis,
differentiability), its options (type, PyTorch default, bounds), the pure compute function,
its gradient and the PyTorch equivalent. The REST schema, gRPC validation, ``/v1/losses``, the
V2 model metadata and the test matrix all read this registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

import numpy as np

from ._reduce import Terms

FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8")
REAL_DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)


class Kind(str, Enum):
    """How a tensor's values are treated before compute."""

    FLOAT = "float"  # floating point only; computed in the promoted float dtype
    REAL = "real"  # float or integer; integers are promoted to the compute dtype (torch rule)
    INDEX = "index"  # integer class indices or lengths; computed as int64


@dataclass(frozen=True)
class TensorSpec:
    """One array argument of a loss.

    Attributes:
        name: the torch.nn.functional argument name, also the wire name.
        role: what it means ("input", "target", "weight", "lengths", ...).
        shape: human-readable shape pattern, e.g. ``"(N, C) or (N, C, d1, ..., dK)"``.
        kind: how values are cast before compute (see :class:`Kind`).
        dtypes: accepted dtypes; ``None`` means every dtype of ``kind``.
        differentiable: torch autograd gives this tensor a gradient.
        optional: may be omitted (torch default ``None``).
        batch_axis: axis along which the batcher concatenates requests; ``None`` means the tensor
            is per-request constant (e.g. class weights) and part of the BatchKey by value.
        batch_ndim: the smallest ndim of the batched form (a 1-D CE input has no batch axis).
    """

    name: str
    role: str
    shape: str
    kind: Kind = Kind.FLOAT
    dtypes: tuple[str, ...] | None = None
    differentiable: bool = False
    optional: bool = False
    batch_axis: int | None = 0
    batch_ndim: int = 1
    description: str = ""

    @property
    def accepted_dtypes(self) -> tuple[str, ...]:
        if self.dtypes is not None:
            return self.dtypes
        return {Kind.FLOAT: FLOAT_DTYPES, Kind.REAL: REAL_DTYPES, Kind.INDEX: INT_DTYPES}[self.kind]

    @cached_property
    def accepted_numpy_dtypes(self) -> frozenset[np.dtype]:
        """The same as NumPy dtypes (a set lookup; ``dtype.name`` is slow on the hot path)."""
        return frozenset(np.dtype(name) for name in self.accepted_dtypes)


@dataclass(frozen=True)
class OptionSpec:
    """One scalar option, with PyTorch's default and the bounds torch enforces.

    ``minimum``/``maximum`` are inclusive unless ``exclusive_minimum``/``exclusive_maximum``.
    ``choices`` closes the set of allowed values (strings, or numbers like ``p`` in {1, 2}).
    """

    name: str
    type: type  # bool, int, float or str
    default: Any
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the option's wire value (used by ``/v1/losses`` and OpenAPI)."""
        kind = {bool: "boolean", int: "integer", float: "number", str: "string"}[self.type]
        schema: dict[str, Any] = {
            "type": [kind, "null"] if self.nullable else kind,
            "description": self.description,
        }
        if self.default is not None and not (isinstance(self.default, float)
                                             and not math.isfinite(self.default)):
            schema["default"] = self.default
        elif self.default is None:
            schema["default"] = None
        if self.choices is not None:
            schema["enum"] = list(self.choices) + ([None] if self.nullable else [])
        for bound, key, exclusive in (
            (self.minimum, "minimum", self.exclusive_minimum),
            (self.maximum, "maximum", self.exclusive_maximum),
        ):
            if bound is not None:
                schema["exclusive" + key.capitalize() if exclusive else key] = bound
        return schema


def reduction_option(choices: tuple[str, ...] = ("none", "mean", "sum"),
                     default: str = "mean") -> OptionSpec:
    return OptionSpec("reduction", str, default, "how per-sample values are reduced",
                      choices=choices)


Check = Callable[[dict[str, np.ndarray], dict[str, Any]], dict[str, np.ndarray] | None]


@dataclass(frozen=True)
class LossSpec:
    """A registered loss.

    Attributes:
        name: wire name (``"cross_entropy"``).
        fn: pure compute ``fn(**arrays, **options) -> Terms`` on validated, cast arrays.
        tensors: the array arguments, in torch's positional order.
        options: scalar options; always includes ``reduction``.
        torch: the PyTorch (or torchvision) equivalent, for documentation and tests.
        family: module of the core it lives in.
        check: loss-specific validation run after the generic checks; it raises
            ``InvalidArgument`` and may return normalised arrays (e.g. an unsqueezed var).
        grad: vector-Jacobian product ``grad(cotangent, **arrays, **options) -> {name: array}``
            with ``cotangent`` shaped like ``Terms.values``.
        empty_mean: value of ``mean`` over zero elements (nan like torch.mean; torchvision's
            box losses return 0).
        batchable: extra condition for sharing a batch beyond the tensors' batch axes, e.g.
            "target has input's shape" where broadcasting would make concatenation wrong.
        weights_tensor: the differentiable tensor that *is* ``Terms.weights`` (mse's and l1's
            ``weight``): its gradient also gets the derivative of the mean's normaliser.
    """

    name: str
    fn: Callable[..., Terms]
    tensors: tuple[TensorSpec, ...]
    options: tuple[OptionSpec, ...]
    torch: str
    family: str
    check: Check | None = None
    grad: Callable[..., dict[str, np.ndarray]] | None = None
    empty_mean: float = math.nan
    batchable: Callable[[dict[str, np.ndarray]], bool] | None = None
    weights_tensor: str | None = None
    summary: str = field(default="")

    def __post_init__(self) -> None:
        if not self.summary:
            doc = (self.fn.__doc__ or self.name).strip().splitlines()[0]
            object.__setattr__(self, "summary", doc)

    @cached_property
    def tensor_map(self) -> dict[str, TensorSpec]:
        """Tensors by name (read-only: computed once)."""
        return {t.name: t for t in self.tensors}

    @cached_property
    def option_map(self) -> dict[str, OptionSpec]:
        """Options by name (read-only: computed once)."""
        return {o.name: o for o in self.options}

    @cached_property
    def _defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    @property
    def differentiable(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors if t.differentiable)

    @property
    def reductions(self) -> tuple[str, ...]:
        return self.option_map["reduction"].choices or ()

    def defaults(self) -> dict[str, Any]:
        """A fresh dict of every option's default."""
        return dict(self._defaults)


REGISTRY: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> LossSpec:
    """Add ``spec`` to the registry (names are unique)."""
    if spec.name in REGISTRY:
        raise ValueError(f"loss {spec.name!r} registered twice")
    if "reduction" not in spec.option_map:
        raise ValueError(f"loss {spec.name!r} declares no reduction option")
    REGISTRY[spec.name] = spec
    return spec


def registry() -> Mapping[str, LossSpec]:
    return REGISTRY
