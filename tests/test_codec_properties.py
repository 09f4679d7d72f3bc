"""Hypothesis properties of the one codec (``make fuzz`` runs 25 times as many examples): any
dtype, shape and byte length (raw bytes, flat values, JSON tensors) gives an array of exactly
that dtype and shape, or a clean InvalidArgument / PayloadTooLarge, never another exception."""

from __future__ import annotations

import base64
import math
import os

import numpy as np
import orjson
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from lossd import codec
from lossd.errors import InvalidArgument, PayloadTooLarge

LIMITS = codec.Limits(max_tensor_elements=4096, max_ndim=6)
DTYPES = st.sampled_from(codec.WIRE_DTYPES) | st.text(max_size=8) | st.none() | st.integers()
SHAPES = st.lists(st.integers(-3, 70), max_size=8) | st.lists(
    st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=2)), max_size=4)
CLEAN = (InvalidArgument, PayloadTooLarge)
SCALE = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "8"))  # make fuzz: 200


def _expected_dtype(dtype: str) -> np.dtype:
    return np.dtype("float32") if dtype == codec.BFLOAT16 else np.dtype(dtype)


def _check(array: np.ndarray, dtype: object, shape: list) -> None:
    assert isinstance(array, np.ndarray)  # a 0-d array, never a NumPy scalar
    assert isinstance(dtype, str) and dtype in codec.WIRE_DTYPES
    assert array.shape == tuple(shape) and array.dtype == _expected_dtype(dtype)
    assert len(shape) <= LIMITS.max_ndim and array.size <= LIMITS.max_tensor_elements


@settings(max_examples=400 * SCALE // 8, deadline=None)
@given(DTYPES, SHAPES, st.integers(0, 600), st.booleans())
@example(codec.BFLOAT16, [], 2, True)  # found by make fuzz: a 0-d bfloat16 became a scalar
def test_raw_bytes(dtype: object, shape: list, length: int, exact: bool) -> None:
    if exact and isinstance(dtype, str) and dtype in codec.WIRE_DTYPES and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape):
        itemsize = 2 if dtype == codec.BFLOAT16 else np.dtype(dtype).itemsize
        length = min(math.prod(shape), 10_000) * itemsize  # the right length, when small
    raw = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    try:
        array = codec.from_bytes(dtype, shape, raw, "inputs.x", LIMITS)
    except CLEAN as error:
        assert error.field == "inputs.x" and error.message.startswith("inputs.x")
        return
    _check(array, dtype, shape)


VALUES = st.lists(st.one_of(st.floats(), st.integers(-2**70, 2**70), st.booleans(),
                            st.sampled_from(["NaN", "Infinity", "-Infinity", "x", "1e3"]),
                            st.none(), st.lists(st.floats(), max_size=2)), max_size=40)


@settings(max_examples=400 * SCALE // 8, deadline=None)
@given(DTYPES, SHAPES, VALUES)
def test_flat_values(dtype: object, shape: list, values: list) -> None:
    try:
        array = codec.from_values(dtype, shape, values, "inputs.x", LIMITS)
    except CLEAN:
        return
    _check(array, dtype, shape)


JSON_TENSORS = st.recursive(
    st.one_of(st.floats(), st.integers(-2**70, 2**70), st.booleans(), st.none(),
              st.sampled_from(["NaN", "Infinity", "-Infinity", "oops"])),
    lambda inner: st.lists(inner, max_size=5), max_leaves=60) | st.fixed_dictionaries(
    {}, optional={"dtype": DTYPES, "shape": SHAPES, "data": VALUES,
                  "b64": st.text(max_size=12) | st.binary(max_size=64).map(
                      lambda b: base64.b64encode(b).decode()),
                  "extra": st.integers()})


@settings(max_examples=600 * SCALE // 8, deadline=None)
@given(JSON_TENSORS)
@example({"shape": [], "dtype": "bfloat16", "b64": "000="})  # found by a longer fuzz run
def test_json_tensors(obj: object) -> None:
    try:
        array, encoding, _ = codec.from_json(obj, "inputs.x", None, LIMITS)
    except CLEAN:
        return
    assert isinstance(array, np.ndarray) and array.dtype.kind in "biuf"
    assert array.ndim <= LIMITS.max_ndim and array.size <= LIMITS.max_tensor_elements
    if encoding is not codec.Encoding.LIST:
        _check(array, obj["dtype"], obj["shape"])  # type: ignore[index]


@settings(max_examples=300 * SCALE // 8, deadline=None)
@given(st.sampled_from(codec.WIRE_DTYPES), st.lists(st.integers(0, 5), max_size=4),
       st.sampled_from(list(codec.Encoding)), st.integers(0, 2**32 - 1))
def test_round_trip(dtype: str, shape: list, encoding: codec.Encoding, seed: int) -> None:
    """Whatever decodes, encodes back to the same numbers (bfloat16 included). A bare JSON
    true/false is not a tensor on the way in, so 0-d bool lists are left out."""
    assume(not (dtype == "bool" and not shape and encoding is codec.Encoding.LIST))
    carrier = np.dtype("<u2") if dtype == codec.BFLOAT16 else np.dtype(dtype)
    raw = np.random.default_rng(seed).integers(0, 256, math.prod(shape) * carrier.itemsize,
                                               dtype=np.uint8).tobytes()
    array = codec.from_bytes(dtype, shape, raw, "x", LIMITS)
    bf16 = dtype == codec.BFLOAT16
    if encoding is codec.Encoding.RAW:
        back = codec.from_bytes(dtype, shape, codec.to_bytes(array, bf16), "x", LIMITS)
    else:  # through the JSON text, as on the wire
        obj = orjson.loads(orjson.dumps(codec.to_json(array, encoding, bf16),
                                        option=orjson.OPT_SERIALIZE_NUMPY))
        back = codec.from_json(obj, "x", None, LIMITS)[0].astype(array.dtype)
    np.testing.assert_array_equal(back.reshape(array.shape), array)
