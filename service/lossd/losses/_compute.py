"""From raw arrays and options to a validated :class:`Prepared` call, and from there to results.

``prepare`` does every check (generic ones from the spec, then the loss's own ``check``), so
the engine can validate a request before it is queued; ``evaluate`` and ``gradients`` then run
the pure functions on trusted data.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgument, NotFound, shown
from ._checks import WIRE_DTYPE, fail
from ._reduce import Terms, cotangent, reduce, weights_cotangent
from ._spec import BFLOAT16, REGISTRY, Kind, LossSpec, OptionSpec
from ._stats import Stats

FLOAT16, FLOAT32 = np.dtype(np.float16), np.dtype(np.float32)


@dataclass(frozen=True)
class Prepared:
    """A validated call: arrays cast for compute (to the promoted dtype, or each kept in its own
    where the spec ``keeps_dtypes``), options complete (without ``reduction``).

    ``out_dtype`` is torch's result dtype (float16 inputs are computed in float32 and the
    results cast back); ``dtypes`` and ``shapes`` are the tensors' as given, which their
    gradients keep; ``warnings`` are the texts of the warnings torch gives this call.
    """

    spec: LossSpec
    arrays: dict[str, np.ndarray]
    options: dict[str, Any]
    reduction: str
    out_dtype: np.dtype
    dtypes: dict[str, np.dtype]
    shapes: dict[str, tuple[int, ...]]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    loss: np.ndarray  # 0-d, or torch's 'none' shape
    grads: dict[str, np.ndarray]
    stats: Stats | None = None  # the call's sufficient statistics, when asked for (_aggregate)
    warnings: tuple[str, ...] = ()  # what torch warns of this call (Prepared.warnings)


def get_spec(name: str) -> LossSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise NotFound(f"unknown loss {shown(name)}; known losses: "
                       f"{', '.join(sorted(REGISTRY))}", field="loss") from None


def option_value(option: OptionSpec, value: Any) -> Any:  # noqa: ANN401 - a wire value
    """Check one option's type and bounds; returns the value in its Python type."""
    name = option.name
    if value is None:
        if option.nullable or option.default is None:
            return None
        raise fail(name, f"expected {option.type.__name__}; got null", option=True)
    if option.type is bool:
        ok = isinstance(value, (bool, np.bool_))
    elif option.type is int:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        if not ok and isinstance(value, float) and value.is_integer():
            value, ok = int(value), True
    elif option.type is float:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_))
    else:
        ok = isinstance(value, str)
    if not ok:
        raise fail(name, f"expected {option.type.__name__}; got {type(value).__name__} "
                         f"{shown(value)}", option=True)
    try:
        value = option.type(value)
    except OverflowError:  # an integer of hundreds of digits is no float
        raise fail(name, f"expected a float64 number; got {shown(value)}", option=True) from None
    if option.choices is not None and value not in option.choices:
        raise fail(name, f"expected one of {', '.join(map(repr, option.choices))}; "
                         f"got {shown(value)}", option=True)
    if option.type is float and math.isnan(value):
        raise fail(name, "expected a number; got nan", option=True)
    low, high = option.minimum, option.maximum
    if low is not None and (value < low or (option.exclusive_minimum and value == low)):
        relation = ">" if option.exclusive_minimum else ">="
        raise fail(name, f"expected a value {relation} {low:g}; got {shown(value)}", option=True)
    if high is not None and (value > high or (option.exclusive_maximum and value == high)):
        relation = "<" if option.exclusive_maximum else "<="
        raise fail(name, f"expected a value {relation} {high:g}; got {shown(value)}",
                   option=True)
    return value


def _compute_dtype(spec: LossSpec, arrays: Mapping[str, np.ndarray]) -> tuple[np.dtype, np.dtype]:
    """(compute dtype, result dtype): torch's promotion over the floating tensors."""
    tensors = spec.tensor_map
    floats = {a.dtype for name, a in arrays.items()
              if a.dtype.kind == "f" and tensors[name].kind is not Kind.INDEX}
    if not floats:
        return FLOAT32, FLOAT32
    out = floats.pop() if len(floats) == 1 else np.result_type(*floats)
    return (FLOAT32 if out == FLOAT16 else out), out


def check_options(spec: LossSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of ``spec``: the given ones checked (names, types, bounds), the rest at
    torch's defaults. Raises ``InvalidArgument`` naming the first wrong option."""
    known = spec.option_map
    opts = spec.defaults()
    for key, value in options.items():
        if key not in known:
            raise InvalidArgument(f"{str(key)[:64]}: unknown option for loss {spec.name!r}; "
                                  f"expected one of {', '.join(known)}",
                                  field=f"options.{str(key)[:64]}")
        opts[key] = option_value(known[key], value)
    return opts


def _marked(array: np.ndarray, wire_dtype: str) -> np.ndarray:
    """A view of a widened array whose dtype names its wire dtype (``dtype_name``)."""
    return array.view(np.dtype(array.dtype, metadata={WIRE_DTYPE: wire_dtype}))


def _unmarked(array: np.ndarray) -> np.ndarray:
    return array.view(np.dtype(array.dtype.str)) if array.dtype.metadata else array


def prepare(name: str, arrays: Mapping[str, np.ndarray],
            options: Mapping[str, Any] | None = None, *,
            bfloat16: Collection[str] = ()) -> Prepared:
    """Validate a call fully. Raises ``NotFound`` or ``InvalidArgument``; never mutates inputs.

    ``bfloat16`` names the tensors that came as bfloat16 (widened to float32 by the codec):
    their dtype is bfloat16 for the spec's dtype lists and the loss's dtype checks.
    """
    spec = get_spec(name)
    tensors = spec.tensor_map
    for key in arrays:
        if key not in tensors:
            raise InvalidArgument(
                f"{shown(key)}: unknown tensor for loss {name!r}; expected "
                f"{', '.join(tensors)}", field=f"inputs.{key}")
    for tensor in spec.tensors:
        if tensor.name not in arrays and not tensor.optional:
            raise fail(tensor.name, f"required tensor is missing (loss {name!r} takes "
                                    f"{', '.join(tensors)})")
    given = given_as_is = {k: np.asarray(v) for k, v in arrays.items()}
    for key, array in given.items():
        accepted = tensors[key].accepted_dtypes
        if key in bfloat16:
            if BFLOAT16 not in accepted:
                raise fail(key, f"dtype {BFLOAT16} is not accepted; expected one of "
                                f"{', '.join(accepted)}")
        elif array.dtype not in tensors[key].accepted_numpy_dtypes:
            raise fail(key, f"dtype {array.dtype.name} is not accepted; expected one of "
                            f"{', '.join(accepted)}")

    opts = check_options(spec, options or {})
    reduction = opts.pop("reduction")

    if spec.check is not None:
        checked = {k: _marked(a, BFLOAT16) if k in bfloat16 else a for k, a in given.items()}
        with np.errstate(all="ignore"):
            normalised = spec.check(checked, opts)
        if normalised is not None:
            given = {k: _unmarked(a) for k, a in normalised.items()}
    compute_dtype, out_dtype = _compute_dtype(spec, given)
    cast = {key: array.astype(np.int64 if tensors[key].kind is Kind.INDEX
                              else array.dtype if spec.keeps_dtypes else compute_dtype,
                              copy=False)
            for key, array in given.items()}
    warnings = () if spec.warn is None else spec.warn(given_as_is,
                                                      {**opts, "reduction": reduction})
    return Prepared(spec, cast, opts, reduction, out_dtype,
                    {k: a.dtype for k, a in given_as_is.items()},
                    {k: a.shape for k, a in given_as_is.items()}, warnings)


def evaluate(call: Prepared) -> Terms:
    """Run the loss on a prepared call (no reduction)."""
    with np.errstate(all="ignore"):
        return call.spec.fn(**call.arrays, **call.options)


def gradients(call: Prepared, upstream: np.ndarray,
              weights_upstream: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Vector-Jacobian product of the loss's ``values`` with ``upstream`` (shape of values),
    plus ``weights_upstream`` (see ``weights_cotangent``) for the spec's ``weights_tensor``."""
    if call.spec.grad is None:
        raise InvalidArgument(f"loss {call.spec.name!r} has no gradient", field="grad")
    with np.errstate(all="ignore"):
        grads = call.spec.grad(upstream, **call.arrays, **call.options)
        name = call.spec.weights_tensor
        if weights_upstream is not None and name in grads:
            grads[name] = grads[name] + weights_upstream
    # torch differentiates floating tensors only (an int64 target of MSE gets no gradient)
    return {k: v for k, v in grads.items() if k in call.dtypes and call.dtypes[k].kind == "f"}


def backward(call: Prepared, parts: Sequence[tuple[Terms, str]]) -> dict[str, np.ndarray]:
    """Gradients of each part's reduced loss, for a call whose terms are split into ``parts``
    along axis 0, each ``(terms, reduction)`` (one part per request of a batch)."""
    upstreams = [cotangent(terms, reduction) for terms, reduction in parts]
    weights = [w for terms, reduction in parts
               if (w := weights_cotangent(terms, reduction)) is not None]  # all or none
    return gradients(call, upstreams[0] if len(parts) == 1 else np.concatenate(upstreams),
                     None if not weights else
                     weights[0] if len(parts) == 1 else np.concatenate(weights))


def compute(name: str, arrays: Mapping[str, np.ndarray],
            options: Mapping[str, Any] | None = None, *, grad: bool = False,
            bfloat16: Collection[str] = ()) -> Result:
    """Validate, compute, reduce and (on request) differentiate one loss call.

    Example:
        >>> compute("mse", {"input": np.array([1.0, 2.0]), "target": np.array([0.0, 0.0])}).loss
        array(2.5)
    """
    call = prepare(name, arrays, options, bfloat16=bfloat16)
    terms = evaluate(call)
    loss = reduce(terms, call.reduction, empty_mean=call.spec.empty_mean)
    grads = backward(call, [(terms, call.reduction)]) if grad else {}
    return finish(call, loss, grads)


def finish(call: Prepared, loss: np.ndarray, grads: dict[str, np.ndarray]) -> Result:
    """Cast results to torch's dtypes: the loss to the result dtype, each grad to its tensor's."""
    cast_grads = {key: np.asarray(g, dtype=call.dtypes[key]).reshape(call.shapes[key])
                  for key, g in grads.items()}
    return Result(np.asarray(loss, dtype=call.out_dtype), cast_grads, warnings=call.warnings)
