"""Every example in the README and docs/ runs as written.

Each fenced ``python``, ``bash`` or ``sh`` block is run against a fresh real lossd (its
``localhost:8000`` / ``localhost:50051`` / ``lossd:8000`` pointed at that server), in a fresh
directory, and must exit 0. A block that cannot run here (``make serve``, a Kubernetes cluster,
docker, grpcurl) says so in the line before it: ``<!-- not run: why -->``; the reason is required
and should name the test that covers it instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import RunningServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")
LANGUAGES = {"python", "bash", "sh"}


@dataclass(frozen=True)
class Block:
    """One fenced example: where it is, its language, its code, why it is not run (if so)."""

    page: str
    line: int
    language: str
    code: str
    not_run: str | None


def blocks() -> list[Block]:
    """Every python/bash/sh block of the README and docs/."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            language, code = match.group(1), match.group(2)
            if language not in LANGUAGES:
                continue
            before = text[:match.start()].rstrip("\n").rsplit("\n", 2)
            marker = next((m.group(1) for line in before[-2:]
                           if (m := NOT_RUN.search(line))), None)
            found.append(Block(page.relative_to(ROOT).as_posix(),
                               text.count("\n", 0, match.start()) + 1, language, code, marker))
    return found


BLOCKS = blocks()


def test_examples_are_found() -> None:
    assert len(BLOCKS) >= 10
    assert all(b.not_run is None or len(b.not_run) > 10 for b in BLOCKS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run is None],
                         ids=lambda b: f"{b.page}:{b.line}")
def test_example_runs(block: Block, spawn, tmp_path: Path) -> None:
    server: RunningServer = spawn()
    code = (block.code.replace("http://lossd:8000", server.url)
            .replace("localhost:8000", f"127.0.0.1:{server.http_port}")
            .replace("localhost:50051", server.grpc_target))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ([sys.executable, "-c", code] if block.language == "python"
               else ["bash", "-euo", "pipefail", "-c", code])
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, (f"{block.page}:{block.line} failed\n--- stdout\n"
                                 f"{out.stdout[-2000:]}\n--- stderr\n{out.stderr[-2000:]}")
    if "curl" in code:  # curl exits 0 on an HTTP error; lossd's errors say "error"
        assert '"error"' not in out.stdout, f"{block.page}:{block.line}: {out.stdout[:2000]}"
