"""Python client for lossd: NumPy in, NumPy out, over REST or gRPC, sync or async.

    >>> from lossd import Client
    >>> with Client("http://localhost:8000") as client:  # doctest: +SKIP
    ...     out = client.compute("cross_entropy", input=logits, target=labels,
    ...                          label_smoothing=0.1, grad=True)
    >>> out.loss, out.grads["input"]  # doctest: +SKIP

Dataset-level losses: ``client.evaluate("cross_entropy", batches, weight=w)`` streams an
iterable of ``{"input": ..., "target": ...}`` batches and returns the loss over all of them
(:class:`Evaluation`); runs shared by many workers: ``create_run``, ``add_batch``
(idempotent per batch id), ``run``, ``finish_run``, ``delete_run`` (runs are dicts, the REST
API's JSON; over gRPC the same keys, but ``options``, with non-finite numbers as floats).

``GrpcClient("localhost:50051")`` has the same methods; ``AsyncClient`` and
``AsyncGrpcClient`` are their asyncio twins. Tensors travel as raw little-endian bytes (b64
over REST). Errors raise :class:`LossdError` with the server's code, message and field.
Needs only what `pip install lossd` brings (numpy, httpx, grpcio, protobuf).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import numpy as np

from ._proto.lossd.v1 import lossd_pb2 as pb
from ._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from ._proto.lossd.v1 import runs_pb2 as rpb
from ._proto.lossd.v1 import runs_pb2_grpc as rpb_grpc

_DTYPE_VALUES = {name.lower(): value for name, value in pb.DType.items()}
_DTYPE_NAMES = {value: name for name, value in _DTYPE_VALUES.items()}


@dataclass(frozen=True)
class LossResult:
    loss: np.ndarray  # 0-d unless reduction="none"
    grads: dict[str, np.ndarray] = field(default_factory=dict)


class LossdError(Exception):
    """What the server refused: its error ``code`` (``INVALID_ARGUMENT``, ``NOT_FOUND``, ...),
    ``message`` and offending ``field``; ``status`` is the HTTP status (None over gRPC).

    The client's error, exported as ``lossd.LossdError``; not the server's own tree
    (:class:`lossd.errors.LossdError`, what :mod:`lossd.losses` raises in-process)."""

    def __init__(self, code: str, message: str, field: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.field, self.status = code, message, field, status


@dataclass(frozen=True)
class Evaluation:
    """A dataset-level loss: ``loss`` (0-d, torch's dtype) over every batch, equal to one call
    on the concatenated batches; ``results`` are the per-batch answers in order."""

    loss: np.ndarray
    reduction: str
    batches: int
    samples: int
    elements: int
    sum: float
    weight: float
    results: list[LossResult] = field(default_factory=list)


@dataclass(frozen=True)
class _Codec:
    dumps: Callable[[Any], bytes]  # JSON, compact
    b64encode: Callable[[bytes], bytes]
    b64decode: Callable[[str | bytes], bytes]


@functools.cache
def _codec() -> _Codec:
    """orjson and pybase64 (SIMD base64, ~30x faster) when installed, as with ``lossd[server]``;
    the standard library otherwise. Looked up on first use, so ``import lossd`` stays light."""
    try:
        import orjson
        dumps: Callable[[Any], bytes] = orjson.dumps
    except ImportError:
        def dumps(obj: Any) -> bytes:  # what httpx's json= sends
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode()
    try:
        import pybase64
        return _Codec(dumps, pybase64.b64encode, pybase64.b64decode)
    except ImportError:
        return _Codec(dumps, base64.b64encode, base64.b64decode)


def _split(arrays: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Keyword arguments -> (tensors, scalar options): arrays are tensors, the rest options."""
    tensors = {k: np.asarray(v) for k, v in arrays.items() if isinstance(v, (np.ndarray, list))}
    options = {k: v for k, v in arrays.items() if k not in tensors}
    return tensors, options


# --- REST -------------------------------------------------------------------------------------

def _rest_tensor(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "b64": _codec().b64encode(array.tobytes()).decode()}


def _rest_array(obj: Any) -> np.ndarray:
    if isinstance(obj, dict):
        if obj["dtype"] == "bfloat16":
            bits = np.frombuffer(_codec().b64decode(obj["b64"]), "<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(obj["shape"])
        return np.frombuffer(_codec().b64decode(obj["b64"]), np.dtype(obj["dtype"]).newbyteorder(
            "<")).reshape(obj["shape"]).astype(obj["dtype"])
    return np.asarray(float(obj) if isinstance(obj, str) else obj)


def _rest_body(loss_inputs: dict[str, Any], grad: bool) -> dict[str, Any]:
    tensors, options = _split(loss_inputs)
    return {"inputs": {k: _rest_tensor(v) for k, v in tensors.items()}, "options": options,
            "grad": grad}


def _rest_result(response: httpx.Response) -> LossResult:
    body = response.json()
    if response.status_code != 200:
        error = body.get("error", {})
        raise LossdError(error.get("code", "UNKNOWN"), error.get("message", response.text),
                         error.get("field"), response.status_code)
    return LossResult(_rest_array(body["loss"]),
                      {k: _rest_array(v) for k, v in body.get("grads", {}).items()})


NDJSON = {"content-type": "application/x-ndjson"}


def _ndjson(batches: Iterable[dict[str, Any]], options: dict[str, Any], grad: bool
            ) -> Iterator[bytes]:
    for batch in batches:
        yield _codec().dumps(_rest_body({**batch, **options}, grad)) + b"\n"


def _rest_json(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    if response.status_code >= 300:
        error = body.get("error", {})
        raise LossdError(error.get("code", "UNKNOWN"), error.get("message", response.text),
                         error.get("field"), response.status_code)
    return body


def _batch_error(i: int, error: dict[str, Any]) -> LossdError:
    return LossdError(error.get("code", "UNKNOWN"),
                      f"batch {i}: {error.get('message', '')}", error.get("field"))


def _rest_evaluation(response: httpx.Response) -> Evaluation:
    body = _rest_json(response)
    results = []
    for i, item in enumerate(body["results"]):
        if "error" in item:
            raise _batch_error(i, item["error"])
        results.append(LossResult(_rest_array(item["loss"]),
                                  {k: _rest_array(v) for k, v in item.get("grads", {}).items()}))
    a = body["aggregate"]
    return Evaluation(np.asarray(float(a["value"]), dtype=a["dtype"]), a["reduction"],
                      a["batches"], a["samples"], a["elements"], float(a["sum"]),
                      float(a["weight"]), results)


def _run_body(loss: str, expected_batches: int | None, run_id: str | None,
              options: dict[str, Any]) -> dict[str, Any]:
    tensors, scalars = _split(options)
    body: dict[str, Any] = {"loss": loss, "options": {
        **scalars, **{k: _rest_tensor(v) for k, v in tensors.items()}}}
    if expected_batches is not None:
        body["expected_batches"] = expected_batches
    if run_id is not None:
        body["run_id"] = run_id
    return body


def _batch_body(worker: str, tensors: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": {k: _rest_tensor(np.asarray(v)) for k, v in tensors.items()},
            "worker": worker}


class Client:
    """Synchronous REST client."""

    def __init__(self, url: str = "http://localhost:8000", *, timeout: float = 60.0,
                 headers: dict[str, str] | None = None) -> None:
        self._http = httpx.Client(base_url=url, timeout=timeout, headers=headers)

    def compute(self, loss: str, *, grad: bool = False, **tensors_and_options: Any
                ) -> LossResult:
        return _rest_result(self._http.post(f"/v1/losses/{loss}",
                                            json=_rest_body(tensors_and_options, grad)))

    def losses(self) -> list[dict[str, Any]]:
        losses: list[dict[str, Any]] = _rest_json(self._http.get("/v1/losses"))["losses"]
        return losses

    def evaluate(self, loss: str, batches: Iterable[dict[str, Any]], *, grad: bool = False,
                 **options: Any) -> Evaluation:
        """Stream ``batches`` (dicts of tensors) as NDJSON; the loss over all of them. Raises
        :class:`LossdError` if any batch was refused (the aggregate would miss it)."""
        return _rest_evaluation(self._http.post(f"/v1/losses/{loss}/stream", headers=NDJSON,
                                                content=_ndjson(batches, options, grad)))

    def create_run(self, loss: str, *, expected_batches: int | None = None,
                   run_id: str | None = None, **options: Any) -> dict[str, Any]:
        """A new evaluation run (``run_id``: optional, makes creation retry-safe)."""
        return _rest_json(self._http.post(
            "/v1/runs", json=_run_body(loss, expected_batches, run_id, options)))

    def add_batch(self, run_id: str, batch_id: str, *, worker: str = "", **tensors: Any
                  ) -> dict[str, Any]:
        """Count one batch in a run, once: ``{"counted": False}`` when it was already counted
        (so retrying on any failure is safe)."""
        return _rest_json(self._http.put(f"/v1/runs/{run_id}/batches/{batch_id}",
                                         json=_batch_body(worker, tensors)))

    def run(self, run_id: str) -> dict[str, Any]:
        """The run and its ``aggregate`` over every batch counted so far."""
        return _rest_json(self._http.get(f"/v1/runs/{run_id}"))

    def finish_run(self, run_id: str) -> dict[str, Any]:
        return _rest_json(self._http.post(f"/v1/runs/{run_id}/finish"))

    def delete_run(self, run_id: str) -> None:
        _rest_json(self._http.delete(f"/v1/runs/{run_id}"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """Asynchronous REST client."""

    def __init__(self, url: str = "http://localhost:8000", *, timeout: float = 60.0,
                 headers: dict[str, str] | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout, headers=headers)

    async def compute(self, loss: str, *, grad: bool = False, **tensors_and_options: Any
                      ) -> LossResult:
        return _rest_result(await self._http.post(f"/v1/losses/{loss}",
                                                  json=_rest_body(tensors_and_options, grad)))

    async def losses(self) -> list[dict[str, Any]]:
        losses: list[dict[str, Any]] = _rest_json(await self._http.get("/v1/losses"))["losses"]
        return losses

    async def evaluate(self, loss: str, batches: Iterable[dict[str, Any]], *,
                       grad: bool = False, **options: Any) -> Evaluation:
        async def lines() -> AsyncIterable[bytes]:
            for line in _ndjson(batches, options, grad):
                yield line
        return _rest_evaluation(await self._http.post(
            f"/v1/losses/{loss}/stream", headers=NDJSON, content=lines()))

    async def create_run(self, loss: str, *, expected_batches: int | None = None,
                         run_id: str | None = None, **options: Any) -> dict[str, Any]:
        return _rest_json(await self._http.post(
            "/v1/runs", json=_run_body(loss, expected_batches, run_id, options)))

    async def add_batch(self, run_id: str, batch_id: str, *, worker: str = "",
                        **tensors: Any) -> dict[str, Any]:
        return _rest_json(await self._http.put(f"/v1/runs/{run_id}/batches/{batch_id}",
                                               json=_batch_body(worker, tensors)))

    async def run(self, run_id: str) -> dict[str, Any]:
        return _rest_json(await self._http.get(f"/v1/runs/{run_id}"))

    async def finish_run(self, run_id: str) -> dict[str, Any]:
        return _rest_json(await self._http.post(f"/v1/runs/{run_id}/finish"))

    async def delete_run(self, run_id: str) -> None:
        _rest_json(await self._http.delete(f"/v1/runs/{run_id}"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# --- gRPC -------------------------------------------------------------------------------------

def grpc_tensor(array: np.ndarray) -> pb.Tensor:
    array = np.asarray(array, dtype=array.dtype.newbyteorder("<"))
    return pb.Tensor(dtype=_DTYPE_VALUES[array.dtype.name], shape=array.shape,
                     raw=array.tobytes())


def grpc_array(t: pb.Tensor) -> np.ndarray:
    name = _DTYPE_NAMES[t.dtype]
    if name == "bfloat16":
        bits = np.frombuffer(t.raw, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(tuple(t.shape))
    return np.frombuffer(t.raw, np.dtype(name).newbyteorder("<")).reshape(tuple(t.shape))


def _option_value(value: Any) -> pb.OptionValue:
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
    tensors, options = _split(tensors_and_options)
    return pb.ComputeRequest(loss=loss, grad=grad,
                             inputs={k: grpc_tensor(v) for k, v in tensors.items()},
                             options={k: _option_value(v) for k, v in options.items()})


def _grpc_result(response: pb.ComputeResponse) -> LossResult:
    return LossResult(grpc_array(response.loss),
                      {k: grpc_array(v) for k, v in response.grads.items()})


def _grpc_error(error: grpc.RpcError) -> LossdError:
    fields = dict(error.trailing_metadata() or ()) if hasattr(error, "trailing_metadata") else {}
    return LossdError(error.code().name, error.details() or "", fields.get("lossd-field"))


def _grpc_evaluation(responses: list[pb.StreamResponse]) -> Evaluation:
    results = []
    for i, response in enumerate(responses[:-1]):
        if response.HasField("error"):
            raise _batch_error(i, {"code": response.error.code, "message": response.error.message,
                                   "field": response.error.field or None})
        results.append(_grpc_result(response.response))
    a = responses[-1].aggregate
    return Evaluation(grpc_array(a.value), a.reduction, a.batches, a.samples, a.elements,
                      a.sum, a.weight, results)


def _stream_requests(loss: str, batches: Iterable[dict[str, Any]], options: dict[str, Any],
                     grad: bool) -> Iterator[pb.ComputeRequest]:
    for batch in batches:
        yield grpc_request(loss, grad, {**batch, **options})


def _run_request(loss: str, expected_batches: int | None, run_id: str | None,
                 options: dict[str, Any]) -> rpb.CreateRunRequest:
    tensors, scalars = _split(options)
    return rpb.CreateRunRequest(
        loss=loss, expected_batches=expected_batches or 0, run_id=run_id or "",
        options={**{k: _option_value(v) for k, v in scalars.items()},
                 **{k: pb.OptionValue(tensor=grpc_tensor(v)) for k, v in tensors.items()}})


def _batch_request(run_id: str, batch_id: str, worker: str, tensors: dict[str, Any]
                   ) -> rpb.AddBatchRequest:
    return rpb.AddBatchRequest(run_id=run_id, batch_id=batch_id, worker=worker,
                               inputs={k: grpc_tensor(np.asarray(v)) for k, v in tensors.items()})


def _run_dict(run: rpb.Run) -> dict[str, Any]:
    """A ``Run`` message as the REST API's run JSON (without ``options``)."""
    a = run.aggregate
    return {"run_id": run.run_id, "loss": run.loss, "state": run.state,
            "expected_batches": run.expected_batches or None, "complete": run.complete,
            "signature": run.signature, "created": run.created, "updated": run.updated,
            "workers": dict(run.workers),
            "aggregate": {"loss": a.loss, "reduction": a.reduction,
                          "value": float(grpc_array(a.value)),
                          "dtype": _DTYPE_NAMES[a.value.dtype], "batches": a.batches,
                          "samples": a.samples, "elements": a.elements, "sum": a.sum,
                          "weight": a.weight}}


def _counted(response: rpb.AddBatchResponse) -> dict[str, Any]:
    return {"counted": response.counted, "batches": response.batches}


# round_robin: a target that resolves to several servers (a headless Kubernetes Service,
# "dns:///lossd-grpc.ns.svc.cluster.local:50051") spreads calls over all of them
OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
           ("grpc.lb_policy_name", "round_robin")]


class GrpcClient:
    """Synchronous gRPC client."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float | None = 60.0) -> None:
        self._channel = grpc.insecure_channel(target, options=OPTIONS)
        self._stub = pb_grpc.LossServiceStub(self._channel)
        self._runs = rpb_grpc.RunServiceStub(self._channel)
        self.timeout = timeout

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise _grpc_error(error) from None

    def compute(self, loss: str, *, grad: bool = False, **tensors_and_options: Any
                ) -> LossResult:
        return _grpc_result(self._call(self._stub.Compute,
                                       grpc_request(loss, grad, tensors_and_options)))

    def losses(self) -> list[pb.LossInfo]:
        return list(self._call(self._stub.ListLosses, pb.ListLossesRequest()).losses)

    def evaluate(self, loss: str, batches: Iterable[dict[str, Any]], *, grad: bool = False,
                 **options: Any) -> Evaluation:
        """Stream ``batches`` over ComputeStream; the loss over all of them (see Client)."""
        try:
            return _grpc_evaluation(list(self._stub.ComputeStream(
                _stream_requests(loss, batches, options, grad), timeout=self.timeout)))
        except grpc.RpcError as error:
            raise _grpc_error(error) from None

    def create_run(self, loss: str, *, expected_batches: int | None = None,
                   run_id: str | None = None, **options: Any) -> dict[str, Any]:
        return _run_dict(self._call(self._runs.CreateRun,
                                    _run_request(loss, expected_batches, run_id, options)))

    def add_batch(self, run_id: str, batch_id: str, *, worker: str = "", **tensors: Any
                  ) -> dict[str, Any]:
        return _counted(self._call(self._runs.AddBatch,
                                   _batch_request(run_id, batch_id, worker, tensors)))

    def run(self, run_id: str) -> dict[str, Any]:
        return _run_dict(self._call(self._runs.GetRun, rpb.RunRef(run_id=run_id)))

    def finish_run(self, run_id: str) -> dict[str, Any]:
        return _run_dict(self._call(self._runs.FinishRun, rpb.RunRef(run_id=run_id)))

    def delete_run(self, run_id: str) -> None:
        self._call(self._runs.DeleteRun, rpb.RunRef(run_id=run_id))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGrpcClient:
    """Asynchronous gRPC client (grpc.aio)."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float | None = 60.0) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=OPTIONS)
        self._stub = pb_grpc.LossServiceStub(self._channel)
        self._runs = rpb_grpc.RunServiceStub(self._channel)
        self.timeout = timeout

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise _grpc_error(error) from None

    async def compute(self, loss: str, *, grad: bool = False, **tensors_and_options: Any
                      ) -> LossResult:
        return _grpc_result(await self._call(self._stub.Compute,
                                             grpc_request(loss, grad, tensors_and_options)))

    async def losses(self) -> list[pb.LossInfo]:
        return list((await self._call(self._stub.ListLosses, pb.ListLossesRequest())).losses)

    async def evaluate(self, loss: str, batches: Iterable[dict[str, Any]], *,
                       grad: bool = False, **options: Any) -> Evaluation:
        try:
            call = self._stub.ComputeStream(_stream_requests(loss, batches, options, grad),
                                            timeout=self.timeout)
            return _grpc_evaluation([response async for response in call])
        except grpc.RpcError as error:
            raise _grpc_error(error) from None

    async def create_run(self, loss: str, *, expected_batches: int | None = None,
                         run_id: str | None = None, **options: Any) -> dict[str, Any]:
        return _run_dict(await self._call(self._runs.CreateRun,
                                          _run_request(loss, expected_batches, run_id, options)))

    async def add_batch(self, run_id: str, batch_id: str, *, worker: str = "",
                        **tensors: Any) -> dict[str, Any]:
        return _counted(await self._call(self._runs.AddBatch,
                                         _batch_request(run_id, batch_id, worker, tensors)))

    async def run(self, run_id: str) -> dict[str, Any]:
        return _run_dict(await self._call(self._runs.GetRun, rpb.RunRef(run_id=run_id)))

    async def finish_run(self, run_id: str) -> dict[str, Any]:
        return _run_dict(await self._call(self._runs.FinishRun, rpb.RunRef(run_id=run_id)))

    async def delete_run(self, run_id: str) -> None:
        await self._call(self._runs.DeleteRun, rpb.RunRef(run_id=run_id))

    async def aclose(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncGrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
