"""lossd.torch: RemoteLoss leaves the gradients torch autograd leaves, over REST and gRPC.

The cases are the core's parity cases (tests/reference), a few per loss × float dtype ×
reduction; the reference is torch itself on the same tensors (the oracle's torch calls), with
the same weights for the loss values (``grad_output``) on both sides.
"""

from __future__ import annotations

import functools
import warnings
from collections import defaultdict

import numpy as np
import pytest

import lossd.torch as bridge
from lossd import Client, GrpcClient
from lossd.errors import InvalidArgument
from lossd.losses import ANY, REGISTRY, batch_axes, compute, prepare
from tests.reference import Case, all_cases, torch_module_for
from tests.reference.compare import assert_result

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

SEED = 1
PER_GROUP = 4  # cases per (loss, dtype, reduction), of different tensors and options first


def _width(case: Case) -> str | None:
    widths = {a.dtype.name for a in case.inputs.values() if a.dtype.kind == "f"}
    return widths.pop() if len(widths) == 1 and widths <= {"float32", "float64"} else None


def _reduction(case: Case) -> str:
    return case.options.get("reduction", REGISTRY[case.loss].option_map["reduction"].default)


@functools.cache
def _gradients(name: str) -> tuple[str, ...]:
    """The tensors lossd differentiates in this case (the registry's flags say "may": a class
    weight gets a gradient with probability targets only); whether torch agrees is
    tests/losses' business, whether the bridge passes them on is this file's."""
    case = CASES_BY_NAME[name]
    return tuple(compute(case.loss, case.inputs, case.options, grad=True).grads)


def _differentiated(case: Case) -> list[str]:
    return list(_gradients(case.name))


CASES_BY_NAME = {case.name: case for case in all_cases(SEED)}


def _selected() -> list[Case]:
    groups: dict[tuple[str, str, str], list[Case]] = defaultdict(list)
    for case in CASES_BY_NAME.values():
        width = _width(case)
        if case.error is None and case.grad and width and _differentiated(case):
            groups[(case.loss, width, _reduction(case))].append(case)
    def novelty(cases: list[Case]) -> list[Case]:
        """Each new set of differentiated tensors first, then each new set of tensors and
        options, then the rest."""
        ranked: dict[int, list[Case]] = defaultdict(list)
        seen: set = set()
        for case in cases:
            grads = tuple(_differentiated(case))
            kind = (tuple(sorted(case.inputs)), tuple(sorted(set(case.options) - {"reduction"})))
            ranked[0 if grads not in seen else 1 if kind not in seen else 2].append(case)
            seen |= {grads, kind}
        return ranked[0] + ranked[1] + ranked[2]

    return [c for key in sorted(groups) for c in novelty(groups[key])[:PER_GROUP]]


CASES = _selected()
# reduction='none' with several values (one value: every weighting is uniform, tested above)
NONE_CASES = [c for c in CASES if _reduction(c) == "none"
              and compute(c.loss, c.inputs, c.options).loss.size > 1]
# the other transport: one case per loss, dtype and reduction
GRPC_CASES = list({(c.loss, _width(c), _reduction(c)): c for c in reversed(CASES)}.values())


def _params(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.name) for c in cases]


@pytest.fixture(scope="module")
def rest(server):
    with Client(server.url) as client:
        yield client


@pytest.fixture(scope="module")
def grpc(server):
    with GrpcClient(server.grpc_target) as client:
        yield client


def _leaves(case: Case) -> dict:
    """The case's tensors; those torch differentiates require grad."""
    wanted = set(_differentiated(case))
    return {name: torch.from_numpy(np.array(a, copy=True)).requires_grad_(name in wanted)
            for name, a in case.inputs.items()}


def _backward(case: Case, out, tensors: dict, weights) -> tuple[np.ndarray, dict]:
    names = [n for n, t in tensors.items() if t.requires_grad]
    found = torch.autograd.grad(out, [tensors[n] for n in names], grad_outputs=weights(out),
                                allow_unused=True)
    grads = {n: (torch.zeros_like(tensors[n]) if g is None else g).numpy()
             for n, g in zip(names, found)}
    return out.detach().numpy(), grads


def _warned(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def _torch(case: Case, weights) -> tuple[np.ndarray, dict, list[str]]:
    tensors = _leaves(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # torch's broadcasting and KLDiv 'mean' warnings
        out = torch_module_for(case.loss).torch_loss(case.loss, tensors, dict(case.options))
    return (*_backward(case, out, tensors, weights), _warned(caught))


def _remote(case: Case, client, weights) -> tuple[np.ndarray, dict, list[str]]:
    tensors = _leaves(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the bridge warns what torch warns
        out = bridge.remote_loss(case.loss, client, **tensors, **case.options)
    return (*_backward(case, out, tensors, weights), _warned(caught))


def _check(case: Case, client, weights) -> None:
    loss, grads, warned = _remote(case, client, weights)
    expected_loss, expected_grads, expected_warnings = _torch(case, weights)
    assert_result(case, loss, grads, expected_loss, expected_grads)
    assert warned == expected_warnings, case.name


def uniform(out):
    """0.75 for every value: a scaled mean or sum, or a scaled sum of reduction='none'."""
    return torch.full_like(out, 0.75)


def per_sample(out):
    """A different weight for each sample (axis 0), the same within it."""
    rng = np.random.default_rng(out.numel())
    w = torch.from_numpy(rng.uniform(0.5, 2.0, out.shape[:1])).to(out.dtype)
    return w.reshape((-1,) + (1,) * (out.ndim - 1)).expand(out.shape)


def per_element(out):
    rng = np.random.default_rng(out.numel())
    return torch.from_numpy(rng.uniform(0.5, 2.0, out.shape)).to(out.dtype)


@pytest.mark.parametrize("case", _params(CASES))
def test_gradients_equal_torch_autograd_over_rest(case: Case, rest) -> None:
    _check(case, rest, uniform)


@pytest.mark.parametrize("case", _params(GRPC_CASES))
def test_gradients_equal_torch_autograd_over_grpc(case: Case, grpc) -> None:
    _check(case, grpc, uniform)


def _weighting(case: Case, out_shape: tuple[int, ...]):
    """How reduction='none' values may be weighted exactly for this case (the documented
    rules), or None when RemoteLoss must refuse weights that differ between samples."""
    spec = REGISTRY[case.loss]
    differentiated = _differentiated(case)
    elementwise = all(spec.tensor_map[n].dims == ((ANY,),) for n in differentiated)
    if elementwise and all(case.inputs[n].shape == out_shape for n in differentiated):
        return per_element
    axes = batch_axes(prepare(case.loss, case.inputs, case.options))
    if axes is not None and all(n in axes for n in differentiated):  # no shared class weight
        return per_sample
    return None


@pytest.mark.parametrize("case", _params(NONE_CASES))
def test_reduction_none_with_weights_per_sample_or_element(case: Case, rest) -> None:
    expected_loss, _, _ = _torch(case, uniform)
    weights = _weighting(case, expected_loss.shape)
    if weights is None:
        with pytest.raises(InvalidArgument, match=r"grad_output.*cannot be applied"):
            _remote(case, rest, per_sample)
    else:
        _check(case, rest, weights)


def test_per_pixel_weights_are_refused_and_the_reshape_is_exact(rest) -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.standard_normal((2, 4, 3, 5))).requires_grad_()
    labels = torch.from_numpy(rng.integers(0, 4, (2, 3, 5)))
    pixel_weights = torch.from_numpy(rng.uniform(0.5, 2.0, (2, 3, 5)))
    loss = bridge.remote_loss("cross_entropy", rest, logits, labels, reduction="none")
    with pytest.raises(InvalidArgument, match=r"reshape") as refused:
        (loss * pixel_weights).sum().backward()
    assert refused.value.field == "grad_output"

    flat = bridge.remote_loss("cross_entropy", rest, logits.movedim(1, -1).reshape(-1, 4),
                              labels.reshape(-1), reduction="none")
    (flat * pixel_weights.reshape(-1)).sum().backward()
    expected = logits.detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(expected, labels, reduction="none").mul(
        pixel_weights).sum().backward()
    torch.testing.assert_close(logits.grad, expected.grad, rtol=1e-6, atol=1e-10)


def test_non_differentiable_tensors_get_no_gradient(rest) -> None:
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 1, 0])
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    bridge.remote_loss("cross_entropy", rest, logits, labels, weight).backward()
    assert logits.grad is not None and labels.grad is None and weight.grad is None

    weight.requires_grad_()  # torch would differentiate a class weight; lossd does not
    with pytest.raises(InvalidArgument, match=r"no gradient for 'weight'.*detach") as refused:
        bridge.remote_loss("cross_entropy", rest, logits, labels, weight)
    assert refused.value.field == "weight"


class Spy:
    """A client that records what each call asked for."""

    def __init__(self, client) -> None:
        self.client, self.asked = client, []

    def compute(self, loss, *, grad=False, **arguments):
        self.asked.append(grad)
        return self.client.compute(loss, grad=grad, **arguments)


def test_a_gradient_is_asked_for_only_when_torch_needs_one(rest) -> None:
    spy = Spy(rest)
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.randn(4, 3)
    with torch.no_grad():
        assert not bridge.remote_loss("mse", spy, x, y).requires_grad
    assert not bridge.remote_loss("mse", spy, x.detach(), y).requires_grad
    assert spy.asked == [False, False]

    target = y.clone().requires_grad_()  # only the target needs a gradient
    bridge.remote_loss("mse", spy, x.detach(), target, reduction="sum").backward()
    assert spy.asked[-1] is True and target.grad is not None
    torch.testing.assert_close(target.grad, 2 * (target.detach() - x.detach()))


def test_result_dtypes_follow_torch(rest) -> None:
    x64 = torch.randn(6, dtype=torch.float64, requires_grad=True)
    x32 = torch.randn(6, requires_grad=True)
    assert bridge.remote_loss("l1", rest, x32, x64.detach()).dtype == torch.float64
    loss = bridge.remote_loss("l1", rest, x32, torch.zeros(6, dtype=torch.int64))
    assert loss.dtype == torch.float32
    loss.backward()
    assert x32.grad.dtype == torch.float32


def test_bfloat16_travels_as_float32_and_comes_back_bfloat16(rest) -> None:
    x = torch.randn(4, 5).to(torch.bfloat16).requires_grad_()
    y = torch.randn(4, 5).to(torch.bfloat16)
    loss = bridge.remote_loss("mse", rest, x, y)
    loss.backward()
    expected_x = x.detach().clone().requires_grad_()
    expected = torch.nn.functional.mse_loss(expected_x, y)
    expected.backward()
    assert loss.dtype == x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, expected, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(x.grad, expected_x.grad, rtol=1e-2, atol=1e-2)


def test_the_module_takes_options_and_constant_tensors(rest) -> None:
    weight = torch.tensor([1.0, 2.0, 0.5])
    criterion = bridge.RemoteLoss("cross_entropy", rest, weight=weight, label_smoothing=0.1)
    assert repr(criterion) == "RemoteLoss('cross_entropy', label_smoothing=0.1)"
    assert criterion.weight is not None and criterion.double().weight.dtype == torch.float64
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 1, 0])
    criterion(input=logits, target=labels).backward()
    expected = logits.detach().clone().requires_grad_()
    torch.nn.functional.cross_entropy(expected, labels, weight=weight.double(),
                                      label_smoothing=0.1).backward()
    torch.testing.assert_close(logits.grad, expected.grad, rtol=1e-6, atol=1e-10)

    with pytest.raises(TypeError, match="given twice"):
        criterion(logits, labels, target=labels)
    with pytest.raises(TypeError, match="at most 3 tensors"):
        bridge.remote_loss("cross_entropy", rest, logits, labels, weight, weight)
    with pytest.raises(InvalidArgument, match="unknown option"):
        bridge.RemoteLoss("cross_entropy", rest, smoothing=0.1)


def test_no_double_backward(rest) -> None:
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    loss = bridge.remote_loss("mse", rest, x, torch.zeros(3, dtype=torch.float64))
    upstream = torch.ones((), dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(loss, x, grad_outputs=upstream, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()
