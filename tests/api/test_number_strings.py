"""Tensor values written as strings follow proto3's JSON mapping of a double, exactly.

Accepted: JSON numbers, strings in JSON number syntax (RFC 8259: no whitespace, no ``+``, no
``_``, no hex, no leading zeros, digits on both sides of a ``.``) within the float64 range, and
exactly "NaN", "Infinity", "-Infinity". Refused, naming the tensor and the value (cut short):
everything else Python's ``float()`` takes ("1_000", " 2 ", "nan", "inf", "+1", ".5", "١").

The reference here is a character-by-character scanner of the grammar, written apart from the
codec's regex. ``google.protobuf.json_format`` is a second witness where it applies: Python's
implementation falls back to ``float()`` and so accepts more (" 2 ", "1_000", "inf"), but every
string the rule accepts it accepts with the same value, and every string it refuses the rule
refuses. Over the wire, every place a tensor value can be a string (native ``data`` lists,
nested lists, a 0-d value, V2 JSON ``data``) answers 400 for a refused string and computes with
an accepted one.
"""

from __future__ import annotations

import math
import os

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.wrappers_pb2 import DoubleValue
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lossd import codec
from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd.errors import SHOWN, InvalidArgument

EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
DIGITS = "0123456789"


def _digits(text: str, at: int) -> int:
    """Where the run of ASCII digits starting at ``at`` ends."""
    while at < len(text) and text[at] in DIGITS:
        at += 1
    return at


def reference(text: str) -> float | int | None:
    """The value proto3's JSON mapping gives the string ``text`` for a double (or an int64),
    or None when a conforming parser refuses it."""
    if text in SPECIAL:
        return SPECIAL[text]
    at = 1 if text.startswith("-") else 0
    end = _digits(text, at)
    if end == at or (text[at] == "0" and end > at + 1):  # no integer part, or a leading zero
        return None
    if end < len(text) and text[end] == ".":
        after = _digits(text, end + 1)
        if after == end + 1:
            return None
        end = after
    if end < len(text) and text[end] in "eE":
        end += 1
        if end < len(text) and text[end] in "+-":
            end += 1
        after = _digits(text, end)
        if after == end:
            return None
        end = after
    if end != len(text):
        return None
    digits = text.removeprefix("-")
    if digits.isdigit() and len(digits) <= 18 and text != "-0":
        return int(text)  # an int64 as proto3 writes it (and the number a JSON parser reads)
    value = float(text)
    return value if math.isfinite(value) else None  # beyond float64: out of range


ODD = ["1_000", " 2 ", "2 ", "nan", "inf", "-inf", "NAN", "infinity", "-infinity", "+1",
       "0x10", "1.", ".5", "-.5", "01", "-01", "00", "1e", "1e+", "--1", "1e400", "-1e400",
       "1e-400", "-0", "0", "1E5", "1e+5", "1.5E-3", "١", "١٢", "²", "𝟗", "", " ", "\t1",
       "1\n", "NaN ", " NaN", "Infinity", "-Infinity", "+Infinity", "nAn", "9" * 400,
       "0." + "1" * 40, "1" * 309, "1" * 310, "True", "null", "1,5", "1 000", "0e0", "-0.0e-0"]
JSON_NUMBERS = st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
                             fullmatch=True)
STRINGS = st.one_of(
    st.sampled_from(ODD), JSON_NUMBERS, st.text(max_size=12),
    st.text(alphabet="0123456789+-.eE_ xX", max_size=12),
    st.builds(lambda s, pad: pad[0] + s + pad[1], JSON_NUMBERS,
              st.tuples(st.sampled_from(["", " ", "+", "0", "\n"]),
                        st.sampled_from(["", " ", ".", "_0", "\t"]))),
    st.floats().map(repr), st.floats().map(str).map(str.upper))


@SETTINGS
@given(STRINGS)
@example("1_000")
@example(" 2 ")
@example("nan")
@example("inf")
def test_number_strings_follow_the_proto3_rule(text: str) -> None:
    want = reference(text)
    try:
        got = codec.number_string(text, "inputs.input")
    except InvalidArgument as error:
        assert want is None, f"{text!r} refused, the rule gives {want!r}"
        assert error.field == "inputs.input" and error.message.startswith("inputs.input: ")
        assert len(error.message) < 300
        return
    assert want is not None, f"{text!r} accepted as {got!r}; the rule refuses it"
    assert type(got) is type(want), (got, want)
    assert got == want or (math.isnan(got) and math.isnan(want))
    assert math.copysign(1, got) == math.copysign(1, want)  # "-0" is -0.0


def _json_format(text: str) -> list[float | None]:
    """What protobuf's json_format reads from the JSON string ``text`` (no quote, backslash
    or control character in it) as a DoubleValue and as one element of a repeated double
    (``Tensor.double_data``); None where it refuses."""
    results: list[float | None] = []
    for target, document in ((DoubleValue(), f'"{text}"'),
                             (pb.Tensor(), f'{{"doubleData": ["{text}"]}}')):
        try:
            message = json_format.Parse(document, target)
        except json_format.ParseError:
            results.append(None)
            continue
        results.append(message.value if isinstance(message, DoubleValue)
                       else message.double_data[0])
    return results


@SETTINGS
@given(STRINGS.filter(lambda s: s.isprintable() and '"' not in s and "\\" not in s))
@example("0x10")
@example("1E5")
def test_json_format_agrees_where_the_rule_accepts(text: str) -> None:
    """Every string the rule accepts, protobuf's json_format accepts with the same value (as a
    DoubleValue and in a repeated double); every string json_format refuses, the rule refuses."""
    want = reference(text)
    for value in _json_format(text):
        if want is None:
            continue  # json_format (Python float()) may accept more: " 2 ", "1_000", "inf"
        assert value is not None, f"json_format refuses {text!r}; the rule accepts it"
        assert value == float(want) or (math.isnan(value) and math.isnan(want)), text


# --- over the wire -------------------------------------------------------------------------------

REFUSED = ["1_000", " 2 ", "nan", "inf", "+1", ".5", "0x10", "١", "1e400", "x" * 10_000]
ACCEPTED = {"1E5": 1e5, "-0": -0.0, "NaN": math.nan, "Infinity": math.inf, "2.5e-3": 2.5e-3,
            "1e-400": 0.0}


def _bodies(value: str) -> list[tuple[str, dict]]:
    """(path, body) for each place a tensor value may be a string: native data, nested list,
    V2 JSON data (one value of ``input`` is ``value``)."""
    return [
        ("/v1/losses/mse", {"inputs": {"input": {"dtype": "float64", "shape": [2],
                                                 "data": [1.0, value]},
                                       "target": [0.0, 0.0]}, "options": {"reduction": "none"}}),
        ("/v1/losses/mse", {"inputs": {"input": [[1.0, value]], "target": [[0.0, 0.0]]},
                            "options": {"reduction": "none"}}),
        ("/v2/models/mse/infer", {"inputs": [
            {"name": "input", "datatype": "FP64", "shape": [2], "data": [1.0, value]},
            {"name": "target", "datatype": "FP64", "shape": [2], "data": [0.0, 0.0]}],
            "parameters": {"reduction": "none"}}),
    ]


@pytest.mark.parametrize("value", REFUSED, ids=lambda v: v[:12])
def test_refused_strings_answer_400_naming_the_tensor_and_value(server, value: str) -> None:
    for path, body in [*_bodies(value), ("/v1/losses/mse", {
            "inputs": {"input": value, "target": 0.0}})]:
        response = httpx.post(server.url + path, json=body, timeout=30)
        assert response.status_code == 400, (path, response.text)
        message = response.json()["error"]
        message = message["message"] if isinstance(message, dict) else message
        assert "inputs.input" in message, message
        assert repr(value[:SHOWN]) in message and len(message) < 400, message


def _loss_values(path: str, answer: dict) -> list:
    if path.startswith("/v2"):
        return answer["outputs"][0]["data"]
    loss = answer["loss"]
    return loss["data"] if isinstance(loss, dict) else loss[0]  # [[a, b]]: a nested list


@pytest.mark.parametrize(("value", "number"), ACCEPTED.items(), ids=list(ACCEPTED))
def test_accepted_strings_are_the_numbers_they_spell(server, value: str, number: float) -> None:
    want = ["NaN" if math.isnan(number) else "Infinity" if math.isinf(number) else number ** 2]
    for path, body in _bodies(value):
        response = httpx.post(server.url + path, json=body, timeout=30)
        assert response.status_code == 200, (path, response.text)
        assert _loss_values(path, response.json()) == [1.0, *want], path


def test_integer_strings_are_integers(server) -> None:
    """proto3 writes int64 values as strings: class indices sent so are the integers, for a
    declared int64 tensor and in nested lists alike."""
    logits = [[0.5, 1.5, -1.0], [2.0, 0.0, 1.0]]
    answers = []
    for target in ([2, 0], ["2", "0"], {"dtype": "int64", "shape": [2], "data": ["2", "0"]}):
        response = httpx.post(f"{server.url}/v1/losses/cross_entropy", timeout=30,
                              json={"inputs": {"input": logits, "target": target}})
        assert response.status_code == 200, response.text
        answers.append(response.json()["loss"])
    assert answers[0] == answers[1] == answers[2]
