"""The text files of a bundle: ``requirements.txt``, the install scripts and ``README.txt``.

Values in, text out (no disk), so tests can read them whole.  The scripts use pip alone with
``--no-index --find-links wheels --require-hashes -r requirements.txt``: nothing else has to be
installed at the other end, no network is tried, and every file's sha256 is checked.  Extra
arguments are passed on to pip (``--user``, ``--target DIR``, another ``--find-links``) and
``PYTHON`` picks the interpreter; without it the scripts prefer the target's own Python
version (``py -3.9`` on Windows, ``python3.9`` elsewhere) when the bundle knows it.
``install.bat``, ``install.ps1`` and ``README.txt`` have CRLF line endings for Windows tools;
``install.sh`` has LF (a shell chokes on CR).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import __version__
from .catalog import CatalogRow
from .units import human_size

__all__ = [
    "human_size",
    "render_install_bat",
    "render_install_ps1",
    "render_install_sh",
    "render_readme",
    "render_requirements",
]


def render_requirements(rows: Sequence[CatalogRow]) -> str:
    """One line per project (pip refuses two), every file of its newest version hashed."""
    by_project: dict[str, dict[str, list[CatalogRow]]] = {}
    for r in rows:
        by_project.setdefault(canonicalize_name(r.project), {}).setdefault(r.version, []).append(r)
    lines = ["# Written by wheelcache export. Install with pip alone, no network:",
             "#   pip install --no-index --find-links wheels --require-hashes -r requirements.txt"]
    for name in sorted(by_project):
        versions = sorted(by_project[name], key=_version_key)
        newest = versions[-1]
        if len(versions) > 1:
            lines.append(f"# {name} {', '.join(versions[:-1])}: in wheels/ too, not pinned here")
        hashes = sorted({r.sha256 for r in by_project[name][newest]})
        lines.append(f"{name}=={newest}" + "".join(f" \\\n    --hash=sha256:{h}" for h in hashes))
    return "\n".join(lines) + "\n"


def _version_key(version: str) -> tuple[int, Version | None, str]:
    try:
        return (1, Version(version), version)
    except InvalidVersion:
        return (0, None, version)


_PIP_ARGS = "--no-index --find-links {wheels} --require-hashes -r {reqs}"


def render_install_sh(py: str | None) -> str:
    """``install.sh`` (POSIX sh); *py* is the target's ``X.Y`` when known."""
    first = f"python{py} " if py else ""
    return f"""#!/bin/sh
# Install the wheels of this bundle with pip alone: no network, every file's hash checked.
# Extra arguments go to pip (e.g. --user, --target DIR).  PYTHON=/path/to/python picks the
# interpreter (default: the first of {first}python3 python).
set -e
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -z "${{PYTHON:-}}" ]; then
  for candidate in {first}python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$candidate; break; fi
  done
fi
exec "${{PYTHON:-python3}}" -m pip install \\
  {_PIP_ARGS.format(wheels='"$here/wheels"', reqs='"$here/requirements.txt"')} "$@"
"""


def render_install_bat(py: str | None) -> str:
    """``install.bat`` for cmd.exe (CRLF)."""
    text = f"""@echo off
rem Install the wheels of this bundle with pip alone: no network, every file's hash checked.
rem Extra arguments go to pip (e.g. --user).  set PYTHON=C:\\path\\to\\python.exe picks the
rem interpreter (default: the py launcher{f' with -{py}' if py else ''}, else python).
setlocal
set "HERE=%~dp0"
set "PY=%PYTHON%"
set "PYARGS="
if not defined PY (
  where py >nul 2>nul && (set "PY=py" & set "PYARGS={f'-{py}' if py else '-3'}") || set "PY=python"
)
"%PY%" %PYARGS% -m pip install {_PIP_ARGS.format(wheels='"%HERE%wheels"',
                                                   reqs='"%HERE%requirements.txt"')} %*
exit /b %ERRORLEVEL%
"""
    return text.replace("\n", "\r\n")


def render_install_ps1(py: str | None) -> str:
    """``install.ps1`` for PowerShell 2 and newer (CRLF)."""
    text = f"""# Install the wheels of this bundle with pip alone: no network, every file's hash
# checked.  Extra arguments go to pip (e.g. --user).  $env:PYTHON picks the interpreter
# (default: the py launcher{f' with -{py}' if py else ''}, else python).  If scripts are blocked:
#   powershell -ExecutionPolicy Bypass -File install.ps1
$ErrorActionPreference = 'Stop'
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
if ($env:PYTHON) {{ $py = $env:PYTHON; $pyArgs = @() }}
elseif (Get-Command py -ErrorAction SilentlyContinue) {{
  $py = 'py'; $pyArgs = @('{f'-{py}' if py else '-3'}')
}}
else {{ $py = 'python'; $pyArgs = @() }}
& $py @pyArgs -m pip install {_PIP_ARGS.format(wheels="(Join-Path $here 'wheels')",
                                               reqs="(Join-Path $here 'requirements.txt')")} @args
exit $LASTEXITCODE
"""
    return text.replace("\n", "\r\n")


def render_readme(
    *,
    targets: Sequence[str],
    requested: Sequence[str],
    carried: Sequence[CatalogRow],
    left_out: Sequence[CatalogRow],
) -> str:
    """A short note for the person at the other end: check, install, share."""
    what = " ".join(requested) or "everything selected"
    lines = [
        f"wheelcache bundle, written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"wheelcache {__version__}",
        f"For:   {', '.join(targets) or 'any target (see manifest.json)'}",
        f"Holds: {len(carried)} wheels ({human_size(sum(r.size for r in carried))}) for {what}",
        "",
        "1. Check the copy (any Python 3.8 or newer; wheelcache is not needed):",
        "     python verify.py",
        "2. Install with pip alone (no network; every file's sha256 is checked):",
        "     Windows:      install.bat",
        "                   (or: powershell -ExecutionPolicy Bypass -File install.ps1)",
        "     Linux, macOS: sh install.sh",
        "   Extra arguments go to pip (--user, --target DIR); set PYTHON to pick the Python.",
        "   By hand: python -m pip install --no-index --find-links wheels --require-hashes "
        "-r requirements.txt",
        "3. With wheelcache on this host: wheelcache import <this folder>, then wheelcache serve",
        "   shares the wheels on the LAN; simple/ is a package index any web server can host.",
    ]
    if left_out:
        lines += [
            "",
            f"This is a delta bundle: {len(left_out)} wheel(s) this host already had are not in",
            "wheels/ (manifest.json lists them). Import the bundle into the cache that has them,",
            "then install from the cache: pip install --no-index --find-links <cache>/wheels-v1",
            "--require-hashes -r requirements.txt (install.bat/install.sh take that --find-links).",
        ]
    return "\r\n".join(lines) + "\r\n"  # CRLF: old Notepad shows LF files as one line
