"""Every loss takes exactly the dtypes torch 2.13 takes, tensor by tensor.

Each probe (tests/reference/dtypes.py) casts one tensor of a valid call, input or tensor option,
to one wire dtype (bool, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64).
lossd must accept it exactly when torch does, answering in torch's dtype, and refuse the others
with ``InvalidArgument`` naming a tensor. The answers are torch's own when it is installed
(a Hypothesis property over the probes) and ``tests/golden/dtypes.json`` otherwise
(``python -m tests.golden.generate dtypes``). The few calls where lossd is stricter on purpose
are listed with their reason in :data:`STRICTER`.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossd.codec import bfloat16_result
from lossd.errors import InvalidArgument
from lossd.losses import REGISTRY, compute
from tests.golden import load
from tests.reference.dtypes import WIRE_DTYPES, Probe, probes, torch_answer

TORCH_ONLY = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="no torch")

BEYOND_TORCH = ("beyond torch: the oracle's torch ops promote any dtype; lossd takes "
                "floating scores and the label dtypes")
STRICTER: dict[tuple[str, str], tuple[frozenset[str], str]] = {
    ("binary_cross_entropy_with_logits", "input"): (
        frozenset({"float64"}),
        "torch computes in the target's dtype, so a float64 input beside a float32 target "
        "would lose its precision silently"),
    ("binary_cross_entropy_with_logits", "target"): (
        frozenset({"float16", "bfloat16"}),
        "torch computes in the target's dtype, so a float16 or bfloat16 target would round a "
        "float32 input's loss silently"),
    ("hinge_embedding", "input"): (
        frozenset({"uint8", "int8", "int16", "int32", "int64"}),
        "torch answers an integer input in integer arithmetic (its mean refuses it); lossd "
        "takes floating distances"),
    ("dice", "input"): (frozenset({"bool", "uint8", "int8", "int16", "int32", "int64"}),
                        BEYOND_TORCH),
    ("dice", "target"): (frozenset({"int8", "int16", "int32"}), BEYOND_TORCH),
    ("jaccard", "input"): (frozenset({"bool", "uint8", "int8", "int16", "int32", "int64"}),
                           BEYOND_TORCH),
    ("jaccard", "target"): (frozenset({"int8", "int16", "int32"}), BEYOND_TORCH),
    ("tversky", "input"): (frozenset({"bool", "uint8", "int8", "int16", "int32", "int64"}),
                           BEYOND_TORCH),
    ("tversky", "target"): (frozenset({"int8", "int16", "int32"}), BEYOND_TORCH),
    ("ctc", "targets"): (
        frozenset({"bool", "float16", "bfloat16", "float32", "float64"}),
        "torch casts floating (or bool) class labels to integers silently; lossd takes "
        "class indices in an integer dtype"),
}
"""(loss, tensor) -> (the dtypes torch accepts there and lossd refuses, why)."""
EXAMPLES = 60
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@lru_cache(maxsize=1)
def all_probes() -> dict[str, Probe]:
    return {probe.id: probe for probe in probes()}


@lru_cache(maxsize=1)
def golden() -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in load("dtypes")}


def stricter(probe: Probe) -> bool:
    dtypes, _ = STRICTER.get((probe.loss, probe.tensor), (frozenset(), ""))
    return probe.dtype in dtypes


def lossd_answer(probe: Probe) -> dict[str, Any]:
    """What lossd does with ``probe``, in :func:`torch_answer`'s form (the loss's dtype is
    bfloat16 when the frontends would answer bfloat16: ``codec.bfloat16_result``)."""
    arrays = probe.arrays()
    try:
        result = compute(probe.loss, arrays, probe.options, bfloat16=probe.bfloat16)
    except InvalidArgument as exc:
        assert exc.field is not None and exc.field.startswith(("inputs.", "options.")), exc
        return {"accepts": False, "error": str(exc)}
    bfloat16 = bfloat16_result(REGISTRY[probe.loss].tensor_map, arrays, set(probe.bfloat16))
    return {"accepts": True, "dtype": "bfloat16" if bfloat16 else result.loss.dtype.name}


def check(probe: Probe, torch: dict[str, Any]) -> None:
    mine = lossd_answer(probe)
    if stricter(probe):
        assert torch["accepts"] and not mine["accepts"], (
            f"{probe.id}: listed in STRICTER, but torch {torch} and lossd {mine}")
        return
    assert mine["accepts"] == torch["accepts"], f"{probe.id}: torch {torch}, lossd {mine}"
    if torch["accepts"]:
        assert mine["dtype"] == torch["dtype"], f"{probe.id}: torch {torch}, lossd {mine}"


def test_the_golden_table_has_every_probe():
    """A new loss, tensor or reference base case needs ``generate dtypes`` run again."""
    assert sorted(golden()) == sorted(all_probes())


@pytest.mark.parametrize("probe_id", sorted(all_probes()))
def test_dtype_as_torch_golden(probe_id: str):
    check(all_probes()[probe_id], golden()[probe_id])


@TORCH_ONLY
@pytest.mark.torch
@SETTINGS
@given(data=st.data())
def test_dtype_as_torch_live(data: st.DataObject):
    loss = data.draw(st.sampled_from(sorted(REGISTRY)), label="loss")
    tensors = sorted({p.tensor for p in all_probes().values() if p.loss == loss})
    tensor = data.draw(st.sampled_from(tensors), label="tensor")
    dtype = data.draw(st.sampled_from(WIRE_DTYPES), label="dtype")
    probe = all_probes()[f"{loss}-{tensor}-{dtype}"]
    check(probe, torch_answer(probe))


def test_a_refused_dtype_names_the_tensor_and_what_it_accepts():
    with pytest.raises(InvalidArgument, match=r"input: dtype bool is not accepted; expected "
                                              r"one of float16, bfloat16, .*int64, uint8 "
                                              r"\[inputs.input\]"):
        compute("mse", {"input": np.zeros(3, bool), "target": np.zeros(3)})
    with pytest.raises(InvalidArgument, match=r"log_probs: dtype bfloat16 is not accepted; "
                                              r"expected one of float32, float64 "
                                              r"\[inputs.log_probs\]"):
        compute("ctc", {"log_probs": np.zeros((2, 1, 3), np.float32),
                        "targets": np.ones((1, 1), np.int64),
                        "input_lengths": np.array([2]), "target_lengths": np.array([1])},
                bfloat16={"log_probs"})


def test_bfloat16_beside_float32_is_refused_where_torch_wants_one_dtype():
    """The codec widens bfloat16 to float32; torch's kernels still see two dtypes."""
    arrays = {"input": np.zeros((2, 3), np.float32), "target": np.array([0, 2]),
              "weight": np.ones(3, np.float32)}
    with pytest.raises(InvalidArgument, match=r"weight: dtype must equal input's \(bfloat16\); "
                                              r"got float32"):
        compute("cross_entropy", arrays, bfloat16={"input"})
    assert compute("cross_entropy", arrays, bfloat16={"input", "weight"}).loss.dtype == np.float32
