"""Shared pytest setup: Hypothesis profiles, and the ``server``/``spawn`` fixtures (real
``lossd serve`` processes on free loopback ports).

Hypothesis runs derandomized (the same examples on every run), so CI is reproducible: a failure
is a fact about the code, not about a draw. ``make fuzz`` draws a seed per run
(``LOSSD_FUZZ_SEED``, printed, and replayed by setting it again); ``LOSSD_FUZZ_RANDOM=1``
explores fresh examples (tests/support/fuzzing.py).

In CI (``LOSSD_CI=1``, set by .ci/run) a skipped test fails, except the documented skips of
tests marked ``torch`` without torch (tests/support/tools.py, docs/testing.md).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.support import fuzzing, tools
from tests.support.server import RunningServer, start_server

fuzzing.configure_profile()


def pytest_configure(config: pytest.Config) -> None:
    fuzzing.configure(config)


def pytest_report_header(config: pytest.Config) -> str:
    return fuzzing.header()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    tools.fail_unexpected_skip(report, item)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    tools.fail_unexpected_skip(report, collector)
    return report


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
