"""The package's shape: dependencies point one way (losses <- engine <- api <- serve), no
import cycle (type-only imports included), no ``_private`` name imported from another module,
and ``import lossd`` loads no server dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "service" / "lossd"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "_proto" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in ``path``, relative ones
    resolved, ``if TYPE_CHECKING`` blocks included."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names]))
    return out


def _graph() -> dict[str, set[str]]:
    """Module -> the lossd modules it imports (a package's submodules count as themselves)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names in _imports(module, path):
            for candidate in [target] + [f"{target}.{n}" for n in names]:
                while candidate and candidate not in MODULES:
                    candidate = candidate.rpartition(".")[0]
                # importing one's own parent package (lossd/__init__) is not an edge
                if candidate and candidate != module and not module.startswith(candidate + "."):
                    graph[module].add(candidate)
    return graph


def test_the_walker_sees_the_package() -> None:
    graph = _graph()
    assert "lossd.api.rest.native" in graph and "lossd.calls" in graph["lossd.api.rest.native"]
    assert "lossd.losses" in graph["lossd.engine.batcher"]


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("lower, upper", [
    ("lossd.losses", "lossd.engine"), ("lossd.losses", "lossd.api"),
    ("lossd.engine", "lossd.api"), ("lossd.runs", "lossd.api"), ("lossd.calls", "lossd.api"),
    ("lossd.codec", "lossd.api"), ("lossd.client", "lossd.api"),
    ("lossd.client", "lossd.engine"), ("lossd.api", "lossd.serve"), ("lossd.api", "lossd.cli"),
])
def test_dependencies_point_one_way(lower: str, upper: str) -> None:
    graph = _graph()
    wrong = sorted(f"{m} imports {t}" for m, targets in graph.items() if m.startswith(lower)
                   for t in targets if t.startswith(upper))
    assert not wrong, wrong


def test_the_core_imports_numpy_and_errors_only() -> None:
    allowed = {"numpy", "lossd.errors", "__future__"}
    stdlib = set(sys.stdlib_module_names)
    for module, path in MODULES.items():
        if not module.startswith("lossd.losses"):
            continue
        for target, _ in _imports(module, path):
            root = target.split(".")[0]
            assert (target in allowed or root in stdlib or root == "numpy"
                    or target.startswith("lossd.losses")), f"{module} imports {target}"


def test_no_private_name_imported_from_another_module() -> None:
    found = []
    for module, path in MODULES.items():
        for target, names in _imports(module, path):
            if not target.startswith("lossd") or target == module:
                continue
            private_module = any(part.startswith("_") and part != "__main__"
                                 for part in target.split(".")[1:]) and not target.startswith(
                "lossd._proto")
            same_package = target.rpartition(".")[0] == module.rpartition(".")[0] or (
                target.startswith(module + ".") and path.name == "__init__.py")
            private_names = [n for n in names if n.startswith("_") and n != "__version__"]
            if private_names or (private_module and not same_package):
                found.append(f"{module}: from {target} import {', '.join(names)}")
    assert not found, found


def test_import_lossd_loads_no_server_dependency() -> None:
    """Nor torch or torchmetrics: the bridges (lossd.torch, lossd.torchmetrics) are optional."""
    code = ("import sys, lossd; lossd.Client; lossd.GrpcClient; from lossd.losses import mse; "
            "bad = {'fastapi', 'uvicorn', 'prometheus_client', 'redis', 'starlette', "
            "'pydantic', 'pydantic_settings', 'torch', 'torchmetrics'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
