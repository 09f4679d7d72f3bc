"""Write tests/golden/<name>.json from torch 2.13: ``python -m tests.golden.generate [name]``.

For each family, each ``cases(0)`` entry: the inputs, options, and torch's loss and gradients —
or, for an invalid call, the fact that torch refused it (and its message, for the reader).
``dtypes``: for every dtype probe (tests/reference/dtypes.py), whether torch accepts it and
its loss's dtype, or torch's message. ``degenerate``: every call of the degenerate-shape sweep
(tests/reference/degenerate.py) with torch's loss and gradients, or torch's message.
"""

from __future__ import annotations

import json
import sys
import warnings

import torch

from lossd.losses import REGISTRY
from tests.golden import encode, path
from tests.reference import FAMILIES, available_families
from tests.reference.degenerate import sweep
from tests.reference.dtypes import probes, torch_answer
from tests.reference.oracle import run_torch

TOLERANCES = ("rtol", "atol", "grad_rtol", "grad_atol")


def generate(module) -> list[dict]:
    rows = []
    for case in module.cases(0):
        row = {"id": case.name, "loss": case.loss, "options": case.options,
               "inputs": {k: encode(v) for k, v in case.inputs.items()},
               "tolerance": {k: getattr(case, k) for k in TOLERANCES
                             if getattr(case, k) is not None}}
        try:
            loss, grads = run_torch(case)
        except Exception as exc:  # torch refused: an error case
            if case.error is None:
                raise RuntimeError(f"torch refused valid case {case.name}: {exc}") from exc
            row["error"] = case.error
            row["torch_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            if case.error is not None and not case.torch_accepts:
                raise RuntimeError(f"torch accepted invalid case {case.name}")
            if case.error is not None:
                row["error"] = case.error
            else:
                row["expected_loss"] = encode(loss)
                row["expected_grads"] = {k: encode(v) for k, v in grads.items()}
        rows.append(row)
    return rows


def generate_dtypes() -> list[dict]:
    return [{"id": probe.id, **torch_answer(probe)} for probe in probes()]


def generate_degenerate() -> list[dict]:
    rows = []
    for loss in sorted(REGISTRY):
        for case in sweep(loss):
            row = {"id": case.id, "loss": case.loss, "options": case.options, "grad": case.grad,
                   "inputs": {k: encode(v) for k, v in case.inputs.items()}}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    loss_value, grads = run_torch(case)
            except Exception as exc:  # noqa: BLE001 - torch refused: lossd must refuse too
                row["torch_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            else:
                row["expected_loss"] = encode(loss_value)
                row["expected_grads"] = {k: encode(v) for k, v in grads.items()}
            rows.append(row)
    return rows


def write(name: str, rows: list[dict]) -> None:
    path(name).write_text(json.dumps(rows, indent=0, sort_keys=True) + "\n")
    print(f"{name}: {len(rows)} cases -> {path(name)}")


def main(argv: list[str]) -> None:
    torch.manual_seed(0)
    wanted = set(argv) or {*FAMILIES, "dtypes", "degenerate"}
    for module in available_families():
        name = module.__name__.rsplit(".", 1)[1]
        if name in wanted:
            write(name, generate(module))
    if "dtypes" in wanted:
        write("dtypes", generate_dtypes())
    if "degenerate" in wanted:
        write("degenerate", generate_degenerate())


if __name__ == "__main__":
    main(sys.argv[1:])
