"""One decoded request, whatever its transport: the :class:`Call` every frontend produces.

A frontend reads its wire format into a :class:`CallBuilder`: tensors by name (each decoded by
:mod:`lossd.codec`), scalar options, ``grad`` and a deadline. The builder applies what every
transport shares: the loss must exist, at most ``max_tensors`` tensors, none given twice, and it
notes which tensors came as bfloat16 and how the first one (``input``) was encoded, so the
answer can use the same. The engine computes the :class:`Call`; the frontend encodes
:attr:`Call.grad` gradients and a loss typed by :attr:`Call.loss_bfloat16`.

Example:
    >>> import numpy as np
    >>> from lossd.codec import Limits
    >>> builder = CallBuilder("mse", Limits(max_tensor_elements=100, max_ndim=4))
    >>> builder.add_tensor("input", np.zeros(3), field="inputs.input")
    >>> builder.add_tensor("target", np.ones(3), field="inputs.target")
    >>> builder.options["reduction"] = "sum"
    >>> call = builder.build()
    >>> call.loss, sorted(call.arrays), call.options
    ('mse', ['input', 'target'], {'reduction': 'sum'})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec import Encoding, Limits, bfloat16_result
from .errors import InvalidArgument
from .losses import LossSpec, get_spec


@dataclass(frozen=True, slots=True)
class Call:
    """A validated-at-the-edge request on its way to the engine.

    Attributes:
        spec: the loss.
        arrays: tensors by name (tensor-valued options such as class ``weight`` included).
        options: scalar options by name, as sent (the core checks names, types and bounds).
        grad: also compute gradients of the reduced loss.
        timeout: seconds the request may wait before compute (``None``: no deadline).
        bfloat16: names of the tensors that came as bfloat16 (widened to float32).
        encoding: how the loss's first tensor was encoded (answers use the same).
    """

    spec: LossSpec
    arrays: dict[str, np.ndarray]
    options: dict[str, Any]
    grad: bool = False
    timeout: float | None = None
    bfloat16: frozenset[str] = frozenset()
    encoding: Encoding = Encoding.LIST

    @property
    def loss(self) -> str:
        """The loss's wire name."""
        return self.spec.name

    @property
    def loss_bfloat16(self) -> bool:
        """Whether torch would answer in bfloat16 (every floating tensor was bfloat16)."""
        return bool(self.bfloat16) and bfloat16_result(self.spec.tensor_map, self.arrays,
                                                       set(self.bfloat16))


class CallBuilder:
    """Collects one request's parts; :meth:`build` makes the :class:`Call`.

    ``options`` and ``grad``/``timeout`` are plain attributes; tensors go through
    :meth:`add_tensor`, which enforces the limits every transport shares.
    """

    __slots__ = ("arrays", "bfloat16", "encoding", "grad", "limits", "options", "spec",
                 "timeout", "where")

    def __init__(self, loss: str, limits: Limits, where: str = "") -> None:
        """``where`` prefixes every field named in errors (``requests[2].``)."""
        self.spec = get_spec(loss)
        self.limits, self.where = limits, where
        self.arrays: dict[str, np.ndarray] = {}
        self.options: dict[str, Any] = {}
        self.bfloat16: set[str] = set()
        self.encoding = Encoding.LIST
        self.grad = False
        self.timeout: float | None = None

    def is_tensor(self, name: str) -> bool:
        """Whether ``name`` is one of the loss's tensors (so an option of that name is one)."""
        return name in self.spec.tensor_map

    def check_count(self, count: int) -> None:
        """Refuse a request that brings more than ``max_tensors`` tensors (before decoding)."""
        if count > self.limits.max_tensors:
            field = f"{self.where}inputs"
            raise InvalidArgument(f"{field}: at most {self.limits.max_tensors} tensors; got "
                                  f"{count}", field=field)

    def add_tensor(self, name: str, array: np.ndarray, *, field: str, bfloat16: bool = False,
                   encoding: Encoding = Encoding.LIST) -> None:
        """Add one decoded tensor; ``field`` names it in errors (``inputs.target``)."""
        if name in self.arrays:
            raise InvalidArgument(f"{field}: tensor given twice", field=field)
        self.check_count(len(self.arrays) + 1)
        self.arrays[name] = array
        if bfloat16:
            self.bfloat16.add(name)
        if name == self.spec.tensors[0].name:
            self.encoding = encoding

    def build(self) -> Call:
        """The :class:`Call` (the builder should not be used afterwards)."""
        return Call(self.spec, self.arrays, self.options, self.grad, self.timeout,
                    frozenset(self.bfloat16), self.encoding)

