"""gRPC ``lossd.v1.RunService``: evaluation runs (see :mod:`lossd.runs`), bytes in, messages
out, errors through the one gRPC status table (``grpc_native.GRPC_STATUS``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from .._proto.lossd.v1 import runs_pb2 as rpb
from ..errors import InvalidArgument, LossdError
from ..runs import RunManager, RunView
from ..settings import Settings
from . import codec
from .grpc_native import _abort, _option, decode_tensor, encode_aggregate
from .wire import parse

log = logging.getLogger("lossd.grpc")
SERVICE = "lossd.v1.RunService"


def run_message(run: RunView) -> rpb.Run:
    return rpb.Run(run_id=run.run_id, loss=run.definition.loss, state=run.state,
                   expected_batches=run.definition.expected_batches, complete=run.complete,
                   aggregate=encode_aggregate(run.aggregate), workers=run.workers,
                   signature=run.signature, created=run.created, updated=run.updated)


class RunService:
    """Handlers of lossd.v1.RunService."""

    def __init__(self, settings: Settings, runs: RunManager) -> None:
        self.settings, self.runs, self.metrics = settings, runs, runs.engine.metrics
        self.limits = codec.Limits.of(settings)

    async def _handle(self, message_type: type, data: bytes, context: grpc.aio.ServicerContext,
                      work: Callable[[Any], Awaitable[Any]]) -> Any:
        started, code = time.perf_counter(), "INTERNAL"
        try:
            response = await work(parse(message_type, data))
            code = "OK"
            return response
        except LossdError as error:
            code = error.code.value
            await _abort(context, error)
        except Exception:
            log.exception("RunService failed")
            await _abort(context, LossdError("internal error; the incident is logged"))
        finally:
            self.metrics.answered("runs", "grpc", code, time.perf_counter() - started)
        raise AssertionError("unreachable: abort raises")

    def _tensors(self, tensors: Any, where: str) -> dict[str, Any]:
        if len(tensors) > self.settings.max_tensors:
            raise InvalidArgument(f"{where}: at most {self.settings.max_tensors} tensors",
                                  field=where)
        return {name: decode_tensor(t, f"{where}.{name}", self.limits)[0]
                for name, t in tensors.items()}

    async def CreateRun(self, data: bytes, context: grpc.aio.ServicerContext) -> rpb.Run:
        async def work(request: rpb.CreateRunRequest) -> rpb.Run:
            tensor_options = {k: v.tensor for k, v in request.options.items()
                              if v.WhichOneof("kind") == "tensor"}
            options = {k: _option(v) for k, v in request.options.items()
                       if k not in tensor_options}
            return run_message(await self.runs.create(
                request.loss, options, self._tensors(tensor_options, "options"),
                expected_batches=request.expected_batches, run_id=request.run_id or None))
        return await self._handle(rpb.CreateRunRequest, data, context, work)

    async def AddBatch(self, data: bytes, context: grpc.aio.ServicerContext
                       ) -> rpb.AddBatchResponse:
        async def work(request: rpb.AddBatchRequest) -> rpb.AddBatchResponse:
            answer = await self.runs.add(request.run_id, request.batch_id,
                                         self._tensors(request.inputs, "inputs"),
                                         worker=request.worker, timeout=context.time_remaining())
            return rpb.AddBatchResponse(counted=answer.counted, batches=answer.batches)
        return await self._handle(rpb.AddBatchRequest, data, context, work)

    async def GetRun(self, data: bytes, context: grpc.aio.ServicerContext) -> rpb.Run:
        async def work(request: rpb.RunRef) -> rpb.Run:
            return run_message(await self.runs.get(request.run_id))
        return await self._handle(rpb.RunRef, data, context, work)

    async def FinishRun(self, data: bytes, context: grpc.aio.ServicerContext) -> rpb.Run:
        async def work(request: rpb.RunRef) -> rpb.Run:
            return run_message(await self.runs.finish(request.run_id))
        return await self._handle(rpb.RunRef, data, context, work)

    async def DeleteRun(self, data: bytes, context: grpc.aio.ServicerContext
                        ) -> rpb.DeleteRunResponse:
        async def work(request: rpb.RunRef) -> rpb.DeleteRunResponse:
            await self.runs.delete(request.run_id)
            return rpb.DeleteRunResponse()
        return await self._handle(rpb.RunRef, data, context, work)

    def register(self, server: grpc.aio.Server) -> list[str]:
        """Add the handlers to ``server``; returns the service name (for reflection/health)."""
        identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731 - raw bytes in
        serialize = lambda m: m.SerializeToString()  # noqa: E731
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(self, name), request_deserializer=identity,
                response_serializer=serialize)
            for name in ("CreateRun", "AddBatch", "GetRun", "FinishRun", "DeleteRun")}),))
        return [SERVICE]


def run_service(runs: RunManager) -> Callable[[grpc.aio.Server], list[str]]:
    """What ``create_grpc_server(extra_services=...)`` takes."""
    return RunService(runs.settings, runs).register
