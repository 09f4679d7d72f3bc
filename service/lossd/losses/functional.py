"""Every registered loss as a function named by its wire name, like ``torch.nn.functional``.

``mse(input, target, reduction="sum")`` validates, computes and reduces in-process, exactly as
the service does, and returns the loss as a NumPy array (0-d unless ``reduction="none"``).
Tensors are positional in torch's order or keywords by name; options are keywords with torch's
defaults. For gradients too, call :func:`lossd.losses.compute` with ``grad=True``.

Example:
    >>> import numpy as np
    >>> from lossd.losses import cross_entropy, mse
    >>> mse(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    array(2.5)
    >>> cross_entropy(np.array([[2.0, 0.5, -1.0]]), np.array([0]), reduction="sum").round(4)
    np.float64(0.2413)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ._compute import compute
from ._spec import REGISTRY, LossSpec

LossFunction = Callable[..., np.ndarray]


def loss_function(spec: LossSpec) -> LossFunction:
    """The function of one loss: ``f(*tensors, **tensors_and_options) -> loss``."""
    names = [t.name for t in spec.tensors]

    def loss(*arrays: npt.ArrayLike, **keywords: object) -> np.ndarray:
        if len(arrays) > len(names):
            raise TypeError(f"{spec.name}() takes at most {len(names)} tensors "
                            f"({', '.join(names)}); got {len(arrays)}")
        tensors: dict[str, Any] = dict(zip(names, arrays))
        for name in [k for k in keywords if k in spec.tensor_map]:
            if name in tensors:
                raise TypeError(f"{spec.name}() got tensor {name!r} twice")
            tensors[name] = keywords.pop(name)
        return compute(spec.name, {k: np.asarray(v) for k, v in tensors.items()},
                       keywords).loss

    loss.__name__ = loss.__qualname__ = spec.name
    loss.__doc__ = (f"{spec.summary}\n\nTensors: {', '.join(names)}; options: "
                    f"{', '.join(f'{o.name}={o.default!r}' for o in spec.options)}. "
                    f"PyTorch: {spec.torch}.")
    return loss


FUNCTIONS: dict[str, LossFunction] = {name: loss_function(spec)
                                      for name, spec in sorted(REGISTRY.items())}
