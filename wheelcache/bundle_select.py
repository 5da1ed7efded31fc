"""Which cached wheels a bundle carries, decided without any network.

``name==version`` pins are resolved with their whole dependency closure by the very resolver
``fetch`` uses (:func:`wheelcache.provider.resolve`), with the cache as its only candidate and
metadata source: markers are judged for the target, ``Requires-Python`` is honoured, and torch's
companions follow the variant of a pinned ``+cu118`` build.  The target is, in this order, a
probe file (``--target FILE``), a target the cache recorded when it fetched the wheels
(``--target "cp39-win_amd64 (cu118)"``, as ``wheelcache ls`` shows them, or the one target the
pinned wheels were fetched for), else this machine.  A wheel ``fetch`` chose for a recorded
target counts as fitting it even where the rebuilt target would reject its tags (a host's
glibc is not part of the recorded text).

``--lock FILE`` selects the lines of a hash-pinned requirements file (``fetch`` writes one per
target into ``wheels-v1/``), ``--all`` everything; both can be narrowed to a target.
"""

from __future__ import annotations

import contextlib
import json
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from .cache import Cache
from .catalog import CatalogRow
from .errors import BundleError, WheelcacheError
from .evaluator import Candidate, Evaluation, best_per_version, evaluate_file
from .models import CoreMetadata, DistFile, Sha256, parse_core_metadata
from .provider import Req, resolve
from .publish import read_requirements_file
from .target import Target, make_target
from .variants import TORCH_FAMILY

__all__ = ["BundleSelection", "read_inventory", "select_wheels", "target_of_description"]

_DESCRIPTION = re.compile(r"^(\S+)-(\S+) \((\S+)\)$")  # Target.describe(): cp39-win_amd64 (cu118)


@dataclass(frozen=True)
class BundleSelection:
    """The wheels a bundle carries and what was asked for."""

    rows: tuple[CatalogRow, ...]
    requested: tuple[str, ...]
    targets: tuple[str, ...]  # target descriptions (cp39-win_amd64 (cu118))
    target: Target | None = None  # when a single target is known
    target_document: dict[str, Any] | None = None  # the probe's JSON from --target FILE


class _CacheSource:
    """Candidates and metadata from the cache alone (the resolver's sources, offline)."""

    def __init__(self, cache: Cache, target: Target, variant: str | None, served: set[str]):
        self.cache, self.target, self.variant, self.served = cache, target, variant, served
        self.rows: dict[str, list[CatalogRow]] = {}
        for row in cache.catalog.all():
            self.rows.setdefault(canonicalize_name(row.project), []).append(row)
        self.by_sha: dict[str, CatalogRow] = {r.sha256: r for rs in self.rows.values() for r in rs}

    def find_candidates(self, name: str) -> list[Candidate]:
        out: list[Evaluation] = []
        family = self.variant if name in TORCH_FAMILY else None
        for row in self.rows.get(name, ()):
            f = DistFile(row.filename, row.url, Sha256(row.sha256), size=row.size)
            ev = evaluate_file(f, canonicalize_name(name), self.target, variant=family)
            if ev.ok:
                out.append(ev)
            elif row.sha256 in self.served:  # fetch chose it for this very target
                with contextlib.suppress(InvalidWheelFilename, ValueError):
                    n, v, build, _ = parse_wheel_filename(row.filename)
                    if family is None or v.local in (None, family):
                        cand = Candidate(n, v, f, len(self.target.tags), build)
                        out.append(replace(ev, candidate=cand))
        return best_per_version(out)

    def explain(self, name: str, specifier: SpecifierSet) -> str:
        return f"the cache has no {name}{specifier} wheel for {self.target.describe()}"

    def get_metadata(self, candidate: Candidate) -> CoreMetadata:
        row = self.by_sha[str(candidate.file.sha256)]
        try:
            with zipfile.ZipFile(self.cache.blob_path(row.blake3)) as zf:
                names = [n for n in zf.namelist()
                         if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]  # fmt: skip
                return parse_core_metadata(zf.read(names[0]), source=row.filename)
        except (OSError, IndexError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise BundleError(f"cannot read the METADATA of the cached {row.filename}: {exc}; "
                              "run wheelcache verify") from exc  # fmt: skip


def target_of_description(description: str) -> Target | None:
    """Rebuild a target from its description (``cp39-win_amd64 (cu118)``), if possible."""
    m = _DESCRIPTION.match(description)
    if not m:
        return None
    try:
        return make_target(python=m.group(1), platform=m.group(2), variant=m.group(3))
    except WheelcacheError:
        return None


def _family_variant(reqs: Sequence[Req]) -> str | None:
    """``torch==2.4.0+cu118`` says the variant: companions must be cu118 builds too."""
    for r in reqs:
        if r.name in TORCH_FAMILY:
            for spec in r.specifier:
                with contextlib.suppress(ValueError):
                    local = Version(spec.version.rstrip(".*")).local
                    if local:
                        return local
    return None


def _match_text(text: str, known: Iterable[str]) -> str:
    names = sorted(set(known))
    exact = [t for t in names if t == text]
    found = exact or [t for t in names if text.lower() in t.lower()]
    if len(found) != 1:
        what = "matches several" if found else "matches none"
        raise BundleError(f"--target {text!r} {what} of the targets in the cache "
                          f"({', '.join(found or names) or 'none recorded'}); give one of them "
                          "or a target file from wheelcache probe")  # fmt: skip
    return found[0]


def _resolve(
    cache: Cache,
    requirements: Sequence[str],
    target: Target | None,
    target_text: str | None,
    fallback: Target | None,
) -> tuple[list[CatalogRow], tuple[str, ...], Target]:
    reqs = []
    for text in requirements:
        try:
            reqs.append(Req.from_requirement(Requirement(text)))
        except InvalidRequirement as exc:
            raise BundleError(f"invalid requirement {text!r}: {str(exc).splitlines()[0]}") from exc
    served_by = cache.catalog.targets()
    rows = cache.catalog.all()
    served: set[str] = set()
    description: str | None = None
    if target is None:
        recorded = sorted({t for ts in served_by.values() for t in ts})
        if target_text is not None:
            description = _match_text(target_text, recorded)
        else:
            common: set[str] | None = None
            for r in reqs:
                mine = {t for row in rows if canonicalize_name(row.project) == r.name
                        and r.specifier.contains(row.version, prereleases=True)
                        for t in served_by.get(row.sha256, ())}  # fmt: skip
                common = mine if common is None else common & mine
            if common and len(common) > 1:
                raise BundleError(f"{' '.join(requirements)} was fetched for several targets "
                                  f"({', '.join(sorted(common))}); say which with --target")
            description = next(iter(common)) if common else None
        if description is not None:
            served = {s for s, ts in served_by.items() if description in ts}
            target = target_of_description(description)
            if target is None:
                raise BundleError(f"cannot rebuild the target {description!r}; use --target "
                                  "with a target file from wheelcache probe")  # fmt: skip
        elif fallback is not None:
            target = fallback
        else:
            raise BundleError("no target known for these wheels; give --target")
    variant = _family_variant(reqs) or (target.variant if description else None)
    source = _CacheSource(cache, target, variant, served)
    resolution = resolve(reqs, target, source, source)
    chosen = [source.by_sha[str(c.file.sha256)] for c in resolution.candidates]
    return chosen, (description,) if description else (target.describe(),), target


def select_wheels(
    cache: Cache,
    *,
    requirements: Sequence[str] = (),
    lock: Path | None = None,
    everything: bool = False,
    target: Target | None = None,
    target_text: str | None = None,
    target_document: dict[str, Any] | None = None,
    fallback: Target | None = None,
) -> BundleSelection:
    """Choose the cached wheels for a bundle, without any network.

    *requirements* (``torch==2.4.0+cu118``) are resolved with their whole closure over the
    cache for *target* (a probe file), else for the target the cache says they were fetched
    for (*target_text* picks one), else for *fallback*.  *lock* selects the lines of a
    requirements file (by their ``--hash`` where present); *everything* selects all.
    """
    if sum(map(bool, (requirements, lock, everything))) != 1:
        raise BundleError("give requirements, --lock FILE or --all (one of them)")
    if requirements:
        rows, targets, chosen = _resolve(cache, requirements, target, target_text, fallback)
        wanted = tuple(str(Requirement(r)) for r in requirements)
        return BundleSelection(tuple(rows), wanted, targets, chosen, target_document)
    served_by = cache.catalog.targets()
    pool = cache.catalog.all()
    named: list[str] = []
    if target_text is not None:
        text = _match_text(target_text, {t for ts in served_by.values() for t in ts})
        pool = [r for r in pool if text in served_by.get(r.sha256, ())]
        named = [text]
        target = target or target_of_description(text)
    elif target is not None:
        pool = [r for r in pool if evaluate_file(
            DistFile(r.filename, r.url), canonicalize_name(r.project), target).ok]  # fmt: skip
        named = [target.describe()]
    requested: tuple[str, ...] = ()
    if lock is not None:
        pins = read_requirements_file(lock)
        missing = [p.text for p in pins if not any(p.matches(r) for r in pool)]
        if missing:
            raise BundleError(f"not in the cache{' for that target' if named else ''}: "
                              f"{', '.join(missing)} (fetch them first)")  # fmt: skip
        pool = [r for r in pool if any(p.matches(r) for p in pins)]
        requested = tuple(p.text for p in pins)
    if not pool:
        raise BundleError("nothing in the cache matches; see wheelcache ls")
    if not named:  # the targets every selected wheel was fetched for (a lock has one)
        sets = [set(served_by[r.sha256]) for r in pool if served_by.get(r.sha256)]
        common = set.intersection(*sets) if sets else set()
        named = sorted(common or set().union(*sets))
        if len(common) == 1:
            target = target_of_description(named[0])
    return BundleSelection(tuple(pool), requested, tuple(named), target, target_document)


def read_inventory(path: Path) -> frozenset[str]:
    """The sha256 digests of what the other side has, from its ``wheelcache ls --json``."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read the inventory {path}: {exc}") from exc
    wheels = data.get("wheels") if isinstance(data, dict) else data
    if not isinstance(wheels, list) or not all(isinstance(w, dict) for w in wheels):
        raise BundleError(f"{path} is not the output of wheelcache ls --json")
    return frozenset(
        str(w["sha256"]).lower()
        for w in wheels
        if isinstance(w.get("sha256"), str) and w.get("present", True)
    )
