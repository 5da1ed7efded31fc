"""Which cached wheels a bundle carries, decided without any network.

``name==version`` pins are resolved with their whole dependency closure by the very resolver
``fetch`` uses (:func:`wheelcache.core.provider.resolve`), with the cache as its only candidate and
metadata source: markers are judged for the target, ``Requires-Python`` is honoured, and torch's
companions follow the variant of a pinned ``+cu118`` build.  The target is, in this order, a
probe file (``--target FILE``), a target the cache recorded when it fetched the wheels
(``--target "cp39-win_amd64 (cu118)"``, as ``wheelcache ls`` shows them, or the one target the
pinned wheels were fetched for), else this machine.  A wheel ``fetch`` chose for a recorded
target counts as fitting it even where the rebuilt target would reject its tags (a host's
glibc is not part of the recorded text).

The PyTorch variant (cpu, cu121 …) is part of the target, and a cache often holds several
builds of one torch that all fit the same host's tags.  A recorded target names its variant;
otherwise it is the one the pins name (``+cu118``), ``--cuda``/``--cpu``/``--variant`` (or
``--cuda auto``: the probe file's driver decides among the CUDA builds the cache holds), or
the only one the cache holds for the target.  When several fit and none was named, the
selection is refused: silently taking the highest local version once shipped ``+cu121``
wheels and ``nvidia-*`` wheels in a bundle labelled "(cpu)".  For ``--all`` and ``-r`` the
variant also leaves out wheels the cache recorded only for targets of other variants (the
``nvidia-*`` wheels of a CUDA build).

``-r FILE`` selects the lines of a requirements file (``fetch`` writes a hash-pinned one per
target into ``wheels-v1/``) or the wheels of a PEP 751 lock (for a known target, the ones the
lock gives it), ``--all`` everything; both can be narrowed to a target.  Wheels
recorded for several targets that do not share them are grouped per target
(:attr:`BundleSelection.per_target`), since one requirements file is right for one target only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from wheelcache.core.cuda import AUTO, cuda_version_of
from wheelcache.core.evaluator import (
    Candidate,
    Evaluation,
    best_per_version,
    evaluate_file,
    variant_mismatch,
)
from wheelcache.core.lockfile import select_locked
from wheelcache.core.models import CoreMetadata, DistFile, Sha256, parse_core_metadata
from wheelcache.core.provider import Req, resolve
from wheelcache.core.target import Target, make_target
from wheelcache.core.variants import TORCH_FAMILY
from wheelcache.errors import BundleError, TargetError, WheelcacheError
from wheelcache.host.targetfile import TargetDescription
from wheelcache.reqfiles import is_lock_file, read_lock_file
from wheelcache.serve.publish import Pin, read_selection_file
from wheelcache.store.cache import Cache
from wheelcache.store.catalog import CatalogRow
from wheelcache.store.metadata import read_wheel_metadata

__all__ = [
    "BundleSelection",
    "read_inventory",
    "select_wheels",
    "target_of_description",
    "variant_of_description",
]

log = logging.getLogger(__name__)

_DESCRIPTION = re.compile(r"^(\S+)-(\S+) \((\S+)\)$")  # Target.describe(): cp39-win_amd64 (cu118)
_NAME_IT = "say which with --cuda VER, --cpu or --variant NAME"


@dataclass(frozen=True)
class BundleSelection:
    """The wheels a bundle carries and what was asked for."""

    rows: tuple[CatalogRow, ...]
    requested: tuple[str, ...]
    targets: tuple[str, ...]  # target descriptions (cp39-win_amd64 (cu118))
    target: Target | None = None  # when a single target is known
    target_document: dict[str, Any] | None = None  # the target and the probe's facts
    #: (target, sha256 of its wheels) when the rows are for several targets that do not share
    #: them; empty when one requirements file is right for the whole bundle.
    per_target: tuple[tuple[str, tuple[str, ...]], ...] = ()


class _CacheSource:
    """Candidates and metadata from the cache alone (the resolver's sources, offline)."""

    def __init__(self, cache: Cache, target: Target, variant: str | None, served: set[str]):
        self.cache, self.target, self.variant, self.served = cache, target, variant, served
        self.rows: dict[str, list[CatalogRow]] = {}
        for row in cache.catalog.all():
            self.rows.setdefault(canonicalize_name(row.project), []).append(row)
        self.by_file: dict[tuple[str, str], CatalogRow] = {
            (r.sha256, r.filename): r for rs in self.rows.values() for r in rs
        }

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
        row = self.by_file[(str(candidate.file.sha256), candidate.file.filename)]
        try:
            data = read_wheel_metadata(self.cache.blob_path(row.blake3), row.project)
            return parse_core_metadata(data, source=row.filename)
        except (OSError, ValueError) as exc:
            raise BundleError(
                f"cannot read the METADATA of the cached {row.filename}: {exc}; "
                "run wheelcache verify"
            ) from exc


def target_of_description(description: str) -> Target | None:
    """Rebuild a target from its description (``cp39-win_amd64 (cu118)``), if possible."""
    m = _DESCRIPTION.match(description)
    if not m:
        return None
    try:
        return make_target(python=m.group(1), platform=m.group(2), variant=m.group(3))
    except WheelcacheError:
        return None


def variant_of_description(description: str) -> str | None:
    """The variant a target description names.

    >>> variant_of_description("cp39-win_amd64 (cu118)"), variant_of_description("odd")
    ('cu118', None)
    """
    m = _DESCRIPTION.match(description)
    return m.group(3) if m else None


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


def _named_variant(variant: str | None, pinned: str | None) -> str | None:
    """The variant asked for: by an option, or by the pins; both must agree."""
    if variant is not None and pinned is not None and variant != pinned:
        raise BundleError(
            f"the pins ask for +{pinned} builds, but the variant was given as "
            f"{variant}; drop one of them"
        )
    return variant or pinned


def _local(row: CatalogRow) -> str | None:
    try:
        return Version(row.version).local
    except InvalidVersion:
        return None


def _fits(row: CatalogRow, target: Target) -> bool:
    f = DistFile(row.filename, row.url)
    return evaluate_file(f, canonicalize_name(row.project), target).ok


def _variants_present(rows: Iterable[CatalogRow]) -> set[str | None]:
    """The local versions (variants) of the torch family among *rows*; None for plain ones."""
    return {_local(r) for r in rows if canonicalize_name(r.project) in TORCH_FAMILY}


def _show(variants: Iterable[str | None]) -> str:
    return ", ".join(sorted(v or "plain (no +variant)" for v in variants))


def _auto_variant(
    description: TargetDescription | None, present: set[str | None], where: str
) -> str:
    """``--cuda auto``: the newest CUDA build in the cache that the target's driver runs."""
    if description is None:
        raise BundleError(
            "--cuda auto reads the NVIDIA driver from a target file: give "
            "--target FILE written by wheelcache probe on that host"
        )
    cuda = sorted(v for v in present if v is not None and cuda_version_of(v) is not None)
    if not cuda:
        raise BundleError(
            f"--cuda auto: the cache holds no CUDA build of torch for {where} "
            f"(it holds: {_show(present) or 'none'}); fetch one first or give "
            "--cpu"
        )
    variant, reason = description.choose_cuda_variant(cuda)
    log.warning("--cuda auto: %s (among the builds in the cache: %s)", reason, ", ".join(cuda))
    return variant


def _decide(
    named: str | None, present: set[str | None], description: TargetDescription | None, where: str
) -> tuple[str | None, bool]:
    """(variant, ambiguous): what was named, else the only variant the cache holds."""
    if named == AUTO:
        return _auto_variant(description, present, where), False
    if named is not None:
        return named, False
    if len(present) <= 1:
        return next(iter(present), None), False
    return None, True


def _ambiguous(what: str, present: set[str | None], where: str) -> BundleError:
    return BundleError(
        f"the cache holds {what} for several variants that fit {where} "
        f"({_show(present)}); {_NAME_IT}"
    )


def _host(target: Target) -> str:
    """A target without its variant: ``cp39-win_amd64``."""
    return target.describe().rsplit(" (", 1)[0]


def _make(base: Callable[[str], Target], variant: str | None) -> Target:
    """The target labelled with *variant* (cpu when none: a bundle without torch)."""
    try:
        return base(variant or "cpu")
    except TargetError:  # a local version that is not a variant name (+git1234)
        return base("cpu")


def _match_text(text: str, known: Iterable[str], variant: str | None = None) -> str:
    names = sorted(set(known))
    if variant is not None and variant != AUTO:
        names = [t for t in names if variant_of_description(t) == variant] or names
    exact = [t for t in names if t == text]
    found = exact or [t for t in names if text.lower() in t.lower()]
    if len(found) != 1:
        what = "matches several" if found else "matches none"
        raise BundleError(
            f"--target {text!r} {what} of the targets in the cache "
            f"({', '.join(found or names) or 'none recorded'}); give one of them "
            "or a target file from wheelcache probe"
        )
    return found[0]


def _recorded_variant(description: str, named: str | None) -> None:
    if named == AUTO:
        raise BundleError(
            f"{description} is a recorded target and names its variant; "
            "--cuda auto needs --target FILE written by wheelcache probe"
        )
    if named is not None and named != variant_of_description(description):
        raise BundleError(
            f"the target {description} is not a {named} build; give the "
            "target of that variant (see wheelcache ls)"
        )


def _resolve(
    cache: Cache,
    requirements: Sequence[str],
    *,
    target: Target | None,
    description: TargetDescription | None,
    target_text: str | None,
    variant: str | None,
    fallback: Target | None,
) -> tuple[list[CatalogRow], tuple[str, ...], Target]:
    reqs = []
    for text in requirements:
        try:
            reqs.append(Req.from_requirement(Requirement(text)))
        except InvalidRequirement as exc:
            raise BundleError(f"invalid requirement {text!r}: {str(exc).splitlines()[0]}") from exc
    named = _named_variant(variant, _family_variant(reqs))
    served_by = cache.catalog.targets()
    rows = cache.catalog.all()
    if target is not None:  # a ready Target: its variant is meant
        if named not in (None, target.variant):
            raise BundleError(f"the target {target.describe()} is not a {named} build")
        return _run(cache, reqs, target, target.variant, set(), ambiguous=None)
    if description is None:
        recorded = sorted({t for ts in served_by.values() for t in ts})
        found: str | None = None
        if target_text is not None:
            found = _match_text(target_text, recorded, named)
        else:
            common: set[str] | None = None
            for r in reqs:
                mine = {
                    t
                    for row in rows
                    if canonicalize_name(row.project) == r.name
                    and r.specifier.contains(row.version, prereleases=True)
                    for t in served_by.get(row.sha256, ())
                }
                common = mine if common is None else common & mine
            if common and named not in (None, AUTO):
                common = {t for t in common if variant_of_description(t) == named}
            if common and len(common) > 1:
                raise BundleError(
                    f"{' '.join(requirements)} was fetched for several targets "
                    f"({', '.join(sorted(common))}); say which with --target"
                )
            found = next(iter(common)) if common else None
        if found is not None:
            _recorded_variant(found, named)
            served = {s for s, ts in served_by.items() if found in ts}
            rebuilt = target_of_description(found)
            if rebuilt is None:
                raise BundleError(
                    f"cannot rebuild the target {found!r}; use --target "
                    "with a target file from wheelcache probe"
                )
            chosen, _, _ = _run(cache, reqs, rebuilt, rebuilt.variant, served, ambiguous=None)
            return chosen, (found,), rebuilt
        if fallback is None:
            raise BundleError("no target known for these wheels; give --target")
        fb = fallback
        base: Callable[[str], Target] = lambda v: replace(fb, variant=v)  # noqa: E731
    else:
        base = description.to_target
    plain = base("cpu")  # tags and markers do not depend on the variant
    pins = {r.name: r.specifier for r in reqs}
    present = _variants_present(
        r
        for r in rows
        if canonicalize_name(r.project) in TORCH_FAMILY
        and _fits(r, plain)
        and pins.get(canonicalize_name(r.project), SpecifierSet()).contains(
            r.version, prereleases=True
        )
    )
    chosen_variant, ambiguous = _decide(named, present, description, _host(plain))
    final = _make(base, chosen_variant)
    return _run(cache, reqs, final, chosen_variant, set(), ambiguous=present if ambiguous else None)


def _run(
    cache: Cache,
    reqs: Sequence[Req],
    target: Target,
    variant: str | None,
    served: set[str],
    *,
    ambiguous: set[str | None] | None,
) -> tuple[list[CatalogRow], tuple[str, ...], Target]:
    """Resolve over the cache; refuse when torch is in the closure and its variant was open."""
    source = _CacheSource(cache, target, variant, served)
    resolution = resolve(reqs, target, source, source)
    if ambiguous is not None:
        torch = sorted(c.name for c in resolution.candidates if c.name in TORCH_FAMILY)
        if torch:
            raise _ambiguous(torch[0], ambiguous, _host(target))
    chosen = [source.by_file[(str(c.file.sha256), c.file.filename)] for c in resolution.candidates]
    return chosen, (target.describe(),), target


def _of_variant(
    pool: Sequence[CatalogRow], variant: str | None, served_by: dict[str, list[str]]
) -> list[CatalogRow]:
    """Leave out torch builds of other variants, and wheels recorded only for targets of
    other variants (the ``nvidia-*`` wheels of a CUDA build)."""
    if variant is None:
        return list(pool)
    out = []
    for r in pool:
        if canonicalize_name(r.project) in TORCH_FAMILY:
            try:
                if variant_mismatch(Version(r.version), variant) is not None:
                    continue
            except InvalidVersion:
                continue
        else:
            recorded = {variant_of_description(t) for t in served_by.get(r.sha256, ())}
            if recorded and variant not in recorded and None not in recorded:
                continue
        out.append(r)
    return out


def _document(description: TargetDescription, target: Target) -> dict[str, Any]:
    """The manifest's ``target``: the target used, and what the probe said about the host."""
    probe = dataclasses.asdict(description)
    probe.pop("source", None)
    probe["markers"] = dict(description.markers)
    return {**target.to_dict(), "probe": probe}


def select_wheels(
    cache: Cache,
    *,
    requirements: Sequence[str] = (),
    lock: Path | Sequence[Path] | None = None,
    everything: bool = False,
    target: Target | None = None,
    target_text: str | None = None,
    description: TargetDescription | None = None,
    variant: str | None = None,
    fallback: Target | None = None,
) -> BundleSelection:
    """Choose the cached wheels for a bundle, without any network.

    *requirements* (``torch==2.4.0+cu118``) are resolved with their whole closure over the
    cache for *target* (ready, with its variant), else for *description* (a probe file), else
    for the target the cache says they were fetched for (*target_text* picks one), else for
    *fallback*.  *variant* names the PyTorch variant (or :data:`AUTO`); see the module
    docstring for what happens without it.  *lock* (one file or several) selects the lines of
    a requirements file or the wheels of a PEP 751 lock
    (by their ``--hash`` where present); *everything* selects all.
    """
    files = (lock,) if isinstance(lock, Path) else tuple(lock or ())
    if sum(map(bool, (requirements, files, everything))) != 1:
        raise BundleError("give requirements, -r FILE or --all (one of them)")
    if requirements:
        rows, targets, chosen = _resolve(
            cache,
            requirements,
            target=target,
            description=description,
            target_text=target_text,
            variant=variant,
            fallback=fallback,
        )
        wanted = tuple(str(Requirement(r)) for r in requirements)
        doc = _document(description, chosen) if description is not None else None
        return BundleSelection(tuple(rows), wanted, targets, chosen, doc)
    return _select_pool(
        cache,
        files=files,
        target=target,
        target_text=target_text,
        description=description,
        variant=variant,
    )


def _select_pool(
    cache: Cache,
    *,
    files: tuple[Path, ...],
    target: Target | None,
    target_text: str | None,
    description: TargetDescription | None,
    variant: str | None,
) -> BundleSelection:
    """``--all`` or ``-r FILE``: every cached wheel (of the file), narrowed to a target."""
    served_by = cache.catalog.targets()
    pool = cache.catalog.all()
    pins = (
        tuple(p for f in files for p in _pins(f, target, target_text, description))
        if files
        else None
    )

    def pinned(rows: Sequence[CatalogRow], where: str) -> list[CatalogRow]:
        if pins is None:
            return list(rows)
        missing = [p.text for p in pins if not any(p.matches(r) for r in rows)]
        if missing:
            raise BundleError(f"not in the cache{where}: {', '.join(missing)} (fetch them first)")
        return [r for r in rows if any(p.matches(r) for p in pins)]

    named: list[str] = []
    chosen: Target | None = None
    if target_text is not None:
        text = _match_text(target_text, {t for ts in served_by.values() for t in ts}, variant)
        _recorded_variant(text, variant)
        pool = pinned([r for r in pool if text in served_by.get(r.sha256, ())], " for that target")
        named, chosen = [text], target_of_description(text)
    elif target is not None:
        if variant not in (None, target.variant):
            raise BundleError(f"the target {target.describe()} is not a {variant} build")
        pool = pinned([r for r in pool if _fits(r, target)], " for that target")
        pool = pinned(_of_variant(pool, target.variant, served_by), f" for {target.describe()}")
        named, chosen = [target.describe()], target
    elif description is not None:
        plain = description.to_target("cpu")  # tags and markers do not depend on the variant
        where = _host(plain)
        pool = pinned([r for r in pool if _fits(r, plain)], " for that target")
        present = _variants_present(pool)
        picked, ambiguous = _decide(variant, present, description, where)
        if ambiguous:
            raise _ambiguous("torch", present, where)
        pool = pinned(_of_variant(pool, picked, served_by), f" for {where} ({picked})")
        chosen = _make(description.to_target, picked)
        named = [chosen.describe()]
    else:
        if variant == AUTO:
            raise BundleError(
                "--cuda auto reads the NVIDIA driver from a target file: give "
                "--target FILE written by wheelcache probe on that host"
            )
        pool = pinned(
            _of_variant(pool, variant, served_by), f" as {variant} builds" if variant else ""
        )
    if not pool:
        raise BundleError("nothing in the cache matches; see wheelcache ls")
    per_target: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if not named:  # the targets every selected wheel was fetched for (a lock has one)
        sets = [set(served_by[r.sha256]) for r in pool if served_by.get(r.sha256)]
        common = set.intersection(*sets) if sets else set()
        named = sorted(common or set().union(*sets))
        if len(common) == 1:
            chosen = target_of_description(named[0])
        elif not common and len(named) > 1:
            per_target = tuple(
                (t, tuple(r.sha256 for r in pool if t in served_by.get(r.sha256, ())))
                for t in named
            )
    requested = tuple(p.text for p in pins) if pins is not None else ()
    doc = _document(description, chosen) if description is not None and chosen else None
    return BundleSelection(tuple(pool), requested, tuple(named), chosen, doc, per_target)


def _pins(
    lock: Path,
    target: Target | None,
    target_text: str | None,
    description: TargetDescription | None,
) -> tuple[Pin, ...]:
    """What ``-r FILE`` selects.  A PEP 751 lock for a known target selects the wheels it
    gives that target (a universal lock names other platforms' wheels too, which the cache
    need not have); otherwise every line or wheel of the file, by hash where it has one."""
    known = target
    if known is None and target_text is not None:
        known = target_of_description(target_text)
    if known is None and description is not None:
        known = description.to_target("cpu")  # tags and markers do not depend on the variant
    if known is None or not is_lock_file(lock):
        return read_selection_file(lock)
    chosen = select_locked(read_lock_file(lock), known, source=str(lock))
    return tuple(
        Pin(w.project, SpecifierSet(f"=={w.version}"), frozenset({w.sha256}), w.filename)
        for w in chosen.wheels
    )


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
