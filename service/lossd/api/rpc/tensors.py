"""``lossd.v1`` messages <-> NumPy: tensors, typed option values and aggregates.

A ``Tensor`` carries its dtype as the ``lossd.v1.DType`` enum (the codec's wire dtype in
capitals: ``FLOAT32`` is ``float32``), its shape, and either ``raw`` little-endian bytes (read
with ``np.frombuffer``: no copy) or one packed list (``double_data``, ``int64_data``,
``bool_data``). Answers use the form the request used for its first tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import codec
from ..._proto.lossd.v1 import lossd_pb2 as pb
from ...errors import InvalidArgument
from ...losses import Aggregate

DTYPE_NAMES: dict[int, str] = {pb.DType.Value(name.upper()): name for name in codec.WIRE_DTYPES}
DTYPE_VALUES: dict[str, int] = {name: value for value, name in DTYPE_NAMES.items()}
# dtype.name is a slow property: look up the dtype itself
NUMPY_DTYPE_VALUES = {np.dtype(name): value for name, value in DTYPE_VALUES.items()
                      if name != codec.BFLOAT16}
PACKED = ("double_data", "int64_data", "bool_data")


def decode_tensor(t: Any, field: str, limits: codec.Limits
                  ) -> tuple[np.ndarray, codec.Encoding, bool]:
    """(array, encoding used: RAW or DATA, was bfloat16) of a ``Tensor`` (or a
    :class:`~.wire.RawTensor` view of one)."""
    dtype = DTYPE_NAMES.get(t.dtype)
    if dtype is None:
        raise InvalidArgument(f"{field}: dtype must be one of "
                              f"{', '.join(n.upper() for n in DTYPE_VALUES)}; got {t.dtype}",
                              field=field)
    shape = list(t.shape)
    filled = [name for name in PACKED if len(getattr(t, name))]
    raw = t.raw  # each access copies the bytes out of the message: read it once
    if raw or not filled:
        if filled:
            raise InvalidArgument(f"{field}: set raw or one packed list, not both", field=field)
        return (codec.from_bytes(dtype, shape, raw, field, limits), codec.Encoding.RAW,
                dtype == codec.BFLOAT16)
    if len(filled) > 1:
        raise InvalidArgument(f"{field}: set exactly one of raw, double_data, int64_data, "
                              f"bool_data; got {', '.join(filled)}", field=field)
    values = getattr(t, filled[0])
    return (codec.from_values(dtype, shape, values, field, limits), codec.Encoding.DATA,
            dtype == codec.BFLOAT16)


def encode_tensor(array: np.ndarray, raw: bool, bfloat16: bool = False) -> pb.Tensor:
    """A ``Tensor`` of ``array``: raw bytes, or the packed list of its kind."""
    dtype = DTYPE_VALUES[codec.BFLOAT16] if bfloat16 else NUMPY_DTYPE_VALUES[array.dtype]
    t = pb.Tensor(dtype=dtype, shape=array.shape)  # type: ignore[arg-type]  # enum int
    if raw:
        t.raw = codec.to_bytes(array, bfloat16)
    elif array.dtype.kind == "f":
        t.double_data.extend((codec.bfloat16_to_float32(codec.float32_to_bfloat16(array))
                              if bfloat16 else array).ravel().tolist())
    elif array.dtype.kind == "b":
        t.bool_data.extend(array.ravel().tolist())
    else:
        t.int64_data.extend(array.ravel().tolist())
    return t


def scalar_option(value: Any) -> pb.OptionValue:
    """A scalar option's ``OptionValue`` (the inverse of :func:`option_value`)."""
    if value is None:
        return pb.OptionValue(null=True)
    if isinstance(value, bool):
        return pb.OptionValue(flag=value)
    if isinstance(value, int):
        return pb.OptionValue(integer=value)
    if isinstance(value, float):
        return pb.OptionValue(number=value)
    return pb.OptionValue(text=str(value))


def option_value(value: pb.OptionValue) -> Any:
    """The Python value of a scalar ``OptionValue`` (``None`` for null or unset)."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null":
        return None
    return getattr(value, kind)


def encode_aggregate(aggregate: Aggregate) -> pb.Aggregate:
    """A dataset-level loss as an ``Aggregate`` message."""
    s = aggregate.stats
    return pb.Aggregate(loss=aggregate.loss, reduction=aggregate.reduction,
                        value=encode_tensor(aggregate.value, raw=True), batches=aggregate.batches,
                        samples=s.rows, elements=s.elements, sum=s.loss_sum, weight=s.weight)
