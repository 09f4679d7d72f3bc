"""Numbers from the wire: one parser per kind, with bounds, and every
header and parameter lossd reads as a number going through it.

Hypothesis feeds arbitrary strings (and arbitrary parsed values) to each parser: the answer is
a value of the right type within the bounds, equal to what the grammar means, or a clean
``InvalidArgument`` naming the field with a short message; never another exception. The server
tests send the odd numbers over real sockets (Unicode digits, 400- and 5000-digit integers,
``nan``, ``1_000``) to each header and parameter and expect 400 naming the field.
"""

from __future__ import annotations

import json
import math
import os
import re

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lossd.api import numbers
from lossd.errors import MAX_MESSAGE, InvalidArgument

EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "200"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
INT = re.compile(r"[ \t]*-?[0-9]{1,19}[ \t]*")
FLOAT = re.compile(r"[ \t]*-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?[ \t]*")
ODD = ["²", "١٢", "1_000", " 2 ", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "0x10",
       "+1", "", " ", "9" * 400, "9" * 5000, "1e-400", "0", "-0", "-1", "1.", ".5", "true",
       "\x00", "1\n", "١", "𝟗"]
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(ODD),
                 st.from_regex(FLOAT, fullmatch=True), st.from_regex(INT, fullmatch=True))


def _refused(error: InvalidArgument, field: str) -> None:
    assert error.field == field
    assert error.message.startswith(f"{field}: expected")
    assert len(error.message) < 200


@SETTINGS
@given(raw=TEXT, low=st.sampled_from([None, 0, 1, -5]),
       high=st.sampled_from([None, 0, 10, 2**63 - 1]))
@example(raw="²", low=0, high=None)
@example(raw="9" * 5000, low=0, high=None)
def test_parse_int(raw: str, low: int | None, high: int | None) -> None:
    try:
        value = numbers.parse_int(raw, field="f", low=low, high=high)
    except InvalidArgument as error:
        _refused(error, "f")
        text = raw.strip(" \t")
        if INT.fullmatch(raw) and not (text.startswith("-") and (low is None or low >= 0)):
            assert (low is not None and int(text) < low) or (high is not None and int(text) > high)
        return
    assert type(value) is int and INT.fullmatch(raw) and value == int(raw)
    assert (low is None or value >= low) and (high is None or value <= high)


@SETTINGS
@given(raw=TEXT, high=st.sampled_from([1.0, numbers.MAX_SECONDS]))
@example(raw="nan", high=1.0)
@example(raw="1_000", high=numbers.MAX_SECONDS)
@example(raw="1e400", high=numbers.MAX_SECONDS)
def test_parse_seconds(raw: str, high: float) -> None:
    try:
        value = numbers.parse_seconds(raw, field="x-request-timeout", high=high)
    except InvalidArgument as error:
        _refused(error, "x-request-timeout")
        if FLOAT.fullmatch(raw):
            number = float(raw)
            assert not 0 < number <= high
        return
    assert type(value) is float and FLOAT.fullmatch(raw) and value == float(raw)
    assert 0 < value <= high and math.isfinite(value)


@SETTINGS
@given(raw=TEXT)
def test_parse_float(raw: str) -> None:
    try:
        value = numbers.parse_float(raw, field="f", low=-1.0, high=1e300)
    except InvalidArgument as error:
        _refused(error, "f")
        assert not FLOAT.fullmatch(raw) or not -1.0 <= float(raw) <= 1e300
        return
    assert FLOAT.fullmatch(raw) and value == float(raw)


@SETTINGS
@given(raw=TEXT)
@example(raw=" TRUE ")
def test_parse_bool(raw: str) -> None:
    try:
        value = numbers.parse_bool(raw, field="f")
    except InvalidArgument as error:
        _refused(error, "f")
        assert raw.strip(" \t").lower() not in ("true", "false", "1", "0")
        return
    assert value is (raw.strip(" \t").lower() in ("true", "1"))


VALUES = st.one_of(st.integers(), st.just(10**400), st.just(-(10**400)), st.floats(),
                   st.booleans(), st.none(), st.text(max_size=5),
                   st.lists(st.integers(), max_size=2))


@SETTINGS
@given(value=VALUES)
def test_parsed_values(value: object) -> None:
    """Values a JSON or protobuf parser produced: ints of any size, floats, bools, others."""
    for check in (lambda: numbers.int_value(value, field="f", low=0, high=2**63 - 1),
                  lambda: numbers.float_value(value, field="f", low=0.0),
                  lambda: numbers.bool_value(value, field="f"),
                  lambda: numbers.microseconds_value(value, field="f")):
        try:
            result = check()
        except InvalidArgument as error:
            _refused(error, "f")
            continue
        assert isinstance(result, (int, float, bool)) and not (
            isinstance(result, float) and not math.isfinite(result))


# --- over real sockets --------------------------------------------------------------------

MSE = {"inputs": {"input": [1.0, 2.0], "target": [0.0, 0.0]}}
V2 = {"inputs": [{"name": "input", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
                 {"name": "target", "shape": [2], "datatype": "FP64", "data": [0.0, 0.0]}]}
BAD_HEADER_NUMBERS = ["²".encode(), "١٢".encode(), b"1_000", b"nan", b"inf", b"-1", b"1e400",
                      b"9" * 400, b"9" * 5000, b"0x10", b""]


def _error(r: httpx.Response) -> dict:
    body = r.json()["error"]
    return body if isinstance(body, dict) else {"message": body}


@pytest.mark.parametrize("raw", BAD_HEADER_NUMBERS, ids=lambda b: b[:12].decode("latin-1"))
def test_request_timeout_header(server, raw: bytes) -> None:
    for path, body in (("/v1/losses/mse", MSE), ("/v2/models/mse/infer", V2)):
        r = httpx.post(server.url + path, content=json.dumps(body),
                       headers={"x-request-timeout": raw})
        assert r.status_code == 400, (path, r.text)
        assert "x-request-timeout" in _error(r)["message"] and len(r.text) < 400
    assert httpx.post(server.url + "/v1/losses/mse", json=MSE,
                      headers={"x-request-timeout": b"30"}).status_code == 200


@pytest.mark.parametrize("raw", BAD_HEADER_NUMBERS + [b"100000"],
                         ids=lambda b: b[:12].decode("latin-1"))
def test_v2_binary_header_length(server, raw: bytes) -> None:
    body = json.dumps(V2).encode()
    r = httpx.post(f"{server.url}/v2/models/mse/infer", content=body,
                   headers={"Inference-Header-Content-Length": raw})
    assert r.status_code == 400, r.text
    message = _error(r)["message"]
    assert message.startswith("Inference-Header-Content-Length: expected an integer in [0, ")
    r = httpx.post(f"{server.url}/v2/models/mse/infer", content=body,
                   headers={"Inference-Header-Content-Length": str(len(body)).encode()})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("value", [10**400, -(10**400), 0, -1, 1.5, "10", True, 10**15])
def test_v2_timeout_parameter(server, value: object) -> None:
    r = httpx.post(f"{server.url}/v2/models/mse/infer",
                   content=json.dumps({**V2, "parameters": {"timeout": value}}))
    assert r.status_code == 400, r.text
    message = _error(r)["message"]
    assert message.startswith("parameters.timeout: expected an integer in [1, ")
    assert len(message) < 200


@pytest.mark.parametrize("where", ["native", "v2"])
@pytest.mark.parametrize("option", ["delta", "reduction"])
def test_huge_integer_option(server, where: str, option: str) -> None:
    """A 400-digit integer (orjson refuses it; the fallback parser keeps it an int) as an
    option is refused by the option's name."""
    huge = "9" * 400
    if where == "native":
        path = "/v1/losses/huber"
        body = ('{"inputs": {"input": [1.0], "target": [0.0]}, "options": {"%s": %s}}'
                % (option, huge))
    else:
        path = "/v2/models/huber/infer"
        body = json.dumps(V2)[:-1] + ', "parameters": {"%s": %s}}' % (option, huge)
    r = httpx.post(server.url + path, content=body)
    assert r.status_code == 400, r.text
    message = _error(r)["message"]
    assert option in message and "digits" in message and len(message) < MAX_MESSAGE


@pytest.mark.parametrize("placement", ["grad", "tensor", "shape", "ignore_index"])
def test_huge_integers_elsewhere(server, placement: str) -> None:
    huge = "9" * 400
    body = {
        "grad": '{"inputs": {"input": [1.0], "target": [0.0]}, "grad": %s}',
        "tensor": '{"inputs": {"input": [%s], "target": [0.0]}}',
        "shape": '{"inputs": {"input": {"dtype": "float64", "shape": [%s], "data": [1.0]},'
                 ' "target": [0.0]}}',
        "ignore_index": '{"inputs": {"input": [[1.0, 2.0]], "target": [0]},'
                        ' "options": {"ignore_index": %s}}'}[placement] % huge
    loss = "cross_entropy" if placement == "ignore_index" else "mse"
    r = httpx.post(f"{server.url}/v1/losses/{loss}", content=body)
    # a huge dim is over the element limit (413); anywhere else it is a bad value
    expected = {"shape": 413, "grad": 422}.get(placement, 400)  # grad: a schema error
    assert r.status_code == expected, r.text
    assert len(r.text) < 400


HEADER_VALUES = st.one_of(
    st.sampled_from(BAD_HEADER_NUMBERS + [b"1", b"0.5", b"86400", b"86401"]),  # no outer spaces:
    # HTTP clients refuse to send them (RFC 9110 strips them as optional whitespace anyway)
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
            max_size=30).map(lambda t: t.encode("latin-1").strip()),
    st.from_regex(FLOAT, fullmatch=True).map(lambda t: t.strip().encode()))
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.just(10**400), st.floats(
        allow_nan=False, allow_infinity=False), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)
FUZZ = settings(max_examples=int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "20")), deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck))


@FUZZ
@given(name=st.sampled_from(["x-request-timeout", "Inference-Header-Content-Length",
                             "content-encoding", "x-request-id", "content-type"]),
       value=HEADER_VALUES, path=st.sampled_from(["/v1/losses/mse", "/v2/models/mse/infer",
                                                  "/v1/batch"]))
def test_any_header_value_is_never_a_5xx(server, name: str, value: bytes, path: str) -> None:
    body = {"/v1/losses/mse": MSE, "/v2/models/mse/infer": V2,
            "/v1/batch": {"requests": [{"loss": "mse", **MSE}]}}[path]
    r = httpx.post(server.url + path, content=json.dumps(body), headers={name: value})
    assert r.status_code < 500, (name, value, r.text)


@FUZZ
@given(parameters=st.dictionaries(st.sampled_from(["timeout", "grad", "binary_data_output",
                                                   "reduction", "delta", "x"]),
                                  JSON_VALUES, max_size=3))
def test_any_v2_parameter_value_is_never_a_5xx(server, parameters: dict) -> None:
    r = httpx.post(f"{server.url}/v2/models/huber/infer",
                   content=json.dumps({**V2, "parameters": parameters}))
    assert r.status_code < 500, (parameters, r.text)
    if r.status_code != 200:
        assert len(r.json()["error"]) < MAX_MESSAGE + 8
