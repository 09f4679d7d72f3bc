"""A stream's dataset-level loss: batches through the engine, their statistics added up.

:class:`StreamEvaluation` is the state of one stream (gRPC ``ComputeStream``, REST
``POST /v1/losses/{name}/stream``): each batch is validated, checked against the first
batch's :class:`~lossd.losses.Signature` (loss, options, dtypes, per-sample
shapes), computed by the batching engine like any request, and its sufficient statistics kept;
:meth:`StreamEvaluation.result` is the loss of the whole stream, equal to one call on the
concatenated batches. A batch that fails (bad input, mismatch, queue full) is not counted,
and the frontend says so with :meth:`StreamEvaluation.refuse`: the stream's answer lists every
refused batch by its position, with its error, beside the aggregate (never a silent gap).
"""

from __future__ import annotations

from ..calls import Call
from ..errors import InvalidArgument, LossdError
from ..losses import Aggregate, Result, Signature, Stats, signature
from .batcher import Engine


class StreamEvaluation:
    """Counted batches of one stream (no I/O, one instance per stream)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.loss = ""
        self.reduction = "mean"
        self.empty_mean = float("nan")
        self.signature: Signature | None = None
        self.parts: list[Stats] = []
        self.refused: list[tuple[int, LossdError]] = []  # (position in the stream, why)

    async def add(self, request: Call) -> Result:
        """Compute one batch and count it; raises (and counts nothing) on any error."""
        call = self.engine.prepare(request.loss, request.arrays, request.options,
                                   bfloat16=request.bfloat16)
        mine = signature(call)
        if self.signature is None:
            self.signature = mine
            self.loss, self.reduction = call.spec.name, call.reduction
            self.empty_mean = call.spec.empty_mean
        elif mine.key != self.signature.key:
            raise InvalidArgument(
                f"inputs: every batch of a stream must share the first one's loss, options, "
                f"dtypes and per-sample shapes; expected {self.signature.text}; got {mine.text}",
                field="inputs")
        result = await self.engine.submit(call, grad=request.grad, timeout=request.timeout,
                                          stats=True)
        assert result.stats is not None
        self.parts.append(result.stats)
        return result

    def refuse(self, index: int, error: LossdError) -> None:
        """Note that the stream's batch at ``index`` (from 0) was refused, and why."""
        self.refused.append((index, error))

    def result(self) -> Aggregate:
        """The stream's loss so far (no batch: an empty float32 ``mean``, like torch)."""
        dtype = self.signature.dtype if self.signature else "float32"
        return Aggregate.of(self.loss, self.reduction, self.parts, dtype=dtype,
                            empty_mean=self.empty_mean)
