"""Start the real ``lossd serve`` as a subprocess on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    log_path: Path
    log_file: Any
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.log_file.close()


def start_server(tmp_dir: Path, *args: str, env: dict[str, str] | None = None,
                 wait: float = 30.0, verify: Any = None,
                 ports: tuple[int, int] | None = None) -> RunningServer:
    """``lossd serve`` with ``args`` on free ports (or ``ports``: HTTP, gRPC); returns once
    /readyz answers 200.

    ``verify`` (a CA file or SSL context) means the server speaks HTTPS.
    """
    http_port, grpc_port = ports or (free_port(), free_port())
    log_path = tmp_dir / f"lossd-{http_port}.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "lossd", "serve", "--host", "127.0.0.1",
         "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--no-log-json", *args],
        cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
        env={**os.environ, "LOSSD_RUNS_DIR": str(tmp_dir / "runs"), **(env or {})})
    server = RunningServer(process, http_port, grpc_port, log_path, log_file,
                           "http" if verify is None else "https")

    def ready() -> bool:
        if process.poll() is not None:
            log_file.close()
            raise RuntimeError(f"lossd exited with {process.returncode}:\n{server.log()}")
        try:
            return httpx.get(f"{server.url}/readyz", timeout=1,
                             verify=True if verify is None else verify).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, what="lossd's /readyz answering 200", timeout=wait)
    except TimeoutError:
        server.terminate()
        raise RuntimeError(f"lossd did not become ready in {wait} s:\n{server.log()}") from None
    return server
