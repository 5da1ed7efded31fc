"""CUDA: the NVIDIA driver tables and the ``--cuda auto`` policy, in one place.

Pure: values in, values out.  ``fetch --cuda auto`` (with the driver of this machine or of a
target file), ``export --cuda auto`` (among the builds a cache holds) and ``detect``/``probe``
(the flags a host implies) all decide here: :func:`auto_variant` for a host description,
:func:`choose_cuda_variant` for a driver, :func:`gpu_warning` for a GPU the build cannot run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from wheelcache.core.variants import KNOWN_VARIANTS
from wheelcache.errors import TargetError

__all__ = [
    "AUTO",
    "CUDA_DRIVER_MINIMUM",
    "CUDA_FULL_SUPPORT",
    "TORCH_CUDA_ARCHS",
    "GpuInfo",
    "auto_variant",
    "choose_cuda_variant",
    "cuda_version_of",
    "gpu_warning",
]

#: ``--cuda auto``: the variant is decided from an NVIDIA driver by :func:`auto_variant`.
AUTO = "auto"

_PAIR_RE = re.compile(r"^(\d+)\.(\d+)")
_DRIVER_RE = re.compile(r"^\d+(?:\.\d+)*$")
_CUDA_VARIANT_RE = re.compile(r"^cu(\d+)(\d)$")

#: Minimum NVIDIA driver per CUDA major version: (Linux, Windows).
CUDA_DRIVER_MINIMUM: dict[int, tuple[str, str]] = {
    11: ("450.80.02", "452.39"),
    12: ("525.60.13", "528.33"),
    13: ("580", "580"),
}

#: Driver a CUDA toolkit release needs for *full* support (its GA release), (Linux, Windows).
#: Source: NVIDIA CUDA Toolkit Release Notes, table "CUDA Toolkit and Corresponding Driver
#: Versions".  Updates within a minor need slightly newer drivers (12.4 Update 1: 550.54.15);
#: minor-version compatibility (:data:`CUDA_DRIVER_MINIMUM`) covers that.
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


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as nvidia-smi named it; ``compute_capability`` like ``"8.6"`` or None."""

    name: str
    compute_capability: str | None = None


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
    their major's minimum, :data:`CUDA_DRIVER_MINIMUM`): PyTorch's kernels
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
        cc = _capability(gpu.compute_capability)
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


def _capability(text: str | None) -> tuple[int, int] | None:
    m = _PAIR_RE.match(text) if text else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def auto_variant(
    system: str,
    driver_version: str | None,
    nvidia_error: str | None = None,
    available: Sequence[str] = KNOWN_VARIANTS,
) -> tuple[str, str]:
    """The variant a host implies, and why: ``cpu`` on macOS, without a driver, or with a
    driver too old for every CUDA variant in *available*; else :func:`choose_cuda_variant`.

    >>> auto_variant("macos", None)
    ('cpu', 'PyTorch has no CUDA builds for macOS; cpu is the one')
    >>> auto_variant("linux", None)
    ('cpu', 'no NVIDIA driver (nvidia-smi not found); picked cpu')
    """
    if system == "macos":
        return "cpu", "PyTorch has no CUDA builds for macOS; cpu is the one"
    if driver_version is None:
        why = (
            f"no NVIDIA driver version ({nvidia_error})"
            if nvidia_error
            else "no NVIDIA driver (nvidia-smi not found)"
        )
        return "cpu", f"{why}; picked cpu"
    try:
        return choose_cuda_variant(driver_version, system, available)
    except TargetError as exc:
        return "cpu", f"{exc}; picked cpu"
