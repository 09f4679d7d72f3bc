"""A real server takes exactly the dtypes torch takes, over native REST and gRPC.

Every dtype probe (tests/reference/dtypes.py: one tensor of a valid call in one of the ten
wire dtypes, bfloat16 included) is sent as raw little-endian bytes (REST ``b64``, gRPC
``raw``); the answer must be 200 / OK exactly when the core accepts the call, which
tests/losses/test_dtypes.py holds to torch 2.13's answers, and otherwise 400 /
``INVALID_ARGUMENT`` naming a tensor of the call.
"""

from __future__ import annotations

import base64
from functools import lru_cache

import grpc
import httpx
import numpy as np
import pytest

from lossd._proto.lossd.v1 import lossd_pb2 as pb
from lossd._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc
from lossd.client import grpc_request
from lossd.errors import InvalidArgument
from lossd.losses import compute
from tests.reference.dtypes import BFLOAT16, Probe, probes


@lru_cache(maxsize=1)
def all_probes() -> dict[str, Probe]:
    return {probe.id: probe for probe in probes()}


def raw(array: np.ndarray, bfloat16: bool) -> bytes:
    if bfloat16:  # the probe holds float32 values already rounded to bfloat16: the top half
        return (array.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    return np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()


def accepted_by_core(probe: Probe) -> bool:
    try:
        compute(probe.loss, probe.arrays(), probe.options, bfloat16=probe.bfloat16)
    except InvalidArgument:
        return False
    return True


@pytest.mark.parametrize("probe_id", sorted(all_probes()))
def test_rest_and_grpc_accept_the_dtypes_torch_accepts(server, probe_id: str) -> None:
    probe = all_probes()[probe_id]
    arrays = probe.arrays()
    expected = accepted_by_core(probe)
    inputs = {name: {"dtype": BFLOAT16 if name in probe.bfloat16 else a.dtype.name,
                     "shape": list(a.shape),
                     "b64": base64.b64encode(raw(a, name in probe.bfloat16)).decode()}
              for name, a in arrays.items()}
    r = httpx.post(f"{server.url}/v1/losses/{probe.loss}",
                   json={"inputs": inputs, "options": probe.options}, timeout=30)
    if expected:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400, r.text
        assert r.json()["error"]["field"].startswith("inputs."), r.text
    request = grpc_request(probe.loss, False, {**arrays, **probe.options})
    for name in probe.bfloat16:
        request.inputs[name].CopyFrom(pb.Tensor(dtype=pb.BFLOAT16, shape=arrays[name].shape,
                                                raw=raw(arrays[name], True)))
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = pb_grpc.LossServiceStub(channel).Compute
        if expected:
            call(request, timeout=30)
        else:
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            metadata = dict(info.value.trailing_metadata() or ())
            assert str(metadata.get("lossd-field", "")).startswith("inputs."), metadata
