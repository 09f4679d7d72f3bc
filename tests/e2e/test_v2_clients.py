"""Real Open Inference Protocol v2 clients, unchanged, compute ``cross_entropy`` with options
against a real lossd: KServe 0.21's ``InferenceRESTClient`` and ``InferenceGRPCClient``, and
tritonclient's HTTP and gRPC clients. Every answer (loss and ``grad_input``) is checked against
the NumPy reference below, written from torch's definition of the loss.

What each client sends, as these tests pin it:
- kserve REST: ``id`` (a fresh uuid4) and ``model_name`` in the body beside ``inputs`` and
  ``parameters`` (no ``model_version``); floats, ints, bools and strings as JSON parameters;
  with binary tensors, ``application/octet-stream`` and ``Inference-Header-Content-Length``.
- kserve gRPC: ``bool_param``/``int64_param``/``string_param`` only. Its ``InferParameter`` has
  no ``double_param`` and ``to_grpc_parameters`` refuses a float before sending, so options such
  as ``label_smoothing`` cannot travel from it (an int value of a float option, e.g. 0, could).
  Tensors set with ``set_data_from_numpy`` (binary by default) go as ``raw_input_contents``
  *and* carry a ``binary_data_size`` int64 parameter per input, which the server must accept.
- tritonclient: floats as JSON numbers (HTTP) and ``double_param`` (gRPC).

kserve runs in a child process (see ``kserve_calls``: its stubs and tritonclient's clash in
protobuf's default pool); all of this module's kserve calls go in one batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import np_to_triton_dtype

from lossd.losses import compute
from tests.reference.compare import assert_close
from tests.support.kserve_calls import decode, encode, run_calls

LOSS = "cross_entropy"
RNG = np.random.default_rng(7)
X = (RNG.normal(size=(4, 5)) * 2).astype(np.float32)
TARGET = np.array([1, 2, 4, 2], np.int64)  # ignore_index=2 drops two of the four rows
WEIGHT = np.array([0.5, 1.0, 2.0, 1.5, 0.25], np.float32)  # class weights, an extra input


def reference(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None, *,
              ignore_index: int = -100, label_smoothing: float = 0.0,
              reduction: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """torch's cross_entropy with class-index targets, in float64: (loss, d loss/d input).

    loss_i = (1-eps) * w[t_i] * -log p[i, t_i] + eps/C * sum_c w[c] * -log p[i, c], zero where
    t_i == ignore_index; "mean" divides both parts by the summed w[t_i] of the kept rows.
    """
    x = x.astype(np.float64)
    n, c = x.shape
    w = np.ones(c) if weight is None else weight.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    keep = target != ignore_index
    t = np.where(keep, target, 0)
    w_t = w[t] * keep
    eps = label_smoothing
    per_row = (1 - eps) * -w_t * logp[np.arange(n), t] + eps / c * -(w * logp).sum(1) * keep
    grad = ((1 - eps) * w_t[:, None] * (p - np.eye(c)[t])
            + eps / c * keep[:, None] * (p * w.sum() - w))
    denominator = w_t.sum() if reduction == "mean" else 1.0
    return np.asarray(per_row.sum() / denominator), grad / denominator


def expected(options: dict[str, Any], weight: bool) -> tuple[np.ndarray, np.ndarray]:
    """The reference for a call with ``options``, cast to float32 (what lossd answers)."""
    loss, grad = reference(X, TARGET, WEIGHT if weight else None, **options)
    return loss.astype(np.float32), grad.astype(np.float32)


def check(outputs: dict[str, np.ndarray], options: dict[str, Any], weight: bool) -> None:
    loss, grad = expected(options, weight)
    assert set(outputs) == {"loss", "grad_input"}, sorted(outputs)
    assert_close(outputs["loss"].reshape(loss.shape), loss, what="loss")
    assert_close(outputs["grad_input"], grad, what="grad_input")


SMOOTH = {"label_smoothing": 0.1, "ignore_index": 2}  # a float and an int option
SUM = {"reduction": "sum", "ignore_index": 2}  # a string and an int: what kserve gRPC can send


def tensors(weight: bool) -> dict[str, np.ndarray]:
    return {"input": X, "target": TARGET, **({"weight": WEIGHT} if weight else {})}


# --- the reference itself ---------------------------------------------------------------------

@pytest.mark.parametrize("weight", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("options", [SMOOTH, SUM, {"label_smoothing": 0.3}],
                         ids=["smooth-ignore", "sum-ignore", "smooth"])
def test_reference_is_the_derivative_and_agrees_with_the_core(options, weight: bool) -> None:
    """Central differences of the reference's loss give its gradient; lossd's core (checked
    against torch's goldens elsewhere) gives the same numbers in float64."""
    w = WEIGHT.astype(np.float64) if weight else None
    x = X.astype(np.float64)
    loss, grad = reference(x, TARGET, w, **options)
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = 1e-6
        numeric[index] = (reference(x + step, TARGET, w, **options)[0]
                          - reference(x - step, TARGET, w, **options)[0]) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    core = compute(LOSS, {"input": x, "target": TARGET, **({"weight": w} if weight else {})},
                   options, grad=True)
    assert_close(np.asarray(core.loss), loss, what="loss")
    assert_close(core.grads["input"], grad, what="grad_input")


# --- KServe's clients -------------------------------------------------------------------------

def _kserve_call(name: str, transport: str, url: str, options: dict[str, Any], weight: bool,
                 binary: bool, **parameters: Any) -> dict[str, Any]:
    inputs = [{"name": n, "datatype": np_to_triton_dtype(a.dtype), "shape": list(a.shape),
               "b64": encode(a)} for n, a in tensors(weight).items()]
    return {"name": name, "transport": transport, "url": url, "model": LOSS, "inputs": inputs,
            "binary": binary, "parameters": {**options, "grad": True, **parameters}}


# name -> (transport, options, class weight, binary tensors, extra parameters)
KSERVE_CALLS: dict[str, tuple[str, dict[str, Any], bool, bool, dict[str, Any]]] = {
    "rest-json": ("rest", SMOOTH, False, False, {}),
    "rest-binary-weight": ("rest", SMOOTH, True, True, {"binary_data_output": True}),
    "rest-sum-weight": ("rest", SUM, True, False, {}),
    "grpc-raw-weight": ("grpc", SUM, True, True, {}),
    "grpc-contents": ("grpc", SUM, False, False, {}),
    "grpc-float": ("grpc", SMOOTH, False, True, {}),
}


@pytest.fixture(scope="module")
def kserve(server) -> dict[str, dict[str, Any]]:
    calls = [_kserve_call(name, transport, server.url if transport == "rest" else
                          server.grpc_target, options, weight, binary, **extra)
             for name, (transport, options, weight, binary, extra) in KSERVE_CALLS.items()]
    return run_calls(calls)


DTYPES = {"FP32": np.float32, "FP64": np.float64}


def _answer(result: dict[str, Any]) -> dict[str, np.ndarray]:
    assert "error" not in result, result["error"]
    assert result["model_name"] == LOSS
    return {name: decode(t, np.dtype(DTYPES[t["datatype"]]))
            for name, t in result["outputs"].items()}


@pytest.mark.parametrize("name", [n for n, c in KSERVE_CALLS.items() if c[0] == "rest"])
def test_kserve_rest_client(kserve, server, name: str) -> None:
    _, options, weight, binary, _ = KSERVE_CALLS[name]
    result = kserve[name]
    check(_answer(result), options, weight)
    sent = result["sent"]
    assert sent["url"] == f"{server.url}/v2/models/{LOSS}/infer"
    body = sent["body"]  # kserve repeats the model in the body and always sends an id
    assert body["model_name"] == LOSS and "model_version" not in body
    assert isinstance(body["id"], str) and result["id"] == body["id"]
    assert body["parameters"] == {**options, "grad": True, **KSERVE_CALLS[name][4]}
    assert [i["name"] for i in body["inputs"]] == list(tensors(weight))
    # lossd answers binary outputs when binary_data_output asks for them, else JSON data
    assert (sent["answer_header_length"] is not None) == ("binary_data_output" in body[
        "parameters"])
    if binary:
        assert sent["content_type"] == "application/octet-stream"
        assert all("data" not in i and i["parameters"]["binary_data_size"] > 0
                   for i in body["inputs"])
    else:
        assert sent["content_type"] == "application/json" and sent["header_length"] is None
        assert all("data" in i for i in body["inputs"])


@pytest.mark.parametrize("name", [n for n, c in KSERVE_CALLS.items()
                                  if c[0] == "grpc" and n != "grpc-float"])
def test_kserve_grpc_client(kserve, name: str) -> None:
    _, options, weight, binary, _ = KSERVE_CALLS[name]
    result = kserve[name]
    check(_answer(result), options, weight)
    assert result["model_version"] == "1" and result["id"] == ""
    sent = result["sent"]
    assert sent["parameters"] == {"reduction": "string_param", "ignore_index": "int64_param",
                                  "grad": "bool_param"}
    assert "model_version" not in sent["fields"] and "model_name" in sent["fields"]
    n = len(tensors(weight))
    assert (sent["raw_input_contents"], len(sent["contents"])) == ((n, 0) if binary else (0, n))
    # its raw path (set_data_from_numpy's default) also names each tensor's byte size
    assert sent["input_parameters"] == {
        tensor: {"binary_data_size": "int64_param"} if binary else {}
        for tensor in tensors(weight)}


def test_kserve_grpc_client_cannot_send_a_float_option(kserve) -> None:
    """The client refuses before sending: label_smoothing needs REST (or tritonclient)."""
    error = kserve["grpc-float"]["error"]
    assert error["type"] == "InvalidInput" and "invalid parameter value: 0.1" in error["message"]


# --- tritonclient, the same calls ---------------------------------------------------------------

@pytest.fixture(scope="module")
def triton_http_client(server) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}",
                                               network_timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="module")
def triton_grpc_client(server) -> Iterator[triton_grpc.InferenceServerClient]:
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


CASES = [(SMOOTH, False), (SMOOTH, True), (SUM, True)]
CASE_IDS = ["smooth-ignore", "smooth-ignore-weight", "sum-ignore-weight"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("options", "weight"), CASES, ids=CASE_IDS)
def test_tritonclient_http(triton_http_client, options, weight: bool, binary: bool) -> None:
    inputs = [triton_http.InferInput(n, list(a.shape), np_to_triton_dtype(a.dtype))
              .set_data_from_numpy(a, binary_data=binary) for n, a in tensors(weight).items()]
    outputs = [triton_http.InferRequestedOutput(n, binary_data=binary)
               for n in ("loss", "grad_input")]
    result = triton_http_client.infer(LOSS, inputs, outputs=outputs, request_id="r1",
                                      parameters={**options, "grad": True})
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        LOSS, "1", "r1")
    check({n: result.as_numpy(n) for n in ("loss", "grad_input")}, options, weight)


@pytest.mark.parametrize(("options", "weight"), CASES, ids=CASE_IDS)
def test_tritonclient_grpc(triton_grpc_client, options, weight: bool) -> None:
    inputs = [triton_grpc.InferInput(n, list(a.shape), np_to_triton_dtype(a.dtype))
              .set_data_from_numpy(a) for n, a in tensors(weight).items()]
    result = triton_grpc_client.infer(LOSS, inputs, request_id="r2", client_timeout=30,
                                      parameters={**options, "grad": True})
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (LOSS, "1", "r2")
    check({o.name: result.as_numpy(o.name) for o in response.outputs}, options, weight)
