"""Fuzzing explores and reproduces: without a seed Hypothesis replays the same
examples on every run (CI's short fuzz); ``LOSSD_FUZZ_SEED`` (what ``make fuzz`` draws and
prints) gives other examples for another seed and the same ones again for the same seed.

Each run is a real pytest process over a small Hypothesis test that records what it drew, with
this suite's conftest (tests/support/fuzzing.py chooses the profile).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import fuzzing

ROOT = Path(__file__).resolve().parents[1]
DRAWS = '''
import os
from hypothesis import given, settings, strategies as st

@settings(max_examples=20)
@given(st.integers(-10**9, 10**9))
def test_draw(x):
    with open(os.environ["DRAWS_FILE"], "a") as f:
        f.write(f"{x}\\n")
'''


def _draws(tmp_path: Path, name: str, *args: str, seed: str | None = None) -> list[str]:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n"
                                        "from tests.conftest import pytest_configure, "
                                        "pytest_report_header  # noqa: F401\n")
    (folder / "test_draws.py").write_text(DRAWS)
    record = folder / "draws.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSSD_FUZZ_")}
    env.update(DRAWS_FILE=str(record), PYTHONPATH=str(ROOT))
    if seed is not None:
        env[fuzzing.SEED] = seed
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(folder), "-c", os.devnull, str(folder), *args],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return record.read_text().split()


def test_without_a_seed_every_run_draws_the_same(tmp_path: Path) -> None:
    assert _draws(tmp_path, "a") == _draws(tmp_path, "b")


def test_a_seed_replays_its_examples_and_another_seed_explores(tmp_path: Path) -> None:
    first = _draws(tmp_path, "a", seed="20261203")
    assert _draws(tmp_path, "b", seed="20261203") == first
    assert _draws(tmp_path, "c", "--hypothesis-seed=20261203", seed="20261203") == first
    assert _draws(tmp_path, "d", seed="7") != first
    assert _draws(tmp_path, "e") != first  # the derandomized run is not the seeded one


def test_profiles_and_a_bad_seed() -> None:
    assert fuzzing.profile({}) == "reproducible"
    assert fuzzing.profile({fuzzing.SEED: "12"}) == "seeded"
    assert fuzzing.profile({fuzzing.RANDOM: "1"}) == "explore"
    assert fuzzing.seed({fuzzing.SEED: "12"}) == 12
    with pytest.raises(pytest.UsageError, match="must be an integer"):
        fuzzing.seed({fuzzing.SEED: "twelve"})
