"""TLS for both servers (off unless a certificate and key are configured).

* REST: uvicorn wraps the socket lossd binds in an SSL context from ``tls_cert_file`` and
  ``tls_key_file`` (PEM). Client certificates are not asked for on REST, so health probes and
  curl keep working.
* gRPC: ``grpc.ssl_server_credentials`` from the same pair; with ``tls_client_ca_file`` every
  client must present a certificate that chains to that CA (mutual TLS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from ..settings import Settings


def enabled(settings: Settings) -> bool:
    """Whether TLS is on; a certificate without a key (or the reverse) is a startup error."""
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ValueError("TLS needs both tls_cert_file and tls_key_file")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
    return bool(settings.tls_cert_file)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` (empty when TLS is off)."""
    if not enabled(settings):
        return {}
    return {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}


def grpc_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Server credentials for ``add_secure_port`` (``None`` when TLS is off)."""
    if not enabled(settings):
        return None
    pair = (Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())
    client_ca = (Path(settings.tls_client_ca_file).read_bytes()
                 if settings.tls_client_ca_file else None)
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def add_port(server: grpc.aio.Server, address: str, settings: Settings) -> int:
    """Bind ``address`` with TLS when configured; returns the port."""
    credentials = grpc_credentials(settings)
    port: int = (server.add_insecure_port(address) if credentials is None
                 else server.add_secure_port(address, credentials))
    return port
