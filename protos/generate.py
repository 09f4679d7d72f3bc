"""Generate service/lossd/_proto from protos/ with grpcio-tools (pinned in pyproject.toml).

    python protos/generate.py [OUT_DIR]      (default: service/lossd/_proto; `make proto`)

Imports inside the generated modules are rewritten to ``lossd._proto.…`` so the stubs work as
a subpackage without touching sys.path.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# Proto packages whose descriptors go to a pool of their own, not protobuf's default pool:
# tritonclient, KServe and MLServer all register their copy of the `inference` package there,
# and the default pool refuses a second definition of the same symbol (kserve/kserve#3099).
PRIVATE_POOL = {"inference"}


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out}",
            f"--pyi_out={out}", f"--grpc_python_out={out}",
            *(str(s.relative_to(PROTOS)) for s in sources)]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for path in sorted(out.rglob("*.py*")):
        text = re.sub(r"^from (\w+(?:\.\w+)*) import (\w+_pb2)",
                      lambda m: f"from lossd._proto.{m.group(1)} import {m.group(2)}",
                      path.read_text(), flags=re.M)
        if path.parent.name in PRIVATE_POOL:
            text = text.replace("_descriptor_pool.Default()", "_descriptor_pool.DescriptorPool()")
        path.write_text(text)
        written.append(path)
    for folder in {p.parent for p in written} | {out}:
        while folder != out.parent:
            (folder / "__init__.py").touch()
            folder = folder.parent
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "service" / "lossd" / "_proto"
    for p in generate(target):
        print(p.relative_to(target.parent) if p.is_relative_to(target.parent) else p)
