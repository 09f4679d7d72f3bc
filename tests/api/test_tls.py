"""TLS on both servers with a certificate made in the test; mutual TLS on gRPC."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from lossd._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from lossd.client import grpc_request
from tests.support.certs import Pki, make_pki
from tests.support.slow import SMALL_MSE

REQUEST = grpc_request("mse", False, {"input": np.zeros(2), "target": np.ones(2)})


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def _tls_flags(pki: Pki, *extra: str) -> tuple[str, ...]:
    return ("--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
            *extra)


def _grpc_loss(target: str, credentials: grpc.ChannelCredentials | None) -> float:
    channel = (grpc.insecure_channel(target) if credentials is None
               else grpc.secure_channel(target, credentials))
    with channel:
        response = pb_grpc.LossServiceStub(channel).Compute(REQUEST, timeout=10)
    return float(np.frombuffer(response.loss.raw, "<f8")[0])


def test_tls_on_both_servers(spawn, pki: Pki) -> None:
    trust = ssl.create_default_context(cafile=str(pki.ca))
    s = spawn(*_tls_flags(pki), verify=trust)
    assert s.url.startswith("https://")
    r = httpx.post(f"{s.url}/v1/losses/mse", json=SMALL_MSE, verify=trust)
    assert r.status_code == 200 and r.json() == {"loss": 2.5, "dtype": "float64"}
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port
        httpx.get(f"http://127.0.0.1:{s.http_port}/livez", timeout=5)
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
        httpx.get(f"{s.url}/livez", timeout=5)
    roots = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    assert _grpc_loss(s.grpc_target, roots) == 1.0
    with pytest.raises(grpc.RpcError) as caught:  # plaintext gRPC to the TLS port
        _grpc_loss(s.grpc_target, None)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_mutual_tls(spawn, pki: Pki) -> None:
    trust = ssl.create_default_context(cafile=str(pki.ca))
    s = spawn(*_tls_flags(pki, "--tls-client-ca-file", str(pki.ca)), verify=trust)
    with_client_cert = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(), private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes())
    assert _grpc_loss(s.grpc_target, with_client_cert) == 1.0
    with pytest.raises(grpc.RpcError) as caught:  # no client certificate: handshake refused
        _grpc_loss(s.grpc_target, grpc.ssl_channel_credentials(pki.ca.read_bytes()))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # REST does not ask for client certificates (probes and curl keep working)
    assert httpx.get(f"{s.url}/readyz", verify=trust).status_code == 200
