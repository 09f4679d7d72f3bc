"""The README's torch sections run as written against a real lossd (tests/e2e runs the other
examples; these need the torch extra)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.server import ROOT

pytest.importorskip("torch")
pytest.importorskip("torchmetrics")
pytestmark = pytest.mark.torch

SECTIONS = ("## Training with a remote loss (torch)", "## Metrics (torchmetrics)")


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(title + "\n")
    end = text.find("\n## ", start + len(title))
    return text[start:] if end < 0 else text[start:end]


@pytest.mark.parametrize("title", SECTIONS)
def test_the_readme_example_runs(title: str, server, tmp_path) -> None:
    (code,) = re.findall(r"^```python\n(.*?)^```", _section(title), re.S | re.M)
    code = code.replace("localhost:8000", f"127.0.0.1:{server.http_port}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip(), "the example prints its result"
