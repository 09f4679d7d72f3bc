"""REST routes for dataset-level losses: streams (stateless) and runs (stateful).

    POST   /v1/losses/{name}/stream              NDJSON upload, one compute body per line ->
                                                 {"results": [...], "aggregate": {...}}
    POST   /v1/runs                              create {"loss", "options", "expected_batches",
                                                 "run_id"?} -> the run (201)
    GET    /v1/runs?state=&limit=&page_token=&offset=
                                                 runs newest first -> {"runs", "next_page_token"}
    GET    /v1/runs/{run_id}                     the run and its aggregate so far
    PUT    /v1/runs/{run_id}/batches/{batch_id}  {"inputs", "worker"?, "generation"?}
                                                 -> {"counted", "batches"} (201 counted,
                                                 200 already counted: idempotent)
    POST   /v1/runs/{run_id}/finish              no more batches -> the run
    DELETE /v1/runs/{run_id}                     -> {"deleted": run_id}

The stream's answer is sent once the upload ends (each line is computed as it arrives): a client
that uploads without reading — most HTTP/1.1 clients — can never deadlock against it.
Decoding, the engine and the run manager do the work; this module only translates.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

import numpy as np
from fastapi import FastAPI, Path, Query, Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ... import codec
from ...engine import Engine
from ...engine.evaluation import StreamEvaluation
from ...errors import LossdError, MalformedRequest
from ...losses import REGISTRY, Aggregate, get_spec
from ...runs import RunManager, RunView
from ...settings import Settings
from . import openapi as schema
from .body import ndjson_lines, parse_json, read_json, request_timeout
from .guard import Guard, json_response
from .native import decode_call, encode_answer

NDJSON = "application/x-ndjson"
NDJSON_BODY = {"type": "string", "minLength": 2,
               "description": "one compute body ({inputs, options, grad}) per line"}

RunId = Annotated[str, Path(description="the run's id ([A-Za-z0-9][A-Za-z0-9._-]*, at most "
                                        "128 characters), percent-encoded")]
BatchId = Annotated[str, Path(description="the client's id of this batch (a retry with the "
                                          "same id is counted once), percent-encoded: any "
                                          "characters, '/' as %2F (or as is)")]
RUN_ERRORS = {**schema.ERRORS, 409: {"model": schema.ErrorResponse,
                                     "description": "the run's state forbids it (finished, "
                                                    "full, batch id reused with other data, "
                                                    "run id taken)"}}
AGGREGATE_SCHEMA: dict[str, Any] = {
    "type": "object", "description": "the dataset-level loss over every counted batch: equal "
    "to one call on the concatenated batches",
    "properties": {"loss": {"type": "string"}, "reduction": {"type": "string"},
                   "value": schema.NUMBER, "dtype": {"type": "string"},
                   "batches": {"type": "integer"}, "samples": {"type": "integer"},
                   "elements": {"type": "integer"}, "sum": schema.NUMBER,
                   "weight": schema.NUMBER}}
STREAM_AGGREGATE_SCHEMA: dict[str, Any] = {**AGGREGATE_SCHEMA, "properties": {
    **AGGREGATE_SCHEMA["properties"],
    "refused": {"type": "array", "description": "the batches left out of the aggregate: each "
                "one's position in the stream (from 0) and its error",
                "items": {"type": "object", "properties": {
                    "index": {"type": "integer"}, "code": {"type": "string"},
                    "message": {"type": "string"}, "field": {"type": ["string", "null"]}}}}}}
RUN_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {
        "run_id": {"type": "string"}, "loss": {"type": "string"}, "options": {"type": "object"},
        "generation": {"type": "string", "description": "drawn when the run was created: a "
                       "run deleted and re-created under its id has another"},
        "state": {"type": "string", "enum": ["open", "finished"]},
        "expected_batches": {"type": ["integer", "null"]}, "complete": {"type": "boolean"},
        "signature": {"type": "string"}, "created": {"type": "number"},
        "updated": {"type": "number"}, "aggregate": AGGREGATE_SCHEMA,
        "workers": {"type": "object", "additionalProperties": {"type": "integer"}}}}
RUN_PAGE_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {
        "runs": {"type": "array", "items": RUN_SCHEMA, "description": "newest first"},
        "next_page_token": {"type": ["string", "null"],
                            "description": "pass as page_token for the next page; null: last"}}}
CREATE_BODY: dict[str, Any] = {
    "type": "object", "required": ["loss"], "additionalProperties": False, "properties": {
        "loss": {"type": "string", "enum": sorted(REGISTRY)},
        "options": schema.COMPUTE["properties"]["options"],
        "expected_batches": {"type": ["integer", "null"], "minimum": 0,
                             "description": "refuse batches past this count (0/null: open)"},
        "run_id": {"type": ["string", "null"], "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
                   "description": "optional; creating it again with the same definition "
                                  "returns the run"}}}
BATCH_BODY: dict[str, Any] = {
    "type": "object", "required": ["inputs"], "additionalProperties": False, "properties": {
        "inputs": schema.COMPUTE["properties"]["inputs"],
        "worker": {"type": "string", "maxLength": 256, "description": "who sent it"},
        "generation": {"type": ["string", "null"],
                       "description": "the run's generation this batch is for (from the run "
                                      "as created or read); 404 if the run was deleted and "
                                      "re-created since (default: the current one)"}}}


def _body(body_schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": body_schema, "example": example}}}}


def _ok(description: str, body_schema: dict[str, Any], status: int = 200
        ) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": body_schema}}}}


def aggregate_json(aggregate: Aggregate) -> dict[str, Any]:
    """A dataset-level loss as JSON: the value and dtype, plus the counts and sums it
    reduces (``sum``, ``weight``, ``samples``, ``elements``, ``batches``)."""
    s = aggregate.stats
    return {"loss": aggregate.loss, "reduction": aggregate.reduction,
            "value": codec.scalar_json(aggregate.value), "dtype": aggregate.value.dtype.name,
            "batches": aggregate.batches, "samples": s.rows, "elements": s.elements,
            "sum": codec.scalar_json(np.float64(s.loss_sum)),
            "weight": codec.scalar_json(np.float64(s.weight))}


def run_json(run: RunView) -> dict[str, Any]:
    """A run as JSON: its definition, state, signature, timestamps and current aggregate."""
    d = run.definition
    return {"run_id": run.run_id, "loss": d.loss, "options": {**d.options, **d.tensors},
            "generation": run.generation,
            "state": run.state, "expected_batches": d.expected_batches or None,
            "complete": run.complete, "signature": run.signature, "created": run.created,
            "updated": run.updated, "aggregate": aggregate_json(run.aggregate),
            "workers": run.workers}


class EncodedRunIds:
    """Routes ``/v1/runs/...`` on the path as sent (still percent-encoded), so that an id may
    hold any character, ``/`` included (sent as ``%2F``); each handler decodes its ids once."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, with ``path`` = ``raw_path`` under ``/v1/runs/``."""
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and scope["path"].startswith("/v1/runs/"):
            scope = {**scope, "path": raw.decode("latin-1")}
        await self.app(scope, receive, send)


def add_evaluation_routes(app: FastAPI, settings: Settings, engine: Engine, runs: RunManager,
                          guard: Guard) -> None:
    """Add the stream and run routes to ``app``."""
    limits = codec.Limits.of(settings)

    @app.post("/v1/losses/{name}/stream", tags=["evaluation"],
              summary="A dataset-level loss over a stream of batches (NDJSON upload)",
              responses={**_ok("each batch's answer (or error), in order, and the aggregate "
                               "over the counted batches, listing the refused ones", {
                  "type": "object", "properties": {
                      "results": {"type": "array", "items": {"type": "object"}},
                      "aggregate": STREAM_AGGREGATE_SCHEMA}}), **schema.ERRORS},
              openapi_extra={"requestBody": {"required": True, "content": {
                  NDJSON: {"schema": NDJSON_BODY},
                  "text/plain": {"schema": NDJSON_BODY, "example": '{"inputs": {"input": '
                                 '[1.0, 2.0], "target": [1.5, 2.5]}}'}}}})
    async def stream(name: str, request: Request) -> Response:
        async def handle() -> Response:
            get_spec(name)
            timeout = request_timeout(request)
            evaluation = StreamEvaluation(engine)
            results: list[dict[str, Any]] = []
            async for line in ndjson_lines(request, settings.max_body_bytes):
                try:
                    call = decode_call(name, parse_json(line, settings), limits, timeout=timeout)
                    results.append(encode_answer(call, await evaluation.add(call)))
                except LossdError as error:
                    evaluation.refuse(len(results), error)
                    results.append({"error": error.to_dict()})
            if not results:
                raise MalformedRequest("body: expected one compute body per line; got none",
                                       field="body")
            refused = [{"index": index, **error.to_dict()}
                       for index, error in evaluation.refused]
            return json_response({"results": results, "aggregate": {
                **aggregate_json(evaluation.result()), "refused": refused}})
        return await guard(name, request, handle)

    @app.post("/v1/runs", tags=["evaluation"], summary="Create an evaluation run",
              status_code=201, responses={**_ok("the run", RUN_SCHEMA, 201), **RUN_ERRORS},
              openapi_extra=_body(CREATE_BODY, {"loss": "cross_entropy",
                                                "options": {"reduction": "mean"},
                                                "expected_batches": 100}))
    async def create_run(request: Request) -> Response:
        async def handle() -> Response:
            body = await read_json(request, settings)
            unknown = sorted(set(body) - set(CREATE_BODY["properties"]))
            if unknown or not isinstance(body.get("loss"), str):
                where = unknown[0][:64] if unknown else "loss"
                raise MalformedRequest(f"{where}: expected loss (a name), options, "
                                       f"expected_batches, run_id", field=where)
            call = decode_call(body["loss"], {"inputs": {}, "options": body.get("options", {})},
                               limits)
            run = await runs.create(call.loss, call.options, call.arrays,
                                    expected_batches=body.get("expected_batches"),
                                    run_id=body.get("run_id"))
            return json_response(run_json(run), 201)
        return await guard("runs", request, handle)

    @app.get("/v1/runs", tags=["evaluation"], summary="List runs, newest first (paginated)",
             responses={**_ok("a page of runs", RUN_PAGE_SCHEMA), **RUN_ERRORS})
    async def list_runs(
            request: Request,
            state: Annotated[str | None, Query(description="open or finished (default: both)",
                                               max_length=16)] = None,
            limit: Annotated[int | None, Query(description="runs per page, 1 to 100 (default "
                                                           "20)")] = None,
            page_token: Annotated[str | None, Query(description="next_page_token of the "
                                                    "previous page", max_length=512)] = None,
            offset: Annotated[int | None, Query(description="skip this many runs first")] = None,
    ) -> Response:
        async def handle() -> Response:
            page = await runs.list_runs(state=state, limit=limit, page_token=page_token,
                                        offset=offset)
            return json_response({"runs": [run_json(run) for run in page.runs],
                                  "next_page_token": page.next_page_token or None})
        return await guard("runs", request, handle)

    @app.get("/v1/runs/{run_id}", tags=["evaluation"], summary="A run and its aggregate",
             responses={**_ok("the run", RUN_SCHEMA), **RUN_ERRORS})
    async def get_run(run_id: RunId, request: Request) -> Response:
        run_id = unquote(run_id)

        async def handle() -> Response:
            return json_response(run_json(await runs.get(run_id)))
        return await guard("runs", request, handle)

    @app.put("/v1/runs/{run_id}/batches/{batch_id:path}", tags=["evaluation"],
             summary="Add a batch to a run (idempotent per batch id)",
             responses={**_ok("already counted (a retry)", {"type": "object"}),
                        **_ok("counted", {"type": "object", "properties": {
                            "counted": {"type": "boolean"}, "batches": {"type": "integer"}}},
                            201), **RUN_ERRORS},
             openapi_extra=_body(BATCH_BODY, {"inputs": schema.EXAMPLE["inputs"],
                                              "worker": "worker-0"}))
    async def add_batch(run_id: RunId, batch_id: BatchId, request: Request) -> Response:
        run_id, batch_id = unquote(run_id), unquote(batch_id)

        async def handle() -> Response:
            body = await read_json(request, settings)
            unknown = sorted(set(body) - set(BATCH_BODY["properties"]))
            if unknown:
                raise MalformedRequest(f"{unknown[0][:64]}: unknown field; expected inputs, "
                                       f"worker, generation", field=unknown[0][:64])
            target = await runs.target(run_id, batch_id, body.get("generation"))
            call = decode_call(target.definition.loss, {"inputs": body.get("inputs")}, limits)
            answer = await runs.add(target, call.arrays, worker=body.get("worker", ""),
                                    bfloat16=call.bfloat16,
                                    timeout=request_timeout(request))
            return json_response({"counted": answer.counted, "batches": answer.batches},
                                 201 if answer.counted else 200)
        return await guard("runs", request, handle)

    @app.post("/v1/runs/{run_id}/finish", tags=["evaluation"],
              summary="Finish a run: no more batches; the aggregate stays readable",
              responses={**_ok("the run", RUN_SCHEMA), **RUN_ERRORS})
    async def finish_run(run_id: RunId, request: Request) -> Response:
        run_id = unquote(run_id)

        async def handle() -> Response:
            return json_response(run_json(await runs.finish(run_id)))
        return await guard("runs", request, handle)

    @app.delete("/v1/runs/{run_id}", tags=["evaluation"], summary="Delete a run",
                responses={**_ok("deleted", {"type": "object", "properties": {
                    "deleted": {"type": "string"}}}), **RUN_ERRORS})
    async def delete_run(run_id: RunId, request: Request) -> Response:
        run_id = unquote(run_id)

        async def handle() -> Response:
            await runs.delete(run_id)
            return json_response({"deleted": run_id})
        return await guard("runs", request, handle)
