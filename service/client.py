"""Python client for lossd: NumPy in, NumPy out, over REST or gRPC, sync or async.

    >>> from service.client import Client
    >>> with Client("http://localhost:8000") as lossd:
    ...     out = lossd.compute("cross_entropy", input=logits, target=labels,
    ...                         label_smoothing=0.1, grad=True)
    >>> out.loss, out.grads["input"]

``GrpcClient("localhost:50051")`` has the same methods; ``AsyncClient`` and ``AsyncGrpcClient``
are their asyncio twins. Tensors travel as raw little-endian bytes (b64 over REST). Errors raise
:class:`LossdClientError` with the server's code, message and field.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import numpy as np

from ._proto.lossd.v1 import lossd_pb2 as pb
from ._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc

_DTYPE_VALUES = {name.lower(): value for name, value in pb.DType.items()}
_DTYPE_NAMES = {value: name for name, value in _DTYPE_VALUES.items()}


@dataclass(frozen=True)
class LossResult:
    loss: np.ndarray  # 0-d unless reduction="none"
    grads: dict[str, np.ndarray] = field(default_factory=dict)


class LossdClientError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.field, self.status = code, message, field, status


def _split(arrays: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Keyword arguments -> (tensors, scalar options): arrays are tensors, the rest options."""
    tensors = {k: np.asarray(v) for k, v in arrays.items() if isinstance(v, (np.ndarray, list))}
    options = {k: v for k, v in arrays.items() if k not in tensors}
    return tensors, options


# --- REST -------------------------------------------------------------------------------------

def _rest_tensor(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "b64": base64.b64encode(array.tobytes()).decode()}


def _rest_array(obj: Any) -> np.ndarray:
    if isinstance(obj, dict):
        if obj["dtype"] == "bfloat16":
            bits = np.frombuffer(base64.b64decode(obj["b64"]), "<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(obj["shape"])
        return np.frombuffer(base64.b64decode(obj["b64"]), np.dtype(obj["dtype"]).newbyteorder(
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
        raise LossdClientError(error.get("code", "UNKNOWN"), error.get("message", response.text),
                               error.get("field"), response.status_code)
    return LossResult(_rest_array(body["loss"]),
                      {k: _rest_array(v) for k, v in body.get("grads", {}).items()})


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
        return self._http.get("/v1/losses").json()["losses"]

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
        return (await self._http.get("/v1/losses")).json()["losses"]

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


def _grpc_error(error: grpc.RpcError) -> LossdClientError:
    fields = dict(error.trailing_metadata() or ()) if hasattr(error, "trailing_metadata") else {}
    return LossdClientError(error.code().name, error.details() or "", fields.get("lossd-field"))


OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class GrpcClient:
    """Synchronous gRPC client."""

    def __init__(self, target: str = "localhost:50051", *, timeout: float | None = 60.0) -> None:
        self._channel = grpc.insecure_channel(target, options=OPTIONS)
        self._stub = pb_grpc.LossServiceStub(self._channel)
        self.timeout = timeout

    def compute(self, loss: str, *, grad: bool = False, **tensors_and_options: Any
                ) -> LossResult:
        try:
            return _grpc_result(self._stub.Compute(grpc_request(loss, grad, tensors_and_options),
                                                   timeout=self.timeout))
        except grpc.RpcError as error:
            raise _grpc_error(error) from None

    def losses(self) -> list[pb.LossInfo]:
        return list(self._stub.ListLosses(pb.ListLossesRequest()).losses)

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
        self.timeout = timeout

    async def compute(self, loss: str, *, grad: bool = False, **tensors_and_options: Any
                      ) -> LossResult:
        try:
            return _grpc_result(await self._stub.Compute(
                grpc_request(loss, grad, tensors_and_options), timeout=self.timeout))
        except grpc.RpcError as error:
            raise _grpc_error(error) from None

    async def aclose(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncGrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
