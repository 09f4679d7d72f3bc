"""``pip install lossd`` (no extras) is the client and the pure-NumPy core, and nothing more.

A fresh venv gets the package the way a user gets it (not editable, pinned by constraints.txt);
there the core computes in-process, the clients talk to a real server (started from this
test's environment) without any server dependency or accelerator (orjson, pybase64) installed,
and the ``lossd`` command answers ``--version``, ``losses`` and ``compute``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

from tests.support.server import start_server

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {"fastapi", "starlette", "uvicorn", "uvloop", "httptools", "redis",
               "prometheus-client", "pydantic", "pydantic-settings", "orjson", "pybase64",
               "pysimdjson", "grpcio-health-checking", "grpcio-reflection"}

USE = """
import sys

import numpy as np

import lossd
from lossd.losses import compute, mse

url, target, version = sys.argv[1:]
assert lossd.__version__ == version, lossd.__version__
x = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], dtype=np.float32)
y = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], dtype=np.float32)
core = compute("mse", {"input": x, "target": y}, grad=True)
assert core.loss.dtype == np.float32 and np.isclose(core.loss, np.mean((x - y) ** 2))
assert mse(x, y) == core.loss
with lossd.Client(url) as rest, lossd.GrpcClient(target) as rpc:
    for client in (rest, rpc):
        got = client.compute("mse", input=x, target=y, grad=True)
        assert np.isclose(got.loss, core.loss, rtol=1e-6), (client, got, core)
        assert np.allclose(got.grads["input"], core.grads["input"], rtol=1e-6), (client, got)
        both = client.evaluate("mse", [{"input": x[:1], "target": y[:1]},
                                       {"input": x[1:], "target": y[1:]}])
        assert np.isclose(both.loss, core.loss, rtol=1e-6), both
        try:
            client.compute("no_such_loss", input=x, target=y)
            raise AssertionError("no error")
        except lossd.LossdError as error:
            assert error.code == "NOT_FOUND", error
loaded = {"fastapi", "uvicorn", "prometheus_client", "redis", "pydantic", "orjson",
          "pybase64", "simdjson"} & set(sys.modules)
assert not loaded, loaded
"""


def _name(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _run(*cmd: str | Path) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_pip_install_lossd_is_the_client_and_the_core(tmp_path: Path) -> None:
    # the packaging inputs only: a build in the working tree would leave (and reuse) build/
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "service", src / "service",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)  # this environment's pip installs into it (--python)
    python = env / "bin" / "python"
    pip = (sys.executable, "-m", "pip", "--python", python)
    _run(*pip, "install", "--quiet", "-c", ROOT / "constraints.txt", src)

    installed = {_name(d["name"]) for d in json.loads(_run(*pip, "list", "--format", "json"))}
    assert {"lossd", "numpy", "httpx", "grpcio", "protobuf"} <= installed, installed
    assert not installed & SERVER_ONLY, installed & SERVER_ONLY

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    server = start_server(tmp_path)
    try:
        _run(python, "-c", "import lossd, sys; lossd.Client; lossd.GrpcClient; "
             "from lossd.losses import mse; assert 'fastapi' not in sys.modules")
        _run(python, "-c", USE, server.url, server.grpc_target, version)
        # the command, without the server extras: its version, the local registry, a server
        lossd = env / "bin" / "lossd"
        assert _run(lossd, "--version") == f"lossd {version}\n"
        assert "cross_entropy" in _run(lossd, "losses")
        assert "cross_entropy" in _run(lossd, "losses", "--grpc", server.grpc_target)
        assert float(_run(lossd, "compute", "mse", "--input", "[1.0, 2.0]", "--target",
                          "[0.0, 0.0]", "--url", server.url)) == 2.5
        serve = subprocess.run([lossd, "serve"], capture_output=True, text=True, timeout=60)
        assert serve.returncode == 1 and len(serve.stderr.splitlines()) == 1, serve.stderr
        assert "pip install 'lossd[server]'" in serve.stderr
    finally:
        assert server.terminate() == 0, server.log()
