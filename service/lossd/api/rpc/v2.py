"""Open Inference Protocol v2 over gRPC (``inference.GRPCInferenceService``) in lossd's
grpc.aio server, beside ``lossd.v1.LossService``.

``ModelInfer`` takes inputs as ``raw_input_contents`` (one little-endian byte string per input,
in order; the only way for FP16 and BF16) or as typed ``contents`` (``fp32_contents`` for FP32,
``int64_contents`` for INT64, ...), and answers with ``raw_output_contents``, as Triton does.
Like the native service, handlers take raw bytes and parse them here, so garbage answers
INVALID_ARGUMENT. The message classes live in a descriptor pool of their own (see
protos/generate.py); :func:`.server.reflection_pool` lets server reflection see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ... import codec
from ..._proto.inference import grpc_predict_v2_pb2 as pb
from ...calls import Call
from ...engine import Engine
from ...errors import InvalidArgument
from ...losses import Result
from ...settings import Settings
from .. import v2
from .guard import Context, Label, guarded
from .wire import infer_request, parse

SERVICE = "inference.GRPCInferenceService"
BINARY_SIZE = "binary_data_size"
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
           limits: codec.Limits, timeout: float | None) -> tuple[Call, v2.Outputs]:
    """A ``ModelInferRequest`` as a :class:`Call` and the outputs it asks for. ``raw``: its
    raw_input_contents (see :func:`wire.infer_request`); ``timeout``: the call's deadline."""
    call = v2.builder(request.model_name, request.model_version, limits)
    v2.set_parameters(call, {k: _parameter(v, f"parameters.{k[:64]}")
                             for k, v in request.parameters.items()})
    call.timeout = v2.earliest(call.timeout, timeout)
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"raw_input_contents: one per input, in order; got {len(raw)} "
                              f"for {len(request.inputs)} inputs", field="raw_input_contents")
    call.check_count(len(request.inputs))
    for i, tensor in enumerate(request.inputs):
        where = f"inputs.{tensor.name[:64]}"
        parameters = dict(tensor.parameters)
        size = parameters.pop(BINARY_SIZE, None)  # KServe's client states each raw size
        if parameters:
            raise InvalidArgument(f"{where}.parameters: unsupported "
                                  f"{sorted(parameters)[0][:64]!r}; only {BINARY_SIZE}",
                                  field=where)
        if size is not None and (not raw or size.WhichOneof("parameter_choice") != "int64_param"
                                 or size.int64_param != len(raw[i])):
            raise InvalidArgument(f"{where}.parameters.{BINARY_SIZE}: expected the byte length "
                                  f"of its raw_input_contents entry", field=where)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(f"{where}: contents must be empty when "
                                      f"raw_input_contents is used", field=where)
            v2.add_input(call, tensor.name, tensor.datatype, list(tensor.shape), raw=raw[i])
        else:
            v2.add_input(call, tensor.name, tensor.datatype, list(tensor.shape),
                         values=_values(tensor, where))
    outputs = v2.Outputs()
    if request.outputs:
        for out in request.outputs:
            if out.parameters:
                raise InvalidArgument(f"outputs.{out.name[:64]}.parameters: unsupported "
                                      f"{sorted(out.parameters)[0][:64]!r}", field="outputs")
        outputs = v2.Outputs.ask(call, [out.name for out in request.outputs])
    return call.build(), outputs


def encode(request: pb.ModelInferRequest, call: Call, outputs: v2.Outputs, result: Result
           ) -> pb.ModelInferResponse:
    """The response: every output as ``raw_output_contents``, as Triton answers."""
    response = pb.ModelInferResponse(model_name=call.loss, model_version=v2.VERSION,
                                     id=request.id)
    for key, text in v2.warnings_parameter(result).items():
        response.parameters[key].string_param = text
    for name, array, bf16 in outputs.of(call, result):
        response.outputs.add(name=name, datatype=v2.datatype_of(array, bf16), shape=array.shape)
        response.raw_output_contents.append(codec.to_bytes(array, bf16))
    return response


class InferenceService:
    """Handlers of ``inference.GRPCInferenceService`` (bytes in, messages out)."""

    NAME = SERVICE
    UNARY = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
             "ModelInfer")
    STREAM = ()

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.engine, self.metrics = engine, engine.metrics
        self.limits = codec.Limits.of(settings)

    @guarded(None)
    async def ServerLive(self, data: bytes, context: Context, label: Label
                         ) -> pb.ServerLiveResponse:
        """Always live while the server answers."""
        parse(pb.ServerLiveRequest, data)
        return pb.ServerLiveResponse(live=True)

    @guarded(None)
    async def ServerReady(self, data: bytes, context: Context, label: Label
                          ) -> pb.ServerReadyResponse:
        """Ready until the drain starts."""
        parse(pb.ServerReadyRequest, data)
        return pb.ServerReadyResponse(ready=self.engine.ready)

    @guarded(None)
    async def ServerMetadata(self, data: bytes, context: Context, label: Label
                             ) -> pb.ServerMetadataResponse:
        """Server name, version and protocol extensions."""
        parse(pb.ServerMetadataRequest, data)
        return pb.ServerMetadataResponse(**v2.server_metadata())

    @guarded(None)
    async def ModelReady(self, data: bytes, context: Context, label: Label
                         ) -> pb.ModelReadyResponse:
        """Whether a model (a loss) is ready; NOT_FOUND for an unknown model or version."""
        request = parse(pb.ModelReadyRequest, data)
        v2.model(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.engine.ready)

    @guarded(None)
    async def ModelMetadata(self, data: bytes, context: Context, label: Label
                            ) -> pb.ModelMetadataResponse:
        """A loss as a V2 model: its input and output tensors with datatypes and shapes."""
        request = parse(pb.ModelMetadataRequest, data)
        info = v2.model_metadata(v2.model(request.name, request.version))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=info["name"], versions=info["versions"], platform=info["platform"],
            inputs=[tensor(**t) for t in info["inputs"]],
            outputs=[tensor(**t) for t in info["outputs"]])

    @guarded(PROTOCOL)
    async def ModelInfer(self, data: bytes, context: Context, label: Label
                         ) -> pb.ModelInferResponse:
        """Compute a loss (and gradients, when outputs ask for them) from V2 tensors."""
        request, raw = infer_request(pb.ModelInferRequest, data)
        label.name = request.model_name
        call, outputs = decode(request, raw, self.limits, context.time_remaining())
        return encode(request, call, outputs, await self.engine.run(call))
