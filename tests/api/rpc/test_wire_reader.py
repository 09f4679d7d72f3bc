"""The zero-copy request reader (service/lossd/api/wire.py) reads exactly what upb reads.

Unit properties run the hand reader on small messages too (``SLICE_FROM`` patched to 0):
random well-formed requests give the same loss, options, grad and tensors as upb's parse, and
random corruptions are refused by both or read identically. Server tests send requests above
``SLICE_FROM`` over native gRPC and V2 and compare with the core.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossd._proto.inference import grpc_predict_v2_pb2 as v2pb
from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd.api.rpc import wire
from lossd.client import GrpcClient
from lossd.errors import MalformedRequest
from lossd.losses import compute
from tests.reference.compare import assert_close


@pytest.fixture
def hand_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "SLICE_FROM", 0)


def _tensor_fields(t) -> tuple:
    return (t.dtype, list(t.shape), bytes(t.raw), list(t.double_data), list(t.int64_data),
            list(t.bool_data))


def _upb(data: bytes) -> tuple:
    request = pb.ComputeRequest.FromString(data)
    rest = pb.ComputeRequest()
    rest.CopyFrom(request)
    rest.ClearField("inputs")
    return rest, {k: _tensor_fields(v) for k, v in request.inputs.items()}


def _hand(data: bytes) -> tuple:
    request, inputs = wire.compute_request(pb.ComputeRequest, data)
    assert not request.inputs or not inputs or set(inputs) == set(request.inputs)
    rest = pb.ComputeRequest()
    rest.CopyFrom(request)
    rest.ClearField("inputs")
    return rest, {k: _tensor_fields(v) for k, v in inputs.items()}


tensors = st.builds(
    lambda dtype, shape, raw, doubles, ints, packed: pb.Tensor(
        dtype=dtype, shape=shape, raw=raw, double_data=doubles if packed == 1 else [],
        int64_data=ints if packed == 2 else []),
    st.integers(-2**31, 2**31 - 1) | st.sampled_from(list(pb.DType.values())),
    st.lists(st.integers(-2**63, 2**63 - 1) | st.integers(0, 64), max_size=5),
    st.binary(max_size=64),
    st.lists(st.floats(allow_nan=False), max_size=3),
    st.lists(st.integers(-2**63, 2**63 - 1), max_size=3),
    st.sampled_from([0, 0, 0, 1, 2]))
requests = st.builds(
    lambda loss, inputs, grad, reduction: pb.ComputeRequest(
        loss=loss, inputs=inputs, grad=grad,
        options={"reduction": pb.OptionValue(text=reduction)}),
    st.text(max_size=12), st.dictionaries(st.text(max_size=6), tensors, max_size=3),
    st.booleans(), st.sampled_from(["mean", "sum"]))


@given(requests, st.lists(st.binary(max_size=40), max_size=2))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reads_what_upb_reads(hand_reader, request: pb.ComputeRequest,
                              extra_entries: list[bytes]) -> None:
    data = request.SerializeToString()
    # raw map entries appended as they are (duplicate keys, unknown fields, odd wire types)
    for entry in extra_entries:
        data += b"\x12" + bytes([len(entry)]) + entry
    try:
        expected = _upb(data)
    except Exception:
        with pytest.raises(MalformedRequest):
            _hand(data)
        return
    assert _hand(data) == expected


@given(requests, st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_corrupted_requests_read_alike_or_refused(hand_reader, request: pb.ComputeRequest,
                                                   data: st.DataObject) -> None:
    raw = bytearray(request.SerializeToString())
    if raw:
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    try:
        expected = _upb(bytes(raw))
    except Exception:
        with pytest.raises(MalformedRequest):
            _hand(bytes(raw))
        return
    assert _hand(bytes(raw)) == expected


def test_raw_tensors_are_views_of_the_request(hand_reader) -> None:
    data = pb.ComputeRequest(loss="mse", inputs={"input": pb.Tensor(dtype=pb.FLOAT32, shape=[2],
                                                                   raw=b"\0" * 8)}
                             ).SerializeToString()
    _, inputs = wire.compute_request(pb.ComputeRequest, data)
    assert isinstance(inputs["input"].raw, memoryview) and inputs["input"].raw.obj is data


infer_requests = st.builds(
    lambda name, contents, n_inputs, version: v2pb.ModelInferRequest(
        model_name=name, model_version=version, raw_input_contents=contents,
        inputs=[v2pb.ModelInferRequest.InferInputTensor(name=f"t{i}", datatype="FP32",
                                                        shape=[i]) for i in range(n_inputs)]),
    st.text(max_size=10), st.lists(st.binary(max_size=32), max_size=3), st.integers(0, 3),
    st.text(max_size=3))


@given(infer_requests, st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_infer_reader_reads_what_upb_reads(hand_reader, request: v2pb.ModelInferRequest,
                                           data: st.DataObject) -> None:
    raw = bytearray(request.SerializeToString())
    if raw and data.draw(st.booleans()):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    try:
        expected = v2pb.ModelInferRequest.FromString(bytes(raw))
    except Exception:
        with pytest.raises(MalformedRequest):
            wire.infer_request(v2pb.ModelInferRequest, bytes(raw))
        return
    got, contents = wire.infer_request(v2pb.ModelInferRequest, bytes(raw))
    assert [bytes(c) for c in contents] == list(expected.raw_input_contents)
    expected.ClearField("raw_input_contents")
    got.ClearField("raw_input_contents")
    assert got == expected


# --- end to end: requests above SLICE_FROM -------------------------------------------------------

N = 3 * wire.SLICE_FROM // 8  # two float32 tensors: 3/4 of SLICE_FROM bytes each


@pytest.fixture(scope="module")
def client(server) -> Iterator[GrpcClient]:
    with GrpcClient(server.grpc_target) as c:
        yield c


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal(N).astype(np.float32),
            "target": rng.standard_normal(N).astype(np.float32)}


@pytest.mark.parametrize("loss", ["mse", "smooth_l1", "binary_cross_entropy_with_logits"])
def test_large_grpc_requests_match_the_core(client: GrpcClient, loss: str) -> None:
    arrays = _arrays(1)
    if loss.startswith("binary"):
        arrays["target"] = (arrays["target"] > 0).astype(np.float32)
        arrays["pos_weight"] = np.float32([2.0])
    got = client.compute(loss, grad=True, **arrays)
    want = compute(loss, arrays, grad=True)
    assert_close(got.loss, want.loss, what="loss")
    for name, g in want.grads.items():
        assert_close(got.grads[name], g, what=f"grad {name}")


def test_large_cross_entropy_with_class_weights_over_grpc(client: GrpcClient) -> None:
    rng = np.random.default_rng(2)
    arrays = {"input": rng.standard_normal((N // 10, 10)),  # float64, unaligned in the message
              "target": rng.integers(0, 10, N // 10), "weight": rng.random(10)}
    got = client.compute("cross_entropy", grad=True, label_smoothing=0.1,
                         **arrays)
    want = compute("cross_entropy", arrays, {"label_smoothing": 0.1}, grad=True)
    assert_close(got.loss, want.loss, what="loss")
    assert_close(got.grads["input"], want.grads["input"], what="grad input")


def test_large_v2_requests_match_the_core(server) -> None:
    arrays = _arrays(3)
    with triton.InferenceServerClient(server.grpc_target) as triton_client:
        inputs = []
        for name, array in arrays.items():
            tensor = triton.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = triton_client.infer("huber", inputs, parameters={"delta": 0.5})
    assert_close(result.as_numpy("loss"), compute("huber", arrays, {"delta": 0.5}).loss,
                 what="loss")


def test_truncated_large_request_is_invalid_argument(server) -> None:
    data = pb.ComputeRequest(loss="mse", inputs={
        name: pb.Tensor(dtype=pb.FLOAT32, shape=[N], raw=a.tobytes())
        for name, a in _arrays(4).items()}).SerializeToString()
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary("/lossd.v1.LossService/Compute")
        with pytest.raises(grpc.RpcError) as error:
            call(data[:-100], timeout=30)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
