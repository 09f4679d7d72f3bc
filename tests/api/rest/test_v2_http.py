"""Open Inference Protocol v2 over HTTP against a real lossd: the unmodified ``tritonclient.http``
computes every registered loss (JSON tensors and binary tensor data) with the core's numbers;
metadata, health and readiness answer as the protocol says; user mistakes get V2 error bodies
with 4xx statuses, never 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import ml_dtypes
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from lossd.losses import REGISTRY, compute
from tests.reference import Case
from tests.reference.compare import assert_close
from tests.support.wire_cases import CASES, check, expected, output_names


@pytest.fixture(scope="module")
def client(server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=30)
    yield c
    c.close()


def _inputs(case: Case, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name, array in case.inputs.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inputs.append(tensor.set_data_from_numpy(array, binary_data=binary))
    return inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("case", CASES)
def test_tritonclient_computes_every_loss(client, case: Case, binary: bool) -> None:
    parameters = {**case.options, "grad": True}
    if binary:  # no outputs named: every output, binary (request-wide binary_data_output)
        result = client.infer(case.loss, _inputs(case, True), parameters=parameters)
    else:
        outputs = [triton.InferRequestedOutput(n, binary_data=False)
                   for n in output_names(expected(case))]
        result = client.infer(case.loss, _inputs(case, False), outputs=outputs,
                              parameters=parameters)
    response = result.get_response()
    assert response["model_name"] == case.loss and response["model_version"] == "1"
    names = [o["name"] for o in response["outputs"]]
    assert all(("data" in o) != binary for o in response["outputs"])
    check(case, {n: result.as_numpy(n) for n in names})


def test_loss_only_without_grad_and_mixed_binary_outputs(client) -> None:
    x = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    y = np.zeros_like(x)
    case = Case("t", "mse", {"input": x, "target": y}, {"reduction": "sum"})
    result = client.infer("mse", _inputs(case, True), parameters={"reduction": "sum"})
    assert [o["name"] for o in result.get_response()["outputs"]] == ["loss"]
    assert_close(result.as_numpy("loss"), compute("mse", case.inputs, case.options).loss,
                 what="loss")
    # asking for a gradient output implies grad; binary per output
    outputs = [triton.InferRequestedOutput("grad_input", binary_data=True),
               triton.InferRequestedOutput("loss", binary_data=False)]
    result = client.infer("mse", _inputs(case, False), outputs=outputs,
                          parameters={"reduction": "sum"})
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["grad_input", "loss"]
    assert "parameters" in response["outputs"][0] and "data" in response["outputs"][1]
    want = compute("mse", case.inputs, case.options, grad=True)
    assert_close(result.as_numpy("grad_input"), want.grads["input"], what="grad")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_travels_raw(client, dtype: str) -> None:
    rng = np.random.default_rng(0)
    x32, y32 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(
        np.float32)
    wire = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16
    x, y = x32.astype(wire), y32.astype(wire)
    inputs = []
    for name, array in (("input", x), ("target", y)):
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inputs.append(tensor.set_data_from_numpy(array, binary_data=True))
    result = client.infer("mse", inputs, parameters={"grad": True})
    datatypes = {o["name"]: o["datatype"] for o in result.get_response()["outputs"]}
    assert datatypes == dict.fromkeys(["loss", "grad_input", "grad_target"],
                                      "BF16" if dtype == "bfloat16" else "FP16")
    if dtype == "float16":
        want = compute("mse", {"input": x, "target": y}, grad=True)
    else:  # lossd computes bfloat16 in float32 and rounds the answer, as torch does on CPU
        want = compute("mse", {"input": x.astype(np.float32), "target": y.astype(np.float32)},
                       grad=True)
    np.testing.assert_array_equal(result.as_numpy("loss"), want.loss.astype(wire))
    np.testing.assert_array_equal(result.as_numpy("grad_input"),
                                  want.grads["input"].astype(wire))


# --- metadata, health, readiness --------------------------------------------------------------

def test_health_and_server_metadata(client, server) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "lossd" and "binary_tensor_data" in meta["extensions"]
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert httpx.get(server.url + path).status_code == 200


@pytest.mark.parametrize("loss", sorted(REGISTRY))
def test_model_metadata_and_readiness_from_registry(client, loss: str) -> None:
    spec = REGISTRY[loss]
    assert client.is_model_ready(loss) and client.is_model_ready(loss, "1")
    meta = client.get_model_metadata(loss)
    assert meta["name"] == loss and meta["versions"] == ["1"] and meta["platform"] == "lossd"
    assert [t["name"] for t in meta["inputs"]] == [t.name for t in spec.tensors]
    assert [t["name"] for t in meta["outputs"]] == ["loss"] + [
        f"grad_{n}" for n in spec.differentiable]
    allowed = {"BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32",
               "FP64"}
    for tensor in meta["inputs"] + meta["outputs"]:
        assert tensor["datatype"] in allowed
        assert tensor["shape"] and all(isinstance(d, int) and d >= -1 for d in tensor["shape"])


def test_unknown_model_everywhere(client, server) -> None:
    assert not client.is_model_ready("nope")
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/mse/versions/2",
                 "/v2/models/mse/versions/2/ready"):
        r = httpx.get(server.url + path)
        assert r.status_code == 404 and isinstance(r.json()["error"], str), path
    with pytest.raises(InferenceServerException, match="unknown loss 'nope'"):
        client.get_model_metadata("nope")
    r = httpx.post(f"{server.url}/v2/models/nope/infer", json={"inputs": []})
    assert r.status_code == 404 and "nope" in r.json()["error"]


# --- errors: the V2 form, 4xx -----------------------------------------------------------------

def _post(server, body: bytes | dict, model: str = "mse",
          headers: dict[str, str] | None = None) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(f"{server.url}/v2/models/{model}/infer", content=data, headers=headers,
                   timeout=30)
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error"} and isinstance(r.json()["error"], str), r.text
    return r


FP32 = {"datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
BINARY = np.array([1.0, 2.0], np.float32).tobytes() + np.zeros(2, np.float32).tobytes()


def _binary_header(**extra: object) -> bytes:
    inputs = [{"name": n, "datatype": "FP32", "shape": [2], "parameters": {
        "binary_data_size": 8}} for n in ("input", "target")]
    return json.dumps({"inputs": inputs, **extra}).encode()


@pytest.mark.parametrize(("body", "headers", "status", "match"), [
    ({"inputs": [{"name": "input", **FP32}]}, None, 400, "target: required tensor is missing"),
    ({"inputs": [{"name": "input", **FP32}, {"name": "target", **FP32, "datatype": "BYTES"}]},
     None, 400, "datatype must be one of"),
    ({"inputs": [{"name": "input", "datatype": "BOOL", "shape": [2], "data": [True, False]},
                 {"name": "target", **FP32}]},
     None, 400, "input: dtype bool is not accepted"),
    ({"inputs": [{"name": "input", **FP32}, {"name": "target", **FP32, "shape": [3]}]},
     None, 400, "needs 3 values; got 2"),
    ({"inputs": [{"name": "input", **FP32}, {"name": "target", **FP32}],
      "parameters": {"reduction": "avg"}}, None, 400, "reduction"),
    ({"inputs": [{"name": "input", **FP32}, {"name": "target", **FP32}],
      "parameters": {"grad": "yes"}}, None, 400, "grad: expected true or false"),
    ({"inputs": [{"name": "input", **FP32}, {"name": "target", **FP32}],
      "outputs": [{"name": "logits"}]}, None, 400, "unknown output 'logits'"),
    ({"inputs": [{"name": "input", **FP32}, {"name": "input", **FP32}]}, None, 400,
     "given twice"),
    ({"inputs": {"input": FP32}}, None, 400, "inputs: expected a list"),
    (b"{not json", None, 400, "not valid JSON"),
    (b"[1, 2]", None, 400, "expected a JSON object"),
    (_binary_header() + BINARY, {"Inference-Header-Content-Length": "abc"}, 400,
     "Inference-Header-Content-Length"),
    (_binary_header() + BINARY, {"Inference-Header-Content-Length": "99999"}, 400,
     "Inference-Header-Content-Length"),
    (_binary_header() + BINARY, {"Inference-Header-Content-Length": "7"}, 400,
     "not valid JSON"),
    (_binary_header() + BINARY[:12], {"Inference-Header-Content-Length": str(
        len(_binary_header()))}, 400, "runs past the body"),
    (_binary_header() + BINARY + b"xx", {"Inference-Header-Content-Length": str(
        len(_binary_header()))}, 400, "2 bytes of binary data"),
    (_binary_header() + BINARY, None, 400, "not valid JSON"),
], ids=["missing-input", "unknown-datatype", "wrong-datatype", "shape-vs-data", "bad-option",
        "bad-grad", "unknown-output", "duplicate-input", "inputs-not-list", "garbage-json",
        "not-object", "header-length-nan", "header-length-too-long", "header-length-cut",
        "binary-size-past-end", "binary-left-over", "binary-without-header"])
def test_mistakes_answer_v2_errors(server, body, headers, status: int, match: str) -> None:
    r = _post(server, body, headers=headers)
    assert r.status_code == status and match in r.json()["error"], r.text


def test_binary_request_by_hand(server) -> None:
    header = _binary_header(outputs=[{"name": "loss", "parameters": {"binary_data": True}}])
    r = httpx.post(f"{server.url}/v2/models/mse/infer", content=header + BINARY,
                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    length = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:length])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 4
    assert np.frombuffer(r.content[length:], np.float32)[0] == np.float32(2.5)


def test_tritonclient_raises_protocol_errors(client) -> None:
    x = triton.InferInput("input", [2], "INT64").set_data_from_numpy(np.array([1, 2]))
    with pytest.raises(InferenceServerException, match="dtype int64 is not accepted"):
        client.infer("nll", [x, triton.InferInput("target", [2], "INT64").set_data_from_numpy(
            np.array([0, 1]))])
    with pytest.raises(InferenceServerException, match="required tensor is missing"):
        client.infer("mse", [triton.InferInput("input", [2], "FP32").set_data_from_numpy(
            np.ones(2, np.float32))])


def test_unknown_endpoint_and_method(server) -> None:
    r = httpx.get(f"{server.url}/v2/repository/index")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(f"{server.url}/v2/models/mse/infer")
    assert r.status_code == 405 and "error" in r.json()


def test_versioned_infer_and_metrics(server) -> None:
    body = {"inputs": [{"name": "input", **FP32}, {"name": "target", **FP32, "data": [0, 0]}],
            "id": "req-7"}
    r = httpx.post(f"{server.url}/v2/models/mse/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "req-7" and r.json()["outputs"][0]["data"] == [2.5]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert any(line.startswith("lossd_requests_total{") and all(
        label in line for label in ('loss="mse"', 'protocol="v2-rest"', 'code="OK"'))
        for line in metrics.splitlines()), metrics
