"""examples/train_remote_loss.py trains against a real lossd: its loss goes down."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.server import ROOT

pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_the_training_example_reduces_its_loss(server) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "train_remote_loss.py"),
                          server.url, "--epochs", "5"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    losses = [float(v) for v in re.findall(r"^epoch \d+: loss (\S+)$", out.stdout, re.M)]
    assert len(losses) == 5, out.stdout
    assert losses[-1] < 0.6 * losses[0], losses
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
