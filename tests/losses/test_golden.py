"""The core against committed torch answers (tests/golden/*.json): runs without torch."""

from __future__ import annotations

import pytest

from lossd.errors import InvalidArgument
from lossd.losses import compute
from tests.golden import decode, load
from tests.reference import FAMILIES, Case
from tests.reference.compare import assert_result

ROWS = [row for family in FAMILIES for row in load(family)]


def test_every_family_has_golden_values() -> None:
    missing = [family for family in FAMILIES if not load(family)]
    assert not missing, f"no golden fixtures for {missing}: run make golden"


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_golden(row: dict) -> None:
    inputs = {k: decode(v) for k, v in row["inputs"].items()}
    if "error" in row:
        with pytest.raises(InvalidArgument, match=row["error"]):
            compute(row["loss"], inputs, row["options"])
        return
    expected_grads = {k: decode(v) for k, v in row["expected_grads"].items()}
    result = compute(row["loss"], inputs, row["options"], grad=bool(expected_grads))
    case = Case(row["id"], row["loss"], inputs, row["options"], **row.get("tolerance", {}))
    assert_result(case, result.loss, result.grads, decode(row["expected_loss"]),
                  expected_grads)
