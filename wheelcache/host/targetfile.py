"""Target descriptions written on the target host, and the choices made from them.

``wheelcache-probe.py`` (:mod:`wheelcache.host.probe_script`) runs on the machine the wheels are for
and writes a JSON description of it.  This module reads that file into a
:class:`~wheelcache.core.target.Target` that uses exactly the host's own ordered tags and marker
values (nothing is re-derived, so a quirky host is described as it is), and decides what the
NVIDIA driver it reports implies: which PyTorch CUDA variant (:func:`choose_cuda_variant`) and
whether a GPU is too old or too new for that build (:func:`gpu_warning`).

Only :func:`read_target_description` and :func:`load_target` touch the disk; everything else
takes values and returns values.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.tags import parse_tag
from packaging.version import InvalidVersion, Version

from wheelcache.core.target import Target
from wheelcache.core.variants import CUDA_DRIVER_MINIMUM, KNOWN_VARIANTS, parse_variant
from wheelcache.errors import TargetError
from wheelcache.host.probe_script import FORMAT, FORMAT_VERSION

__all__ = [
    "CUDA_FULL_SUPPORT",
    "TORCH_CUDA_ARCHS",
    "GpuInfo",
    "TargetDescription",
    "choose_cuda_variant",
    "cuda_version_of",
    "gpu_warning",
    "load_target",
    "parse_target_description",
    "read_target_description",
]

#: Driver a CUDA toolkit release needs for *full* support (its GA release), (Linux, Windows).
#: Source: NVIDIA CUDA Toolkit Release Notes, table "CUDA Toolkit and Corresponding Driver
#: Versions".  Updates within a minor need slightly newer drivers (12.4 Update 1: 550.54.15);
#: minor-version compatibility (:data:`wheelcache.core.variants.CUDA_DRIVER_MINIMUM`) covers that.
#: 13.0 on Windows: NVIDIA stopped bundling the Windows driver with CUDA 13; 580.88 is the first
#: R580 Windows driver we know of (not verified against the table; erring high only makes
#: wheelcache prefer cu129 on such a driver).
CUDA_FULL_SUPPORT: dict[tuple[int, int], tuple[str, str]] = {
    (9, 2): ("396.26", "397.44"),
    (10, 0): ("410.48", "411.31"),
    (10, 1): ("418.39", "418.96"),
    (10, 2): ("440.33", "441.22"),
    (11, 0): ("450.51.05", "451.48"),
    (11, 1): ("455.23", "456.38"),
    (11, 2): ("460.27.03", "460.82"),
    (11, 3): ("465.19.01", "465.89"),
    (11, 4): ("470.42.01", "471.11"),
    (11, 5): ("495.29.05", "496.04"),
    (11, 6): ("510.39.01", "511.23"),
    (11, 7): ("515.43.04", "516.01"),
    (11, 8): ("520.61.05", "520.06"),
    (12, 0): ("525.60.13", "527.41"),
    (12, 1): ("530.30.02", "531.14"),
    (12, 2): ("535.54.03", "536.25"),
    (12, 3): ("545.23.06", "545.84"),
    (12, 4): ("550.54.14", "551.61"),
    (12, 5): ("555.42.02", "555.85"),
    (12, 6): ("560.28.03", "560.76"),
    (12, 8): ("570.26", "570.65"),
    (12, 9): ("575.51.03", "576.02"),
    (13, 0): ("580.65.06", "580.88"),
}

#: CUDA architectures compiled into PyTorch's own x86_64 Linux wheels, per variant, from the
#: first torch release of each row on ("X.Y+PTX" also carries PTX that newer GPUs can JIT).
#: Sources: ``TORCH_CUDA_ARCH_LIST`` in pytorch/builder ``manywheel/build_cuda.sh`` (torch
#: 1.13-2.5) and pytorch ``.ci/manywheel/build_cuda.sh`` (2.6 on), and the "PyTorch CUDA Support
#: Matrix" in pytorch's RELEASE.md.  Where unsure we keep the narrower list, so wheelcache warns
#: rather than stays silent: torch 2.7 cu128 and 2.11+ cu128 are recorded as sm_75+ (the Linux
#: lists; 2.7's Windows build was wider); the cu12x 2.1-2.5 lists are from memory of the builder
#: script (CUDA 12 dropped sm_35/sm_37).  Linux aarch64 builds cover far fewer architectures
#: (8.0, 9.0 …) and are not described here.  Variants without a row get no warning at all.
TORCH_CUDA_ARCHS: dict[str, tuple[tuple[str, str], ...]] = {
    "cu117": (("1.13", "3.7;5.0;6.0;7.0;7.5;8.0;8.6"),),
    "cu118": (("2.0", "3.7;5.0;6.0;7.0;7.5;8.0;8.6;9.0"),),
    "cu121": (("2.1", "5.0;6.0;7.0;7.5;8.0;8.6;9.0"),),
    "cu124": (("2.4", "5.0;6.0;7.0;7.5;8.0;8.6;9.0"),),
    "cu126": (("2.6", "5.0;6.0;7.0;7.5;8.0;8.6;9.0"),),
    "cu128": (
        ("2.7", "7.5;8.0;8.6;9.0;10.0;12.0+PTX"),
        # sm_70 came back for 2.8 (pytorch issue 157517); sm_50-sm_61 stayed out.
        ("2.8", "7.0;7.5;8.0;8.6;9.0;10.0;12.0"),
        ("2.11", "7.5;8.0;8.6;9.0;10.0;12.0"),
    ),
    "cu129": (("2.8", "7.0;7.5;8.0;8.6;9.0;10.0;12.0+PTX"),),
    # CUDA 13 itself no longer compiles for Maxwell, Pascal or Volta.
    "cu130": (("2.9", "7.5;8.0;8.6;9.0;10.0;12.0+PTX"),),
}

_REQUIRED_MARKERS = (
    "implementation_name",
    "implementation_version",
    "os_name",
    "platform_machine",
    "platform_python_implementation",
    "platform_release",
    "platform_system",
    "platform_version",
    "python_full_version",
    "python_version",
    "sys_platform",
)
_SYSTEMS = {"Windows": "windows", "Linux": "linux", "Darwin": "macos"}
_PY_RE = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?")
_PAIR_RE = re.compile(r"^(\d+)\.(\d+)")
_DRIVER_RE = re.compile(r"^\d+(?:\.\d+)*$")
_CUDA_VARIANT_RE = re.compile(r"^cu(\d+)(\d)$")


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as nvidia-smi named it; ``compute_capability`` like ``"8.6"`` or None."""

    name: str
    compute_capability: str | None = None


@dataclass(frozen=True, slots=True)
class TargetDescription:
    """A parsed target description (the probe's JSON), before a variant is chosen."""

    source: str
    python_version: str
    implementation: str
    abi: str
    tags: tuple[str, ...]
    markers: tuple[tuple[str, str], ...]
    system: str  # "windows" | "linux" | "macos"
    machine: str
    glibc: tuple[int, int] | None = None
    musl: tuple[int, int] | None = None
    macos: tuple[int, int] | None = None
    platform_tag: str | None = None
    driver_version: str | None = None
    gpus: tuple[GpuInfo, ...] = ()
    nvidia_error: str | None = None
    created_at: str | None = None

    @property
    def python(self) -> tuple[int, int]:
        m = _PY_RE.match(self.python_version)
        assert m is not None  # checked by parse_target_description
        return int(m.group(1)), int(m.group(2))

    @property
    def platforms(self) -> tuple[str, ...]:
        """Platform tags in the order the host prefers them (``any`` left out)."""
        seen: dict[str, None] = {}
        for text in self.tags:
            for tag in parse_tag(text):
                if tag.platform != "any":
                    seen.setdefault(tag.platform, None)
        return tuple(seen)

    def to_target(self, variant: str = "cpu") -> Target:
        """The :class:`Target` for *variant* that uses exactly this host's tags and markers."""
        platforms = self.platforms
        if not platforms:
            raise TargetError(f"{self.source}: no platform-specific tags; is it a real host?")
        return Target(
            python=self.python,
            abi=self.abi,
            os=self.system,
            machine=dict(self.markers)["platform_machine"],
            platforms=platforms,
            variant=parse_variant(variant),
            glibc=self.glibc,
            macos=self.macos,
            python_full=self.python_version,
            tag_list=self.tags,
            markers=self.markers,
        )

    def choose_cuda_variant(self, available: Sequence[str] = KNOWN_VARIANTS) -> tuple[str, str]:
        """``--cuda auto`` for this host: :func:`choose_cuda_variant` on its driver."""
        if self.driver_version is None:
            why = self.nvidia_error or "nvidia-smi not found"
            raise TargetError(
                f"{self.source} reports no NVIDIA driver ({why}); "
                "pick a variant with --cuda VER or --cpu"
            )
        return choose_cuda_variant(self.driver_version, self.system, available)


# --- reading --------------------------------------------------------------------------------


def _need(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise TargetError(f"{where}: field {key!r} is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise TargetError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise TargetError(f"{where}: field {key!r} must be a string or null")
    return value


def _pair(text: str | None, where: str) -> tuple[int, int] | None:
    if text is None:
        return None
    m = _PAIR_RE.match(text)
    if not m:
        raise TargetError(f"{where}: {text!r} is not a version like 2.28")
    return int(m.group(1)), int(m.group(2))


def parse_target_description(data: object, source: str = "target description") -> TargetDescription:
    """Check and convert the probe's JSON document (already decoded) into a description.

    ``source`` names the file in every error message.
    """
    if not isinstance(data, dict):
        raise TargetError(f"{source}: not a wheelcache target description (no JSON object)")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise TargetError(
            f"{source}: not a wheelcache target description (format {fmt!r}, expected {FORMAT!r});"
            " write one on the target with: python wheelcache-probe.py --output target.json"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TargetError(f"{source}: format version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise TargetError(
            f"{source}: written by a newer probe (format version {version}); this wheelcache "
            f"reads version {FORMAT_VERSION}: update wheelcache, or probe again with the script "
            "that `wheelcache probe --write-script DIR` writes"
        )
    python = _need(data, "python", dict, source)
    where = f"{source}: python"
    py_version = _need(python, "version", str, where)
    if not _PY_RE.match(py_version):
        raise TargetError(f"{where}: version {py_version!r} is not like 3.9.13")
    implementation = _need(python, "implementation", str, where)
    if implementation != "cpython":
        raise TargetError(
            f"{source}: the target runs {implementation}; wheelcache fetches for CPython only"
        )
    abi = _need(python, "abi", str, where)
    tags = _need(data, "tags", list, source)
    if not tags:
        raise TargetError(f"{source}: field 'tags' is empty")
    for text in tags:
        if not isinstance(text, str) or text.count("-") != 2 or "" in text.split("-"):
            raise TargetError(f"{source}: {text!r} in 'tags' is not a wheel tag")
    markers = _need(data, "markers", dict, source)
    missing = [k for k in _REQUIRED_MARKERS if k not in markers]
    if missing:
        raise TargetError(f"{source}: markers lack {', '.join(missing)}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in markers.items()):
        raise TargetError(f"{source}: every marker value must be a string")
    plat = _need(data, "platform", dict, source)
    where = f"{source}: platform"
    system_name = _need(plat, "system", str, where)
    system = _SYSTEMS.get(system_name)
    if system is None:
        raise TargetError(
            f"{source}: the target runs {system_name}; wheelcache fetches for Windows, Linux "
            "and macOS"
        )
    machine = _need(plat, "machine", str, where)
    nvidia = data.get("nvidia") or {}
    if not isinstance(nvidia, dict):
        raise TargetError(f"{source}: field 'nvidia' must be an object or null")
    where = f"{source}: nvidia"
    driver = _optional_str(nvidia, "driver_version", where)
    if driver is not None and not _DRIVER_RE.match(driver):
        raise TargetError(f"{where}: driver_version {driver!r} is not like 550.54.14")
    gpus = []
    for gpu in nvidia.get("gpus") or []:
        if not isinstance(gpu, dict) or not isinstance(gpu.get("name"), str):
            raise TargetError(f"{where}: every GPU needs a name")
        cc = _optional_str(gpu, "compute_capability", where)
        _pair(cc, where)
        gpus.append(GpuInfo(gpu["name"], cc))
    return TargetDescription(
        source=source,
        python_version=py_version,
        implementation=implementation,
        abi=abi,
        tags=tuple(tags),
        markers=tuple(sorted(markers.items())),
        system=system,
        machine=machine,
        glibc=_pair(_optional_str(plat, "glibc", where), where),
        musl=_pair(_optional_str(plat, "musl", where), where),
        macos=_pair(_optional_str(plat, "macos", where), where),
        platform_tag=_optional_str(plat, "platform_tag", where),
        driver_version=driver,
        gpus=tuple(gpus),
        nvidia_error=_optional_str(nvidia, "error", where),
        created_at=_optional_str(data, "created_at", source),
    )


def read_target_description(path: str | os.PathLike[str]) -> TargetDescription:
    """Read and check a target description file written by the probe."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise TargetError(
            f"target file {p} does not exist; write it on the target with: "
            f"python wheelcache-probe.py --output {p.name}"
        ) from None
    except OSError as exc:
        raise TargetError(f"cannot read target file {p}: {exc.strerror or exc}") from exc
    # PowerShell 5's `>` writes UTF-16 with a BOM; Notepad may add a UTF-8 BOM.
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        data = json.loads(raw.decode(encoding))
    except UnicodeDecodeError as exc:
        raise TargetError(f"target file {p} is not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise TargetError(
            f"target file {p} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from exc
    return parse_target_description(data, source=f"target file {p}")


def load_target(path: str | os.PathLike[str], variant: str = "cpu") -> Target:
    """The :class:`Target` described by the probe's file at *path*, for PyTorch *variant*.

    Its tags and marker values are the host's own, exactly as the probe recorded them.
    Raises :class:`~wheelcache.errors.TargetError` with one clear line for a missing file, bad
    JSON, a wrong format or version, or missing fields.  For ``--cuda auto`` read the file with
    :func:`read_target_description` and use :meth:`TargetDescription.choose_cuda_variant`.
    """
    return read_target_description(path).to_target(variant)


# --- CUDA -----------------------------------------------------------------------------------


def cuda_version_of(variant: str) -> tuple[int, int] | None:
    """The CUDA version of a variant name, or None for cpu/rocm/xpu.

    >>> cuda_version_of("cu118"), cuda_version_of("cu92"), cuda_version_of("cu130")
    ((11, 8), (9, 2), (13, 0))
    """
    m = _CUDA_VARIANT_RE.match(variant)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _driver_key(version: str) -> tuple[int, ...]:
    if not _DRIVER_RE.match(version.strip()):
        raise TargetError(f"NVIDIA driver version {version!r} is not like 550.54.14")
    return tuple(int(p) for p in version.strip().split("."))


def choose_cuda_variant(
    driver_version: str, os: str, available: Sequence[str] = KNOWN_VARIANTS
) -> tuple[str, str]:
    """The PyTorch CUDA variant to fetch for an NVIDIA driver, and a one-line reason.

    ``os`` is ``"linux"`` or ``"windows"`` (:attr:`Target.os`); ``available`` the variants to
    choose from (all known ones by default; pass those that exist for a pinned torch).

    The rule: the newest variant whose CUDA release the driver fully supports
    (:data:`CUDA_FULL_SUPPORT`).  Only when none of *available* is that old, the oldest variant
    that minor-version compatibility still lets run (CUDA 11.x and 12.x each run on any driver of
    their major's minimum, :data:`wheelcache.core.variants.CUDA_DRIVER_MINIMUM`): PyTorch's kernels
    run that way, but PTX JIT and a few newer runtime features need the full driver, so the
    closest such release is the safest.  A variant newer than the table's newest release counts
    as unknown and is only chosen through minor-version compatibility.  No usable variant at all
    raises :class:`~wheelcache.errors.TargetError`.

    >>> choose_cuda_variant("535.104.05", "linux", ["cpu", "cu118", "cu121", "cu124"])
    ('cu121', 'driver 535.104.05 supports CUDA up to 12.2; picked cu121')
    """
    if os not in ("linux", "windows"):
        raise TargetError(f"PyTorch has no CUDA builds for {os}; use --cpu")
    driver = _driver_key(driver_version)
    column = 0 if os == "linux" else 1
    cuda = sorted({(v, name) for name in available if (v := cuda_version_of(name)) is not None})
    if not cuda:
        raise TargetError(f"no CUDA variant to choose from among {', '.join(available) or '-'}")
    supported = [v for v, mins in CUDA_FULL_SUPPORT.items() if driver >= _driver_key(mins[column])]
    newest = max(supported, default=None)
    upto = f"CUDA up to {newest[0]}.{newest[1]}" if newest else "no CUDA release in full"
    full = [(v, name) for v, name in cuda if newest is not None and v <= newest]
    if full:
        return full[-1][1], f"driver {driver_version} supports {upto}; picked {full[-1][1]}"
    for v, name in cuda:  # oldest first
        minimum = CUDA_DRIVER_MINIMUM.get(v[0])
        if v[0] >= 11 and minimum is not None and driver >= _driver_key(minimum[column]):
            return name, (
                f"driver {driver_version} supports {upto}; nothing that old is available, so "
                f"picked {name} through CUDA {v[0]}.x minor-version compatibility "
                f"(driver >= {minimum[column]})"
            )
    oldest_v, oldest = cuda[0]
    # What the oldest one would need: its major's minor-version minimum from CUDA 11 on.
    compat = CUDA_DRIVER_MINIMUM.get(oldest_v[0]) if oldest_v[0] >= 11 else None
    need = compat or CUDA_FULL_SUPPORT.get(oldest_v)
    needs = f"; {oldest} needs >= {need[column]} on {os}" if need else ""
    raise TargetError(
        f"NVIDIA driver {driver_version} is too old for every CUDA variant offered "
        f"({', '.join(n for _, n in cuda)}){needs}: update the driver or use --cpu"
    )


def _archs(spec: str) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    archs, ptx = [], None
    for item in spec.split(";"):
        m = _PAIR_RE.match(item)
        assert m is not None
        arch = (int(m.group(1)), int(m.group(2)))
        archs.append(arch)
        if item.endswith("+PTX"):
            ptx = arch
    return archs, ptx


def _runs_on(
    cc: tuple[int, int], archs: list[tuple[int, int]], ptx: tuple[int, int] | None
) -> bool:
    # A cubin for sm_XY runs on every X.Z with Z >= Y (same major); PTX JITs on anything newer.
    return any(a[0] == cc[0] and a[1] <= cc[1] for a in archs) or (ptx is not None and cc >= ptx)


def _row(variant: str, torch: tuple[int, ...] | None) -> str | None:
    rows = TORCH_CUDA_ARCHS.get(variant)
    if not rows:
        return None
    if torch is None:
        return rows[-1][1]  # no pin: fetch takes the newest torch
    fitting = [spec for since, spec in rows if torch >= Version(since).release]
    return fitting[-1] if fitting else None


def gpu_warning(gpus: Sequence[GpuInfo], torch_version: str | None, variant: str) -> str | None:
    """One line when a GPU cannot run PyTorch's *variant* build (of *torch_version*), else None.

    Uses :data:`TORCH_CUDA_ARCHS`; with no data for the variant or torch version (cpu, rocm,
    very old releases) or no compute capability from nvidia-smi, it stays silent.

    >>> gpu_warning([GpuInfo("NVIDIA GeForce GTX 1080", "6.1")], "2.8.0", "cu128")[:60]
    'NVIDIA GeForce GTX 1080 (compute capability 6.1) is too old '
    """
    torch: tuple[int, ...] | None = None
    if torch_version:
        try:
            torch = Version(torch_version).release[:2]
        except InvalidVersion:
            torch = None
    spec = _row(variant, torch)
    if spec is None:
        return None
    archs, ptx = _archs(spec)
    bad = []
    for gpu in gpus:
        cc = _pair(gpu.compute_capability, "GPU") if gpu.compute_capability else None
        if cc is not None and not _runs_on(cc, archs, ptx):
            age = "too old" if cc < min(archs) else "too new" if cc > max(archs) else "not covered"
            bad.append((gpu, cc, age))
    if not bad:
        return None
    build = f"torch {'.'.join(map(str, torch))} {variant}" if torch else f"{variant}"
    lo, hi = min(archs), max(archs)
    names = "; ".join(f"{g.name} (compute capability {c[0]}.{c[1]}) is {age}" for g, c, age in bad)
    hint = ""
    for pin, prefix in ((torch, ""), (None, "newer torch ")):
        better = [
            other
            for other in sorted(TORCH_CUDA_ARCHS, key=lambda v: cuda_version_of(v) or (0, 0))
            if other != variant
            and (s := _row(other, pin)) is not None
            and all(_runs_on(c, *_archs(s)) for _, c, _ in bad)
        ]
        if better:
            hint = f"; {prefix}{better[-1]} builds include it"
            break
    return (
        f"{names} for {build} builds (kernels for sm_{lo[0]}{lo[1]}-sm_{hi[0]}{hi[1]}); "
        f"it would fail with 'no kernel image is available'{hint}"
    )
