"""``wheelcache matrix``: which torch/torchvision/torchaudio sets exist, for which Pythons and
platforms, computed from the index pages and the companions' own metadata.

The question users answer today by searching a web page by hand: "which version can I get for
cu118 and Python 3.9 on Windows?".  For each variant the three project pages are read; each
torchvision and torchaudio version's torch pin comes from one of its wheels' METADATA (PEP 658
file or a range read, cached like everything else), so the pairing is the wheels' own, not a
table.  A set exists for a (Python, platform) when all three have a wheel for it.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.tags import Tag
from packaging.utils import (
    NormalizedName,
    canonicalize_name,
)
from packaging.version import Version

from wheelcache.core.companions import torch_line_for, torch_pin
from wheelcache.core.evaluator import Candidate, variant_wheels
from wheelcache.core.models import CoreMetadata, DistFile, ProjectPage
from wheelcache.core.target import make_target
from wheelcache.core.variants import build_variant, torch_index_for
from wheelcache.errors import IndexPageError, TargetError, WheelcacheError
from wheelcache.net.client import Http
from wheelcache.net.finder import WheelMetadata
from wheelcache.net.indexes import Indexes, Sources
from wheelcache.net.pages import PageStore
from wheelcache.store.cache import Cache

__all__ = ["MatrixRow", "VariantMatrix", "build_matrix", "platform_family"]

log = logging.getLogger(__name__)

TORCH, VISION, AUDIO = (canonicalize_name(n) for n in ("torch", "torchvision", "torchaudio"))


def platform_family(platform: str) -> str:
    """Group platform tags the way users name machines.

    >>> [platform_family(p) for p in ("manylinux_2_28_x86_64", "linux_x86_64",
    ...  "manylinux2014_aarch64", "win_amd64", "macosx_11_0_arm64", "any")]
    ['linux_x86_64', 'linux_x86_64', 'linux_aarch64', 'win_amd64', 'macosx_arm64', 'any']
    """
    if platform.startswith(("manylinux", "linux_")):
        arch = (
            platform.split("_", 3)[-1]
            if platform.startswith("manylinux_")
            else (platform.split("_", 1)[1])
        )
        return f"linux_{arch}"
    if platform.startswith("macosx_"):
        arch = platform.split("_", 3)[-1]
        return f"macosx_{'arm64' if arch in ('arm64', 'universal2') else arch}"
    return platform


def _python_of(tag: Tag) -> str:
    """``cp39`` for ``cp39-cp39-…``, ``cp313t`` for the free-threaded ABI, else the tag."""
    return tag.abi if tag.abi.startswith("cp") else tag.interpreter


def _py_key(py: str) -> tuple[int, int, str]:
    digits = "".join(ch for ch in py[2:] if ch.isdigit())
    return (int(digits[:1] or 0), int(digits[1:] or 0), py)


Slots = dict[str, set[str]]  # platform family -> Pythons


@dataclass(frozen=True)
class MatrixRow:
    torch: str
    torchvision: str | None
    torchaudio: str | None
    available: dict[str, tuple[str, ...]]  # platform family -> Pythons with all three

    def to_dict(self) -> dict[str, Any]:
        return {
            "torch": self.torch,
            "torchvision": self.torchvision,
            "torchaudio": self.torchaudio,
            "available": {k: list(v) for k, v in self.available.items()},
        }


@dataclass(frozen=True)
class VariantMatrix:
    variant: str
    index: str
    rows: tuple[MatrixRow, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "index": self.index,
            "sets": [r.to_dict() for r in self.rows],
        }


_Wheel = tuple[DistFile, frozenset[Tag], Version]  # file, its tags, its full version
_ByVersion = dict[Version, list[_Wheel]]


def _wheels_by_version(
    page: ProjectPage | None, project: NormalizedName, variant: str | None
) -> dict[Version, list[_Wheel]]:
    """Wheels per *public* version: a variant page's ``2.4.0+cpu`` Linux/Windows wheels and
    its plain ``2.4.0`` macOS/aarch64 wheels are one release."""
    out: dict[Version, list[_Wheel]] = {}
    for f, version, tags in variant_wheels(page.files if page else (), project, variant):
        if not version.is_devrelease:
            out.setdefault(Version(version.public), []).append((f, tags, version))
    return out


def _label(wheels: Sequence[_Wheel]) -> str:
    """The version users see: the one with the variant's local part when there is one."""
    return str(max((w[2] for w in wheels), key=lambda v: (v.local is not None, v)))


def _slots(files: Iterable[_Wheel]) -> Slots:
    slots: Slots = {}
    for _, tags, _v in files:
        for t in tags:
            slots.setdefault(platform_family(t.platform), set()).add(_python_of(t))
    return slots


def _intersect(a: Slots, b: Slots) -> Slots:
    out: Slots = {}
    for plat in a.keys() & b.keys():
        both = a[plat] & b[plat]
        if both:
            out[plat] = both
    return out


def _with_any(slots: Slots, base: Slots) -> Slots:
    """Pure-Python companions (``py3-none-any``) fit every platform torch has."""
    if "any" not in slots:
        return slots
    merged = {k: set(v) for k, v in slots.items() if k != "any"}
    for plat, pys in base.items():
        merged.setdefault(plat, set()).update(pys)
    return merged


def pair_companions(
    torch_versions: Mapping[Version, Sequence[Version]], pins: Mapping[Version, str | None]
) -> dict[Version, Version]:
    """For each torch release, the newest companion release whose torch pin matches it.

    *torch_versions* maps a public version to the full versions of its wheels; *pins* maps a
    companion version to its ``torch`` requirement's specifier text.

    >>> pair_companions({Version("2.4.0"): [Version("2.4.0+cu118")]},
    ...                 {Version("0.19.0"): "==2.4.0+cu118", Version("0.20.0"): "==2.5.0"})
    {<Version('2.4.0')>: <Version('0.19.0')>}
    """
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    out: dict[Version, Version] = {}
    for comp in sorted(pins, reverse=True):
        text = pins[comp]
        if text is None:
            continue
        try:
            spec = SpecifierSet(text)
        except InvalidSpecifier:
            continue
        for t, fulls in torch_versions.items():
            if t not in out and any(spec.contains(v, prereleases=True) for v in fulls):
                out[t] = comp
    return out


def _companion_metadata(
    metadata: WheelMetadata, project: NormalizedName, files: Sequence[_Wheel]
) -> CoreMetadata | None:
    """The METADATA of one wheel of this companion release (None: unreadable, said once)."""
    f, _tags, version = sorted(files, key=lambda w: (not w[0].core_metadata, w[0].filename))[0]
    try:
        return metadata.get_metadata(Candidate(project, version, f, 0))
    except WheelcacheError as exc:
        log.warning("%s: cannot read its metadata (%s); left out of the matrix", f.filename, exc)
        return None


def _first_upload(wheels: Sequence[_Wheel]) -> str | None:
    times = [w[0].upload_time for w in wheels if w[0].upload_time]
    return min(times) if times else None


def companion_specs(
    name: NormalizedName,
    found: Mapping[Version, CoreMetadata | None],
    by_companion: _ByVersion,
    by_torch: _ByVersion,
) -> dict[Version, str | None]:
    """Each companion release's torch specifier, by the rule ``fetch`` follows
    (:mod:`wheelcache.core.companions`): its own exact pin where it has one; a release that
    pins no torch exactly (``torchvision 0.11.3`` requires a bare ``torch``) goes with the
    torch line derived from the index, not with every torch."""
    pins = {v: p for v, md in found.items() if md is not None and (p := torch_pin(md))}
    uploads = {v: t for v, w in by_companion.items() if (t := _first_upload(w))}
    torch_uploads = {v: t for v, w in by_torch.items() if (t := _first_upload(w))}
    out: dict[Version, str | None] = {}
    for version, md in found.items():
        if md is None:
            out[version] = None
        elif version in pins:
            exact = [
                str(r.specifier)
                for r in md.requires_dist
                if canonicalize_name(r.name) == TORCH and r.marker is None
            ]
            out[version] = exact[0] if exact else f"=={pins[version]}"
        else:
            line = torch_line_for(
                name,
                version,
                pins=pins,
                torch_versions=set(by_torch),
                companion_uploads=uploads,
                torch_uploads=torch_uploads,
            )
            out[version] = str(line.specifier)
    return out


def _variant_matrix(
    variant: str, template: str, store: PageStore, jobs: int
) -> list[VariantMatrix]:
    """The variant's table; for a plain index (no ``{variant}``), one table per variant its
    torch builds turn out to be (see :func:`_plain_builds`)."""
    url, per_variant = torch_index_for(template, variant or "cpu")
    indexes = Indexes(Sources(url, per_variant, ()), store, variant or "cpu")
    metadata = WheelMetadata(store.cache, store.http, None)
    local = variant if per_variant else None
    try:
        pages = {p: indexes.page(p) for p in (TORCH, VISION, AUDIO)}
    except TargetError:
        return []  # this variant does not exist on the index
    if pages[TORCH] is None:
        return []
    by = {p: _wheels_by_version(pages[p], p, local) for p in pages}
    fulls = {t: [w[2] for w in wheels] for t, wheels in by[TORCH].items()}
    pairs: dict[NormalizedName, dict[Version, Version]] = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        for comp in (VISION, AUDIO):
            futs = {
                v: pool.submit(_companion_metadata, metadata, comp, files)
                for v, files in by[comp].items()
            }
            found = {v: fut.result() for v, fut in futs.items()}
            specs = companion_specs(comp, found, by[comp], by[TORCH])
            pairs[comp] = pair_companions(fulls, specs)
        if per_variant:
            return [VariantMatrix(variant, url, _rows(by, by[TORCH], pairs))]
        builds = _plain_builds(metadata, by[TORCH], pool)
    return [VariantMatrix(v, url, _rows(by, torch_by, pairs)) for v, torch_by in builds.items()]


def _rows(
    by: Mapping[NormalizedName, _ByVersion],
    torch_by: _ByVersion,
    pairs: Mapping[NormalizedName, Mapping[Version, Version]],
) -> tuple[MatrixRow, ...]:
    rows = []
    for t in sorted(torch_by, reverse=True):
        tv, ta = pairs[VISION].get(t), pairs[AUDIO].get(t)
        slots = _slots(torch_by[t])
        for comp, version in ((VISION, tv), (AUDIO, ta)):
            slots = (
                _intersect(slots, _with_any(_slots(by[comp][version]), slots)) if version else {}
            )
        rows.append(
            MatrixRow(
                _label(torch_by[t]),
                _label(by[VISION][tv]) if tv else None,
                _label(by[AUDIO][ta]) if ta else None,
                {k: tuple(sorted(v, key=_py_key)) for k, v in sorted(slots.items())},
            )
        )
    return tuple(rows)


def _plain_builds(
    metadata: WheelMetadata, torch_by: _ByVersion, pool: concurrent.futures.Executor
) -> dict[str, _ByVersion]:
    """A plain index's torch wheels by the variant each build is: one wheel's metadata per
    release and platform family decides, with markers judged for that platform
    (:func:`~wheelcache.core.variants.build_variant`, the rule ``fetch`` follows).  Variants
    come newest torch first."""
    groups: dict[tuple[Version, str], list[_Wheel]] = {}
    for t, wheels in torch_by.items():
        for w in wheels:
            for family in {platform_family(tag.platform) for tag in w[1]}:
                groups.setdefault((t, family), []).append(w)
    keys = list(groups)
    found = pool.map(lambda key: _build_of(metadata, groups[key]), keys)
    out: dict[str, _ByVersion] = {}
    for (t, _family), variant in sorted(zip(keys, found, strict=True), reverse=True):
        if variant is not None:
            out.setdefault(variant, {}).setdefault(t, []).extend(groups[(t, _family)])
    return out


def _build_of(metadata: WheelMetadata, wheels: Sequence[_Wheel]) -> str | None:
    """Which variant one release's build for one platform family is (None: unknown)."""
    f, tags, version = sorted(wheels, key=lambda w: (not w[0].core_metadata, w[0].filename))[0]
    tag = min(tags, key=str)
    digits = "".join(ch for ch in _python_of(tag)[2:] if ch.isdigit())
    try:
        target = make_target(python=f"{digits[:1]}.{digits[1:]}", platform=tag.platform)
        md = metadata.get_metadata(Candidate(TORCH, version, f, 0))
    except (WheelcacheError, ValueError) as exc:
        log.warning("%s: cannot tell which build it is (%s); left out", f.filename, exc)
        return None
    return build_variant(version, md.requires_dist, target.marker_environments)


def build_matrix(
    variants: Sequence[str],
    *,
    torch_index: str,
    cache: Cache,
    http: Http | None,
    jobs: int = 8,
    explicit: bool = True,
) -> list[VariantMatrix]:
    """The matrix for each variant the index has (missing variants are left out).

    *http* is the command's one client (None offline); one page store serves every variant.
    An index URL without ``{variant}`` is one index: one table per variant its torch builds
    are (read from the wheels), of those in *variants* when they were given explicitly.
    Offline, a variant whose pages were never fetched is left out unless it was asked for
    (*variants* given explicitly): then it is an error naming the page.
    """
    pages = PageStore(cache, http)
    if "{variant}" not in torch_index:
        found = _variant_matrix("", torch_index, pages, jobs)
        return [m for m in found if not explicit or m.variant in variants]
    out = []
    for v in variants:
        try:
            out += _variant_matrix(v, torch_index, pages, jobs)
        except IndexPageError:
            if http is None and not explicit:
                continue
            raise
    return out


def filter_rows(
    matrices: Sequence[VariantMatrix], *, python: str | None, platform: str | None
) -> list[VariantMatrix]:
    """Keep only the sets that exist for *python* (``cp39``) and/or *platform* family."""
    out = []
    for m in matrices:
        rows = []
        for r in m.rows:
            avail = {
                plat: pys
                for plat, pys in r.available.items()
                if (platform is None or plat == platform) and (python is None or python in pys)
            }
            if avail and r.torchvision and r.torchaudio:
                rows.append(MatrixRow(r.torch, r.torchvision, r.torchaudio, avail))
        out.append(VariantMatrix(m.variant, m.index, tuple(rows)))
    return out
