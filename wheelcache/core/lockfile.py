"""PEP 751 lock files (``pylock.toml``): the wheels a lock gives a target.

Reading and validating are :mod:`packaging.pylock`'s (``Pylock.from_dict``), not a parser of
ours; TOML bytes become a dict at the edge (``tomllib``), and this module goes from there:

* :func:`select_locked` takes exactly what the lock says for a target, with no resolution:
  ``requires-python`` and ``environments`` must hold for the target, each package's ``marker``
  is judged in the target's environment, and of a package's ``wheels`` the one with the best
  tag for the target is taken.  Everything the lock cannot give as a wheel (sdists, VCS,
  directories, source archives) and every package with no wheel for the target is collected
  and refused in one line, before anything is fetched.  Each chosen wheel must carry a sha256
  (it is what the download is checked against), a safe filename, and an http(s) ``url`` or a
  relative ``path`` that stays beside the lock.
* Writing a lock is :mod:`wheelcache.core.lockwrite`'s.

Marker evaluation follows the provider: a marker holds when it holds on some patch release the
target may run (``--py 3.9`` is "some 3.9").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename

from wheelcache.core.layout import safe_filename
from wheelcache.core.models import Sha256
from wheelcache.core.target import Target
from wheelcache.core.variants import TORCH_FAMILY, variant_or_none
from wheelcache.errors import LockFileError

if TYPE_CHECKING:  # packaging.pylock (about 7 ms) is imported when a lock is read: a fetch
    # that only writes one (lock_filename, LockedWheel) never loads it
    from packaging.pylock import Package, PackageWheel, Pylock

__all__ = [
    "LockSelection",
    "LockedWheel",
    "lock_filename",
    "lock_variant",
    "parse_pylock",
    "select_locked",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NO_BUILDS = (
    "wheelcache fetches wheels only; lock with wheels (e.g. uv pip compile --only-binary :all:) "
    "or build wheels and publish them"
)


@dataclass(frozen=True, slots=True)
class LockedWheel:
    """One wheel of a lock: chosen for a target (reading) or fetched (writing).

    ``path`` is as the lock writes it: relative to the lock file, ``/``-separated.
    ``upload_time`` is the index's ISO 8601 text.
    """

    project: NormalizedName
    version: str
    filename: str
    sha256: Sha256
    url: str | None = None
    path: str | None = None
    size: int | None = None
    upload_time: str | None = None


@dataclass(frozen=True, slots=True)
class LockSelection:
    """What a lock gives one target: the wheels, and the packages whose marker left them out."""

    wheels: tuple[LockedWheel, ...]
    skipped: tuple[NormalizedName, ...] = ()


def lock_filename(target: Target) -> str:
    """``pylock.<variant>-<abi>-<platform>.toml``; PEP 751 allows no dot in the middle part,
    so a dotted variant (``rocm6.1``) is written with ``_``.

    >>> from wheelcache.core.target import make_target
    >>> lock_filename(make_target(python="39", platform="win_amd64", variant="cu118"))
    'pylock.cu118-cp39-win_amd64.toml'
    >>> lock_filename(make_target(python="310", platform="linux_x86_64", variant="rocm6.1"))
    'pylock.rocm6_1-cp310-linux_x86_64.toml'
    """
    middle = f"{target.variant}-{target.abi}-{target.platform}".replace(".", "_")
    return f"pylock.{middle}.toml"


def lock_variant(lock: Pylock) -> tuple[str, str] | None:
    """The PyTorch variant a lock's torch builds carry (``+cu118``), and where, when they all
    carry the same one; None otherwise (a CPU-only or torch-less lock, or a mix)."""
    found: dict[str, str] = {}
    for package in lock.packages:
        if package.name in TORCH_FAMILY and package.version is not None:
            variant = variant_or_none(package.version.local)
            if variant is not None:
                found.setdefault(variant, f"the lock's {package.name} {package.version}")
    return next(iter(found.items())) if len(found) == 1 else None


# -- reading -----------------------------------------------------------------------------------
def parse_pylock(data: Mapping[str, Any], *, source: str) -> Pylock:
    """A TOML document (as a dict) → a validated :class:`~packaging.pylock.Pylock`."""
    from packaging.pylock import Pylock, PylockUnsupportedVersionError, PylockValidationError

    try:
        return Pylock.from_dict(data)
    except PylockUnsupportedVersionError as exc:
        raise LockFileError(
            source,
            f"lock-version {data.get('lock-version')!r} is not one wheelcache reads (1.x): "
            "write the lock with a tool that targets PEP 751 version 1",
        ) from exc
    except PylockValidationError as exc:
        raise LockFileError(source, f"not a valid PEP 751 lock: {exc}") from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise LockFileError(source, f"not a valid PEP 751 lock: {exc}") from exc


def _python_text(target: Target) -> str:
    versions = target.python_versions
    return versions[0] if len(versions) == 1 else target.marker_environment["python_version"]


def _holds(marker: Marker, target: Target, context: str, extra: Mapping[str, Any]) -> bool:
    return any(
        marker.evaluate({**env, **extra}, context)  # type: ignore[arg-type]
        for env in target.marker_environments
    )


def _check_lock(lock: Pylock, target: Target, source: str) -> None:
    """``requires-python`` and ``environments`` against the target (an error, as PEP 751
    says an installer must raise)."""
    spec = lock.requires_python
    if spec is not None and not any(
        spec.contains(v, prereleases=True) for v in target.python_versions
    ):
        raise LockFileError(
            source,
            f"the lock requires Python {spec} but the target {target.describe()} has Python "
            f"{_python_text(target)}: lock for that Python, or fetch for one the lock fits (--py)",
        )
    if lock.environments is not None:
        try:
            fits = any(_holds(m, target, "requirement", {}) for m in lock.environments)
        except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker) as exc:
            raise LockFileError(source, f"cannot judge its environments: {exc}") from exc
        if not fits:
            shown = " or ".join(f"({m})" for m in lock.environments)
            raise LockFileError(
                source,
                f"the lock is for the environments {shown}; the target {target.describe()} "
                "is none of them (lock for the target, or fetch for an environment it names)",
            )


def _wheel_problem(wheel: PackageWheel) -> str | None:
    """Why a chosen wheel entry cannot be fetched safely, or None."""
    try:
        safe_filename(wheel.filename)
    except ValueError as exc:
        return str(exc)
    sha = wheel.hashes.get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha.lower()):
        given = ", ".join(sorted(wheel.hashes)) or "none"
        return f"{wheel.filename} has no valid sha256 hash (given: {given})"
    if wheel.url is not None and urlsplit(wheel.url).scheme not in ("http", "https"):
        return f"{wheel.filename}: url {wheel.url!r} is not http(s)"
    if wheel.path is not None:  # read beside the lock only: never elsewhere on the disk
        posix, win = PurePosixPath(wheel.path), PureWindowsPath(wheel.path)
        if posix.is_absolute() or win.is_absolute() or win.drive or ".." in win.parts:
            return f"{wheel.filename}: path {wheel.path!r} is not relative to the lock"
    return None


def _archive_wheel(package: Package) -> PackageWheel | None:
    """A package locked as a direct archive that is a wheel (``name @ https://…/x.whl``)."""
    archive = package.archive
    if archive is None:
        return None
    name = unquote((archive.path or urlsplit(archive.url or "").path).replace("\\", "/"))
    name = name.rsplit("/", 1)[-1]
    if not name.endswith(".whl"):
        return None
    from packaging.pylock import PackageWheel

    return PackageWheel(
        name=name,
        url=archive.url,
        path=archive.path,
        size=archive.size,
        upload_time=archive.upload_time,
        hashes=archive.hashes,
    )


def _best_wheel(package: Package, target: Target) -> PackageWheel | None:
    ranked: list[tuple[int, int, PackageWheel]] = []
    for i, wheel in enumerate(package.wheels or ()):
        tags = parse_wheel_filename(wheel.filename)[3]  # validated by packaging
        ranks = [target.tag_priority[t] for t in tags if t in target.tag_priority]
        if ranks:
            ranked.append((min(ranks), i, wheel))
    return min(ranked, key=lambda r: (r[0], r[1]))[2] if ranked else None


def _label(package: Package) -> str:
    return f"{package.name} {package.version}" if package.version else str(package.name)


def _without_wheel(package: Package, target: Target) -> str | None:
    """Why *package* has no wheel for *target* (None when it has one)."""
    if package.wheels and _best_wheel(package, target) is not None:
        return None
    if package.wheels:
        plats = sorted(
            {t.platform for w in package.wheels for t in parse_wheel_filename(w.filename)[3]}
        )
        shown = ", ".join(plats[:3]) + (" …" if len(plats) > 3 else "")
        extra = "; its sdist would need a build" if package.sdist else ""
        return f"{_label(package)} (wheels for {shown}{extra})"
    return None


def _needs_build(package: Package) -> str | None:
    if package.vcs is not None:
        return f"{_label(package)} ({package.vcs.type} checkout)"
    if package.directory is not None:
        return f"{_label(package)} (directory {package.directory.path})"
    if package.archive is not None and _archive_wheel(package) is None:
        return f"{_label(package)} (source archive)"
    if package.sdist is not None and not package.wheels:
        return f"{_label(package)} (sdist only)"
    return None


def _applies(package: Package, target: Target, groups: frozenset[str], source: str) -> bool:
    if package.marker is None:
        return True
    extra = {"extras": frozenset(), "dependency_groups": groups}
    try:
        return _holds(package.marker, target, "lock_file", extra)
    except (UndefinedComparison, UndefinedEnvironmentName) as exc:
        raise LockFileError(source, f"cannot judge the marker of {package.name}: {exc}") from exc


def _selected(lock: Pylock, target: Target, source: str) -> tuple[list[Package], list[str]]:
    groups = frozenset(canonicalize_name(g) for g in lock.default_groups or ())
    chosen: dict[NormalizedName, int] = {}
    packages: list[Package] = []
    skipped: list[str] = []
    for i, package in enumerate(lock.packages):
        if not _applies(package, target, groups, source):
            skipped.append(package.name)
            continue
        spec = package.requires_python
        if spec is not None and not any(spec.contains(v, True) for v in target.python_versions):
            raise LockFileError(
                source,
                f"{_label(package)} requires Python {spec} but the target "
                f"{target.describe()} has Python {_python_text(target)}",
            )
        if package.name in chosen:
            raise LockFileError(
                source,
                f"{package.name} is selected twice for {target.describe()} "
                f"(packages[{chosen[package.name]}] and packages[{i}])",
            )
        chosen[package.name] = i
        packages.append(package)
    return packages, skipped


def select_locked(lock: Pylock, target: Target, *, source: str) -> LockSelection:
    """The wheels *lock* gives *target*; see the module docstring for every refusal."""
    _check_lock(lock, target, source)
    packages, skipped = _selected(lock, target, source)
    builds = [b for p in packages if (b := _needs_build(p))]
    if builds:
        raise LockFileError(
            source, f"cannot fetch without a build: {', '.join(builds)}; {_NO_BUILDS}"
        )
    uncovered = [w for p in packages if (w := _without_wheel(p, target))]
    if uncovered:
        raise LockFileError(
            source,
            f"the lock does not cover {target.describe()}: no usable wheel for "
            f"{', '.join(uncovered)} (lock for this target, e.g. uv pip compile "
            "--python-platform …)",
        )
    wheels: list[LockedWheel] = []
    for package in packages:
        wheel = _archive_wheel(package) or _best_wheel(package, target)
        assert wheel is not None
        problem = _wheel_problem(wheel)
        if problem is not None:
            raise LockFileError(source, f"{package.name}: {problem}")
        version = package.version or parse_wheel_filename(wheel.filename)[1]
        wheels.append(
            LockedWheel(
                project=package.name,
                version=str(version),
                filename=wheel.filename,
                sha256=Sha256(wheel.hashes["sha256"].lower()),
                url=wheel.url,
                path=wheel.path,
                size=wheel.size,
                upload_time=wheel.upload_time.isoformat() if wheel.upload_time else None,
            )
        )
    wheels.sort(key=lambda w: w.project)
    return LockSelection(tuple(wheels), tuple(canonicalize_name(s) for s in skipped))
