"""The gRPC server: every service, health and reflection registered in one place.

    lossd.v1.LossService             Compute, ComputeStream, ListLosses   (:mod:`.native`)
    inference.GRPCInferenceService   the Open Inference Protocol v2       (:mod:`.v2`)
    lossd.v1.RunService              evaluation runs                      (:mod:`.runs`)
    grpc.health.v1.Health            SERVING until the drain starts
    server reflection                every service above, V2's descriptors included

Handlers take raw bytes (no deserializer): each parses its request itself, so that garbage
answers INVALID_ARGUMENT. API keys (:mod:`.auth`) and TLS (:mod:`lossd.api.tls`) when set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from ..._proto.inference import grpc_predict_v2_pb2 as v2_pb
from ...engine import Engine
from ...runs import RunManager
from ...settings import Settings
from .. import tls
from .auth import GrpcAuth
from .native import LossService
from .runs import RunService
from .v2 import InferenceService


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    """grpc.aio channel arguments from the settings (sizes, metadata size, SO_REUSEPORT,
    connection idle time and age)."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        # soft and hard limit alike: between them grpc refuses only some requests at random
        ("grpc.max_metadata_size", settings.grpc_max_metadata_bytes),
        ("grpc.absolute_max_metadata_size", settings.grpc_max_metadata_bytes),
    ]
    if settings.grpc_idle_timeout_s > 0:
        options.append(("grpc.max_connection_idle_ms", int(settings.grpc_idle_timeout_s * 1000)))
    if settings.grpc_max_connection_age_s > 0:
        age_ms = int(settings.grpc_max_connection_age_s * 1000)
        options += [("grpc.max_connection_age_ms", age_ms),
                    ("grpc.max_connection_age_grace_ms", max(age_ms // 10, 1000))]
    return options


def _handlers(service: Any) -> grpc.GenericRpcHandler:
    """One service's methods (its ``UNARY`` and ``STREAM`` names), raw bytes in."""
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    serialize: Callable[[Any], bytes] = lambda m: m.SerializeToString()  # noqa: E731
    methods = {name: grpc.unary_unary_rpc_method_handler(
        getattr(service, name), request_deserializer=identity, response_serializer=serialize)
        for name in service.UNARY}
    methods |= {name: grpc.stream_stream_rpc_method_handler(
        getattr(service, name), request_deserializer=identity, response_serializer=serialize)
        for name in service.STREAM}
    return grpc.method_handlers_generic_handler(service.NAME, methods)


class GrpcServer:
    """The grpc.aio server with every service; ``port`` is the bound port."""

    def __init__(self, settings: Settings, engine: Engine, runs: RunManager | None = None
                 ) -> None:
        keys = settings.keys()
        self.server = grpc.aio.server(options=server_options(settings),
                                      interceptors=[GrpcAuth(keys)] if keys else None)
        services: list[Any] = [LossService(settings, engine), InferenceService(settings, engine)]
        if runs is not None:
            services.append(RunService(settings, runs))
        self.server.add_generic_rpc_handlers(tuple(_handlers(s) for s in services))
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.services = [s.NAME for s in services] + [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(self.services, self.server, pool=reflection_pool())
        self.port = tls.add_port(self.server, f"{settings.host}:{settings.grpc_port}", settings)

    async def start(self) -> None:
        """Start serving, every service SERVING in the health service."""
        await self.server.start()
        await self.set_serving(True)

    async def set_serving(self, serving: bool) -> None:
        """Health of the server and of each service (NOT_SERVING once draining)."""
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *self.services):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Stop listening and send every connection a GOAWAY; calls still running get
        ``grace`` seconds before they are cancelled. Calls received but not yet handed to a
        handler are cancelled at once (grpc/grpc#41785): stop only once clients stopped
        sending here (see :func:`lossd.serve.serve`)."""
        await self.server.stop(grace)


def create_grpc_server(settings: Settings, engine: Engine, runs: RunManager | None = None
                       ) -> GrpcServer:
    """The gRPC server around ``engine`` (the caller starts, drains and stops it); the run
    service is registered when ``runs`` is given."""
    return GrpcServer(settings, engine, runs)


class _PoolChain:
    """A descriptor database answering from several pools, first match wins."""

    def __init__(self, *pools: descriptor_pool.DescriptorPool) -> None:
        self.pools = pools

    def _find(self, lookup: str, name: str) -> descriptor_pb2.FileDescriptorProto:
        for pool in self.pools:
            try:
                found = getattr(pool, lookup)(name)
            except KeyError:
                continue
            proto = descriptor_pb2.FileDescriptorProto()
            found.CopyToProto(proto)
            return proto
        raise KeyError(name)

    def FindFileByName(self, name: str) -> descriptor_pb2.FileDescriptorProto:
        return self._find("FindFileByName", name)

    def FindFileContainingSymbol(self, name: str) -> descriptor_pb2.FileDescriptorProto:
        return self._find("FindFileContainingSymbol", name)


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """Descriptors for server reflection: the V2 protocol's, then protobuf's default pool."""
    return descriptor_pool.DescriptorPool(_PoolChain(v2_pb.DESCRIPTOR.pool,
                                                     descriptor_pool.Default()))
