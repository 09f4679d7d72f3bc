"""Write tests/golden/<family>.json from torch 2.13: ``python -m tests.golden.generate [family]``.

For each ``cases(0)`` entry: the inputs, options, and torch's loss and gradients — or, for an
invalid call, the fact that torch refused it (and its message, for the reader).
"""

from __future__ import annotations

import json
import sys

import torch

from tests.golden import encode, path
from tests.reference import FAMILIES, available_families
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


def main(argv: list[str]) -> None:
    torch.manual_seed(0)
    wanted = set(argv) or set(FAMILIES)
    for module in available_families():
        name = module.__name__.rsplit(".", 1)[1]
        if name in wanted:
            rows = generate(module)
            path(name).write_text(json.dumps(rows, indent=0, sort_keys=True) + "\n")
            print(f"{name}: {len(rows)} cases -> {path(name)}")


if __name__ == "__main__":
    main(sys.argv[1:])
