"""A non-Python client: tests/node/client.js (@grpc/grpc-js + @grpc/proto-loader from npm, pinned
in tests/node/package-lock.json) calls lossd.v1 Compute and V2 ModelInfer on a real lossd and
checks the numbers. Installs node_modules on first use (``npm ci``). Without node or npm it
skips, except in CI, which installs them (tests/support/tools.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import tools

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = tools.which("node")
NPM = tools.which("npm")


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if NODE is None:
        tools.missing("node is not installed (apt-get install nodejs npm)")
    modules = NODE_DIR / "node_modules"
    if not (modules / "@grpc" / "grpc-js").is_dir() or not (
            modules / "@grpc" / "proto-loader").is_dir():
        if NPM is None:
            tools.missing("npm is not installed (needed once for tests/node/node_modules)")
        done = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
    return modules


def test_node_client_computes_over_both_grpc_apis(server, node_modules: Path) -> None:
    done = subprocess.run([NODE, "client.js", server.grpc_target], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(checks) == 5 and all('"ok":true' in line for line in checks), done.stdout
