"""Native REST routes: ``GET /v1/losses``, ``GET /v1/losses/{name}``,
``POST /v1/losses/{name}`` and ``POST /v1/batch``.

A compute body ``{"inputs": {...}, "options": {...}, "grad": bool}`` is parsed with orjson
(never into pydantic objects: a million-element list must not become a million objects), read
into a :class:`~lossd.calls.Call` by :func:`decode_call`, computed by the engine and answered by
:func:`encode_answer` in the encoding and dtype the request used for its first tensor.
Requests for registered losses skip FastAPI's routing (:mod:`.fastpath`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from ... import codec
from ...calls import Call, CallBuilder
from ...engine import Engine
from ...errors import LossdError, MalformedRequest
from ...losses import REGISTRY, Result, get_spec
from ...settings import Settings
from .. import describe
from . import openapi
from .body import read_json, request_timeout
from .disconnect import run_watching_client
from .guard import Guard, json_response, native_error


def decode_call(loss: str, body: Any, limits: codec.Limits, where: str = "",
                timeout: float | None = None) -> Call:
    """A compute body as a :class:`Call`; ``where`` prefixes fields (``requests[3].``),
    ``timeout`` is the transport's deadline.

    Tensor-valued options (class ``weight``) may travel in ``options`` too.
    """
    builder = CallBuilder(loss, limits, where)
    if not isinstance(body, dict):
        raise MalformedRequest(f"{where}body: expected an object", field=f"{where}body")
    openapi.validate_request(builder.spec, {k: v for k, v in body.items() if k != "loss"}
                             if where else body, where)
    inputs, options = body["inputs"], body.get("options", {})
    tensor_options = {k: v for k, v in options.items() if builder.is_tensor(k)}
    builder.check_count(len(inputs) + len(tensor_options))
    for group, tensors in (("inputs", inputs), ("options", tensor_options)):
        for name, value in tensors.items():
            field = f"{where}{group}.{name[:64]}"
            array, encoding, bf16 = codec.from_json(value, field, builder.spec.tensor_map.get(name),
                                                    limits)
            builder.add_tensor(name, array, field=field, bfloat16=bf16, encoding=encoding)
    builder.options = {k: v for k, v in options.items() if k not in tensor_options}
    builder.grad, builder.timeout = body.get("grad", False), timeout
    return builder.build()


def encode_answer(call: Call, result: Result) -> dict[str, Any]:
    """``{"loss": number | tensor, "dtype": the loss's dtype, "grads": {name: tensor}?,
    "warnings": [text]?}`` in the call's encoding (``dtype`` says what a JSON number stands
    for, e.g. float32; ``warnings``, when torch warns of the call, its texts)."""
    encoding = codec.Encoding.LIST if result.loss.ndim == 0 else call.encoding  # 0-d: a number
    loss = codec.to_json(result.loss, encoding, call.loss_bfloat16)
    dtype = "bfloat16" if call.loss_bfloat16 else (codec.DTYPE_NAMES.get(result.loss.dtype)
                                                   or result.loss.dtype.name)
    body: dict[str, Any] = {"loss": loss, "dtype": dtype}
    if call.grad:
        body["grads"] = {name: codec.to_json(g, call.encoding, name in call.bfloat16)
                         for name, g in result.grads.items()}
    if result.warnings:
        body["warnings"] = list(result.warnings)
    return body


class ComputeEndpoint:
    """``POST /v1/losses/{name}``: decode, compute through the engine, encode."""

    def __init__(self, settings: Settings, engine: Engine, guard: Guard) -> None:
        self.settings, self.engine, self.guard = settings, engine, guard
        self.limits = codec.Limits.of(settings)

    async def __call__(self, name: str, request: Request) -> Response:
        """Answer one compute request for loss ``name`` (errors too: the guard maps them)."""
        async def handle() -> Response:
            body = await read_json(request, self.settings)
            call = decode_call(name, body, self.limits, timeout=request_timeout(request))
            result = await run_watching_client(request, self.engine.run(call))
            return json_response(encode_answer(call, result))
        return await self.guard(name, request, handle)


def add_native_routes(app: FastAPI, settings: Settings, engine: Engine,
                      endpoint: ComputeEndpoint) -> None:
    """The ``/v1/losses`` and ``/v1/batch`` routes (``endpoint`` also serves the fast path)."""
    guard, limits = endpoint.guard, endpoint.limits

    @app.get("/v1/losses", tags=["losses"], summary="Every loss: tensors, options, gradients",
             response_model=openapi.LossList)
    async def list_losses() -> Response:
        return json_response({"losses": describe.describe_all()})

    @app.get("/v1/losses/{name}", tags=["losses"], summary="One loss",
             response_model=openapi.LossInfo, responses=openapi.ERRORS)
    async def get_loss(name: openapi.LossName) -> Response:
        try:
            return json_response(describe.describe(get_spec(name)))
        except LossdError as error:
            return native_error(error)

    for spec in sorted(REGISTRY.values(), key=lambda s: s.name):
        app.add_api_route(
            f"/v1/losses/{spec.name}", _documented(endpoint, spec.name), methods=["POST"],
            tags=["losses"], summary=f"{spec.name}: {spec.summary}"[:120],
            description=f"torch equivalent: {spec.torch}", operation_id=f"compute_{spec.name}",
            response_model=openapi.ComputeResponse, responses=openapi.ERRORS,
            openapi_extra=openapi.compute_body(spec))

    @app.post("/v1/losses/{name}", include_in_schema=False)
    async def compute(name: str, request: Request) -> Response:
        # registered losses are served by the fast path (fastpath.py) before routing (each
        # documented by its own route above); this route answers the rest: 404 for an unknown
        # name
        return await endpoint(name, request)

    @app.post("/v1/batch", tags=["losses"], summary="Several computations, answered in order",
              response_model=openapi.BatchResponse, responses=openapi.ERRORS,
              openapi_extra=openapi.batch_body())
    async def batch(request: Request) -> Response:
        async def handle() -> Response:
            body = await read_json(request, settings)
            openapi.validate_batch(body)
            timeout = request_timeout(request)
            # a malformed item fails the whole request (422, like any schema error); an item
            # that is well-formed but wrong (unknown loss, bad shape) answers its own error
            calls: list[Call | LossdError] = []
            for i, item in enumerate(body["requests"]):
                where = f"requests[{i}]."
                try:
                    calls.append(decode_call(item["loss"], item, limits, where, timeout))
                except MalformedRequest:
                    raise
                except LossdError as error:
                    calls.append(error)

            async def one(call: Call | LossdError) -> dict[str, Any]:
                try:
                    if isinstance(call, LossdError):
                        raise call
                    return encode_answer(call, await engine.run(call))
                except LossdError as error:
                    return {"error": error.to_dict()}

            results = await run_watching_client(
                request, asyncio.gather(*(one(call) for call in calls)))
            return json_response({"results": results})
        return await guard("batch", request, handle)



def _documented(endpoint: ComputeEndpoint, loss: str
                ) -> Callable[[Request], Awaitable[Response]]:
    """The documented route of one loss (the fast path answers it before routing)."""
    async def compute(request: Request) -> Response:
        return await endpoint(loss, request)
    return compute
