"""How closely lossd agrees with torch, measured: ``python -m tests.reference.exactness``.

Every valid reference case (``cases(seed)`` of every family, seeds 0-3 by default) is computed
by lossd and by torch (tests/reference/oracle.py: the loss and the gradients torch gives). For
each case and each compared array (the loss, each gradient) two errors are taken over its
finite elements:

* ``relative``: the largest ``|lossd - torch| / |torch|`` where torch's answer is non-zero. An
  element that is a small residue of cancellation (a box gradient of 1e-10 beside ones of 0.1)
  can have a large one while the array agrees to the last bits of its scale;
* ``needed``: the smallest rtol with ``|lossd - torch| <= ATOL + rtol·|torch|`` for every
  element, ``ATOL`` the dtype's absolute floor below (what the tests' tolerances must allow).

A nan/inf that differs is a mismatch, counted apart. Cases with floats of several widths are
grouped as ``mixed`` (their floor is the narrowest dtype's): torch rounds part of their
arithmetic in the narrower type.

The output is the table docs/exactness.md shows (median, 99th percentile and maximum of the
per-array errors, per dtype, for values and for gradients), then the largest by case.
"""

from __future__ import annotations

import argparse
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lossd.losses import compute

from . import ATOL, Case, all_cases

# the floor is the tests' absolute tolerance (ATOL, the same for values and gradients)
WIDTHS = ("float64", "float32", "float16")


@dataclass(frozen=True)
class Error:
    case: str
    what: str  # "loss" or "grad <name>"
    relative: float  # largest |a - b| / |b| where b is finite and non-zero (0 if none)
    needed: float  # smallest rtol with |a - b| <= ATOL + rtol·|b| everywhere
    mismatch: bool  # a nan/inf pattern or a shape/dtype differs


def group(case: Case) -> str:
    widths = {a.dtype.name for a in case.inputs.values() if a.dtype.kind == "f"}
    return widths.pop() if len(widths) == 1 else "mixed" if widths else "float32"


def floor(case: Case) -> float:
    """The absolute floor of ``case``: its narrowest float dtype's."""
    widths = {a.dtype.name for a in case.inputs.values() if a.dtype.kind == "f"}
    return ATOL[max(widths or {"float32"}, key=WIDTHS.index)]


def error(case: Case, what: str, actual: np.ndarray, expected: np.ndarray) -> Error:
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return Error(case.name, what, np.inf, np.inf, True)
    a, b = actual.astype(np.float64).ravel(), expected.astype(np.float64).ravel()
    finite = np.isfinite(b)
    same_special = np.array_equal(a[~finite], b[~finite], equal_nan=True)
    mismatch = not same_special or not np.isfinite(a[finite]).all()
    nonzero = finite & (b != 0)
    diff = np.abs(a[finite] - b[finite])
    with np.errstate(all="ignore"):
        rel = np.abs(a[nonzero] - b[nonzero]) / np.abs(b[nonzero])
        beyond = np.maximum(diff - floor(case), 0) / np.abs(b[finite])
    needed = float(np.nan_to_num(beyond, nan=0.0, posinf=np.inf).max(initial=0.0))
    return Error(case.name, what, float(rel.max(initial=0.0)), needed, mismatch)


def measure(seeds: tuple[int, ...]) -> dict[tuple[str, str], list[Error]]:
    """(dtype group, "values" | "gradients") -> one Error per case and compared array."""
    from .oracle import run_torch

    out: dict[tuple[str, str], list[Error]] = defaultdict(list)
    for seed in seeds:
        for case in all_cases(seed):
            if case.error is not None:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected_loss, expected_grads = run_torch(case)
                result = compute(case.loss, case.inputs, case.options,
                                 grad=bool(expected_grads))
            named = Case(f"seed{seed}-{case.name}", case.loss, case.inputs, case.options)
            key = group(case)
            out[key, "values"].append(error(named, "loss", result.loss, expected_loss))
            for name, g in expected_grads.items():
                got = result.grads.get(name)
                out[key, "gradients"].append(
                    Error(named.name, f"grad {name}", np.inf, np.inf, True) if got is None
                    else error(named, f"grad {name}", got, g))
    return out


def table(measured: dict[tuple[str, str], list[Error]]) -> str:
    rows = ["| dtype | compared | arrays | relative: median | p99 | max | "
            "rtol needed above the floor: p99 | max | floor | nan/inf mismatches |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(measured, key=lambda k: (["float64", "float32", "float16", "mixed"]
                                               .index(k[0]), k[1] != "values")):
        errors = measured[key]
        rel = np.array([e.relative for e in errors if not e.mismatch])
        needed = np.array([e.needed for e in errors if not e.mismatch])
        atol = "narrowest's" if key[0] == "mixed" else f"{ATOL[key[0]]:.0e}"
        rows.append(f"| {key[0]} | {key[1]} | {len(errors)} | {np.median(rel):.1e} | "
                    f"{np.percentile(rel, 99):.1e} | {rel.max():.1e} | "
                    f"{np.percentile(needed, 99):.1e} | {needed.max():.1e} | {atol} | "
                    f"{sum(e.mismatch for e in errors)} |")
    return "\n".join(rows)


def worst(measured: dict[tuple[str, str], list[Error]], count: int) -> str:
    lines = []
    for key, errors in sorted(measured.items()):
        ranked = sorted(errors, key=lambda e: (e.mismatch, e.needed, e.relative),
                        reverse=True)[:count]
        lines.append(f"{key[0]} {key[1]} (rtol needed, relative):")
        lines += [f"  {e.needed:.1e} {e.relative:.1e}{' MISMATCH' if e.mismatch else ''}"
                  f"  {e.case} {e.what}" for e in ranked]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--worst", type=int, default=8, help="largest errors shown per group")
    args = parser.parse_args()
    measured = measure(tuple(args.seeds))
    print(table(measured))
    print()
    print(worst(measured, args.worst))


if __name__ == "__main__":
    main()
