"""Long numeric arrays read straight into NumPy give what orjson + ``np.asarray`` give.

Hypothesis writes arrays of odd spellings (``1e400``, ``-0``, ``-0.0``, ``1E5``, 25-digit
integers, integers beyond int64 among floats, ``true``, ``null``, strings, ``1.``, ``+1``,
``01``, ``NaN``), with good and bad separators, flat, in rows (regular, ragged, empty, deeper),
and puts them where tensors go (native nested lists and ``data``, V2 ``data``), inside a
string, and where an option goes. With the size thresholds lowered so that small examples take
the fast path, every body must parse to the plain parse's value (each array equal in dtype,
shape and bits to ``np.asarray`` of the plain lists) or raise the plain parse's error, and the
codec must decode the tensor to the same array or refuse it with the same message.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lossd import codec
from lossd.api import v2
from lossd.api.rest import jsonbody, jsonnumbers
from lossd.api.rest.v2 import parse_header
from lossd.errors import LossdError
from lossd.losses import compute

EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
DEPTH = 32
LIMITS = codec.Limits(max_tensor_elements=10_000, max_ndim=4)

ODD = ["1e400", "-1e400", "-0", "-0.0", "0", "1E5", "1e-400", "2.5E-3", "1" * 25, "-" + "9" * 19,
       "18446744073709551615", "9223372036854775807", "9223372036854775808",
       "0.1000000000000000055511151231257827", "4.9e-324", "1.7976931348623157e308",
       "true", "false", "null", '"1"', '"NaN"', "1.", ".5", "+1", "01", "NaN", "Infinity", "1e",
       "-", "1_0"]
NUMBER = st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr),
                   st.integers(-2**63, 2**63 - 1).map(str), st.integers(-2**70, 2**70).map(str),
                   st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?",
                                 fullmatch=True))
TOKEN = st.one_of(NUMBER, NUMBER, NUMBER, st.sampled_from(ODD))
SEPARATOR = st.sampled_from([",", ",", ", ", " ,\n", "\t,\r\n ", ",,", " ", ""])


@st.composite
def arrays(draw: st.DrawFn) -> str:
    """The JSON text of an array: flat, or rows (regular or not), or deeper."""
    sep = draw(SEPARATOR) if draw(st.integers(0, 9)) == 0 else ","

    def flat(count: int) -> str:
        return "[" + sep.join(draw(TOKEN) for _ in range(count)) + "]"
    kind = draw(st.sampled_from(["flat", "flat", "rows", "rows", "ragged", "deep"]))
    if kind == "flat":
        return flat(draw(st.integers(1, 12)))
    height = draw(st.integers(1, 5))
    if kind == "rows":
        width = draw(st.integers(1, 6))
        return "[" + ", ".join(flat(width) for _ in range(height)) + "]"
    if kind == "ragged":
        return "[" + ",".join(flat(draw(st.integers(0, 4))) for _ in range(height)) + "]"
    return "[" + ",".join("[" + flat(2) + "," + flat(2) + "]" for _ in range(height)) + "]"


PLACES = {  # where the array goes: JSON with ARRAY in it
    "native-list": '{"inputs": {"input": ARRAY, "target": [0.5]}, "grad": true}',
    "native-data": '{"inputs": {"input": {"dtype": "float64", "shape": [3], "data": ARRAY}}}',
    "v2-data": '{"inputs": [{"name": "input", "datatype": "FP64", "shape": [2], '
               '"data": ARRAY}], "parameters": {"reduction": "sum"}}',
    "in-a-string": '{"inputs": {"input": "x ARRAY y"}, "id": "ARRAY"}',
    "option": '{"inputs": {"input": [1.0]}, "options": {"margin": ARRAY}}',
    "data-without-shape": '{"inputs": {"input": {"dtype": "float64", "data": ARRAY}}}',
}


@contextmanager
def small_thresholds() -> Iterator[None]:
    """Small bodies take the fast path (the thresholds only tune speed)."""
    with mock.patch.object(jsonnumbers, "MIN_BODY", 0), \
            mock.patch.object(jsonnumbers, "MIN_ARRAY", 2):
        yield


@contextmanager
def no_fast_path() -> Iterator[None]:
    with mock.patch.object(jsonnumbers, "MIN_BODY", math.inf):
        yield


def _outcome(parse: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(body)
    except LossdError as error:
        return "error", (error.code, error.message)


def _same(fast: Any, plain: Any, where: str = "body") -> None:
    """Equal values, an array on the fast side equal to np.asarray of the plain lists."""
    if isinstance(fast, np.ndarray):
        expected = np.asarray(plain)
        assert fast.dtype == expected.dtype and fast.shape == expected.shape, where
        assert fast.tobytes() == expected.tobytes(), where  # bit for bit: -0.0, rounding
    elif isinstance(fast, dict):
        assert isinstance(plain, dict) and list(fast) == list(plain), where
        for key in fast:
            _same(fast[key], plain[key], f"{where}.{key}")
    elif isinstance(fast, list):
        assert isinstance(plain, list) and len(fast) == len(plain), where
        for i, (a, b) in enumerate(zip(fast, plain)):
            _same(a, b, f"{where}[{i}]")
    else:
        assert type(fast) is type(plain) and (fast == plain or fast != fast), where


def _tensor(parsed: Any, place: str) -> Any:
    if place == "v2-data":
        return v2.flatten(parsed["inputs"][0]["data"], "inputs.input.data")
    return parsed["inputs"]["input"]


def _decoded(parsed: Any, place: str) -> tuple[str, Any]:
    """The codec's answer for the tensor: (dtype, bytes) or the error it raises."""
    try:
        if place == "v2-data":
            values = _tensor(parsed, place)
            array = codec.from_values("float64", [len(values)], values, "inputs.input", LIMITS)
        else:
            array = codec.from_json(_tensor(parsed, place), "inputs.input", None, LIMITS)[0]
    except LossdError as error:
        return "error", error.message
    return "ok", (array.dtype.str, array.shape, array.tobytes())


@SETTINGS
@given(array=arrays(), place=st.sampled_from(sorted(PLACES)))
@example(array="[1e400, 1.5]", place="native-list")
@example(array="[-0, 1.5, -0.0]", place="v2-data")
@example(array="[[1, 2], [3]]", place="native-list")
@example(array="[[1, 2], [3, 4]]", place="in-a-string")
@example(array="[1, 18446744073709551615]", place="native-list")
@example(array="[1.5, 18446744073709551616]", place="native-data")
@example(array="[1, 2], [3, 4]", place="option")
def test_fast_path_equals_orjson_and_asarray(array: str, place: str) -> None:
    body = PLACES[place].replace("ARRAY", array).encode()
    with no_fast_path():
        plain = _outcome(lambda b: jsonbody.loads(b, DEPTH), body)
    with small_thresholds():
        fast = _outcome(lambda b: jsonbody.loads(b, DEPTH), body)
    assert fast[0] == plain[0], (fast, plain)
    if fast[0] == "error":
        assert fast == plain
        return
    _same(fast[1], plain[1])
    if place == "option":  # never cut where it is not a tensor's value
        assert not isinstance(fast[1]["options"]["margin"], np.ndarray)
    elif place == "data-without-shape":
        assert not isinstance(fast[1]["inputs"]["input"]["data"], np.ndarray)
    elif place != "in-a-string":
        assert _decoded(fast[1], place) == _decoded(plain[1], place)


@SETTINGS
@given(array=arrays())
def test_v2_header_parse_equals_the_plain_parse(array: str) -> None:
    body = PLACES["v2-data"].replace("ARRAY", array).encode()
    with no_fast_path():
        plain = _outcome(lambda b: parse_header(b, DEPTH), body)
    with small_thresholds():
        fast = _outcome(lambda b: parse_header(b, DEPTH), body)
    assert fast[0] == plain[0], (fast, plain)
    if fast[0] == "ok":
        _same(fast[1], plain[1])
    else:
        assert fast == plain


def test_a_long_array_takes_the_fast_path_at_the_real_thresholds() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 1000))
    body = orjson.dumps({"inputs": {"input": x, "target": x[0]}},
                        option=orjson.OPT_SERIALIZE_NUMPY)
    parsed, stand_in = jsonnumbers.loads(body)
    assert parsed["inputs"]["input"].tobytes() == x.tobytes()
    assert parsed["inputs"]["target"].tobytes() == x[0].tobytes()
    assert stand_in == b'{"inputs":{"input":[[0]],"target":[0]}}'
    assert jsonnumbers.loads(body[:1000]) is None  # too small to search


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_too_deep_is_the_plain_error(depth: int) -> None:
    """The depth check sees the body as deep as it is, arrays included."""
    body = orjson.dumps({"inputs": {"input": np.zeros((4, 5000)).tolist()}})
    with pytest.raises(LossdError) as plain, no_fast_path():
        jsonbody.loads(body, depth)
    with pytest.raises(LossdError) as fast:
        jsonbody.loads(body, depth)
    assert fast.value.message == plain.value.message
    assert jsonbody.loads(body, 4)["inputs"]["input"].shape == (4, 5000)


def test_long_bodies_over_a_real_server_answer_the_cores_numbers(server) -> None:
    """Native nested lists, native data and V2 data of 20,000 numbers each (the fast path's
    sizes) answer what the core answers on np.asarray of the lists orjson reads."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(100, 200)), rng.normal(size=(100, 200))
    want = compute("mse", {"input": x, "target": y}, {"reduction": "sum"}, grad=True)
    native = {"inputs": {"input": x.tolist(), "target": {"dtype": "float64", "shape": [100, 200],
                                                         "data": y.ravel().tolist()}},
              "options": {"reduction": "sum"}, "grad": True}
    answer = httpx.post(f"{server.url}/v1/losses/mse", content=orjson.dumps(native),
                        timeout=30).json()
    assert answer["loss"] == float(want.loss)
    assert np.array(answer["grads"]["input"]).tobytes() == want.grads["input"].tobytes()
    body = {"inputs": [{"name": n, "datatype": "FP64", "shape": [100, 200], "data": a.tolist()}
                       for n, a in (("input", x), ("target", y))],
            "parameters": {"reduction": "sum", "grad": True}}
    answer = httpx.post(f"{server.url}/v2/models/mse/infer", content=orjson.dumps(body),
                        timeout=30).json()
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}
    assert outputs["loss"].tobytes() == np.asarray(want.loss).tobytes()
    assert outputs["grad_target"].tobytes() == want.grads["target"].tobytes()
