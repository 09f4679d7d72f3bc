"""Regenerate the README's table of losses from the registry: ``python docs/gen_readme.py``.

tests/e2e/test_readme.py fails when the committed README differs from what this writes.
"""

from __future__ import annotations

import re
from pathlib import Path

from lossd.losses import REGISTRY

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- losses:begin -->", "<!-- losses:end -->"
FAMILIES = ("regression", "classification", "margin", "sequence", "boxes", "segmentation")


def losses_table() -> str:
    rows = ["| loss | family | tensors (differentiable in bold) | options | PyTorch equivalent |",
            "|---|---|---|---|---|"]
    for spec in sorted(REGISTRY.values(), key=lambda s: (FAMILIES.index(s.family), s.name)):
        tensors = ", ".join(f"**{t.name}**" if t.differentiable else t.name
                            for t in spec.tensors)
        options = ", ".join(f"`{o.name}={o.default!r}`" for o in spec.options)
        torch = spec.torch.split(";")[0].replace("|", "/")
        rows.append(f"| `{spec.name}` | {spec.family} | {tensors} | {options} | {torch} |")
    return "\n".join(rows)


def render(text: str) -> str:
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                  lambda _: f"{BEGIN}\n{losses_table()}\n{END}", text, flags=re.S)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
