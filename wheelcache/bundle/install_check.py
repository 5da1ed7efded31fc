#!/usr/bin/env python3
"""install_check.py: before pip, is this the Python the bundle is for; after pip, does torch
see the GPU?  Standard library only, Python 3.8+ (it runs on the offline host).

``install.bat``, ``install.ps1`` and ``install.sh`` run it with the interpreter they chose::

    python install_check.py before install.sh     # exit 1 and one line when it is the wrong one
    python install_check.py after [PIP ARGS]      # torch's version, build and CUDA availability

*before* compares this interpreter with the bundle's target (``manifest.json``): the Python
version, the ABI, the platform, and then every pinned wheel's tags against this interpreter's
supported tags, computed by ``wheelcache-probe.py`` (the probe, shipped beside this file) as pip
computes them.  Run with the wrong Python, pip would only say "no matching distribution" for
each file; this names the target and how to pick the right interpreter instead.

*after* (when the bundle holds torch) imports torch the way every PyTorch guide checks an
install, prints its version, its CUDA build and ``torch.cuda.is_available()``, and when CUDA is
not available the likely reason from what the probe learns from ``nvidia-smi``: a CPU build, no
NVIDIA driver or GPU, or a driver older than the build's CUDA needs.

This file is also the module ``wheelcache.bundle.install_check``; ``export`` copies it into the
bundle as it is.  Keep it to the standard library and to Python 3.8 syntax and calls.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

MANIFEST = "manifest.json"
REQUIREMENTS = "requirements.txt"
PROBE = "wheelcache-probe.py"

#: Minimum NVIDIA driver per CUDA major version: (Linux, Windows).  The same table as
#: ``wheelcache.core.cuda.CUDA_DRIVER_MINIMUM`` (a test keeps them equal): this file cannot
#: import wheelcache on the offline host.
DRIVER_MINIMUM: dict[int, tuple[str, str]] = {
    11: ("450.80.02", "452.39"),
    12: ("525.60.13", "528.33"),
    13: ("580", "580"),
}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_tags(filename: str) -> list[str]:
    """The tags a wheel filename declares (compressed tag sets expanded).

    >>> wheel_tags("six-1.16.0-py2.py3-none-any.whl")
    ['py2-none-any', 'py3-none-any']
    """
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return []
    py, abi, plat = parts[-3:]
    return [f"{x}-{y}-{z}" for x in py.split(".") for y in abi.split(".") for z in plat.split(".")]


def _wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename.split("-")
    return _norm(parts[0]), parts[1] if len(parts) > 1 else ""


def load_probe(folder: str) -> ModuleType:
    """The probe shipped in the bundle (or, inside wheelcache, the module it is copied from)."""
    path = os.path.join(folder, PROBE)
    if not os.path.isfile(path):
        try:
            return importlib.import_module("wheelcache.host.probe_script")
        except ImportError:
            raise SystemExit(f"{PROBE} is missing from {folder}; run python verify.py") from None
    spec = importlib.util.spec_from_file_location("wheelcache_probe", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_manifest(folder: str) -> dict[str, Any]:
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"cannot read {MANIFEST} in {folder} ({exc}); run python verify.py"
        ) from None
    return data if isinstance(data, dict) else {}


def pinned_wheels(folder: str, manifest: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(project, version) of each line of requirements.txt → the bundle's wheels for it."""
    pins = set()
    try:
        with open(os.path.join(folder, REQUIREMENTS), encoding="utf-8") as fh:
            for line in fh:
                m = _PIN.match(line.strip())
                if m:
                    pins.add((_norm(m.group(1)), m.group(2)))
    except OSError:
        pass
    names = [
        str(e.get("path", ""))[len("wheels/") :]
        for e in manifest.get("files") or []
        if isinstance(e, dict) and e.get("kind") == "wheel"
    ]
    delta = manifest.get("delta") or {}
    names += [
        str(e.get("filename", "")) for e in delta.get("left_out") or [] if isinstance(e, dict)
    ]
    out: dict[tuple[str, str], list[str]] = {}
    for name in names:
        key = _wheel_name_version(name)
        if name.endswith(".whl") and (key in pins or not pins):
            out.setdefault(key, []).append(name)
    return out


# --- before pip: the interpreter ------------------------------------------------------------


def interpreter(probe: ModuleType) -> dict[str, Any]:
    """This Python as the check compares it: version, ABI, platform tags and supported tags."""
    plats = list(probe.platform_tags())
    tags = list(probe.supported_tags(plats))
    first = tags[0].split("-") if tags else ["", "", ""]
    return {
        "implementation": sys.implementation.name,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "abi": first[1],
        "platforms": plats,
        "tags": tags,
        "executable": sys.executable,
    }


def describe_target(target: dict[str, Any]) -> str:
    """``CPython 3.9 (cp39) on win_amd64, cu118`` from the manifest's ``target``."""
    text = f"Python {target.get('python')} ({target.get('abi')}) on {target.get('platform')}"
    return text + (f", {target['variant']}" if target.get("variant") else "")


def _describe_here(here: dict[str, Any]) -> str:
    plat = here["platforms"][0] if here["platforms"] else "?"
    return f"Python {here['python']} ({here['abi']}) on {plat}"


def mismatches(
    target: dict[str, Any] | None,
    here: dict[str, Any],
    wheels: dict[tuple[str, str], list[str]],
) -> list[str]:
    """Why *here* cannot install the bundle: empty when it can (pure; the tests use it)."""
    out = []
    if target:
        if target.get("python") and str(target["python"]) != here["python"]:
            out.append("version")
        if target.get("abi") and str(target["abi"]) != here["abi"]:
            out.append("ABI")
        platforms = [str(p) for p in target.get("platforms") or []]
        if platforms and not set(platforms) & set(here["platforms"]):
            out.append("platform")
    if out:
        return out
    supported = set(here["tags"])
    for (project, version), names in sorted(wheels.items()):
        if not any(set(wheel_tags(n)) & supported for n in names):
            out.append(f"{project} {version} ({sorted(names)[0]})")
    return out


def pick_hint(script: str, target: dict[str, Any] | None, wrong: Sequence[str]) -> str:
    """How to run *script* with the right interpreter, in that script's own words."""
    if "platform" in wrong:
        return (
            "this bundle is for another kind of machine; on this one run python "
            f"{PROBE} --output target.json and export a bundle with --target target.json"
        )
    version = str((target or {}).get("python") or "")
    want = f"Python {version}" if version else "the target's Python"
    env = f"or activate a venv or conda environment with {want} first (conda activate ENV)"
    if script == "install.bat":
        return (
            f"set PYTHON=C:\\path\\to\\python.exe (py -0p lists the installed ones; "
            f"py -{version} is used when it exists), {env}, then run install.bat again"
        )
    if script == "install.ps1":
        return (
            f"$env:PYTHON = 'C:\\path\\to\\python.exe' (py -0p lists the installed ones; "
            f"py -{version} is used when it exists), {env}, then run install.ps1 again"
        )
    return f"run PYTHON=/path/to/python{version} sh {script or 'install.sh'}, {env}"


def before(folder: str, script: str) -> int:
    manifest = read_manifest(folder)
    target = manifest.get("target") if isinstance(manifest.get("target"), dict) else None
    here = interpreter(load_probe(folder))
    wrong = mismatches(target, here, pinned_wheels(folder, manifest))
    if not wrong:
        if importlib.util.find_spec("pip") is None:
            _say(f"{sys.executable} has no pip; run {sys.executable} -m ensurepip first")
            return 1
        return 0
    what = describe_target(target) if target else "another Python"
    if wrong[0] in ("version", "ABI", "platform"):
        problem = f"but {sys.executable} is {_describe_here(here)}"
    else:
        problem = f"but {sys.executable} accepts no wheel of {', '.join(wrong[:3])}"
    _say(f"this bundle is for {what}, {problem}; {pick_hint(script, target, wrong)}")
    return 1


def _say(line: str) -> None:
    sys.stderr.write(f"install: error: {line}\n")


# --- after pip: torch -----------------------------------------------------------------------


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def cuda_reason(cuda: str | None, hip: str | None, nvidia: dict[str, Any], windows: bool) -> str:
    """The likely reason ``torch.cuda.is_available()`` is False (pure; the tests use it)."""
    gpus = [g.get("name") for g in nvidia.get("gpus") or [] if isinstance(g, dict)]
    driver = nvidia.get("driver_version")
    if hip:
        return f"this is a ROCm {hip} build: it needs an AMD GPU with ROCm, not an NVIDIA one"
    if not cuda:
        if driver and gpus:
            return (
                f"this is the CPU build, and this machine has {gpus[0]} (driver {driver}): "
                f"for the GPU, export a CUDA build (python {PROBE} --output target.json here, "
                "then wheelcache export --target target.json --cuda auto)"
            )
        return "this is the CPU build"
    if nvidia.get("error"):
        return f"nvidia-smi failed ({nvidia['error']}): is the NVIDIA driver installed and loaded?"
    if not driver:
        return "no NVIDIA driver (no nvidia-smi): install the driver, or there is no NVIDIA GPU"
    if not gpus:
        return f"nvidia-smi (driver {driver}) lists no GPU"
    minimum = DRIVER_MINIMUM.get(_version_tuple(cuda)[0])
    if minimum is not None:
        need = minimum[1] if windows else minimum[0]
        if _version_tuple(driver) < _version_tuple(need):
            return (
                f"the NVIDIA driver {driver} is older than CUDA {cuda} needs ({need} or newer): "
                "update the driver, or install a bundle for an older CUDA"
            )
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return "CUDA_VISIBLE_DEVICES is set and empty, which hides every GPU"
    return f"driver {driver} and {gpus[0]} look right; see what torch printed above"


def _has_torch(folder: str) -> bool:
    return any(k[0] == "torch" for k in pinned_wheels(folder, read_manifest(folder)))


def _pip_target(pip_args: Sequence[str]) -> str | None:
    """The folder of ``--target DIR`` / ``-t DIR`` / ``--target=DIR`` among pip's arguments."""
    for i, arg in enumerate(pip_args):
        if arg in ("--target", "-t") and i + 1 < len(pip_args):
            return pip_args[i + 1]
        if arg.startswith("--target="):
            return arg.split("=", 1)[1]
    return None


def after(folder: str, pip_args: Sequence[str]) -> int:
    if not _has_torch(folder):
        return 0
    extra = _pip_target(pip_args)
    if extra:
        sys.path.insert(0, os.path.abspath(extra))
    try:
        import torch  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            print("torch was installed where this Python does not look; not checking CUDA")
            return 0
        _say(f"torch is installed but cannot be imported: {exc}")
        return 1
    except Exception as exc:  # a missing DLL or library: the line the user must see
        _say(f"torch is installed but cannot be imported: {type(exc).__name__}: {exc}")
        return 1
    return report_torch(torch, load_probe(folder))


def report_torch(torch: Any, probe: ModuleType) -> int:
    cuda = getattr(torch.version, "cuda", None)
    hip = getattr(torch.version, "hip", None)
    build = f"CUDA {cuda} build" if cuda else f"ROCm {hip} build" if hip else "CPU build"
    available = bool(torch.cuda.is_available())
    line = f"torch {torch.__version__} ({build}): torch.cuda.is_available() is {available}"
    if available:
        try:
            line += f" ({torch.cuda.get_device_name(0)})"
        except Exception:  # the name is a courtesy
            pass
    else:
        nvidia = probe.query_nvidia_smi() if cuda or not hip else {}
        line += f"; {cuda_reason(cuda, hip, nvidia, os.name == 'nt')}"
    print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    folder = os.path.dirname(os.path.abspath(__file__))
    if args[:1] == ["before"]:
        return before(folder, args[1] if len(args) > 1 else "install.sh")
    if args[:1] == ["after"]:
        return after(folder, args[1:])
    sys.stderr.write("usage: python install_check.py before SCRIPT | after [PIP ARGS]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
