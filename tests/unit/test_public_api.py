"""The curated public API of ``import wheelcache``: what __all__ promises is there, it is the
real thing (``wheelcache.jobs.fetch`` is the function, not a module), and importing the package
imports none of the heavy layers."""

from __future__ import annotations

import inspect
import subprocess
import sys

import wheelcache
from wheelcache.errors import WheelcacheError


def test_everything_in_all_resolves() -> None:
    for name in wheelcache.__all__:
        assert getattr(wheelcache, name) is not None, name


def test_fetch_is_the_function() -> None:
    from wheelcache import fetch

    assert inspect.isfunction(fetch)
    assert "request" in inspect.signature(fetch).parameters


def test_the_error_tree_is_exported() -> None:
    errors = [getattr(wheelcache, n) for n in wheelcache.__all__ if n.endswith(("Error", "Fault"))]
    assert len(errors) >= 10
    assert all(issubclass(e, WheelcacheError) for e in errors)


def test_unknown_names_are_attribute_errors() -> None:
    try:
        wheelcache.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("wheelcache.no_such_name did not raise")


def test_import_wheelcache_is_cheap() -> None:
    code = (
        "import sys, wheelcache; "
        "print(sorted(m for m in sys.modules"
        " if m.startswith(('httpx', 'http.client', 'wheelcache.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
