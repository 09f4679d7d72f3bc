"""Open Inference Protocol v2 over gRPC (``inference.GRPCInferenceService``) in lossd's
grpc.aio server, beside ``lossd.v1.LossService``.

``ModelInfer`` takes inputs as ``raw_input_contents`` (one little-endian byte string per input,
in order; the only way for FP16 and BF16) or as typed ``contents`` (``fp32_contents`` for FP32,
``int64_contents`` for INT64, ...), and answers with ``raw_output_contents``, as Triton does.
Like the native service, handlers take raw bytes and parse them here, so garbage answers
INVALID_ARGUMENT. The message classes live in a descriptor pool of their own (see
protos/generate.py); :func:`reflection_pool` lets server reflection see them beside the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool

from .._proto.inference import grpc_predict_v2_pb2 as pb
from ..engine import Engine
from ..errors import ErrorCode, InvalidArgument, LossdError
from ..losses import REGISTRY
from ..settings import Settings
from . import codec, v2
from .grpc_native import _abort
from .wire import infer_request, parse

log = logging.getLogger("lossd.v2")
SERVICE = "inference.GRPCInferenceService"
PROTOCOL = "v2-grpc"
CONTENTS = {  # datatype -> the InferTensorContents field that carries it
    "BOOL": "bool_contents", "UINT8": "uint_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
}
CONTENT_FIELDS = ("bool_contents", "int_contents", "int64_contents", "uint_contents",
                  "uint64_contents", "fp32_contents", "fp64_contents", "bytes_contents")


def _parameter(value: pb.InferParameter, field: str) -> Any:
    kind = value.WhichOneof("parameter_choice")
    if kind is None:
        raise InvalidArgument(f"{field}: parameter without a value", field=field)
    return getattr(value, kind)


def _values(tensor: pb.ModelInferRequest.InferInputTensor, where: str) -> list[Any]:
    """The typed contents of one input (the field must match the datatype)."""
    filled = [f for f in CONTENT_FIELDS if len(getattr(tensor.contents, f))]
    expected = CONTENTS.get(tensor.datatype)
    if expected is None:
        if tensor.datatype in v2.DATATYPES:  # FP16, BF16
            raise InvalidArgument(f"{where}: {tensor.datatype} travels in raw_input_contents "
                                  f"only", field=where)
        v2.wire_dtype(tensor.datatype, f"{where}.datatype")  # raises: unknown datatype
        raise AssertionError(f"datatype {tensor.datatype} without typed contents")
    if any(f != expected for f in filled):
        raise InvalidArgument(f"{where}: datatype {tensor.datatype} takes {expected}; got "
                              f"{', '.join(filled)}", field=where)
    return list(getattr(tensor.contents, expected))


def decode(request: pb.ModelInferRequest, raw: Sequence[bytes | memoryview],
           settings: Settings) -> v2.InferCall:
    """``raw``: the request's raw_input_contents (see :func:`wire.infer_request`)."""
    call = v2.InferCall(v2.model(request.model_name, request.model_version), settings)
    call.set_parameters({k: _parameter(v, f"parameters.{k}")
                         for k, v in request.parameters.items()})
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"raw_input_contents: one per input, in order; got {len(raw)} "
                              f"for {len(request.inputs)} inputs", field="raw_input_contents")
    for i, tensor in enumerate(request.inputs):
        where = f"inputs.{tensor.name}"
        if tensor.parameters:
            raise InvalidArgument(f"{where}.parameters: unsupported "
                                  f"{sorted(tensor.parameters)[0]!r}", field=where)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(f"{where}: contents must be empty when "
                                      f"raw_input_contents is used", field=where)
            call.add_input(tensor.name, tensor.datatype, list(tensor.shape), raw=raw[i])
        else:
            call.add_input(tensor.name, tensor.datatype, list(tensor.shape),
                           values=_values(tensor, where))
    if request.outputs:
        for out in request.outputs:
            if out.parameters:
                raise InvalidArgument(f"outputs.{out.name}.parameters: unsupported "
                                      f"{sorted(out.parameters)[0]!r}", field="outputs")
        call.request_outputs([out.name for out in request.outputs])
    return call


def encode(request: pb.ModelInferRequest, call: v2.InferCall, result: Any
           ) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=call.spec.name, model_version=v2.VERSION,
                                     id=request.id)
    for name, array, bf16 in call.outputs(result):
        response.outputs.add(name=name, datatype=v2.datatype_of(array, bf16), shape=array.shape)
        response.raw_output_contents.append(codec.to_bytes(array, bf16))
    return response


class InferenceService:
    """Handlers of inference.GRPCInferenceService (bytes in, messages out)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine, self.metrics = settings, engine, engine.metrics

    async def _guard(self, context: grpc.aio.ServicerContext,
                     work: Callable[[list[str]], Awaitable[Any]], count: bool = False) -> Any:
        """Run ``work(model)`` (which fills in the model name), mapping errors to statuses;
        with ``count``, record the request in the metrics."""
        started, code, model = time.perf_counter(), ErrorCode.INTERNAL.value, [""]
        try:
            response = await work(model)
            code = "OK"
            return response
        except LossdError as error:
            code = error.code.value
            await _abort(context, error)
        except Exception:
            log.exception("V2 gRPC call failed (model %s)", model[0])
            await _abort(context, LossdError("internal error; the incident is logged"))
        finally:
            if count:
                label = model[0] if model[0] in REGISTRY else "unknown"
                self.metrics.answered(label, PROTOCOL, code, time.perf_counter() - started)
        raise AssertionError("unreachable: abort raises")

    async def ServerLive(self, data: bytes, context: grpc.aio.ServicerContext
                         ) -> pb.ServerLiveResponse:
        async def work(model: list[str]) -> pb.ServerLiveResponse:
            parse(pb.ServerLiveRequest, data)
            return pb.ServerLiveResponse(live=True)
        return await self._guard(context, work)

    async def ServerReady(self, data: bytes, context: grpc.aio.ServicerContext
                          ) -> pb.ServerReadyResponse:
        async def work(model: list[str]) -> pb.ServerReadyResponse:
            parse(pb.ServerReadyRequest, data)
            return pb.ServerReadyResponse(ready=self.engine.ready)
        return await self._guard(context, work)

    async def ServerMetadata(self, data: bytes, context: grpc.aio.ServicerContext
                             ) -> pb.ServerMetadataResponse:
        async def work(model: list[str]) -> pb.ServerMetadataResponse:
            parse(pb.ServerMetadataRequest, data)
            return pb.ServerMetadataResponse(**v2.server_metadata())
        return await self._guard(context, work)

    async def ModelReady(self, data: bytes, context: grpc.aio.ServicerContext
                         ) -> pb.ModelReadyResponse:
        async def work(model: list[str]) -> pb.ModelReadyResponse:
            request = parse(pb.ModelReadyRequest, data)
            v2.model(request.name, request.version)
            return pb.ModelReadyResponse(ready=self.engine.ready)
        return await self._guard(context, work)

    async def ModelMetadata(self, data: bytes, context: grpc.aio.ServicerContext
                            ) -> pb.ModelMetadataResponse:
        async def work(model: list[str]) -> pb.ModelMetadataResponse:
            request = parse(pb.ModelMetadataRequest, data)
            info = v2.model_metadata(v2.model(request.name, request.version))
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=info["name"], versions=info["versions"], platform=info["platform"],
                inputs=[tensor(**t) for t in info["inputs"]],
                outputs=[tensor(**t) for t in info["outputs"]])
        return await self._guard(context, work)

    async def ModelInfer(self, data: bytes, context: grpc.aio.ServicerContext
                         ) -> pb.ModelInferResponse:
        async def work(model: list[str]) -> pb.ModelInferResponse:
            request, raw = infer_request(pb.ModelInferRequest, data)
            model[0] = request.model_name
            call = decode(request, raw, self.settings)
            result = await self.engine.compute(
                call.spec.name, call.arrays, call.options, grad=call.grad,
                timeout=call.deadline(context.time_remaining()))
            return encode(request, call, result)
        return await self._guard(context, work, count=True)

    def register(self, server: grpc.aio.Server) -> list[str]:
        """Add the handlers to ``server``; returns the service name (for reflection)."""
        identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731 - raw bytes in
        serialize = lambda m: m.SerializeToString()  # noqa: E731
        names = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
                 "ModelInfer")
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(self, name), request_deserializer=identity,
                response_serializer=serialize) for name in names}),))
        return [SERVICE]


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
    return descriptor_pool.DescriptorPool(_PoolChain(pb.DESCRIPTOR.pool,
                                                     descriptor_pool.Default()))
