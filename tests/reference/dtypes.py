"""Dtype probes: every tensor of every loss in every wire dtype, the other tensors valid.

A probe takes one valid call of the loss (a reference case, :func:`base_case`) and casts one of
its tensors (an input or a tensor option) to one wire dtype, the others left as they are. torch
either accepts the call (its loss then has a dtype) or refuses it; lossd must do the same:
``tests/golden/dtypes.json`` records torch 2.13's answers (``python -m
tests.golden.generate_dtypes``) and tests/losses/test_dtypes.py compares lossd with them (and
with torch itself when it is installed).

Values are cast as NumPy casts them, so a probe holds what a client sending that dtype would
send; the base cases keep values every dtype holds (small whole numbers, probabilities 0 and 1)
where the loss allows, so that a refusal is about the dtype, not the values.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import Case, all_cases, torch_module_for

WIRE_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16",
               "float32", "float64")
BFLOAT16 = "bfloat16"


@dataclass(frozen=True)
class Probe:
    """One call: ``base``'s tensors with ``tensor`` cast to ``dtype``."""

    base: Case
    tensor: str
    dtype: str

    @property
    def id(self) -> str:
        return f"{self.base.loss}-{self.tensor}-{self.dtype}"

    @property
    def loss(self) -> str:
        return self.base.loss

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.base.options)

    def arrays(self) -> dict[str, np.ndarray]:
        """The call's arrays as NumPy carries them (bfloat16 as float32 rounded to bfloat16,
        the way the codec widens it)."""
        arrays = dict(self.base.inputs)
        array = arrays[self.tensor]
        arrays[self.tensor] = (round_bfloat16(array) if self.dtype == BFLOAT16
                               else _cast(array, self.dtype))
        return arrays

    @property
    def bfloat16(self) -> frozenset[str]:
        """The tensors sent as bfloat16."""
        return frozenset({self.tensor}) if self.dtype == BFLOAT16 else frozenset()


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # -1 as uint8 wraps, as a client's cast would
        with np.errstate(all="ignore"):
            return np.asarray(array).astype(dtype)


def round_bfloat16(array: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as float32."""
    bits = _cast(array, "float32").view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def base_case(loss: str, cases: list[Case]) -> Case:
    """The loss's valid reference case with the most tensors (tensor options included), then
    non-empty, then float32 — the call every probe of the loss varies."""
    valid = [c for c in cases if c.loss == loss and c.error is None]
    if not valid:
        raise LookupError(f"no valid reference case for {loss!r}")

    def rank(case: Case) -> tuple[int, int, int]:
        arrays = case.inputs.values()
        return (-len(case.inputs), int(any(a.size == 0 for a in arrays)),
                int(not any(a.dtype == np.float32 for a in arrays)))

    return min(valid, key=rank)


def probes(losses: list[str] | None = None) -> Iterator[Probe]:
    """Every (loss, tensor, dtype) probe, in registry order."""
    from lossd.losses import REGISTRY

    cases = all_cases(0)
    for name in losses or list(REGISTRY):
        base = base_case(name, cases)
        for tensor in base.inputs:
            for dtype in WIRE_DTYPES:
                yield Probe(base, tensor, dtype)


def torch_answer(probe: Probe) -> dict[str, Any]:
    """What torch does with ``probe``: ``{"accepts": True, "dtype": <the loss's dtype>}`` or
    ``{"accepts": False, "error": <torch's message, first line>}``."""
    import torch

    tensors = {}
    for name, array in probe.arrays().items():
        tensor = torch.from_numpy(np.array(array, copy=True))
        tensors[name] = tensor.to(torch.bfloat16) if name in probe.bfloat16 else tensor
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = torch_module_for(probe.loss).torch_loss(probe.loss, tensors, probe.options)
    except Exception as exc:  # noqa: BLE001 - torch refused the call: that is the answer
        return {"accepts": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    return {"accepts": True, "dtype": str(out.dtype).removeprefix("torch.")}
