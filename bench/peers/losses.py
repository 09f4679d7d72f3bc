"""The two losses every peer serves, as a peer's author would write them: plain NumPy, no
validation, the mean over the batch in the inputs' dtype.

    cross_entropy(input (N, C) float, target (N,) int) -> ()   mean(logsumexp(x_n) - x_n[t_n])
    mse(input (...) float, target (...) float) -> ()           mean((x - y)^2)

Imported by the peer servers, which run in their own venvs (NumPy only, no lossd).
"""

from __future__ import annotations

import numpy as np


def cross_entropy(input: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean softmax cross-entropy of class indices; the row maximum is taken out first so that
    ``exp`` cannot overflow."""
    top = input.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(input - top).sum(axis=1)) + top[:, 0]
    return np.mean(log_sum - input[np.arange(len(target)), target])


def mse(input: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean squared error."""
    return np.mean(np.square(input - target))


LOSSES = {"cross_entropy": cross_entropy, "mse": mse}
"""Model name (lossd's loss name, so one request serves lossd and every peer) -> function of
the inputs ``input`` and ``target``."""
