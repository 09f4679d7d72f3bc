"""Run a :class:`Case` through torch: the loss and autograd gradients of every float tensor
the spec declares differentiable (for ``reduction='none'``, the gradient of the sum)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from lossd.losses import REGISTRY

from . import Case, torch_module_for


def run_torch(case: Case) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(loss, grads) as torch computes them; raises whatever torch raises."""
    import torch

    spec = REGISTRY[case.loss]
    tensors: dict[str, Any] = {}
    for name, array in case.inputs.items():
        t = torch.from_numpy(np.array(array, copy=True))
        wants_grad = (case.grad and spec.tensor_map[name].differentiable
                      and t.is_floating_point())
        tensors[name] = t.requires_grad_(wants_grad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broadcasting and KLDiv 'mean' warnings are torch's
        out = torch_module_for(case.loss).torch_loss(case.loss, tensors, dict(case.options))
    grads: dict[str, np.ndarray] = {}
    leaves = [(n, t) for n, t in tensors.items() if t.requires_grad]
    if leaves and out.requires_grad:
        found = torch.autograd.grad(out.sum(), [t for _, t in leaves], allow_unused=True)
        for (name, t), g in zip(leaves, found):
            grads[name] = (torch.zeros_like(t) if g is None else g).detach().numpy()
    return out.detach().numpy(), grads
