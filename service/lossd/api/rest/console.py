"""The web console (``/``) and the offline API docs (``/docs``, ``/redoc``).

    /                  the console's page (``lossd/console/index.html``, this server's settings
                       filled in); off with ``LOSSD_CONSOLE=false``
    /console/...       its scripts, styles and icon (plain ES modules: no build step)
    /docs, /redoc      Swagger UI and ReDoc on ``/openapi.json`` (on whatever the console says)
    /docs-assets/...   their files, as the ``fastapi-offline`` package ships them (no CDN: the
                       docs work offline), and ``lossd-docs.js`` that starts them

All of it is static and public, served in front of the API-key check (:class:`ConsoleFront`);
what the pages show comes from the API itself, with the key the console asks for (kept in the
tab, which the docs' pages send too). Each page's Content-Security-Policy lets the browser
fetch from this origin only.
"""

from __future__ import annotations

import html
import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ... import __version__
from ...settings import Settings

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
DOCS_ASSETS = "/docs-assets"
NO_ICON = "data:,"  # an empty icon: the browser asks no server for one
GET = ["GET", "HEAD"]
# the console's page may load its own files only, and talk to its own origin only
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
# the docs' pages: files from here only (both UIs inject their styles; ReDoc's footer names a logo
# on its vendor's CDN: the browser does not fetch it)
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src "
            "'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
            "frame-ancestors 'none'")
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def docs_assets_dir() -> Path:
    """Where ``fastapi-offline`` keeps Swagger UI's and ReDoc's built files."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        raise RuntimeError("fastapi-offline is not installed (pip install 'lossd[server]')")
    return Path(spec.origin).parent / "static"


def docs_page(kind: str, settings: Settings) -> str:
    """The HTML of ``/docs`` (``kind`` "swagger") or ``/redoc`` ("redoc"): the bundle and
    ``lossd-docs.js``, no inline script."""
    files = {"swagger": (f'<link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">\n'
                         f'<script src="{DOCS_ASSETS}/swagger-ui-bundle.js" defer></script>',
                         "swagger-ui", "Swagger UI"),
             "redoc": (f'<script src="{DOCS_ASSETS}/redoc.standalone.js" defer></script>',
                       "redoc", "ReDoc")}
    head, root, name = files[kind]
    note = ('<p class="lossd-key">This lossd requires an API key: the one entered in the '
            '<a href="/">console</a> (in this tab) is sent.</p>\n' if settings.keys() else "")
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>lossd - {name}</title>\n<link rel="icon" href="{NO_ICON}">\n{head}\n'
            f'<script src="{DOCS_ASSETS}/lossd-docs.js" defer></script>\n</head>\n<body>\n'
            f'{note}<div id="{root}"></div>\n</body>\n</html>\n')


def console_page(settings: Settings) -> str:
    """``index.html`` with what the page needs to know about this server (no secrets)."""
    config = {"version": __version__, "grpc_port": settings.grpc_port,
              "auth": bool(settings.keys()), "metrics_auth": settings.metrics_auth}
    text = (CONSOLE_DIR / "index.html").read_text()
    return text.replace("{{config}}", html.escape(orjson.dumps(config).decode(), quote=True))


class ConsoleFront:
    """ASGI: the console's page and files and the docs' pages and files, in front of ``app`` (and
    of its API-key check); every other request goes to ``app``."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app

        def page(text: str, policy: str) -> Callable[[Request], Awaitable[Response]]:
            async def serve(request: Request) -> Response:
                return HTMLResponse(text, headers={"content-security-policy": policy,
                                                   "cache-control": "no-cache"})
            return serve

        async def boot(request: Request) -> Response:
            return FileResponse(CONSOLE_DIR / "docs.js", media_type="text/javascript")
        routes: list[Route | Mount] = [
            Route("/docs", page(docs_page("swagger", settings), DOCS_CSP), methods=GET),
            Route("/redoc", page(docs_page("redoc", settings), DOCS_CSP), methods=GET),
            Route(f"{DOCS_ASSETS}/lossd-docs.js", boot, methods=GET),
            Mount(DOCS_ASSETS, StaticFiles(directory=docs_assets_dir()), name="docs-assets")]
        self.paths: tuple[str, ...] = ("/docs", "/redoc")
        self.prefixes: tuple[str, ...] = (f"{DOCS_ASSETS}/",)
        if settings.console:
            routes += [Route("/", page(console_page(settings), CONSOLE_CSP), methods=GET),
                       Mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console")]
            self.paths += ("/",)
            self.prefixes += ("/console/",)
        self.static = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the static paths here; pass everything else on."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path in self.paths or path.startswith(self.prefixes):
            return await self.static(scope, receive, send)
        return await self.app(scope, receive, send)
