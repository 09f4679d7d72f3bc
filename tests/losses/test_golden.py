"""The core against committed torch answers (tests/golden/*.json): runs without torch.

Every valid row is asked for gradients: lossd must return exactly the gradients torch gave
(by name; an empty dict fails) and the loss, each within the measured tolerances.
"""

from __future__ import annotations

from typing import Any

import pytest

from lossd.errors import InvalidArgument
from lossd.losses import compute
from tests.golden import decode, gradient_names, load
from tests.reference import FAMILIES, Case
from tests.reference.compare import assert_result

ROWS = [row for family in FAMILIES for row in load(family)]
GRADIENTS = gradient_names()


def check_row(row: dict[str, Any]) -> None:
    """Raise ``AssertionError`` unless the core answers ``row`` as torch did."""
    inputs = {k: decode(v) for k, v in row["inputs"].items()}
    if "error" in row:
        with pytest.raises(InvalidArgument, match=row["error"]):
            compute(row["loss"], inputs, row["options"])
        return
    expected_grads = {k: decode(v) for k, v in row["expected_grads"].items()}
    result = compute(row["loss"], inputs, row["options"], grad=True)
    assert set(result.grads) == GRADIENTS[row["id"]], (
        f"{row['id']}: gradients for {sorted(result.grads)}, expected "
        f"{sorted(GRADIENTS[row['id']])}")
    # a call whose backward torch refuses as a whole has no golden gradient values (names only)
    grads = {k: g for k, g in result.grads.items() if k in expected_grads}
    case = Case(row["id"], row["loss"], inputs, row["options"], **row.get("tolerance", {}))
    assert_result(case, result.loss, grads, decode(row["expected_loss"]), expected_grads)


def test_every_family_has_golden_values() -> None:
    missing = [family for family in FAMILIES if not load(family)]
    assert not missing, f"no golden fixtures for {missing}: run make golden"


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_golden(row: dict) -> None:
    check_row(row)
