"""``lossd.v1.LossService``: ``Compute``, ``ComputeStream`` and ``ListLosses``.

Handlers take the request's bytes and parse them here (:mod:`.wire`), so that garbage answers
INVALID_ARGUMENT (grpc's own deserializer failure would be INTERNAL) and raw tensor bytes become
arrays without a copy.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ... import codec
from ..._proto.lossd.v1 import lossd_pb2 as pb
from ...calls import Call, CallBuilder
from ...engine import Engine
from ...engine.evaluation import StreamEvaluation
from ...errors import LossdError
from ...losses import Result
from ...settings import Settings
from ..describe import describe_all
from . import wire
from .guard import Context, Label, answered, guarded, stream_guarded
from .tensors import decode_tensor, encode_aggregate, encode_tensor, option_value

SERVICE = "lossd.v1.LossService"
PROTOCOL = "grpc"


def decode_call(request: pb.ComputeRequest, inputs: Mapping[str, Any], limits: codec.Limits,
                timeout: float | None) -> Call:
    """A ``ComputeRequest`` as a :class:`Call`: ``request`` gives loss, options and grad,
    ``inputs`` the tensors by name (see :func:`wire.compute_request`)."""
    call = CallBuilder(request.loss, limits)
    options = {key: request.options[key] for key in request.options}
    tensor_options = {k: v.tensor for k, v in options.items() if v.WhichOneof("kind") == "tensor"}
    call.check_count(len(inputs) + len(tensor_options))
    for group, tensors in (("inputs", inputs), ("options", tensor_options)):
        for name, tensor in tensors.items():
            field = f"{group}.{name[:64]}"
            array, encoding, bf16 = decode_tensor(tensor, field, limits)
            call.add_tensor(name, array, field=field, bfloat16=bf16, encoding=encoding)
    call.options = {k: option_value(v) for k, v in options.items() if k not in tensor_options}
    call.grad, call.timeout = request.grad, timeout
    return call.build()


def encode_answer(call: Call, result: Result) -> pb.ComputeResponse:
    """The loss and gradients in the form (raw or packed) of the call's first tensor, and the
    texts of torch's warnings for the call."""
    raw = call.encoding is not codec.Encoding.DATA
    response = pb.ComputeResponse(loss=encode_tensor(result.loss, raw, call.loss_bfloat16),
                                  warnings=result.warnings)
    for name, g in result.grads.items():
        response.grads[name].CopyFrom(encode_tensor(g, raw, name in call.bfloat16))
    return response


def error_message(error: LossdError) -> pb.Error:
    """An error inside a stream as its ``Error`` message."""
    return pb.Error(code=error.code.value, message=error.message, field=error.field or "")


class LossService:
    """Handlers of ``lossd.v1.LossService`` (bytes in, messages out)."""

    NAME = SERVICE
    UNARY = ("Compute", "ListLosses")
    STREAM = ("ComputeStream",)

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.engine, self.metrics = engine, engine.metrics
        self.limits = codec.Limits.of(settings)

    @guarded(PROTOCOL)
    async def Compute(self, data: bytes, context: Context, label: Label) -> pb.ComputeResponse:
        """One loss (and its gradients, if asked) for one request."""
        request, inputs = wire.compute_request(pb.ComputeRequest, data)
        label.name = request.loss
        call = decode_call(request, inputs, self.limits, context.time_remaining())
        return encode_answer(call, await self.engine.run(call))

    @stream_guarded(PROTOCOL)
    async def ComputeStream(self, requests: AsyncIterator[bytes], context: Context
                            ) -> AsyncIterator[pb.StreamResponse]:
        """One answer per request, in order; a bad request (or one whose loss, options, dtypes
        or per-sample shapes differ from the first) answers an Error, is not counted, and the
        stream goes on. When the client half-closes: the Aggregate over the counted batches,
        listing the refused ones (``refused``: position and Error)."""
        evaluation = StreamEvaluation(self.engine)
        index = -1
        async for data in requests:
            started, loss, index = time.perf_counter(), "unknown", index + 1
            try:
                request, inputs = wire.compute_request(pb.ComputeRequest, data)
                loss = request.loss
                call = decode_call(request, inputs, self.limits, context.time_remaining())
                response = encode_answer(call, await evaluation.add(call))
            except LossdError as error:
                answered(self.metrics, loss, PROTOCOL, error, started)
                evaluation.refuse(index, error)
                yield pb.StreamResponse(error=error_message(error))
            else:
                answered(self.metrics, loss, PROTOCOL, None, started)
                yield pb.StreamResponse(response=response)
        aggregate = encode_aggregate(evaluation.result())
        aggregate.refused.extend(pb.RefusedBatch(index=i, error=error_message(error))
                                 for i, error in evaluation.refused)
        yield pb.StreamResponse(aggregate=aggregate)

    @guarded(None)
    async def ListLosses(self, data: bytes, context: Context, label: Label
                         ) -> pb.ListLossesResponse:
        """Every registered loss with its tensors and options (as ``/v1/losses``)."""
        wire.parse(pb.ListLossesRequest, data)
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
