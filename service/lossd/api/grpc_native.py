"""Native gRPC frontend (``lossd.v1.LossService`` on grpc.aio), plus health and reflection.

Requests are deserialized in the handlers, not by grpc, so that garbage bytes answer
INVALID_ARGUMENT (grpc's own deserializer failure would be INTERNAL). Raw tensor bytes become
arrays with ``np.frombuffer``: no copy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from .._proto.lossd.v1 import lossd_pb2 as pb
from ..engine import Engine
from ..engine.evaluation import StreamEvaluation
from ..errors import ErrorCode, InvalidArgument, LossdError
from ..losses import REGISTRY, Result, get_spec
from ..losses._aggregate import Aggregate
from ..settings import Settings
from . import codec, tls, wire
from .auth import GrpcAuth
from .describe import describe_all

log = logging.getLogger("lossd.grpc")
SERVICE = "lossd.v1.LossService"

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}
DTYPE_NAMES = {value: name.lower() for name, value in pb.DType.items()
               if value != pb.DTYPE_UNSPECIFIED}
DTYPE_VALUES = {name: value for value, name in DTYPE_NAMES.items()}
NUMPY_DTYPE_VALUES = {np.dtype(name): value for name, value in DTYPE_VALUES.items()
                      if name != "bfloat16"}  # dtype.name is a slow property: look up the dtype


def decode_tensor(t: pb.Tensor, field: str, limits: codec.Limits) -> tuple[np.ndarray, bool, bool]:
    """(array, sent raw, was bfloat16)."""
    dtype = DTYPE_NAMES.get(t.dtype)
    if dtype is None:
        raise InvalidArgument(f"{field}: dtype must be one of "
                              f"{', '.join(n.upper() for n in DTYPE_VALUES)}; got {t.dtype}",
                              field=field)
    shape = list(t.shape)
    filled = [name for name in ("double_data", "int64_data", "bool_data") if len(getattr(t, name))]
    raw = t.raw  # each access copies the bytes out of the message: read it once
    if raw or not filled:
        if filled:
            raise InvalidArgument(f"{field}: set raw or one packed list, not both", field=field)
        return codec.from_bytes(dtype, shape, raw, field, limits), True, dtype == "bfloat16"
    if len(filled) > 1:
        raise InvalidArgument(f"{field}: set exactly one of raw, double_data, int64_data, "
                              f"bool_data; got {', '.join(filled)}", field=field)
    values = getattr(t, filled[0])
    return codec.from_values(dtype, shape, values, field, limits), False, dtype == "bfloat16"


def encode_tensor(array: np.ndarray, raw: bool, bfloat16: bool = False) -> pb.Tensor:
    dtype = DTYPE_VALUES["bfloat16"] if bfloat16 else NUMPY_DTYPE_VALUES[array.dtype]
    t = pb.Tensor(dtype=dtype, shape=array.shape)
    if raw:
        t.raw = codec.to_bytes(array, bfloat16)
    elif array.dtype.kind == "f":
        t.double_data.extend((codec.bfloat16_to_float32(codec.float32_to_bfloat16(array))
                              if bfloat16 else array).ravel().tolist())
    elif array.dtype.kind == "b":
        t.bool_data.extend(array.ravel().tolist())
    else:
        t.int64_data.extend(array.ravel().tolist())
    return t


def encode_aggregate(aggregate: Aggregate) -> pb.Aggregate:
    s = aggregate.stats
    return pb.Aggregate(loss=aggregate.loss, reduction=aggregate.reduction,
                        value=encode_tensor(aggregate.value, raw=True), batches=aggregate.batches,
                        samples=s.rows, elements=s.elements, sum=s.loss_sum, weight=s.weight)


def _option(value: pb.OptionValue) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null":
        return None
    return getattr(value, kind)


class DecodedCall:
    """A ComputeRequest as arrays and options, and how to encode its answer."""

    def __init__(self, request: pb.ComputeRequest, inputs: Mapping[str, Any],
                 settings: Settings) -> None:
        """``request`` gives loss, options and grad; ``inputs`` the tensors by name (see
        :func:`wire.compute_request`)."""
        spec = get_spec(request.loss)
        limits = codec.Limits.of(settings)
        options = {key: request.options[key] for key in request.options}
        tensor_options = {k: v.tensor for k, v in options.items()
                          if v.WhichOneof("kind") == "tensor"}
        if len(inputs) + len(tensor_options) > settings.max_tensors:
            raise InvalidArgument(f"inputs: at most {settings.max_tensors} tensors",
                                  field="inputs")
        self.loss, self.grad, self.raw = request.loss, request.grad, True
        self.arrays: dict[str, np.ndarray] = {}
        self.bfloat16: set[str] = set()
        for name, tensor in [*inputs.items(), *tensor_options.items()]:
            where = f"inputs.{name}" if name in inputs else f"options.{name}"
            array, raw, bf16 = decode_tensor(tensor, where, limits)
            self.arrays[name] = array
            if bf16:
                self.bfloat16.add(name)
            if name == spec.tensors[0].name:
                self.raw = raw
        self.options = {k: _option(v) for k, v in options.items() if k not in tensor_options}

    def encode(self, result: Result) -> pb.ComputeResponse:
        bfloat16 = bool(self.bfloat16) and codec.bfloat16_result(self.arrays, self.bfloat16)
        response = pb.ComputeResponse(loss=encode_tensor(result.loss, self.raw, bfloat16))
        for name, g in result.grads.items():
            response.grads[name].CopyFrom(encode_tensor(g, self.raw, name in self.bfloat16))
        return response


class LossService:
    """Handlers of lossd.v1.LossService (bytes in, messages out)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine, self.metrics = settings, engine, engine.metrics

    def _observe(self, loss: str, code: str, started: float) -> None:
        label = loss if loss in REGISTRY else "unknown"
        self.metrics.answered(label, "grpc", code, time.perf_counter() - started)

    async def _answer(self, request: pb.ComputeRequest, inputs: Mapping[str, Any],
                      context: grpc.aio.ServicerContext) -> pb.ComputeResponse:
        call = DecodedCall(request, inputs, self.settings)
        result = await self.engine.compute(call.loss, call.arrays, call.options, grad=call.grad,
                                           timeout=context.time_remaining())
        return call.encode(result)

    async def Compute(self, data: bytes, context: grpc.aio.ServicerContext
                      ) -> pb.ComputeResponse:
        started, loss, code = time.perf_counter(), "unknown", ErrorCode.INTERNAL.value
        try:
            request, inputs = wire.compute_request(pb.ComputeRequest, data)
            loss = request.loss
            response = await self._answer(request, inputs, context)
            code = "OK"
            return response
        except LossdError as error:
            code = error.code.value
            await _abort(context, error)
        except asyncio.CancelledError:  # the caller cancelled or its deadline passed
            code = "CANCELLED"
            raise
        except Exception:
            log.exception("Compute failed")
            await _abort(context, LossdError("internal error; the incident is logged"))
        finally:
            self._observe(loss, code, started)
        raise AssertionError("unreachable: abort raises")

    async def ComputeStream(self, requests: AsyncIterator[bytes],
                            context: grpc.aio.ServicerContext) -> AsyncIterator[pb.StreamResponse]:
        """One answer per request, in order; a bad request (or one whose loss, options, dtypes
        or per-sample shapes differ from the first) answers an Error, is not counted, and the
        stream goes on. When the client half-closes: the Aggregate over the counted batches."""
        evaluation = StreamEvaluation(self.engine)
        async for data in requests:
            started, loss = time.perf_counter(), "unknown"
            try:
                request, inputs = wire.compute_request(pb.ComputeRequest, data)
                loss = request.loss
                call = DecodedCall(request, inputs, self.settings)
                response = call.encode(await evaluation.add(
                    call.loss, call.arrays, call.options, grad=call.grad,
                    timeout=context.time_remaining()))
            except LossdError as error:
                self._observe(loss, error.code.value, started)
                yield pb.StreamResponse(error=pb.Error(code=error.code.value,
                                                       message=error.message,
                                                       field=error.field or ""))
            else:
                self._observe(loss, "OK", started)
                yield pb.StreamResponse(response=response)
        yield pb.StreamResponse(aggregate=encode_aggregate(evaluation.result()))

    async def ListLosses(self, data: bytes, context: grpc.aio.ServicerContext
                         ) -> pb.ListLossesResponse:
        try:
            wire.parse(pb.ListLossesRequest, data)
        except LossdError as error:
            await _abort(context, error)
        return pb.ListLossesResponse(losses=[
            pb.LossInfo(name=d["name"], summary=d["summary"], torch=d["torch"],
                        family=d["family"],
                        tensors=[pb.TensorInfo(name=t["name"], role=t["role"], shape=t["shape"],
                                               dtypes=t["dtypes"],
                                               differentiable=t["differentiable"],
                                               optional=t["optional"]) for t in d["tensors"]],
                        options=[pb.OptionInfo(name=k, json_schema=json.dumps(v))
                                 for k, v in d["options"]["properties"].items()])
            for d in describe_all()])


async def _abort(context: grpc.aio.ServicerContext, error: LossdError) -> None:
    if error.field:  # metadata must be printable ASCII; field names echo the request
        field = error.field.encode("unicode_escape").decode("ascii")
        context.set_trailing_metadata((("lossd-field", field),))
    await context.abort(GRPC_STATUS[error.code], error.message)


def _handlers(service: LossService) -> grpc.GenericRpcHandler:
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731 - raw bytes in
    serialize = lambda m: m.SerializeToString()  # noqa: E731
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Compute": grpc.unary_unary_rpc_method_handler(
            service.Compute, request_deserializer=identity, response_serializer=serialize),
        "ComputeStream": grpc.stream_stream_rpc_method_handler(
            service.ComputeStream, request_deserializer=identity, response_serializer=serialize),
        "ListLosses": grpc.unary_unary_rpc_method_handler(
            service.ListLosses, request_deserializer=identity, response_serializer=serialize),
    })


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ]
    if settings.grpc_max_connection_age_s > 0:
        age_ms = int(settings.grpc_max_connection_age_s * 1000)
        options += [("grpc.max_connection_age_ms", age_ms),
                    ("grpc.max_connection_age_grace_ms", max(age_ms // 10, 1000))]
    return options


class GrpcServer:
    """The grpc.aio server with LossService, health and reflection; ``port`` once started."""

    def __init__(self, settings: Settings, engine: Engine,
                 extra_services: list[Callable[[grpc.aio.Server], list[str]]] | None = None,
                 reflection_pool: Any = None) -> None:
        self.settings = settings
        keys = settings.keys()
        self.server = grpc.aio.server(options=server_options(settings),
                                      interceptors=[GrpcAuth(keys)] if keys else None)
        self.server.add_generic_rpc_handlers((_handlers(LossService(settings, engine)),))
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME]
        for add in extra_services or []:
            names += add(self.server)
        self.services = names
        reflection.enable_server_reflection(names, self.server, pool=reflection_pool)
        self.port = tls.add_port(self.server, f"{settings.host}:{settings.grpc_port}", settings)

    async def start(self) -> None:
        await self.server.start()
        await self.set_serving(True)

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *self.services):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)


def create_grpc_server(settings: Settings, engine: Engine,
                       extra_services: list[Callable[[grpc.aio.Server], list[str]]] | None = None
                       ) -> GrpcServer:
    from .v2_grpc import InferenceService, reflection_pool  # here: v2_grpc builds on this module
    return GrpcServer(settings, engine, [InferenceService(settings, engine).register,
                                         *(extra_services or [])], reflection_pool())

