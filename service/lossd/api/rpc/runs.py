"""``lossd.v1.RunService``: evaluation runs (see :mod:`lossd.runs`), bytes in, messages out."""

from __future__ import annotations

from typing import Any

from ... import codec
from ..._proto.lossd.v1 import lossd_pb2 as pb
from ..._proto.lossd.v1 import runs_pb2 as rpb
from ...calls import CallBuilder
from ...losses import get_spec
from ...runs import RunManager, RunView
from ...settings import Settings
from .guard import Context, Label, guarded
from .tensors import decode_tensor, encode_aggregate, encode_tensor, option_value, scalar_option
from .wire import parse

SERVICE = "lossd.v1.RunService"
PROTOCOL = "grpc"
STORED = codec.Limits(max_tensor_elements=1 << 40, max_ndim=64)  # a run's own tensors


def run_message(run: RunView) -> rpb.Run:
    """A run, its options and its aggregate so far as a ``Run`` message."""
    d = run.definition
    spec = get_spec(d.loss)
    options = {name: scalar_option(value) for name, value in d.options.items()}
    for name, stored in d.tensors.items():  # stored as JSON tensors, validated when created
        array = codec.from_json(stored, f"options.{name}", spec.tensor_map.get(name),
                                STORED)[0]
        options[name] = pb.OptionValue(tensor=encode_tensor(array, raw=True))
    return rpb.Run(run_id=run.run_id, loss=d.loss, generation=run.generation, state=run.state,
                   expected_batches=d.expected_batches, complete=run.complete,
                   aggregate=encode_aggregate(run.aggregate), workers=run.workers,
                   signature=run.signature, created=run.created, updated=run.updated,
                   options=options)


class RunService:
    """Handlers of ``lossd.v1.RunService``; every call is counted under the label "runs"."""

    NAME = SERVICE
    UNARY = ("CreateRun", "AddBatch", "GetRun", "FinishRun", "DeleteRun", "ListRuns")
    STREAM = ()

    def __init__(self, settings: Settings, runs: RunManager) -> None:
        self.runs, self.metrics = runs, runs.engine.metrics
        self.limits = codec.Limits.of(settings)

    def _tensors(self, loss: str, tensors: Any, group: str) -> CallBuilder:
        call = CallBuilder(loss, self.limits)
        call.check_count(len(tensors))
        for name, t in tensors.items():
            field = f"{group}.{name[:64]}"
            array, _, bfloat16 = decode_tensor(t, field, self.limits)
            call.add_tensor(name, array, field=field, bfloat16=bfloat16)
        return call

    @guarded(PROTOCOL, "runs")
    async def CreateRun(self, data: bytes, context: Context, label: Label) -> rpb.Run:
        """Create a run from its loss and options (tensor options included), or return the
        existing one with the same ``run_id`` and definition."""
        request = parse(rpb.CreateRunRequest, data)
        tensor_options = {k: v.tensor for k, v in request.options.items()
                          if v.WhichOneof("kind") == "tensor"}
        call = self._tensors(request.loss, tensor_options, "options")
        options = {k: option_value(v) for k, v in request.options.items()
                   if k not in tensor_options}
        return run_message(await self.runs.create(
            request.loss, options, call.arrays, expected_batches=request.expected_batches,
            run_id=request.run_id or None))

    @guarded(PROTOCOL, "runs")
    async def AddBatch(self, data: bytes, context: Context, label: Label
                       ) -> rpb.AddBatchResponse:
        """Compute one batch of the run and count it once (a retried ``batch_id`` is not
        counted again), in the run's ``generation`` only (when given)."""
        request = parse(rpb.AddBatchRequest, data)
        target = await self.runs.target(request.run_id, request.batch_id, request.generation)
        call = self._tensors(target.definition.loss, request.inputs, "inputs")
        answer = await self.runs.add(target, call.arrays, worker=request.worker,
                                     timeout=context.time_remaining(),
                                     bfloat16=frozenset(call.bfloat16))
        return rpb.AddBatchResponse(counted=answer.counted, batches=answer.batches)

    @guarded(PROTOCOL, "runs")
    async def GetRun(self, data: bytes, context: Context, label: Label) -> rpb.Run:
        """The run and its aggregate over the batches counted so far."""
        return run_message(await self.runs.get(parse(rpb.RunRef, data).run_id))

    @guarded(PROTOCOL, "runs")
    async def FinishRun(self, data: bytes, context: Context, label: Label) -> rpb.Run:
        """Close the run to new batches; its aggregate stays readable."""
        return run_message(await self.runs.finish(parse(rpb.RunRef, data).run_id))

    @guarded(PROTOCOL, "runs")
    async def DeleteRun(self, data: bytes, context: Context, label: Label
                        ) -> rpb.DeleteRunResponse:
        """Delete the run (NOT_FOUND if it does not exist)."""
        await self.runs.delete(parse(rpb.RunRef, data).run_id)
        return rpb.DeleteRunResponse()

    @guarded(PROTOCOL, "runs")
    async def ListRuns(self, data: bytes, context: Context, label: Label
                       ) -> rpb.ListRunsResponse:
        """A page of runs, newest first, optionally of one state."""
        request = parse(rpb.ListRunsRequest, data)
        page = await self.runs.list_runs(state=request.state, limit=request.limit,
                                         page_token=request.page_token, offset=request.offset)
        return rpb.ListRunsResponse(runs=[run_message(run) for run in page.runs],
                                    next_page_token=page.next_page_token)
