"""The registry as every frontend shows it (``/v1/losses``, ``ListLosses``, V2 metadata)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..losses import REGISTRY, LossSpec, TensorSpec


def describe(spec: LossSpec) -> dict[str, Any]:
    """One loss: its tensors, options (JSON Schema with torch's defaults), gradients, torch."""
    return {
        "name": spec.name,
        "summary": spec.summary,
        "family": spec.family,
        "torch": spec.torch,
        "tensors": [describe_tensor(t) for t in spec.tensors],
        "options": {"type": "object", "additionalProperties": False,
                    "properties": {o.name: o.json_schema() for o in spec.options}},
        "differentiable": list(spec.differentiable),
        "reductions": list(spec.reductions),
    }


def describe_tensor(tensor: TensorSpec) -> dict[str, Any]:
    """One tensor; ``dims`` lists its forms (``[["N", "C"], ["C"]]``, ``"*"`` for any dims).

    ``values`` is its range (``null`` for any real), bounds possibly dim names::

        {"low": 0, "high": "C", "low_open": false, "high_open": true, "integer": true,
         "choices": null}
    """
    values = None if tensor.values is None else asdict(tensor.values)
    if values is not None and values["choices"] is not None:
        values["choices"] = list(values["choices"])
    return {"name": tensor.name, "role": tensor.role, "shape": tensor.shape,
            "dtypes": list(tensor.accepted_dtypes),
            "differentiable": tensor.differentiable, "optional": tensor.optional,
            "description": tensor.description, "dims": [list(form) for form in tensor.dims],
            "values": values}


def describe_all() -> list[dict[str, Any]]:
    """Every registered loss, described as by :func:`describe`, sorted by name (``/v1/losses``)."""
    return [describe(spec) for spec in sorted(REGISTRY.values(), key=lambda s: s.name)]
