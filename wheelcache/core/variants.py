"""PyTorch build variants (cpu, cu118, rocm6.1 …), the torch family and the driver table.

The PyTorch index publishes one tree per variant (``…/whl/cu118/``); a variant's wheels carry it
as their local version (``torch-2.4.0+cu118-…``).  A plain index (the Python package index, a
mirror of it) carries one build per platform with no local version; which variant that build is
shows in its requirements (:func:`build_variant`).  Everything here is data plus parsing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from wheelcache.errors import TargetError

__all__ = [
    "Mirror",
    "DEFAULT_TORCH_INDEX",
    "KNOWN_VARIANTS",
    "TORCH_FAMILY",
    "cdn_fallback",
    "build_variant",
    "describe_builds",
    "is_torch_family",
    "parse_cuda",
    "parse_variant",
    "torch_index_for",
    "variant_of_index_url",
    "variant_or_none",
]

DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl/{variant}"

#: Projects that come from the PyTorch index and must match one another.
TORCH_FAMILY: tuple[NormalizedName, ...] = (
    canonicalize_name("torch"),
    canonicalize_name("torchvision"),
    canonicalize_name("torchaudio"),
)

#: Variants the PyTorch index has published (newest CUDA last).  New ones that follow the
#: naming scheme are still accepted by :func:`parse_variant`.
KNOWN_VARIANTS: tuple[str, ...] = (
    "cpu",
    "cu92",
    "cu101",
    "cu102",
    "cu110",
    "cu111",
    "cu113",
    "cu115",
    "cu116",
    "cu117",
    "cu118",
    "cu121",
    "cu124",
    "cu126",
    "cu128",
    "cu129",
    "cu130",
    "rocm5.7",
    "rocm6.0",
    "rocm6.1",
    "rocm6.2",
    "rocm6.2.4",
    "rocm6.3",
    "rocm6.4",
    "xpu",
)

_CUDA_RE = re.compile(r"^(?:cu|cuda)?(\d+)(?:\.(\d+))?$", re.IGNORECASE)
_VARIANT_RE = re.compile(r"^(cpu|xpu|cu\d{2,4}|rocm\d+(?:\.\d+){1,2})$")


def is_torch_family(name: str) -> bool:
    """True for torch, torchvision and torchaudio (any spelling)."""
    return canonicalize_name(name) in TORCH_FAMILY


def _known_cuda() -> str:
    return ", ".join(v for v in KNOWN_VARIANTS if v.startswith("cu"))


def parse_cuda(value: str) -> str:
    """Turn ``118``, ``11.8``, ``cu118`` or ``cuda11.8`` into the variant name ``cu118``.

    >>> [parse_cuda(v) for v in ("118", "11.8", "cu118", "12.1", "CU124")]
    ['cu118', 'cu118', 'cu118', 'cu121', 'cu124']
    """
    m = _CUDA_RE.match(value.strip())
    if not m:
        raise TargetError(f"--cuda {value!r} is not a CUDA version; known: {_known_cuda()}")
    major, minor = m.group(1), m.group(2)
    if minor is not None:
        digits = major + minor
    else:
        digits = major
    variant = f"cu{digits}"
    if variant not in KNOWN_VARIANTS:
        raise TargetError(
            f"--cuda {value!r} (= {variant}) is not a PyTorch CUDA variant; known: {_known_cuda()}"
        )
    return variant


def parse_variant(value: str) -> str:
    """Validate a ``--variant`` name: a known one, or a new one of the same form.

    >>> parse_variant("rocm6.1"), parse_variant("cu999")
    ('rocm6.1', 'cu999')
    """
    v = value.strip().lower()
    if v in KNOWN_VARIANTS or _VARIANT_RE.match(v):
        return v
    raise TargetError(f"{value!r} is not a PyTorch variant; known: {', '.join(KNOWN_VARIANTS)}")


def variant_or_none(value: str | None) -> str | None:
    """*value* as a variant name if it is one (``cu118`` in ``2.4.0+cu118``), else None.

    >>> variant_or_none("cu118"), variant_or_none("abc"), variant_or_none(None)
    ('cu118', None, None)
    """
    if not value:
        return None
    v = value.strip().lower()
    return v if v in KNOWN_VARIANTS or _VARIANT_RE.match(v) else None


def variant_of_index_url(url: str, template: str) -> str | None:
    """The variant a URL names in a ``{variant}`` template of the PyTorch index.

    >>> t = "https://idx.invalid/whl/{variant}"
    >>> variant_of_index_url("https://idx.invalid/whl/cu121/", t)
    'cu121'
    >>> variant_of_index_url("https://idx.invalid/simple", t) is None
    True
    """
    if "{variant}" not in template:
        return None
    head, tail = template.split("{variant}", 1)
    url, tail = url.rstrip("/"), tail.rstrip("/")
    if not (url.startswith(head) and url.endswith(tail)) or len(url) <= len(head) + len(tail):
        return None
    middle = url[len(head) : len(url) - len(tail)]
    return variant_or_none(middle) if "/" not in middle else None


def torch_index_for(template: str, variant: str) -> tuple[str, bool]:
    """Return the PyTorch index URL for *variant* and whether it is a per-variant index.

    ``{variant}`` in the template is replaced; without it the URL is used as it is and wheels
    are not filtered by their local version.

    >>> torch_index_for("https://example.invalid/whl/{variant}", "cu118")
    ('https://example.invalid/whl/cu118', True)
    >>> torch_index_for("https://example.invalid/simple", "cu118")
    ('https://example.invalid/simple', False)
    """
    if "{variant}" in template:
        return template.replace("{variant}", variant).rstrip("/"), True
    return template.rstrip("/"), False


def cdn_fallback(url: str, index_url: str) -> str | None:
    """The same path on the index's own host, for a file linked on another host (a CDN).

    >>> cdn_fallback("https://cdn.invalid/whl/cu118/t.whl", "https://main.invalid/whl/cu118")
    'https://main.invalid/whl/cu118/t.whl'
    >>> cdn_fallback("https://main.invalid/whl/t.whl", "https://main.invalid/whl/cu118") is None
    True
    """
    file, index = urlsplit(url), urlsplit(index_url)
    if file.netloc == index.netloc or not index.netloc:
        return None
    return urlunsplit((index.scheme, index.netloc, file.path, file.query, ""))


_CUDA_RUNTIME = re.compile(r"^nvidia-cuda-runtime(?:-cu(\d+))?$")
_CUDA_LIBRARY = re.compile(r"^nvidia-[a-z0-9-]+-cu(\d+)$")
_MAJOR_MINOR = re.compile(r"^(\d+)\.(\d+)")


def build_variant(
    version: Version,
    requires_dist: Iterable[Requirement],
    environments: Sequence[Mapping[str, str]],
) -> str:
    """Which PyTorch variant a torch build is: its local version when it has one, else the
    CUDA runtime it requires on the target (markers judged in *environments*), else ``cpu``.

    A plain index's torch for Linux x86_64 requires ``nvidia-cuda-runtime-cu12==12.4.127``
    and is the cu124 build; the same release for Windows or macOS requires no CUDA at all and
    is the CPU build.  The torch wheels of a per-variant index all say it in their version.

    >>> linux = {"platform_system": "Linux", "platform_machine": "x86_64"}
    >>> windows = {"platform_system": "Windows", "platform_machine": "AMD64"}
    >>> cuda = [Requirement('nvidia-cuda-runtime-cu12==12.4.127; platform_system == "Linux" '
    ...                     'and platform_machine == "x86_64"'), Requirement("filelock")]
    >>> [build_variant(Version("2.5.1"), cuda, [env]) for env in (linux, windows)]
    ['cu124', 'cpu']
    >>> build_variant(Version("2.4.0+cu118"), [], [linux])
    'cu118'
    """
    if version.local is not None:
        return version.local
    major = None  # from any nvidia-*-cuNN library, when no runtime pin says more
    for req in requires_dist:
        name = canonicalize_name(req.name)
        if req.marker is not None and not any(
            req.marker.evaluate({**env, "extra": ""}) for env in environments
        ):
            continue
        m = _CUDA_RUNTIME.match(name)
        if m is None:
            library = _CUDA_LIBRARY.match(name)
            major = major or (library.group(1) if library else None)
            continue
        for spec in req.specifier:
            found = _MAJOR_MINOR.match(spec.version)
            if spec.operator in ("==", "===", "~=", ">=") and found:
                return f"cu{found.group(1)}{found.group(2)}"
        major = major or m.group(1)
    return f"cu{major}" if major else "cpu"  # a CUDA major without its minor: all we know


def describe_builds(builds: Mapping[Version, str], limit: int = 3) -> str:
    """Which builds a plain index carries, by variant, newest first (for one-line errors).

    >>> describe_builds({Version("2.5.1"): "cu124", Version("2.5.0"): "cu124",
    ...                  Version("2.3.1"): "cu121", Version("2.2.0"): "cu121",
    ...                  Version("2.1.0"): "cu121", Version("2.0.0"): "cu118"})
    'torch 2.5.1, 2.5.0 as cu124; 2.3.1, 2.2.0, 2.1.0 as cu121; 2.0.0 as cu118'
    >>> describe_builds({Version(f"2.{i}.0"): "cpu" for i in range(5)})
    'torch 2.4.0, 2.3.0, 2.2.0 … (5 releases) as cpu'
    """
    by_variant: dict[str, list[Version]] = {}
    for version in sorted(builds, reverse=True):
        by_variant.setdefault(builds[version], []).append(version)
    parts = []
    for variant, versions in by_variant.items():
        shown = ", ".join(str(v) for v in versions[:limit])
        more = f" … ({len(versions)} releases)" if len(versions) > limit else ""
        parts.append(f"{shown}{more} as {variant}")
    return "torch " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Mirror:
    """A PyTorch wheel mirror: a PEP 503 tree per variant, or a flat listing per variant.

    ``url`` may contain ``{variant}``.  Files are matched by filename; their hashes still
    come from the official index whenever it can be reached.
    """

    url: str
    layout: str = "pep503"  # or "flat"

    def base(self, variant: str) -> str:
        return self.url.replace("{variant}", variant).rstrip("/")

    @classmethod
    def parse(cls, text: str) -> Mirror:
        """``URL`` (PEP 503 tree) or ``flat+URL`` (a directory listing of wheels)."""
        if text.startswith("flat+"):
            return cls(text[len("flat+") :], "flat")
        return cls(text.removeprefix("pep503+"), "pep503")
