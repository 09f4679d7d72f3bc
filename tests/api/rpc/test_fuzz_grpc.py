"""Random and truncated protobuf bytes to every method of every lossd gRPC service that the
server's reflection lists (LossService, RunService, GRPCInferenceService, ...): bytes that are
not a valid request answer INVALID_ARGUMENT (in-band on ComputeStream), nothing ever answers
INTERNAL or UNKNOWN, and the server stays healthy.

``make test`` runs a few dozen inputs per method; ``make fuzz`` sets ``LOSSD_FUZZ_EXAMPLES``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossd._proto.inference.grpc_predict_v2_pb2 as v2  # noqa: F401 - registers descriptors
import lossd._proto.lossd.v1.runs_pb2  # noqa: F401
from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd.client import grpc_request
from tests.support.server import RunningServer, start_server

EXAMPLES = int(os.environ.get("LOSSD_FUZZ_EXAMPLES", "8")) * 5
OURS = ("lossd.", "inference.")  # grpc.health / grpc.reflection are grpc's own services
STATUSES: Counter[str] = Counter()

SEEDS = [  # valid requests whose every truncation is sent too
    grpc_request("cross_entropy", True, {"input": np.ones((2, 3)), "target": np.array([0, 2]),
                                         "label_smoothing": 0.1}).SerializeToString(),
    v2.ModelInferRequest(model_name="mse", inputs=[
        v2.ModelInferRequest.InferInputTensor(name="input", datatype="FP64", shape=[2],
                                              contents=v2.InferTensorContents(
                                                  fp64_contents=[1.0, 2.0])),
        v2.ModelInferRequest.InferInputTensor(name="target", datatype="FP64", shape=[2],
                                              contents=v2.InferTensorContents(
                                                  fp64_contents=[0.0, 0.0]))],
    ).SerializeToString(),
]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    s = start_server(tmp_path_factory.mktemp("grpcfuzz"))
    yield s
    print(f"\ngRPC fuzz: {sum(STATUSES.values())} calls, statuses {dict(sorted(STATUSES.items()))}")
    with grpc.insecure_channel(s.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert s.terminate() == 0, s.log()
    assert "Traceback" not in s.log(), s.log()


def _methods(target: str) -> list[MethodDescriptor]:
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        listed = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    pools = (v2.DESCRIPTOR.pool, descriptor_pool.Default())  # V2 stubs have a pool of their own

    def service(name: str):
        for pool in pools:
            try:
                return pool.FindServiceByName(name)
            except KeyError:
                continue
        raise KeyError(name)
    return [method for s in listed.list_services_response.service if s.name.startswith(OURS)
            for method in service(s.name).methods]


def _parses(method: MethodDescriptor, payload: bytes) -> bool:
    try:
        message_factory.GetMessageClass(method.input_type).FromString(payload)
    except (DecodeError, RuntimeError, ValueError):
        return False
    return True


def _call(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            call = channel.stream_stream(path, request_serializer=None,
                                         response_deserializer=None)
            replies = [pb.StreamResponse.FromString(r) for r in call(iter([payload]),
                                                                      timeout=10)]
            status = "OK"
            if not _parses(method, payload):  # ComputeStream answers bad frames in-band
                assert replies[0].error.code == "INVALID_ARGUMENT", replies
        else:
            channel.unary_unary(path, request_serializer=None, response_deserializer=None)(
                payload, timeout=10)
            status = "OK"
    except grpc.RpcError as error:
        status = error.code().name
        assert status not in ("INTERNAL", "UNKNOWN"), (path, payload, error.details())
        if not _parses(method, payload):
            assert status == "INVALID_ARGUMENT", (path, payload, status, error.details())
    STATUSES[status] += 1


def test_every_method_is_found(target: RunningServer) -> None:
    names = {f"{m.containing_service.name}.{m.name}" for m in _methods(target.grpc_target)}
    assert {"LossService.Compute", "LossService.ComputeStream", "LossService.ListLosses"} <= names


def test_truncated_requests(target: RunningServer) -> None:
    methods = _methods(target.grpc_target)
    with grpc.insecure_channel(target.grpc_target) as channel:
        for seed in SEEDS:
            for end in range(0, len(seed), max(1, len(seed) // 40)):
                for method in methods:
                    _call(channel, method, seed[:end])


@pytest.fixture(scope="module")
def channel(target: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(target.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def methods(target: RunningServer) -> list[MethodDescriptor]:
    return _methods(target.grpc_target)


PAYLOADS = st.binary(max_size=256) | st.sampled_from(SEEDS).flatmap(  # random, or a seed with
    lambda seed: st.tuples(st.integers(0, len(seed)), st.binary(max_size=8)).map(  # bytes
        lambda cut: seed[:cut[0]] + cut[1] + seed[cut[0] + len(cut[1]):]))  # overwritten


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(payload=PAYLOADS)
def test_random_bytes(channel: grpc.Channel, methods: list[MethodDescriptor],
                      payload: bytes) -> None:
    for method in methods:
        _call(channel, method, payload)
