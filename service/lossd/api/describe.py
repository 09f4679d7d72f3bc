"""The registry as every frontend shows it (``/v1/losses``, ``ListLosses``, V2 metadata)."""

from __future__ import annotations

from typing import Any

from ..losses import REGISTRY, LossSpec


def describe(spec: LossSpec) -> dict[str, Any]:
    """One loss: its tensors, options (JSON Schema with torch's defaults), gradients, torch."""
    return {
        "name": spec.name,
        "summary": spec.summary,
        "family": spec.family,
        "torch": spec.torch,
        "tensors": [{"name": t.name, "role": t.role, "shape": t.shape,
                     "dtypes": list(t.accepted_dtypes) + (["bfloat16"] if "float32" in
                                                           t.accepted_dtypes else []),
                     "differentiable": t.differentiable, "optional": t.optional,
                     "description": t.description} for t in spec.tensors],
        "options": {"type": "object", "additionalProperties": False,
                    "properties": {o.name: o.json_schema() for o in spec.options}},
        "differentiable": list(spec.differentiable),
        "reductions": list(spec.reductions),
    }


def describe_all() -> list[dict[str, Any]]:
    return [describe(spec) for spec in sorted(REGISTRY.values(), key=lambda s: s.name)]
