"""What resolution works with: requirements, candidate wrappers, the sources it is given and
the result it returns (the provider itself is in :mod:`wheelcache.core.provider`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelcache.core.evaluator import Candidate
from wheelcache.core.models import CoreMetadata
from wheelcache.errors import ResolutionError

__all__ = [
    "PYTHON",
    "AnyCandidate",
    "CandidateSource",
    "ExtrasCandidate",
    "MetadataSource",
    "PythonCandidate",
    "Req",
    "Resolution",
]

#: The pseudo-project that Requires-Python becomes a dependency on.
PYTHON = "<python>"


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
    """A requirement as resolution sees it: name, extras, specifier and who asked.

    ``via`` is the identifier and version of the candidate that declared it (None for what
    the user asked for): failures are explained by walking these links back to the user.
    """

    name: NormalizedName
    specifier: SpecifierSet = field(default_factory=SpecifierSet)
    extras: frozenset[NormalizedName] = frozenset()
    parent: str | None = None  # "torchvision 0.19.0+cu118", None for user requirements
    text: str = ""
    via: tuple[str, Version] | None = None

    @classmethod
    def from_requirement(
        cls, req: Requirement, parent: str | None = None, via: tuple[str, Version] | None = None
    ) -> Req:
        if req.url:
            raise ResolutionError(f"{req}: direct URL requirements are not supported")
        return cls(
            name=canonicalize_name(req.name),
            specifier=req.specifier,
            extras=frozenset(canonicalize_name(e) for e in req.extras),
            parent=parent,
            text=str(req),
            via=via,
        )

    @property
    def identifier(self) -> str:
        if self.extras:
            return f"{self.name}[{','.join(sorted(self.extras))}]"
        return self.name

    def __str__(self) -> str:
        return self.text or f"{self.identifier}{self.specifier}"


@dataclass(frozen=True, slots=True)
class PythonCandidate:
    version: Version


@dataclass(frozen=True, slots=True)
class ExtrasCandidate:
    """``torch[opt-einsum]``: the base wheel plus the dependencies the extras add."""

    base: Candidate
    extras: frozenset[NormalizedName]

    @property
    def version(self) -> Version:
        return self.base.version


AnyCandidate = Candidate | ExtrasCandidate | PythonCandidate


@dataclass(frozen=True)
class Resolution:
    """The chosen wheels (one per project), who required what, and what the user should hear:
    ``warnings`` (a missing extra, a companion matched by deduction) and ``notes`` (why each
    companion goes with the chosen torch)."""

    candidates: tuple[Candidate, ...]
    required_by: Mapping[NormalizedName, tuple[str, ...]]
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def by_name(self) -> dict[NormalizedName, Candidate]:
        return {c.name: c for c in self.candidates}
