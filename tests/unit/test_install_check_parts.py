"""The bundle's install checks (``install_check.py``), as pure functions and in the scripts."""

from __future__ import annotations

import ast
import doctest
import sys
from pathlib import Path
from typing import Any

import pytest

import wheelcache.bundle.install_check as check
from wheelcache.bundle.texts import render_install_bat, render_install_ps1, render_install_sh
from wheelcache.core.cuda import CUDA_DRIVER_MINIMUM

TARGET: dict[str, Any] = {
    "python": "3.9",
    "abi": "cp39",
    "platform": "win_amd64",
    "platforms": ["win_amd64"],
    "variant": "cu118",
}
TORCH = "torch-2.4.0+cu118-cp39-cp39-win_amd64.whl"


def _here(python: str = "3.9", abi: str = "cp39", plats: tuple[str, ...] = ("win_amd64",)) -> Any:
    tags = [f"{abi}-{abi}-{p}" for p in plats] + [f"py3-none-{p}" for p in plats]
    return {"python": python, "abi": abi, "platforms": list(plats), "tags": [*tags, "py3-none-any"]}


def test_the_driver_table_is_the_one_wheelcache_uses() -> None:
    assert check.DRIVER_MINIMUM == CUDA_DRIVER_MINIMUM


def test_doctests() -> None:
    assert doctest.testmod(check).failed == 0


@pytest.mark.parametrize(
    ("here", "expected"),
    [
        (_here(), []),
        (_here("3.11", "cp311"), ["version", "ABI"]),
        (_here("3.9", "cp39t"), ["ABI"]),
        (_here(plats=("linux_x86_64",)), ["platform"]),
        (_here(plats=("win32",)), ["platform"]),  # a 32-bit Python on 64-bit Windows
    ],
)
def test_mismatches_by_the_target(here: Any, expected: list[str]) -> None:
    wheels = {("torch", "2.4.0+cu118"): [TORCH]}
    assert check.mismatches(TARGET, here, wheels) == expected


def test_mismatches_by_the_wheels_when_the_description_fits() -> None:
    """A Linux host with an older glibc than the wheels need: only the tags tell."""
    target = {"python": "3.9", "abi": "cp39", "platforms": ["manylinux_2_17_x86_64"]}
    here = _here(plats=("linux_x86_64", "manylinux_2_17_x86_64"))
    wheels = {
        ("torch", "2.4.0"): ["torch-2.4.0-cp39-cp39-manylinux_2_28_x86_64.whl"],
        ("six", "1.16.0"): ["six-1.16.0-py2.py3-none-any.whl"],
    }
    assert check.mismatches(target, here, wheels) == [
        "torch 2.4.0 (torch-2.4.0-cp39-cp39-manylinux_2_28_x86_64.whl)"
    ]
    assert check.mismatches(None, here, wheels) == check.mismatches(target, here, wheels)
    wheels[("torch", "2.4.0")].append("torch-2.4.0-cp39-cp39-manylinux_2_17_x86_64.whl")
    assert check.mismatches(target, here, wheels) == []


def test_hints_name_the_way_each_script_picks_its_python() -> None:
    sh = check.pick_hint("install.sh", TARGET, ["version"])
    assert sh.startswith("run PYTHON=/path/to/python3.9 sh install.sh, or activate a venv or conda")
    bat = check.pick_hint("install.bat", TARGET, ["version"])
    assert bat.startswith("set PYTHON=C:\\path\\to\\python.exe (py -0p lists the installed ones;")
    assert "py -3.9" in bat and bat.endswith("then run install.bat again")
    ps1 = check.pick_hint("install.ps1", TARGET, ["ABI"])
    assert ps1.startswith("$env:PYTHON = 'C:\\path\\to\\python.exe'")
    other = check.pick_hint("install.sh", TARGET, ["version", "platform"])
    assert "for another kind of machine" in other and "--target target.json" in other


NO_SMI: dict[str, Any] = {"driver_version": None, "gpus": [], "error": None}
GPU = [{"name": "NVIDIA GeForce GTX 1080", "compute_capability": "6.1"}]


@pytest.mark.parametrize(
    ("cuda", "hip", "nvidia", "windows", "reason"),
    [
        (None, None, NO_SMI, False, "this is the CPU build"),
        (
            None,
            None,
            {"driver_version": "550.54.14", "gpus": GPU, "error": None},
            False,
            "this is the CPU build, and this machine has NVIDIA GeForce GTX 1080 (driver "
            "550.54.14): for the GPU, export a CUDA build",
        ),
        ("12.1", None, NO_SMI, False, "no NVIDIA driver (no nvidia-smi): install the driver"),
        (
            "12.1",
            None,
            {"driver_version": None, "gpus": [], "error": "nvidia-smi exited with status 9: x"},
            False,
            "nvidia-smi failed (nvidia-smi exited with status 9: x): is the NVIDIA driver",
        ),
        (
            "12.1",
            None,
            {"driver_version": "470.82.01", "gpus": GPU, "error": None},
            False,
            "the NVIDIA driver 470.82.01 is older than CUDA 12.1 needs (525.60.13 or newer)",
        ),
        (
            "12.1",
            None,
            {"driver_version": "527.41", "gpus": GPU, "error": None},
            True,
            "the NVIDIA driver 527.41 is older than CUDA 12.1 needs (528.33 or newer)",
        ),
        (
            "11.8",
            None,
            {"driver_version": "470.82.01", "gpus": GPU, "error": None},
            False,
            "driver 470.82.01 and NVIDIA GeForce GTX 1080 look right",
        ),
        (None, "6.1", NO_SMI, False, "this is a ROCm 6.1 build"),
    ],
)
def test_the_likely_reason_cuda_is_not_available(
    cuda: str | None, hip: str | None, nvidia: dict[str, Any], windows: bool, reason: str
) -> None:
    assert check.cuda_reason(cuda, hip, nvidia, windows).startswith(reason)


def test_every_install_script_checks_before_pip_and_reports_after() -> None:
    sh = render_install_sh("3.9").splitlines()
    before = sh.index('"$PYTHON" "$here/install_check.py" before install.sh')
    pip = sh.index('"$PYTHON" -m pip install \\')
    after = sh.index('"$PYTHON" "$here/install_check.py" after "$@"')
    assert before < pip < after and "set -e" in sh  # a failed check stops the script
    bat = render_install_bat("3.9").split("\r\n")
    before = bat.index('"%PY%" %PYARGS% "%HERE%install_check.py" before install.bat || exit /b 1')
    pip = next(i for i, ln in enumerate(bat) if ln.startswith('"%PY%" %PYARGS% -m pip install'))
    assert bat[pip + 1] == "if errorlevel 1 exit /b %ERRORLEVEL%"
    after = bat.index('"%PY%" %PYARGS% "%HERE%install_check.py" after %*')
    assert before < pip < after
    ps1 = render_install_ps1("3.9").split("\r\n")
    before = ps1.index("& $py @pyArgs $check before install.ps1")
    assert ps1[before + 1] == "if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }"
    pip = next(i for i, ln in enumerate(ps1) if ln.startswith("& $py @pyArgs -m pip install"))
    after = ps1.index("& $py @pyArgs $check after @args")
    assert before < pip < after


def test_the_check_is_a_standard_library_python_38_file() -> None:
    source = Path(check.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 8))  # no 3.9+ syntax
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None
            imported.add(node.module.split(".")[0])
    outside = {m for m in imported if m not in sys.stdlib_module_names}
    assert outside == {"torch"}  # what it checks, after pip
    assert "from __future__ import annotations" in source  # annotations never evaluated
