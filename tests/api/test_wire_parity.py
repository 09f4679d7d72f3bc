"""REST and gRPC give the core's numbers, for every registered loss (real sockets, real server).

Each loss is sent with JSON lists, ``{dtype, shape, data}``, ``{dtype, shape, b64}`` and raw and
packed gRPC tensors; float32 must stay float32 on the wire.
"""

from __future__ import annotations

import base64

import grpc
import httpx
import numpy as np
import pytest

from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from lossd.client import grpc_array, grpc_tensor
from lossd.client.rpc import option_value
from lossd.losses import REGISTRY
from tests.reference import Case
from tests.reference.compare import assert_close
from tests.support import wire_cases

CASES = wire_cases.CASES


def test_every_loss_is_covered() -> None:
    assert {c.values[0].loss for c in CASES} == set(REGISTRY)


_expected = wire_cases.expected


def _json_list(array: np.ndarray):
    return array.tolist()


def _rest_value(obj, like: np.ndarray) -> np.ndarray:
    if isinstance(obj, dict):
        if "b64" in obj:
            return np.frombuffer(base64.b64decode(obj["b64"]), obj["dtype"]).reshape(obj["shape"])
        return np.array(obj["data"], dtype=obj["dtype"]).reshape(obj["shape"])
    return np.array(obj, dtype=np.float64).astype(like.dtype)


def _post(server, case: Case, encode) -> dict:
    body = {"inputs": {k: encode(v) for k, v in case.inputs.items()},
            "options": case.options, "grad": True}
    response = httpx.post(f"{server.url}/v1/losses/{case.loss}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _check_rest(case: Case, body: dict, expected) -> None:
    assert_close(_rest_value(body["loss"], expected.loss), expected.loss, what="loss")
    assert set(body["grads"]) == set(expected.grads)
    for name, g in expected.grads.items():
        assert_close(_rest_value(body["grads"][name], g), g, what=f"grad {name}")


@pytest.mark.parametrize("case", CASES)
def test_rest_b64(server, case: Case) -> None:
    body = _post(server, case, lambda a: {"dtype": a.dtype.name, "shape": list(a.shape),
                                          "b64": base64.b64encode(a.tobytes()).decode()})
    _check_rest(case, body, _expected(case))
    first = next(iter(case.inputs))
    if np.ndim(body["loss"]) and first == REGISTRY[case.loss].tensors[0].name:
        assert body["loss"]["dtype"] == _expected(case).loss.dtype.name  # float32 stays float32


NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _data(a: np.ndarray) -> dict:
    """{dtype, shape, data} with non-finite numbers as the proto3 JSON strings."""
    values = [NON_FINITE.get(str(x), x) if isinstance(x, float) and not np.isfinite(x) else x
              for x in a.ravel().tolist()]
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": values}


@pytest.mark.parametrize("case", CASES)
def test_rest_data(server, case: Case) -> None:
    _check_rest(case, _post(server, case, _data), _expected(case))


LIST_CASES = [p for p in CASES
              if all(v.dtype.name in ("float64", "int64") and (v.dtype.kind != "f" or
                                                               np.isfinite(v).all())
                     for v in p.values[0].inputs.values())]


@pytest.mark.parametrize("case", LIST_CASES)
def test_rest_nested_lists(server, case: Case) -> None:
    _check_rest(case, _post(server, case, _json_list), _expected(case))


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield pb_grpc.LossServiceStub(channel)
    channel.close()


def _grpc_request(case: Case, raw: bool) -> pb.ComputeRequest:
    def tensor(a: np.ndarray) -> pb.Tensor:
        if raw:
            return grpc_tensor(a)
        t = pb.Tensor(dtype=grpc_tensor(a).dtype, shape=a.shape)
        if a.dtype.kind == "f":
            t.double_data.extend(a.ravel().tolist())
        elif a.dtype.kind == "b":
            t.bool_data.extend(a.ravel().tolist())
        else:
            t.int64_data.extend(a.ravel().tolist())
        return t
    return pb.ComputeRequest(loss=case.loss, grad=True,
                             inputs={k: tensor(v) for k, v in case.inputs.items()},
                             options={k: option_value(v) for k, v in case.options.items()})


def _from_packed(t: pb.Tensor) -> np.ndarray:
    if t.raw:
        return grpc_array(t)
    dtype = pb.DType.Name(t.dtype).lower()
    values = t.double_data or t.int64_data or t.bool_data
    return np.array(list(values), dtype=dtype).reshape(tuple(t.shape))


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "packed"])
@pytest.mark.parametrize("case", CASES)
def test_grpc(stub, case: Case, raw: bool) -> None:
    response = stub.Compute(_grpc_request(case, raw), timeout=30)
    expected = _expected(case)
    assert_close(_from_packed(response.loss), expected.loss, what="loss")
    assert set(response.grads) == set(expected.grads)
    for name, g in expected.grads.items():
        assert_close(_from_packed(response.grads[name]), g, what=f"grad {name}")
