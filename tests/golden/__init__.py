"""Golden fixtures: torch's answers to ``cases(0)`` of each family, committed as JSON.

Arrays are stored as ``{"dtype", "shape", "b64"}`` (little-endian raw bytes), so nan, inf and
float32 values survive exactly. Regenerate with ``python -m tests.golden.generate`` (needs torch).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent


def encode(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "b64": base64.b64encode(raw).decode()}


def decode(obj: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(obj["dtype"]).newbyteorder("<")
    return np.frombuffer(base64.b64decode(obj["b64"]), dtype=dtype).reshape(obj["shape"]).astype(
        dtype.newbyteorder("="))


def path(family: str) -> Path:
    return HERE / f"{family}.json"


def load(family: str) -> list[dict[str, Any]]:
    p = path(family)
    return json.loads(p.read_text()) if p.exists() else []


def gradient_names() -> dict[str, frozenset[str]]:
    """Case name -> the tensors lossd must differentiate: those torch differentiates (the
    goldens' gradients), or for the calls whose backward torch refuses as a whole, what the
    promoted call gives (``PROMOTED_BACKWARD``)."""
    from tests.reference import FAMILIES, PROMOTED_BACKWARD

    names = {row["id"]: frozenset(row.get("expected_grads", {}))
             for family in FAMILIES for row in load(family)}
    return {**names, **PROMOTED_BACKWARD}
