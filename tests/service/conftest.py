from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import RunningServer, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real lossd for the tests that do not need special settings."""
    running = start_server(tmp_path_factory.mktemp("lossd"))
    yield running
    assert running.terminate() == 0, running.log()


@pytest.fixture
def spawn(tmp_path) -> Iterator:
    """Start a lossd with custom flags; stopped after the test."""
    started: list[RunningServer] = []

    def _spawn(*args: str, **kwargs) -> RunningServer:
        started.append(start_server(tmp_path, *args, **kwargs))
        return started[-1]

    yield _spawn
    for s in started:
        if s.process.poll() is None:
            s.process.kill()
        s.terminate()
