"""V2 model metadata is enough to call every loss.

A generic client knows nothing of lossd's losses: it reads ``/v2/models/{loss}`` (REST) or
``ModelMetadata`` (gRPC) for names, datatypes and shapes, and ``/v1/losses`` for value ranges
and which tensors are optional. It sizes every ``-1`` dim (and every dim a range names) as
``K``, draws values inside the documented ranges in the advertised datatype, and must get a
loss back for every registered loss over V2 REST (JSON ``data``) and V2 gRPC
(``raw_input_contents``), with the optional tensors left out or sent: the core's number, never
-inf. It may be nan, or +inf: ranges bound each tensor, not their combination, so a drawn CTC
target can be longer than its input can align (torch's loss is +inf there too).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tritonclient.utils import triton_to_np_dtype

from lossd._proto.inference import grpc_predict_v2_pb2 as pb
from lossd._proto.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from lossd.api.v2 import model_metadata
from lossd.losses import REGISTRY, compute
from tests.reference.compare import assert_close

K = 3  # the size of every variable dim
SPAN = 2.0  # width drawn from where a range is unbounded


# --- the generic client ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalogue(server) -> dict[str, dict[str, Any]]:
    """``/v1/losses``: each tensor's description, by loss and tensor name."""
    losses = httpx.get(f"{server.url}/v1/losses").json()["losses"]
    return {loss["name"]: {t["name"]: t for t in loss["tensors"]} for loss in losses}


@pytest.fixture(scope="module")
def stub(server) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _bound(bound: float | str | None) -> float | None:
    """A range bound: a number, or a dim name standing for that dim's size (``K``)."""
    return float(K) if isinstance(bound, str) else bound


def draw(values: dict[str, Any] | None, datatype: str, shape: list[int],
         rng: np.random.Generator) -> np.ndarray:
    """An array of ``shape`` (-1 as ``K``) and ``datatype`` with values in the range."""
    size = tuple(K if d == -1 else d for d in shape)
    dtype = np.dtype(triton_to_np_dtype(datatype))
    values = values or {"low": None, "high": None, "low_open": False, "high_open": False,
                        "integer": False, "choices": None}
    if values["choices"] is not None:
        return rng.choice(np.asarray(values["choices"], dtype), size)
    low, high = _bound(values["low"]), _bound(values["high"])
    if values["integer"]:
        assert low is not None and high is not None, values
        first = int(low) + values["low_open"]
        last = int(high) - values["high_open"]
        return rng.integers(first, last, size, endpoint=True).astype(dtype)
    if low is None:
        low = (0.0 if high is None else high) - SPAN
    if high is None:
        high = low + SPAN
    # strictly inside, so open and closed bounds alike hold
    return (low + (high - low) * rng.uniform(0.05, 0.95, size)).astype(dtype)


def build(loss: str, inputs: list[dict[str, Any]], tensors: dict[str, dict[str, Any]],
          optional: bool) -> dict[str, np.ndarray]:
    """The request's arrays from metadata ``inputs`` and ``/v1/losses`` ``tensors`` alone."""
    rng = np.random.default_rng(zlib.crc32(loss.encode()))
    return {t["name"]: draw(tensors[t["name"]]["values"], t["datatype"], t["shape"], rng)
            for t in inputs if optional or not tensors[t["name"]]["optional"]}


def rest_metadata(server, loss: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/v2/models/{loss}")
    assert r.status_code == 200, r.text
    return r.json()


def grpc_metadata(stub: pb_grpc.GRPCInferenceServiceStub, loss: str) -> dict[str, Any]:
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=loss), timeout=30)
    return {"name": meta.name, "inputs": [
        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.inputs],
        "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                    for t in meta.outputs]}


def infer_rest(server, loss: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]
               ) -> np.ndarray:
    datatypes = {t["name"]: t["datatype"] for t in meta["inputs"]}
    body = {"inputs": [{"name": name, "datatype": datatypes[name], "shape": list(a.shape),
                        "data": a.ravel().tolist()} for name, a in arrays.items()]}
    r = httpx.post(f"{server.url}/v2/models/{loss}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    (output,) = r.json()["outputs"]
    assert output["name"] == "loss" and output["datatype"] == "FP32"
    # non-finite numbers arrive as "NaN" / "Infinity" strings (proto3 JSON), which float() reads
    return np.asarray([float(v) for v in output["data"]], np.float32).reshape(output["shape"])


def infer_grpc(stub: pb_grpc.GRPCInferenceServiceStub, loss: str,
               arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> np.ndarray:
    datatypes = {t["name"]: t["datatype"] for t in meta["inputs"]}
    request = pb.ModelInferRequest(model_name=loss)
    for name, array in arrays.items():
        request.inputs.add(name=name, datatype=datatypes[name], shape=array.shape)
        request.raw_input_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    response = stub.ModelInfer(request, timeout=30)
    (output,) = response.outputs
    assert output.name == "loss" and output.datatype == "FP32"
    return np.frombuffer(response.raw_output_contents[0], "<f4").reshape(tuple(output.shape))


@pytest.mark.parametrize("optional", [False, True], ids=["required", "with-optional"])
@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("loss", sorted(REGISTRY))
def test_metadata_alone_builds_a_valid_request(server, stub, catalogue, loss: str,
                                               transport: str, optional: bool) -> None:
    if transport == "rest":
        meta = rest_metadata(server, loss)
    else:
        meta = grpc_metadata(stub, loss)
    arrays = build(loss, meta["inputs"], catalogue[loss], optional)
    if transport == "rest":
        value = infer_rest(server, loss, arrays, meta)
    else:
        value = infer_grpc(stub, loss, arrays, meta)
    assert_close(value, compute(loss, arrays).loss, what=f"{loss} over {transport}")
    assert not np.isneginf(value).any(), (loss, arrays)


def test_rest_and_grpc_metadata_agree(server, stub) -> None:
    for loss in sorted(REGISTRY):
        rest = rest_metadata(server, loss)
        assert grpc_metadata(stub, loss) == {k: rest[k] for k in ("name", "inputs", "outputs")}


# --- what the metadata says --------------------------------------------------------------------

def _shapes(loss: str) -> dict[str, tuple[str, list[int]]]:
    meta = model_metadata(REGISTRY[loss])
    return {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"] + meta["outputs"]}


def test_metadata_has_real_datatypes_and_shapes() -> None:
    ce = _shapes("cross_entropy")
    assert ce["input"] == ("FP32", [-1, -1]) and ce["target"] == ("INT64", [-1])
    assert ce["weight"] == ("FP32", [-1]) and ce["grad_target"] == ("FP32", [-1])
    assert _shapes("generalized_box_iou")["boxes1"] == ("FP32", [-1, 4])
    assert _shapes("generalized_box_iou")["grad_boxes2"] == ("FP32", [-1, 4])
    ctc = _shapes("ctc")
    assert ctc["log_probs"] == ("FP32", [-1, -1, -1])
    assert {ctc[n][0] for n in ("targets", "input_lengths", "target_lengths")} == {"INT64"}
    assert _shapes("dice")["input"] == ("FP32", [-1, -1, -1, -1])
    assert _shapes("mse")["input"] == ("FP32", [-1])


@pytest.mark.parametrize("loss", sorted(REGISTRY))
def test_every_tensor_declares_dims_and_its_metadata_follows(loss: str) -> None:
    spec = REGISTRY[loss]
    meta = model_metadata(spec)
    for tensor, info in zip(spec.tensors, meta["inputs"], strict=True):
        assert tensor.dims, f"{loss}.{tensor.name} declares no dims"
        assert len(info["shape"]) == len(tensor.dims[0])
        integer = tensor.values is not None and tensor.values.integer
        assert info["datatype"] == ("INT64" if integer else "FP32"), (loss, tensor.name)
    for info in meta["inputs"] + meta["outputs"]:
        assert set(info) == {"name", "datatype", "shape"}
