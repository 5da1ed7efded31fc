"""mypy --strict (for Linux, Windows and macOS) and ruff run as part of the test command, so CI
enforces them: an unguarded POSIX-only call fails the Windows run. The benchmark scripts, and the
test support they import, are checked strictly too, for Linux only (they drive nginx and aria2c
and use os.wait4, resource and SIGQUIT)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("platform", ["linux", "win32", "darwin"])
def test_mypy_strict(platform: str) -> None:
    proc = _run("mypy", "--platform", platform)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_scripts() -> None:
    # Naming "scripts" overrides the configured files; --strict keeps this check strict even if
    # the project's [tool.mypy] settings change. Imports (tests.support, wheelcache) are
    # followed and checked with the same rules.
    proc = _run("mypy", "--strict", "--platform", "linux", "scripts")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff() -> None:
    proc = _run("ruff", "check", "wheelcache", "tests", "scripts")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    proc = _run("ruff", "format", "--check", "wheelcache", "tests", "scripts")
    assert proc.returncode == 0, proc.stdout + proc.stderr
