"""The connection flags against a server with API keys and TLS (mutual TLS over gRPC):
``--api-key`` (or ``LOSSD_API_KEY``), ``--tls``, ``--ca``, ``--cert``/``--key``."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.support import lossd, ok, one_line_error
from tests.support.certs import make_pki
from tests.support.server import RunningServer, start_server

MSE = ("compute", "mse", "--input", "[1.0, 2.0]", "--target", "[0.0, 0.0]")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Any]]:
    tmp = tmp_path_factory.mktemp("cli-secured")
    pki = make_pki(tmp)
    server = start_server(tmp, "--tls-cert-file", str(pki.server_cert), "--tls-key-file",
                          str(pki.server_key), "--tls-client-ca-file", str(pki.ca),
                          env={"LOSSD_API_KEYS": "k1,k2"},
                          verify=ssl.create_default_context(cafile=str(pki.ca)))
    yield server, pki
    server.terminate()


def test_rest_with_a_key_and_a_ca(secured: tuple[RunningServer, Any]) -> None:
    server, pki = secured
    rest = ("--url", f"https://localhost:{server.http_port}", "--ca", pki.ca)
    assert ok(*MSE, *rest, "--api-key", "k1") == "2.5\n"
    assert ok(*MSE, *rest, env={"LOSSD_API_KEY": "k2"}) == "2.5\n"
    assert "cross_entropy" in ok("losses", *rest, "--api-key", "k1")
    line = one_line_error(lossd(*MSE, *rest))
    assert line.startswith("lossd: UNAUTHENTICATED: ")


def test_grpc_with_a_key_and_mutual_tls(secured: tuple[RunningServer, Any]) -> None:
    server, pki = secured
    rpc = ("--grpc", f"localhost:{server.grpc_port}", "--tls", "--ca", pki.ca,
           "--cert", pki.client_cert, "--key", pki.client_key)
    assert ok(*MSE, *rpc, "--api-key", "k1") == "2.5\n"
    refused = lossd(*MSE, *rpc, "--api-key", "wrong")
    assert one_line_error(refused).startswith("lossd: UNAUTHENTICATED: ")
    assert refused.returncode == 1
