"""Hypothesis properties of every loss in the core.

* Random valid inputs (a random seed of the reference case generators, a random case of that
  loss) are answered: no refusal, exactly the gradients torch gives (by name, in the tensors'
  shapes and dtypes), the loss in torch's shape and dtype; the same case at seed 0 equals the
  committed goldens (so a core that refuses everything or answers without gradients fails
  without torch too); and with torch installed they give torch's numbers and gradients.
* Random invalid inputs (a valid case with a tensor dropped, added, recast, reshaped or filled
  with non-finite values, an option of the wrong type or value) answer a result or a clean
  InvalidArgument; never another exception. Mutations that cannot be valid must be refused.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossd.errors import InvalidArgument, LossdError
from lossd.losses import REGISTRY, Result, compute
from tests.golden import decode, gradient_names, load
from tests.losses.test_golden import check_row
from tests.reference import FAMILIES, Case, family
from tests.reference.compare import assert_result

LOSSES = sorted(REGISTRY)
EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "8"))
WIRE_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
               "bool")
TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="no torch")
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@lru_cache(maxsize=32)
def _valid(loss: str, seed: int) -> tuple[Case, ...]:
    return tuple(c for c in family(REGISTRY[loss].family).cases(seed)
                 if c.loss == loss and c.error is None)


def _case(loss: str, seed: int, pick: int) -> Case:
    cases = _valid(loss, seed) or _valid(loss, 0)
    return cases[pick % len(cases)]


GOLDEN = {row["id"]: row for name in FAMILIES for row in load(name)}
GRADIENTS = gradient_names()


def _twin(case: Case) -> dict:
    """The golden row of ``case`` at seed 0: its own id, or (segmentation draws its cases'
    activation and target kind at random) the first valid row of the same loss with the same
    tensors in the same dtypes, the same options first (the dtypes decide which get a
    gradient)."""
    if case.name in GOLDEN:
        return GOLDEN[case.name]
    dtypes = {k: v.dtype.name for k, v in case.inputs.items()}
    rows = [row for row in GOLDEN.values()
            if row["loss"] == case.loss and "error" not in row
            and {k: v["dtype"] for k, v in row["inputs"].items()} == dtypes]
    assert rows, f"no golden row of {case.loss} with tensors {dtypes}"
    return next((row for row in rows if row["options"] == case.options), rows[0])


@pytest.mark.parametrize("loss", LOSSES)
@SETTINGS
@given(seed=st.integers(100, 2**31 - 1), pick=st.integers(0, 2**16))
def test_random_valid_inputs_are_answered(loss: str, seed: int, pick: int) -> None:
    case = _case(loss, seed, pick)
    twin = _twin(case)  # the same case at seed 0, as torch answered it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float16 overflow to inf, as torch
        result = compute(case.loss, case.inputs, case.options, grad=True)
        check_row(twin)
    assert set(result.grads) == GRADIENTS[twin["id"]], sorted(result.grads)
    for name, g in result.grads.items():
        given_ = case.inputs[name]
        assert (g.shape, g.dtype) == (given_.shape, given_.dtype), name
    twin_inputs = {k: decode(v) for k, v in twin["inputs"].items()}
    if twin["options"] == case.options and all(v.shape == twin_inputs[k].shape
                                               for k, v in case.inputs.items()):
        expected = decode(twin["expected_loss"])
        assert (result.loss.shape, result.loss.dtype) == (expected.shape, expected.dtype)


@pytest.mark.torch
@TORCH
@pytest.mark.parametrize("loss", LOSSES)
@SETTINGS
@given(seed=st.integers(100, 2**31 - 1), pick=st.integers(0, 2**16))
def test_random_valid_inputs_equal_torch(loss: str, seed: int, pick: int) -> None:
    _check_torch(_case(loss, seed, pick))


def _check_torch(case: Case) -> None:
    from tests.reference.oracle import run_torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float16 overflow to inf, as torch
        expected_loss, expected_grads = run_torch(case)
        result = compute(case.loss, case.inputs, case.options, grad=bool(expected_grads))
    assert_result(case, result.loss, result.grads, expected_loss, expected_grads)


ODD_VALUES = st.sampled_from([None, "", "sum ", "mean", -1, 0, 1, 2, 1e308, -1e308, float("nan"),
                              float("inf"), True, False, [1.0], {"a": 1}, 10**30])


@st.composite
def mutated(draw: st.DrawFn, loss: str) -> tuple[str, dict, dict, bool]:
    """(how, inputs, options, surely_invalid)."""
    case = _case(loss, draw(st.integers(100, 2**31 - 1)), draw(st.integers(0, 2**16)))
    inputs, options = dict(case.inputs), dict(case.options)
    spec = REGISTRY[loss]
    how = draw(st.sampled_from(["drop", "add tensor", "add option", "option", "reduction",
                                "dtype", "shape", "non-finite"]))
    name = draw(st.sampled_from(sorted(inputs)))
    if how == "drop":
        required = [t.name for t in spec.tensors if not t.optional and t.name in inputs]
        if required:
            del inputs[draw(st.sampled_from(required))]
            return how, inputs, options, True
        how = "add tensor"
    if how == "add tensor":
        inputs["not_a_tensor_of_" + loss] = np.zeros(2)
        return how, inputs, options, True
    if how == "add option":
        options["not_an_option"] = 1
        return how, inputs, options, True
    if how == "reduction":
        options["reduction"] = draw(st.sampled_from(["avg", "", "MEAN", "batch", 1, None]))
        return how, inputs, options, True
    if how == "option":
        options[draw(st.sampled_from([o.name for o in spec.options]))] = draw(ODD_VALUES)
    elif how == "dtype":
        inputs[name] = inputs[name].astype(draw(st.sampled_from(WIRE_DTYPES)))
    elif how == "shape":
        shape = draw(st.lists(st.integers(0, 4), max_size=4))
        inputs[name] = np.ones(shape, dtype=inputs[name].dtype)
    else:
        fill = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e38, -1e38, 0.0, -1.0]))
        if inputs[name].dtype.kind == "f":
            inputs[name] = np.full_like(inputs[name], fill)
    return how, inputs, options, False


@pytest.mark.parametrize("loss", LOSSES)
@SETTINGS
@given(data=st.data())
def test_random_invalid_inputs_are_refused_cleanly(loss: str, data: st.DataObject) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nan/inf arithmetic, as in torch
        how, inputs, options, surely_invalid = data.draw(mutated(loss), label="mutation")
        grad = data.draw(st.booleans(), label="grad")
        try:
            result = compute(loss, inputs, options, grad=grad)
        except LossdError as error:
            assert isinstance(error, InvalidArgument), (how, error)
            assert error.message
            return
    assert not surely_invalid, f"{how}: accepted {sorted(inputs)} {options}"
    assert isinstance(result, Result) and isinstance(result.loss, np.ndarray)
