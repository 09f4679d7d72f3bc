"""The gRPC transport: :class:`GrpcClient` and :class:`AsyncGrpcClient` (grpcio, grpc.aio).

Same methods, results and errors as the REST clients (:mod:`.rest`); tensors travel as raw
little-endian bytes. A target that resolves to several servers (a headless Kubernetes Service,
``dns:///lossd-grpc.ns.svc.cluster.local:50051``) spreads calls over all of them
(``round_robin``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
import numpy as np

from .._proto.lossd.v1 import lossd_pb2 as pb
from .._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from .._proto.lossd.v1 import runs_pb2 as rpb
from .._proto.lossd.v1 import runs_pb2_grpc as rpb_grpc
from ..errors import LossdError, error_for
from .arguments import (
    Evaluation,
    LossInfo,
    LossResult,
    TensorInfo,
    split,
    tensors_only,
)
from .connection import Deadline, Retry, Tls, auth_headers, tls_settings

T = TypeVar("T")
_DTYPE_VALUES = {name.lower(): value for name, value in pb.DType.items()}
_DTYPE_NAMES = {value: name for name, value in _DTYPE_VALUES.items()}
NO_RETRY = Retry(retries=0)
# no message size limit of the client's own; reconnect quickly after a server restarts;
# round_robin over every address a target resolves to
OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
           ("grpc.lb_policy_name", "round_robin"),
           ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 2000)]
CODES = {grpc.StatusCode.RESOURCE_EXHAUSTED: "PAYLOAD_TOO_LARGE"}


def grpc_tensor(array: np.ndarray) -> pb.Tensor:
    """An array as a ``lossd.v1.Tensor`` (raw little-endian bytes)."""
    array = np.asarray(array, dtype=array.dtype.newbyteorder("<"))
    return pb.Tensor(dtype=_DTYPE_VALUES[array.dtype.name], shape=array.shape,
                     raw=array.tobytes())


def grpc_array(t: pb.Tensor) -> np.ndarray:
    """A ``lossd.v1.Tensor`` as an array (bfloat16 as float32 holding its values)."""
    name = _DTYPE_NAMES[t.dtype]
    if name == "bfloat16":
        bits = np.frombuffer(t.raw, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(tuple(t.shape))
    return np.frombuffer(t.raw, np.dtype(name).newbyteorder("<")).reshape(tuple(t.shape))


def option_value(value: object) -> pb.OptionValue:
    """A plain option value (see :func:`.arguments.to_option`) as an ``OptionValue``."""
    if value is None:
        return pb.OptionValue(null=True)
    if isinstance(value, bool):
        return pb.OptionValue(flag=value)
    if isinstance(value, int):
        return pb.OptionValue(integer=value)
    if isinstance(value, float):
        return pb.OptionValue(number=value)
    return pb.OptionValue(text=str(value))


def grpc_request(loss: str, grad: bool, tensors_and_options: dict[str, Any]
                 ) -> pb.ComputeRequest:
    """The ``ComputeRequest`` of a call (tensors and options split as every client does)."""
    tensors, options = split(loss, tensors_and_options)
    return pb.ComputeRequest(loss=loss, grad=grad,
                             inputs={k: grpc_tensor(v) for k, v in tensors.items()},
                             options={k: option_value(v) for k, v in options.items()})


def _result(response: pb.ComputeResponse) -> LossResult:
    return LossResult(grpc_array(response.loss),
                      {k: grpc_array(v) for k, v in response.grads.items()},
                      tuple(response.warnings))


def rpc_error(error: grpc.RpcError, what: str) -> LossdError:
    """A failed call as a :class:`LossdError` with the code REST would have answered."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    trailing = getattr(error, "trailing_metadata", lambda: None)() or ()
    metadata = {k: v for k, v in trailing if isinstance(v, str)}
    if code is grpc.StatusCode.UNAVAILABLE and not metadata.get("lossd-field"):
        details = f"{what}: {details}"  # the channel's own failure: say which call
    failure = error_for(CODES.get(code, code.name), details, metadata.get("lossd-field"))
    retry_after = metadata.get("retry-after", "")
    failure.retry_after = float(retry_after) if retry_after.isdecimal() else None
    return failure


def _loss_info(info: pb.LossInfo) -> LossInfo:
    return LossInfo(info.name, info.summary, info.family, info.torch,
                    tuple(TensorInfo(t.name, t.role, t.shape, tuple(t.dtypes),
                                     t.differentiable, t.optional) for t in info.tensors),
                    {o.name: json.loads(o.json_schema) for o in info.options})


def _evaluation(responses: list[pb.StreamResponse]) -> Evaluation:
    results = []
    for i, response in enumerate(responses[:-1]):
        if response.HasField("error"):
            raise error_for(response.error.code, f"batch {i}: {response.error.message}",
                            response.error.field or None)
        results.append(_result(response.response))
    a = responses[-1].aggregate
    return Evaluation(grpc_array(a.value), a.reduction, a.batches, a.samples, a.elements,
                      a.sum, a.weight, results)


def _option(value: pb.OptionValue) -> object:
    kind = value.WhichOneof("kind")
    if kind == "tensor":
        return grpc_array(value.tensor)
    return None if kind in (None, "null") else getattr(value, kind)


def _run_dict(run: rpb.Run) -> dict[str, Any]:
    """A ``Run`` message as the REST client gives a run (tensor options as arrays)."""
    a = run.aggregate
    return {"run_id": run.run_id, "loss": run.loss, "generation": run.generation,
            "state": run.state,
            "options": {k: _option(v) for k, v in run.options.items()},
            "expected_batches": run.expected_batches or None, "complete": run.complete,
            "signature": run.signature, "created": run.created, "updated": run.updated,
            "workers": dict(run.workers),
            "aggregate": {"loss": a.loss, "reduction": a.reduction,
                          "value": float(grpc_array(a.value)),
                          "dtype": _DTYPE_NAMES[a.value.dtype], "batches": a.batches,
                          "samples": a.samples, "elements": a.elements, "sum": a.sum,
                          "weight": a.weight}}


@dataclass(frozen=True)
class Request(Generic[T]):
    """One call: the stub method's name, the request (or a stream of them: not retried unless
    a sequence), and how to read the answer (a message, or the list of streamed ones)."""

    what: str
    service: str  # "loss" or "runs"
    method: str
    request: Any
    read: Callable[[Any], T]
    stream: bool = False

    @property
    def retry_safe(self) -> bool:
        """Whether the request can be sent again (a one-shot iterator cannot)."""
        return not self.stream or isinstance(self.request, Sequence)


def compute(loss: str, grad: bool, arguments: dict[str, Any]) -> Request[LossResult]:
    """``LossService.Compute``."""
    return Request(loss, "loss", "Compute", grpc_request(loss, grad, arguments), _result)


def losses() -> Request[list[LossInfo]]:
    """``LossService.ListLosses``."""
    return Request("losses", "loss", "ListLosses", pb.ListLossesRequest(),
                   lambda r: [_loss_info(i) for i in r.losses])


def evaluate(loss: str, batches: Iterable[dict[str, Any]], grad: bool,
             options: dict[str, Any]) -> Request[Evaluation]:
    """``LossService.ComputeStream``."""
    def requests() -> Iterator[pb.ComputeRequest]:
        for batch in batches:
            yield grpc_request(loss, grad, {**batch, **options})
    stream = list(requests()) if isinstance(batches, Sequence) else requests()
    return Request(loss, "loss", "ComputeStream", stream, _evaluation, stream=True)


def create_run(loss: str, expected_batches: int | None, run_id: str | None,
               options: dict[str, Any]) -> Request[dict[str, Any]]:
    """``RunService.CreateRun`` (an id is made here when none is given: retry-safe)."""
    tensors, scalars = split(loss, options)
    request = rpb.CreateRunRequest(
        loss=loss, expected_batches=expected_batches or 0,
        run_id=run_id or f"run-{uuid.uuid4().hex}",
        options={**{k: option_value(v) for k, v in scalars.items()},
                 **{k: pb.OptionValue(tensor=grpc_tensor(v)) for k, v in tensors.items()}})
    return Request("runs", "runs", "CreateRun", request, _run_dict)


def add_batch(run_id: str, batch_id: str, worker: str, generation: str,
              tensors: dict[str, Any]) -> Request[dict[str, Any]]:
    """``RunService.AddBatch`` (counted once per batch id, in ``generation`` of the run only
    when given)."""
    request = rpb.AddBatchRequest(
        run_id=run_id, batch_id=batch_id, worker=worker, generation=generation,
        inputs={k: grpc_tensor(v) for k, v in tensors_only(tensors).items()})
    return Request("runs", "runs", "AddBatch", request,
                   lambda r: {"counted": r.counted, "batches": r.batches})


def list_runs(state: str | None, limit: int | None,
              page_token: str | None) -> Request[dict[str, Any]]:
    """``RunService.ListRuns`` (newest first), as :func:`.rest.list_runs` answers."""
    request = rpb.ListRunsRequest(state=state or "", limit=limit or 0,
                                  page_token=page_token or "")
    return Request("runs", "runs", "ListRuns", request, lambda r: {
        "runs": [_run_dict(run) for run in r.runs],
        "next_page_token": r.next_page_token or None})


def run(run_id: str, method: str = "GetRun") -> Request[dict[str, Any]]:
    """``RunService.GetRun`` / ``FinishRun`` / ``DeleteRun``."""
    return Request("runs", "runs", method, rpb.RunRef(run_id=run_id),
                   _run_dict if method != "DeleteRun" else (lambda r: {}))


def _credentials(tls: Tls) -> grpc.ChannelCredentials:
    ca, key, cert = tls.pem()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=cert)


class _Base:
    """What both gRPC clients hold: the connection settings."""

    def __init__(self, target: str, *, api_key: str | None, tls: bool | None, ca: str | None,
                 cert: str | None, key: str | None, timeout: float | None, retries: int,
                 options: Sequence[tuple[str, Any]]) -> None:
        self.target = target
        self.secure = tls_settings(tls, ca, cert, key, default=False)
        self.options = [*OPTIONS, *options]
        self.timeout = timeout
        self.retry = Retry(retries)
        self.metadata = tuple(auth_headers(api_key).items())

    def _kwargs(self, deadline: Deadline) -> dict[str, Any]:
        return {"timeout": deadline.remaining(), "metadata": self.metadata}


class GrpcClient(_Base):
    """Synchronous gRPC client; the same methods as :class:`lossd.Client`."""

    def __init__(self, target: str = "localhost:50051", *, api_key: str | None = None,
                 tls: bool | None = None, ca: str | None = None, cert: str | None = None,
                 key: str | None = None, timeout: float | None = 60.0, retries: int = 8,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        """A channel to ``target`` (``host:port`` or a gRPC name such as ``dns:///...``)."""
        super().__init__(target, api_key=api_key, tls=tls, ca=ca, cert=cert, key=key,
                         timeout=timeout, retries=retries, options=options)
        self._channel = (grpc.secure_channel(target, _credentials(self.secure), self.options)
                         if self.secure else grpc.insecure_channel(target, self.options))
        self._stubs = {"loss": pb_grpc.LossServiceStub(self._channel),
                       "runs": rpb_grpc.RunServiceStub(self._channel)}

    def send(self, request: Request[T], timeout: float | None = None) -> T:
        """Send ``request`` (retrying what is safe) and read its answer."""
        deadline = Deadline(self.timeout if timeout is None else timeout)
        method = getattr(self._stubs[request.service], request.method)

        def attempt() -> T:
            kwargs = self._kwargs(deadline)
            try:
                if request.stream:
                    return request.read(list(method(iter(request.request), **kwargs)))
                return request.read(method(request.request, **kwargs))
            except grpc.RpcError as error:
                raise rpc_error(error, request.what) from None
        return (self.retry if request.retry_safe else NO_RETRY).call(attempt, deadline)

    def compute(self, loss: str, *, grad: bool = False, timeout: float | None = None,
                **tensors_and_options: object) -> LossResult:
        """See :meth:`lossd.Client.compute`."""
        return self.send(compute(loss, grad, tensors_and_options), timeout)

    def losses(self) -> list[LossInfo]:
        """See :meth:`lossd.Client.losses`."""
        return self.send(losses())

    def evaluate(self, loss: str, batches: Iterable[dict[str, Any]], *, grad: bool = False,
                 timeout: float | None = None, **options: object) -> Evaluation:
        """See :meth:`lossd.Client.evaluate`."""
        return self.send(evaluate(loss, batches, grad, options), timeout)

    def create_run(self, loss: str, *, expected_batches: int | None = None,
                   run_id: str | None = None, **options: object) -> dict[str, Any]:
        """See :meth:`lossd.Client.create_run`."""
        return self.send(create_run(loss, expected_batches, run_id, options))

    def add_batch(self, run_id: str, batch_id: str, *, worker: str = "", generation: str = "",
                  **tensors: object) -> dict[str, Any]:
        """See :meth:`lossd.Client.add_batch`."""
        return self.send(add_batch(run_id, batch_id, worker, generation, tensors))

    def run(self, run_id: str) -> dict[str, Any]:
        """See :meth:`lossd.Client.run`."""
        return self.send(run(run_id))

    def finish_run(self, run_id: str) -> dict[str, Any]:
        """See :meth:`lossd.Client.finish_run`."""
        return self.send(run(run_id, "FinishRun"))

    def list_runs(self, *, state: str | None = None, limit: int | None = None,
                  page_token: str | None = None) -> dict[str, Any]:
        """See :meth:`lossd.Client.list_runs`."""
        return self.send(list_runs(state, limit, page_token))

    def delete_run(self, run_id: str) -> None:
        """See :meth:`lossd.Client.delete_run`."""
        self.send(run(run_id, "DeleteRun"))

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        """``with GrpcClient(...) as client:`` closes it at the end."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()


class AsyncGrpcClient(_Base):
    """Asynchronous gRPC client (grpc.aio): :class:`GrpcClient`'s methods, awaited."""

    def __init__(self, target: str = "localhost:50051", *, api_key: str | None = None,
                 tls: bool | None = None, ca: str | None = None, cert: str | None = None,
                 key: str | None = None, timeout: float | None = 60.0, retries: int = 8,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        """A channel to ``target``, opened on first use in the running event loop."""
        super().__init__(target, api_key=api_key, tls=tls, ca=ca, cert=cert, key=key,
                         timeout=timeout, retries=retries, options=options)
        self._channel = (
            grpc.aio.secure_channel(target, _credentials(self.secure), self.options)
            if self.secure else grpc.aio.insecure_channel(target, self.options))
        self._stubs = {"loss": pb_grpc.LossServiceStub(self._channel),
                       "runs": rpb_grpc.RunServiceStub(self._channel)}

    async def send(self, request: Request[T], timeout: float | None = None) -> T:
        """Send ``request`` (retrying what is safe) and read its answer."""
        deadline = Deadline(self.timeout if timeout is None else timeout)
        method = getattr(self._stubs[request.service], request.method)

        async def attempt() -> T:
            kwargs = self._kwargs(deadline)
            try:
                if request.stream:
                    call = method(iter(request.request), **kwargs)
                    return request.read([response async for response in call])
                answer: Awaitable[Any] = method(request.request, **kwargs)
                return request.read(await answer)
            except grpc.RpcError as error:
                raise rpc_error(error, request.what) from None
        return await (self.retry if request.retry_safe else NO_RETRY).acall(attempt, deadline)

    async def compute(self, loss: str, *, grad: bool = False, timeout: float | None = None,
                      **tensors_and_options: object) -> LossResult:
        """See :meth:`lossd.Client.compute`."""
        return await self.send(compute(loss, grad, tensors_and_options), timeout)

    async def losses(self) -> list[LossInfo]:
        """See :meth:`lossd.Client.losses`."""
        return await self.send(losses())

    async def evaluate(self, loss: str, batches: Iterable[dict[str, Any]], *,
                       grad: bool = False, timeout: float | None = None,
                       **options: object) -> Evaluation:
        """See :meth:`lossd.Client.evaluate`."""
        return await self.send(evaluate(loss, batches, grad, options), timeout)

    async def create_run(self, loss: str, *, expected_batches: int | None = None,
                         run_id: str | None = None, **options: object) -> dict[str, Any]:
        """See :meth:`lossd.Client.create_run`."""
        return await self.send(create_run(loss, expected_batches, run_id, options))

    async def add_batch(self, run_id: str, batch_id: str, *, worker: str = "",
                        generation: str = "", **tensors: object) -> dict[str, Any]:
        """See :meth:`lossd.Client.add_batch`."""
        return await self.send(add_batch(run_id, batch_id, worker, generation, tensors))

    async def run(self, run_id: str) -> dict[str, Any]:
        """See :meth:`lossd.Client.run`."""
        return await self.send(run(run_id))

    async def finish_run(self, run_id: str) -> dict[str, Any]:
        """See :meth:`lossd.Client.finish_run`."""
        return await self.send(run(run_id, "FinishRun"))

    async def list_runs(self, *, state: str | None = None, limit: int | None = None,
                        page_token: str | None = None) -> dict[str, Any]:
        """See :meth:`lossd.Client.list_runs`."""
        return await self.send(list_runs(state, limit, page_token))

    async def delete_run(self, run_id: str) -> None:
        """See :meth:`lossd.Client.delete_run`."""
        await self.send(run(run_id, "DeleteRun"))

    async def aclose(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncGrpcClient:
        """``async with AsyncGrpcClient(...) as client:`` closes it at the end."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close."""
        await self.aclose()
