"""gRPC frontend (grpc.aio): native, V2 and run services over one guard; see :mod:`.server`."""

from .server import GrpcServer, create_grpc_server

__all__ = ["GrpcServer", "create_grpc_server"]
