"""Cases for the wire tests (native and V2): per loss a float64 and a float32 valid case with
data in it, and the core's answer to compare with."""

from __future__ import annotations

import numpy as np
import pytest

from lossd.losses import REGISTRY, Result, compute
from tests.reference import Case, all_cases
from tests.reference.compare import assert_close


def _pick() -> list[Case]:
    chosen: dict[tuple[str, str], Case] = {}
    for case in all_cases(0):
        if case.error is not None or any(v.size == 0 for v in case.inputs.values()):
            continue
        floats = {v.dtype.name for v in case.inputs.values() if v.dtype.kind == "f"}
        if len(floats) == 1 and floats <= {"float32", "float64"}:
            chosen.setdefault((case.loss, floats.pop()), case)
    return list(chosen.values())


CASES = [pytest.param(c, id=c.name) for c in _pick()]
assert {c.values[0].loss for c in CASES} == set(REGISTRY), "a loss has no V2 case"


def expected(case: Case) -> Result:
    return compute(case.loss, case.inputs, case.options, grad=True)


def output_names(result: Result) -> list[str]:
    return ["loss"] + [f"grad_{name}" for name in result.grads]


def check(case: Case, outputs: dict[str, np.ndarray]) -> None:
    """V2 outputs (by name) equal the core's loss and gradients, dtype and shape included."""
    want = expected(case)
    assert set(outputs) == set(output_names(want)), (sorted(outputs), output_names(want))
    assert_close(outputs["loss"], want.loss, what=f"{case.name} loss")
    for name, g in want.grads.items():
        assert_close(outputs[f"grad_{name}"], g, what=f"{case.name} grad {name}")
