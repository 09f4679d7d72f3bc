"""Bounded messages and connections, over real sockets.

* Every client string an error repeats is cut: a huge loss name, run id, batch id, tensor or
  option name gives its NOT_FOUND / INVALID_ARGUMENT with a short message on both transports
  (not gRPC's RESOURCE_EXHAUSTED "Stream removed" for a message over its metadata limit), and
  the server's log stays short. Hypothesis draws the string and where it goes.
* ``x-request-id`` is echoed only when short; request line plus headers are bounded (431), so
  is gRPC metadata; a connection whose request stops arriving is closed (408).
"""

from __future__ import annotations

import os
import socket
import time

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossd.client import Client, GrpcClient
from lossd.errors import MAX_MESSAGE, LossdError
from tests.support.server import start_server

EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "6"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
MSE = {"input": np.zeros(2), "target": np.zeros(2)}
WHERE = ["loss", "tensor", "option", "run", "batch"]


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory):
    s = start_server(tmp_path_factory.mktemp("bounds"), env={
        "LOSSD_HTTP_IDLE_TIMEOUT_S": "1", "LOSSD_HTTP_MAX_HEADER_BYTES": "8192",
        "LOSSD_GRPC_MAX_METADATA_BYTES": "4096", "LOSSD_MAX_BODY_BYTES": str(16 * 2**20)})
    yield s
    assert s.terminate() == 0, s.log()


def _call(client: Client | GrpcClient, where: str, text: str) -> LossdError:
    with pytest.raises(LossdError) as caught:
        if where == "loss":
            client.compute(text, **MSE)
        elif where == "tensor":
            client.compute("mse", **MSE, **{text: np.zeros(2)})
        elif where == "option":
            client.compute("huber", **MSE, **{text: 1.0})
        elif where == "run":
            client.run(text)
        else:
            client.add_batch(text, text, input=np.zeros(2), target=np.zeros(2))
    return caught.value


@SETTINGS
@given(where=st.sampled_from(WHERE), size=st.sampled_from([20_000, 100_000, 1_000_000]),
       char=st.sampled_from(["a", "é", "/", "%", " ", "\x01", "😀"]))
def test_huge_strings_give_short_errors_over_grpc(bounded, where: str, size: int,
                                                  char: str) -> None:
    with GrpcClient(bounded.grpc_target) as client:
        error = _call(client, where, char * size)
    assert error.code in ("NOT_FOUND", "INVALID_ARGUMENT"), error
    assert len(error.message) <= MAX_MESSAGE


@pytest.mark.parametrize("where", WHERE)
def test_huge_strings_give_short_errors_over_rest(bounded, where: str) -> None:
    """The body carries them (the URL is bounded by the header limit, see below)."""
    with Client(bounded.url) as client:
        error = _call(client, where, "x" * (4000 if where in ("run", "batch", "loss")
                                           else 1_000_000))
    assert error.code in ("NOT_FOUND", "INVALID_ARGUMENT", "PAYLOAD_TOO_LARGE"), error
    assert len(error.message) <= MAX_MESSAGE


def test_ten_megabyte_run_id_over_grpc(bounded) -> None:
    with GrpcClient(bounded.grpc_target) as client:
        error = _call(client, "run", "r" * 10_000_000)
    assert error.code in ("NOT_FOUND", "INVALID_ARGUMENT") and len(error.message) <= MAX_MESSAGE
    log = bounded.log()
    assert max(map(len, log.splitlines())) < 4 * MAX_MESSAGE


def test_request_id_is_echoed_only_when_short(bounded) -> None:
    body = {"inputs": {"input": [1.0], "target": [0.0]}}
    short = httpx.post(f"{bounded.url}/v1/losses/mse", json=body,
                       headers={"x-request-id": "abc-1"})
    assert short.headers["x-request-id"] == "abc-1"
    long = httpx.post(f"{bounded.url}/v1/losses/mse", json=body,
                      headers={"x-request-id": "i" * 4000})
    assert long.status_code == 200 and len(long.headers["x-request-id"]) <= 128


@pytest.mark.parametrize("where", ["path", "header", "many headers"])
def test_headers_are_bounded(bounded, where: str) -> None:
    url, headers = f"{bounded.url}/v1/losses/mse", {}
    if where == "path":
        url += "x" * 10_000
    elif where == "header":
        headers = {"x-big": "y" * 10_000}
    else:
        headers = {f"x-h{i}": "z" * 100 for i in range(100)}
    r = httpx.get(url, headers=headers)
    assert r.status_code == 431, r.text
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "http_max_header_bytes" in r.json()["error"]["message"]
    assert httpx.get(f"{bounded.url}/v1/losses/mse").status_code == 200


def test_grpc_metadata_is_bounded(bounded) -> None:
    with grpc.insecure_channel(bounded.grpc_target) as channel:
        health = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.RpcError) as caught:
            health(b"", metadata=[("x-big", "m" * 8000)], timeout=10)
    assert caught.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   grpc.StatusCode.INTERNAL), caught.value
    with GrpcClient(bounded.grpc_target) as client:  # the server is fine
        assert client.compute("mse", **MSE).loss == 0


def _read_until_closed(sock: socket.socket, wait: float) -> bytes:
    sock.settimeout(wait)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"still open after {wait} s; got {b''.join(chunks)!r}") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.parametrize("sent", [b"", b"POST /v1/losses/mse HTTP/1.1\r\nhost: x\r\n",
                                  b"POST /v1/losses/mse HTTP/1.1\r\nhost: x\r\n"
                                  b"content-length: 100\r\n\r\n{\"inputs\": "])
def test_incomplete_requests_are_closed(bounded, sent: bytes) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", bounded.http_port)) as sock:
        sock.sendall(sent)
        answer = _read_until_closed(sock, 10)
    assert time.monotonic() - started < 8
    if sent:
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"http_idle_timeout_s" in answer


def test_slow_but_steady_body_is_not_cut(bounded) -> None:
    """Bytes arriving more often than the idle timeout keep the request alive."""
    body = b'{"inputs": {"input": [1.0, 2.0], "target": [0.0, 0.0]}}'
    head = (b"POST /v1/losses/mse HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", bounded.http_port)) as sock:
        sock.sendall(head)
        for i in range(0, len(body), 20):
            time.sleep(0.5)  # the subject: a slow client, each pause under the idle timeout
            sock.sendall(body[i:i + 20])
        answer = _read_until_closed(sock, 10)
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_default_limits_let_ordinary_requests_through(server) -> None:
    r = httpx.post(f"{server.url}/v1/losses/mse", json={
        "inputs": {"input": [1.0], "target": [0.0]}}, headers={"x-pad": "p" * 8000})
    assert r.status_code == 200, r.text
