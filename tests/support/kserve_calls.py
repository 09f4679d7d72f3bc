"""Run KServe's own V2 clients (``InferenceRESTClient``, ``InferenceGRPCClient``) in a process
of their own, and the helper that does so from a test.

Why a process of their own: kserve's generated stubs (``grpc_predict_v2.proto``) and
tritonclient's (``grpc_service.proto``) both add the ``inference`` package's messages to
protobuf's default descriptor pool, and whichever of the two is imported second fails with
``duplicate symbol 'inference.ServerLiveRequest'``. ``import kserve`` imports its stubs, and the
test session imports ``tritonclient.grpc`` (lossd keeps its copy in a private pool, so lossd
itself imports beside either). The runner below therefore imports kserve, never tritonclient.

As a script (``python -I kserve_calls.py``) it reads a JSON list of calls on stdin and writes a
JSON list of results on stdout. A call::

    {"name": str, "transport": "rest" | "grpc", "url": str, "model": str,
     "inputs": [{"name", "datatype", "shape", "b64"}], "binary": bool,
     "parameters": {...}}

``binary`` means ``set_data_from_numpy(binary_data=True)``: the binary tensor extension over
REST, ``raw_input_contents`` over gRPC; otherwise JSON ``data`` / typed ``contents``.
A result is ``{"name", "outputs": {name: {"datatype", "shape", "b64"}}, "id", "model_name",
"model_version", "sent": {...}}`` or ``{"name", "error": {"type", "status" | "code",
"message"}}``; ``sent`` is what the client put on the wire (REST: content type and the JSON
header it posted, and whether the answer came with binary outputs; gRPC: the
``ModelInferRequest``'s fields and parameter kinds).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

SCRIPT = Path(__file__).resolve()
KSERVE_VERSION = "0.21.0"


def encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def decode(tensor: dict[str, Any], dtype: np.dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(tensor["b64"]), dtype).reshape(tensor["shape"])


def run_calls(calls: list[dict[str, Any]], python: str | None = None,
              timeout: float = 120.0) -> dict[str, dict[str, Any]]:
    """Run ``calls`` through kserve in one child process (kserve's import costs seconds, so
    every call of a test module goes in one batch); results by call name."""
    proc = subprocess.run(
        [python or sys.executable, "-I", str(SCRIPT)], input=json.dumps(calls), text=True,
        capture_output=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(
            f"the kserve runner failed ({proc.returncode}); kserve=={KSERVE_VERSION} must be "
            f"installed beside the test requirements:\n{proc.stderr[-4000:]}")
    return {r["name"]: r for r in json.loads(proc.stdout)}


# --- the child process --------------------------------------------------------------------------

async def _main(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import grpc
    import httpx
    from kserve import (
        InferenceGRPCClient,
        InferenceRESTClient,
        InferInput,
        InferRequest,
        RESTConfig,
    )
    from kserve.errors import InferenceError, InvalidInput
    from kserve.utils.numpy_codec import to_np_dtype

    class Recorder(httpx.AsyncBaseTransport):
        """Passes requests on and keeps them, to report what the client sent."""

        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()
            self.requests: list[httpx.Request] = []
            self.responses: list[httpx.Response] = []

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            self.responses.append(await self.inner.handle_async_request(request))
            return self.responses[-1]

        async def aclose(self) -> None:
            await self.inner.aclose()

    def request_of(call: dict[str, Any]) -> InferRequest:
        inputs = []
        for spec in call["inputs"]:
            array = np.frombuffer(base64.b64decode(spec["b64"]), to_np_dtype(spec["datatype"]))
            tensor = InferInput(spec["name"], list(spec["shape"]), spec["datatype"])
            tensor.set_data_from_numpy(array.reshape(spec["shape"]), binary_data=call["binary"])
            inputs.append(tensor)
        return InferRequest(model_name=call["model"], infer_inputs=inputs,
                            parameters=call.get("parameters"))

    def outputs_of(response: Any) -> dict[str, Any]:
        out = {}
        for tensor in response.outputs:
            array = tensor.as_numpy()
            out[tensor.name] = {"datatype": tensor.datatype, "shape": list(array.shape),
                                "b64": encode(array)}
        return out

    def grpc_sent(request: Any) -> dict[str, Any]:
        message = request.to_grpc()
        return {"fields": sorted(f.name for f, _ in message.ListFields()),
                "parameters": {k: v.WhichOneof("parameter_choice")
                               for k, v in message.parameters.items()},
                "input_parameters": {t.name: {k: v.WhichOneof("parameter_choice")
                                              for k, v in t.parameters.items()}
                                     for t in message.inputs},
                "raw_input_contents": len(message.raw_input_contents),
                "contents": [t.name for t in message.inputs if t.HasField("contents")]}

    results = []
    recorder = Recorder()
    rest = InferenceRESTClient(RESTConfig(transport=recorder, protocol="v2", timeout=30))
    grpc_clients: dict[str, InferenceGRPCClient] = {}
    try:
        for call in calls:
            result: dict[str, Any] = {"name": call["name"]}
            try:
                request = request_of(call)
                if call["transport"] == "rest":
                    response = await rest.infer(call["url"], request, model_name=call["model"])
                    sent = recorder.requests[-1]
                    length = sent.headers.get("inference-header-content-length")
                    header = sent.content if length is None else sent.content[:int(length)]
                    result["sent"] = {"url": str(sent.url),
                                      "content_type": sent.headers.get("content-type"),
                                      "header_length": length, "body": json.loads(header),
                                      "answer_header_length": recorder.responses[-1].headers.get(
                                          "inference-header-content-length")}
                else:
                    result["sent"] = grpc_sent(request_of(call))
                    if call["url"] not in grpc_clients:
                        grpc_clients[call["url"]] = InferenceGRPCClient(call["url"], timeout=30)
                    response = await grpc_clients[call["url"]].infer(request)
                result.update(outputs=outputs_of(response), id=response.id,
                              model_name=response.model_name,
                              model_version=response.model_version)
            except httpx.HTTPStatusError as e:
                result["error"] = {"type": type(e).__name__, "status": e.response.status_code,
                                   "message": e.response.text}
            except grpc.aio.AioRpcError as e:
                result["error"] = {"type": type(e).__name__, "code": e.code().name,
                                   "message": e.details()}
            except (InvalidInput, InferenceError) as e:
                result["error"] = {"type": type(e).__name__, "message": str(e)}
            results.append(result)
    finally:
        await rest.close()
        for client in grpc_clients.values():
            await client.close()
    return results


if __name__ == "__main__":
    import asyncio
    import logging

    logging.disable(logging.CRITICAL)  # kserve logs every failed call with its traceback
    json.dump(asyncio.run(_main(json.load(sys.stdin))), sys.stdout)
