"""The compute core: every loss as a pure NumPy function, declared once in a registry.

Import surface:
    REGISTRY            name -> LossSpec (populated by importing the family modules below)
    compute()           validate + compute + reduce (+ gradient) one call
    prepare/evaluate/backward/finish    the same in steps, for the batching engine
    Terms, reduce, cotangent            per-sample values and their reduction
    batch_* / concat / split_*          what the batching engine shares between calls
    Stats, Aggregate, signature         dataset-level losses from per-batch statistics
    mse, cross_entropy, ...             every loss as a function, by its wire name
"""

from __future__ import annotations

from . import boxes, classification, margin, regression, segmentation, sequence  # noqa: F401
from ._aggregate import Aggregate, Signature, dataset_reduction, signature
from ._batch import batch_axes, batch_key, batch_size, concat, split_grads, split_terms
from ._compute import (
    Prepared,
    Result,
    backward,
    check_options,
    compute,
    evaluate,
    finish,
    get_spec,
    gradients,
    option_value,
    prepare,
)
from ._reduce import Reduction, Terms, cotangent, reduce, weights_cotangent
from ._spec import ANY, REGISTRY, Dim, Form, Kind, LossSpec, OptionSpec, TensorSpec, Values
from ._stats import Stats
from .functional import FUNCTIONS, loss_function

globals().update(FUNCTIONS)  # every loss by its wire name: mse(input, target, reduction="sum")

__all__ = [
    "ANY", "REGISTRY", "Aggregate", "Dim", "Form", "Kind", "LossSpec", "OptionSpec", "Prepared",
    "Reduction", "Result", "Signature", "Stats", "TensorSpec", "Terms", "Values", "backward",
    "batch_axes", "batch_key", "batch_size", "check_options", "compute", "concat", "cotangent",
    "dataset_reduction", "evaluate", "finish", "get_spec", "gradients", "option_value",
    "loss_function", "prepare", "reduce", "signature", "split_grads", "split_terms",
    "weights_cotangent", *FUNCTIONS,
]
