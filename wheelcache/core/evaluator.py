"""Judge index files for a target: keep or reject (with a reason), and rank what is kept.

The split follows unearth: pages are collected elsewhere, this module judges one file at a time
and picks the best file per version.  A rejection is data, so that "no wheel fits" can say why.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from wheelcache.core.models import DistFile
from wheelcache.core.target import Target

__all__ = [
    "Candidate",
    "Evaluation",
    "best_per_version",
    "describe_availability",
    "evaluate_file",
    "variant_mismatch",
    "variant_wheels",
]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A wheel that fits the target: the unit resolution chooses between."""

    name: NormalizedName
    version: Version
    file: DistFile
    tag_rank: int
    build: tuple[int, str] | tuple[()] = ()

    @property
    def sort_key(self) -> tuple[Version, int, tuple[int, str] | tuple[()]]:
        """Higher is better: newest version, then best tag, then highest build tag."""
        return (self.version, -self.tag_rank, self.build)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The verdict on one file: a candidate, or the reason it was rejected."""

    file: DistFile
    candidate: Candidate | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.candidate is not None


def _reject(file: DistFile, reason: str) -> Evaluation:
    return Evaluation(file, None, reason)


def evaluate_file(
    file: DistFile,
    project: NormalizedName,
    target: Target,
    *,
    variant: str | None = None,
) -> Evaluation:
    """Keep or reject one file for *target*.

    *variant* is set for files of a per-variant PyTorch index: a wheel whose local version names
    another variant (``+cu117`` on the cu118 page) is rejected, and so is a plain wheel without
    a local version unless the variant is ``cpu`` (macOS and aarch64 CPU wheels carry none).

    >>> from wheelcache.core.target import make_target
    >>> t = make_target(python="39", platform="win_amd64", variant="cu118")
    >>> f = DistFile("torch-2.4.0+cu118-cp310-cp310-win_amd64.whl", "https://h.invalid/t.whl")
    >>> evaluate_file(f, "torch", t, variant="cu118").reason
    'built for cp310-cp310-win_amd64, target is cp39-win_amd64 (cu118)'
    """
    if not file.is_wheel:
        return _reject(file, "source distribution (wheelcache fetches wheels only)")
    try:
        name, version, build, tags = parse_wheel_filename(file.filename)
    except (InvalidWheelFilename, ValueError) as exc:
        return _reject(file, f"invalid wheel filename: {exc}")
    if name != project:
        return _reject(file, f"belongs to {name}, not {project}")
    if file.requires_python:
        fits = _python_fits(file.requires_python, target.python_versions)
        if fits is None:
            return _reject(file, f"invalid requires-python {file.requires_python!r}")
        if not fits:
            return _reject(file, f"requires Python {file.requires_python}")
    ranks = [target.tag_priority[t] for t in tags if t in target.tag_priority]
    if not ranks:
        shown = ", ".join(sorted(str(t) for t in tags)[:3])
        return _reject(file, f"built for {shown}, target is {target.describe()}")
    mismatch = variant_mismatch(version, variant)
    if mismatch:
        return _reject(file, mismatch)
    return Evaluation(file, Candidate(name, version, file, min(ranks), build))


@functools.lru_cache(maxsize=4096)
def _python_fits(requires_python: str, versions: tuple[str, ...]) -> bool | None:
    """Whether a ``Requires-Python`` admits one of *versions* (None: it does not parse).

    Remembered: a project's files repeat a handful of these strings, and a big page (a
    thousand files) would otherwise parse each one again (issue 15's resolution benchmark).
    """
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return None
    return any(spec.contains(v, prereleases=True) for v in versions)


def variant_mismatch(version: Version, variant: str | None) -> str | None:
    """Why a wheel of *version* is not a *variant* build (None when it is, or no variant).

    A local version naming another variant never is; a plain version only for ``cpu``, whose
    macOS and aarch64 wheels carry no local version.

    >>> variant_mismatch(Version("2.4.0+cu117"), "cu118")
    'built for +cu117, not cu118'
    >>> variant_mismatch(Version("2.4.0"), "cpu") is None
    True
    """
    if variant is None:
        return None
    if version.local is not None and version.local != variant:
        return f"built for +{version.local}, not {variant}"
    if version.local is None and variant != "cpu":
        return f"plain build without +{variant} (not a {variant} build)"
    return None


def variant_wheels(
    files: Iterable[DistFile], project: NormalizedName, variant: str | None
) -> Iterator[tuple[DistFile, Version, frozenset[Tag]]]:
    """The wheels of *project* among *files* that are *variant* builds, parsed."""
    for f in files:
        if not f.is_wheel:
            continue
        try:
            name, version, _, tags = parse_wheel_filename(f.filename)
        except (InvalidWheelFilename, ValueError):
            continue
        if name == project and variant_mismatch(version, variant) is None:
            yield f, version, tags


def best_per_version(evaluations: Iterable[Evaluation]) -> list[Candidate]:
    """One candidate per version (best tag, then highest build tag), newest version first."""
    best: dict[Version, Candidate] = {}
    for ev in evaluations:
        c = ev.candidate
        if c is None:
            continue
        cur = best.get(c.version)
        if cur is None or c.sort_key > cur.sort_key:
            best[c.version] = c
    return sorted(best.values(), key=lambda c: c.sort_key, reverse=True)


_PY_TAG = re.compile(r"^cp(\d)(\d+)")


def _python_range(interpreters: set[str]) -> str:
    cps = sorted(
        {(int(m.group(1)), int(m.group(2))) for i in interpreters if (m := _PY_TAG.match(i))}
    )
    if not cps:
        return ", ".join(sorted(interpreters)) or "no Python"
    if len(cps) == 1:
        return f"cp{cps[0][0]}{cps[0][1]}"
    return f"cp{cps[0][0]}{cps[0][1]}–cp{cps[-1][0]}{cps[-1][1]}"


def describe_availability(
    project: str,
    files: Sequence[DistFile],
    target: Target,
    specifier: SpecifierSet | None = None,
    *,
    variant: str | None = None,
) -> str:
    """Explain which Pythons and platforms the newest version matching *specifier* has wheels
    for (on a per-variant index only the files of *variant* count).

    >>> from wheelcache.core.target import make_target
    >>> fs = [DistFile(f"torch-2.4.0+cu118-cp{v}-cp{v}-{p}.whl", "u")
    ...       for v in (38, 312) for p in ("win_amd64", "linux_x86_64")]
    >>> mac = make_target(python="39", platform="macosx_11_0_arm64")
    >>> print(describe_availability("torch", fs, mac))  # doctest: +NORMALIZE_WHITESPACE
    torch 2.4.0+cu118 has wheels for cp38–cp312 on linux_x86_64 and win_amd64; none for cp39
    on macosx_11_0_arm64
    """
    by_version: dict[Version, list[frozenset[Tag]]] = {}
    for _, ver, tags in variant_wheels(files, canonicalize_name(project), variant):
        if specifier is None or specifier.contains(ver, prereleases=True):
            by_version.setdefault(ver, []).append(tags)
    want = f"none for {target.abi} on {target.platform}"
    if not by_version:
        what = f"{project}{specifier or ''}"
        where = f" for {variant}" if variant else ""
        return f"{what} has no wheels on the index{where}; {want}"
    newest = max(by_version)
    interps = {t.interpreter for tags in by_version[newest] for t in tags}
    plats = sorted({t.platform for tags in by_version[newest] for t in tags})
    plat_text = " and ".join(plats) if len(plats) <= 2 else ", ".join(plats)
    return f"{project} {newest} has wheels for {_python_range(interps)} on {plat_text}; {want}"
