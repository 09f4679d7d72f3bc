"""Every transport and encoding gives torch's numbers for every dtype (real server, loopback).

One drawn call (mse, or cross_entropy with int64 class indices; float16, bfloat16, float32 or
float64; any reduction) travels every way lossd reads a tensor:

    REST native   {dtype, shape, data} (JSON numbers), {dtype, shape, b64}, nested lists
                  (float64 only: a list declares no dtype)
    REST V2       JSON ``data``, binary tensor data
    gRPC native   packed ``double_data``/``int64_data``, ``raw``
    gRPC V2       typed ``contents`` (FP32, FP64, INT64: FP16 and BF16 have none), raw

Values sent as numbers are the drawn float64 values, not yet in the dtype: the server rounds
them as ``torch.tensor(values, dtype=...)`` does (through float32 for float16 and bfloat16,
nearest-even). Raw encodings carry the same values already rounded. Every answer must be
bit-identical to the naive reference: inputs rounded with NumPy casts and ml_dtypes (not the
codec), the core's answer, rounded back to the dtype the same way; the loss and each gradient
in the declared dtype. A second test (marked ``torch``: skipped without torch, run by
``make parity``) sends the same draws through torch and holds the reference to it within the
dtype's tolerance.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import ml_dtypes
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lossd._proto.inference import grpc_predict_v2_pb2 as v2pb
from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd.losses import compute
from tests.reference import ATOL, GRAD_RTOL, RTOL

try:
    import torch
except ImportError:  # the naive reference still runs
    torch = None

EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "25"))
FLOATS = ("float16", "bfloat16", "float32", "float64")
NUMPY = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16),
         "float32": np.dtype(np.float32), "float64": np.dtype(np.float64),
         "int64": np.dtype(np.int64)}
V2_TYPES = {"float16": "FP16", "bfloat16": "BF16", "float32": "FP32", "float64": "FP64",
            "int64": "INT64"}
V2_NAMES = {v: k for k, v in V2_TYPES.items()}
# torch computes half precision with its own rounding of intermediates; lossd in float32, then
# rounds once: a few ulps of the dtype apart at most (bfloat16 has 8 significant bits)
TORCH_RTOL = {**RTOL, "bfloat16": 2 ** -6}
TORCH_GRAD_RTOL = {**GRAD_RTOL, "bfloat16": 2 ** -6}
TORCH_ATOL = {**ATOL, "bfloat16": 2 ** -12}


@dataclass(frozen=True)
class Tensor:
    """One input: the values a client writes as numbers, and its declared dtype."""

    values: np.ndarray  # float64 (or int64), not yet rounded to ``dtype``
    dtype: str

    @property
    def rounded(self) -> np.ndarray:
        """The values in the dtype, rounded as torch.tensor(values, dtype=...) rounds them:
        float64 -> float32 -> float16/bfloat16, each cast nearest-even (NumPy, ml_dtypes)."""
        if self.dtype in ("float16", "bfloat16"):
            return self.values.astype(np.float32).astype(NUMPY[self.dtype])
        return self.values.astype(NUMPY[self.dtype])

    @property
    def raw(self) -> bytes:
        return self.rounded.astype(self.rounded.dtype.newbyteorder("<")).tobytes()


@dataclass(frozen=True)
class Draw:
    loss: str
    inputs: dict[str, Tensor]
    reduction: str

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        return (f"Draw({self.loss!r}, reduction={self.reduction!r}, "
                f"{ {k: (t.dtype, t.values.tolist()) for k, t in self.inputs.items()} })")


Answer = dict[str, np.ndarray]  # "loss" and "grad_<tensor>", in their dtypes


# --- the drawn calls -------------------------------------------------------------------------

# not in the dtype (rounded on entry); small enough that float16 sums stay finite (overflow is
# the core's business: tests/losses)
VALUES = st.floats(-20, 20, allow_nan=False, width=64)


@st.composite
def draws(draw: st.DrawFn) -> Draw:
    dtype = draw(st.sampled_from(FLOATS))
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))

    def floats(shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return np.array(draw(st.lists(VALUES, min_size=count, max_size=count)),
                        dtype=np.float64).reshape(shape)

    if draw(st.booleans()):
        return Draw("mse", {"input": Tensor(floats((rows, cols)), dtype),
                            "target": Tensor(floats((rows, cols)), dtype)}, reduction)
    target = draw(st.lists(st.integers(0, cols - 1), min_size=rows, max_size=rows))
    return Draw("cross_entropy", {"input": Tensor(floats((rows, cols)) / 30, dtype),
                                  "target": Tensor(np.array(target, np.int64), "int64")},
                reduction)


# --- the references ----------------------------------------------------------------------------

def naive(call: Draw) -> Answer:
    """The core on the inputs rounded by NumPy and ml_dtypes; outputs rounded the same way."""
    arrays = {name: (t.rounded.astype(np.float32) if t.dtype == "bfloat16" else t.rounded)
              for name, t in call.inputs.items()}
    result = compute(call.loss, arrays, {"reduction": call.reduction}, grad=True)
    dtype = call.inputs["input"].dtype
    answer = {"loss": result.loss.astype(NUMPY[dtype])}
    for name, g in result.grads.items():
        answer[f"grad_{name}"] = g.astype(NUMPY[call.inputs[name].dtype])
    return answer


def torch_answer(call: Draw) -> Answer:
    """torch on ``torch.tensor(values, dtype)``: the loss and the leaves' gradients."""
    tensors = {name: torch.tensor(t.values.tolist(), dtype=getattr(torch, t.dtype),
                                  requires_grad=t.dtype != "int64")
               for name, t in call.inputs.items()}
    fn = {"mse": torch.nn.functional.mse_loss,
          "cross_entropy": torch.nn.functional.cross_entropy}[call.loss]
    loss = fn(tensors["input"], tensors["target"], reduction=call.reduction)
    leaves = [name for name, t in tensors.items() if t.requires_grad]
    grads = torch.autograd.grad(loss.sum(), [tensors[n] for n in leaves])
    answer = {"loss": _numpy(loss)}
    answer.update({f"grad_{n}": _numpy(g) for n, g in zip(leaves, grads)})
    return answer


def _numpy(t: Any) -> np.ndarray:
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy()


# --- the transports ----------------------------------------------------------------------------

def _from_wire(dtype: str, shape: list[int], *, data: list | None = None,
               raw: bytes | None = None) -> np.ndarray:
    if raw is not None:
        return np.frombuffer(raw, NUMPY[dtype].newbyteorder("<")).reshape(shape)
    numbers = [float(x) if isinstance(x, str) else x for x in data or []]  # "NaN", "Infinity"
    return _exact(np.array(numbers, dtype=np.float64), dtype).reshape(shape)


def _exact(numbers: np.ndarray, dtype: str) -> np.ndarray:
    """Numbers answered for ``dtype`` as an array of it. A JSON number is the shortest text of
    a value of its dtype (NumPy's float16, float32, float64); bfloat16 has no such dtype and
    travels as float32 text, so that float32 must be a bfloat16 value (an unrounded float32
    answer for bfloat16 inputs is not)."""
    if dtype == "bfloat16":
        carrier = numbers.astype(np.float32)
        np.testing.assert_array_equal(carrier.astype(NUMPY[dtype]).astype(np.float32), carrier,
                                      err_msg="float32 numbers that are not bfloat16 values")
    return numbers.astype(NUMPY[dtype])


def _rest_tensor(obj: Any, dtype: str) -> np.ndarray:
    if not isinstance(obj, dict):  # a number (0-d loss) or nested lists
        return _exact(np.asarray(_json_numbers(obj), dtype=np.float64), dtype)
    if "b64" in obj:
        return _from_wire(obj["dtype"], obj["shape"], raw=base64.b64decode(obj["b64"]))
    return _from_wire(obj["dtype"], obj["shape"], data=obj["data"])


def _json_numbers(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_json_numbers(x) for x in obj]
    return float(obj) if isinstance(obj, str) else obj


def _numbers(t: Tensor) -> list:
    return t.values.ravel().tolist()


def rest_native(encoding: str) -> Callable[[Any, Draw], Answer]:
    def send(server: Any, call: Draw) -> Answer:
        def tensor(t: Tensor) -> Any:
            if encoding == "list":
                return t.values.tolist()
            head = {"dtype": t.dtype, "shape": list(t.values.shape)}
            if encoding == "b64":
                return {**head, "b64": base64.b64encode(t.raw).decode()}
            return {**head, "data": _numbers(t)}
        body = {"inputs": {n: tensor(t) for n, t in call.inputs.items()},
                "options": {"reduction": call.reduction}, "grad": True}
        response = httpx.post(f"{server.url}/v1/losses/{call.loss}", content=orjson.dumps(body),
                              headers={"content-type": "application/json"}, timeout=30)
        assert response.status_code == 200, response.text
        answer = response.json()
        out = {"loss": _rest_tensor(answer["loss"], answer["dtype"])}
        for name, g in answer["grads"].items():
            out[f"grad_{name}"] = _rest_tensor(g, call.inputs[name].dtype)
        return out
    return send


def rest_v2(binary: bool) -> Callable[[Any, Draw], Answer]:
    def send(server: Any, call: Draw) -> Answer:
        inputs, blobs = [], []
        for name, t in call.inputs.items():
            item: dict[str, Any] = {"name": name, "datatype": V2_TYPES[t.dtype],
                                    "shape": list(t.values.shape)}
            if binary:
                item["parameters"] = {"binary_data_size": len(t.raw)}
                blobs.append(t.raw)
            else:
                item["data"] = t.values.tolist()  # nested lists, as V2 clients may send
            inputs.append(item)
        header = orjson.dumps({"inputs": inputs, "parameters": {
            "reduction": call.reduction, "grad": True, "binary_data_output": binary}})
        headers = {"content-type": "application/octet-stream",
                   "Inference-Header-Content-Length": str(len(header))} if binary else {
            "content-type": "application/json"}
        response = httpx.post(f"{server.url}/v2/models/{call.loss}/infer",
                              content=b"".join([header, *blobs]), headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        length = int(response.headers.get("Inference-Header-Content-Length",
                                          len(response.content)))
        answer, rest = orjson.loads(response.content[:length]), response.content[length:]
        out = {}
        for item in answer["outputs"]:
            dtype = V2_NAMES[item["datatype"]]
            if "data" in item:
                out[item["name"]] = _from_wire(dtype, item["shape"], data=item["data"])
            else:
                size = item["parameters"]["binary_data_size"]
                out[item["name"]] = _from_wire(dtype, item["shape"], raw=rest[:size])
                rest = rest[size:]
        return out
    return send


def grpc_native(raw: bool) -> Callable[[Any, Draw], Answer]:
    def send(server: Any, call: Draw) -> Answer:
        def tensor(t: Tensor) -> pb.Tensor:
            message = pb.Tensor(dtype=pb.DType.Value(t.dtype.upper()), shape=t.values.shape)
            if raw:
                message.raw = t.raw
            elif t.dtype == "int64":
                message.int64_data.extend(_numbers(t))
            else:
                message.double_data.extend(_numbers(t))
            return message
        request = pb.ComputeRequest(
            loss=call.loss, grad=True, inputs={n: tensor(t) for n, t in call.inputs.items()},
            options={"reduction": pb.OptionValue(text=call.reduction)})
        response = pb.ComputeResponse.FromString(
            _unary(server, "/lossd.v1.LossService/Compute", request))
        out = {"loss": _grpc_array(response.loss)}
        out.update({f"grad_{n}": _grpc_array(g) for n, g in response.grads.items()})
        return out
    return send


def _grpc_array(t: pb.Tensor) -> np.ndarray:
    dtype = pb.DType.Name(t.dtype).lower()
    if t.raw:
        return _from_wire(dtype, list(t.shape), raw=t.raw)
    return _from_wire(dtype, list(t.shape), data=list(t.double_data or t.int64_data))


CONTENTS = {"float32": "fp32_contents", "float64": "fp64_contents", "int64": "int64_contents"}


def grpc_v2(raw: bool) -> Callable[[Any, Draw], Answer]:
    def send(server: Any, call: Draw) -> Answer:
        request = v2pb.ModelInferRequest(model_name=call.loss)
        request.parameters["reduction"].string_param = call.reduction
        request.parameters["grad"].bool_param = True
        for name, t in call.inputs.items():
            tensor = request.inputs.add(name=name, datatype=V2_TYPES[t.dtype],
                                        shape=t.values.shape)
            if raw:
                request.raw_input_contents.append(t.raw)
            else:  # fp32_contents is a float field: protobuf rounds the double, as torch
                getattr(tensor.contents, CONTENTS[t.dtype]).extend(_numbers(t))
        response = v2pb.ModelInferResponse.FromString(
            _unary(server, "/inference.GRPCInferenceService/ModelInfer", request))
        return {o.name: _from_wire(V2_NAMES[o.datatype], list(o.shape), raw=blob)
                for o, blob in zip(response.outputs, response.raw_output_contents)}
    return send


_channels: dict[str, grpc.Channel] = {}


def _unary(server: Any, method: str, request: Any) -> bytes:
    channel = _channels.get(server.grpc_target)
    if channel is None:
        channel = _channels[server.grpc_target] = grpc.insecure_channel(server.grpc_target)
    identity = lambda b: b  # noqa: E731
    return channel.unary_unary(method, request_serializer=identity,
                               response_deserializer=identity)(
        request.SerializeToString(), timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _close_channels() -> Iterator[None]:
    yield
    for channel in _channels.values():
        channel.close()
    _channels.clear()


# (transport, encoding) -> the client, and which dtypes the encoding can carry
WAYS: dict[tuple[str, str], tuple[Callable[[Any, Draw], Answer], frozenset[str]]] = {
    ("rest-native", "json-numbers"): (rest_native("data"), frozenset(FLOATS)),
    ("rest-native", "nested-list"): (rest_native("list"), frozenset({"float64"})),
    ("rest-native", "b64"): (rest_native("b64"), frozenset(FLOATS)),
    ("rest-v2", "json-numbers"): (rest_v2(binary=False), frozenset(FLOATS)),
    ("rest-v2", "binary"): (rest_v2(binary=True), frozenset(FLOATS)),
    ("grpc-native", "proto-packed"): (grpc_native(raw=False), frozenset(FLOATS)),
    ("grpc-native", "raw"): (grpc_native(raw=True), frozenset(FLOATS)),
    ("grpc-v2", "proto-contents"): (grpc_v2(raw=False), frozenset({"float32", "float64"})),
    ("grpc-v2", "raw"): (grpc_v2(raw=True), frozenset(FLOATS)),
}


def _same(actual: Answer, expected: Answer, what: str) -> None:
    assert set(actual) == set(expected), f"{what}: outputs {sorted(actual)}"
    for name, want in expected.items():
        got = actual[name]
        assert got.dtype == want.dtype, f"{what} {name}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{what} {name}: shape {got.shape} != {want.shape}"
        np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64),
                                      err_msg=f"{what} {name}")


def _close_to_torch(actual: Answer, expected: Answer, dtype: str) -> None:
    assert set(actual) == set(expected)
    for name, want in expected.items():
        rtol = (TORCH_GRAD_RTOL if name.startswith("grad_") else TORCH_RTOL)[dtype]
        assert actual[name].dtype == want.dtype, name
        np.testing.assert_allclose(actual[name].astype(np.float64), want.astype(np.float64),
                                   rtol=rtol, atol=TORCH_ATOL[dtype], equal_nan=True,
                                   err_msg=f"{name} vs torch")


BF16_EXAMPLE = Draw("mse", {"input": Tensor(np.array([[1.0 + 2 ** -8 + 2 ** -40, 3.3]]),
                                            "bfloat16"),
                            "target": Tensor(np.array([[-1.7, 0.1]]), "bfloat16")}, "mean")
F16_EXAMPLE = Draw("mse", {"input": Tensor(np.array([1.0 + 2 ** -11 + 2 ** -40, 0.3]), "float16"),
                           "target": Tensor(np.array([0.0, 0.0]), "float16")}, "none")


MATRIX = settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
TORCH_ONLY = pytest.mark.skipif(torch is None, reason="no torch")


@MATRIX
@given(call=draws())
@example(call=BF16_EXAMPLE)  # a tie after float32 rounding: 1.0 in torch, not 1.0078125
@example(call=F16_EXAMPLE)  # the same for float16: 1.0 in torch, 1.001 from float64 at once
def test_every_transport_and_encoding_gives_the_reference(server, call: Draw) -> None:
    """Every way gives the naive reference's numbers, bit for bit (no torch needed)."""
    expected = naive(call)
    dtype = call.inputs["input"].dtype
    for (transport, encoding), (send, dtypes) in WAYS.items():
        if dtype in dtypes:
            _same(send(server, call), expected, f"{transport} {encoding} {dtype}")


@TORCH_ONLY
@pytest.mark.torch
@MATRIX
@given(call=draws())
@example(call=BF16_EXAMPLE)
@example(call=F16_EXAMPLE)
def test_the_reference_is_torchs_numbers(call: Draw) -> None:
    """The same draws in torch (``torch.tensor(values, dtype=...)``): the reference every way
    equals is within the dtype's tolerance of torch, in torch's dtypes."""
    _close_to_torch(naive(call), torch_answer(call), call.inputs["input"].dtype)


def test_the_bfloat16_loss_of_rest_is_rounded(server) -> None:
    """The 0-d loss of bfloat16 inputs is a JSON number holding a bfloat16 value, as over gRPC
    (not the float32 it was computed in)."""
    answer = rest_native("data")(server, BF16_EXAMPLE)
    assert answer["loss"].dtype == NUMPY["bfloat16"]
    body = httpx.post(f"{server.url}/v1/losses/mse", timeout=30, json={"inputs": {
        n: {"dtype": "bfloat16", "shape": list(t.values.shape), "data": _numbers(t)}
        for n, t in BF16_EXAMPLE.inputs.items()}}).json()
    assert body["dtype"] == "bfloat16"
    assert float(np.float32(body["loss"]).astype(ml_dtypes.bfloat16)) == body["loss"]
