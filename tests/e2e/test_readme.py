"""The README stays true: its loss table is current and its examples run as printed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.server import RunningServer

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _example(name: str) -> str:
    match = re.search(rf"<!-- example:{name} -->\n```\w+\n(.*?)```", README, flags=re.S)
    assert match, f"README example {name!r} is missing"
    return match.group(1)


def test_loss_table_is_current() -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_readme", ROOT / "docs" / "gen_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render(README) == README, "README loss table is stale: python docs/gen_readme.py"


def test_curl_example(server: RunningServer) -> None:
    command = _example("curl").replace("localhost:8000", f"127.0.0.1:{server.http_port}")
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    body = json.loads(out.stdout)
    assert set(body) == {"loss", "dtype", "grads"}
    assert body["loss"] == pytest.approx(0.34545638, rel=1e-6)  # torch 2.13's answer


def test_python_example(server: RunningServer) -> None:
    code = (_example("python").replace("localhost:8000", f"127.0.0.1:{server.http_port}")
            .replace("localhost:50051", server.grpc_target))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rest_loss, grpc_loss = out.stdout.split()[:2]
    assert float(rest_loss) == pytest.approx(float(grpc_loss), rel=1e-6)
    assert out.stdout.rstrip().endswith("(4, 10)")


def test_grpcurl_example(server: RunningServer) -> None:
    """grpcurl sends the proto3 JSON mapping of -d: the same JSON, parsed as protobuf does and
    sent to the method it names, gives the documented answer."""
    import shlex

    import grpc
    from google.protobuf import json_format

    from lossd._proto.lossd.v1 import lossd_pb2 as pb
    from lossd._proto.lossd.v1 import lossd_pb2_grpc as pb_grpc

    words = shlex.split(_example("grpcurl").replace("\\\n", " "))
    body, method = words[words.index("-d") + 1], words[-1]
    assert method == "lossd.v1.LossService/Compute" and words[-2] == "localhost:50051"
    request = json_format.Parse(body, pb.ComputeRequest())
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = pb_grpc.LossServiceStub(channel).Compute(request, timeout=10)
    assert json_format.MessageToDict(response)["loss"]["dtype"] == "FLOAT64"
    # packed values in, packed values out: mean((1 - 0)², (2 - 0)²)
    assert list(response.loss.double_data) == [2.5] and not response.loss.raw


def test_evaluation_example(spawn) -> None:
    """The dataset-level example, batch ids with '/' included: the stream and the run both give
    the core's loss on the concatenated batches."""
    from lossd.losses import compute

    s = spawn()
    code = (_example("evaluation").replace("localhost:8000", f"127.0.0.1:{s.http_port}")
            .replace("localhost:50051", s.grpc_target))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    rng = np.random.default_rng(0)
    loader = [(rng.normal(size=(8, 5)), rng.integers(0, 5, size=8)) for _ in range(4)]
    expected = compute("cross_entropy", {"input": np.concatenate([x for x, _ in loader]),
                                         "target": np.concatenate([y for _, y in loader])}, {})
    stream, run = map(float, out.stdout.split())
    assert stream == pytest.approx(float(expected.loss), rel=1e-12)
    assert run == pytest.approx(float(expected.loss), rel=1e-12)
