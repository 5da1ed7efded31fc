"""The package's layers: nothing imports upward, so the import graph between folders has no
cycle.  The rule is checked on the real tree and proven on planted violations."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import wheelcache

PKG = Path(wheelcache.__file__).parent

#: Each layer may import only layers of a lower rank (and itself).  ``wheelcache`` is the
#: package root (its ``__version__``), which anything may read.
RANK = {
    "wheelcache": 0,
    "errors": 0,
    "core": 1,
    "host": 2,  # the stdlib probe and target files: the core's values, no cache
    "store": 2,
    "reqfiles": 2,  # requirement and lock files on disk: the core's parsers, nothing else
    "net": 3,
    "config": 3,
    "serve": 4,
    "bundle": 5,  # writes a static index beside the wheels (serve/static_index)
    "jobs": 6,  # fetch and matrix, end to end
    "cli": 7,
    "__main__": 8,
}


def layer_of(module: str) -> str:
    """``wheelcache.net.client`` → ``net``; ``wheelcache.jobs.fetch`` → ``jobs``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["wheelcache", *parts])


def _imports(source: str, module: str, is_package: bool) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target in ("wheelcache",) or node.module is None:
                found += [f"{target}.{a.name}" for a in node.names]
            else:
                found.append(target)
    return [f for f in found if f == "wheelcache" or f.startswith("wheelcache.")]


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import in *source* (the text of *module*) of a layer of the same or higher rank
    than its own, other than its own layer."""
    own = layer_of(module)
    bad = []
    for target in _imports(source, module, is_package):
        other = layer_of(target)
        if target == "wheelcache.__version__" or other == own:
            continue
        if other not in RANK:
            if (PKG / other).exists() or (PKG / f"{other}.py").exists():
                bad.append(f"{module} imports {target}: layer {other!r} has no rank")
            continue  # a name from the package root, e.g. __version__
        if RANK[other] >= RANK[own]:
            bad.append(f"{module} ({own}) imports {target} ({other})")
    return bad


def _modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def test_every_layer_has_a_rank() -> None:
    layers = {p.name.removesuffix(".py") for p in PKG.iterdir() if p.name != "__pycache__"}
    layers -= {"__init__", "py.typed"}
    assert layers <= set(RANK), layers - set(RANK)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_nothing_imports_upward(path: Path) -> None:
    module = _module_name(path)
    if module == "wheelcache":
        return  # the package root re-exports the public API lazily (see its docstring)
    source = path.read_text(encoding="utf-8")
    assert upward_imports(source, module, path.name == "__init__.py") == []


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        ("wheelcache.store.cache", "from wheelcache.serve.publish import CacheView"),
        ("wheelcache.net.client", "from wheelcache.jobs.fetch import fetch"),
        ("wheelcache.core.target", "from wheelcache.store import cache"),
        ("wheelcache.serve.server", "import wheelcache.cli.main"),
        ("wheelcache.net.client", "from ..cli import main"),
        ("wheelcache.bundle.export", "from wheelcache.jobs.matrix import build_matrix"),
    ],
)
def test_the_rule_catches_a_planted_upward_import(module: str, planted: str) -> None:
    assert_caught(upward_imports, module, planted)


def assert_caught(rule: Callable[[str, str], list[str]], module: str, planted: str) -> None:
    """*rule* passes *module* as it is and fails it with the line *planted* added."""
    path = PKG.joinpath(*module.split(".")[1:]).with_suffix(".py")
    real = path.read_text(encoding="utf-8")
    assert rule(real, module) == []
    assert rule(real + "\n" + planted + "\n", module) != []


#: The one module that speaks HTTP as a client (issue 14 replaced httpx with it); the rest of
#: net/ goes through net/client.py, and nothing outside net/ makes requests.
TRANSPORT = "wheelcache.net.http11"
CLIENT_LIBRARIES = ("http.client", "httpx", "urllib.request", "urllib3", "requests")


def client_imports(source: str, module: str) -> list[str]:
    """Imports of an HTTP client library in *source* (the text of *module*) outside
    :data:`TRANSPORT`."""
    if module == TRANSPORT:
        return []
    found = []
    for node in ast.walk(ast.parse(source)):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and not node.level
            else []
        )
        found += [n for n in names if n.startswith(CLIENT_LIBRARIES)]
    return [f"{module} imports {n}" for n in found]


def test_one_module_speaks_http_as_a_client() -> None:
    bad = [
        line
        for path in _modules()
        for line in client_imports(path.read_text(encoding="utf-8"), _module_name(path))
    ]
    assert bad == []


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        ("wheelcache.net.client", "import http.client"),
        ("wheelcache.net.transfer", "from urllib.request import urlopen"),
        ("wheelcache.serve.pull_server", "import httpx"),
    ],
)
def test_the_transport_rule_catches_a_planted_client(module: str, planted: str) -> None:
    assert_caught(client_imports, module, planted)
