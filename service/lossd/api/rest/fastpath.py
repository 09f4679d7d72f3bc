"""The compute routes of registered losses, served in front of FastAPI.

    POST /v1/losses/{loss}                              :class:`~.native.ComputeEndpoint`
    POST /v2/models/{loss}[/versions/{version}]/infer   :class:`~.v2.InferEndpoint`

The hot path of small requests: :class:`ComputeFastPath` skips FastAPI's middleware, routing and
dependency solving (about 40% of a small request's server time) and answers exactly as the
documented routes do, through the same endpoints (whose guards catch every exception). Any other
request, and a compute request for a name that is not a registered loss (a 404 with the
route's own error body), goes on to FastAPI.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ...losses import REGISTRY
from .native import ComputeEndpoint
from .v2 import InferEndpoint

NATIVE = "/v1/losses/"
V2 = "/v2/models/"
INFER = "/infer"


def v2_infer_path(path: str) -> tuple[str, str | None] | None:
    """``(loss, version or None)`` of a V2 infer path, or None for any other path.

    >>> v2_infer_path("/v2/models/mse/infer"), v2_infer_path("/v2/models/mse/versions/1/infer")
    (('mse', None), ('mse', '1'))
    >>> v2_infer_path("/v2/models/mse/ready") is None
    True
    """
    if not (path.startswith(V2) and path.endswith(INFER)):
        return None
    parts = path[len(V2):-len(INFER)].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return parts[0], parts[2]
    return None


class ComputeFastPath:
    """ASGI middleware serving the compute routes of registered losses directly."""

    def __init__(self, app: ASGIApp, native: ComputeEndpoint, v2: InferEndpoint) -> None:
        self.app, self.native, self.v2 = app, native, v2

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a compute request for a registered loss; pass anything else on."""
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path.startswith(NATIVE) and path[len(NATIVE):] in REGISTRY:
                response = await self.native(path[len(NATIVE):], Request(scope, receive))
                return await response(scope, receive, send)
            infer = v2_infer_path(path)
            if infer is not None and infer[0] in REGISTRY:
                response = await self.v2(*infer, Request(scope, receive))
                return await response(scope, receive, send)
        await self.app(scope, receive, send)
