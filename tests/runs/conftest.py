"""Fixtures of the run tests: a private ``redis-server`` (installed with apt when missing; where
that cannot be done the tests skip, except in CI: tests/support/tools.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support import tools
from tests.support.server import free_port
from tests.support.waiting import wait_until


def _redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], capture_output=True,
                   env=env, timeout=300)
    return shutil.which("redis-server")


def wait_for_redis(url: str, process: subprocess.Popen) -> None:
    """Wait until the redis-server at ``url`` answers PING; fail at once if it exited."""
    import redis

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with redis.Redis.from_url(url) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(up, what=f"redis-server at {url} answering PING", timeout=10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port (no persistence: lossd is what dies)."""
    binary = _redis_server_binary()
    if binary is None:
        tools.missing("redis-server is not installed and apt-get cannot install it here")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    log = (folder / "redis.log").open("w")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", str(folder)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for_redis(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()
