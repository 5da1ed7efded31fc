"""Install from a PEP 751 lock with the real clients, offline, into a fresh virtual environment.

pip installs a lock from 26.1 on; the test environment's pip (CI installs the newest release)
is run against a new venv made without pip (``pip --python VENV``), so the venv is this
machine's Python and nothing but the lock's wheels lands in it.  uv installs into the same kind
of venv with ``--offline``.  Both are isolated from this machine's configuration (no ``PIP_*``
or ``UV_*`` variables, no config file, a throwaway HOME and cache) and have no network: the
lock's ``path`` entries are all they may use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.version import Version

__all__ = [
    "fresh_venv",
    "installed",
    "pip_install_lock",
    "uv_command",
    "uv_compile",
    "uv_install_lock",
]

PIP_WITH_LOCKS = Version("26.1")


def _env(tmp: Path, *, network: bool = False) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "WHEELCACHE_")) and "proxy" not in k.lower()
    }
    home = tmp / "client-home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        UV_CACHE_DIR=str(tmp / "uv-cache"),
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
    )
    if not network:  # any attempt to reach a server fails at once instead of finding one
        env.update(
            HTTP_PROXY="http://127.0.0.1:9",
            HTTPS_PROXY="http://127.0.0.1:9",
            ALL_PROXY="http://127.0.0.1:9",
        )
    return env


def run(
    cmd: list[str], tmp: Path, cwd: Path | None = None, *, network: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        env=_env(tmp, network=network),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fresh_venv(tmp: Path, name: str) -> Path:
    """A new venv without pip; returns its python."""
    venv = tmp / name
    proc = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp)
    assert proc.returncode == 0, proc.stderr
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed(python: Path) -> set[str]:
    """``name-version`` of every distribution in the venv of *python*."""
    proc = run(  # -I: not this directory (a source tree's *.egg-info), no user site
        [
            str(python),
            "-I",
            "-c",
            "import importlib.metadata as m; "
            "print('\\n'.join(d.metadata['Name'] + '-' + d.version for d in m.distributions()))",
        ],
        python.parent,
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def pip_install_lock(lock: Path, tmp: Path, name: str = "pip-venv") -> set[str]:
    """``pip install --no-index -r LOCK`` into a fresh venv; what it installed."""
    import pip

    assert Version(pip.__version__) >= PIP_WITH_LOCKS, (
        f"pip {pip.__version__} cannot install from a PEP 751 lock; the tests need pip >= "
        f"{PIP_WITH_LOCKS} (python -m pip install -U pip)"
    )
    python = fresh_venv(tmp, name)
    proc = run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            str(lock),
        ],
        tmp,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return installed(python)


def uv_command() -> list[str]:
    """How to run uv here; fails (never skips) when it is missing: CI must install it."""
    probe = subprocess.run(
        [sys.executable, "-m", "uv", "--version"], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "uv"]
    found = shutil.which("uv")
    assert found, "uv is not installed: `pip install uv` (CI installs it; this test needs it)"
    return [found]


def uv_install_lock(lock: Path, tmp: Path, name: str = "uv-venv") -> set[str]:
    """``uv pip install --offline -r LOCK`` into a fresh venv; what it installed."""
    python = fresh_venv(tmp, name)
    proc = run(
        [*uv_command(), "pip", "install", "--offline", "--python", str(python), "-r", str(lock)],
        tmp,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return installed(python)


def uv_compile(requirements: str, out: Path, tmp: Path, *args: str) -> Path:
    """``uv pip compile -o OUT`` (a ``pylock.toml`` name gives a PEP 751 lock) of
    *requirements*; *args* name the indexes and the target (``--python-platform`` …)."""
    src = tmp / "requirements.in"
    src.write_text(requirements, encoding="utf-8")
    cmd = [*uv_command(), "pip", "compile", str(src), "-o", str(out), "--no-header", *args]
    proc = run(cmd, tmp, cwd=tmp, network=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out
