"""Request limits, each with a clean error on both transports: number of tensors, dimensions,
JSON nesting depth (REST; protobuf has no JSON). Body size (declared, streamed, gRPC message)
and elements per tensor are in test_errors.py."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossd.api.rest.depth import json_depth_exceeds
from lossd.client import GrpcClient, LossdError
from tests.support.server import start_server
from tests.support.slow import SMALL_MSE


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    s = start_server(tmp_path_factory.mktemp("limits"), "--max-tensors", "3", "--max-ndim", "4",
                     "--max-json-depth", "8")
    yield s
    assert s.terminate() == 0, s.log()


def _grpc_error(s, loss: str, **tensors) -> LossdError:
    with GrpcClient(s.grpc_target) as client:
        with pytest.raises(LossdError) as caught:
            client.compute(loss, **tensors)
    return caught.value


def test_number_of_tensors(limited) -> None:
    four = {"input": [[0.5]], "target": [[1.0]], "var": [[1.0]], "extra": [[1.0]]}
    r = httpx.post(f"{limited.url}/v1/losses/gaussian_nll", json={"inputs": four})
    assert r.status_code == 400 and "at most 3 tensors" in r.json()["error"]["message"]
    # tensor-valued options count too
    r = httpx.post(f"{limited.url}/v1/losses/cross_entropy", json={
        "inputs": {"input": [[0.5, 0.5]], "target": [0], "x": [1]},
        "options": {"weight": [1.0, 1.0]}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "inputs"
    error = _grpc_error(limited, "gaussian_nll", **{k: np.asarray(v) for k, v in four.items()})
    assert error.code == "INVALID_ARGUMENT" and "at most 3 tensors" in error.message
    three = {k: four[k] for k in ("input", "target", "var")}
    assert httpx.post(f"{limited.url}/v1/losses/gaussian_nll",
                      json={"inputs": three}).status_code == 200


@pytest.mark.parametrize("encoding", ["list", "data", "b64"])
def test_number_of_dimensions(limited, encoding: str) -> None:
    deep = np.zeros((1,) * 5)
    tensor = {"list": deep.tolist(),
              "data": {"dtype": "float64", "shape": [1] * 5, "data": [0.0]},
              "b64": {"dtype": "float64", "shape": [1] * 5, "b64": "AAAAAAAAAAA="}}[encoding]
    r = httpx.post(f"{limited.url}/v1/losses/mse",
                   json={"inputs": {"input": tensor, "target": [0.0]}})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["field"] == "inputs.input" and "at most 4 dimensions" in error["message"]


def test_number_of_dimensions_grpc(limited) -> None:
    error = _grpc_error(limited, "mse", input=np.zeros((1,) * 5), target=np.zeros(1))
    assert error.code == "INVALID_ARGUMENT" and error.field == "inputs.input"
    assert "at most 4 dimensions" in error.message
    with GrpcClient(limited.grpc_target) as client:
        assert float(client.compute("mse", input=np.ones((1,) * 4),
                                    target=np.zeros(1)).loss) == 1.0


def test_json_nesting_depth(limited) -> None:
    # {"inputs": {"input": [[[[[[[[0]]]]]]]]}} is 10 deep; the limit is 8
    r = httpx.post(f"{limited.url}/v1/losses/mse", content=b'{"inputs": {"input": '
                   + b"[" * 8 + b"0" + b"]" * 8 + b', "target": [0]}}')
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "INVALID_ARGUMENT", "field": "body",
                                 "message": "body: JSON nested deeper than 8 levels "
                                            "(max_json_depth)"}
    # deep nesting anywhere, even where the API would ignore it, and far past orjson's own
    # recursion limit: refused before parsing, the server unharmed
    for body in (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                 b'{"inputs": {}, "options": {"a": ' + b'{"b": ' * 20 + b"1" + b"}" * 21 + b"}"):
        r = httpx.post(f"{limited.url}/v1/losses/mse", content=body)
        assert r.status_code == 422 and "nested deeper" in r.json()["error"]["message"]
    r = httpx.post(f"{limited.url}/v1/batch", content=b'{"requests": [' + b"[" * 9 + b"]" * 9
                   + b"]}")
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"
    # brackets inside strings do not count; escaped quotes do not end a string
    r = httpx.post(f"{limited.url}/v1/losses/mse", json={
        **SMALL_MSE, "options": {"reduction": '\\"[[[[[[[[[[[[[[[[[[[["'}})
    assert r.status_code == 400 and "reduction" in r.json()["error"]["message"]
    assert httpx.post(f"{limited.url}/v1/losses/mse", json=SMALL_MSE).status_code == 200


def _depth(obj: object) -> int:
    if isinstance(obj, list):
        return 1 + max((_depth(x) for x in obj), default=0)
    if isinstance(obj, dict):
        return 1 + max((_depth(x) for x in obj.values()), default=0)
    return 0


JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(JSON, st.integers(1, 12))
def test_depth_prescan_equals_parsed_depth(obj: object, limit: int) -> None:
    """The byte pre-scan agrees with the parsed document's depth, for any JSON (strings with
    brackets, quotes and backslashes included)."""
    assert json_depth_exceeds(orjson.dumps(obj), limit) == (_depth(obj) > limit)
