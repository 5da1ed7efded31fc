"""Big closures resolved for a foreign target against the live package index, compared with
``uv pip compile --python-platform …`` run in the same test (issue 15).

Marked ``network``: off by default (``-m network`` runs it).  The index is the one pip's
configuration gives at run time (the suite isolates pip's config files, so pip's default).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelcache.cli.main import main
from wheelcache.config import pip_index_urls

PY = "3.10"
UV_PLATFORM = "x86_64-manylinux_2_28"  # what --platform linux_x86_64 means: glibc 2.28


def _wheelcache(index: str, cache: Path, requirement: str) -> dict[str, Version]:
    argv = ["fetch", "--dry-run", "--json", "--py", PY, "--platform", "linux_x86_64"]
    argv += ["--index-url", index, "--torch-index", index, "--cache-dir", str(cache)]
    result = CliRunner().invoke(main, [*argv, requirement], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    return {canonicalize_name(f["project"]): Version(f["version"]) for f in files}


def _uv(index: str, cache: Path, requirement: str) -> dict[str, Version]:
    cmd = [sys.executable, "-m", "uv", "pip", "compile", "-", "--python-version", PY]
    cmd += ["--python-platform", UV_PLATFORM, "--index-url", index, "--only-binary", ":all:"]
    cmd += ["--no-header", "--no-annotate", "--cache-dir", str(cache), "--quiet"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    done = subprocess.run(
        cmd, input=requirement, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    pins = {}
    for line in done.stdout.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.split("[", 1)[0])] = Version(version.split(";")[0])
    return pins


@pytest.mark.network
@pytest.mark.parametrize("requirement", ["apache-airflow", "jupyterlab", "transformers[torch]"])
def test_big_closure_matches_uv(requirement: str, tmp_path: Path) -> None:
    index = pip_index_urls()[0][0]
    ours = _wheelcache(index, tmp_path / "wheelcache", requirement)
    theirs = _uv(index, tmp_path / "uv", requirement)
    only_ours = {f"{n}=={v}" for n, v in ours.items() if theirs.get(n) != v}
    only_uv = {f"{n}=={v}" for n, v in theirs.items() if ours.get(n) != v}
    assert (sorted(only_ours), sorted(only_uv)) == ([], []), f"{len(ours)} vs {len(theirs)}"
