"""resolvelib provider over injected candidate and metadata sources, for a foreign target.

The provider never fetches anything itself: a :class:`CandidateSource` lists the wheels that fit
the target per project, and a :class:`MetadataSource` returns a wheel's core metadata.  Tests
back both with dicts; the fetch pipeline backs them with index pages and HTTP.

Markers are evaluated in the *target's* environment.  ``Requires-Python`` from the metadata
becomes a dependency on the pseudo-project ``<python>`` so that a candidate which does not
support the target's Python is backtracked over like any other conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, ResolutionImpossible, Resolver

from wheelcache.core.evaluator import Candidate
from wheelcache.core.models import CoreMetadata
from wheelcache.core.target import Target
from wheelcache.core.variants import TORCH_FAMILY
from wheelcache.errors import ResolutionError, WheelcacheError

__all__ = [
    "CandidateSource",
    "MetadataSource",
    "Req",
    "Resolution",
    "WheelProvider",
    "resolve",
]

PYTHON = "<python>"
TORCH_FAMILY_SET = frozenset(TORCH_FAMILY)


class CandidateSource(Protocol):
    """Lists the wheels of a project that fit the target, newest first."""

    def find_candidates(self, name: NormalizedName) -> Sequence[Candidate]: ...

    def explain(self, name: NormalizedName, specifier: SpecifierSet) -> str:
        """One line on why a project has no wheel for *specifier* (for error messages)."""
        ...


class MetadataSource(Protocol):
    """Returns the core metadata of one candidate wheel."""

    def get_metadata(self, candidate: Candidate) -> CoreMetadata: ...


@dataclass(frozen=True, slots=True)
class Req:
    """A requirement as resolution sees it: name, extras, specifier and who asked."""

    name: NormalizedName
    specifier: SpecifierSet = field(default_factory=SpecifierSet)
    extras: frozenset[NormalizedName] = frozenset()
    parent: str | None = None  # "torchvision 0.19.0+cu118", None for user requirements
    text: str = ""

    @classmethod
    def from_requirement(cls, req: Requirement, parent: str | None = None) -> Req:
        if req.url:
            raise ResolutionError(f"{req}: direct URL requirements are not supported")
        return cls(
            name=canonicalize_name(req.name),
            specifier=req.specifier,
            extras=frozenset(canonicalize_name(e) for e in req.extras),
            parent=parent,
            text=str(req),
        )

    @property
    def identifier(self) -> str:
        if self.extras:
            return f"{self.name}[{','.join(sorted(self.extras))}]"
        return self.name

    def __str__(self) -> str:
        return self.text or f"{self.identifier}{self.specifier}"


@dataclass(frozen=True, slots=True)
class _PythonCandidate:
    version: Version


@dataclass(frozen=True, slots=True)
class _ExtrasCandidate:
    """``torch[opt-einsum]``: the base wheel plus the dependencies the extras add."""

    base: Candidate
    extras: frozenset[NormalizedName]

    @property
    def version(self) -> Version:
        return self.base.version


_Cand = Candidate | _ExtrasCandidate | _PythonCandidate


@dataclass(frozen=True)
class Resolution:
    """The chosen wheels (one per project) and who required what."""

    candidates: tuple[Candidate, ...]
    required_by: Mapping[NormalizedName, tuple[str, ...]]

    def by_name(self) -> dict[NormalizedName, Candidate]:
        return {c.name: c for c in self.candidates}


def _label(c: Candidate) -> str:
    return f"{c.name} {c.version}"


class WheelProvider(AbstractProvider):  # type: ignore[type-arg]
    """resolvelib provider; see the module docstring."""

    def __init__(
        self,
        target: Target,
        candidates: CandidateSource,
        metadata: MetadataSource,
        *,
        allow_prereleases: bool = False,
        no_deps: bool = False,
    ) -> None:
        self.target = target
        self.source = candidates
        self.metadata = metadata
        self.allow_prereleases = allow_prereleases
        self.no_deps = no_deps
        self.roots: frozenset[NormalizedName] = frozenset()

    # -- identity -------------------------------------------------------------------------
    def identify(self, requirement_or_candidate: Any) -> str:
        rc = requirement_or_candidate
        if isinstance(rc, Req):
            return rc.identifier if rc.name != PYTHON else PYTHON
        if isinstance(rc, _PythonCandidate):
            return PYTHON
        if isinstance(rc, _ExtrasCandidate):
            return f"{rc.base.name}[{','.join(sorted(rc.extras))}]"
        assert isinstance(rc, Candidate)
        return rc.name

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Any],
        candidates: Mapping[str, Iterator[Any]],
        information: Mapping[str, Iterable[Any]],
        backtrack_causes: Sequence[Any],
    ) -> tuple[bool, bool, bool, bool, str]:
        reqs = [info.requirement for info in information[identifier]]
        pinned = any(
            s.operator in ("==", "===") and "*" not in s.version for r in reqs for s in r.specifier
        )
        base = identifier.split("[", 1)[0]
        # Python first (it never changes), torch before its companions so the companions'
        # pins are checked against a chosen torch, then exact pins, then the rest by name.
        return (
            identifier != PYTHON,
            base != "torch",
            base not in TORCH_FAMILY,
            not pinned,
            identifier,
        )

    # -- candidates -----------------------------------------------------------------------
    def _allows_pre(self, reqs: Sequence[Req]) -> bool:
        return self.allow_prereleases or any(r.specifier.prereleases for r in reqs)

    @staticmethod
    def _pinned_exactly(reqs: Sequence[Req], version: Version) -> bool:
        """PEP 592: a yanked file is taken only for an ``==``/``===`` pin that matches it."""
        return any(
            s.operator in ("==", "===") and "*" not in s.version and s.contains(version, True)
            for r in reqs
            for s in r.specifier
        )

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[Req]],
        incompatibilities: Mapping[str, Iterator[Any]],
    ) -> list[_Cand]:
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        if identifier == PYTHON:
            # Requires-Python holds when some patch release the target may run satisfies it.
            for full in self.target.python_versions:
                version = Version(full)
                if version not in bad and all(
                    r.specifier.contains(version, prereleases=True) for r in reqs
                ):
                    return [_PythonCandidate(version)]
            return []
        name = canonicalize_name(identifier.split("[", 1)[0])
        extras = frozenset().union(*(r.extras for r in reqs))
        pre = self._allows_pre(reqs)
        out = self._matching(name, reqs, bad, extras, pre)
        if not out and not pre:
            # PEP 440: pre-releases are accepted when they are all there is.
            out = self._matching(name, reqs, bad, extras, True)
        return out

    def _matching(
        self,
        name: NormalizedName,
        reqs: Sequence[Req],
        bad: set[Version],
        extras: frozenset[NormalizedName],
        pre: bool,
    ) -> list[_Cand]:
        out: list[_Cand] = []
        for c in self.source.find_candidates(name):
            if c.version in bad:
                continue
            if not all(r.specifier.contains(c.version, prereleases=pre) for r in reqs):
                continue
            if c.version.is_prerelease and not pre:
                continue
            if c.file.yanked and not self._pinned_exactly(reqs, c.version):
                continue
            out.append(_ExtrasCandidate(c, extras) if extras else c)
        return out

    def is_satisfied_by(self, requirement: Req, candidate: _Cand) -> bool:
        if isinstance(candidate, _ExtrasCandidate) and not requirement.extras <= candidate.extras:
            return False
        return requirement.specifier.contains(candidate.version, prereleases=True)

    # -- dependencies ---------------------------------------------------------------------
    def _metadata(self, candidate: Candidate) -> CoreMetadata:
        md = self.metadata.get_metadata(candidate)
        if md.name != candidate.name or Version(md.version) != candidate.version:
            raise ResolutionError(
                f"{candidate.file.filename}: its metadata says {md.name} {md.version}; "
                "the index or the wheel is broken"
            )
        return md

    def _applies(self, marker: Marker | None, extra: str = "") -> bool:
        """Whether a marker holds on the target (on any patch release it may run)."""
        return marker is None or any(
            marker.evaluate({**env, "extra": extra}) for env in self.target.marker_environments
        )

    def get_dependencies(self, candidate: _Cand) -> list[Req]:
        if isinstance(candidate, _PythonCandidate):
            return []
        if isinstance(candidate, _ExtrasCandidate):
            base = candidate.base
            pin = Req(base.name, SpecifierSet(f"=={base.version}"), parent=_label(base))
            if self.no_deps:
                return [pin]
            md = self._metadata(base)
            deps = [
                Req.from_requirement(r, parent=f"{_label(base)}[{','.join(candidate.extras)}]")
                for r in md.requires_dist
                if r.marker is not None
                and not self._applies(r.marker)
                and any(self._applies(r.marker, e) for e in candidate.extras)
            ]
            return [pin, *deps]
        if self.no_deps and not (candidate.name in TORCH_FAMILY and self.roots & TORCH_FAMILY_SET):
            return []
        md = self._metadata(candidate)
        deps = [
            Req.from_requirement(r, parent=_label(candidate))
            for r in md.requires_dist
            if self._applies(r.marker)
            # --no-deps keeps only the pins between requested torch-family projects, so that
            # "--no-deps torch torchvision" still gets a torchvision built for that torch.
            and (not self.no_deps or canonicalize_name(r.name) in self.roots & TORCH_FAMILY_SET)
        ]
        if md.requires_python is not None:
            py = Req(
                canonicalize_name(PYTHON),
                md.requires_python,
                parent=_label(candidate),
                text=f"Python {md.requires_python}",
            )
            deps.append(py)
        return deps


def _explain(
    exc: ResolutionImpossible,  # type: ignore[type-arg]
    roots: Sequence[Req],
    source: CandidateSource,
    target: Target,
) -> str:
    lines: list[str] = []
    wanted: dict[NormalizedName, SpecifierSet] = {}
    for cause in exc.causes:
        req: Req = cause.requirement
        if req.name == PYTHON:
            versions = target.python_versions
            py = versions[0] if len(versions) == 1 else target.marker_environment["python_version"]
            lines.append(f"{req.parent or '?'} requires {req} but the target has Python {py}")
            continue
        lines.append(f"{req.parent} requires {req}" if req.parent else f"you asked for {req}")
        wanted[req.name] = wanted.get(req.name, SpecifierSet()) & req.specifier
    for root in roots:  # resolvelib may name one of several user requirements on a project
        if root.name in wanted:
            wanted[root.name] &= root.specifier
    missing: list[str] = []
    for name, spec in wanted.items():
        if not [c for c in source.find_candidates(name) if spec.contains(c.version, True)]:
            missing.append(source.explain(name, spec))
    seen: list[str] = []
    for line in missing + lines:
        if line not in seen:
            seen.append(line)
    return "cannot resolve for " + target.describe() + ": " + "; ".join(seen)


class _LogReporter(BaseReporter):  # type: ignore[type-arg]
    pass


def resolve(
    requirements: Sequence[Req],
    target: Target,
    candidates: CandidateSource,
    metadata: MetadataSource,
    *,
    allow_prereleases: bool = False,
    no_deps: bool = False,
    max_rounds: int = 2000,
) -> Resolution:
    """Resolve *requirements* for *target*; raise :class:`ResolutionError` on conflict."""
    provider = WheelProvider(
        target, candidates, metadata, allow_prereleases=allow_prereleases, no_deps=no_deps
    )
    provider.roots = frozenset(r.name for r in requirements)
    resolver: Resolver[Req, _Cand, str] = Resolver(provider, _LogReporter())
    try:
        result = resolver.resolve(list(requirements), max_rounds=max_rounds)
    except ResolutionImpossible as exc:
        raise ResolutionError(_explain(exc, requirements, candidates, target)) from exc
    except WheelcacheError:
        raise
    except Exception as exc:  # resolvelib's ResolutionTooDeep and friends
        raise ResolutionError(f"resolution failed for {target.describe()}: {exc}") from exc
    chosen = [c for c in result.mapping.values() if isinstance(c, Candidate)]
    required_by: dict[NormalizedName, list[str]] = {}
    for key, criterion in result.criteria.items():
        if key == PYTHON:
            continue
        name = canonicalize_name(key.split("[", 1)[0])
        for info in criterion.information:
            who = info.requirement.parent or "(requested)"
            lst = required_by.setdefault(name, [])
            if who not in lst:
                lst.append(who)
    chosen.sort(key=lambda c: c.name)
    return Resolution(
        candidates=tuple(chosen),
        required_by={k: tuple(v) for k, v in sorted(required_by.items())},
    )
