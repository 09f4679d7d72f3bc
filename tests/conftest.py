"""Shared pytest setup: Hypothesis profiles, and the ``server``/``spawn`` fixtures (real
``lossd serve`` processes on free loopback ports).

Hypothesis runs derandomized (the same examples on every run), so CI is reproducible: a failure
is a fact about the code, not about a draw. ``LOSSD_FUZZ_RANDOM=1`` explores fresh examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.server import RunningServer, start_server

settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile("explore" if os.environ.get("LOSSD_FUZZ_RANDOM") else "reproducible")


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
