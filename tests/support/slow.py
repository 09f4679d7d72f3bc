"""A request that keeps the compute worker busy: CTC loops over time, so a long sequence with a
tiny alphabet is slow to compute but small to send."""

from __future__ import annotations

import base64

import numpy as np


def slow_ctc_body(steps: int = 150_000) -> dict:
    """About a second of compute for 1.2 MB of float32."""
    log_probs = np.log(np.full((steps, 1, 2), 0.5, dtype=np.float32))

    def b64(a: np.ndarray) -> dict:
        return {"dtype": a.dtype.name, "shape": list(a.shape),
                "b64": base64.b64encode(a.tobytes()).decode()}
    return {"inputs": {"log_probs": b64(log_probs), "targets": [[1, 1, 1]],
                       "input_lengths": [steps], "target_lengths": [3]}}


SMALL_MSE = {"inputs": {"input": [1.0, 2.0], "target": [0.0, 0.0]}}
