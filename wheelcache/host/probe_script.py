#!/usr/bin/env python3
"""wheelcache-probe: describe this machine as a wheelcache target (standard library only).

Run it on the machine the wheels are *for*, which often has no network and no wheelcache::

    python wheelcache-probe.py --output target.json

and carry ``target.json`` to the online machine: ``wheelcache fetch --target target.json``.

The file says which wheels this interpreter accepts: its ordered list of supported tags
(computed the way ``packaging.tags.sys_tags()`` does, but without packaging, which an offline
host may lack), its PEP 508 marker environment (as ``packaging.markers.default_environment()``),
glibc / musl / macOS versions, and the NVIDIA driver and GPUs that ``nvidia-smi`` reports.

This one file is also the module
``wheelcache.host.probe_script``; ``wheelcache probe`` runs the same
functions in-process and ``wheelcache probe --write-script PATH`` copies this file.  It must keep
running on Python 3.8+ on Windows, Linux and macOS: no imports outside the standard library, no
syntax or library calls newer than 3.8 (annotations are fine: they are never evaluated).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Any

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "NVIDIA_SMI_QUERY",
    "compatible_tags",
    "cpython_tags",
    "dumps",
    "glibc_version",
    "mac_platforms",
    "macos_version",
    "main",
    "manylinux_platforms",
    "marker_environment",
    "musl_version",
    "musllinux_platforms",
    "parse_nvidia_smi",
    "platform_tags",
    "probe",
    "query_nvidia_smi",
    "supported_tags",
]

FORMAT = "wheelcache-target"
FORMAT_VERSION = 1

#: What we ask nvidia-smi.  ``compute_cap`` is missing from older drivers' query interface; then
#: we ask again without it (see :func:`query_nvidia_smi`).
NVIDIA_SMI_QUERY = ("driver_version", "name", "compute_cap")
NVIDIA_SMI_TIMEOUT = 20.0

# --- tags (mirrors packaging.tags; keep in step with it) ------------------------------------

_INTERPRETER_SHORT_NAMES = {
    "python": "py",
    "cpython": "cp",
    "pypy": "pp",
    "ironpython": "ip",
    "jython": "jy",
}

_IS_32BIT = struct.calcsize("P") == 4


def _normalize(value: str) -> str:
    return value.replace(".", "_").replace("-", "_").replace(" ", "_")


def _nodot(version: Sequence[int]) -> str:
    return "".join(str(v) for v in version)


def _config_var(name: str) -> Any:
    return sysconfig.get_config_var(name)


def _cpython_abis(py_version: Sequence[int]) -> list[str]:
    """ABI tags of this CPython, best first: ``cp311``, ``cp313t``, ``cp311d`` + ``cp311``."""
    version = _nodot(py_version[:2])
    debug = threading = pymalloc = ""
    with_debug = _config_var("Py_DEBUG")
    has_refcount = hasattr(sys, "gettotalrefcount")
    # Windows does not set Py_DEBUG; a debug build loads "_d.pyd" extension modules.
    has_ext = "_d.pyd" in EXTENSION_SUFFIXES
    if with_debug or (with_debug is None and (has_refcount or has_ext)):
        debug = "d"
    if tuple(py_version) >= (3, 13) and _config_var("Py_GIL_DISABLED"):
        threading = "t"
    abis: list[str] = []
    if tuple(py_version) < (3, 8):
        with_pymalloc = _config_var("WITH_PYMALLOC")
        if with_pymalloc or with_pymalloc is None:
            pymalloc = "m"
    elif debug:
        abis.append(f"cp{version}{threading}")  # debug builds load normal modules too
    abis.insert(0, f"cp{version}{threading}{debug}{pymalloc}")
    return abis


def _generic_abi() -> list[str]:
    """The ABI tag of a non-CPython interpreter from its extension suffix (as packaging does)."""
    ext_suffix = _config_var("EXT_SUFFIX")
    if not isinstance(ext_suffix, str) or not ext_suffix.startswith("."):
        return []
    parts = ext_suffix.split(".")
    if len(parts) < 3:
        return _cpython_abis(sys.version_info[:2])
    soabi = parts[1]
    if soabi.startswith("cpython"):
        abi = "cp" + soabi.split("-")[1]
    elif soabi.startswith("cp"):
        abi = soabi.split("-")[0]
    elif soabi.startswith("pypy"):
        abi = "-".join(soabi.split("-")[:2])
    elif soabi.startswith("graalpy"):
        abi = "-".join(soabi.split("-")[:3])
    elif soabi:
        abi = soabi
    else:
        return []
    return [_normalize(abi)]


def cpython_tags(
    python_version: Sequence[int], abis: Sequence[str], platforms: Sequence[str]
) -> list[str]:
    """Tags of a CPython: its ABIs, then the stable ABI (``abi3``, ``abi3t`` when
    free-threaded), then ``none``, then the stable ABI of every older 3.x.

    >>> cpython_tags((3, 9), ["cp39"], ["win_amd64"])[:4]
    ['cp39-cp39-win_amd64', 'cp39-abi3-win_amd64', 'cp39-none-win_amd64', 'cp38-abi3-win_amd64']
    """
    interpreter = "cp" + _nodot(python_version[:2])
    own = [a for a in abis if a not in ("abi3", "none")]
    out = [f"{interpreter}-{abi}-{p}" for abi in own for p in platforms]
    threading = bool(own) and bool(re.match(r"cp\d+.*t", own[0]))
    stable_ok = len(python_version) > 1 and tuple(python_version) >= (3, 2)
    use_abi3 = stable_ok and not threading
    # packaging >= 26.2 offers PEP 803 "abi3t" to free-threaded builds, down to 3.2 like abi3.
    use_abi3t = stable_ok and threading
    if use_abi3:
        out += [f"{interpreter}-abi3-{p}" for p in platforms]
    if use_abi3t:
        out += [f"{interpreter}-abi3t-{p}" for p in platforms]
    out += [f"{interpreter}-none-{p}" for p in platforms]
    if use_abi3 or use_abi3t:
        for minor in range(python_version[1] - 1, 1, -1):
            older = "cp" + _nodot((python_version[0], minor))
            for p in platforms:
                if use_abi3:
                    out.append(f"{older}-abi3-{p}")
                if use_abi3t:
                    out.append(f"{older}-abi3t-{p}")
    return out


def _generic_tags(interpreter: str, abis: Sequence[str], platforms: Sequence[str]) -> list[str]:
    names = list(abis)
    if "none" not in names:
        names.append("none")
    return [f"{interpreter}-{abi}-{p}" for abi in names for p in platforms]


def _py_interpreter_range(py_version: Sequence[int]) -> list[str]:
    out = []
    if len(py_version) > 1:
        out.append("py" + _nodot(py_version[:2]))
    out.append(f"py{py_version[0]}")
    if len(py_version) > 1:
        out += ["py" + _nodot((py_version[0], m)) for m in range(py_version[1] - 1, -1, -1)]
    return out


def compatible_tags(
    python_version: Sequence[int], interpreter: str | None, platforms: Sequence[str]
) -> list[str]:
    """Pure-Python tags: ``py3x-none-<platform>``, ``<interpreter>-none-any``, ``py3x-none-any``.

    >>> compatible_tags((3, 9), "cp39", ["win_amd64"])[:3]
    ['py39-none-win_amd64', 'py3-none-win_amd64', 'py38-none-win_amd64']
    """
    versions = _py_interpreter_range(python_version)
    out = [f"{v}-none-{p}" for v in versions for p in platforms]
    if interpreter:
        out.append(f"{interpreter}-none-any")
    out += [f"{v}-none-any" for v in versions]
    return out


# --- platforms ------------------------------------------------------------------------------

#: Architectures with a manylinux policy (packaging._manylinux._ALLOWED_ARCHS).
_MANYLINUX_ARCHS = ("x86_64", "aarch64", "ppc64", "ppc64le", "s390x", "loongarch64", "riscv64")
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
#: Guess for the last minor of a glibc major that has not ended yet (as packaging does).
_LAST_GLIBC_MINOR = 50


def _manylinux_hook(arch: str, version: tuple[int, int]) -> bool:
    """PEP 600: a distribution may ship a ``_manylinux`` module that vetoes some levels."""
    try:
        # Imported by name: this optional distro hook is not a dependency of the probe.
        hook = importlib.import_module("_manylinux")
    except ImportError:
        return True
    check = getattr(hook, "manylinux_compatible", None)
    if check is not None:
        result = check(version[0], version[1], arch)
        return True if result is None else bool(result)
    legacy = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}
    name = legacy.get(version)
    if name and hasattr(hook, name + "_compatible"):
        return bool(getattr(hook, name + "_compatible"))
    return True


def manylinux_platforms(
    archs: Sequence[str],
    glibc: tuple[int, int],
    is_compatible: Any = _manylinux_hook,
) -> list[str]:
    """manylinux tags for a glibc host, newest first, with the legacy aliases after their level.

    >>> manylinux_platforms(["x86_64"], (2, 17), lambda arch, v: True)[:3]
    ['manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux_2_16_x86_64']
    """
    too_old = (2, 4) if set(archs) & {"x86_64", "i686"} else (2, 16)
    maxima = [glibc] + [(major, _LAST_GLIBC_MINOR) for major in range(glibc[0] - 1, 1, -1)]
    out = []
    for arch in archs:
        for top in maxima:
            floor = too_old[1] if top[0] == too_old[0] else -1
            for minor in range(top[1], floor, -1):
                version = (top[0], minor)
                if is_compatible(arch, version):
                    out.append(f"manylinux_{version[0]}_{version[1]}_{arch}")
                    legacy = _LEGACY_MANYLINUX.get(version)
                    if legacy:
                        out.append(f"{legacy}_{arch}")
    return out


def musllinux_platforms(archs: Sequence[str], musl: tuple[int, int]) -> list[str]:
    """musllinux tags for a musl host, newest first.

    >>> musllinux_platforms(["x86_64"], (1, 2))
    ['musllinux_1_2_x86_64', 'musllinux_1_1_x86_64', 'musllinux_1_0_x86_64']
    """
    return [
        f"musllinux_{musl[0]}_{minor}_{arch}" for arch in archs for minor in range(musl[1], -1, -1)
    ]


def _mac_binary_formats(version: tuple[int, int], cpu_arch: str) -> list[str]:
    formats = [cpu_arch]
    if cpu_arch == "x86_64":
        if version < (10, 4):
            return []
        formats += ["intel", "fat64", "fat3"]
    elif cpu_arch == "i386":
        if version < (10, 4):
            return []
        formats += ["intel", "fat3", "fat"]
    elif cpu_arch == "ppc64":
        if version > (10, 5) or version < (10, 4):
            return []
        formats.append("fat64")
    elif cpu_arch == "ppc":
        if version > (10, 6):
            return []
        formats += ["fat3", "fat"]
    if cpu_arch in ("arm64", "x86_64"):
        formats.append("universal2")
    if cpu_arch in ("x86_64", "i386", "ppc64", "ppc", "intel"):
        formats.append("universal")
    return formats


def mac_platforms(version: tuple[int, int], arch: str) -> list[str]:
    """macOS platform tags for ``version`` (e.g. ``(14, 2)``) and ``arch``, best first.

    >>> mac_platforms((11, 0), "arm64")[:3]
    ['macosx_11_0_arm64', 'macosx_11_0_universal2', 'macosx_10_16_universal2']
    """
    out = []
    if (10, 0) <= version < (11, 0):
        for minor in range(version[1], -1, -1):
            for fmt in _mac_binary_formats((10, minor), arch):
                out.append(f"macosx_10_{minor}_{fmt}")
    if version >= (11, 0):
        # From macOS 11 the major version counts the years; minors are mid-year updates.
        for major in range(version[0], 10, -1):
            for fmt in _mac_binary_formats((major, 0), arch):
                out.append(f"macosx_{major}_0_{fmt}")
        # x86_64 binaries of older releases still run; arm64 only as universal2.
        for minor in range(16, 3, -1):
            if arch == "x86_64":
                for fmt in _mac_binary_formats((10, minor), arch):
                    out.append(f"macosx_10_{minor}_{fmt}")
            else:
                out.append(f"macosx_10_{minor}_universal2")
    return out


# --- facts about this machine ---------------------------------------------------------------


def _elf_interpreter_and_header(path: str) -> tuple[int, int, int, int, str | None] | None:
    """(class, data, machine, flags, PT_INTERP) of an ELF file, or None when it is not one."""
    try:
        with open(path, "rb") as f:
            ident = f.read(16)
            if len(ident) < 16 or ident[:4] != b"\x7fELF":
                return None
            capacity, encoding = ident[4], ident[5]
            try:
                e_fmt, p_fmt, p_idx = {
                    (1, 1): ("<HHIIIIIHHH", "<IIIIIIII", (0, 1, 4)),
                    (1, 2): (">HHIIIIIHHH", ">IIIIIIII", (0, 1, 4)),
                    (2, 1): ("<HHIQQQIHHH", "<IIQQQQQQ", (0, 2, 5)),
                    (2, 2): (">HHIQQQIHHH", ">IIQQQQQQ", (0, 2, 5)),
                }[(capacity, encoding)]
            except KeyError:
                return None
            header = struct.unpack(e_fmt, f.read(struct.calcsize(e_fmt)))
            machine, phoff, flags, phentsize, phnum = (
                header[1],
                header[4],
                header[6],
                header[8],
                header[9],
            )
            interp = None
            for index in range(phnum):
                f.seek(phoff + phentsize * index)
                raw = f.read(struct.calcsize(p_fmt))
                if len(raw) < struct.calcsize(p_fmt):
                    continue
                entry = struct.unpack(p_fmt, raw)
                if entry[p_idx[0]] != 3:  # PT_INTERP
                    continue
                f.seek(entry[p_idx[1]])
                interp = os.fsdecode(f.read(entry[p_idx[2]])).strip("\0")
                break
            return capacity, encoding, machine, flags, interp
    except (OSError, struct.error, ValueError):
        return None


def _have_compatible_abi(executable: str, archs: Sequence[str]) -> bool:
    """Whether manylinux applies at all (armv7l must be hard-float, i686 a 32-bit x86 ELF)."""
    if "armv7l" in archs:
        info = _elf_interpreter_and_header(executable)
        return (
            info is not None
            and info[0] == 1  # 32-bit
            and info[1] == 1  # little-endian
            and info[2] == 40  # ARM
            and info[3] & 0xFF000000 == 0x05000000  # EABI version 5
            and info[3] & 0x00000400 == 0x00000400  # hard float
        )
    if "i686" in archs:
        info = _elf_interpreter_and_header(executable)
        return info is not None and info[0] == 1 and info[1] == 1 and info[2] == 3
    return any(arch in _MANYLINUX_ARCHS for arch in archs)


def glibc_version() -> tuple[int, int] | None:
    """The running glibc as (major, minor), or None (musl, macOS, Windows)."""
    text = None
    if sys.platform != "win32":  # os.confstr is POSIX only
        try:
            value = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
            if value:
                text = value.rsplit(None, 1)[-1]
        except (AttributeError, OSError, ValueError):
            text = None
    if text is None:
        try:
            import ctypes

            process = ctypes.CDLL(None)
            fn = process.gnu_get_libc_version
            fn.restype = ctypes.c_char_p
            raw = fn()
            text = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
        except (ImportError, OSError, AttributeError, TypeError, ValueError):
            return None
    # Forks append junk ("2.20-2014.11"); keep major.minor.
    m = re.match(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def musl_version(executable: str) -> tuple[int, int] | None:
    """The musl version the interpreter is linked against (asks the dynamic loader)."""
    info = _elf_interpreter_and_header(executable)
    loader = info[4] if info else None
    if not loader or "musl" not in loader:
        return None
    try:
        proc = subprocess.run([loader], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [s.strip() for s in proc.stderr.decode("utf-8", "replace").splitlines() if s.strip()]
    if len(lines) < 2 or not lines[0].startswith("musl"):
        return None
    m = re.match(r"Version (\d+)\.(\d+)", lines[1])
    return (int(m.group(1)), int(m.group(2))) if m else None


def macos_version() -> str | None:
    """The real macOS version ("14.2"), also under Pythons built on an old SDK (they say 10.16)."""
    if sys.platform != "darwin":
        return None
    version = platform.mac_ver()[0]
    if version.split(".")[:2] == ["10", "16"]:
        try:
            version = subprocess.run(
                [sys.executable, "-sS", "-c", "import platform; print(platform.mac_ver()[0])"],
                check=True,
                env={"SYSTEM_VERSION_COMPAT": "0"},
                stdout=subprocess.PIPE,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return version or None


def _version_pair(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    m = re.match(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _linux_archs() -> list[str]:
    linux = _normalize(sysconfig.get_platform())
    if not linux.startswith("linux_"):
        return []
    if _IS_32BIT:
        linux = {"linux_x86_64": "linux_i686", "linux_aarch64": "linux_armv8l"}.get(linux, linux)
    arch = linux.split("_", 1)[1]
    return ["armv8l", "armv7l"] if arch == "armv8l" else [arch]


def platform_tags() -> list[str]:
    """This machine's platform tags, best first (``packaging.tags.platform_tags()``)."""
    system = platform.system()
    if system == "Darwin":
        version = _version_pair(macos_version()) or (10, 0)
        arch = platform.mac_ver()[2]
        if _IS_32BIT:
            arch = "ppc" if arch.startswith("ppc") else "i386"
        return mac_platforms(version, arch)
    if system == "Linux":
        archs = _linux_archs()
        if not archs:
            return [_normalize(sysconfig.get_platform())]
        # A plain linux_<arch> wheel was built on (or for) this very machine: pip 26 prefers
        # it to any manylinux wheel (packaging >= 26.3).
        out = [f"linux_{arch}" for arch in archs]
        glibc = glibc_version()
        if glibc is not None and _have_compatible_abi(sys.executable, archs):
            out += manylinux_platforms(archs, glibc)
        musl = musl_version(sys.executable)
        if musl is not None:
            out += musllinux_platforms(archs, musl)
        return out
    # Windows (win_amd64, win32, win_arm64) and everything else: the sysconfig platform.
    return [_normalize(sysconfig.get_platform())]


def _interpreter_name() -> str:
    name = sys.implementation.name
    return _INTERPRETER_SHORT_NAMES.get(name) or name


def _interpreter_version() -> str:
    version = _config_var("py_version_nodot")
    return str(version) if version else _nodot(sys.version_info[:2])


def supported_tags(platforms: Sequence[str] | None = None) -> list[str]:
    """This interpreter's supported tags in preference order (``packaging.tags.sys_tags()``)."""
    plats = list(platforms) if platforms is not None else platform_tags()
    name = _interpreter_name()
    if name == "cp":
        out = cpython_tags(sys.version_info[:2], _cpython_abis(sys.version_info[:2]), plats)
    else:
        out = _generic_tags(name + _interpreter_version(), _generic_abi(), plats)
    if name == "pp":
        interp: str | None = "pp3"
    elif name == "cp":
        interp = "cp" + _interpreter_version()
    else:
        interp = None
    return out + compatible_tags(sys.version_info[:2], interp, plats)


def _full_version(info: Any) -> str:
    version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        version += info.releaselevel[0] + str(info.serial)
    return version


def marker_environment() -> dict[str, str]:
    """PEP 508 marker values of this interpreter (``packaging.markers.default_environment()``)."""
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": _full_version(sys.implementation.version),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


# --- NVIDIA ---------------------------------------------------------------------------------

_DRIVER_RE = re.compile(r"^\d+\.\d+(\.\d+)*$")
_CC_RE = re.compile(r"^\d+\.\d+$")


def parse_nvidia_smi(
    output: str, with_compute_cap: bool = True
) -> tuple[str, list[dict[str, Any]]]:
    """Parse ``nvidia-smi --query-gpu=driver_version,name[,compute_cap] --format=csv,noheader``.

    One line per GPU: ``550.54.14, NVIDIA GeForce RTX 3090, 8.6``.  Returns the driver version
    and ``[{"name", "compute_capability"}]``; raises ValueError on anything else.

    >>> parse_nvidia_smi("550.54.14, NVIDIA GeForce RTX 3090, 8.6\\n")
    ('550.54.14', [{'name': 'NVIDIA GeForce RTX 3090', 'compute_capability': '8.6'}])
    """
    driver = None
    gpus: list[dict[str, Any]] = []
    for line in output.splitlines():
        line = line.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < (3 if with_compute_cap else 2):
            raise ValueError(f"unexpected line {line[:200]!r}")
        version = fields[0]
        if with_compute_cap:
            name, cap = ", ".join(fields[1:-1]), fields[-1]  # a name may contain a comma
        else:
            name, cap = ", ".join(fields[1:]), None
        if not _DRIVER_RE.match(version):
            raise ValueError(f"unexpected driver version {version!r} in {line[:200]!r}")
        if cap is not None and not _CC_RE.match(cap):
            if cap.strip("[]").upper() != "N/A":
                raise ValueError(f"unexpected compute capability {cap!r} in {line[:200]!r}")
            cap = None
        driver = driver or version
        gpus.append({"name": name, "compute_capability": cap})
    if driver is None:
        raise ValueError("no GPU listed")
    return driver, gpus


def _find_nvidia_smi() -> str | None:
    found = shutil.which("nvidia-smi")
    if found or os.name != "nt":
        return found
    # Older Windows drivers installed it outside PATH.
    for base in (os.environ.get("ProgramW6432"), os.environ.get("ProgramFiles")):
        if base:
            candidate = os.path.join(base, "NVIDIA Corporation", "NVSMI", "nvidia-smi.exe")
            if os.path.isfile(candidate):
                return candidate
    return None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return "(no output)"


def _run_smi(executable: str, fields: Sequence[str], timeout: float) -> tuple[int, str]:
    proc = subprocess.run(
        [executable, "--query-gpu=" + ",".join(fields), "--format=csv,noheader"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def query_nvidia_smi(
    executable: str | None = None, timeout: float = NVIDIA_SMI_TIMEOUT
) -> dict[str, Any]:
    """Ask nvidia-smi for the driver version and GPUs.

    No nvidia-smi at all is a normal machine without an NVIDIA driver: every field is null and
    ``error`` too.  A nvidia-smi that fails or prints garbage leaves the reason in ``error``.
    """
    result: dict[str, Any] = {"driver_version": None, "gpus": [], "error": None}
    exe = executable or _find_nvidia_smi()
    if exe is None:
        return result
    fields: Sequence[str] = NVIDIA_SMI_QUERY
    try:
        code, out = _run_smi(exe, fields, timeout)
        if "compute_cap" in out and "not a valid field" in out:
            # Drivers from before compute_cap was queryable (whatever their exit status): the
            # driver version alone still decides the CUDA variant.
            fields = [f for f in NVIDIA_SMI_QUERY if f != "compute_cap"]
            code, out = _run_smi(exe, fields, timeout)
    except subprocess.TimeoutExpired:
        result["error"] = f"nvidia-smi did not answer within {timeout:g} s"
        return result
    except OSError as exc:
        result["error"] = f"cannot run {exe}: {exc}"
        return result
    if code != 0:
        result["error"] = f"nvidia-smi exited with status {code}: {_first_line(out)}"
        return result
    try:
        driver, gpus = parse_nvidia_smi(out, with_compute_cap="compute_cap" in fields)
    except ValueError as exc:
        result["error"] = f"cannot read nvidia-smi output ({exc}): {_first_line(out)}"
        return result
    result["driver_version"] = driver
    result["gpus"] = gpus
    return result


# --- the description ------------------------------------------------------------------------


def _abi(tags: Iterable[str]) -> str:
    first = next(iter(tags), "")
    parts = first.split("-")
    return parts[1] if len(parts) == 3 else ""


def probe(nvidia: bool = True) -> dict[str, Any]:
    """This machine as a target description (the JSON document, as a dict)."""
    plats = platform_tags()
    tags = supported_tags(plats)
    glibc = glibc_version() if platform.system() == "Linux" else None
    musl = musl_version(sys.executable) if platform.system() == "Linux" else None
    mac = macos_version()
    created = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": {
            "version": platform.python_version(),
            "implementation": sys.implementation.name,
            "abi": _abi(tags),
            "executable": sys.executable,
        },
        "tags": tags,
        "markers": marker_environment(),
        "platform": {
            "system": platform.system(),
            "machine": platform.machine(),
            "glibc": f"{glibc[0]}.{glibc[1]}" if glibc else None,
            "musl": f"{musl[0]}.{musl[1]}" if musl else None,
            "macos": mac,
            "platform_tag": plats[0] if plats else None,
        },
        "nvidia": query_nvidia_smi()
        if nvidia
        else {"driver_version": None, "gpus": [], "error": "nvidia-smi not run (--no-nvidia)"},
    }


def dumps(description: dict[str, Any]) -> str:
    """The description as the JSON text the probe writes (ASCII only: safe on any console)."""
    return json.dumps(description, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wheelcache-probe",
        description="Describe this machine (Python, tags, markers, NVIDIA driver) as a "
        "wheelcache target. Standard library only; runs without wheelcache.",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the JSON here (not stdout)")
    parser.add_argument("--no-nvidia", action="store_true", help="do not run nvidia-smi")
    args = parser.parse_args(argv)
    text = dumps(probe(nvidia=not args.no_nvidia))
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except OSError as exc:
        sys.stderr.write(f"wheelcache-probe: error: cannot write {args.output}: {exc}\n")
        return 1
    sys.stderr.write(
        f"wheelcache-probe: wrote {args.output}; on the online machine run: "
        f"wheelcache fetch --target {os.path.basename(args.output)}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
