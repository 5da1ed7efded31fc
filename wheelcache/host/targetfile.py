"""Target descriptions written on the target host, and the choices made from them.

``wheelcache-probe.py`` (:mod:`wheelcache.host.probe_script`) runs on the machine the wheels are for
and writes a JSON description of it.  This module reads that file into a
:class:`~wheelcache.core.target.Target` that uses exactly the host's own ordered tags and marker
values (nothing is re-derived, so a quirky host is described as it is), and decides what the
NVIDIA driver it reports implies through :mod:`wheelcache.core.cuda` (the driver tables and the
``--cuda auto`` policy live there).

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

from wheelcache.core.checks import safe_tag, safe_text
from wheelcache.core.cuda import GpuInfo, choose_cuda_variant
from wheelcache.core.target import Target
from wheelcache.core.variants import KNOWN_VARIANTS, parse_variant
from wheelcache.errors import TargetError
from wheelcache.host.probe_script import FORMAT, FORMAT_VERSION

__all__ = [
    "GpuInfo",
    "TargetDescription",
    "load_target",
    "parse_target_description",
    "read_target_description",
]

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
#: A whole Python version as the probe records it (``3.9.13``, ``3.13.0rc1``, Debian's ``3.9.2+``).
_PY_FULL_RE = re.compile(r"\d+\.\d+(?:\.\d+)?(?:(?:a|b|rc)\d+)?\+?")
_MACHINE_RE = re.compile(r"[A-Za-z0-9_.-]{0,64}")
_PAIR_RE = re.compile(r"^(\d+)\.(\d+)")
_DRIVER_RE = re.compile(r"^\d+(?:\.\d+)*$")


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


def _optional_tag(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _optional_str(obj, key, where)
    return None if value is None else _checked_tag(value, key, where)


def _optional_text(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _optional_str(obj, key, where)
    return None if value is None else _checked_text(value, key, where)


def _checked_tag(value: object, what: str, where: str) -> str:
    try:
        return safe_tag(value, what=what)
    except ValueError as exc:
        raise TargetError(f"{where}: {exc}") from None


def _checked_text(value: object, what: str, where: str) -> str:
    try:
        return safe_text(value, what=what, limit=2000)
    except ValueError as exc:
        raise TargetError(f"{where}: {exc}") from None


def _check_tags(tags: list[Any], source: str) -> None:
    """Every tag is ``python-abi-platform`` of tag-grammar parts: tags become file names."""
    for text in tags:
        if not isinstance(text, str) or text.count("-") != 2:
            raise TargetError(f"{source}: {text!r:.80} in 'tags' is not a wheel tag")
        for part in text.split("-"):
            _checked_tag(part, "a part of tag", source)


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
    if not _PY_FULL_RE.fullmatch(py_version):
        raise TargetError(f"{where}: version {py_version!r:.80} is not like 3.9.13")
    implementation = _need(python, "implementation", str, where)
    if implementation != "cpython":
        raise TargetError(
            f"{source}: the target runs {implementation}; wheelcache fetches for CPython only"
        )
    abi = _checked_tag(_need(python, "abi", str, where), "abi", where)
    tags = _need(data, "tags", list, source)
    if not tags:
        raise TargetError(f"{source}: field 'tags' is empty")
    _check_tags(tags, source)
    markers = _need(data, "markers", dict, source)
    missing = [k for k in _REQUIRED_MARKERS if k not in markers]
    if missing:
        raise TargetError(f"{source}: markers lack {', '.join(missing)}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in markers.items()):
        raise TargetError(f"{source}: every marker value must be a string")
    for key, value in markers.items():
        _checked_text(key, "a marker name", source)
        _checked_text(value, f"marker {key}", source)
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
    if not _MACHINE_RE.fullmatch(machine):
        raise TargetError(f"{where}: machine {machine!r:.80} is not like x86_64 or AMD64")
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
        _checked_text(gpu["name"], "GPU name", where)
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
        platform_tag=_optional_tag(plat, "platform_tag", where),
        driver_version=driver,
        gpus=tuple(gpus),
        nvidia_error=_optional_text(nvidia, "error", where),
        created_at=_optional_text(data, "created_at", source),
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
