"""JSON bodies with ``b64`` strings cut out before parsing (service/lossd/api/jsonbody.py) parse to
exactly what the plain parse gives, or fail with exactly its error: valid bodies in any layout,
tricky ones (``"b64"`` inside other strings, escapes, duplicate keys, bad characters, a client
writing the placeholder itself), and Hypothesis mutations of valid bodies."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossd import codec
from lossd.api.rest import jsonbody
from lossd.errors import InvalidArgument, MalformedRequest

DEPTH = 32
SCALE = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "8"))  # make fuzz: 200


def _unwrap(node: Any) -> Any:
    """The parsed object with each pre-decoded ``b64`` turned back into its string."""
    if isinstance(node, codec.Base64Bytes):
        text = bytes(node.text).decode("ascii")
        assert node.raw == base64.b64decode(text, validate=True)
        return text
    if isinstance(node, dict):
        return {k: _unwrap(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unwrap(v) for v in node]
    return node


def _outcome(parse: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "ok", _unwrap(parse(body, DEPTH))
    except MalformedRequest as error:
        return "error", error.message


def _sliced(body: bytes) -> bool:
    return any(isinstance(v, codec.Base64Bytes) for v in _leaves(jsonbody.loads(body, DEPTH)))


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [x for v in node.values() for x in _leaves(v)]
    if isinstance(node, list):
        return [x for v in node for x in _leaves(v)]
    return [node]


def assert_same(body: bytes) -> tuple[str, Any]:
    """``jsonbody.loads`` and the plain parse agree on ``body`` (value or error message)."""
    sliced, plain = _outcome(jsonbody.loads, body), _outcome(jsonbody.loads_plain, body)
    assert sliced == plain
    return sliced


def tensor(array: np.ndarray) -> dict[str, Any]:
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "b64": base64.b64encode(array.tobytes()).decode()}


A = np.arange(6, dtype=np.float32).reshape(2, 3)
VALID = orjson.dumps({"inputs": {"input": tensor(A), "target": tensor(A + 1)},
                      "options": {"reduction": "sum"}})


def test_valid_body_is_sliced_and_decodes_like_the_plain_path() -> None:
    parsed = jsonbody.loads(VALID, DEPTH)
    cut = parsed["inputs"]["input"]["b64"]
    assert isinstance(cut, codec.Base64Bytes) and repr(cut) == repr(tensor(A)["b64"])
    plain = orjson.loads(VALID)
    for name in ("input", "target"):
        ours, _, _ = codec.from_json(parsed["inputs"][name], name, None, codec.Limits(10**6, 8))
        theirs, _, _ = codec.from_json(plain["inputs"][name], name, None,
                                       codec.Limits(10**6, 8))
        np.testing.assert_array_equal(ours, theirs)
    assert assert_same(VALID)[0] == "ok"


T = '{"dtype": "uint8", "shape": [3], "b64": "QUJD"}'
TRICKY = {
    # sliced: key variants, whitespace, batch items, tensor options
    "whitespace": ('{ "inputs" : {"x" :{ "dtype":"uint8","shape":[3] ,\n\t"b64"\r\n:\n "QUJD" '
                   '}}}', True),
    "batch": ('{"requests": [{"loss": "mse", "inputs": {"input": %s, "target": %s}}]}' % (T, T),
              True),
    "option tensor": ('{"inputs": {}, "options": {"weight": %s}}' % T, True),
    "empty": ('{"x": {"dtype": "uint8", "shape": [0], "b64": ""}}', True),
    "b64 inside another string": ('{"note": "\\"b64\\": \\"QUJD\\"", "x": %s}' % T, False),
    "comma b64 in a string": ('{"note": ",\\"b64\\":\\"QUJD\\"", "x": %s}' % T, False),
    "b64 as a value": ('{"note": "b64", "x": %s}' % T, True),
    "b64 in an array": ('["b64", "QUJD"]', False),
    "escaped slash": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QU\\/D"}}', False),
    "escaped quote": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QU\\"JD"}}', False),
    "unicode escape": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QU\\u004aD"}}', False),
    "space in value": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QU JD"}}', False),
    "newline in value": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QUJD\n"}}', False),
    "no padding": ('{"x": {"dtype": "uint8", "shape": [2], "b64": "QUI"}}', False),
    "non-ascii": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QUJDé"}}', False),
    "unterminated": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QUJD', False),
    "duplicate keys": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QUJD", "b64": "REVG"}}',
                       False),
    "duplicate tensors": ('{"x": %s, "x": %s}' % (T, T), False),
    "b64 not a string": ('{"x": {"dtype": "uint8", "shape": [3], "b64": 5}}', False),
    "not a tensor object": ('{"options": {"reduction": {"b64": "QUJD", "other": 1}}}', False),
    "object in a list of numbers": ('{"x": [1, %s]}' % T, False),
    "forged placeholder": ('{"x": %s, "y": {"dtype": "uint8", "shape": [3], '
                           '"b64": "lossd-b64-cut:0"}}' % T, False),
    "forged escaped key": ('{"x": {"dtype": "uint8", "shape": [3], "b64": "QUJD", '
                           '"\\u0062\\u0036\\u0034": "lossd-b64-cut:0"}}', False),
    "marker elsewhere": ('{"note": "lossd-b64-cut:0", "x": %s}' % T, False),
    "invalid JSON elsewhere": ('{"x": %s, "y": tru}' % T, False),
    "invalid UTF-8 elsewhere": (b'{"x": %s, "y": "\xff"}' % T.encode(), False),
    "trailing garbage": ('{"x": %s} x' % T, False),
    "too deep": ('{"x": %s, "y": %s}' % (T, "[" * 40 + "]" * 40), False),
    "inside a string that a bad quote ends": ('{"a": "x,"b64": "QUJD"}', False),
}


@pytest.mark.parametrize("name", TRICKY)
def test_tricky_bodies(name: str) -> None:
    text, sliced = TRICKY[name]
    body = text if isinstance(text, bytes) else text.encode()
    assert_same(body)
    if _outcome(jsonbody.loads, body)[0] == "ok":
        assert _sliced(body) == sliced


def test_codec_errors_match_for_bad_b64() -> None:
    """A ``b64`` value the slicer leaves alone reaches the codec as a string: same error."""
    limits = codec.Limits(10**6, 8)
    for value in ("QU JD", "QUI", "QU\\u0020D"):
        body = ('{"x": {"dtype": "uint8", "shape": [3], "b64": "%s"}}' % value).encode()
        with pytest.raises(InvalidArgument, match="x: b64 is not valid base64"):
            codec.from_json(jsonbody.loads(body, DEPTH)["x"], "x", None, limits)


def _layout(obj: Any, draw: Any) -> str:
    """``obj`` as JSON with random whitespace around every token."""
    ws = draw(st.sampled_from(["", " ", "\n", "\t ", "\r\n  "]))
    if isinstance(obj, dict):
        items = [f"{ws}{json.dumps(k)}{ws}:{ws}{_layout(v, draw)}" for k, v in obj.items()]
        return "{" + ",".join(items) + ws + "}"
    if isinstance(obj, list):
        return "[" + ",".join(ws + _layout(v, draw) for v in obj) + ws + "]"
    return json.dumps(obj)


B64 = st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()) | st.text(
    st.sampled_from('QUJD=+/ "\\é\n'), max_size=8)
TENSORS = st.fixed_dictionaries({"dtype": st.just("uint8"), "shape": st.just([1]), "b64": B64})
LEAVES = st.one_of(st.integers(), st.text(st.sampled_from('b64",\\{:'), max_size=8), TENSORS,
                   st.lists(st.floats(allow_nan=False), max_size=3))
BODIES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["b64", "inputs", "x", "data", "dtype"]), inner, max_size=3), max_leaves=8)


@settings(max_examples=300 * SCALE // 8, deadline=None)
@given(BODIES, st.data())
def test_any_layout_parses_as_the_plain_path(obj: Any, data: st.DataObject) -> None:
    assert_same(_layout(obj, data.draw).encode())


@settings(max_examples=300 * SCALE // 8, deadline=None)
@given(BODIES, st.data(), st.integers(0, 10**6), st.binary(min_size=1, max_size=3))
def test_mutated_bodies_fail_like_the_plain_path(obj: Any, data: st.DataObject, at: int,
                                                 insert: bytes) -> None:
    body = _layout(obj, data.draw).encode()
    at %= len(body) + 1
    assert_same(body[:at] + insert + body[at + 1:])


def test_rest_answers_match_the_plain_path(server) -> None:
    """Over the wire: a sliced body (batch, tensor option) and the same body with its b64 keys
    written with escapes (plain path) get the same answer; a forged placeholder the plain
    error."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    t = np.array([0, 2, 1, 2])
    w = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    item = {"loss": "cross_entropy", "inputs": {"input": tensor(x), "target": tensor(t)},
            "options": {"weight": tensor(w)}, "grad": True}
    body = orjson.dumps({"requests": [item, item]})
    assert b"\\" not in body
    escaped = body.replace(b'"b64"', b'"\\u0062\\u0036\\u0034"')  # not cut: plain path
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answers = [client.post("/v1/batch", content=b, headers={"content-type": "application/json"})
                   for b in (body, escaped)]
        assert answers[0].status_code == 200 and answers[0].json() == answers[1].json()
        forged = orjson.dumps({"inputs": {"input": tensor(x), "target": {
            "dtype": "int64", "shape": [4], "b64": "lossd-b64-cut:0"}}})
        bad = client.post("/v1/losses/cross_entropy", content=forged)
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == "inputs.target: b64 is not valid base64"
