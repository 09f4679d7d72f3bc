"""With API keys on, the open surface is one documented list, the same on both transports:
every REST route and every gRPC method is called without a key, and only
those in ``lossd.api.auth.OPEN_PATHS`` / ``OPEN_GRPC`` answer; reflection needs the key. The
``Bearer`` scheme is matched in any case (RFC 7235), on both transports.
"""

from __future__ import annotations

import os

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2  # noqa: F401 - registers grpc.health.v1
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossd._proto.inference.grpc_predict_v2_pb2 as v2  # V2 stubs have a pool of their own
import lossd._proto.lossd.v1.lossd_pb2  # noqa: F401 - registers lossd.v1 in the default pool
import lossd._proto.lossd.v1.runs_pb2  # noqa: F401
from lossd.api.auth import OPEN_GRPC, OPEN_PATHS
from tests.support.server import start_server

KEY = "k-1"
EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "12"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    s = start_server(tmp_path_factory.mktemp("surface"), env={"LOSSD_API_KEYS": KEY})
    yield s
    assert s.terminate() == 0, s.log()


def _rest_routes(s) -> list[tuple[str, str]]:
    spec = httpx.get(f"{s.url}/openapi.json", headers={"authorization": f"Bearer {KEY}"}).json()
    fill = {"{loss}": "mse", "{name}": "mse", "{run_id}": "r", "{batch_id}": "b",
            "{model_name}": "mse", "{version}": "1"}
    routes = []
    for path, methods in spec["paths"].items():
        for key, value in fill.items():
            path = path.replace(key, value)
        routes += [(method.upper(), path) for method in methods]
    return routes


def test_rest_surface(keyed) -> None:
    routes = _rest_routes(keyed)
    assert len(routes) > 10 and {p for _, p in routes} >= OPEN_PATHS
    for method, path in routes:
        if path == "/metrics":
            continue  # open unless metrics_auth: below
        r = httpx.request(method, keyed.url + path)
        if path in OPEN_PATHS:
            assert r.status_code != 401, (method, path)
        else:
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{keyed.url}/metrics").status_code == 200  # metrics_auth is off


def _grpc_methods(s) -> list[str]:
    with grpc.insecure_channel(s.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as caught:  # reflection needs the key
            next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        listed = next(iter(stub.ServerReflectionInfo(
            iter([request]), timeout=10, metadata=[("authorization", f"Bearer {KEY}")])))
    names = [s.name for s in listed.list_services_response.service]
    methods = []
    for name in names:
        for pool in (v2.DESCRIPTOR.pool, descriptor_pool.Default()):
            try:
                service = pool.FindServiceByName(name)
            except KeyError:
                continue
            methods += [f"/{name}/{m.name}" for m in service.methods]
            break
        else:
            methods.append(f"/{name}/ServerReflectionInfo")  # grpc's own reflection
    return methods


def test_grpc_surface(keyed) -> None:
    methods = _grpc_methods(keyed)
    assert set(methods) >= OPEN_GRPC
    with grpc.insecure_channel(keyed.grpc_target) as channel:
        for method in methods:
            streaming = method.endswith(("Stream", "Info", "Watch"))
            try:
                if streaming:
                    call = channel.unary_stream(method) if method.endswith("Watch") else \
                        channel.stream_stream(method)
                    request = b"" if method.endswith("Watch") else iter([b""])
                    next(iter(call(request, timeout=2)))
                else:
                    channel.unary_unary(method)(b"", timeout=5)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            if method in OPEN_GRPC:
                assert code != grpc.StatusCode.UNAUTHENTICATED, method
            else:
                assert code == grpc.StatusCode.UNAUTHENTICATED, (method, code)


SCHEMES = st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"])


@SETTINGS
@given(scheme=SCHEMES, spaces=st.integers(1, 3))
def test_bearer_in_any_case(keyed, scheme: str, spaces: int) -> None:
    header = f"{scheme}{' ' * spaces}{KEY}"
    r = httpx.post(f"{keyed.url}/v1/losses/mse", headers={"authorization": header},
                   json={"inputs": {"input": [1.0], "target": [0.0]}})
    assert r.status_code == 200, (header, r.text)
    with grpc.insecure_channel(keyed.grpc_target) as channel:
        health = channel.unary_unary("/inference.GRPCInferenceService/ServerMetadata")
        health(b"", timeout=5, metadata=[("authorization", header)])


@pytest.mark.parametrize("header", ["Basic k-1", "Bearer", "Bearer k-2", "k-1", "Bearerk-1",
                                    "Bearer k-1 extra"])
def test_wrong_schemes_and_keys_are_refused(keyed, header: str) -> None:
    r = httpx.get(f"{keyed.url}/v1/losses", headers={"authorization": header})
    assert r.status_code == 401, header
    with grpc.insecure_channel(keyed.grpc_target) as channel, \
            pytest.raises(grpc.RpcError) as caught:
        channel.unary_unary("/lossd.v1.LossService/ListLosses")(
            b"", timeout=5, metadata=[("authorization", header)])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, header
