"""The one codec: wire tensors <-> NumPy arrays, for every frontend and the run store.

Wire dtypes are torch's names; :data:`V2_DATATYPES` gives each its Open Inference Protocol name
(``float32`` <-> ``FP32``) and the gRPC enum ``lossd.v1.DType`` spells them in capitals.
``bfloat16`` has no NumPy dtype: it is widened to float32 on the way in (exact: a bfloat16 is
the top half of a float32) and rounded back to nearest-even on the way out, so a bfloat16
caller gets bfloat16 back, as from torch. Values sent as numbers for a declared dtype are
rounded to it as ``torch.tensor(values, dtype=...)`` rounds them (float16 and bfloat16 through
float32, nearest-even each time), so every encoding of a tensor gives the same array.

JSON tensors come in three encodings, and answers use the one the request used for ``input``:
    nested list                      [[0.1, 0.2], [0.3, "NaN"]]
    {"dtype", "shape", "data"}       data: flat list, row-major
    {"dtype", "shape", "b64"}        b64: little-endian raw bytes, base64
Non-finite numbers travel as the strings "NaN", "Infinity", "-Infinity" (proto3 JSON mapping).
A value may be a string wherever a number may, read as proto3's JSON mapping reads a double
(:func:`number_string`): JSON number syntax, or exactly "NaN", "Infinity", "-Infinity";
nothing else that Python's ``float()`` would take ("1_000", " 2 ", "nan", "inf", "+1", ".5").
"""

from __future__ import annotations

import binascii
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, SupportsBytes

import numpy as np

from .errors import InvalidArgument, PayloadTooLarge, shown
from .losses import Kind, TensorSpec

try:  # SIMD base64, ~30x faster than the standard library (a server dependency)
    import pybase64 as base64
except ImportError:  # pragma: no cover - the client without the server extra
    import base64  # type: ignore[no-redef]

if TYPE_CHECKING:
    from .settings import Settings

BFLOAT16 = "bfloat16"
NUMPY_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<") for name in (
        "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
}
WIRE_DTYPES = (*NUMPY_DTYPES, BFLOAT16)
DTYPE_NAMES: dict[np.dtype, str] = {dtype: name for name, dtype in NUMPY_DTYPES.items()}
"""A dtype's wire name, found faster than ``dtype.name`` (a Python property in NumPy)."""
V2_DATATYPES: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "int32": "INT32",
    "int64": "INT64", "float16": "FP16", BFLOAT16: "BF16", "float32": "FP32",
    "float64": "FP64",
}
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
"""RFC 8259's number grammar (ASCII digits only: ``re``'s ``[0-9]``, not ``\\d``)."""


class Encoding(str, Enum):
    """How a tensor travels: the three JSON encodings (module docstring), or gRPC raw bytes."""

    LIST = "list"
    DATA = "data"
    B64 = "b64"
    RAW = "raw"  # gRPC bytes


@dataclass(frozen=True)
class Limits:
    """What one request may carry: tensors, elements per tensor, dimensions per tensor."""

    max_tensor_elements: int
    max_ndim: int
    max_tensors: int = 16

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits configured in ``settings`` (one shared object per configuration)."""
        return _limits(settings.max_tensor_elements, settings.max_ndim, settings.max_tensors)


@functools.lru_cache(maxsize=16)
def _limits(max_tensor_elements: int, max_ndim: int, max_tensors: int) -> Limits:
    """One ``Limits`` per configuration (built on every request otherwise)."""
    return Limits(max_tensor_elements, max_ndim, max_tensors)


@dataclass(frozen=True, repr=False)
class Base64Bytes:
    """A JSON ``b64`` string already decoded by :func:`decode_b64`: ``raw`` is its bytes,
    ``text`` its characters (strict base64, so ASCII with no quote), kept for messages that
    show the value. Made by :mod:`lossd.api.rest.jsonbody`, which cuts ``b64`` strings out of
    large bodies before parsing, and :mod:`lossd.api.rest.jsonstream`, which decodes them as the
    body streams in; :func:`from_json` takes it as it takes the string."""

    raw: bytes | memoryview
    text: memoryview | SupportsBytes

    def __repr__(self) -> str:  # the repr of the string it stands for
        return repr(bytes(self.text).decode("ascii"))


def decode_b64(text: str | bytes | memoryview) -> bytes | None:
    """Strict base64 (no whitespace, padding required) -> bytes; None when not valid."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _fail(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", field=field)


def check_shape(shape: Sequence[Any], field: str, limits: Limits) -> tuple[int, ...]:
    """A wire shape as a tuple, once it is a list of non-negative ints within ``limits``.

    Raises ``InvalidArgument`` (not ints, too many dims, negative) or ``PayloadTooLarge`` (too
    many elements, or, for an empty tensor, dims that would span too many).
    """
    if not isinstance(shape, (list, tuple)) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise _fail(field, f"shape must be a list of integers; got {shown(shape)}")
    if len(shape) > limits.max_ndim:
        raise _fail(field, f"at most {limits.max_ndim} dimensions; got {len(shape)}")
    if any(d < 0 for d in shape):
        raise _fail(field, f"shape must be non-negative; got {shown(list(shape))}")
    count = math.prod(shape)
    if count > limits.max_tensor_elements:
        raise PayloadTooLarge(f"{field}: at most {limits.max_tensor_elements} elements per "
                              f"tensor; got {shown(count)}", field=field)
    if math.prod(max(d, 1) for d in shape) > limits.max_tensor_elements:  # [0, 2**62] too
        raise PayloadTooLarge(f"{field}: shape {shown(list(shape))} spans more than "
                              f"{limits.max_tensor_elements} elements", field=field)
    return tuple(shape)


def _numpy_dtype(dtype: Any, field: str) -> np.dtype:
    """The NumPy dtype that carries a wire dtype (bfloat16 travels as uint16 bit patterns)."""
    if dtype == BFLOAT16:
        return np.dtype("<u2")
    try:
        return NUMPY_DTYPES[dtype]
    except (KeyError, TypeError):
        raise _fail(field, f"dtype must be one of {', '.join(WIRE_DTYPES)}; got {dtype!r}"
                    ) from None


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bit patterns -> float32, shape kept (a 0-d array stays an array, not a scalar)."""
    return np.asarray(bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bfloat16(array: np.ndarray) -> np.ndarray:
    """Round to nearest even (torch's rounding), keeping nan a nan; returns uint16 bits."""
    bits = np.array(array, dtype=np.float32, order="C").view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return np.where(np.isnan(array), 0x7FC0, rounded).astype(np.uint16)


def from_bytes(dtype: Any, shape: Sequence[Any], raw: bytes | memoryview, field: str,
               limits: Limits) -> np.ndarray:
    """Zero-copy view of little-endian ``raw`` (bfloat16 widened to float32)."""
    carrier = _numpy_dtype(dtype, field)
    dims = check_shape(shape, field, limits)
    expected = math.prod(dims) * carrier.itemsize
    if len(raw) != expected:
        raise _fail(field, f"raw data of dtype {dtype} and shape {list(dims)} must be "
                           f"{expected} bytes; got {len(raw)}")
    array = np.frombuffer(raw, dtype=carrier).reshape(dims)
    if dtype == BFLOAT16:
        return bfloat16_to_float32(array)
    return array if carrier.isnative else array.astype(carrier.newbyteorder("="))


def from_values(dtype: Any, shape: Sequence[Any], values: Sequence[Any] | np.ndarray,
                field: str, limits: Limits) -> np.ndarray:
    """A flat list of numbers (non-finite as strings) in row-major order."""
    carrier = _numpy_dtype(dtype, field)
    dims = check_shape(shape, field, limits)
    if len(values) != math.prod(dims):
        raise _fail(field, f"shape {list(dims)} needs {math.prod(dims)} values; "
                           f"got {len(values)}")
    target = np.float32 if dtype == BFLOAT16 else carrier.newbyteorder("=")
    array = _to_array(values, field, target)
    if array.ndim != 1:
        raise _fail(field, "data must be a flat list of numbers")
    if dtype == BFLOAT16:  # the float32 carrier holds bfloat16 values, as from raw bytes
        array = bfloat16_to_float32(float32_to_bfloat16(array))
    return array.reshape(dims)


def number_string(text: str, field: str) -> float | int:
    """A tensor value written as a JSON string, read as proto3's JSON mapping reads a number
    (int64 values travel as strings there): a string in JSON number syntax (no whitespace,
    ``+``, ``_``, hex or leading zeros) is the number it spells, an int when it has no
    fraction or exponent and at most 18 digits (as a JSON parser gives that number; "-0" is
    -0.0), else a float within the float64 range; or exactly "NaN", "Infinity" or
    "-Infinity".
    ``InvalidArgument`` naming ``field`` and the string (cut short) otherwise.

    Example:
        >>> number_string("1E5", "inputs.x"), number_string("-Infinity", "inputs.x")
        (100000.0, -inf)
        >>> number_string("-7", "inputs.target")
        -7
    """
    special = NON_FINITE.get(text)
    if special is not None:
        return special
    if JSON_NUMBER.fullmatch(text):
        if len(text.lstrip("-")) <= 18 and text.lstrip("-").isdigit() and text != "-0":
            return int(text)  # "-0" stays -0.0, as proto3 reads it for a double
        value = float(text)
        if math.isfinite(value):
            return value
        raise _fail(field, f"{shown(text)} is beyond the float64 range")
    raise _fail(field, f"expected numbers, as JSON numbers or strings in JSON number syntax "
                       f"(non-finite as \"NaN\", \"Infinity\", \"-Infinity\"); got "
                       f"{shown(text)}")


def _strings_read(values: Any, field: str) -> Any:  # noqa: ANN401 - nested JSON values
    """``values`` with each string replaced by the number it spells (:func:`number_string`)."""
    if isinstance(values, str):
        return number_string(values, field)
    if isinstance(values, list):
        return [_strings_read(v, field) for v in values]
    return values


def _to_array(values: Any, field: str, dtype: Any = None) -> np.ndarray:
    try:
        array = np.asarray(values)
        if array.dtype.kind == "U":  # strings among the numbers: read each, then again
            array = np.asarray(_strings_read(values, field))
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise _fail(field, "expected a (nested) list of numbers")
        if dtype is not None:
            target = np.dtype(dtype)
            if target.kind in "iub" and array.dtype.kind == "f" and array.size:
                raise _fail(field, f"dtype {target.name} needs integer values; got floats")
            if target.kind in "iu" and array.dtype.kind in "iu" and array.size and (
                    array.min() < np.iinfo(target).min or array.max() > np.iinfo(target).max):
                raise _fail(field, f"values out of the range of {target.name}")
            with np.errstate(over="ignore"):  # beyond float32/16: +-inf, as torch.tensor does
                if target.kind == "f" and target.itemsize <= 4:
                    # torch converts a Python number to double, then float, then half (whose
                    # constructor takes a float): round the same way, twice, not once from
                    # float64 (1 + 2**-11 + 2**-40 is 1.0 in torch's float16, 1.001 in
                    # NumPy's direct cast); bfloat16 is rounded from the float32 by the caller
                    array = array.astype(np.float64, copy=False).astype(np.float32)
                array = array.astype(target, copy=False)
        return array
    except ValueError as exc:  # ragged nesting, too deep, out-of-range integers
        raise _fail(field, f"not a regular (nested) list of numbers: {exc}"[:300]) from None
    except OverflowError as exc:
        raise _fail(field, f"value out of range: {exc}") from None


def _json_depth_ok(obj: Any, limit: int) -> bool:
    if isinstance(obj, np.ndarray):  # a regular list, read by a JSON reader as an array
        return obj.ndim <= limit
    depth = 0
    while isinstance(obj, list):
        depth += 1
        if depth > limit or not obj:
            return depth <= limit
        obj = obj[0]
    return True


def from_json(obj: Any, field: str, spec: TensorSpec | None, limits: Limits
              ) -> tuple[np.ndarray, Encoding, bool]:
    """Decode a JSON tensor; returns (array, encoding used, was bfloat16).

    ``obj`` is a nested list, or an object with ``dtype``, ``shape`` and ``data`` or ``b64``
    (see the module docstring). A nested list of integers becomes float64 when ``spec`` is a
    float tensor or an input. A list may also come as the NumPy array ``np.asarray`` makes of
    it (:mod:`lossd.api.rest.jsonnumbers` reads long numeric lists so), with the same result.
    Raises ``InvalidArgument`` naming ``field``, or ``PayloadTooLarge`` beyond ``limits``.

    Example:
        >>> limits = Limits(max_tensor_elements=100, max_ndim=4)
        >>> from_json([[1, 2], [3, "NaN"]], "inputs.input", None, limits)
        (array([[ 1.,  2.],
               [ 3., nan]]), <Encoding.LIST: 'list'>, False)
        >>> from_json({"dtype": "float32", "shape": [2], "b64": "AACAPwAAAEA="},
        ...           "inputs.input", None, limits)[0]
        array([1., 2.], dtype=float32)
    """
    if isinstance(obj, dict):
        unknown = set(obj) - {"dtype", "shape", "data", "b64"}
        if unknown:
            raise _fail(field, f"unknown keys {sorted(unknown)}; expected dtype, shape and "
                               f"one of data or b64")
        if ("data" in obj) == ("b64" in obj):
            raise _fail(field, "needs exactly one of data or b64")
        if "dtype" not in obj or "shape" not in obj:
            raise _fail(field, "needs dtype and shape")
        dtype, shape = obj["dtype"], obj["shape"]
        if "b64" in obj:
            b64 = obj["b64"]
            if isinstance(b64, Base64Bytes):
                raw: bytes | memoryview | None = b64.raw
            elif isinstance(b64, str):
                raw = decode_b64(b64)
            else:
                raise _fail(field, "b64 must be a base64 string")
            if raw is None:
                raise _fail(field, "b64 is not valid base64")
            return from_bytes(dtype, shape, raw, field, limits), Encoding.B64, dtype == BFLOAT16
        if not isinstance(obj["data"], (list, np.ndarray)):
            raise _fail(field, "data must be a flat list of numbers")
        return (from_values(dtype, shape, obj["data"], field, limits), Encoding.DATA,
                dtype == BFLOAT16)
    if isinstance(obj, str):  # a 0-d tensor written as a string
        obj = number_string(obj, field)
    if isinstance(obj, (list, np.ndarray, int, float)) and not isinstance(obj, bool):
        if not _json_depth_ok(obj, limits.max_ndim):
            raise _fail(field, f"at most {limits.max_ndim} dimensions")
        array = _to_array(obj, field)
        if array.size > limits.max_tensor_elements:
            raise PayloadTooLarge(f"{field}: at most {limits.max_tensor_elements} elements "
                                  f"per tensor; got {array.size}", field=field)
        if spec is not None and (spec.kind is Kind.FLOAT or spec.role == "input") and (
                array.dtype.kind in "iub"):
            array = array.astype(np.float64)  # predictions: [1, 2] means [1.0, 2.0]
        return array, Encoding.LIST, False
    raise _fail(field, f"expected a nested list or an object with dtype, shape and data or "
                       f"b64; got {type(obj).__name__}")


# --- encoding ----------------------------------------------------------------------------------

def _json_values(array: np.ndarray) -> Any:
    """Numbers as JSON-ready values: non-finite floats become the proto3 strings."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        out = array.astype(object)
        out[np.isnan(array)] = "NaN"
        out[np.isposinf(array)] = "Infinity"
        out[np.isneginf(array)] = "-Infinity"
        return out.tolist()
    # orjson serializes C-contiguous numpy arrays natively (shortest float repr)
    return np.ascontiguousarray(array)


def scalar_json(array: np.ndarray | np.generic) -> Any:
    """A one-element array as a JSON-ready scalar; non-finite floats as the proto3 strings."""
    value = np.asarray(array).reshape(())[()]
    if isinstance(value, np.floating) and not np.isfinite(value):
        return "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def to_json(array: np.ndarray, encoding: Encoding, bfloat16: bool = False) -> Any:
    """Encode ``array`` in ``encoding`` (bfloat16 results rounded to bfloat16).

    Non-finite floats become "NaN", "Infinity" and "-Infinity"; otherwise numbers stay a
    C-contiguous NumPy array, which orjson writes natively.

    Example:
        >>> to_json(np.array([0.5, np.inf], dtype=np.float32), Encoding.DATA)
        {'dtype': 'float32', 'shape': [2], 'data': [0.5, 'Infinity']}
        >>> to_json(np.array([1.0, 2.0], dtype=np.float32), Encoding.B64)
        {'dtype': 'float32', 'shape': [2], 'b64': 'AACAPwAAAEA='}
    """
    dtype = BFLOAT16 if bfloat16 else array.dtype.name
    if bfloat16:
        bits = float32_to_bfloat16(array)
        array = bfloat16_to_float32(bits)
    if encoding is Encoding.LIST:
        return scalar_json(array) if array.ndim == 0 else _json_values(array)
    if encoding is Encoding.DATA:
        return {"dtype": dtype, "shape": list(array.shape), "data": _json_values(array.ravel())}
    return {"dtype": dtype, "shape": list(array.shape), "b64": base64.b64encode(
        to_bytes(array, bfloat16)).decode()}


def to_bytes(array: np.ndarray, bfloat16: bool = False) -> bytes:
    """Little-endian raw bytes of ``array`` (as uint16 bfloat16 bit patterns if ``bfloat16``)."""
    if bfloat16:
        return float32_to_bfloat16(array).astype("<u2").tobytes()
    return np.asarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def bfloat16_result(tensors: Mapping[str, TensorSpec], arrays: dict[str, np.ndarray],
                    bfloat16: set[str]) -> bool:
    """torch returns bfloat16 when every floating tensor that sets the result's dtype was
    bfloat16 (labels it only compares, cast to the input's dtype, do not:
    :attr:`TensorSpec.sets_dtype`)."""
    floats = [name for name, a in arrays.items()
              if a.dtype.kind == "f" and tensors[name].sets_dtype]
    return bool(floats) and all(name in bfloat16 for name in floats)
