"""Open Inference Protocol v2 (KServe v2) <-> lossd, shared by the REST and gRPC frontends.

Every loss is a model (name = loss name, one version ``"1"``):

    inputs      the loss's tensors by name; tensor options (``weight``, ``pos_weight``,
                ``alpha``) are inputs too
    parameters  scalar options (``reduction``, ``margin``, ...) plus
                    grad     bool: also return gradients
                    timeout  int, microseconds (Triton's meaning): dropped if not computed by then
    outputs     ``loss`` and, with ``grad``, ``grad_<tensor>`` for each differentiable tensor
                (asking for a ``grad_<tensor>`` output implies ``grad``)

Datatypes map to the codec's wire dtypes (``FP32`` <-> ``float32``, ``BF16`` <-> ``bfloat16``);
results are typed as torch types them (float32 in, float32 out; all-BF16 floats in, BF16 out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__, codec
from ..calls import Call, CallBuilder
from ..errors import InvalidArgument, MalformedRequest, NotFound
from ..losses import Form, LossSpec, Result, TensorSpec, get_spec
from .numbers import bool_value, microseconds_value

VERSION = "1"
PLATFORM = "lossd"
EXTENSIONS = ("binary_tensor_data", "parameters")
V2_DATATYPES = codec.V2_DATATYPES  # wire dtype -> V2 datatype
DATATYPES: dict[str, str] = {v2: wire for wire, v2 in V2_DATATYPES.items()}  # and back
_BY_NUMPY_DTYPE = {np.dtype(wire): v2 for wire, v2 in V2_DATATYPES.items()
                   if wire != codec.BFLOAT16}  # dtype.name is a slow property
GRAD = "grad"
TIMEOUT = "timeout"
WARNINGS = "warnings"  # response parameter: torch's warnings for the call, one per line
LOSS_OUTPUT = "loss"
GRAD_PREFIX = "grad_"


def server_metadata() -> dict[str, Any]:
    """V2 server metadata: name, version and the protocol extensions lossd supports."""
    return {"name": "lossd", "version": __version__, "extensions": list(EXTENSIONS)}


def model(name: str, version: str | None) -> LossSpec:
    """The loss behind a model name (NotFound for unknown names and versions other than 1)."""
    spec = get_spec(name)
    if version not in (None, "", VERSION):
        raise NotFound(f"model {name!r} has only version {VERSION}; got {version!r}",
                       field="model_version")
    return spec


# --- metadata ----------------------------------------------------------------------------------

def metadata_shape(form: Form) -> list[int]:
    """V2 shape of one registry form: -1 per named dim and per ``"*"``, fixed sizes kept.

    >>> metadata_shape(("C",)), metadata_shape(("N", 4)), metadata_shape(("*",))
    ([-1], [-1, 4], [-1])
    """
    return [d if isinstance(d, int) else -1 for d in form]


def preferred_dtype(tensor: TensorSpec) -> str:
    """The one datatype metadata shows (every accepted dtype is accepted on infer)."""
    return V2_DATATYPES[tensor.preferred_dtype]


def model_metadata(spec: LossSpec) -> dict[str, Any]:
    """``/v2/models/{loss}``: each input with its datatype and the shape of its first form;
    outputs ``loss`` (``[-1]``: one value, or one per sample with ``reduction='none'``) and
    ``grad_<tensor>`` (floating point, in the tensor's shape)."""
    floating = V2_DATATYPES["float32"]
    return {"name": spec.name, "versions": [VERSION], "platform": PLATFORM,
            "inputs": [{"name": t.name, "datatype": preferred_dtype(t),
                        "shape": metadata_shape(t.dims[0])} for t in spec.tensors],
            "outputs": [{"name": LOSS_OUTPUT, "datatype": floating, "shape": [-1]}] + [
                {"name": GRAD_PREFIX + t.name, "datatype": floating,
                 "shape": metadata_shape(t.dims[0])} for t in spec.tensors if t.differentiable]}


def output_names(spec: LossSpec) -> list[str]:
    """``loss`` then ``grad_<tensor>`` for each differentiable tensor of ``spec``."""
    return [LOSS_OUTPUT] + [GRAD_PREFIX + name for name in spec.differentiable]


# --- requests ----------------------------------------------------------------------------------

def wire_dtype(datatype: Any, field: str) -> str:
    """The codec's dtype of a V2 datatype (``FP32`` -> ``float32``)."""
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise InvalidArgument(f"{field}: datatype must be one of {', '.join(DATATYPES)}; "
                              f"got {str(datatype)[:64]!r}", field=field) from None


def flatten(data: Any, field: str) -> Sequence[Any] | np.ndarray:
    """V2 JSON tensor data: a flat or nested list (or the regular array a JSON reader made of
    one), row-major."""
    if isinstance(data, np.ndarray):
        return data.ravel()
    if not isinstance(data, list):
        raise InvalidArgument(f"{field}: data must be a (nested) list of values", field=field)
    values: list[Any] = data
    while values and isinstance(values[0], list):
        if not all(isinstance(item, list) for item in values):
            raise InvalidArgument(f"{field}: data mixes lists and values", field=field)
        values = [value for item in values for value in item]
    return values


def builder(name: str, version: str | None, limits: codec.Limits) -> CallBuilder:
    """A :class:`CallBuilder` for model ``name`` (NotFound for unknown models and versions)."""
    model(name, version)
    return CallBuilder(name, limits)


def add_input(call: CallBuilder, name: Any, datatype: Any, shape: Any, *,
              raw: bytes | memoryview | None = None,
              values: Sequence[Any] | np.ndarray | None = None) -> None:
    """Decode one input tensor from raw little-endian bytes or a flat list of values."""
    if not isinstance(name, str) or not name:
        raise MalformedRequest("inputs: every input needs a name", field="inputs")
    where = f"inputs.{name[:64]}"
    call.check_count(len(call.arrays) + 1)
    dtype = wire_dtype(datatype, f"{where}.datatype")
    if raw is not None:
        array = codec.from_bytes(dtype, shape, raw, where, call.limits)
    else:
        array = codec.from_values(dtype, shape, values if values is not None else [], where,
                                  call.limits)
    call.add_tensor(name, array, field=where, bfloat16=dtype == codec.BFLOAT16,
                    encoding=codec.Encoding.RAW)


def set_parameters(call: CallBuilder, parameters: Mapping[str, Any]) -> None:
    """Request parameters: ``grad`` and ``timeout`` for lossd, the rest are loss options."""
    for key, value in parameters.items():
        if key == GRAD:
            call.grad = bool_value(value, field=f"parameters.{GRAD}") or call.grad
        elif key == TIMEOUT:  # whole microseconds, as KServe's clients send it
            call.timeout = earliest(call.timeout,
                                    microseconds_value(value, field=f"parameters.{TIMEOUT}"))
        else:
            call.options[key] = value


def earliest(*deadlines: float | None) -> float | None:
    """The soonest of the given timeouts (``None``: none given)."""
    given = [t for t in deadlines if t is not None]
    return min(given) if given else None


@dataclass
class Outputs:
    """Which outputs a request asked for (``None``: every one it produced, in model order)."""

    requested: list[str] | None = None

    @classmethod
    def ask(cls, call: CallBuilder, names: Sequence[Any]) -> Outputs:
        """Only these outputs, in this order (a ``grad_*`` output implies ``grad``)."""
        known = output_names(call.spec)
        for name in names:
            if name not in known:
                raise InvalidArgument(f"outputs: unknown output {str(name)[:64]!r}; model "
                                      f"{call.spec.name!r} has {', '.join(known)}"[:300],
                                      field="outputs")
        requested = list(dict.fromkeys(names))
        call.grad = call.grad or any(n != LOSS_OUTPUT for n in requested)
        return cls(requested)

    def of(self, call: Call, result: Result) -> list[tuple[str, np.ndarray, bool]]:
        """(name, array, is bfloat16) per output, in the requested (or the default) order."""
        produced: dict[str, tuple[np.ndarray, bool]] = {
            LOSS_OUTPUT: (result.loss, call.loss_bfloat16)}
        for name, g in result.grads.items():
            produced[GRAD_PREFIX + name] = (g, name in call.bfloat16)
        names = self.requested if self.requested is not None else [
            n for n in output_names(call.spec) if n in produced]
        missing = [n for n in names if n not in produced]
        if missing:
            tensor = missing[0][len(GRAD_PREFIX):]
            raise InvalidArgument(f"outputs: no {missing[0]}: {tensor!r} is not a floating "
                                  f"input of this request (only those have gradients)",
                                  field="outputs")
        return [(n, *produced[n]) for n in names]


def warnings_parameter(result: Result) -> dict[str, str]:
    """The response ``parameters`` that carry torch's warnings for the call, one per line
    (``{}`` when torch does not warn): V2 parameters are scalars, not lists."""
    return {WARNINGS: "\n".join(result.warnings)} if result.warnings else {}


def datatype_of(array: np.ndarray, bfloat16: bool) -> str:
    """The V2 datatype of an output array (``BF16`` when it answers a bfloat16 request)."""
    return "BF16" if bfloat16 else _BY_NUMPY_DTYPE[array.dtype]
