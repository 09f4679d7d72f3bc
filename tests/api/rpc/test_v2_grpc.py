"""Open Inference Protocol v2 over gRPC against a real lossd: the unmodified ``tritonclient.grpc``
computes every registered loss (raw_input_contents), typed ``contents`` give the same numbers,
health/metadata/readiness answer per RPC, mistakes get INVALID_ARGUMENT / NOT_FOUND (never
INTERNAL), and reflection describes ``inference.GRPCInferenceService``.

Raw requests use tritonclient's own messages (a superset of KServe's, same wire format)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from lossd.losses import REGISTRY, compute
from tests.reference import Case
from tests.support.wire_cases import CASES, check

METHOD = "/inference.GRPCInferenceService/"


@pytest.fixture(scope="module")
def client(server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.grpc_target)
    yield c
    c.close()


@pytest.fixture(scope="module")
def channel(server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as ch:
        yield ch


def _call(channel: grpc.Channel, method: str, request: bytes) -> bytes:
    identity = lambda b: b  # noqa: E731
    return channel.unary_unary(METHOD + method, request_serializer=identity,
                               response_deserializer=identity)(request, timeout=30)


def _outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Outputs from raw_output_contents (what lossd, like Triton, answers)."""
    assert len(response.raw_output_contents) == len(response.outputs)
    out = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents):
        out[tensor.name] = np.frombuffer(raw, triton_to_np_dtype(tensor.datatype)).reshape(
            tuple(tensor.shape))
    return out


@pytest.mark.parametrize("case", CASES)
def test_tritonclient_computes_every_loss(client, case: Case) -> None:
    inputs = []
    for name, array in case.inputs.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inputs.append(tensor.set_data_from_numpy(array))
    result = client.infer(case.loss, inputs, parameters={**case.options, "grad": True},
                          client_timeout=30)
    response = result.get_response()
    assert response.model_name == case.loss and response.model_version == "1"
    check(case, {o.name: result.as_numpy(o.name) for o in response.outputs})


CONTENTS = {"bool": "bool_contents", "uint8": "uint_contents", "int32": "int_contents",
            "int64": "int64_contents", "float32": "fp32_contents", "float64": "fp64_contents"}


def _typed_request(case: Case) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=case.loss, id="typed")
    for name, array in case.inputs.items():
        tensor = request.inputs.add(name=name, datatype=np_to_triton_dtype(array.dtype),
                                    shape=array.shape)
        getattr(tensor.contents, CONTENTS[array.dtype.name]).extend(array.ravel().tolist())
    for key, value in {**case.options, "grad": True}.items():
        field = {bool: "bool_param", int: "int64_param", float: "double_param",
                 str: "string_param"}[type(value)]
        setattr(request.parameters[key], field, value)
    return request


@pytest.mark.parametrize("case", CASES)
def test_typed_contents_compute_every_loss(channel, case: Case) -> None:
    response = pb.ModelInferResponse.FromString(
        _call(channel, "ModelInfer", _typed_request(case).SerializeToString()))
    assert response.id == "typed"
    check(case, _outputs(response))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_raw(client, dtype: str) -> None:
    rng = np.random.default_rng(1)
    wire = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16
    x = rng.normal(size=(5,)).astype(np.float32).astype(wire)
    y = rng.normal(size=(5,)).astype(np.float32).astype(wire)
    inputs = [triton.InferInput(n, [5], np_to_triton_dtype(a.dtype)).set_data_from_numpy(a)
              for n, a in (("input", x), ("target", y))]
    result = client.infer("l1", inputs, parameters={"reduction": "sum"})
    arrays = ({"input": x, "target": y} if dtype == "float16" else
              {"input": x.astype(np.float32), "target": y.astype(np.float32)})
    want = compute("l1", arrays, {"reduction": "sum"}).loss.astype(wire)
    assert result.get_response().outputs[0].datatype == np_to_triton_dtype(np.dtype(wire))
    np.testing.assert_array_equal(result.as_numpy("loss"), want)


# --- health, metadata, readiness ---------------------------------------------------------------

def test_health_and_server_metadata(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "lossd" and "binary_tensor_data" in meta.extensions


@pytest.mark.parametrize("loss", sorted(REGISTRY))
def test_model_metadata_and_readiness(client, loss: str) -> None:
    spec = REGISTRY[loss]
    assert client.is_model_ready(loss) and client.is_model_ready(loss, "1")
    meta = client.get_model_metadata(loss)
    assert meta.name == loss and list(meta.versions) == ["1"] and meta.platform == "lossd"
    assert [t.name for t in meta.inputs] == [t.name for t in spec.tensors]
    assert [t.name for t in meta.outputs] == ["loss"] + [f"grad_{n}"
                                                         for n in spec.differentiable]
    assert all(t.shape and min(t.shape) >= -1 for t in [*meta.inputs, *meta.outputs])


def test_reflection_describes_the_v2_service(server) -> None:
    with grpc.insecure_channel(server.grpc_target) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        assert "inference.GRPCInferenceService" in db.get_services()
        file = db.FindFileContainingSymbol("inference.GRPCInferenceService")
        methods = {m.name for s in file.service for m in s.method}
        assert {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
                "ModelInfer"} <= methods


# --- errors -----------------------------------------------------------------------------------

def _expect(code: grpc.StatusCode, match: str, channel: grpc.Channel, method: str,
            request: bytes) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(channel, method, request)
    assert info.value.code() is code, info.value.details()
    assert match in info.value.details()


def _mse(**changes: object) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="mse")
    for name in ("input", "target"):
        t = request.inputs.add(name=name, datatype="FP32", shape=[2])
        t.contents.fp32_contents.extend([1.0, 2.0])
    for key, value in changes.items():
        setattr(request, key, value)
    return request


def _raw_mse(count: int = 2, datatype: str = "FP32") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="mse")
    for name in ("input", "target"):
        request.inputs.add(name=name, datatype=datatype, shape=[2])
    request.raw_input_contents.extend([np.ones(2, np.float32).tobytes()] * count)
    return request


def _with_contents(datatype: str) -> pb.ModelInferRequest:
    request = _mse()
    request.inputs[1].datatype = datatype
    return request


def _missing() -> pb.ModelInferRequest:
    request = _mse()
    del request.inputs[1]
    return request


def _param(**values: object) -> pb.ModelInferRequest:
    request = _mse()
    for key, value in values.items():
        field = {bool: "bool_param", str: "string_param", int: "int64_param"}[type(value)]
        setattr(request.parameters[key], field, value)
    return request


@pytest.mark.parametrize(("method", "request_bytes", "code", "match"), [
    ("ModelInfer", b"\xff\xff\xff garbage", grpc.StatusCode.INVALID_ARGUMENT, "not a valid"),
    ("ModelMetadata", b"\x0a\xff", grpc.StatusCode.INVALID_ARGUMENT, "not a valid"),
    ("ModelInfer", _mse(model_name="nope").SerializeToString(), grpc.StatusCode.NOT_FOUND,
     "unknown loss 'nope'"),
    ("ModelInfer", _mse(model_version="2").SerializeToString(), grpc.StatusCode.NOT_FOUND,
     "only version 1"),
    ("ModelMetadata", pb.ModelMetadataRequest(name="nope").SerializeToString(),
     grpc.StatusCode.NOT_FOUND, "unknown loss"),
    ("ModelReady", pb.ModelReadyRequest(name="nope").SerializeToString(),
     grpc.StatusCode.NOT_FOUND, "unknown loss"),
    ("ModelInfer", _missing().SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT,
     "required tensor is missing"),
    ("ModelInfer", _with_contents("INT64").SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "takes int64_contents; got fp32_contents"),
    ("ModelInfer", _with_contents("FP16").SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents only"),
    ("ModelInfer", _with_contents("STRING").SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "datatype must be one of"),
    ("ModelInfer", _raw_mse(count=1).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT,
     "one per input"),
    ("ModelInfer", _raw_mse(datatype="FP64").SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "must be 16 bytes; got 8"),
    ("ModelInfer", _param(reduction="avg").SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "reduction"),
    ("ModelInfer", _param(grad="yes").SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT,
     "grad: expected true or false"),
    ("ModelInfer", _param(timeout=-5).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT,
     "timeout"),
], ids=["garbage-infer", "garbage-metadata", "unknown-model", "unknown-version",
        "metadata-unknown-model", "ready-unknown-model", "missing-input", "wrong-contents",
        "fp16-in-contents", "unknown-datatype", "raw-count", "raw-size", "bad-option",
        "bad-grad", "bad-timeout"])
def test_mistakes_answer_status_codes(channel, method: str, request_bytes: bytes,
                                      code: grpc.StatusCode, match: str) -> None:
    _expect(code, match, channel, method, request_bytes)


def test_tritonclient_raises_protocol_errors(client) -> None:
    x = triton.InferInput("input", [2], "INT64").set_data_from_numpy(np.array([1, 2]))
    t = triton.InferInput("target", [2], "INT64").set_data_from_numpy(np.array([0, 1]))
    with pytest.raises(InferenceServerException, match="INVALID_ARGUMENT.*dtype int64"):
        client.infer("nll", [x, t])
    with pytest.raises(InferenceServerException, match="NOT_FOUND"):
        client.infer("nope", [x])
    with pytest.raises(InferenceServerException, match="NOT_FOUND"):
        client.is_model_ready("nope")


def test_raw_inputs_and_metrics(channel, server) -> None:
    response = pb.ModelInferResponse.FromString(
        _call(channel, "ModelInfer", _raw_mse().SerializeToString()))
    assert _outputs(response)["loss"] == np.float32(0.0)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert any(line.startswith("lossd_requests_total{") and 'protocol="v2-grpc"' in line
               for line in metrics.splitlines())
