"""Run a :class:`Case` through torch: the loss and autograd gradients of every floating tensor
torch differentiates (for ``reduction='none'``, the gradient of the sum).

Torch is asked, not lossd's registry: every floating tensor, input or tensor option, is made a
leaf that requires grad. A tensor torch refuses (``binary_cross_entropy`` is "not
differentiable with respect to argument 'weight'"), or that gets no ``.grad`` (labels only
compared, as hinge_embedding's), is not differentiated; the others are.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import Case, torch_module_for


def _backward(case: Case, wrt: frozenset[str]) -> tuple[Any, dict[str, Any]]:
    """(torch's loss, {name: grad} of the ``wrt`` tensors that got one); raises what torch
    raises, in the forward or the backward."""
    import torch

    tensors = {name: torch.from_numpy(np.array(array, copy=True)).requires_grad_(name in wrt)
               for name, array in case.inputs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broadcasting and KLDiv 'mean' warnings are torch's
        out = torch_module_for(case.loss).torch_loss(case.loss, tensors, dict(case.options))
        leaves = sorted(wrt)
        if not leaves or not out.requires_grad:
            return out, {}
        found = torch.autograd.grad(out.sum(), [tensors[n] for n in leaves], allow_unused=True)
    return out, {name: g for name, g in zip(leaves, found) if g is not None}


def differentiated(case: Case) -> dict[str, str]:
    """Each floating tensor of ``case`` -> ``"grad"`` when torch differentiates it, else why not
    (torch's error, or ``"no grad"``). Each tensor is asked on its own only when asking for all
    of them at once does not give every one a gradient."""
    floats = frozenset(n for n, a in case.inputs.items() if a.dtype.kind == "f")
    try:
        _, grads = _backward(case, floats)
    except Exception:  # noqa: BLE001 - some tensor is refused: ask one at a time below
        grads = {}
    if set(grads) == floats:
        return dict.fromkeys(floats, "grad")
    answer = {}
    for name in floats:
        try:
            _, alone = _backward(case, frozenset({name}))
        except Exception as exc:  # noqa: BLE001 - torch refuses this tensor
            answer[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        else:
            answer[name] = "grad" if name in alone else "no grad"
    return answer


def run_torch(case: Case) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(loss, grads) as torch computes them, gradients of exactly the tensors torch
    differentiates; raises whatever torch raises for the loss itself."""
    wrt = frozenset(n for n, how in differentiated(case).items() if how == "grad")
    out, grads = _backward(case, wrt)
    return (out.detach().numpy(),
            {name: g.detach().numpy() for name, g in grads.items()})
