"""The machine wheels are fetched *for*, which is often not the machine wheelcache runs on.

A :class:`Target` knows its Python, ABI, operating system, architecture, platform tags and
PyTorch variant.  Its ordered tag list is built by :mod:`packaging.tags` with every input passed
explicitly, and its marker environment is the target's own (``sys_platform``,
``platform_machine``, ``python_version`` …), never this interpreter's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from packaging import tags as _tags

from wheelcache.errors import TargetError

__all__ = [
    "DEFAULT_GLIBC",
    "Target",
    "make_target",
    "parse_platform",
    "parse_python",
    "parse_python_version",
]

#: glibc baseline assumed for ``--platform linux_x86_64`` (manylinux_2_28 is what current
#: PyTorch wheels need and what every supported distribution has).
DEFAULT_GLIBC = (2, 28)

# 39, cp39, 3.9, 3.9.13 and each with a trailing "t" (free-threaded).  A micro release is only
# accepted in the dotted form: "3913" would be ambiguous.
_PY_RE = re.compile(
    r"^(?:cp|py|python)?(\d)(?:\.(\d{1,2})(?:\.(\d{1,3}))?|(\d{1,2}))(t?)$", re.IGNORECASE
)
_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_MUSL_RE = re.compile(r"^musllinux_(\d+)_(\d+)_(\w+)$")
_MAC_RE = re.compile(r"^macosx_(\d+)_(\d+)_(\w+)$")
_WINDOWS = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}
#: The oldest manylinux level that exists per architecture (PEP 600 and its predecessors).
_MANYLINUX_FLOOR = {"x86_64": 5, "i686": 5}
_MANYLINUX_ALIAS = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_ALIAS_ARCHS = {
    (2, 17): ("x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x"),
    (2, 12): ("x86_64", "i686"),
    (2, 5): ("x86_64", "i686"),
}

EXAMPLE_PLATFORMS = (
    "win_amd64, linux_x86_64, manylinux_2_28_x86_64, linux_aarch64, macosx_11_0_arm64, "
    "macosx_10_15_x86_64"
)


def parse_python_version(value: str) -> tuple[tuple[int, int, int], bool]:
    """Parse ``--py`` into ``((major, minor, micro), free_threaded)``.

    A version without its micro release means the first one, ``X.Y.0``, as pip's and uv's
    ``--python-version`` do: ``Requires-Python: >=3.8.1`` excludes ``--py 3.8``.

    >>> parse_python_version("3.8"), parse_python_version("3.8.10"), parse_python_version("313t")
    (((3, 8, 0), False), ((3, 8, 10), False), ((3, 13, 0), True))
    >>> parse_python_version("3.13.1t")
    ((3, 13, 1), True)
    """
    m = _PY_RE.match(value.strip())
    if not m:
        raise TargetError(
            f"--py {value!r} is not a Python version; use e.g. 39, 3.9, 3.9.13 or cp39"
        )
    major = int(m.group(1))
    minor = int(m.group(2) if m.group(2) is not None else m.group(4))
    micro = int(m.group(3) or 0)
    if major != 3 or minor < 6:
        raise TargetError(f"--py {value!r}: wheelcache fetches for CPython 3.6 and newer")
    return (major, minor, micro), bool(m.group(5))


def parse_python(value: str) -> tuple[tuple[int, int], bool]:
    """Parse ``39``, ``3.9``, ``cp39``, ``3.13t`` into ``((3, 9), free_threaded)``.

    >>> parse_python("39"), parse_python("3.10"), parse_python("cp312"), parse_python("313t")
    (((3, 9), False), ((3, 10), False), ((3, 12), False), ((3, 13), True))
    """
    (major, minor, _), free_threaded = parse_python_version(value)
    return (major, minor), free_threaded


@dataclass(frozen=True, slots=True)
class _Platform:
    os: str  # "windows" | "linux" | "macos"
    machine: str  # platform.machine() as the target reports it
    platforms: tuple[str, ...]
    glibc: tuple[int, int] | None = None
    macos: tuple[int, int] | None = None


def _manylinux_platforms(arch: str, glibc: tuple[int, int]) -> list[str]:
    """manylinux tags a glibc ``glibc`` host accepts, newest first, legacy aliases included.

    >>> _manylinux_platforms("x86_64", (2, 17))[:3]
    ['manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux_2_16_x86_64']
    """
    floor = _MANYLINUX_FLOOR.get(arch, 17)
    out: list[str] = []
    if glibc[0] != 2:
        raise TargetError(f"glibc {glibc[0]}.{glibc[1]} is not a glibc 2.x version")
    for minor in range(glibc[1], floor - 1, -1):
        out.append(f"manylinux_2_{minor}_{arch}")
        alias = _MANYLINUX_ALIAS.get((2, minor))
        if alias and arch in _ALIAS_ARCHS[(2, minor)]:
            out.append(f"{alias}_{arch}")
    return out


def parse_platform(tag: str, glibc: tuple[int, int] | None = None) -> _Platform:
    """Expand one ``--platform`` tag into everything a host of that kind accepts.

    ``linux_x86_64`` means a glibc Linux host (``glibc`` or 2.28): manylinux wheels up to that
    level and plain ``linux_x86_64`` wheels, never musllinux or another architecture.
    """
    t = tag.strip().lower().replace("-", "_").replace(".", "_")
    if t in _WINDOWS:
        return _Platform("windows", _WINDOWS[t], (t,))
    m = _MANYLINUX_RE.match(t)
    legacy = next((k for k in _LEGACY_MANYLINUX if t.startswith(k + "_")), None)
    if m or legacy or t.startswith("linux_"):
        if m:
            level: tuple[int, int] | None = (int(m.group(1)), int(m.group(2)))
            arch = m.group(3)
        elif legacy:
            level = _LEGACY_MANYLINUX[legacy]
            arch = t[len(legacy) + 1 :]
        else:
            level = None
            arch = t[len("linux_") :]
        if glibc is not None and level is not None and glibc != level:
            raise TargetError(
                f"--platform {tag} already says glibc {level[0]}.{level[1]}; "
                f"drop --glibc {glibc[0]}.{glibc[1]} or the manylinux level"
            )
        g = glibc or level or DEFAULT_GLIBC
        # pip 26 (packaging >= 26.3) prefers a plain linux_<arch> wheel: it was built for
        # exactly such a host.
        plats = [f"linux_{arch}", *_manylinux_platforms(arch, g)]
        return _Platform("linux", arch, tuple(plats), glibc=g)
    m = _MUSL_RE.match(t)
    if m:
        major, minor, arch = int(m.group(1)), int(m.group(2)), m.group(3)
        musl = [f"musllinux_{major}_{n}_{arch}" for n in range(minor, 0, -1)]
        return _Platform("linux", arch, (f"linux_{arch}", *musl))
    m = _MAC_RE.match(t)
    if m:
        version = (int(m.group(1)), int(m.group(2)))
        arch = m.group(3)
        if arch not in ("arm64", "x86_64", "universal2", "intel", "universal"):
            raise TargetError(f"--platform {tag}: unknown macOS architecture {arch!r}")
        cpu = "arm64" if arch == "universal2" else arch
        return _Platform("macos", cpu, tuple(_tags.mac_platforms(version, cpu)), macos=version)
    raise TargetError(f"--platform {tag!r} is not a platform tag; use e.g. {EXAMPLE_PLATFORMS}")


@dataclass(frozen=True)
class Target:
    """A machine to fetch for.  Build one with :func:`make_target`.

    ``tag_list`` may be given (from a target file written on the host itself); otherwise the
    tags are derived from the Python version, ABI and platforms.  ``markers`` overrides
    individual marker values (again from a target file).
    """

    python: tuple[int, int]
    abi: str
    os: str
    machine: str
    platforms: tuple[str, ...]
    variant: str = "cpu"
    glibc: tuple[int, int] | None = None
    macos: tuple[int, int] | None = None
    python_full: str | None = None
    tag_list: tuple[str, ...] | None = None
    markers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def python_tag(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"

    @property
    def platform(self) -> str:
        """The most specific platform tag (what a user would name)."""
        if self.os == "linux" and self.glibc is not None:
            return f"linux_{self.machine}"
        return self.platforms[0]

    @cached_property
    def tags(self) -> tuple[_tags.Tag, ...]:
        """Supported tags, most preferred first."""
        if self.tag_list is not None:
            return tuple(t for s in self.tag_list for t in _tags.parse_tag(s))
        plats = list(self.platforms)
        out = list(_tags.cpython_tags(self.python, [self.abi], plats))
        out += list(_tags.compatible_tags(self.python, self.python_tag, plats))
        return tuple(dict.fromkeys(out))  # drop repeats, keep the first (best) position

    @cached_property
    def tag_priority(self) -> dict[_tags.Tag, int]:
        """Tag → rank (0 is best)."""
        return {t: i for i, t in enumerate(self.tags)}

    @cached_property
    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the *target* (not of this interpreter)."""
        full = self.python_full or f"{self.python[0]}.{self.python[1]}.0"
        sys_platform, system, os_name = {
            "windows": ("win32", "Windows", "nt"),
            "linux": ("linux", "Linux", "posix"),
            "macos": ("darwin", "Darwin", "posix"),
        }[self.os]
        env = {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": os_name,
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": system,
            "platform_version": "",
            "python_full_version": full,
            "python_version": f"{self.python[0]}.{self.python[1]}",
            "sys_platform": sys_platform,
        }
        env.update(dict(self.markers))
        return env

    @property
    def python_version_full(self) -> str:
        return self.marker_environment["python_full_version"]

    @cached_property
    def python_versions(self) -> tuple[str, ...]:
        """The full Python version the target runs, as a one-element tuple.

        ``--py 3.8`` is 3.8.0, as in pip and uv (``Requires-Python: >=3.8.1`` excludes it);
        ``--py 3.8.10`` or a target file names the exact release.
        """
        return (self.python_version_full,)

    @cached_property
    def marker_environments(self) -> tuple[dict[str, str], ...]:
        """One marker environment per entry of :attr:`python_versions`.

        >>> t = make_target(python="39", platform="win_amd64")
        >>> [e["python_full_version"] for e in t.marker_environments]
        ['3.9.0']
        >>> t = make_target(python="3.9.13", platform="win_amd64")
        >>> [e["python_full_version"] for e in t.marker_environments]
        ['3.9.13']
        """
        out = []
        for full in self.python_versions:
            env = dict(self.marker_environment)
            env["python_full_version"] = env["implementation_version"] = full
            out.append(env)
        return tuple(out)

    def describe(self) -> str:
        """``cp39-win_amd64 (cu118)`` — short text for messages."""
        return f"{self.abi}-{self.platform} ({self.variant})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "python": f"{self.python[0]}.{self.python[1]}",
            "abi": self.abi,
            "os": self.os,
            "machine": self.machine,
            "platform": self.platform,
            "platforms": list(self.platforms),
            "variant": self.variant,
            "glibc": f"{self.glibc[0]}.{self.glibc[1]}" if self.glibc else None,
            "macos": f"{self.macos[0]}.{self.macos[1]}" if self.macos else None,
            "markers": self.marker_environment,
        }


def make_target(
    *,
    python: str,
    platform: str,
    variant: str = "cpu",
    glibc: str | None = None,
) -> Target:
    """Build a :class:`Target` from command-line style strings.

    >>> t = make_target(python="39", platform="win_amd64", variant="cu118")
    >>> str(t.tags[0]), t.marker_environment["sys_platform"], t.describe()
    ('cp39-cp39-win_amd64', 'win32', 'cp39-win_amd64 (cu118)')
    """
    (major, minor, micro), free_threaded = parse_python_version(python)
    glibc_v: tuple[int, int] | None = None
    if glibc is not None:
        m = re.match(r"^(\d+)\.(\d+)$", glibc.strip())
        if not m:
            raise TargetError(f"--glibc {glibc!r} is not a version like 2.28")
        glibc_v = (int(m.group(1)), int(m.group(2)))
    plat = parse_platform(platform, glibc_v)
    if glibc_v is not None and plat.os != "linux":
        raise TargetError(f"--glibc applies to Linux platforms, not {platform}")
    abi = f"cp{major}{minor}{'t' if free_threaded else ''}"
    return Target(
        python=(major, minor),
        abi=abi,
        os=plat.os,
        machine=plat.machine,
        platforms=plat.platforms,
        variant=variant,
        glibc=plat.glibc,
        macos=plat.macos,
        python_full=f"{major}.{minor}.{micro}",
    )
