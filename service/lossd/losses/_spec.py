"""The loss registry: each loss declared once, everything else derived from it.

A :class:`LossSpec` names the loss's tensors (role, dtypes, shapes as named dims, value range,
batch axis, differentiability), its options (type, PyTorch default, bounds), the pure compute
function, its gradient and the PyTorch equivalent. The REST schema, gRPC validation,
``/v1/losses``, the V2 model metadata and the test matrix all read this registry.

Shapes are declared as forms: tuples of dims, each a letter torch's documentation uses
(``"N"``, ``"C"``, ``"T"``, ...), a fixed size (``4`` for xyxy boxes) or :data:`ANY`. A dim name
means one size across all tensors of a loss, so ``(N, C)`` logits and an ``(N,)`` target agree,
and a :class:`Values` bound may name a dim: class indices are integers in ``[0, C)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any, TypeAlias

import numpy as np

from ._reduce import Terms

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8")
NUMERIC_DTYPES = FLOAT_DTYPES + INT_DTYPES
REAL_DTYPES = NUMERIC_DTYPES + ("bool",)
BFLOAT16 = "bfloat16"
"""The one wire dtype without a NumPy dtype: the codec widens it to float32 (exactly) and names
the tensors that came so; a dtype list says whether torch takes it like any other."""


Dim: TypeAlias = str | int
"""One dim of a form: a name (``"N"``), a fixed size (``4``) or :data:`ANY`."""
Form: TypeAlias = tuple[Dim, ...]
"""One allowed shape of a tensor, e.g. ``("N", "C")``; ``()`` is a 0-d tensor."""
ANY = "*"
"""Any number of dims (zero or more): ``(ANY,)`` is any shape, ``("N", "C", ANY)`` is
``(N, C, d1, ..., dK)``."""
ANY_SHAPE: tuple[Form, ...] = ((ANY,),)
"""The dims of a tensor of any shape (elementwise losses)."""


@dataclass(frozen=True)
class Values:
    """The values a tensor holds under the loss's default options.

    Every value in the range is accepted; the checks may accept more (``ignore_index``, 0/1
    hinge labels, a CTC target equal to the blank). A bound is a number or the name of a dim
    of the loss, standing for that dim's size.

    Attributes:
        low: smallest value (``None``: unbounded below).
        high: largest value (``None``: unbounded above).
        low_open: ``low`` itself is excluded.
        high_open: ``high`` itself is excluded.
        integer: whole numbers, sent in an integer dtype (class indices, lengths).
        choices: the closed set of values (labels ±1); ``low`` and ``high`` are then unset.

    Example: class indices ``Values(0, "C", high_open=True, integer=True)``, ``[0, C)``.
    """

    low: float | str | None = None
    high: float | str | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    choices: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None and (self.low is not None or self.high is not None):
            raise ValueError("Values: choices and bounds exclude each other")

    @property
    def dim_names(self) -> tuple[str, ...]:
        """The dims whose sizes are bounds."""
        return tuple(b for b in (self.low, self.high) if isinstance(b, str))


PROBABILITY = Values(0, 1)
LOG_PROBABILITY = Values(high=0)
CLASS_INDEX = Values(0, "C", high_open=True, integer=True)
SIGNS = Values(choices=(-1, 1))
NON_NEGATIVE = Values(low=0)


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
        shape: the shapes in prose, for people, e.g. ``"(N, C) or (N, C, d1, ..., dK)"``.
        kind: how values are cast before compute (see :class:`Kind`).
        dtypes: the wire dtypes torch 2.13 accepts for this tensor (the others of the call
            valid); ``None`` means every dtype of ``kind``. They drive acceptance (a dtype not
            listed is refused naming the tensor) and are checked against torch by
            tests/losses/test_dtypes.py.
        differentiable: torch autograd gives this tensor a gradient.
        optional: may be omitted (torch default ``None``).
        batch_axis: axis along which the batcher concatenates requests; ``None`` means the tensor
            is per-request constant (e.g. class weights) and part of the BatchKey by value.
        batch_ndim: the smallest ndim of the batched form (a 1-D CE input has no batch axis).
        description: what the values mean.
        dims: each allowed shape as a :data:`Form`, the most common batched one first (that
            is the one V2 metadata shows), e.g. ``(("N", "C"), ("C",), ("N", "C", ANY))``.
        values: the value range (see :class:`Values`); ``None`` means any real number.
        sets_dtype: takes part in torch's result dtype; ``False`` for labels torch only
            compares, cast to the input's dtype (a bfloat16 input with float32 labels answers
            bfloat16).
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
    dims: tuple[Form, ...] = ()
    values: Values | None = None
    sets_dtype: bool = True

    @property
    def accepted_dtypes(self) -> tuple[str, ...]:
        if self.dtypes is not None:
            return self.dtypes
        return {Kind.FLOAT: FLOAT_DTYPES, Kind.REAL: REAL_DTYPES, Kind.INDEX: INT_DTYPES}[self.kind]

    @property
    def preferred_dtype(self) -> str:
        """The dtype to send: int64 for integer values, float32 otherwise (when accepted)."""
        accepted = self.accepted_dtypes
        first = "int64" if self.values is not None and self.values.integer else "float32"
        return next((d for d in (first, "float32", "int64") if d in accepted), accepted[0])

    @cached_property
    def accepted_numpy_dtypes(self) -> frozenset[np.dtype]:
        """The same as NumPy dtypes (a set lookup; ``dtype.name`` is slow on the hot path),
        bfloat16 aside (it has none)."""
        return frozenset(np.dtype(name) for name in self.accepted_dtypes if name != BFLOAT16)


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
"""Loss-specific validation: ``check(arrays, options)``; may return normalised arrays."""
LossFn = Callable[..., Terms]
"""A pure loss: ``fn(**arrays, **options) -> Terms`` (see :class:`LossSpec`)."""
GradFn = Callable[..., dict[str, np.ndarray]]
"""A vector-Jacobian product: ``grad(cotangent, **arrays, **options) -> {name: array}``."""
Warn = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], tuple[str, ...]]
"""torch's warnings for a valid call: ``warn(arrays as given, options with reduction)``."""


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
        warn: the texts of the warnings torch 2.13 emits for a valid call (a target that
            broadcasts to input's size, kl_div's ``mean``); they travel with the answer.
        keeps_dtypes: the functions get each floating tensor in its own dtype (as ``check``
            returns it), not cast to the promoted one, and promote operation by operation as
            torch does: torchvision's box losses round boxes2's own widths, heights, centres and
            aspect ratios in float32 beside float64 boxes1, and their gradients too.
    """

    name: str
    fn: LossFn
    tensors: tuple[TensorSpec, ...]
    options: tuple[OptionSpec, ...]
    torch: str
    family: str
    check: Check | None = None
    grad: GradFn | None = None
    empty_mean: float = math.nan
    batchable: Callable[[dict[str, np.ndarray]], bool] | None = None
    weights_tensor: str | None = None
    warn: Warn | None = None
    keeps_dtypes: bool = False
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
    """Add ``spec`` to the registry (names are unique; see :func:`check_tensors`)."""
    if spec.name in REGISTRY:
        raise ValueError(f"loss {spec.name!r} registered twice")
    if "reduction" not in spec.option_map:
        raise ValueError(f"loss {spec.name!r} declares no reduction option")
    check_tensors(spec)
    REGISTRY[spec.name] = spec
    return spec


def check_tensors(spec: LossSpec) -> None:
    """Raise ``ValueError`` unless every tensor declares its dims, each form uses :data:`ANY`
    at most once, integer values come in an integer dtype (and index tensors hold integers),
    and every dim a value bound names is a dim of one of the loss's tensors."""
    names = {d for t in spec.tensors for form in t.dims for d in form
             if isinstance(d, str) and d != ANY}
    for t in spec.tensors:
        where = f"loss {spec.name!r}, tensor {t.name!r}"
        if not t.dims:
            raise ValueError(f"{where} declares no dims")
        if any(form.count(ANY) > 1 for form in t.dims):
            raise ValueError(f"{where}: a form uses {ANY!r} more than once")
        integer = t.values is not None and t.values.integer
        if t.kind is Kind.INDEX and not integer:
            raise ValueError(f"{where}: an index tensor holds integer values")
        if integer and "int64" not in t.accepted_dtypes:
            raise ValueError(f"{where}: integer values need int64 among the dtypes")
        unknown = [d for d in (t.values.dim_names if t.values else ()) if d not in names]
        if unknown:
            raise ValueError(f"{where}: value bound names unknown dim {unknown[0]!r}; the "
                             f"loss's dims are {sorted(names)}")


def registry() -> Mapping[str, LossSpec]:
    return REGISTRY
