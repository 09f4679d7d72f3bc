"""Native REST frontend (FastAPI): decode JSON with orjson, call the engine, encode.

Routes: ``GET /v1/losses``, ``GET /v1/losses/{name}``, ``POST /v1/losses/{name}``,
``POST /v1/batch``, ``GET /livez``, ``GET /readyz``, ``GET /metrics``. Bodies are parsed with
orjson (never pydantic: a million-element list must not become a million objects); pydantic
models only document the API in ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..engine import Engine
from ..errors import (
    HTTP_STATUS,
    ErrorCode,
    InvalidArgument,
    LossdError,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
)
from ..losses import REGISTRY, Result, get_spec
from ..settings import Settings
from . import codec, jsonbody, jsonstream, schema
from .auth import RestAuth
from .describe import describe, describe_all
from .disconnect import QuietDisconnect

log = logging.getLogger("lossd.rest")
JSON = "application/json"
TIMEOUT_HEADER = "x-request-timeout"  # seconds; the request is dropped if not computed by then


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status, headers,
                    media_type=JSON)


def error_response(error: LossdError, headers: dict[str, str] | None = None) -> Response:
    status = 422 if isinstance(error, MalformedRequest) else HTTP_STATUS[error.code]
    if error.code is ErrorCode.UNAVAILABLE:
        headers = {**(headers or {}), "Retry-After": "1"}
    return json_response({"error": error.to_dict()}, status, headers)


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


async def receive_body(request: Request, limit: int, feed: Callable[[bytes], object]) -> None:
    """Hand the body's chunks to ``feed`` as they arrive, refused as soon as it passes
    ``limit`` bytes (declared or streamed)."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body: at most {limit} bytes; got {declared}", field="body")
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body: at most {limit} bytes; got more", field="body")
            feed(chunk)
    except ClientDisconnect:  # hung up mid-body: nothing to answer (see disconnect.py)
        raise asyncio.CancelledError("client disconnected") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The body (see :func:`receive_body`)."""
    chunks: list[bytes] = []
    await receive_body(request, limit, chunks.append)
    return b"".join(chunks)


async def read_json(request: Request, settings: Settings) -> dict[str, Any]:
    """``parse_json(await read_body(...))``, parsed as the chunks arrive (:mod:`jsonstream`:
    ``b64`` strings decoded while hot in cache, no joined copy of the body)."""
    stream = jsonstream.JsonStream(settings.max_json_depth, _declared_length(request))
    await receive_body(request, settings.max_body_bytes, stream.feed)
    return _json_object(stream.finish())


def parse_json(body: bytes, settings: Settings) -> dict[str, Any]:
    return _json_object(jsonbody.loads(body, settings.max_json_depth))


def _json_object(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedRequest("body: expected a JSON object", field="body")
    return obj


def _timeout(request: Request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidArgument(f"{TIMEOUT_HEADER}: expected seconds > 0; got {raw!r}",
                              field=TIMEOUT_HEADER)
    return value


class ComputeCall:
    """One decoded compute request: arrays, options and how to encode the answer."""

    def __init__(self, loss: str, body: Any, settings: Settings, where: str = "") -> None:
        if not isinstance(body, dict):
            raise MalformedRequest(f"{where}body: expected an object", field=f"{where}body")
        unknown = set(body) - {"inputs", "options", "grad"} - ({"loss"} if where else set())
        if unknown:
            raise MalformedRequest(f"{where}{sorted(unknown)[0]}: unknown field; expected "
                                   f"inputs, options, grad", field=f"{where}{sorted(unknown)[0]}")
        inputs, options, grad = body.get("inputs"), body.get("options", {}), body.get("grad",
                                                                                    False)
        if not isinstance(inputs, dict):
            raise MalformedRequest(f"{where}inputs: expected an object of tensors",
                                   field=f"{where}inputs")
        if not isinstance(options, dict):
            raise MalformedRequest(f"{where}options: expected an object", field=f"{where}options")
        if not isinstance(grad, bool):
            raise MalformedRequest(f"{where}grad: expected true or false", field=f"{where}grad")
        spec = get_spec(loss)
        tensors = spec.tensor_map
        # tensor-valued options (class weights) may travel in options too
        tensor_options = {k: v for k, v in options.items() if k in tensors}
        if len(inputs) + len(tensor_options) > settings.max_tensors:
            raise InvalidArgument(f"{where}inputs: at most {settings.max_tensors} tensors",
                                  field=f"{where}inputs")
        tensor_limits = codec.Limits.of(settings)
        self.loss, self.grad = loss, grad
        self.options = {k: v for k, v in options.items() if k not in tensors}
        self.arrays, self.bfloat16 = {}, set()
        self.encoding = codec.Encoding.LIST
        for name, value in {**inputs, **tensor_options}.items():
            field = f"inputs.{name}" if name in inputs else f"options.{name}"
            array, encoding, bf16 = codec.from_json(value, f"{where}{field}", tensors.get(name),
                                                    tensor_limits)
            self.arrays[name] = array
            if bf16:
                self.bfloat16.add(name)
            if name == spec.tensors[0].name:
                self.encoding = encoding

    def encode(self, result: Result) -> dict[str, Any]:
        bf16_loss = codec.bfloat16_result(self.arrays, self.bfloat16)
        loss = (codec.scalar_json(result.loss) if result.loss.ndim == 0
                else codec.to_json(result.loss, self.encoding, bf16_loss))
        body: dict[str, Any] = {"loss": loss}
        if self.grad:
            body["grads"] = {name: codec.to_json(g, self.encoding, name in self.bfloat16)
                             for name, g in result.grads.items()}
        return body


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_watching_client(request: Request, work: Awaitable[Any]) -> Any:
    """Await ``work`` in this task; if the HTTP client disconnects first, cancel it (dropping
    queued work) and raise ``CancelledError("client disconnected")``.

    The watcher task starts only once the work has waited a loop iteration: an idle server
    computes small calls inline, without ever suspending, and then no task is made at all.
    """
    owner = asyncio.current_task()
    assert owner is not None
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"finished": False, "left": False, "watcher": None}

    async def watch() -> None:
        try:
            await _until_disconnect(request)
        except Exception:  # a failed receive counts as the client gone
            pass
        if not state["finished"]:
            state["left"] = True
            owner.cancel()

    def start_watching() -> None:
        state["watcher"] = loop.create_task(watch())

    starting = loop.call_soon(start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if state["left"] and owner.uncancel() == 0:  # ours, not a shutdown's cancellation
            raise asyncio.CancelledError("client disconnected") from None
        raise
    finally:
        state["finished"] = True
        starting.cancel()
        if state["watcher"] is not None:
            state["watcher"].cancel()


def _observer(engine: Engine) -> Callable[[str, str, float], None]:
    metrics = engine.metrics

    def observe(loss: str, code: str, started: float) -> None:
        label = loss if loss in REGISTRY or loss == "batch" else "unknown"  # bounded cardinality
        metrics.answered(label, "rest", code, time.perf_counter() - started)
    return observe


def _guard(engine: Engine) -> Callable[[str, Request, Callable[[], Awaitable[Response]]],
                                       Awaitable[Response]]:
    """Run a handler; map lossd errors to responses once; count and log every outcome."""
    observe = _observer(engine)

    async def guarded(loss: str, request: Request,
                      handler: Callable[[], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or os.urandom(16).hex()
        headers = {"X-Request-Id": request_id}
        try:
            response = await handler()
            response.headers.update(headers)
            observe(loss, "OK", started)
            return response
        except LossdError as error:
            log.info("request %s loss=%s refused: %s %s", request_id, loss, error.code.value,
                     error.message[:200])
            observe(loss, error.code.value, started)
            return error_response(error, headers)
        except asyncio.CancelledError:
            observe(loss, "CANCELLED", started)
            raise
        except Exception:
            log.exception("request %s loss=%s failed", request_id, loss)
            observe(loss, ErrorCode.INTERNAL.value, started)
            return error_response(LossdError("internal error; the incident is logged"), headers)
    return guarded


class ComputeEndpoint:
    """``POST /v1/losses/{name}``: decode, compute through the engine, encode."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings, self.engine, self.guarded = settings, engine, _guard(engine)

    async def __call__(self, name: str, request: Request) -> Response:
        async def handle() -> Response:
            body = await read_json(request, self.settings)
            call = ComputeCall(name, body, self.settings)
            result = await run_watching_client(request, self.engine.compute(
                call.loss, call.arrays, call.options, grad=call.grad, timeout=_timeout(request)))
            return json_response(call.encode(result))
        return await self.guarded(name, request, handle)


class ComputeFastPath:
    """ASGI middleware serving ``POST /v1/losses/{registered loss}`` directly.

    The hot path of small requests: it sits in front of FastAPI and skips its middleware,
    routing and dependency solving (about half of a small request's server time), and answers
    exactly as the documented route does, through the same :class:`ComputeEndpoint` (which
    catches every exception itself).
    """

    PREFIX = "/v1/losses/"

    def __init__(self, app: Callable[..., Awaitable[None]], endpoint: ComputeEndpoint) -> None:
        self.app, self.endpoint = app, endpoint

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "POST" and path.startswith(
                self.PREFIX) and path[len(self.PREFIX):] in REGISTRY:
            response = await self.endpoint(path[len(self.PREFIX):], Request(scope, receive))
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(settings: Settings, engine: Engine,
               extensions: Sequence[Callable[[FastAPI], None]] = ()
               ) -> Callable[..., Awaitable[None]]:
    """The REST app around ``engine`` (which the caller starts and drains): FastAPI with the
    native and V2 routes (plus ``extensions``, e.g. evaluation runs), fronted by
    :class:`ComputeFastPath` (and :class:`RestAuth` when API keys are set)."""
    metrics = engine.metrics
    app = FastAPI(title="lossd", version="0.1.0", description=schema.DESCRIPTION,
                  openapi_tags=schema.TAGS)
    endpoint = ComputeEndpoint(settings, engine)
    guarded = endpoint.guarded
    app.add_middleware(QuietDisconnect)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: NotFound, 405: MalformedRequest}.get(exc.status_code, MalformedRequest)
        error = code(f"{request.method} {request.url.path}: {exc.detail}", field="path")
        return json_response({"error": error.to_dict()}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(MalformedRequest(f"{where}: {first.get('msg', 'invalid')}",
                                               field=where))

    @app.get("/livez", tags=["health"], summary="Process is alive")
    async def livez() -> Response:
        return json_response({"status": "alive"})

    @app.get("/readyz", tags=["health"], summary="Engine running, not draining, queue not full",
             responses={503: {"description": "draining or under pressure"}})
    async def readyz() -> Response:
        if engine.ready:
            return json_response({"status": "ready", "queue_pressure": engine.pressure})
        state = "draining" if engine.draining or not engine.live else "overloaded"
        return json_response({"status": state, "queue_pressure": engine.pressure}, 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics",
             response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/losses", tags=["losses"], summary="Every loss: tensors, options, gradients",
             response_model=schema.LossList)
    async def list_losses() -> Response:
        return json_response({"losses": describe_all()})

    @app.get("/v1/losses/{name}", tags=["losses"], summary="One loss",
             response_model=schema.LossInfo, responses=schema.ERRORS)
    async def get_loss(name: schema.LossName) -> Response:
        try:
            return json_response(describe(get_spec(name)))
        except LossdError as error:
            return error_response(error)

    @app.post("/v1/losses/{name}", tags=["losses"], summary="Compute a loss (and gradients)",
              response_model=schema.ComputeResponse, responses=schema.ERRORS,
              openapi_extra=schema.compute_body())
    async def compute(name: schema.LossName, request: Request) -> Response:
        # requests for registered losses are served by ComputeFastPath before routing; this
        # route documents the API and answers the rest (e.g. unknown names)
        return await endpoint(name, request)

    @app.post("/v1/batch", tags=["losses"], summary="Several computations, answered in order",
              response_model=schema.BatchResponse, responses=schema.ERRORS,
              openapi_extra=schema.batch_body())
    async def batch(request: Request) -> Response:
        async def handle() -> Response:
            body = await read_json(request, settings)
            items = body.get("requests")
            if set(body) != {"requests"} or not isinstance(items, list):
                raise MalformedRequest("requests: expected {\"requests\": [...]}",
                                       field="requests")
            timeout = _timeout(request)
            # a malformed item fails the whole request (422, like any schema error); an item
            # that is well-formed but wrong (unknown loss, bad shape) answers its own error
            calls: list[ComputeCall | LossdError] = []
            for i, item in enumerate(items):
                where = f"requests[{i}]."
                if not isinstance(item, dict) or not isinstance(item.get("loss"), str):
                    raise MalformedRequest(f"{where}loss: expected a loss name",
                                           field=f"{where}loss")
                try:
                    calls.append(ComputeCall(item["loss"], item, settings, where))
                except MalformedRequest:
                    raise
                except LossdError as error:
                    calls.append(error)

            async def one(call: ComputeCall | LossdError) -> dict[str, Any]:
                try:
                    if isinstance(call, LossdError):
                        raise call
                    result = await engine.compute(call.loss, call.arrays, call.options,
                                                  grad=call.grad, timeout=timeout)
                    return call.encode(result)
                except LossdError as error:
                    return {"error": error.to_dict()}

            results = await run_watching_client(
                request, asyncio.gather(*(one(call) for call in calls)))
            return json_response({"results": results})
        return await guarded("batch", request, handle)

    from .v2_rest import add_v2_routes  # imported here: v2_rest builds on this module
    add_v2_routes(app, settings, engine)
    for extend in extensions:
        extend(app)
    front: Any = QuietDisconnect(ComputeFastPath(app, endpoint))
    keys = settings.keys()
    return RestAuth(front, keys, not settings.metrics_auth) if keys else front
