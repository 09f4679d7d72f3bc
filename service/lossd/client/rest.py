"""The REST transport: :class:`Client` and :class:`AsyncClient` (httpx).

Each method builds a :class:`Request` (what to send, how to read the answer); the two classes
only send it, the sync one with ``httpx.Client``, the async one with ``httpx.AsyncClient``.
Tensors travel as ``{"dtype", "shape", "b64"}`` (raw little-endian bytes); ids in paths are
percent-encoded, so a batch id may hold ``/``, ``?``, ``#`` or ``%``.
"""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

import httpx
import numpy as np

from ..errors import (
    DeadlineExceeded,
    InvalidArgument,
    LossdError,
    Unavailable,
    UnknownError,
    error_for,
)
from .arguments import (
    Evaluation,
    LossInfo,
    LossResult,
    loss_info,
    scalar,
    split,
    tensors_only,
)
from .connection import Deadline, Retry, auth_headers, tls_settings

T = TypeVar("T")
NDJSON = "application/x-ndjson"
NO_RETRY = Retry(retries=0)


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
        def dumps(obj: object) -> bytes:  # what httpx's json= sends
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode()
    try:
        import pybase64
        return _Codec(dumps, pybase64.b64encode, pybase64.b64decode)
    except ImportError:
        return _Codec(dumps, base64.b64encode, base64.b64decode)


def rest_tensor(array: np.ndarray) -> dict[str, Any]:
    """An array as the native API's ``{"dtype", "shape", "b64"}`` tensor."""
    array = np.asarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "b64": _codec().b64encode(array.tobytes()).decode()}


def rest_array(obj: object, dtype: str = "float64") -> np.ndarray:
    """A tensor or number of an answer as an array (bfloat16 as float32 holding its values)."""
    if isinstance(obj, dict):
        raw = _codec().b64decode(obj["b64"])
        if obj["dtype"] == "bfloat16":
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(obj["shape"])
        return np.frombuffer(raw, np.dtype(obj["dtype"]).newbyteorder("<")).reshape(
            obj["shape"]).astype(obj["dtype"])
    return scalar(obj, dtype)


def _segment(text: str) -> str:
    return quote(text, safe="")


def _result(body: dict[str, Any]) -> LossResult:
    dtype = body.get("dtype", "float64")
    return LossResult(rest_array(body["loss"], dtype),
                      {k: rest_array(v) for k, v in (body.get("grads") or {}).items()},
                      tuple(body.get("warnings") or ()))


def _compute_body(loss: str, arguments: dict[str, Any], grad: bool) -> dict[str, Any]:
    tensors, options = split(loss, arguments)
    return {"inputs": {k: rest_tensor(v) for k, v in tensors.items()}, "options": options,
            "grad": grad}


def _run(body: dict[str, Any]) -> dict[str, Any]:
    """A run's JSON as gRPC gives it too: tensor options (class weights) as arrays, the
    aggregate's value rounded to its dtype (a float32 loss as the float32 it is)."""
    options = body.get("options") or {}
    run = {**body, "options": {k: rest_array(v) if isinstance(v, dict) else v
                               for k, v in options.items()}}
    a = body.get("aggregate")
    if isinstance(a, dict):  # the value in its dtype's precision, as gRPC carries it
        run["aggregate"] = {**a, "value": float(scalar(a["value"], a["dtype"]))}
    return run


def _evaluation(body: dict[str, Any]) -> Evaluation:
    results = []
    for i, item in enumerate(body["results"]):
        if "error" in item:
            error = item["error"]
            raise error_for(error.get("code", "UNKNOWN"), f"batch {i}: {error.get('message')}",
                            error.get("field"))
        results.append(_result(item))
    a = body["aggregate"]
    return Evaluation(scalar(a["value"], a["dtype"]), a["reduction"], a["batches"],
                      a["samples"], a["elements"], float(a["sum"]), float(a["weight"]), results)


@dataclass(frozen=True)
class Request(Generic[T]):
    """One call: method, path, body (bytes, or a stream of lines: not retried), and how to read
    the answer's JSON."""

    what: str
    method: str
    path: str
    read: Callable[[dict[str, Any]], T]
    body: bytes | None = None
    lines: Iterable[bytes] | None = None

    @property
    def retry_safe(self) -> bool:
        """Whether the body can be sent again (a one-shot stream cannot)."""
        return self.lines is None or isinstance(self.lines, Sequence)


def compute(loss: str, grad: bool, arguments: dict[str, Any]) -> Request[LossResult]:
    """``POST /v1/losses/{loss}``."""
    return Request(loss, "POST", f"/v1/losses/{_segment(loss)}", _result,
                   _codec().dumps(_compute_body(loss, arguments, grad)))


def losses() -> Request[list[LossInfo]]:
    """``GET /v1/losses``."""
    return Request("losses", "GET", "/v1/losses",
                   lambda body: [loss_info(d) for d in body["losses"]])


def evaluate(loss: str, batches: Iterable[dict[str, Any]], grad: bool,
             options: dict[str, Any]) -> Request[Evaluation]:
    """``POST /v1/losses/{loss}/stream`` with one compute body per line."""
    def lines() -> Iterator[bytes]:
        for batch in batches:
            yield _codec().dumps(_compute_body(loss, {**batch, **options}, grad)) + b"\n"
    body = list(lines()) if isinstance(batches, Sequence) else lines()
    return Request(loss, "POST", f"/v1/losses/{_segment(loss)}/stream", _evaluation,
                   lines=body)


def create_run(loss: str, expected_batches: int | None, run_id: str | None,
               options: dict[str, Any]) -> Request[dict[str, Any]]:
    """``POST /v1/runs`` (an id is made here when none is given: creation is retry-safe)."""
    tensors, scalars = split(loss, options)
    body: dict[str, Any] = {"loss": loss, "run_id": run_id or f"run-{uuid.uuid4().hex}",
                            "options": {**scalars,
                                        **{k: rest_tensor(v) for k, v in tensors.items()}}}
    if expected_batches is not None:
        body["expected_batches"] = expected_batches
    return Request("runs", "POST", "/v1/runs", _run, _codec().dumps(body))


def add_batch(run_id: str, batch_id: str, worker: str, generation: str,
              tensors: dict[str, Any]) -> Request[dict[str, Any]]:
    """``PUT /v1/runs/{run_id}/batches/{batch_id}`` (counted once per batch id, in
    ``generation`` of the run only when given)."""
    body = {"inputs": {k: rest_tensor(v) for k, v in tensors_only(tensors).items()},
            "worker": worker}
    if generation:
        body["generation"] = generation
    return Request("runs", "PUT", f"/v1/runs/{_segment(run_id)}/batches/{_segment(batch_id)}",
                   dict, _codec().dumps(body))


def list_runs(state: str | None, limit: int | None,
              page_token: str | None) -> Request[dict[str, Any]]:
    """``GET /v1/runs`` (newest first): ``{"runs": [...], "next_page_token": str | None}``."""
    query = {k: v for k, v in (("state", state), ("limit", limit), ("page_token", page_token))
             if v is not None}
    path = "/v1/runs" + (f"?{urlencode(query)}" if query else "")
    return Request("runs", "GET", path, lambda body: {
        "runs": [_run(r) for r in body["runs"]],
        "next_page_token": body.get("next_page_token") or None})


def run(run_id: str, method: str = "GET", action: str = "") -> Request[dict[str, Any]]:
    """``GET``/``DELETE /v1/runs/{run_id}``, or ``POST .../{action}``."""
    return Request("runs", method, f"/v1/runs/{_segment(run_id)}{action}",
                   dict if method == "DELETE" else _run)


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON of a 2xx answer; any other status raises its :class:`LossdError`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and isinstance(body, dict):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):  # not lossd's answer: a proxy, or the wrong server
        code = {502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
                401: "UNAUTHENTICATED", 404: "NOT_FOUND", 413: "PAYLOAD_TOO_LARGE"}.get(
            response.status_code, "UNKNOWN")
        error = {"code": code, "message": f"HTTP {response.status_code} "
                 f"{response.request.method} {response.request.url.path[:200]}: "
                 f"{response.text[:200]}"}
    failure = error_for(str(error.get("code", "UNKNOWN")), str(error.get("message", "")),
                        error.get("field"))
    failure.status = response.status_code
    retry_after = response.headers.get("retry-after", "")
    failure.retry_after = float(retry_after) if retry_after.isdecimal() else None
    raise failure


def transport_error(exc: httpx.HTTPError, what: str) -> LossdError:
    """A failure on the way as a :class:`LossdError` (never an httpx exception)."""
    if isinstance(exc, httpx.TimeoutException):
        return DeadlineExceeded(f"{what}: no answer within the call's timeout ({exc})")
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return InvalidArgument(f"url: {exc}", field="url")
    if isinstance(exc, httpx.TransportError):
        cause = exc.__cause__ or exc.__context__
        kind = "TLS" if "SSL" in type(cause).__name__ or "SSL" in str(exc) else "connection"
        return Unavailable(f"{what}: {kind} failed: {str(exc)[:300]}")
    return UnknownError(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")


class _Base:
    """What both REST clients hold: the connection settings."""

    def __init__(self, url: str, *, api_key: str | None, tls: bool | None, ca: str | None,
                 cert: str | None, key: str | None, timeout: float | None, retries: int,
                 headers: dict[str, str] | None) -> None:
        secure = tls_settings(tls, ca, cert, key, default=url.startswith("https://"))
        if secure is not None and url.startswith("http://"):
            raise ValueError(f"TLS is on but the URL is plain http: use https://{url[7:]}")
        self.timeout = timeout
        self.retry = Retry(retries)
        self._config: dict[str, Any] = {
            "base_url": url, "timeout": timeout,
            "headers": {**(headers or {}), **auth_headers(api_key)},
            "verify": secure.ssl_context() if secure is not None else True}

    def _headers(self, request: Request[Any], deadline: Deadline) -> dict[str, str]:
        headers = {"content-type": NDJSON if request.lines is not None else "application/json"}
        remaining = deadline.remaining()
        if remaining is not None:
            headers["x-request-timeout"] = f"{remaining:.3f}"
        return headers


class Client(_Base):
    """Synchronous REST client; see :mod:`lossd.client` for the methods."""

    def __init__(self, url: str = "http://localhost:8000", *, api_key: str | None = None,
                 tls: bool | None = None, ca: str | None = None, cert: str | None = None,
                 key: str | None = None, timeout: float | None = 60.0, retries: int = 8,
                 headers: dict[str, str] | None = None) -> None:
        """Connect to ``url`` (``https://`` turns TLS on); nothing is sent until a call."""
        super().__init__(url, api_key=api_key, tls=tls, ca=ca, cert=cert, key=key,
                         timeout=timeout, retries=retries, headers=headers)
        self._http = httpx.Client(**self._config)

    def send(self, request: Request[T], timeout: float | None = None) -> T:
        """Send ``request`` (retrying what is safe) and read its answer."""
        deadline = Deadline(self.timeout if timeout is None else timeout)

        def attempt() -> T:
            try:
                response = self._http.request(
                    request.method, request.path, content=request.body if request.lines is None
                    else iter(request.lines), headers=self._headers(request, deadline),
                    timeout=deadline.remaining())
            except httpx.HTTPError as exc:
                raise transport_error(exc, request.what) from None
            return request.read(answer(response))
        return (self.retry if request.retry_safe else NO_RETRY).call(attempt, deadline)

    def compute(self, loss: str, *, grad: bool = False, timeout: float | None = None,
                **tensors_and_options: object) -> LossResult:
        """The loss (and with ``grad=True`` its gradients) of one call."""
        return self.send(compute(loss, grad, tensors_and_options), timeout)

    def losses(self) -> list[LossInfo]:
        """Every loss the server computes."""
        return self.send(losses())

    def evaluate(self, loss: str, batches: Iterable[dict[str, Any]], *, grad: bool = False,
                 timeout: float | None = None, **options: object) -> Evaluation:
        """Stream ``batches`` (dicts of tensors); the loss over all of them. Raises
        :class:`LossdError` if any batch was refused (the aggregate would miss it)."""
        return self.send(evaluate(loss, batches, grad, options), timeout)

    def create_run(self, loss: str, *, expected_batches: int | None = None,
                   run_id: str | None = None, **options: object) -> dict[str, Any]:
        """A new evaluation run (the same ``run_id`` again: the same run)."""
        return self.send(create_run(loss, expected_batches, run_id, options))

    def add_batch(self, run_id: str, batch_id: str, *, worker: str = "", generation: str = "",
                  **tensors: object) -> dict[str, Any]:
        """Count one batch in a run, once: ``{"counted": False}`` when it was already counted
        (so retrying on any failure is safe). With ``generation`` (the run's, as created or
        read) it counts only in that run: if the run was deleted and re-created since, it is
        refused (:class:`NotFound`) instead of landing in the new run."""
        return self.send(add_batch(run_id, batch_id, worker, generation, tensors))

    def run(self, run_id: str) -> dict[str, Any]:
        """The run and its ``aggregate`` over every batch counted so far."""
        return self.send(run(run_id))

    def finish_run(self, run_id: str) -> dict[str, Any]:
        """No more batches: the run, finished."""
        return self.send(run(run_id, "POST", "/finish"))

    def list_runs(self, *, state: str | None = None, limit: int | None = None,
                  page_token: str | None = None) -> dict[str, Any]:
        """Runs, newest first, a page at a time (``state``: "open" or "finished")."""
        return self.send(list_runs(state, limit, page_token))

    def delete_run(self, run_id: str) -> None:
        """Forget the run and its batches."""
        self.send(run(run_id, "DELETE"))

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        """``with Client(...) as client:`` closes it at the end."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close."""
        self.close()


class AsyncClient(_Base):
    """Asynchronous REST client: :class:`Client`'s methods, awaited."""

    def __init__(self, url: str = "http://localhost:8000", *, api_key: str | None = None,
                 tls: bool | None = None, ca: str | None = None, cert: str | None = None,
                 key: str | None = None, timeout: float | None = 60.0, retries: int = 8,
                 headers: dict[str, str] | None = None) -> None:
        """Connect to ``url`` (``https://`` turns TLS on); nothing is sent until a call."""
        super().__init__(url, api_key=api_key, tls=tls, ca=ca, cert=cert, key=key,
                         timeout=timeout, retries=retries, headers=headers)
        self._http = httpx.AsyncClient(**self._config)

    async def send(self, request: Request[T], timeout: float | None = None) -> T:
        """Send ``request`` (retrying what is safe) and read its answer."""
        deadline = Deadline(self.timeout if timeout is None else timeout)

        async def attempt() -> T:
            async def lines() -> AsyncIterator[bytes]:
                for line in request.lines or ():
                    yield line
            try:
                response = await self._http.request(
                    request.method, request.path, content=request.body if request.lines is None
                    else lines(), headers=self._headers(request, deadline),
                    timeout=deadline.remaining())
            except httpx.HTTPError as exc:
                raise transport_error(exc, request.what) from None
            return request.read(answer(response))
        return await (self.retry if request.retry_safe else NO_RETRY).acall(attempt, deadline)

    async def compute(self, loss: str, *, grad: bool = False, timeout: float | None = None,
                      **tensors_and_options: object) -> LossResult:
        """See :meth:`Client.compute`."""
        return await self.send(compute(loss, grad, tensors_and_options), timeout)

    async def losses(self) -> list[LossInfo]:
        """See :meth:`Client.losses`."""
        return await self.send(losses())

    async def evaluate(self, loss: str, batches: Iterable[dict[str, Any]], *,
                       grad: bool = False, timeout: float | None = None,
                       **options: object) -> Evaluation:
        """See :meth:`Client.evaluate`."""
        return await self.send(evaluate(loss, batches, grad, options), timeout)

    async def create_run(self, loss: str, *, expected_batches: int | None = None,
                         run_id: str | None = None, **options: object) -> dict[str, Any]:
        """See :meth:`Client.create_run`."""
        return await self.send(create_run(loss, expected_batches, run_id, options))

    async def add_batch(self, run_id: str, batch_id: str, *, worker: str = "",
                        generation: str = "", **tensors: object) -> dict[str, Any]:
        """See :meth:`Client.add_batch`."""
        return await self.send(add_batch(run_id, batch_id, worker, generation, tensors))

    async def run(self, run_id: str) -> dict[str, Any]:
        """See :meth:`Client.run`."""
        return await self.send(run(run_id))

    async def finish_run(self, run_id: str) -> dict[str, Any]:
        """See :meth:`Client.finish_run`."""
        return await self.send(run(run_id, "POST", "/finish"))

    async def list_runs(self, *, state: str | None = None, limit: int | None = None,
                           page_token: str | None = None) -> dict[str, Any]:
        """See :meth:`Client.list_runs`."""
        return await self.send(list_runs(state, limit, page_token))

    async def delete_run(self, run_id: str) -> None:
        """See :meth:`Client.delete_run`."""
        await self.send(run(run_id, "DELETE"))

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        """``async with AsyncClient(...) as client:`` closes it at the end."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close."""
        await self.aclose()
