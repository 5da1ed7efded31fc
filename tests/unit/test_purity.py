"""The pure core never imports I/O libraries, never reads the environment or the disk."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wheelcache

PURE = [
    "errors",
    "models",
    "target",
    "variants",
    "simple",
    "evaluator",
    "provider",
    "layout",
    "zipmeta",
]
FORBIDDEN_MODULES = {
    "httpx",
    "sqlite3",
    "platformdirs",
    "tqdm",
    "click",
    "os",
    "shutil",
    "tempfile",
    "socket",
    "subprocess",
}
FORBIDDEN_CALLS = {"open", "getenv"}
PKG = Path(wheelcache.__file__).parent


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports(module: str) -> None:
    tree = ast.parse((PKG / f"{module}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            assert node.module in PURE, f"{module} imports the edge module {node.module}"
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{module} imports {name}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{module} calls {node.func.id}()"
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("environ", "read_text", "read_bytes", "write_text"), (
                f"{module} touches {node.attr}"
            )


def test_pure_modules_still_import_without_edges() -> None:
    import importlib

    for module in PURE:
        importlib.import_module(f"wheelcache.{module}")
