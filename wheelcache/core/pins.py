"""What requirement files pin beyond names and versions: ``--hash`` pins, ``-c`` constraints
and direct wheel URLs, applied for the resolver as a candidate source over the index's.

:func:`plan_requirements` turns the lines of a :class:`~wheelcache.core.requirements_file.
RequirementSet` into the resolver's root requirements and a :class:`Pins` value; lines whose
marker does not hold on the target are left out (as pip leaves them out on that host).
:class:`PinnedSource` wraps the index's candidate source:

* a hash-pinned project offers only files whose sha256 is pinned (``pip-compile
  --generate-hashes`` pins every file of a version; the best one for the target among them is
  taken).  A file the index lists without a hash is checked against the pin when the pin is
  a single digest.  When no file matches, :class:`~wheelcache.errors.HashPinError` names the
  pin and what the index has;
* a constrained project offers only versions its constraints allow;
* a direct wheel URL is the project's only candidate, whatever else asks for the project.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urldefrag, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

from wheelcache.core.checks import is_sha256, safe_filename
from wheelcache.core.evaluator import Candidate, evaluate_file
from wheelcache.core.models import DistFile, Sha256
from wheelcache.core.requirements import CandidateSource, Req, Resolution
from wheelcache.core.requirements_file import Location, ReqLine, RequirementSet
from wheelcache.core.target import Target
from wheelcache.core.variants import TORCH_FAMILY, variant_of_index_url, variant_or_none
from wheelcache.errors import HashPinError, RequirementError, RequirementsFileError

__all__ = [
    "DEFAULT_REQUIREMENTS",
    "Constraint",
    "DirectWheel",
    "HashPin",
    "PinnedSource",
    "Pins",
    "RequirementPlan",
    "named_variant",
    "pinned_source",
    "plan_fetch",
    "plan_requirements",
    "unpinned",
]

#: What ``fetch`` resolves when nothing at all is asked for.
DEFAULT_REQUIREMENTS = ("torch", "torchvision", "torchaudio")


@dataclass(frozen=True, slots=True)
class HashPin:
    """The sha256 digests a project's file must have (several lines: their intersection)."""

    where: Location
    requirement: str
    specifier: SpecifierSet
    hashes: frozenset[Sha256]


@dataclass(frozen=True, slots=True)
class Constraint:
    where: Location
    specifier: SpecifierSet


@dataclass(frozen=True, slots=True)
class DirectWheel:
    """``name @ https://…/x.whl`` with its sha256 (from ``--hash`` or the URL's fragment)."""

    where: Location
    file: DistFile


@dataclass(frozen=True, slots=True)
class Pins:
    hashes: Mapping[NormalizedName, HashPin] = field(default_factory=dict)
    constraints: Mapping[NormalizedName, tuple[Constraint, ...]] = field(default_factory=dict)
    direct: Mapping[NormalizedName, DirectWheel] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequirementPlan:
    """The resolver's roots, the pins over them, and the lines the target leaves out."""

    roots: tuple[Req, ...]
    pins: Pins
    left_out: tuple[str, ...] = ()  # "r.txt:3: numpy ; sys_platform == 'linux'"


def _holds(line: ReqLine, target: Target) -> bool:
    marker = line.requirement.marker
    return marker is None or any(
        marker.evaluate({**env, "extra": ""}) for env in target.marker_environments
    )


def _direct(line: ReqLine) -> DirectWheel:
    url, fragment = urldefrag(line.requirement.url or "")
    algo, _, digest = fragment.partition("=")
    hashes = set(line.hashes)
    if algo.lower() == "sha256" and is_sha256(digest):  # a fragment names files: hex only
        hashes.add(Sha256(digest.lower()))
    if len(hashes) != 1:
        why = "gives no sha256" if not hashes else "gives several sha256 digests"
        raise RequirementsFileError(
            line.where.source,
            line.where.line,
            f"{url} {why}: a direct URL has no index to vouch for it; pin its one --hash=sha256:…",
        )
    filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    try:
        safe_filename(filename)
    except ValueError as exc:
        raise RequirementsFileError(line.where.source, line.where.line, f"{url}: {exc}") from None
    return DirectWheel(line.where, DistFile(filename, url, hashes.pop()))


def _add_hash_pin(pins: dict[NormalizedName, HashPin], line: ReqLine) -> None:
    old = pins.get(line.name)
    spec = line.requirement.specifier
    if old is None:
        pins[line.name] = HashPin(line.where, str(line.requirement), spec, line.hashes)
    else:  # pip intersects the hashes of several lines for one project
        pins[line.name] = replace(
            old, specifier=old.specifier & spec, hashes=old.hashes & line.hashes
        )


def plan_requirements(rs: RequirementSet, target: Target) -> RequirementPlan:
    """Roots and pins for *target* from what the files said (see the module docstring)."""
    roots: list[Req] = []
    hashes: dict[NormalizedName, HashPin] = {}
    constraints: dict[NormalizedName, tuple[Constraint, ...]] = {}
    direct: dict[NormalizedName, DirectWheel] = {}
    left_out: list[str] = []
    for line in (*rs.requirements, *rs.constraints):
        if not _holds(line, target):
            left_out.append(f"{line.where}: {line.requirement}")
            continue
        if line.hashes:
            _add_hash_pin(hashes, line)
        if line.constraint:
            if line.requirement.specifier:
                c = Constraint(line.where, line.requirement.specifier)
                constraints[line.name] = (*constraints.get(line.name, ()), c)
            continue
        req = line.requirement
        if req.url is not None:
            direct[line.name] = _direct(line)
            hashes.pop(line.name, None)  # the URL's own hash decides
            extras = frozenset(canonicalize_name(e) for e in req.extras)
            roots.append(Req(line.name, extras=extras, text=str(req)))
        else:
            roots.append(Req.from_requirement(req))
    return RequirementPlan(tuple(roots), Pins(hashes, constraints, direct), tuple(left_out))


def _command_line(
    texts: Sequence[str], torch_version: str | None, target: Target
) -> tuple[list[Req], list[str]]:
    """Requirement strings (plus ``--torch``) → roots, and the ones the target leaves out."""
    reqs: list[Req] = []
    left_out: list[str] = []
    for text in texts:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            why = str(exc).splitlines()[0]
            raise RequirementError(f"invalid requirement {text!r}: {why}") from exc
        if req.marker is not None and not any(
            req.marker.evaluate({**env, "extra": ""}) for env in target.marker_environments
        ):
            left_out.append(text)
            continue
        reqs.append(Req.from_requirement(req))
    if torch_version:
        try:
            pin = Requirement(f"torch=={torch_version.strip()}")
        except InvalidRequirement as exc:
            raise RequirementError(f"--torch {torch_version!r} is not a version") from exc
        reqs.append(Req.from_requirement(pin))
    return reqs, left_out


def plan_fetch(
    texts: Sequence[str],
    torch_version: str | None,
    files: RequirementSet | None,
    target: Target,
) -> RequirementPlan:
    """What ``fetch`` resolves: the command line's requirements, ``--torch`` and the
    requirement files' lines; :data:`DEFAULT_REQUIREMENTS` only when nothing at all was
    asked for (constraints alone ask for nothing).

    >>> from wheelcache.core.target import make_target
    >>> t = make_target(python="39", platform="win_amd64")
    >>> plan = plan_fetch(["numpy; sys_platform == 'linux'"], "2.4.0", None, t)
    >>> [str(r.text) for r in plan.roots], plan.left_out
    (['torch==2.4.0'], ("numpy; sys_platform == 'linux'",))
    >>> [r.text for r in plan_fetch([], None, None, t).roots]
    ['torch', 'torchvision', 'torchaudio']
    """
    files = files or RequirementSet()
    plan = plan_requirements(files, target)
    asked = texts or (() if files.requirements else DEFAULT_REQUIREMENTS)
    roots, left_out = _command_line(asked, torch_version, target)
    return RequirementPlan((*roots, *plan.roots), plan.pins, (*left_out, *plan.left_out))


def named_variant(rs: RequirementSet, torch_index: str) -> tuple[str, str] | None:
    """The PyTorch variant requirement files name, and where: a torch-family pin with a
    local version (``torch==2.4.0+cu118``), else an index option that is a variant tree of
    *torch_index* (``--extra-index-url …/whl/cu118``).  None when they name none."""
    for line in (*rs.requirements, *rs.constraints):
        if line.name not in TORCH_FAMILY:
            continue
        for spec in line.requirement.specifier:
            if spec.operator in ("==", "===") and "+" in spec.version:
                variant = variant_or_none(spec.version.split("+", 1)[1])
                if variant is not None:
                    return variant, f"{line.where} ({line.requirement})"
    for option in rs.index_options:
        variant = variant_of_index_url(option.value or "", torch_index)
        if variant is not None:
            return variant, f"{option.where} ({option})"
    return None


def unpinned(plan: RequirementPlan, resolution: Resolution) -> list[NormalizedName]:
    """Resolved projects no ``--hash`` pin or direct URL covers (pip's hash-checking mode
    would refuse the files for them)."""
    pinned = set(plan.pins.hashes) | set(plan.pins.direct)
    return [c.name for c in resolution.candidates if c.name not in pinned]


class PinnedSource:
    """A :class:`~wheelcache.core.provider.CandidateSource` that applies :class:`Pins`.

    *all_candidates* lists every file of a project that fits the target (not only the best
    per version), best first: a hash pin may name a file that is not the best one.
    """

    def __init__(
        self,
        source: CandidateSource,
        all_candidates: Callable[[NormalizedName], Sequence[Candidate]],
        pins: Pins,
        target: Target,
    ) -> None:
        self.source = source
        self.all_candidates = all_candidates
        self.pins = pins
        self.target = target
        self._memo: dict[NormalizedName, list[Candidate]] = {}

    def check(self) -> None:
        """Judge every direct URL and hash pin now, before resolution fetches anything."""
        for name in (*self.pins.direct, *self.pins.hashes):
            self.find_candidates(name)

    def find_candidates(self, name: NormalizedName) -> list[Candidate]:
        if name not in self._memo:
            if name in self.pins.direct:
                cands = [self._direct(self.pins.direct[name], name)]
            elif name in self.pins.hashes:
                cands = self._hashed(self.pins.hashes[name], name)
            else:
                cands = list(self.source.find_candidates(name))
            for c in self.pins.constraints.get(name, ()):
                cands = [x for x in cands if c.specifier.contains(x.version, prereleases=True)]
            self._memo[name] = cands
        return self._memo[name]

    def explain(self, name: NormalizedName, specifier: SpecifierSet) -> str:
        text = self.source.explain(name, specifier)
        limits = [f"{c.specifier} by {c.where}" for c in self.pins.constraints.get(name, ())]
        return text + (f" (constrained to {'; '.join(limits)})" if limits else "")

    def _direct(self, direct: DirectWheel, name: NormalizedName) -> Candidate:
        ev = evaluate_file(direct.file, name, self.target)
        if ev.candidate is None:
            raise RequirementsFileError(
                direct.where.source, direct.where.line, f"{direct.file.url}: {ev.reason}"
            )
        return ev.candidate

    def _hashed(self, pin: HashPin, name: NormalizedName) -> list[Candidate]:
        fitting = [
            c
            for c in self.all_candidates(name)
            if pin.specifier.contains(c.version, prereleases=True)
        ]
        only = next(iter(pin.hashes)) if len(pin.hashes) == 1 else None
        good: dict[object, Candidate] = {}
        for c in sorted(fitting, key=lambda c: c.sort_key, reverse=True):
            if c.file.sha256 is None and only is not None:
                c = replace(c, file=replace(c.file, sha256=only))  # the download checks it
            if c.file.sha256 in pin.hashes:
                good.setdefault(c.version, c)  # the best file of each version
        if not good:
            shown = sorted(fitting, key=lambda c: c.sort_key, reverse=True)[:3]
            raise HashPinError(
                str(pin.where),
                pin.requirement,
                sorted(pin.hashes),
                [(c.file.filename, c.file.sha256 or "") for c in shown],
            )
        return list(good.values())


def pinned_source(
    pins: Pins,
    source: CandidateSource,
    all_candidates: Callable[[NormalizedName], Sequence[Candidate]],
    target: Target,
) -> CandidateSource:
    """*source*, or *source* under *pins* (judged at once: a hash pin the index lacks fails
    before resolution fetches any metadata)."""
    if not (pins.hashes or pins.constraints or pins.direct):
        return source
    pinned = PinnedSource(source, all_candidates, pins, target)
    pinned.check()
    return pinned
