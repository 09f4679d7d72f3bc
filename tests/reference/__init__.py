"""Independent references for the core: test cases per family, and torch as the oracle.

Each family module here defines
    cases(seed) -> list[Case]             valid and invalid calls (NumPy only, deterministic)
    torch_loss(name, tensors, options)    the same call in torch (imports torch lazily)
Golden fixtures are ``cases(0)`` run through torch (tests/golden/generate.py); live parity runs
``cases(seed)`` for several seeds against torch when it is installed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

FAMILIES = ("regression", "classification", "margin", "sequence", "boxes", "segmentation")

# Tolerances at the measured agreement with torch (docs/exactness.md, measured by
# ``python -m tests.reference.exactness``), well inside the contract (float64 rel 1e-6, float32
# rel 1e-5): float64 values within rel 1e-12 and gradients within rel 1e-10, absolute 1e-15 for
# what is 0 in exact arithmetic (rounding residues); float32 values 1e-6 and gradients 2e-6
# (measured at most 3e-7 and 7e-7); float16 two of its ulps (one is up to 9.8e-4). A case that
# cannot meet them says so by name, with the reason, in its ``rtol``/``grad_rtol``/... fields.
RTOL = {"float64": 1e-12, "float32": 1e-6, "float16": 2e-3}
ATOL = {"float64": 1e-15, "float32": 1e-6, "float16": 1e-3}
GRAD_RTOL = {"float64": 1e-10, "float32": 2e-6, "float16": 2e-3}
GRAD_ATOL = ATOL

# Calls whose whole backward torch refuses, while its forward promotes the dtypes: torch 2.13's
# huber backward kernel demands that input and target share one dtype ("Found dtype Double but
# expected Float"), a kernel check, not a tensor torch does not differentiate. lossd gives the
# gradient of the promoted call (what torch gives once the tensors are cast beforehand:
# tests/losses/test_differentiable.py): case name -> the tensors lossd differentiates.
PROMOTED_BACKWARD = {"huber-int-target": frozenset({"input"}),
                     "huber-mixed-f32-f64": frozenset({"input", "target"})}


@dataclass
class Case:
    """One call of one loss. ``error`` is a regex the core's InvalidArgument must match (torch
    must refuse the call too, unless ``torch_accepts``: lossd is stricter on purpose)."""

    id: str
    loss: str
    inputs: dict[str, np.ndarray]
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    torch_accepts: bool = False
    grad: bool = True
    finite_diff: bool = True  # central differences are valid here (no kink within reach)
    rtol: float | None = None  # overrides RTOL (and GRAD_RTOL) for this case (say why)
    atol: float | None = None
    grad_rtol: float | None = None  # e.g. torch's own float32 CTC gradient error
    grad_atol: float | None = None

    @property
    def name(self) -> str:
        return f"{self.loss}-{self.id}"


def family(name: str) -> ModuleType:
    return importlib.import_module(f"tests.reference.{name}")


def available_families() -> list[ModuleType]:
    """Family modules that exist (all of them once the core is complete)."""
    out = []
    for name in FAMILIES:
        try:
            out.append(family(name))
        except ModuleNotFoundError:
            continue
    return out


def all_cases(seed: int) -> list[Case]:
    return [case for module in available_families() for case in module.cases(seed)]


def torch_module_for(loss: str) -> ModuleType:
    from lossd.losses import REGISTRY
    return family(REGISTRY[loss].family)


class Rand:
    """Seeded array factory for cases: ``r.normal((4, 3), "float32")``."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def normal(self, shape: tuple[int, ...], dtype: str = "float64", scale: float = 1.0
               ) -> np.ndarray:
        return np.asarray(self.rng.standard_normal(shape) * scale).astype(dtype)

    def uniform(self, shape: tuple[int, ...], dtype: str = "float64", low: float = 0.0,
                high: float = 1.0) -> np.ndarray:
        return np.asarray(self.rng.uniform(low, high, shape)).astype(dtype)

    def integers(self, low: int, high: int, shape: tuple[int, ...], dtype: str = "int64"
                 ) -> np.ndarray:
        return np.asarray(self.rng.integers(low, high, shape)).astype(dtype)

    def signs(self, shape: tuple[int, ...], dtype: str = "float64") -> np.ndarray:
        return np.asarray(np.where(self.rng.random(shape) < 0.5, -1, 1)).astype(dtype)

    def choice(self, options: list[Any]) -> Any:
        return options[int(self.rng.integers(0, len(options)))]
