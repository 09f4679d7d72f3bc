"""Open Inference Protocol v2 over HTTP/REST, mounted into the native FastAPI app.

Routes (``[/versions/1]`` optional after a model name):
    GET  /v2                                server metadata
    GET  /v2/health/live, /v2/health/ready  200, or 503 with a V2 error body when not ready
    GET  /v2/models/{loss}                  model metadata (from the registry)
    GET  /v2/models/{loss}/ready
    POST /v2/models/{loss}/infer            JSON tensors and the binary tensor data extension

Binary tensor data (Triton's extension): the body is the JSON header followed by raw tensors;
the header's length is in ``Inference-Header-Content-Length``; an input whose
``parameters.binary_data_size`` is set takes the next that many bytes. Outputs travel binary when
the output's ``parameters.binary_data`` is true, or, when it is absent, when the request's
``parameters.binary_data_output`` is. Errors are V2's ``{"error": "<message>"}`` with the
status of :data:`lossd.api.rest.guard.HTTP_STATUS`; ``/openapi.json`` documents the routes.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from starlette.routing import Match

from ... import codec
from ...calls import CallBuilder
from ...engine import Engine
from ...errors import InvalidArgument, LossdError, MalformedRequest, NotFound, Unavailable, shown
from ...losses import Result
from ...settings import Settings
from .. import v2
from ..numbers import bool_value, int_value, parse_int
from . import depth, jsonnumbers, openapi
from .body import read_body, request_timeout
from .disconnect import run_watching_client
from .guard import JSON, Guard, json_response, v2_error

PROTOCOL = "v2-rest"
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE = "binary_data_size"
BINARY_OUTPUT = "binary_data_output"
OCTETS = "application/octet-stream"


def parse_header(raw: bytes, max_depth: int) -> dict[str, Any]:
    """The JSON inference header (long numeric ``data`` read straight into NumPy arrays by
    :mod:`.jsonnumbers`), nested at most ``max_depth`` deep. Python's json is the fallback for
    the bare ``NaN`` and ``Infinity`` tokens that tritonclient writes for non-finite JSON
    data."""
    numbers = jsonnumbers.loads(raw)
    if numbers is not None:
        obj, stand_in = numbers
    else:
        stand_in = raw
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise MalformedRequest(f"body: not valid JSON ({str(exc)[:200]})",
                                       field="body") from None
    if not isinstance(obj, dict):
        raise MalformedRequest("body: expected a JSON object", field="body")
    depth.check_json_depth(stand_in, max_depth)  # valid JSON: a true answer
    return obj


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequest(f"{field}: expected an object", field=field)
    return value


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedRequest(f"{field}: expected a list", field=field)
    return value


HEADER_FIELDS = ("id", "parameters", "inputs", "outputs", "model_name", "model_version")


class InferRequest:
    """A V2 REST infer body read into a :class:`~lossd.calls.Call`, and how to answer it."""

    def __init__(self, loss: str, version: str | None, body: bytes, header_length: str | None,
                 settings: Settings, timeout: float | None = None) -> None:
        """``timeout``: the transport's own deadline (the sooner of it and the request's
        ``timeout`` parameter applies)."""
        if header_length is None:
            header, binary = body, memoryview(b"")
        else:
            length = parse_int(header_length, field=HEADER_LENGTH, low=0, high=len(body))
            header, binary = body[:length], memoryview(body)[length:]
        obj = parse_header(header, settings.max_json_depth)
        for key in obj:
            if key not in HEADER_FIELDS:
                raise MalformedRequest(f"{str(key)[:64]}: unknown field; expected "
                                       f"{', '.join(HEADER_FIELDS)}", field=str(key)[:64])
        for key, given in (("model_name", loss), ("model_version", version)):
            # V2 clients may repeat the path's model in the body (KServe's REST client does)
            if key in obj and obj[key] not in (given, None) and not (
                    key == "model_version" and given is None and obj[key] in ("", v2.VERSION)):
                raise InvalidArgument(f"{key}: the body names {str(obj[key])[:64]!r}, the path "
                                      f"{given!r}", field=key)
        self.id = obj.get("id")
        if self.id is not None and not isinstance(self.id, str):
            raise MalformedRequest("id: expected a string", field="id")
        parameters = dict(_object(obj.get("parameters"), "parameters"))
        self.binary_default = bool_value(parameters.pop(BINARY_OUTPUT, False),
                                         field=f"parameters.{BINARY_OUTPUT}")
        call = v2.builder(loss, version, codec.Limits.of(settings))
        v2.set_parameters(call, parameters)
        call.timeout = v2.earliest(call.timeout, timeout)
        offset = 0
        for i, item in enumerate(_list(obj.get("inputs"), "inputs")):
            offset = self._input(call, _object(item, f"inputs[{i}]"), binary, offset)
        if offset != len(binary):
            raise InvalidArgument(f"body: {len(binary) - offset} bytes of binary data that no "
                                  f"input's {BINARY_SIZE} claims", field="body")
        self.binary: dict[str, bool] = {}
        self.outputs = v2.Outputs()
        if "outputs" in obj:
            names = []
            for i, item in enumerate(_list(obj["outputs"], "outputs")):
                item = _object(item, f"outputs[{i}]")
                options = _object(item.get("parameters"), f"outputs[{i}].parameters")
                unknown = set(options) - {"binary_data"}
                if unknown:
                    raise InvalidArgument(f"outputs[{i}].parameters: unsupported "
                                          f"{str(sorted(unknown)[0])[:64]!r}; only binary_data",
                                          field=f"outputs[{i}].parameters")
                names.append(item.get("name"))
                if "binary_data" in options:
                    self.binary[str(item.get("name"))] = bool_value(
                        options["binary_data"], field=f"outputs[{i}].binary_data")
            self.outputs = v2.Outputs.ask(call, names)
        self.call = call.build()

    @staticmethod
    def _input(call: CallBuilder, item: dict[str, Any], binary: memoryview, offset: int) -> int:
        name = item.get("name")
        where = f"inputs.{str(name)[:64]}"
        options = _object(item.get("parameters"), f"{where}.parameters")
        unknown = set(options) - {BINARY_SIZE}
        if unknown:
            raise InvalidArgument(f"{where}.parameters: unsupported "
                                  f"{str(sorted(unknown)[0])[:64]!r}; only {BINARY_SIZE}",
                                  field=f"{where}.parameters")
        shape = item.get("shape")
        if BINARY_SIZE not in options:
            if "data" not in item:
                raise InvalidArgument(f"{where}: needs data or parameters.{BINARY_SIZE}",
                                      field=where)
            v2.add_input(call, name, item.get("datatype"), shape,
                         values=v2.flatten(item["data"], f"{where}.data"))
            return offset
        size = int_value(options[BINARY_SIZE], field=f"{where}.parameters.{BINARY_SIZE}",
                         low=0)
        if "data" in item:
            raise InvalidArgument(f"{where}: data and {BINARY_SIZE} are exclusive", field=where)
        if offset + size > len(binary):
            raise InvalidArgument(f"{where}: {BINARY_SIZE} {shown(size)} runs past the body's "
                                  f"binary data ({len(binary) - offset} bytes left)", field=where)
        v2.add_input(call, name, item.get("datatype"), shape, raw=binary[offset:offset + size])
        return offset + size

    def answer(self, result: Result) -> Response:
        """The V2 response: JSON outputs, or JSON header + binary outputs."""
        outputs, blobs = [], []
        for name, array, bf16 in self.outputs.of(self.call, result):
            out: dict[str, Any] = {"name": name, "datatype": v2.datatype_of(array, bf16),
                                   "shape": list(array.shape)}
            if self.binary.get(name, self.binary_default):
                blob = codec.to_bytes(array, bf16)
                out["parameters"] = {BINARY_SIZE: len(blob)}
                blobs.append(blob)
            else:
                out["data"] = codec.to_json(array, codec.Encoding.DATA, bf16)["data"]
            outputs.append(out)
        body: dict[str, Any] = {"model_name": self.call.loss, "model_version": v2.VERSION,
                                "outputs": outputs}
        if self.id is not None:
            body["id"] = self.id
        if parameters := v2.warnings_parameter(result):
            body["parameters"] = parameters
        header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        if not blobs:
            return Response(header, media_type=JSON)
        return Response(b"".join([header, *blobs]), media_type=OCTETS,
                        headers={HEADER_LENGTH: str(len(header))})


class InferEndpoint:
    """``POST /v2/models/{loss}[/versions/{version}]/infer``: read, compute through the engine,
    answer."""

    def __init__(self, settings: Settings, engine: Engine, guard: Guard) -> None:
        self.settings, self.engine, self.guard = settings, engine, guard

    async def __call__(self, loss: str, version: str | None, request: Request) -> Response:
        """Answer one infer request for ``loss`` (errors too: the guard maps them)."""
        async def handle() -> Response:
            body = await read_body(request, self.settings.max_body_bytes)
            infer = InferRequest(loss, version, body, request.headers.get(HEADER_LENGTH),
                                 self.settings, request_timeout(request))
            return infer.answer(await run_watching_client(request, self.engine.run(infer.call)))
        return await self.guard(loss, request, handle)


def add_v2_routes(app: FastAPI, engine: Engine, endpoint: InferEndpoint) -> None:
    """Mount the V2 routes on ``app`` (same engine, same auth middleware as native REST);
    ``endpoint`` also serves the fast path."""
    router = APIRouter(tags=["v2"])
    live_ok = openapi.json_answer(
        {"type": "object", "properties": {"live": {"type": "boolean"}}}, "alive")
    ready_ok = openapi.json_answer(
        {"type": "object", "properties": {"ready": {"type": "boolean"}}}, "ready")

    @router.get("/v2", summary="Server metadata", responses=openapi.v2_responses(
        ok=openapi.json_answer({"type": "object"}, "name, version, extensions")))
    async def server_metadata() -> Response:
        return json_response(v2.server_metadata())

    @router.get("/v2/health/live", summary="Server is live",
                responses=openapi.v2_responses(ok=live_ok))
    async def live() -> Response:
        return json_response({"live": True})

    @router.get("/v2/health/ready", summary="Server is ready",
                responses=openapi.v2_responses(503, ok=ready_ok))
    async def ready() -> Response:
        if engine.ready:
            return json_response({"ready": True})
        return v2_error(Unavailable("not ready: draining or overloaded"))

    async def model_metadata(loss: str, version: str | None) -> Response:
        try:
            return json_response(v2.model_metadata(v2.model(loss, version)))
        except LossdError as error:
            return v2_error(error)

    async def model_ready(loss: str, version: str | None) -> Response:
        try:
            v2.model(loss, version)
        except LossdError as error:
            return v2_error(error)
        if engine.ready:
            return json_response({"name": loss, "ready": True})
        return v2_error(Unavailable(f"model {loss!r} not ready: server draining or "
                                    f"overloaded"))

    async def infer(loss: str, version: str | None, request: Request) -> Response:
        # registered losses are served by the fast path (fastpath.py) before routing
        return await endpoint(loss, version, request)

    metadata_ok = openapi.json_answer({"type": "object", "description": "name, versions, "
                                       "platform, inputs and outputs (name, datatype, shape)"},
                                      "the model")
    Route = tuple[str, Callable[..., Awaitable[Response]], str, str, dict[int | str, Any],
                  dict[str, Any]]
    routes: list[Route] = [
        ("", model_metadata, "GET", "Model metadata",
         openapi.v2_responses(404, ok=metadata_ok), {}),
        ("/ready", model_ready, "GET", "Model is ready",
         openapi.v2_responses(404, 503, ok=ready_ok), {}),
        ("/infer", infer, "POST", "Compute the loss (V2 inference)",
         openapi.v2_responses(400, 404, 413, 503, 504, ok=openapi.V2_INFER_OK),
         openapi.v2_infer_body())]
    for suffix, handler, method, summary, responses, body in routes:
        router.add_api_route(f"/v2/models/{{loss}}{suffix}", _latest(handler),
                             methods=[method], summary=summary, responses=responses,
                             openapi_extra=body or None)
        router.add_api_route(f"/v2/models/{{loss}}/versions/{{version}}{suffix}", handler,
                             methods=[method], summary=f"{summary} (a version)",
                             responses=responses, openapi_extra=body or None)

    @router.api_route("/v2/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                      include_in_schema=False)
    async def unknown(rest: str, request: Request) -> Response:
        """Anything else under /v2: 405 when another method would match, else 404."""
        for route in router.routes:
            if route is not unknown_route and route.matches(request.scope)[0] is Match.PARTIAL:
                return json_response({"error": f"{request.method} is not allowed on "
                                               f"{request.url.path[:200]}"}, 405)
        return v2_error(NotFound(f"{request.method} {request.url.path[:200]}: no such "
                                 f"endpoint"))

    unknown_route = router.routes[-1]
    app.include_router(router)


def _latest(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """``handler`` for the path without a version (the model's only version)."""
    if "request" in inspect.signature(handler).parameters:
        async def with_request(loss: str, request: Request) -> Response:
            return await handler(loss, None, request)
        return with_request

    async def without_request(loss: str) -> Response:
        return await handler(loss, None)
    return without_request
