"""API-key authentication (off unless keys are configured), shared by both transports
(:mod:`lossd.api.rest.auth`, :mod:`lossd.api.rpc.auth`).

REST: ``Authorization: Bearer <key>``; gRPC: ``authorization: Bearer <key>`` metadata; the
scheme in any case (RFC 7235: ``bearer`` too). Keys are compared in constant time.

The open surface, the same on both transports, is health and nothing else:

    REST  /livez, /readyz, /v2/health/live, /v2/health/ready   (OPEN_PATHS)
          /metrics unless ``metrics_auth``; the console's static files (see api/rest/console.py:
          pages only, every API call they make needs the key)
    gRPC  grpc.health.v1.Health/Check and /Watch,
          inference.GRPCInferenceService/ServerLive and /ServerReady   (OPEN_GRPC)

Everything else needs a key, server reflection included (it lists every method).
"""

from __future__ import annotations

import hmac

from ..errors import Unauthenticated

OPEN_PATHS = frozenset({"/livez", "/readyz", "/v2/health/live", "/v2/health/ready"})
OPEN_GRPC = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
                       "/inference.GRPCInferenceService/ServerLive",
                       "/inference.GRPCInferenceService/ServerReady"})


def authorized(header: str | None, keys: frozenset[str]) -> bool:
    """Whether ``header`` is ``Bearer <key>`` (the scheme in any case, then spaces) for one of
    ``keys`` (compared in constant time)."""
    scheme, _, token_text = (header or "").strip(" \t").partition(" ")
    if scheme.lower() != "bearer" or not token_text.strip(" \t"):
        return False
    token = token_text.strip(" \t").encode()
    # compare with every key so the time taken does not depend on which one matched
    return any([hmac.compare_digest(token, key.encode()) for key in keys])


def refusal() -> Unauthenticated:
    """The error both transports answer a missing or wrong key with (401 / UNAUTHENTICATED)."""
    return Unauthenticated("missing or invalid API key: send 'Authorization: Bearer <key>'",
                           field="authorization")
