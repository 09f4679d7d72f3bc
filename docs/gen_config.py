"""Regenerate the configuration reference in docs/deploy.md from ``Settings``:
``python docs/gen_config.py``.

tests/e2e/test_deploy.py fails when the committed page differs from what this writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import annotated_types
from pydantic.fields import FieldInfo

from lossd.settings import MIB, Settings

PAGE = Path(__file__).resolve().parent / "deploy.md"
BEGIN, END = "<!-- config:begin -->", "<!-- config:end -->"


def _default(field: FieldInfo) -> str:
    value = field.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and value >= MIB and value % MIB == 0:
        return f"`{value}` ({value // MIB} MiB)"
    return f"`{value}`" if value != "" else "empty"


def _range(field: FieldInfo) -> str:
    low = next((m.ge for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in field.metadata if isinstance(m, annotated_types.Le)), None)
    if low is None and high is None:
        return ""
    return f"{'' if low is None else low} … {'' if high is None else high}".strip()


def config_table() -> str:
    rows = ["| environment | flag | default | range | meaning |", "|---|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        flag = f"`--{name.replace('_', '-')}`"
        if field.annotation is bool:
            flag += f" / `--no-{name.replace('_', '-')}`"
        rows.append(f"| `LOSSD_{name.upper()}` | {flag} | {_default(field)} | {_range(field)} "
                    f"| {field.description} |")
    return "\n".join(rows)


def render(text: str) -> str:
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                  lambda _: f"{BEGIN}\n{config_table()}\n{END}", text, flags=re.S)


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text()))
