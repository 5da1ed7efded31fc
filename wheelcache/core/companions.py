"""Which torch release a torchvision or torchaudio release belongs to.

Most companion wheels pin their torch (``torchvision 0.19.0`` requires ``torch==2.4.0``), and
resolution follows the pin.  Newer torchaudio releases declare no torch requirement at all, so
a resolver left alone picks the newest torchaudio next to any torch — a torchaudio built for
torch 2.11 beside torch 2.4 is exactly the mismatch wheelcache exists to avoid (issue 15).

For such a release the torch *line* (major.minor) is derived from the index itself:

1. **version numbering** — the newest companion release that does pin torch gives the offset
   between the two numberings (``torchvision 0.19`` ↔ ``torch 2.4``: major −2, minor +15;
   torchaudio: the same major.minor), which is applied to the release in question;
2. **upload times** — the torch line whose first upload came last before the companion's
   (within a day or two), used when the numbering cannot be learnt and as a cross-check.  An
   index that re-uploaded old releases in bulk gives equal times to several lines; such times
   say nothing and are ignored;
3. only when neither works, the offsets known when this was written (:data:`KNOWN_OFFSETS`),
   and the explanation says so.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelcache.core.evaluator import Candidate
from wheelcache.core.models import CoreMetadata

if TYPE_CHECKING:
    from wheelcache.core.provider import WheelProvider

__all__ = [
    "KNOWN_OFFSETS",
    "LineChoice",
    "companion_line_for",
    "companion_notes",
    "torch_line_for",
    "torch_pin",
]

#: (companion major − torch major, companion minor − torch minor) for torch 2.x, the fallback.
KNOWN_OFFSETS: dict[str, tuple[int, int]] = {"torchvision": (-2, 15), "torchaudio": (0, 0)}

#: A companion may be uploaded a little before its torch; this much earlier still counts.
_UPLOAD_SLACK = datetime.timedelta(days=2)

Line = tuple[int, int]
_TORCH = canonicalize_name("torch")
_COMPANIONS = (canonicalize_name("torchvision"), canonicalize_name("torchaudio"))


@dataclass(frozen=True, slots=True)
class LineChoice:
    """The torch line a companion release belongs to, and why wheelcache thinks so."""

    line: Line
    reason: str
    from_table: bool = False

    @property
    def specifier(self) -> SpecifierSet:
        """``==2.11.*``: every torch of the line, local versions (``+cu118``) included."""
        return SpecifierSet(f"=={self.line[0]}.{self.line[1]}.*")

    @property
    def text(self) -> str:
        return f"torch {self.line[0]}.{self.line[1]}"


def _line(v: Version) -> Line:
    return (v.major, v.minor)


def _by_numbering(
    name: str, version: Version, pins: Mapping[Version, Version], torch_lines: set[Line]
) -> tuple[Line, str] | None:
    if not pins:
        return None
    example = max(pins)
    torch = pins[example]
    d_major, d_minor = example.major - torch.major, example.minor - torch.minor
    line = (version.major - d_major, version.minor - d_minor)
    if line not in torch_lines:
        return None
    return line, f"{name} {example.public} pins torch {torch.public}"


def _parse_time(text: str) -> datetime.datetime | None:
    try:
        t = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=datetime.timezone.utc)


def _first_uploads(uploads: Mapping[Version, str]) -> dict[Version, datetime.datetime]:
    out: dict[Version, datetime.datetime] = {}
    for v, text in uploads.items():
        t = _parse_time(text)
        if t is not None:
            out[v] = t
    return out


def _by_upload_time(
    version: Version,
    companion_uploads: Mapping[Version, str],
    torch_uploads: Mapping[Version, str],
) -> Line | None:
    own = _first_uploads(companion_uploads).get(version)
    if own is None:
        return None
    starts: dict[Line, datetime.datetime] = {}
    for v, t in _first_uploads(torch_uploads).items():
        line = _line(v)
        starts[line] = min(t, starts.get(line, t))
    ordered = sorted(starts)
    times = [starts[line] for line in ordered]
    # Informative only if every line started strictly after the one before it: a bulk
    # re-upload stamps many releases with one time.
    if len(ordered) < 2 or any(b <= a for a, b in zip(times, times[1:], strict=False)):
        return None
    before = [line for line in ordered if starts[line] <= own + _UPLOAD_SLACK]
    return before[-1] if before else None


def torch_line_for(
    name: NormalizedName,
    version: Version,
    *,
    pins: Mapping[Version, Version],
    torch_versions: set[Version],
    companion_uploads: Mapping[Version, str] | None = None,
    torch_uploads: Mapping[Version, str] | None = None,
) -> LineChoice:
    """The torch line of companion *name* *version*, which declares no torch requirement.

    *pins* maps other releases of the companion to the torch they pin (public versions);
    *torch_versions* are the torch releases on the index; the upload maps give the first upload
    time (ISO 8601) per version where the index says.

    >>> v = Version
    >>> c = torch_line_for("torchaudio", v("2.11.0"), pins={v("2.8.0"): v("2.8.0")},
    ...                    torch_versions={v("2.8.0"), v("2.11.0")})
    >>> str(c.specifier), c.reason
    ('==2.11.*', 'by version numbering (torchaudio 2.8.0 pins torch 2.8.0)')
    >>> torch_line_for("torchvision", v("0.26.0"), pins={}, torch_versions={v("2.11.0")}).text
    'torch 2.11'
    """
    lines = {_line(t) for t in torch_versions}
    numbered = _by_numbering(name, version, pins, lines)
    uploaded = _by_upload_time(version, companion_uploads or {}, torch_uploads or {})
    if numbered is not None:
        line, example = numbered
        if uploaded == line:
            return LineChoice(line, f"by version numbering ({example}) and upload times")
        if uploaded is not None:
            return LineChoice(
                line,
                f"by version numbering ({example}); the upload times point to torch "
                f"{uploaded[0]}.{uploaded[1]}, which was not taken",
            )
        return LineChoice(line, f"by version numbering ({example})")
    if uploaded is not None:
        return LineChoice(uploaded, "by upload times (no release of it on the index pins torch)")
    d_major, d_minor = KNOWN_OFFSETS.get(name, (0, 0))
    line = (version.major - d_major, version.minor - d_minor)
    return LineChoice(
        line,
        "from wheelcache's table of release numbering (the index shows neither a release that "
        "pins torch nor usable upload times)",
        from_table=True,
    )


def companion_line_for(
    name: NormalizedName, torch: Version, pins: Mapping[Version, Version]
) -> tuple[SpecifierSet, str]:
    """The releases of companion *name* that go with *torch*, and how that was worked out.

    >>> spec, why = companion_line_for("torchvision", Version("2.5.1"),
    ...                                {Version("0.22.0"): Version("2.7.0")})
    >>> str(spec), why
    ('==0.20.*', 'by version numbering: torchvision 0.22.0 pins torch 2.7.0')
    """
    if pins:
        example = max(pins)
        pinned = pins[example]
        d_major, d_minor = example.major - pinned.major, example.minor - pinned.minor
        why = f"by version numbering: {name} {example.public} pins torch {pinned.public}"
    else:
        d_major, d_minor = KNOWN_OFFSETS.get(name, (0, 0))
        why = "by wheelcache's table of release numbering"
    return SpecifierSet(f"=={torch.major + d_major}.{torch.minor + d_minor}.*"), why


def torch_pin(md: CoreMetadata) -> Version | None:
    """The torch version a companion's metadata pins exactly (public part), if any."""
    for r in md.requires_dist:
        if canonicalize_name(r.name) != _TORCH:
            continue
        for s in r.specifier:
            if s.operator in ("==", "===") and "*" not in s.version:
                return Version(Version(s.version).public)
    return None


def _label(c: Candidate) -> str:
    return f"{c.name} {c.version}"


def companion_notes(
    provider: WheelProvider, chosen: Mapping[NormalizedName, Candidate]
) -> tuple[list[str], list[str]]:
    """(warnings, notes) saying why each chosen companion goes with the chosen torch: a
    deduction (no torch requirement, or a newer such release passed over) is a warning, a
    plain metadata pin a note."""
    warnings: list[str] = []
    notes: list[str] = []
    torch = chosen.get(_TORCH)
    if torch is None or _TORCH not in provider.roots:
        return warnings, notes
    for name in _COMPANIONS:
        c = chosen.get(name)
        if c is None:
            continue
        passed = sorted(
            (v for (n, v), line in provider.lines.items() if n == name and v > c.version),
            reverse=True,
        )
        over = ""
        if passed:
            line = provider.lines[(name, passed[0])]
            over = (
                f"; newer {name} {passed[0]} declares no torch requirement and is "
                f"{line.text}'s release ({line.reason}), so it was passed over"
            )
        choice = provider.lines.get((name, c.version))
        if choice is None:
            pin = torch_pin(provider.get_metadata(c))
            said = f"pins torch {pin}" if pin else "requires a matching torch"
            # Passing over a newer release is a deduction the user should hear about.
            (warnings if over else notes).append(
                f"{_label(c)} goes with {_label(torch)}: its metadata {said}{over}"
            )
            continue
        text = (
            f"{_label(c)} declares no torch requirement; taken as {choice.text}'s release "
            f"to go with {_label(torch)} ({choice.reason})"
        )
        warnings.append(text)
    return warnings, notes
