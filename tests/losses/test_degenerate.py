"""Degenerate shapes against torch 2.13: live, or its goldens where torch is not installed.

The sweep (tests/reference/degenerate.py) cuts every valid reference case of every loss, one
named dim at a time, to size zero (zero classes, zero batch, zero-length sequences, empty
trailing dims), ignores every target where the loss has ``ignore_index``, and makes it 0-d
where every tensor allows it. Each degenerate call must give torch's value and gradients, or be
refused with ``InvalidArgument`` exactly where torch raises; never another exception (a 500
over the wire).

Without torch (``make test``) the sweep is compared with ``tests/golden/degenerate.json``, the
same calls run through torch (``python -m tests.golden.generate degenerate``); with torch
(``make parity``, marker ``torch``) it is compared live, and Hypothesis also draws calls that
cut several dims at once (``LOSSD_FUZZ_EXAMPLES`` raises the count as in the other property
tests).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lossd.errors import InvalidArgument
from lossd.losses import REGISTRY, compute
from tests.golden import decode, load
from tests.reference import Case
from tests.reference.compare import assert_result
from tests.reference.degenerate import cases, degenerate, known, shrinkable, sweep

TORCH_ONLY = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="no torch")

LOSSES = sorted(REGISTRY)
EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "6"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))

Expected = tuple[np.ndarray, dict[str, np.ndarray]] | BaseException
"""torch's (loss, gradients) of a call, or what it raised."""


def live_torch(case: Case) -> Expected:
    from tests.reference.oracle import run_torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return run_torch(case)
    except Exception as error:  # noqa: BLE001 - whatever torch raises is a refusal
        return error


class TorchRefused(Exception):
    """A golden row in which torch raised (its message kept for the reader)."""


@lru_cache(maxsize=1)
def golden_rows() -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in load("degenerate"):
        rows.setdefault(row["loss"], []).append(row)
    return rows


def golden_case(row: dict) -> tuple[Case, Expected]:
    case = Case(row["id"], row["loss"], {k: decode(v) for k, v in row["inputs"].items()},
                row["options"], grad=row["grad"])
    if "torch_error" in row:
        return case, TorchRefused(row["torch_error"])
    return case, (decode(row["expected_loss"]),
                  {k: decode(v) for k, v in row["expected_grads"].items()})


def check_like_torch(case: Case, expected: Expected) -> None:
    """lossd gives torch's loss and gradients, or refuses cleanly where torch raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            result = compute(case.loss, case.inputs, case.options, grad=case.grad)
        except InvalidArgument as error:
            assert isinstance(expected, BaseException), (
                f"{case.name}: lossd refused ({error.message}) where torch gives "
                f"{expected[0]!r}")
            return
    assert not isinstance(expected, BaseException), (
        f"{case.name}: torch raised {type(expected).__name__}: {expected}; lossd gave "
        f"{result.loss!r}")
    loss, grads = expected
    assert_result(case, result.loss, result.grads if grads else {}, loss, grads)


def check_all(calls: list[tuple[Case, Callable[[], Expected]]]) -> None:
    """Every call as torch answers it, but the ``known()`` differences (which must differ)."""
    failures = []
    for case, expected in calls:
        try:
            check_like_torch(case, expected())
        except AssertionError as error:
            if known(case) is None:
                failures.append(" ".join(str(error).split())[:400])
        else:
            if known(case) is not None:
                failures.append(f"{case.name} now equals torch: drop it from known()")
    assert not failures, f"{len(failures)} of {len(calls)}:\n" + "\n".join(failures[:20])


@pytest.mark.parametrize("loss", LOSSES)
def test_degenerate_shapes_answer_cleanly(loss: str) -> None:
    """Without torch too: each degenerate call is a result shaped like its inputs (a gradient
    per floating tensor at most, each of that tensor's shape) or an ``InvalidArgument``."""
    for case in sweep(loss):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                result = compute(case.loss, case.inputs, case.options, grad=True)
            except InvalidArgument as error:
                assert error.message, case.name
                continue
        for name, g in result.grads.items():
            given = case.inputs[name]
            assert g.shape == given.shape and g.dtype == given.dtype, (case.name, name)


@pytest.mark.parametrize("loss", LOSSES)
def test_degenerate_shapes_match_torch_goldens(loss: str) -> None:
    """Without torch: the sweep's calls as torch answered them when the goldens were made."""
    rows = golden_rows().get(loss, [])
    assert rows, f"{loss}: no degenerate goldens; run python -m tests.golden.generate degenerate"
    check_all([(case, lambda expected=expected: expected)
               for case, expected in map(golden_case, rows)])


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.torch
@TORCH_ONLY
def test_degenerate_shapes_match_torch(loss: str) -> None:
    calls = sweep(loss)
    assert calls, f"{loss}: no degenerate case derived from the registry"
    check_all([(case, lambda case=case: live_torch(case)) for case in calls])


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.torch
@TORCH_ONLY
@SETTINGS
@given(data=st.data())
def test_random_degenerate_calls_match_torch(loss: str, data: st.DataObject) -> None:
    pick = data.draw(st.integers(0, 2**16), label="case")
    case, labels = cases(loss)[pick % len(cases(loss))]
    dims = shrinkable(labels)
    zero = data.draw(st.frozensets(st.sampled_from(dims)) if dims else st.just(frozenset()),
                     label="zero dims")
    ignore = data.draw(st.booleans(), label="ignore all")
    zero_d = data.draw(st.booleans(), label="0-d")
    assume(zero or ignore or zero_d)  # the full case is the parity tests' business
    made = degenerate(case, labels, zero, ignore, zero_d)
    assume(made is not None and known(made) is None)
    assert made is not None
    check_like_torch(made, live_torch(made))
