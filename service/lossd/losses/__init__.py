"""The compute core: every loss as a pure NumPy function, declared once in a registry.

Import surface:
    REGISTRY            name -> LossSpec (populated by importing the family modules below)
    compute()           validate + compute + reduce (+ gradient) one call
    prepare/evaluate/backward/finish    the same in steps, for the batching engine
    Terms, reduce, cotangent            per-sample values and their reduction
"""

from __future__ import annotations

from . import boxes, classification, margin, regression, segmentation, sequence  # noqa: F401
from ._compute import (
                       Prepared,
                       Result,
                       backward,
                       compute,
                       evaluate,
                       finish,
                       get_spec,
                       gradients,
                       prepare,
)
from ._reduce import Reduction, Terms, cotangent, reduce, weights_cotangent
from ._spec import ANY, REGISTRY, Dim, Form, Kind, LossSpec, OptionSpec, TensorSpec, Values

__all__ = [
    "ANY", "REGISTRY", "Dim", "Form", "Kind", "LossSpec", "OptionSpec", "Prepared", "Reduction",
    "Result", "TensorSpec", "Values", "backward",
    "Terms", "compute", "cotangent", "evaluate", "finish", "get_spec", "gradients", "prepare",
    "reduce", "weights_cotangent",
]
