"""Floor servers: receive the same bytes as lossd and answer at once, computing nothing.

    python -m bench.floor grpc PORT      bare grpc.aio server (same server options as lossd)
    python -m bench.floor rest PORT      bare ASGI app under the same uvicorn settings

They bound what any service on this transport can do on this machine: every lossd figure is a
ratio against the floor measured in the same run.
"""

from __future__ import annotations

import sys

import grpc
import uvicorn
import uvloop

from service._malloc import tune_malloc
from service._proto.lossd.v1 import lossd_pb2 as pb
from service.api.grpc_native import server_options
from service.settings import Settings

# what lossd answers for a reduced float32 loss: the floor answers the same size
GRPC_ANSWER = pb.ComputeResponse(loss=pb.Tensor(dtype=pb.FLOAT32, raw=b"\0\0\0\0")
                                 ).SerializeToString()
REST_ANSWER = b'{"loss":0.0}'


async def serve_grpc(port: int) -> None:
    async def compute(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return GRPC_ANSWER

    settings = Settings(grpc_port=port, host="127.0.0.1", max_body_bytes=2**30)  # any size
    server = grpc.aio.server(options=server_options(settings))
    handler = grpc.unary_unary_rpc_method_handler(compute, request_deserializer=None,
                                                  response_serializer=None)
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("lossd.v1.LossService", {"Compute": handler}),
        grpc.method_handlers_generic_handler("inference.GRPCInferenceService",
                                             {"ModelInfer": handler})))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def rest_app(scope: dict, receive, send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as lossd must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(REST_ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": REST_ANSWER})


def main(kind: str, port: int) -> None:
    tune_malloc()  # the same allocator settings as lossd
    if kind == "grpc":
        uvloop.run(serve_grpc(port))
    else:
        uvicorn.run(rest_app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                    access_log=False, http="httptools", loop="uvloop", server_header=False,
                    timeout_keep_alive=30)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
