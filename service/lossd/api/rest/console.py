"""The web console (``/``) and the offline API docs (``/docs``, ``/redoc``).

    /                  the console's page (``lossd/console/index.html``, this server's settings
                       filled in); off with ``LOSSD_CONSOLE=false``
    /console/...       its scripts, styles and icon (plain ES modules: no build step)
    /docs-assets/...   Swagger UI and ReDoc, as the ``fastapi-offline`` package ships them
    /docs, /redoc      FastAPI's pages pointed at those files (no CDN: they work offline)

The console's files and the docs' assets are static and public, served in front of the API-key
check (:class:`ConsoleFront`); everything the console shows comes from the API itself, with the
key the page asks for. ``/docs`` and ``/redoc`` are routes of the app, behind the key like
``/openapi.json`` that they read.
"""

from __future__ import annotations

import html
import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ... import __version__
from ...settings import Settings

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
DOCS_ASSETS = "/docs-assets"
NO_ICON = "data:,"  # an empty icon: the browser asks no server for one
# the console's page may load its own files only, and talk to its own origin only
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
# the docs' pages: their own inline boot script and styles, files from here only (ReDoc's footer
# names a logo on its vendor's CDN: the browser does not fetch it)
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; worker-src 'self' "
            "blob:; connect-src 'self'; frame-ancestors 'none'")
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def docs_assets_dir() -> Path:
    """Where ``fastapi-offline`` keeps Swagger UI's and ReDoc's built files."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("fastapi-offline is not installed (pip install 'lossd[server]')")
    return Path(spec.origin).parent / "static"


def add_docs_routes(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` on the app, from the local assets."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url=NO_ICON,
            swagger_ui_parameters={"validatorUrl": None})  # no badge from validator.swagger.io
        page.headers["content-security-policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=NO_ICON, with_google_fonts=False)
        page.headers["content-security-policy"] = DOCS_CSP
        return page


def console_page(settings: Settings) -> str:
    """``index.html`` with what the page needs to know about this server (no secrets)."""
    config = {"version": __version__, "grpc_port": settings.grpc_port,
              "auth": bool(settings.keys()), "metrics_auth": settings.metrics_auth}
    text = (CONSOLE_DIR / "index.html").read_text()
    return text.replace("{{config}}", html.escape(orjson.dumps(config).decode(), quote=True))


class ConsoleFront:
    """ASGI: the console's page and files and the docs' assets, in front of ``app`` (and of its
    API-key check); every other request goes to ``app``."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        routes: list[Route | Mount] = [Mount(DOCS_ASSETS, StaticFiles(
            directory=docs_assets_dir()), name="docs-assets")]
        self.prefixes: tuple[str, ...] = (f"{DOCS_ASSETS}/",)
        if settings.console:
            page = console_page(settings)

            async def index(request: Request) -> Response:
                return HTMLResponse(page, headers={"content-security-policy": CONSOLE_CSP,
                                                   "cache-control": "no-cache"})
            routes += [Route("/", index, methods=["GET", "HEAD"]),
                       Mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console")]
            self.prefixes += ("/console/",)
        self.static = Starlette(routes=routes)
        self.console = settings.console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the static paths here; pass everything else on."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(self.prefixes) or (self.console and path == "/"):
            return await self.static(scope, receive, send)
        return await self.app(scope, receive, send)
