"""The text files of a bundle: requirements files, the install scripts and ``README.txt``.

Values in, text out (no disk), so tests can read them whole.  The scripts use pip alone with
``--no-index --find-links wheels --require-hashes -r requirements.txt``: nothing else has to be
installed at the other end, no network is tried, and every file's sha256 is checked.  Extra
arguments are passed on to pip (``--user``, ``--target DIR``, another ``--find-links``).

Which Python: ``PYTHON`` if set; else an activated environment (``VIRTUAL_ENV``,
``CONDA_PREFIX``) wins, because the person activated it to install into it; else the target's
own Python version when the bundle knows it and it is there (``py -3.9``, probed with ``-c
pass`` first, since the launcher fails for a version it has not registered; ``python3.9``
elsewhere); else ``python``.

A requirements file can pin one file per project only (pip refuses two lines for one name), so
it is right for one target.  A bundle whose wheels were fetched for several targets gets one
``requirements-<variant>-<abi>-<platform>.txt`` per target (the names ``fetch`` uses) and no
install scripts: a script would have to guess the host; ``README.txt`` gives the pip line.

Before pip, each script runs ``install_check.py before`` with the Python it chose (is it the
target's version, ABI and platform?) and stops on its one line; after pip, ``install_check.py
after`` reports torch's build and whether it sees the GPU.  The checks are written once, in
:mod:`wheelcache.bundle.install_check`, not three times in three shell languages.

``install.bat``, ``install.ps1`` and ``README.txt`` have CRLF line endings for Windows tools;
``install.sh`` has LF (a shell chokes on CR).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelcache import __version__
from wheelcache.core.lockfile import LockedWheel, lock_filename
from wheelcache.core.lockwrite import pylock_text
from wheelcache.core.models import Sha256
from wheelcache.core.target import Target
from wheelcache.core.units import human_size
from wheelcache.store.catalog import CatalogRow

__all__ = [
    "CHECK",
    "PROBE",
    "REQUIREMENTS",
    "human_size",
    "render_install_bat",
    "render_install_ps1",
    "render_install_sh",
    "render_lock",
    "render_readme",
    "render_requirements",
    "requirements_name",
]

REQUIREMENTS = "requirements.txt"
CHECK = "install_check.py"  # the checks before and after pip (wheelcache.bundle.install_check)
PROBE = "wheelcache-probe.py"  # the probe, which the checks use (and a user may run)
_DESCRIPTION = re.compile(r"^(\S+)-(\S+) \((\S+)\)$")  # Target.describe(): cp39-win_amd64 (cu118)


def requirements_name(description: str) -> str:
    """The requirements file of one target in a bundle of several (``fetch``'s names).

    >>> requirements_name("cp39-win_amd64 (cu118)")
    'requirements-cu118-cp39-win_amd64.txt'
    >>> requirements_name("odd target/text")
    'requirements-odd_target_text.txt'
    """
    m = _DESCRIPTION.match(description)
    stem = f"{m.group(3)}-{m.group(1)}-{m.group(2)}" if m else description
    return f"requirements-{re.sub(r'[^A-Za-z0-9._+-]+', '_', stem).strip('._')}.txt"


def render_requirements(rows: Sequence[CatalogRow], filename: str = REQUIREMENTS) -> str:
    """One line per project (pip refuses two), every file of its newest version hashed."""
    by_project: dict[str, dict[str, list[CatalogRow]]] = {}
    for r in rows:
        by_project.setdefault(canonicalize_name(r.project), {}).setdefault(r.version, []).append(r)
    lines = [
        "# Written by wheelcache export. Install with pip alone, no network:",
        f"#   pip install --no-index --find-links wheels --require-hashes -r {filename}",
    ]
    for name in sorted(by_project):
        versions = sorted(by_project[name], key=_version_key)
        newest = versions[-1]
        if len(versions) > 1:
            lines.append(f"# {name} {', '.join(versions[:-1])}: in wheels/ too, not pinned here")
        hashes = sorted({r.sha256 for r in by_project[name][newest]})
        lines.append(f"{name}=={newest}" + "".join(f" \\\n    --hash=sha256:{h}" for h in hashes))
    return "\n".join(lines) + "\n"


def _pinned_rows(rows: Sequence[CatalogRow]) -> list[CatalogRow]:
    """The rows :func:`render_requirements` pins: every file of each project's newest version."""
    by_project: dict[str, dict[str, list[CatalogRow]]] = {}
    for r in rows:
        by_project.setdefault(canonicalize_name(r.project), {}).setdefault(r.version, []).append(r)
    out: list[CatalogRow] = []
    for versions in by_project.values():
        out += versions[max(versions, key=_version_key)]
    return out


def render_lock(rows: Sequence[CatalogRow], target: Target) -> tuple[str, str]:
    """``(file name, text)`` of the bundle's PEP 751 lock for *target*: the files
    :func:`render_requirements` pins, each with its ``path`` in ``wheels/`` and the URL it was
    fetched from (pip 26.1+ and uv install from the paths, offline)."""
    wheels = [
        LockedWheel(
            project=canonicalize_name(r.project),
            version=r.version,
            filename=r.filename,
            sha256=Sha256(r.sha256),
            url=r.url if r.url.startswith(("http://", "https://")) else None,
            path=f"wheels/{r.filename}",
            size=r.size,
        )
        for r in _pinned_rows(rows)
    ]
    return lock_filename(target), pylock_text(wheels, target)


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
# interpreter; else an activated venv or conda environment's python; else the first of
# {first}python3 python.  {CHECK} checks before pip that it is the bundle's target
# Python and reports after pip whether torch sees the GPU.
set -e
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if [ -z "${{PYTHON:-}}" ] && [ -n "${{VIRTUAL_ENV:-}}${{CONDA_PREFIX:-}}" ]; then
  PYTHON=python
fi
if [ -z "${{PYTHON:-}}" ]; then
  for candidate in {first}python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$candidate; break; fi
  done
fi
PYTHON=${{PYTHON:-python3}}
"$PYTHON" "$here/{CHECK}" before install.sh
"$PYTHON" -m pip install \\
  {_PIP_ARGS.format(wheels='"$here/wheels"', reqs=f'"$here/{REQUIREMENTS}"')} "$@"
"$PYTHON" "$here/{CHECK}" after "$@"
"""


def render_install_bat(py: str | None) -> str:
    """``install.bat`` for cmd.exe (CRLF)."""
    pyarg = f"-{py}" if py else "-3"
    # `py -X.Y -c pass` fails (errorlevel != 0) when the launcher is missing or has no X.Y.
    text = f"""@echo off
rem Install the wheels of this bundle with pip alone: no network, every file's hash checked.
rem Extra arguments go to pip (e.g. --user).  set PYTHON=C:\\path\\to\\python.exe picks the
rem interpreter; else an activated venv or conda environment's python; else the py launcher
rem with {pyarg} if it has that Python; else python.  {CHECK} checks before pip that it is
rem the bundle's target Python and reports after pip whether torch sees the GPU.
setlocal
set "HERE=%~dp0"
set "PY=%PYTHON%"
set "PYARGS="
if not defined PY (
  if defined VIRTUAL_ENV (
    set "PY=python"
  ) else if defined CONDA_PREFIX (
    set "PY=python"
  ) else (
    py {pyarg} -c pass >nul 2>nul && (set "PY=py" & set "PYARGS={pyarg}") || set "PY=python"
  )
)
"%PY%" %PYARGS% "%HERE%{CHECK}" before install.bat || exit /b 1
"%PY%" %PYARGS% -m pip install {
        _PIP_ARGS.format(wheels='"%HERE%wheels"', reqs=f'"%HERE%{REQUIREMENTS}"')
    } %*
if errorlevel 1 exit /b %ERRORLEVEL%
"%PY%" %PYARGS% "%HERE%{CHECK}" after %*
exit /b %ERRORLEVEL%
"""
    return text.replace("\n", "\r\n")


def render_install_ps1(py: str | None) -> str:
    """``install.ps1`` for PowerShell 2 and newer (CRLF)."""
    pyarg = f"-{py}" if py else "-3"
    # `-c pass`, not `-c ""`: Windows PowerShell drops empty arguments to native programs.
    # The probe runs with errors non-fatal: PowerShell 5 turns a native program's stderr into
    # a terminating error under 'Stop' once it is redirected.
    text = f"""# Install the wheels of this bundle with pip alone: no network, every file's hash
# checked.  Extra arguments go to pip (e.g. --user).  $env:PYTHON picks the interpreter; else
# an activated venv or conda environment's python; else the py launcher with {pyarg} if it
# has that Python; else python.  {CHECK} checks before pip that it is the bundle's
# target Python and reports after pip whether torch sees the GPU.  If scripts are blocked:
#   powershell -ExecutionPolicy Bypass -File install.ps1
$ErrorActionPreference = 'Stop'
$here = Split-Path -Parent $MyInvocation.MyCommand.Path
$py = 'python'; $pyArgs = @()
if ($env:PYTHON) {{ $py = $env:PYTHON }}
elseif ($env:VIRTUAL_ENV -or $env:CONDA_PREFIX) {{ $py = 'python' }}
elseif (Get-Command py -ErrorAction SilentlyContinue) {{
  $ErrorActionPreference = 'Continue'
  try {{ & py {pyarg} -c pass 2>$null | Out-Null; $found = ($LASTEXITCODE -eq 0) }}
  catch {{ $found = $false }}
  $ErrorActionPreference = 'Stop'
  if ($found) {{ $py = 'py'; $pyArgs = @('{pyarg}') }}
}}
$check = Join-Path $here '{CHECK}'
& $py @pyArgs $check before install.ps1
if ($LASTEXITCODE -ne 0) {{ exit $LASTEXITCODE }}
& $py @pyArgs -m pip install {
        _PIP_ARGS.format(
            wheels="(Join-Path $here 'wheels')", reqs=f"(Join-Path $here '{REQUIREMENTS}')"
        )
    } @args
if ($LASTEXITCODE -ne 0) {{ exit $LASTEXITCODE }}
& $py @pyArgs $check after @args
exit $LASTEXITCODE
"""
    return text.replace("\n", "\r\n")


def _lock_lines(locks: Sequence[str]) -> list[str]:
    if not locks:
        return []
    shown = locks[0] if len(locks) == 1 else "pylock.<the host's>.toml"
    lines = [
        "   Or from the PEP 751 lock, with pip 26.1 or newer, or with uv (no network either):",
        f"     python -m pip install --no-index -r {shown}",
        f"     uv pip install --offline -r {shown}",
    ]
    if len(locks) > 1:
        lines.append(f"   (locks here: {', '.join(locks)})")
    return lines


def render_readme(
    *,
    targets: Sequence[str],
    requested: Sequence[str],
    carried: Sequence[CatalogRow],
    left_out: Sequence[CatalogRow],
    per_target: Sequence[tuple[str, str]] = (),
    unlisted: int = 0,
    locks: Sequence[str] = (),
) -> str:
    """A short note for the person at the other end: check, install, share.

    *per_target* holds ``(target, requirements file)`` when the bundle is for several targets
    (then there are no install scripts); *unlisted* counts wheels in no requirements file;
    *locks* names the bundle's PEP 751 lock files.
    """
    what = " ".join(requested) or "everything selected"
    lines = [
        f"wheelcache bundle, written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"wheelcache {__version__}",
        f"For:   {', '.join(targets) or 'any target (see manifest.json)'}",
        f"Holds: {len(carried)} wheels ({human_size(sum(r.size for r in carried))}) for {what}",
        "",
        "1. Check the copy (any Python 3.8 or newer; wheelcache is not needed), with the",
        "   bundle fingerprint that whoever exported it gave you apart from this stick (a",
        "   note, a message): a stick that passed through other hands may have been changed",
        "   together with its manifest, and only the fingerprint tells.",
        "     python verify.py --expect FINGERPRINT",
    ]
    if per_target:
        lines += [
            "2. These wheels are for several targets, so there is one requirements file per",
            "   target and no install script. On each host, with pip alone (no network; every",
            "   file's sha256 is checked), use the file of that host:",
            *(f"     {t}: {name}" for t, name in per_target),
            "     python -m pip install --no-index --find-links wheels --require-hashes -r FILE",
        ]
        if unlisted:
            lines.append(
                f"   ({unlisted} wheel(s) in wheels/ were recorded for no target and "
                "are in no file.)"
            )
    else:
        lines += [
            "2. Install with pip alone (no network; every file's sha256 is checked):",
            "     Windows:      install.bat",
            "                   (or: powershell -ExecutionPolicy Bypass -File install.ps1)",
            "     Linux, macOS: sh install.sh",
            "   Extra arguments go to pip (--user, --target DIR); set PYTHON to pick the Python.",
            "   They stop before pip when that Python is not the one the wheels are for, and",
            "   after pip print torch's version, CUDA build and whether it sees the GPU.",
            "   By hand: python -m pip install --no-index --find-links wheels --require-hashes "
            f"-r {REQUIREMENTS}",
        ]
    lines += _lock_lines(locks)
    lines += [
        "3. With wheelcache on this host: wheelcache import <this folder> --expect FINGERPRINT,",
        "   then wheelcache serve",
        "   shares the wheels on the LAN; simple/ is a package index any web server can host.",
    ]
    if left_out:
        reqs = "FILE" if per_target else REQUIREMENTS
        lines += [
            "",
            f"This is a delta bundle: {len(left_out)} wheel(s) this host already had are not in",
            "wheels/ (manifest.json lists them). Import the bundle into the cache that has them,",
            "then install from the cache: pip install --no-index --find-links <cache>/wheels-v1",
            f"--require-hashes -r {reqs}"
            + (
                ""
                if per_target
                else " (or: install.bat / sh install.sh --find-links <cache>/wheels-v1)"
            )
            + ".",
        ]
    return "\r\n".join(lines) + "\r\n"  # CRLF: old Notepad shows LF files as one line
