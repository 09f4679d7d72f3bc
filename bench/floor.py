"""Floor servers: receive the same bytes as lossd and answer at once, computing nothing.

    python -m bench.floor grpc PORT          bare grpc.aio server (same server options as lossd)
    python -m bench.floor rest PORT          bare ASGI app under the same uvicorn settings
    python -m bench.floor grpc-decode PORT   the grpc floor, plus decoding each request
    python -m bench.floor rest-decode PORT   the rest floor, plus decoding each request

The REST floors answer any path; a V2 path (``/v2/...``) gets a V2 answer of the same size as
lossd's, and its body is decoded as V2 JSON.

The bare floors bound what any service on this transport can do on this machine: every lossd
figure is a ratio against the floor measured in the same run. The decode floors also turn the
request into NumPy arrays with the plain library calls (upb's ``FromString`` and
``np.frombuffer``; ``orjson.loads`` and ``np.asarray`` or base64), still computing nothing: the
least any Python service must do with a request, so their ratio to the bare floor is a ceiling
for small requests (lossd's own readers beat these plain calls on large ones).
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
import numpy as np
import orjson
import pybase64
import uvicorn
import uvloop

from lossd._malloc import tune_malloc
from lossd._proto.inference import grpc_predict_v2_pb2 as v2
from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd.api.rpc.server import server_options
from lossd.api.rpc.tensors import DTYPE_NAMES
from lossd.api.v2 import DATATYPES
from lossd.codec import NUMPY_DTYPES
from lossd.settings import Settings

# what lossd answers for a reduced float32 loss: the floor answers the same size
GRPC_ANSWER = pb.ComputeResponse(loss=pb.Tensor(dtype=pb.FLOAT32, raw=b"\0\0\0\0")
                                 ).SerializeToString()
REST_ANSWER = b'{"loss":0.0}'
V2_REST_ANSWER = (b'{"model_name":"mse","model_version":"1","outputs":[{"name":"loss",'
                  b'"datatype":"FP32","shape":[],"data":[0.0]}]}')
# lossd's own dtype tables (enum value / V2 datatype -> wire name -> NumPy), bfloat16 aside
NATIVE_DTYPES = {value: NUMPY_DTYPES[name] for value, name in DTYPE_NAMES.items()
                 if name in NUMPY_DTYPES}
V2_DTYPES = {v2_name: NUMPY_DTYPES[name] for v2_name, name in DATATYPES.items()
             if name in NUMPY_DTYPES}


def decode_native(request: bytes) -> dict[str, np.ndarray]:
    """A ``lossd.v1.ComputeRequest`` with raw tensors: its inputs by name."""
    inputs = pb.ComputeRequest.FromString(request).inputs
    return {name: np.frombuffer(t.raw, NATIVE_DTYPES[t.dtype]).reshape(tuple(t.shape))
            for name, t in ((name, inputs[name]) for name in inputs)}


def decode_v2(request: bytes) -> dict[str, np.ndarray]:
    """An ``inference.ModelInferRequest`` with raw_input_contents: its inputs by name."""
    message = v2.ModelInferRequest.FromString(request)
    return {i.name: np.frombuffer(raw, V2_DTYPES[i.datatype]).reshape(tuple(i.shape))
            for i, raw in zip(message.inputs, message.raw_input_contents)}


def decode_json(body: bytes) -> dict[str, np.ndarray]:
    """A lossd REST body with nested lists or ``b64`` tensors: its inputs by name."""
    def array(value: Any) -> np.ndarray:
        if isinstance(value, dict):
            raw = pybase64.b64decode(value["b64"], validate=True)
            return np.frombuffer(raw, np.dtype(value["dtype"])).reshape(value["shape"])
        return np.asarray(value)
    return {name: array(value) for name, value in orjson.loads(body)["inputs"].items()}


def decode_v2_json(body: bytes) -> dict[str, np.ndarray]:
    """A V2 JSON infer body with ``data`` lists: its inputs by name."""
    return {i["name"]: np.asarray(i["data"], V2_DTYPES[i["datatype"]]).reshape(i["shape"])
            for i in orjson.loads(body)["inputs"]}


async def serve_grpc(port: int, decode: bool) -> None:
    async def compute(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if decode:
            decode_native(request)
        return GRPC_ANSWER

    async def infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if decode:
            decode_v2(request)
        return GRPC_ANSWER

    settings = Settings(grpc_port=port, host="127.0.0.1", max_body_bytes=2**30)  # any size
    server = grpc.aio.server(options=server_options(settings))

    def raw(handler: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(handler, request_deserializer=None,
                                                   response_serializer=None)
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("lossd.v1.LossService", {"Compute": raw(compute)}),
        grpc.method_handlers_generic_handler("inference.GRPCInferenceService",
                                             {"ModelInfer": raw(infer)})))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def rest_app(decode: bool) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:  # read the whole body, as lossd must
            message = await receive()
            if decode:
                chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        v2 = scope["path"].startswith("/v2/")
        if decode:
            (decode_v2_json if v2 else decode_json)(b"".join(chunks))
        answer = V2_REST_ANSWER if v2 else REST_ANSWER
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})
    return app


def main(kind: str, port: int) -> None:
    tune_malloc()  # the same allocator settings as lossd
    transport, _, decode = kind.partition("-")
    if kind not in ("grpc", "rest", "grpc-decode", "rest-decode"):
        raise SystemExit(f"unknown floor {kind!r}")
    if transport == "grpc":
        uvloop.run(serve_grpc(port, bool(decode)))
    else:
        uvicorn.run(rest_app(bool(decode)), host="127.0.0.1", port=port, lifespan="off",
                    log_level="warning", access_log=False, http="httptools", loop="uvloop",
                    server_header=False, timeout_keep_alive=30)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
