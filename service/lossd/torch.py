"""Train through lossd: a torch loss whose value and gradient come from a lossd server.

``RemoteLoss`` is an ``nn.Module`` (``remote_loss`` its functional form) that sends its tensors to
lossd and hands torch's autograd the gradient lossd returns, so ::

    criterion = RemoteLoss("cross_entropy", Client("http://localhost:8000"), label_smoothing=0.1)
    loss = criterion(logits, labels)
    loss.backward()

leaves the ``.grad`` that ``F.cross_entropy(logits, labels, label_smoothing=0.1).backward()``
leaves. Tensors go positionally in the loss's registry order (``GET /v1/losses``: ``input,
target, weight`` for most) or by name; other keywords are options (torch's keyword arguments).
Needs the ``lossd[torch]`` extra.

How: a ``torch.autograd.Function``. Forward sends the tensors (detached, on the CPU, as NumPy)
with ``grad=True`` only when a tensor lossd differentiates requires grad, and keeps the
gradients it returns for those tensors only; backward gives torch ``grad_output * gradient``.
The loss comes back in torch's result dtype on the first tensor's device, each gradient in its
tensor's dtype and device. NumPy has no bfloat16: bfloat16 tensors travel as float32 (exact
widening) and the answers are rounded back to bfloat16 (the loss when every floating tensor was
bfloat16, as torch does), which may differ from torch's own bfloat16 arithmetic by its rounding.

``reduction='none'``: lossd's gradient is that of the *sum* of the loss values, and backward
gets one weight per value (``grad_output``). Exactly representable, hence supported:

* all weights equal (``loss.sum()``, ``loss.mean()``, a 0-d loss): weight × gradient;
* an elementwise loss (its differentiable tensors take any shape: mse, l1, bce, kl_div, ...)
  and a tensor of the loss's shape: weights × gradient, element by element;
* weights constant within each sample: samples are independent along the batch axes the
  registry declares (what lets the server batch requests exactly, ``lossd.losses.batch_axes``),
  so each sample's slice of the gradient is scaled by its weight.

Anything else — weights that vary inside a sample (per-pixel weights on a K-dimensional
cross-entropy, per-class weights on dice), or a broadcast tensor shared by several samples —
raises :class:`lossd.errors.InvalidArgument` in backward instead of returning a wrong gradient.
Reshaping so that each loss value is its own sample makes it exact (cross-entropy:
``input.movedim(1, -1).reshape(-1, C)`` and ``target.reshape(-1)``).

lossd differentiates the tensors the registry marks differentiable; a tensor that requires grad
but gets no gradient from lossd (±1 labels; a class weight where lossd, like torch, has none)
is refused rather than silently left without one: detach it. Double backward is not supported
(``once_differentiable``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import numpy as np

from .client import LossResult
from .errors import InvalidArgument
from .losses import ANY, LossSpec, batch_axes, check_options, get_spec, prepare


class Computes(Protocol):
    """What the bridge needs of a client: :class:`lossd.Client` and :class:`lossd.GrpcClient`."""

    def compute(self, loss: str, *, grad: bool = False, **arguments: object) -> LossResult:
        """One loss call (see :meth:`lossd.Client.compute`)."""
        ...


def name_arguments(spec: LossSpec, positional: tuple[object, ...], named: Mapping[str, object]
                   ) -> tuple[dict[str, object], dict[str, Any]]:
    """(tensors by name, options): positional values take the registry's tensor names in
    order; keywords naming a tensor are tensors, the rest options. ``None`` tensors are left
    out (torch's default for optional tensors)."""
    names = [t.name for t in spec.tensors]
    if len(positional) > len(names):
        raise TypeError(f"{spec.name} takes at most {len(names)} tensors ({', '.join(names)}); "
                        f"got {len(positional)}")
    tensors = dict(zip(names, positional))
    options: dict[str, Any] = {}
    for key, value in named.items():
        if key in spec.tensor_map:
            if key in tensors:
                raise TypeError(f"{spec.name}: tensor {key!r} given twice (by position and name)")
            tensors[key] = value
        else:
            options[key] = value
    return {k: v for k, v in tensors.items() if v is not None}, options


def _elementwise(spec: LossSpec) -> bool:
    """Every differentiable tensor takes any shape: the loss is computed element by element
    (mse, bce, kl_div, ...; a broadcast ``pos_weight`` aside)."""
    return all(t.dims == ((ANY,),) for t in spec.tensors if t.differentiable)


if not (TYPE_CHECKING or find_spec("torch")):
    # `pip install lossd` without the [torch] extra: the module still imports (the package's
    # doctests import every module), and using it says what to install.
    def __getattr__(name: str) -> NoReturn:
        # other names are what the import system or pytest look for
        if name not in {"RemoteLoss", "remote_loss", "to_numpy", "to_tensor"}:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        raise ModuleNotFoundError(f"lossd.torch.{name} needs torch: pip install 'lossd[torch]'",
                                  name="torch")
else:
    # Where the extra is missing (`make test`), mypy sees torch as Any: the `unused-ignore`
    # comments below silence what it reports only then.
    import torch  # type: ignore[import-not-found,unused-ignore]
    from torch import Tensor, nn  # type: ignore[import-not-found,unused-ignore]
    from torch.autograd.function import (  # type: ignore[import-not-found,unused-ignore]
        once_differentiable,
    )

    @dataclass(frozen=True)
    class _Call:
        """One remote call as the autograd function sees it (the tensors travel beside it)."""

        spec: LossSpec
        client: Computes
        names: tuple[str, ...]  # of the tensors passed to apply, in order
        options: dict[str, Any]
        wanted: frozenset[str]  # the tensors whose gradient torch needs

        @property
        def reduction(self) -> object:
            return self.options.get("reduction", self.spec.option_map["reduction"].default)

    def to_numpy(tensor: Tensor) -> np.ndarray:
        """A tensor as NumPy: detached, on the CPU (no copy when it already is), bfloat16
        widened to float32 (exact)."""
        tensor = tensor.detach()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        array: np.ndarray = tensor.cpu().resolve_conj().resolve_neg().numpy()
        return array

    def to_tensor(array: np.ndarray, *, dtype: torch.dtype | None, device: torch.device
                  ) -> Tensor:
        """An answer as a tensor on ``device`` (in ``dtype`` when given)."""
        array = np.asarray(array)
        if not array.flags.writeable:  # torch.from_numpy warns on read-only memory
            array = array.copy()
        return torch.from_numpy(array).to(device=device, dtype=dtype)

    class _RemoteFunction(torch.autograd.Function):  # type: ignore[misc,unused-ignore]
        """Forward on the server; backward from the gradient the server sent with it."""

        @staticmethod
        def forward(ctx: Any, call: _Call, *tensors: Tensor) -> Tensor:  # noqa: ANN401
            arrays = {name: to_numpy(t) for name, t in zip(call.names, tensors)}
            result = call.client.compute(call.spec.name, grad=bool(call.wanted), **arrays,
                                         **call.options)
            for text in result.warnings:  # what torch itself warns of this call
                warnings.warn(text, UserWarning, stacklevel=2)
            floats = [t.dtype for name, t in zip(call.names, tensors)
                      if t.is_floating_point() and call.spec.tensor_map[name].sets_dtype]
            bfloat16 = bool(floats) and all(d == torch.bfloat16 for d in floats)
            grads: dict[str, Tensor] = {}
            for name, t in zip(call.names, tensors):
                if name not in call.wanted:
                    continue
                if name not in result.grads:  # e.g. a class weight with class-index targets
                    raise InvalidArgument(f"{name}: lossd gives {call.spec.name} no gradient "
                                          f"for {name!r} in this call; detach it", field=name)
                grads[name] = to_tensor(result.grads[name], dtype=t.dtype, device=t.device)
            ctx.call, ctx.grads = call, grads
            # what backward needs to place reduction='none' weights (NumPy views on the CPU)
            ctx.arrays = arrays if call.reduction == "none" and grads else None
            return to_tensor(result.loss, dtype=torch.bfloat16 if bfloat16 else None,
                             device=tensors[0].device)

        @staticmethod
        @once_differentiable  # type: ignore[untyped-decorator,unused-ignore]
        def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN401
            call: _Call = ctx.call
            grads: dict[str, Tensor] = ctx.grads
            out: list[Tensor | None] = [None]  # for `call`
            for name in call.names:
                g = grads.get(name)
                if g is None:
                    out.append(None)
                    continue
                weight = (grad_output if grad_output.ndim == 0
                          else _none_weights(call, ctx.arrays, name, grad_output, g.shape))
                out.append((weight.to(g.device) * g).to(g.dtype))
            return tuple(out)

    def _none_weights(call: _Call, arrays: dict[str, np.ndarray], name: str,
                      grad_output: Tensor, shape: torch.Size) -> Tensor:
        """``grad_output`` of a ``reduction='none'`` loss, shaped to multiply the gradient of
        tensor ``name`` (of the sum of the values): see the module docstring for when that is
        exact; anything else is refused."""
        if grad_output.numel() == 0:
            return grad_output.new_zeros(())
        flat = grad_output.reshape(-1)
        if bool((flat == flat[0]).all()):
            return flat[0]
        if _elementwise(call.spec) and tuple(shape) == tuple(grad_output.shape):
            return grad_output
        samples = grad_output.reshape(grad_output.shape[0], -1)
        if bool((samples == samples[:, :1]).all()):
            axes = batch_axes(prepare(call.spec.name, arrays, call.options))
            axis = None if axes is None else axes.get(name)
            if axis is not None and len(shape) > axis and shape[axis] == samples.shape[0]:
                view = [1] * len(shape)
                view[axis] = -1
                return samples[:, 0].reshape(view)
        raise InvalidArgument(
            f"{call.spec.name}(reduction='none'): the weights backward got for the loss values "
            f"(grad_output, shape {tuple(grad_output.shape)}) cannot be applied to {name!r} "
            f"{tuple(shape)} exactly: lossd returns the gradient of the sum of the values, which "
            "takes one weight per sample (constant within it), one per element for elementwise "
            "losses, or one for all. Reduce in the loss (reduction='mean' or 'sum'), weight "
            "whole samples, or reshape so that each value is a sample (cross_entropy: "
            "input.movedim(1, -1).reshape(-1, C), target.reshape(-1))", field="grad_output")

    def remote_loss(loss: str, client: Computes, *tensors: object, **arguments: object
                    ) -> Tensor:
        """``loss`` computed by lossd through ``client``, differentiable by torch autograd.

        Args:
            loss: the loss's wire name (``"cross_entropy"``).
            client: a :class:`lossd.Client` or :class:`lossd.GrpcClient`.
            *tensors: tensors in the registry's order (``input, target, ...``); numbers,
                NumPy arrays and tuples are made tensors.
            **arguments: tensors by name, and options (torch's keyword arguments).

        Returns:
            The loss, in torch's dtype and shape, on the first tensor's device.

        Example:
            >>> loss = remote_loss("mse", client, pred, target, reduction="sum")  # doctest: +SKIP
            >>> loss.backward()  # doctest: +SKIP
        """
        spec = get_spec(loss)
        named, options = name_arguments(spec, tensors, arguments)
        values = {k: v if isinstance(v, Tensor) else torch.as_tensor(v) for k, v in named.items()}
        tracking = torch.is_grad_enabled()
        wanted = frozenset(k for k, t in values.items() if tracking and t.requires_grad)
        refused = sorted(k for k in wanted if not spec.tensor_map[k].differentiable)
        if refused:
            raise InvalidArgument(
                f"{refused[0]}: lossd gives {loss} no gradient for {refused[0]!r} (the registry's "
                f"differentiable tensors are {', '.join(spec.differentiable)}); detach it",
                field=refused[0])
        call = _Call(spec, client, tuple(values), options, wanted)
        # torch's Function.apply is not annotated
        result: Tensor = _RemoteFunction.apply(  # type: ignore[no-untyped-call,unused-ignore]
            call, *values.values())
        return result

    class RemoteLoss(nn.Module):  # type: ignore[misc,unused-ignore]
        """A loss computed by lossd, as an ``nn.Module`` (see the module docstring).

        Args:
            loss: the loss's wire name (``"cross_entropy"``).
            client: a :class:`lossd.Client` or :class:`lossd.GrpcClient`.
            **options: options (torch's keyword arguments), checked now; tensors given here
                (a class ``weight``) are buffers, moved by ``.to()`` like torch's own.

        Example:
            >>> criterion = RemoteLoss("cross_entropy", client, weight=w)  # doctest: +SKIP
            >>> criterion(logits, labels).backward()  # doctest: +SKIP
        """

        def __init__(self, loss: str, client: Computes, **options: object) -> None:
            super().__init__()
            self.spec = get_spec(loss)
            self.client = client
            constants, self.options = name_arguments(self.spec, (), options)
            check_options(self.spec, self.options)
            for name, value in constants.items():
                self.register_buffer(name, value if isinstance(value, Tensor)
                                     else torch.as_tensor(value))

        def forward(self, *tensors: object, **arguments: object) -> Tensor:
            """The loss of ``tensors`` (positional in the registry's order, or by name)."""
            merged = {**dict(self.named_buffers(recurse=False)), **self.options, **arguments}
            return remote_loss(self.spec.name, self.client, *tensors, **merged)

        def extra_repr(self) -> str:
            """``'cross_entropy', label_smoothing=0.1``."""
            return ", ".join([repr(self.spec.name)]
                             + [f"{k}={v!r}" for k, v in self.options.items()])
