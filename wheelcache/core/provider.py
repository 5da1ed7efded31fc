"""resolvelib provider over injected candidate and metadata sources, for a foreign target.

The provider never fetches anything itself: a :class:`CandidateSource` lists the wheels that fit
the target per project, and a :class:`MetadataSource` returns a wheel's core metadata.  Tests
back both with dicts; the fetch pipeline backs them with index pages and HTTP.

Markers are evaluated in the *target's* environment.  ``Requires-Python`` from the metadata
becomes a dependency on the pseudo-project ``<python>`` so that a candidate which does not
support the target's Python is backtracked over like any other conflict.

The search follows pip (issue 15): up to 200000 rounds, the projects of the last conflict
decided first, projects that keep conflicting promoted.  Beyond pip, a candidate with a
requirement that nothing on the index satisfies on its own is remembered as unusable and never
offered again, so an impossible request fails in seconds instead of backtracking through every
unrelated project; and when torch is asked for, a companion release that declares no torch
requirement gets its release line's torch as one (:mod:`wheelcache.core.companions`).
Failures are explained by :mod:`wheelcache.core.explain`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version
from resolvelib import (
    AbstractProvider,
    BaseReporter,
    ResolutionImpossible,
    ResolutionTooDeep,
    Resolver,
)

from wheelcache.core.companions import LineChoice, companion_notes, torch_line_for, torch_pin
from wheelcache.core.evaluator import Candidate
from wheelcache.core.explain import explain_failure
from wheelcache.core.models import CoreMetadata
from wheelcache.core.requirements import (
    PYTHON,
    AnyCandidate,
    CandidateSource,
    ExtrasCandidate,
    MetadataSource,
    PythonCandidate,
    Req,
    Resolution,
)
from wheelcache.core.target import Target
from wheelcache.core.variants import TORCH_FAMILY
from wheelcache.errors import ResolutionError, WheelcacheError

__all__ = [
    "CandidateSource",
    "MetadataSource",
    "MAX_ROUNDS",
    "Req",
    "Resolution",
    "WheelProvider",
    "resolve",
]

TORCH = canonicalize_name("torch")
TORCH_FAMILY_SET = frozenset(TORCH_FAMILY)
COMPANIONS = tuple(n for n in TORCH_FAMILY if n != TORCH)
#: pip's limit.  resolvelib also scales its optimistic backjumping with it, so a small limit
#: changes the search as well as capping it (issue 15: apache-airflow failed at 2000).
MAX_ROUNDS = 200_000
#: As pip: a project found this many times in conflicts while undecided is decided early.
_CONFLICT_PROMOTION = 5
#: Metadata reads spent looking for a companion release that pins torch.
_PIN_READS = 8


def _label(c: Candidate) -> str:
    return f"{c.name} {c.version}"


def _own_version(req: Req, candidate: Candidate) -> Req:
    """``pandas[excel]`` required by pandas 2.2.3 itself can only be pandas 2.2.3: say so, so
    that a release whose own extras cannot be met is seen as unusable at once."""
    if req.name != candidate.name:
        return req
    return replace(req, specifier=req.specifier & SpecifierSet(f"=={candidate.version}"))


def _uploads(cands: Sequence[Candidate]) -> dict[Version, str]:
    return {c.version: c.file.upload_time for c in cands if c.file.upload_time}


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
        roots: Sequence[Req] = (),
    ) -> None:
        self.target = target
        self.source = candidates
        self.metadata = metadata
        self.allow_prereleases = allow_prereleases
        self.no_deps = no_deps
        self.roots: frozenset[NormalizedName] = frozenset(r.name for r in roots)
        self._requested = {r.identifier: i for i, r in reversed(list(enumerate(roots)))}
        self._md: dict[Candidate, CoreMetadata] = {}
        self._deps: dict[AnyCandidate, list[Req]] = {}
        #: (identifier, version) of candidates that can never be used, and the requirement
        #: of theirs that nothing on the index satisfies (whatever else is chosen).
        self.dead: dict[tuple[str, Version], Req] = {}
        #: The first requirement seen per identifier: the links of "who asked for it".
        self.first_req: dict[str, Req] = {}
        self._conflicts: Counter[str] = Counter()
        self._promoted: set[str] = set()
        self.missing_extras: dict[tuple[NormalizedName, Version], frozenset[str]] = {}
        self.lines: dict[tuple[NormalizedName, Version], LineChoice] = {}
        self._pins: dict[NormalizedName, dict[Version, Version]] = {}
        self._contained: dict[int, tuple[Req, dict[tuple[Version, bool], bool]]] = {}
        for r in roots:
            self.first_req.setdefault(self.identify(r), r)

    # -- identity and order ---------------------------------------------------------------
    def identify(self, requirement_or_candidate: Any) -> str:
        rc = requirement_or_candidate
        if isinstance(rc, Req):
            return rc.identifier if rc.name != PYTHON else PYTHON
        if isinstance(rc, PythonCandidate):
            return PYTHON
        if isinstance(rc, ExtrasCandidate):
            return f"{rc.base.name}[{','.join(sorted(rc.extras))}]"
        assert isinstance(rc, Candidate)
        return rc.name

    def narrow_requirement_selection(
        self,
        identifiers: Iterable[str],
        resolutions: Mapping[str, Any],
        candidates: Mapping[str, Iterator[Any]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> Iterable[str]:
        """Python first; then the projects of the last conflict, which must be settled before
        anything else can work; then projects that keep turning up in conflicts while still
        undecided (as pip does).  Without this the resolver wanders through unrelated
        projects after every conflict (issue 15: an impossible request ran for minutes)."""
        causes: set[str] = set()
        for info in backtrack_causes:
            names = [self.identify(info.requirement)]
            if info.parent is not None:
                names.append(self.identify(info.parent))
            for name in names:
                causes.add(name)
                if name not in resolutions:
                    self._conflicts[name] += 1
                    if self._conflicts[name] >= _CONFLICT_PROMOTION:
                        self._promoted.add(name)
        in_causes: list[str] = []
        promoted: list[str] = []
        for identifier in identifiers:
            if identifier == PYTHON:
                return [identifier]
            if identifier in causes:
                in_causes.append(identifier)
            elif identifier in self._promoted:
                promoted.append(identifier)
        return in_causes or promoted or identifiers

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Any],
        candidates: Mapping[str, Iterator[Any]],
        information: Mapping[str, Iterable[Any]],
        backtrack_causes: Sequence[Any],
    ) -> tuple[Any, ...]:
        """torch before its companions (so their pins are checked against a chosen torch),
        then pip's order: promoted conflict projects, exact pins, upper bounds, the user's
        order, any specifier, the name."""
        ops = [
            (s.operator, s.version)
            for info in information[identifier]
            for s in info.requirement.specifier
        ]
        pinned = any(op[:2] == "==" and "*" not in v for op, v in ops)
        upper = any(op in ("<", "<=", "~=") or (op == "==" and "*" in v) for op, v in ops)
        base = identifier.split("[", 1)[0]
        return (
            base != TORCH,
            base not in TORCH_FAMILY,
            identifier not in self._promoted,
            not pinned,
            not upper,
            self._requested.get(identifier, math.inf),
            not ops,
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
    ) -> list[AnyCandidate]:
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        out = self.find(identifier, reqs, bad)
        if not out:
            self._learn_dead(identifier, reqs)
        return out

    def find(
        self,
        identifier: str,
        reqs: Sequence[Req],
        bad: set[Version] | None = None,
        *,
        with_dead: bool = False,
    ) -> list[AnyCandidate]:
        """Candidates for *identifier* that satisfy every one of *reqs*, best first."""
        bad = bad or set()
        if identifier == PYTHON:
            version = Version(self.target.python_version_full)
            ok = version not in bad and all(
                r.specifier.contains(version, prereleases=True) for r in reqs
            )
            return [PythonCandidate(version)] if ok else []
        name = canonicalize_name(identifier.split("[", 1)[0])
        extras = frozenset().union(*(r.extras for r in reqs))
        pre = self._allows_pre(reqs)
        dead = {} if with_dead else self.dead
        out = self._matching(identifier, name, reqs, bad, extras, pre, dead)
        if (
            not out
            and not pre
            and (with_dead or not self._matching(identifier, name, reqs, bad, extras, False, {}))
        ):
            # PEP 440: pre-releases are accepted when they are all there is (final releases
            # that turned out unusable still count as being there).
            out = self._matching(identifier, name, reqs, bad, extras, True, dead)
        return out

    def _matching(
        self,
        identifier: str,
        name: NormalizedName,
        reqs: Sequence[Req],
        bad: set[Version],
        extras: frozenset[NormalizedName],
        pre: bool,
        dead: Mapping[tuple[str, Version], Req],
    ) -> list[AnyCandidate]:
        out: list[AnyCandidate] = []
        for c in self.source.find_candidates(name):
            if c.version in bad or (identifier, c.version) in dead:
                continue
            if not all(self._contains(r, c.version, pre) for r in reqs):
                continue
            if c.version.is_prerelease and not pre:
                continue
            if c.file.yanked and not self._pinned_exactly(reqs, c.version):
                continue
            out.append(ExtrasCandidate(c, extras) if extras else c)
        return out

    def _learn_dead(self, identifier: str, reqs: Sequence[Req]) -> None:
        """A requirement that nothing satisfies on its own makes the candidate that declared
        it unusable in every resolution: remember that, so the resolver never tries it again
        (it would otherwise backtrack through unrelated projects looking for a way out)."""
        for r in reqs:
            if r.via is not None and r.via not in self.dead and not self.find(identifier, [r]):
                self.dead[r.via] = r

    def unusable(self, via: tuple[str, Version]) -> bool:
        """Whether the candidate *via* names has a requirement nothing satisfies on its own
        (checked now if resolution stopped before reaching it)."""
        if via not in self.dead:
            identifier, version = via
            name, _, rest = identifier.partition("[")
            extras = frozenset(canonicalize_name(e) for e in rest.rstrip("]").split(",") if e)
            probe = Req(canonicalize_name(name), extras=extras)
            for c in self.find(identifier, [probe], with_dead=True):
                if c.version == version:
                    for d in self.get_dependencies(c):
                        if not self.find(self.identify(d), [d]):
                            self.dead[via] = d
                            break
        return via in self.dead

    def _contains(self, req: Req, version: Version, pre: bool) -> bool:
        """``req.specifier.contains``, remembered per requirement object: resolvelib asks the
        same questions every round.  The entry keeps *req* alive, so its id stays its own."""
        entry = self._contained.get(id(req))
        if entry is None:
            entry = self._contained[id(req)] = (req, {})
        answers = entry[1]
        hit = answers.get((version, pre))
        if hit is None:
            hit = answers[(version, pre)] = req.specifier.contains(version, prereleases=pre)
        return hit

    def is_satisfied_by(self, requirement: Req, candidate: AnyCandidate) -> bool:
        if isinstance(candidate, ExtrasCandidate) and not requirement.extras <= candidate.extras:
            return False
        return self._contains(requirement, candidate.version, True)

    # -- dependencies ---------------------------------------------------------------------
    def get_metadata(self, candidate: Candidate) -> CoreMetadata:
        md = self._md.get(candidate)
        if md is None:
            md = self.metadata.get_metadata(candidate)
            if md.name != candidate.name or Version(md.version) != candidate.version:
                raise ResolutionError(
                    f"{candidate.file.filename}: its metadata says {md.name} {md.version}; "
                    "the index or the wheel is broken"
                )
            self._md[candidate] = md
        return md

    def _applies(self, marker: Marker | None, extra: str = "") -> bool:
        """Whether a marker holds on the target."""
        return marker is None or any(
            marker.evaluate({**env, "extra": extra}) for env in self.target.marker_environments
        )

    def get_dependencies(self, candidate: AnyCandidate) -> list[Req]:
        deps = self._deps.get(candidate)
        if deps is None:
            deps = self._deps[candidate] = self._dependencies(candidate)
            for d in deps:
                self.first_req.setdefault(self.identify(d), d)
        return deps

    def _dependencies(self, candidate: AnyCandidate) -> list[Req]:
        if isinstance(candidate, PythonCandidate):
            return []
        if isinstance(candidate, ExtrasCandidate):
            return self._extras_dependencies(candidate)
        if self.no_deps and not (candidate.name in TORCH_FAMILY and self.roots & TORCH_FAMILY_SET):
            return []
        md = self.get_metadata(candidate)
        via = (candidate.name, candidate.version)
        deps = [
            _own_version(Req.from_requirement(r, parent=_label(candidate), via=via), candidate)
            for r in md.requires_dist
            if self._applies(r.marker)
            # --no-deps keeps only the pins between requested torch-family projects, so that
            # "--no-deps torch torchvision" still gets a torchvision built for that torch.
            and (not self.no_deps or canonicalize_name(r.name) in self.roots & TORCH_FAMILY_SET)
        ]
        companion = self._companion_requirement(candidate, md)
        if companion is not None:
            deps.append(companion)
        if md.requires_python is not None:
            py = Req(
                canonicalize_name(PYTHON),
                md.requires_python,
                parent=_label(candidate),
                text=f"Python {md.requires_python}",
                via=via,
            )
            deps.append(py)
        return deps

    def _extras_dependencies(self, candidate: ExtrasCandidate) -> list[Req]:
        base = candidate.base
        label = f"{_label(base)}[{','.join(sorted(candidate.extras))}]"
        via = (self.identify(candidate), base.version)
        pin = Req(base.name, SpecifierSet(f"=={base.version}"), parent=label, via=via)
        if self.no_deps:
            return [pin]
        md = self.get_metadata(base)
        added = [
            r
            for r in md.requires_dist
            if r.marker is not None
            and not self._applies(r.marker)
            and any(self._applies(r.marker, e) for e in candidate.extras)
        ]
        provided = set(md.provides_extra)
        missing = {
            e
            for e in candidate.extras
            if e not in provided
            and not any(r.marker is not None and self._applies(r.marker, e) for r in added)
        }
        if missing:
            self.missing_extras[(base.name, base.version)] = frozenset(missing)
        deps = [_own_version(Req.from_requirement(r, parent=label, via=via), base) for r in added]
        return [pin, *deps]

    # -- companions -----------------------------------------------------------------------
    def _companion_requirement(self, candidate: Candidate, md: CoreMetadata) -> Req | None:
        """A companion that pins no torch exactly gets its release line's torch as a
        requirement, when torch itself was asked for (issue 15: torchaudio 2.11 next to torch
        2.4; issue 10: torchvision 0.11.3 requires a bare ``torch``, yet is torch 1.10's).
        ``matrix`` pairs by the same rule."""
        if candidate.name not in COMPANIONS or TORCH not in self.roots:
            return None
        if torch_pin(md) is not None:
            return None
        choice = self.line_of(candidate)
        return Req(
            TORCH,
            choice.specifier,
            parent=_label(candidate),
            text=f"torch{choice.specifier} ({_label(candidate)} is {choice.text}'s release, "
            f"{choice.reason})",
            via=(candidate.name, candidate.version),
        )

    def line_of(self, candidate: Candidate) -> LineChoice:
        """The torch line of a companion release without a torch requirement."""
        key = (candidate.name, candidate.version)
        if key not in self.lines:
            torch = self.source.find_candidates(TORCH)
            self.lines[key] = torch_line_for(
                candidate.name,
                candidate.version,
                pins=self.companion_pins(candidate.name),
                torch_versions={t.version for t in torch},
                companion_uploads=_uploads(self.source.find_candidates(candidate.name)),
                torch_uploads=_uploads(torch),
            )
        return self.lines[key]

    def companion_pins(self, name: NormalizedName) -> dict[Version, Version]:
        """Companion version → the torch it pins, for the newest release of *name* that pins
        one (a few metadata reads, newest first)."""
        if name not in self._pins:
            pins: dict[Version, Version] = {}
            for c in self.source.find_candidates(name)[:_PIN_READS]:
                try:
                    pin = torch_pin(self.get_metadata(c))
                except WheelcacheError:
                    continue
                if pin is not None:
                    pins[Version(c.version.public)] = pin
                    break
            self._pins[name] = pins
        return self._pins[name]

    def goes_with(self, candidate: Candidate, torch: Version) -> bool:
        """Whether companion *candidate* may sit next to *torch* (its pin, else its line)."""
        md = self.get_metadata(candidate)
        reqs = [r for r in md.requires_dist if canonicalize_name(r.name) == TORCH]
        if not all(r.specifier.contains(torch, prereleases=True) for r in reqs):
            return False
        return torch_pin(md) is not None or self.line_of(candidate).specifier.contains(
            torch, prereleases=True
        )


def _build_resolution(provider: WheelProvider, result: Any) -> Resolution:
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
    warnings: list[str] = []
    for c in result.mapping.values():
        if isinstance(c, ExtrasCandidate):
            for extra in sorted(provider.missing_extras.get((c.base.name, c.version), ())):
                warnings.append(f"{_label(c.base)} does not provide the extra {extra!r}")
    more_warnings, notes = companion_notes(provider, {c.name: c for c in chosen})
    return Resolution(
        candidates=tuple(chosen),
        required_by={k: tuple(v) for k, v in sorted(required_by.items())},
        warnings=tuple(warnings + more_warnings),
        notes=tuple(notes),
    )


class _PinReporter(BaseReporter):  # type: ignore[type-arg]
    """Tells *on_pin* about every wheel the resolver settles on, as it does: the caller can
    start that wheel's download while resolution goes on (a later backtrack may drop it)."""

    def __init__(self, on_pin: Callable[[Candidate], None]) -> None:
        self.on_pin = on_pin

    def pinning(self, candidate: AnyCandidate) -> None:
        if isinstance(candidate, PythonCandidate):
            return
        self.on_pin(candidate.base if isinstance(candidate, ExtrasCandidate) else candidate)


def resolve(
    requirements: Sequence[Req],
    target: Target,
    candidates: CandidateSource,
    metadata: MetadataSource,
    *,
    allow_prereleases: bool = False,
    no_deps: bool = False,
    max_rounds: int = MAX_ROUNDS,
    on_pin: Callable[[Candidate], None] | None = None,
) -> Resolution:
    """Resolve *requirements* for *target*; raise :class:`ResolutionError` on conflict.

    *on_pin* is called (in this thread) with each wheel as the resolver pins it — torch
    first — so its transfer can start before resolution ends.  A pinned wheel may still be
    replaced by a backtrack; only the returned :class:`Resolution` is final.
    """
    provider = WheelProvider(
        target,
        candidates,
        metadata,
        allow_prereleases=allow_prereleases,
        no_deps=no_deps,
        roots=requirements,
    )
    reporter = _PinReporter(on_pin) if on_pin is not None else BaseReporter()
    resolver: Resolver[Req, AnyCandidate, str] = Resolver(provider, reporter)
    try:
        result = resolver.resolve(list(requirements), max_rounds=max_rounds)
    except ResolutionImpossible as exc:
        raise explain_failure(provider, list(exc.causes), requirements) from exc
    except ResolutionTooDeep as exc:
        raise ResolutionError(
            f"resolution for {target.describe()} gave up after {max_rounds} rounds of "
            "backtracking; pin some requirements (versions you know work together) to "
            "narrow the search"
        ) from exc
    return _build_resolution(provider, result)
