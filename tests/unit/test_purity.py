"""The pure core (``wheelcache/core/``): values in, values out, no I/O.

Every module under ``core/`` is walked.  It may import only other core modules,
``wheelcache.errors``, the pure libraries ``packaging`` and ``resolvelib``, and a short list of
pure standard-library modules; it may not open files, read the environment, or touch the disk
through ``Path`` methods.  The rule is tested against planted violations, so it can fail.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import wheelcache

PKG = Path(wheelcache.__file__).parent
CORE = PKG / "core"

ALLOWED_WHEELCACHE = ("wheelcache.core", "wheelcache.errors")
ALLOWED_THIRD_PARTY = ("packaging", "resolvelib")
ALLOWED_STDLIB = {
    "__future__",
    "abc",
    "bisect",
    "collections",
    "dataclasses",
    "datetime",  # value types (a lock's upload-time); now()/today() are caught below
    "email",
    "enum",
    "functools",
    "hashlib",
    "heapq",
    "html",
    "http",
    "itertools",
    "json",
    "math",
    "operator",
    "re",
    "shlex",  # split() only: pip splits requirement-file option lines with it
    "string",
    "struct",
    "textwrap",
    "typing",
    "urllib.parse",
    "zlib",
}
#: pathlib is allowed for its pure classes only.
PURE_PATHLIB = {"PurePath", "PurePosixPath", "PureWindowsPath"}
FORBIDDEN_CALLS = {"open", "getenv", "input", "print", "exec", "eval", "__import__", "breakpoint"}
#: Attribute names that mean I/O whatever object they are on (``replace`` and ``resolve``
#: are left out: ``str.replace`` and resolvelib's ``Resolver.resolve`` are pure).
FORBIDDEN_ATTRIBUTES = {
    "environ",
    "getenv",
    "open",
    "exists",
    "stat",
    "lstat",
    "is_file",
    "is_dir",
    "iterdir",
    "glob",
    "rglob",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "mkdir",
    "unlink",
    "rmdir",
    "rename",
    "touch",
    "cwd",
    "home",
    "now",
    "utcnow",
    "today",
}


def _allowed_module(name: str) -> bool:
    if name == "wheelcache" or name.startswith("wheelcache."):
        return any(name == a or name.startswith(a + ".") for a in ALLOWED_WHEELCACHE)
    top = name.split(".")[0]
    if top in ALLOWED_THIRD_PARTY:
        return True
    if name == "http":  # HTTPStatus only: http.client and http.server are I/O
        return True
    return any(name == s or name.startswith(s + ".") for s in ALLOWED_STDLIB - {"http"})


def _absolute(node: ast.ImportFrom, module: str) -> str:
    """The absolute module an ``ImportFrom`` in *module* (``wheelcache.core.x``) names."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")[: -node.level]
    return ".".join(base + ([node.module] if node.module else []))


def violations(source: str, module: str) -> list[str]:
    """Every way *source* (the text of *module*) breaks the purity rule."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _allowed_module(alias.name):
                    found.append(f"{module} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module)
            if target == "pathlib":
                bad = [a.name for a in node.names if a.name not in PURE_PATHLIB]
                found += [f"{module} imports pathlib.{n}" for n in bad]
            elif target in ("wheelcache", "wheelcache.core"):
                # ``from wheelcache import x`` / ``from . import x``: judge each name as a module.
                for alias in node.names:
                    name = f"{target}.{alias.name}"
                    if not _allowed_module(name):
                        found.append(f"{module} imports {name}")
            elif not _allowed_module(target):
                found.append(f"{module} imports {target}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in FORBIDDEN_CALLS:
                found.append(f"{module} calls {node.func.id}()")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            found.append(f"{module} touches .{node.attr}")
    return found


def _core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_the_modules_the_layout_promises() -> None:
    names = {p.stem for p in _core_modules()}
    assert {"models", "target", "variants", "simple", "evaluator", "provider"} <= names


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.stem)
def test_core_module_is_pure(path: Path) -> None:
    module = "wheelcache.core." + path.stem if path.stem != "__init__" else "wheelcache.core"
    assert violations(path.read_text(encoding="utf-8"), module) == []


@pytest.mark.parametrize(
    ("planted", "expected"),
    [
        ("import os", "imports os"),
        ("import socket", "imports socket"),
        ("import sys", "imports sys"),
        ("import time", "imports time"),
        ("import urllib.request", "imports urllib.request"),
        ("import httpx", "imports httpx"),
        ("from urllib import request", "imports urllib"),
        ("from pathlib import Path", "imports pathlib.Path"),
        ("from .. import store", "imports wheelcache.store"),
        ("import http.server", "imports http.server"),
        ("from .. import jobs", "imports wheelcache.jobs"),
        ("from ..store import cache", "imports wheelcache.store"),
        ("from wheelcache.net.client import Http", "imports wheelcache.net.client"),
        ("import wheelcache.store.cache", "imports wheelcache.store.cache"),
        ("from wheelcache.jobs import fetch", "imports wheelcache.jobs"),
        ("from wheelcache import fetch", "imports wheelcache.fetch"),
        ("x = open('f')", "calls open()"),
        ("p.open()", "touches .open"),
        ("p.exists()", "touches .exists"),
        ("p.stat()", "touches .stat"),
        ("os.environ['X']", "touches .environ"),
        ("import datetime; datetime.datetime.now()", "touches .now"),
    ],
)
def test_the_rule_catches_a_planted_violation(tmp_path: Path, planted: str, expected: str) -> None:
    """Plant a violation into a copy of a real core module: the rule must catch it."""
    real = (CORE / "target.py").read_text(encoding="utf-8")
    assert violations(real, "wheelcache.core.target") == []
    planted_file = tmp_path / "target.py"
    planted_file.write_text(real + "\n" + planted + "\n", encoding="utf-8")
    found = violations(planted_file.read_text(encoding="utf-8"), "wheelcache.core.target")
    assert any(expected in v for v in found), found


#: Pure modules that live beside the edge they serve: the HTTP request rules of ``serve``.
PURE_OUTSIDE_CORE = ["serve/request.py"]


@pytest.mark.parametrize("relpath", PURE_OUTSIDE_CORE)
def test_pure_module_outside_core(relpath: str) -> None:
    module = "wheelcache." + relpath.removesuffix(".py").replace("/", ".")
    found = violations((PKG / relpath).read_text(encoding="utf-8"), module)
    # It may use the core, as the core may; nothing else of the package.
    assert found == []


def test_core_imports_without_the_edges() -> None:
    for path in _core_modules():
        if path.stem != "__init__":
            importlib.import_module(f"wheelcache.core.{path.stem}")
