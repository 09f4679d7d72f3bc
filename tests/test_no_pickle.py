"""No pickle, no eval: nothing in the service can turn request bytes into code or objects."""

from __future__ import annotations

import re
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[1] / "service" / "lossd"
MODULES = r"(?:pickle|cPickle|dill|marshal|shelve)"
FORBIDDEN = re.compile(  # imports and uses of those modules, calls of eval/exec/__import__
    rf"\b(?:import\s+{MODULES}|from\s+{MODULES}\s+import|{MODULES}\.\w+)\b"
    r"|(?<![\w.])(?:eval|exec|__import__)\s*\(|allow_pickle\s*=\s*True|\byaml\.load\b")


def test_no_pickle_no_eval_in_the_service() -> None:
    hits = [f"{path.relative_to(SERVICE.parent)}:{n}: {line.strip()}"
            for path in sorted(SERVICE.rglob("*.py")) if "_proto" not in path.parts
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if FORBIDDEN.search(line.split("#")[0])]
    assert not hits, "\n".join(hits)


def test_numpy_loads_without_pickle() -> None:
    """Wherever the service reads .npy/.npz, pickle is refused explicitly."""
    for path in SERVICE.rglob("*.py"):
        for line in path.read_text().splitlines():
            if re.search(r"np\.load\(", line):
                assert "allow_pickle=False" in line, f"{path}: {line.strip()}"
