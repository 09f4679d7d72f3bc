"""Run the ``lossd`` command as a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lossd(*args: str | Path, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m lossd ARGS`` from the repository root; no LOSSD_* variable inherited
    unless ``env`` sets it."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOSSD_")}
    return subprocess.run([sys.executable, "-m", "lossd", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


def ok(*args: str | Path, **kwargs) -> str:
    """stdout of a ``lossd`` run that must succeed (and print nothing on stderr)."""
    done = lossd(*args, **kwargs)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a ``lossd`` run that must fail without a traceback."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]
