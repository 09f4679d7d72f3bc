"""The REST app: every route mounted in one place, in front of one engine.

    native      /v1/losses, /v1/losses/{name}, /v1/batch          (:mod:`.native`)
    V2          /v2/...                                          (:mod:`.v2`)
    evaluation  /v1/losses/{name}/stream, /v1/runs/...           (:mod:`.evaluation`)
    health      /livez, /readyz, /metrics                        (here)
    docs        /openapi.json (here); /docs, /redoc, the console  (:mod:`.console`)

Outside FastAPI, in this order: :class:`~.console.ConsoleFront` (the console at ``/``, the
static files of the console and of the docs: public), :class:`~.auth.RestAuth` (when API keys
are set), :class:`~.disconnect.QuietDisconnect`, and :class:`~.fastpath.ComputeFastPath`, which
serves compute requests (native and V2) for registered losses without FastAPI's routing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ... import __version__
from ...engine import Engine
from ...errors import MalformedRequest, NotFound
from ...runs import RunManager
from ...settings import Settings
from . import openapi
from .auth import RestAuth
from .console import ConsoleFront
from .disconnect import QuietDisconnect
from .evaluation import EncodedRunIds, add_evaluation_routes
from .fastpath import ComputeFastPath
from .guard import Guard, json_response, native_error, v2_error
from .native import ComputeEndpoint, add_native_routes
from .v2 import PROTOCOL as V2_PROTOCOL
from .v2 import InferEndpoint, add_v2_routes

ASGIApp = Callable[..., Awaitable[None]]


def create_app(settings: Settings, engine: Engine, runs: RunManager | None = None) -> ASGIApp:
    """The REST app around ``engine`` (which the caller starts and drains); the evaluation
    routes are mounted when ``runs`` is given."""
    app = FastAPI(title="lossd", version=__version__, description=openapi.DESCRIPTION,
                  openapi_tags=openapi.TAGS, docs_url=None, redoc_url=None)
    guard = Guard(engine.metrics, "rest", native_error)
    endpoint = ComputeEndpoint(settings, engine, guard)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = NotFound if exc.status_code == 404 else MalformedRequest
        error = kind(f"{request.method} {request.url.path[:200]}: {exc.detail}", field="path")
        return json_response({"error": error.to_dict()}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))[:200]
        return native_error(MalformedRequest(f"{where}: {first.get('msg', 'invalid')}",
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
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    add_native_routes(app, settings, engine, endpoint)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    infer = InferEndpoint(settings, engine, Guard(engine.metrics, V2_PROTOCOL, v2_error))
    add_v2_routes(app, engine, infer)
    if runs is not None:
        add_evaluation_routes(app, settings, engine, runs, guard)
    app.add_middleware(EncodedRunIds)
    app.add_middleware(QuietDisconnect)
    front: Any = QuietDisconnect(ComputeFastPath(app, endpoint, infer))
    keys = settings.keys()
    return ConsoleFront(RestAuth(front, keys, not settings.metrics_auth) if keys else front,
                        settings)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the components the routes refer to (``Tensor``, per-loss
    request models), built once."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes, tags=app.openapi_tags)
        schema.setdefault("components", {}).setdefault("schemas", {}).update(
            openapi.components())
        app.openapi_schema = schema
    return app.openapi_schema
