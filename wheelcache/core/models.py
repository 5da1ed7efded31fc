"""Value objects shared by every layer: index entries, pages, digests, metadata.

All are frozen, slotted dataclasses so they can be hashed, compared whole in tests and passed
between threads without copying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NewType

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name

__all__ = [
    "Blake3",
    "CoreMetadata",
    "DistFile",
    "NormalizedName",
    "ProjectPage",
    "Sha256",
    "parse_core_metadata",
]

Sha256 = NewType("Sha256", str)
"""Lower-case hex sha256 digest (what indexes publish)."""

Blake3 = NewType("Blake3", str)
"""Lower-case hex blake3 digest (the cache address)."""


@dataclass(frozen=True, slots=True)
class DistFile:
    """One file listed on an index page (PEP 503 anchor or PEP 691 file entry).

    ``url`` is absolute (already joined against the page URL) and has no fragment.
    ``core_metadata`` is true when the index serves ``url + ".metadata"`` (PEP 658/714).
    """

    filename: str
    url: str
    sha256: Sha256 | None = None
    requires_python: str | None = None
    yanked: bool = False
    yanked_reason: str | None = None
    core_metadata: bool = False
    core_metadata_sha256: Sha256 | None = None
    size: int | None = None
    upload_time: str | None = None

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def metadata_url(self) -> str:
        """URL of the PEP 658 metadata file (only meaningful when ``core_metadata``)."""
        return self.url + ".metadata"


@dataclass(frozen=True, slots=True)
class ProjectPage:
    """A project page: its normalized name, the page URL and its files sorted by filename.

    ``rejected`` holds ``(name or href, reason)`` for every listed file that was refused while
    parsing (an unsafe filename, a sha256 that is not one, a filename listed twice with
    different hashes …): data for the edge to report, never a file to fetch.
    """

    name: NormalizedName
    url: str
    files: tuple[DistFile, ...] = field(default_factory=tuple)
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CoreMetadata:
    """The parts of a wheel's METADATA that resolution needs."""

    name: NormalizedName
    version: str
    requires_dist: tuple[Requirement, ...] = ()
    requires_python: SpecifierSet | None = None
    provides_extra: tuple[NormalizedName, ...] = ()


def parse_core_metadata(data: bytes, *, source: str = "METADATA") -> CoreMetadata:
    """Parse the RFC 822 style core metadata of a wheel.

    >>> md = parse_core_metadata(b"Metadata-Version: 2.1\\nName: Demo_Pkg\\nVersion: 1.0\\n"
    ...                          b"Requires-Dist: numpy>=1; python_version < '3.12'\\n")
    >>> (md.name, md.version, str(md.requires_dist[0]))
    ('demo-pkg', '1.0', 'numpy>=1; python_version < "3.12"')
    """
    # The compat32 policy keeps header values as plain strings (no folding surprises).
    # compat32, the parser's default policy: email.policy (and its header registry) is not
    # imported, which kept a tenth of a start-up; and the parser itself is imported here, on
    # first use: a recalled resolution reads no METADATA.
    import email.parser

    msg = email.parser.BytesParser().parsebytes(data, headersonly=True)
    name = msg.get("Name")
    version = msg.get("Version")
    if not name or not version:
        raise ValueError(f"{source}: no Name or Version header")
    requires: list[Requirement] = []
    for line in msg.get_all("Requires-Dist") or []:
        try:
            requires.append(Requirement(str(line).strip()))
        except InvalidRequirement as exc:
            raise ValueError(f"{source}: bad Requires-Dist {line!r}: {exc}") from exc
    rp_raw = msg.get("Requires-Python")
    requires_python = None
    if rp_raw:
        try:
            requires_python = SpecifierSet(str(rp_raw).strip())
        except InvalidSpecifier as exc:
            raise ValueError(f"{source}: bad Requires-Python {rp_raw!r}") from exc
    extras = tuple(canonicalize_name(str(e).strip()) for e in msg.get_all("Provides-Extra") or [])
    return CoreMetadata(
        name=canonicalize_name(str(name).strip()),
        version=str(version).strip(),
        requires_dist=tuple(requires),
        requires_python=requires_python,
        provides_extra=extras,
    )
