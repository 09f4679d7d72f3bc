"""API-key authentication (off unless keys are configured), shared by both transports
(:mod:`lossd.api.rest.auth`, :mod:`lossd.api.rpc.auth`).

REST: ``Authorization: Bearer <key>``; gRPC: ``authorization: Bearer <key>`` metadata. Keys are
compared in constant time. Health endpoints stay open; ``/metrics`` is open unless
``metrics_auth``.
"""

from __future__ import annotations

import hmac

from ..errors import Unauthenticated

OPEN_PATHS = ("/livez", "/readyz", "/v2/health/")
OPEN_GRPC = ("/grpc.health.v1.", "/grpc.reflection.")


def authorized(header: str | None, keys: frozenset[str]) -> bool:
    """Whether ``header`` is ``Bearer <key>`` for one of ``keys`` (compared in constant time)."""
    if not header or not header.startswith("Bearer "):
        return False
    token = header[len("Bearer "):].strip().encode()
    # compare with every key so the time taken does not depend on which one matched
    return any([hmac.compare_digest(token, key.encode()) for key in keys])


def refusal() -> Unauthenticated:
    """The error both transports answer a missing or wrong key with (401 / UNAUTHENTICATED)."""
    return Unauthenticated("missing or invalid API key: send 'Authorization: Bearer <key>'",
                           field="authorization")
